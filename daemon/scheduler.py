"""The speech queue: one worker thread takes jobs in order, synthesizes and hands audio to the player.

Stop semantics: `stop()` cancels the job's token first and flushes the player second. The player
checks the token under its ring-buffer lock when audio arrives, so a chunk that was synthesized
before the stop can never be queued after the flush.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from utterd.models.errors import Cancelled, UtterdError
from utterd.models.voice import AudioChunk, CancelToken, SynthesisParams

from .jobs import Job, JobState, JobTable
from .protocol import CacheMode

_LOGGER = logging.getLogger(__name__)

EmitFn = Callable[[str, dict[str, Any]], None]


class Busy(UtterdError):
    """The playback queue is full."""

    code = "busy"


class UnknownJob(UtterdError):
    """No job with that id is known (never existed, or finished long ago)."""

    code = "unknown-job"


class DeviceLost(UtterdError):
    """The device failed while a job was playing; its remaining audio is lost."""

    code = "device-unavailable"


class SpeechSource(Protocol):
    def stream(
        self,
        text: str,
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        mode: CacheMode = "auto",
        slots: Mapping[str, str] | None = None,
    ) -> Iterator[AudioChunk]: ...


class AudioSink(Protocol):
    def play(self, job_id: str, chunk: AudioChunk, cancel: CancelToken | None = None) -> None: ...
    def end_job(self, job_id: str) -> None: ...
    def flush(self) -> None: ...


class Scheduler:
    """FIFO speech queue with stop; emits `begin`, `end`, `stopped` and `failed` events."""

    def __init__(self, source: SpeechSource, player: AudioSink, emit: EmitFn, max_queue: int) -> None:
        self._source = source
        self._player = player
        self._emit = emit
        self._max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._played: dict[str, threading.Event] = {}
        self._lost: dict[str, str] = {}
        self._closing = False
        self.jobs = JobTable()
        self.counters: dict[str, int] = {"accepted": 0, "done": 0, "stopped": 0, "failed": 0}
        self._thread = threading.Thread(target=self._run, name="utterd-speech", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- requests (socket loop thread) --------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._cond:
            if len(self._queue) >= self._max_queue:
                raise Busy(f"the speech queue is full ({self._max_queue} jobs); try again later")
            self._queue.append(job)
            self.jobs.add(job)
            self.counters["accepted"] += 1
            self._cond.notify()

    def stop(self, job_id: str | None = None) -> list[str]:
        """Stop one job (queued or speaking), or everything; returns the ids stopped."""
        with self._cond:
            if job_id is None:
                dropped = list(self._queue)
                self._queue.clear()
                current = self._current
            else:
                dropped = [j for j in self._queue if j.job_id == job_id]
                for j in dropped:
                    self._queue.remove(j)
                current = self._current if self._current and self._current.job_id == job_id else None
                if not dropped and current is None:
                    known = self.jobs.get(job_id)
                    if known is None:
                        raise UnknownJob(f"no job {job_id!r}")
                    return []  # already finished: nothing to stop
        stopped: list[str] = []
        for job in dropped:
            job.cancel.cancel("stopped before it started")
            self._finish(job, JobState.STOPPED, "stopped before it started")
            stopped.append(job.job_id)
        if current is not None:
            current.cancel.cancel("stopped")
            self._player.flush()
            stopped.append(current.job_id)
        return stopped

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._current else 0)

    def current(self) -> Job | None:
        return self._current

    # -- player events (player thread) -----------------------------------------------------------
    def on_started(self, job_id: str | None, at_s: float | None) -> None:
        """The player handed the job's first sample to the device at `at_s` (monotonic)."""
        job = self.jobs.get(job_id) if job_id else None
        if job is not None and job.first_audio_s is None:
            job.first_audio_s = at_s

    def on_played(self, job_id: str | None, error: str | None = None) -> None:
        """The player handed the job's last sample to the device, or dropped its audio (`error`
        set when a device fault, not a stop, lost it)."""
        if job_id is None:
            return
        with self._cond:
            ev = self._played.get(job_id)
            if ev is not None and error:
                self._lost[job_id] = error
        if ev is not None:
            ev.set()

    # -- worker ------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.stop()
        self._thread.join(timeout=5)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if self._closing:
                return None
            job = self._queue.popleft()
            self._current = job
            self._played[job.job_id] = threading.Event()
            return job

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._speak(job)
            finally:
                with self._cond:
                    self._current = None
                    self._played.pop(job.job_id, None)
                    self._lost.pop(job.job_id, None)

    def _begin(self, job: Job) -> None:
        """The job's first audio goes to the player now (or it turned out to have none)."""
        job.state = JobState.SPEAKING
        self._emit("begin", {"job": job.job_id, "client": job.client, "voice": job.voice_id})
        _LOGGER.info("event=job-begin job=%s voice=%s chars=%d", job.job_id, job.voice_id, len(job.text))

    def _speak(self, job: Job) -> None:
        _LOGGER.debug("job=%s text=%r", job.job_id, job.text)
        played = self._played[job.job_id]
        try:
            chunks = self._source.stream(
                job.text, job.voice_id, job.params, job.cancel, mode=job.cache, slots=job.slots
            )
            for chunk in chunks:
                job.cancel.raise_if_cancelled()
                if job.state is JobState.QUEUED:
                    self._begin(job)
                self._player.play(job.job_id, chunk, job.cancel)
            job.cancel.raise_if_cancelled()
            if job.state is JobState.QUEUED:
                self._begin(job)
            self._player.end_job(job.job_id)
            while not played.wait(0.1):
                job.cancel.raise_if_cancelled()
            job.cancel.raise_if_cancelled()
            with self._cond:
                lost = self._lost.pop(job.job_id, None)
            if lost:
                raise DeviceLost(f"the sound device failed during playback: {lost}")
        except Cancelled as exc:
            self._finish(job, JobState.STOPPED, exc.message)
            return
        except UtterdError as exc:
            self._player.flush()
            self._finish(job, JobState.FAILED, exc.message, exc.code)
            return
        except Exception as exc:  # an engine bug must not kill the speech thread
            _LOGGER.exception("event=job-crash job=%s", job.job_id)
            self._player.flush()
            self._finish(job, JobState.FAILED, f"{type(exc).__name__}: {exc}", "internal-error")
            return
        self._finish(job, JobState.DONE, None)

    def _finish(self, job: Job, state: JobState, reason: str | None, code: str | None = None) -> None:
        job.state = state
        job.error = reason
        data: dict[str, Any] = {
            "job": job.job_id,
            "client": job.client,
            "first_audio_ms": job.first_audio_ms,
        }
        with self._cond:
            self.counters[state.value] += 1
        if state is JobState.DONE:
            self._emit("end", data)
            _LOGGER.info("event=job-end job=%s", job.job_id)
        elif state is JobState.STOPPED:
            self._emit("stopped", {**data, "reason": reason})
            _LOGGER.info("event=job-stopped job=%s reason=%r", job.job_id, reason)
        else:
            self._emit("failed", {**data, "code": code, "message": reason})
            _LOGGER.warning("event=job-failed job=%s code=%s reason=%r", job.job_id, code, reason)
        self.jobs.add(job)
