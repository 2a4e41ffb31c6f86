"""The text guard and the model budgets (models/text): any text becomes bounded, speakable pieces."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from utterd.models.errors import NothingToSay
from utterd.models.text import budget, guard

EN = "en-US"


def test_plain_text_passes_unchanged() -> None:
    text = "Your balance is 42 dollars. Press 1 for more, or 2 to repeat!"
    assert guard.clean(text, EN) == text
    assert list(guard.pieces(text, EN)) == [guard.TextPiece(text, sentence_end=True)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello مرحبا world", "Hello world"),  # another script's letters go
        ("Zoë's café, naïve", "Zoë's café, naïve"),  # Latin letters with marks stay
        ("Door open 😀🎉 now", "Door open now"),  # pictographs go
        ("Rate ★★★★★", "Rate"),
        ("Wait!!!!!!!!", "Wait!!!"),  # a symbol run is cut to three
        ("ＡＢＣ １２３", "ABC 123"),  # fullwidth forms
        ("Room ٣", "Room 3"),  # any decimal digit reads as ASCII
        ("a\u200b\u202eb\x00c", "ab c"),  # format characters dropped, a control separates
        ("e" + "\u0301" * 20, "\u00e9\u0301\u0301"),  # at most two marks after a base
        ("\ud800x", "x"),  # a lone surrogate (JSON allows it) goes
    ],
)
def test_clean(text: str, expected: str) -> None:
    assert guard.clean(text, EN) == expected


def test_languages_keep_their_own_scripts() -> None:
    assert guard.clean("温度25度 Wi-Fi", "zh-CN") == "温度25度 Wi-Fi"
    assert guard.clean("温度25度 Wi-Fi", EN) == "25 Wi-Fi"
    assert guard.clean("Привет", "ru-RU") == "Привет"  # a language the guard does not know


def test_long_words_and_numbers_are_cut() -> None:
    words = guard.clean("x" * 1000, EN).split()
    assert max(len(w) for w in words) <= guard.MAX_WORD_CHARS
    assert "".join(words) == "x" * 1000
    numbers = guard.clean("1234567890" * 10, EN).split()
    assert max(len(n) for n in numbers) <= guard.MAX_NUMBER_DIGITS
    url = guard.clean("https://example.com/a/very/long/path/to/the/page/index.html", EN)
    assert all(len(w) <= guard.MAX_WORD_CHARS for w in url.split())
    assert url.split()[0].endswith("/")  # cut after a natural break


def test_a_chinese_sentence_is_no_overlong_word() -> None:
    # Chinese puts no spaces between words: fifty-four characters with a time in them reach the
    # voice whole (cut as one 54-character "word", 10:00 was split at its colon).
    text = "尊敬的旅客您好本次列车将于明天上午10:00准时从北京南站出发请您提前三十分钟到达车站检票口排队候车谢谢合作"
    assert len(text) > guard.MAX_WORD_CHARS
    assert guard.clean(text, "zh-CN") == text
    # An overlong Latin run inside Chinese text is still cut.
    assert max(len(w) for w in guard.clean("请输入" + "x" * 100, "zh-CN").split()) <= 43


@pytest.mark.parametrize(
    "text", ["مرحبا بالعالم", "你好世界", "😀" * 50, "," * 5000, "★" * 2000, "...!?", " \n\t"]
)
def test_nothing_to_say(text: str) -> None:
    with pytest.raises(NothingToSay) as err:
        guard.check_speakable(text, EN)
    assert err.value.code == "nothing-to-say"
    assert list(guard.pieces(text, EN)) == []


def test_pieces_are_bounded_and_cut_at_sentence_ends() -> None:
    sentence = "The train to the airport leaves from platform four. "
    text = sentence * 40
    pieces = [p.text for p in guard.pieces(text, EN) if p.sentence_end]
    assert all(len(p) <= guard.MAX_PIECE_CHARS for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text.strip()


def test_pieces_cut_a_sentence_without_ends_at_clause_marks_then_spaces() -> None:
    clauses = ", ".join(["one more clause of the list"] * 60)
    cut = list(guard.pieces(clauses, EN))
    assert all(p.text.endswith(",") and not p.sentence_end for p in cut[:-1])
    assert cut[-1].sentence_end
    words = " ".join(["word"] * 400)
    pieces = [p.text for p in guard.pieces(words, EN)]
    assert all(len(p) <= guard.MAX_PIECE_CHARS for p in pieces)
    assert " ".join(pieces).split() == words.split()  # no word was cut


def test_pieces_check_cancellation() -> None:
    from utterd.models.errors import Cancelled
    from utterd.models.voice import CancelToken

    cancel = CancelToken()
    pieces = guard.pieces("Hello there. " * 200, EN, cancel)
    next(pieces)
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(pieces)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=3000))
def test_any_text_gives_bounded_clean_pieces(text: str) -> None:
    for part in guard.pieces(text, EN):
        piece = part.text
        assert 0 < len(piece) <= guard.MAX_PIECE_CHARS
        assert guard.has_speech(piece)
        assert all(len(word) <= guard.MAX_WORD_CHARS for word in piece.split(" "))
        assert not any(c in piece for c in "\x00\n\r\t\u200b\u202e")


HOSTILE = {
    "symbols": "★☆✓✗",
    "emoji": "😀🎉👍🏽",
    "word": "abcdefghijklmnopqrstuvwxyz",
    "commas": ",",
    "dotted": "a.",
    "mixed": "Hello мир مرحبا 世界 שלום ",
    "combining": "e\u0301\u0302\u0303\u0304",
    "digits": "1234567890",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_guard_is_linear_in_its_input(name: str) -> None:
    """A timing oracle with a wide margin: 16x the text must not take 16x16 the time."""

    def cost(chars: int) -> float:
        text = (HOSTILE[name] * chars)[:chars]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            list(guard.pieces(text, EN))
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(2_000), cost(32_000)
    assert large < 16 * 4 * small + 0.05, (small, large)
    assert large < 0.5, f"{name}: 32,000 characters took {large:.3f} s"


def test_budget_split_prefers_the_first_boundary_kind() -> None:
    seq = list("aaaa,aaaa aaaa aaaa,aaaa aaaa")
    parts = list(budget.split(seq, 12, lambda c: c == ",", lambda c: c == " "))
    assert [len(p) for p in parts] and all(len(p) <= 12 for p in parts)
    assert [item for part in parts for item in part] == seq
    assert parts[0][-1] == " "  # no comma in the second half of the first window: a space
    assert "".join(parts[1]).endswith(",")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from("ab ,"), max_size=2000), st.integers(2, 300))
def test_budget_split_keeps_everything_in_bounded_parts(seq: list[str], max_len: int) -> None:
    parts = list(budget.split(seq, max_len, lambda c: c == " "))
    assert all(0 < len(p) <= max_len for p in parts)
    assert [item for part in parts for item in part] == seq


def test_max_audio_grows_with_length_and_slowness() -> None:
    assert budget.max_audio_s(0) == budget.AUDIO_S_FLOOR
    assert budget.max_audio_s(1000) > budget.max_audio_s(100)
    assert budget.max_audio_s(100, rate=0.5) == 2 * budget.max_audio_s(100)
