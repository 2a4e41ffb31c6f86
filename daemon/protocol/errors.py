"""The parser's errors. Each code is stable; the server turns any of them into an `error` reply."""

from __future__ import annotations

from typing import Final

from utterd.models.errors import UtterdError

__all__ = [
    "ERROR_CODES",
    "EmptyText",
    "InvalidHeader",
    "InvalidJson",
    "InvalidUtf8",
    "InvalidValue",
    "MalformedFrames",
    "MissingField",
    "ProtocolError",
    "RequestId",
    "TextTooLong",
    "UnknownField",
    "UnknownType",
    "WrongType",
]

RequestId = str | int | None
"""A request's `id` as the client sent it; echoed in the reply. None: the client sent none."""


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
