"""Chinese text normalization (models/text/normalize_zh): written forms read as Chinese words.

Every category of issue 19 is checked as the words produced; the readings are the ones a
Mandarin speaker uses (`两` before measure words, years by digits, phone digits with `幺`).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from timing import growth
from utterd.models.text.normalize_zh import cardinal, normalize_zh

CASES = {
    "numbers": [
        ("0", "零"),
        ("10", "十"),
        ("15", "十五"),
        ("110", "一百一十"),
        ("1001", "一千零一"),
        ("2000", "两千"),
        ("12200", "一万两千二百"),
        ("100010", "十万零一十"),
        ("共1,000,000人", "共一百万人"),
        ("123456789", "一亿两千三百四十五万六千七百八十九"),
        ("100000000", "一亿"),
        ("3.14", "三点一四"),
        ("0.25", "零点二五"),
        ("-12.05", "负十二点零五"),
        ("1.5倍", "一点五倍"),
        ("2.5小时", "二点五小时"),
        ("007", "零零七"),
        ("12345678901234567890", "一二三四五六七八九零一二三四五六七八九零"),
    ],
    "measure words": [
        ("2个", "两个"),
        ("2小时", "两小时"),
        ("12个", "十二个"),
        ("第2个", "第二个"),
        ("2月", "二月"),
        ("第1名", "第一名"),
    ],
    "dates": [
        ("2026年12月6日", "二零二六年十二月六日"),
        ("2026-12-06", "二零二六年十二月六日"),
        ("2026/12/6", "二零二六年十二月六日"),
        ("12月6日", "十二月六日"),
        ("3年", "三年"),
        ("90年代", "九十年代"),
        ("2020-2026年", "二零二零到二零二六年"),
    ],
    "times": [
        ("14:30", "十四点三十分"),
        ("8:05", "八点零五分"),
        ("14:00", "十四点"),
        ("2:00", "两点"),
        ("0:30", "零点三十分"),
        ("12:30:05", "十二点三十分零五秒"),
        ("9:00-18:00", "九点到十八点"),
        ("14：30", "十四点三十分"),
    ],
    "money": [
        ("¥38.50", "三十八元五角"),
        ("¥38.05", "三十八元零五分"),
        ("¥38.55", "三十八元五角五分"),
        ("¥0.5", "五角"),
        ("¥2", "两元"),
        ("￥1,200", "一千二百元"),
        ("¥3.5万", "三点五万元"),
        ("38.5元", "三十八点五元"),
        ("2元", "两元"),
        ("156.80元", "一百五十六点八元"),
        ("30.00元", "三十元"),
        ("-5元", "负五元"),
        ("$12", "十二美元"),
        ("$12.50", "十二点五美元"),
        ("€5", "五欧元"),
        ("HK$100", "一百港元"),
    ],
    "phone numbers": [
        ("13812345678", "幺三八 幺二三四 五六七八"),
        ("138-1234-5678", "幺三八 幺二三四 五六七八"),
        ("010-12345678", "零幺零 幺二三四五六七八"),
        ("400-123-4567", "四零零 幺二三 四五六七"),
        ("请拨打110", "请拨打幺幺零"),
        ("验证码是123456", "验证码是幺二三四五六"),
        ("房间1201", "房间幺二零幺"),
        ("A座1201室", "A座幺二零幺室"),
        ("+86 13812345678", "加八六 幺三八 幺二三四 五六七八"),
    ],
    "percentages": [
        ("50%", "百分之五十"),
        ("12.5%", "百分之十二点五"),
        ("-3%", "负百分之三"),
        ("10%-20%", "百分之十到百分之二十"),
        ("10-20%", "百分之十到百分之二十"),
        ("5‰", "千分之五"),
    ],
    "temperatures": [
        ("-3℃", "零下三摄氏度"),
        ("25°C", "二十五摄氏度"),
        ("25 °C", "二十五摄氏度"),
        ("-3~5℃", "零下三到五摄氏度"),
        ("98.6°F", "九十八点六华氏度"),
        ("30°", "三十度"),
        ("-3度", "零下三度"),
    ],
    "units": [
        ("10km", "十公里"),
        ("2kg", "两公斤"),
        ("500g", "五百克"),
        ("5m²", "五平方米"),
        ("100km/h", "一百公里每小时"),
        ("1.5L", "一点五升"),
        ("30min", "三十分钟"),
        ("220V", "两百二十伏"),
        ("5G网络", "五G网络"),
    ],
    "fractions and ratios": [
        ("3/4", "四分之三"),
        ("1/3", "三分之一"),
        ("12/6", "十二月六日"),
        ("16:9", "十六比九"),
        ("7*24小时", "七乘二十四小时"),
        ("1920x1080", "一千九百二十乘一千零八十"),
        ("2×3=6", "二乘三等于六"),
        ("6÷2", "六除以二"),
    ],
    "versions and addresses": [
        ("版本3.0.1", "版本三点零点一"),
        ("192.168.1.1", "一九二点一六八点一点一"),
    ],
    "ranges": [
        ("3-5天", "三到五天"),
        ("3~5天", "三到五天"),
        ("10～20人", "十到二十人"),
    ],
    "symbols": [
        ("按#键", "按井号键"),
        ("按*键", "按星号键"),
        ("3+5=8", "三加五等于八"),
    ],
    "full width": [
        ("１２３４", "一千二百三十四"),
        ("５０％", "百分之五十"),
        ("你好，世界！", "你好，世界！"),
    ],
    "sentences": [
        ("今天是2026年12月6日，气温-3℃。", "今天是二零二六年十二月六日，气温零下三摄氏度。"),
        ("请连接Wi-Fi", "请连接Wi-Fi"),
        ("温度25°C", "温度二十五摄氏度"),
        ("您的订单共¥38.50，请于14:30前付款。", "您的订单共三十八元五角，请于十四点三十分前付款。"),
    ],
}


@pytest.mark.parametrize(
    ("written", "said"),
    [pytest.param(w, s, id=f"{kind}:{w}") for kind, pairs in CASES.items() for w, s in pairs],
)
def test_reading(written: str, said: str) -> None:
    assert normalize_zh(written) == said


@pytest.mark.parametrize("text", ["", " ", "，。！？", "你好", "Hello world"])
def test_text_without_numbers_is_unchanged(text: str) -> None:
    assert normalize_zh(text) == text


def test_cardinal_says_two_as_liang_only_where_speakers_do() -> None:
    assert cardinal("200") == "两百"
    assert cardinal("20000") == "两万"
    assert cardinal("120000") == "十二万"
    assert cardinal("22") == "二十二"


_SYMBOLS = ["1", "2", "0", ".", "-", ",", ":", "/", "%", "¥", "$", "℃", "°", "km", "年", "月",
            "日", "个", " ", "~", "+", "#"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_SYMBOLS), max_size=30).map("".join))
def test_no_digit_is_left(text: str) -> None:
    assert not re.search(r"\d", normalize_zh(text)), text


def _linear(small: str, large: str) -> tuple[float, float]:
    """CPU time of `small` and of `large` (4 times as long); quadratic takes 16 times."""
    return growth(lambda: normalize_zh(small), lambda: normalize_zh(large), 8)


_SAMPLE = "".join(w for pairs in CASES.values() for w, _ in pairs)


def test_cost_is_linear_in_the_text_length() -> None:
    small, large = _linear((_SAMPLE * 100)[:25_000], (_SAMPLE * 400)[:100_000])
    assert large < 8 * small + 0.05, f"4x the text took {large / small:.1f}x the time"


@pytest.mark.parametrize(
    "unit", ["1", "1-", "1.", "1,", "¥1", "1:", "-", "1/", "年", "12345678901"]
)
def test_hostile_repetition_stays_linear(unit: str) -> None:
    small, large = _linear(unit * 2_500, unit * 10_000)
    assert large < 8 * small + 0.05, (unit, small, large)
