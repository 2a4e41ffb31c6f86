"""Chinese characters → the symbols of a Baker-corpus voice (pinyin initials and toned finals
with prosodic pauses), the way the voice was trained.

API (the text should be `normalize_zh`'s output: digits read, Latin routed away):

- `syllables(text: str) -> list[str]`: toned pinyin after sandhi (`["ni2", "hao3"]`);
- `phonemes_zh(text: str) -> list[str]`: the Baker symbols,
  `["sil", "n", "i2", "#0", "h", "ao3", "sil", "eos"]`; empty when nothing is sayable;
- `g2p_zh(text: str, symbol_to_id: Mapping[str, int]) -> list[int]`: those symbols as the voice's
  ids (its `baker_mapper.json` `symbol_to_id`); a symbol it lacks is skipped and logged.
- `G2P_VERSION` names what it says (phrase-cache key), with pypinyin's version.

Choices, and why:

- **Pinyin** comes from `pypinyin` (tone numbers, neutral tone as 5), with its phrase dictionary
  for polyphones (`银行` hang2, `行走` xing2, `重要` zhong4, `重新` chong2): its maximum-matching
  segmenter finds the dictionary's phrases. pypinyin is imported on the first Chinese text, not
  before (about 130 ms and 55 MB: docs/text.md, "Chinese"). Its segmenter copies the rest of
  the text for every word, so it is fed windows of `WINDOW_CHARS` (a phrase is at most 10
  characters; a window keeps its last word only when the text ends there): linear.
- **Initials and finals** are split as the Baker labels do: zero initial `^`, `y`/`w` spellings
  restored (`you` → `^ iou`, `wei` → `^ uei`), `ü` as `v` (`ju` → `j v`), abbreviated finals
  spelled out (`liu` → `iou`, `gui` → `uei`, `lun` → `uen`), the apical vowels as `ii` (`zi`)
  and `iii` (`zhi`); `嗯` (`n`/`ng`) as `^ en`.
- **Tone sandhi**, within a stretch between punctuation marks (pypinyin's own sandhi works
  inside one dictionary word only): `不` is bu2 before a fourth tone, bu5 between a reduplicated
  verb (`是不是`), else bu4; `一` is yi1 as a number (after `第` or a digit unless 百, 千, 万 or
  亿 follows, before a digit, `月` or `号`, or last), yi5 in `看一看`, yi2 before a fourth or neutral tone, else yi4; a run of
  third tones turns all but its last to second (`你好` ni2 hao3, `展览馆` zhan2 lan2 guan3),
  except a one-syllable word before a dictionary word of two (`老 + 保管`), which keeps its
  third tone.
- **Erhua**: a `儿` that ends one of `ERHUA_WORDS` (`哪儿`, `一点儿`, `一会儿`) joins the
  syllable before it as the Baker labels write it (`n a3 er5`); elsewhere (`女儿`, `婴儿`) it
  is its own syllable.
- **Pauses**: `sil` at both ends (then `eos`), `#0` between syllables, `#1` at a space (the
  normalizer groups phone digits with spaces), `#3` at a punctuation mark; the Baker labels put
  `#3` at commas, and the voice never heard `sil` inside a sentence.
- Other characters (Latin letters, symbols) are skipped and logged.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Final

_LOGGER = logging.getLogger(__name__)

WINDOW_CHARS: Final = 64
"""Han characters given to pypinyin's segmenter at once (its phrases are at most 10 long)."""

ERHUA_WORDS: Final = frozenset(
    [
        "这儿",
        "那儿",
        "哪儿",
        "点儿",
        "会儿",
        "玩儿",
        "事儿",
        "块儿",
        "味儿",
        "边儿",
        "空儿",
        "劲儿",
        "样儿",
        "聊天儿",
        "小孩儿",
        "一下儿",
        "花儿",
        "门儿",
        "活儿",
        "头儿",
    ]
)
"""Words whose final `儿` is erhua (joins the syllable before it)."""

PAUSE_MARKS: Final = frozenset("，,、；;：:。.！!？?…—～~")
"""Punctuation that is a pause (`#3`); quotes and brackets are not."""

_INITIALS: Final = (
    "zh",
    "ch",
    "sh",
    "b",
    "p",
    "m",
    "f",
    "d",
    "t",
    "n",
    "l",
    "g",
    "k",
    "h",
    "j",
    "q",
    "x",
    "r",
    "z",
    "c",
    "s",
)
_ZERO_INITIAL: Final = {
    "yi": "i",
    "ya": "ia",
    "yan": "ian",
    "yang": "iang",
    "yao": "iao",
    "ye": "ie",
    "yin": "in",
    "ying": "ing",
    "yo": "iou",
    "yong": "iong",
    "you": "iou",
    "yu": "v",
    "yuan": "van",
    "yue": "ve",
    "yun": "vn",
    "wu": "u",
    "wa": "ua",
    "wai": "uai",
    "wan": "uan",
    "wang": "uang",
    "wei": "uei",
    "wen": "uen",
    "weng": "ueng",
    "wong": "ueng",
    "wo": "uo",
    "n": "en",
    "ng": "en",
    "ê": "ei",
}
_ABBREVIATED: Final = {"iu": "iou", "ui": "uei", "un": "uen", "ue": "ve"}
_DIGIT_HAN: Final = frozenset("零〇一二三四五六七八九十两")
_NUMBER_HAN: Final = _DIGIT_HAN | frozenset("百千万亿")


def _pypinyin_version() -> str:
    try:
        return metadata.version("pypinyin")
    except metadata.PackageNotFoundError:
        return "none"


G2P_VERSION: Final = f"2-pypinyin{_pypinyin_version()}"
"""Bumped whenever the symbols for a text change (with pypinyin's version, whose dictionary
decides polyphones), for phrase-cache keys."""


@dataclass
class _Syllable:
    """One Han character's reading in a stretch between pauses."""

    char: str
    """The character."""

    pinyin: str
    """Toned pinyin without the tone (`hao`)."""

    tone: int
    """1-4, or 5 for the neutral tone; sandhi changes it."""

    word: int
    """Index of pypinyin's segment it came from (a dictionary phrase or one character)."""

    word_length: int
    """Characters in that segment."""

    erhua: bool = False
    """Whether an erhua `儿` joined it (`er5` follows its final)."""

    space_before: bool = False
    """Whether a space separated it from the syllable before (`#1`)."""

    def __str__(self) -> str:
        return f"{self.pinyin}{self.tone}"


def syllables(text: str) -> list[str]:
    """The toned pinyin of `text`'s Han characters after sandhi and erhua (`哪儿` → `nar3`)."""
    skipped: Counter[str] = Counter()
    found = [
        f"{s.pinyin}r{s.tone}" if s.erhua else str(s)
        for stretch in _stretches(text, skipped)
        for s in stretch
    ]
    _report(skipped)
    return found


def phonemes_zh(text: str) -> list[str]:
    """The Baker symbols for `text` (module docstring); empty when it holds no Han syllable."""
    symbols, skipped = _phonemes(text)
    _report(skipped)
    return symbols


def g2p_zh(text: str, symbol_to_id: Mapping[str, int]) -> list[int]:
    """`text` as the voice's symbol ids; symbols the voice lacks are skipped and logged."""
    symbols, skipped = _phonemes(text)
    ids: list[int] = []
    for symbol in symbols:
        found = symbol_to_id.get(symbol)
        if found is None:
            skipped[symbol] += 1
        else:
            ids.append(found)
    _report(skipped)
    return ids


def _report(skipped: Counter[str]) -> None:
    if skipped:
        _LOGGER.warning(
            "event=zh-symbols-skipped symbols=%r count=%d",
            "".join(sorted(skipped)[:20]),
            sum(skipped.values()),
        )


def _phonemes(text: str) -> tuple[list[str], Counter[str]]:
    skipped: Counter[str] = Counter()
    symbols = ["sil"]
    for stretch in _stretches(text, skipped):
        if len(symbols) > 1:
            symbols.append("#3")
        for index, syllable in enumerate(stretch):
            if index:
                symbols.append("#1" if syllable.space_before else "#0")
            initial, final = split_pinyin(syllable.pinyin)
            if final is None:
                skipped[syllable.pinyin] += 1
                continue
            symbols += [initial, f"{final}{syllable.tone}"]
            if syllable.erhua:
                symbols.append("er5")
    if len(symbols) == 1:
        return [], skipped
    return [*symbols, "sil", "eos"], skipped


def split_pinyin(pinyin: str) -> tuple[str, str | None]:
    """Toneless pinyin → (initial, final) as the Baker labels write them; `^` is the zero
    initial. The final is None for a syllable no Baker final spells (`m`, `hng`)."""
    if pinyin in _ZERO_INITIAL:
        return "^", _ZERO_INITIAL[pinyin]
    if pinyin[:1] in "yw":
        return "^", None
    initial = next((i for i in _INITIALS if pinyin.startswith(i)), "")
    final = pinyin[len(initial) :]
    initial = initial or "^"
    if not final:
        return initial, None
    if initial in ("j", "q", "x") and final.startswith("u"):
        final = "v" + final[1:]
    elif final in ("i",) and initial in ("z", "c", "s"):
        final = "ii"
    elif final in ("i",) and initial in ("zh", "ch", "sh", "r"):
        final = "iii"
    final = _ABBREVIATED.get(final, final)
    if final not in _FINALS:
        return initial, None
    return initial, final


_FINALS: Final = frozenset(
    (
        "a",
        "ai",
        "an",
        "ang",
        "ao",
        "e",
        "ei",
        "en",
        "eng",
        "er",
        "i",
        "ia",
        "ian",
        "iang",
        "iao",
        "ie",
        "ii",
        "iii",
        "in",
        "ing",
        "iong",
        "iou",
        "o",
        "ong",
        "ou",
        "u",
        "ua",
        "uai",
        "uan",
        "uang",
        "uei",
        "uen",
        "ueng",
        "uo",
        "v",
        "van",
        "ve",
        "vn",
    )
)


# --- from text to syllables ------------------------------------------------------------------

_HAN: Final = r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
_TOKENS: Final = re.compile(rf"(?P<han>{_HAN}+)|(?P<space>\s+)|(?P<other>.)", re.DOTALL)


def _stretches(text: str, skipped: Counter[str]) -> Iterator[list[_Syllable]]:
    """`text`'s syllables, in stretches between pauses, after sandhi and erhua."""
    stretch: list[_Syllable] = []
    space = False
    words = 0
    for match in _TOKENS.finditer(text):
        kind = match.lastgroup
        if kind == "han":
            for syllable in _read(match.group(), words, skipped):
                words = syllable.word + 1
                syllable.space_before = space and bool(stretch)
                space = False
                stretch.append(syllable)
        elif kind == "space":
            space = True
        elif match.group() in PAUSE_MARKS:
            if stretch:
                yield _sandhi(stretch)
            stretch = []
        elif not _IGNORED.match(match.group()):
            skipped[match.group()] += 1
    if stretch:
        yield _sandhi(stretch)


_IGNORED: Final = re.compile(r"[\"'“”‘’«»()（）\[\]【】《》〈〉「」『』·・]")


def _read(han: str, first_word: int, skipped: Counter[str]) -> list[_Syllable]:
    """A run of Han characters → syllables with pypinyin's readings (linear: windows); a
    character pypinyin has no reading for is counted in `skipped`."""
    pinyin = _pinyin()
    out: list[_Syllable] = []
    word_index = first_word
    start = 0
    while start < len(han):
        window = han[start : start + WINDOW_CHARS]
        words = list(pinyin.segment(window))
        if start + len(window) < len(han) and len(words) > 1:
            words.pop()  # may be a phrase cut by the window's end; read it with what follows
        for word in words:
            for char, reading in zip(word, pinyin.read(word), strict=True):
                if not reading:
                    skipped[char] += 1
                else:
                    tone = int(reading[-1]) if reading[-1].isdigit() else 5
                    out.append(
                        _Syllable(char, reading.rstrip("12345"), tone, word_index, len(word))
                    )
            word_index += 1
            start += len(word)
    return out


@dataclass(frozen=True)
class _Pinyin:
    """pypinyin's segmenter and converter."""

    segment: Callable[[str], Iterator[str]]
    """A Han string → its phrases and single characters."""

    read: Callable[[str], Sequence[str]]
    """A phrase → one toned reading per character (empty for a character without one)."""


@cache
def _pinyin() -> _Pinyin:
    """pypinyin, imported on first use (module docstring)."""
    from pypinyin import Style
    from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
    from pypinyin.converter import DefaultConverter
    from pypinyin.seg.mmseg import seg

    class _Converter(NeutralToneWith5Mixin, DefaultConverter):
        """Tone numbers with 5 for the neutral tone."""

    converter = _Converter()

    def read(word: str) -> list[str]:
        readings = converter.convert(word, Style.TONE3, False, "ignore", True)
        if len(readings) == len(word):
            return [r[0] for r in readings]
        # A character without a reading was dropped: read one by one to keep the alignment.
        return [
            (converter.convert(c, Style.TONE3, False, "ignore", True) or [[""]])[0][0] for c in word
        ]

    return _Pinyin(segment=seg.cut, read=read)


# --- sandhi and erhua ----------------------------------------------------------------------


def _sandhi(stretch: list[_Syllable]) -> list[_Syllable]:
    """`不` and `一` sandhi, erhua, then third-tone sandhi (`哪儿好` nar2 hao3), on one stretch
    between pauses."""
    lexical = [s.tone for s in stretch]
    for index, syllable in enumerate(stretch):
        before = stretch[index - 1].char if index else ""
        after = stretch[index + 1].char if index + 1 < len(stretch) else ""
        next_tone = lexical[index + 1] if after else 0
        if syllable.char == "不" and after:
            if before == after:
                syllable.tone = 5
            else:
                syllable.tone = 2 if next_tone == 4 else 4
        elif syllable.char == "一":
            syllable.tone = _yi_tone(stretch, index, next_tone)
    merged = _erhua(stretch)
    _third_tones(merged)
    return merged


def _yi_tone(stretch: list[_Syllable], index: int, next_tone: int) -> int:
    before = stretch[index - 1].char if index else ""
    after = stretch[index + 1].char if index + 1 < len(stretch) else ""
    syllable = stretch[index]
    ends_word = syllable.word_length > 1 and (
        index + 1 == len(stretch) or stretch[index + 1].word != syllable.word
    )
    if before and before == after and before not in _NUMBER_HAN and before != "点":
        return 5
    if (
        not after
        or ends_word
        or (before == "第" and after not in "百千万亿")
        or before in _NUMBER_HAN
        or after in _DIGIT_HAN
        or after in "月号"
        or (after == "点" and index + 2 < len(stretch) and stretch[index + 2].char in _DIGIT_HAN)
    ):
        return 1
    return 2 if next_tone in (4, 5) else 4


def _third_tones(stretch: list[_Syllable]) -> None:
    """A run of third tones: all but the last become second, except a one-syllable word before
    a two-syllable dictionary word (`老 + 保管`: lao3 bao2 guan3)."""
    index = 0
    while index < len(stretch):
        if stretch[index].tone != 3:
            index += 1
            continue
        end = index
        while end + 1 < len(stretch) and stretch[end + 1].tone == 3:
            end += 1
        for position in range(index, end):
            syllable, following = stretch[position], stretch[position + 1]
            keeps = (
                syllable.word_length == 1
                and following.word_length == 2
                and following.word != syllable.word
                and position + 2 <= end
            )
            if not keeps:
                syllable.tone = 2
        index = end + 1


def _erhua(stretch: list[_Syllable]) -> list[_Syllable]:
    out: list[_Syllable] = []
    for index, syllable in enumerate(stretch):
        if syllable.char == "儿" and out and not syllable.space_before and not out[-1].erhua:
            context = "".join(s.char for s in stretch[max(0, index - 2) : index + 1])
            if context[-2:] in ERHUA_WORDS or context in ERHUA_WORDS:
                out[-1].erhua = True
                continue
        out.append(syllable)
    return out
