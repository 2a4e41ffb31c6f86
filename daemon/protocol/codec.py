"""The wire's framing: envelopes, parsing a request's frames into a `Request`, and encoding
replies, events and requests as frames. No sockets here.

A message is multipart: a JSON header frame `{"type": ..., "id": ..., "data": {...}}`, then an
optional binary payload frame. The parser is driven by the request dataclasses (messages.py):
field names, type hints, defaults, ranges in field metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, get_origin

from utterd.daemon.protocol.errors import (
    EmptyText,
    InvalidHeader,
    InvalidJson,
    InvalidUtf8,
    InvalidValue,
    MalformedFrames,
    MissingField,
    ProtocolError,
    RequestId,
    TextTooLong,
    UnknownField,
    UnknownType,
    WrongType,
)
from utterd.daemon.protocol.events import Event
from utterd.daemon.protocol.messages import (
    PAYLOAD_TYPES,
    PIECE,
    RANGE,
    REQUEST_TYPES,
    TEXT,
    Message,
    Request,
)
from utterd.daemon.protocol.replies import Reply
from utterd.daemon.settings import LimitsSettings
from utterd.daemon.validation import (
    FieldSpec,
    field_specs,
    literal_choices,
    matches_scalar,
    members,
)

__all__ = [
    "encode_event",
    "encode_reply",
    "error_reply",
    "event",
    "parse_request",
    "peek_id",
    "reply",
    "request_frames",
    "split_envelope",
]

_HEADER_KEYS: Final = ("type", "id", "data")


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


# Computed once: get_type_hints is too slow to call per request.
_SPECS: Final[Mapping[type[Message], tuple[FieldSpec, ...]]] = {
    cls: field_specs(cls) for cls in REQUEST_TYPES.values()
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


def _parse_value(spec: FieldSpec, value: object, limits: LimitsSettings) -> object:
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
    spec: FieldSpec, value: dict[str, str] | list[str], limits: LimitsSettings
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
            raise InvalidValue(
                f"field {spec.name!r} has a lone surrogate", field=spec.name
            ) from None
    return value


def _parse_string(spec: FieldSpec, value: str, limits: LimitsSettings) -> str:
    if spec.metadata.get(PIECE):
        if len(value) > limits.max_text_chars:
            raise TextTooLong(
                f"field {spec.name!r} has {len(value)} characters; the limit is "
                f"{limits.max_text_chars}",
                field=spec.name,
            )
    elif spec.metadata.get(TEXT):
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
    choices = literal_choices(spec.hint)
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


def _parse_number(spec: FieldSpec, value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(
            f"field {spec.name!r} must be a finite number, got {value}", field=spec.name
        )
    bounds: tuple[float, float] | None = spec.metadata.get(RANGE)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise InvalidValue(
            f"field {spec.name!r} must be in {bounds[0]}..{bounds[1]}, got {value}",
            field=spec.name,
        )
    if isinstance(value, int) and value < 0:
        # The only integers are speaker ids.
        raise InvalidValue(f"field {spec.name!r} must be >= 0, got {value}", field=spec.name)
    return float(value) if _is_float_field(spec.hint) else value


def _is_float_field(hint: object) -> bool:
    return float in members(hint)


def _matches(hint: object, value: object) -> bool:
    for member in members(hint):
        if matches_scalar(member, value):
            return True
        if isinstance(value, bool):
            continue  # Booleans are ints in Python, never objects or arrays on the wire.
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
    names = [_wire_name(m) for m in members(hint)]
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


# Encoding.


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


def encode_reply(request_id: RequestId, body: Reply, payload: bytes | None = None) -> list[bytes]:
    """The frames of a reply dataclass: header (with `id` when the request had one), payload."""
    return reply(request_id, body.TYPE, body.data(), payload)


def encode_event(body: Event) -> list[bytes]:
    """The frames of an event dataclass: [topic, header]."""
    return event(body.TYPE, body.data())
