"""Stream a Piper VITS sentence in pieces smaller than the sentence.

The encoder part (see `vits_split`) runs once per sentence and gives the latent frames; the
decoder part then runs on consecutive windows of those frames, each widened by context frames on
both sides so that the convolutions see what they would see in the whole-sentence run; the audio
of the context frames is dropped. The first window is small, so the first piece leaves early;
windows then double up to `window_frames`, and with a `StreamPace` (the caller's clock of
playback) grow further, up to `largest_window_frames`, as far as the lead affords
(`engine/stream_windows.py`): the per-call overhead and the context recomputed at every seam
were what made streaming cost 1.4x the CPU of whole sentences.

With a stateful decoder (`vits_stateful.py`, made by the split when flow and generator are
plain stacks of 1-D convolutions, and opened by default) nothing is recomputed at a seam: every
convolution carries its past input from one window to the next, the latent frames are fed once,
windows back to back, and a sentence costs its own frames whatever the number of windows. A
call's audio lags its input by the decoder's lag (42 frames for joe, 32 of them the flow's, which
cost little): the first call is fed its window plus the lag so that the window's audio comes out
whole, and audio computed beyond a window waits for the next one. The context settings below
are the windowed decoder's (the fallback); the stateful one is exact.

Windowed defaults, measured on the joe voice over the benchmark text set (noise scales 0, SNR of the
streamed sentence against the stock graph's whole-sentence output): the generator gets its full
receptive field (11 frames: its output is then exact), the flow 16 of its 32 frames, because the
flow's influence decays fast: 16 frames give at least 85 dB on every sentence (p50 108 dB),
8 frames only 34 dB. docs/benchmarks.md ("Streaming below the sentence") has the table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import Session, SessionOptions, open_session
from utterd.models.engine.stream_windows import GrowingWindows, StreamPace
from utterd.models.errors import InvalidParameter, VoiceLoadError
from utterd.models.piper.vits_split import SplitInfo, split_vits, split_vits_files
from utterd.models.piper.vits_stateful import FIRST_CALL, LAST_CALL
from utterd.models.voice import CancelToken, EngineSettings

_LOGGER = logging.getLogger(__name__)

DEFAULT_FIRST_WINDOW_FRAMES: Final = 8
DEFAULT_WINDOW_FRAMES: Final = 64
DEFAULT_FLOW_CONTEXT_FRAMES: Final = 16
DEFAULT_LARGEST_WINDOW_FRAMES: Final = 128
"""Windows grown by the lead stop here unless the voice says otherwise (the Piper family gives
its throughput window, so that streaming's decoder buffers peak no higher than a file's)."""
DEFAULT_STATEFUL_LARGEST_WINDOW_FRAMES: Final = 128
"""Largest window of a stateful decoder, whatever the lead or the throughput window."""


@dataclass(frozen=True)
class StreamSettings:
    """How a sentence's latent frames are cut into decoder windows."""

    first_window_frames: int = DEFAULT_FIRST_WINDOW_FRAMES
    """Frames of the first window (8 frames = 93 ms of audio at 22050 Hz, hop 256)."""

    window_frames: int = DEFAULT_WINDOW_FRAMES
    """Windows double from the first one up to this size, whatever the lead."""

    context_frames: int | None = None
    """Generator context each side of a window; None means its receptive field (exact)."""

    flow_context_frames: int | None = DEFAULT_FLOW_CONTEXT_FRAMES
    """Extra flow context each side (flow in the decoder only), at most its receptive field;
    None means the whole receptive field (exact; 2 · 16 more flow frames per window for joe)."""

    largest_window_frames: int | None = DEFAULT_LARGEST_WINDOW_FRAMES
    """Largest window once playback has a lead (`decode`'s `pace`); None or a size below
    `window_frames` means `window_frames`."""

    stateful_largest_window_frames: int | None = DEFAULT_STATEFUL_LARGEST_WINDOW_FRAMES
    """With a stateful decoder, windows stop growing here (None: `largest_window_frames`):
    larger windows save only a call's overhead there, and raise the decoder's memory peak."""

    def validated(self) -> StreamSettings:
        """Return self, or raise InvalidParameter naming the field that is out of range."""
        if self.first_window_frames < 1:
            raise InvalidParameter(
                f"first_window_frames must be >= 1, got {self.first_window_frames}"
            )
        if self.window_frames < self.first_window_frames:
            raise InvalidParameter(
                f"window_frames ({self.window_frames}) must be >= first_window_frames "
                f"({self.first_window_frames})"
            )
        for name in ("largest_window_frames", "stateful_largest_window_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidParameter(f"{name} must be >= 1 or None, got {value}")
        for name in ("context_frames", "flow_context_frames"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidParameter(f"{name} must be >= 0 or None, got {value}")
        return self


@dataclass(frozen=True)
class EncodedSentence:
    """The encoder's result for one sentence."""

    latent: npt.NDArray[np.float32]
    """Latent frames [1, C, frames], the decoder's input."""

    durations: npt.NDArray[np.int64] | None
    """Frames per phoneme id (sums to `frames`), or None when the graph does not expose them."""

    speaker_id: int | None
    """Speaker the latent was made for (the decoder needs it too for multi-speaker voices)."""

    @property
    def frames(self) -> int:
        return int(self.latent.shape[2])


@dataclass(frozen=True)
class VitsPiece:
    """A decoded window of a sentence."""

    samples: npt.NDArray[np.float32]
    """Mono float32 audio of frames [start_frame, end_frame), as the voice made it (no gain)."""

    start_frame: int
    """First latent frame this piece covers (sample offset = start_frame · hop)."""

    end_frame: int
    """One past the last latent frame this piece covers."""

    last: bool
    """True for the sentence's last piece."""


class StreamingVitsRunner:
    """Runs split VITS parts: the encoder once per sentence, the decoder window by window.

    Stateless between calls and thread-safe (the sessions are), so one runner serves every
    worker thread of a voice.
    """

    def __init__(
        self,
        encoder: Session,
        decoder: Session,
        info: SplitInfo,
        settings: StreamSettings | None = None,
    ) -> None:
        self.info = info
        if settings is None and info.quantized:
            settings = StreamSettings(flow_context_frames=None)  # exact: see SplitInfo.quantized
        self.settings = (settings or StreamSettings()).validated()
        self._encoder: Session | None = encoder
        self._decoder: Session | None = decoder
        self._check_sessions(encoder, decoder)
        self.context_frames = (
            info.decoder_context_frames
            if self.settings.context_frames is None
            else self.settings.context_frames
        )
        flow_context = (
            info.flow_context_frames
            if self.settings.flow_context_frames is None
            else min(self.settings.flow_context_frames, info.flow_context_frames)
        )
        self.flow_context_frames = flow_context if info.flow_in_decoder else 0
        self.stateful = FIRST_CALL in decoder.input_names
        """The decoder keeps flow and generator state between windows (`vits_stateful.py`);
        the context settings do not apply then."""
        self._state_outputs = [
            state[0].replace("state_in_", "state_out_", 1) for state in info.stateful_states
        ]
        self._encoder_outputs = [info.encoder_latent] + (
            [info.encoder_durations] if info.encoder_durations else []
        )

    def _check_sessions(self, encoder: Session, decoder: Session) -> None:
        info = self.info
        expected_encoder = set(info.encoder_inputs)
        expected_decoder = {info.decoder_latent}
        if FIRST_CALL in decoder.input_names:
            if info.stateful_lag_samples is None:
                raise VoiceLoadError(
                    f"{decoder.label}: a stateful decoder, but the split made none"
                )
            expected_decoder.update((FIRST_CALL, LAST_CALL))
            expected_decoder.update(state[0] for state in info.stateful_states)
        elif info.decoder_trim:
            expected_decoder.add(info.decoder_trim)
        if info.multi_speaker:
            expected_decoder.add("sid")
        for part, session, expected in (
            ("encoder", encoder, expected_encoder),
            ("decoder", decoder, expected_decoder),
        ):
            if set(session.input_names) != expected:
                raise VoiceLoadError(
                    f"{session.label}: the {part} part takes {list(session.input_names)}, "
                    f"expected {sorted(expected)}"
                )

    def with_settings(self, settings: StreamSettings) -> StreamingVitsRunner:
        """A runner with other window settings on the same two sessions (nothing is reloaded)."""
        return StreamingVitsRunner(
            self._session(self._encoder), self._session(self._decoder), self.info, settings
        )

    @property
    def encoder_session(self) -> Session | None:
        """The encoder part's session (for runtime facts: backend, threads); None once closed."""
        return self._encoder

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.info.hop_length

    def encode(
        self,
        phoneme_ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        speaker_id: int | None = None,
        cancel: CancelToken | None = None,
    ) -> EncodedSentence:
        """Run the encoder part on one sentence's phoneme ids (a cancel aborts the run).

        `scales` is the stock graph's [noise_scale, length_scale, noise_w] (float32 [3]).
        """
        encoder = self._session(self._encoder)
        feeds: dict[str, npt.NDArray[Any]] = {
            "input": np.asarray([phoneme_ids], dtype=np.int64),
            "input_lengths": np.array([len(phoneme_ids)], dtype=np.int64),
            "scales": np.asarray(scales, dtype=np.float32),
        }
        if self.info.multi_speaker:
            feeds["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        outputs = encoder.run(self._encoder_outputs, feeds, cancel)
        latent = np.asarray(outputs[0], dtype=np.float32)
        durations = (
            np.asarray(outputs[1]).reshape(-1).astype(np.int64) if len(outputs) > 1 else None
        )
        return EncodedSentence(latent, durations, speaker_id)

    def decode(
        self,
        encoded: EncodedSentence,
        cancel: CancelToken,
        *,
        first_window_frames: int | None = None,
        pace: StreamPace | None = None,
        frame_s: float = 0.0,
    ) -> Iterator[VitsPiece]:
        """Decode an encoded sentence window by window, checking `cancel` before each window.

        `first_window_frames` overrides the settings' first window (clamped to the largest):
        a sentence whose listener already has audio queued needs no small first window.
        With a `pace` (one per request), each window's cost and `frame_s` seconds of playing
        time per frame handed out are recorded in it, and windows grow as far as its lead
        affords, up to `largest_window_frames`; without one, they follow `window_plan`.
        """
        decoder = self._session(self._decoder)
        latent = encoded.latent
        frames = encoded.frames
        hop = self.info.hop_length
        context, flow_context = self.context_frames, self.flow_context_frames
        largest = self.settings.window_frames
        first = self.settings.first_window_frames
        if first_window_frames is not None:
            first = max(1, min(first_window_frames, largest))
        if self.stateful:
            grown = self.settings.stateful_largest_window_frames
            if grown:
                largest = min(largest, grown)
                first = min(first, largest)
            yield from self._decode_stateful(
                decoder,
                encoded,
                cancel,
                GrowingWindows(
                    frames,
                    first,
                    largest,
                    grown or self.settings.largest_window_frames,
                    pace=pace,
                ),
                pace,
                frame_s,
            )
            return
        # The generator's frames count the window's cost; the flow's context is cheaper.
        windows = GrowingWindows(
            frames,
            first,
            largest,
            self.settings.largest_window_frames,
            pace=pace,
            context_frames=2 * context,
        )
        clock = pace.clock if pace is not None else time.perf_counter
        sid = (
            np.array([encoded.speaker_id or 0], dtype=np.int64) if self.info.multi_speaker else None
        )
        for number, (start, end) in enumerate(windows):
            cancel.raise_if_cancelled()
            started = clock()
            # Frames the generator sees, and (flow in the decoder) the frames the flow sees.
            gen_start, gen_end = max(0, start - context), min(frames, end + context)
            feeds: dict[str, npt.NDArray[Any]] = {}
            if self.info.decoder_trim:
                flow_start = max(0, gen_start - flow_context)
                flow_end = min(frames, gen_end + flow_context)
                feeds[self.info.decoder_latent] = np.ascontiguousarray(
                    latent[:, :, flow_start:flow_end]
                )
                feeds[self.info.decoder_trim] = np.array(
                    [gen_start - flow_start, flow_end - gen_end], dtype=np.int64
                )
            else:
                feeds[self.info.decoder_latent] = np.ascontiguousarray(
                    latent[:, :, gen_start:gen_end]
                )
            if sid is not None:
                feeds["sid"] = sid
            audio = decoder.run([self.info.decoder_audio], feeds, cancel)[0].reshape(-1)
            samples = np.asarray(
                audio[(start - gen_start) * hop : (end - gen_start) * hop], dtype=np.float32
            )
            decode_s = clock() - started
            _LOGGER.debug(
                "vits_window index=%d frames=%d..%d decoded=%d..%d decode_ms=%.1f",
                number,
                start,
                end,
                gen_start,
                gen_end,
                decode_s * 1e3,
            )
            if pace is not None:
                pace.ran(gen_end - gen_start, decode_s)
                pace.handed_out((end - start) * frame_s)
            yield VitsPiece(samples, start, end, last=end == frames)

    def _decode_stateful(
        self,
        decoder: Session,
        encoded: EncodedSentence,
        cancel: CancelToken,
        windows: GrowingWindows,
        pace: StreamPace | None,
        frame_s: float,
    ) -> Iterator[VitsPiece]:
        """`decode` with the stateful decoder: each latent frame fed once, windows back to back.

        A call fed latent frames [fed, target) returns samples [fed·hop − lag, target·hop −
        lag) (from 0 on the first call, to the end on the last): to have a window's audio out,
        its input runs `lag` samples past its end, and what comes out beyond the window waits
        for the next one.
        """
        info = self.info
        latent = encoded.latent
        frames = encoded.frames
        hop = info.hop_length
        lag = info.stateful_lag_samples or 0
        lag_frames = -(-lag // hop)
        clock = pace.clock if pace is not None else time.perf_counter
        states: dict[str, npt.NDArray[Any]] = {
            name: np.zeros((1, channels, first), dtype=np.float32)
            for name, channels, _, first in info.stateful_states
        }
        sid = np.array([encoded.speaker_id or 0], dtype=np.int64) if info.multi_speaker else None
        outputs = [info.decoder_audio, *self._state_outputs]
        fed = 0  # latent frames fed so far
        pending = np.zeros(0, dtype=np.float32)  # audio computed beyond the last piece
        pending_at = 0  # its first sample's index in the sentence
        for number, (start, end) in enumerate(windows):
            cancel.raise_if_cancelled()
            started = clock()
            if end + lag_frames >= frames:  # the rest fits in this call: end the sentence
                end = frames
            target = end + lag_frames if end < frames else frames
            feeds: dict[str, npt.NDArray[Any]] = {
                info.decoder_latent: np.ascontiguousarray(latent[:, :, fed:target]),
                FIRST_CALL: np.array([fed == 0], dtype=np.int64),
                LAST_CALL: np.array([target == frames], dtype=np.int64),
            }
            if sid is not None:
                feeds["sid"] = sid
            feeds.update(states)
            result = decoder.run(outputs, feeds, cancel)
            states = {state[0]: result[i + 1] for i, state in enumerate(info.stateful_states)}
            audio = np.asarray(result[0], dtype=np.float32).reshape(-1)
            pending = np.concatenate((pending, audio)) if pending.size else audio
            piece_start, piece_end = start * hop - pending_at, end * hop - pending_at
            samples = pending[piece_start:piece_end]
            pending, pending_at = pending[piece_end:], end * hop
            decode_s = clock() - started
            _LOGGER.debug(
                "vits_window index=%d frames=%d..%d fed=%d..%d decode_ms=%.1f",
                number,
                start,
                end,
                fed,
                target,
                decode_s * 1e3,
            )
            if pace is not None:
                # The window's own frames, not the frames fed: a first call is fed the lag's
                # frames more, which cost the flow only, and counting them as generator frames
                # sized the next window 2.5x what the lead afforded (gaps).
                pace.ran(end - start, decode_s)
                pace.handed_out((end - start) * frame_s)
            fed = target
            yield VitsPiece(samples, start, end, last=end == frames)
            if end == frames:
                return

    def stream(
        self,
        phoneme_ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        cancel: CancelToken,
        speaker_id: int | None = None,
        *,
        first_window_frames: int | None = None,
        pace: StreamPace | None = None,
        frame_s: float = 0.0,
    ) -> Iterator[VitsPiece]:
        """Encode one sentence, then yield its audio window by window (`decode`'s windows).

        Raises `Cancelled` (from `cancel`) before the encoder and before every window, and a
        cancel during a model run aborts that run.
        """
        cancel.raise_if_cancelled()
        encoded = self.encode(phoneme_ids, scales, speaker_id, cancel)
        yield from self.decode(
            encoded, cancel, first_window_frames=first_window_frames, pace=pace, frame_s=frame_s
        )

    def synthesize(
        self,
        phoneme_ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        speaker_id: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """The whole sentence at once through the split parts (one decoder call, no windows)."""
        encoded = self.encode(phoneme_ids, scales, speaker_id)
        if self.stateful:
            one_call = max(1, encoded.frames)
            whole = self.with_settings(
                dataclasses.replace(
                    self.settings,
                    first_window_frames=one_call,
                    window_frames=one_call,
                    stateful_largest_window_frames=one_call,
                )
            )
            samples = [p.samples for p in whole.decode(encoded, CancelToken())]
            return np.concatenate(samples) if samples else np.zeros(0, dtype=np.float32)
        decoder = self._session(self._decoder)
        feeds: dict[str, npt.NDArray[Any]] = {self.info.decoder_latent: encoded.latent}
        if self.info.decoder_trim:
            feeds[self.info.decoder_trim] = np.zeros(2, dtype=np.int64)
        if self.info.multi_speaker:
            feeds["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        audio = decoder.run([self.info.decoder_audio], feeds)[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _session(self, session: Session | None) -> Session:
        if session is None:
            raise VoiceLoadError("the streaming VITS runner was closed")
        return session

    def close(self) -> None:
        """Release both parts."""
        for session in (self._encoder, self._decoder):
            if session is not None:
                session.close()
        self._encoder = self._decoder = None


def open_streaming_runner(
    model_path: Path,
    engine: EngineSettings,
    *,
    label: str,
    cache_dir: Path | None = None,
    settings: StreamSettings | None = None,
    flow_in_decoder: bool = True,
    stateful: bool = True,
    encoder_options: SessionOptions | None = None,
    decoder_options: SessionOptions | None = None,
) -> StreamingVitsRunner:
    """Split `model_path` (cached in `cache_dir`) and open both parts with `engine`'s backend.

    With `stateful`, the decoder is the stateful one when the split could make it, else (and
    said in the log) the windowed one.

    `encoder_options` / `decoder_options` go to `open_session` for each part (e.g. OpenVINO
    length buckets: the decoder's `latent` must never be padded, or the last window's audio
    changes). Raises VoiceLoadError naming the model when the graph cannot be split or a part
    not loaded.
    """
    started = time.perf_counter()
    # From the cached files when there is a cache: a session opened from bytes holds them.
    encoder_part: Path | bytes
    decoder_part: Path | bytes
    if cache_dir is not None:
        encoder_part, decoder_part, info = split_vits_files(
            model_path, cache_dir, flow_in_decoder=flow_in_decoder, stateful=stateful
        )
    else:
        encoder_part, decoder_part, info = split_vits(
            model_path, flow_in_decoder=flow_in_decoder, stateful=stateful
        )
    # The text encoder is thousands of small nodes: ORT's buffer-reuse planner took most of its
    # opening time, and runs were no slower without it (SessionOptions.memory_reuse).
    # Its optimized graph is kept in the split parts' own folder, so a restart skips the
    # optimizer, and parts cut again (a new split format, a changed model) take theirs along.
    encoder_options = dataclasses.replace(
        encoder_options or SessionOptions(),
        memory_reuse=False,
        optimized_cache_dir=(
            encoder_part.parent / "optimized" if isinstance(encoder_part, Path) else None
        ),
    )
    # The decoder's optimized graph is kept too. Its reuse planning is worth keeping for the
    # FP32 windows (runs were a little slower without), but a QDQ decoder's planner took 0.33 s
    # of a 0.09 s opening, and its runs were no slower without it.
    decoder_options = dataclasses.replace(
        decoder_options or SessionOptions(),
        memory_reuse=not info.quantized,
        optimized_cache_dir=encoder_options.optimized_cache_dir,
    )
    encoder = open_session(encoder_part, engine, label=f"{label}:encoder", options=encoder_options)
    try:
        decoder = open_session(
            decoder_part, engine, label=f"{label}:decoder", options=decoder_options
        )
    except VoiceLoadError:
        encoder.close()
        raise
    try:
        runner = StreamingVitsRunner(encoder, decoder, info, settings)
    except (VoiceLoadError, InvalidParameter):
        encoder.close()
        decoder.close()
        raise
    if stateful and not runner.stateful:
        _LOGGER.info("vits_stream_windowed voice=%s reason=generator_not_stateful", label)
    _LOGGER.info(
        "vits_stream_ready voice=%s flow_in_decoder=%s stateful=%s context=%d flow_context=%d "
        "load_ms=%.0f",
        label,
        info.flow_in_decoder,
        runner.stateful,
        runner.context_frames,
        runner.flow_context_frames,
        (time.perf_counter() - started) * 1e3,
    )
    return runner
