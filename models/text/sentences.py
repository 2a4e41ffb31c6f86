"""Where sentences end in written text, for the SSML parser and streamed plain text alike.

A sentence ends after `.`, `!`, `?` or `…` (with closing quotes or brackets) followed by a space
and a character that is not a lowercase letter, and after `。`, `！`, `？` — but not after a single
letter (`J.`, `e.g.`, `U.S.`) or a common abbreviation (`Dr.`, `Oct.`, `Inc.`, `Sat.`), and not
inside a number or a time (`$3.25`, `a.m. on`: no space, or a lowercase word, follows). So
`Sat., Oct. 4` and `$3.25` stay in one sentence. The rule is deliberately cautious: the text
front end may cut further (the guard cuts long pieces), but cannot join what was cut here.
"""

from __future__ import annotations

import re
from typing import Final

ABBREVIATIONS: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jr",
        "sr",
        "prof",
        "rev",
        "gen",
        "col",
        "capt",
        "lt",
        "sgt",
        "inc",
        "corp",
        "ltd",
        "co",
        "bros",
        "vs",
        "approx",
        "dept",
        "est",
        "no",
        "nos",
        "vol",
        "fig",
        "ave",
        "blvd",
        "rd",
        "mt",
        "ft",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "tues",
        "wed",
        "thu",
        "thur",
        "thurs",
        "fri",
        "sat",
        "sun",
    }
)
"""Words after whose `.` a sentence does not end (English for now; lowercase, no dot)."""

_TERMINAL_RUN: Final = re.compile(r"[.!?…。！？]+")
_TERMINALS: Final = frozenset(".!?…。！？")
_CJK_TERMINALS: Final = frozenset("。！？")
_CLOSERS: Final = frozenset("\"')]}”’»」』")
_OPENERS: Final = "\"'([{“‘«「『"
MAX_WORD_LOOKBACK: Final = 12
"""Longest word checked against `ABBREVIATIONS` (longer words end sentences)."""


def sentence_cuts(text: str, *, at_end: bool, min_start: int = 0) -> tuple[list[int], bool]:
    """Offsets in `text` where a new sentence starts, and (with `at_end`) whether its end ends
    one. Linear: each terminal run is found once and what follows it is read once.

    A cut needs the first character after the punctuation and spaces, so the last candidate
    of a text still growing is left undecided. Candidates starting before `min_start` are
    skipped (a window's first characters lack the context a decision needs).
    """
    cuts: list[int] = []
    length = len(text)
    ends = False
    for match in _TERMINAL_RUN.finditer(text):
        begin = match.start()
        if begin < min_start:
            continue
        after = match.end()
        while after < length and text[after] in _CLOSERS:
            after += 1
        following = after
        while following < length and text[following].isspace():
            following += 1
        cjk = not _CJK_TERMINALS.isdisjoint(match.group())
        if following == length:  # the last candidate: decided only where the run ends
            ends = at_end and (match.group() != "." or not after_abbreviation(text, begin))
            continue
        if following == after and not cjk:
            continue  # `3.25`, `a.m`: no space after the punctuation
        if text[following].islower() and not cjk:
            continue
        if match.group() == "." and after_abbreviation(text, begin):
            continue
        cuts.append(following)
    return cuts, ends


def after_abbreviation(text: str, dot: int) -> bool:
    """Whether the word before the `.` at `dot` is a single letter or a known abbreviation."""
    start = dot
    limit = max(0, dot - MAX_WORD_LOOKBACK - 1)
    while start > limit:
        before = text[start - 1]
        if before.isspace() or before in _TERMINALS or before in _CLOSERS:
            break
        start -= 1
    else:
        if start > 0:
            return False  # a word longer than any abbreviation
    word = text[start:dot].lstrip(_OPENERS).lower()
    return (len(word) == 1 and word.isalpha()) or word in ABBREVIATIONS
