"""The text front end's entry (models/text/frontend.py) and its options from config."""

from __future__ import annotations

import time

import pytest
from utterd.daemon.config import ConfigError, settings_from_mapping
from utterd.daemon.service import front_end_options
from utterd.daemon.settings import TextSettings
from utterd.models.text import frontend
from utterd.models.text.frontend import FrontEndOptions
from utterd.models.text.normalize_en import NORMALIZER_VERSION, EnglishOptions
from utterd.models.text.segments import SayAs, TextSegment


def test_plain_text_is_normalized_for_english_voices_of_families_without_their_own() -> None:
    options = FrontEndOptions(own_normalizer=frozenset({"hibari"}))
    text = "Pay $5 by 10/04."
    assert frontend.spoken(text, "piper", "en-US", options) == (
        "Pay five dollars by October fourth."
    )
    assert frontend.spoken(text, "hibari", "en-US", options) == text
    assert frontend.spoken(text, "piper", "fr-FR", options) == text


def test_say_as_is_read_for_every_english_family() -> None:
    options = FrontEndOptions(own_normalizer=frozenset({"hibari"}))
    segment = TextSegment("4821", say_as=SayAs("digits"))
    for family in ("piper", "hibari"):
        assert frontend.spoken_segment(segment, family, "en-GB", options) == ("four eight two one")


def test_the_stamp_names_every_option_that_changes_what_is_said() -> None:
    base = FrontEndOptions()
    stamps = {
        base.stamp("piper", "en-US"),
        FrontEndOptions(EnglishOptions(date_order="dmy")).stamp("piper", "en-US"),
        FrontEndOptions(EnglishOptions(emoji="name")).stamp("piper", "en-US"),
        FrontEndOptions(EnglishOptions(lexicon={"Acme": "Ack me"})).stamp("piper", "en-US"),
        FrontEndOptions(phoneme_lexicon={"Acme": "ˈækmi"}).stamp("piper", "en-US"),
    }
    assert len(stamps) == 5
    assert str(NORMALIZER_VERSION) in base.stamp("piper", "en-US")
    assert FrontEndOptions(own_normalizer=frozenset({"piper"})).stamp("piper", "en-US") == ""
    assert base.stamp("piper", "de-DE") == ""


def test_config_lexicon_entries_between_slashes_are_phonemes() -> None:
    options = front_end_options(
        TextSettings(
            date_order="dmy", emoji="name", lexicon={"Acme": "Ack me", "Nguyen": "/ŋwˈɪn/"}
        )
    )
    assert dict(options.english.lexicon) == {"Acme": "Ack me"}
    assert dict(options.phoneme_lexicon) == {"Nguyen": "ŋwˈɪn"}
    assert (options.english.date_order, options.english.emoji) == ("dmy", "name")


def test_a_text_with_a_phoneme_word_becomes_sentences_of_segments() -> None:
    options = FrontEndOptions(phoneme_lexicon={"Nguyen": "ŋwˈɪn", "Wi-Fi": "wˈaɪfaɪ"})
    assert frontend.lexicon_sentences("Hello there.", options) is None
    assert frontend.lexicon_sentences("Nguyens are here.", options) is None  # whole words
    document = frontend.lexicon_sentences("Ask for NGUYEN. Then join wi-fi now.", options)
    assert document is not None
    said = [
        [(s.text, s.phonemes) for s in sentence.segments if isinstance(s, TextSegment)]
        for sentence in document
    ]
    assert said == [
        [("Ask for", None), ("NGUYEN", "ŋwˈɪn"), (".", None)],
        [("Then join", None), ("wi-fi", "wˈaɪfaɪ"), ("now.", None)],
    ]


def test_the_exact_spelling_wins_over_another_case() -> None:
    options = FrontEndOptions(phoneme_lexicon={"us": "ʌs", "US": "jˈuːˈɛs"})
    document = frontend.lexicon_sentences("Call US or us", options)
    assert document is not None
    phonemes = [s.phonemes for s in document[0].segments if isinstance(s, TextSegment)]
    assert phonemes == [None, "jˈuːˈɛs", None, "ʌs"]


@pytest.mark.parametrize("filler", ["Nguyen ", "word. ", "x" * 50 + " "])
def test_lexicon_sentences_cost_linear_time(filler: str) -> None:
    options = FrontEndOptions(phoneme_lexicon={"Nguyen": "ŋwˈɪn"})

    def cost(n: int) -> float:
        text = "Nguyen " + filler * n
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            frontend.lexicon_sentences(text, options)
            best = min(best, time.perf_counter() - t0)
        return best

    assert cost(10_000) / cost(1_000) < 40  # 10x the text; quadratic would be ~100x


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ({"date_order": "ymd"}, "text.date_order"),
        ({"emoji": "read"}, "text.emoji"),
        ({"lexicon": {" ": "x"}}, "text.lexicon"),
        ({"own_normalizer": "hibari"}, "text.own_normalizer"),
    ],
)
def test_bad_text_settings_name_their_key(text: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        settings_from_mapping({"text": text}, "test")


def test_a_long_text_is_normalized_group_by_group_as_it_is_asked_for() -> None:
    options = FrontEndOptions()
    text = "Pay $5 now. " * 400 + "word, " * 1000
    groups = frontend.spoken_groups(text, "piper", "en-US", options)
    written, spoken = next(groups)
    assert frontend.GROUP_CHARS <= len(written) < frontend.GROUP_CHARS + 20
    assert spoken.startswith("Pay five dollars now.")
    rest = list(groups)
    assert " ".join([written, *(w for w, _ in rest)]).split() == text.split()
    assert all(len(w) <= frontend.MAX_GROUP_CHARS for w, _ in rest)
    assert list(frontend.spoken_groups(text, "hibari", "de-DE", options)) == [(text, text)]
