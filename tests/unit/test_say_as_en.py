"""SSML `<say-as>` in English (models/text/say_as_en): every hint, its formats, the fallback to
the normalizer for values that do not fit, and hostile spans (long, empty, only symbols)."""

from __future__ import annotations

import datetime
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from timing import least_cpu_s
from utterd.models.text import lexicon_en as lex
from utterd.models.text import numbers_en as num
from utterd.models.text.normalize_en import EnglishOptions, normalize
from utterd.models.text.say_as_en import say_as
from utterd.models.text.segments import SayAs

GB = EnglishOptions(date_order="dmy")
HINTS = ("characters", "spell-out", "digits", "cardinal", "ordinal", "date", "time")
ALL_HINTS = (*HINTS, "telephone", "currency")


def said(interpret_as: str, text: str, format_: str | None = None) -> str:
    return say_as(text, SayAs(interpret_as, format_))


@pytest.mark.parametrize(
    ("interpret_as", "format_", "text", "expected"),
    [
        ("characters", None, "abc-12 #x@", "Eh B C dash one two, pound X at"),
        ("characters", None, "ZIP 94107", "Z I P, nine four one zero seven"),
        ("characters", None, "j.doe_1", "J dot D O E underscore one"),
        ("characters", None, "é§", "É section sign"),
        ("spell-out", None, "USA", "U S Eh"),
        ("spell-out", None, "R2-D2", "R two dash D two"),
        ("digits", None, "1234 5678", "one two three four, five six seven eight"),
        ("digits", None, "0198", "zero one nine eight"),
        ("digits", None, "3.14", "three point one four"),
        ("digits", None, "10.0.0.1", "one zero dot zero dot zero dot one"),
        ("digits", None, "*72#", "star seven two pound"),
        ("digits", None, "٣٤", "three four"),
        ("cardinal", None, "1284", "one thousand two hundred eighty-four"),
        ("cardinal", None, "-1,284.57", "minus one thousand two hundred eighty-four point five seven"),
        ("cardinal", None, "−3", "minus three"),
        ("cardinal", None, "+3", "plus three"),
        ("cardinal", None, "007", "seven"),
        ("cardinal", None, ".5", "point five"),
        ("cardinal", None, "3,500,000", "three million five hundred thousand"),
        ("cardinal", None, "1000000000000001", "one " + "zero " * 14 + "one"),  # 16 digits
        ("ordinal", None, "3", "third"),
        ("ordinal", None, "3rd", "third"),
        ("ordinal", None, "21ST", "twenty-first"),
        ("ordinal", None, "1,000th", "one thousandth"),
        ("ordinal", None, "0", "zeroth"),
        ("date", None, "2027-01-31", "January thirty-first, twenty twenty-seven"),
        ("date", None, "10/04/2027", "October fourth, twenty twenty-seven"),
        ("date", None, "13/04/2027", "April thirteenth, twenty twenty-seven"),
        ("date", None, "10/04", "October fourth"),
        ("date", None, "Sat., Oct. 4, 2027", "Saturday, October fourth, twenty twenty-seven"),
        ("date", None, "4 October 2027", "October fourth, twenty twenty-seven"),
        ("date", None, "the 4th of July", "July fourth"),
        ("date", None, "1998", "nineteen ninety-eight"),
        ("date", None, "02/29/2028", "February twenty-ninth, twenty twenty-eight"),
        ("date", "dmy", "31.12.99", "December thirty-first, nineteen ninety-nine"),
        ("date", "dmy", "4 Oct 2027", "October fourth, twenty twenty-seven"),
        ("date", "ymd", "2027 1 5", "January fifth, twenty twenty-seven"),
        ("date", "ydm", "2027/31/12", "December thirty-first, twenty twenty-seven"),
        ("date", "mdy", "1-5-05", "January fifth, two thousand five"),
        ("date", "ym", "2027-10", "October twenty twenty-seven"),
        ("date", "my", "12/99", "December nineteen ninety-nine"),
        ("date", "md", "Oct 4", "October fourth"),
        ("date", "dm", "4/10", "October fourth"),
        ("date", "d", "4", "the fourth"),
        ("date", "m", "10", "October"),
        ("date", "y", "1905", "nineteen oh five"),
        ("time", None, "1:05 PM", "one oh five P M"),
        ("time", None, "7pm", "seven P M"),
        ("time", None, "12:00 a.m.", "twelve Eh M"),
        ("time", None, "3:00", "three o'clock"),
        ("time", None, "13:00", "thirteen hundred"),
        ("time", None, "00:00", "midnight"),
        ("time", None, "0:30", "twelve thirty Eh M"),
        ("time", None, "1330", "thirteen thirty"),
        ("time", None, "9.45", "nine forty-five"),
        ("time", "hms24", "13:30:15", "thirteen thirty and fifteen seconds"),
        ("time", "hms12", "11:59:01 pm", "eleven fifty-nine and one second P M"),
        ("time", "hm12", "10:10", "ten ten"),
        ("telephone", None, "(555) 234-0198", "five five five, two three four, zero one nine eight"),
        ("telephone", None, "5552340198", "five five five, two three four, zero one nine eight"),
        ("telephone", None, "1-800-555-0198", "one, eight hundred, five five five, zero one nine eight"),
        ("telephone", None, "+1 800 555 0198", "plus one, eight hundred, five five five, zero one nine eight"),
        ("telephone", None, "+14155550198", "plus one, four one five, five five five, zero one nine eight"),
        ("telephone", None, "+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
        ("telephone", None, "800-1234", "eight zero zero, one two three four"),
        ("telephone", None, "1-800-FLOWERS", "one, eight hundred, Flowers"),
        ("telephone", None, "555-0198 ext. 12", "five five five, zero one nine eight, extension one two"),
        ("telephone", None, "555.0198 x7", "five five five, zero one nine eight, extension seven"),
        ("telephone", None, "*67", "star, six seven"),
        ("currency", None, "$12.50", "twelve dollars and fifty cents"),
        ("currency", None, "$1,284.57", "one thousand two hundred eighty-four dollars and fifty-seven cents"),
        ("currency", None, "12.50 USD", "twelve dollars and fifty cents"),
        ("currency", None, "EUR 3", "three euros"),
        ("currency", None, "3 €", "three euros"),
        ("currency", None, "€3.01", "three euros and one cent"),
        ("currency", None, "£0.99", "ninety-nine pence"),
        ("currency", None, "£1.01", "one pound and one penny"),
        ("currency", None, "¥1,000", "one thousand yen"),
        ("currency", None, "¥12.50", "twelve point five zero yen"),
        ("currency", None, "$1", "one dollar"),
        ("currency", None, "$0.00", "zero dollars"),
        ("currency", None, "-$5", "minus five dollars"),
        ("currency", None, "$-5", "minus five dollars"),
        ("currency", None, "$27k", "twenty-seven thousand dollars"),
        ("currency", None, "$1.5 million", "one point five million dollars"),
        ("currency", None, "99¢", "ninety-nine cents"),
        ("currency", None, "3 CHF", "three Swiss francs"),
        ("currency", "EUR", "12.5", "twelve point five euros"),
        ("currency", "usd", "2.25", "two dollars and twenty-five cents"),
    ],
)  # fmt: skip
def test_each_hint_says_the_words(
    interpret_as: str, format_: str | None, text: str, expected: str
) -> None:
    assert said(interpret_as, text, format_) == expected


@pytest.mark.parametrize(
    ("interpret_as", "format_", "text", "expected"),
    [
        ("date", None, "10/04/2027", "the tenth of April, twenty twenty-seven"),
        ("date", None, "10/04", "the tenth of April"),
        ("date", None, "4/13", "the thirteenth of April"),
        ("date", "mdy", "10/04/2027", "the fourth of October, twenty twenty-seven"),
        ("date", None, "Sat 4 Oct", "Saturday, the fourth of October"),
        ("date", "ym", "2027-10", "October twenty twenty-seven"),
    ],
)
def test_dates_are_said_in_the_configured_order(
    interpret_as: str, format_: str | None, text: str, expected: str
) -> None:
    assert say_as(text, SayAs(interpret_as, format_), GB) == expected


@pytest.mark.parametrize(
    ("interpret_as", "format_", "text"),
    [
        ("date", None, "banana"),
        ("date", None, "02/30/2027"),
        ("date", None, "2027-13-01"),
        ("date", "dmy", "10/2027"),
        ("date", "md", "4th/10"),
        ("date", None, "Oct Nov 4"),
        ("date", None, "12345"),
        ("time", None, "25:00"),
        ("time", None, "1:60"),
        ("time", None, "0:30 pm"),
        ("time", "hms12", "13:30"),
        ("time", None, "noon"),
        ("cardinal", None, "1,23"),
        ("cardinal", None, "twelve"),
        ("cardinal", None, "12k"),
        ("ordinal", None, "-1"),
        ("ordinal", None, "first"),
        ("digits", None, "A12"),
        ("digits", None, "none"),
        ("telephone", None, "call me"),
        ("telephone", None, "555 ext."),
        ("telephone", None, "5+5"),
        ("telephone", None, "$5"),
        ("currency", None, "12.50"),
        ("currency", None, "$12 USD"),
        ("currency", None, "5 BTC"),
        ("currency", None, "-$-5"),
        ("currency", None, "$1.5k¢"),
        ("verbatim", None, "$12.50 at 1:05 PM"),
    ],
)
def test_a_value_that_does_not_fit_is_normalized(
    interpret_as: str, format_: str | None, text: str
) -> None:
    for options in (EnglishOptions(), GB):
        assert say_as(text, SayAs(interpret_as, format_), options) == normalize(text, options)


def test_the_fallback_uses_the_options_lexicon() -> None:
    options = EnglishOptions(lexicon={"Acme": "Ack me"})
    assert say_as("Acme", SayAs("date"), options) == "Ack me"
    assert say_as("Acme", SayAs("characters"), options) == "Eh C M E"


def test_spelling_ignores_case_and_says_each_letter_as_one_word() -> None:
    for letters in (string.ascii_lowercase, string.ascii_uppercase):
        words = said("characters", letters).split()
        assert len(words) == 26
        assert words[0] == "Eh" and words[1:] == list(string.ascii_uppercase[1:])
    assert said("spell-out", "Hello World") == said("characters", "HELLO world")


@pytest.mark.parametrize("text", ["", " ", "\t\n "])
def test_blank_text_says_nothing(text: str) -> None:
    for interpret_as in ALL_HINTS:
        assert said(interpret_as, text) == ""


def test_only_symbols() -> None:
    assert said("characters", "#*+") == "pound star plus"
    assert said("characters", "?!") == "question mark exclamation mark"
    assert said("characters", "\u200b\u0301") == normalize("\u200b\u0301")  # nothing to say
    for interpret_as in ALL_HINTS[2:]:
        assert said(interpret_as, "-/.,") == normalize("-/.,")


def test_symbols_named_by_unicode_have_no_code_point_numbers() -> None:
    assert said("characters", "→") == "rightwards arrow"
    assert said("characters", "⠿") == normalize("⠿")  # BRAILLE PATTERN DOTS-123456: unsaid


# --- properties ------------------------------------------------------------------------------

_PIECES = list("0123456789$€£¥¢.,:;/-–#*+@&%()' aAmMpPkKsStThHxXeE٣") + [
    "Oct", "Sat", "th", "rd", "USD", "EUR", "ext", "k", "million", "a.m.", "PM", "😀", "ß",
]  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.sampled_from(ALL_HINTS),
    st.sampled_from([None, "mdy", "dmy", "ymd", "ydm", "ym", "my", "md", "dm", "d", "m", "y",
                     "hms12", "hms24", "USD", "JPY", "bad"]),
    st.lists(st.sampled_from(_PIECES), max_size=24).map("".join) | st.text(max_size=40),
    st.sampled_from([EnglishOptions(), GB]),
)  # fmt: skip
def test_any_span_is_said_without_ascii_digits(
    interpret_as: str, format_: str | None, text: str, options: EnglishOptions
) -> None:
    spoken = say_as(text, SayAs(interpret_as, format_), options)
    assert not re.search(r"[0-9]", spoken), (interpret_as, format_, text, spoken)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dates(min_value=datetime.date(1100, 1, 1), max_value=datetime.date(9999, 12, 31)))
def test_any_real_date_is_said_in_every_written_order(day: datetime.date) -> None:
    month = lex.MONTHS[day.month - 1]
    expected = f"{month} {num.ordinal(day.day)}, {num.year(day.year)}"
    d, m, y = f"{day.day:02}", f"{day.month:02}", str(day.year)
    assert said("date", f"{y}-{m}-{d}") == expected
    assert said("date", f"{m}/{d}/{y}", "mdy") == expected
    assert said("date", f"{d}.{m}.{y}", "dmy") == expected
    assert said("date", f"{y} {d} {m}", "ydm") == expected
    assert said("date", f"{day.day} {month[:3]} {y}", "dmy") == expected
    gb = f"the {num.ordinal(day.day)} of {month}, {num.year(day.year)}"
    assert say_as(f"{d}/{m}/{y}", SayAs("date"), GB) == gb


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_cardinals_read_the_same_with_or_without_thousands_separators(n: int) -> None:
    assert said("cardinal", f"{n:,}") == said("cardinal", str(n)) == num.cardinal(n)
    if n >= 0:
        assert said("ordinal", f"{n:,}th") == num.ordinal(n)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_a_24_hour_time_and_its_12_hour_form_name_the_same_minute(hour: int, minute: int) -> None:
    half = "AM" if hour < 12 else "PM"
    said_half = " Eh M" if hour < 12 else " P M"
    twelve = said("time", f"{(hour + 11) % 12 + 1}:{minute:02} {half}")
    assert twelve.startswith(num.cardinal((hour + 11) % 12 + 1) + " ")
    assert twelve.endswith(said_half)
    words = said("time", f"{hour:02}:{minute:02}", "hm24")
    if minute:
        last = twelve.removesuffix(said_half).split()[-1]
        assert words.removesuffix(" Eh M").split()[-1] == last == num.cardinal(minute)


# --- cost ------------------------------------------------------------------------------------


def _least_cpu_s(hint: SayAs, *texts: str) -> list[float]:
    """The least CPU time of reading each text as `hint` (tests/timing.py)."""
    return least_cpu_s(*(lambda text=text: say_as(text, hint) for text in texts))


def test_a_hundred_thousand_digits_are_read_one_by_one_in_well_under_a_second() -> None:
    digits = "9" * 100_000
    for interpret_as in ("digits", "cardinal", "telephone", "characters"):
        hint = SayAs(interpret_as)
        assert said(interpret_as, digits) == " ".join(["nine"] * 100_000)
        assert _least_cpu_s(hint, digits)[0] < 0.5, interpret_as


_HOSTILE_UNITS = [
    "1", "a", "-", "1-", "$1", "#", "1:", "+", "1/", "Oct ", "1 ", "é", "1$", "*a", "A1 ",
]  # fmt: skip


@pytest.mark.parametrize("interpret_as", ALL_HINTS)
def test_cost_is_linear_in_the_span(interpret_as: str) -> None:
    hint = SayAs(interpret_as)
    for unit in _HOSTILE_UNITS:
        for _ in range(3):  # measured again while 4 times the span takes 8 times as long or more
            small, large = _least_cpu_s(hint, unit * 500, unit * 2_000)
            if large < 8 * small + 0.02:
                break
        assert large < 8 * small + 0.02, (unit, small, large)  # a quadratic reader: 16 times
