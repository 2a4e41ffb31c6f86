"""Mixed Chinese/English text cut into language spans (models/text/lang_spans)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from timing import growth
from utterd.models.text.lang_spans import split_language_spans


def spans(text: str) -> list[tuple[str, str]]:
    return [(s.language, s.text) for s in split_language_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请连接Wi-Fi", [("zh", "请连接"), ("en", "Wi-Fi")]),
        ("请连接Ｗｉ－Ｆｉ", [("zh", "请连接"), ("en", "Ｗｉ－Ｆｉ")]),
        ("温度25°C", [("zh", "温度25°C")]),
        ("速度100km/h很快", [("zh", "速度100km/h很快")]),
        ("打开 Bluetooth 设置", [("zh", "打开 "), ("en", "Bluetooth "), ("zh", "设置")]),
        ("请在 5 分钟内连接 Wi-Fi。", [("zh", "请在 5 分钟内连接 "), ("en", "Wi-Fi。")]),
        ("iOS 17发布", [("en", "iOS "), ("zh", "17发布")]),
        ("打开 Bluetooth 5.0 设置", [("zh", "打开 "), ("en", "Bluetooth 5.0 "), ("zh", "设置")]),
        ("我用iPhone15拍照", [("zh", "我用"), ("en", "iPhone15"), ("zh", "拍照")]),
        ("He said 你好 to me", [("en", "He said "), ("zh", "你好 "), ("en", "to me")]),
        ("温度25°C, nice day", [("zh", "温度25°C, "), ("en", "nice day")]),
        ("Run 10 km today", [("en", "Run 10 km today")]),
        ("你好", [("zh", "你好")]),
        ("Hello", [("en", "Hello")]),
        ("123", [("zh", "123")]),
        ("，。！", [("zh", "，。！")]),
        ("", []),
    ],
)
def test_spans(text: str, expected: list[tuple[str, str]]) -> None:
    assert spans(text) == expected


def test_neutral_language_is_the_callers() -> None:
    assert [(s.language, s.text) for s in split_language_spans("123", neutral="en")] == [
        ("en", "123")
    ]


def test_offsets_point_into_the_text() -> None:
    text = "打开 Bluetooth 设置"
    found = split_language_spans(text)
    assert [(s.start, s.end) for s in found] == [(0, 3), (3, 13), (13, 15)]
    assert all(text[s.start : s.end] == s.text for s in found)


_PIECES = ["你好", "Wi-Fi", " ", "25", "°C", "km", "，", "Hello", "。", "x", "5.0", "设置", "-"]


@given(st.lists(st.sampled_from(_PIECES), max_size=20).map("".join))
def test_spans_cover_the_text_in_order_and_alternate(text: str) -> None:
    found = split_language_spans(text)
    assert "".join(s.text for s in found) == text
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    assert all(a.language != b.language for a, b in itertools.pairwise(found))
    assert all(s.text for s in found)


@pytest.mark.parametrize("unit", ["请连接Wi-Fi ", "a", "你", " 5 ", "a你", "25°C", "-"])
def test_cost_is_linear(unit: str) -> None:
    small, large = growth(
        lambda: split_language_spans(unit * 2_500), lambda: split_language_spans(unit * 10_000), 8
    )
    assert large < 8 * small + 0.05, (unit, small, large)
