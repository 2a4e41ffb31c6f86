"""What the text front end hands on: sentences, each a list of segments (text, breaks, marks).

A segment of text carries everything that changes how it is said (language, voice, prosody,
emphasis, a say-as hint, phonemes); a break is a pause; a mark is a named point whose place in
the audio the daemon reports. The SSML parser (`ssml.py`) produces these; plain text will
produce the same types, so a voice family sees one shape whatever the request's format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Emphasis: TypeAlias = Literal["strong", "moderate", "none", "reduced"]
"""SSML emphasis levels; `<emphasis>` without a level is `moderate`."""


@dataclass(frozen=True)
class Prosody:
    """Prosody of a span, relative to the voice's own defaults (all defaults: unchanged).

    A voice that can change pitch computes its target as
    `(default_f0_hz + pitch_offset_hz) * 2 ** (pitch_semitones / 12)`.
    """

    rate_factor: float = 1.0
    """Speaking rate as a factor of the voice's default: 2.0 is twice as fast."""

    pitch_semitones: float = 0.0
    """Pitch shift in semitones (labels, percentages and `st` values)."""

    pitch_offset_hz: float = 0.0
    """Pitch shift in Hz (`+20Hz`), added before the semitone shift."""

    volume_gain: float = 1.0
    """Amplitude factor: 1.0 unchanged, 0.0 silent, about 2.0 for `+6dB`."""


@dataclass(frozen=True)
class SayAs:
    """How to read a span (`<say-as>`); the text front end decides what each hint means."""

    interpret_as: str
    """One of `characters`, `spell-out`, `digits`, `cardinal`, `ordinal`, `date`, `time`,
    `telephone`, `currency`."""

    format: str | None = None
    """The `format` attribute (for `date`: one of `mdy`, `dmy`, `ymd`, `ydm`, `ym`, `my`, `md`,
    `dm`, `d`, `m`, `y`); None when absent."""

    detail: str | None = None
    """The `detail` attribute, passed on as written; None when absent."""


@dataclass(frozen=True)
class TextSegment:
    """A run of text said one way; a segment boundary is a word boundary."""

    text: str
    """What to say: whitespace collapsed to single spaces, never empty, no surrounding space
    (for `<sub>` the alias, for `<phoneme>` the written word the phonemes stand for)."""

    lang: str | None = None
    """Language tag in force (`xml:lang`), as written; None means the voice's language."""

    voice: str | None = None
    """Voice name switched to by `<voice name>`; None means the request's voice."""

    prosody: Prosody = field(default_factory=Prosody)
    """Rate, pitch and volume in force, composed from every enclosing `<prosody>`."""

    emphasis: Emphasis | None = None
    """Level of the innermost enclosing `<emphasis>`; None outside any."""

    say_as: SayAs | None = None
    """The `<say-as>` hint for this text; None for ordinary text."""

    phonemes: str | None = None
    """IPA to say instead of `text` (`<phoneme alphabet="ipa" ph>`); None to read `text`."""


@dataclass(frozen=True)
class Break:
    """A pause (`<break>`)."""

    duration_ms: int
    """Length of the silence in milliseconds (0 for `strength="none"`)."""


@dataclass(frozen=True)
class Mark:
    """A named point in the speech (`<mark name>`); the daemon reports where it falls."""

    name: str
    """The mark's name, as written."""


Segment: TypeAlias = TextSegment | Break | Mark
"""One piece of a sentence."""


@dataclass(frozen=True)
class Sentence:
    """A sentence: the unit a voice says in one go and the scheduler reports as `sentence`."""

    segments: tuple[Segment, ...]
    """Its text, breaks and marks in order; never empty, but may hold only breaks and marks
    (a pause or a mark at the end of a document)."""
