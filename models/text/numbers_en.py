"""English number words: cardinals, ordinals, digits, years, decimals and fractions.

Written here rather than taken from a library: `num2words` is LGPL and only an evaluation
extra, and the few forms an IVR needs fit in one page. US style throughout: no "and" inside a
number (`one hundred five`), tens and units joined by a hyphen (`eighty-four`).
"""

from __future__ import annotations

import unicodedata
from typing import Final

_ONES: Final = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS: Final = (
    "_",
    "_",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)
_SCALES: Final = ("", "thousand", "million", "billion", "trillion", "quadrillion")

MAX_CARDINAL: Final = 10 ** (3 * len(_SCALES)) - 1
"""Largest number read as a cardinal; longer digit strings are read digit by digit."""

_ORDINAL_WORDS: Final = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

_DENOMINATORS: Final = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _below_thousand(n: int) -> str:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append(f"{_ONES[hundreds]} hundred")
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def cardinal(n: int) -> str:
    """`1284` → `one thousand two hundred eighty-four`; negatives get `minus`."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    words: list[str] = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            name = _SCALES[scale]
            words.append(_below_thousand(chunk) + (f" {name}" if name else ""))
        scale += 1
    return " ".join(reversed(words))


def ordinal(n: int) -> str:
    """`21` → `twenty-first`, `100` → `one hundredth`."""
    words = cardinal(n)
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda p: len(p[0]))
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def digits(text: str) -> str:
    """`0198` → `zero one nine eight` (any script's decimal digits; other characters are
    skipped)."""
    return " ".join(_ONES[unicodedata.decimal(c)] for c in text if c.isdecimal())


def year(n: int) -> str:
    """`1998` → `nineteen ninety-eight`, `2005` → `two thousand five`, `2026` → `twenty
    twenty-six`, `1900` → `nineteen hundred`, `1905` → `nineteen oh five`."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def paired(n: int) -> str:
    """A room or suite number, read in pairs: `204` → `two oh four`, `310` → `three ten`,
    `1204` → `twelve oh four`, `200` → `two hundred`."""
    if 100 <= n <= 999 and n % 100:
        high, low = divmod(n, 100)
        return f"{_ONES[high]} {'oh ' + _ONES[low] if low < 10 else cardinal(low)}"
    if 1000 <= n <= 9999:
        return year(n)
    return cardinal(n)


def plural(words: str) -> str:
    """The plural of a number's words, for decades: `nineteen ninety` → `nineteen nineties`."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"


def decimal(integer: str, fraction: str) -> str:
    """`("3", "14")` → `three point one four`; an empty integer part reads `point five`."""
    head = cardinal(int(integer)) + " " if integer else ""
    return f"{head}point {digits(fraction)}"


def fraction(numerator: int, denominator: int) -> str:
    """`1/2` → `one half`, `3/4` → `three quarters`, `5/8` → `five eighths`."""
    if denominator in _DENOMINATORS:
        singular, many = _DENOMINATORS[denominator]
    elif 2 < denominator <= 100:
        singular = ordinal(denominator)
        many = singular + "s"
    else:
        return f"{cardinal(numerator)} over {cardinal(denominator)}"
    return f"{cardinal(numerator)} {singular if numerator == 1 else many}"
