"""The text guard: any text becomes bounded, speakable pieces before a voice family sees it.

Every voice family runs its text through `pieces()` first. It removes what no voice can say and
what makes third-party front ends misbehave, then cuts the text into pieces of at most
`MAX_PIECE_CHARS` characters at the most natural point it finds (a sentence end, then a clause
mark, then a space, and only then mid-word), so that the cost of a request in time, memory and
audio grows linearly with its length whatever it holds:

- control, format, private-use and unassigned characters and lone surrogates are dropped;
- letters of a script the voice's language is not written in are dropped (an English voice
  neither reads Arabic letter names nor falls silent on a whole request because of them),
  and non-ASCII decimal digits become ASCII ones;
- emoji and other pictographs are dropped (reading them by name is the text front end's
  choice, issue 17);
- combining marks are kept at most `MAX_COMBINING_MARKS` per base character (no "Zalgo");
- a run of one punctuation or symbol character is cut to `MAX_SYMBOL_RUN`;
- a word longer than `MAX_WORD_CHARS` is cut into shorter ones, at a `-`, `/`, `.` or `_`
  inside it where there is one (an ideograph or kana is a word of its own: those scripts put no
  spaces between words), and a number of more than `MAX_NUMBER_DIGITS` digits into
  shorter numbers.

Each step is one pass over the text; cutting only at a point in the second half of a window
keeps the piece splitting linear too. A text with no letter or digit left has nothing to say:
`check_speakable` raises `NothingToSay` for it (the daemon answers the request with that
error); `pieces` simply yields nothing for it, so that a streamed text's unspeakable piece is
skipped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from utterd.models.errors import NothingToSay
from utterd.models.voice import CancelToken

GUARD_VERSION: Final = 2
"""Bumped whenever the guard changes what reaches a voice (it is part of phrase-cache keys).
2: a Han ideograph or kana ends a word, so a Chinese sentence is no overlong word."""

MAX_PIECE_CHARS: Final = 400
"""Longest piece handed to a voice family at once (a long sentence is cut at a clause mark or
a space; VITS attention and some G2P steps grow faster than linearly within one piece)."""

MAX_WORD_CHARS: Final = 40
"""Longest run of characters without a space handed on: longer runs are cut (espeak-ng
overflows fixed word buffers on some long words, e.g. `s'` repeated; a 20,000-character word
would otherwise reach the acoustic model whole)."""

MAX_NUMBER_DIGITS: Final = 15
"""Most digits of one number (999 trillion): a longer
run of digits is cut into numbers of at most this many digits (number readers fail past their
largest scale word, e.g. hibari's above 10^33)."""

MAX_SYMBOL_RUN: Final = 3
"""Longest run of one punctuation or symbol character kept (`!!!!!!` → `!!!`, `...` stays)."""

MAX_COMBINING_MARKS: Final = 2
"""Combining marks kept after one base character (enough for every real orthography)."""

_WORD_BREAKS: Final = frozenset("-/._:@")
"""Characters inside an overlong word after which it is preferably cut (URLs, paths, ids)."""

_SENTENCE_ENDS: Final = frozenset(".!?。！？;")
_CLAUSE_MARKS: Final = frozenset(",:;、，；：")

# Languages by the scripts their letters are written in (unicodedata names' first word).
# A language not listed here keeps every script: the guard never silences a voice it does not
# know about.
_SCRIPTS: Final[dict[str, frozenset[str]]] = {
    "en": frozenset({"LATIN"}),
    "zh": frozenset({"CJK", "LATIN", "BOPOMOFO"}),
}

_FULLWIDTH_START: Final = 0xFF01
_FULLWIDTH_END: Final = 0xFF5E
_FULLWIDTH_OFFSET: Final = 0xFEE0


def _is_pictograph(code: int) -> bool:
    """Emoji and pictographs, their modifiers, variation selectors and joiners."""
    return (
        0x1F000 <= code <= 0x1FAFF  # emoji, symbols and pictographs, flags, cards, tiles
        or 0x2600 <= code <= 0x27BF  # miscellaneous symbols (★ ☀ ☎), dingbats (✂ ✔)
        or 0x2B00 <= code <= 0x2BFF  # arrows and shapes used as emoji (⬆ ⭐)
        or 0xFE00 <= code <= 0xFE0F  # variation selectors (emoji presentation)
        or code in (0x200D, 0x20E3)  # zero-width joiner, combining keycap
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


class _Scripts:
    """Which letters a language keeps, with a per-character memo (names are looked up once)."""

    def __init__(self, language: str) -> None:
        primary = language.replace("_", "-").split("-", 1)[0].lower()
        self.allowed = _SCRIPTS.get(primary)
        self._memo: dict[str, bool] = {}

    def keeps(self, char: str) -> bool:
        if self.allowed is None:
            return True
        kept = self._memo.get(char)
        if kept is None:
            name = unicodedata.name(char, "")
            kept = name.split(" ", 1)[0] in self.allowed
            if len(self._memo) < 4096:
                self._memo[char] = kept
        return kept


_SCRIPT_MEMO: dict[str, _Scripts] = {}


def _scripts(language: str) -> _Scripts:
    scripts = _SCRIPT_MEMO.get(language)
    if scripts is None:
        scripts = _SCRIPT_MEMO.setdefault(language, _Scripts(language))
    return scripts


def clean(text: str, language: str) -> str:
    """The text with what the voice cannot say removed (see the module docstring); one pass."""
    scripts = _scripts(language)
    out: list[str] = []
    marks = 0  # combining marks kept after the current base character
    base_kept = True  # whether the base character the next marks attach to was kept
    run_char = ""
    run_length = 0
    word = 0  # characters since the last space
    digits = 0  # digits in the current word
    for char in text if text.isascii() else unicodedata.normalize("NFC", text):
        code = ord(char)
        if _FULLWIDTH_START <= code <= _FULLWIDTH_END:
            char = chr(code - _FULLWIDTH_OFFSET)
            code = ord(char)
        category = unicodedata.category(char)
        kind = category[0]
        if kind == "M":
            if base_kept and marks < MAX_COMBINING_MARKS:
                out.append(char)
                marks += 1
            continue
        marks = 0
        if kind == "Z" or char in "\t\n\r\v\f":
            base_kept = False
            if out and out[-1] != " ":
                out.append(" ")
            word = digits = 0
            run_char = ""
            continue
        if kind == "C" or _is_pictograph(code):
            # Control, format (bidi marks, zero-width), private use, unassigned, surrogates.
            base_kept = False
            if kind == "C" and category != "Cf" and out and out[-1] != " ":
                out.append(" ")  # a control character between words separates them
                word = 0
            elif _is_pictograph(code) and out and out[-1] != " ":
                out.append(" ")
                word = 0
            continue
        if kind == "L" and not scripts.keeps(char):
            base_kept = False
            if out and out[-1] != " ":
                out.append(" ")
                word = 0
            continue
        if category == "Nd" and not "0" <= char <= "9":
            char = str(unicodedata.digit(char))
        if kind in ("P", "S"):
            if char == run_char:
                run_length += 1
                if run_length > MAX_SYMBOL_RUN:
                    continue
            else:
                run_char, run_length = char, 1
        else:
            run_char = ""
        base_kept = True
        is_digit = "0" <= char <= "9"
        if word >= MAX_WORD_CHARS or (is_digit and digits >= MAX_NUMBER_DIGITS):
            out.append(" ")
            word = digits = 0
        elif word >= MAX_WORD_CHARS // 2 and out and out[-1] in _WORD_BREAKS:
            out.append(" ")  # cut an overlong word after a natural break inside it
            word = digits = 0
        out.append(char)
        # An ideograph or kana is a word of its own: Chinese and Japanese put no spaces between
        # words, so a sentence of them must not count as one overlong word (cut mid-number).
        word = 0 if _is_spaceless_script(code) else word + 1
        digits += is_digit
    return "".join(out).strip()


def _is_spaceless_script(code: int) -> bool:
    """Han ideographs (with extensions and compatibility forms) and Japanese kana."""
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x3040 <= code <= 0x30FF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3FFFF
    )


def has_speech(cleaned: str) -> bool:
    """True when a cleaned text holds at least one letter or digit."""
    return any(c.isalnum() for c in cleaned)


def check_speakable(text: str, language: str) -> None:
    """Raise NothingToSay when the text has nothing a voice of `language` can say."""
    if not has_speech(clean(text, language)):
        raise NothingToSay(
            f"the text has no letters or digits a {language or 'this'} voice can say "
            f"({len(text)} characters: only symbols, punctuation, emoji or another script)"
        )


def split(cleaned: str, max_chars: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Cut a cleaned text into pieces of at most `max_chars`, at the most natural point in the
    second half of each window (sentence end, clause mark, space, else anywhere)."""
    start = 0
    length = len(cleaned)
    while length - start > max_chars:
        window_end = start + max_chars
        cut = _cut_point(cleaned, start + max_chars // 2, window_end)
        piece = cleaned[start:cut].strip()
        if piece:
            yield piece
        start = cut
    piece = cleaned[start:].strip()
    if piece:
        yield piece


def _cut_point(text: str, low: int, high: int) -> int:
    """Where to cut text[:high]: just after the last sentence end, else clause mark, else space
    at or after `low`; `high` when there is none (one backward pass)."""
    clause = space = -1
    for i in range(high - 1, low - 1, -1):
        char = text[i]
        if char in _SENTENCE_ENDS and (i + 1 >= len(text) or text[i + 1] == " "):
            return i + 1
        if clause < 0 and char in _CLAUSE_MARKS:
            clause = i + 1
        elif space < 0 and char == " ":
            space = i + 1
    if clause >= 0:
        return clause
    if space >= 0:
        return space
    return high


@dataclass(frozen=True)
class TextPiece:
    """A bounded piece of a request's text."""

    text: str
    """Cleaned text, at most `MAX_PIECE_CHARS` characters, with a letter or digit in it."""

    sentence_end: bool
    """False when the piece was cut inside a sentence (the next piece continues it)."""


def pieces(
    text: str, language: str, cancel: CancelToken | None = None, max_chars: int = MAX_PIECE_CHARS
) -> Iterator[TextPiece]:
    """The text's speakable pieces, in order, each at most `max_chars` characters.

    Checks `cancel` before each piece. Pieces without a letter or digit are skipped.
    """
    parts = split(clean(text, language), max_chars)
    part = next(parts, None)
    while part is not None:
        following = next(parts, None)
        if cancel is not None:
            cancel.raise_if_cancelled()
        if has_speech(part):
            ends = following is None or part[-1] in _SENTENCE_ENDS
            yield TextPiece(part, sentence_end=ends)
        part = following
