"""Chinese text normalization: written numbers, dates, times, money and units become the
Chinese words a listener should hear, so that the pinyin front end (`g2p_zh`) reads only Han
characters.

API: `normalize_zh(text: str) -> str`; `NORMALIZER_VERSION` names what it says (phrase-cache
key). Latin words are left as they are (`lang_spans` routes them to an English voice).

It is one pass of `rewrite.Rewriter` over the text (bounded patterns, a few characters of
context), so its cost is linear in the text length. Numbers are read by `cn2an` (up to 16
digits: `一亿二千三百四十五万...`), imported on the first number (0.1 s), so that importing this
module (as `lang_spans` does for `UNITS`) costs nothing; everything around the numbers is
utterd's own rules. Choices a
listener will notice, and why:

- Full-width digits, letters and symbols (`１２３`, `％`, `＄`) are read as their ASCII forms;
  Chinese punctuation (`，。！？；：`) stays, since the pinyin front end pauses at it.
- `2` is `两` where speakers say so: before a measure word (`2个` → 两个, `2小时`, `2kg` → 两公斤),
  as an hour (`2:00` → 两点), as yuan (`¥2` → 两元), and as the leading digit before
  `百/千/万/亿` (`2000` → 两千, `12200` → 一万两千二百); `第2` and `2月` stay `二`.
- A four-digit number before `年` is a year, read digit by digit (`2026年` → 二零二六年); a
  shorter one is a count (`3年` → 三年). `2026-12-06` and `2026/12/6` are dates.
- Times: `14:30` → 十四点三十分, `8:05` → 八点零五分, `14:00` → 十四点.
- Money: `¥38.50` → 三十八元五角 (yuan, jiao, fen, as a till says it); `38.5元` is read as
  written, 三十八点五元 (`156.80元` without the trailing zero); `$12` → 十二美元 (also `€`
  欧元, `£` 英镑, `HK$` 港元).
- Phone numbers (a mobile number `1[3-9]` + 9 digits, a `0xx-` landline, `400-`/`800-`
  numbers, and any number after a code word such as `电话`, `验证码`, `订单号`, `航班`) are
  read digit by digit with `1` as `幺`, groups separated by a space (a short pause).
- `50%` → 百分之五十, `10%-20%` and `10-20%` → 百分之十到百分之二十; `-3℃` → 零下三摄氏度
  (a negative temperature, or a negative number before `度`, is `零下`; any other
  negative number `负`); `25°` → 二十五度.
- Units after a number are read in Chinese (`km` 公里, `kg` 公斤, `m²` 平方米, `km/h`
  公里每小时); a Latin word that is not a unit stays Latin.
- `3/4` → 四分之三; `3-5天` and `9:00~18:00` → 三到五天, 九点到十八点.
- A number with a leading zero (`007`) or more than 16 digits is read digit by digit.
- A colon between numbers that make no time is `比` (`16:9`, a score `3:2`); `*`, `×` or `x`
  between numbers is `乘` (`7*24小时`, `1920x1080`).
- `3.0.1` is a version (三点零点一), four dotted parts an IP address read by digits
  (一九二点一六八点一点一); `+86 ` a country code by digits (加八六); a number of 3-5 digits
  before `室` or `号房` a room, by digits (幺二零幺室).
- `#` and `*` are 井号 and 星号 (IVR keys), `+` before a digit 加, `=` 等于.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Final

from utterd.models.text.rewrite import Rewriter, Rule, Span

NORMALIZER_VERSION: Final = 3
"""Bumped whenever normalization changes what is said (for phrase-cache keys)."""

DIGITS: Final = "零一二三四五六七八九"
"""The Chinese digits 0-9, as a count reads them."""

PHONE_DIGITS: Final = "零幺二三四五六七八九"
"""The digits as a phone number, code or room number reads them (1 is 幺)."""

UNITS: Final[dict[str, str]] = {
    "km/h": "公里每小时",
    "m/s": "米每秒",
    "km²": "平方公里",
    "m²": "平方米",
    "cm²": "平方厘米",
    "m³": "立方米",
    "cm³": "立方厘米",
    "kWh": "千瓦时",
    "mAh": "毫安时",
    "kHz": "千赫兹",
    "MHz": "兆赫兹",
    "GHz": "吉赫兹",
    "km": "公里",
    "KM": "公里",
    "cm": "厘米",
    "mm": "毫米",
    "kg": "公斤",
    "KG": "公斤",
    "Kg": "公斤",
    "mg": "毫克",
    "ml": "毫升",
    "mL": "毫升",
    "ms": "毫秒",
    "min": "分钟",
    "Hz": "赫兹",
    "kW": "千瓦",
    "dB": "分贝",
    "m": "米",
    "g": "克",
    "t": "吨",
    "L": "升",
    "h": "小时",
    "s": "秒",
    "W": "瓦",
    "V": "伏",
}
"""Units read after a number (case matters: `M` is not metres); `lang_spans` keeps them in the
Chinese span of their number."""

MEASURE_WORDS: Final = frozenset(
    "个只本位次件条张天年岁名人种台辆双把块杯元角分秒周页层套份项场颗棵座间句首部支枚瓶碗箱袋盒"
)
"""Measure words and units after which `2` is `两` (`2个` → 两个)."""

_MEASURE_PHRASES: Final = ("小时", "分钟", "公里", "公斤", "米", "千米", "星期", "倍")

CODE_WORDS: Final = (
    "手机号码",
    "电话号码",
    "手机号",
    "手机",
    "电话",
    "热线",
    "拨打",
    "致电",
    "号码",
    "编号",
    "房间",
    "房号",
    "工号",
    "学号",
    "验证码",
    "密码",
    "订单号",
    "单号",
    "尾号",
    "账号",
    "卡号",
    "邮编",
    "航班",
    "车次",
    "分机",
)
"""Words after which a number is a code, read digit by digit."""

_CURRENCIES: Final = {"$": "美元", "US$": "美元", "HK$": "港元", "€": "欧元", "£": "英镑"}
_YUAN: Final = r"(?:[¥￥]|RMB ?|CNY ?)"

# Full-width ASCII forms → ASCII, except the Chinese punctuation the pinyin front end reads.
_FULL_WIDTH: Final = {
    code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if chr(code) not in "，！？；：（）"
}
_FULL_WIDTH[0x3000] = ord(" ")

# Bounded building blocks (see rewrite.py).
_INT: Final = r"(?:\d{1,3}(?:,\d{3}){1,5}(?![\d,])|\d{1,24})"
_NUM: Final = rf"{_INT}(?:\.\d{{1,12}})?"
_SIGN: Final = r"[-−]"
_TO: Final = r"\s?[-~～—–]\s?"
_TEMPERATURE_UNIT: Final = r"(℃|°C|℉|°F|°)"


def normalize_zh(text: str) -> str:
    """The text with numbers, dates, times, money, codes and units rewritten in Chinese."""
    spoken = _rewriter().apply(text.translate(_FULL_WIDTH))
    return _SPACE_RUN.sub(" ", spoken)


_SPACE_RUN: Final = re.compile(r" {2,}")


# --- readings ------------------------------------------------------------------------------


def digits(text: str, phone: bool = False) -> str:
    """`text`'s digits one by one (`phone`: 1 as 幺); other characters are dropped."""
    table = PHONE_DIGITS if phone else DIGITS
    return "".join(table[int(c)] for c in text if c.isdigit())


def cardinal(integer: str) -> str:
    """An unsigned integer (`12200`, `1,000`) as a count: `一万两千二百`. A leading zero or more
    than 16 digits is read digit by digit."""
    integer = integer.replace(",", "")
    if len(integer) > 16 or (len(integer) > 1 and integer.startswith("0")):
        return digits(integer)
    words: str = _an2cn()(integer)
    # 两 before 千/万/亿 unless it is the units digit of a ten (十二万), and leading 两百.
    words = _LIANG.sub("两", words)
    return "两百" + words[2:] if words.startswith("二百") else words


_LIANG: Final = re.compile(r"(?<!十)二(?=[千万亿])")


@cache
def _an2cn() -> Callable[[str], str]:
    """cn2an's Arabic → Chinese number reader, imported on first use."""
    import cn2an

    reader: Callable[[str], str] = cn2an.an2cn
    return reader


def number(text: str) -> str:
    """A signed decimal number (`-12.05`, `1,234.5`) as words: `负十二点零五`."""
    sign = ""
    if text[:1] in "-−":
        sign, text = "负", text[1:]
    integer, _, fraction = text.partition(".")
    words = cardinal(integer)
    if fraction:
        words += "点" + digits(fraction)
    return sign + words


def _count(text: str) -> str:
    """`number`, with a lone `2` said `两` (before a measure word or unit)."""
    return "两" if text == "2" else number(text)


def _is_counted(after: str) -> bool:
    """Whether the text after a number starts with a measure word."""
    return after[:1] in MEASURE_WORDS or after.startswith(_MEASURE_PHRASES)


# --- rules ---------------------------------------------------------------------------------


def _code(span: Span) -> str:
    separator = span.group(2)
    return span.group(1) + separator + _phone_groups(span.group(3))


def _phone_groups(text: str) -> str:
    """A phone number or code by digits, its written groups separated by a space; an 11-digit
    mobile number without separators is grouped 3-4-4, as it is said."""
    groups = [g for g in re.split(r"[\s()-]+", text) if g]
    if len(groups) == 1 and len(groups[0]) == 11 and groups[0].startswith("1"):
        number_ = groups[0]
        groups = [number_[:3], number_[3:7], number_[7:]]
    return " ".join(digits(g, phone=True) for g in groups)


def _year(span: Span) -> str:
    return digits(span.group(1))


def _iso_date(span: Span) -> str:
    year, month, day = span.group(1), span.group(2), span.group(3)
    return f"{digits(year)}年{cardinal(str(int(month)))}月{cardinal(str(int(day)))}日"


def _hour(text: str) -> str:
    return "两" if int(text) == 2 else cardinal(str(int(text)))


def _clock(hour: str, minute: str, second: str) -> str:
    """`14:30` → 十四点三十分, `8:05` → 八点零五分, `14:00` → 十四点."""
    words = _hour(hour) + "点"
    for value, unit in ((minute, "分"), (second, "秒")):
        if value and (int(value) or (unit == "分" and second)):
            words += ("零" if int(value) < 10 else "") + cardinal(str(int(value))) + unit
    return words


def _time(span: Span) -> str:
    return _clock(span.group(1), span.group(2), span.group(3))


def _time_range(span: Span) -> str:
    first = _clock(span.group(1), span.group(2), "")
    second = _clock(span.group(3), span.group(4), "")
    return f"{first}到{second}"


def _yuan(span: Span) -> str:
    sign, amount, scale = span.group(1), span.group(2).replace(",", ""), span.group(3)
    prefix = "负" if sign else ""
    integer, _, fraction = amount.partition(".")
    if scale or len(fraction) > 2:
        return f"{prefix}{number(amount)}{scale}元"
    jiao, fen = (fraction + "00")[0], (fraction + "00")[1]
    words = "" if int(integer) == 0 and (jiao != "0" or fen != "0") else _count(integer) + "元"
    if jiao != "0":
        words += _count(jiao) + "角"
    if fen != "0":
        words += ("零" if jiao == "0" and words else "") + _count(fen) + "分"
    return prefix + words


def _foreign_money(span: Span) -> str:
    currency, amount, scale = span.group(1), span.group(2), span.group(3)
    integer, _, fraction = amount.replace(",", "").partition(".")
    fraction = fraction.rstrip("0")
    value = _count(integer) + ("点" + digits(fraction) if fraction else "")
    return f"{value}{scale}{_CURRENCIES[currency]}"


def _amount(span: Span) -> str:
    """A number before 元 or 块 as written, without a decimal's trailing zeros (`156.80元` →
    一百五十六点八元)."""
    integer, _, fraction = span.group(1).partition(".")
    fraction = fraction.rstrip("0")
    return _count(integer) + ("点" + digits(fraction) if fraction else "")


def _percent(span: Span) -> str:
    sign = "负" if span.group(1) else ""
    return f"{sign}百分之{number(span.group(2))}"


def _percent_range(span: Span) -> str:
    return f"百分之{number(span.group(1))}到百分之{number(span.group(2))}"


def _temperature_words(value: str, unit: str) -> str:
    sign = ""
    if value[:1] in "-−":
        sign, value = "零下", value[1:]
    return sign + number(value)


_TEMPERATURE_NAMES: Final = {
    "℃": "摄氏度",
    "°C": "摄氏度",
    "℉": "华氏度",
    "°F": "华氏度",
    "°": "度",
}


def _temperature(span: Span) -> str:
    unit = span.group(2)
    return _temperature_words(span.group(1), unit) + _TEMPERATURE_NAMES[unit]


def _temperature_range(span: Span) -> str:
    unit = span.group(3)
    first = _temperature_words(span.group(1), unit)
    return f"{first}到{_temperature_words(span.group(2), unit)}{_TEMPERATURE_NAMES[unit]}"


def _unit(span: Span) -> str:
    value, unit = span.group(1), span.group(2)
    sign = "负" if value[:1] in "-−" else ""
    return sign + _count(value.lstrip("-−")) + UNITS[unit]


def _fraction(span: Span) -> str:
    """`3/4` → 四分之三; an improper one that is a month and day is a date (`12/6` → 十二月六日)."""
    top, bottom = int(span.group(1)), int(span.group(2))
    if top >= bottom and 1 <= top <= 12 and 1 <= bottom <= 31:
        return f"{cardinal(str(top))}月{cardinal(str(bottom))}日"
    return f"{cardinal(span.group(2))}分之{cardinal(span.group(1))}"


def _number_rule(span: Span) -> str:
    text = span.group()
    bare = text.lstrip("-−")
    if bare == "2" and span.before(1) != "第" and _is_counted(span.after(3)):
        return ("负" if bare != text else "") + "两"
    return number(text)


def _dotted(span: Span) -> str:
    """An IP address (four parts) by digits, a version (`3.0.1`) by numbers, `点` between."""
    parts = span.group().split(".")
    if len(parts) == 4:
        return "点".join(digits(p) for p in parts)
    return "点".join(cardinal(str(int(p))) for p in parts)


def _fixed(words: str) -> Callable[[Span], str]:
    return lambda _span: words


_CODE_WORD: Final = "|".join(CODE_WORDS)
_UNIT: Final = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_CURRENCY: Final = "|".join(re.escape(c) for c in sorted(_CURRENCIES, key=len, reverse=True))
_CLOCK: Final = r"([01]?\d|2[0-4])[:：]([0-5]\d)"

RULES: Final = (
    Rule(
        "code",
        rf"({_CODE_WORD})((?:号码)?(?:是|为)?[:：]?\s?)(\(?\d[\d()]{{0,5}}(?:[ -]?\d{{2,8}}){{0,4}})(?!\d)",
        _code,
    ),
    Rule("mobile", r"(?<!\d)1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)", lambda s: _phone_groups(s.group())),
    Rule(
        "landline",
        r"(?<!\d)(?:\(0\d{2,3}\)\s?|0\d{2,3}-)\d{7,8}(?!\d)|(?<!\d)[48]00-?\d{3}-?\d{4}(?!\d)",
        lambda s: _phone_groups(s.group()),
    ),
    Rule(
        "country code", r"(?<![\d)])\+(\d{1,3})(?=[ -])", lambda s: "加" + digits(s.group(1), True)
    ),
    Rule("room", r"(?<!\d)\d{3,5}(?=室|号房)", lambda s: digits(s.group(), phone=True)),
    Rule("dotted", r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){2,5}(?![\d.])", _dotted),
    Rule(
        "iso date",
        r"(?<!\d)(\d{4})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])(?![\d.])",
        _iso_date,
    ),
    Rule("year", r"(?<!\d)(\d{4})(?=(?:\s?[-~～—–到至]\s?\d{4})?\s?年)", _year),
    Rule("time range", rf"(?<!\d){_CLOCK}{_TO}{_CLOCK}(?![\d:])", _time_range),
    Rule("time", rf"(?<!\d){_CLOCK}(?:[:：]([0-5]\d))?(?![\d:])", _time),
    Rule("yuan", rf"{_YUAN}({_SIGN})?({_NUM})([万亿])?", _yuan),
    Rule("foreign money", rf"({_CURRENCY})\s?({_NUM})([万亿])?", _foreign_money),
    Rule("percent range", rf"({_NUM})%?{_TO}({_NUM})\s?%", _percent_range),
    Rule("percent", rf"({_SIGN})?({_NUM})\s?%", _percent),
    Rule("per mille", rf"({_NUM})\s?‰", lambda s: f"千分之{number(s.group(1))}"),
    Rule(
        "temperature range",
        rf"({_SIGN}?{_NUM})\s?(?:℃|°C)?{_TO}({_SIGN}?{_NUM})\s?{_TEMPERATURE_UNIT}",
        _temperature_range,
    ),
    Rule("temperature", rf"({_SIGN}?{_NUM})\s?{_TEMPERATURE_UNIT}", _temperature),
    Rule("amount in yuan", rf"({_NUM})(?=\s?[元块])", _amount),
    Rule("below zero", rf"{_SIGN}({_NUM})(?=度)", lambda s: "零下" + number(s.group(1))),
    Rule("unit", rf"({_SIGN}?{_NUM})\s?({_UNIT})(?![A-Za-z])", _unit),
    Rule("fraction", r"(?<![\d/])(\d{1,6})/(\d{1,6})(?![\d/])", _fraction),
    Rule("range", r"(?<=[\d%])\s?[-~～—–]\s?(?=\d)", _fixed("到")),
    Rule("ratio", r"(?<=\d)[:：](?=\d)", _fixed("比")),
    Rule("times", r"(?<=\d)\s?[*×xX]\s?(?=\d)|×", _fixed("乘")),
    # The rest of a digit run a bounded pattern stopped in (more than 24 or 12 digits).
    Rule("more digits", r"(?<=\d)\d{1,24}", lambda s: digits(s.group())),
    Rule("number", rf"(?<![A-Za-z\d.]){_SIGN}?{_NUM}|{_NUM}", _number_rule),
    Rule("plus", r"\+(?=\d)", _fixed("加")),
    Rule("hash", r"#", _fixed("井号")),
    Rule("star", r"\*", _fixed("星号")),
    Rule("divided by", r"÷", _fixed("除以")),
    Rule("equals", r"=", _fixed("等于")),
)
"""Every written form and how it is said, tried in this order at each position."""


@lru_cache(maxsize=1)
def _rewriter() -> Rewriter:
    return Rewriter(RULES, space_words=False)
