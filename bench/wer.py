"""Text normalization and word error rate for the intelligibility check.

Reference (the text we asked to be spoken) and hypothesis (what Whisper heard) go through the
same `normalize` before words are compared, so "$127.45" in the text and "$127.45" or
"127 dollars and 45 cents" in a transcript all become the same words. The rules, in order:

1. currency ``$1,250.00`` → "one thousand two hundred fifty dollars", ``$18.99`` → "eighteen
   dollars ninety nine cents";
2. phone-style digit groups joined by dashes (``1-800-555-0199``) → one word per digit;
3. clock times lose their separator, ``7:45``, ``7.45`` and ``7 45`` → ``745`` (Whisper writes a
   spoken "seven forty-five" as any of these or as ``745``), then step 6 reads them;
4. ``a.m.``/``pm`` after a number → "a m"/"p m";
5. ``30%`` → "thirty percent"; written ordinals count as their number (``14th`` → "fourteen":
   Whisper writes "June fourteenth" as ``June 14`` or ``June 14th``); ``&`` → "and";
6. a number of five or more digits without thousands commas (an id, a PIN: ``47291``) → one
   word per digit, which is also what spaced digits (``4 7 2 9 1``) become; every other number
   (commas dropped, decimals "point ...") → words via `num2words`;
7. "and" inside a spoken number or amount ("one hundred and five", "dollars and five cents") is
   dropped, since writers include or omit it freely;
8. lower case; hyphens and other punctuation become spaces; apostrophes are removed.

Whatever this normalizer gets wrong, it gets wrong the same way for every voice: WER figures
compare voices with each other, not with published ASR results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from num2words import num2words

_CURRENCY: Final = re.compile(r"\$\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_PHONE: Final = re.compile(r"\b\d+(?:-\d+)+\b")
_TIME: Final = re.compile(r"\b(\d{1,2})[:. ]([0-5]\d)\b")
_MERIDIEM: Final = re.compile(r"(\d)\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)
_PERCENT: Final = re.compile(r"(\d[\d,.]*)\s?%")
_ORDINAL: Final = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER: Final = re.compile(r"\d[\d,]*(?:\.\d+)?")
_DIGIT_STRING_MIN: Final = 5
_NUMBER_AND: Final = re.compile(
    r"\b(hundred|thousand|million|billion|dollars?|cents?) and\b", re.IGNORECASE
)
_APOSTROPHE: Final = re.compile(r"[’'`]")
_NON_WORD: Final = re.compile(r"[^a-z0-9 ]+")


def _cardinal(number: str) -> str:
    """Words for a number written with optional thousands commas and decimals."""
    plain = number.replace(",", "").rstrip(".")
    if not plain:
        return number
    value: int | float = float(plain) if "." in plain else int(plain)
    return str(num2words(value, lang="en"))


def _currency(match: re.Match[str]) -> str:
    dollars = _cardinal(match.group(1))
    cents = match.group(2)
    words = f"{dollars} dollars"
    if cents and int(cents):
        words += f" {_cardinal(str(int(cents.ljust(2, '0'))))} cents"
    return words


def _phone(match: re.Match[str]) -> str:
    return " ".join(_cardinal(d) for d in match.group(0) if d.isdigit())


def _number(match: re.Match[str]) -> str:
    number = match.group(0)
    if len(number) >= _DIGIT_STRING_MIN and number.isdigit():
        return " " + " ".join(_cardinal(d) for d in number) + " "
    return f" {_cardinal(number)} "


def normalize(text: str) -> list[str]:
    """Words of `text` after the rules in this module's docstring."""
    text = _CURRENCY.sub(_currency, text)
    text = _PHONE.sub(_phone, text)
    text = _TIME.sub(r"\1\2", text)
    text = _MERIDIEM.sub(lambda m: f"{m.group(1)} {m.group(2).lower()} m ", text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _ORDINAL.sub(r"\1", text)
    text = text.replace("&", " and ")
    text = _NUMBER.sub(_number, text)
    text = _NUMBER_AND.sub(r"\1", text)
    text = _APOSTROPHE.sub("", text.lower())
    text = _NON_WORD.sub(" ", text)
    return text.split()


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1]


def corpus_wer(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """Word error rate over many (reference words, hypothesis words): total edits / total words."""
    errors = sum(edit_distance(ref, hyp) for ref, hyp in pairs)
    words = sum(len(ref) for ref, _ in pairs)
    return errors / words if words else 0.0
