"""The socket loop: a ROUTER for requests, a PUB for events, never blocked by synthesis or audio.

The loop only parses, validates and dispatches. `speak` (and `speak-start`) goes to the
scheduler's queue, `synthesize` to a worker pool; both answer through the outbox. Everything the
loop answers itself (`ping`, `describe`, `job`, `stop`, `cancel`, `pause`, `resume`,
`speak-chunk`, `speak-stop`) is non-blocking.

Every `synthesize` is a job: the loop registers its cancel token under a job id until its last
reply passes, so `stop` and `cancel` reach it, and so does a client that reads too slowly or
disappears. Every reply leaves through one path (`_route`): a client whose ZeroMQ queue is full
gets its replies kept in a bounded backlog (daemon/outbox.py); beyond the bound its syntheses are
cut, each with one `client-too-slow` error, and a client that is gone has its syntheses cancelled.

Requests meet their handlers in one table (`_handlers`, keyed by message class); replies are the
dataclasses of daemon/protocol/replies.py. Events do not pass the loop: whoever makes one (the
speech thread, the player's events thread, the fault poller) publishes it through the service's
`EventPublisher` (daemon/publisher.py), which owns the PUB socket once `bind` attaches it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

import zmq
from utterd.daemon import access, memory, protocol
from utterd.daemon.audio.player import DeviceUnavailable
from utterd.daemon.cache.phrase_source import PhraseSource, bounded_audio
from utterd.daemon.cache.prewarm import Prewarmer, PrewarmSpec, parse_prewarm_entry
from utterd.daemon.cache.templates import parse_template
from utterd.daemon.counters import Counters
from utterd.daemon.outbox import (
    CLIENT_QUEUE_MESSAGES,
    OUTBOX_ENDPOINT,
    Delivery,
    Kept,
    Outbox,
    ReplyBacklog,
    decode,
    is_wake,
)
from utterd.daemon.protocol import replies
from utterd.daemon.protocol.messages import (
    CacheClear,
    CacheWarm,
    Cancel,
    Describe,
    JobQuery,
    Pause,
    Ping,
    Resume,
    Speak,
    SpeakChunk,
    SpeakStart,
    SpeakStop,
    Stop,
    Synthesize,
)
from utterd.daemon.publisher import EventPublisher
from utterd.daemon.settings import Settings
from utterd.daemon.speech.jobs import Job, new_job_id
from utterd.daemon.speech.render import SsmlRenderer, ssml_support
from utterd.daemon.speech.scheduler import Scheduler, Target, UnknownJob
from utterd.daemon.speech.text_stream import TextFormat, TextStream
from utterd.daemon.watchdog import Heartbeat
from utterd.models.engine.backend import intra_op_threads
from utterd.models.engine.cpu_features import cpu_features
from utterd.models.errors import Cancelled, NothingToSay, UtterdError
from utterd.models.text import frontend, guard, ssml
from utterd.models.text.segments import Break, Sentence, TextSegment
from utterd.models.text.ssml import SsmlLimits
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    SynthesisParams,
    Voice,
    VoiceInfo,
    float_to_pcm16,
)
from utterd.models.voice_store import VoiceStore

_LOGGER = logging.getLogger(__name__)

_CLIENT_ID = re.compile(r"[0-9a-f]{2,510}")
"""A client id as events carry it: the hex of a ZeroMQ routing id (1..255 bytes)."""

# Reported once under `backend`, not repeated for every voice.
_CPU_KEYS = frozenset({"cpu_model", "cpu_features"})

_KEEP_FINISHED_SYNTHESES: Final = 1000
"""Finished `synthesize` job ids remembered, so a late `stop` naming one answers an empty list."""

_BACKLOG_POLL_MS: Final = 10
"""How soon the loop retries kept replies while a backlog waits (ZeroMQ cannot say when a
client's queue has room again)."""

COUNTERS: Final = ("requests", "errors", "synthesized", "rate_limited")
"""The server's counters in `describe` (the scheduler adds its own)."""

_Voiced: TypeAlias = Speak | SpeakStart | Synthesize
"""Requests that name a voice and synthesis parameters."""

_Targeted: TypeAlias = Stop | Cancel | Pause | Resume
"""Requests that name whose speech they act on."""


class AlreadyRunning(UtterdError):
    """Another utterd answers on the configured socket."""

    code = "already-running"


class SocketDirError(UtterdError):
    """The runtime folder for the ipc sockets is unsafe or cannot be made."""

    code = "runtime-dir"


class ClientTooSlow(UtterdError):
    """The client left more replies unread than its backlog holds; its synthesis was cut."""

    code = "client-too-slow"


@dataclass
class Synthesis:
    """A `synthesize` in progress, from the request until its last reply passes the loop.
    Socket loop thread only; the worker holds just the token."""

    job_id: str
    """Reported in `audio-start`, `audio` and `audio-stop`; named by `stop` and `cancel`."""

    client: str
    """Hex of the requester's routing id, as `client` in stop and cancel means it."""

    envelope: list[bytes]
    """Where its replies go."""

    request_id: protocol.RequestId
    """Echoed in the error reply that ends it early."""

    cancel: CancelToken = field(default_factory=CancelToken)
    """Set by stop, cancel, a cut-off or a vanished client; the worker stops at the next piece."""

    answered: bool = False
    """The loop already sent its last reply (an error): the worker's later replies are dropped."""


def prepare_runtime_dir(path: Path, perms: access.SocketPermissions = access.OWNER_ONLY) -> None:
    """Create the socket folder owner-only (or owner and `server.client_group`) *before*
    binding, so no one else can ever connect."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise SocketDirError(f"{path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})")
    perms.apply_to_dir(path)


def check_not_running(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
    """Refuse to steal the socket of a daemon that still answers; remove a stale socket file."""
    if not endpoint.startswith("ipc://"):
        return
    sock_path = Path(endpoint[len("ipc://") :])
    if not sock_path.exists():
        return
    probe = context.socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.connect(endpoint)
        probe.send_multipart(protocol.request_frames("ping", {}, request_id="probe"))
        if probe.poll(300, zmq.POLLIN):
            raise AlreadyRunning(f"another utterd is already serving {endpoint}")
    finally:
        probe.close(linger=0)
    sock_path.unlink(missing_ok=True)


WAV_HEADER_BYTES: Final = 44
"""A mono 16-bit PCM WAV file's header (RIFF, `fmt `, `data`), as the `wave` module writes it."""


def wav_header(data_bytes: int, sample_rate_hz: int) -> bytes:
    """The header of a mono 16-bit PCM WAV file holding `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate_hz,
        2 * sample_rate_hz,
        2,
        16,
        b"data",
        data_bytes,
    )


@contextlib.contextmanager
def _signal_wakeup() -> Iterator[int | None]:
    """A file descriptor that becomes readable when a signal arrives, for the socket loop to poll.

    Python runs signal handlers in the main thread only, the socket loop, between bytecodes; the
    kernel may hand a process's signal to any of its threads, and a loop asleep in a poll without
    a timeout would then never run the handler (SIGTERM ignored). CPython's C-level handler
    writes to `signal.set_wakeup_fd`'s descriptor from whichever thread took the signal, which
    wakes the poll. None off the main thread (embedded: no signal handlers of ours).
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield reader.fileno()
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _drain_fd(fd: int | None) -> None:
    """Read what the signal wake-up wrote, so that the next poll sleeps again."""
    if fd is None:
        return
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 512):
            pass


class Server:
    """Owns the ZeroMQ sockets; runs in the thread that calls `run()`."""

    def __init__(
        self,
        settings: Settings,
        voices: VoiceStore,
        source: PhraseSource,
        scheduler: Scheduler,
        publisher: EventPublisher,
        device_state: Callable[[], dict[str, Any]],
        version: str,
        ssml: SsmlRenderer | None = None,
    ) -> None:
        """`scheduler` and `publisher` are built by the service (daemon/service.py); the
        scheduler publishes its events through the same `publisher` the server binds. `ssml`
        speaks SSML `synthesize` requests (the scheduler's renderer); None: refused."""
        self.settings = settings
        self.voices = voices
        self.source = source
        self.ssml = ssml
        self._warmers: list[Prewarmer] = []
        self._warm_lock = threading.Lock()
        self._warm_instances: dict[str, Voice] = {}
        """Voice instances pre-warming renders with at nice 19 (closed when warming ends)."""
        self._synth_in_flight = 0
        self._synth_lock = threading.Lock()
        self._synths: dict[str, Synthesis] = {}
        """`synthesize` jobs whose last reply has not passed the loop yet, by job id."""
        self._synths_finished: OrderedDict[str, None] = OrderedDict()
        self._backlog = ReplyBacklog()
        self.version = version
        self._device_state = device_state
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.outbox = Outbox(self.context)
        self.publisher = publisher
        self.scheduler = scheduler
        self._pool = ThreadPoolExecutor(
            max_workers=settings.server.synth_workers, thread_name_prefix="utterd-synth"
        )
        self._stop = threading.Event()
        self._started_s = time.monotonic()
        self.state = "starting"
        self.counters = Counters(COUNTERS)
        """Incremented by the socket loop and the synthesis workers."""
        self.access = access.AccessControl(settings.server, settings.limits)
        self._owner = ""  # the per-client limits' id of the request being handled
        self._router: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._pull: zmq.Socket[bytes] | None = None
        self.bound = threading.Event()
        self._received_s = time.monotonic()
        self.heartbeat = Heartbeat()
        """Renewed every turn of the socket loop; the service watchdog checks it moves."""
        self.describe_sections: dict[str, Callable[[], Any]] = {}
        """Extra top-level sections of `describe`, by name, filled in by the service."""
        self._handlers = (
            protocol.HandlerTable()
            .register(Speak, self._on_speak)
            .register(Synthesize, self._on_synthesize)
            .register(SpeakStart, self._on_speak_start)
            .register(SpeakChunk, self._on_speak_chunk)
            .register(SpeakStop, self._on_speak_stop)
            .register(Stop, self._on_stop)
            .register(Cancel, self._on_cancel)
            .register(Pause, self._on_pause)
            .register(Resume, self._on_resume)
            .register(Describe, self._on_describe)
            .register(Ping, self._on_ping)
            .register(JobQuery, self._on_job)
            .register(CacheClear, self._on_cache_clear)
            .register(CacheWarm, self._on_cache_warm)
        )
        """Request message class → handler: the one place a request type meets its handler."""
        missing = self._handlers.missing()
        if missing:
            raise TypeError(f"request types without a handler: {', '.join(missing)}")

    # -- lifecycle ---------------------------------------------------------------------------
    def bind(self) -> None:
        server = self.settings.server
        perms = self.access.socket_permissions()  # an unknown group fails before any socket
        prepare_runtime_dir(server.resolved_runtime_dir(), perms)
        requests = server.request_endpoints()
        check_not_running(self.context, requests[0])
        self._pull = self.context.socket(zmq.PULL)
        self._pull.bind(OUTBOX_ENDPOINT)
        self._router = self.context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        # A reply to a full or vanished client raises instead of vanishing (see `_route`).
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, CLIENT_QUEUE_MESSAGES)
        self._router.setsockopt(zmq.MAXMSGSIZE, server.max_message_bytes)
        self._pub = self.context.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self.access.start_curve(self.context)  # the ZAP handler runs before any TCP bind
        old_umask = os.umask(perms.umask)  # socket files' final mode, whatever the caller's umask
        try:
            for ep in access.bind_order(requests):
                if ep.startswith("tcp://"):
                    self.access.secure(self._router)
                self._router.bind(ep)
            for ep in access.bind_order(server.event_endpoints()):
                if ep.startswith("ipc://"):
                    Path(ep[len("ipc://") :]).unlink(missing_ok=True)
                if ep.startswith("tcp://"):
                    self.access.secure(self._pub)
                self._pub.bind(ep)
        finally:
            os.umask(old_umask)
        for ep in requests + server.event_endpoints():
            if ep.startswith("ipc://"):
                perms.check_socket(Path(ep[len("ipc://") :]))
        self.publisher.attach(self._pub)
        _LOGGER.info("event=bound requests=%s events=%s", requests, server.event_endpoints())
        self.bound.set()

    def request_stop(self) -> None:
        self._stop.set()
        self.outbox.wake()  # the loop sleeps in poll until it has work: wake it to see the stop

    def run(self) -> None:
        """The socket loop; returns after `request_stop()`."""
        assert self._router is not None and self._pull is not None and self._pub is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        self.state = "started"
        with _signal_wakeup() as signal_fd:
            if signal_fd is not None:
                poller.register(signal_fd, zmq.POLLIN)
            while not self._stop.is_set():
                self.heartbeat.beat()
                self._flush_backlog()
                timeout_ms = _BACKLOG_POLL_MS if self._backlog else -1
                self.heartbeat.beat(wait_s=timeout_ms / 1000 if timeout_ms >= 0 else math.inf)
                ready = poller.poll(timeout_ms)
                self.heartbeat.beat()
                for sock, _ in ready:
                    if sock is self._router:
                        self._drain_router()
                    elif sock is self._pull:
                        self._drain_outbox()
                    else:
                        _drain_fd(signal_fd)  # the signal's Python handler has run by now
        self.state = "stopping"

    def close(self) -> None:
        for warmer in self._warmers:
            warmer.stop()
        for synth in self._synths.values():  # workers stop at their next piece
            synth.cancel.cancel("the daemon is stopping")
        self.scheduler.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._pull is not None:
            self._drain_outbox()
        self.outbox.close()
        self.publisher.detach()
        for sock in (self._router, self._pub, self._pull):
            if sock is not None:
                sock.close(linger=0)
        for ep in self.settings.server.request_endpoints() + self.settings.server.event_endpoints():
            if ep.startswith("ipc://"):
                Path(ep[len("ipc://") :]).unlink(missing_ok=True)
        self.access.close()  # the ZAP thread's sockets, before the context ends
        self.context.term()
        self.state = "stopped"

    # -- I/O -----------------------------------------------------------------------------------
    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Publish an event given as (kind, data); callable from any thread."""
        self.publisher.emit(kind, data)

    def _drain_outbox(self) -> None:
        assert self._pull is not None and self._router is not None
        while True:
            try:
                frames = self._pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if is_wake(frames):
                continue
            out = decode(frames)
            if out.job is not None:
                synth = self._synths.get(out.job)
                if out.final:
                    self._synth_finished(out.job)
                if synth is not None and synth.answered:
                    continue  # the loop already ended it with an error
            self._route(list(out.envelope), list(out.frames), out.job)

    def _drain_router(self) -> None:
        assert self._router is not None
        for _ in range(64):  # bounded, so the outbox is served between bursts
            try:
                frames, curve_key = access.receive(self._router)
            except zmq.Again:
                return
            self._handle(frames, curve_key)

    def _send(self, envelope: list[bytes], frames: list[bytes]) -> None:
        self._route(envelope, frames, None)

    def _reply(
        self, envelope: list[bytes], request_id: protocol.RequestId, body: replies.Reply
    ) -> None:
        """Answer a request from the socket loop."""
        self._route(envelope, protocol.encode_reply(request_id, body), None)

    # -- delivery: every reply passes here (socket loop thread) ---------------------------------
    def _route(
        self, envelope: list[bytes], frames: list[bytes], job: str | None, force: bool = False
    ) -> None:
        """Send a reply, or keep it while the client's queue is full; never blocks, never drops
        a reply unless the client is gone or the backlog has no room even after a cut-off."""
        assert self._router is not None
        if not envelope:
            return
        result = self._backlog.send(self._router, tuple(envelope), tuple(frames), job, force=force)
        if result is Delivery.GONE:
            self._client_gone(envelope[0])
        elif result is Delivery.OVER:
            self._client_too_slow(envelope, frames, job)
            if job is None and not force:
                again = self._backlog.send(self._router, tuple(envelope), tuple(frames))
                if again is Delivery.OVER:
                    # Only small replies are left and they fill the backlog: thousands unread.
                    _LOGGER.warning(
                        "event=reply-dropped client=%s reason=client-too-slow kept_bytes=%d",
                        envelope[0].hex(),
                        self._backlog.size_bytes(envelope[0]),
                    )

    def _flush_backlog(self) -> None:
        if self._backlog and self._router is not None:
            for peer in self._backlog.flush(self._router):
                self._client_gone(peer)

    def _client_gone(self, peer: bytes) -> None:
        """EHOSTUNREACH: the client disconnected; its syntheses stop, its backlog goes."""
        cancelled = []
        for synth in self._synths.values():
            if synth.envelope[0] == peer and not synth.answered:
                synth.cancel.cancel("the client is gone")
                synth.answered = True
                cancelled.append(synth.job_id)
        dropped = self._backlog.drop_peer(peer)
        # A client that left before an answer is common (a timed-out probe): worth a line only
        # when it cost something.
        _LOGGER.log(
            logging.INFO if cancelled or dropped else logging.DEBUG,
            "event=client-gone client=%s cancelled=%s dropped_replies=%d",
            peer.hex(),
            cancelled,
            dropped,
        )

    def _client_too_slow(self, envelope: list[bytes], frames: list[bytes], job: str | None) -> None:
        """The client's backlog is full (`frames`, a reply of `job`, found no room): cut each of
        its syntheses (running ones stop at the next piece), drop their kept replies, and leave
        one `client-too-slow` error for each, delivered when the client reads again. Its other
        (small) replies stay."""
        peer = envelope[0]
        cut: dict[str, tuple[tuple[bytes, ...], protocol.RequestId]] = {}
        for synth in self._synths.values():
            if synth.envelope[0] == peer and not synth.answered:
                synth.cancel.cancel(ClientTooSlow.code)
                synth.answered = True
                cut[synth.job_id] = (tuple(synth.envelope), synth.request_id)
        kept = self._backlog.take_jobs(peer)
        # Jobs whose last reply already passed the loop but is kept, or is the one refused.
        refused = [] if job is None else [Kept(tuple(envelope), tuple(frames), job, 0)]
        for k in kept + refused:
            if k.job is not None and k.job not in cut:
                cut[k.job] = (k.envelope, protocol.peek_id(list(k.frames[:1])))
        message = (
            "the client left more replies unread than the daemon keeps for it "
            f"({self._backlog.client_bytes} bytes); the synthesis was cut short"
        )
        for job_id, (to, request_id) in cut.items():
            error = replies.Error(ClientTooSlow.code, message, job=job_id)
            self._route(list(to), protocol.encode_reply(request_id, error), None, force=True)
        _LOGGER.warning(
            "event=client-too-slow client=%s cut=%s dropped_replies=%d",
            peer.hex(),
            sorted(cut),
            len(kept),
        )

    def _synth_finished(self, job_id: str) -> None:
        """Its last reply passed the loop: forget the synthesis, remember its id for a while."""
        self._synths.pop(job_id, None)
        self._synths_finished[job_id] = None
        while len(self._synths_finished) > _KEEP_FINISHED_SYNTHESES:
            self._synths_finished.popitem(last=False)

    def _handle(self, frames: list[bytes], curve_key: str | None = None) -> None:
        self._received_s = time.monotonic()  # time to first audio counts from here
        self.counters.add("requests")
        envelope, body = protocol.split_envelope(frames)
        request_id: str | int | None = None
        self._owner = access.client_id(envelope, curve_key)
        try:
            request_id = protocol.peek_id(body)
            self.access.admit(self._owner)  # before parsing: a flood costs as little as possible
            request = protocol.parse_request(body, self.settings.limits)
            request_id = request.id
            self._handlers.dispatch(envelope, request)
        except access.RateLimited as exc:
            self.counters.add("rate_limited")
            _LOGGER.debug("event=rate-limited client=%s", self._owner)
            error = replies.Error(exc.code, exc.message, retry_after_s=exc.retry_after_s)
            self._reply(envelope, request_id, error)
        except UtterdError as exc:
            self.counters.add("errors")
            _LOGGER.info("event=request-error code=%s message=%r", exc.code, exc.message)
            self._reply(envelope, request_id, replies.Error(exc.code, exc.message))
        except Exception as exc:  # a bug in one handler must not take the daemon down
            self.counters.add("errors")
            _LOGGER.exception("event=request-crash")
            error = replies.Error("internal-error", f"{type(exc).__name__}: {exc}")
            self._reply(envelope, request_id, error)

    # -- handlers (socket loop thread) -----------------------------------------------------------
    def _resolve(self, msg: _Voiced) -> tuple[VoiceInfo, SynthesisParams]:
        voice_id = msg.voice or self.settings.voices.default
        info = self.voices.info(voice_id)
        info.speaker_id(msg.speaker)
        params = msg.synthesis_params().validated()
        # Declared by the family at discovery: checked without loading the voice here.
        info.check_prosody(params)
        return info, params

    def _on_ping(self, envelope: list[bytes], request: protocol.Request, msg: Ping) -> None:
        self._reply(envelope, request.id, replies.Pong(self.version))

    def _on_describe(self, envelope: list[bytes], request: protocol.Request, msg: Describe) -> None:
        self._reply(envelope, request.id, self.describe())

    def describe(self) -> replies.Info:
        current = self.scheduler.current()
        cpu = cpu_features()
        voices = []
        for info in self.voices.infos():
            err = self.voices.load_error(info.voice_id)
            loaded = self.voices.is_loaded(info.voice_id)
            runtime = self.voices.get(info.voice_id).runtime_info() if loaded else {}
            voices.append(
                {
                    "id": info.voice_id,
                    "family": info.family,
                    "language": info.language,
                    "sample_rate_hz": info.sample_rate_hz,
                    "speakers": list(info.speakers),
                    "source": info.source,
                    "loaded": loaded,
                    "load_error": err.message if err is not None else None,
                    # As configured (voices.backends, else voices.backend); runtime.backend is
                    # what it runs on (`auto` resolved, OpenVINO's fallback).
                    "backend": self.settings.voices.backend_for(info.voice_id),
                    "runtime": {k: v for k, v in runtime.items() if k not in _CPU_KEYS},
                    "ssml": ssml_support(info, self.voices.get(info.voice_id) if loaded else None),
                    "prosody": sorted(info.prosody),
                    "licence": info.licence,
                }
            )
        return replies.Info(
            name="utterd",
            version=self.version,
            state=self.state,
            uptime_s=round(time.monotonic() - self._started_s, 3),
            default_voice=self.settings.voices.default,
            voices=voices,
            backend={
                "name": self.settings.voices.backend,
                "threads": intra_op_threads(self.voices.engine),
                "cpu_model": cpu.model_name,
                "cpu_features": list(cpu.features),
            },
            device=self._device_state(),
            queue={
                "length": self.scheduler.queue_length(),
                "max": self.settings.limits.max_queue,
                "current": current.job_id if current else None,
                "current_priority": current.priority if current else None,
                "paused": self.scheduler.pause_state(),
            },
            counters={**self.counters.snapshot(), **self.scheduler.counters},
            cache={**self.source.stats(), "prewarm": self.warming_progress()},
            sections={name: section() for name, section in self.describe_sections.items()},
        )

    def _on_job(self, envelope: list[bytes], request: protocol.Request, msg: JobQuery) -> None:
        job = self.scheduler.jobs.get(msg.job)
        if job is None:
            raise UnknownJob(f"no job {msg.job!r}")
        status = replies.JobStatus(
            job=job.job_id,
            state=job.state.value,
            error=job.error,
            first_audio_ms=job.first_audio_ms,
            priority=job.priority,
            paused=job.paused,
        )
        self._reply(envelope, request.id, status)

    @staticmethod
    def _client_of(envelope: list[bytes]) -> str:
        """The sender's client id, as events carry it."""
        return envelope[0].hex() if envelope else ""

    def _target(self, envelope: list[bytes], msg: _Targeted) -> Target:
        """The `job` / `client` fields of stop, cancel, pause and resume, with `self` resolved."""
        if msg.job is not None and msg.client is not None:
            raise protocol.InvalidValue(
                "give 'job' or 'client', not both: a job belongs to one client", field="client"
            )
        client: str | None = msg.client
        if client == "self":
            client = self._client_of(envelope)
        elif client is not None:
            client = client.lower()
            if not _CLIENT_ID.fullmatch(client) or len(client) % 2:
                raise protocol.InvalidValue(
                    f"field 'client' must be 'self' or a client id as events carry it (hex), "
                    f"got {msg.client!r}",
                    field="client",
                )
        return Target(job=msg.job, client=client)

    def _on_stop(self, envelope: list[bytes], request: protocol.Request, msg: Stop) -> None:
        _LOGGER.info("event=stop-request received_s=%.6f", self._received_s)
        stopped = self._stop_jobs(envelope, request, msg, self.scheduler.stop)
        self._reply(envelope, request.id, replies.Stopped(stopped))

    def _on_cancel(self, envelope: list[bytes], request: protocol.Request, msg: Cancel) -> None:
        _LOGGER.info("event=cancel-request received_s=%.6f", self._received_s)
        stopped = self._stop_jobs(envelope, request, msg, self.scheduler.cancel)
        self._reply(envelope, request.id, replies.Cancelled(stopped))

    def _stop_jobs(
        self,
        envelope: list[bytes],
        request: protocol.Request,
        msg: Stop | Cancel,
        by_scheduler: Callable[[Target], list[str]],
    ) -> list[str]:
        """`stop` or `cancel`: the target's syntheses, then its speech; returns the ids ended."""
        target = self._target(envelope, msg)
        if target.job is not None and target.job not in self._synths:
            if target.job in self._synths_finished:
                return []  # it finished first, as for a speech job that already ended
            return by_scheduler(target)  # UnknownJob if the scheduler does not know it either
        synths = self._stop_syntheses(target, request.type)
        return synths if target.job is not None else synths + by_scheduler(target)

    def _stop_syntheses(self, target: Target, by: str) -> list[str]:
        """End the target's syntheses now, each with a `cancelled` error (their workers stop at
        the next piece and their later replies are dropped); returns their ids."""
        stopped = []
        for synth in list(self._synths.values()):
            if synth.answered or not target.matches(synth):
                continue
            synth.cancel.cancel(f"cancelled by a {by} request")
            synth.answered = True
            message = f"synthesis {synth.job_id} was cancelled by a {by} request"
            self._reply(
                synth.envelope,
                synth.request_id,
                replies.Error(Cancelled.code, message, job=synth.job_id),
            )
            stopped.append(synth.job_id)
        if stopped:
            _LOGGER.info("event=synthesis-cancelled target=%s jobs=%s", target.describe(), stopped)
        return stopped

    def _on_pause(self, envelope: list[bytes], request: protocol.Request, msg: Pause) -> None:
        paused = self.scheduler.pause(self._target(envelope, msg))
        self._reply(envelope, request.id, replies.Paused(paused))

    def _on_resume(self, envelope: list[bytes], request: protocol.Request, msg: Resume) -> None:
        resumed = self.scheduler.resume(self._target(envelope, msg))
        self._reply(envelope, request.id, replies.Resumed(resumed))

    def _check_device(self) -> None:
        device = self._device_state()
        if not device.get("available"):
            raise DeviceUnavailable(f"the sound device is unavailable: {device.get('error')}")

    def _preempt_warming(self) -> None:
        """Live work arrived: pre-warm renders stop at once, not at the watcher's next poll."""
        for warmer in self._warmers:
            warmer.preempt()

    def _queue(self, envelope: list[bytes], request: protocol.Request, job: Job) -> None:
        self._preempt_warming()
        self.scheduler.submit(job)
        self._reply(envelope, request.id, replies.Queued(job.job_id, job.voice_id, job.priority))

    def _on_speak(self, envelope: list[bytes], request: protocol.Request, msg: Speak) -> None:
        info, params = self._resolve(msg)
        self._check_device()
        document = self._check_text(msg.text, msg.slots, info, msg.text_format)
        job = Job(
            ssml=document,
            text=msg.text,
            voice_id=info.voice_id,
            params=params,
            cache=msg.cache,
            slots=msg.slots,
            client=self._client_of(envelope),
            owner=self._owner,
            priority=msg.priority,
            created_s=self._received_s,
        )
        self._queue(envelope, request, job)

    def _on_speak_start(
        self, envelope: list[bytes], request: protocol.Request, msg: SpeakStart
    ) -> None:
        info, params = self._resolve(msg)
        self._check_device()
        job = Job(
            text="",
            voice_id=info.voice_id,
            params=params,
            cache=msg.cache,
            client=self._client_of(envelope),
            owner=self._owner,
            priority=msg.priority,
            stream=TextStream(
                self.settings.limits.max_text_chars, msg.text_format, self._ssml_limits()
            ),
            created_s=self._received_s,
        )
        self._queue(envelope, request, job)

    def _on_speak_chunk(
        self, envelope: list[bytes], request: protocol.Request, msg: SpeakChunk
    ) -> None:
        self.scheduler.feed(msg.job, msg.text)
        self._reply(envelope, request.id, replies.ChunkQueued(msg.job))

    def _on_speak_stop(
        self, envelope: list[bytes], request: protocol.Request, msg: SpeakStop
    ) -> None:
        self.scheduler.close_text(msg.job)
        self._reply(envelope, request.id, replies.TextClosed(msg.job))

    def _ssml_limits(self) -> SsmlLimits:
        return SsmlLimits(max_chars=self.settings.limits.max_text_chars)

    def _check_text(
        self,
        text: str,
        slots: dict[str, str] | None,
        info: VoiceInfo,
        text_format: TextFormat = "text",
    ) -> tuple[Sentence, ...] | None:
        """A request's text is checked at the edge, so its errors are answered at once: a
        template is parsed and filled in, an SSML document is parsed (`invalid-ssml`; returned
        as sentences), and a text the voice can say nothing of is refused (`nothing-to-say`;
        one linear pass of the text guard)."""
        if text_format == "ssml":
            if slots is not None:
                raise protocol.InvalidValue(
                    "slots (a template) and text_format 'ssml' do not combine; fill in the "
                    "SSML document yourself",
                    field="slots",
                )
            document = ssml.parse(text, self._ssml_limits())
            for warning in document.warnings:
                _LOGGER.warning(
                    "event=ssml-%s name=%s line=%d column=%d",
                    warning.kind,
                    warning.name,
                    warning.line,
                    warning.column,
                )
            said = [
                s.text
                for sentence in document.sentences
                for s in sentence.segments
                if isinstance(s, TextSegment)
            ]
            pauses = any(
                isinstance(s, Break) and s.duration_ms > 0
                for sentence in document.sentences
                for s in sentence.segments
            )
            if not pauses:
                self._check_speakable(" ".join(said), info)
            return document.sentences
        if slots is not None:
            template = parse_template(text)
            template.render(slots)
            text = template.text(slots)
            if len(text) > self.settings.limits.max_text_chars:
                raise protocol.TextTooLong(
                    f"the filled-in template has {len(text)} characters; the limit is "
                    f"{self.settings.limits.max_text_chars}"
                )
        self._check_speakable(text, info)
        if slots is None and self.ssml is not None:
            return self.ssml.lexicon_sentences(text, info.voice_id)  # phonemes, languages
        return None

    def _check_speakable(self, text: str, info: VoiceInfo) -> None:
        """NothingToSay unless the request's voice, or for Han characters an installed Chinese
        voice (the renderer gives those spans to it), can say something of `text`."""
        try:
            guard.check_speakable(text, info.language)
        except NothingToSay:
            if frontend.primary_language(info.language) == "zh" or not frontend.has_han(text):
                raise
            chinese = next(
                (i for i in self.voices.infos() if frontend.primary_language(i.language) == "zh"),
                None,
            )
            if chinese is None:
                raise
            guard.check_speakable(text, chinese.language)

    def _on_synthesize(
        self, envelope: list[bytes], request: protocol.Request, msg: Synthesize
    ) -> None:
        info, params = self._resolve(msg)
        document = self._check_text(msg.text, msg.slots, info, msg.text_format)
        self.access.synth.acquire(self._owner)  # Busy: the worker pool's queue stays bounded
        with self._synth_lock:
            self._synth_in_flight += 1
        self._preempt_warming()
        synth = Synthesis(new_job_id(), self._client_of(envelope), envelope, request.id)
        self._synths[synth.job_id] = synth
        self._pool.submit(
            self._synthesize,
            envelope,
            request.id,
            msg,
            info,
            params,
            self._owner,
            synth.job_id,
            synth.cancel,
            document,
        )

    def _on_cache_clear(
        self, envelope: list[bytes], request: protocol.Request, msg: CacheClear
    ) -> None:
        voice = msg.voice
        if voice is not None:
            self.voices.info(voice)
        removed = self.source.cache.clear(voice) if self.source.cache is not None else 0
        self._reply(envelope, request.id, replies.CacheCleared(removed))

    def _on_cache_warm(
        self, envelope: list[bytes], request: protocol.Request, msg: CacheWarm
    ) -> None:
        specs: list[PrewarmSpec] = []
        for index, entry in enumerate(msg.entries):
            specs.extend(parse_prewarm_entry(entry, f"request entries[{index}]"))
        for spec in specs:
            self.voices.info(spec.voice or self.settings.voices.default)
        self.start_warming(specs)
        self._reply(envelope, request.id, replies.CacheWarming(len(specs)))

    # -- pre-warming (background, lowest priority) ------------------------------------------------
    def start_warming(self, specs: Sequence[PrewarmSpec]) -> None:
        if not specs or self.source.cache is None:
            return
        default = self.settings.voices.default

        def render(spec: PrewarmSpec, cancel: CancelToken) -> None:
            voice_id = spec.voice or default
            private = self.settings.cache.prewarm_sessions == "private"
            instance = self._warming_instance(voice_id) if private else None
            # The low-latency path checks `cancel` between small windows, so a live request
            # that preempts the render waits for one window, not for a whole sentence.
            for _ in self.source.stream(
                spec.text, voice_id, spec.params, cancel, instance=instance
            ):
                pass

        def is_cached(spec: PrewarmSpec) -> bool:
            return self.source.is_cached(spec.text, spec.voice or default, spec.params)

        def is_busy() -> bool:
            return self.scheduler.queue_length() > 0 or self._synth_in_flight > 0

        self._warmers = [w for w in self._warmers if w.progress().remaining > 0]
        if self._warmers and self._warmers[-1].extend(specs):
            return  # the running warmer renders them after its own; its release thread closes
        warmer = Prewarmer(specs, render, is_cached, is_busy)
        self._warmers.append(warmer)
        warmer.start()
        threading.Thread(
            target=self._release_warming_instances,
            args=(warmer,),
            name="utterd-prewarm-release",
            daemon=True,
        ).start()

    def _warming_instance(self, voice_id: str) -> Voice:
        """The voice's private instance for pre-warming, opened on first use.

        Rendering on the live voice's sessions shares their intra-op threads with live
        requests, and only the calling thread runs at the warming thread's lowest priority:
        live first audio p99 rose 1.4x while warming (docs/benchmarks.md). Called from the
        warming thread (already at nice 19), so the new sessions' intra-op threads, which
        Linux creates with their creator's niceness, run at nice 19 too and the kernel serves
        live requests first. Same engine settings as the live voice (its own backend, the same
        threads): both change the audio, so they are part of the cache key, and warmed entries
        must be the live ones. Costs one more copy of the voice's weights while warming runs.
        """
        with self._warm_lock:
            voice = self._warm_instances.get(voice_id)
            if voice is None:
                voice = self.voices.open_instance(voice_id, self.voices.engine_for(voice_id))
                self._warm_instances[voice_id] = voice
            return voice

    def _release_warming_instances(self, warmer: Prewarmer) -> None:
        """Close the warming instances once no warmer runs any more."""
        warmer.wait()
        with self._warm_lock:
            if any(not w.wait(0) for w in self._warmers):
                return  # a later warmer is still running; its own release thread closes them
            instances, self._warm_instances = self._warm_instances, {}
        for voice in instances.values():
            voice.close()
        if instances:
            trimmed = memory.trim()  # a voice's weights and arenas: give the pages back
            _LOGGER.info(
                "event=prewarm-instances-closed voices=%s trimmed=%s",
                ",".join(sorted(instances)),
                trimmed,
            )

    def warming_progress(self) -> dict[str, Any]:
        totals: dict[str, Any] = {"entries": 0, "remaining": 0}
        for warmer in self._warmers:
            p = warmer.progress()
            totals["entries"] += p.total
            totals["remaining"] += p.remaining
            for k in ("rendered", "cached", "failed", "preempted"):
                totals[k] = totals.get(k, 0) + getattr(p, k)
        return totals

    # -- synthesize (worker threads) -------------------------------------------------------------
    def submit_synthesis(self, owner: str, work: Callable[[], None]) -> None:
        """Run a bridge's synthesis (daemon/bridges) on the `synthesize` pool, counted as one:
        the same limits (`busy`, raised here), and pre-warming yields to it. Any thread."""
        self.access.synth.acquire(owner)
        with self._synth_lock:
            self._synth_in_flight += 1
        self._preempt_warming()

        def done() -> None:
            self.access.synth.release(owner)
            with self._synth_lock:
                self._synth_in_flight -= 1

        def run() -> None:
            try:
                work()
            finally:
                done()

        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shut down
            done()
            raise UtterdError("the daemon is stopping") from None

    def _synthesis_chunks(
        self,
        msg: Synthesize,
        info: VoiceInfo,
        params: SynthesisParams,
        cancel: CancelToken,
        document: tuple[Sentence, ...] | None,
    ) -> Iterator[AudioChunk]:
        """A `synthesize`'s audio: its SSML document's, else its text's (or template's)."""
        # A WAV/PCM reply waits for the whole text: throughput, not first-window latency.
        low_latency = bool(msg.stream)
        if document is not None:
            if self.ssml is None:
                raise UtterdError("this daemon was built without SSML")
            return bounded_audio(
                self.ssml.render(
                    document, info.voice_id, params, cancel, mode=msg.cache, low_latency=low_latency
                ),
                len(msg.text),
                params,
            )
        return self.source.stream(
            msg.text,
            info.voice_id,
            params,
            cancel,
            mode=msg.cache,
            slots=msg.slots,
            low_latency=low_latency,
        )

    def _synthesize(
        self,
        envelope: list[bytes],
        request_id: protocol.RequestId,
        msg: Synthesize,
        info: VoiceInfo,
        params: SynthesisParams,
        owner: str,
        job_id: str,
        cancel: CancelToken,
        document: tuple[Sentence, ...] | None = None,
    ) -> None:
        """Render one `synthesize` (worker thread). Every reply names `job_id` to the loop, which
        drops them once it has ended the job itself (stop, cancel, client too slow or gone).
        `document`: the parsed SSML of an SSML request (its marks go in the last reply)."""

        def send(body: replies.Reply, payload: bytes | None = None, final: bool = False) -> None:
            frames = protocol.encode_reply(request_id, body, payload)
            self.outbox.reply(envelope, frames, job=job_id, final=final)

        try:
            cancel.raise_if_cancelled()  # ended while it waited for a worker
            rate = info.sample_rate_hz
            if msg.stream:
                # Chunks are raw PCM whatever `format` asked: a stream has no length for a header.
                send(replies.AudioStart(rate, 2, 1, info.voice_id, job_id, format="pcm"))
            # The reply's body grows in place (its header written last): a long text's audio is
            # held once, not as chunks, then joined, then copied into a WAV.
            collected = bytearray(WAV_HEADER_BYTES if msg.format == "wav" else 0)
            total = 0
            marks: list[dict[str, Any]] = []
            chunks = self._synthesis_chunks(msg, info, params, cancel, document)
            for chunk in chunks:
                marks.extend({"name": name, "offset_samples": total} for name in chunk.marks)
                cancel.raise_if_cancelled()  # a source may yield (a cache hit) without checking
                pcm = float_to_pcm16(chunk.samples).tobytes()
                total += len(chunk.samples)
                if msg.stream:
                    send(replies.AudioChunk(chunk.sentence_index), pcm)
                else:
                    collected += pcm
            cancel.raise_if_cancelled()
            duration_s = round(total / rate, 4)
            if msg.stream:
                send(replies.AudioStop(duration_s, total, job_id, marks or None), final=True)
            else:
                if msg.format == "wav":
                    collected[:WAV_HEADER_BYTES] = wav_header(
                        len(collected) - WAV_HEADER_BYTES, rate
                    )
                payload = bytes(collected)
                del collected  # one copy of the audio while the reply goes out, not two
                audio = replies.Audio(
                    rate,
                    2,
                    1,
                    info.voice_id,
                    duration_s,
                    total,
                    job_id,
                    format=msg.format,
                    marks=marks or None,
                )
                send(audio, payload, final=True)
            self.counters.add("synthesized")
        except UtterdError as exc:
            self.counters.add("errors")
            send(replies.Error(exc.code, exc.message, job=job_id), final=True)
        except Exception as exc:
            self.counters.add("errors")
            _LOGGER.exception("event=synthesize-crash job=%s", job_id)
            message = f"{type(exc).__name__}: {exc}"
            send(replies.Error("internal-error", message, job=job_id), final=True)
        finally:
            self.access.synth.release(owner)
            with self._synth_lock:
                self._synth_in_flight -= 1
