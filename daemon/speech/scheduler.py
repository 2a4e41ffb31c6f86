"""The speech queue: one worker thread takes the next job by priority, synthesizes it and hands
the audio to the player; `stop`, `cancel`, `pause` and `resume` act on it from the socket loop.

Order and interruption follow speech-dispatcher's priorities (daemon/speech/priorities.py).

Stop semantics: stopping (or interrupting) a job cancels its token first and flushes the player
second, both under the queue lock, so the worker cannot start the next job in between and a chunk
synthesized before the stop can never be queued after the flush (the player checks the token
under its ring-buffer lock). The voice stays loaded; the next job starts normally. A job whose
last sample has been handed to the device commits to `end` under the same lock: from then on a
stop no longer finds it, so a job a stop's reply lists always ends `stopped`, and a job that ends
`end` was never cut (its events are `begin`, then `end`; or `begin`, then `stopped`; or, stopped
before its first audio reached the player, `stopped` alone).

Pause semantics: a paused job's audio holds at the next piece (chunk) boundary and nothing is
dropped: synthesis goes on into the player's buffer and playback continues on `resume`. While the
job speaking is paused it keeps the device: jobs behind it wait (SSIP lets other clients speak
meanwhile; utterd does not, yet). Waiting jobs of a paused target are skipped, not dropped.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.cache.phrase_source import bounded_audio
from utterd.daemon.speech.jobs import Job, JobState, JobTable
from utterd.daemon.speech.priorities import admit, rank
from utterd.daemon.speech.render import SsmlRenderer
from utterd.daemon.speech.text_stream import StreamClosed, TextStream
from utterd.models.errors import Cancelled, UtterdError
from utterd.models.text.segments import Sentence
from utterd.models.voice import AudioChunk, CancelToken, SynthesisParams

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


class NotPaused(UtterdError):
    """`resume` names a target that no `pause` with the same target holds."""

    code = "not-paused"


class NotAStream(UtterdError):
    """`speak-chunk` or `speak-stop` names a job made by `speak`, not `speak-start`."""

    code = "not-a-stream"


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


class Targetable(Protocol):
    """What a Target picks by: a speech job, or a `synthesize` in progress (daemon/server.py)."""

    @property
    def job_id(self) -> str: ...

    @property
    def client(self) -> str: ...


class AudioSink(Protocol):
    def play(self, job_id: str, chunk: AudioChunk, cancel: CancelToken | None = None) -> None: ...
    def mark_next(self, job_id: str, mark: object) -> None: ...
    def end_job(self, job_id: str) -> None: ...
    def flush(self) -> None: ...
    def pause(self, job_id: str) -> None: ...
    def resume(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class Target:
    """Whose jobs a stop, cancel, pause or resume is about: one job, one client's, or all."""

    job: str | None = None
    """One job id; None: by `client`."""

    client: str | None = None
    """A client id (hex routing id, as in events); None with `job` None: every client."""

    def matches(self, job: Targetable) -> bool:
        if self.job is not None:
            return job.job_id == self.job
        return self.client is None or job.client == self.client

    def describe(self) -> str:
        if self.job is not None:
            return f"job {self.job}"
        return f"client {self.client}" if self.client is not None else "all"


@dataclass(frozen=True)
class SentenceMark:
    """Where a sentence starts in a job's audio; reported when it starts to play."""

    sentence: int
    """0-based index of the sentence in the job."""

    offset_samples: int
    """Samples of the job's audio (at `sample_rate_hz`) before the sentence."""

    sample_rate_hz: int
    """Rate of the job's audio (the voice's rate)."""


@dataclass(frozen=True)
class ChunkMarks:
    """What to report when a chunk starts to play: a new sentence, SSML marks, or both."""

    sentence: SentenceMark | None
    """The sentence the chunk starts; None when it goes on with the one playing."""

    names: tuple[str, ...]
    """SSML `<mark>` names that fall where the chunk starts, in document order."""

    offset_samples: int
    """Samples of the job's audio before the chunk."""

    sample_rate_hz: int
    """Rate of the job's audio."""


class Scheduler:
    """Priority speech queue with stop, cancel, pause and resume; emits `begin`, `sentence`,
    `mark`, `paused`, `resumed`, `end`, `stopped` and `failed` events."""

    def __init__(
        self,
        source: SpeechSource,
        player: AudioSink,
        emit: EmitFn,
        max_queue: int,
        stream_idle_s: float = 30.0,
        max_queue_per_client: int | None = None,
        ssml: SsmlRenderer | None = None,
    ) -> None:
        """`ssml` speaks SSML jobs; None: the daemon takes no SSML (unit tests)."""
        self._source = source
        self._ssml = ssml
        self._player = player
        self._emit = emit
        self._max_queue = max_queue
        self._max_per_client = max_queue_per_client
        self._stream_idle_s = stream_idle_s
        self._waiting: list[Job] = []  # sorted by (rank, seq)
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._played: dict[str, threading.Event] = {}
        self._lost: dict[str, str] = {}
        self._closing = False
        self._seq = itertools.count(1)
        self._paused_all = False
        self._paused_clients: set[str] = set()
        self._paused_jobs: set[str] = set()
        self.jobs = JobTable()
        self.counters: dict[str, int] = {"accepted": 0, "done": 0, "stopped": 0, "failed": 0}
        self._thread = threading.Thread(target=self._run, name="utterd-speech", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- requests (socket loop thread) --------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job by the priority rules; it may interrupt, drop or be dropped at once."""
        dropped: list[tuple[Job, str]] = []
        with self._cond:
            if len(self._waiting) >= self._max_queue:
                raise Busy(f"the speech queue is full ({self._max_queue} jobs); try again later")
            if self._max_per_client is not None and job.owner:
                mine = sum(1 for j in self._waiting if j.owner == job.owner)
                if mine >= self._max_per_client:
                    raise Busy(
                        f"this client already has {mine} jobs waiting "
                        f"(limits.max_queue_per_client); try again later"
                    )
            job.status.queued(next(self._seq))
            self.jobs.add(job)
            self.counters["accepted"] += 1
            current = self._live_current()
            if job.priority in ("notification", "progress") and self._held(job):
                # SSIP: notification and progress messages received during a pause are not said.
                dropped.append((job, f"{job.priority} not said: its speech is paused"))
            else:
                admission = admit(job, current, self._waiting)
                if admission.drop_new:
                    dropped.append((job, admission.reason))
                else:
                    self._waiting.append(job)
                for other, why in admission.drop:
                    self._waiting.remove(other)
                    dropped.append((other, why))
                for other in admission.promote:
                    other.status.promote(next(self._seq))
                self._waiting.sort(key=lambda j: (rank(j), j.seq))
                # A job that a pause holds cannot speak now, so it silences nothing.
                if admission.interrupt_current and current is not None and not self._held(job):
                    self._interrupt_locked(current, admission.reason)
            self._cond.notify_all()
        _LOGGER.info(
            "event=job-queued job=%s client=%s priority=%s dropped=%d",
            job.job_id,
            job.client,
            job.priority,
            len(dropped),
        )
        for other, why in dropped:
            self._drop(other, why)

    def stop(self, target: Target) -> list[str]:
        """Silence the target's speaking job (a named job is also dropped if it waits); the queue
        goes on. Returns the ids stopped."""
        return self._stop(target, drop_waiting=target.job is not None)

    def cancel(self, target: Target) -> list[str]:
        """Stop the target's speaking job and drop its waiting jobs; returns the ids stopped."""
        return self._stop(target, drop_waiting=True)

    def _stop(self, target: Target, drop_waiting: bool) -> list[str]:
        dropped: list[Job] = []
        stopped: list[str] = []
        with self._cond:
            if target.job is not None:
                self._known(target.job)
            if drop_waiting:
                dropped = [j for j in self._waiting if target.matches(j)]
                for job in dropped:
                    self._waiting.remove(job)
            current = self._live_current()
            if current is not None and target.matches(current):
                self._interrupt_locked(current, "stopped")
                stopped.append(current.job_id)
        _LOGGER.info(
            "event=stop target=%s stopped=%s dropped=%d", target.describe(), stopped, len(dropped)
        )
        for job in dropped:
            self._drop(job, "stopped before it started")
        return stopped + [j.job_id for j in dropped]

    def pause(self, target: Target) -> list[str]:
        """Pause the target: its speaking job at the next piece boundary, its waiting (and, for a
        client or all, later) jobs until `resume`. Returns the ids of the jobs now paused."""
        with self._cond:
            if target.job is not None:
                job = self._known(target.job)
                if job.state.terminal:
                    return []
                self._paused_jobs.add(target.job)
            elif target.client is not None:
                self._paused_clients.add(target.client)
            else:
                self._paused_all = True
            current = self._live_current()
            if current is not None and self._held(current):
                self._player.pause(current.job_id)
            affected = [j.job_id for j in self._live_jobs() if target.matches(j) and self._held(j)]
        _LOGGER.info("event=pause target=%s jobs=%s", target.describe(), affected)
        return affected

    def resume(self, target: Target) -> list[str]:
        """End the pause made with the same target (no target ends every pause); returns the ids
        of the jobs no longer paused. UnknownJob for a job id never seen (as for `pause`);
        NotPaused if there is no such pause."""
        with self._cond:
            before = {j.job_id for j in self._live_jobs() if self._held(j)}
            if target.job is not None:
                self._known(target.job)
                if target.job not in self._paused_jobs:
                    raise NotPaused(f"job {target.job} is not paused by a pause of that job")
                self._paused_jobs.discard(target.job)
            elif target.client is not None:
                if target.client not in self._paused_clients:
                    raise NotPaused(f"client {target.client} is not paused by a pause of it")
                self._paused_clients.discard(target.client)
            else:
                if not (self._paused_all or self._paused_clients or self._paused_jobs):
                    raise NotPaused("nothing is paused")
                self._paused_all = False
                self._paused_clients.clear()
                self._paused_jobs.clear()
            current = self._live_current()
            if current is not None and not self._held(current):
                self._player.resume(current.job_id)
            affected = [
                j.job_id for j in self._live_jobs() if j.job_id in before and not self._held(j)
            ]
            self._cond.notify_all()
        _LOGGER.info("event=resume target=%s jobs=%s", target.describe(), affected)
        return affected

    def feed(self, job_id: str, text: str) -> None:
        """More text for a streamed job (`speak-chunk`)."""
        self._stream_of(job_id).feed(text)

    def close_text(self, job_id: str) -> None:
        """No more text for a streamed job (`speak-stop`)."""
        self._stream_of(job_id).close()

    def _stream_of(self, job_id: str) -> TextStream:
        job = self._known(job_id)
        if job.stream is None:
            raise NotAStream(f"job {job_id} was made by speak, not speak-start")
        if job.state.terminal:
            raise StreamClosed(f"job {job_id} has ended ({job.state.value}); its text is closed")
        return job.stream

    def finish(self) -> Job | None:
        """Start no job after the one speaking (shutdown with `finish`); returns that job, if any.

        Waiting jobs stay queued until `close` drops them.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            return self._live_current()

    def queue_length(self) -> int:
        with self._cond:
            return len(self._waiting) + (1 if self._current else 0)

    def current(self) -> Job | None:
        return self._current

    def pause_state(self) -> dict[str, Any]:
        """Pauses in force, for `describe`."""
        with self._cond:
            return {
                "all": self._paused_all,
                "clients": sorted(self._paused_clients),
                "jobs": sorted(self._paused_jobs),
            }

    # -- helpers (queue lock held) -------------------------------------------------------------
    def _known(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r}")
        return job

    def _live_current(self) -> Job | None:
        """The job speaking, unless it is already being stopped or has committed to its end."""
        current = self._current
        if current is None or current.cancel.cancelled or current.state.terminal:
            return None
        return current

    def _live_jobs(self) -> list[Job]:
        current = self._live_current()
        return ([current] if current is not None else []) + self._waiting

    def _held(self, job: Job) -> bool:
        """Whether a pause holds the job."""
        return (
            self._paused_all
            or job.client in self._paused_clients
            or job.job_id in self._paused_jobs
        )

    def _interrupt_locked(self, job: Job, reason: str) -> None:
        """Stop the speaking job now: token first, then the device (see the module docstring)."""
        job.cancel.cancel(reason)
        if job.stream is not None:
            job.stream.abort()
        self._player.flush()

    def _drop(self, job: Job, reason: str) -> None:
        """A job that never spoke ends `stopped`."""
        job.cancel.cancel(reason)
        self._finish(job, JobState.STOPPED, reason)

    # -- player events (player thread) -----------------------------------------------------------
    def on_started(self, job_id: str | None, at_s: float | None) -> None:
        """The player handed the job's first sample to the device at `at_s` (monotonic)."""
        job = self.jobs.get(job_id) if job_id else None
        if job is not None:
            job.status.first_audio(at_s)

    def on_mark(self, job_id: str | None, mark: object) -> None:
        """A sentence of the job, or a chunk with SSML marks, starts to play."""
        job = self.jobs.get(job_id) if job_id else None
        if job is None or not isinstance(mark, ChunkMarks) or job.cancel.cancelled:
            return
        if mark.sentence is not None:
            self._emit(
                "sentence",
                {
                    "job": job.job_id,
                    "client": job.client,
                    "sentence": mark.sentence.sentence,
                    "offset_samples": mark.sentence.offset_samples,
                    "sample_rate_hz": mark.sentence.sample_rate_hz,
                },
            )
        for name in mark.names:
            self._emit(
                "mark",
                {
                    "job": job.job_id,
                    "client": job.client,
                    "name": name,
                    "offset_samples": mark.offset_samples,
                    "sample_rate_hz": mark.sample_rate_hz,
                },
            )

    def on_paused(self, job_id: str | None) -> None:
        """The job's audio holds at a piece boundary."""
        job = self.jobs.get(job_id) if job_id else None
        if job is None or job.cancel.cancelled:
            return
        job.status.set_paused(True)
        self._emit("paused", {"job": job.job_id, "client": job.client})
        _LOGGER.info("event=job-paused job=%s", job.job_id)

    def on_resumed(self, job_id: str | None) -> None:
        """The job's audio goes on."""
        job = self.jobs.get(job_id) if job_id else None
        if job is None or not job.status.set_paused(False):
            return
        self._emit("resumed", {"job": job.job_id, "client": job.client})
        _LOGGER.info("event=job-resumed job=%s", job.job_id)

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
        self.cancel(Target())
        self._thread.join(timeout=5)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._closing:
                job = next((j for j in self._waiting if not self._held(j)), None)
                if job is not None:
                    self._waiting.remove(job)
                    self._current = job
                    self._played[job.job_id] = threading.Event()
                    return job
                self._cond.wait()
            return None

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
                    self._paused_jobs.discard(job.job_id)
                    self._cond.notify_all()

    def _begin(self, job: Job) -> None:
        """The job's first audio goes to the player now (or it turned out to have none)."""
        job.status.begin()
        self._emit(
            "begin",
            {
                "job": job.job_id,
                "client": job.client,
                "voice": job.voice_id,
                "priority": job.priority,
            },
        )
        _LOGGER.info(
            "event=job-begin job=%s voice=%s chars=%d", job.job_id, job.voice_id, len(job.text)
        )

    def _chunks(self, job: Job) -> Iterator[AudioChunk]:
        """The job's audio; a streamed job's sentences are numbered on across the pieces of text
        handed to the voice."""
        if job.ssml is not None:
            yield from bounded_audio(
                self._renderer().render(
                    job.ssml, job.voice_id, job.params, job.cancel, mode=job.cache
                ),
                len(job.text),
                job.params,
            )
            return
        if job.stream is None:
            yield from self._source.stream(
                job.text, job.voice_id, job.params, job.cancel, mode=job.cache, slots=job.slots
            )
            return
        base = 0
        while True:
            sentence = job.stream.next_sentence(job.cancel, self._stream_idle_s)
            if sentence is None:
                return
            document: tuple[Sentence, ...] | None = None
            if isinstance(sentence, Sentence):
                document = (sentence,)
            elif self._ssml is not None:
                document = self._ssml.lexicon_sentences(sentence, job.voice_id)
            if document is not None:
                yield from self._renderer().render(
                    document,
                    job.voice_id,
                    job.params,
                    job.cancel,
                    mode=job.cache,
                    first_sentence=base,
                )
                base += len(document)
                continue
            assert isinstance(sentence, str)
            top = 0
            for chunk in self._source.stream(
                sentence, job.voice_id, job.params, job.cancel, mode=job.cache
            ):
                top = max(top, chunk.sentence_index)
                yield dataclasses.replace(chunk, sentence_index=base + chunk.sentence_index)
            base += top + 1

    def _renderer(self) -> SsmlRenderer:
        if self._ssml is None:
            raise UtterdError("this daemon was built without SSML")
        return self._ssml

    def _speak(self, job: Job) -> None:
        _LOGGER.debug("job=%s text=%r", job.job_id, job.text)
        played = self._played[job.job_id]
        offset_samples = 0
        rate_hz = 0
        sentence = -1
        named: list[str] = []  # SSML marks waiting for the next sound
        try:
            for chunk in self._chunks(job):
                job.cancel.raise_if_cancelled()
                named.extend(chunk.marks)
                rate_hz = chunk.sample_rate_hz
                if not len(chunk.samples):
                    continue  # carries marks (kept for the next sound) or ends a sentence
                if job.state is JobState.QUEUED:
                    self._begin(job)
                marks = ChunkMarks(
                    SentenceMark(chunk.sentence_index, offset_samples, rate_hz)
                    if chunk.sentence_index != sentence
                    else None,
                    tuple(named),
                    offset_samples,
                    rate_hz,
                )
                sentence, named = chunk.sentence_index, []
                if marks.sentence is not None or marks.names:
                    self._player.mark_next(job.job_id, marks)
                self._player.play(job.job_id, chunk, job.cancel)
                offset_samples += len(chunk.samples)
            job.cancel.raise_if_cancelled()
            if job.state is JobState.QUEUED:
                self._begin(job)
            self._player.end_job(job.job_id)
            # Sleep until the player reports the job's last sample played, or a stop wakes
            # us: no periodic wake-up while a job plays (the eco profile counts them).
            with job.cancel.interrupting(played.set):
                played.wait()
            job.cancel.raise_if_cancelled()
            if named:  # marks after the last sound fall at the end of the audio
                self.on_mark(job.job_id, ChunkMarks(None, tuple(named), offset_samples, rate_hz))
            with self._cond:
                # Decided under the queue lock: a stop that lands after this finds no job to
                # stop (its reply does not list it), so a job a stop reports always ends stopped.
                job.cancel.raise_if_cancelled()
                lost = self._lost.pop(job.job_id, None)
                if not lost:
                    job.status.end(JobState.DONE)
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

    def _finish(
        self, job: Job, state: JobState, reason: str | None, code: str | None = None
    ) -> None:
        job.status.end(state, reason)
        if job.stream is not None:
            job.stream.abort()
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
