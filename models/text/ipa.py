"""IPA as SSML writes it (`<phoneme alphabet="ipa" ph="...">`), read the same for every family.

A family that takes phonemes maps this reading onto its own symbols (`piper/ipa.py` onto a
voice's `phoneme_id_map`, `hibari/ipa.py` onto misaki's alphabet); the reading itself is here,
in two steps:

1. `read_clauses` turns the written IPA into clauses of words, the shape espeak-ng's clause loop
   gives the Piper text path: decomposed (NFD, as espeak-ng's phonemes are grouped), the
   transcription delimiters (`/…/`, `[…]`, parentheses around optional sounds), tie bars and the
   linking mark dropped, an apostrophe taken for the primary stress mark, whitespace collapsed
   to one space between words. A period inside a word is IPA's syllable break and is dropped; a
   period, `!` or `?` elsewhere ends a sentence and `,` `;` `:` a clause, as in text; IPA's
   group marks `|` and `‖` are read as a comma and a period. (espeak-ng's own Mandarin IPA has
   periods inside words; a writer's IPA does not, so the syllable-break reading wins.)
2. `place_stress` moves each stress mark from the start of its syllable, where IPA writes it,
   to just before the syllable's vowel, where espeak-ng and misaki (hibari's G2P) put it and
   the models learnt it (`həˈloʊ` → `həlˈoʊ`, `ˈstɹiːt` → `stɹˈiːt`); what a vowel is, the
   caller says (`is_ipa_nucleus` for IPA: a vowel letter or a syllabic consonant such as `n̩`).
   A mark with no vowel before the next word or mark stays put.

Both are one pass over the IPA: linear in its length.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, TypeAlias

from utterd.models.errors import NothingToSay

_LOGGER = logging.getLogger(__name__)

Clause: TypeAlias = tuple[str, str, bool]
"""(phonemes, terminator, end_of_sentence), the shape of espeak-ng's clauses."""

STRESS_MARKS: Final = frozenset("ˈˌ")
SYLLABIC: Final = "\u0329"
"""Combining vertical line below: the consonant before it is a syllable's nucleus (`n̩`)."""

VOWELS: Final = frozenset("iyɨʉɯuɪʏʊeøɘɵɤoəɛœɜɞʌɔæɐaɶɑɒɚɝᵻᵊ")
"""IPA vowel letters (a stress mark moves up to the first of these in its syllable)."""

_SILENT: Final = frozenset("/[]{}()\u0361\u035c\u203f")
"""Transcription delimiters, tie bars (`t͡ʃ`) and the linking mark `‿`: they say nothing."""
_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {"'": "ˈ", "\u2019": "ˈ", "|": ",", "\u2016": "."}
)
"""ASCII and typographic apostrophes written for the primary stress; IPA's minor and major
group marks read as a comma and a period."""
_CLAUSE_MARKS: Final = frozenset(",;:")
_SENTENCE_ENDS: Final = frozenset(".!?")
_PUNCTUATION: Final = _CLAUSE_MARKS | _SENTENCE_ENDS | frozenset("|\u2016")


def read_clauses(ipa: str) -> list[Clause]:
    """Written IPA → (phonemes, terminator, ends a sentence) per clause, words one space apart
    (see the module docstring); clauses without phonemes are dropped."""
    text = unicodedata.normalize("NFD", ipa)
    clauses: list[Clause] = []
    current: list[str] = []

    def close(terminator: str, ends: bool) -> None:
        phonemes = " ".join("".join(current).split())
        current.clear()
        if phonemes:
            clauses.append((phonemes, terminator, ends))

    for i, raw in enumerate(text):
        if raw in _SILENT:
            continue
        if raw.isspace():
            current.append(" ")
            continue
        if raw == "." and _inside_word(text, i, current):
            continue  # a syllable break
        char = _SPELLINGS.get(raw, raw)
        if char in _SENTENCE_ENDS:
            close(char, True)
        elif char in _CLAUSE_MARKS:
            close(char, False)
        else:
            current.append(char)
    close("", True)
    return clauses


def _inside_word(text: str, index: int, before: list[str]) -> bool:
    """True when the character at `index` has a symbol of the same word on both sides."""
    after = text[index + 1] if index + 1 < len(text) else " "
    return bool(before) and before[-1] != " " and not after.isspace() and after not in _PUNCTUATION


def place_stress(phonemes: str, is_nucleus: Callable[[str, str], bool]) -> str:
    """Each stress mark moved past its syllable's onset to just before the nucleus.

    `is_nucleus(char, next_char)` says whether `char` is a vowel (or a syllabic consonant,
    which `next_char` may mark). Linear: a mark's look-ahead stops at the next mark or word.
    """
    out: list[str] = []
    i, length = 0, len(phonemes)
    while i < length:
        char = phonemes[i]
        if char in STRESS_MARKS:
            j = i + 1
            while j < length and phonemes[j] != " " and phonemes[j] not in STRESS_MARKS:
                if is_nucleus(phonemes[j], phonemes[j + 1] if j + 1 < length else ""):
                    break
                j += 1
            if j < length and phonemes[j] != " " and phonemes[j] not in STRESS_MARKS:
                out.append(phonemes[i + 1 : j])
                out.append(char)
                i = j
                continue
        out.append(char)
        i += 1
    return "".join(out)


def is_ipa_nucleus(char: str, next_char: str) -> bool:
    """An IPA vowel, or a consonant marked syllabic."""
    return char in VOWELS or next_char == SYLLABIC


def report_reading(voice_id: str, phonemes: str, skipped: Mapping[str, int], sayable: bool) -> None:
    """What both families do after reading IPA: log the symbols the voice cannot say (once a
    request), and raise NothingToSay when nothing sayable is left."""
    if skipped:
        _LOGGER.warning(
            "event=phonemes-skipped voice=%s symbols=%r count=%d",
            voice_id,
            "".join(sorted(skipped)[:20]),
            sum(skipped.values()),
        )
    if not sayable:
        raise NothingToSay(
            f"the IPA has no sound voice {voice_id!r} can say ({len(phonemes)} characters)"
        )
