"""Mixed Chinese and English text cut into language spans, for routing each to a voice.

API: `split_language_spans(text: str, neutral: str = "zh") -> list[LanguageSpan]`; each span
has `language` (`"zh"` or `"en"`), `start` and `end` (character offsets) and `text`. The spans
cover the text without gap or overlap, in order, and two neighbours never share a language.
Nothing here knows voices: the caller routes each span (config `voices.by_language`).

How a character is placed:

- Han characters are Chinese; a Latin word (letters, with digits, `-`, `'` or `.` inside:
  `Wi-Fi`, `don't`, `MP3`, `and/or`) is English, unless it is a unit right after a number (`25°C`,
  `10 km`: `normalize_zh.UNITS`), which goes with its number.
- Everything else (digits, spaces, punctuation, symbols, other scripts) is neutral and goes to a
  neighbour: between two runs of one language, to that language; at a language boundary, a
  neutral run with a number goes to the side the number touches without a space (`温度25°C` is
  all Chinese, `iOS 17发布` reads 17 in Chinese), else to the run before it (spaces and
  punctuation end the span they follow); a text with no letter at all is `neutral`.

So `请连接Wi-Fi` → [zh `请连接`][en `Wi-Fi`], `打开 Bluetooth 设置` → [zh `打开 `]
[en `Bluetooth `][zh `设置`]. Split the raw text first and normalize each span with its own
language's normalizer: `normalize_zh` reads numbers next to Chinese in Chinese.

One regex pass makes the runs and one pass over them the spans: linear in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from utterd.models.text.normalize_zh import UNITS

CHINESE: Final = "zh"
"""Language of Han text."""

ENGLISH: Final = "en"
"""Language of Latin-letter words."""


@dataclass(frozen=True)
class LanguageSpan:
    """A stretch of the text in one language."""

    language: str
    """`zh` or `en`."""

    start: int
    """Offset of its first character in the text."""

    end: int
    """Offset just past its last character."""

    text: str
    """The characters `text[start:end]`."""


_HAN: Final = r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
# Latin letters, with their full-width forms (`Ｗｉ－Ｆｉ`, typed with a Chinese input method).
_LATIN: Final = r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]"
_WORD_CHAR: Final = r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a0-9\uff10-\uff19]"
_RUNS: Final = re.compile(
    rf"(?P<zh>{_HAN}+)"
    rf"|(?P<en>{_LATIN}{_WORD_CHAR}*(?:[-'’./－．]{_WORD_CHAR}+)*)"
    rf"|(?P<other>(?:(?!{_HAN}|{_LATIN}).)+)",
    re.DOTALL,
)
_UNIT_WORDS: Final = frozenset(UNITS) | {"C", "F"}
_NUMBER_END: Final = re.compile(r"[\d°][ ]?$")


def split_language_spans(text: str, neutral: str = CHINESE) -> list[LanguageSpan]:
    """`text` as language spans; a text without Han or Latin letters is one `neutral` span
    (none for an empty text)."""
    # (language or None for neutral, start, end) for each run, a unit joining the run before.
    runs: list[tuple[str | None, int, int]] = []
    for match in _RUNS.finditer(text):
        kind = match.lastgroup
        language = None if kind == "other" else kind
        if language == ENGLISH and _is_unit(text, match):
            language = None
        if runs and runs[-1][0] is None and language is None:
            runs[-1] = (None, runs[-1][1], match.end())
        else:
            runs.append((language, match.start(), match.end()))
    placed = _place_neutral(text, runs, neutral)
    spans: list[LanguageSpan] = []
    for language, start, end in placed:
        if spans and spans[-1].language == language:
            start = spans.pop().start
        spans.append(LanguageSpan(language, start, end, text[start:end]))
    return spans


def _is_unit(text: str, match: re.Match[str]) -> bool:
    """Whether a Latin word is a unit right after a number (`25°C`, `10 km`, `5km/h`)."""
    word = match.group()
    before = text[max(0, match.start() - 2) : match.start()]
    return word in _UNIT_WORDS and _NUMBER_END.search(before) is not None


def _place_neutral(
    text: str, runs: list[tuple[str | None, int, int]], neutral: str
) -> list[tuple[str, int, int]]:
    """Every neutral run given a language (module docstring)."""
    placed: list[tuple[str, int, int]] = []
    for index, (language, start, end) in enumerate(runs):
        before = runs[index - 1][0] if index > 0 else None
        after = runs[index + 1][0] if index + 1 < len(runs) else None
        if language is not None:
            placed.append((language, start, end))
        elif before is None or after is None or before == after:
            placed.append((before or after or neutral, start, end))
        else:
            # At a boundary: a number touching the run before stays with it; one touching the
            # run after (its last space-free chunk holds a digit) goes there; the rest goes to
            # the run before.
            body = text[start:end]
            cut = len(body.rstrip()) - len(body.split()[-1]) if body.strip() else 0
            if body[0].isspace() and not body[-1].isspace() and _DIGIT.search(body, cut):
                placed.append((before, start, start + cut))
                placed.append((after, start + cut, end))
            else:
                placed.append((before, start, end))
    return placed


_DIGIT: Final = re.compile(r"\d")
