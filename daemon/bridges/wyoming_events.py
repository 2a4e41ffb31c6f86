"""Wyoming events ↔ utterd: a TTS client's events read and checked, utterd's answers built.

Pure translation, no sockets or threads, so that every rule here is unit-tested on its own:

- **The wire** (`decode_header`, `encode_event`): an event is one JSON line (`type`, optional
  `data`, `data_length`, `payload_length`, `version`), then `data_length` bytes of JSON merged
  into `data`, then `payload_length` bytes of payload. The `wyoming` package's own reader trusts
  the lengths a peer sends; here every length is bounded before a byte is read (`MAX_*`), and a
  header that is not such an object is `invalid-utf8` / `invalid-json` / `invalid-header`.
- **Requests** (`parse_request`): `describe`, `synthesize`, `synthesize-start`, `-chunk`,
  `-stop`, checked like utterd's own protocol (text is a string, not empty, within
  `limits.max_text_chars`, no lone surrogates; `voice` an object of strings). Events of any other
  type are not for a TTS server and are ignored, as Wyoming asks of servers (None).
- **SSML**: Home Assistant never sends `text_format`, but users write SSML into a message; so a
  text is SSML when `text_format` is `ssml` *or* it starts with `<speak` (or an XML
  declaration), as `is_ssml` decides. `text_format` other than `text`/`ssml` is `invalid-value`.
- **Voices** (`resolve_voice`): by name (utterd's voice id), else by language (the default voice
  if it speaks it, else the first voice by id whose tag matches, then whose primary language
  does), else the default voice; `speaker` is checked against the voice (`unknown-speaker`).
- **Answers**: `info` lists every voice (name, description, languages, speakers, attribution,
  version, installed) under one TTS program with `supports_synthesize_streaming: true`; audio is
  16-bit mono at the voice's rate; an `error` carries utterd's stable `code` (UtterdError.code).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from utterd.daemon.protocol.errors import (
    EmptyText,
    InvalidHeader,
    InvalidJson,
    InvalidUtf8,
    InvalidValue,
    MissingField,
    TextTooLong,
    WrongType,
)
from utterd.models.errors import UnknownVoice, UtterdError
from utterd.models.text import frontend
from utterd.models.voice import VoiceInfo, distribution_version
from wyoming.event import Event
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker
from wyoming.version import __version__ as WYOMING_VERSION

MAX_HEADER_BYTES: Final = 64 * 1024
"""Longest header line accepted (a TTS request's header is a few hundred bytes)."""

MAX_DATA_BYTES: Final = 1024 * 1024
"""Most bytes of `data` after the header: 20,000 characters of text escaped as `\\uXXXX` pairs
fit (12 bytes each), a flood does not."""

MAX_PAYLOAD_BYTES: Final = 1024 * 1024
"""Most payload bytes read (and dropped) with an event; a TTS request carries none."""

SAMPLE_WIDTH_BYTES: Final = 2
"""Audio is signed 16-bit little-endian, mono, at the voice's own rate."""

PROGRAM_NAME: Final = "utterd"
"""The TTS program's name in `info` (Home Assistant shows it as the entity's name)."""

_SSML_STARTS: Final = ("<speak", "<?xml")
"""How an SSML document begins, when `text_format` does not say."""


@dataclass(frozen=True)
class Header:
    """An event's first line, checked: what follows it and how long each part is."""

    type: str
    """The event type (`synthesize`, ...)."""

    data: dict[str, Any]
    """The `data` object of the line itself (the part after it is merged in by the reader)."""

    data_length: int
    """Bytes of JSON data after the line, within MAX_DATA_BYTES."""

    payload_length: int
    """Bytes of payload after the data, within MAX_PAYLOAD_BYTES."""


@dataclass(frozen=True)
class VoiceChoice:
    """The `voice` object of `synthesize` / `synthesize-start`; None fields were not given."""

    name: str | None = None
    """A voice id, as `info` lists it; wins over `language`."""

    language: str | None = None
    """A language tag (`en-US`, `en_US`, `en`); used when no name is given."""

    speaker: str | None = None
    """A speaker name or id of a multi-speaker voice."""


@dataclass(frozen=True)
class DescribeRequest:
    """`describe`: answer `info`."""


@dataclass(frozen=True)
class SynthesizeRequest:
    """`synthesize`: one text, one `audio-start` / `audio-chunk`s / `audio-stop` group."""

    text: str
    """What to say, plain text or SSML."""

    voice: VoiceChoice
    """Which voice; all None: the default voice."""

    ssml: bool
    """`text` is an SSML document (`text_format: ssml`, or it starts like one)."""


@dataclass(frozen=True)
class StreamStart:
    """`synthesize-start`: text follows in `synthesize-chunk`s until `synthesize-stop`."""

    voice: VoiceChoice
    """Which voice, for the whole stream."""

    ssml: bool | None
    """True/False when `text_format` says; None: decided by how the text starts."""


@dataclass(frozen=True)
class StreamChunk:
    """`synthesize-chunk`: the next piece of the streamed text, joined exactly as sent."""

    text: str
    """The piece; may be empty or only whitespace."""


@dataclass(frozen=True)
class StreamStop:
    """`synthesize-stop`: the streamed text is complete."""


Request: TypeAlias = DescribeRequest | SynthesizeRequest | StreamStart | StreamChunk | StreamStop
"""What a TTS client can ask."""


# -- the wire --------------------------------------------------------------------------------------
def decode_header(line: bytes) -> Header:
    """The header line of an event, checked; InvalidUtf8 / InvalidJson / InvalidHeader when it
    is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8(f"the event header is not UTF-8 (byte {exc.start})") from None
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the event header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidHeader(f"the event header is not a JSON object but {_kind(header)}")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidHeader("the event header has no 'type' string", field="type")
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidHeader(f"the event's 'data' is {_kind(data)}, not an object", field="data")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    return Header(kind, data, data_length, payload_length)


def _length(header: Mapping[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidHeader(f"{key!r} must be a byte count, got {_kind(value)}", field=key)
    if value > limit:
        raise InvalidHeader(f"{key!r} is {value} bytes; the limit is {limit}", field=key)
    return value


def decode_data(header: Header, raw: bytes) -> dict[str, Any]:
    """The event's full `data`: the header's object with the JSON after the line merged in."""
    if not raw:
        return header.data
    try:
        extra = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidUtf8(f"the event's data is not UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the event's data is not JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise InvalidHeader(f"the event's data is {_kind(extra)}, not an object", field="data")
    return {**header.data, **extra}


def encode_event(event: Event) -> bytes:
    """An event as Wyoming's wire has it: the header line, its data, its payload."""
    header: dict[str, Any] = {"type": event.type, "version": WYOMING_VERSION}
    data = json.dumps(event.data, ensure_ascii=False).encode("utf-8") if event.data else b""
    if data:
        header["data_length"] = len(data)
    payload = event.payload or b""
    if payload:
        header["payload_length"] = len(payload)
    line = json.dumps(header, ensure_ascii=False).encode("utf-8") + b"\n"
    return line + data + payload


# -- requests --------------------------------------------------------------------------------------
def parse_request(event: Event, max_text_chars: int) -> Request | None:
    """The TTS request an event is, checked; None for an event a TTS server ignores."""
    data = event.data
    if event.type == "describe":
        return DescribeRequest()
    if event.type == "synthesize":
        text = _text(data, max_text_chars, required=True)
        fmt = _text_format(data)
        return SynthesizeRequest(
            text, _voice(data), fmt == "ssml" or (fmt is None and is_ssml(text))
        )
    if event.type == "synthesize-start":
        fmt = _text_format(data)
        return StreamStart(_voice(data), None if fmt is None else fmt == "ssml")
    if event.type == "synthesize-chunk":
        return StreamChunk(_text(data, max_text_chars, required=False))
    if event.type == "synthesize-stop":
        return StreamStop()
    return None


def is_ssml(text: str) -> bool:
    """Whether a text starts like an SSML document (leading whitespace aside)."""
    return text.lstrip().startswith(_SSML_STARTS)


def _text(data: Mapping[str, Any], max_chars: int, *, required: bool) -> str:
    if "text" not in data:
        raise MissingField("the event has no 'text'", field="text")
    text = data["text"]
    if not isinstance(text, str):
        raise WrongType(f"'text' must be a string, got {_kind(text)}", field="text")
    _check_unicode(text, "text")
    if required and not text.strip():
        raise EmptyText("'text' is empty", field="text")
    if len(text) > max_chars:
        raise TextTooLong(
            f"'text' has {len(text)} characters; the limit is {max_chars}", field="text"
        )
    return text


def _text_format(data: Mapping[str, Any]) -> str | None:
    fmt = data.get("text_format")
    if fmt is None:
        return None
    if fmt not in ("text", "ssml"):
        raise InvalidValue(
            f"'text_format' must be 'text' or 'ssml', got {_kind(fmt)}", field="text_format"
        )
    return str(fmt)


def _voice(data: Mapping[str, Any]) -> VoiceChoice:
    voice = data.get("voice")
    if voice is None:
        return VoiceChoice()
    if not isinstance(voice, dict):
        raise WrongType(f"'voice' must be an object, got {_kind(voice)}", field="voice")
    fields: dict[str, str | None] = {}
    for key in ("name", "language", "speaker"):
        value = voice.get(key)
        if value is not None and not isinstance(value, str):
            raise WrongType(
                f"'voice.{key}' must be a string, got {_kind(value)}", field=f"voice.{key}"
            )
        if value is not None:
            _check_unicode(value, f"voice.{key}")
        fields[key] = value.strip() or None if value is not None else None
    return VoiceChoice(fields["name"], fields["language"], fields["speaker"])


def _check_unicode(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValue(
            f"{field!r} has a lone surrogate (U+{ord(text[exc.start]):04X})", field=field
        ) from None


def _kind(value: object) -> str:
    """A value's JSON kind, as an error message names it (the value itself may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# -- voices ----------------------------------------------------------------------------------------
def resolve_voice(
    choice: VoiceChoice,
    voices: Sequence[VoiceInfo],
    default_id: str,
    by_language: Mapping[str, str] | None = None,
) -> tuple[VoiceInfo, str | None]:
    """(the voice to speak with, its speaker or None); UnknownVoice / UnknownSpeaker.
    `by_language`: config `voices.by_language`, which names the voice for a language tag or
    its primary language before any other rule (an id not installed is passed over)."""
    by_id = {info.voice_id: info for info in voices}
    if choice.name is not None:
        info = by_id.get(choice.name)
        if info is None:
            raise UnknownVoice(f"no voice {choice.name!r}; `describe` lists the voices")
    elif choice.language is not None:
        named = _named_for_language(choice.language, by_language or {}, by_id)
        info = named or _voice_for_language(choice.language, voices, by_id.get(default_id))
    else:
        info = by_id.get(default_id)
        if info is None:
            raise UnknownVoice(f"the default voice {default_id!r} is not installed")
    info.speaker_id(choice.speaker)  # UnknownSpeaker, before any work
    return info, choice.speaker


def _named_for_language(
    language: str, by_language: Mapping[str, str], by_id: Mapping[str, VoiceInfo]
) -> VoiceInfo | None:
    wanted = _tag(language)
    named = {_tag(tag): voice_id for tag, voice_id in by_language.items()}
    for tag in (wanted, frontend.primary_language(wanted)):
        info = by_id.get(named.get(tag, ""))
        if info is not None:
            return info
    return None


def _voice_for_language(
    language: str, voices: Sequence[VoiceInfo], default: VoiceInfo | None
) -> VoiceInfo:
    wanted = _tag(language)
    primary = frontend.primary_language(wanted)
    ordered = ([default] if default is not None else []) + sorted(
        voices, key=lambda info: info.voice_id
    )
    for same in (
        lambda tag: tag == wanted,
        lambda tag: frontend.primary_language(tag) == primary,
    ):
        for info in ordered:
            if same(_tag(info.language)):
                return info
    raise UnknownVoice(f"no voice speaks {language!r}; `describe` lists the voices")


def _tag(language: str) -> str:
    return language.replace("_", "-").lower()


# -- answers ---------------------------------------------------------------------------------------
def info_event(voices: Sequence[VoiceInfo], installed: Mapping[str, bool], version: str) -> Event:
    """`info`: one TTS program, every voice; `installed[id]` False for a voice that failed to
    load (Home Assistant then does not offer it)."""
    listed = [
        TtsVoice(
            name=info.voice_id,
            description=f"{info.voice_id} ({info.family}, {info.language})",
            attribution=_attribution(info),
            installed=installed.get(info.voice_id, True),
            version=_voice_version(info),
            languages=[info.language],
            speakers=[TtsVoiceSpeaker(name=name) for name in info.speakers] or None,
        )
        for info in sorted(voices, key=lambda info: info.voice_id)
    ]
    program = TtsProgram(
        name=PROGRAM_NAME,
        description="utterd: offline neural text to speech, streamed below the sentence",
        attribution=Attribution(name="utterd", url=""),
        installed=True,
        version=version,
        voices=listed,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program]).event()


def _is_package(source: str) -> bool:
    """A voice's source is a PyPI package name, not a folder."""
    return bool(source) and "/" not in source


def _attribution(info: VoiceInfo) -> Attribution:
    url = f"https://pypi.org/project/{info.source}/" if _is_package(info.source) else ""
    return Attribution(name=info.source or info.family, url=url)


def _voice_version(info: VoiceInfo) -> str | None:
    """The voice package's version; None for a voice read from a folder."""
    return (distribution_version(info.source) or None) if _is_package(info.source) else None


def audio_start(rate_hz: int) -> Event:
    return Event("audio-start", {"rate": rate_hz, "width": SAMPLE_WIDTH_BYTES, "channels": 1})


def audio_chunk(rate_hz: int, pcm: bytes) -> Event:
    data = {"rate": rate_hz, "width": SAMPLE_WIDTH_BYTES, "channels": 1}
    return Event("audio-chunk", data, payload=pcm)


def audio_stop() -> Event:
    return Event("audio-stop", {})


def synthesize_stopped() -> Event:
    return Event("synthesize-stopped", {})


def error_event(exc: UtterdError) -> Event:
    """Wyoming's `error` with utterd's stable code (`code`) and message (`text`)."""
    return Event("error", {"text": exc.message, "code": exc.code})
