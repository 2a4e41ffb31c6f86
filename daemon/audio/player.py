"""The sound device: a PortAudio output stream fed from a ring buffer, per job, with flush and recovery.

Threads and who does what:

- callers (the speech worker): `play` converts and resamples outside any lock, then appends a
  piece marker (carrying the chunk's mark, if any) and the audio to the ring (blocking only when
  ~max_buffered_s is already queued); `end_job` appends an end marker; `flush` aborts the stream
  and clears the ring; `pause` asks the callback to hold at the job's next piece marker (nothing
  is dropped: the rest stays in the ring) and `resume` lets it go on.
- the PortAudio callback only copies from the ring, pads zeros, and notes what it saw in plain
  attributes; it never takes the player's locks, logs or emits.
- the supervisor thread (`utterd-player`) starts the stream when audio is queued, stops it once
  the callback has ended it, turns the callback's notes into events and reopens a failed device
  every `retry_interval_s`. Underruns are counted where more audio of a starved job arrives.
  While idle (device open, nothing queued) it sleeps until woken, without a timeout: an idle
  daemon should not wake the CPU (the eco profile counts wake-ups; it was once a second).
- the events thread (`utterd-player-events`) calls `on_event`, so a slow handler delays no audio.

The stream does not run while idle: the callback ends it (`CallbackStop`) once the ring cannot
fill another block without putting silence inside a job, and the supervisor restarts it when
enough audio waits (the device buffer plus `_START_BLOCKS` blocks, a whole job, or after
`_START_WAIT_S`: a start takes a device buffer at once). PortAudio's ALSA host API writes one device buffer of silence at every start, so a
file sink records that much silence before the audio of each (re)start.

Underruns (a job's audio ran out before the job ended, and more came) are gaps heard only on a
device that plays in real time. A device that takes audio faster than real time (the ALSA file
sink: PortAudio hands it blocks back to back) runs dry after every chunk while the job is still
being synthesized, and nobody hears a gap: the callback notices the pace (more frames taken
than the stream clock and the device's own delay allow), and such a device's underruns are logged
at DEBUG and neither counted nor reported.
"""

from __future__ import annotations

import enum
import importlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import soxr
from utterd.daemon.audio.alsa import release_unused_plugins
from utterd.daemon.audio.ring_buffer import RingBuffer
from utterd.daemon.settings import AudioSettings
from utterd.models.errors import UtterdError
from utterd.models.voice import AudioChunk, CancelToken, float_to_pcm16

_LOGGER = logging.getLogger(__name__)

PORTAUDIO_PACKAGE: Final = "libportaudio2"
"""Debian package providing the PortAudio library that sounddevice loads."""

_HEALTH_CHECK_S: Final = 0.25
"""How often the supervisor looks at a running stream even without news from PortAudio."""

_BACKPRESSURE_POLL_S: Final = 0.02
"""How often a blocked `play` looks for room (the callback never signals: it takes no locks)."""

_REMEMBERED_FLUSHED_JOBS: Final = 256
"""Flushed job ids kept so that late audio of a stopped job is dropped, not played."""

_MIN_RING_BLOCKS: Final = 4

_START_BLOCKS: Final = 2
"""A stopped stream starts once the device's buffer plus this many blocks of audio wait (or the
audio waiting is a whole job's). At a start PortAudio fills the device buffer and a block at
once (measured on the PulseAudio null sink: 768 frames within 0.4 ms at 23 ms latency and
256-frame blocks); a first chunk shorter than that ran dry at once and its next chunk counted
as an underrun (hibari's first window after the resampler's delay: 734 frames)."""

_START_WAIT_S: Final = 0.1
"""The longest the first audio waits for `_START_BLOCKS` (a slow engine starts anyway)."""

_PACE_SLACK_BLOCKS: Final = 0.5
"""Blocks a run may have taken beyond what real time allows (the frames its stream clock says
were heard, plus the device's reported delay) before the device counts as faster than real
time. On the PulseAudio null sink the excess stays at or below 0 (-4 frames) from the first
callback; on the ALSA file sink it grows by a block per callback (measured: 252, 507, 763
frames before the 2nd, 3rd, 4th block of 256 frames at 22.05 kHz), so a run is judged by its
2nd callback, the first that can run dry."""

_PACE_DRIFT: Final = 0.01
"""Share of the heard frames also allowed: a sound card's clock drifts from the system's by far
less (tens of ppm), so a long run on a real device is never taken for a fast one."""
_NO_FRAMES: Final[npt.NDArray[np.int16]] = np.zeros(0, dtype=np.int16)
_NO_SAMPLES: Final[npt.NDArray[np.float32]] = np.zeros(0, dtype=np.float32)


class DeviceUnavailable(UtterdError):
    """The sound device is missing or failed; the player retries it in the background."""

    code = "device-unavailable"


EventKind = Literal[
    "started", "played", "flushed", "underrun", "device", "mark", "paused", "resumed"
]


@dataclass(frozen=True)
class PlayerEvent:
    """Something the player reports, always from its own events thread."""

    kind: EventKind
    """`started`: the job's first sample went to the device (`at_s` says when); `played`: the
    job's last sample went to the device; `flushed`: the job's audio was dropped
    (flush, device fault, close); `underrun`: the job's audio ran out mid-job; `device`: the
    device became unavailable or available again; `mark`: the callback reached a mark given to
    `play` (its chunk's first sample goes to the device now); `paused`: a `pause` took effect,
    the job's audio holds at a piece boundary; `resumed`: a paused job's audio goes on."""

    job_id: str | None = None
    """The job concerned; None for `device`."""

    available: bool | None = None
    """For `device`: whether the device can be used now."""

    error: str | None = None
    """For `device` when unavailable: why, naming the device. For `flushed`: why the audio was
    dropped when it was not a `flush()` call (device lost, player closed)."""

    at_s: float | None = None
    """For `started` and `mark`: `time.monotonic()` when the PortAudio callback copied the job's
    first sample (of the marked chunk) into the device buffer."""

    mark: object = None
    """For `mark`: the value given to `play`."""


@dataclass(frozen=True)
class DeviceState:
    """The sound device as the player sees it now."""

    available: bool
    """True when audio can be played."""

    device_name: str
    """PortAudio's name of the device in use, or the configured device if none could be opened."""

    sample_rate_hz: int | None
    """Rate the stream is open at; None while unavailable."""

    error: str | None
    """Why the device is unavailable; None when available."""

    underruns: int
    """How often a job's audio ran out before the job ended and more of it came (synthesis
    slower than playback): a gap heard. Counted only on a device that plays in real time; a
    file sink's never are."""


@dataclass(frozen=True)
class PlayerHealth:
    """Whether the player's threads are moving, for the service watchdog (daemon/watchdog.py)."""

    supervisor_beat_s: float
    """`time.monotonic()` when the supervisor thread last went round its loop."""

    supervisor_sleep_s: float
    """The longest the supervisor said it would sleep after that beat before going round again:
    infinite while it waits idle for news (a thread blocked there is not stuck), 0 while it
    works or once it has ended."""

    callback_s: float | None
    """While the device stream is started: `time.monotonic()` of the PortAudio callback's last
    run (or of the start, if it has not run since); None while the stream is stopped."""


class _DeviceError(Exception):
    """Opening or rescanning the device failed; the message is for DeviceState.error."""


class _Phase(enum.Enum):
    """Whether the PortAudio stream is started (callback running or draining) or stopped."""

    STOPPED = "stopped"
    STARTED = "started"


@dataclass
class _Job:
    """A job with audio queued or to come, until its `played` or `flushed` event."""

    ended: bool = False
    """`end_job` was called: no more audio comes."""

    resampler: soxr.ResampleStream | None = None
    """Streaming resampler from `resampler_in_rate_hz` to the device rate, kept across chunks."""

    resampler_in_rate_hz: int = 0
    """Input rate of `resampler`."""

    next_mark: object = None
    """Mark for the next chunk (`mark_next`), None if none."""


class Player:
    """Plays jobs' audio chunks on one PortAudio output device, in order."""

    def __init__(
        self,
        settings: AudioSettings,
        default_rate_hz: int,
        on_event: Callable[[PlayerEvent], None],
        max_buffered_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._default_rate_hz = default_rate_hz
        self._on_event = on_event
        self._max_buffered_s = max_buffered_s
        self._block_frames = settings.block_frames

        # _stream_lock serializes PortAudio calls on the stream (start/stop/abort/close);
        # _lock guards jobs, ring membership and state. Order: _stream_lock, then _lock.
        self._stream_lock = threading.Lock()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._events: queue.SimpleQueue[PlayerEvent | None] = queue.SimpleQueue()

        self._sd: ModuleType | None = None
        self._stream: Any = None
        self._stream_phase = _Phase.STOPPED
        self._callback_stop: type[BaseException] = StopIteration
        self._callback_abort: type[BaseException] = StopIteration
        self._portaudio_error: type[Exception] = OSError
        self._ring = RingBuffer(self._block_frames * _MIN_RING_BLOCKS)

        self._available = False
        self._device_name = _describe_device(settings.device)
        self._device_rate_hz: int | None = None
        self._stream_rate_hz = float(default_rate_hz)
        self._error: str | None = "not started"
        self._underruns = 0
        self._reported_unavailable = False
        self._pending: dict[str, _Job] = {}
        self._flushed: dict[str, None] = {}
        self._next_retry_s = 0.0
        self._started = False
        self._closing = False

        # Written by the PortAudio callback, read by the supervisor: plain attributes, no locks.
        self._cb_finished: deque[str] = deque()
        # (job id, monotonic time) of each job whose first sample a callback copied out.
        self._cb_started: deque[tuple[str, float]] = deque()
        self._cb_last_job: str | None = None
        self._run_id = 0
        self._cb_stop_run_id = -1
        self._cb_error: str | None = None
        # A job that was open when the callback had to play silence or stop: if more of its
        # audio comes, there is a gap in it (an underrun).
        self._cb_starved_job: str | None = None
        # PortAudio stream time at which the last real sample has been heard.
        self._tail_until_s: float | None = None
        # The stream's pace, per run (reset by the supervisor before each start): the stream
        # time of the run's first callback and the frames handed out since. Once a run takes
        # audio faster than real time the device is marked so until it is reopened.
        self._cb_run_first_s: float | None = None
        self._cb_run_frames = 0
        self._cb_faster_than_real_time = False
        self._reported_pace = False
        # (job id, mark, monotonic time) of each mark a callback passed.
        self._cb_marks: deque[tuple[str, object, float]] = deque()
        # Pause: the job to hold at its next piece marker (set by `pause`, read by the callback),
        # the job the callback holds now, and the job whose `paused` event went out.
        self._hold_job: str | None = None
        self._cb_held_job: str | None = None
        self._reported_held: str | None = None
        # Liveness for the watchdog: (time, planned sleep) of the supervisor's last turn, the
        # callback's last run and the last stream start (plain attributes, no locks).
        self._supervisor_beat: tuple[float, float] = (time.monotonic(), 0.0)
        self._cb_ran_s = 0.0
        self._stream_started_s = 0.0
        # Frames a stopped stream waits for before starting (set per device), and since when
        # audio has been waiting for that.
        self._start_frames = self._block_frames
        self._waiting_since_s: float | None = None

        self._supervisor = threading.Thread(
            target=self._supervise, name="utterd-player", daemon=True
        )
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="utterd-player-events", daemon=True
        )

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        """The device's availability, name, rate, last error and underrun count."""
        with self._lock:
            return DeviceState(
                available=self._available,
                device_name=self._device_name,
                sample_rate_hz=self._device_rate_hz if self._available else None,
                error=self._error,
                underruns=self._underruns,
            )

    def health(self) -> PlayerHealth:
        """How recently the supervisor and the callback ran (see PlayerHealth)."""
        beat_s, sleep_s = self._supervisor_beat
        if not self._supervisor.is_alive():
            sleep_s = 0.0  # an ended supervisor never comes round, however long it meant to sleep
        started = self._stream_phase is _Phase.STARTED and not self._closing
        return PlayerHealth(
            supervisor_beat_s=beat_s,
            supervisor_sleep_s=sleep_s,
            callback_s=max(self._cb_ran_s, self._stream_started_s) if started else None,
        )

    def start(self) -> None:
        """Open the device (the stream starts only when audio comes); on failure retry later."""
        if self._started:
            return
        self._started = True
        self._dispatcher.start()
        try:
            opened = self._open_device(rescan=False)
        except _DeviceError as exc:
            self._device_failed(str(exc))
        else:
            self._install(*opened)
        self._supervisor.start()

    def mark_next(self, job_id: str, mark: object) -> None:
        """Report `mark` (in a `mark` event) when the next chunk `play` gets for `job_id` starts
        to play."""
        with self._lock:
            if job_id not in self._flushed:
                self._pending.setdefault(job_id, _Job()).next_mark = mark

    def play(self, job_id: str, chunk: AudioChunk, cancel: CancelToken | None = None) -> None:
        """Queue a chunk of `job_id` for playback, after everything queued before it.

        The chunk is one piece: a pause takes effect before a piece, never inside one.
        Blocks while ~max_buffered_s is already queued, until there is room or the job is
        flushed. Audio of a flushed job, or one whose `cancel` token is set, is dropped.
        Raises DeviceUnavailable while the device is missing.
        """
        with self._lock:
            self._check_usable()
            if self._dropped(job_id, cancel):
                return
            job = self._pending.setdefault(job_id, _Job())
            mark, job.next_mark = job.next_mark, None
            device_rate_hz = self._device_rate_hz
        assert device_rate_hz is not None
        self._enqueue(
            job_id, self._to_device_pcm(job, chunk, device_rate_hz), cancel, piece=True, mark=mark
        )

    def pause(self, job_id: str) -> None:
        """Hold `job_id`'s audio at its next piece boundary, keeping the rest for `resume`.

        Returns at once; a `paused` event follows when the hold takes effect (not if the job
        ends first). The device plays out what it already has and goes quiet.
        """
        with self._lock:
            if job_id in self._flushed:
                return
            self._hold_job = job_id
        self._wake.set()

    def resume(self, job_id: str) -> None:
        """Let `job_id`'s audio go on from where `pause` held it; `resumed` if it was held."""
        with self._lock:
            if self._hold_job != job_id and self._cb_held_job != job_id:
                return
            self._hold_job = None
            self._cb_held_job = None
            if self._reported_held == job_id:
                self._emit(PlayerEvent("resumed", job_id))
            self._reported_held = None
        self._wake.set()

    def end_job(self, job_id: str) -> None:
        """No more audio comes for `job_id`: emit `played` once its last sample is on its way.

        A job without audio gets its `played` too. While the device is unavailable the job gets
        `flushed` instead (its audio, if any, was dropped with the device).
        """
        with self._lock:
            if job_id in self._flushed:
                return
            if not self._available:
                self._pending.pop(job_id, None)
                self._remember_flushed(job_id)
                self._emit(PlayerEvent("flushed", job_id, error=self._error))
                return
            job = self._pending.setdefault(job_id, _Job())
            resampler, job.resampler = job.resampler, None
        if resampler is not None:
            tail = resampler.resample_chunk(_NO_SAMPLES, last=True)
            try:
                self._enqueue(job_id, float_to_pcm16(tail), None)
            except DeviceUnavailable:
                return  # the device fault already reported this job as flushed
        with self._lock:
            job_now = self._pending.get(job_id)
            if job_now is None or job_id in self._flushed:
                return
            job_now.ended = True
            if self._cb_starved_job == job_id:
                buffered, ended_frames, open_job = self._ring.snapshot()
                if open_job == job_id and buffered > ended_frames:
                    self._count_underrun_locked(job_id)  # its held-back frames follow a gap
                self._cb_starved_job = None
            self._ring.end_job(job_id)
        self._wake.set()

    def flush(self) -> None:
        """Stop now: drop all queued audio and what the device still buffers.

        Every job that had not been played gets a `flushed` event. Returns once the device is
        silent; the next `play` starts afresh.
        """
        with self._stream_lock:
            stream = self._stream
            if stream is not None and self._stream_phase is _Phase.STARTED:
                try:
                    stream.abort()  # Pa_AbortStream drops the device buffer; stop() would drain it
                except self._portaudio_error as exc:  # the supervisor sees if the device is gone
                    _LOGGER.warning("event=stream-abort-failed error=%r", str(exc))
                self._stream_phase = _Phase.STOPPED
            with self._lock:
                self._ring.clear()
                self._cb_starved_job = None
                self._clear_hold_locked()
                self._deliver_played_locked()
                self._flush_pending_locked()
        _LOGGER.debug("event=flushed")

    def close(self) -> None:
        """Stop the threads and the stream; pending jobs get `flushed`. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._room.notify_all()
        self._wake.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5.0)
        with self._stream_lock:
            stream, self._stream = self._stream, None
            self._stream_phase = _Phase.STOPPED
            if stream is not None:
                _close_quietly(stream)
            with self._lock:
                self._ring.clear()
                self._clear_hold_locked()
                self._deliver_played_locked()
                self._flush_pending_locked("the player is closed")
                self._available = False
                self._error = "the player is closed"
        self._events.put(None)
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout=5.0)

    # -- producer side ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        """Raise DeviceUnavailable unless audio can be queued; _lock held."""
        if self._closing:
            raise DeviceUnavailable("the audio player is closed")
        if not self._available:
            raise DeviceUnavailable(
                f"audio device {self._device_name!r} is unavailable: {self._error}"
            )

    def _dropped(self, job_id: str, cancel: CancelToken | None) -> bool:
        """Whether audio for the job must be dropped (stopped or flushed); _lock held."""
        return job_id in self._flushed or (cancel is not None and cancel.cancelled)

    def _to_device_pcm(
        self, job: _Job, chunk: AudioChunk, device_rate_hz: int
    ) -> npt.NDArray[np.int16]:
        """The chunk as int16 at the device rate; resampling state carries over between chunks."""
        samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
        parts: list[npt.NDArray[np.float32]] = []
        if job.resampler is not None and job.resampler_in_rate_hz != chunk.sample_rate_hz:
            parts.append(job.resampler.resample_chunk(_NO_SAMPLES, last=True))
            job.resampler = None
        if job.resampler is None and chunk.sample_rate_hz != device_rate_hz:
            job.resampler = soxr.ResampleStream(
                chunk.sample_rate_hz, device_rate_hz, 1, dtype="float32", quality="HQ"
            )
            job.resampler_in_rate_hz = chunk.sample_rate_hz
        parts.append(job.resampler.resample_chunk(samples) if job.resampler else samples)
        # Resample in float, convert once: soxr's overshoot is clipped by float_to_pcm16.
        return float_to_pcm16(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _enqueue(
        self,
        job_id: str,
        pcm: npt.NDArray[np.int16],
        cancel: CancelToken | None,
        piece: bool = False,
        mark: object = None,
    ) -> None:
        """Append to the ring (after a piece marker if `piece`), waiting for room; returns early
        if the job is flushed."""
        offset = 0
        with self._room:
            while True:
                self._check_usable()
                if self._dropped(job_id, cancel):
                    return
                self._pending.setdefault(job_id, _Job())
                if piece:
                    self._ring.start_piece(job_id, mark)
                    piece = False
                taken = self._ring.write(job_id, pcm[offset:])
                if taken and self._cb_starved_job == job_id:
                    self._count_underrun_locked(job_id)
                offset += taken
                self._wake.set()
                if offset >= len(pcm):
                    return
                self._room.wait(_BACKPRESSURE_POLL_S)

    # -- the PortAudio callback (PortAudio's thread) ------------------------------------------------

    def _callback(
        self, outdata: npt.NDArray[np.int16], frames: int, time_info: Any, status: Any
    ) -> None:
        run_id = self._run_id
        self._cb_ran_s = time.monotonic()
        try:
            stop = self._fill(
                outdata[:, 0], frames, time_info.currentTime, time_info.outputBufferDacTime, run_id
            )
        except Exception as exc:  # noqa: BLE001  # nothing may escape into PortAudio
            outdata.fill(0)
            self._cb_error = f"{type(exc).__name__}: {exc}"
            self._wake.set()
            raise self._callback_abort from None
        if stop:
            raise self._callback_stop

    def _fill(
        self,
        out: npt.NDArray[np.int16],
        frames: int,
        now_s: float,
        dac_s: float,
        run_id: int,
    ) -> bool:
        """Copy one block from the ring; True when the stream must end after this block.

        `now_s` and `dac_s` are PortAudio's stream time now and when this block will be heard.
        """
        self._note_pace(frames, now_s, dac_s)
        ring = self._ring
        hold = self._hold_job
        buffered, ended, _ = ring.snapshot()
        # A partial block is only played (and padded) at the end of an ended job: padding inside
        # a job would put silence into speech, and on a file sink into the recording.
        take = frames if buffered >= frames else ended
        if hold is None:
            written, finished = ring.read_into(out[:take])
            held = False
        else:
            written, finished = ring.read_into(out[:take], hold)
            held = ring.held
        if written < frames:
            out[written:] = 0
        marks = ring.take_marks()
        if marks:
            at_s = time.monotonic()
            self._cb_marks.extend((job_id, mark, at_s) for job_id, mark in marks)
            self._wake.set()
        if written and ring.last_read_job_id != self._cb_last_job:
            self._cb_last_job = ring.last_read_job_id
            if self._cb_last_job is not None:
                self._cb_started.append((self._cb_last_job, time.monotonic()))
                self._wake.set()
        if finished:
            self._cb_finished.extend(finished)
            self._wake.set()
        if held and self._cb_held_job != hold:
            self._cb_held_job = hold
            self._wake.set()
        buffered, ended, open_job = ring.snapshot()
        # Silence after some of an open job's audio: a gap in it if more of it comes (a pause's
        # silence is wanted, not a gap).
        starving = not held and open_job is not None and open_job == ring.last_read_job_id
        if written < frames and starving:
            self._cb_starved_job = open_job
        if not held and (buffered >= frames or ended > 0):
            self._tail_until_s = None
            return False
        # Dry or held. PortAudio's ALSA drain (after CallbackStop) drops what the device still
        # buffers, so play silence until our last sample has been heard, then stop; a device that
        # reports no delay (the file sink) stops at once and records no extra silence.
        if written > 0:
            self._tail_until_s = dac_s + written / self._stream_rate_hz if dac_s > now_s else now_s
        if self._tail_until_s is not None and now_s < self._tail_until_s:
            return False
        if starving:
            self._cb_starved_job = open_job
        self._cb_stop_run_id = run_id
        self._wake.set()
        return True

    def _note_pace(self, frames: int, now_s: float, dac_s: float) -> None:
        """Mark the device faster than real time when this run has taken more frames than its
        stream clock and the device's reported delay account for (callback thread)."""
        first_s = self._cb_run_first_s
        if first_s is None:
            self._cb_run_first_s = first_s = now_s
        if not self._cb_faster_than_real_time:
            heard = (now_s - first_s) * self._stream_rate_hz
            queued = max(0.0, dac_s - now_s) * self._stream_rate_hz
            allowed = heard * (1.0 + _PACE_DRIFT) + queued + _PACE_SLACK_BLOCKS * frames
            if self._cb_run_frames > allowed:
                self._cb_faster_than_real_time = True
                self._wake.set()
        self._cb_run_frames += frames

    def _on_stream_finished(self) -> None:
        self._wake.set()

    # -- supervisor thread -----------------------------------------------------------------------

    def _supervise(self) -> None:
        while True:
            sleep_s = self._supervisor_timeout_s()
            self._supervisor_beat = (time.monotonic(), sleep_s)
            self._wake.wait(None if math.isinf(sleep_s) else sleep_s)
            # Awake and working: from now on it counts as stuck once the watchdog's limit passes.
            self._supervisor_beat = (time.monotonic(), 0.0)
            self._wake.clear()
            if self._closing:
                return
            try:
                self._deliver_played()
                self._tend_stream()
                self._deliver_played()
                if not self._available and time.monotonic() >= self._next_retry_s:
                    self._retry()
            except Exception:  # a bug here must not end playback for good
                _LOGGER.exception("event=player-supervisor-error")
                time.sleep(_HEALTH_CHECK_S)

    def _supervisor_timeout_s(self) -> float:
        """How long to sleep unless woken; infinite while idle, where only news (audio, a
        callback, a pause, close) gives it work: no wake-ups on an idle daemon."""
        if self._stream_phase is _Phase.STARTED:
            return _HEALTH_CHECK_S
        if not self._available:
            return max(0.0, self._next_retry_s - time.monotonic())
        waiting_since = self._waiting_since_s
        if waiting_since is not None:  # audio waits for the start threshold: look again then
            return min(1.0, max(0.0, waiting_since + _START_WAIT_S - time.monotonic()))
        return math.inf

    def _deliver_played(self) -> None:
        if self._cb_faster_than_real_time and not self._reported_pace:
            self._reported_pace = True
            _LOGGER.info(
                "event=device-not-real-time device=%r underruns='not counted'", self._device_name
            )
        while self._cb_started:
            job_id, at_s = self._cb_started.popleft()
            self._emit(PlayerEvent("started", job_id, at_s=at_s))
        while self._cb_marks:
            job_id, mark, at_s = self._cb_marks.popleft()
            self._emit(PlayerEvent("mark", job_id, at_s=at_s, mark=mark))
        if self._cb_finished or self._cb_held_job != self._reported_held:
            with self._lock:
                held = self._cb_held_job
                if held is not None and held != self._hold_job:
                    # Resumed (or flushed) while the callback was stopping there: not held.
                    self._cb_held_job = held = None
                if held is not None and held != self._reported_held:
                    self._reported_held = held
                    self._emit(PlayerEvent("paused", held))
                self._deliver_played_locked()

    def _deliver_played_locked(self) -> None:
        """Emit `played` for jobs whose end marker the callback passed; _lock held."""
        while self._cb_finished:
            job_id = self._cb_finished.popleft()
            if self._hold_job == job_id:
                self._hold_job = None  # it ended before a piece boundary: nothing left to hold
            if self._pending.pop(job_id, None) is not None:
                self._emit(PlayerEvent("played", job_id))

    def _clear_hold_locked(self) -> None:
        """Forget any pause (the ring it held was cleared); _lock held."""
        self._hold_job = None
        self._cb_held_job = None
        self._reported_held = None

    def _tend_stream(self) -> None:
        """Notice a stream that ended, start one when audio waits; PortAudio calls only here."""
        with self._stream_lock:
            stream = self._stream
            if stream is None or self._closing:
                return
            if self._stream_phase is _Phase.STARTED:
                if self._cb_error is not None:
                    self._fault_locked(f"audio callback failed: {self._cb_error}")
                    return
                if stream.active:
                    return
                self._stream_phase = _Phase.STOPPED
                if self._cb_stop_run_id != self._run_id:
                    self._fault_locked(f"audio stream on {self._device_name!r} stopped by itself")
                    return
                try:
                    stream.stop()  # already drained; stop() makes it startable again
                except self._portaudio_error as exc:
                    self._fault_locked(f"stopping the audio stream failed: {exc}")
                    return
            buffered, ended, _ = self._ring.snapshot()
            holding = self._cb_held_job is not None
            now_s = time.monotonic()
            if holding or buffered == 0:
                self._waiting_since_s = None
            elif self._waiting_since_s is None:
                self._waiting_since_s = now_s
            primed = (
                buffered >= self._start_frames
                or ended > 0
                or (
                    self._waiting_since_s is not None
                    and now_s - self._waiting_since_s >= _START_WAIT_S
                )
            )
            if not holding and (buffered >= self._block_frames or ended > 0) and primed:
                self._waiting_since_s = None
                self._run_id += 1
                self._cb_error = None
                self._tail_until_s = None
                self._cb_run_first_s = None
                self._cb_run_frames = 0
                try:
                    stream.start()
                except self._portaudio_error as exc:
                    self._fault_locked(f"starting the audio stream failed: {exc}")
                    return
                self._stream_phase = _Phase.STARTED
                self._stream_started_s = time.monotonic()
            else:
                # Nothing to play (or paused): end markers at the head are jobs whose audio is
                # all out; a held piece marker stays.
                _, finished = self._ring.read_into(_NO_FRAMES, self._hold_job)
                self._cb_finished.extend(finished)
                marks = self._ring.take_marks()
                if marks:
                    at_s = time.monotonic()
                    self._cb_marks.extend((job_id, mark, at_s) for job_id, mark in marks)

    # -- device open, fault and retry ---------------------------------------------------------------

    def _import_sounddevice(self) -> ModuleType:
        if self._sd is not None:
            return self._sd
        try:
            sd = importlib.import_module("sounddevice")
        except OSError as exc:
            raise _DeviceError(
                f"PortAudio is not installed ({exc}); install the Debian package {PORTAUDIO_PACKAGE}"
            ) from exc
        except Exception as exc:  # sounddevice initializes PortAudio on import
            raise _DeviceError(f"PortAudio failed to initialize: {exc}") from exc
        self._sd = sd
        return sd

    def _open_device(self, rescan: bool) -> tuple[Any, str, int]:
        """Open (not start) an output stream on the configured device: (stream, name, rate_hz)."""
        sd = self._import_sounddevice()
        try:
            if rescan:
                # PortAudio lists devices once per initialization; a device that came back is
                # only seen after a fresh one.
                if getattr(sd, "_initialized", 1) > 0:
                    sd._terminate()
                sd._initialize()
            index, name = self._resolve_device(sd)
            rate_hz = self._settings.sample_rate_hz or self._default_rate_hz
            try:
                sd.check_output_settings(
                    device=index, channels=1, dtype="int16", samplerate=rate_hz
                )
            except sd.PortAudioError as exc:
                fallback_hz = int(sd.query_devices(index)["default_samplerate"])
                _LOGGER.warning(
                    "event=device-rate-refused device=%r rate_hz=%d fallback_hz=%d error=%r",
                    name,
                    rate_hz,
                    fallback_hz,
                    str(exc),
                )
                rate_hz = fallback_hz
            stream = sd.OutputStream(
                device=index,
                samplerate=rate_hz,
                channels=1,
                dtype="int16",
                blocksize=self._block_frames,
                latency=self._settings.latency_ms / 1000.0,
                callback=self._callback,
                finished_callback=self._on_stream_finished,
            )
        except _DeviceError:
            raise
        except Exception as exc:
            raise _DeviceError(f"cannot open audio device {self._device_name!r}: {exc}") from exc
        finally:
            # The device listing loaded every ALSA plugin the configuration names (alsa.py).
            release_unused_plugins()
        self._callback_stop = sd.CallbackStop
        self._callback_abort = sd.CallbackAbort
        self._portaudio_error = sd.PortAudioError
        return stream, name, rate_hz

    def _resolve_device(self, sd: ModuleType) -> tuple[int, str]:
        """The configured device as (PortAudio index, name); _DeviceError if there is none."""
        spec = self._settings.device
        devices = list(sd.query_devices())
        outputs = [(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
        if spec is None:
            index = int(sd.default.device[1])
            if index < 0 and outputs:
                index = outputs[0][0]
            if not 0 <= index < len(devices) or devices[index]["max_output_channels"] <= 0:
                raise _DeviceError("no default audio output device")
            return index, str(devices[index]["name"])
        if isinstance(spec, int):
            if 0 <= spec < len(devices) and devices[spec]["max_output_channels"] > 0:
                return spec, str(devices[spec]["name"])
            raise _DeviceError(
                f"audio device #{spec} is not an output device (outputs: {_names(outputs)})"
            )
        for index, device in outputs:
            if spec.casefold() in str(device["name"]).casefold():
                return index, str(device["name"])
        raise _DeviceError(f"no audio output device matches {spec!r} (outputs: {_names(outputs)})")

    def _install(self, stream: Any, name: str, rate_hz: int) -> None:
        """Make an opened stream current and the device available."""
        with self._stream_lock:
            self._stream = stream
            self._stream_phase = _Phase.STOPPED
            with self._lock:
                if rate_hz != self._device_rate_hz:
                    capacity = max(
                        int(self._max_buffered_s * rate_hz), self._block_frames * _MIN_RING_BLOCKS
                    )
                    self._ring = RingBuffer(capacity)
                self._ring.clear()
                self._clear_hold_locked()
                self._device_name = name
                self._device_rate_hz = rate_hz
                self._stream_rate_hz = float(rate_hz)
                self._start_frames = (
                    round(float(stream.latency) * rate_hz) + _START_BLOCKS * self._block_frames
                )
                self._waiting_since_s = None
                self._cb_starved_job = None
                self._cb_faster_than_real_time = False
                self._reported_pace = False
                self._available = True
                self._error = None
                if self._reported_unavailable:
                    self._reported_unavailable = False
                    self._emit(PlayerEvent("device", available=True))
        _LOGGER.info(
            "event=device-open device=%r rate_hz=%d latency_ms=%.1f block_frames=%d",
            name,
            rate_hz,
            stream.latency * 1000.0,
            self._block_frames,
        )

    def _fault_locked(self, error: str) -> None:
        """The stream failed: close it and report; _stream_lock held."""
        stream, self._stream = self._stream, None
        self._stream_phase = _Phase.STOPPED
        if stream is not None:
            _close_quietly(stream)
        self._device_failed(error)

    def _device_failed(self, error: str) -> None:
        """Mark the device unavailable, report it and the jobs dropped with it, plan a retry."""
        _LOGGER.warning("event=device-unavailable device=%r error=%r", self._device_name, error)
        with self._lock:
            self._available = False
            self._error = error
            self._ring.clear()
            self._clear_hold_locked()
            self._reported_unavailable = True
            self._emit(PlayerEvent("device", available=False, error=error))
            self._deliver_played_locked()
            self._flush_pending_locked(error)
            self._next_retry_s = time.monotonic() + self._settings.retry_interval_s

    def _retry(self) -> None:
        try:
            opened = self._open_device(rescan=True)
        except _DeviceError as exc:
            with self._lock:
                changed = str(exc) != self._error
                self._error = str(exc)
                self._next_retry_s = time.monotonic() + self._settings.retry_interval_s
            if changed:
                _LOGGER.warning("event=device-retry-failed error=%r", str(exc))
            return
        if self._closing:
            _close_quietly(opened[0])
            return
        self._install(*opened)

    # -- events ---------------------------------------------------------------------------------

    def _flush_pending_locked(self, reason: str | None = None) -> None:
        """Emit `flushed` for every pending job and drop its later audio; _lock held."""
        for job_id in self._pending:
            self._emit(PlayerEvent("flushed", job_id, error=reason))
            self._remember_flushed(job_id)
        self._pending.clear()
        self._room.notify_all()

    def _count_underrun_locked(self, job_id: str) -> None:
        """More audio of a job follows silence the device already played; _lock held."""
        self._cb_starved_job = None
        if self._cb_faster_than_real_time:
            # Nobody hears a gap on a device that takes audio faster than it plays.
            _LOGGER.debug("event=underrun-not-counted job=%s reason=not-real-time", job_id)
            return
        self._underruns += 1
        self._emit(PlayerEvent("underrun", job_id))
        _LOGGER.debug("event=underrun job=%s", job_id)

    def _remember_flushed(self, job_id: str) -> None:
        """Remember a flushed job (bounded), so its late audio is dropped; _lock held."""
        self._flushed[job_id] = None
        while len(self._flushed) > _REMEMBERED_FLUSHED_JOBS:
            del self._flushed[next(iter(self._flushed))]

    def _emit(self, event: PlayerEvent) -> None:
        self._events.put(event)

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                self._on_event(event)
            except Exception:  # the handler's bug must not stop later events
                _LOGGER.exception("event=player-event-handler-failed kind=%s", event.kind)


def _describe_device(spec: str | int | None) -> str:
    if spec is None:
        return "default"
    return f"#{spec}" if isinstance(spec, int) else spec


def _names(outputs: list[tuple[int, Any]]) -> str:
    return ", ".join(f"#{i} {d['name']!r}" for i, d in outputs) or "none"


def _close_quietly(stream: Any) -> None:
    """Abort and close a stream whose device may be gone; errors are logged, not raised."""
    try:
        stream.abort()
    except Exception as exc:  # noqa: BLE001  # a vanished device fails in its own ways
        _LOGGER.debug("event=stream-abort-failed error=%r", str(exc))
    try:
        stream.close()
    except Exception as exc:  # noqa: BLE001  # as above
        _LOGGER.debug("event=stream-close-failed error=%r", str(exc))
