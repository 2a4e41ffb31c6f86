"""A job: one request to speak, from queueing to its single terminal state.

A job is two parts with different owners: what was asked (`JobRequest`, frozen, readable from
any thread without a lock) and where it is (`JobStatus`, written by the socket loop, the speech
thread and the player thread, every write under the status's own lock).
"""

from __future__ import annotations

import enum
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.speech.priorities import Priority
from utterd.daemon.speech.text_stream import TextStream
from utterd.models.text.segments import Sentence
from utterd.models.voice import CancelToken, SynthesisParams


class JobState(enum.Enum):
    """Where a job is. Every accepted job reaches exactly one terminal state."""

    QUEUED = "queued"
    SPEAKING = "speaking"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.STOPPED, JobState.FAILED)


_COUNTER = itertools.count(1)
_PREFIX = f"{os.getpid():x}"


def new_job_id() -> str:
    """Unique within this daemon's lifetime and unlikely to repeat across restarts."""
    return f"j{_PREFIX}-{next(_COUNTER)}"


@dataclass(frozen=True)
class JobRequest:
    """What a `speak` (or `speak-start`) asked for; never changes once the job exists."""

    text: str
    """What to say (empty for a streamed job: its text arrives through `stream`)."""

    voice_id: str
    """The voice, already resolved against the voice store."""

    params: SynthesisParams
    """Speaker, rate, volume, determinism."""

    cache: CacheMode = "auto"
    """Phrase cache use for this job: auto, refresh or off."""

    slots: Mapping[str, str] | None = None
    """Template slot values; when set, `text` is a template."""

    client: str = ""
    """Hex of the ZeroMQ routing id of the client that asked (for events and per-client stop)."""

    owner: str = ""
    """Whom `limits.max_queue_per_client` counts the job against: the client's Curve key, else
    its routing id (daemon/access.py `client_id`); empty for the daemon's own jobs (no limit)."""

    priority: Priority = "text"
    """How the job competes with others (daemon/speech/priorities.py)."""

    stream: TextStream | None = None
    """For `speak-start`: the text as it arrives (`text` is then empty); None for `speak`.
    The stream object is thread-safe; the reference to it never changes."""

    created_s: float = 0.0
    """When the request was received (monotonic clock)."""

    ssml: tuple[Sentence, ...] | None = None
    """For a `speak` with `text_format: "ssml"`: the document, parsed when it was accepted
    (`text` is its source); None for plain text. A streamed SSML job parses in `stream`."""


@dataclass(frozen=True)
class JobSnapshot:
    """A job's status read at one instant (for the `job` reply: no field from another moment)."""

    state: JobState
    """Where the job was."""

    error: str | None
    """Why it failed or was stopped; None otherwise."""

    first_audio_ms: float | None
    """Time to first audio, once its first sample reached the device."""

    paused: bool
    """Its audio was held by a pause."""


class JobStatus:
    """Where a job is. Written by three threads (the socket loop queues and promotes it, the
    speech thread moves its state, the player thread reports first audio and pauses), so every
    write and every read goes through one lock; each method is one consistent step."""

    def __init__(self, created_s: float) -> None:
        self._lock = threading.Lock()
        self._created_s = created_s
        self._state = JobState.QUEUED
        self._error: str | None = None
        self._first_audio_s: float | None = None
        self._paused = False
        self._promoted = False
        self._seq = 0

    @property
    def state(self) -> JobState:
        """Current state; moved only by the scheduler."""
        with self._lock:
            return self._state

    @property
    def error(self) -> str | None:
        """Why the job failed or was stopped."""
        with self._lock:
            return self._error

    @property
    def first_audio_s(self) -> float | None:
        """When the job's first sample was handed to the device (monotonic clock)."""
        with self._lock:
            return self._first_audio_s

    @property
    def first_audio_ms(self) -> float | None:
        """Time to first audio: request received to first sample handed to the device."""
        with self._lock:
            return self._first_audio_ms()

    @property
    def paused(self) -> bool:
        """Its audio is held by a pause (the device went quiet at a piece boundary)."""
        with self._lock:
            return self._paused

    @property
    def promoted(self) -> bool:
        """A `progress` job kept as the last of its series: it waits with the `message` rank."""
        with self._lock:
            return self._promoted

    @property
    def seq(self) -> int:
        """Arrival order (renewed on promotion), first come, first served within a rank."""
        with self._lock:
            return self._seq

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self._state, self._error, self._first_audio_ms(), self._paused)

    def queued(self, seq: int) -> None:
        """The job joined the queue as the `seq`-th arrival."""
        with self._lock:
            self._seq = seq

    def promote(self, seq: int) -> None:
        """The job takes the `message` rank, behind the jobs that already hold it."""
        with self._lock:
            self._promoted = True
            self._seq = seq

    def begin(self) -> None:
        """The job's first audio goes to the player."""
        with self._lock:
            self._state = JobState.SPEAKING

    def end(self, state: JobState, error: str | None = None) -> None:
        """The job reached `state` (terminal); a pause no longer holds its audio."""
        if not state.terminal:
            raise ValueError(f"{state} is not a terminal state")
        with self._lock:
            self._state = state
            self._error = error
            self._paused = False

    def first_audio(self, at_s: float | None) -> bool:
        """The job's first sample reached the device at `at_s`; False if that was known."""
        with self._lock:
            if self._first_audio_s is not None:
                return False
            self._first_audio_s = at_s
            return True

    def set_paused(self, paused: bool) -> bool:
        """The job's audio holds (or goes on); False when it already did."""
        with self._lock:
            if self._paused == paused:
                return False
            self._paused = paused
            return True

    def _first_audio_ms(self) -> float | None:
        if self._first_audio_s is None:
            return None
        return round((self._first_audio_s - self._created_s) * 1000.0, 3)


class Job:
    """One `speak` request (or `speak-start` with the text that follows it): its request, its
    status, its id and its cancellation token. The request's and the status's fields are also
    readable on the job itself (`job.text`, `job.state`), for the reply and event builders."""

    __slots__ = ("_cancel", "_job_id", "request", "status")

    def __init__(
        self,
        text: str,
        voice_id: str,
        params: SynthesisParams,
        cache: CacheMode = "auto",
        slots: Mapping[str, str] | None = None,
        client: str = "",
        owner: str = "",
        priority: Priority = "text",
        stream: TextStream | None = None,
        *,
        created_s: float | None = None,
        job_id: str | None = None,
        ssml: tuple[Sentence, ...] | None = None,
    ) -> None:
        created = time.monotonic() if created_s is None else created_s
        self.request = JobRequest(
            text, voice_id, params, cache, slots, client, owner, priority, stream, created, ssml
        )
        """What was asked; frozen."""
        self.status = JobStatus(created)
        """Where the job is; locked."""
        self._job_id = new_job_id() if job_id is None else job_id
        self._cancel = CancelToken()

    def __repr__(self) -> str:
        return f"Job({self._job_id!r}, {self.request.priority}, {self.status.state.value})"

    @property
    def job_id(self) -> str:
        """Stable id returned to the client and carried by every event of this job."""
        return self._job_id

    @property
    def cancel(self) -> CancelToken:
        """Set by `stop`; every stage checks it."""
        return self._cancel

    # -- the request's fields ------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.request.text

    @property
    def voice_id(self) -> str:
        return self.request.voice_id

    @property
    def params(self) -> SynthesisParams:
        return self.request.params

    @property
    def cache(self) -> CacheMode:
        return self.request.cache

    @property
    def slots(self) -> Mapping[str, str] | None:
        return self.request.slots

    @property
    def ssml(self) -> tuple[Sentence, ...] | None:
        return self.request.ssml

    @property
    def client(self) -> str:
        return self.request.client

    @property
    def owner(self) -> str:
        return self.request.owner

    @property
    def priority(self) -> Priority:
        return self.request.priority

    @property
    def stream(self) -> TextStream | None:
        return self.request.stream

    @property
    def created_s(self) -> float:
        return self.request.created_s

    # -- the status's fields -------------------------------------------------------------------
    @property
    def state(self) -> JobState:
        return self.status.state

    @property
    def error(self) -> str | None:
        return self.status.error

    @property
    def first_audio_s(self) -> float | None:
        return self.status.first_audio_s

    @property
    def first_audio_ms(self) -> float | None:
        return self.status.first_audio_ms

    @property
    def paused(self) -> bool:
        return self.status.paused

    @property
    def promoted(self) -> bool:
        return self.status.promoted

    @property
    def seq(self) -> int:
        return self.status.seq


class JobTable:
    """Recent jobs by id, for `job` status requests; bounded so it never grows without limit."""

    def __init__(self, keep_finished: int = 1000) -> None:
        self._keep_finished = keep_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.job_id] = job
            self._trim()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _trim(self) -> None:
        if len(self._jobs) <= self._keep_finished:
            return  # nothing could go; spares reading every job's status on each add
        finished = [k for k, j in self._jobs.items() if j.state.terminal]
        for key in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[key]
