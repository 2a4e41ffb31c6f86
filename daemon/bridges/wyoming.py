"""The Wyoming server (Home Assistant's protocol), inside `utterd serve`.

Why in the daemon: a Wyoming synthesis then runs on the daemon's own loaded voices, phrase
cache and `synthesize` worker pool (`Server.submit_synthesis`: the same limits, and pre-warming
yields to it), so a prompt cached by any client is a hit for every other, no second copy of a
voice is loaded, and there is no extra hop before the first audio. The same server also runs as
a process of its own, `utterd wyoming`, relaying to a running daemon over ZeroMQ
(daemon/bridges/wyoming_relay.py): for Home Assistant on another machine, where the relay
listens on loopback beside it and reaches the daemon over CurveZMQ, since Wyoming itself has no
authentication. Both plug into `Synthesizer` below.

Threads: the asyncio loop runs on its own thread (`utterd-wyoming`) and only parses, writes and
waits; synthesis runs on the pool, streamed text waits for its next sentence on a small pool of
its own (`utterd-wyoming-text`, one thread per streaming connection at most), so neither a slow
model nor a client that sends text slowly ever stalls the loop or holds a synthesis worker.

Per connection (`_Connection`), requests are served one at a time in order; a few more may wait
(`MAX_WAITING`), beyond that `busy`. A `synthesize` gives one `audio-start` / `audio-chunk`s /
`audio-stop` group; a stream (`synthesize-start`, `-chunk`s, `-stop`) gives one group per
sentence as soon as the sentence is complete (daemon/speech/text_stream.py cuts it, abbreviation
aware), then `synthesize-stopped`. Home Assistant also sends the whole text as a `synthesize`
inside an open stream, for servers that cannot stream: it is ignored. Audio is synthesized with
`low_latency`, so the first chunk leaves after the first decoder window, not after the sentence.

Errors: an `error` event with utterd's code, then the connection is closed, since Home Assistant
reads until `audio-stop` / `synthesize-stopped` or the end of the connection and would otherwise
wait forever. Nothing a client sends stops the bridge or the daemon: every failure ends one
connection at most. A client that disconnects has its synthesis cancelled at the next piece
(CancelToken); one that leaves more than CLIENT_BACKLOG_BYTES unread is cut (`client-too-slow`,
as over ZeroMQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from utterd.daemon.bridges import wyoming_events as wev
from utterd.daemon.bridges.wyoming_zeroconf import Announcement, announce
from utterd.daemon.cache.phrase_source import PhraseSource, bounded_audio
from utterd.daemon.outbox import CLIENT_BACKLOG_BYTES
from utterd.daemon.protocol.errors import InvalidHeader, TextTooLong
from utterd.daemon.settings import Settings, WyomingSettings
from utterd.daemon.speech.render import SsmlRenderer
from utterd.daemon.speech.scheduler import Busy
from utterd.daemon.speech.text_stream import StreamClosed, StreamIdle, TextStream
from utterd.models.errors import Cancelled, NothingToSay, UtterdError
from utterd.models.text import guard, ssml
from utterd.models.text.segments import Break, Sentence, TextSegment
from utterd.models.text.ssml import SsmlLimits
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    SynthesisParams,
    VoiceInfo,
    float_to_pcm16,
)
from utterd.models.voice_store import VoiceStore
from wyoming.event import Event

_LOGGER = logging.getLogger(__name__)

MAX_WAITING: Final = 4
"""Requests one connection may have waiting behind the one being served."""

STOP_TIMEOUT_S: Final = 5.0
"""How long `stop` waits for the loop thread to close every connection."""


class ClientTooSlow(UtterdError):
    """The client left more audio unread than the bridge keeps for it."""

    code = "client-too-slow"


class BridgeBindError(UtterdError):
    """The Wyoming server could not listen on `wyoming.uri` (port taken, address not local)."""

    code = "wyoming-bind"


@dataclass(frozen=True)
class Speech:
    """A text checked at the edge, ready to be said."""

    text: str
    """As the client wrote it; empty for a sentence a stream's SSML parser made."""

    ssml: bool
    """`text` is an SSML document."""

    document: tuple[Sentence, ...] | None = None
    """Its parsed sentences (SSML, or a plain text holding a lexicon word said as phonemes);
    None: plain text, or SSML a relay hands on whole."""


class Synthesizer(Protocol):
    """What the bridge needs of utterd: the daemon's parts (`DaemonSynthesizer`), or a relay to
    a running daemon (daemon/bridges/wyoming_relay.py)."""

    streams_ssml: bool
    """SSML of a stream can be said sentence by sentence as it is parsed; False: a streamed SSML
    document is said whole once `synthesize-stop` closes it."""

    def voices(self) -> Sequence[VoiceInfo]:
        """Every voice, for `info` and voice choice."""

    def installed(self, voice_id: str) -> bool:
        """False for a voice that failed to load."""

    def default_voice(self) -> str:
        """`voices.default`."""

    def by_language(self) -> Mapping[str, str]:
        """`voices.by_language` (language tag → voice id); empty for a relay, which does not
        know the daemon's config."""

    def limits(self) -> tuple[int, float]:
        """(`limits.max_text_chars`, `limits.stream_idle_s`), read per request (SIGHUP)."""

    def prepare(self, text: str, info: VoiceInfo, is_ssml: bool) -> Speech:
        """Check a text at the edge (`invalid-ssml`, `nothing-to-say`). Synthesis worker."""

    def pcm(
        self, speech: Speech, info: VoiceInfo, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[bytes]:
        """The audio as 16-bit mono PCM at the voice's rate, window by window (low latency).
        Synthesis worker."""

    def submit(self, owner: str, work: Callable[[], None]) -> None:
        """Run `work` on the synthesis pool; Busy when `owner` or everyone has too many."""


class DaemonSynthesizer:
    """The daemon's voices, phrase cache, SSML renderer and `synthesize` pool."""

    streams_ssml = True

    def __init__(
        self,
        voices: VoiceStore,
        source: PhraseSource,
        renderer: SsmlRenderer,
        settings: Callable[[], Settings],
        submit: Callable[[str, Callable[[], None]], None],
    ) -> None:
        """`settings`: the settings in force (a reload swaps them); `submit`:
        `Server.submit_synthesis`."""
        self._voices = voices
        self._source = source
        self._renderer = renderer
        self._settings = settings
        self._submit = submit

    def voices(self) -> Sequence[VoiceInfo]:
        return self._voices.infos()

    def installed(self, voice_id: str) -> bool:
        return self._voices.load_error(voice_id) is None

    def default_voice(self) -> str:
        return self._settings().voices.default

    def by_language(self) -> Mapping[str, str]:
        return self._settings().voices.by_language

    def limits(self) -> tuple[int, float]:
        limits = self._settings().limits
        return limits.max_text_chars, limits.stream_idle_s

    def prepare(self, text: str, info: VoiceInfo, is_ssml: bool) -> Speech:
        """As `synthesize` checks its text (Server._check_text, without templates)."""
        if is_ssml:
            document = ssml.parse(text, SsmlLimits(max_chars=self.limits()[0]))
            segments = [s for sentence in document.sentences for s in sentence.segments]
            if not any(isinstance(s, Break) and s.duration_ms > 0 for s in segments):
                said = " ".join(s.text for s in segments if isinstance(s, TextSegment))
                guard.check_speakable(said, info.language)
            return Speech(text, True, document.sentences)
        guard.check_speakable(text, info.language)
        # A word said as phonemes (text.lexicon) makes a plain text SSML sentences.
        return Speech(text, False, self._renderer.lexicon_sentences(text, info.voice_id))

    def pcm(
        self, speech: Speech, info: VoiceInfo, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[bytes]:
        """As `synthesize` with `stream: true` makes it (Server._synthesis_chunks)."""
        chunks: Iterator[AudioChunk]
        if speech.document is None:
            chunks = self._source.stream(speech.text, info.voice_id, params, cancel)
        else:
            chunks = self._renderer.render(speech.document, info.voice_id, params, cancel)
            if speech.text:  # a streamed sentence is bounded by its segments' own budgets
                chunks = bounded_audio(chunks, len(speech.text), params)
        for chunk in chunks:
            if len(chunk.samples):
                yield float_to_pcm16(chunk.samples).tobytes()

    def submit(self, owner: str, work: Callable[[], None]) -> None:
        self._submit(owner, work)


@dataclass
class _Session:
    """One request of a connection: a `synthesize`, or a stream opened by `synthesize-start`."""

    info: VoiceInfo
    """The voice it speaks with."""

    params: SynthesisParams
    """Its speaker; everything else as a `synthesize` without options."""

    text: str | None = None
    """A `synthesize`'s text; None for a stream."""

    ssml: bool | None = None
    """The text is SSML; None: a stream that has not shown it yet."""

    stream: TextStream | None = None
    """A stream's text once its format is known."""

    held: str = ""
    """A stream's text before its format is known (only whitespace or the start of `<speak`),
    or all of an SSML text said whole (`Synthesizer.streams_ssml` False)."""

    closed: bool = False
    """`synthesize-stop` came (streams)."""

    known: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the text can be read: `stream` exists, or SSML said whole is complete."""

    cancel: CancelToken = field(default_factory=CancelToken)
    """Set when the connection ends; the synthesis stops at its next piece."""


class _Connection:
    """One Wyoming client: reads its events, serves its requests in order, writes the answers.
    Everything here runs on the loop thread, except the `work` handed to the synthesis pool."""

    def __init__(
        self,
        bridge: WyomingBridge,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        name: str,
    ) -> None:
        self._bridge = bridge
        self._synth = bridge.synth
        self._reader = reader
        self._writer = writer
        self.name = name
        """`host:port` of the peer: the per-client limits count against `wyoming:` + this."""
        self._sessions: deque[_Session] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    # -- reading -----------------------------------------------------------------------------
    async def serve(self) -> None:
        try:
            while not self._closing:
                event = await self._next_event()
                if event is None:
                    break
                self._dispatch(event)
        except UtterdError as exc:
            self.fail(exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-event
        except Exception as exc:  # a bug must cost this connection, never the bridge
            _LOGGER.exception("event=wyoming-connection-crash client=%s", self.name)
            self.fail(UtterdError(f"{type(exc).__name__}: {exc}"))
        finally:
            self.close("the client is gone")

    async def _next_event(self) -> Event | None:
        """The next event; None at the end, or when the client has sent nothing for
        `limits.stream_idle_s` while none of its requests runs (a connection that only holds
        one of the `max_clients` places is let go)."""
        _, idle_s = self._synth.limits()
        read = asyncio.ensure_future(self._read_event())
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=idle_s)
                if done:
                    return read.result()
                if not self._sessions:
                    _LOGGER.info("event=wyoming-idle client=%s idle_s=%g", self.name, idle_s)
                    return None
        finally:
            read.cancel()

    async def _read_event(self) -> Event | None:
        """The next event, every length bounded before it is read; None at the end."""
        line = b""
        while not line.strip():  # blank lines between events are skipped
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    raise InvalidHeader("the connection ended inside an event header") from None
                return None
            except asyncio.LimitOverrunError:
                raise InvalidHeader(
                    f"an event header is longer than {wev.MAX_HEADER_BYTES} bytes"
                ) from None
        header = wev.decode_header(line)
        raw = await self._reader.readexactly(header.data_length) if header.data_length else b""
        payload = (
            await self._reader.readexactly(header.payload_length) if header.payload_length else None
        )
        return Event(header.type, wev.decode_data(header, raw), payload)

    def _dispatch(self, event: Event) -> None:
        max_chars, _ = self._synth.limits()
        request = wev.parse_request(event, max_chars)
        if request is None:
            _LOGGER.debug("event=wyoming-ignored client=%s type=%s", self.name, event.type)
            return
        if isinstance(request, wev.DescribeRequest):
            voices = self._synth.voices()
            installed = {info.voice_id: self._synth.installed(info.voice_id) for info in voices}
            self.write(wev.info_event(voices, installed, self._bridge.version))
            return
        stream = self._open_stream()
        if isinstance(request, wev.SynthesizeRequest):
            if stream is not None:
                return  # Home Assistant's copy of a streamed text, for servers that cannot stream
            info, speaker = self._voice(request.voice)
            self._add(_Session(info, SynthesisParams(speaker=speaker), request.text, request.ssml))
        elif isinstance(request, wev.StreamStart):
            if stream is not None:
                raise StreamClosed("synthesize-start while a stream is open: send synthesize-stop")
            info, speaker = self._voice(request.voice)
            session = _Session(info, SynthesisParams(speaker=speaker))
            if request.ssml is not None:
                self._decide(session, request.ssml)
            self._add(session)
        elif stream is None:
            raise StreamClosed(f"{event.type} without an open stream: send synthesize-start first")
        elif isinstance(request, wev.StreamChunk):
            self._feed(stream, request.text)
        else:
            self._close_text(stream)

    def _voice(self, choice: wev.VoiceChoice) -> tuple[VoiceInfo, str | None]:
        return wev.resolve_voice(
            choice, self._synth.voices(), self._synth.default_voice(), self._synth.by_language()
        )

    def _open_stream(self) -> _Session | None:
        """The stream still taking text, if any (only the last request can be one)."""
        last = self._sessions[-1] if self._sessions else None
        return last if last is not None and last.text is None and not last.closed else None

    def _add(self, session: _Session) -> None:
        if len(self._sessions) > MAX_WAITING:
            raise Busy(f"{MAX_WAITING} requests already wait on this connection; wait for audio")
        self._sessions.append(session)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"wyoming {self.name}")

    # -- streamed text -----------------------------------------------------------------------
    def _decide(self, session: _Session, is_ssml: bool) -> None:
        """The stream's format is known: its text goes to a TextStream from now on, unless it
        is SSML the synthesizer says whole (then it is held until `synthesize-stop`)."""
        session.ssml = is_ssml
        if is_ssml and not self._synth.streams_ssml:
            return
        max_chars, _ = self._synth.limits()
        session.stream = TextStream(
            max_chars, "ssml" if is_ssml else "text", SsmlLimits(max_chars=max_chars)
        )
        held, session.held = session.held, ""
        if held:
            session.stream.feed(held)
        session.known.set()

    def _feed(self, session: _Session, text: str) -> None:
        if session.stream is not None:
            session.stream.feed(text)
            return
        max_chars, _ = self._synth.limits()
        if len(session.held) + len(text) > max_chars:
            raise TextTooLong(f"more than {max_chars} characters would wait unspoken")
        session.held += text
        if session.ssml is not None:
            return  # SSML said whole at synthesize-stop
        head = session.held.lstrip()
        if not head or (head[0] == "<" and not wev.is_ssml(head) and len(head) < len("<speak")):
            return  # not known yet: only whitespace, or what may become `<speak`
        self._decide(session, wev.is_ssml(head))

    def _close_text(self, session: _Session) -> None:
        session.closed = True
        if session.ssml is None:
            self._decide(session, wev.is_ssml(session.held))
        if session.stream is not None:
            session.stream.close()
        session.known.set()

    # -- serving -----------------------------------------------------------------------------
    async def _run(self) -> None:
        """Serve the requests in order until none is left or the connection ends."""
        try:
            while self._sessions and not self._closing:
                session = self._sessions[0]
                if session.text is not None:
                    await self._speak(session, session.text, bool(session.ssml))
                else:
                    await self._run_stream(session)
                self._sessions.popleft()
        except UtterdError as exc:
            self.fail(exc)
        except Exception as exc:
            _LOGGER.exception("event=wyoming-session-crash client=%s", self.name)
            self.fail(UtterdError(f"{type(exc).__name__}: {exc}"))

    async def _run_stream(self, session: _Session) -> None:
        """One group per sentence as each is complete, then `synthesize-stopped`."""
        _, idle_s = self._synth.limits()
        try:
            await asyncio.wait_for(session.known.wait(), idle_s)
        except TimeoutError:
            raise StreamIdle(f"no text came for {idle_s:g} s (limits.stream_idle_s)") from None
        if session.stream is None:  # SSML said whole, now that it is complete
            await self._speak(session, session.held, True)
            self.write(wev.synthesize_stopped())
            return
        loop = asyncio.get_running_loop()
        while True:
            sentence = await loop.run_in_executor(
                self._bridge.text_pool, session.stream.next_sentence, session.cancel, idle_s
            )
            if sentence is None:
                break
            if isinstance(sentence, Sentence):
                await self._speak(session, "", True, (sentence,))
            else:
                await self._speak(session, sentence, False)
        self.write(wev.synthesize_stopped())

    async def _speak(
        self,
        session: _Session,
        text: str,
        is_ssml: bool,
        document: tuple[Sentence, ...] | None = None,
    ) -> None:
        """One `audio-start` / `audio-chunk`s / `audio-stop` group, synthesized on the pool
        (`is_ssml` None: `document` is already checked). A streamed sentence with nothing to say
        is skipped, without a group."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[UtterdError | None] = loop.create_future()
        rate_hz = session.info.sample_rate_hz
        streamed = session.text is None
        cancel = session.cancel

        def post(event: Event) -> None:
            _call_soon(loop, self.write, event)

        def finish(result: UtterdError | None) -> None:
            _call_soon(loop, _resolve, done, result)

        def work() -> None:  # a synthesis worker
            try:
                cancel.raise_if_cancelled()  # the client left while it waited for a worker
                if document is not None:
                    speech = Speech("", True, document)
                else:
                    speech = self._synth.prepare(text, session.info, is_ssml)
                post(wev.audio_start(rate_hz))
                for pcm in self._synth.pcm(speech, session.info, session.params, cancel):
                    cancel.raise_if_cancelled()  # a cache hit may yield without checking
                    post(wev.audio_chunk(rate_hz, pcm))
                cancel.raise_if_cancelled()
                post(wev.audio_stop())
                finish(None)
            except NothingToSay as exc:
                finish(None if streamed else exc)  # a streamed piece with nothing to say: skipped
            except UtterdError as exc:
                finish(exc)
            except Exception as exc:
                _LOGGER.exception("event=wyoming-synthesis-crash client=%s", self.name)
                finish(UtterdError(f"{type(exc).__name__}: {exc}"))

        self._synth.submit(f"wyoming:{self.name}", work)
        self._bridge.count("syntheses")
        result = await done
        if result is not None:
            raise result

    # -- writing and ending ------------------------------------------------------------------
    def write(self, event: Event) -> None:
        """Send an event now (loop thread); never waits. A client that lets more than
        CLIENT_BACKLOG_BYTES pile up unread is cut."""
        if self._closing:
            return
        self._writer.write(wev.encode_event(event))
        unread = self._writer.transport.get_write_buffer_size()
        if unread > CLIENT_BACKLOG_BYTES:
            _LOGGER.warning("event=wyoming-client-too-slow client=%s unread=%d", self.name, unread)
            self._bridge.count("errors")
            self.close(ClientTooSlow.code, abort=True)

    def fail(self, exc: UtterdError) -> None:
        """Answer `error` with utterd's code, then end the connection."""
        if self._closing:
            return
        level = logging.INFO if not isinstance(exc, Cancelled) else logging.DEBUG
        _LOGGER.log(
            level,
            "event=wyoming-error client=%s code=%s message=%r",
            self.name,
            exc.code,
            exc.message,
        )
        self._bridge.count("errors")
        self.write(wev.error_event(exc))
        self.close(exc.code)

    def close(self, reason: str, *, abort: bool = False) -> None:
        """End the connection: every request of it is cancelled at its next piece."""
        if self._closing:
            return
        self._closing = True
        for session in self._sessions:
            session.cancel.cancel(reason)
            if session.stream is not None:
                session.stream.abort()
        if self._runner is not None:
            self._runner.cancel()  # a worker that finishes later finds its future done
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()


def _resolve(future: asyncio.Future[UtterdError | None], result: UtterdError | None) -> None:
    if not future.done():
        future.set_result(result)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Hand a worker's result to the loop thread; dropped once the loop has ended (shutdown)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class WyomingBridge:
    """The Wyoming TCP server: its own thread and asyncio loop, started and stopped by the
    service (daemon/service.py) around the socket loop."""

    def __init__(self, settings: WyomingSettings, synth: Synthesizer, version: str) -> None:
        endpoint = settings.endpoint()
        assert endpoint is not None, "the service starts a bridge only when wyoming.uri is set"
        self.host, self.port = endpoint
        self.settings = settings
        self.synth = synth
        self.version = version
        self.text_pool = ThreadPoolExecutor(
            max_workers=settings.max_clients, thread_name_prefix="utterd-wyoming-text"
        )
        """Where streamed text waits for its next sentence (one thread per stream at most)."""
        self._connections: set[_Connection] = set()
        self._counters = dict.fromkeys(("connections", "syntheses", "errors"), 0)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: UtterdError | None = None
        self._thread: threading.Thread | None = None
        self._zeroconf = "off"
        self.state = "stopped"

    def start(self) -> None:
        """Listen (BridgeBindError if that fails), then serve on the bridge's thread."""
        self._thread = threading.Thread(target=self._main, name="utterd-wyoming", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        """Close the listener and every connection (their syntheses stop at the next piece)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
            self._thread.join(STOP_TIMEOUT_S)
        self.text_pool.shutdown(wait=False, cancel_futures=True)
        self.state = "stopped"

    def count(self, name: str) -> None:
        self._counters[name] += 1

    def describe(self) -> dict[str, Any]:
        """The bridge's section of the ZeroMQ `describe`."""
        return {
            "state": self.state,
            "uri": self.settings.uri,
            "clients": len(self._connections),
            "zeroconf": self._zeroconf,
            "counters": dict(self._counters),
        }

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # never silent: the service sees it at start, the log later
            _LOGGER.exception("event=wyoming-crash")
            if not self._ready.is_set():
                self._error = BridgeBindError(f"{type(exc).__name__}: {exc}")
                self._ready.set()
            self.state = "failed"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._on_connection, self.host, self.port, limit=wev.MAX_HEADER_BYTES
            )
        except OSError as exc:
            self._error = BridgeBindError(
                f"cannot listen on {self.settings.uri}: {exc.strerror or exc}"
            )
            self._ready.set()
            return
        announcement: Announcement | None = None
        if self.settings.zeroconf:
            announcement, self._zeroconf = await announce(
                self.settings.zeroconf_name, self.host, self.port
            )
        self.state = "serving"
        _LOGGER.info(
            "event=wyoming-listening uri=%s zeroconf=%s", self.settings.uri, self._zeroconf
        )
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            self.state = "stopping"
            server.close()
            for connection in list(self._connections):
                connection.close("the daemon is stopping")
            if announcement is not None:
                await announcement.withdraw()
            await server.wait_closed()
            _LOGGER.info("event=wyoming-stopped")

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else f"peer{next(self._ids)}"
        connection = _Connection(self, reader, writer, name)
        if len(self._connections) >= self.settings.max_clients or self.state != "serving":
            connection.fail(
                Busy(f"{self.settings.max_clients} Wyoming clients are connected (max_clients)")
            )
            return
        self._connections.add(connection)
        self.count("connections")
        _LOGGER.debug("event=wyoming-connected client=%s", name)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
            _LOGGER.debug("event=wyoming-disconnected client=%s", name)
