"""The Wyoming bridge's server (daemon/bridges/wyoming.py) over real loopback TCP, spoken to by
the `wyoming` package's own client, with a fake synthesizer in place of the daemon's voices:
request order, streamed sentences, the ignored compatibility `synthesize`, errors as events
(and the bridge serving on after them), bounds, cancellation on disconnect, shutdown, zeroconf."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from utterd.daemon.bridges import wyoming_zeroconf
from utterd.daemon.bridges.wyoming import (
    MAX_WAITING,
    BridgeBindError,
    Speech,
    WyomingBridge,
)
from utterd.daemon.settings import WyomingSettings
from utterd.models.text import guard, ssml
from utterd.models.text.segments import Sentence, TextSegment
from utterd.models.voice import (
    CancelToken,
    SynthesisParams,
    VoiceInfo,
    float_to_pcm16,
)
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

RATE_HZ = 16000
VOICES = (
    VoiceInfo("alpha", "fake", "en-US", RATE_HZ, source="/v"),
    VoiceInfo("beta", "fake", "de-DE", RATE_HZ, speakers=("x", "y"), source="/v"),
)


class FakeSynth:
    """Says each text as `pieces` chunks of a level that encodes the text's length."""

    streams_ssml = True

    def __init__(self, pieces: int = 3, piece_s: float = 0.0, idle_s: float = 5.0) -> None:
        self.pieces = pieces
        self.piece_s = piece_s
        self.idle_s = idle_s
        self.said: list[str | tuple[Sentence, ...]] = []
        self.tokens: list[CancelToken] = []
        self.produced = 0
        self.pool = ThreadPoolExecutor(2)

    def voices(self) -> Sequence[VoiceInfo]:
        return VOICES

    def installed(self, voice_id: str) -> bool:
        return voice_id != "beta"

    def default_voice(self) -> str:
        return "alpha"

    def by_language(self) -> Mapping[str, str]:
        return {}

    def limits(self) -> tuple[int, float]:
        return 200, self.idle_s

    def prepare(self, text: str, info: VoiceInfo, is_ssml: bool) -> Speech:
        if is_ssml:
            return Speech(text, True, ssml.parse(text).sentences)
        guard.check_speakable(text, info.language)
        return Speech(text, False)

    def pcm(
        self, speech: Speech, info: VoiceInfo, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[bytes]:
        self.said.append(speech.text if speech.document is None else speech.document)
        self.tokens.append(cancel)
        for _ in range(self.pieces):
            cancel.raise_if_cancelled()
            time.sleep(self.piece_s)
            self.produced += 1
            yield float_to_pcm16(self.samples(speech.text)).tobytes()

    def samples(self, text: str) -> np.ndarray:
        return level(text)

    def submit(self, owner: str, work: Callable[[], None]) -> None:
        assert owner.startswith("wyoming:127.0.0.1:")
        self.pool.submit(work)


def level(text: str) -> np.ndarray:
    return np.full(100, len(text) / 1000, np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def synth() -> Iterator[FakeSynth]:
    fake = FakeSynth()
    yield fake
    fake.pool.shutdown(cancel_futures=True)


def start(synth: FakeSynth, **settings: Any) -> WyomingBridge:
    uri = f"tcp://127.0.0.1:{free_port()}"
    bridge = WyomingBridge(WyomingSettings(uri=uri, **settings), synth, "9.9")
    bridge.start()
    return bridge


@pytest.fixture
def bridge(synth: FakeSynth) -> Iterator[WyomingBridge]:
    b = start(synth)
    yield b
    b.stop()


def client(bridge: WyomingBridge) -> AsyncTcpClient:
    return AsyncTcpClient(bridge.host, bridge.port, read_timeout=5)


async def read_until(c: AsyncTcpClient, last: set[str]) -> list[Event]:
    events = []
    while True:
        event = await c.read_event()
        assert event is not None, f"the connection ended after {[e.type for e in events]}"
        events.append(event)
        if event.type in last:
            return events


async def read_to_end(c: AsyncTcpClient) -> list[Event]:
    events = []
    while (event := await c.read_event()) is not None:
        events.append(event)
    return events


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- what a client gets ---------------------------------------------------------------------------
def test_describe_then_synthesize_on_one_connection(
    bridge: WyomingBridge, synth: FakeSynth
) -> None:
    async def go() -> list[Event]:
        async with client(bridge) as c:
            await c.write_event(Event("transcribe", {"language": "en"}))  # not for TTS: ignored
            await c.write_event(Describe().event())
            info = await c.read_event()
            await c.write_event(Synthesize(text="Hello there.").event())
            assert info is not None
            return [info, *await read_until(c, {"audio-stop"})]

    events = run(go())
    program = Info.from_event(events[0]).tts[0]
    assert program.supports_synthesize_streaming and program.version == "9.9"
    assert {v.name: v.installed for v in program.voices} == {"alpha": True, "beta": False}
    assert [e.type for e in events[1:]] == ["audio-start"] + ["audio-chunk"] * 3 + ["audio-stop"]
    assert events[1].data == {"rate": RATE_HZ, "width": 2, "channels": 1}
    expected = float_to_pcm16(level("Hello there.")).tobytes()
    assert all(e.payload == expected for e in events[2:5])
    assert synth.said == ["Hello there."]


def test_a_stream_is_spoken_sentence_by_sentence_and_the_copy_is_ignored(
    bridge: WyomingBridge, synth: FakeSynth
) -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        async with client(bridge) as c:
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="beta")).event())
            for piece in ("The lights are ", "on. Dr. Smith is", " here. And"):
                await c.write_event(SynthesizeChunk(text=piece).event())
            # Two complete sentences are spoken while the text is still open.
            early = await read_until(c, {"audio-stop"})
            early += await read_until(c, {"audio-stop"})
            await c.write_event(SynthesizeChunk(text=" then?").event())
            whole = "The lights are on. Dr. Smith is here. And then?"
            await c.write_event(Synthesize(text=whole).event())  # Home Assistant's copy
            await c.write_event(SynthesizeStop().event())
            return early, await read_until(c, {"synthesize-stopped"})

    early, rest = run(go())
    assert synth.said == ["The lights are on.", "Dr. Smith is here.", "And then?"]
    group = ["audio-start"] + ["audio-chunk"] * 3 + ["audio-stop"]
    assert [e.type for e in early] == group * 2
    assert [e.type for e in rest] == [*group, "synthesize-stopped"]


def test_requests_on_one_connection_are_served_in_order(
    bridge: WyomingBridge, synth: FakeSynth
) -> None:
    async def go() -> list[Event]:
        async with client(bridge) as c:
            await c.write_event(Synthesize(text="One.").event())
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeChunk(text="Two. Three").event())
            await c.write_event(SynthesizeStop().event())
            await c.write_event(Synthesize(text="Four.").event())
            events = await read_until(c, {"synthesize-stopped"})
            return events + await read_until(c, {"audio-stop"})

    events = run(go())
    assert synth.said == ["One.", "Two.", "Three", "Four."]
    assert [e.type for e in events].count("audio-start") == 4


def test_ssml_is_found_by_how_a_stream_or_text_starts(
    bridge: WyomingBridge, synth: FakeSynth
) -> None:
    async def go() -> None:
        async with client(bridge) as c:
            await c.write_event(SynthesizeStart().event())
            for piece in ("  <sp", "eak>Hi <break time='100ms'/> there.", "</speak>"):
                await c.write_event(SynthesizeChunk(text=piece).event())
            await c.write_event(SynthesizeStop().event())
            await read_until(c, {"synthesize-stopped"})
            await c.write_event(Synthesize(text="<speak>Plain <s>words</s></speak>").event())
            await read_until(c, {"audio-stop"})

    run(go())
    streamed, whole = synth.said
    assert isinstance(streamed, tuple) and isinstance(streamed[0], Sentence)
    words = [s.text for s in streamed[0].segments if isinstance(s, TextSegment)]
    assert words == ["Hi", "there."]
    assert isinstance(whole, tuple) and len(whole) == 2


def test_streamed_ssml_is_said_whole_by_a_synthesizer_that_cannot_stream_it(
    synth: FakeSynth,
) -> None:
    synth.streams_ssml = False  # a relay: the ZeroMQ synthesize takes whole documents
    bridge = start(synth)

    async def go() -> list[Event]:
        async with client(bridge) as c:
            await c.write_event(SynthesizeStart().event())
            for piece in ("<speak>One. ", "Two. ", "Three.</speak>"):
                await c.write_event(SynthesizeChunk(text=piece).event())
            await c.write_event(SynthesizeStop().event())
            return await read_until(c, {"synthesize-stopped"})

    try:
        events = run(go())
    finally:
        bridge.stop()
    (said,) = synth.said
    assert isinstance(said, tuple) and len(said) == 3  # one document of three sentences
    assert [e.type for e in events].count("audio-start") == 1


def test_a_streamed_sentence_with_nothing_to_say_is_skipped(
    bridge: WyomingBridge, synth: FakeSynth
) -> None:
    async def go() -> list[Event]:
        async with client(bridge) as c:
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeChunk(text="Hi. ... !!! Bye.").event())
            await c.write_event(SynthesizeStop().event())
            return await read_until(c, {"synthesize-stopped"})

    events = run(go())
    assert synth.said == ["Hi.", "Bye."]
    assert [e.type for e in events].count("audio-start") == 2


# -- errors end one connection, never the bridge -----------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([b"not json\n"], "invalid-json"),
        ([b'{"type": "synthesize", "data_length": 5000000}\n'], "invalid-header"),
        ([b'{"type": "synthesize"' + b" " * 70_000 + b"}\n"], "invalid-header"),
        ([b'{"type": "synthesize", "data": {"text": 1}}\n'], "wrong-type"),
        ([b'{"type": "synthesize", "data": {"text": "' + b"a" * 201 + b'"}}\n'], "text-too-long"),
        (
            [b'{"type": "synthesize", "data": {"text": "hi", "voice": {"name": "zz"}}}\n'],
            "unknown-voice",
        ),
        ([b'{"type": "synthesize", "data": {"text": "?!"}}\n'], "nothing-to-say"),
        ([b'{"type": "synthesize", "data": {"text": "<speak>a</spek>"}}\n'], "invalid-ssml"),
        ([b'{"type": "synthesize-chunk", "data": {"text": "a"}}\n'], "stream-closed"),
        ([b'{"type": "synthesize-stop"}\n'], "stream-closed"),
        ([b'{"type": "synthesize-start"}\n', b'{"type": "synthesize-start"}\n'], "stream-closed"),
        (
            [b'{"type": "synthesize-start"}\n']
            + [b'{"type": "synthesize-chunk", "data": {"text": "' + b"w " * 60 + b'"}}\n'] * 2,
            "text-too-long",
        ),
    ],
)
def test_bad_input_gets_an_error_event_and_the_bridge_serves_on(
    bridge: WyomingBridge, synth: FakeSynth, lines: list[bytes], code: str
) -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        reader, writer = await asyncio.open_connection(bridge.host, bridge.port)
        for line in lines:
            writer.write(line)
        await writer.drain()
        bad = []
        while (event := await asyncio.wait_for(async_read_event(reader), 5)) is not None:
            bad.append(event)
        writer.close()
        async with client(bridge) as c:
            await c.write_event(Synthesize(text="Still here.").event())
            return bad, await read_until(c, {"audio-stop"})

    bad, good = run(go())
    assert [(e.type, e.data["code"]) for e in bad] == [("error", code)]
    assert bad[0].data["text"]
    assert good[-1].type == "audio-stop"
    assert bridge.describe()["counters"]["errors"] == 1


def test_more_waiting_requests_than_allowed_get_busy(synth: FakeSynth) -> None:
    synth.piece_s = 0.2
    bridge = start(synth)

    async def go() -> list[Event]:
        async with client(bridge) as c:
            for n in range(MAX_WAITING + 2):
                await c.write_event(Synthesize(text=f"Text {n}.").event())
            return await read_to_end(c)

    try:
        events = run(go())
    finally:
        bridge.stop()
    assert events[-1].type == "error" and events[-1].data["code"] == "busy"
    assert all(token.cancelled for token in synth.tokens)  # what ran was cut with it


def test_one_client_more_than_max_clients_gets_busy(synth: FakeSynth) -> None:
    bridge = start(synth, max_clients=1)

    async def go() -> list[Event]:
        async with client(bridge) as first:
            await first.write_event(Describe().event())
            await first.read_event()
            async with client(bridge) as second:
                return await read_to_end(second)

    try:
        events = run(go())
    finally:
        bridge.stop()
    assert [(e.type, e.data["code"]) for e in events] == [("error", "busy")]


def test_a_stream_without_text_ends_with_stream_idle(synth: FakeSynth) -> None:
    synth.idle_s = 0.3
    bridge = start(synth)

    async def go() -> list[Event]:
        async with client(bridge) as c:
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeChunk(text="Half a sente").event())
            return await read_to_end(c)

    try:
        events = run(go())
    finally:
        bridge.stop()
    assert [(e.type, e.data["code"]) for e in events] == [("error", "stream-idle")]


def test_an_idle_connection_is_let_go_but_not_one_waiting_for_audio(synth: FakeSynth) -> None:
    synth.idle_s, synth.pieces, synth.piece_s = 0.3, 10, 0.1  # a second of audio to make
    bridge = start(synth)

    async def go() -> tuple[float, list[Event]]:
        async with client(bridge) as idle:
            started = time.monotonic()
            assert await read_to_end(idle) == []
            waited = time.monotonic() - started
        async with client(bridge) as c:
            await c.write_event(Synthesize(text="Slow to make.").event())
            return waited, await read_until(c, {"audio-stop"})

    try:
        waited, events = run(go())
    finally:
        bridge.stop()
    assert 0.25 < waited < 2
    assert events[-1].type == "audio-stop" and len(events) == 12


# -- cancellation ---------------------------------------------------------------------------------
def test_a_client_that_disconnects_has_its_synthesis_cancelled(synth: FakeSynth) -> None:
    synth.pieces, synth.piece_s = 200, 0.01
    bridge = start(synth)

    async def go() -> None:
        async with client(bridge) as c:
            await c.write_event(Synthesize(text="A long text.").event())
            await read_until(c, {"audio-chunk"})

    try:
        run(go())
        deadline = time.monotonic() + 2
        while not (synth.tokens and synth.tokens[0].cancelled) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert synth.tokens[0].cancelled and synth.tokens[0].reason == "the client is gone"
        time.sleep(0.1)
        assert synth.produced < 50  # stopped at the next piece, not after the text
    finally:
        bridge.stop()


def test_a_client_that_does_not_read_is_cut(synth: FakeSynth) -> None:
    synth.pieces, synth.piece_s = 400, 0.002
    synth.samples = lambda text: np.full(200_000, 0.1, np.float32)  # type: ignore[method-assign]
    bridge = start(synth)

    async def go() -> None:
        sock = socket.create_connection((bridge.host, bridge.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b'{"type": "synthesize", "data": {"text": "Never read."}}\n')
        deadline = time.monotonic() + 5
        while not (synth.tokens and synth.tokens[0].cancelled) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        sock.close()

    try:
        run(go())
        assert synth.tokens[0].reason == "client-too-slow"
        assert synth.produced < 400
    finally:
        bridge.stop()


def test_stop_closes_connections_and_cancels_their_synthesis(synth: FakeSynth) -> None:
    synth.pieces, synth.piece_s = 500, 0.01
    bridge = start(synth)
    done = threading.Event()
    seen: list[list[Event]] = []

    async def go() -> None:
        async with client(bridge) as c:
            await c.write_event(Synthesize(text="Long.").event())
            events = await read_until(c, {"audio-chunk"})
            done.set()
            seen.append(events + await read_to_end(c))

    thread = threading.Thread(target=run, args=(go(),))
    thread.start()
    assert done.wait(5)
    started = time.monotonic()
    bridge.stop()
    thread.join(5)
    assert time.monotonic() - started < 2
    assert synth.tokens[0].cancelled and seen and seen[0][-1].type == "audio-chunk"
    assert bridge.describe()["state"] == "stopped"


def test_a_taken_port_stops_the_start(synth: FakeSynth, bridge: WyomingBridge) -> None:
    other = WyomingBridge(WyomingSettings(uri=f"tcp://127.0.0.1:{bridge.port}"), synth, "9.9")
    with pytest.raises(BridgeBindError) as excinfo:
        other.start()
    assert excinfo.value.code == "wyoming-bind" and str(bridge.port) in excinfo.value.message


# -- zeroconf ---------------------------------------------------------------------------------------
class FakeAnnouncement:
    withdrawn = False

    async def withdraw(self) -> None:
        self.withdrawn = True


def test_zeroconf_announces_through_the_registration() -> None:
    calls: list[tuple[str, str, str, int]] = []
    made = FakeAnnouncement()

    async def register(service: str, name: str, address: str, port: int) -> FakeAnnouncement:
        calls.append((service, name, address, port))
        return made

    announcement, state = run(wyoming_zeroconf.announce("kitchen", "192.0.2.7", 10200, register))
    assert announcement is made
    assert calls == [("_wyoming._tcp.local.", "kitchen", "192.0.2.7", 10200)]
    assert state == "announced as kitchen at 192.0.2.7:10200"
    assert wyoming_zeroconf.service_name(None).startswith("utterd-")


def test_zeroconf_is_skipped_when_the_package_is_missing_or_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "zeroconf.asyncio", None)  # import now raises ImportError
    announcement, state = run(wyoming_zeroconf.announce(None, "192.0.2.7", 10200))
    assert announcement is None and state.startswith("unavailable")

    async def broken(service: str, name: str, address: str, port: int) -> FakeAnnouncement:
        raise OSError("no multicast route")

    announcement, state = run(wyoming_zeroconf.announce(None, "192.0.2.7", 10200, broken))
    assert announcement is None and "no multicast route" in state
