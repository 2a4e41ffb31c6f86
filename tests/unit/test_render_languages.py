"""Mixed-language text and per-voice prosody in the renderer (daemon/speech/render.py), the
front end's hand-over of such text (`frontend.plain_sentences`) and the phrase-cache key of
Chinese text, on fake voices and a fake phrase source (the renderer's only I/O edges); the
real front end, language splitter and SSML parser run."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from timing import growth
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.cache.phrase_source import PhraseSource
from utterd.daemon.cache.store import PhraseCache
from utterd.daemon.settings import CacheSettings
from utterd.daemon.speech.render import SsmlRenderer
from utterd.models.text import frontend, ssml
from utterd.models.text.frontend import DEFAULT_FRONT_END
from utterd.models.text.segments import Sentence, TextSegment
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceInfo,
)
from utterd.models.voice_store import VoiceStore

SECONDS_PER_CHAR = 0.05


class FakeVoice(Voice):
    def __init__(self, info: VoiceInfo) -> None:
        self.info = info

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        yield AudioChunk(np.ones(len(text), np.float32), self.info.sample_rate_hz)


@dataclass
class FakeVoices:
    """The parts of VoiceStore the renderer uses."""

    voices: dict[str, FakeVoice]
    loaded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def info(self, voice_id: str) -> VoiceInfo:
        return self.voices[voice_id].info

    def infos(self) -> list[VoiceInfo]:
        return [v.info for v in self.voices.values()]

    def is_loaded(self, voice_id: str) -> bool:
        return voice_id in self.loaded

    def get(self, voice_id: str, cancel: CancelToken | None = None) -> Voice:
        return self.voices[voice_id]

    def load_error(self, voice_id: str) -> Exception | None:
        return RuntimeError("broken") if voice_id in self.failed else None


class FakeSource:
    """Says a text as `SECONDS_PER_CHAR` of a constant per character, at the voice's rate."""

    def __init__(self, voices: FakeVoices) -> None:
        self.voices = voices
        self.calls: list[tuple[str, str, SynthesisParams]] = []
        self.lock = threading.Lock()

    def stream(
        self,
        text: str,
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        mode: CacheMode = "auto",
        low_latency: bool = True,
        words: bool = False,
    ) -> Iterator[AudioChunk]:
        with self.lock:
            self.calls.append((text, voice_id, params))
        rate = self.voices.info(voice_id).sample_rate_hz
        yield AudioChunk(np.full(round(SECONDS_PER_CHAR * len(text) * rate), 0.5, np.float32), rate)


def _voices(*, zh: bool = True, loaded: tuple[str, ...] | None = None) -> FakeVoices:
    infos = [
        VoiceInfo("joe", "piper", "en-US", 22050),
        VoiceInfo("heart", "hibari", "en-US", 44100),
    ]
    if zh:
        prosody = frozenset({"pitch", "energy"})
        infos += [
            VoiceInfo("zh-a", "zh", "zh-CN", 24000, prosody=prosody),
            VoiceInfo("zh-b", "zh", "zh-TW", 24000, prosody=prosody),
        ]
    voices = {info.voice_id: FakeVoice(info) for info in infos}
    return FakeVoices(voices, set(voices) if loaded is None else set(loaded))


def _render(
    voices: FakeVoices,
    sentences: tuple[Sentence, ...],
    voice: str,
    params: SynthesisParams | None = None,
    by_language: dict[str, str] | None = None,
) -> tuple[list[AudioChunk], FakeSource]:
    source = FakeSource(voices)
    renderer = SsmlRenderer(
        source,
        voices,  # type: ignore[arg-type]
        DEFAULT_FRONT_END,
        by_language=by_language,
    )
    chunks = list(renderer.render(sentences, voice, params or SynthesisParams(), CancelToken()))
    return chunks, source


def _plain(text: str) -> tuple[Sentence, ...]:
    document = frontend.plain_sentences(text, DEFAULT_FRONT_END)
    assert document is not None, text
    return document


def _said(source: FakeSource) -> list[tuple[str, str]]:
    return [(text, voice) for text, voice, _ in source.calls]


# --- the front end hands mixed text on ------------------------------------------------------------


def test_plain_english_stays_on_the_plain_path_and_chinese_text_becomes_sentences() -> None:
    assert (
        frontend.plain_sentences("Connect to the Wi-Fi network, then restart.", DEFAULT_FRONT_END)
        is None
    )
    document = _plain("请连接Wi-Fi。然后打开 Bluetooth！")
    assert [
        [s.text for s in sentence.segments if isinstance(s, TextSegment)] for sentence in document
    ] == [["请连接Wi-Fi。"], ["然后打开 Bluetooth！"]]


def test_a_latin_only_text_for_a_chinese_voice_becomes_sentences_for_the_renderer() -> None:
    # No Han character: for an English voice it stays on the plain path; for a Chinese one
    # (whose G2P would drop every Latin letter) it goes to the renderer, which hands it on.
    text = "Wi-Fi connected. Press OK."
    assert frontend.plain_sentences(text, DEFAULT_FRONT_END, "en-US") is None
    document = frontend.plain_sentences(text, DEFAULT_FRONT_END, "zh-CN")
    assert document is not None
    voices = _voices(loaded=("zh-a", "joe"))
    chunks, source = _render(voices, document, "zh-a")
    assert _said(source) == [("Wi-Fi connected.", "joe"), ("Press okay.", "joe")]  # normalized
    assert {c.sample_rate_hz for c in chunks} == {24000}
    # Digits and punctuation alone are the Chinese voice's own (read in Chinese).
    assert frontend.plain_sentences("2026-12-06", DEFAULT_FRONT_END, "zh-CN") is None


# --- each span by a voice of its language, one stream at the request voice's rate ---------------


def test_an_english_voice_hands_the_chinese_span_to_the_chinese_voice() -> None:
    voices = _voices()
    chunks, source = _render(voices, _plain("请连接Wi-Fi"), "joe")
    assert _said(source) == [("请连接", "zh-a"), ("Wi-Fi", "joe")]
    assert {c.sample_rate_hz for c in chunks} == {22050}
    audio_s = sum(len(c.samples) for c in chunks) / 22050
    # The zh span's 24 kHz audio is resampled, not dropped or played at the wrong rate.
    assert audio_s == pytest.approx(SECONDS_PER_CHAR * len("请连接Wi-Fi"), abs=0.005)


def test_a_chinese_voice_hands_the_english_word_to_an_english_voice() -> None:
    voices = _voices(loaded=("zh-a", "joe"))
    chunks, source = _render(voices, _plain("打开 Bluetooth 设置"), "zh-a")
    assert _said(source) == [("打开", "zh-a"), ("Bluetooth", "joe"), ("设置", "zh-a")]
    assert {c.sample_rate_hz for c in chunks} == {24000}


def test_numbers_next_to_chinese_go_to_the_chinese_voice() -> None:
    _, source = _render(_voices(), _plain("温度25°C，请连接Wi-Fi"), "joe")
    assert _said(source) == [("温度25°C，请连接", "zh-a"), ("Wi-Fi", "joe")]


def test_without_a_voice_of_the_language_the_span_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    voices = _voices(zh=False)
    with caplog.at_level(logging.INFO, logger="utterd.daemon.speech.render"):
        chunks, source = _render(voices, _plain("请连接Wi-Fi"), "joe")
    assert _said(source) == [("Wi-Fi", "joe")]
    assert "event=language-span-skipped lang=zh voice=joe chars=3" in caplog.text
    assert sum(len(c.samples) for c in chunks) == round(SECONDS_PER_CHAR * 5 * 22050)


def test_ssml_text_without_lang_is_split_as_plain_text_is() -> None:
    document = ssml.parse('<speak>打开 Bluetooth <mark name="m"/>设置</speak>').sentences
    chunks, source = _render(_voices(), document, "zh-a")
    # Two English voices are loaded: the first by id speaks.
    assert _said(source) == [("打开", "zh-a"), ("Bluetooth", "heart"), ("设置", "zh-a")]
    assert [c.marks for c in chunks if c.marks] == [("m",)]


def test_xml_lang_still_switches_and_its_chinese_words_stay_whole() -> None:
    document = ssml.parse(
        '<speak xml:lang="en-US">Say <lang xml:lang="zh-CN">你好</lang> now</speak>'
    ).sentences
    _, source = _render(_voices(), document, "joe")
    assert _said(source) == [("Say", "joe"), ("你好", "zh-a"), ("now", "joe")]


# --- which voice: voices.by_language, else a loaded one -------------------------------------------


def test_by_language_names_the_voice_exact_tag_first_and_loads_it() -> None:
    voices = _voices(loaded=("joe", "zh-a"))
    source = FakeSource(voices)
    renderer = SsmlRenderer(
        source,
        voices,  # type: ignore[arg-type]
        DEFAULT_FRONT_END,
        by_language={"zh": "zh-b", "ZH_cn": "zh-a"},
    )
    assert renderer.language_voice("zh-TW", "joe") == "zh-b"  # primary zh → zh-b, not loaded
    assert renderer.language_voice("zh-CN", "joe") == "zh-a"  # the exact tag wins
    assert renderer.language_voice("en-GB", "joe") == "joe"  # the request's own language
    assert renderer.language_voice("fr", "joe") is None


def test_without_by_language_a_loaded_voice_of_the_language_speaks_else_an_installed_one() -> None:
    voices = _voices(loaded=("joe", "zh-b"))
    renderer = SsmlRenderer(FakeSource(voices), voices, DEFAULT_FRONT_END)  # type: ignore[arg-type]
    assert renderer.language_voice("zh-CN", "joe") == "zh-b"  # zh-a is installed, not loaded
    voices.loaded.add("zh-a")
    assert renderer.language_voice("zh-CN", "joe") == "zh-a"
    assert renderer.language_voice("zh-TW", "joe") == "zh-b"
    voices.loaded = {"joe"}
    assert renderer.language_voice("zh-TW", "joe") == "zh-b"  # loads on first use
    voices.failed.add("zh-b")
    assert renderer.language_voice("zh-TW", "joe") == "zh-a"  # a failed load is passed over


def test_by_language_naming_a_voice_that_is_not_installed_warns_and_is_passed_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    voices = _voices()
    with caplog.at_level(logging.WARNING, logger="utterd.daemon.speech.render"):
        renderer = SsmlRenderer(
            FakeSource(voices),
            voices,  # type: ignore[arg-type]
            DEFAULT_FRONT_END,
            by_language={"zh": "zh-missing"},
        )
    assert "event=by-language-unknown-voice lang=zh voice=zh-missing" in caplog.text
    assert renderer.language_voice("zh", "joe") == "zh-a"


# --- pitch and energy: honoured by the voices that declare them ---------------------------------


@pytest.mark.parametrize(
    ("pitch", "expected"),
    [
        ("+12st", 2.0),
        ("x-low", 2 ** (-6 / 12)),
        ("high", 2 ** (3 / 12)),
        ("-50%", 0.5),
        ("+20Hz", 1.0),
    ],
)
def test_ssml_prosody_pitch_becomes_the_pitch_ratio_of_a_voice_that_honours_it(
    pitch: str, expected: float
) -> None:
    document = ssml.parse(f'<speak><prosody pitch="{pitch}">你好</prosody></speak>').sentences
    _, source = _render(_voices(), document, "zh-a")
    ((_, _, params),) = source.calls
    assert params.pitch == pytest.approx(expected)


def test_request_pitch_and_ssml_pitch_multiply_within_the_range() -> None:
    document = ssml.parse('<speak><prosody pitch="+6st">你好</prosody></speak>').sentences
    _, source = _render(_voices(), document, "zh-a", SynthesisParams(pitch=1.2))
    assert source.calls[0][2].pitch == pytest.approx(1.2 * 2**0.5)
    _, source = _render(_voices(), document, "zh-a", SynthesisParams(pitch=1.8))
    assert source.calls[0][2].pitch == 2.0  # held at the top of 0.5..2


def test_a_voice_that_cannot_change_pitch_or_energy_gets_its_own() -> None:
    document = ssml.parse(
        '<speak><prosody pitch="+3st">Hello</prosody> <lang xml:lang="zh">你好</lang></speak>'
    ).sentences
    params = SynthesisParams(pitch=1.5, energy=0.8)
    _, source = _render(_voices(), document, "joe", params)
    by_voice = {voice: p for _, voice, p in source.calls}
    assert (by_voice["joe"].pitch, by_voice["joe"].energy) == (1.0, 1.0)
    assert (by_voice["zh-a"].pitch, by_voice["zh-a"].energy) == (1.5, 0.8)


# --- the phrase cache keys Chinese text -----------------------------------------------------------


def _key_source(tmp_path: Path) -> tuple[PhraseSource, FakeVoice]:
    engine = EngineSettings(threads=2)
    model = tmp_path / "zh.onnx"
    model.write_bytes(b"model")
    info = VoiceInfo("zh-a", "zh", "zh-CN", 24000, model_path=model, front_end_version="g2p1")
    source = PhraseSource(
        VoiceStore([], [], engine), PhraseCache(None, 1 << 20, 0), CacheSettings(), lambda _: engine
    )
    return source, FakeVoice(dataclasses.replace(info, prosody=frozenset({"pitch", "energy"})))


def _key(source: PhraseSource, voice: Voice, text: str, **params: float) -> str:
    keyed = source.key(text, voice, SynthesisParams(**params))  # type: ignore[arg-type]
    assert keyed is not None
    return keyed[0]


def test_the_cache_key_tells_chinese_texts_and_pitches_apart(tmp_path: Path) -> None:
    source, voice = _key_source(tmp_path)
    first = _key(source, voice, "请连接网络。")
    assert _key(source, voice, "请连接网络。") == first
    assert _key(source, voice, "请断开网络。") != first
    assert _key(source, voice, "请连接网络。", pitch=1.2) != first
    assert _key(source, voice, "请连接网络。", pitch=1.2) != _key(
        source, voice, "请连接网络。", pitch=1.3
    )
    assert _key(source, voice, "请连接网络。", energy=1.2) != first


def test_the_cache_key_names_the_chinese_front_end_version(tmp_path: Path) -> None:
    """The Chinese family normalizes its own text: its declared front-end version (normalizer
    and G2P) is what the key names, and the front end here adds nothing it would change."""
    source, voice = _key_source(tmp_path)
    assert DEFAULT_FRONT_END.stamp("zh", "zh-CN") == ""
    assert frontend.spoken("温度25°C", "zh", "zh-CN", DEFAULT_FRONT_END) == "温度25°C"
    first = _key(source, voice, "温度25°C")
    other = dataclasses.replace(voice.info, front_end_version="g2p2")
    assert _key(source, FakeVoice(other), "温度25°C") != first


# --- cost -------------------------------------------------------------------------------------


def test_mixed_text_costs_linear_time() -> None:
    """One sentence of alternating spans (the worst case: a span per word) and many sentences,
    from the front end's hand-over to the last chunk."""
    voices = _voices()

    def work(text: str) -> Callable[[], object]:
        def run() -> object:
            store: Any = voices
            renderer = SsmlRenderer(FakeSource(voices), store, DEFAULT_FRONT_END)
            document = frontend.plain_sentences(text, DEFAULT_FRONT_END)
            assert document is not None
            return sum(
                1 for _ in renderer.render(document, "joe", SynthesisParams(), CancelToken())
            )

        return run

    for unit in ("请连接 Wi-Fi ", "请连接Wi-Fi。"):
        small_s, large_s = growth(work(unit * 100), work(unit * 1000), 20, runs=1)
        assert large_s < 20 * small_s, (unit, small_s, large_s)  # 10x the text; quadratic: ~100x
