"""IPA as SSML writes it (`<phoneme alphabet="ipa" ph="...">`) → hibari's phonemes.

hibari's G2P is a port of misaki's English G2P, and its model was trained on what that G2P
writes: misaki's alphabet, IPA-like but not IPA. Diphthongs and affricates are one symbol each
(`A` = eɪ, `I` = aɪ, `O` = oʊ, `Q` = əʊ, `W` = aʊ, `Y` = ɔɪ, `ʤ`, `ʧ`), the American flap is
`T` and a glottal stop `t` (hibari's G2P replaces `ɾ` and `ʔ` after its lexicon), a syllabic
consonant is `ᵊ` before it, stress marks stand just before the vowel, and the American lexicon
has no length marks (`i`, `ɑ`) but writes r-coloured vowels with `ɹ` (`ɜɹ`, `əɹ`) where the
British one has `ː` (`ɜː`, `ə`, `a` for the vowel of "cat"). The vocabulary (`vocab.json`) holds
more symbols (Kokoro's, for other languages), which the model never saw from this G2P; only the
symbols the G2P writes for the voice's accent are said (`US_INVENTORY`, `GB_INVENTORY`,
measured over both lexicons).

hibari also takes phonemes inline, `[word](/phonemes/)` in the text (misaki's syntax), but
`Voice.stream_phonemes` has phonemes only, so they are turned into ids directly, as hibari's
own `Hibari.from_phonemes` does.

`misaki_sentences` reads the IPA with the reader every family shares (`text/ipa.py`:
delimiters, tie bars, syllable breaks, clauses and sentences), maps each clause's symbols
(`US_SPELLINGS`/`GB_SPELLINGS`, longest sequence first, then the shared `COMMON_SPELLINGS`),
skips and counts any symbol left outside the inventory, moves stress marks to the vowel, and
joins each sentence's clauses as the G2P does (`fˈɑks, ʤˈʌmps.`). Linear in the IPA's
length. So IPA spelled from the G2P's own output gives its phonemes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from utterd.models.text.ipa import SYLLABIC, place_stress, read_clauses

_CONSONANTS: Final = "bdfhjklmnpstvwzðŋɡɹʃʒʤʧθ"
US_INVENTORY: Final = frozenset("AIOWYiuæɑɔəɛɜɪʊʌᵻᵊɐ" + _CONSONANTS + "Tˈˌ ")
"""What hibari's American G2P writes (its lexicons, `ɐ` for "a", `T` for the flap)."""
GB_INVENTORY: Final = frozenset("AIQWYaiuɑɒɔəɛɜɪʊʌᵊɐː" + _CONSONANTS + "ˈˌ ")
"""What hibari's British G2P writes."""
VOWELS: Final = frozenset("AIOQWYaiuæɑɒɔəɛɜɪʊʌᵻ")
"""misaki's vowels, where its stress marks stand (`ᵊ` and `ɐ` never carry stress)."""
_CLAUSE_MARKS: Final = frozenset(",;:")

COMMON_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "eɪ": "A",
        "aɪ": "I",
        "aʊ": "W",
        "ɔɪ": "Y",
        "tʃ": "ʧ",
        "dʒ": "ʤ",
        "ʦ": "ts",
        "ʣ": "dz",
        "g": "ɡ",
        "r": "ɹ",
        "ɫ": "l",
        "ʍ": "w",
        "ʔ": "t",
        "e": "ɛ",
        "\u03b5": "ɛ",
        "\u03b1": "ɑ",
        "x": "k",
        "χ": "k",
        "ʁ": "ɹ",
        "ʀ": "ɹ",
        "β": "v",
        "ɸ": "f",
    }
)
"""IPA → misaki for both accents: its one-symbol diphthongs and affricates, the G2P's glottal
stop, and the nearest English sound for other spellings and a few foreign consonants."""

US_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ɜːɹ": "ɜɹ",
        "ɜː": "ɜɹ",
        "ɝ": "ɜɹ",
        "ɚ": "əɹ",
        "oʊ": "O",
        "əʊ": "O",
        "o": "O",
        "Q": "O",
        "ː": "",
        "ɒ": "ɑ",
        "a": "æ",
        "ɨ": "ᵻ",
        "ɾ": "T",
    }
)
"""IPA → misaki American: rhotic vowels with `ɹ` (espeak-ng's `ɜː` included), no length, the
flap `T`; `a` alone is taken for the vowel of "cat", as British IPA writes it."""

GB_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "əʊ": "Q",
        "oʊ": "Q",
        "o": "Q",
        "O": "Q",
        "ɝ": "ɜː",
        "ɚ": "ə",
        "eə": "ɛː",
        "ɛə": "ɛː",
        "æ": "a",
        "ɨ": "ɪ",
        "ᵻ": "ɪ",
        "ɾ": "t",
        "T": "t",
    }
)
"""IPA → misaki British: `Q` for the vowel of "go", `a` for "cat", long vowels with `ː`,
non-rhotic r-coloured vowels."""


def misaki_sentences(ipa: str, *, british: bool) -> tuple[list[str], Counter[str]]:
    """Written IPA → one misaki phoneme string per sentence, every symbol in the accent's
    inventory, and the symbols skipped with their counts. Sentences without a sound are
    dropped."""
    inventory = GB_INVENTORY if british else US_INVENTORY
    spellings = {**COMMON_SPELLINGS, **(GB_SPELLINGS if british else US_SPELLINGS)}
    skipped: Counter[str] = Counter()
    sentences: list[str] = []
    current: list[str] = []
    for phonemes, terminator, ends in read_clauses(ipa):
        misaki = place_stress(
            _to_misaki(phonemes, spellings, inventory, skipped), lambda c, _: c in VOWELS
        )
        current.append(misaki + terminator + (" " if terminator in _CLAUSE_MARKS else ""))
        if ends:
            sentence = "".join(current).strip()
            current = []
            if any(c in inventory and c not in "ˈˌː " for c in sentence):
                sentences.append(sentence)
    return sentences, skipped


def _to_misaki(
    phonemes: str, spellings: Mapping[str, str], inventory: frozenset[str], skipped: Counter[str]
) -> str:
    """One clause's IPA in misaki's symbols, longest spelling first; others skipped."""
    out: list[str] = []
    i, length = 0, len(phonemes)
    while i < length:
        if i + 1 < length and phonemes[i + 1] == SYLLABIC:
            out.append("ᵊ")  # misaki writes a syllabic consonant (n̩) with a schwa before it
        for size in (3, 2, 1):
            spelled = spellings.get(phonemes[i : i + size]) if i + size <= length else None
            if spelled is not None:
                out.append(spelled)
                i += size
                break
        else:
            char = phonemes[i]
            if char in inventory:
                out.append(char)
            elif char != SYLLABIC:
                skipped[char] += 1
            i += 1
    return " ".join("".join(out).split())
