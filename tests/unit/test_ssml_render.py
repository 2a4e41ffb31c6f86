"""SSML sentences → audio (daemon/speech/render.py), and the `mark` events the scheduler makes of
it, on a fake voice store and a fake phrase source (the renderer's only I/O edges: models and the
cache). The real front end (say-as, normalization) and the real SSML parser run.

The fake voice says a text as a tone framed by its own silence (`LEAD_S` before, `TAIL_S`
after), as neural voices do, so break lengths and mark offsets can be measured exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fakes import EventLog, FakePlayer
from timing import growth
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.speech.jobs import Job
from utterd.daemon.speech.render import EDGE_KEEP_S, SILENCE_LEVEL, SsmlRenderer, ssml_support
from utterd.daemon.speech.scheduler import Scheduler
from utterd.daemon.speech.text_stream import TextStream
from utterd.models.text import ssml
from utterd.models.text.frontend import DEFAULT_FRONT_END
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    SynthesisParams,
    Voice,
    VoiceInfo,
)

LEAD_S = 0.04
TAIL_S = 0.12
TONE_S_PER_CHAR = 0.01


def _tone(text: str, rate_hz: int, params: SynthesisParams) -> npt.NDArray[np.float32]:
    seconds = TONE_S_PER_CHAR * len(text) / params.rate
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (0.5 * params.volume * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class FakeVoice(Voice):
    def __init__(self, info: VoiceInfo, phonemes: bool = False) -> None:
        self.info = info
        self.supports_phonemes = phonemes
        self.phonemes: list[str] = []

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        raise AssertionError("text goes through the phrase source")

    def stream_phonemes(
        self,
        phonemes: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        self.phonemes.append(phonemes)
        yield AudioChunk(
            _tone(phonemes, self.info.sample_rate_hz, params), self.info.sample_rate_hz
        )


@dataclass
class FakeVoices:
    """The parts of VoiceStore the renderer uses."""

    voices: dict[str, FakeVoice]
    loaded: set[str] = field(default_factory=set)

    def info(self, voice_id: str) -> VoiceInfo:
        return self.voices[voice_id].info

    def infos(self) -> list[VoiceInfo]:
        return [v.info for v in self.voices.values()]

    def is_loaded(self, voice_id: str) -> bool:
        return voice_id in self.loaded

    def get(self, voice_id: str, cancel: CancelToken | None = None) -> Voice:
        return self.voices[voice_id]

    def load_error(self, voice_id: str) -> Exception | None:
        return None


class FakeSource:
    """The phrase source: a text's audio as lead silence, a tone, tail silence, in 3 chunks."""

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
        assert words, "SSML segments arrive as words"
        with self.lock:
            self.calls.append((text, voice_id, params))
        rate = self.voices.info(voice_id).sample_rate_hz
        for part in (
            np.zeros(round(LEAD_S * rate), np.float32),
            _tone(text, rate, params),
            np.zeros(round(TAIL_S * rate), np.float32),
        ):
            cancel.raise_if_cancelled()
            yield AudioChunk(part, rate)


def _info(voice_id: str, language: str, rate_hz: int, family: str = "piper") -> VoiceInfo:
    return VoiceInfo(voice_id, family, language, rate_hz)


@pytest.fixture
def voices() -> FakeVoices:
    return FakeVoices(
        {
            "joe": FakeVoice(_info("joe", "en-US", 22050), phonemes=True),
            "heart": FakeVoice(_info("heart", "en-US", 24000, "hibari")),
            "fr": FakeVoice(_info("fr", "fr-FR", 16000)),
            "de": FakeVoice(_info("de", "de-DE", 22050)),
        },
        loaded={"joe", "heart", "fr"},
    )


def _render(
    voices: FakeVoices, document: str, voice: str = "joe", params: SynthesisParams | None = None
) -> tuple[list[AudioChunk], FakeSource]:
    source = FakeSource(voices)
    renderer = SsmlRenderer(source, voices, DEFAULT_FRONT_END)  # type: ignore[arg-type]
    sentences = ssml.parse(document).sentences
    chunks = list(renderer.render(sentences, voice, params or SynthesisParams(), CancelToken()))
    return chunks, source


def _audio(chunks: list[AudioChunk]) -> npt.NDArray[np.float32]:
    return np.concatenate([c.samples for c in chunks])


def _gaps_s(audio: npt.NDArray[np.float32], rate_hz: int) -> list[float]:
    """Lengths of the silent runs between sounds."""
    loud = np.flatnonzero(np.abs(audio) >= SILENCE_LEVEL)
    steps = np.diff(loud)
    return [float(step - 1) / rate_hz for step in steps if step > 1]


@pytest.mark.parametrize("break_ms", [100, 500, 1000, 2500])
def test_a_break_is_exactly_its_length_of_silence_between_the_sounds(
    voices: FakeVoices, break_ms: int
) -> None:
    doc = f'<speak>Hello there.<break time="{break_ms}ms"/>Press one.</speak>'
    chunks, _ = _render(voices, doc)
    rate = 22050
    gaps = _gaps_s(_audio(chunks), rate)
    # The tone's own zero crossings make sub-sample gaps; the pause is the one long gap.
    pause = max(gaps)
    assert abs(pause - break_ms / 1000) <= 2 * EDGE_KEEP_S + 2 / rate, (pause, break_ms)
    assert pause >= break_ms / 1000


def test_without_a_break_the_voice_keeps_its_own_silence(voices: FakeVoices) -> None:
    chunks, _ = _render(voices, "<speak><s>Hello there.</s><s>Press one.</s></speak>")
    pause = max(_gaps_s(_audio(chunks), 22050))
    assert pause == pytest.approx(TAIL_S + LEAD_S, abs=2 / 22050)


def test_marks_ride_on_the_next_sound_and_trailing_marks_on_the_sentence_end(
    voices: FakeVoices,
) -> None:
    doc = '<speak><mark name="a"/>One <mark name="b"/>two.<mark name="c"/></speak>'
    chunks, source = _render(voices, doc)
    assert [c[0] for c in source.calls] == ["One", "two."]
    marked = [(i, c.marks) for i, c in enumerate(chunks) if c.marks]
    assert [m for _, m in marked] == [("a",), ("b",), ("c",)]
    first_b = marked[1][0]
    # "b" starts the audio of "two.": everything before it is "One"'s (lead, tone, tail).
    before = sum(len(c.samples) for c in chunks[:first_b])
    assert before == round(LEAD_S * 22050) + round(0.03 * 22050) + round(TAIL_S * 22050)
    last = chunks[marked[2][0]]
    assert last.sentence_end and not len(last.samples)


def test_sentences_are_numbered_and_each_ends_with_an_end_chunk(voices: FakeVoices) -> None:
    chunks, _ = _render(voices, "<speak><s>One.</s><s>Two.</s><s>Three.</s></speak>")
    ends = [c.sentence_index for c in chunks if c.sentence_end]
    assert ends == [0, 1, 2]
    assert sorted({c.sentence_index for c in chunks}) == [0, 1, 2]


def test_prosody_and_emphasis_multiply_the_request_and_stay_in_range(voices: FakeVoices) -> None:
    doc = (
        '<speak><prosody rate="150%" volume="+6dB">fast</prosody>'
        '<prosody rate="x-fast"><prosody rate="300%">clamped</prosody></prosody>'
        '<emphasis level="strong">strong</emphasis> plain</speak>'
    )
    _, source = _render(voices, doc, params=SynthesisParams(rate=2.0, volume=0.5))
    got = {text: (p.rate, p.volume) for text, _, p in source.calls}
    assert got["fast"] == pytest.approx((3.0, 0.5 * 10 ** (6 / 20)), rel=1e-3)
    assert got["clamped"] == pytest.approx((4.0, 0.5))  # 2 x 2 x 3 = 12, held at 4
    assert got["strong"] == pytest.approx((2.0 * 0.85, 0.5 * 10 ** (3 / 20)), rel=1e-3)
    assert got["plain"] == (2.0, 0.5)


def test_say_as_and_sub_reach_the_voice_as_words(voices: FakeVoices) -> None:
    doc = (
        '<speak>Call <say-as interpret-as="telephone">555-0198</say-as> or '
        '<sub alias="World Wide Web Consortium">W3C</sub> by '
        '<say-as interpret-as="date" format="mdy">10/04/2027</say-as>.</speak>'
    )
    _, source = _render(voices, doc)
    said = " ".join(text for text, _, _ in source.calls)
    assert not any(ch.isdigit() for ch in said), said
    assert "five five five" in said and "World Wide Web Consortium" in said
    assert "October" in said


def test_a_span_in_another_language_goes_to_a_voice_of_it_at_the_job_rate(
    voices: FakeVoices,
) -> None:
    doc = '<speak>Hello <lang xml:lang="fr-FR">bonjour</lang> <lang xml:lang="de">hallo</lang></speak>'
    chunks, source = _render(voices, doc)
    assert [(t, v) for t, v, _ in source.calls] == [
        ("Hello", "joe"),
        ("bonjour", "fr"),  # loaded French voice, resampled from 16 kHz
        ("hallo", "de"),  # installed, not loaded: it loads on first use
    ]
    assert {c.sample_rate_hz for c in chunks} == {22050}
    expected_s = 3 * (LEAD_S + TAIL_S) + TONE_S_PER_CHAR * len("Hellobonjourhallo")
    assert len(_audio(chunks)) / 22050 == pytest.approx(expected_s, abs=0.003)


def test_a_voice_element_switches_only_to_a_loaded_voice(voices: FakeVoices) -> None:
    doc = '<speak><voice name="heart">one</voice><voice name="de">two</voice></speak>'
    _, source = _render(voices, doc)
    assert [(t, v) for t, v, _ in source.calls] == [("one", "heart"), ("two", "joe")]


def test_phonemes_go_to_a_voice_that_takes_them_else_the_text_is_read(
    voices: FakeVoices,
) -> None:
    doc = '<speak><phoneme alphabet="ipa" ph="təmˈɑːtoʊ">tomato</phoneme></speak>'
    _, source = _render(voices, doc, voice="joe")
    assert voices.voices["joe"].phonemes == ["təmˈɑːtoʊ"] and source.calls == []
    _, source = _render(voices, doc, voice="heart")
    assert [t for t, _, _ in source.calls] == ["tomato"]


def test_a_cancelled_render_stops_between_segments(voices: FakeVoices) -> None:
    source = FakeSource(voices)
    renderer = SsmlRenderer(source, voices, DEFAULT_FRONT_END)  # type: ignore[arg-type]
    cancel = CancelToken()
    chunks = renderer.render(
        ssml.parse("<speak>One. Two. Three.</speak>").sentences, "joe", SynthesisParams(), cancel
    )
    next(chunks)
    cancel.cancel()
    with pytest.raises(Exception, match="stopped"):
        list(chunks)
    assert len(source.calls) == 1


def test_describe_lists_what_each_voice_honours(voices: FakeVoices) -> None:
    joe = voices.voices["joe"]
    assert "phoneme" in ssml_support(joe.info, joe) and "say-as" in ssml_support(joe.info, joe)
    assert "phoneme" not in ssml_support(joe.info, None)  # not loaded: unknown
    fr = voices.voices["fr"]
    assert "say-as" not in ssml_support(fr.info, fr) and "break" in ssml_support(fr.info, fr)


# -- the scheduler's events --------------------------------------------------------------------


def _scheduler(voices: FakeVoices) -> tuple[Scheduler, EventLog]:
    source = FakeSource(voices)
    renderer = SsmlRenderer(source, voices, DEFAULT_FRONT_END)  # type: ignore[arg-type]
    events = EventLog()
    player = FakePlayer()
    scheduler = Scheduler(source, player, events, max_queue=4, ssml=renderer)  # type: ignore[arg-type]
    player.scheduler = scheduler
    scheduler.start()
    return scheduler, events


def test_marks_become_events_with_their_sample_offsets(voices: FakeVoices) -> None:
    scheduler, events = _scheduler(voices)
    try:
        doc = '<speak>One.<break time="500ms"/><mark name="menu"/>Two.<mark name="end"/></speak>'
        job = Job(
            text=doc,
            voice_id="joe",
            params=SynthesisParams(),
            ssml=ssml.parse(doc).sentences,
        )
        scheduler.submit(job)
        events.wait_end(job.job_id)
        kinds = events.of(job.job_id)
        # "One." ends a sentence; the break and the mark after it open the next one.
        assert kinds == ["begin", "sentence", "sentence", "mark", "mark", "end"], kinds
        menu, end = (d for k, d in events.items if k == "mark" and d["job"] == job.job_id)
        assert menu["name"] == "menu" and end["name"] == "end"
        # "One." is its lead and tone, its tail trimmed (up to EDGE_KEEP_S kept), then the break;
        # "Two." starts at its tone (its lead trimmed likewise) and keeps its tail.
        keep = round(EDGE_KEEP_S * 22050)
        one = round(LEAD_S * 22050) + round(0.04 * 22050) + round(0.5 * 22050)
        assert one <= menu["offset_samples"] <= one + keep
        two = round(0.04 * 22050) + round(TAIL_S * 22050)
        assert two <= end["offset_samples"] - menu["offset_samples"] <= two + keep
        assert menu["sample_rate_hz"] == 22050
    finally:
        scheduler.close()


def test_a_streamed_ssml_job_speaks_sentences_as_the_parser_completes_them(
    voices: FakeVoices,
) -> None:
    scheduler, events = _scheduler(voices)
    try:
        job = Job(
            text="",
            voice_id="joe",
            params=SynthesisParams(),
            stream=TextStream(1000, "ssml"),
        )
        scheduler.submit(job)
        scheduler.feed(job.job_id, "<speak><s>One <mark name")
        scheduler.feed(job.job_id, '="m"/>two.</s><s>Three')
        events.wait(job.job_id, "mark")
        scheduler.feed(job.job_id, ".</s></speak>")
        scheduler.close_text(job.job_id)
        events.wait_end(job.job_id)
        assert events.of(job.job_id).count("sentence") == 2
    finally:
        scheduler.close()


def test_malformed_streamed_ssml_fails_the_chunk_and_the_job(voices: FakeVoices) -> None:
    scheduler, events = _scheduler(voices)
    try:
        job = Job(
            text="", voice_id="joe", params=SynthesisParams(), stream=TextStream(1000, "ssml")
        )
        scheduler.submit(job)
        scheduler.feed(job.job_id, "<speak><s>One.</s>")
        with pytest.raises(ssml.InvalidSsml, match="line 1"):
            scheduler.feed(job.job_id, "<s>Two.</p>")
        events.wait_end(job.job_id)
        assert events.data(job.job_id, "failed")["code"] == "invalid-ssml"
    finally:
        scheduler.close()


def test_rendering_costs_linear_time_in_the_segments(voices: FakeVoices) -> None:
    def parsed(n: int) -> tuple[Any, ...]:
        return ssml.parse(
            "<speak>" + 'a <mark name="m"/>b <break time="1ms"/>' * n + "</speak>"
        ).sentences

    def render(sentences: tuple[Any, ...]) -> Callable[[], object]:
        source = FakeSource(voices)
        renderer = SsmlRenderer(source, voices, DEFAULT_FRONT_END)  # type: ignore[arg-type]
        return lambda: sum(
            1 for _ in renderer.render(sentences, "joe", SynthesisParams(), CancelToken())
        )

    small, large = parsed(300), parsed(3000)
    small_s, large_s = growth(render(small), render(large), 20, runs=1)
    assert large_s < 20 * small_s, (small_s, large_s)  # 10x the document; quadratic: ~100x
