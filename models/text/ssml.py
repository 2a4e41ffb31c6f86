"""A safe SSML parser: an SSML document (whole, or streamed as it arrives) → sentences of segments.

The subset is the one issue 17 names: `speak` (the root, with `xml:lang`), `p`, `s`, `break`,
`say-as`, `sub`, `prosody`, `emphasis`, `mark`, `lang`, `voice` and `phoneme`, in the SSML
namespace or in none. What it produces is in `segments.py`; these are the rules:

- **Root.** The document must be XML with a `<speak>` root (VoiceXML prompts, speech-dispatcher
  and SSML 1.1 all have one); anything else is `invalid-ssml`. Plain text is not guessed at:
  the request's `text_format` says which parser a text goes to.
- **Inheritance.** `xml:lang` (on `speak`, `p`, `s`, `lang`, `voice`), `<voice name>`,
  `<prosody>` and `<emphasis>` flow down to every text inside. Prosody values compose:
  a relative value (`+10%`, `150%`, `-3st`, `+6dB`, `1.5`) changes the value in force, a label
  (`fast`, `loud`, `high`, `default`) sets it relative to the voice's default; the result is
  held within `RATE_FACTOR_RANGE`, `PITCH_SEMITONES_RANGE`, `PITCH_OFFSET_HZ_RANGE` and
  `MAX_VOLUME_GAIN`, and a single value outside them is `invalid-ssml`.
- **Sentences.** `<p>` and `<s>` start and end sentences. Text outside `<s>` is also cut after
  `.`, `!`, `?` or `…` (with closing quotes or brackets) followed by a space and a character
  that is not a lowercase letter, and after `。`, `！`, `？` — but not after a single letter
  (`J.`, `e.g.`, `U.S.`) or a common abbreviation (`Dr.`, `Oct.`, `Inc.`, `approx.`, ...). A
  text run that ends in such punctuation ends its sentence. The rule is deliberately cautious:
  the text front end may cut a sentence further, but it cannot join what the parser cut.
  Marks and breaks between two sentences go with the next one.
- **Words.** Whitespace is collapsed and a segment boundary is a word boundary: markup inside a
  word (`Hel<emphasis>lo</emphasis>`) makes two words.
- **Text-only and empty elements.** `say-as`, `sub` and `phoneme` may hold only text and
  `break` and `mark` nothing (SSML 1.1); `<sub>` says its alias, `<phoneme>` keeps its text and
  adds the IPA. `meta`, `metadata` and `desc` are not spoken; `lexicon` is not supported (a
  warning) and not spoken.
- **Unknown elements** (and `<speak>` inside the root) are transparent: their text is spoken
  with the text around them (`wh<foo>ole</foo>` is one word), with
  `event=ssml-unknown-element` logged and a warning in the result, as SSML processors do;
  unknown attributes and unsupported values (a say-as `interpret-as`, a phoneme `alphabet`) are
  ignored the same way. A malformed value of a supported attribute is `invalid-ssml`.
- **Safety.** expat is used directly: any DOCTYPE, entity declaration or external entity is
  refused (so no entity expansion at all: only the five predefined entities and character
  references), as are documents longer than `SsmlLimits.max_chars`, deeper than
  `max_depth`, with more than `max_elements` elements or an attribute value longer than
  `max_attribute_chars`. Every error is `InvalidSsml` (code `invalid-ssml`) with the line and
  column. The work is linear in the input, streamed or not.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, NoReturn, TypeAlias
from xml.parsers import expat

from utterd.models.errors import UtterdError
from utterd.models.text import sentences
from utterd.models.text.segments import (
    Break,
    Emphasis,
    Mark,
    Prosody,
    SayAs,
    Segment,
    Sentence,
    TextSegment,
)

_LOGGER = logging.getLogger(__name__)

SSML_NAMESPACE: Final = "http://www.w3.org/2001/10/synthesis"
"""The SSML namespace; elements in it or in no namespace are SSML."""

_XML_LANG: Final = "http://www.w3.org/XML/1998/namespace lang"
_XSI_SCHEMA_LOCATION: Final = "http://www.w3.org/2001/XMLSchema-instance schemaLocation"
_XML_BASE: Final = "http://www.w3.org/XML/1998/namespace base"

BREAK_STRENGTH_MS: Final[Mapping[str, int]] = {
    "none": 0,
    "x-weak": 100,
    "weak": 250,
    "medium": 400,
    "strong": 700,
    "x-strong": 1000,
}
"""Pause for each `<break strength>`; a `<break/>` without attributes is `medium`."""

MAX_BREAK_MS: Final = 10_000
"""Longest single `<break time>` (as Amazon Polly); a longer one is `invalid-ssml`."""

RATE_LABELS: Final[Mapping[str, float]] = {
    "x-slow": 0.5,
    "slow": 0.75,
    "medium": 1.0,
    "fast": 1.5,
    "x-fast": 2.0,
    "default": 1.0,
}
"""`<prosody rate>` labels as factors of the voice's default rate."""

VOLUME_LABELS_DB: Final[Mapping[str, float]] = {
    "x-soft": -12.0,
    "soft": -6.0,
    "medium": 0.0,
    "loud": 6.0,
    "x-loud": 12.0,
    "default": 0.0,
}
"""`<prosody volume>` labels in dB against the voice's level (`silent` is a gain of 0)."""

PITCH_LABELS_SEMITONES: Final[Mapping[str, float]] = {
    "x-low": -6.0,
    "low": -3.0,
    "medium": 0.0,
    "high": 3.0,
    "x-high": 6.0,
    "default": 0.0,
}
"""`<prosody pitch>` labels in semitones against the voice's pitch."""

RATE_FACTOR_RANGE: Final = (0.1, 10.0)
"""Smallest and largest rate factor, of one value and of the composed result."""

PITCH_SEMITONES_RANGE: Final = (-24.0, 24.0)
"""Smallest and largest pitch shift in semitones."""

PITCH_OFFSET_HZ_RANGE: Final = (-500.0, 500.0)
"""Smallest and largest pitch shift in Hz."""

VOLUME_DB_RANGE: Final = (-96.0, 24.0)
"""Smallest and largest `dB` value of one `<prosody volume>`."""

MAX_VOLUME_GAIN: Final = 10.0 ** (VOLUME_DB_RANGE[1] / 20.0)
"""Largest amplitude factor, of one value and of the composed result (+24 dB)."""

SAY_AS_INTERPRETATIONS: Final = frozenset(
    {
        "characters",
        "spell-out",
        "digits",
        "cardinal",
        "ordinal",
        "date",
        "time",
        "telephone",
        "currency",
    }
)
"""`interpret-as` values passed on; any other is a warning and the text is read as written."""

DATE_FORMATS: Final = frozenset({"mdy", "dmy", "ymd", "ydm", "ym", "my", "md", "dm", "d", "m", "y"})
"""`format` values of `<say-as interpret-as="date">` (W3C say-as note)."""

MAX_WARNINGS: Final = 64
"""Most warnings one document keeps (and logs); each kind and name is kept once."""


_EMPHASIS_LEVELS: Final[Mapping[str, Emphasis]] = {
    "strong": "strong",
    "moderate": "moderate",
    "none": "none",
    "reduced": "reduced",
}

_STREAM_OVERLAP: Final = 64
"""Characters of a streamed text run scanned again with each chunk (a cut straddling chunks)."""

_STREAM_SAFE_START: Final = sentences.MAX_WORD_LOOKBACK + 4
"""Where in a re-scanned window a cut candidate has all the context it needs."""

_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TIME: Final = re.compile(rf"({_NUMBER})(ms|s)")
_VALUE: Final = re.compile(rf"([+-]?)({_NUMBER})(%|dB|Hz|st)?")
_LANG_TAG: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


class InvalidSsml(UtterdError):
    """The SSML is malformed, hostile or beyond a limit; the message names the line and column."""

    code = "invalid-ssml"

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"{reason} (line {line}, column {column})")
        self.reason = reason
        self.line = line
        self.column = column


@dataclass(frozen=True)
class SsmlLimits:
    """Bounds on one SSML document; beyond any of them it is refused with `invalid-ssml`."""

    max_chars: int = 200_000
    """Longest document in characters, markup included (ten times the default text limit)."""

    max_depth: int = 32
    """Deepest element nesting, the root counted as 1."""

    max_elements: int = 10_000
    """Most elements in one document."""

    max_attribute_chars: int = 2_000
    """Longest attribute value (an alias or an IPA string)."""


WarningKind: TypeAlias = Literal["unknown-element", "ignored-attribute", "unsupported-value"]
"""What an `SsmlWarning` reports (logged as `event=ssml-<kind>`)."""


@dataclass(frozen=True)
class SsmlWarning:
    """Something the parser skipped, so that a caller can report it."""

    kind: WarningKind
    """`unknown-element` (its text is spoken), `ignored-attribute` or `unsupported-value`."""

    name: str
    """The element (`{namespace}name` outside SSML's), `element@attribute` or
    `element@attribute=value`."""

    line: int
    """Line where the element starts (1-based)."""

    column: int
    """Column where the element starts (1-based, in characters)."""


@dataclass(frozen=True)
class SsmlDocument:
    """A parsed SSML document."""

    sentences: tuple[Sentence, ...]
    """The sentences in order (none for a document with nothing in it)."""

    warnings: tuple[SsmlWarning, ...] = ()
    """What was skipped: each kind and name once, at most `MAX_WARNINGS`."""


def parse(text: str, limits: SsmlLimits | None = None) -> SsmlDocument:
    """Parse a whole SSML document; raises `InvalidSsml`."""
    stream = SsmlStream(limits)
    sentences = stream.feed(text)
    sentences.extend(stream.close())
    return SsmlDocument(tuple(sentences), stream.warnings)


class _Content(enum.Enum):
    """What an element may hold."""

    NORMAL = enum.auto()
    TEXT_ONLY = enum.auto()  # say-as, phoneme: text only, spoken with the element's hint
    ALIAS = enum.auto()  # sub: text only, not spoken (the alias is)
    EMPTY = enum.auto()  # break, mark
    SKIP = enum.auto()  # meta, metadata, desc, lexicon: nothing inside is spoken


@dataclass(frozen=True, slots=True)
class _Style:
    """Everything about a text run except its text."""

    lang: str | None = None
    voice: str | None = None
    prosody: Prosody = field(default_factory=Prosody)
    emphasis: Emphasis | None = None
    say_as: SayAs | None = None
    phonemes: str | None = None


@dataclass(frozen=True, slots=True)
class _Frame:
    """An open element."""

    name: str
    style: _Style
    content: _Content = _Content.NORMAL
    ends_sentence: bool = False
    in_s: bool = False


class SsmlStream:
    """An SSML document parsed as it arrives (`speak-start`/`-chunk`), one expat parser.

    `feed` returns the sentences that are complete so far, `close` the rest; together they
    are what `parse` gives for the whole text, wherever the chunks were cut. After an error
    every call raises it again.
    """

    def __init__(self, limits: SsmlLimits | None = None) -> None:
        self._limits = limits if limits is not None else SsmlLimits()
        self._parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
        self._parser.buffer_text = True
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartDoctypeDeclHandler = self._on_doctype
        self._parser.EntityDeclHandler = self._on_entity_decl
        self._parser.ExternalEntityRefHandler = self._on_external_entity
        self._parser.StartElementHandler = self._on_start
        self._parser.EndElementHandler = self._on_end
        self._parser.CharacterDataHandler = self._on_text
        self._stack: list[_Frame] = []
        self._elements = 0
        self._chars = 0
        self._line = 1
        self._column = 1
        self._error: InvalidSsml | None = None
        self._closed = False
        self._warnings: list[SsmlWarning] = []
        self._warned: set[tuple[str, str]] = set()
        self._done: list[Sentence] = []
        self._current: list[Segment] = []
        self._current_has_text = False
        self._run: list[str] = []
        self._run_chars = 0
        self._run_style: _Style | None = None
        self._run_splits = False
        self._run_scanned = 0

    @property
    def warnings(self) -> tuple[SsmlWarning, ...]:
        """What was skipped so far (see `SsmlDocument.warnings`)."""
        return tuple(self._warnings)

    def feed(self, chunk: str) -> list[Sentence]:
        """Parse the next piece of the document; return the sentences it completed."""
        self._check_usable()
        self._check_size(chunk)
        self._parse(chunk, final=False)
        self._emit_complete_run_sentences()
        return self._take()

    def close(self) -> list[Sentence]:
        """End the document; return its remaining sentences. Raises if it is incomplete."""
        self._check_usable()
        self._parse("", final=True)
        self._closed = True
        self._flush_run()
        self._close_sentence()
        return self._take()

    # -- input --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise InvalidSsml("the SSML document is already closed", self._line, self._column)

    def _check_size(self, chunk: str) -> None:
        allowed = self._limits.max_chars - self._chars
        if len(chunk) > allowed:
            self._advance(chunk[:allowed])
            self._fail(f"the SSML is longer than {self._limits.max_chars} characters")
        self._chars += len(chunk)
        self._advance(chunk)

    def _advance(self, text: str) -> None:
        """Keep the line and column after `text` (for errors not at an expat position)."""
        newlines = text.count("\n")
        if newlines:
            self._line += newlines
            self._column = len(text) - text.rfind("\n")
        else:
            self._column += len(text)

    def _parse(self, text: str, *, final: bool) -> None:
        # Lone surrogates pass through as bytes that expat refuses with their position.
        data = text.encode("utf-8", "surrogatepass")
        try:
            self._parser.Parse(data, final)
        except InvalidSsml as error:
            self._error = error
            raise
        except expat.ExpatError as error:
            reason = expat.errors.messages[error.code]
            self._error = InvalidSsml(reason, error.lineno, error.offset + 1)
            raise self._error from None

    def _fail(self, reason: str, *, at_parser: bool = False) -> NoReturn:
        if at_parser:
            line = self._parser.CurrentLineNumber
            column = self._parser.CurrentColumnNumber + 1
        else:
            line, column = self._line, self._column
        self._error = InvalidSsml(reason, line, column)
        raise self._error

    def _warn(self, kind: WarningKind, name: str) -> None:
        key = (kind, name)
        if key in self._warned or len(self._warnings) >= MAX_WARNINGS:
            return
        self._warned.add(key)
        line = self._parser.CurrentLineNumber
        column = self._parser.CurrentColumnNumber + 1
        self._warnings.append(SsmlWarning(kind, name, line, column))
        _LOGGER.warning("event=ssml-%s name=%s line=%d column=%d", kind, name, line, column)

    # -- expat handlers: refusals ---------------------------------------------------------

    def _on_doctype(self, *_args: object) -> None:
        self._fail("a DOCTYPE is not allowed in SSML (no DTDs, no entities)", at_parser=True)

    def _on_entity_decl(self, *_args: object) -> None:
        self._fail("entity declarations are not allowed in SSML", at_parser=True)

    def _on_external_entity(self, *_args: object) -> int:
        self._fail("external entities are not allowed in SSML", at_parser=True)

    # -- expat handlers: elements -------------------------------------------------------

    def _on_start(self, raw_name: str, attrs: dict[str, str]) -> None:
        self._elements += 1
        if self._elements > self._limits.max_elements:
            self._fail(f"more than {self._limits.max_elements} elements", at_parser=True)
        if len(self._stack) >= self._limits.max_depth:
            self._fail(f"elements nested deeper than {self._limits.max_depth}", at_parser=True)
        for key, value in attrs.items():
            if len(value) > self._limits.max_attribute_chars:
                self._fail(
                    f"attribute {_display(key)} is longer than "
                    f"{self._limits.max_attribute_chars} characters",
                    at_parser=True,
                )
        name = _ssml_name(raw_name)
        shown = name if name is not None else _display(raw_name)
        if not self._stack:
            if name != "speak":
                self._fail(f"the root element must be <speak>, not <{shown}>", at_parser=True)
            self._stack.append(self._start_speak(attrs))
            return
        parent = self._stack[-1]
        if parent.content is _Content.SKIP:
            self._stack.append(parent)
            return
        if parent.content is not _Content.NORMAL:
            what = "nothing" if parent.content is _Content.EMPTY else "only text"
            self._fail(f"<{parent.name}> may contain {what}, not <{shown}>", at_parser=True)
        frame = self._start_child(name, shown, attrs, parent)
        if parent.in_s and not frame.in_s:
            frame = replace(frame, in_s=True)  # no plain-text cuts anywhere inside <s>
        self._stack.append(frame)

    def _on_end(self, _raw_name: str) -> None:
        frame = self._stack.pop()
        if frame.content in (_Content.TEXT_ONLY, _Content.ALIAS):
            self._flush_run()
        if frame.ends_sentence or not self._stack:
            self._flush_run()
            self._close_sentence()

    def _on_text(self, data: str) -> None:
        if not self._stack:
            return
        frame = self._stack[-1]
        if frame.content is _Content.EMPTY:
            if not data.isspace():
                self._fail(f"<{frame.name}> may contain nothing, not text", at_parser=True)
            return
        if frame.content in (_Content.SKIP, _Content.ALIAS):
            return
        splits = frame.content is _Content.NORMAL and not frame.in_s
        if self._run and (frame.style != self._run_style or splits != self._run_splits):
            self._flush_run()
        self._run_style = frame.style
        self._run_splits = splits
        self._run.append(data)
        self._run_chars += len(data)

    # -- elements -------------------------------------------------------------------------

    def _start_speak(self, attrs: dict[str, str]) -> _Frame:
        self._check_attributes(
            "speak", attrs, {"version", _XML_LANG, _XML_BASE, _XSI_SCHEMA_LOCATION}
        )
        return _Frame("speak", _Style(lang=self._lang(attrs, "speak", None)))

    def _start_child(
        self, name: str | None, shown: str, attrs: dict[str, str], parent: _Frame
    ) -> _Frame:
        style = parent.style
        if name in ("p", "s"):
            assert name is not None
            self._check_attributes(name, attrs, {_XML_LANG})
            self._flush_run()
            if self._current_has_text:
                self._close_sentence()
            lang = self._lang(attrs, name, style.lang)
            in_s = parent.in_s or name == "s"
            return _Frame(name, replace(style, lang=lang), ends_sentence=True, in_s=in_s)
        if name == "break":
            self._check_attributes(name, attrs, {"time", "strength"})
            self._add_segment(Break(self._break_ms(attrs)))
            return _Frame(name, style, _Content.EMPTY)
        if name == "mark":
            self._check_attributes(name, attrs, {"name"})
            self._add_segment(Mark(self._required(attrs, name, "name")))
            return _Frame(name, style, _Content.EMPTY)
        if name == "say-as":
            self._check_attributes(name, attrs, {"interpret-as", "format", "detail"})
            self._flush_run()
            return _Frame(name, replace(style, say_as=self._say_as(attrs)), _Content.TEXT_ONLY)
        if name == "sub":
            self._check_attributes(name, attrs, {"alias"})
            self._flush_run()
            self._add_text(self._required(attrs, name, "alias"), style)
            return _Frame(name, style, _Content.ALIAS)
        if name == "phoneme":
            self._check_attributes(name, attrs, {"alphabet", "ph"})
            self._flush_run()
            return _Frame(name, replace(style, phonemes=self._phonemes(attrs)), _Content.TEXT_ONLY)
        if name == "prosody":
            self._check_attributes(name, attrs, {"rate", "pitch", "volume"})
            return _Frame(name, replace(style, prosody=self._prosody(attrs, style.prosody)))
        if name == "emphasis":
            self._check_attributes(name, attrs, {"level"})
            return _Frame(name, replace(style, emphasis=self._emphasis(attrs)))
        if name == "lang":
            self._check_attributes(name, attrs, {_XML_LANG, "onlangfailure"})
            if _XML_LANG not in attrs:
                self._fail("<lang> needs an xml:lang attribute", at_parser=True)
            return _Frame(name, replace(style, lang=self._lang(attrs, name, style.lang)))
        if name == "voice":
            self._check_attributes(name, attrs, {"name", _XML_LANG})
            voice = self._required(attrs, name, "name") if "name" in attrs else style.voice
            lang = self._lang(attrs, name, style.lang)
            return _Frame(name, replace(style, voice=voice, lang=lang))
        if name in ("meta", "metadata", "desc", "lexicon"):
            if name == "lexicon":
                self._warn("unsupported-value", "lexicon")
            return _Frame(name, style, _Content.SKIP)
        self._warn("unknown-element", shown)
        return _Frame(shown, style)

    # -- attributes -----------------------------------------------------------------------

    def _check_attributes(self, element: str, attrs: dict[str, str], known: set[str]) -> None:
        for key in attrs:
            if key not in known:
                self._warn("ignored-attribute", f"{element}@{_display(key)}")

    def _required(self, attrs: dict[str, str], element: str, key: str) -> str:
        value = attrs.get(key, "").strip()
        if not value:
            self._fail(f"<{element}> needs a non-empty {key} attribute", at_parser=True)
        return value

    def _invalid(self, element: str, key: str, value: str, expected: str) -> NoReturn:
        self._fail(f"<{element} {key}={value!r}>: expected {expected}", at_parser=True)

    def _lang(self, attrs: dict[str, str], element: str, inherited: str | None) -> str | None:
        if _XML_LANG not in attrs:
            return inherited
        value = attrs[_XML_LANG].strip()
        if not value:
            return None  # xml:lang="" means "no language": the voice's own
        if not _LANG_TAG.fullmatch(value):
            self._invalid(element, "xml:lang", value, "a language tag such as en-US")
        return value

    def _break_ms(self, attrs: dict[str, str]) -> int:
        if "time" in attrs:  # SSML 1.1: time wins over strength
            value = attrs["time"].strip()
            match = _TIME.fullmatch(value)
            if match is None:
                self._invalid("break", "time", value, "a duration such as 500ms or 1.5s")
            seconds = float(match[1]) / (1000.0 if match[2] == "ms" else 1.0)
            if not seconds * 1000.0 <= MAX_BREAK_MS:
                self._invalid("break", "time", value, f"at most {MAX_BREAK_MS} ms")
            return round(seconds * 1000.0)
        strength = attrs.get("strength", "medium").strip()
        if strength not in BREAK_STRENGTH_MS:
            self._invalid("break", "strength", strength, "one of " + ", ".join(BREAK_STRENGTH_MS))
        return BREAK_STRENGTH_MS[strength]

    def _say_as(self, attrs: dict[str, str]) -> SayAs | None:
        interpret_as = self._required(attrs, "say-as", "interpret-as")
        if interpret_as not in SAY_AS_INTERPRETATIONS:
            self._warn("unsupported-value", f"say-as@interpret-as={interpret_as}")
            return None
        format_ = attrs.get("format", "").strip() or None
        if interpret_as == "date" and format_ is not None and format_ not in DATE_FORMATS:
            self._warn("unsupported-value", f"say-as@format={format_}")
            format_ = None
        return SayAs(interpret_as, format_, attrs.get("detail", "").strip() or None)

    def _phonemes(self, attrs: dict[str, str]) -> str | None:
        ph = self._required(attrs, "phoneme", "ph")
        alphabet = attrs.get("alphabet", "ipa").strip()
        if alphabet.lower() != "ipa":
            self._warn("unsupported-value", f"phoneme@alphabet={alphabet}")
            return None
        return ph

    def _emphasis(self, attrs: dict[str, str]) -> Emphasis:
        level = attrs.get("level", "moderate").strip()
        if level in _EMPHASIS_LEVELS:
            return _EMPHASIS_LEVELS[level]
        self._invalid("emphasis", "level", level, "strong, moderate, none or reduced")

    def _prosody(self, attrs: dict[str, str], inherited: Prosody) -> Prosody:
        prosody = inherited
        if "rate" in attrs:
            prosody = replace(prosody, rate_factor=self._rate(attrs["rate"].strip(), prosody))
        if "volume" in attrs:
            gain = self._volume(attrs["volume"].strip(), prosody)
            prosody = replace(prosody, volume_gain=gain)
        if "pitch" in attrs:
            semitones, offset_hz = self._pitch(attrs["pitch"].strip(), prosody)
            prosody = replace(prosody, pitch_semitones=semitones, pitch_offset_hz=offset_hz)
        return prosody

    def _rate(self, value: str, prosody: Prosody) -> float:
        if value in RATE_LABELS:
            return RATE_LABELS[value]
        match = _VALUE.fullmatch(value)
        expected = "x-slow..x-fast, a percentage (150%, +10%) or a factor (1.5)"
        if match is None or (match[3] is None and match[1]) or match[3] not in (None, "%"):
            self._invalid("prosody", "rate", value, expected)
        factor = _relative_factor(match[1], float(match[2]), percent=match[3] == "%")
        low, high = RATE_FACTOR_RANGE
        if not low <= factor <= high:
            self._invalid("prosody", "rate", value, f"a factor from {low} to {high}")
        return _clamp(prosody.rate_factor * factor, low, high)

    def _volume(self, value: str, prosody: Prosody) -> float:
        if value == "silent":
            return 0.0
        if value in VOLUME_LABELS_DB:
            return _gain(VOLUME_LABELS_DB[value])
        match = _VALUE.fullmatch(value)
        if match is None or match[3] not in ("dB", "%"):
            self._invalid("prosody", "volume", value, "silent..x-loud, +/-N dB or a percentage")
        number = float(match[2])
        if match[3] == "dB":
            db = -number if match[1] == "-" else number
            low, high = VOLUME_DB_RANGE
            if not low <= db <= high:
                self._invalid("prosody", "volume", value, f"from {low:+g} dB to {high:+g} dB")
            factor = _gain(db)
        else:
            factor = _relative_factor(match[1], number, percent=True)
            if not 0.0 <= factor <= MAX_VOLUME_GAIN:
                self._invalid("prosody", "volume", value, f"at most {MAX_VOLUME_GAIN * 100:.0f}%")
        return _clamp(prosody.volume_gain * factor, 0.0, MAX_VOLUME_GAIN)

    def _pitch(self, value: str, prosody: Prosody) -> tuple[float, float]:
        if value in PITCH_LABELS_SEMITONES:
            return PITCH_LABELS_SEMITONES[value], 0.0
        match = _VALUE.fullmatch(value)
        expected = "x-low..x-high or a signed change (+10%, -2st, +20Hz)"
        if match is None or not match[1] or match[3] not in ("%", "st", "Hz"):
            self._invalid("prosody", "pitch", value, expected)
        number = -float(match[2]) if match[1] == "-" else float(match[2])
        semitones, offset_hz = 0.0, 0.0
        if match[3] == "Hz":
            offset_hz = number
        elif match[3] == "st":
            semitones = number
        elif number > -100.0:
            semitones = 12.0 * math.log2(1.0 + number / 100.0)
        else:
            self._invalid("prosody", "pitch", value, "a change above -100%")
        st_low, st_high = PITCH_SEMITONES_RANGE
        hz_low, hz_high = PITCH_OFFSET_HZ_RANGE
        if not (st_low <= semitones <= st_high and hz_low <= offset_hz <= hz_high):
            self._invalid(
                "prosody",
                "pitch",
                value,
                f"{st_low:+g}..{st_high:+g} st, {hz_low:+g}..{hz_high:+g} Hz",
            )
        return (
            _clamp(prosody.pitch_semitones + semitones, st_low, st_high),
            _clamp(prosody.pitch_offset_hz + offset_hz, hz_low, hz_high),
        )

    # -- sentences ------------------------------------------------------------------------

    def _take(self) -> list[Sentence]:
        done, self._done = self._done, []
        return done

    def _add_segment(self, segment: Break | Mark) -> None:
        self._flush_run()
        self._current.append(segment)

    def _add_text(self, text: str, style: _Style) -> None:
        words = " ".join(text.split())
        if not words:
            return
        self._current.append(
            TextSegment(
                words,
                lang=style.lang,
                voice=style.voice,
                prosody=style.prosody,
                emphasis=style.emphasis,
                say_as=style.say_as,
                phonemes=style.phonemes,
            )
        )
        self._current_has_text = True

    def _close_sentence(self) -> None:
        if self._current:
            self._done.append(Sentence(tuple(self._current)))
            self._current = []
            self._current_has_text = False

    def _flush_run(self) -> None:
        """Turn the text run collected so far into segments (and sentences, where it splits)."""
        if not self._run:
            return
        text = "".join(self._run)
        style = self._run_style
        assert style is not None
        self._reset_run()
        if not self._run_splits:
            self._add_text(text, style)
            return
        cuts, ends = sentences.sentence_cuts(text, at_end=True)
        rest = self._add_sentences(text, cuts, style)
        self._add_text(rest, style)
        if ends:
            self._close_sentence()

    def _add_sentences(self, text: str, cuts: list[int], style: _Style) -> str:
        """Add the sentences `text` holds before its last cut; return the text after it."""
        start = 0
        for cut in cuts:
            self._add_text(text[start:cut], style)
            self._close_sentence()
            start = cut
        return text[start:]

    def _reset_run(self) -> None:
        self._run = []
        self._run_chars = 0
        self._run_scanned = 0

    def _emit_complete_run_sentences(self) -> None:
        """Streaming: hand on the sentences a growing text run already holds.

        Only the newly arrived text and a short overlap are scanned for a cut, so a long run
        that arrives in small chunks costs linear time; when there is one, the whole run is
        cut exactly as `_flush_run` would cut it, and only its unfinished tail is kept.
        """
        if not self._run or not self._run_splits or self._run_chars == self._run_scanned:
            return
        window_chars = self._run_chars - self._run_scanned + _STREAM_OVERLAP
        tail: list[str] = []
        tail_chars = 0
        for part in reversed(self._run):
            tail.append(part)
            tail_chars += len(part)
            if tail_chars >= window_chars:
                break
        window = "".join(reversed(tail))
        at_run_start = tail_chars == self._run_chars
        self._run_scanned = self._run_chars
        safe_start = 0 if at_run_start else _STREAM_SAFE_START
        if not sentences.sentence_cuts(window, at_end=False, min_start=safe_start)[0]:
            return
        text = "".join(self._run)
        style = self._run_style
        assert style is not None
        cuts, _ = sentences.sentence_cuts(text, at_end=False)
        rest = self._add_sentences(text, cuts, style)
        self._run = [rest]
        self._run_chars = len(rest)
        self._run_scanned = len(rest)


def _ssml_name(raw_name: str) -> str | None:
    """The SSML element name for expat's `namespace name` (or `name`), None outside SSML."""
    namespace, _, local = raw_name.rpartition(" ")
    return local if namespace in ("", SSML_NAMESPACE) else None


def _display(raw_name: str) -> str:
    """A name as a person reads it: `xml:lang`, `{namespace}name`, `name`."""
    namespace, _, local = raw_name.rpartition(" ")
    if not namespace:
        return local
    if raw_name == _XML_LANG:
        return "xml:lang"
    return f"{{{namespace}}}{local}"


def _relative_factor(sign: str, number: float, *, percent: bool) -> float:
    """`150%` → 1.5, `+10%` → 1.1, `-10%` → 0.9, `1.5` → 1.5."""
    if not percent:
        return number
    if sign == "+":
        return 1.0 + number / 100.0
    if sign == "-":
        return 1.0 - number / 100.0
    return number / 100.0


def _gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
