"""End to end: protocol fuzzing of one running `utterd serve` (issue 6, "Protocol fuzzing").

Hypothesis generates more than 10,000 malformed and hostile requests: random frames, wrong frame
counts, empty frames, huge headers, deep nesting, wrong types and bad values for every field of
every type in `REQUEST_TYPES`, invalid UTF-8, lone surrogates, NaN and 4,000-digit numbers,
duplicate keys, unicode oddities (NUL, bidi controls, BOM, odd digits), names of voices, jobs and
clients that do not exist, and messages above `server.max_message_bytes`. They are sent pipelined,
in batches, from several client identities, and every reply is matched to its request by id.

What must hold: each request gets exactly one well-formed `error` reply whose code is documented
(`protocol.ERROR_CODES` or docs/protocol.md's error tables) and never `internal-error`; the codes
of the cases built with a known fault are exactly the expected ones; a message above the size
limit gets no reply (ZeroMQ drops it and cuts that connection, a documented limit); the daemon
never exits, counts every request, logs no traceback, and speaks normally afterwards.

Every generated request is invalid by construction (a parse error, or a voice, speaker, job or
client the daemon does not have), so none of them makes the daemon synthesize: the whole file
runs in well under a minute. It is reproducible (derandomized, no example database):

    nice -n 19 .venv/bin/python -m pytest -p no:cacheprovider tests/test_e2e_fuzz.py
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import re
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Union, get_args, get_origin, get_type_hints

import pytest
import zmq
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env, rms, wav_samples
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from utterd.daemon import protocol
from utterd.daemon.settings import LimitsSettings
from utterd.models.voice import PROSODY_FIELDS

pytestmark = pytest.mark.e2e

MAX_TEXT_CHARS: Final = 200
"""The fuzz daemon's `limits.max_text_chars`: small, so text-too-long is cheap to reach."""

MAX_MESSAGE_BYTES: Final = 256 * 1024
"""The fuzz daemon's `server.max_message_bytes` (ZMQ_MAXMSGSIZE, checked per frame)."""

BATCH_SIZE: Final = 25
"""Requests sent at once before their replies are collected."""

BATCHES: Final = 420
"""Hypothesis examples, one batch each."""

MIN_REQUESTS: Final = 10_000
"""What issue 6 asks for."""

REPLY_TIMEOUT_S: Final = 20.0
"""Longest wait for a batch's replies: they normally take milliseconds; more is a hang."""

DROP_GRACE_S: Final = 0.05
"""How long a dropped message's socket is watched for a reply that must not come."""

IDENTITIES: Final[tuple[bytes, ...]] = (
    b"fuzz-\xff\xfe\x00\x01",
    b"\xd8\x00\xdc\x00\x1b[31m",
    bytes(range(1, 256)),  # the longest routing id ZeroMQ allows, every byte value but 0
)
"""Routing ids of the extra clients (the main client gets one from ZeroMQ)."""

CLIENT_CHOICES: Final = (0,) * 7 + (1, 2, 3)
"""Which client sends a case: mostly the main one, a few from each extra identity."""

LOAD_SHEDDING: Final = frozenset({"busy", "rate-limited"})
"""Codes the per-client limits may answer instead of the expected one; the fuzz daemon sets
those limits far above its load, so they should not appear, but they are not a bug."""

GENEROUS_LIMITS: Final[dict[str, int | float]] = {
    "requests_per_s": 1_000_000.0,
    "request_burst": 1_000_000,
    "max_queue_per_client": 100_000,
}
"""Per-client limits the fuzz load must never meet (they have their own tests); set only if
this checkout's `LimitsSettings` has them."""

DOCS: Final = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _documented_codes() -> frozenset[str]:
    """The parser's codes and every code docs/protocol.md lists under "Errors"."""
    section = DOCS.read_text(encoding="utf-8").split("\n## Errors", 1)[1]
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE)
    return frozenset(protocol.ERROR_CODES) | frozenset(listed)


DOCUMENTED_CODES: Final = _documented_codes()
BUG_CODE: Final = "internal-error"


# ---------------------------------------------------------------------------------------------
# Cases: what is sent and what must come back.


@dataclass(frozen=True)
class Case:
    """One generated request and what the daemon must do with it."""

    label: str
    """The generator and fault, for failure messages and the summary (`wrong-type:speak.rate`)."""

    frames: tuple[bytes, ...]
    """What the client sends; a leading empty frame is the delimiter a REQ socket would add."""

    expect: frozenset[str] | None = None
    """The codes allowed in the reply; None: any documented code (a random fault)."""

    client: int = 0
    """Which client sends it: 0 is the main DEALER, 1.. the extra identities."""

    @functools.cached_property
    def expected_id(self) -> str | int | None:
        """The id its reply must carry (None: no id)."""
        return readable_id(self.frames)

    @property
    def dropped(self) -> bool:
        """A frame above the size limit: ZeroMQ drops the message and the connection."""
        return any(len(f) > MAX_MESSAGE_BYTES for f in self.frames)

    @property
    def delimited(self) -> bool:
        return bool(self.frames) and self.frames[0] == b""

    def __repr__(self) -> str:
        shown = ", ".join(
            repr(f[:120]) + (f"...({len(f)} bytes)" if len(f) > 120 else "") for f in self.frames
        )
        return f"Case({self.label}, client={self.client}, expect={self.expect}, [{shown}])"


def readable_id(frames: Sequence[bytes]) -> str | int | None:
    """The id an error reply must echo: the header's `id` when the header parses as a JSON
    object (docs/protocol.md, Errors), else None (the reply then has no `id`)."""
    body = frames[1:] if frames and frames[0] == b"" else frames
    if not body:
        return None
    try:
        header = json.loads(body[0].decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    request_id = header.get("id")
    if isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    ):
        return request_id
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Writing JSON the way a hostile client might.


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in as is: `NaN`, `1e999`, a 5,000-digit integer, deep nesting."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written pair by pair, so that a key can repeat."""

    items: tuple[tuple[str, object], ...]


def dump(value: object, ascii_only: bool) -> str:
    """JSON text of `value`; lone surrogates stay lone (escaped if `ascii_only`, raw if not)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        inner = ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(text: str) -> bytes:
    """UTF-8, except that raw lone surrogates become the invalid bytes they would be."""
    return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------
# Strings and numbers.

_ODD_PIECES: Final = (
    "\x00", "\x01", "\x1b[2J", "\x7f", "\u0085", "\u00a0", "\u200b", "\u200c", "\u200d",
    "\u200e", "\u200f", "\u202a", "\u202b", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069",
    "\u2028", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U0001f600", "e\u0301",
    "\u0130", "\u00df", "\ufb00", "\u00b2", "\u0663", "\uff11", "\u216b", "\u0969", "\u3000",
    "%s", "%n", "{", "}", "{{", "{x}", "|", "=", "\\", '"', "'", "/", "..", "../", "~",
    "../../etc/passwd", "/dev/zero", "NaN", "null", "\u0627\u0644\u0633\u0644\u0627\u0645",
    "\u05e9\u05dc\u05d5\u05dd", "\u0430", "\u0399", "A" * 64,
)  # fmt: skip
"""Control characters, bidi marks, BOM, noncharacters, odd digits, format strings, paths."""

_SURROGATES: Final = ("\ud800", "\udbff", "\udc00", "\udfff", "\ud83d")
_WHITESPACE: Final = (
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000",
    "\u2028", "\u2029", "\u202f", "\u3000",
)  # fmt: skip
"""Characters Python's str.strip() removes: a string of them is blank."""

_piece = st.sampled_from(_ODD_PIECES) | st.text(max_size=6)
odd_text = st.lists(_piece, max_size=5).map(lambda parts: "".join(parts)[:80])
"""Any string without lone surrogates, up to 80 characters, often odd."""
_short_piece = st.sampled_from([p for p in _ODD_PIECES if len(p) <= 4]) | st.text(max_size=4)
short_odd = st.lists(_short_piece, max_size=2).map("".join)
"""Up to 8 characters: a few of them in an object or array stay far below the text limit."""
nonblank = odd_text.map(lambda s: s if s.strip() else s + "z")
blank = st.lists(st.sampled_from(_WHITESPACE), max_size=6).map("".join)
with_surrogate = st.tuples(short_odd, st.sampled_from(_SURROGATES), short_odd).map("".join)
any_string = odd_text | with_surrogate | blank
long_text = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["x", "\u00e9", "\U0001f600", "\u200f", "a "]),
    st.integers(MAX_TEXT_CHARS + 1, MAX_TEXT_CHARS + 40) | st.integers(MAX_TEXT_CHARS, 40_000),
).filter(lambda s: len(s) > MAX_TEXT_CHARS)
"""Longer than the daemon's text limit (sometimes by tens of kilobytes)."""

_long_digits = st.integers(1, 4300).map(lambda n: "9" * n)
"""Integers Python's json still reads (up to 4,300 digits)."""
too_many_digits = st.builds(
    lambda sign, n: Raw(sign + "9" * n), st.sampled_from(["", "-"]), st.integers(4301, 40_000)
)
"""Integers Python's json refuses to convert: `invalid-json`."""

_ODD_NUMBERS: Final = (
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "1e309", "1e-400", "-0", "-0.0",
    "0.2499999999999999", "4.000000000000001", "4.0000000000000001", "2.5e-324",
    "123456789012345678901234567890",
)  # fmt: skip
"""Overflow to infinity, underflow to zero, round onto a bound, NaN: as JSON text."""

number_tokens = st.one_of(
    st.sampled_from(_ODD_NUMBERS),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    _long_digits,
    st.builds("-{}".format, _long_digits),
    st.integers(-500, 500).map(lambda e: f"1e{e}"),
)
"""Numbers as a client may write them, as JSON text (NaN and Infinity are Python's extension)."""


def _number_value(token: str) -> float | int:
    value: float | int = json.loads(token)
    return value


def _outside(bounds: tuple[float, float]) -> Callable[[str], bool]:
    def check(token: str) -> bool:
        value = _number_value(token)
        if isinstance(value, float) and not math.isfinite(value):
            return True
        return not bounds[0] <= value <= bounds[1]

    return check


json_small = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | short_odd,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_odd, inner, max_size=3),
    max_leaves=6,
)
"""Small JSON values of every kind."""
not_a_string = json_small.filter(lambda v: not isinstance(v, str))


def nested(depth: int, shape: str, closed: bool = True) -> Raw:
    """`[[[...]]]` or `{"a":{"a":...}}`, `depth` levels, optionally never closed."""
    if shape == "array":
        return Raw("[" * depth + ("]" * depth if closed else ""))
    return Raw('{"a":' * depth + ("1" + "}" * depth if closed else ""))


shallow_depth = st.integers(2, 400)
"""Nesting Python's json reads in a thread with a normal stack (its limit is ~1,000)."""
deep_depth = st.integers(3000, 40_000)


# ---------------------------------------------------------------------------------------------
# The request types, read from protocol.REQUEST_TYPES so that new fields get fuzzed too.

_NONE: Final = type(None)


@dataclass(frozen=True)
class FieldInfo:
    """What the fuzzer needs to know about one field of a request's `data`."""

    name: str
    members: tuple[Any, ...]
    required: bool
    text: bool
    """The text to speak: empty-text and text-too-long apply."""
    piece: bool
    """A piece of a streamed text: may be blank; text-too-long applies."""
    bounds: tuple[float, float] | None


def _members(hint: Any) -> tuple[Any, ...]:
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)


def _fields(cls: type) -> tuple[FieldInfo, ...]:
    hints = get_type_hints(cls)
    return tuple(
        FieldInfo(
            name=f.name,
            members=_members(hints[f.name]),
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            text=bool(f.metadata.get("text")),
            piece=bool(f.metadata.get("piece")),
            bounds=f.metadata.get("range"),
        )
        for f in dataclasses.fields(cls)
    )


TYPES: Final[dict[str, tuple[FieldInfo, ...]]] = {
    name: _fields(cls) for name, cls in protocol.REQUEST_TYPES.items()
}

ALL_KINDS: Final = ("null", "boolean", "integer", "number", "string", "array", "object")


def kinds(f: FieldInfo) -> frozenset[str]:
    """The JSON kinds the field accepts (docs/protocol.md: integers count as numbers)."""
    accepted: set[str] = set()
    for m in f.members:
        if m is _NONE:
            accepted.add("null")
        elif m is bool:
            accepted.add("boolean")
        elif m is int:
            accepted.add("integer")
        elif m is float:
            accepted |= {"integer", "number"}
        elif m is str or get_origin(m) is Literal:
            accepted.add("string")
        elif get_origin(m) is dict:
            accepted.add("object")
        elif get_origin(m) is list:
            accepted.add("array")
        else:
            raise AssertionError(f"teach test_e2e_fuzz.py the field type {m!r} of {f.name}")
    return frozenset(accepted)


def _choices(f: FieldInfo) -> tuple[str, ...]:
    return tuple(a for m in f.members if get_origin(m) is Literal for a in get_args(m))


def valid_values(f: FieldInfo) -> st.SearchStrategy[Any]:
    """Values the parser accepts for the field (whatever the daemon then makes of them)."""
    if f.name in PROSODY_FIELDS:
        # Only a voice that declares them takes another value (invalid-value otherwise): the
        # fuzzer's requests name English voices, so a valid one keeps the default.
        return st.just(1.0)
    if f.text:
        return nonblank
    if f.piece:
        return odd_text
    options: list[st.SearchStrategy[Any]] = []
    for m in f.members:
        if m is _NONE:
            options.append(st.none())
        elif m is bool:
            options.append(st.booleans())
        elif m is int:
            options.append(st.integers(0, 2**64))
        elif m is float:
            low, high = f.bounds or (-1e6, 1e6)
            options.append(st.floats(low, high))
        elif m is str:
            options.append(nonblank)
        elif get_origin(m) is Literal:
            options.append(st.sampled_from(get_args(m)))
        elif get_origin(m) is dict:
            options.append(st.dictionaries(short_odd, short_odd, max_size=2))
        elif get_origin(m) is list:
            options.append(st.lists(short_odd, max_size=3))
    return st.one_of(options)


_KIND_VALUES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.integers() | _long_digits.map(Raw),
    "number": st.floats() | st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("1.0")]),
    "string": any_string,
    "array": st.lists(json_small, max_size=3),
    "object": st.dictionaries(short_odd, json_small, max_size=3),
}


def wrong_type_values(f: FieldInfo) -> st.SearchStrategy[Any]:
    """Values of a JSON kind the field does not accept: `wrong-type`."""
    accepted = kinds(f)
    others = [k for k in ALL_KINDS if k not in accepted]
    options = [st.sampled_from(others).flatmap(lambda k: _KIND_VALUES[k])]
    if "object" in accepted:  # an object whose values are not all strings
        options.append(st.dictionaries(short_odd, not_a_string, min_size=1, max_size=3))
    if "array" in accepted:  # an array that is not all strings
        options.append(st.lists(not_a_string, min_size=1, max_size=3))
    options.append(shallow_depth.map(lambda d: nested(d, "array")))
    options.append(shallow_depth.map(lambda d: nested(d, "object")))
    return st.one_of(options)


def invalid_values(f: FieldInfo) -> st.SearchStrategy[tuple[Any, str]] | None:
    """(value, code) pairs of the right JSON kind but a value the parser refuses."""
    options: list[st.SearchStrategy[tuple[Any, str]]] = []
    if f.text or f.piece:
        options.append(long_text.map(lambda v: (v, "text-too-long")))
        options.append(with_surrogate.map(lambda v: (v, "invalid-value")))
        if f.text:
            options.append(blank.map(lambda v: (v, "empty-text")))
        return st.one_of(options)
    accepted = kinds(f)
    if "string" in accepted:
        options.append(blank.map(lambda v: (v, "invalid-value")))
        options.append(with_surrogate.map(lambda v: (v, "invalid-value")))
        choices = _choices(f)
        if choices:
            near = st.sampled_from(choices).flatmap(
                lambda c: st.sampled_from(
                    [c.upper(), c + " ", " " + c, c + "\x00", c[:-1], c + c, "\u200b" + c]
                )
            )
            wrong = (near | nonblank).filter(lambda v: v not in choices)
            options.append(wrong.map(lambda v: (v, "invalid-value")))
    if f.bounds is not None:
        outside = number_tokens.filter(_outside(f.bounds))
        options.append(outside.map(lambda t: (Raw(t), "invalid-value")))
    elif "integer" in accepted:
        negative = st.integers(max_value=-1) | st.builds("-{}".format, _long_digits).map(Raw)
        options.append(negative.map(lambda v: (v, "invalid-value")))
    if "object" in accepted:
        options.append(long_text.map(lambda v: ({"k": v}, "text-too-long")))
        options.append(with_surrogate.map(lambda v: ({"k": v}, "invalid-value")))
        options.append(with_surrogate.map(lambda v: ({v: "x"}, "invalid-value")))
    if "array" in accepted:
        options.append(long_text.map(lambda v: ([v], "text-too-long")))
        options.append(with_surrogate.map(lambda v: (["ok", v], "invalid-value")))
    return st.one_of(options) if options else None


def _unknown_keys(known: Sequence[str]) -> st.SearchStrategy[list[str]]:
    near = st.sampled_from([*known, "text", "type", "data"]).flatmap(
        lambda k: st.sampled_from([k.upper(), k + " ", k + "\x00", "\u200b" + k, k[:-1] or "?"])
    )
    extra = st.sampled_from(["voise", "__proto__", "constructor", "", "\x00", "id", "payload"])
    key = (near | extra | odd_text | with_surrogate).filter(lambda k: k not in known)
    return st.lists(key, min_size=1, max_size=3, unique=True)


# ---------------------------------------------------------------------------------------------
# Generators. Each returns a Case whose request is invalid by construction.


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, chosen in proportion to its weight (st.one_of picks evenly)."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def _header_case(
    label: str,
    header: object,
    expect: frozenset[str] | None,
    ascii_only: bool,
    pad: tuple[str, str] = ("", ""),
    extra: Sequence[bytes] = (),
    delimiter: bool = False,
) -> Case:
    frame = encode(pad[0] + dump(header, ascii_only) + pad[1])
    frames = ([b""] if delimiter else []) + [frame, *extra]
    if not _is_utf8(frame) and len(extra) <= 1 and expect is not None:
        expect = frozenset({"invalid-utf8"})  # a raw lone surrogate: the bytes are not UTF-8
    return Case(label, tuple(frames), expect)


request_ids = weighted(
    (8, st.integers(-(2**70), 2**70)),
    (8, odd_text),
    (2, with_surrogate),
    (2, _long_digits.map(Raw)),
    (1, st.integers(1000, 150_000).map(lambda n: "i" * n)),
)
"""Ids the parser accepts: any string, any integer (a 4,300-digit one, an empty string too)."""

bad_ids = st.one_of(
    st.floats(),
    st.booleans(),
    st.lists(json_small, max_size=2),
    st.dictionaries(short_odd, json_small, max_size=2),
    st.sampled_from([Raw("NaN"), Raw("-Infinity"), Raw("1e999"), Raw("1.0"), Raw("-0.0")]),
)
"""Ids of a kind the parser refuses: `invalid-header`."""

pads = weighted(
    (80, st.just(0)),
    (10, st.integers(1, 64)),
    (7, st.just(4096)),
    (2, st.just(100_000)),
    (1, st.just(MAX_MESSAGE_BYTES)),
).flatmap(
    lambda n: st.tuples(st.sampled_from([" ", "\n", "\t", "\r"]), st.booleans()).map(
        lambda t: (t[0] * n, "") if t[1] else ("", t[0] * n)
    )
)
"""Insignificant whitespace around the header, sometimes enough to exceed the size limit."""

MUTATIONS: Final = (
    "wrong-type", "wrong-type", "wrong-type", "invalid-value", "invalid-value", "invalid-value",
    "missing-field", "unknown-field", "header-field", "type", "bad-id", "data", "duplicate",
    "payload", "corrupt", "nesting", "huge-int",
)  # fmt: skip
"""Faults put into an otherwise valid request (repeats weigh the per-field ones up)."""


_BAD_UTF8: Final = (
    b"\xff",
    b"\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
)
"""Bytes that make any UTF-8 text invalid wherever they go: never-valid bytes, an overlong
NUL, an encoded surrogate, a stray continuation byte, a 5-byte form."""

_DATA_MUTATIONS: Final = frozenset(
    {"wrong-type", "invalid-value", "missing-field", "unknown-field", "nesting", "duplicate", "huge-int"}
)  # fmt: skip
"""Mutations that work on `data`, which they make an object first."""


@st.composite
def structured(draw: st.DrawFn) -> Case:
    """A valid request of a random type with exactly one fault: the expected code is known."""
    name = draw(st.sampled_from(sorted(TYPES)))
    fields = TYPES[name]
    data: dict[str, Any] = {}
    for f in fields:
        if f.required or draw(st.booleans()):
            data[f.name] = draw(valid_values(f))
    header: dict[str, Any] = {"type": name}
    if draw(st.booleans()):
        header["id"] = draw(request_ids)
    if bool(data) or draw(st.booleans()):
        header["data"] = data or draw(st.sampled_from([{}, None]))
    ascii_only = draw(st.booleans())

    with_invalid = [f for f in fields if invalid_values(f) is not None]
    applicable = [
        m
        for m in MUTATIONS
        if (m not in ("wrong-type", "nesting") or fields)
        and (m != "invalid-value" or with_invalid)
        and (m != "missing-field" or any(f.required for f in fields))
    ]
    mutation = draw(st.sampled_from(applicable))
    label = f"{mutation}:{name}"
    pad = draw(pads)
    extra: list[bytes] = []
    delimiter = False
    written: object = header  # what is sent: the header, or a rewrite of it
    body: dict[str, Any] = {}
    if mutation in _DATA_MUTATIONS:
        if not isinstance(header.get("data"), dict):
            header["data"] = {}
        body = header["data"]

    if mutation == "wrong-type":
        f = draw(st.sampled_from(fields))
        body[f.name] = draw(wrong_type_values(f))
        expect = {"wrong-type"}
        label += f".{f.name}"
    elif mutation == "invalid-value":
        f = draw(st.sampled_from(with_invalid))
        strategy = invalid_values(f)
        assert strategy is not None
        body[f.name], code = draw(strategy)
        expect = {code}
        label += f".{f.name}"
    elif mutation == "missing-field":
        f = draw(st.sampled_from([f for f in fields if f.required]))
        del body[f.name]
        expect = {"missing-field"}
        label += f".{f.name}"
    elif mutation == "unknown-field":
        for key in draw(_unknown_keys([f.name for f in fields])):
            body[key] = draw(json_small)
        expect = {"unknown-field"}
    elif mutation == "header-field":
        for key in draw(_unknown_keys(["type", "id", "data"])):
            header[key] = draw(json_small)
        expect = {"unknown-field"}
    elif mutation == "type":
        how = draw(st.sampled_from(["unknown", "unknown", "wrong", "missing"]))
        if how == "unknown":
            near = st.sampled_from(sorted(TYPES)).flatmap(
                lambda t: st.sampled_from(
                    [t.upper(), t + " ", t + "\x00", "\u202e" + t, t.replace("-", "_"), t + "s"]
                )
            )
            header["type"] = draw((near | any_string).filter(lambda t: t not in TYPES))
            expect = {"unknown-type"}
        elif how == "wrong":
            header["type"] = draw(
                wrong_type_values(FieldInfo("type", (str,), True, False, False, None))
            )
            expect = {"wrong-type"}
        else:
            del header["type"]
            expect = {"missing-field"}
        label += f".{how}"
    elif mutation == "bad-id":
        header["id"] = draw(bad_ids)
        expect = {"invalid-header"}
    elif mutation == "data":
        header["data"] = draw(
            st.one_of(
                st.lists(json_small, max_size=3),
                any_string,
                st.integers(),
                st.floats(),
                st.booleans(),
                shallow_depth.map(lambda d: nested(d, "array")),
            )
        )
        expect = {"invalid-header"}
    elif mutation == "duplicate":
        where = draw(st.sampled_from(["header", "data"]))
        if where == "header":
            key = draw(st.sampled_from([k for k in header] or ["type"]))
            if key not in header:
                header[key] = name
            items = list(header.items())
            items.insert(draw(st.integers(0, len(items))), (key, draw(json_small)))
            written = Pairs(tuple(items))
        else:
            items = list(body.items())
            key = draw(st.sampled_from([k for k, _ in items]) | short_odd if items else short_odd)
            value = draw(json_small)
            items.insert(draw(st.integers(0, len(items))), (key, value))
            if sum(1 for k, _ in items if k == key) < 2:
                items.insert(draw(st.integers(0, len(items))), (key, value))
            header["data"] = Pairs(tuple(items))
        expect = {"invalid-json"}
        label += f".{where}"
    elif mutation == "payload":
        delimiter = draw(st.booleans())
        sizes = st.integers(0, 64) | st.integers(0, MAX_MESSAGE_BYTES)
        extra = [b"\x00" * n for n in draw(st.lists(sizes, min_size=1, max_size=3))]
        expect = {"malformed-frames"}
        label += f".{len(extra)}"
    elif mutation == "corrupt":
        frame = encode(dump(header, ascii_only))
        how = draw(st.sampled_from(["truncate", "bad-utf8", "trailing", "leading", "bom"]))
        if how == "truncate":
            # Never to nothing: an empty first frame is the REQ delimiter, not a header.
            frame = frame[: draw(st.integers(1, len(frame) - 1))]
            expect = {"invalid-json", "invalid-utf8"}
        elif how == "bad-utf8":
            at = draw(st.integers(0, len(frame)))
            junk = draw(st.sampled_from(_BAD_UTF8))
            frame = frame[:at] + junk + frame[at:]
            expect = {"invalid-utf8"}
        elif how == "trailing":
            frame += draw(st.sampled_from([b"\x00", b"}", b"]", b",", b" x", b"{}", b"\x00{}"]))
            expect = {"invalid-json"}
        elif how == "leading":
            frame = draw(st.sampled_from([b"\x00", b"x", b",", b"]", b"//"])) + frame
            expect = {"invalid-json"}
        else:
            frame = b"\xef\xbb\xbf" + frame
            expect = {"invalid-json"}
        if not _is_utf8(frame) and how != "bad-utf8":
            expect = {"invalid-json", "invalid-utf8"}
        label += f".{how}"
        return Case(label, (frame,), frozenset(expect))
    elif mutation == "nesting":
        f = draw(st.sampled_from(fields))
        deep = draw(st.booleans())
        shape = draw(st.sampled_from(["array", "object"]))
        if deep:
            depth = draw(deep_depth)
            body[f.name] = nested(depth, shape, closed=draw(st.booleans()))
            expect = {"invalid-json"}
        else:
            body[f.name] = nested(draw(shallow_depth), shape)
            expect = {"wrong-type"}
        label += f".{'deep' if deep else 'shallow'}"
    elif mutation == "huge-int":
        where = draw(st.sampled_from(["id", "data", "type"]))
        digits = draw(too_many_digits)
        if where == "data":
            body[draw(st.sampled_from([f.name for f in fields] or ["x"]))] = digits
        else:
            header[where] = digits
        expect = {"invalid-json"}
    else:
        raise AssertionError(mutation)
    return _header_case(label, written, frozenset(expect), ascii_only, pad, extra, delimiter)


def _known_voices() -> frozenset[str]:
    return KNOWN_VOICES


KNOWN_VOICES: frozenset[str] = frozenset({"hibari-heart", "en_US-joe-medium"})
"""Replaced by the daemon's own list before the run."""

_HOSTILE_VOICES: Final = (
    "../../etc/passwd", "/etc/passwd", "..", ".", "~", "~root/.ssh/id_rsa", "file:///etc/passwd",
    "hibari-heart/../../../etc/passwd", "..\\..\\windows", "%2e%2e%2fetc%2fpasswd", "*", "?",
    "en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json", "voices/../hibari-heart", "/dev/zero",
)  # fmt: skip
"""Paths and file names where a voice id belongs: never outside the voice folders."""

unknown_voices = st.one_of(
    nonblank,
    st.sampled_from(_HOSTILE_VOICES),
    st.sampled_from(sorted(KNOWN_VOICES)).flatmap(
        lambda v: st.sampled_from(
            [v.upper(), v + " ", v + "\x00", "\u200f" + v, "./" + v, v + "/", v + "\ufeff"]
        )
    ),
).filter(lambda v: v not in _known_voices())

unknown_speakers = st.one_of(
    nonblank,
    st.integers(1, 2**64),
    st.sampled_from(["\u00b2", "\u0663", "\uff11", "00", "1", "-0", "9" * 5000, "0x1", "\u0660"]),
).filter(lambda s: s not in (0, "0"))
"""Speakers no installed voice has (they are all single-speaker)."""

_TEMPLATE_PIECES: Final = (
    "{", "}", "{{", "}}", "{name}", "{amount}", "{0bad}", "{}", "{ a }", "{\u00e9}", "{a", "b}",
    "{x_1}", "{{x}}", "{\x00}", "Your balance is ", ". ", ", ",
)  # fmt: skip

template_texts = (
    st.lists(
        st.sampled_from(_TEMPLATE_PIECES) | _piece,
        min_size=1,
        max_size=8,
    )
    .map(lambda parts: "".join(parts)[:MAX_TEXT_CHARS])
    .map(lambda s: s if s.strip() else s + "z")
)


def _bad_client(value: str) -> bool:
    """Not `self` and not a client id as events carry it (even-length hex), in any case."""
    lowered = value.lower()
    is_hex = re.fullmatch(r"[0-9a-f]{2,510}", lowered) is not None and len(lowered) % 2 == 0
    return value != "self" and not is_hex


_OPTION_VALUES: Final = (
    "1", "0", "1.5", "nan", "inf", "-1", "1e999", "0x10", "1_0", "yes", "maybe", "",
    "\u00b2", "\u00b9\u00b2", "\u0663", "\u0661.\u0665", "\uff11", "\u216b", "\u2460", "9" * 40,
)  # fmt: skip
"""Option values of the pre-warm syntax: odd numbers, and digits of every Unicode kind
(superscripts and circled digits are `isdigit()` but not decimal)."""

prewarm_options = st.lists(
    st.tuples(
        weighted(
            (4, st.sampled_from(["voice", "speaker", "rate", "volume", "template"])), (1, short_odd)
        ),
        weighted((3, st.sampled_from(_OPTION_VALUES)), (1, short_odd)),
    ).map("=".join),
    max_size=2,
).map(" ".join)
"""The `key=value` words before an entry's `|`: mostly real keys with odd values."""

prewarm_entries = weighted(
    (1, short_odd),
    (3, st.tuples(prewarm_options, st.sampled_from(["|", "| ", " | "]), short_odd).map("".join)),
)

_GUARANTEED_BAD_ENTRIES: Final = (
    "voice=zz-no-such-voice | x", "bogus=1 | x", "rate=fast | x", "| ", "template=maybe | x",
    "speaker= | x",
)  # fmt: skip
"""Entries that make a `cache-warm` fail, so that no fuzzed one ever starts rendering."""


_HOSTILE_SSML: Final = (
    '<!DOCTYPE speak [<!ENTITY a "aaaaaaaa">]><speak>&a;&a;</speak>',
    '<!DOCTYPE s [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;&a;">]><speak>&b;</speak>',
    '<!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>',
    '<!DOCTYPE speak SYSTEM "http://example.com/x.dtd"><speak>hi</speak>',
    "<speak>&undefined;</speak>", "<speak>" + "<p>" * 40, "<speak><s>x</p></speak>",
    "Hello, no root.", "<foo>x</foo>", "<speak>x</speak><speak>y</speak>", "<speak>x",
    '<speak><break time="fast"/>x</speak>', '<speak><prosody rate="-5">x</prosody></speak>',
    '<speak><prosody volume="+99dB">x</prosody></speak>', "<speak><say-as>x</say-as></speak>",
    '<speak><mark/>x</speak>', '<speak><sub>x</sub></speak>', "<speak><break>x</break></speak>",
    '<speak><say-as interpret-as="date"><b>x</b></say-as></speak>', "<speak\x00>x</speak>",
    "<speak>]]></speak>",
)  # fmt: skip
"""SSML a daemon must refuse (`invalid-ssml`): entity bombs, external entities and DTDs, no or
two roots, nesting past the limit, mismatched tags, malformed values of supported attributes,
content where none is allowed."""

hostile_ssml = weighted(
    (3, st.sampled_from(_HOSTILE_SSML)),
    (
        2,
        st.tuples(st.text(max_size=60), st.sampled_from(["</p>", "</speak></speak>", "<s>"])).map(
            lambda parts: "<speak>" + parts[0].replace("<", "").replace("&", "") + parts[1]
        ),
    ),
).map(lambda doc: doc[:MAX_TEXT_CHARS])


@st.composite
def semantic(draw: st.DrawFn) -> Case:
    """A request the parser accepts that names something the daemon does not have."""
    kind = draw(
        st.sampled_from(
            [
                "voice",
                "speaker",
                "template",
                "job",
                "client",
                "both",
                "resume",
                "cache-warm",
                "prewarm-option",
                "ssml",
            ]
        )
    )

    def base(name: str, **fixed: Any) -> dict[str, Any]:
        data = {}
        for f in TYPES[name]:
            if f.name in fixed:
                data[f.name] = fixed[f.name]
            elif f.required or draw(st.booleans()):
                data[f.name] = draw(valid_values(f))
        return data

    if kind == "voice":
        name = draw(st.sampled_from(["speak", "synthesize", "speak-start", "cache-clear"]))
        data = base(name, voice=draw(unknown_voices))
        expect = {"unknown-voice"}
    elif kind == "speaker":
        name = draw(st.sampled_from(["speak", "synthesize", "speak-start"]))
        voice = draw(st.sampled_from([None, *sorted(KNOWN_VOICES)]))
        data = base(name, voice=voice, speaker=draw(unknown_speakers), slots=None)
        expect = {"unknown-speaker"}
    elif kind == "template":
        name = draw(st.sampled_from(["speak", "synthesize"]))
        slots = draw(st.dictionaries(short_odd, short_odd, max_size=2))
        slots["zz_not_in_template"] = draw(short_odd)  # a value for no slot: never valid
        text = draw(template_texts)
        data = base(name, text=text, voice=None, speaker=None, slots=slots, text_format="text")
        expect = {"invalid-template", "invalid-slots"}
    elif kind == "ssml":
        name = draw(st.sampled_from(["speak", "synthesize"]))
        data = base(
            name, text=draw(hostile_ssml), text_format="ssml", voice=None, speaker=None, slots=None
        )
        expect = {"invalid-ssml"}
    elif kind == "job":
        name = draw(
            st.sampled_from(["job", "speak-chunk", "speak-stop", "stop", "cancel", "pause"])
        )
        data = base(name, job=draw(nonblank), client=None)
        expect = {"unknown-job"}
    elif kind == "client":
        name = draw(st.sampled_from(["stop", "cancel", "pause", "resume"]))
        data = base(name, job=None, client=draw(nonblank.filter(_bad_client)))
        expect = {"invalid-value"}
    elif kind == "both":
        name = draw(st.sampled_from(["stop", "cancel", "pause", "resume"]))
        data = {"job": draw(nonblank), "client": draw(nonblank | st.just("self"))}
        expect = {"invalid-value"}
    elif kind == "resume":
        # Nothing is ever paused here: every pause the fuzzer sends is refused.
        name = "resume"
        data = draw(
            st.sampled_from([{}, {"client": "self"}])
            | nonblank.map(lambda j: {"job": j})
            | st.binary(min_size=1, max_size=8).map(lambda b: {"client": b.hex()})
        )
        expect = {"not-paused", "unknown-job"}
    elif kind == "prewarm-option":
        # One option of the pre-warm syntax with an odd value, then an entry that fails.
        name = "cache-warm"
        key = draw(st.sampled_from(["voice", "speaker", "rate", "volume", "template"]))
        value = draw(st.sampled_from(_OPTION_VALUES) | short_odd)
        data = {"entries": [f"{key}={value} | {draw(nonblank)}"[:100], "voice=zz-none | x"]}
        expect = {"invalid-prewarm", "unknown-voice"}
    else:
        name = "cache-warm"
        entries = draw(st.lists(prewarm_entries, max_size=3))
        entries.insert(
            draw(st.integers(0, len(entries))), draw(st.sampled_from(_GUARANTEED_BAD_ENTRIES))
        )
        data = {"entries": entries}
        expect = {"invalid-prewarm", "unknown-voice"}
    header: dict[str, Any] = {"type": name, "data": data}
    if draw(st.booleans()):
        header["id"] = draw(request_ids)
    return _header_case(f"semantic:{kind}:{name}", header, frozenset(expect), draw(st.booleans()))


_SOUP_TOKENS: Final = (
    "{", "}", "[", "]", ":", ",", '"type"', '"id"', '"data"', '"text"', '"job"', '"voice"',
    '"x"', '""', "null", "true", "false", "0", "-1", "1.5", "1e999", "NaN", "Infinity",
    "-Infinity", '"\\ud800"', '"\\u0000"', '"\\"', "\\", " ", "\n", "\x00", "\ufeff", "'",
    '"sing"', '"PING"', "//", "/*", "*/", "tru", "nul", "01", "-", "+1", ".5", "0x10",
)  # fmt: skip
"""JSON-ish tokens without any request type name, so no soup can be a valid request."""


@st.composite
def raw(draw: st.DrawFn) -> Case:
    """Frames built without a request in mind: any documented code will do."""
    kind = draw(st.sampled_from(["binary", "text", "soup", "frames", "deep", "empty"]))
    if kind == "binary":
        frames = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=4))
        if frames[0] == b"" and len(frames) == 2 and frames[1][:1] == b"{":
            frames[1] = b"\xff" + frames[1]  # an empty first frame is a delimiter: keep it invalid
    elif kind == "text":
        frames = [encode(draw(st.text(max_size=200) | any_string))]
    elif kind == "soup":
        frames = [encode("".join(draw(st.lists(st.sampled_from(_SOUP_TOKENS), max_size=40))))]
    elif kind == "frames":
        # A header of every kind, valid ones included, followed by payload frames: never valid.
        name = draw(st.sampled_from(sorted(TYPES)))
        header = {
            "type": name,
            "data": {f.name: draw(valid_values(f)) for f in TYPES[name] if f.required},
        }
        frames = [encode(dump(header, True))]
        frames += draw(st.lists(st.binary(max_size=32), min_size=1, max_size=5))
        if draw(st.booleans()):
            frames.insert(0, b"")
        return Case(f"raw:frames.{len(frames)}", tuple(frames), frozenset({"malformed-frames"}))
    elif kind == "deep":
        depth = draw(shallow_depth | deep_depth)
        frames = [
            encode(
                nested(depth, draw(st.sampled_from(["array", "object"])), draw(st.booleans())).text
            )
        ]
    else:
        frames = [b""] * draw(st.integers(1, 4))
    return Case(f"raw:{kind}", tuple(frames), None)


@st.composite
def oversized(draw: st.DrawFn) -> Case:
    """A frame above `server.max_message_bytes`: dropped by ZeroMQ, no reply (documented)."""
    size = draw(st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES))
    kind = draw(st.sampled_from(["padded", "payload", "binary", "deep"]))
    ping = encode(dump({"type": "ping", "id": "big"}, True))
    if kind == "padded":
        frames = [ping + b" " * (size - len(ping))]
    elif kind == "payload":
        frames = [ping, b"\x00" * size]
    elif kind == "binary":
        frames = [b"\xff" * size]
    else:
        frames = [b"[" * size]
    return Case(f"oversized:{kind}", tuple(frames), None)


cases = weighted(
    (55, structured()), (20, semantic()), (24, raw()), (1, oversized())
).flatmap(
    lambda c: st.sampled_from(CLIENT_CHOICES).map(lambda i: dataclasses.replace(c, client=i))
)  # fmt: skip
"""Every generator, weighted: mostly one-fault requests, then semantic and raw ones; oversized
messages are rare (each costs a connection and up to half a megabyte)."""


# ---------------------------------------------------------------------------------------------
# Sending and checking.


@dataclass
class RunStats:
    """What the campaign did, for the tests after it."""

    sent: int = 0
    answered: int = 0
    dropped: int = 0
    batches: int = 0
    elapsed_s: float = 0.0
    failure: str = ""
    """The first failed batch's assertion message."""
    labels: collections.Counter[str] = field(default_factory=collections.Counter)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    clients: collections.Counter[int] = field(default_factory=collections.Counter)
    counters_before: dict[str, int] = field(default_factory=dict)
    counters_after: dict[str, int] = field(default_factory=dict)


STATS = RunStats()


def _reject_constant(name: str) -> None:
    raise ValueError(f"reply holds {name}, which is not JSON")


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"reply repeats a key: {keys}")
    return dict(pairs)


def check_reply(case: Case, frames: list[bytes]) -> str:
    """Assert that `frames` is a well-formed error reply for `case`; return its code."""
    where = f"reply {frames!r:.400} to {case!r}"
    if case.delimited:
        assert frames[:1] == [b""], f"{where}: a REQ-style request gets the delimiter back"
        frames = frames[1:]
    assert len(frames) == 1, f"{where}: an error reply is one frame"
    header = json.loads(
        frames[0].decode("utf-8"),
        parse_constant=_reject_constant,
        object_pairs_hook=_strict_object,
    )
    assert isinstance(header, dict) and set(header) <= {"type", "id", "data"}, where
    assert header.get("type") == "error", f"{where}: the daemon accepted an invalid request"
    data = header.get("data")
    assert isinstance(data, dict), where
    code, message = data.get("code"), data.get("message")
    assert isinstance(code, str) and isinstance(message, str) and message, where
    assert code != BUG_CODE, f"{where}: the daemon hit a bug"
    assert code in DOCUMENTED_CODES, f"{where}: code {code!r} is not documented"
    if case.expect is not None:
        assert code in case.expect | (LOAD_SHEDDING & DOCUMENTED_CODES), (
            f"{where}: expected {sorted(case.expect)}"
        )
    expected_id = case.expected_id
    if expected_id is None:
        assert "id" not in header, f"{where}: the request had no readable id"
    else:
        assert header.get("id") == expected_id, f"{where}: the id is not echoed"
    return code


def _reply_id(frames: list[bytes]) -> object:
    body = frames[1:] if frames[:1] == [b""] else frames
    try:
        return json.loads(body[0]).get("id") if body else None
    except (ValueError, AttributeError):
        return None


class Clients:
    """The fuzzing clients: DEALER sockets, the first with ZeroMQ's own routing id."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.sockets = [self._socket(None)] + [self._socket(i) for i in IDENTITIES]

    def _socket(self, identity: bytes | None) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(self.endpoint)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)

    def exchange(self, batch: Sequence[Case], alive: Callable[[], bool]) -> None:
        """Send the batch pipelined, then match every reply to its request and check it."""
        outstanding: dict[int, list[Case]] = collections.defaultdict(list)
        throwaway: list[tuple[Case, zmq.Socket[bytes]]] = []
        for case in batch:
            if case.dropped:
                # ZeroMQ cuts the connection it came on; a socket of its own keeps the others'.
                sock = self._socket(None)
                sock.send_multipart(list(case.frames))
                throwaway.append((case, sock))
            else:
                self.sockets[case.client].send_multipart(list(case.frames))
                outstanding[case.client].append(case)
            STATS.sent += 1
            STATS.labels[case.label.split(".")[0]] += 1
            STATS.clients[case.client] += 1
        poller = zmq.Poller()
        for index in outstanding:
            poller.register(self.sockets[index], zmq.POLLIN)
        history: dict[int, list[tuple[Case, list[bytes]]]] = collections.defaultdict(list)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while any(outstanding.values()):
            left_ms = int((deadline - time.monotonic()) * 1000)
            ready = dict(poller.poll(max(left_ms, 0))) if left_ms > 0 else {}
            if not ready:
                waiting = [c for cs in outstanding.values() for c in cs]
                raise AssertionError(
                    f"no reply within {REPLY_TIMEOUT_S} s (daemon alive: {alive()}) to "
                    f"{len(waiting)} request(s), first {waiting[0]!r}"
                )
            for index, sock in enumerate(self.sockets):
                if sock not in ready:
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    pending = outstanding[index]
                    reply_id = _reply_id(frames)
                    # Replies carry the request's id; one without an id is for the oldest
                    # request whose id could not be read (they are answered in order).
                    match = next((c for c in pending if c.expected_id == reply_id), None)
                    assert match is not None, (
                        f"client {index} got a reply no request of it asked for: {frames!r:.400}"
                    )
                    pending.remove(match)
                    history[index].append((match, frames))
                    try:
                        STATS.codes[check_reply(match, frames)] += 1
                    except AssertionError as exc:
                        sent = [c for c in batch if c.client == index and not c.dropped]
                        raise AssertionError(
                            f"{exc}\n\nclient {index} sent, in order:\n"
                            + "\n".join(f"  {c!r:.300}" for c in sent)
                            + "\nand got, in order:\n"
                            + "\n".join(
                                f"  {r!r:.200} (matched to {c.label})" for c, r in history[index]
                            )
                        ) from None
                    STATS.answered += 1
        if throwaway:
            watch = zmq.Poller()
            for _, sock in throwaway:
                watch.register(sock, zmq.POLLIN)
            answered = dict(watch.poll(int(DROP_GRACE_S * 1000)))
            for case, sock in throwaway:
                assert sock not in answered, f"a reply to dropped {case!r}"
                sock.close(linger=0)
                STATS.dropped += 1
        assert alive(), f"utterd exited during a batch holding {list(batch)!r:.2000}"


# ---------------------------------------------------------------------------------------------
# The daemon.


def limits_config() -> dict[str, object]:
    """A small text limit, and the per-client limits this checkout has far above the load."""
    config: dict[str, object] = {"max_text_chars": MAX_TEXT_CHARS}
    present = {f.name for f in dataclasses.fields(LimitsSettings)}
    config.update({k: v for k, v in GENEROUS_LIMITS.items() if k in present})
    return config


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("fuzzd")
    env, _ = file_sink_env(tmp)  # `speak` plays into a file, faster than real time
    config = {"server": {"max_message_bytes": MAX_MESSAGE_BYTES}, "limits": limits_config()}
    with RunningDaemon(tmp, clean_env(env), config) as d:
        yield d


def _describe(d: RunningDaemon) -> dict[str, Any]:
    with d.client() as c:
        header, _ = c.request("describe")
    return dict(header["data"])


def test_fuzzed_requests_each_get_a_documented_error(daemon: RunningDaemon) -> None:
    global KNOWN_VOICES
    info = _describe(daemon)
    KNOWN_VOICES = frozenset(v["id"] for v in info["voices"])
    assert all(not v["speakers"] for v in info["voices"]), "unknown_speakers assumes no speakers"
    STATS.counters_before = dict(info["counters"])
    clients = Clients(daemon.endpoint)
    started = time.monotonic()

    @settings(
        max_examples=BATCHES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking against a live daemon
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(batch=st.lists(cases, min_size=BATCH_SIZE, max_size=BATCH_SIZE))
    def run_batch(batch: list[Case]) -> None:
        # Replies left unread by a failed batch would be taken for the next batch's, so after a
        # failure every later call (Hypothesis replays the failing batch) reports that one.
        if STATS.failure:
            raise AssertionError(STATS.failure)
        STATS.batches += 1
        try:
            clients.exchange(batch, daemon.alive)
        except AssertionError as exc:
            STATS.failure = str(exc)
            raise

    try:
        run_batch()
    finally:
        clients.close()
        STATS.elapsed_s = time.monotonic() - started
        print(
            f"\nfuzz: {STATS.sent} requests in {STATS.batches} batches, {STATS.elapsed_s:.1f} s; "
            f"answered {STATS.answered}, dropped {STATS.dropped}; clients {dict(STATS.clients)}"
            f"\nby generator: {dict(sorted(STATS.labels.items()))}"
            f"\nby code: {dict(STATS.codes.most_common())}"
        )
    STATS.counters_after = dict(_describe(daemon)["counters"])
    before, after = STATS.counters_before, STATS.counters_after
    # Both describes count themselves: the second one is the only extra request.
    assert after["requests"] - before["requests"] == STATS.answered + 1, (before, after)
    refused = after["errors"] - before["errors"]
    refused += after.get("rate_limited", 0) - before.get("rate_limited", 0)
    assert refused == STATS.answered, (before, after)


def test_at_least_10000_requests_were_sent() -> None:
    assert STATS.batches, "run the whole file: the fuzz test above did not run"
    assert STATS.sent >= MIN_REQUESTS, STATS
    assert STATS.answered + STATS.dropped == STATS.sent
    # Every generator contributed, and every client identity sent some.
    generators = {label.split(":")[0] for label in STATS.labels}
    assert {"raw", "semantic", "oversized", "wrong-type", "invalid-value"} <= generators
    assert STATS.dropped > 0 and set(STATS.clients) == set(range(len(IDENTITIES) + 1))


def test_oversized_message_is_dropped_and_its_sender_can_reconnect(daemon: RunningDaemon) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    try:
        ping = dump({"type": "ping", "id": "edge"}, True).encode()
        sock.send_multipart([ping + b" " * (MAX_MESSAGE_BYTES - len(ping))])  # exactly the limit
        assert sock.poll(10_000), "a message of exactly max_message_bytes is accepted"
        assert json.loads(sock.recv_multipart()[0])["type"] == "pong"
        sock.send_multipart([ping + b" " * (MAX_MESSAGE_BYTES + 1 - len(ping))])
        assert not sock.poll(1000), "one byte more: dropped without a reply"
        # The connection was cut; ZeroMQ reconnects, and the client is served again.
        sock.send_multipart([dump({"type": "ping", "id": "after"}, True).encode()])
        assert sock.poll(10_000), "the sender reconnects and is answered"
        assert json.loads(sock.recv_multipart()[0])["id"] == "after"
    finally:
        sock.close(linger=0)
    assert daemon.alive()


def test_daemon_survives_and_still_speaks(daemon: RunningDaemon) -> None:
    assert daemon.alive()
    with daemon.client() as c:
        assert c.request("ping")[0]["type"] == "pong"
        header, payload = c.request(
            "synthesize", {"text": "The front door is open."}, timeout_s=120
        )
        samples, rate = wav_samples(payload or b"")
        assert header["data"]["sample_rate_hz"] == rate
        assert 0.5 < len(samples) / rate < 8.0 and rms(samples) > 300, "real speech"
        job = c.request("speak", {"text": "Door open."})[0]["data"]["job"]
    assert daemon.wait_job(job)["state"] == "done"
    assert daemon.alive()


def test_daemon_log_has_no_traceback(daemon: RunningDaemon) -> None:
    log = daemon.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]
    assert "request-crash" not in log and "synthesize-crash" not in log
