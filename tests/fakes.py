"""Fakes shared by the unit tests: a scripted PortAudio (`sounddevice`) for the player, and a
fake voice, a fake player and an event log for the scheduler. No sound device, no model.

tests/ is on sys.path (pytest puts the rootdir conftest's folder there), so a test imports these
as `from fakes import FakeSoundDevice`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pytest
from player_driver import nonzero_signal
from utterd.daemon.audio.player import Player, PlayerEvent
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.settings import AudioSettings
from utterd.daemon.speech.scheduler import Scheduler
from utterd.models.voice import AudioChunk, CancelToken, SynthesisParams, float_to_pcm16

# -- a scripted PortAudio for the player -------------------------------------------------------

FAKE_RATE_HZ: Final = 22050
"""Rate of the players `start_player` makes and of the chunks `noise_chunk` makes."""

FAKE_BLOCK_FRAMES: Final = 256
"""Frames per callback of a fake stream with the player's default settings."""


class FakePortAudioError(Exception):
    pass


class FakeCallbackStop(Exception):
    pass


class FakeCallbackAbort(Exception):
    pass


class FakeTime:
    def __init__(self, now_s: float, dac_s: float) -> None:
        self.currentTime = now_s
        self.outputBufferDacTime = dac_s


class FakeStream:
    """An output stream whose callback runs only when the test pumps it."""

    def __init__(self, sd: FakeSoundDevice, **kwargs: Any) -> None:
        self.sd = sd
        self.device: int = kwargs["device"]
        self.samplerate: int = kwargs["samplerate"]
        self.blocksize: int = kwargs["blocksize"]
        self.latency: float = kwargs["latency"]
        self.callback = kwargs["callback"]
        self.finished_callback = kwargs["finished_callback"]
        assert kwargs["channels"] == 1 and kwargs["dtype"] == "int16"
        self.active = False
        self.stopped = True
        self.closed = False
        self.starts = 0
        self.blocks: list[npt.NDArray[np.int16]] = []
        self.now_s = 0.0
        sd.streams.append(self)

    def start(self) -> None:
        if self.sd.fail_start:
            raise FakePortAudioError("Error starting stream: Device unavailable")
        if not self.stopped:
            raise FakePortAudioError("Error starting stream: Stream is not stopped")
        self.active, self.stopped = True, False
        self.starts += 1

    def stop(self) -> None:
        self.active, self.stopped = False, True

    def abort(self) -> None:
        self.active, self.stopped = False, True

    def close(self) -> None:
        self.active, self.closed = False, True

    def pump(self, max_blocks: int = 1000) -> int:
        """Call the callback as PortAudio would, until it stops; returns blocks played."""
        ran = 0
        while self.active and ran < max_blocks:
            out = np.full((self.blocksize, 1), -1, dtype=np.int16)  # garbage unless written
            t = FakeTime(self.now_s, self.now_s + self.sd.delay_s)
            ended = False
            try:
                self.callback(out, self.blocksize, t, 0)
            except FakeCallbackStop:
                ended = True
            except FakeCallbackAbort:
                self.active = False
                self.finished_callback()
                return ran
            self.blocks.append(out[:, 0].copy())
            self.now_s += self.blocksize / self.samplerate
            ran += 1
            if ended:
                self.active = False
                self.finished_callback()
        return ran

    def die(self) -> None:
        """The device vanished: PortAudio ends the stream without the callback asking."""
        self.active = False
        self.finished_callback()

    def output(self) -> npt.NDArray[np.int16]:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int16)


class FakeSoundDevice:
    """Just enough of the sounddevice module for the player."""

    PortAudioError = FakePortAudioError
    CallbackStop = FakeCallbackStop
    CallbackAbort = FakeCallbackAbort

    def __init__(self) -> None:
        self.devices: list[dict[str, Any]] = [
            {"name": "Built-in Mic", "max_output_channels": 0, "default_samplerate": 48000.0},
            {"name": "HDMI 0", "max_output_channels": 2, "default_samplerate": 48000.0},
            {"name": "USB Speaker", "max_output_channels": 2, "default_samplerate": 44100.0},
        ]
        self.default = type("Default", (), {"device": (0, 2)})()
        self.rates_hz: set[int] | None = None  # None: any rate
        self.delay_s = 0.0
        self.fail_start = False
        self.streams: list[FakeStream] = []
        self._initialized = 1
        self.rescans = 0

    def _terminate(self) -> None:
        self._initialized -= 1

    def _initialize(self) -> None:
        self._initialized += 1
        self.rescans += 1

    def query_devices(self, index: int | None = None) -> Any:
        return self.devices if index is None else self.devices[index]

    def check_output_settings(self, **kwargs: Any) -> None:
        if self.rates_hz is not None and kwargs["samplerate"] not in self.rates_hz:
            raise FakePortAudioError("Invalid sample rate")

    def OutputStream(self, **kwargs: Any) -> FakeStream:  # sounddevice's name
        return FakeStream(self, **kwargs)


@pytest.fixture(name="fake_sd")
def fake_sd_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    """The fixture `fake_sd`: the fake PortAudio, installed as the `sounddevice` module for the
    test. A test module imports `fake_sd_fixture` to use it (pytest finds it by that name)."""
    sd = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


class PlayerEvents:
    """The player's events, as its `on_event` receives them."""

    def __init__(self) -> None:
        self.items: list[PlayerEvent] = []

    def __call__(self, event: PlayerEvent) -> None:
        self.items.append(event)

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(e.kind, e.job_id) for e in self.items if e.kind != "started"]


def start_player(events: PlayerEvents, max_buffered_s: float = 30.0, **settings: Any) -> Player:
    """A started player at FAKE_RATE_HZ (on the fake PortAudio when `fake_sd` is in use)."""
    base: dict[str, Any] = {"sample_rate_hz": FAKE_RATE_HZ, "retry_interval_s": 0.05}
    player = Player(
        AudioSettings(**{**base, **settings}),
        default_rate_hz=FAKE_RATE_HZ,
        on_event=events,
        max_buffered_s=max_buffered_s,
    )
    player.start()
    return player


def noise_chunk(count: int, seed: int) -> AudioChunk:
    """`count` samples of noise with no zero sample once converted to int16."""
    return AudioChunk(nonzero_signal(count, seed), FAKE_RATE_HZ)


def noise_pcm(count: int, seed: int) -> npt.NDArray[np.int16]:
    """`noise_chunk(count, seed)` as the device receives it."""
    return float_to_pcm16(nonzero_signal(count, seed))


def wait_until(predicate: Callable[[], object], timeout_s: float = 3.0) -> None:
    """Wait for another thread to make `predicate` true; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.002)


# -- a fake voice, a fake player and an event log for the scheduler ----------------------------

SPEECH_RATE_HZ: Final = 16000
"""Rate of the fake voice's audio."""

Hook = Callable[[str], None]
"""Called with the name of the moment a job has reached ("synthesis", "play", "end_job",
"played"), so a test can act at that exact moment."""


def _no_hook(_moment: str) -> None:
    pass


class FakeSource:
    """A voice (with its phrase cache) for the scheduler: `chunks` small chunks per text, one
    sentence, the cancel token checked between them as a real voice does. A text that `hold`
    names stops after its first chunk (the job has begun and is speaking) until `release`."""

    def __init__(self, hook: Hook = _no_hook, chunks: int = 3) -> None:
        self.hook = hook
        self.chunks = chunks
        self.texts: list[str] = []
        """Every text the scheduler asked for, in order."""
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def hold(self, text: str) -> None:
        with self._lock:
            self._gates[text] = threading.Event()

    def release(self, text: str) -> None:
        with self._lock:
            self._gates[text].set()

    def stream(
        self,
        text: str,
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        mode: CacheMode = "auto",
        slots: Mapping[str, str] | None = None,
    ) -> Iterator[AudioChunk]:
        with self._lock:
            self.texts.append(text)
            gate = self._gates.get(text)
        self.hook("synthesis")
        for index in range(self.chunks):
            cancel.raise_if_cancelled()
            yield AudioChunk(np.full(160, 0.1, np.float32), SPEECH_RATE_HZ)
            if index == 0 and gate is not None:
                while not gate.wait(0.005):
                    cancel.raise_if_cancelled()


class FakePlayer:
    """Plays at once: a job's first chunk reports `started`, a mark reports when the next chunk
    plays, `end_job` reports `played`. `flush` drops what is queued and reports those jobs
    `played` (flushed), as the player does. `pause` and `resume` report `paused` and `resumed`
    at once; a paused job's `played` waits for its `resume`."""

    def __init__(self, hook: Hook = _no_hook) -> None:
        self.hook = hook
        self.scheduler: Scheduler | None = None
        self.flushes = 0
        """How often the device buffer was cleared."""
        self._pending: set[str] = set()
        self._flushed: set[str] = set()
        self._paused: set[str] = set()
        self._ended_paused: set[str] = set()
        self._marks: dict[str, object] = {}

    def holds_end_of(self, job_id: str) -> bool:
        """The job's audio is all queued but a pause holds it (its `played` waits)."""
        return job_id in self._ended_paused

    def _scheduler(self) -> Scheduler:
        assert self.scheduler is not None, "set FakePlayer.scheduler first"
        return self.scheduler

    def play(self, job_id: str, chunk: AudioChunk, cancel: CancelToken | None = None) -> None:
        self.hook("play")
        scheduler = self._scheduler()
        if job_id in self._flushed or (cancel is not None and cancel.cancelled):
            return
        if job_id not in self._pending:
            self._pending.add(job_id)
            scheduler.on_started(job_id, time.monotonic())
        mark = self._marks.pop(job_id, None)
        if mark is not None:
            scheduler.on_mark(job_id, mark)

    def mark_next(self, job_id: str, mark: object) -> None:
        self._marks[job_id] = mark

    def end_job(self, job_id: str) -> None:
        self.hook("end_job")
        scheduler = self._scheduler()
        if job_id in self._flushed:
            return
        self._pending.discard(job_id)
        if job_id in self._paused:
            self._ended_paused.add(job_id)
            return
        scheduler.on_played(job_id)
        self.hook("played")

    def flush(self) -> None:
        self.flushes += 1
        scheduler = self._scheduler()
        for job_id in sorted(self._pending | self._ended_paused):
            self._flushed.add(job_id)
            scheduler.on_played(job_id)
        self._pending.clear()
        self._ended_paused.clear()
        self._marks.clear()

    def pause(self, job_id: str) -> None:
        self._paused.add(job_id)
        self._scheduler().on_paused(job_id)

    def resume(self, job_id: str) -> None:
        scheduler = self._scheduler()
        self._paused.discard(job_id)
        scheduler.on_resumed(job_id)
        if job_id in self._ended_paused:
            self._ended_paused.discard(job_id)
            scheduler.on_played(job_id)
            self.hook("played")


class EventLog:
    """The scheduler's `emit`: every event in order, from whichever thread emitted it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.items.append((kind, data))
            self._cond.notify_all()

    def of(self, job_id: str) -> list[str]:
        """The kinds of a job's events, in order."""
        with self._cond:
            return [kind for kind, data in self.items if data.get("job") == job_id]

    def data(self, job_id: str, kind: str) -> dict[str, Any]:
        """The data of the job's first event of that kind."""
        with self._cond:
            return next(d for k, d in self.items if k == kind and d.get("job") == job_id)

    def order(self, kind: str) -> list[str]:
        """The jobs that had an event of that kind, in the order of those events."""
        with self._cond:
            return [str(data["job"]) for k, data in self.items if k == kind]

    def wait(self, job_id: str, kind: str, timeout_s: float = 5.0) -> None:
        """Wait until the job has had an event of that kind; AssertionError after `timeout_s`."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: any(k == kind and d.get("job") == job_id for k, d in self.items),
                timeout_s,
            ):
                raise AssertionError(f"no {kind!r} for job {job_id}: {self.items}")

    def wait_end(self, job_id: str, timeout_s: float = 5.0) -> str:
        """Wait for the job's terminal event (`end`, `stopped` or `failed`); returns its kind."""
        terminal = ("end", "stopped", "failed")
        with self._cond:
            if not self._cond.wait_for(
                lambda: any(k in terminal and d.get("job") == job_id for k, d in self.items),
                timeout_s,
            ):
                raise AssertionError(f"job {job_id} did not end: {self.items}")
            return next(k for k, d in self.items if k in terminal and d.get("job") == job_id)
