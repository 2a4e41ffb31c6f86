"""English text normalization for kiosk and IVR text: written forms become the words to say.

`normalize` rewrites numbers, money, times, dates, phone numbers and codes, units,
abbreviations, acronyms, roman numerals, e-mail addresses and URLs, IVR keys and other symbols,
and emoji into plain words, and leaves everything else as it is, so that a voice's own
phonemizer then reads only words. It is one pass of `rewrite.Rewriter` over the text (bounded
patterns, context read a few characters either side), so its cost is linear in the text length.

Choices a listener will notice, and why:

- Numbers are US style (`one hundred five`, no "and"); a four-digit number from 1100 to 2099 is
  a year (`nineteen ninety-eight`) after a word such as `in` or `since`, or when no lower-case
  word follows it; otherwise a cardinal (`1500 points` → `one thousand five hundred points`).
- Phone numbers, ZIP codes and the number after a code word (`PIN`, `order`, `flight`,
  `confirmation`, `ext.` ...) are read digit by digit, `0` as `zero`, phone groups separated by
  commas so the voice pauses; `800` in a toll-free number is `eight hundred`.
- Times: `1:00 PM` → `one P M`, `3:00` → `three o'clock`, `1:05` → `one oh five`, 24-hour
  `13:30` → `thirteen thirty` and `13:00` → `thirteen hundred`, `00:00` → `midnight`; a US
  zone after a time is said by name (`9 PM ET` → `nine P M Eastern Time`).
- `n/d` is a fraction when it is proper with a denominator up to 10 (`3/4`), else a date if it
  is one in the configured order (`12/25`), else a fraction (`15/16`).
- `St.` and `Dr.` are `Saint` and `Doctor` before a name, `Street` and `Drive` after one.
- An all-capital word is spelled (`FBI` → `F B I`) unless it is a known said acronym
  (`NASA`), a short word typed in capitals (`CALL NOW`), or four letters or more that can be
  said (`HELP`); said ones are written in title case so no phonemizer spells them.
- A spelled letter A, wherever letters are spelled (acronyms, codes, `AM`, states, addresses,
  a letter on a number: `Gate 4A`, `A1`), is written `Eh` (`ATM` → `Eh T M`, `9 AM` → `nine Eh
  M`): espeak-ng and hibari's G2P read a capital `A` before another word as the article "uh"
  (`lexicon_en.letter`, shared with `say_as_en`).
- An abbreviation that ends a sentence keeps its period (`Acme Corp. Please hold.`); `Sat.`
  and `Oct.` in a date do not, so the date stays in one sentence.
- Money: `$1,284.57` → `... dollars and fifty-seven cents`, `$0.99` → `ninety-nine cents`,
  `$27k` → `twenty-seven thousand dollars`, `$1.5` (not two decimals) → `one point five
  dollars`, `45¢` → `forty-five cents`; `/month` or `/lb` after an amount is `per month`,
  `per pound`.
- Scales without money: `2.5B` → `two point five billion`; a whole number takes its `K`/`M`/`B`
  only when it is round and a plural noun follows (`250K followers`), since `5K run`, `4K TV`
  and `401k plans` name things.
- E-mail addresses and URLs: a letter run without a vowel is spelled (`rx-refills`), and so is
  a domain's name of up to four letters that would be spelled in capitals (`irs.gov`,
  `usps.com`); the cost is that a three-letter word as a domain name is spelled too (`pay.gov`).
- Dotted numbers: `3.0.1` is a version (`three point zero point one`), four parts up to 255
  an IP address read by digits (`one nine two dot one six eight dot ...`).
- No symbol is left for a phonemizer to name or drop (they differ: espeak-ng says `colon` in
  `16:9`, hibari's G2P says nothing for `/`): numbers with colons that make no time are read
  with a pause (`25:00` → `twenty-five, zero zero`, `16:9` → `sixteen, nine`; `24:00` is
  `twenty-four hundred`), a date that cannot be one as written (`02/30/2027` → `zero two slash
  thirty slash two thousand twenty-seven`), `16$` as money, and a `/ $ € £ ¥ ¢ ° @ # * +` that
  no other rule read by its name (`slash`, `dollar`, ..., `pound` and `star` as on a keypad).
  Only a slash between two words stays (`and/or`, `w/o`: hibari's G2P reads it `without`), and
  `*` around words is emphasis or a footnote mark and says nothing (`**Note:**`, `$9.99*`).
- Things that stay as written: a lone `Sun`/`Sat` without a period (a word), `Ave Maria`,
  `John W. Smith`, `Mary I love you`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal

from utterd.models.text import lexicon_en as lex
from utterd.models.text import numbers_en as num
from utterd.models.text.rewrite import Rewriter, Rule, Span

DateOrder = Literal["mdy", "dmy"]
EmojiPolicy = Literal["skip", "name"]

NORMALIZER_VERSION: Final = 4
"""Bumped whenever normalization changes what is said (for phrase-cache keys)."""


@dataclass(frozen=True)
class EnglishOptions:
    """How English text is normalized."""

    date_order: DateOrder = "mdy"
    """Order of a numeric date's day and month: `mdy` (en-US, `10/04` is October fourth) or
    `dmy` (en-GB, `10/04` is the tenth of April). An impossible order is swapped."""

    emoji: EmojiPolicy = "skip"
    """Emoji and other pictographs: `skip` them, or say their Unicode `name` in lower case."""

    lexicon: Mapping[str, str] = field(default_factory=dict)
    """The user's words (names, brands) → how to say them; matched as whole words, the exact
    spelling first, then ignoring case. It wins over every other rule."""

    def __post_init__(self) -> None:
        if self.date_order not in ("mdy", "dmy"):
            raise ValueError(f"date_order: {self.date_order!r} is not 'mdy' or 'dmy'")
        if self.emoji not in ("skip", "name"):
            raise ValueError(f"emoji: {self.emoji!r} is not 'skip' or 'name'")
        for word in self.lexicon:
            if not word.strip():
                raise ValueError(f"lexicon: {word!r} is not a word")
        # A copy the caller cannot change afterwards (the compiled rules are cached by it).
        object.__setattr__(self, "lexicon", MappingProxyType(dict(self.lexicon)))


DEFAULT_OPTIONS: Final = EnglishOptions()


def normalize(text: str, options: EnglishOptions = DEFAULT_OPTIONS) -> str:
    """The text with numbers, money, dates, codes, symbols and the like rewritten as words."""
    rewriter = _rewriter(options.date_order, options.emoji, tuple(options.lexicon.items()))
    spoken = _SPACE_RUN.sub(" ", _SPACE_BEFORE_STOP.sub("", rewriter.apply(text)))
    if spoken != text and text == text.strip():
        spoken = spoken.strip()
    return spoken


# Rules that drop or add words leave spaces behind (`Thanks 👍!` → `Thanks  !`).
_SPACE_BEFORE_STOP: Final = re.compile(r"(?<=\S) +(?=[,.;:!?](?:\s|$))")
_SPACE_RUN: Final = re.compile(r"(?<=\S) {2,}(?=\S)")

# Building blocks (bounded; see rewrite.py).
_NUM: Final = r"(?:\d{1,3}(?:,\d{3}){1,4}|\d{1,15})(?!\d)(?:\.\d{1,15}(?!\d))?"
_AMPM: Final = r"(?:[AaPp]\.[Mm](?![A-Za-z])\.?|[AaPp][Mm](?![A-Za-z]))"
_TIME: Final = (
    rf"(?:\d{{1,2}}:[0-5]\d(?::[0-5]\d)?(?![\d:])(?:\s?{_AMPM})?|(?:1[0-2]|0?[1-9])\s?{_AMPM})"
)
_ZONE: Final = rf"(?:\s{{1,2}}({'|'.join(lex.TIME_ZONES)})(?!\w))?"
_TIME_PARTS: Final = re.compile(r"(\d{1,2})(?::(\d\d)(?::(\d\d))?)?\s?(?:([AaPp])\.?[Mm](\.?))?")
_MONTH: Final = "|".join([*lex.MONTHS, *sorted(lex.MONTH_ABBREVIATIONS, key=len, reverse=True)])
_WEEKDAY_ABBR: Final = "|".join(sorted(lex.WEEKDAYS, key=len, reverse=True))
_WEEKDAY: Final = "|".join([*dict.fromkeys(lex.WEEKDAYS.values()), _WEEKDAY_ABBR])
_ROMAN: Final = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_CURRENCY: Final = r"[$€£¥]"
_SCALE: Final = r"(?:thousand|million|billion|trillion|bn|mm|MM|[kKmMB])(?![A-Za-z])"
_CURRENCY_CODES: Final = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_YEAR_CONTEXT: Final = frozenset(
    [
        "in",
        "since",
        "from",
        "until",
        "till",
        "by",
        "of",
        "year",
        "before",
        "after",
        "around",
        "circa",
        "to",
        "through",
        "and",
        "or",
        "between",
        "early",
        "late",
        "mid",
        "fall",
        "spring",
        "summer",
        "winter",
        "class",
        "copyright",
        "©",
    ]
)
_TLDS: Final = "com|org|net|edu|gov|info|biz|app|dev|io|ai|co|uk|us|ca|de|fr|eu|tv|me"


def _pattern_of(words: Mapping[str, object] | frozenset[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# --- helpers -------------------------------------------------------------------------------


def _number(text: str) -> str:
    """A written number (`-1,284.5`) as words."""
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    integer, _, fraction = text.replace(",", "").partition(".")
    if len(integer) > 1 and integer.startswith("0"):
        words = num.digits(integer)
        if fraction:
            words += " point " + num.digits(fraction)
        return sign + words
    if fraction:
        return sign + num.decimal(integer, fraction)
    return sign + num.cardinal(int(integer))


def _is_one(text: str) -> bool:
    return text.lstrip("-−") == "1"


def _spell(code: str) -> str:
    """A code said character by character: letters as letters, digits as digits. A dash, or a
    space after a digit (`4410 2298`), is a pause; a space after letters is not (`UA 1234`)."""
    out: list[str] = []
    previous = ""
    for char in code:
        if char.isdecimal():
            out.append(num.digits(char))
        elif char.isalpha():
            out.append(lex.letter(char))
        elif out and not out[-1].endswith(",") and (char in "-–" or previous.isdecimal()):
            out[-1] += ","
        previous = char
    return " ".join(out)


def _stop(span: Span, *, before_capital: bool = True) -> str:
    """`.` if the abbreviation just rewritten also ended a sentence: at the end of the text or
    a line, or (with `before_capital`) before a capital letter."""
    if not span.group(0).endswith("."):
        return ""
    rest = span.after()
    if not rest.strip() or rest[0] == "\n":
        return "."
    if before_capital and rest[0].isspace() and rest.lstrip()[0].isupper():
        return "."
    return ""


def _date_stop(span: Span) -> str:
    """`_stop` for a weekday or month abbreviation: a date goes on after it (`Sat. Oct. 4`)."""
    following = re.match(r"\s{1,3}([A-Z][a-z]{0,8})\b", span.after())
    goes_on = following is not None and (
        following[1] in lex.WEEKDAYS
        or following[1] in lex.MONTH_ABBREVIATIONS
        or following[1] in lex.MONTHS
        or following[1] in lex.WEEKDAYS.values()
    )
    return _stop(span, before_capital=not goes_on)


def _previous_word(span: Span) -> tuple[str, bool]:
    """The word before the match, and whether it starts a sentence."""
    before = span.before()
    words = re.findall(r"[\w']+|[.!?:]", before)
    if not words or not words[-1][0].isalnum():
        return "", False
    initial = (len(words) == 1 and len(before) < 40) or (len(words) > 1 and words[-2] in ".!?:")
    return words[-1], initial


# --- numbers -------------------------------------------------------------------------------


def _say_number(span: Span) -> str:
    sign, integer, fraction = span.group(1), span.group(2), span.group(3)
    if not sign and not fraction and len(integer) == 4 and integer[0] != "0":
        value = int(integer)
        if 1100 <= value <= 2099:
            previous, _ = _previous_word(span)
            if previous.lower() in _YEAR_CONTEXT or not re.match(r"\s{1,3}[a-z]", span.after()):
                return num.year(value)
    return _number(sign + integer + (f".{fraction}" if fraction else ""))


def _say_dotted_numbers(span: Span) -> str:
    """A version (`3.0.1` → `three point zero point one`) or an IP address, read by digits."""
    parts = span.group(1).split(".")
    if len(parts) == 4 and all(int(part) <= 255 for part in parts):
        return " dot ".join(num.digits(part) for part in parts)
    return " point ".join(_number(part) for part in parts)


def _say_digits_run(span: Span) -> str:
    run = span.group(0)
    if len(run) > 15 or (len(run) > 1 and run[0] == "0"):
        return num.digits(run)
    return num.cardinal(int(run))


def _say_ordinal(span: Span) -> str:
    return num.ordinal(int(span.group(1)))


def _say_decade(span: Span) -> str:
    return num.plural(num.year(int(span.group(1))))


def _say_short_decade(span: Span) -> str:
    return num.plural(num.cardinal(int(span.group(1))))


def _say_unit(span: Span) -> str:
    first, second, unit = span.group(1), span.group(2), span.group(3)
    one, many = lex.UNITS[unit]
    name = one if not second and _is_one(first) else many
    amount = _number(first) + (f" to {_number(second)}" if second else "")
    return f"{amount} {name}"


def _say_feet_and_inches(span: Span) -> str:
    """`6 ft 8 in` → `six feet eight inches` (a lone `in` after a number stays a word)."""
    feet, inches = span.group(1), span.group(2)
    foot = "foot" if _is_one(feet) else "feet"
    inch = "inch" if _is_one(inches) else "inches"
    return f"{_number(feet)} {foot} {_number(inches)} {inch}"


def _say_range(span: Span) -> str:
    low, high = span.group(1), span.group(2)
    if _looks_like_year(low) and (_looks_like_year(high) or len(high) == 2):
        end = num.year(int(high)) if len(high) == 4 else num.cardinal(int(high))
        return f"{num.year(int(low))} to {end}"
    return f"{_number(low)} to {_number(high)}"


def _looks_like_year(text: str) -> bool:
    return len(text) == 4 and 1100 <= int(text) <= 2099


def _say_fraction_or_date(span: Span, order: DateOrder) -> str:
    top, bottom = int(span.group(1)), int(span.group(2))
    if 0 < top < bottom <= 10:
        return num.fraction(top, bottom)
    first, second = (top, bottom) if order == "mdy" else (bottom, top)
    if len(span.group(1)) <= 2 and len(span.group(2)) <= 2:
        date = _date_words(first, second, "", order, span)
        if date:
            return date
    if bottom == 0:
        return f"{num.cardinal(top)} over zero"
    return num.fraction(top, bottom)


def _say_mixed_fraction(span: Span) -> str:
    whole, top, bottom = int(span.group(1)), int(span.group(2)), int(span.group(3))
    if 0 < top < bottom <= 100:
        part = num.fraction(top, bottom)
        if top == 1:
            part = "a " + part.removeprefix("one ")
        return f"{num.cardinal(whole)} and {part}"
    return f"{num.cardinal(whole)} {num.cardinal(top)} over {num.cardinal(bottom)}"


# --- money ---------------------------------------------------------------------------------


def _money(symbol: str, amount: str, scale: str) -> str:
    one, many, cent, cents = lex.CURRENCIES[symbol]
    sign = ""
    if amount[:1] in "-−":
        sign, amount = "minus ", amount[1:]
    if scale:
        return f"{sign}{_number(amount)} {lex.SCALE_SUFFIXES[scale]} {many}"
    integer, _, fraction = amount.replace(",", "").partition(".")
    if fraction and (len(fraction) != 2 or not cent):
        return f"{sign}{_number(amount)} {many}"
    major, minor = int(integer), int(fraction or "0")
    parts: list[str] = []
    if major or not minor:
        parts.append(f"{num.cardinal(major)} {one if major == 1 else many}")
    if minor:
        parts.append(f"{num.cardinal(minor)} {cent if minor == 1 else cents}")
    return sign + " and ".join(parts)


def _say_money(span: Span) -> str:
    sign = span.group(1) or span.group(3)
    return _money(span.group(2), sign + span.group(4), span.group(5))


def _say_money_after(span: Span) -> str:
    unit = span.group(2)
    return _money(_CURRENCY_CODES.get(unit, unit), span.group(1), "")


def _say_cents(span: Span) -> str:
    return f"{_number(span.group(1))} cent{'' if _is_one(span.group(1)) else 's'}"


def _say_scaled_number(span: Span) -> str:
    """`2.5B` → `two point five billion`; `250K followers` → `two hundred fifty thousand
    followers`. A whole number takes the scale only when it is round (a multiple of 5 from 10
    up) and a plural noun follows, since `5K run`, `4K TV` and `401k plans` name things."""
    amount, suffix = span.group(1), span.group(2)
    whole = "." not in amount
    value = int(amount.lstrip("-−").replace(",", "").partition(".")[0])
    if whole and (value < 10 or value % 5 or not re.match(r"\s{1,3}[a-z]{2,20}s\b", span.after())):
        return f"{_number(amount)} {suffix}"
    return f"{_number(amount)} {lex.SCALE_SUFFIXES[suffix]}"


def _say_money_range(span: Span) -> str:
    symbol = span.group(1)
    second = span.group(3) or symbol
    return f"{_money(symbol, span.group(2), '')} to {_money(second, span.group(4), span.group(5))}"


# --- times ---------------------------------------------------------------------------------


def _time_words(written: str) -> str:
    parts = _TIME_PARTS.fullmatch(written.strip())
    if parts is None:
        return _as_written(written)
    hour = int(parts.group(1))
    minute = int(parts.group(2) or "0")
    second = parts.group(3)
    half = parts.group(4).upper() if parts.group(4) else ""
    past_midnight = hour == 24 and minute == 0 and not int(second or "0")  # `24:00`: ISO's
    if (hour > 23 and not (past_midnight and not half)) or (half and not 1 <= hour <= 12):
        return _as_written(written)
    if half:
        head = num.cardinal(hour)
        tail = f" {lex.letter(half)} M"
    elif hour == 0 and minute == 0 and not second:
        return "midnight"
    elif hour == 0:
        head, tail = "twelve", f" {lex.letter('A')} M"
    else:
        head, tail = num.cardinal(hour), ""
    if minute == 0:
        if not half and hour != 0:
            head += " o'clock" if hour <= 12 else " hundred"
    elif minute < 10:
        head += f" oh {num.cardinal(minute)}"
    else:
        head += f" {num.cardinal(minute)}"
    if second and int(second):
        head += f" and {num.cardinal(int(second))} second{'s' if int(second) != 1 else ''}"
    return head + tail


_WRITTEN: Final = re.compile(r"\d{1,15}|[AaPp]\.?[Mm]\b\.?|\S")
_SEPARATORS: Final = {"/": "slash", "-": "dash", "–": "dash", ".": "dot"}


def _as_written(text: str) -> str:
    """Numbers that make no time or date (`25:00`, `02/30/2027`) read as written: each number
    as `_number` reads it (`00` → `zero zero`), a colon as a pause, `/` `-` `.` by name."""
    words: list[str] = []
    for token in _WRITTEN.findall(text):
        if token.isdecimal():
            words.append(_number(token))
        elif token == ":" and words:
            words[-1] += ","
        elif token in _SEPARATORS:
            words.append(_SEPARATORS[token])
        elif token[0] in "AaPp":
            words.append(f"{lex.letter(token[0])} M")
    return " ".join(words)


def _zone(written: str) -> str:
    return f" {lex.TIME_ZONES[written]}" if written else ""


def _say_time(span: Span) -> str:
    return _time_words(span.group(1)) + _zone(span.group(2)) + _stop(span)


def _say_time_range(span: Span) -> str:
    first, last = span.group(1), _time_words(span.group(2)) + _zone(span.group(3))
    if ":" not in first and not re.search(r"[AaPp]\.?[Mm]", first) and int(first) > 12:
        return f"{num.cardinal(int(first))} to {last}{_stop(span)}"
    return f"{_time_words(first)} to {last}{_stop(span)}"


# --- dates ---------------------------------------------------------------------------------


def _year_words(text: str) -> str:
    value = int(text)
    if len(text) == 2:
        value += 2000 if value < 70 else 1900
    return num.year(value)


def _date_words(month: int, day: int, year: str, order: DateOrder, span: Span) -> str:
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2024, month)[1]:
        return ""
    name = lex.MONTHS[month - 1]
    if order == "mdy":
        words = f"{name} {num.ordinal(day)}"
    else:
        the = "" if re.search(r"\bthe\s{1,3}$", span.before(), re.IGNORECASE) else "the "
        words = f"{the}{num.ordinal(day)} of {name}"
    return words + (f", {_year_words(year)}" if year else "")


def _say_iso_date(span: Span, order: DateOrder) -> str:
    year, month, day = span.group(1), int(span.group(2)), int(span.group(3))
    return _date_words(month, day, year, order, span) or _as_written(span.group(0))


def _say_numeric_date(span: Span, order: DateOrder) -> str:
    first, second, year = int(span.group(1)), int(span.group(3)), span.group(4)
    month, day = (first, second) if order == "mdy" else (second, first)
    if month > 12 and day <= 12:
        month, day = day, month
    return _date_words(month, day, year, order, span) or _as_written(span.group(0))


def _month_number(word: str) -> int:
    if word in lex.MONTH_ABBREVIATIONS:
        return lex.MONTH_ABBREVIATIONS[word]
    return lex.MONTHS.index(word) + 1


def _say_month_day(span: Span) -> str:
    month, day, year = _month_number(span.group(1)), int(span.group(2)), span.group(4)
    words = _date_words(month, day, year, "mdy", span)
    if not words:
        return f"{lex.MONTHS[month - 1]} {num.cardinal(day)}" + (
            f"{span.group(3)}{_year_words(year)}" if year else ""
        )
    return words


def _say_day_month(span: Span) -> str:
    day, month, year = int(span.group(1)), _month_number(span.group(2)), span.group(3)
    words = _date_words(month, day, year, "dmy", span)
    return words or f"{num.cardinal(day)} {lex.MONTHS[month - 1]}" + (
        f", {_year_words(year)}" if year else ""
    )


def _say_month_day_range(span: Span) -> str:
    """`Dec 24-26` → `December twenty-fourth to twenty-sixth`."""
    month, first, last = _month_number(span.group(1)), int(span.group(2)), int(span.group(3))
    days = num.ordinal if 1 <= first < last <= calendar.monthrange(2024, month)[1] else num.cardinal
    year = f", {_year_words(span.group(4))}" if span.group(4) else ""
    return f"{lex.MONTHS[month - 1]} {days(first)} to {days(last)}{year}"


def _say_month_range(span: Span) -> str:
    """`Jan-Mar` → `January to March`."""
    first, last = _month_number(span.group(1)), _month_number(span.group(2))
    return f"{lex.MONTHS[first - 1]} to {lex.MONTHS[last - 1]}" + _date_stop(span)


def _say_month_year(span: Span) -> str:
    return f"{lex.MONTHS[_month_number(span.group(1)) - 1]} {_year_words(span.group(2))}"


def _say_month_abbreviation(span: Span) -> str:
    return lex.MONTHS[_month_number(span.group(1)) - 1] + _date_stop(span)


def _weekday(word: str) -> str:
    return lex.WEEKDAYS.get(word, word)


def _say_weekday_range(span: Span) -> str:
    link = span.group(2)
    link = "to" if link in "-–" else link
    last = _weekday(span.group(3))
    return f"{_weekday(span.group(1))} {link} {last}{_date_stop(span)}"


def _say_weekday_in_list(span: Span) -> str:
    """`Mon, Wed, Fri` → the days' names; a lone `Sun` or `Sat` is a word and stays."""
    previous, _ = _previous_word(span)
    following = re.match(r"[,/&\s]{1,4}(?:and\s{1,3})?(\w+)", span.after())
    if previous in lex.WEEKDAYS or (following is not None and following[1] in lex.WEEKDAYS):
        return _weekday(span.group(1))
    return span.group(1)


def _say_weekday(span: Span) -> str:
    return _weekday(span.group(1)) + _date_stop(span)


# --- phone numbers and codes ---------------------------------------------------------------


def _area(code: str) -> str:
    return "eight hundred" if code == "800" else num.digits(code)


def _say_phone(span: Span) -> str:
    country, area, exchange, line = span.group(1), span.group(2), span.group(3), span.group(4)
    groups = [_area(area), num.digits(exchange), num.digits(line)]
    if country:
        groups.insert(0, ("plus " if country.startswith("+") else "") + num.digits(country))
    return ", ".join(groups)


def _say_vanity_phone(span: Span) -> str:
    groups = [_area(span.group(2)), span.group(3).title()]
    if span.group(1):
        groups.insert(0, "one")
    return ", ".join(groups)


def _say_international(span: Span) -> str:
    groups = [g for g in re.split(r"[\s.()\-]+", span.group(2)) if g]
    return ", ".join([f"plus {num.digits(span.group(1))}", *(num.digits(g) for g in groups)])


def _say_groups(span: Span) -> str:
    return ", ".join(num.digits(g) for g in re.split(r"\D+", span.group(0)) if g)


def _say_dial(span: Span) -> str:
    return f"{span.group(1)} {num.digits(span.group(2))}"


def _say_state_zip(span: Span) -> str:
    words = f"{lex.letters(span.group(1))} {num.digits(span.group(2))}"
    return words + (f", {num.digits(span.group(3))}" if span.group(3) else "")


def _say_room(span: Span) -> str:
    word = span.group(1).rstrip(".")
    spoken = lex.ABBREVIATIONS.get(word, {"Rm": "Room", "rm": "room"}.get(word, word))
    return f"{spoken} {num.paired(int(span.group(2)))}"


def _say_code(span: Span) -> str:
    word = span.group(1)
    spoken = lex.CODE_WORDS.get(word.lower(), word)
    if word[:1].isupper() and spoken[:1].islower():
        spoken = spoken[0].upper() + spoken[1:]
    link = span.group(2).strip()
    link_words = {"#": "number", "no.": "number", "number": "number", ":": ":"}.get(
        link.lower(), link
    )
    return " ".join(w for w in (spoken, link_words, _spell(span.group(3))) if w)


# --- words ---------------------------------------------------------------------------------


def _say_abbreviation(span: Span) -> str:
    word = span.group(1)
    words = lex.ABBREVIATIONS[word]
    if word in lex.TITLES:
        return words
    return words + _stop(span, before_capital=word not in lex.NAME_SUFFIXES)


_BARE_ABBREVIATIONS: Final = {
    "vs": "",
    "approx": "",
    "Inc": "",
    "Corp": "",
    "Ltd": "",
    "Jr": "",
    "Sr": "",
    "Mr": r"\s{1,3}[A-Z]",
    "Mrs": r"\s{1,3}[A-Z]",
    "Ms": r"\s{1,3}[A-Z]",
    "Prof": r"\s{1,3}[A-Z]",
    "Apt": r"\s{1,3}[A-Z]?\d",
    "Ste": r"\s{1,3}[A-Z]?\d",
    "Ave": "after a name",
    "Blvd": "after a name",
    "Rd": "after a name",
    "Hwy": r"\s{1,3}\d",
    "Rx": "",
}
"""Abbreviations also written without a period → what must follow them (a pattern), or
`after a name` (a capitalized word or a number before them); `""`: always expanded."""


def _say_bare_abbreviation(span: Span) -> str:
    """`Mr Smith`, `Apt 4B`, `Main Ave`; but `Ave Maria` and a lone `Ste` stay."""
    word = span.group(1)
    condition = _BARE_ABBREVIATIONS[word]
    if condition == "after a name":
        previous, _ = _previous_word(span)
        expand = bool(previous) and (previous[0].isupper() or previous[0].isdecimal())
    else:
        expand = not condition or re.match(condition, span.after()) is not None
    return lex.ABBREVIATIONS[word] if expand else word


def _say_street_or_title(span: Span) -> str:
    word = span.group(1)
    street, title = ("Street", "Saint") if word == "St" else ("Drive", "Doctor")
    previous, initial = _previous_word(span)
    follows_name = bool(re.match(r"\.?\s{1,3}[A-Z]", span.group(2) + span.after(4)))
    after_name = bool(previous) and (previous[0].isupper() or previous[0].isdigit())
    if after_name and (not initial or not follows_name):
        if re.match(r"\.?\s{1,3}(?:Suite|Ste|Apt|Unit|Floor)\b", span.group(2) + span.after(12)):
            return street
        return street + _stop(span)
    if follows_name:
        return title
    return street + _stop(span) if word == "St" else title + _stop(span)


def _say_compass(span: Span) -> str:
    """`W. 34th St.`, `2200 N. Main St.`: a compass point; `John W. Smith`: an initial."""
    previous, _ = _previous_word(span)
    if span.after(4).lstrip()[:1].isdigit() or previous.isdecimal():
        return lex.COMPASS[span.group(1)]
    return span.group(0)


def _say_latin(span: Span) -> str:
    written = span.group(1)
    words = lex.LATIN[written.lower()]
    return words[0].upper() + words[1:] if written[0].isupper() else words


def _say_dotted_acronym(span: Span) -> str:
    return lex.letters(span.group(1).replace(".", "")) + _stop(span)


_ONSETS: Final = frozenset(
    [
        "BL",
        "BR",
        "CH",
        "CL",
        "CR",
        "DR",
        "FL",
        "FR",
        "GL",
        "GR",
        "PH",
        "PL",
        "PR",
        "SC",
        "SH",
        "SK",
        "SL",
        "SM",
        "SN",
        "SP",
        "ST",
        "SW",
        "TH",
        "TR",
        "TW",
        "WH",
        "WR",
        "QU",
        "KN",
    ]
)
_VOWEL_RUNS: Final = re.compile(r"[AEIOU]+|Y(?![AEIOU])")


def _sayable(word: str) -> bool:
    """Whether an all-capital word can be said as a word (`NASA`, `HELP`) rather than spelled."""
    if len(word) < 4 or not _VOWEL_RUNS.search(word[1:] if word[0] == "Y" else word):
        return False
    runs = re.split(r"[AEIOU]+|(?<=[^AEIOU])Y(?=[^AEIOU]|$)", word)
    first, last, inner = runs[0], runs[-1], runs[1:-1]
    if len(first) > 2 or (len(first) == 2 and first not in _ONSETS):
        return False
    return len(last) <= 2 and all(len(r) <= 3 for r in inner)


def _said(word: str) -> bool:
    """Whether an all-capital word is said as a word (`NASA`, `HELP`) rather than spelled."""
    return word in lex.SAID_ACRONYMS or (word not in lex.SPELLED_ACRONYMS and _sayable(word))


def _say_acronym(span: Span) -> str:
    word, plural = span.group(1), span.group(2)
    if word in lex.OKAY:
        return "okay"
    if span.after(1) == "&" or span.before(1) == "&":
        return lex.letters(word)
    if word in lex.WORDS_IN_CAPITALS and not plural:
        return word.lower()
    if _said(word):
        return word.title() + plural
    return lex.letters(word) + ("'s" if plural else "")


def _say_roman(span: Span) -> str:
    context, numeral = span.group(1), span.group(3)
    context = "Volume" if context.lower() == "vol" else context
    return f"{context} {num.cardinal(_roman_value(numeral))}"


def _say_regnal(span: Span) -> str:
    name, numeral = span.group(1), span.group(2)
    if numeral == "I" and re.match(r"\s{1,3}[a-z]", span.after()):
        return span.group(0)
    return f"{name} the {num.ordinal(_roman_value(numeral))}"


def _say_roman_after_name(span: Span) -> str:
    return f"{span.group(1)} {num.cardinal(_roman_value(span.group(2)))}"


_ROMAN_VALUES: Final = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def _roman_value(numeral: str) -> int:
    total = 0
    for index, char in enumerate(numeral):
        value = _ROMAN_VALUES[char]
        following = _ROMAN_VALUES[numeral[index + 1]] if index + 1 < len(numeral) else 0
        total += -value if value < following else value
    return total


def _say_address_part(part: str) -> str:
    """Part of an e-mail address or URL: `.` `_` `-` `+` `/` by name, digits one by one, a
    letter run without a vowel spelled (`rx-refills` → `R X dash refills`)."""
    pieces = re.findall(r"[A-Za-z]+|\d+|[._+\-/]", part)
    names = {".": "dot", "_": "underscore", "-": "dash", "+": "plus", "/": "slash"}
    words: list[str] = []
    for piece in pieces:
        if piece in names:
            words.append(names[piece])
        elif piece.isdecimal():
            words.append(num.digits(piece))
        elif (
            piece.lower() in lex.SPELLED_TLDS
            or piece.lower() == "www"
            or not re.search("[aeiouy]", piece, re.IGNORECASE)
        ):
            words.append(lex.letters(piece))
        else:
            words.append(piece.lower())
    return " ".join(words)


_SECOND_LEVEL: Final = frozenset(["co", "com", "org", "net", "ac", "gov", "edu"])
"""Labels under a country code that are not the name (`shop.co.uk`: the name is `shop`)."""


def _say_host(host: str) -> str:
    """A domain name, label by label. Its name label (`irs` in `irs.gov`, `usps` in
    `usps.com`) is an initialism when it is up to four letters that an all-capital word of
    the same letters would be spelled as (`IRS`, `USPS`; not `acme`, `shop`, `now`)."""
    labels = host.split(".")
    name = len(labels) - 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2].lower() in _SECOND_LEVEL:
        name -= 1
    words: list[str] = []
    for index, label in enumerate(labels):
        upper = label.upper()
        if (
            index == name
            and label.isalpha()
            and label.isascii()
            and len(label) <= 4
            and upper not in lex.WORDS_IN_CAPITALS
            and not _said(upper)
        ):
            words.append(lex.letters(upper))
        else:
            words.append(_say_address_part(label))
    return " dot ".join(words)


def _say_email(span: Span) -> str:
    return f"{_say_address_part(span.group(1))} at {_say_host(span.group(2))}"


def _say_url(span: Span) -> str:
    address = span.group(1)
    stop = ""
    while address[-1] in ".,/-_" and len(address) > 1:
        stop = address[-1] + stop if address[-1] == "." else stop
        address = address[:-1]
    host, slash, path = address.partition("/")
    return _say_host(host) + (" " + _say_address_part(slash + path) if slash else "") + stop


def _emoji(policy: EmojiPolicy) -> Rule:
    def say(span: Span) -> str:
        if policy == "skip":
            return " "
        char = span.group(0)
        name = lex.EMOJI_NAMES.get(char) or unicodedata.name(char, "").lower()
        return f" {name} " if name else " "

    pictographs = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u231a-\u23ff"
    return Rule("emoji", f"[{pictographs}]", say)


def _flag(policy: EmojiPolicy) -> Rule:
    return Rule(
        "emoji",
        "[\U0001f1e6-\U0001f1ff]{2}",
        lambda span: " flag " if policy == "name" else " ",
    )


def _lexicon_rule(lexicon: tuple[tuple[str, str], ...]) -> Rule:
    exact = dict(lexicon)
    folded = {word.casefold(): spoken for word, spoken in reversed(lexicon)}
    keys = _pattern_of(frozenset(exact))

    def say(span: Span) -> str:
        word = span.group(0)
        return exact.get(word) or folded.get(word.casefold(), word)

    return Rule("lexicon", rf"(?i:(?<!\w)(?:{keys})(?!\w))", say)


@lru_cache(maxsize=16)
def _rewriter(
    order: DateOrder, emoji: EmojiPolicy, lexicon: tuple[tuple[str, str], ...]
) -> Rewriter:
    rules: list[Rule] = []
    if lexicon:
        rules.append(_lexicon_rule(lexicon))
    code_words = _pattern_of(lex.CODE_WORDS)
    abbreviations = _pattern_of(lex.ABBREVIATIONS)
    rules += [
        Rule("emoji", "[\ufe0e\ufe0f\u200d\u20e3\U0001f3fb-\U0001f3ff]", lambda span: ""),
        _flag(emoji),
        _emoji(emoji),
        Rule(
            "email",
            r"(?<![\w.+-])([A-Za-z0-9][A-Za-z0-9._+-]{0,63})@"
            r"([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,4})(?![\w-])",
            _say_email,
        ),
        Rule(
            "url",
            r"(?<![\w@.])(?:https?://)?((?:www\.)?[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,3}"
            rf"\.(?:{_TLDS})(?![\w-])(?:/[A-Za-z0-9._~%/-]{{0,100}})?)",
            _say_url,
        ),
        Rule(
            "code",
            rf"(?<![\w])((?i:{code_words}))(?!\w)(\s{{0,3}}(?:#|[Nn]o\.|number|is|:)?\s{{0,3}})"
            r"((?:[A-Z]{1,3}[ -]?\d[\dA-Z-]{0,24}|\d[\dA-Z-]{2,24})(?:\s\d{3,6}(?![\w-])){0,4})"
            r"(?![\w-])",
            _say_code,
        ),
        Rule(
            "code",
            r"\b((?i:room|rm\.?|suite|ste\.?|apartment|apt\.?|unit))\s{1,3}"
            r"([1-9]\d{2,3})(?![\w-]|[.,]\d)",
            _say_room,
        ),
        Rule(
            "phone",
            r"(?<![\w-])(?:(1)-)?(8\d\d)-([A-Z]{4,10})(?![\w-])",
            _say_vanity_phone,
        ),
        Rule(
            "phone",
            r"(?<![\w+])(?:(\+?1)[ .-]?)?\((\d{3})\)[ .-]?(\d{3})[ .-](\d{4})(?!\w|-\d)",
            _say_phone,
        ),
        Rule(
            "phone",
            r"(?<![\w+.-])(?:(\+?1)[ .-])?(\d{3})[.-](\d{3})[.-](\d{4})(?![\w-]|\.\d)",
            _say_phone,
        ),
        Rule(
            "phone",
            r"(?<![\w+.,-])(?:1 )?\d{3} \d{3} \d{4}(?![\w-]|[.,]\d)",
            _say_groups,
        ),
        Rule(
            "phone",
            r"(?<![\w+.,-])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?![\w-]|[.,]\d)",
            _say_groups,
        ),
        Rule(
            "phone",
            r"(?<![\w+])\+(\d{1,3})((?:[ .-]\(?\d{1,5}\)?){1,6})(?![\w-])",
            _say_international,
        ),
        Rule(
            "phone",
            r"(?<![\w])((?i:call|dial|text))\s{1,3}(\d{3,6})(?![\w-]|[.,]\d|\s\d)",
            _say_dial,
        ),
        Rule(
            "date",
            r"(?<![\w.-])(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?![\w-])",
            lambda span: _say_iso_date(span, order),
        ),
        Rule(
            "date",
            r"(?<![\w./-])(\d{1,2})([/.-])(\d{1,2})[/.-](\d{4}|\d{2})(?![\w/-]|\.\d)",
            lambda span: _say_numeric_date(span, order),
        ),
        Rule("phone", r"(?<![\w.-])\d{3}-\d{4}(?![\w-]|\.\d)", _say_groups),
        Rule("zip", r"(?<![\w.-])\d{5}-\d{4}(?![\w-]|\.\d)", _say_groups),
        Rule(
            "zip",
            r"(?<![\w])([A-Z]{2})\s(\d{5})(?:-(\d{4}))?(?![\w-])",
            _say_state_zip,
        ),
        Rule(
            "date",
            rf"\b({_MONTH})\.?\s{{1,3}}(\d{{1,2}})(?:st|nd|rd|th)?\s?[-–]\s?(\d{{1,2}})"
            r"(?:st|nd|rd|th)?(?![\w:/-]|[.,]\d)(?:,?\s{1,3}(\d{4})(?!\d))?",
            _say_month_day_range,
        ),
        Rule(
            "date",
            rf"\b({_MONTH})\b\.?\s?[-–]\s?({_MONTH})\b\.?",
            _say_month_range,
        ),
        Rule(
            "date",
            rf"\b({_MONTH})\.?\s{{1,3}}(\d{{1,2}})(?:st|nd|rd|th)?(?![\d:])"
            r"(?:(,?\s{1,3})(\d{4})(?!\d))?",
            _say_month_day,
        ),
        Rule(
            "date",
            rf"(?<![\w.,])(\d{{1,2}})(?:st|nd|rd|th)?\s{{1,3}}(?:of\s{{1,3}})?({_MONTH})\b\.?"
            r"(?:,?\s{1,3}(\d{4})(?!\d))?",
            _say_day_month,
        ),
        Rule("date", rf"\b({_MONTH})\.?,?\s{{1,3}}(\d{{4}})(?!\d)", _say_month_year),
        Rule(
            "date",
            rf"\b({'|'.join(sorted(lex.MONTH_ABBREVIATIONS, key=len, reverse=True))})\.",
            _say_month_abbreviation,
        ),
        Rule(
            "date",
            rf"\b({_WEEKDAY})\b\.?\s{{0,3}}(-|–|to|through|thru)\s{{0,3}}({_WEEKDAY})\b\.?",
            _say_weekday_range,
        ),
        Rule("date", rf"\b({_WEEKDAY_ABBR})\.", _say_weekday),
        Rule(
            "date",
            rf"\b({_WEEKDAY_ABBR})\b(?=,?\s{{1,3}}(?:{_MONTH}|\d))",
            _say_weekday,
        ),
        Rule("date", rf"\b({_WEEKDAY_ABBR})\b(?![.'’])", _say_weekday_in_list),
        Rule(
            "time",
            rf"(?<![\d:.,])({_TIME}|\d{{1,2}})\s?[-–]\s?({_TIME}){_ZONE}",
            _say_time_range,
        ),
        Rule("time", rf"(?<![\d:.,])({_TIME}){_ZONE}", _say_time),
        Rule(
            "number",
            r"(?<![\w.,:])\d{1,15}(?::\d{1,15}(?!\d))+",
            lambda span: _as_written(span.group(0)),
        ),
        Rule(
            "money",
            rf"({_CURRENCY})\s?({_NUM})\s?[-–]\s?({_CURRENCY})?\s?({_NUM})(?:\s?({_SCALE}))?",
            _say_money_range,
        ),
        Rule(
            "money",
            rf"(?<![\w.,])([-−]?)({_CURRENCY})\s?([-−]?)({_NUM})(?:\s?({_SCALE}))?",
            _say_money,
        ),
        Rule(
            "money",
            rf"(?<![\w.,])({_NUM})\s?([€£¥]|USD|EUR|GBP|JPY)(?![A-Za-z])",
            _say_money_after,
        ),
        Rule(
            "money",
            rf"(?<![\w.,])({_NUM})\$(?!\s?\d)",
            lambda span: _money("$", span.group(1), ""),
        ),
        Rule("money", r"(?<![\w.,])(\d{1,3}(?:\.\d{1,2})?)\s?¢", _say_cents),
        Rule(
            "large",
            r"(?<![\w.,-])([-−]?\d{1,3}(?:,\d{3}){0,2}(?:\.\d{1,3})?)(K|k|M|B|bn)(?!\w|\.\w)",
            _say_scaled_number,
        ),
        Rule(
            "roman",
            rf"\b((?i:{_pattern_of(lex.ROMAN_CONTEXT)}))(\.?)\s{{1,3}}({_ROMAN})(?![\w])",
            _say_roman,
        ),
        Rule(
            "roman",
            rf"\b({_pattern_of(lex.REGNAL_NAMES)})\s{{1,3}}({_ROMAN})(?![\w'])",
            _say_regnal,
        ),
        Rule(
            "roman",
            r"\b([A-Z][a-z]{1,20})\s{1,3}((?=[IVX]{2})X{0,3}(?:IX|IV|V?I{0,3}))(?![\w'])",
            _say_roman_after_name,
        ),
        Rule("abbreviation", r"(?<![\w.])((?i:e\.g\.|i\.e\.|a\.k\.a\.))", _say_latin),
        Rule("abbreviation", r"\b(St|Dr)(\.?)(?![\w])", _say_street_or_title),
        Rule("abbreviation", rf"\b({abbreviations})\.", _say_abbreviation),
        Rule(
            "abbreviation",
            rf"\b({'|'.join(_BARE_ABBREVIATIONS)})\b(?![.'’])",
            _say_bare_abbreviation,
        ),
        Rule("abbreviation", r"\b[Nn]o\.\s?(?=\d)", lambda span: "number "),
        Rule(
            "abbreviation",
            r"\bpp?\.\s?(?=\d)",
            lambda span: "pages " if span.group(0)[1] == "p" else "page ",
        ),
        Rule("acronym", r"(?<![\w.])((?:[A-Z]\.){2,6})", _say_dotted_acronym),
        Rule("range", r"(?<![\w.,/])24/7(?![\w/])", lambda span: "twenty-four seven"),
        Rule(
            "fraction",
            r"(?<![\w./-])(\d{1,3})\s(\d{1,3})/(\d{1,3})(?![\w/]|\.\d)",
            _say_mixed_fraction,
        ),
        Rule(
            "fraction",
            r"(?<![\w./-])(\d{1,3})/(\d{1,3})(?![\w/]|\.\d)",
            lambda span: _say_fraction_or_date(span, order),
        ),
        Rule(
            "unit",
            r"(?<![\w.])(\d{1,2})['’](\d{1,2})(?:\"|”|'')",
            lambda span: f"{_number(span.group(1))} feet {_number(span.group(2))} inches",
        ),
        Rule(
            "unit",
            r"(?<![\w.,])(\d{1,2})\s?ft\.?\s{1,2}(\d{1,2})\s?in(?!\w)",
            _say_feet_and_inches,
        ),
        Rule(
            "unit",
            rf"(?<![\w.,])([-−]?{_NUM})(?:\s?(?:[-–]|\sto\s)\s?([-−]?{_NUM}))?"
            rf"\s?({_pattern_of(lex.UNITS)})(?![A-Za-z0-9])",
            _say_unit,
        ),
        Rule(
            "number",
            r"(?<![\w.])(\d{1,4}(?:\.\d{1,4}){2,4})(?![\w]|\.\d)",
            _say_dotted_numbers,
        ),
        Rule(
            "range",
            r"(?<![\w.,/:-])(\d{1,4})\s?[-–]\s?(\d{1,4})(?![\w/:-]|[.,]\d)",
            _say_range,
        ),
        Rule(
            "ordinal", r"(?<![\w.,])(\d{1,15})(?:st|nd|rd|th|ST|ND|RD|TH)(?![A-Za-z])", _say_ordinal
        ),
        Rule("year", r"(?<![\w.,])(1[1-9]\d0|20\d0)s(?![A-Za-z])", _say_decade),
        Rule("year", r"(?<![\w])['’](\d0)s(?![A-Za-z])", _say_short_decade),
        Rule(
            "number",
            r"(?<![\w.,-])((?:[-−](?=\d))?)((?:\d{1,3}(?:,\d{3}){1,4}|\d{1,15})(?!\d))"
            r"(?:\.(\d{1,15})(?!\d))?",
            _say_number,
        ),
        Rule(
            "number",
            r"(?<![\w.])\.(\d{1,15})(?!\d)",
            lambda span: num.decimal("", span.group(1)),
        ),
        Rule("symbol", r"&", lambda span: " and "),
        Rule(
            "code",
            r"#((?:[A-Z]{1,3}-?\d|\d{4})[\dA-Z-]{0,24})(?![\w-])",
            lambda span: "number " + _spell(span.group(1)),
        ),
        Rule("symbol", r"#\s?(?=\d)|#(?=[A-Z])", lambda span: "number "),
        Rule("symbol", r"#(?=[a-z])", lambda span: "hashtag "),
        Rule("symbol", r"(?<![\w#])#(?![\w#])", lambda span: "pound"),
        Rule(
            "symbol",
            r"(?<![\w*])\*(\d{1,6})(?!\d)",
            lambda span: "star " + num.digits(span.group(1)),
        ),
        Rule("symbol", r"(?<![\w*])\*(?![\w*])", lambda span: "star"),
        Rule("symbol", r"(?<=[\w.,:;!?)])\*{1,3}(?![\w*])", lambda span: ""),
        Rule("symbol", r"(?<![\w*])\*{1,3}(?=[A-Za-z])", lambda span: ""),
        Rule(
            "symbol",
            rf"(?<=[\w%.])/({_pattern_of(lex.PER_UNITS)})\b",
            lambda span: f" per {lex.PER_UNITS[span.group(1)]}",
        ),
        Rule(
            "abbreviation",
            r"\b([NSEW])\.(?=\s{1,3}(?:\d|[A-Z][a-z]))",
            _say_compass,
        ),
        Rule("symbol", r"(?<![\w+])\+(?=\s?\d)", lambda span: "plus "),
        Rule("symbol", r"(?<=\s)\+(?=\s)", lambda span: "plus"),
        Rule("symbol", r"(?<=\d)\+", lambda span: "plus"),
        Rule("symbol", r"©", lambda span: "copyright"),
        Rule("symbol", r"(?<![\w@])@(?=\w)", lambda span: "at "),
        Rule("symbol", r"(?<=\s)@(?=\s)", lambda span: "at"),
        Rule("symbol", r"(?<=\s)=(?=\s)", lambda span: "equals"),
        Rule("symbol", r"%", lambda span: " percent"),
        Rule(
            "symbol",
            r"[$€£¥¢°@#*+]|(?<![^\W\d_])/|/(?![^\W\d_])",
            lambda span: f" {lex.SYMBOL_NAMES[span.group(0)]} ",
        ),
        Rule(
            "acronym",
            r"(?<![A-Za-z'’])([A-Z]{2,8})(s?)(?![A-Za-z]|['’][A-Za-z])",
            _say_acronym,
        ),
        Rule(
            "code",
            r"(?<=\d)A(?![A-Za-z'’])|(?<![A-Za-z'’])A(?=\d)",
            lambda span: lex.letter("A"),
        ),
        Rule("number", r"\d+", _say_digits_run),
    ]
    # No English rule starts on a space or on a letter that follows a letter.
    return Rewriter(rules, skip=r"\s|(?<=[^\W\d_])[^\W\d_]")
