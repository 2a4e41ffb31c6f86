"""The voice family interface: speaker resolution, parameter validation, cancellation, chunks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.models import (
    MAX_RATE,
    MAX_VOLUME,
    MIN_RATE,
    AudioChunk,
    Cancelled,
    CancelToken,
    InvalidParameter,
    SynthesisParams,
    UnknownSpeaker,
    VoiceInfo,
    float_to_pcm16,
)
from utterd.models.errors import (
    SynthesisError,
    UnknownVoice,
    UtterdError,
    VoiceLoadError,
)

SINGLE = VoiceInfo(voice_id="solo", family="piper", language="en-US", sample_rate_hz=22050)
MULTI = VoiceInfo(
    voice_id="trio",
    family="piper",
    language="en-GB",
    sample_rate_hz=22050,
    speakers=("alice", "bob", "carol"),
)


# -- speaker resolution -----------------------------------------------------------------------


@pytest.mark.parametrize("speaker", [None, 0, "0"])
def test_single_speaker_voice_accepts_only_the_default(speaker: str | int | None) -> None:
    assert SINGLE.speaker_id(speaker) is None


@pytest.mark.parametrize("speaker", [1, "1", "alice", -1])
def test_single_speaker_voice_rejects_other_speakers(speaker: str | int) -> None:
    with pytest.raises(UnknownSpeaker, match="solo"):
        SINGLE.speaker_id(speaker)


@pytest.mark.parametrize(
    ("speaker", "expected"),
    [(None, None), ("alice", 0), ("carol", 2), (1, 1), ("2", 2), (0, 0)],
)
def test_multi_speaker_voice_resolves_names_and_ids(
    speaker: str | int | None, expected: int | None
) -> None:
    assert MULTI.speaker_id(speaker) == expected


@pytest.mark.parametrize(
    "speaker", ["dave", 3, -1, "3", True, False, "Alice", "²", "①", "1" * 5000, "٣"]
)
def test_multi_speaker_voice_rejects_unknown_speakers(speaker: str | int) -> None:
    with pytest.raises(UnknownSpeaker) as caught:
        MULTI.speaker_id(speaker)
    assert caught.value.code == "unknown-speaker"


# -- parameters ---------------------------------------------------------------------------------


def test_default_params_are_valid() -> None:
    params = SynthesisParams()
    assert params.validated() is params


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (SynthesisParams(rate=0.1), "rate"),
        (SynthesisParams(rate=MAX_RATE * 1.01), "rate"),
        (SynthesisParams(rate=float("nan")), "rate"),
        (SynthesisParams(volume=-0.01), "volume"),
        (SynthesisParams(volume=MAX_VOLUME + 0.5), "volume"),
        (SynthesisParams(volume=float("nan")), "volume"),
    ],
)
def test_out_of_range_params_name_the_field(params: SynthesisParams, field: str) -> None:
    with pytest.raises(InvalidParameter, match=field) as caught:
        params.validated()
    assert caught.value.code == "invalid-value"


@given(
    rate=st.floats(min_value=MIN_RATE, max_value=MAX_RATE),
    volume=st.floats(min_value=0.0, max_value=MAX_VOLUME),
)
def test_every_in_range_params_validate(rate: float, volume: float) -> None:
    SynthesisParams(rate=rate, volume=volume).validated()


@given(rate=st.floats(allow_nan=False).filter(lambda r: not MIN_RATE <= r <= MAX_RATE))
def test_every_out_of_range_rate_is_rejected(rate: float) -> None:
    with pytest.raises(InvalidParameter):
        SynthesisParams(rate=rate).validated()


# -- cancellation -------------------------------------------------------------------------------


def test_fresh_token_is_not_cancelled() -> None:
    token = CancelToken()
    assert not token.cancelled
    token.raise_if_cancelled()


def test_cancel_from_another_thread_is_seen_with_its_reason() -> None:
    token = CancelToken()
    thread = threading.Thread(target=token.cancel, args=("interrupted",))
    thread.start()
    thread.join(timeout=5)
    assert token.cancelled
    with pytest.raises(Cancelled, match="interrupted") as caught:
        token.raise_if_cancelled()
    assert caught.value.code == "cancelled"


def test_tokens_are_independent() -> None:
    first, second = CancelToken(), CancelToken()
    first.cancel()
    assert first.cancelled and not second.cancelled


# -- audio chunks and errors --------------------------------------------------------------------


def test_chunk_duration_uses_its_sample_rate() -> None:
    chunk = AudioChunk(np.zeros(11025, np.float32), 22050)
    assert chunk.duration_s == pytest.approx(0.5)


def test_float_to_pcm16_clips_instead_of_wrapping() -> None:
    pcm = float_to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32))
    assert pcm.dtype == np.dtype("<i2")
    assert pcm.tolist() == [-32767, -32767, 0, 16383, 32767, 32767]


def test_error_codes_are_stable() -> None:
    codes = {
        cls.code
        for cls in (UnknownVoice, UnknownSpeaker, InvalidParameter, VoiceLoadError, SynthesisError)
    }
    assert codes == {
        "unknown-voice",
        "unknown-speaker",
        "invalid-value",
        "voice-load-failed",
        "synthesis-failed",
    }
    assert issubclass(Cancelled, UtterdError)
