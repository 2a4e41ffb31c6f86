"""A job: one request to speak, from queueing to its single terminal state."""

from __future__ import annotations

import enum
import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.speech.priorities import Priority
from utterd.daemon.speech.text_stream import TextStream
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


@dataclass
class Job:
    """One `speak` request (or `speak-start` with the text that follows it)."""

    text: str
    """What to say."""

    voice_id: str
    """The voice, already resolved against the voice store."""

    params: SynthesisParams
    """Speaker, rate, volume, determinism."""

    cache: CacheMode = "auto"
    """Phrase cache use for this job: auto, refresh or off."""

    slots: dict[str, str] | None = None
    """Template slot values; when set, `text` is a template."""

    client: str = ""
    """Hex of the ZeroMQ routing id of the client that asked (for events and per-client stop)."""

    owner: str = ""
    """Whom `limits.max_queue_per_client` counts the job against: the client's Curve key, else
    its routing id (daemon/access.py `client_id`); empty for the daemon's own jobs (no limit)."""

    priority: Priority = "text"
    """How the job competes with others (daemon/speech/priorities.py)."""

    stream: TextStream | None = None
    """For `speak-start`: the text as it arrives (`text` is then empty); None for `speak`."""

    promoted: bool = False
    """A `progress` job kept as the last of its series: it waits with the `message` rank."""

    seq: int = 0
    """Arrival order (renewed on promotion), to keep first come, first served within a rank."""

    paused: bool = False
    """Its audio is held by a pause (the device went quiet at a piece boundary)."""

    job_id: str = field(default_factory=new_job_id)
    """Stable id returned to the client and carried by every event of this job."""

    cancel: CancelToken = field(default_factory=CancelToken)
    """Set by `stop`; every stage checks it."""

    state: JobState = JobState.QUEUED
    """Current state; changed only by the scheduler."""

    error: str | None = None
    """Why the job failed or was stopped."""

    created_s: float = field(default_factory=time.monotonic)
    """When the request was received (monotonic clock)."""

    first_audio_s: float | None = None
    """When the job's first sample was handed to the device (monotonic clock)."""

    @property
    def first_audio_ms(self) -> float | None:
        """Time to first audio: request received to first sample handed to the device."""
        if self.first_audio_s is None:
            return None
        return round((self.first_audio_s - self.created_s) * 1000.0, 3)


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
        finished = [k for k, j in self._jobs.items() if j.state.terminal]
        for key in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[key]
