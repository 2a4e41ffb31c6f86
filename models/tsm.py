"""Time-scale modification (TSM) of speech: faster or slower, same pitch, chunk by chunk (WSOLA).

A voice's own duration control runs out before the fastest rates a screen-reader user asks for:
its per-phoneme durations round to whole frames and keep at least one frame each, so at rate 4
the audio is still about half as long as at rate 1 (docs/benchmarks.md, "Rates"). The rest of
the speed-up is done on the audio by WSOLA (waveform-similarity overlap-add):

- The output is built from Hann-windowed frames of `2 · hop` samples placed every `hop` samples
  (50 % overlap: the periodic Hann window sums to one, so a steady signal keeps its level).
- Output frame k is taken from the input around position `k · hop · speed`, shifted by up to
  `search` samples either way to the shift whose first half best matches the natural
  continuation of frame k − 1 (the input that followed it), by normalized cross-correlation.
  Frames then join in phase, so voiced speech keeps its pitch periods whole and no comb or
  warble appears at the seams.
- The hop is 10 ms and the search ±7.5 ms: a frame holds at least two periods of any voice above
  100 Hz, and the search spans a whole period of voices down to 67 Hz. At rate 3 (Whisper
  tiny.en on hibari's audio) it lost the fewest words: 63 % WER against 93 % with a 5 ms hop
  and 98 % with 15 ms; at rate 2 hops of 5 to 12.5 ms were within 1.5 points of each other
  (hibari 3.2-3.9 %, joe 9.6-11.1 %). Whisper tiny.en hears little at rate 3 and beyond,
  whatever the method (docs/benchmarks.md, "Rates").

`Wsola` works chunk by chunk with bounded lookahead: a frame is made as soon as the input up to
its search window's end and its own end has arrived (`hop · speed + search + hop` samples ahead
of the previous frame), so a chunk's audio leaves with at most that delay, and its output does
not depend on how the input was cut into chunks (streamed = one-shot, bit for bit). `flush()`
ends the signal: the rest is made against silence after the end, and the output is exactly
`round(input samples / speed)` samples long. Each step is linear in its input: the correlation
window per frame is fixed, and buffers hold only the lookahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from utterd.models.errors import InvalidParameter

FloatArray = npt.NDArray[np.float32]

MIN_SPEED: Final = 0.25
MAX_SPEED: Final = 8.0
"""Speeds `Wsola` accepts: 8 is twice the fastest rate, which the voices' own scaling starts."""

_SILENT: Final = 1e-10
"""Mean square below which candidate frames count as silence (no waveform to match)."""


@dataclass(frozen=True)
class WsolaSettings:
    """Frame and search sizes of `Wsola`."""

    hop_ms: float = 10.0
    """Output hop; frames are twice as long and overlap by half."""

    search_ms: float = 7.5
    """How far each frame's input position may move either way to join in phase."""

    def samples(self, sample_rate_hz: int) -> tuple[int, int]:
        """(hop, search) in samples at `sample_rate_hz`; InvalidParameter when either is < 1."""
        hop = round(self.hop_ms * sample_rate_hz / 1000)
        search = round(self.search_ms * sample_rate_hz / 1000)
        if hop < 1 or search < 1 or sample_rate_hz < 1:
            raise InvalidParameter(
                f"WSOLA needs a hop and a search of at least one sample, got {self.hop_ms} ms "
                f"and {self.search_ms} ms at {sample_rate_hz} Hz"
            )
        return hop, search


class Wsola:
    """One signal made `speed` times faster (speed > 1) or slower, chunk by chunk.

    `process(chunk)` returns the output that is final so far (possibly empty); `flush()` returns
    the rest, after which the object takes a new signal.
    """

    def __init__(
        self, speed: float, sample_rate_hz: int, settings: WsolaSettings | None = None
    ) -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise InvalidParameter(f"TSM speed must be in [{MIN_SPEED}, {MAX_SPEED}], got {speed}")
        self.speed = speed
        """Input samples consumed per output sample."""
        self.hop, self.search = (settings or WsolaSettings()).samples(sample_rate_hz)
        self._frame = 2 * self.hop
        # Periodic Hann: w[n] + w[n + hop] == 1, so overlapping frames add up to the input level.
        n = np.arange(self._frame, dtype=np.float64)
        self._window = (0.5 - 0.5 * np.cos(np.pi * n / self.hop)).astype(np.float32)
        self._reset()

    def _reset(self) -> None:
        # The input from absolute sample `_origin` on; the signal is preceded by `hop` zeros
        # (frame 0 is centred on sample 0, half of it before the signal).
        self._origin = -self.hop
        self._input: FloatArray = np.zeros(self.hop, np.float32)
        self._received = 0
        """Input samples of the signal so far."""
        self._next = 0
        """The next output frame's number."""
        self._centre = 0
        """Input position of the last frame's centre."""
        self._tail: FloatArray = np.zeros(self.hop, np.float32)
        """The last frame's second half: output samples that the next frame completes."""

    def _nominal(self, k: int) -> int:
        return int(np.floor(k * self.hop * self.speed + 0.5))

    def _needed(self, k: int) -> int:
        """Input samples (absolute end) frame k reads: its search window and its second half."""
        return self._nominal(k) + self.search + self.hop

    def process(self, chunk: npt.ArrayLike) -> FloatArray:
        """Take the next chunk of input; return the output samples made final by it."""
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self.speed == 1.0:
            self._received += len(samples)
            return samples
        if len(samples):
            self._input = np.concatenate((self._input, samples))
            self._received += len(samples)
        return self._frames_until(self._received)

    def flush(self) -> FloatArray:
        """End the signal: the rest of the output, so that it is `round(input / speed)` long in
        all; then the object is ready for a new signal."""
        if self.speed == 1.0:
            self._reset()
            return np.zeros(0, np.float32)
        total = int(np.floor(self._received / self.speed + 0.5))
        emitted = max(0, self._next - 1) * self.hop
        pieces = []
        if total > emitted:
            # Frames up to the total's end, reading silence after the signal.
            last = -(-total // self.hop)
            end = self._needed(last)
            missing = end - (self._origin + len(self._input))
            if missing > 0:
                self._input = np.concatenate((self._input, np.zeros(missing, np.float32)))
            pieces.append(self._frames_until(end, last_frame=last)[: total - emitted])
        self._reset()
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _frames_until(self, available: int, last_frame: int | None = None) -> FloatArray:
        """Make every frame whose input ends by `available` (and is at most `last_frame`)."""
        out: list[FloatArray] = []
        hop, search, x = self.hop, self.search, self._input
        while (last_frame is None or self._next <= last_frame) and self._needed(
            self._next
        ) <= available:
            k = self._next
            if k == 0:
                centre = 0
            else:
                centre = self._best_centre(x, self._nominal(k))
            start = centre - hop - self._origin
            frame = x[start : start + self._frame] * self._window
            if k > 0:
                out.append(self._tail + frame[:hop])
            self._tail = frame[hop:]
            self._centre = centre
            self._next = k + 1
        # Keep only what later frames can read: the last frame's second half (the next
        # template) and the next frame's search window.
        keep_from = min(self._centre, self._nominal(self._next) - search - hop)
        drop = keep_from - self._origin
        if drop > 0:
            self._input = x[drop:]
            self._origin = keep_from
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _best_centre(self, x: FloatArray, nominal: int) -> int:
        """The centre within `search` of `nominal` whose frame's first half is most like the
        input that followed the last frame (normalized cross-correlation)."""
        hop = self.hop
        low = max(nominal - self.search, 0)
        high = nominal + self.search
        template = x[self._centre - self._origin : self._centre - self._origin + hop]
        region = x[low - hop - self._origin : high - self._origin]
        correlation = np.correlate(region, template, mode="valid")
        squares = np.concatenate(([0.0], np.cumsum(np.square(region, dtype=np.float64))))
        energy = squares[hop:] - squares[:-hop]
        if energy.max() <= _SILENT * hop or not template.any():
            return nominal  # silence: nothing to join, stay on time
        score = correlation / np.sqrt(np.maximum(energy, _SILENT * hop))
        return low + int(np.argmax(score))


def input_needed(
    output_samples: int, speed: float, sample_rate_hz: int, settings: WsolaSettings | None = None
) -> int:
    """Input samples after which a `Wsola` at `speed` has made at least `output_samples` of
    output (before `flush`): what a stream's first piece must hold for its first chunk to be
    that long."""
    if speed == 1.0 or output_samples <= 0:
        return max(output_samples, 0)
    hop, search = (settings or WsolaSettings()).samples(sample_rate_hz)
    frames = -(-output_samples // hop)
    return int(np.floor(frames * hop * speed + 0.5)) + search + hop


def time_scaled(
    pieces: Iterable[tuple[FloatArray, bool]],
    speed: float,
    sample_rate_hz: int,
    settings: WsolaSettings | None = None,
) -> Iterator[tuple[FloatArray, bool]]:
    """(samples, last) pieces of one signal → the same for the signal `speed` times faster.

    A piece is yielded when it has samples or is the last; at speed 1 the pieces pass as they
    are. The signal ends with its last piece (the rest is flushed into it)."""
    if speed == 1.0:
        yield from pieces
        return
    wsola = Wsola(speed, sample_rate_hz, settings)
    for samples, last in pieces:
        out = wsola.process(samples)
        if last:
            out = np.concatenate((out, wsola.flush()))
        if len(out) or last:
            yield out, last
