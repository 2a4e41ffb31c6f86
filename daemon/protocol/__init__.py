"""utterd's ZeroMQ protocol: requests, replies, events, errors and their encoding. No sockets here.

One module per concept: `messages` (request dataclasses and the type table), `replies` and
`events` (what the daemon sends, as dataclasses), `errors` (the parser's error codes), `codec`
(frames, envelopes, parsing and encoding), `handlers` (the table from request type to handler).
This package re-exports their public names, so `protocol.X` works for any of them.
docs/protocol.md describes the same messages for client authors.
"""

from __future__ import annotations

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.protocol.codec import (
    encode_event,
    encode_reply,
    error_reply,
    event,
    parse_request,
    peek_id,
    reply,
    request_frames,
    split_envelope,
)
from utterd.daemon.protocol.errors import (
    ERROR_CODES,
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
from utterd.daemon.protocol.handlers import HandlerTable
from utterd.daemon.protocol.messages import (
    PAYLOAD_TYPES,
    REQUEST_TYPES,
    AudioFormat,
    CacheClear,
    CacheWarm,
    Cancel,
    Describe,
    JobQuery,
    Message,
    Pause,
    Ping,
    Request,
    Resume,
    Speak,
    SpeakChunk,
    SpeakStart,
    SpeakStop,
    Stop,
    Synthesize,
)
from utterd.daemon.protocol.replies import Reply
from utterd.daemon.speech.priorities import PRIORITIES, Priority

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
    "Event",
    "HandlerTable",
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
    "Reply",
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
