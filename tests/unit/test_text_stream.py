"""Streamed text (speak-start / speak-chunk / speak-stop): sentences come out as they complete."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon.speech.text_stream import (
    PendingTextTooLong,
    StreamClosed,
    StreamIdle,
    TextStream,
)
from utterd.models.errors import Cancelled
from utterd.models.text.segments import Sentence, TextSegment
from utterd.models.text.ssml import InvalidSsml
from utterd.models.voice import CancelToken


def _all(stream: TextStream) -> list[str | Sentence]:
    out: list[str | Sentence] = []
    while (s := stream.next_sentence(CancelToken(), 1.0)) is not None:
        out.append(s)
    return out


def test_abbreviations_decimals_and_times_do_not_end_a_sentence() -> None:
    stream = TextStream(1000)
    stream.feed("Open Sat., Oct. 4 from 9 a.m. to $3.25 off. Call Dr. Smith. ")
    stream.feed("Then hang up.")
    stream.close()
    assert _all(stream) == [
        "Open Sat., Oct. 4 from 9 a.m. to $3.25 off.",
        "Call Dr. Smith.",
        "Then hang up.",
    ]


def test_a_long_text_in_small_pieces_costs_linear_time() -> None:
    def feed_all(sentences: int) -> float:
        stream = TextStream(10_000_000)
        text = "Word word word, word word. " * sentences
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for start in range(0, len(text), 7):
                stream.feed(text[start : start + 7])
            best = min(best, time.perf_counter() - t0)
        return best

    small, large = feed_all(400), feed_all(4000)
    assert large / small < 20, (small, large)  # 10x the text; quadratic would be ~100x


def test_ssml_sentences_come_out_as_the_parser_completes_them() -> None:
    stream = TextStream(1000, "ssml")
    stream.feed("<speak><s>One</s><s>Tw")
    first = stream.next_sentence(CancelToken(), 1.0)
    assert isinstance(first, Sentence)
    assert [seg.text for seg in first.segments if isinstance(seg, TextSegment)] == ["One"]
    stream.feed("o</s></speak>")
    stream.close()
    rest = _all(stream)
    assert len(rest) == 1 and isinstance(rest[0], Sentence)


def test_malformed_ssml_fails_the_piece_then_the_reader() -> None:
    stream = TextStream(1000, "ssml")
    stream.feed("<speak><s>One.</s>")
    with pytest.raises(InvalidSsml) as bad:
        stream.feed("<s>x</p>")
    assert bad.value.code == "invalid-ssml" and bad.value.line == 1
    assert stream.next_sentence(CancelToken(), 1.0) is not None  # what was complete is said
    with pytest.raises(InvalidSsml):
        stream.next_sentence(CancelToken(), 1.0)
    with pytest.raises(InvalidSsml):
        stream.feed("more")


def test_an_incomplete_ssml_document_fails_at_its_close() -> None:
    stream = TextStream(1000, "ssml")
    stream.feed("<speak><s>One.")
    with pytest.raises(InvalidSsml):
        stream.close()


def test_a_sentence_is_complete_at_its_mark_and_a_space_or_at_the_stop() -> None:
    stream = TextStream(1000)
    stream.feed("Hello there")
    stream.feed(". How are")
    stream.feed(" you? Fine!\nThe end. 3.5 is a number and no sentence")
    stream.close()
    assert _all(stream) == [
        "Hello there.",
        "How are you?",
        "Fine!",
        "The end.",
        "3.5 is a number and no sentence",
    ]


def test_the_first_sentence_comes_before_the_text_is_closed() -> None:
    stream = TextStream(1000)
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(stream.next_sentence(CancelToken(), 10)))
    reader.start()
    stream.feed("One. Two")
    reader.join(5)
    assert got == ["One."]
    assert not stream.closed


def test_idle_stream_fails_and_a_stop_wakes_the_reader() -> None:
    stream = TextStream(1000)
    with pytest.raises(StreamIdle):
        stream.next_sentence(CancelToken(), 0.1)
    cancel = CancelToken()

    def stop() -> None:
        cancel.cancel("stopped")
        stream.abort()

    threading.Timer(0.05, stop).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        stream.next_sentence(cancel, 30)
    assert time.monotonic() - t0 < 5


def test_closed_and_too_long() -> None:
    stream = TextStream(10)
    stream.feed("12345")
    with pytest.raises(PendingTextTooLong) as too_long:
        stream.feed("123456")
    assert too_long.value.code == "text-too-long"  # the wire code of the protocol's limit
    stream.close()
    with pytest.raises(StreamClosed):
        stream.feed("x")
    with pytest.raises(StreamClosed):
        stream.close()


@given(st.text(alphabet="abAB3 .!?\n", max_size=60), st.data())
def test_pieces_cut_where_the_whole_text_cuts_and_lose_nothing(
    text: str, data: st.DataObject
) -> None:
    """However the text is split into pieces, every sentence end of the whole text is one of
    the pieces' too (a piece may also end at a mark and a space it could not see past), and
    no word is lost."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    whole = TextStream(1000)
    whole.feed(text)
    whole.close()
    pieces = TextStream(1000)
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        pieces.feed(text[a:b])
    pieces.close()

    def ends(sentences: list[str | Sentence]) -> set[int]:
        counts = [len(str(sentence).split()) for sentence in sentences]
        return {sum(counts[: i + 1]) for i in range(len(counts))}

    expected, got = _all(whole), _all(pieces)
    assert " ".join(map(str, got)).split() == text.split()
    assert ends(expected) <= ends(got)


def test_a_sentence_end_and_a_space_at_the_end_of_what_came_is_spoken_at_once() -> None:
    stream = TextStream(1000)
    stream.feed("The first sentence is all there is. ")
    assert stream.next_sentence(CancelToken(), 1.0) == "The first sentence is all there is."
    stream.feed("Open Sat. ")  # an abbreviation waits for what follows
    stream.feed("Oct. 4. ")
    assert stream.next_sentence(CancelToken(), 1.0) == "Open Sat. Oct. 4."
