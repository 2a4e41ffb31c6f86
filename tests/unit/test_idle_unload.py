"""`voices.idle_unload_s`: the voice store unloads voices other than the default after that long
without use, reloads them on the next use (counted), and never unloads a voice a stream runs on.

A fake family (no model) and a fake clock: the store's unloading is called directly, except in
the one test of its own thread, which uses the real clock and a short idle time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from utterd.models import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceFamily,
    VoiceInfo,
    VoiceStore,
)

DEFAULT = "fake-default"
OTHER = "fake-other"
IDLE_S = 30.0


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class FakeVoice(Voice):
    """Three chunks of a tone per request; closing it makes every later request fail."""

    def __init__(self, info: VoiceInfo) -> None:
        self.info = info
        self.closed = False

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        for index in range(3):
            assert not self.closed, "a closed voice was asked to speak"
            yield AudioChunk(np.full(100, 0.1, np.float32), 16_000, sentence_end=index == 2)

    def close(self) -> None:
        self.closed = True


class FakeFamily(VoiceFamily):
    """Two voices; remembers every voice it loaded."""

    name = "fake"

    def __init__(self) -> None:
        self.loaded: list[FakeVoice] = []

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        return [VoiceInfo(voice_id, "fake", "en-US", 16_000) for voice_id in (DEFAULT, OTHER)]

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        voice = FakeVoice(info)
        self.loaded.append(voice)
        return voice


def make_store(
    clock: FakeClock, family: FakeFamily, idle_unload_s: float | None = IDLE_S
) -> VoiceStore:
    return VoiceStore(
        [family],
        [],
        EngineSettings(),
        idle_unload_s=idle_unload_s,
        keep_loaded=(DEFAULT,),
        clock=clock,
        unload_thread=False,
    )


def say(voice: Voice) -> int:
    return sum(len(c.samples) for c in voice.stream("hi", SynthesisParams(), CancelToken()))


def test_an_idle_voice_is_unloaded_and_reloaded_on_next_use() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family)
    voice = store.get(OTHER)
    assert say(voice) == 300
    clock.advance(IDLE_S - 1)
    assert store.unload_idle() == []
    assert store.is_loaded(OTHER)
    clock.advance(1)
    assert store.unload_idle() == [OTHER]
    assert not store.is_loaded(OTHER)
    assert family.loaded[0].closed
    # The same object the store handed out speaks again: the model is loaded once more.
    assert say(voice) == 300
    assert store.is_loaded(OTHER) and len(family.loaded) == 2
    assert store.get(OTHER) is voice
    stats = store.load_stats(OTHER)
    assert (stats["loads"], stats["reloads"], stats["idle_unloads"]) == (2, 1, 1)


def test_the_default_voice_stays_loaded() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family)
    store.get(DEFAULT)
    clock.advance(IDLE_S * 100)
    assert store.unload_idle() == []
    assert store.is_loaded(DEFAULT)


def test_without_idle_unload_s_nothing_is_unloaded() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family, idle_unload_s=None)
    store.get(OTHER)
    clock.advance(10**6)
    assert store.unload_idle() == []
    assert store.is_loaded(OTHER)


def test_each_use_restarts_the_idle_time() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family)
    voice = store.get(OTHER)
    for _ in range(5):
        clock.advance(IDLE_S * 0.8)
        say(voice)
        assert store.unload_idle() == []
    clock.advance(IDLE_S)
    assert store.unload_idle() == [OTHER]
    assert len(family.loaded) == 1


def test_a_voice_in_use_is_not_unloaded_until_its_stream_ends() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family)
    stream = store.get(OTHER).stream("hi", SynthesisParams(), CancelToken())
    first = next(stream)  # the stream runs: the voice is in use
    clock.advance(IDLE_S * 10)
    assert store.unload_idle() == []
    assert store.load_stats(OTHER)["in_use"] == 1
    rest = list(stream)  # nothing in flight is lost
    assert len(first.samples) + sum(len(c.samples) for c in rest) == 300
    assert store.load_stats(OTHER)["in_use"] == 0
    # Idle time counts from the end of the stream, not from its start.
    clock.advance(IDLE_S - 1)
    assert store.unload_idle() == []
    clock.advance(1)
    assert store.unload_idle() == [OTHER]


def test_an_abandoned_stream_releases_the_voice() -> None:
    clock, family = FakeClock(), FakeFamily()
    store = make_store(clock, family)
    stream = store.get(OTHER).stream("hi", SynthesisParams(), CancelToken())
    next(stream)
    stream.close()  # a stopped job drops its generator
    assert store.load_stats(OTHER)["in_use"] == 0
    clock.advance(IDLE_S)
    assert store.unload_idle() == [OTHER]


def test_idle_unload_s_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_unload_s"):
        make_store(FakeClock(), FakeFamily(), idle_unload_s=0.0)


def test_the_store_s_thread_unloads_at_the_deadline() -> None:
    family = FakeFamily()
    store = VoiceStore([family], [], EngineSettings(), idle_unload_s=0.2, keep_loaded=(DEFAULT,))
    store.get(DEFAULT)
    voice = store.get(OTHER)
    started = time.monotonic()
    while store.is_loaded(OTHER) and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert not store.is_loaded(OTHER)
    assert time.monotonic() - started >= 0.15  # not before its idle time
    assert store.is_loaded(DEFAULT)
    # Used again, it is loaded again and unloaded again by the same thread.
    assert say(voice) == 300
    while store.is_loaded(OTHER) and time.monotonic() - started < 20:
        time.sleep(0.02)
    assert store.load_stats(OTHER)["idle_unloads"] == 2
