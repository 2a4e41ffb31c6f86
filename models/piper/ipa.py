"""IPA as SSML writes it (`<phoneme alphabet="ipa" ph="...">`) → a Piper voice's phonemes.

Reading is in two steps, the first shared with hibari's `ipa.py`:

1. `read_clauses` turns the written IPA into clauses of words, the shape espeak-ng's clause loop
   gives the text path: decomposed (NFD, as `group_sentences` does), transcription delimiters
   (`/…/`, `[…]`, parentheses around optional sounds), tie bars and the linking mark dropped,
   an apostrophe taken for the primary stress mark, whitespace collapsed to one space between
   words. A period inside a word is IPA's syllable break and is dropped; a period, `!` or `?`
   elsewhere ends a sentence and `,` `;` `:` a clause, as in text; IPA's group marks `|` and `‖`
   are read as a comma and a period. (espeak-ng's own Mandarin IPA has periods inside words; a
   writer's IPA does not, so the syllable-break reading wins.)
2. `place_stress` moves each stress mark from the start of its syllable, where IPA writes it,
   to just before the syllable's vowel, where espeak-ng (and misaki, hibari's G2P) put it and
   the models learnt it (`həˈloʊ` → `həlˈoʊ`, `ˈstɹiːt` → `stɹˈiːt`); a syllabic consonant
   (`n̩`) is a vowel here. A mark with no vowel before the next word or mark stays put.

Piper's phoneme ids are espeak-ng IPA code points, so `piper_sentences` maps a voice's IPA
mostly code point by code point onto its `phoneme_id_map`:

- espeak-ng's spelling of a sound wins over another one (`ESPEAK_SPELLINGS`) whenever the map
  has it: `g` → `ɡ` (U+0261), Greek ε α → Latin ɛ ɑ, affricate ligatures (`ʧ`, `ʦ`) → two
  letters (espeak-ng writes `tʃ`, `ts` in English, German, Polish, Italian, Russian: measured),
  and for English voices `r` → `ɹ`. A map may hold the other spelling (Piper's default map has
  `g` and `ʦ`), but training data written by espeak-ng holds it rarely or never.
- A sound the map lacks becomes the nearest one it has (`FALLBACKS`: `ɝ` → `ɜː` as espeak-ng's
  American English writes it, `ɚ` → `əɹ`, `ɫ` → `l`, `ᵊ` → `ə`, ...).
- Anything else the map lacks (an unknown letter, a diacritic such as `̆` or `̥`) is skipped
  and counted, for the voice to log once per request. Punctuation, spaces and stress and
  length marks go through the map like any phoneme.

Then the clauses become sentences exactly as espeak-ng's do on the text path
(`group_sentences`: clause marks followed by a space, vowel clusters merged), so IPA that
espeak-ng wrote gives the text path's phonemes, and the family splits them into model calls
with the same phoneme budget. Everything is one pass over the IPA: linear in its length.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from utterd.models.piper.espeak_process import Clause, group_sentences

STRESS_MARKS: Final = frozenset("ˈˌ")
SYLLABIC: Final = "\u0329"
"""Combining vertical line below: the consonant before it is a syllable's nucleus (`n̩`)."""

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

ESPEAK_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "g": "ɡ",
        "\u03b5": "ɛ",
        "\u03b1": "ɑ",
        "ʧ": "tʃ",
        "ʤ": "dʒ",
        "ʦ": "ts",
        "ʣ": "dz",
        "ʨ": "tɕ",
        "ʥ": "dʑ",
    }
)
"""Another spelling of a sound → espeak-ng's, used whenever the map has espeak-ng's."""

ENGLISH_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType({"r": "ɹ"})
"""For English voices: espeak-ng writes the English r `ɹ` (16,520 times in 40,000 words of
hibari's lexicon, measured) and `r` only in rare spellings (`rh`, `rr`: 26 times)."""

FALLBACKS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "ɝ": ("ɜː", "ɜ"),
        "ɚ": ("əɹ", "ər", "ə"),
        "ɫ": ("l",),
        "ʍ": ("w",),
        "ɐ": ("ə",),
        "ᵻ": ("ɪ",),
        "ᵊ": ("ə",),
        "ɨ": ("ɪ",),
        "ɡ": ("g",),
        "ɹ": ("r",),
        "r": ("ɹ",),
        "ɾ": ("t",),
    }
)
"""A sound the map lacks → the nearest spellings it may have, the first it has winning."""

VOWELS: Final = frozenset("iyɨʉɯuɪʏʊeøɘɵɤoəɛœɜɞʌɔæɐaɶɑɒɚɝᵻᵊ")
"""IPA vowel letters (a stress mark moves up to the first of these in its syllable)."""

_SPEAKABLE_CATEGORIES: Final = frozenset({"Ll", "Lu", "Lo"})
"""Letters that are sounds: not modifier letters (stress, length, `ʰ`), marks or punctuation."""


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


def is_speakable(phoneme: str) -> bool:
    """True when a phoneme holds a sound (a letter that is not a modifier)."""
    return any(unicodedata.category(c) in _SPEAKABLE_CATEGORIES for c in phoneme)


def is_english(espeak_voice: str) -> bool:
    """True for espeak-ng's English voices (`en`, `en-us`, `en-gb-x-rp`)."""
    return espeak_voice.lower().split("-")[0] == "en"


def piper_sentences(
    ipa: str,
    id_map: Mapping[str, Sequence[int]],
    *,
    english: bool,
    vowel_clusters: set[tuple[str, ...]] | None = None,
) -> tuple[list[list[str]], Counter[str]]:
    """Written IPA → phonemes per sentence, every one in `id_map`, as the text path gives them
    (`group_sentences`), and the symbols skipped with their counts. Sentences without a sound
    are dropped."""
    skipped: Counter[str] = Counter()
    clauses = [
        (place_stress(_to_map(p, id_map, english, skipped), is_ipa_nucleus), t, e)
        for p, t, e in read_clauses(ipa)
    ]
    sentences: list[list[str]] = []
    for sentence in group_sentences(clauses, vowel_clusters):
        kept = [p for p in sentence if p in id_map]
        skipped.update(p for p in sentence if p not in id_map)
        if any(is_speakable(p) for p in kept):
            sentences.append(kept)
    return sentences, skipped


def _to_map(
    phonemes: str, id_map: Mapping[str, Sequence[int]], english: bool, skipped: Counter[str]
) -> str:
    """One clause's symbols in the map's spelling (see the module docstring)."""
    out: list[str] = []
    for char in phonemes:
        if char == " ":
            out.append(char)
            continue
        spelled = ESPEAK_SPELLINGS.get(char) or (ENGLISH_SPELLINGS.get(char) if english else None)
        if spelled is not None and all(c in id_map for c in spelled):
            out.append(spelled)
        elif char in id_map:
            out.append(char)
        else:
            nearest = next(
                (alt for alt in FALLBACKS.get(char, ()) if all(c in id_map for c in alt)), None
            )
            if nearest is None:
                skipped[char] += 1
            else:
                out.append(nearest)
    return " ".join("".join(out).split())  # a word of skipped symbols leaves no double space
