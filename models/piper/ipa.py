"""IPA as SSML writes it (`<phoneme alphabet="ipa" ph="...">`) → a Piper voice's phonemes.

The IPA is read as for every family (`text/ipa.py`: delimiters, tie bars, syllable breaks,
clauses, stress moved to the vowel as espeak-ng writes it), then mapped onto the voice.

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
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from utterd.models.piper.espeak_process import group_sentences
from utterd.models.text.ipa import is_ipa_nucleus, place_stress, read_clauses

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

_SPEAKABLE_CATEGORIES: Final = frozenset({"Ll", "Lu", "Lo"})
"""Letters that are sounds: not modifier letters (stress, length, `ʰ`), marks or punctuation."""


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
