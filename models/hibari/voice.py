"""A loaded hibari voice: hibari's G2P and DSP around our own ONNX sessions.

hibari's network predicts a spectrum per frame and `hibari.dsp.synth` turns it into a waveform.
We keep hibari's text side (sentence splitting, G2P, phoneme ids) and its DSP, but run both ONNX
graphs (the acoustic model and the G2P's out-of-vocabulary net) through `backend.py`, so thread
settings and error handling match every other voice.

IPA given in SSML (`<phoneme>`) skips the G2P: `ipa.py` maps it onto the G2P's symbols, and
it is synthesized as text is.

Rates up to NATIVE_MAX_RATE are the model's own `speed`; faster ones add WSOLA (`tsm.py`) on
each piece's audio, window by window, so the first audio still leaves after the first window.

Importing this module imports hibari (and through its DSP, scipy: about 0.2 s), so only
`HibariFamily.load` imports it; discovery (hibari_family.py) reads the registry without it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import hibari
import hibari.dsp
import hibari.tts
import hibari.voices
import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import Session, SessionOptions, open_session
from utterd.models.engine.stream_windows import StreamPace
from utterd.models.errors import SynthesisError, VoiceLoadError
from utterd.models.hibari.g2p_tables import G2pTables, packed_g2p
from utterd.models.hibari.ipa import misaki_sentences
from utterd.models.hibari.split import SplitSession, open_split
from utterd.models.hibari.stream import (
    DEFAULT_FIRST_WINDOW_FRAMES,
    DEFAULT_WINDOW_FRAMES,
    HOP,
    piece_samples,
    stream_ids,
)
from utterd.models.text import budget, guard
from utterd.models.text.ipa import report_reading
from utterd.models.tsm import input_needed, time_scaled
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceInfo,
)

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE_HZ: Final[int] = int(hibari.SAMPLE_RATE)

_MODEL_INPUTS: Final = frozenset({"ids", "speed"})
_MODEL_OUTPUTS: Final = ("lh", "theta", "ln", "lr", "phi", "f0")
"""The acoustic model's outputs in the order `hibari.dsp.synth` takes them."""

_OOV_INPUTS: Final = frozenset({"chars"})
_MIN_IDS: Final = 3  # the two 0 pads plus one phoneme; Hibari.from_ids returns silence below this
NATIVE_MAX_RATE: Final = 1.5
"""Fastest rate said by the model's own `speed` input; a faster rate is the audio at this rate
made faster by time-scale modification (tsm.py), window by window inside the stream.

The model rounds each phoneme's frames, `round((duration - 1) / speed)`, and keeps at least
one, so its speed is not the audio's. Measured with bench/bench_rates.py (duration × rate
against the rate-1 audio, noise off; Whisper tiny.en WER with hibari's noise;
docs/benchmarks.md, "Rates"):

| split | × rate at 1.25 | at 1.5 to 4 | WER at rate 2 | 3 | 4 |
|---|---:|---:|---:|---:|---:|
| own speed up to 1.5 (this) | 1.091 | 0.956 | 16.9 % | 66.2 % | 95.9 % |
| WSOLA from rate 1 (`--hibari-native-max 1`) | 1.000 | 1.000 | 3.9 % | 61.4 % | 98.3 % |

Past 1.25 the model's speed costs more words than WSOLA does (its two-frame phonemes become
one frame at 1.5). It is kept up to 1.5, not 1, because rates up to 1.5 are hibari's own
`speed`, bit for bit, which tests/unit/test_hibari_family.py checks; setting this to 1.0 needs
that test to compare another rate."""

MAX_PHONEMES_PER_CALL: Final = 250
"""Most phonemes one model call takes (hibari cuts sentences at clause marks near 400; a
clause without one is cut here at a word boundary, and the model's context stays bounded)."""


@dataclass(frozen=True)
class _Piece:
    """A clause-sized piece of a sentence, as hibari's G2P cuts long sentences."""

    sentence_index: int
    ids: list[int]
    sentence_end: bool
    """The sentence's last piece."""


class HibariFrontend(hibari.Hibari):  # type: ignore[misc]  # hibari ships no type hints
    """hibari's text side only: split_sentences, phonemize (G2P) and ids.

    `hibari.Hibari.__init__` opens its own ONNX session with its own thread settings; we skip it
    and set just the attributes the text methods read, because our session comes from backend.py.
    """

    def __init__(self, voice: str, g2p: Any, tables: G2pTables | None = None) -> None:
        self.voice = voice
        self.model_path = None
        with open(os.path.join(hibari.tts.ASSETS, "vocab.json"), encoding="utf-8") as vocab_file:
            self.vocab = json.load(vocab_file)
        self._g2p = g2p
        self.tables = tables
        """The G2P's packed tables, whose mapped pages each sentence's lookups leave resident."""


def _open_oov_net(name: str, engine: EngineSettings, label: str) -> Any:
    """hibari's out-of-vocabulary word net, run through our backend.

    One ONNX call per unknown word on a 0.65M-parameter net: extra threads only add overhead,
    so it gets one thread whatever the voice uses; and no memory arena (with one, its runs
    grow ONNX Runtime's shared CPU arena, which keeps what it grew to: 1 MiB more in use).
    """
    from hibari.g2p.oov import ASSETS, OOV

    british = bool(hibari.voices.VOICES[name]["british"])
    oov_path = Path(ASSETS) / ("oov_gb.onnx" if british else "oov.onnx")
    session = open_session(
        oov_path,
        EngineSettings(backend=engine.backend, threads=1),
        label=f"{label}:oov",
        options=SessionOptions(memory_arena=False),
    )
    if set(session.input_names) != _OOV_INPUTS:
        raise VoiceLoadError(
            f"{oov_path}: expected inputs {sorted(_OOV_INPUTS)}, found {list(session.input_names)}"
        )
    # OOV only calls session.run(None, feeds), which our Session provides.
    return OOV(str(oov_path), session=session)


class _LazyOovNet:
    """hibari's out-of-vocabulary net, opened on the first word the lexicon cannot read.

    What hibari itself does: most prompts have no such word, and opening the net cost every
    load about 45 ms. The file's presence is checked at load, so a missing net is still named
    then; a net that fails to open is named (VoiceLoadError) by the request that needed it.
    """

    def __init__(self, name: str, engine: EngineSettings, label: str) -> None:
        from hibari.g2p.oov import ASSETS

        british = bool(hibari.voices.VOICES[name]["british"])
        path = Path(ASSETS) / ("oov_gb.onnx" if british else "oov.onnx")
        if not path.is_file():
            raise VoiceLoadError(f"{path}: hibari's out-of-vocabulary net is missing")
        self._args = (name, engine, label)
        self._net: Any = None
        self._lock = threading.Lock()

    def __call__(self, word: str) -> Any:
        net = self._net
        if net is None:
            with self._lock:
                if self._net is None:
                    self._net = _open_oov_net(*self._args)
                net = self._net
        return net(word)


class HibariVoice(Voice):
    """A loaded hibari voice: hibari G2P → our ONNX session → hibari DSP, one chunk per sentence."""

    def __init__(
        self,
        info: VoiceInfo,
        frontend: HibariFrontend,
        session: Session,
        windows: SplitSession | None = None,
    ) -> None:
        self.info = info
        self._frontend = frontend
        self._session: Session | None = session
        # The model cut at its decoder (hibari_split), which is then also `session`: its `run`
        # gives the whole graph's outputs bit for bit, and streamed requests that are not
        # deterministic decode a few frames first. None when the graph could not be cut
        # (`session` is then the whole graph).
        self._windows = windows
        # hibari's G2P (tokenizer, tagger, lexicon) is not documented as thread-safe; it is
        # cheap next to the model, so it is serialized per voice while inference runs in parallel.
        self._frontend_lock = threading.Lock()
        self._british = bool(hibari.voices.VOICES[frontend.voice]["british"])
        """The accent of the G2P's symbols the model learnt (for `stream_phonemes`)."""

    @property
    def backend(self) -> str:
        """The inference backend running this voice."""
        return self._session.backend if self._session is not None else ""

    def runtime_info(self) -> dict[str, Any]:
        """How this voice runs: hibari ships its model already quantized to int8."""
        return {
            **(self._session.runtime_info() if self._session is not None else {}),
            "decoder_windows": self._windows is not None,
            **(
                {"decoder_context_frames": self._windows.context_frames}
                if self._windows is not None
                else {}
            ),
            "precision": "int8",
            "model_file": str(self.info.model_path),
        }

    supports_phonemes = True
    """hibari says IPA mapped onto its G2P's misaki symbols (`hibari/ipa.py`)."""

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        yield from self._synthesize(self._pieces(text, cancel), params, cancel, low_latency)

    def stream_phonemes(
        self,
        phonemes: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        """Say written IPA through the text path's synthesis, as the G2P's symbols would be."""
        sentences, skipped = misaki_sentences(phonemes, british=self._british)
        pieces: list[_Piece] = []
        for sentence in sentences:
            index = pieces[-1].sentence_index + 1 if pieces else 0
            pieces.extend(self._sentence_pieces(index, [sentence], True))
        report_reading(self.info.voice_id, phonemes, skipped, bool(pieces))
        yield from self._synthesize(iter(pieces), params, cancel, low_latency)

    def _synthesize(
        self,
        pieces: Iterator[_Piece],
        params: SynthesisParams,
        cancel: CancelToken,
        low_latency: bool,
    ) -> Iterator[AudioChunk]:
        """Pieces of phoneme ids → audio chunks (see `Voice.stream`)."""
        params = params.validated()
        self.info.speaker_id(params.speaker)  # single speaker: rejects anything but None/0
        session = self._session
        if session is None:
            raise VoiceLoadError(f"voice {self.info.voice_id!r} was closed")
        # One generator per request, as Hibari.stream does; seeded when the caller wants
        # the same audio for the same text.
        rng = np.random.default_rng(0) if params.deterministic else np.random.default_rng()
        # The model's own speed up to NATIVE_MAX_RATE, the rest by time-scale modification of
        # its audio (tsm.py), piece by piece inside the stream.
        native = min(params.rate, NATIVE_MAX_RATE)
        tsm_speed = params.rate / native
        speed = np.array([native], dtype=np.float32)
        if low_latency:
            # The signal stage runs in windows, so the first audio leaves after one small window
            # instead of after the sentence. A deterministic request gets hibari.dsp.synth's
            # audio bit for bit (the model on all of a piece's frames at once, one noise draw
            # per piece up front) for pieces up to stream.LONG_PIECE_FRAMES, and a longer piece
            # decoded in blocks (the same audio in both paths); any other draws its noise window
            # by window (~2 ms less for a short prompt's first audio) and runs the cut model's
            # decoder on the first two
            # windows' frames before the rest (hibari_split: about half the model's time; the
            # audio differs only by the decoder's per-call activation scale, far below the seam
            # threshold).
            acoustic = session if params.deterministic or self._windows is None else self._windows
            # Made faster, the first window holds as much audio as at rate 1.
            first_samples = input_needed(
                DEFAULT_FIRST_WINDOW_FRAMES * HOP, tsm_speed, SAMPLE_RATE_HZ
            )
            first = -(-first_samples // HOP)
            pace = StreamPace()  # one clock of playback for the request: later pieces keep the lead
            for piece in pieces:
                windows = stream_ids(
                    acoustic,
                    piece.ids,
                    float(speed[0]),
                    rng,
                    cancel,
                    first_window_frames=first,
                    window_frames=max(first, DEFAULT_WINDOW_FRAMES),
                    exact_noise=params.deterministic,
                    decoder_windows=not params.deterministic,
                    pace=pace,
                    frame_s=HOP / SAMPLE_RATE_HZ / tsm_speed,
                )
                scaled = time_scaled(
                    ((w.samples, w.last) for w in windows), tsm_speed, SAMPLE_RATE_HZ
                )
                yield from self._chunks(piece, scaled, params)
            return
        # Throughput (a file, the phrase cache): per piece, the acoustic model, then the signal
        # stage in two halves at once (synthesize_piece; the second half on a helper thread of
        # this call's own, so it inherits the caller's CPU priority). A deterministic request
        # gets hibari.dsp.synth's audio bit for bit, a piece over stream.LONG_PIECE_FRAMES the
        # low-latency path's block audio (piece_samples). Running the next piece's model during this
        # piece's signal stage instead (a look-ahead) was slower on two cores: three busy threads
        # on two cores (docs/benchmarks.md).
        half = ThreadPoolExecutor(1, thread_name_prefix="utterd-hibari-dsp")
        try:
            for piece in pieces:
                samples = piece_samples(
                    session,
                    piece.ids,
                    float(speed[0]),
                    rng,
                    cancel,
                    half,
                    exact_noise=params.deterministic,
                )
                scaled = time_scaled(((samples, True),), tsm_speed, SAMPLE_RATE_HZ)
                yield from self._chunks(piece, scaled, params)
        finally:
            half.shutdown(wait=False)

    def _pieces(self, text: str, cancel: CancelToken) -> Iterator[_Piece]:
        """The text's pieces in order: phoneme ids per clause-sized piece of each sentence.

        The guard hands over bounded pieces of the text (guard.pieces), so hibari's G2P and
        sentence splitting, which are not linear in a piece's length, never see a long one;
        a phoneme string still over the model's budget is cut at a word boundary.
        """
        index = 0
        for text_piece in guard.pieces(text, self.info.language, cancel):
            sentences = HibariFrontend.split_sentences(text_piece.text)
            for number, sentence in enumerate(sentences):
                cancel.raise_if_cancelled()
                with self._frontend_lock:
                    try:
                        # Long sentences come back as several clause-sized phoneme strings.
                        phonemes = self._frontend.phonemize(sentence)
                        if self._frontend.tables is not None:
                            self._frontend.tables.drop_pages()
                    except (ArithmeticError, LookupError, ValueError, RecursionError) as err:
                        raise SynthesisError(
                            f"hibari's G2P failed on {sentence[:60]!r}: {type(err).__name__}: {err}"
                        ) from err
                # A piece cut inside a sentence: its last sentence goes on in the next piece.
                ends = text_piece.sentence_end or number < len(sentences) - 1
                found = self._sentence_pieces(index, phonemes, ends)
                for piece in found:
                    cancel.raise_if_cancelled()
                    yield piece
                if found and ends:
                    index += 1

    def _sentence_pieces(self, index: int, phonemes: list[str], ends: bool) -> list[_Piece]:
        """One sentence's phoneme strings → its pieces of ids, each cut to the model's budget at
        a clause mark, else a word boundary; pieces too short to say are dropped. The last
        piece ends the sentence when `ends`."""
        found = [
            ids
            for ps in phonemes
            for part in budget.split(
                ps, MAX_PHONEMES_PER_CALL, budget.is_clause_mark, budget.is_space
            )
            if len(ids := self._frontend.ids(part)) >= _MIN_IDS
        ]
        return [
            _Piece(index, ids, sentence_end=ends and number == len(found) - 1)
            for number, ids in enumerate(found)
        ]

    def _chunks(
        self,
        piece: _Piece,
        windows: Iterator[tuple[npt.NDArray[np.float32], bool]],
        params: SynthesisParams,
    ) -> Iterator[AudioChunk]:
        """(samples, the piece's last) per window → audio chunks with the request's gain."""
        started = time.perf_counter()
        for window, last in windows:
            samples = np.clip(window * np.float32(params.volume), -1.0, 1.0)
            yield AudioChunk(
                samples,
                SAMPLE_RATE_HZ,
                sentence_index=piece.sentence_index,
                sentence_end=last and piece.sentence_end,
            )
        _LOGGER.debug(
            "piece_synthesized voice=%s sentence=%d phoneme_ids=%d synth_ms=%.1f",
            self.info.voice_id,
            piece.sentence_index,
            len(piece.ids),
            (time.perf_counter() - started) * 1e3,
        )

    def warm_up(self) -> None:
        """A deterministic run (all frames at once) and a normal one (decoder windows first)."""
        super().warm_up()
        self.warm_up_after_canary()

    def warm_up_after_canary(self) -> None:
        """The normal run alone (`canary.WarmsUpAfterCanary`): the voice store's load-time
        canary is the deterministic run, so a checked load does not say it twice."""
        for _ in self.stream("Ready.", SynthesisParams(), CancelToken()):
            pass

    def close(self) -> None:
        if self._windows is not None and self._windows is not self._session:
            self._windows.close()
        self._windows = None
        if self._session is not None:
            self._session.close()
            self._session = None


def session_options(optimized_dir: Path | None = None) -> SessionOptions:
    """How the acoustic model's sessions are opened (benchmarks open them the same way).

    Kept optimized in `optimized_dir` (a restart skips the optimizer: 0.20 -> 0.03 s to open,
    measured), without the buffer-reuse planner, which cost opening time and no run time, and
    without ONNX Runtime's arena: its few large buffers go back to malloc after each run
    instead of the arena keeping its largest run's worth (daemon peak RSS while speaking,
    bench_memory.py, docs/benchmarks.md "Memory and ready time").
    Its threads do not spin (backend.py): spinning made the model 8 % faster alone, but in the
    daemon live first audio came later (12.7 -> 13.9-14.5 ms p50) and pre-warming slowed live
    requests (docs/benchmarks.md).
    """
    return SessionOptions(optimized_cache_dir=optimized_dir, memory_reuse=False, memory_arena=False)


def open_decoder_windows(
    model: Path, engine: EngineSettings, *, label: str, options: SessionOptions
) -> SplitSession | None:
    """The acoustic model cut into front + decoder (`hibari/split.py`), so that streaming can decode
    a few frames first; None when it cannot be cut (logged with the reason: the voice then
    streams with the whole model)."""
    try:
        return open_split(model, engine, label=label, options=options)
    except VoiceLoadError as err:
        _LOGGER.warning(
            "hibari_split_unavailable voice=%s reason=%s (the whole model runs: first audio "
            "waits for all of a piece's frames)",
            label,
            err.message,
        )
        return None


def load_voice(
    info: VoiceInfo, name: str, engine: EngineSettings, *, optimized_dir: Path | None = None
) -> HibariVoice:
    """Open hibari voice `name` (a registry entry) from `info.model_path` with `engine`.

    `optimized_dir`: where the acoustic model's graph, as optimized for this CPU, and the G2P's
    packed tables (g2p_tables.py) are kept.
    """
    if info.model_path is None:
        raise VoiceLoadError(f"voice {info.voice_id!r} has no model file")
    if SAMPLE_RATE_HZ != info.sample_rate_hz:
        raise VoiceLoadError(
            f"voice {info.voice_id!r}: hibari renders at {SAMPLE_RATE_HZ} Hz, "
            f"its registry entry says {info.sample_rate_hz} Hz"
        )
    options = session_options(optimized_dir)
    # The model cut at its decoder serves every request (the whole graph's outputs bit for bit,
    # and the first frames decoded first when streaming); the whole graph only when it cannot
    # be cut. Keeping both cost 9-13 MiB; the cut was slower only beside the old look-ahead
    # thread (docs/benchmarks.md).
    windows = open_decoder_windows(info.model_path, engine, label=info.voice_id, options=options)
    session: Session = (
        windows
        if windows is not None
        else open_session(info.model_path, engine, label=info.voice_id, options=options)
    )
    outputs = set(session.output_names)
    if set(session.input_names) != _MODEL_INPUTS or not outputs.issuperset(_MODEL_OUTPUTS):
        session.close()
        raise VoiceLoadError(
            f"{info.model_path} is not a hibari model: expected inputs {sorted(_MODEL_INPUTS)} "
            f"and outputs {list(_MODEL_OUTPUTS)}, found inputs {list(session.input_names)} "
            f"and outputs {list(session.output_names)}"
        )
    try:
        british = bool(hibari.voices.VOICES[name]["british"])
        # hibari's G2P with its lexicons and tagger packed and mapped from the model store
        # (g2p_tables.py): as dicts they held 101 MiB and took 0.3 s to parse at every start.
        g2p, tables = packed_g2p(
            _LazyOovNet(name, engine, info.voice_id), british=british, folder=optimized_dir
        )
        frontend = HibariFrontend(name, g2p, tables)
    except VoiceLoadError:
        session.close()
        raise
    except (OSError, ValueError, KeyError) as err:
        session.close()
        raise VoiceLoadError(f"cannot load hibari G2P for {info.voice_id!r}: {err}") from err
    return HibariVoice(info, frontend, session, windows)
