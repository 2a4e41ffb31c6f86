"""Tests for daemon/protocol/ (codec, messages, errors): envelopes, request parsing, error codes, reply builders."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon import protocol
from utterd.daemon.protocol import (
    ERROR_CODES,
    REQUEST_TYPES,
    JobQuery,
    ProtocolError,
    Speak,
    Stop,
    Synthesize,
    error_reply,
    event,
    parse_request,
    peek_id,
    reply,
    request_frames,
    split_envelope,
)
from utterd.daemon.settings import LimitsSettings

LIMITS = LimitsSettings(max_text_chars=100)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _header(obj: Any) -> list[bytes]:
    return [json.dumps(obj).encode()]


def _error(body: list[bytes]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(body, LIMITS)
    return info.value


# --- envelopes --------------------------------------------------------------------------------


def test_envelope_from_req_client() -> None:
    # REQ puts an empty delimiter between the ROUTER's identity frame and the body.
    envelope, body = split_envelope([b"\x00id", b"", b'{"type":"ping"}'])
    assert envelope == [b"\x00id", b""]
    assert body == [b'{"type":"ping"}']


def test_envelope_from_dealer_client() -> None:
    envelope, body = split_envelope([b"\x00id", b'{"type":"ping"}', b"payload"])
    assert envelope == [b"\x00id"]
    assert body == [b'{"type":"ping"}', b"payload"]


def test_envelope_only_identity() -> None:
    assert split_envelope([b"id"]) == ([b"id"], [])
    assert split_envelope([b"id", b""]) == ([b"id", b""], [])
    assert _error([]).code == "malformed-frames"


def test_envelope_needs_identity() -> None:
    with pytest.raises(ProtocolError) as info:
        split_envelope([])
    assert info.value.code == "malformed-frames"


@given(identity=st.binary(min_size=1, max_size=8), body=st.lists(st.binary(min_size=1), max_size=3))
def test_envelope_round_trip(identity: bytes, body: list[bytes]) -> None:
    for delimiter in ([], [b""]):
        envelope, got = split_envelope([identity, *delimiter, *body])
        assert envelope == [identity, *delimiter]
        assert got == body


# --- valid requests ---------------------------------------------------------------------------


def test_minimal_requests() -> None:
    assert parse_request(request_frames("ping"), LIMITS).message == protocol.Ping()
    assert parse_request(request_frames("describe", None, "a"), LIMITS).id == "a"
    assert parse_request(_header({"type": "stop", "data": None}), LIMITS).message == Stop()
    assert parse_request(request_frames("stop", {"job": "j1"}), LIMITS).message == Stop(job="j1")
    assert parse_request(request_frames("job", {"job": "j1"}), LIMITS).message == JobQuery(job="j1")


def test_speak_defaults_and_conversion() -> None:
    parsed = parse_request(request_frames("speak", {"text": "Hello", "rate": 2}, 7), LIMITS)
    assert parsed.type == "speak"
    assert parsed.id == 7
    assert parsed.payload is None
    assert parsed.message == Speak(text="Hello", rate=2.0)
    assert isinstance(parsed.message, Speak)
    assert isinstance(parsed.message.rate, float)
    params = parsed.message.synthesis_params()
    assert (params.rate, params.volume, params.speaker) == (2.0, 1.0, None)


def test_synthesize_fields() -> None:
    data = {"text": "x", "format": "pcm", "stream": True, "speaker": "amy", "voice": "v"}
    message = parse_request(request_frames("synthesize", data), LIMITS).message
    assert message == Synthesize(text="x", format="pcm", stream=True, speaker="amy", voice="v")
    assert not isinstance(message, Speak)  # siblings, so a dispatch on type cannot confuse them


def test_bounds_are_inclusive() -> None:
    for rate in (0.25, 4.0):
        parse_request(request_frames("speak", {"text": "x", "rate": rate}), LIMITS)
    for volume in (0, 4.0):
        parse_request(request_frames("speak", {"text": "x", "volume": volume}), LIMITS)
    parse_request(request_frames("speak", {"text": "x" * LIMITS.max_text_chars}), LIMITS)


_texts = st.text(min_size=1, max_size=LIMITS.max_text_chars).filter(lambda t: t.strip() != "")
_names = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() != "")
_speech_fields = {
    "text": _texts,
    "voice": st.none() | _names,
    "speaker": st.none() | _names | st.integers(min_value=0, max_value=2**40),
    "rate": st.floats(min_value=0.25, max_value=4.0),
    "volume": st.floats(min_value=0.0, max_value=4.0),
    "deterministic": st.booleans(),
}
_ids = st.none() | st.text(max_size=20) | st.integers()


@given(message=st.builds(Speak, **_speech_fields), request_id=_ids)
def test_speak_round_trip(message: Speak, request_id: str | int | None) -> None:
    body = request_frames("speak", dataclasses.asdict(message), request_id)
    parsed = parse_request(body, LIMITS)
    assert parsed == protocol.Request("speak", request_id, message)


@given(
    message=st.builds(
        Synthesize, **_speech_fields, format=st.sampled_from(["wav", "pcm"]), stream=st.booleans()
    ),
)
def test_synthesize_round_trip(message: Synthesize) -> None:
    parsed = parse_request(request_frames("synthesize", dataclasses.asdict(message), "r"), LIMITS)
    assert parsed.message == message


def test_synthesize_takes_every_field_of_speak() -> None:
    # Issue 16, finding 5: docs/protocol.md says so, and a client written from it sent `priority`.
    speak_fields = {f.name for f in dataclasses.fields(Speak)}
    assert speak_fields <= {f.name for f in dataclasses.fields(Synthesize)}
    data = {"text": "x", "priority": "important", "format": "pcm"}
    message = parse_request(request_frames("synthesize", data), LIMITS).message
    assert isinstance(message, Synthesize) and message.priority == "important"


# --- nothing escapes but ProtocolError ----------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _parse_or_protocol_error(body: list[bytes]) -> None:
    try:
        parsed = parse_request(body, LIMITS)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
        # The reply to it must always be encodable, whatever the client sent.
        json.loads(error_reply(exc.request_id, exc.code, exc.message)[0])
    else:
        assert parsed.type in REQUEST_TYPES


@given(frames=st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_frames(frames: list[bytes]) -> None:
    _parse_or_protocol_error(frames)


@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_arbitrary_router_frames(frames: list[bytes]) -> None:
    try:
        _, body = split_envelope(frames)
    except ProtocolError as exc:
        assert exc.code == "malformed-frames"
        return
    _parse_or_protocol_error(body)


@given(
    type_name=st.sampled_from([*REQUEST_TYPES, "nope"]) | st.text(max_size=8) | _json,
    request_id=_json,
    data=_json | st.dictionaries(st.sampled_from(["text", "job", "rate", "format"]), _json),
    payload=st.none() | st.binary(max_size=4),
)
def test_arbitrary_headers(
    type_name: Any, request_id: Any, data: Any, payload: bytes | None
) -> None:
    body = [json.dumps({"type": type_name, "id": request_id, "data": data}).encode()]
    if payload is not None:
        body.append(payload)
    _parse_or_protocol_error(body)


@given(text=st.text(max_size=200))
def test_arbitrary_json_text(text: str) -> None:
    _parse_or_protocol_error([text.encode("utf-8", "surrogatepass")])


# --- every error code has an example ------------------------------------------------------------

_SPEAK = {"type": "speak", "id": "r1"}

ERROR_EXAMPLES: list[tuple[str, list[bytes], str]] = [
    ("malformed-frames", [], "no header"),
    ("malformed-frames", [b'{"type":"ping"}', b"x", b"y"], "got 3"),
    ("malformed-frames", [b'{"type":"speak","data":{"text":"a"}}', b"pcm"], "no payload"),
    ("invalid-utf8", [b'{"type":"\xff"}'], "offset 9"),
    ("invalid-json", [b'{"type": '], "line 1, column 10 (char 9)"),
    ("invalid-json", [b'{"type":"ping","type":"ping"}'], "duplicate key 'type'"),
    ("invalid-json", [b"[" * 100_000], "nested too deeply"),
    ("invalid-json", [b"\xef\xbb\xbf{}"], "BOM"),
    ("invalid-json", [b'{"id":' + b"9" * 5000 + b"}"], "not JSON we accept"),
    ("invalid-header", _header([1]), "got array"),
    ("invalid-header", _header({"type": "ping", "data": []}), "data must be"),
    ("invalid-header", _header({"type": "ping", "id": 1.5}), "id must be"),
    ("invalid-header", _header({"type": "ping", "id": True}), "got boolean"),
    ("unknown-type", _header({"type": "speek"}), "known types: speak, synthesize"),
    ("unknown-field", _header({**_SPEAK, "data": {"text": "a", "voise": "x"}}), "'voise'"),
    ("unknown-field", _header({"type": "ping", "dta": {}}), "'dta'"),
    ("unknown-field", _header({"type": "ping", "data": {"x": 1}}), "fields of this type: none"),
    ("missing-field", _header({"data": {}}), "'type'"),
    ("missing-field", _header({**_SPEAK, "data": {}}), "'text'"),
    ("missing-field", _header({"type": "job"}), "'job'"),
    ("wrong-type", _header({"type": 5}), "field 'type': expected string, got integer"),
    ("wrong-type", _header({**_SPEAK, "data": {"text": "a", "rate": True}}), "got boolean"),
    ("wrong-type", _header({**_SPEAK, "data": {"text": 5}}), "expected string, got integer"),
    ("wrong-type", _header({**_SPEAK, "data": {"text": "a", "rate": "1"}}), "expected number"),
    ("wrong-type", _header({**_SPEAK, "data": {"text": "a", "speaker": 1.0}}), "or null"),
    ("wrong-type", _header({**_SPEAK, "data": {"text": "a", "deterministic": 1}}), "boolean"),
    ("wrong-type", _header({"type": "job", "data": {"job": None}}), "got null"),
    ("empty-text", _header({**_SPEAK, "data": {"text": ""}}), "'text'"),
    ("empty-text", _header({**_SPEAK, "data": {"text": " \n\t"}}), "whitespace"),
    ("text-too-long", _header({**_SPEAK, "data": {"text": "x" * 101}}), "101 characters"),
    ("invalid-value", _header({**_SPEAK, "data": {"text": "a", "rate": 0.2}}), "0.25..4.0"),
    ("invalid-value", _header({**_SPEAK, "data": {"text": "a", "volume": -1}}), "'volume'"),
    ("invalid-value", [b'{"type":"speak","data":{"text":"a","rate":NaN}}'], "finite"),
    ("invalid-value", [b'{"type":"speak","data":{"text":"a","rate":1e999}}'], "finite"),
    (
        "invalid-value",
        _header({"type": "synthesize", "data": {"text": "a", "format": "mp3"}}),
        "'mp3'",
    ),
    ("invalid-value", _header({**_SPEAK, "data": {"text": "a", "speaker": -1}}), ">= 0"),
    ("invalid-value", _header({**_SPEAK, "data": {"text": "a", "voice": ""}}), "'voice'"),
    ("invalid-value", _header({"type": "stop", "data": {"job": " "}}), "'job'"),
    ("invalid-value", [b'{"type":"speak","data":{"text":"a\\ud800"}}'], "U+D800"),
]


@pytest.mark.parametrize(("code", "body", "text"), ERROR_EXAMPLES)
def test_error_examples(code: str, body: list[bytes], text: str) -> None:
    error = _error(body)
    assert error.code == code
    assert text in error.message


def test_every_code_has_an_example() -> None:
    examples = {code for code, _, _ in ERROR_EXAMPLES}
    assert examples == set(ERROR_CODES)


def test_error_carries_request_id() -> None:
    assert _error(_header({**_SPEAK, "data": {"text": ""}})).request_id == "r1"
    assert _error(_header({"type": "nope", "id": 3})).request_id == 3
    assert _error(_header({"type": "ping", "id": 3, "data": 1})).request_id == 3
    assert _error([b'{"type":"ping","id":7}', b"x"]).request_id == 7
    assert _error(_header({"type": "ping", "id": [1]})).request_id is None  # unreadable id
    assert _error([b"{"]).request_id is None


@given(frames=st.lists(st.binary(max_size=32), max_size=3))
def test_peek_id_never_raises(frames: list[bytes]) -> None:
    peek_id(frames)


def test_peek_id() -> None:
    assert peek_id(request_frames("speak", {"text": ""}, "r9")) == "r9"
    assert peek_id(request_frames("nope", None, 4)) == 4
    assert peek_id([b'{"id":true}']) is None
    assert peek_id([b"\xff"]) is None
    assert peek_id([]) is None


def test_error_names_the_field() -> None:
    assert _error(_header({**_SPEAK, "data": {"text": "a", "rate": 9}})).field == "rate"
    assert _error(_header({**_SPEAK, "data": {}})).field == "text"


# --- builders -------------------------------------------------------------------------------------


def test_reply_frames() -> None:
    assert reply("r1", "queued", {"job": "j1"}) == [
        b'{"type":"queued","id":"r1","data":{"job":"j1"}}'
    ]
    assert reply(None, "pong", {}) == [b'{"type":"pong","data":{}}']
    assert reply(2, "audio", {"rate": 22050}, b"RIFF") == [
        b'{"type":"audio","id":2,"data":{"rate":22050}}',
        b"RIFF",
    ]
    assert reply(2, "audio-chunk", {}, b"")[1] == b""  # an empty payload is still a frame


def test_reply_is_utf8_not_escaped() -> None:
    (frame,) = reply("ü", "info", {"name": "Ωmega"})
    assert "Ωmega".encode() in frame
    assert json.loads(frame)["id"] == "ü"


def test_reply_survives_lone_surrogate() -> None:
    # A client can send "\ud800" as an id; echoing it must not crash the server.
    (frame,) = reply("\ud800", "pong", {})
    frame.decode("utf-8")
    assert json.loads(frame)["id"] == "\ud800"


def test_reply_rejects_nan() -> None:
    with pytest.raises(ValueError):
        reply(1, "info", {"x": math.nan})  # a server bug, not the client's


def test_error_reply() -> None:
    (frame,) = error_reply("r", "busy", "queue is full (256 jobs)")
    assert json.loads(frame) == {
        "type": "error",
        "id": "r",
        "data": {"code": "busy", "message": "queue is full (256 jobs)"},
    }


def test_event_frames() -> None:
    topic, header = event("begin", {"job": "j1"})
    assert topic == b"begin"
    assert json.loads(header) == {"type": "begin", "data": {"job": "j1"}}


# --- docs/protocol.md keeps up with the table ------------------------------------------------------


def test_docs_cover_every_type_field_and_code() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name, cls in REQUEST_TYPES.items():
        assert f"`{name}`" in docs, name
        for f in dataclasses.fields(cls):
            assert re.search(rf"`{f.name}`", docs), f"{name}.{f.name}"
    for code in ERROR_CODES:
        assert f"`{code}`" in docs, code
