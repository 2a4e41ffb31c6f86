"""utterd's ZeroMQ messages: parsing requests and building replies and events. No sockets here.

A message is multipart: a JSON header frame `{"type": ..., "id": ..., "data": {...}}`, then an
optional binary payload frame. Request types and their fields live in one table,
`REQUEST_TYPES`, mapping each type name to a frozen dataclass; the parser is driven by those
dataclasses (field names, type hints, defaults, ranges in field metadata), so what is documented
on a field is what is enforced. docs/protocol.md describes the same messages for client authors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Union, get_args, get_origin, get_type_hints

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.settings import LimitsSettings
from utterd.daemon.speech.priorities import PRIORITIES, Priority
from utterd.models.errors import UtterdError
from utterd.models.voice import MAX_RATE, MAX_VOLUME, MIN_RATE, SynthesisParams

__all__ = [
    "ERROR_CODES",
    "PAYLOAD_TYPES",
    "PRIORITIES",
    "REQUEST_TYPES",
    "AudioFormat",
    "CacheClear",
    "CacheMode",
    "CacheWarm",
    "Cancel",
    "Describe",
    "EmptyText",
    "InvalidHeader",
    "InvalidJson",
    "InvalidUtf8",
    "InvalidValue",
    "JobQuery",
    "MalformedFrames",
    "Message",
    "MissingField",
    "Pause",
    "Ping",
    "Priority",
    "ProtocolError",
    "Request",
    "RequestId",
    "Resume",
    "Speak",
    "SpeakChunk",
    "SpeakStart",
    "SpeakStop",
    "Stop",
    "Synthesize",
    "TextTooLong",
    "UnknownField",
    "UnknownType",
    "WrongType",
    "error_reply",
    "event",
    "parse_request",
    "peek_id",
    "reply",
    "request_frames",
    "split_envelope",
]

RequestId = str | int | None
"""A request's `id` as the client sent it; echoed in the reply. None: the client sent none."""


AudioFormat = Literal["wav", "pcm"]
"""`wav`: a complete RIFF/WAVE file. `pcm`: raw signed 16-bit little-endian mono samples."""


_RANGE: Final = "range"
"""Field-metadata key: inclusive (low, high) bounds of a number."""

_TEXT: Final = "text"
"""Field-metadata key: the field is the text to speak (empty-text and text-too-long apply)."""

_PIECE: Final = "piece"
"""Field-metadata key: the field is a piece of a text sent in parts: it may be empty or only
whitespace (a space between two words is a piece), and text-too-long applies."""

_HEADER_KEYS: Final = ("type", "id", "data")


# ---------------------------------------------------------------------------------------------
# Errors. Each code is stable; the server turns any of them into an `error` reply.


class ProtocolError(UtterdError):
    """A request that cannot be parsed or is invalid; never raised itself, only its subclasses."""

    code = "invalid-request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The header or data field at fault, if one is."""
        self.request_id: RequestId = None
        """The request's id when it could be read, so that the error reply can echo it."""


class MalformedFrames(ProtocolError):
    """No frames, more than header + payload, or a payload frame where the type takes none."""

    code = "malformed-frames"


class InvalidUtf8(ProtocolError):
    """The header frame is not valid UTF-8."""

    code = "invalid-utf8"


class InvalidJson(ProtocolError):
    """The header frame is not JSON (or repeats a key, or nests too deeply)."""

    code = "invalid-json"


class InvalidHeader(ProtocolError):
    """The header is JSON but not an object, `data` is not an object, or `id` is not str/int/null."""

    code = "invalid-header"


class UnknownType(ProtocolError):
    """`type` names no request type."""

    code = "unknown-type"


class UnknownField(ProtocolError):
    """The header or `data` has a field the type does not define (a typo must not be ignored)."""

    code = "unknown-field"


class MissingField(ProtocolError):
    """A required field is absent."""

    code = "missing-field"


class WrongType(ProtocolError):
    """A field has the wrong JSON type (booleans are not numbers)."""

    code = "wrong-type"


class EmptyText(ProtocolError):
    """The text is empty or only whitespace."""

    code = "empty-text"


class TextTooLong(ProtocolError):
    """The text has more characters than `limits.max_text_chars`."""

    code = "text-too-long"


class InvalidValue(ProtocolError):
    """A field's value is out of range or not one of the allowed values (also NaN, inf)."""

    code = "invalid-value"


ERROR_CODES: Final[tuple[str, ...]] = tuple(
    cls.code
    for cls in (
        MalformedFrames,
        InvalidUtf8,
        InvalidJson,
        InvalidHeader,
        UnknownType,
        UnknownField,
        MissingField,
        WrongType,
        EmptyText,
        TextTooLong,
        InvalidValue,
    )
)
"""Every code `parse_request` and `split_envelope` raise."""


# ---------------------------------------------------------------------------------------------
# Request messages: the `data` object of each request type.


@dataclass(frozen=True)
class _SpeechRequest:
    """Fields shared by `speak` and `synthesize`."""

    text: str = field(metadata={_TEXT: True})
    """What to say, as plain text; not empty, at most `limits.max_text_chars` characters."""

    voice: str | None = None
    """Voice id; None means the configured default voice."""

    speaker: str | int | None = None
    """Speaker name or id (>= 0) of a multi-speaker voice; None means the voice's default."""

    rate: float = field(default=1.0, metadata={_RANGE: (MIN_RATE, MAX_RATE)})
    """Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast; 0.25..4.0."""

    volume: float = field(default=1.0, metadata={_RANGE: (0.0, MAX_VOLUME)})
    """Linear gain applied to every chunk: 0 is silent, 1.0 unchanged; 0..4.0."""

    deterministic: bool = False
    """Synthesize without random noise: the same request gives the same audio."""

    cache: CacheMode = "auto"
    """Phrase cache use: `auto` (replay a hit, store a miss), `refresh` (synthesize anew and
    replace the entry), `off` (neither read nor store)."""

    slots: dict[str, str] | None = None
    """Values for a templated prompt: `text` is then a template such as
    `Your balance is {amount}.`; the fixed parts come from the cache, the slots are synthesized."""

    def synthesis_params(self) -> SynthesisParams:
        """The engine's view of this request."""
        return SynthesisParams(
            speaker=self.speaker,
            rate=self.rate,
            volume=self.volume,
            deterministic=self.deterministic,
        )


@dataclass(frozen=True)
class Speak(_SpeechRequest):
    """Queue text for playback on the sound device. Reply: `queued` with the job id."""

    priority: Priority = "text"
    """How the job competes with the others (SSIP's rules, docs/protocol.md): `important`,
    `message`, `text` (the default, as in speech-dispatcher), `notification`, `progress`."""


@dataclass(frozen=True)
class SpeakStart:
    """Open a `speak` job whose text follows in `speak-chunk`s and ends with `speak-stop`;
    sentences are spoken as they are complete. Reply: `queued` with the job id."""

    voice: str | None = None
    """Voice id; None means the configured default voice."""

    speaker: str | int | None = None
    """Speaker name or id (>= 0) of a multi-speaker voice; None means the voice's default."""

    rate: float = field(default=1.0, metadata={_RANGE: (MIN_RATE, MAX_RATE)})
    """Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast; 0.25..4.0."""

    volume: float = field(default=1.0, metadata={_RANGE: (0.0, MAX_VOLUME)})
    """Linear gain applied to every chunk: 0 is silent, 1.0 unchanged; 0..4.0."""

    deterministic: bool = False
    """Synthesize without random noise: the same request gives the same audio."""

    cache: CacheMode = "auto"
    """Phrase cache use for each sentence, as for `speak`."""

    priority: Priority = "text"
    """As for `speak`; the rules apply when `speak-start` arrives."""

    def synthesis_params(self) -> SynthesisParams:
        """The engine's view of this request."""
        return SynthesisParams(
            speaker=self.speaker,
            rate=self.rate,
            volume=self.volume,
            deterministic=self.deterministic,
        )


@dataclass(frozen=True)
class SpeakChunk:
    """More text for a job opened by `speak-start`. Reply: `chunk-queued`."""

    job: str
    """The job id, as returned to `speak-start`."""

    text: str = field(metadata={_PIECE: True})
    """The next piece of the text, joined to the previous ones as it is (put the spaces in);
    may be only whitespace. At most `limits.max_text_chars` characters may wait unspoken."""


@dataclass(frozen=True)
class SpeakStop:
    """No more text for a job opened by `speak-start`: its last sentence is complete and the job
    ends once everything is spoken. Reply: `text-closed`."""

    job: str
    """The job id, as returned to `speak-start`."""


@dataclass(frozen=True)
class Synthesize(_SpeechRequest):
    """Synthesize text and send the audio back instead of playing it. Reply: `audio`."""

    format: AudioFormat = "wav"
    """`wav` or `pcm` (raw s16le mono at the voice's rate)."""

    stream: bool = False
    """True: reply with `audio-start`, `audio-chunk`s as they are made, then `audio-stop`."""


@dataclass(frozen=True)
class _Target:
    """Whose speech a `stop`, `cancel`, `pause` or `resume` is about (SSIP's id | self | all)."""

    job: str | None = None
    """One job id. Leave out `job` and `client` for every client's jobs."""

    client: str | None = None
    """`self` for the sender's own jobs, or a client id as events carry it (the hex of a ZeroMQ
    routing id) for that client's jobs; not together with `job`."""


@dataclass(frozen=True)
class Stop(_Target):
    """Silence the speaking job of the target (a named job is also dropped if it waits); the
    queue goes on. Reply: `stopped`."""


@dataclass(frozen=True)
class Cancel(_Target):
    """Like `stop`, and drop the target's waiting jobs as well. Reply: `cancelled`."""


@dataclass(frozen=True)
class Pause(_Target):
    """Pause the target's speech at the next piece boundary, keeping the rest; its waiting (and
    later) jobs wait until `resume`. Reply: `paused`."""


@dataclass(frozen=True)
class Resume(_Target):
    """End a pause made with the same target (no target ends every pause). Reply: `resumed`."""


@dataclass(frozen=True)
class Describe:
    """Ask what the daemon offers (voices, formats, limits). Reply: `info`."""


@dataclass(frozen=True)
class Ping:
    """Check that the daemon answers. Reply: `pong`."""


@dataclass(frozen=True)
class JobQuery:
    """Ask for the status of one job. Reply: `job`."""

    job: str
    """Job id, as returned in `queued`; required."""


@dataclass(frozen=True)
class CacheClear:
    """Remove phrase-cache entries. Reply: `cache-cleared`."""

    voice: str | None = None
    """Only the entries of this voice id; None clears everything."""


@dataclass(frozen=True)
class CacheWarm:
    """Render prompts into the phrase cache in the background. Reply: `cache-warming`."""

    entries: list[str]
    """Pre-warm entries, one prompt each, in the pre-warm syntax of config.yaml
    (`Battery low.` or `voice=en_US-joe-medium rate=1.1 | Battery low.`)."""


Message = (
    Speak
    | SpeakStart
    | SpeakChunk
    | SpeakStop
    | Synthesize
    | Stop
    | Cancel
    | Pause
    | Resume
    | Describe
    | Ping
    | JobQuery
    | CacheClear
    | CacheWarm
)
"""The `data` of any request, decoded."""

REQUEST_TYPES: Final[Mapping[str, type[Message]]] = types.MappingProxyType(
    {
        "speak": Speak,
        "synthesize": Synthesize,
        "speak-start": SpeakStart,
        "speak-chunk": SpeakChunk,
        "speak-stop": SpeakStop,
        "stop": Stop,
        "cancel": Cancel,
        "pause": Pause,
        "resume": Resume,
        "describe": Describe,
        "ping": Ping,
        "job": JobQuery,
        "cache-clear": CacheClear,
        "cache-warm": CacheWarm,
    }
)
"""Request type name → the dataclass of its `data`. The one table the parser and docs follow."""

PAYLOAD_TYPES: Final[frozenset[str]] = frozenset()
"""Request types that may carry a payload frame; none does yet."""


@dataclass(frozen=True)
class Request:
    """One parsed request."""

    type: str
    """The request type, a key of `REQUEST_TYPES`."""

    id: RequestId
    """The client's id, echoed in every reply to this request; None if it sent none."""

    message: Message
    """The decoded `data`."""

    payload: bytes | None = None
    """The payload frame, for types in `PAYLOAD_TYPES`; None otherwise."""


# ---------------------------------------------------------------------------------------------
# Parsing.


def split_envelope(frames: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split what a ROUTER socket received into (envelope, body).

    The envelope is the peer identity plus, for REQ clients (and DEALERs that imitate them), the
    empty delimiter frame; send it back in front of the reply. The body is the header frame and
    the optional payload. Clients must connect directly: frames added by proxies are not
    recognised. Raises MalformedFrames when there is no identity frame at all.
    """
    if not frames:
        raise MalformedFrames("message has no frames, not even the sender's identity")
    # A header frame is never empty (it is JSON), so an empty second frame is a delimiter.
    cut = 2 if len(frames) > 1 and len(frames[1]) == 0 else 1
    return [bytes(f) for f in frames[:cut]], [bytes(f) for f in frames[cut:]]


def parse_request(body: Sequence[bytes], limits: LimitsSettings) -> Request:
    """Parse and validate a request body (header frame, optional payload frame).

    Raises a ProtocolError subclass naming what is wrong; its `request_id` carries the
    request's id whenever that could be read, for the error reply to echo.
    """
    if not body:
        raise MalformedFrames("message has no header frame")
    if len(body) > 2:
        raise MalformedFrames(
            f"expected 1 or 2 frames (header, payload), got {len(body)}; "
            "send text inside the header's data"
        )
    header = _decode_header(body[0])
    if not isinstance(header, dict):
        raise InvalidHeader(f"header must be a JSON object, got {_json_type(header)}")
    request_id = _request_id(header)
    try:
        return _parse_header(header, request_id, body[1] if len(body) == 2 else None, limits)
    except ProtocolError as exc:
        exc.request_id = request_id
        raise


class _DuplicateKey(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on which of two equal keys wins; refuse to guess.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


def _decode_header(frame: bytes) -> object:
    try:
        text = bytes(frame).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(frame)[exc.start]
        raise InvalidUtf8(
            f"header is not UTF-8: invalid byte 0x{bad:02x} at offset {exc.start}"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"header is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(char {exc.pos})"
        ) from None
    except RecursionError:
        raise InvalidJson("header is not JSON we accept: nested too deeply") from None
    except ValueError as exc:
        # Duplicate keys, and integers longer than Python converts (4300 digits).
        raise InvalidJson(f"header is not JSON we accept: {exc}") from None


def peek_id(body: Sequence[bytes]) -> RequestId:
    """The request's id if it can be read, else None; never raises.

    `parse_request` already puts the id on the ProtocolError it raises (`request_id`); this is
    for callers that want the id before parsing.
    """
    if not body:
        return None
    try:
        header = json.loads(bytes(body[0]).decode("utf-8"))
        return _request_id(header) if isinstance(header, dict) else None
    except (ValueError, RecursionError, ProtocolError):
        return None


def _request_id(header: dict[str, Any]) -> RequestId:
    request_id = header.get("id")
    if request_id is None or isinstance(request_id, str):
        return request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return request_id
    raise InvalidHeader(
        f"id must be a string, an integer or null, got {_json_type(request_id)}", field="id"
    )


def _parse_header(
    header: dict[str, Any], request_id: RequestId, payload: bytes | None, limits: LimitsSettings
) -> Request:
    unknown = sorted(set(header) - set(_HEADER_KEYS))
    if unknown:
        raise UnknownField(
            f"unknown header field(s) {_names(unknown)}; a header has type, id and data",
            field=unknown[0],
        )
    if "type" not in header:
        raise MissingField("header has no 'type'", field="type")
    type_name = header["type"]
    if not isinstance(type_name, str):
        raise WrongType(f"field 'type': expected string, got {_json_type(type_name)}", field="type")
    cls = REQUEST_TYPES.get(type_name)
    if cls is None:
        raise UnknownType(
            f"unknown request type {type_name!r}; known types: {', '.join(REQUEST_TYPES)}",
            field="type",
        )
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidHeader(f"data must be a JSON object, got {_json_type(data)}", field="data")
    if payload is not None and type_name not in PAYLOAD_TYPES:
        raise MalformedFrames(f"request {type_name!r} takes no payload frame; send one frame")
    message = _parse_data(cls, data, limits)
    return Request(type=type_name, id=request_id, message=message, payload=payload)


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    hint: Any
    required: bool
    metadata: Mapping[str, Any]


def _field_specs(cls: type[Message]) -> tuple[_FieldSpec, ...]:
    hints = get_type_hints(cls)
    return tuple(
        _FieldSpec(
            name=f.name,
            hint=hints[f.name],
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            metadata=f.metadata,
        )
        for f in dataclasses.fields(cls)
    )


# Computed once: get_type_hints is too slow to call per request.
_SPECS: Final[Mapping[type[Message], tuple[_FieldSpec, ...]]] = {
    cls: _field_specs(cls) for cls in REQUEST_TYPES.values()
}


def _parse_data(cls: type[Message], data: dict[str, Any], limits: LimitsSettings) -> Message:
    specs = _SPECS[cls]
    known = [spec.name for spec in specs]
    unknown = sorted(set(data) - set(known))
    if unknown:
        offered = f"{', '.join(known)}" if known else "none"
        raise UnknownField(
            f"unknown field(s) {_names(unknown)} in data; fields of this type: {offered}",
            field=unknown[0],
        )
    kwargs: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in data:
            if spec.required:
                raise MissingField(f"data has no {spec.name!r}; it is required", field=spec.name)
            continue
        kwargs[spec.name] = _parse_value(spec, data[spec.name], limits)
    return cls(**kwargs)


def _parse_value(spec: _FieldSpec, value: object, limits: LimitsSettings) -> object:
    if not _matches(spec.hint, value):
        raise WrongType(
            f"field {spec.name!r}: expected {_expected(spec.hint)}, got {_json_type(value)}",
            field=spec.name,
        )
    if value is None:
        return None
    if isinstance(value, str):
        return _parse_string(spec, value, limits)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return _parse_number(spec, value)
    if isinstance(value, dict | list):
        return _parse_strings(spec, value, limits)
    return value


def _parse_strings(
    spec: _FieldSpec, value: dict[str, str] | list[str], limits: LimitsSettings
) -> dict[str, str] | list[str]:
    """An object or array of strings: every string valid Unicode, the total within the text limit."""
    strings = [*value.keys(), *value.values()] if isinstance(value, dict) else list(value)
    total = sum(len(v) for v in strings)
    if total > limits.max_text_chars:
        raise TextTooLong(
            f"field {spec.name!r} holds {total} characters; the limit is {limits.max_text_chars}",
            field=spec.name,
        )
    for item in strings:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValue(f"field {spec.name!r} has a lone surrogate", field=spec.name) from None
    return value


def _parse_string(spec: _FieldSpec, value: str, limits: LimitsSettings) -> str:
    if spec.metadata.get(_PIECE):
        if len(value) > limits.max_text_chars:
            raise TextTooLong(
                f"field {spec.name!r} has {len(value)} characters; the limit is "
                f"{limits.max_text_chars}",
                field=spec.name,
            )
    elif spec.metadata.get(_TEXT):
        if not value.strip():
            raise EmptyText(f"field {spec.name!r} is empty or only whitespace", field=spec.name)
        if len(value) > limits.max_text_chars:
            raise TextTooLong(
                f"field {spec.name!r} has {len(value)} characters; the limit is "
                f"{limits.max_text_chars}",
                field=spec.name,
            )
    elif not value.strip():
        raise InvalidValue(
            f"field {spec.name!r} is empty; leave it out for the default", field=spec.name
        )
    choices = _literal_choices(spec.hint)
    if choices and value not in choices:
        raise InvalidValue(
            f"field {spec.name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}",
            field=spec.name,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON's \\ud800 escapes can smuggle in half a surrogate pair, which no engine accepts.
        raise InvalidValue(
            f"field {spec.name!r} has a lone surrogate (U+{ord(value[exc.start]):04X}) at "
            f"character {exc.start}",
            field=spec.name,
        ) from None
    return value


def _parse_number(spec: _FieldSpec, value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(
            f"field {spec.name!r} must be a finite number, got {value}", field=spec.name
        )
    bounds: tuple[float, float] | None = spec.metadata.get(_RANGE)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise InvalidValue(
            f"field {spec.name!r} must be in {bounds[0]}..{bounds[1]}, got {value}",
            field=spec.name,
        )
    if isinstance(value, int) and value < 0:
        # The only integers are speaker ids.
        raise InvalidValue(f"field {spec.name!r} must be >= 0, got {value}", field=spec.name)
    return float(value) if _is_float_field(spec.hint) else value


def _is_union(hint: object) -> bool:
    origin = get_origin(hint)
    return origin is Union or origin is types.UnionType


def _members(hint: object) -> tuple[object, ...]:
    return get_args(hint) if _is_union(hint) else (hint,)


def _is_float_field(hint: object) -> bool:
    return float in _members(hint)


def _literal_choices(hint: object) -> tuple[str, ...]:
    for member in _members(hint):
        if get_origin(member) is Literal:
            return tuple(str(arg) for arg in get_args(member))
    return ()


def _matches(hint: object, value: object) -> bool:
    for member in _members(hint):
        if member is type(None) and value is None:
            return True
        if member is bool and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue  # Booleans are ints in Python, never numbers on the wire.
        if member is int and isinstance(value, int):
            return True
        if member is float and isinstance(value, int | float):
            return True
        if (member is str or get_origin(member) is Literal) and isinstance(value, str):
            return True
        if get_origin(member) is dict and isinstance(value, dict):
            return all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if get_origin(member) is list and isinstance(value, list):
            return all(isinstance(v, str) for v in value)
    return False


_WIRE_NAMES: Final[Mapping[object, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _wire_name(member: object) -> str:
    origin = get_origin(member)
    if origin is Literal:
        return "string"
    if origin is dict:
        return "object of strings"
    if origin is list:
        return "array of strings"
    return _WIRE_NAMES.get(member, str(member))


def _expected(hint: object) -> str:
    names = [_wire_name(m) for m in _members(hint)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _names(names: list[str]) -> str:
    # repr() keeps control characters and lone surrogates from a client readable and encodable.
    shown = ", ".join(repr(name[:40]) for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---------------------------------------------------------------------------------------------
# Building.


def _encode(header: Mapping[str, object]) -> bytes:
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # A lone surrogate can only sit inside a JSON string, where backslashreplace writes it as
    # the \\udXXX escape it came in as: valid UTF-8, same value for the reader.
    return text.encode("utf-8", "backslashreplace")


def _header(type_name: str, request_id: RequestId, data: Mapping[str, object]) -> dict[str, object]:
    header: dict[str, object] = {"type": type_name}
    if request_id is not None:
        header["id"] = request_id
    header["data"] = dict(data)
    return header


def reply(
    request_id: RequestId,
    type: str,
    data: Mapping[str, object],
    payload: bytes | None = None,
) -> list[bytes]:
    """The body of a reply: header frame (with `id` when the request had one), then payload.

    The server sends the request's envelope in front of it.
    """
    frames = [_encode(_header(type, request_id, data))]
    if payload is not None:
        frames.append(payload)
    return frames


def error_reply(
    request_id: RequestId,
    code: str,
    message: str,
    details: Mapping[str, object] | None = None,
) -> list[bytes]:
    """The body of an `error` reply: data `{"code": code, "message": message}`, plus `details`
    (such as `retry_after_s` of `rate-limited`)."""
    return reply(request_id, "error", {"code": code, "message": message, **(details or {})})


def event(kind: str, data: Mapping[str, object]) -> list[bytes]:
    """A PUB message: [topic, header]. The topic is `kind`, so subscribers can filter by it."""
    return [kind.encode("utf-8"), _encode({"type": kind, "data": dict(data)})]


def request_frames(
    type: str,
    data: Mapping[str, object] | None = None,
    request_id: RequestId = None,
    payload: bytes | None = None,
) -> list[bytes]:
    """The body of a request, for clients (the CLI) and tests; the inverse of `parse_request`."""
    return reply(request_id, type, data or {}, payload)
