"""hibari's signal stage in windows, against hibari's own whole-sentence synthesis, bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import hibari
import hibari.dsp
import numpy as np
import numpy.typing as npt
import pytest
from utterd.models import Cancelled, CancelToken, EngineSettings, Session
from utterd.models.engine.backend import open_session
from utterd.models.engine.stream_windows import GROWTH_STEP, StreamPace, window_plan
from utterd.models.hibari.split import SplitSession
from utterd.models.hibari.stream import (
    DECODER_PART,
    HOP,
    LARGEST_WINDOW_FRAMES,
    MODEL_OUTPUTS,
    HibariFrames,
    HibariPiece,
    stream_ids,
    synthesize_piece,
    synthesize_windows,
)

HEART_MODEL = Path(hibari.voices.voice_path("heart", download_missing=False))
TEXT = (
    "Battery low. Your appointment is confirmed for Tuesday, June 14th, at 10:15. "
    "Before you leave the building tonight, please make sure that every window on the ground "
    "floor is closed, the lights in the meeting rooms are switched off, and the alarm panel next "
    "to the main entrance shows a green light."
)


@pytest.fixture(scope="module")
def reference() -> hibari.Hibari:
    # hibari runs one ORT thread; float sums depend on the thread count, so ours matches it.
    return hibari.Hibari(voice="heart", threads=1)


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    opened = open_session(HEART_MODEL, EngineSettings(threads=1), label="hibari-heart")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def pieces_ids(reference: hibari.Hibari) -> list[list[int]]:
    return [reference.ids(ps) for ps in reference.phonemize(TEXT)]


@pytest.fixture(scope="module")
def long_frames(session: Session, pieces_ids: list[list[int]]) -> HibariFrames:
    ids = max(pieces_ids, key=len)
    outputs = session.run(
        MODEL_OUTPUTS, {"ids": np.asarray([ids], np.int64), "speed": np.ones(1, np.float32)}
    )
    return HibariFrames.from_outputs(outputs)


def one_shot(frames: HibariFrames, seed: int) -> npt.NDArray[np.float32]:
    f = frames
    audio: npt.NDArray[np.float32] = hibari.dsp.synth(
        f.lh, f.theta, f.ln, f.lr, f.phi, f.f0, np.random.default_rng(seed)
    )
    return audio


def joined(pieces: list[HibariPiece]) -> npt.NDArray[np.float32]:
    return np.concatenate([p.samples for p in pieces])


@pytest.mark.parametrize(("first", "largest"), [(4, 32), (1, 1), (3, 7), (16, 64), (150, 200)])
def test_windows_equal_the_whole_sentence_bit_for_bit(
    long_frames: HibariFrames, first: int, largest: int
) -> None:
    pieces = list(
        synthesize_windows(
            long_frames,
            np.random.default_rng(11),
            CancelToken(),
            first_window_frames=first,
            window_frames=largest,
        )
    )
    assert np.array_equal(joined(pieces), one_shot(long_frames, 11))
    assert pieces[0].samples.size == first * HOP
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1].end_frame == long_frames.frames


def test_windows_grown_by_the_lead_equal_the_whole_sentence(long_frames: HibariFrames) -> None:
    """With playback far behind (a clock that stands still), windows after the first grow to
    LARGEST_WINDOW_FRAMES; the audio is still hibari's own, bit for bit."""
    pace = StreamPace(clock=lambda: 0.0)
    pieces = list(
        synthesize_windows(long_frames, np.random.default_rng(5), CancelToken(), pace=pace)
    )
    assert np.array_equal(joined(pieces), one_shot(long_frames, 5))
    sizes = [p.end_frame - p.start_frame for p in pieces]
    assert long_frames.frames > 4 + 16 + 64 + LARGEST_WINDOW_FRAMES
    # GROWTH_STEP times the window before (nothing is recomputed: no context), up to the largest
    assert sizes[:4] == [4, 4 * GROWTH_STEP, 4 * GROWTH_STEP**2, LARGEST_WINDOW_FRAMES]
    assert pace.lead_s() == pytest.approx(long_frames.frames * HOP / 24000)


def test_streamed_text_equals_hibari_itself(
    reference: hibari.Hibari, session: Session, pieces_ids: list[list[int]]
) -> None:
    """One generator across the text's pieces, as hibari does: every draw lines up."""
    rng = np.random.default_rng(0)
    ours = [joined(list(stream_ids(session, ids, 1.0, rng, CancelToken()))) for ids in pieces_ids]
    theirs = list(reference.stream(TEXT, seed=0))
    assert len(ours) == len(theirs) == len(pieces_ids) >= 3
    for mine, hers in zip(ours, theirs, strict=True):
        assert np.array_equal(mine, hers)


def test_a_few_frames_go_through_hibari_whole(long_frames: HibariFrames) -> None:
    f = long_frames
    tiny = HibariFrames(
        f.lh[:, :3], f.theta[:, :3], f.ln[:, :3], f.lr[:, :3], f.phi[:, :3], f.f0[:3]
    )
    pieces = list(synthesize_windows(tiny, np.random.default_rng(2), CancelToken()))
    assert len(pieces) == 1 and pieces[0].last
    assert np.array_equal(pieces[0].samples, one_shot(tiny, 2))


def test_cancel_between_windows(long_frames: HibariFrames) -> None:
    cancel = CancelToken()
    pieces = synthesize_windows(long_frames, np.random.default_rng(0), cancel)
    next(pieces)
    cancel.cancel("stop key")
    with pytest.raises(Cancelled, match="stop key"):
        next(pieces)


def test_cancelled_before_the_model_runs(session: Session, pieces_ids: list[list[int]]) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(stream_ids(session, pieces_ids[0], 1.0, np.random.default_rng(0), cancel))


def test_per_window_noise_draws_only_each_windows_columns(long_frames: HibariFrames) -> None:
    """Without exact noise the first window does not wait for the whole piece's noise draw:
    the generator has given exactly that window's (bins, 2 · frames) normals."""
    rng = np.random.default_rng(5)
    pieces = synthesize_windows(
        long_frames, rng, CancelToken(), first_window_frames=4, exact_noise=False
    )
    first = next(pieces)
    assert first.samples.size == 4 * HOP
    # The first window is made of STFT frames 0 … 5 (output frame m reads frames up to m + 2).
    expected = np.random.default_rng(5)
    expected.standard_normal((long_frames.bins, 2 * 6), dtype=np.float32)
    assert rng.standard_normal() == expected.standard_normal()


def test_per_window_noise_changes_only_the_noise(long_frames: HibariFrames) -> None:
    """With the noise branch silenced the two noise modes give the same samples; with it, the
    same loudness (the noise is drawn from the same distribution)."""
    f = long_frames
    silent = HibariFrames(f.lh, f.theta, np.full_like(f.ln, -200.0), f.lr, f.phi, f.f0)
    for frames, exact_equal in ((silent, True), (f, False)):
        exact = joined(list(synthesize_windows(frames, np.random.default_rng(1), CancelToken())))
        per_window = joined(
            list(
                synthesize_windows(
                    frames, np.random.default_rng(1), CancelToken(), exact_noise=False
                )
            )
        )
        assert per_window.shape == exact.shape
        assert np.array_equal(per_window, exact) == exact_equal
        rms = float(np.sqrt(np.mean(per_window.astype(np.float64) ** 2)))
        assert rms == pytest.approx(
            float(np.sqrt(np.mean(exact.astype(np.float64) ** 2))), rel=0.05
        )


@pytest.fixture(scope="module")
def helper() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown()


@pytest.mark.parametrize("frames", [None, 63, 64, 65, 129, 257])
def test_two_halves_equal_the_whole_sentence_and_leave_the_generator_alike(
    long_frames: HibariFrames, helper: ThreadPoolExecutor, frames: int | None
) -> None:
    """The throughput path's signal stage: spectra in two halves on two threads, overlap-added
    as hibari does: its samples bit for bit, and its generator left where hibari leaves it."""
    piece = long_frames if frames is None else _first_frames(long_frames, frames)
    ours, theirs = np.random.default_rng(5), np.random.default_rng(5)
    audio = synthesize_piece(piece, ours, helper)
    f = piece
    expected = hibari.dsp.synth(f.lh, f.theta, f.ln, f.lr, f.phi, f.f0, theirs)
    assert np.array_equal(audio, expected)
    assert ours.integers(1 << 30) == theirs.integers(1 << 30)


def test_two_halves_without_exact_noise_differ_only_in_the_noise(
    long_frames: HibariFrames, helper: ThreadPoolExecutor
) -> None:
    """Each half draws its own noise; with the noise branch silenced, the same samples."""
    silent = replace(long_frames, ln=np.full_like(long_frames.ln, -1e4))  # exp(ln) == 0
    exact = synthesize_piece(silent, np.random.default_rng(1), helper)
    free = synthesize_piece(silent, np.random.default_rng(2), helper, exact_noise=False)
    assert np.array_equal(exact, free)
    noisy = synthesize_piece(long_frames, np.random.default_rng(1), helper, exact_noise=False)
    again = synthesize_piece(long_frames, np.random.default_rng(1), helper, exact_noise=False)
    assert np.array_equal(noisy, again)  # seeded from the request's generator
    other = synthesize_piece(long_frames, np.random.default_rng(3), helper, exact_noise=False)
    half = len(noisy) // 2
    # Both halves carry noise of their own: another generator changes each of them.
    assert not np.array_equal(noisy[:half], other[:half])
    assert not np.array_equal(noisy[half:], other[half:])
    assert len(noisy) == len(exact) == long_frames.frames * HOP


def _first_frames(frames: HibariFrames, count: int) -> HibariFrames:
    assert frames.frames >= count
    return HibariFrames(
        *(np.ascontiguousarray(a[:, :count]) for a in (frames.lh, frames.theta, frames.ln)),
        np.ascontiguousarray(frames.lr[:, :count]),
        np.ascontiguousarray(frames.phi[:, :count]),
        np.ascontiguousarray(frames.f0[:count]),
    )


def test_a_later_piece_ahead_of_playback_is_decoded_in_one_call(
    split: SplitSession,
    session: Session,
    pieces_ids: list[list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request's first piece decodes a few frames first; once its audio is far enough ahead
    of playback to cover a whole piece's decoder call (timed on the first piece), a later piece
    is decoded in one call: the whole model's frames bit for bit, windows grown from the first.
    """
    calls: list[tuple[int, int, int]] = []
    real = split.decode

    def decode(feature: npt.NDArray[Any], start: int, stop: int, cancel: Any = None) -> Any:
        calls.append((start, stop, int(feature.shape[-1])))
        return real(feature, start, stop, cancel)

    monkeypatch.setattr(split, "decode", decode)
    first_ids, later_ids = pieces_ids[1], pieces_ids[0]  # both shorter than LONG_PIECE_FRAMES
    pace = StreamPace(clock=lambda: 0.0)  # playback stands still: the lead is all handed out
    first = list(
        stream_ids(
            split, first_ids, 1.0, np.random.default_rng(0), CancelToken(), decoder_windows=True,
            exact_noise=False, pace=pace,
        )
    )  # fmt: skip
    frames = first[-1].end_frame
    assert len(calls) == 2 and calls[0][2] < frames and calls[1] == (0, frames, frames)
    assert pace.affords(DECODER_PART, frames)
    calls.clear()
    later = list(
        stream_ids(
            split, later_ids, 1.0, np.random.default_rng(4), CancelToken(), decoder_windows=True,
            pace=pace,
        )
    )  # fmt: skip
    frames = later[-1].end_frame
    assert calls == [(0, frames, frames)]
    assert later[0].end_frame > window_plan(frames, 4, 32)[0][1]  # grown from the first window
    whole = HibariFrames.from_outputs(
        session.run(
            MODEL_OUTPUTS,
            {"ids": np.asarray([later_ids], np.int64), "speed": np.ones(1, np.float32)},
        )
    )
    assert np.array_equal(joined(later), one_shot(whole, 4))


def test_without_a_lead_every_piece_decodes_its_first_frames_first(
    split: SplitSession, pieces_ids: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Playback that keeps up with synthesis (a clock that runs with the audio handed out)
    leaves no lead: a later piece's first audio waits for a few decoder frames, as the first's."""
    calls: list[int] = []
    real = split.decode

    def decode(feature: npt.NDArray[Any], start: int, stop: int, cancel: Any = None) -> Any:
        calls.append(stop)
        return real(feature, start, stop, cancel)

    monkeypatch.setattr(split, "decode", decode)
    played = [0.0]
    pace = StreamPace(clock=lambda: played[0])
    for ids in pieces_ids[:2]:
        calls.clear()
        for piece in stream_ids(
            split, ids, 1.0, np.random.default_rng(0), CancelToken(), decoder_windows=True,
            exact_noise=False, pace=pace,
        ):  # fmt: skip
            played[0] += (piece.end_frame - piece.start_frame) * HOP / 24000
        assert len(calls) == 2 and calls[0] < calls[1] == piece.end_frame
