"""SSML sentences → one stream of audio: segments spoken, breaks as silence, marks placed.

The SSML parser (models/text/ssml.py) gives sentences of segments; this walks them for one job:

- **Text segments** are spoken through the phrase source (so each is cached like any phrase),
  by the request's voice or the one the segment switches to, with the prosody in force:
  - `<voice name>` switches to that voice when it is loaded (else the request's voice speaks
    it, logged as `event=ssml-voice-unavailable`);
  - `xml:lang` of another language than the voice's, and a span of text in another script
    than the voice's language is written in (`_language_parts` cuts a segment with
    `split_language_spans`: Han text for an English voice, Latin words for a Chinese one, in
    SSML and in plain text that `frontend.plain_sentences` handed on), switches to the voice
    of that language (`language_voice`): the one config `voices.by_language` names for
    the tag, else for its primary language; else a loaded voice of that language, else an
    installed one that has not failed to load (the same tag first, then the same primary
    language; the first by id). A voice not loaded yet loads on first use, like any voice: a
    one-time wait, where skipping the span would lose it (the server accepts Han text for an
    English voice when a Chinese voice is installed). With none, the request's voice reads the
    span and the characters it cannot say are skipped (its text guard drops letters of another
    script), logged as `event=language-unavailable`;
  - `<prosody rate>` and `volume` multiply the request's rate and volume (held within the
    protocol's ranges); `pitch` (labels, `%`, `st`) multiplies the request's `pitch` ratio by
    2^(semitones/12), held within 0.5..2, for a voice whose `VoiceInfo.prosody` names `pitch`
    (`describe` lists them; the server checks a request's own fields against the same); a
    voice that cannot is handed pitch and energy 1.0, so the element is ignored there, as is a
    request's pitch or energy for a span another voice says.
    A change in Hz (`+20Hz`) is ignored: it needs the voice's mean F0, which no voice declares;
  - `<emphasis>`: `strong` is 15 % slower and +3 dB, `moderate` 8 % slower and +1.5 dB,
    `reduced` 8 % faster and -2 dB (SSML leaves the rendering to the processor);
  - `<phoneme>` IPA is said by a voice that takes phonemes (`Voice.supports_phonemes`), else
    its text is read.
  - Audio of a voice with another sample rate is resampled to the request voice's rate (soxr,
    streaming), so a job has one stream at one rate.
- **Breaks** are silence of exactly their length at the job's rate.
- **Marks** ride on the next chunk (`AudioChunk.marks`); the scheduler reports each with its
  sample offset when that chunk starts to play, so a mark lands where its text starts.

Every sentence ends with an empty chunk (`sentence_end`), carrying the marks at its end.

A pause is exactly the break's length: the voice's own silence at the edges of the speech next
to a break (tens of milliseconds, more after a sentence's end) is trimmed to `EDGE_KEEP_S`,
counting samples below `SILENCE_LEVEL` as silence. Trimming the end holds back the segment's
last chunk until the segment is done, so only a segment before a break waits for its end.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Protocol

import numpy as np
import soxr
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.cache.phrase_source import bounded_audio
from utterd.models.errors import NothingToSay
from utterd.models.text import frontend, guard
from utterd.models.text.frontend import FrontEndOptions
from utterd.models.text.segments import Break, Emphasis, Mark, Segment, Sentence, TextSegment
from utterd.models.voice import (
    MAX_PROSODY_RATIO,
    MAX_RATE,
    MAX_VOLUME,
    MIN_PROSODY_RATIO,
    MIN_RATE,
    AudioChunk,
    CancelToken,
    SynthesisParams,
    Voice,
    VoiceInfo,
)
from utterd.models.voice_store import VoiceStore

_LOGGER = logging.getLogger(__name__)

EMPHASIS: Final[dict[Emphasis, tuple[float, float]]] = {
    "strong": (0.85, 10 ** (3 / 20)),
    "moderate": (0.92, 10 ** (1.5 / 20)),
    "none": (1.0, 1.0),
    "reduced": (1.08, 10 ** (-2 / 20)),
}
"""`<emphasis>` level → (rate factor, amplitude gain)."""


class TextAudio(Protocol):
    """Where a text segment's audio comes from (the phrase source)."""

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
    ) -> Iterator[AudioChunk]: ...


class SsmlRenderer:
    """Speaks SSML sentences for jobs and `synthesize`; thread-safe (no state across calls)."""

    def __init__(
        self,
        source: TextAudio,
        voices: VoiceStore,
        options: FrontEndOptions,
        *,
        by_language: Mapping[str, str] | None = None,
    ) -> None:
        """`by_language`: config `voices.by_language` (language tag → voice id); a voice it
        names that is not installed is logged now and passed over when choosing."""
        self._source = source
        self._voices = voices
        self._options = options
        self._by_language = {_tag(lang): voice for lang, voice in (by_language or {}).items()}
        installed = {info.voice_id for info in voices.infos()}
        for lang, voice_id in self._by_language.items():
            if voice_id not in installed:  # not an error: the voice may be installed later
                _LOGGER.warning("event=by-language-unknown-voice lang=%s voice=%s", lang, voice_id)

    def lexicon_sentences(self, text: str, voice_id: str = "") -> tuple[Sentence, ...] | None:
        """A plain text as sentences when it holds a word of the phoneme lexicon or a span in
        another language than voice `voice_id`'s (`frontend.plain_sentences`), else None: such
        a text is rendered like SSML, each span by the voice of its language."""
        language = self._voices.info(voice_id).language if voice_id else ""
        return frontend.plain_sentences(text, self._options, language)

    def render(
        self,
        sentences: Iterable[Sentence],
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        mode: CacheMode = "auto",
        low_latency: bool = True,
        first_sentence: int = 0,
    ) -> Iterator[AudioChunk]:
        """The audio of `sentences`, numbered from `first_sentence`, at `voice_id`'s rate."""
        rate_hz = self._voices.info(voice_id).sample_rate_hz
        items = [
            (index, part)
            for index, sentence in enumerate(sentences, first_sentence)
            for segment in (*sentence.segments, _END)
            for part in self._language_parts(segment, voice_id)
        ]
        marks: list[str] = []
        after_break = False
        for position, (index, segment) in enumerate(items):
            cancel.raise_if_cancelled()
            if segment is _END:
                yield AudioChunk(np.zeros(0, np.float32), rate_hz, index, marks=tuple(marks))
                marks = []
                continue
            if isinstance(segment, Mark):
                marks.append(segment.name)
                continue
            if isinstance(segment, Break):
                samples = np.zeros(round(segment.duration_ms * rate_hz / 1000), np.float32)
                chunks: Iterator[AudioChunk] = iter([AudioChunk(samples, rate_hz)])
                after_break = segment.duration_ms > 0
            else:
                chunks = _resampled(
                    self._speak(segment, voice_id, params, cancel, mode, low_latency), rate_hz
                )
                if after_break:
                    chunks = _trim_head(chunks, rate_hz)
                if _break_follows(items, position):
                    chunks = _trim_tail(chunks, rate_hz)
                after_break = False
            for chunk in chunks:
                yield AudioChunk(
                    chunk.samples, rate_hz, index, sentence_end=False, marks=tuple(marks)
                )
                marks = []

    def _language_parts(self, segment: Segment, request_voice: str) -> list[Segment]:
        """`segment`, or its language spans (`split_language_spans`) when it is text holding
        letters of a script its voice's language is not written in: Han letters for any voice
        but a Chinese one, Latin letters for a Chinese one. A span in the segment's language
        keeps the segment's tag and voice; another gets its own language and loses the voice,
        so that `_voice_for` chooses by language. `<say-as>` and `<phoneme>` stay whole."""
        if not isinstance(segment, TextSegment) or segment.say_as or segment.phonemes:
            return [segment]
        speaker = segment.voice if segment.voice and self._voices.is_loaded(segment.voice) else None
        own = frontend.primary_language(
            segment.lang or self._voices.info(speaker or request_voice).language
        )
        if own == frontend.CHINESE:
            if _LATIN_LETTER.search(segment.text) is None:
                return [segment]
        elif not frontend.has_han(segment.text):
            return [segment]
        # Imported here: it imports the Chinese normalizer (cn2an, 0.15 s), which a daemon
        # that never sees mixed text need not load.
        from utterd.models.text.lang_spans import split_language_spans

        parts: list[Segment] = []
        for span in split_language_spans(segment.text, neutral=own):
            text = " ".join(span.text.split())
            if not text:
                continue
            if span.language == own:
                parts.append(dataclasses.replace(segment, text=text))
            else:
                parts.append(
                    dataclasses.replace(segment, text=text, lang=span.language, voice=None)
                )
        return parts or [segment]

    def _speak(
        self,
        segment: TextSegment,
        request_voice: str,
        params: SynthesisParams,
        cancel: CancelToken,
        mode: CacheMode,
        low_latency: bool,
    ) -> Iterator[AudioChunk]:
        voice_id = self._voice_for(segment, request_voice)
        info = self._voices.info(voice_id)
        language = segment.lang or info.language
        segment_params = _with_prosody(params, segment, info.prosody)
        words = frontend.spoken_segment(segment, info.family, language, self._options)
        reads_other = segment.phonemes is None and frontend.primary_language(
            language
        ) != frontend.primary_language(info.language)
        if reads_other and not guard.has_speech(guard.clean(words, info.language)):
            # Another language's span with no voice of its own: nothing this voice can say.
            _LOGGER.info(
                "event=language-span-skipped lang=%s voice=%s chars=%d",
                language,
                voice_id,
                len(segment.text),
            )
            return iter(())
        text = self._source.stream(
            words, voice_id, segment_params, cancel, mode=mode, low_latency=low_latency, words=True
        )
        if segment.phonemes is None:
            return text
        voice = self._voices.get(voice_id, cancel)
        if not voice.supports_phonemes:
            _LOGGER.info("event=ssml-phonemes-unsupported voice=%s", voice_id)
            return text
        said = voice.stream_phonemes(
            segment.phonemes, segment_params, cancel, low_latency=low_latency
        )
        return _or_else(bounded_audio(said, len(segment.phonemes), segment_params), text, voice_id)

    def _voice_for(self, segment: TextSegment, request_voice: str) -> str:
        """The voice that says `segment` (see the module docstring)."""
        if segment.voice is not None and segment.voice != request_voice:
            if self._voices.is_loaded(segment.voice):
                return segment.voice
            _LOGGER.info("event=ssml-voice-unavailable voice=%s", segment.voice)
        if segment.lang is None:
            return request_voice
        chosen = self.language_voice(segment.lang, request_voice)
        if chosen is None:
            _LOGGER.info(
                "event=language-unavailable lang=%s voice=%s chars=%d",
                segment.lang,
                request_voice,
                len(segment.text),
            )
            return request_voice
        return chosen

    def language_voice(self, lang: str, request_voice: str) -> str | None:
        """The voice that says text in language `lang` in a request for `request_voice`: that
        voice itself when it speaks the same primary language; else the one `by_language`
        names for the tag, then for its primary language (if installed); else a loaded voice
        of that language, then an installed one that has not failed to load (the same tag
        first, then the same primary language; the first by id). None: no voice speaks it."""
        wanted = _tag(lang)
        primary = frontend.primary_language(wanted)
        if frontend.primary_language(self._voices.info(request_voice).language) == primary:
            return request_voice
        installed = sorted(self._voices.infos(), key=lambda info: info.voice_id)
        ids = {info.voice_id for info in installed}
        for tag in (wanted, primary):
            named = self._by_language.get(tag)
            if named is not None and named in ids:
                return named
        loaded = [info for info in installed if self._voices.is_loaded(info.voice_id)]
        loadable = [info for info in installed if self._voices.load_error(info.voice_id) is None]
        for candidates in (loaded, loadable):
            for same in (
                lambda tag: tag == wanted,
                lambda tag: frontend.primary_language(tag) == primary,
            ):
                for info in candidates:
                    if same(_tag(info.language)):
                        return info.voice_id
        return None


def _or_else(
    first: Iterator[AudioChunk], then: Iterator[AudioChunk], voice_id: str
) -> Iterator[AudioChunk]:
    """`first`'s chunks; `then`'s when `first` has nothing to say (IPA with no symbol the voice
    knows: its text is read instead, as for a voice that takes no phonemes)."""
    try:
        head = next(first, None)
    except NothingToSay:
        _LOGGER.info("event=ssml-phonemes-unsayable voice=%s", voice_id)
        yield from then
        return
    if head is not None:
        yield head
        yield from first


_LATIN_LETTER: Final = re.compile(r"[A-Za-z]")
"""A Latin letter: what a Chinese voice hands to the voice of another language."""


def _tag(lang: str) -> str:
    """A language tag compared: `zh_CN` and `ZH-cn` are `zh-cn`."""
    return lang.replace("_", "-").lower()


_END: Final = Mark("")
"""Stands for a sentence's end among the segments `render` walks."""

SILENCE_LEVEL: Final = 10 ** (-50 / 20)
"""Samples below this (-50 dBFS) count as silence at a segment's edge next to a break."""

EDGE_KEEP_S: Final = 0.005
"""Silence kept at such an edge, so that a soft final consonant is never clipped."""


def _break_follows(items: list[tuple[int, Segment]], position: int) -> bool:
    """Whether a pause (marks and sentence ends aside) comes next after `position`."""
    for index in range(position + 1, len(items)):  # no slice: a copy per segment is quadratic
        segment = items[index][1]
        if isinstance(segment, Break):
            return segment.duration_ms > 0
        if not isinstance(segment, Mark):
            return False
    return False


def _trim_head(chunks: Iterator[AudioChunk], rate_hz: int) -> Iterator[AudioChunk]:
    """The chunks without the voice's own silence before the first sound (after a break, so
    that the pause is the break's length), but `EDGE_KEEP_S` of it."""
    keep = round(EDGE_KEEP_S * rate_hz)
    for chunk in chunks:
        loud = np.flatnonzero(np.abs(chunk.samples) >= SILENCE_LEVEL)
        if not len(loud):
            continue
        yield dataclasses.replace(chunk, samples=chunk.samples[max(0, int(loud[0]) - keep) :])
        break
    yield from chunks


def _trim_tail(chunks: Iterator[AudioChunk], rate_hz: int) -> Iterator[AudioChunk]:
    """The chunks without the voice's own silence after the last sound (before a break), but
    `EDGE_KEEP_S` of it. Holds back the last chunk with sound and any silent ones after it."""
    keep = round(EDGE_KEEP_S * rate_hz)
    held: list[AudioChunk] = []
    for chunk in chunks:
        if np.any(np.abs(chunk.samples) >= SILENCE_LEVEL):
            yield from held
            held = []
        held.append(chunk)
    if not held:
        return
    first = held[0]
    loud = np.flatnonzero(np.abs(first.samples) >= SILENCE_LEVEL)
    end = int(loud[-1]) + 1 + keep if len(loud) else 0
    yield dataclasses.replace(first, samples=first.samples[:end])


def _with_prosody(
    params: SynthesisParams, segment: TextSegment, honoured: frozenset[str]
) -> SynthesisParams:
    """The request's parameters with the segment's prosody and emphasis applied, for a voice
    that honours the `PROSODY_FIELDS` in `honoured` (the others are 1.0 for it)."""
    rate_factor, gain = EMPHASIS[segment.emphasis or "none"]
    rate = params.rate * segment.prosody.rate_factor * rate_factor
    volume = params.volume * segment.prosody.volume_gain * gain
    pitch = params.pitch * 2 ** (segment.prosody.pitch_semitones / 12)
    return dataclasses.replace(
        params,
        rate=min(max(rate, MIN_RATE), MAX_RATE),
        volume=min(max(volume, 0.0), MAX_VOLUME),
        pitch=min(max(pitch, MIN_PROSODY_RATIO), MAX_PROSODY_RATIO) if "pitch" in honoured else 1.0,
        energy=params.energy if "energy" in honoured else 1.0,
    )


def _resampled(chunks: Iterator[AudioChunk], rate_hz: int) -> Iterator[AudioChunk]:
    """The chunks at `rate_hz`: resampled as one stream when they come at another rate."""
    resampler: soxr.ResampleStream | None = None
    for chunk in chunks:
        if chunk.sample_rate_hz == rate_hz:
            yield chunk
            continue
        if resampler is None:
            resampler = soxr.ResampleStream(chunk.sample_rate_hz, rate_hz, 1, dtype="float32")
        out = resampler.resample_chunk(chunk.samples.astype(np.float32, copy=False))
        yield AudioChunk(np.asarray(out, np.float32), rate_hz, chunk.sentence_index)
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        yield AudioChunk(np.asarray(tail, np.float32), rate_hz)


SSML_ELEMENTS: Final = (
    "speak",
    "p",
    "s",
    "break",
    "sub",
    "prosody",
    "emphasis",
    "mark",
    "lang",
    "voice",
)
"""Elements every voice honours (`prosody`: rate and volume, and pitch for a voice whose
`VoiceInfo.prosody` names it: `describe` lists that apart, as `prosody`)."""


def ssml_support(info: VoiceInfo, voice: Voice | None) -> list[str]:
    """The SSML elements a voice honours, for `describe`: `say-as` where the front end reads
    its language's hints, `phoneme` where the loaded voice takes IPA (unknown until loaded)."""
    elements = list(SSML_ELEMENTS)
    if frontend.primary_language(info.language) == frontend.ENGLISH:
        elements.append("say-as")
    if voice is not None and voice.supports_phonemes:
        elements.append("phoneme")
    return elements
