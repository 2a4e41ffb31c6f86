"""English `<say-as>`: a span of text and its SSML hint → the words to say.

`say_as(text, hint, options)` reads the span the way the hint asks (`characters`/`spell-out`,
`digits`, `cardinal`, `ordinal`, `date`, `time`, `telephone`, `currency`) and returns plain
words, no digits or symbols, for any voice's phonemizer. A span that does not fit its hint
(`<say-as interpret-as="date">banana</say-as>`), and an unknown hint, is read by the ordinary
normalizer (`normalize_en.normalize`) instead: SSML processors read such text as written, and
never fail on it.

Choices a listener will notice, and why:

- Spelling (`characters`, `spell-out`) ignores case and writes each letter as `normalize` does
  (`lexicon_en.letter`): a capital, but the letter A as `Eh`, which both espeak-ng and hibari's
  G2P read as the letter's name where a capital `A` before another word is the article ("uh B
  C"). Digits are digit words, symbols are named (`#` is `pound` and `*` `star`, as on a phone
  keypad; others by their Unicode name), and a space is a short pause (a comma).
- `digits` reads only digits (and `+`, `*`, `#`); spaces, dashes, slashes and brackets are
  pauses, and a single `.` between digits is `point`, any other `.` is `dot` (`192.168.0.1`).
- `cardinal`: `-1,284.5` → `minus one thousand two hundred eighty-four point five`; leading
  zeros are dropped (the author asked for a number); more than 15 digits are read one by one.
- `ordinal`: `3`, `3rd` (any suffix, any case) → `third`.
- `date`: `format` gives the written order of day, month and year (`mdy`, `dmy`, `ymd`, `ydm`,
  `ym`, `my`, `md`, `dm`, `d`, `m`, `y`); without it, a four-digit first field is ISO (`ymd`) and
  otherwise `options.date_order` decides (an impossible order is then swapped, as `normalize`
  does). Month names and abbreviations, a leading weekday, `of` and `the` may appear. How the
  date is *said* follows `options.date_order`: `October fourth, twenty twenty-seven` (en-US) or
  `the fourth of October, twenty twenty-seven` (en-GB). Two-digit years are 1970–2069.
- `time`: 12-hour (`1:05 PM` → `one oh five P M`, `AM` → `Eh M`) and 24-hour (`13:00` → `thirteen hundred`,
  `00:00` → `midnight`), `HHMM` (`1330`); a `format` ending in `12` or `24` (`hms12`, `hm24`)
  rejects hours its clock does not have. The words match `normalize`'s.
- `telephone`: each written group read digit by digit with a comma between groups so the voice
  pauses; an unbroken NANP number is grouped 3-3-4 (with a leading `1`); `+` is `plus`; `800`
  after the optional `1` is `eight hundred`; `ext`/`x` is `extension`; a vanity word
  (`1-800-FLOWERS`) is said as a word.
- `currency`: `$12.50`, `12.50 USD`, `EUR 3`, `3 €`, `-$5`, `$27k`, `99¢`; two decimals are
  cents (pence for £; the yen has none, so `¥12.50` is `twelve point five zero yen`). A bare
  amount takes its unit from a currency code in `format` (`format="EUR"`), else is not money.
- The `detail` attribute changes nothing (no hint here has details worth a choice).

Every reader is linear in the span: spelling, digits and telephone scan it once; the others
look at a bounded prefix (`MAX_FIELD_CHARS`) and fall back beyond it; no number longer than
15 digits is ever converted with `int`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from utterd.models.text import lexicon_en as lex
from utterd.models.text import numbers_en as num
from utterd.models.text.normalize_en import DEFAULT_OPTIONS, EnglishOptions, normalize
from utterd.models.text.segments import SayAs

MAX_FIELD_CHARS: Final = 64
"""Longest date, time or currency span read as one; a longer one is not such a value."""

MAX_CARDINAL_DIGITS: Final = 15
"""Longest integer read as a number; longer ones are read digit by digit."""


def say_as(text: str, hint: SayAs, options: EnglishOptions = DEFAULT_OPTIONS) -> str:
    """The words to say for `text` read as `hint` asks; `normalize(text, options)` when the text
    does not fit the hint or the hint is unknown; `""` for blank text."""
    written = text.strip()
    if not written:
        return ""
    reader = _READERS.get(hint.interpret_as)
    spoken = reader(written, hint, options) if reader is not None else None
    return spoken if spoken else normalize(text, options)


# --- words with pauses ---------------------------------------------------------------------


class _Speech:
    """Words being collected, with pauses (commas) between some of them."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self._pause = False

    def say(self, words: str) -> None:
        if self._pause and self.words:
            self.words[-1] += ","
        self._pause = False
        self.words.append(words)

    def pause(self) -> None:
        self._pause = True

    def text(self) -> str:
        return " ".join(self.words)


_UNICODE_NAME: Final = re.compile(r"[A-Z]+(?:[ -][A-Z]+)*")
"""A Unicode character name made of words only (no code point numbers)."""

_SILENT_CATEGORIES: Final = frozenset({"Mn", "Me", "Cf", "Cc", "Cs", "Co", "Cn"})


def _symbol(char: str) -> str:
    """A symbol's name, or `""` when it has none a voice can say."""
    if char in lex.SYMBOL_NAMES:
        return lex.SYMBOL_NAMES[char]
    if unicodedata.category(char) in _SILENT_CATEGORIES:
        return ""
    name = unicodedata.name(char, "")
    return name.lower().replace("-", " ") if _UNICODE_NAME.fullmatch(name) else ""


def _spell(text: str) -> str:
    """Letter by letter, digit by digit, symbols by name; whitespace is a pause."""
    speech = _Speech()
    for char in unicodedata.normalize("NFC", text):
        if char.isspace():
            speech.pause()
        elif char.isdecimal():
            speech.say(num.digits(char))
        elif char.isalpha():
            speech.say(lex.letter(char))
        elif name := _symbol(char):
            speech.say(name)
    return speech.text()


# --- readers: each returns None when the text does not fit its hint -------------------------


def _say_characters(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    return _spell(text) or None


_DIGIT_PAUSES: Final = frozenset("-–—/(),.")


def _say_digits(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    speech = _Speech()
    decimal_point = text.count(".") == 1
    read_digit = False
    for index, char in enumerate(text):
        if char.isdecimal():
            speech.say(num.digits(char))
            read_digit = True
        elif char in lex.KEYPAD_SYMBOLS:
            speech.say(lex.KEYPAD_SYMBOLS[char])
        elif char == "." and 0 < index < len(text) - 1 and text[index - 1].isdecimal():
            if decimal_point and text[index + 1].isdecimal():
                speech.say("point")
            else:
                speech.say("dot")
        elif char.isspace() or char in _DIGIT_PAUSES:
            speech.pause()
        else:
            return None
    return speech.text() if read_digit else None


def _number_words(integer: str, fraction: str) -> str:
    """ASCII digit strings (either may be empty, not both) → words."""
    if len(integer) > MAX_CARDINAL_DIGITS:
        head = num.digits(integer)
    else:
        head = num.cardinal(int(integer)) if integer else ""
    if not fraction:
        return head
    return f"{head} point {num.digits(fraction)}".lstrip()


_SIGN_WORDS: Final = {"": "", "+": "plus ", "-": "minus ", "−": "minus "}
_INTEGER: Final = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_CARDINAL: Final = re.compile(rf"([-−+]?)\s?({_INTEGER})?(?:\.([0-9]+))?")
_ORDINAL: Final = re.compile(rf"({_INTEGER})(?:st|nd|rd|th)?", re.IGNORECASE)


def _say_cardinal(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    match = _CARDINAL.fullmatch(text)
    if match is None or not (match[2] or match[3]):
        return None
    words = _number_words((match[2] or "").replace(",", ""), match[3] or "")
    return _SIGN_WORDS[match[1]] + words


def _say_ordinal(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    match = _ORDINAL.fullmatch(text)
    if match is None:
        return None
    integer = match[1].replace(",", "")
    if len(integer) > MAX_CARDINAL_DIGITS:
        return num.digits(integer)
    return num.ordinal(int(integer))


# --- dates ---------------------------------------------------------------------------------

_MONTH_NUMBERS: Final = {
    **{name.lower(): index for index, name in enumerate(lex.MONTHS, start=1)},
    **{abbr.lower(): number for abbr, number in lex.MONTH_ABBREVIATIONS.items()},
}
_WEEKDAY_NAMES: Final = {
    **{abbr.lower(): name for abbr, name in lex.WEEKDAYS.items()},
    **{name.lower(): name for name in lex.WEEKDAYS.values()},
}
_DATE_TEXT: Final = re.compile(r"[0-9A-Za-z\s/.,\-]+")
_DATE_TOKEN: Final = re.compile(r"([0-9]+)((?i:st|nd|rd|th)?)|[A-Za-z]+")


def _year(digits: str) -> int | None:
    if not 1 <= len(digits) <= 4:
        return None
    value = int(digits)
    if len(digits) == 2:
        value += 2000 if value < 70 else 1900
    return value


def _inferred_format(numbers: list[str], has_month: bool, options: EnglishOptions) -> str:
    """The written order of a date without `format` ("" when there is none to guess)."""
    long = [len(n) > 2 for n in numbers]
    if has_month:
        if not numbers:
            return "m"
        if len(numbers) == 1:
            return "my" if long[0] else "md"
        return "ymd" if long[0] else "mdy"
    order = options.date_order
    if len(numbers) == 3:
        return "ymd" if long[0] else order
    if len(numbers) == 2:
        return "ym" if long[0] else "my" if long[1] else order[:2]
    return "y" if numbers and long[0] else ""


def _say_date(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    if len(text) > MAX_FIELD_CHARS or not _DATE_TEXT.fullmatch(text):
        return None
    weekday = ""
    month_name = 0
    numbers: list[str] = []
    suffixed: set[int] = set()
    for index, token in enumerate(_DATE_TOKEN.finditer(text)):
        word = token[0].lower()
        if token[1]:
            if token[2]:
                suffixed.add(len(numbers))
            numbers.append(token[1])
        elif index == 0 and word in _WEEKDAY_NAMES:
            weekday = _WEEKDAY_NAMES[word]
        elif word in _MONTH_NUMBERS and not month_name:
            month_name = _MONTH_NUMBERS[word]
        elif word not in ("of", "the"):
            return None
    written = hint.format or _inferred_format(numbers, bool(month_name), options)
    slots = written.replace("m", "") if month_name else written
    if (
        not written
        or len(set(written)) != len(written)
        or not set(written) <= set("dmy")
        or len(slots) != len(numbers)
        or (month_name and "m" not in written)
    ):
        return None
    fields = dict(zip(slots, numbers, strict=True))
    if any(slots[i] != "d" for i in suffixed) or any(len(fields.get(f, "")) > 2 for f in "dm"):
        return None
    day = int(fields.get("d", "0"))
    month = month_name or int(fields.get("m", "0"))
    year = _year(fields["y"]) if "y" in fields else None
    guessed = hint.format is None and written in (options.date_order, options.date_order[:2])
    if guessed and month > 12 >= day:  # the configured order is impossible: the other one
        day, month = month, day
    return _date_words(weekday, day, month, year, written, options)


def _date_words(
    weekday: str, day: int, month: int, year: int | None, written: str, options: EnglishOptions
) -> str | None:
    if ("y" in written and year is None) or ("m" in written and not 1 <= month <= 12):
        return None
    if "d" in written:
        days = calendar.monthrange(year if year else 2024, month)[1] if month else 31
        if not 1 <= day <= days:
            return None
    said_day = num.ordinal(day)
    month_name = lex.MONTHS[month - 1] if month else ""
    if day and month and options.date_order == "mdy":
        words = f"{month_name} {said_day}"
    elif day and month:
        words = f"the {said_day} of {month_name}"
    else:
        words = month_name or (f"the {said_day}" if day else "")
    if year is not None:
        said_year = num.year(year)
        words = f"{words}{', ' if day else ' '}{said_year}" if words else said_year
    return f"{weekday}, {words}" if weekday else words


# --- times ---------------------------------------------------------------------------------

_CLOCK: Final = re.compile(
    r"(?:([0-9]{1,2})(?:[:.]([0-9]{2})(?:[:.]([0-9]{2}))?)?|([0-9]{2})([0-9]{2}))"
    r"\s{0,3}(?:([AaPp])\.?\s?[Mm]\.?)?"
)
_CLOCK_FORMAT: Final = re.compile(r"h?m?s?(12|24)")


def _say_time(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    match = _CLOCK.fullmatch(text) if len(text) <= MAX_FIELD_CHARS else None
    if match is None:
        return None
    hour = int(match[1] or match[4])
    minute = int(match[2] or match[5] or "0")
    second = int(match[3] or "0")
    half = (match[6] or "").upper()
    clock = _CLOCK_FORMAT.fullmatch(hint.format or "")
    hours = range(1, 13) if half or (clock and clock[1] == "12") else range(24)
    if hour not in hours or minute > 59 or second > 59:
        return None
    return _clock_words(hour, minute, second, half)


def _clock_words(hour: int, minute: int, second: int, half: str) -> str:
    tail = f" {lex.letter(half)} M" if half else ""
    if not half and hour == 0:
        if minute == 0 and second == 0:
            return "midnight"
        hour, tail = 12, f" {lex.letter('A')} M"
    words = num.cardinal(hour)
    if minute >= 10:
        words += f" {num.cardinal(minute)}"
    elif minute:
        words += f" oh {num.cardinal(minute)}"
    elif not tail:
        words += " o'clock" if hour <= 12 else " hundred"
    if second:
        words += f" and {num.cardinal(second)} second{'s' if second != 1 else ''}"
    return words + tail


# --- telephone numbers ---------------------------------------------------------------------

_PHONE_SEPARATORS: Final = r"[\s\-–—./()]+"
_PHONE_TOKEN: Final = re.compile(rf"\d+|[^\W\d_]+\.?|[+*#]|{_PHONE_SEPARATORS}|.")
_EXTENSION_WORDS: Final = frozenset({"x", "ext", "ext.", "extension"})


def _nanp_groups(digits: str) -> list[str]:
    """An unbroken NANP number cut as it is said: 3-3-4 (7 digits: 3-4), after a leading 1."""
    if len(digits) == 11 and digits[0] == "1":
        return ["1", *_nanp_groups(digits[1:])]
    if len(digits) == 10:
        return [digits[:3], digits[3:6], digits[6:]]
    if len(digits) == 7:
        return [digits[:3], digits[3:]]
    return [digits]


def _say_telephone(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    plus = False
    groups: list[str] = []  # digit runs and words, in order
    extension: list[str] = []
    for token in _PHONE_TOKEN.finditer(text):
        part = token[0]
        target = extension if extension else groups
        if part.isdecimal() or part in ("*", "#"):
            target.append(part)
        elif part == "+" and not plus and not groups:
            plus = True
        elif part.lower() in _EXTENSION_WORDS and groups and not extension:
            extension.append("")
        elif part.isalpha() and groups and not extension:
            groups.append(part)
        elif not re.fullmatch(_PHONE_SEPARATORS, part):
            return None
    if not any(g.isdecimal() for g in groups) or extension == [""]:
        return None
    if len(groups) == 1 and (not plus or groups[0][:1] == "1"):
        groups = _nanp_groups(groups[0])
    return _phone_words(groups, plus, [g for g in extension if g])


def _phone_words(groups: list[str], plus: bool, extension: list[str]) -> str:
    said: list[str] = []
    area = 1 if groups[0] == "1" else -1 if plus else 0  # where a NANP area code would be
    for index, group in enumerate(groups):
        if group.isdecimal():
            rest = groups[index + 1 : index + 3]
            toll_free = index == area and (len(rest) == 2 or rest[:1] != [] and rest[0].isalpha())
            said.append("eight hundred" if group == "800" and toll_free else num.digits(group))
        elif group in lex.KEYPAD_SYMBOLS:
            said.append(lex.KEYPAD_SYMBOLS[group])
        else:  # a vanity word (`FLOWERS`), or letters to spell
            said.append(group.title() if len(group) >= 3 else _spell(group))
    if plus:
        said[0] = f"plus {said[0]}"
    if extension:
        said.append("extension " + " ".join(_spell(g) for g in extension))
    return ", ".join(said)


# --- money ---------------------------------------------------------------------------------

_Units: TypeAlias = tuple[str, str, str, str]
"""A currency's major unit (one, many) and minor unit (one, many; empty when it has none)."""

_CODES: Final[Mapping[str, str | _Units]] = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CAD": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "AUD": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "NZD": ("New Zealand dollar", "New Zealand dollars", "cent", "cents"),
    "CHF": ("Swiss franc", "Swiss francs", "centime", "centimes"),
    "CNY": ("yuan", "yuan", "fen", "fen"),
    "INR": ("rupee", "rupees", "paisa", "paise"),
    "MXN": ("peso", "pesos", "centavo", "centavos"),
}
"""ISO 4217 codes: a symbol whose words are in `lexicon_en.CURRENCIES`, or the words."""

_CENTS: Final = ("cent", "cents", "", "")
_SCALES: Final = "|".join(sorted(lex.SCALE_SUFFIXES, key=len, reverse=True))
_MONEY: Final = re.compile(
    r"([-−]?)\s?([$€£¥]|[A-Za-z]{3}(?=\s?[-−]?[0-9.]))?\s?([-−]?)\s?"
    rf"({_INTEGER})?(?:\.([0-9]+))?(?:\s?({_SCALES})(?![A-Za-z]))?\s?([$€£¥¢]|[A-Za-z]{{3}})?"
)


def _units(unit: str) -> _Units | None:
    if unit == "¢":
        return _CENTS
    found = _CODES.get(unit.upper(), unit)
    if isinstance(found, tuple):
        return found
    return lex.CURRENCIES.get(found)


def _say_currency(text: str, hint: SayAs, options: EnglishOptions) -> str | None:
    match = _MONEY.fullmatch(text) if len(text) <= MAX_FIELD_CHARS else None
    if match is None or not (match[4] or match[5]) or (match[1] and match[3]):
        return None
    before, after = match[2] or "", match[7] or ""
    written = before or after or hint.format or ""
    units = _units(written) if not (before and after) else None
    if units is None or (written == "¢" and match[6]):
        return None
    sign = "minus " if match[1] or match[3] else ""
    return sign + _money_words((match[4] or "").replace(",", ""), match[5] or "", match[6], units)


def _money_words(integer: str, fraction: str, scale: str | None, units: _Units) -> str:
    one, many, cent, cents = units
    if scale:
        return f"{_number_words(integer, fraction)} {lex.SCALE_SUFFIXES[scale]} {many}"
    if len(integer) > MAX_CARDINAL_DIGITS or (fraction and (len(fraction) != 2 or not cent)):
        return f"{_number_words(integer, fraction)} {many}"
    major, minor = int(integer or "0"), int(fraction or "0")
    parts: list[str] = []
    if major or not minor:
        parts.append(f"{num.cardinal(major)} {one if major == 1 else many}")
    if minor:
        parts.append(f"{num.cardinal(minor)} {cent if minor == 1 else cents}")
    return " and ".join(parts)


_Reader = Callable[[str, SayAs, EnglishOptions], str | None]

_READERS: Final[Mapping[str, _Reader]] = {
    "characters": _say_characters,
    "spell-out": _say_characters,
    "digits": _say_digits,
    "cardinal": _say_cardinal,
    "ordinal": _say_ordinal,
    "date": _say_date,
    "time": _say_time,
    "telephone": _say_telephone,
    "currency": _say_currency,
}
"""`interpret-as` → its reader (None: the text does not fit the hint)."""
