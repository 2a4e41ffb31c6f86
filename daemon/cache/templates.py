"""Templated prompts: fixed parts come from the phrase cache, slots are synthesized each time.

Syntax (a request's `text`, when the request also carries `slots`):

- `{name}` is a slot. A name is ASCII letters, digits and `_`, not starting with a digit
  (`{amount}`, `{due_date}`, `{item2}`). A slot may appear several times.
- `{{` and `}}` are a literal `{` and `}`. Any other brace is an error.
- Values come from the request field `slots`, a mapping of name to a non-empty string:
  `{"text": "Your balance is {amount}.", "slots": {"amount": "42 dollars"}}`. Every slot of
  the template needs a value and every value a slot (a typo is an error, not silence). Values
  are inserted as plain text: braces in a value are not parsed.
- A request without `slots` is plain text: its braces are spoken as they are.

Syntax errors raise `InvalidTemplate` (code `invalid-template`) naming the character offset;
value errors raise `InvalidSlots` (code `invalid-slots`).

How a template becomes pieces (`Template.render`): each literal run that contains a letter or
digit is a *fixed* piece, spoken from the cache; slots are *variable* pieces, synthesized each
time. Punctuation decides prosody, so it goes with the words it closes: punctuation and spaces
between a slot and the next word join the slot's piece (`{amount}.` is synthesized as
"42 dollars." with its falling end, `{name}, your` gives "Ann," and "your ..."), and a
literal made only of punctuation or spaces between two slots merges them into one variable
piece (`{dollars}.{cents}` is one synthesis). The split depends only on the template, never on
the values, so `Template.fixed_texts()` lists what pre-warming should render.

Joining the pieces (`prepare_piece`, `pause_after`, `join_pcm`) is explained in `join_pcm`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from utterd.models.errors import UtterdError

__all__ = [
    "InvalidSlots",
    "InvalidTemplate",
    "Piece",
    "Template",
    "TemplateSlot",
    "TemplateText",
    "join_pcm",
    "parse_template",
    "pause_after",
    "prepare_piece",
    "silence",
    "trim_silence",
]

MAX_SLOTS: Final = 64
"""Most slot occurrences in one template (bounds the pieces one request can make)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CONTEXT_CHARS: Final = 24

_SENTENCE_END: Final = frozenset(".!?…")
_CLAUSE_END: Final = frozenset(",;:—–")
SENTENCE_PAUSE_MS: Final = 250.0
"""Pause after a piece ending a sentence: about what VITS voices leave between sentences."""
CLAUSE_PAUSE_MS: Final = 120.0
"""Pause after a comma, semicolon, colon or dash."""
WORD_PAUSE_MS: Final = 40.0
"""Pause at a join inside a clause: a short breath; pieces are synthesized apart, so some gap
reads as natural where none would sound clipped."""
FADE_MS: Final = 5.0
"""Raised-cosine ramp at each side of a join: long enough to remove any step, short enough
to fall inside the kept silence margin."""
TRIM_THRESHOLD_DBFS: Final = -50.0
"""Frames quieter than this (RMS) at a piece's edge count as the engine's silence padding."""
TRIM_MARGIN_MS: Final = 20.0
"""Kept before the first and after the last loud frame, so quiet consonants survive."""
_FRAME_MS: Final = 5.0


class InvalidTemplate(UtterdError):
    """The template's braces or slot names are malformed; `position` is the character offset."""

    code = "invalid-template"

    def __init__(self, message: str, source: str, position: int) -> None:
        start = max(0, position - _CONTEXT_CHARS)
        excerpt = source[start : position + _CONTEXT_CHARS]
        super().__init__(f"{message} at character {position} (near {excerpt!r})")
        self.position = position
        """0-based offset into the template of the offending character."""


class InvalidSlots(UtterdError):
    """The `slots` values do not fit the template (missing, unknown, empty or not a string)."""

    code = "invalid-slots"


@dataclass(frozen=True)
class TemplateText:
    """A literal run of the template, braces unescaped."""

    text: str
    """The text as it will be spoken."""

    position: int
    """Offset of its first character in the template."""


@dataclass(frozen=True)
class TemplateSlot:
    """A `{name}` in the template."""

    name: str
    """The slot's name; its value comes from the request's `slots`."""

    position: int
    """Offset of the opening brace in the template."""


@dataclass(frozen=True)
class Piece:
    """One unit of synthesis in a rendered template."""

    text: str
    """What to synthesize (whitespace folded)."""

    cached: bool
    """True: fixed template text, served from and stored in the phrase cache. False: contains
    slot values, synthesized for this request only (cache mode `off`)."""

    slots: tuple[str, ...] = ()
    """Names of the slots whose values `text` contains (empty for a fixed piece)."""


@dataclass(frozen=True)
class _FixedPart:
    text: str


@dataclass(frozen=True)
class _SlotGroup:
    """Slots and the punctuation around them, synthesized as one piece."""

    items: tuple[str | TemplateSlot, ...]
    """Literal glue strings and slots, in order."""


def _has_word(text: str) -> bool:
    return any(c.isalnum() for c in text)


@dataclass(frozen=True)
class Template:
    """A parsed template; `render` turns slot values into the pieces to speak."""

    source: str
    """The template as written."""

    parts: tuple[TemplateText | TemplateSlot, ...]
    """Literal runs and slots in order (adjacent literal runs already merged)."""

    @property
    def slot_names(self) -> tuple[str, ...]:
        """Each slot name once, in order of first appearance."""
        return tuple(dict.fromkeys(p.name for p in self.parts if isinstance(p, TemplateSlot)))

    def _plan(self) -> tuple[_FixedPart | _SlotGroup, ...]:
        plan: list[_FixedPart | _SlotGroup] = []
        group: list[str | TemplateSlot] = []
        for part in self.parts:
            if isinstance(part, TemplateSlot):
                group.append(part)
                continue
            text = part.text
            if not _has_word(text):
                # Pure punctuation/space: glue to the slot group around it (or the next one).
                if group or len(plan) == 0:
                    group.append(text)
                else:
                    plan.append(_FixedPart(text))
                continue
            if group:
                # The punctuation that closes the slot's phrase is spoken with it.
                first_word = next(i for i, c in enumerate(text) if c.isalnum())
                group.append(text[:first_word])
                text = text[first_word:]
                plan.append(_SlotGroup(tuple(group)))
                group = []
            plan.append(_FixedPart(text))
        if group:
            has_slot = any(isinstance(item, TemplateSlot) for item in group)
            # A template of punctuation only ("?") has no slot: it is a fixed piece.
            glue = "".join(item for item in group if isinstance(item, str))
            plan.append(_SlotGroup(tuple(group)) if has_slot else _FixedPart(glue))
        return tuple(_tidy(plan))

    def fixed_texts(self) -> tuple[str, ...]:
        """The texts of the fixed pieces, as `render` produces them (for pre-warming)."""
        return tuple(_fold(p.text) for p in self._plan() if isinstance(p, _FixedPart))

    def render(self, slots: Mapping[str, object]) -> tuple[Piece, ...]:
        """The pieces to speak, in order. Raises InvalidSlots naming what does not fit."""
        names = set(self.slot_names)
        missing = [n for n in self.slot_names if n not in slots]
        unknown = sorted(str(k) for k in slots if k not in names)
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"no value for {', '.join(missing)}")
            if unknown:
                problems.append(f"the template has no slot {', '.join(unknown)}")
            raise InvalidSlots("; ".join(problems))
        for name in self.slot_names:
            value = slots[name]
            if not isinstance(value, str):
                raise InvalidSlots(f"slot {name!r} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise InvalidSlots(f"slot {name!r} is empty")
        pieces: list[Piece] = []
        for step in self._plan():
            if isinstance(step, _FixedPart):
                pieces.append(Piece(_fold(step.text), cached=True))
                continue
            text = "".join(
                item if isinstance(item, str) else str(slots[item.name]) for item in step.items
            )
            used = tuple(dict.fromkeys(i.name for i in step.items if isinstance(i, TemplateSlot)))
            pieces.append(Piece(_fold(text), cached=False, slots=used))
        return tuple(p for p in pieces if p.text)

    def text(self, slots: Mapping[str, object]) -> str:
        """The whole prompt with its values, as one string (for length limits and logs)."""
        return " ".join(p.text for p in self.render(slots))


def _fold(text: str) -> str:
    return " ".join(text.split())


def _tidy(plan: list[_FixedPart | _SlotGroup]) -> list[_FixedPart | _SlotGroup]:
    """Drop fixed parts that are only spaces (nothing to cache) after the split."""
    return [p for p in plan if not (isinstance(p, _FixedPart) and not p.text.strip())]


def parse_template(source: str) -> Template:
    """Parse the template syntax; raises InvalidTemplate naming the offending offset."""
    parts: list[TemplateText | TemplateSlot] = []
    literal: list[str] = []
    literal_start = 0
    slots = 0
    i = 0
    n = len(source)

    def flush() -> None:
        if literal:
            parts.append(TemplateText("".join(literal), literal_start))
            literal.clear()

    while i < n:
        c = source[i]
        if c == "{" and source.startswith("{{", i):
            if not literal:
                literal_start = i
            literal.append("{")
            i += 2
        elif c == "}" and source.startswith("}}", i):
            if not literal:
                literal_start = i
            literal.append("}")
            i += 2
        elif c == "}":
            raise InvalidTemplate("unmatched '}' (write '}}' for a literal brace)", source, i)
        elif c == "{":
            close = source.find("}", i + 1)
            opener = source.find("{", i + 1)
            if close < 0 or (0 <= opener < close):
                raise InvalidTemplate("unclosed '{' (write '{{' for a literal brace)", source, i)
            name = source[i + 1 : close]
            if not name:
                raise InvalidTemplate("empty slot name '{}'", source, i)
            if not _NAME.match(name):
                raise InvalidTemplate(
                    f"invalid slot name {name!r} (letters, digits and _, not starting with a "
                    "digit)",
                    source,
                    i + 1,
                )
            slots += 1
            if slots > MAX_SLOTS:
                raise InvalidTemplate(f"more than {MAX_SLOTS} slots", source, i)
            flush()
            parts.append(TemplateSlot(name, i))
            i = close + 1
        else:
            if not literal:
                literal_start = i
            literal.append(c)
            i += 1
    flush()
    return Template(source, tuple(parts))


# ---------------------------------------------------------------------------------------------
# Joining the audio of the pieces.


def pause_after(text: str) -> float:
    """Milliseconds of silence after a piece ending with `text`, from its final punctuation."""
    stripped = text.rstrip(" \"'”’)]")
    last = stripped[-1:] if stripped else ""
    if last in _SENTENCE_END:
        return SENTENCE_PAUSE_MS
    if last in _CLAUSE_END:
        return CLAUSE_PAUSE_MS
    return WORD_PAUSE_MS


def silence(duration_ms: float, sample_rate_hz: int) -> npt.NDArray[np.int16]:
    """Digital silence of `duration_ms`."""
    return np.zeros(round(duration_ms * sample_rate_hz / 1000.0), dtype=np.int16)


def trim_silence(
    pcm: npt.NDArray[np.int16],
    sample_rate_hz: int,
    *,
    start: bool = True,
    end: bool = True,
    threshold_dbfs: float = TRIM_THRESHOLD_DBFS,
    margin_ms: float = TRIM_MARGIN_MS,
) -> npt.NDArray[np.int16]:
    """`pcm` without the quiet padding at its start and/or end (a margin is kept).

    Quiet means a 5 ms frame whose RMS is below `threshold_dbfs`. All-quiet audio gives an
    empty array: the piece has nothing to say.
    """
    frame = max(1, round(_FRAME_MS * sample_rate_hz / 1000.0))
    count = len(pcm) // frame
    if count == 0:
        return pcm
    frames = pcm[: count * frame].astype(np.float64).reshape(count, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.flatnonzero(rms > 32767.0 * 10.0 ** (threshold_dbfs / 20.0))
    if loud.size == 0:
        return pcm[:0]
    margin = round(margin_ms * sample_rate_hz / 1000.0)
    first = max(0, int(loud[0]) * frame - margin) if start else 0
    last = min(len(pcm), (int(loud[-1]) + 1) * frame + margin) if end else len(pcm)
    return pcm[first:last]


def _ramp(length: int) -> npt.NDArray[np.float64]:
    """Raised-cosine gain from 0 (exclusive) up to 1 (exclusive) over `length` samples."""
    t = (np.arange(length, dtype=np.float64) + 1.0) / (length + 1.0)
    return 0.5 - 0.5 * np.cos(math.pi * t)


def prepare_piece(
    pcm: npt.NDArray[np.int16],
    sample_rate_hz: int,
    *,
    join_before: bool,
    join_after: bool,
    fade_ms: float = FADE_MS,
) -> npt.NDArray[np.int16]:
    """One piece ready to be played next to its neighbours: trimmed and faded at its joins.

    The outer edges of the prompt (its very start and end) are left as the engine made them.
    Streaming use: prepare each piece as soon as it is complete, play it, then play
    `silence(pause_after(piece.text))` before the next.
    """
    trimmed = trim_silence(pcm, sample_rate_hz, start=join_before, end=join_after)
    if trimmed.size == 0:
        return trimmed
    out = trimmed.astype(np.float64)
    fade = min(len(out) // 2, max(1, round(fade_ms * sample_rate_hz / 1000.0)))
    ramp = _ramp(fade)
    if join_before:
        out[:fade] *= ramp
    if join_after:
        out[len(out) - fade :] *= ramp[::-1]
    # Gains are <= 1, so rounding cannot overflow; no normalization (fixed output gain).
    return np.rint(out).astype(np.int16)


def join_pcm(
    pieces: Sequence[npt.NDArray[np.int16]],
    sample_rate_hz: int,
    pauses_ms: Sequence[float],
    *,
    fade_ms: float = FADE_MS,
) -> tuple[npt.NDArray[np.int16], tuple[int, ...]]:
    """Concatenate separately synthesized pieces without audible seams.

    Returns the joined audio and the sample offset where each piece starts. `pauses_ms[i]` is
    the silence between piece i and i+1 (use `pause_after(piece_i.text)`).

    Why trim-and-pause rather than a crossfade: each piece comes from its own synthesis call,
    so it starts and ends in the engine's silence padding, of a length we do not control. A
    crossfade of a few milliseconds would only overlap padding with padding, leaving the long
    gap of both paddings; a longer one would overlap the last word of one piece with the first
    of the next and smear both. Trimming each join side to its speech (keeping a margin for
    quiet consonants) and inserting a fixed pause sized by the punctuation gives a gap like a
    natural word or clause boundary whatever the engine's padding. A short raised-cosine fade
    on each side of the pause takes the waveform to exactly zero and back, so there is no
    step (click) at either seam, and the gain elsewhere is untouched (no normalization).
    """
    if len(pauses_ms) != max(0, len(pieces) - 1):
        raise ValueError("pauses_ms needs one value per join (len(pieces) - 1)")
    out: list[npt.NDArray[np.int16]] = []
    starts: list[int] = []
    position = 0
    last = len(pieces) - 1
    for index, pcm in enumerate(pieces):
        piece = prepare_piece(
            pcm,
            sample_rate_hz,
            join_before=index > 0,
            join_after=index < last,
            fade_ms=fade_ms,
        )
        starts.append(position)
        out.append(piece)
        position += len(piece)
        if index < last:
            gap = silence(pauses_ms[index], sample_rate_hz)
            out.append(gap)
            position += len(gap)
    joined = np.concatenate(out) if out else np.zeros(0, np.int16)
    return joined, tuple(starts)
