"""Where a request's audio comes from: the phrase cache, the voice, or both (templates).

Both the speech queue and `synthesize` ask this one object, so a prompt cached by one is a hit
for the other, and the rules for what may be cached live in one place.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from utterd.daemon.cache.key import (
    CacheKeyParts,
    FileHasher,
    front_end_stamp,
    normalize_text,
    voice_model_files,
)
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.cache.store import PhraseCache, pcm16_to_float
from utterd.daemon.cache.templates import parse_template, pause_after, prepare_piece, silence
from utterd.daemon.settings import CacheSettings
from utterd.models.engine.backend import intra_op_threads
from utterd.models.errors import AudioTooLong
from utterd.models.text import budget, frontend
from utterd.models.text.frontend import DEFAULT_FRONT_END, FrontEndOptions
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    float_to_pcm16,
)
from utterd.models.voice_store import VoiceStore

_LOGGER = logging.getLogger(__name__)


def bounded_audio(
    chunks: Iterator[AudioChunk], chars: int, params: SynthesisParams
) -> Iterator[AudioChunk]:
    """The chunks, failing with AudioTooLong once they pass what `chars` characters of text may
    produce (budget.max_audio_s): no text, whatever it holds, speaks without end."""
    limit_s = budget.max_audio_s(chars, params.rate)
    produced_s = 0.0
    for chunk in chunks:
        produced_s += chunk.duration_s
        if produced_s > limit_s:
            raise AudioTooLong(
                f"the text's audio passed {limit_s:.0f} s, the most {chars} characters may "
                f"produce at rate {params.rate:g} ({budget.AUDIO_S_FLOOR:g} s + "
                f"{budget.AUDIO_S_PER_CHAR:g} s per character)"
            )
        yield chunk


class PhraseSource:
    """Audio for (text, voice, params): replayed from the cache when allowed, else synthesized."""

    def __init__(
        self,
        voices: VoiceStore,
        cache: PhraseCache | None,
        settings: CacheSettings,
        engine_for: Callable[[str], EngineSettings],
        front_end: FrontEndOptions = DEFAULT_FRONT_END,
    ) -> None:
        """`engine_for(voice_id)`: the engine settings that voice loads with (its own backend);
        `front_end`: how plain text becomes the words a voice is handed (models/text/frontend)."""
        self.voices = voices
        self.front_end = front_end
        self.cache = cache if settings.enabled else None
        self.settings = settings
        self._engine_for = engine_for
        self._hasher = FileHasher()

    def key(
        self, text: str, voice: Voice, params: SynthesisParams, *, words: bool = False
    ) -> tuple[str, SynthesisParams] | None:
        """The cache key and the parameters to synthesize with; None if the request bypasses it.

        The key names the text as written (a hit costs no normalization) and the front end's
        stamp (`FrontEndOptions.stamp`: normalizer version and options); `words`: the text is
        already the words to say (an SSML segment), keyed as such."""
        cs = self.settings
        if self.cache is None or len(text) > cs.max_text_chars:
            return None
        if cs.deterministic == "request" and not params.deterministic:
            return None
        params = dataclasses.replace(params, deterministic=True)
        # The key names what the voice actually runs (its runtime: the variant `auto` chose,
        # ...); its configured engine only fills in what the voice does not report.
        runtime = voice.runtime()
        engine = self._engine_for(voice.info.voice_id)
        files = list(voice_model_files(voice.info))
        if runtime.model_file is not None:
            files.append(runtime.model_file)  # the variant actually run (INT8 or FP32)
        parts = CacheKeyParts.for_request(
            text,
            voice.info,
            params,
            model_sha256=self._hasher.digest(files),
            backend=runtime.backend if runtime.backend is not None else engine.backend,
            precision=runtime.precision if runtime.precision is not None else "fp32",
            threads=runtime.threads or intra_op_threads(engine),
            engine_version=front_end_stamp(
                voice.info.front_end_version, self._text_stamp(voice, words=words)
            ),
        )
        return parts.digest(), params

    def _text_stamp(self, voice: Voice, *, words: bool) -> str:
        if words:
            return "words"
        return self.front_end.stamp(voice.info.family, voice.info.language)

    def is_cached(self, text: str, voice_id: str, params: SynthesisParams) -> bool:
        if self.cache is None:
            return False
        keyed = self.key(text, self.voices.get(voice_id), params)
        return keyed is not None and self.cache.contains(keyed[0])

    def stream(
        self,
        text: str,
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        mode: CacheMode = "auto",
        slots: Mapping[str, str] | None = None,
        low_latency: bool = True,
        instance: Voice | None = None,
        words: bool = False,
    ) -> Iterator[AudioChunk]:
        """The audio of one request, chunk by chunk; `slots` makes `text` a template.

        `low_latency`: someone is waiting for the first sound (see `Voice.stream`); False for
        files and pre-warming, which want throughput. `instance`: a private instance of voice
        `voice_id` to synthesize with (`VoiceStore.open_instance`) instead of the shared one.
        `words`: `text` is already the words to say (an SSML segment the front end resolved).
        """
        if slots is not None:
            yield from self._template(text, slots, voice_id, params, cancel, mode, low_latency)
            return
        voice = instance if instance is not None else self.voices.get(voice_id, cancel)
        keyed = None if mode == "off" else self.key(text, voice, params, words=words)
        if keyed is None or self.cache is None:
            yield from self._synthesized(voice, text, params, cancel, low_latency, words)
            return
        key, cached_params = keyed
        normalized = normalize_text(text)  # what the key names is what is synthesized
        yield from self.cache.stream(
            key,
            voice_id,
            lambda token: self._synthesized(
                voice, normalized, cached_params, token, low_latency, words
            ),
            cancel,
            mode=mode,
        )

    def _synthesized(
        self,
        voice: Voice,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        low_latency: bool,
        words: bool,
    ) -> Iterator[AudioChunk]:
        """The voice's audio for `text`, through the front end and within the audio budget.

        A long text is normalized group of sentences by group (`frontend.spoken_groups`), each
        handed to the voice as it is needed, so the first audio never waits for the whole
        text's normalization; sentence numbers run on across the groups."""
        if words:
            groups: Iterator[tuple[str, str]] = iter([(text, text)])
        else:
            info = voice.info
            groups = frontend.spoken_groups(text, info.family, info.language, self.front_end)
        base = 0
        for written, spoken in groups:
            top = -1
            chunks = voice.stream(spoken, params, cancel, low_latency=low_latency)
            for chunk in bounded_audio(chunks, max(len(written), len(spoken)), params):
                top = max(top, chunk.sentence_index)
                yield (
                    chunk
                    if not base
                    else replace(chunk, sentence_index=base + chunk.sentence_index)
                )
            base += top + 1

    def _template(
        self,
        source: str,
        slots: Mapping[str, str],
        voice_id: str,
        params: SynthesisParams,
        cancel: CancelToken,
        mode: CacheMode,
        low_latency: bool,
    ) -> Iterator[AudioChunk]:
        """Fixed parts from the cache, slot values synthesized, joined without clicks."""
        pieces = parse_template(source).render(slots)
        rate_hz = self.voices.info(voice_id).sample_rate_hz
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            piece_mode: CacheMode = mode if piece.cached else "off"
            chunks = list(
                self.stream(
                    piece.text,
                    voice_id,
                    params,
                    cancel,
                    mode=piece_mode,
                    low_latency=low_latency,
                )
            )
            audio = (
                np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
            )
            pcm = prepare_piece(
                float_to_pcm16(audio), rate_hz, join_before=index > 0, join_after=index < last
            )
            if index < last:
                pcm = np.concatenate([pcm, silence(pause_after(piece.text), rate_hz)])
            cancel.raise_if_cancelled()
            yield AudioChunk(pcm16_to_float(pcm), rate_hz, sentence_index=index, sentence_end=True)

    def stats(self) -> dict[str, Any]:
        if self.cache is None:
            return {"enabled": False}
        return {"enabled": True, **self.cache.stats().as_dict()}
