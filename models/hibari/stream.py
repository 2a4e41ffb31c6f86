"""hibari's signal stage run window by window, so a sentence's first audio leaves after one window.

hibari's network predicts, per 12.5 ms frame, the parts of a spectrum; `hibari.dsp.synth` turns
the whole sentence into a waveform at once: a band-limited pulse train from F0, its STFT, the
per-frame filters and noise, then one inverse STFT with overlap-add. Every step is local in time
except three, handled here so that the windowed output is *identical* to `hibari.dsp.synth`:

- **Pulse phase** is a running sum of the instantaneous frequency from the sentence start. We keep
  the float64 running sum between windows and continue the same sequential `cumsum`, so each
  sample's phase is computed by the same additions in the same order.
- **Noise** is `rng.standard_normal((bins, 2·F))`: row-major, so frame 0's values are spread over
  every row and depend on F. With `exact_noise` (the default, and what a deterministic request
  asks for) we make that one draw at the start of the sentence, exactly as `synth` does (same
  generator, same shape, same position in the generator's stream), and slice columns per
  window; the generator is then left where `synth` would leave it, so the next sentence's noise
  lines up too. That draw is the whole piece's noise before its first audio (about 2 ms for a
  short prompt, 601 bins × 2 per frame); without `exact_noise` each window draws only its own
  columns (_STEP_FRAMES at a time), the same distribution (independent standard normals per bin and frame) from a
  generator that is random per request anyway.
- **Edges**: the STFT reflect-pads the whole pulse train and the inverse STFT's normalization is
  tapered at both ends of the sentence; we reflect at the sentence's ends (not the window's) and
  use the whole sentence's normalization.

Context needed per window (n_fft = 4 hops): output frame m is the overlap-add of STFT frames
m−1 … m+2; STFT frame k reads pulse samples of frames k−2 … k+1, whose frequency interpolates
F0 of frames k−3 … k+2. Those frames are all known (the network ran on the whole sentence, or,
with decoder windows, its front gave all of F0 and the decoder has run up to frame stop + 2), so
a window costs only the frames it adds; nothing is computed twice. What a window does cost is
its Python and numpy call overhead: windows grow with the stream's lead (`StreamPace`,
`engine/stream_windows.py`) up to LARGEST_WINDOW_FRAMES, so a piece is a few windows, not one
per 32 frames.

Per-element numpy math (sin, tanh, exp, complex products, per-row FFTs) does not depend on where
an element sits in an array, so the result is bit-identical, with numpy's FFT and with scipy's; tests check it.

A long piece (over LONG_PIECE_FRAMES, 6.4 s) is decoded BLOCK_FRAMES at a time, each block with
its noise drawn when it is decoded (`_BlockFrames`), in every path, so that what a piece holds
does not grow with it; its audio is then deterministic but not `hibari.dsp.synth`'s (see
LONG_PIECE_FRAMES).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from hibari import dsp
from utterd.models.engine.backend import Session
from utterd.models.engine.stream_windows import GrowingWindows, StreamPace, window_plan
from utterd.models.errors import SynthesisError
from utterd.models.hibari.split import SplitSession
from utterd.models.voice import CancelToken

_LOGGER = logging.getLogger(__name__)

MODEL_OUTPUTS: Final = ("lh", "theta", "ln", "lr", "phi", "f0")
"""The acoustic model's outputs in the order `hibari.dsp.synth` takes them."""

DEFAULT_FIRST_WINDOW_FRAMES: Final = 4
DEFAULT_WINDOW_FRAMES: Final = 32
LARGEST_WINDOW_FRAMES: Final = 128
"""Windows grown by the lead stop here (1.6 s of audio): a call per 1.6 s costs nothing, and the
buffer of frames waiting for their overlap-add is made for this size (the spectra themselves
are computed _STEP_FRAMES at a time whatever the window)."""

N_FFT: Final[int] = int(dsp.N_FFT)
HOP: Final[int] = int(dsp.HOP)
SAMPLE_RATE_HZ: Final[int] = int(dsp.SR)
_HOPS_PER_FFT: Final = N_FFT // HOP
_HALF: Final = N_FFT // 2
_BINS: Final = N_FFT // 2 + 1
"""Spectral bins per frame of the model's outputs (rfft of N_FFT samples)."""
# `hibari.dsp.pulses` defaults: voicing threshold and highest harmonic, in Hz.
_VOICED_HZ: Final = 40.0
_MAX_HARMONIC_HZ: Final = 11000.0
# Below this many frames the whole-sentence reflect padding may reflect more than once (numpy
# pads iteratively when the pad exceeds the signal): leave such slivers to `dsp.synth` itself.
_MIN_WINDOWED_FRAMES: Final = _HOPS_PER_FFT + 1
# Below this, a piece's signal stage is too short (~2 ms) to gain from a second thread.
_MIN_PARALLEL_FRAMES: Final = 64
_STEP_FRAMES: Final = 32
"""Spectral frames computed per step, whatever the window (4 … LARGEST_WINDOW_FRAMES frames) or
`synthesize_piece`'s half: the steps' arrays are views of buffers made once per piece
(`_Scratch`), and what numpy still allocates per step (the FFTs' outputs, 150 KB each) has one
size, so the heap reuses its holes. Windows growing 4 → 128 frames used to allocate each
size's temporaries anew (about 6 MB at 128 frames), landing where the smaller ones' did not
fit; that raised the daemon's peak RSS (docs/benchmarks.md, "Memory and ready time"). Numpy's
per-step overhead is about 0.1 ms, a few percent of a step's FFTs."""

LONG_PIECE_FRAMES: Final = 512
"""A piece of more frames than this (6.4 s of audio at rate 1) is decoded BLOCK_FRAMES at a time
(`_BlockFrames`) instead of in one decoder call on all of it, so that what a piece holds at
once is bounded whatever its length: the decoder's five [bins, frames] outputs, the noise of
those frames and the call's activations grow with the piece (a 1166-frame piece held 22 MiB,
a 768-frame one 15 MiB more than the voice at rest; docs/benchmarks.md, "ALSA's plugins given
back, and long hibari pieces in blocks"), and a sentence of hibari's 400 phonemes can make 2000
frames. Shorter pieces
are hibari's own audio bit for bit; a long piece's blocks each have their own activation scale
(`hibari/split.py`), as the streaming path's first call already has, and their own noise draw:
deterministic (a fixed grid of blocks, the request's seeded generator) but not
`hibari.dsp.synth`'s samples."""

BLOCK_FRAMES: Final = 256
"""A long piece's frames per decoder call, each with the decoder's whole context (27 frames) on
both sides: the decoder took 68 ms for a 1166-frame piece in blocks against 62 ms in one call
(384 frames: 64 ms, for 1.5 times the memory held), about 5 % of the piece's time."""

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class HibariFrames:
    """The acoustic model's outputs for one sentence piece (batch dimension removed)."""

    lh: FloatArray
    """Log magnitude of the harmonic filter, [bins, frames]."""

    theta: FloatArray
    """Phase of the harmonic filter before tanh·π, [bins, frames]."""

    ln: FloatArray
    """Log magnitude of the noise, [bins, frames]."""

    lr: FloatArray
    """Log magnitude of the free-phase branch, [bins, frames]."""

    phi: FloatArray
    """Phase of the free-phase branch, [bins, frames]."""

    f0: FloatArray
    """Fundamental frequency in Hz per frame, [frames]; below 40 Hz means unvoiced."""

    start_frame: int = 0
    """The piece's frame the five spectral arrays' first column is (f0 always covers the whole
    piece): a long piece's frames come a block at a time (`_BlockFrames`)."""

    noise: npt.NDArray[np.complex64] | None = None
    """The noise of these columns, [bins, frames], when it was drawn with them (a long piece's
    block); None: `_WindowedSynth` has it or draws it."""

    @property
    def frames(self) -> int:
        return int(self.lh.shape[1])

    @property
    def bins(self) -> int:
        return int(self.lh.shape[0])

    @staticmethod
    def from_outputs(outputs: Sequence[npt.NDArray[Any]]) -> HibariFrames:
        """From the model's outputs in `MODEL_OUTPUTS` order, each with its batch of one."""
        lh, theta, ln, lr, phi, f0 = (np.asarray(o[0], dtype=np.float32) for o in outputs)
        return HibariFrames(lh, theta, ln, lr, phi, f0)


@dataclass(frozen=True)
class HibariPiece:
    """A window of a sentence's audio."""

    samples: FloatArray
    """Mono float32 audio at 24 kHz of frames [start_frame, end_frame) (no gain applied)."""

    start_frame: int
    """First frame this piece covers (sample offset = start_frame · 300)."""

    end_frame: int
    """One past the last frame this piece covers."""

    last: bool
    """True for the sentence piece's last window."""


@functools.lru_cache(maxsize=1)
def _interpolation_weights() -> tuple[FloatArray, FloatArray]:
    """`hibari.dsp._interp_w`: weight of the next frame (u) and of the previous one (1 − u)."""
    u = (((np.arange(HOP) + 0.5) / HOP - 0.5) % 1.0).astype(np.float32)
    return u, (1.0 - u).astype(np.float32)


def _ola_norm(first: int, stop: int, frames: int) -> FloatArray:
    """`hibari.dsp._ola_norm` of a sentence of `frames` frames, its blocks [first, stop) only:
    1 / summed squared window per output block, the same additions in the same order.

    Computed per window, not for the whole piece (0.9 MB for a 768-frame piece) nor cached (a
    cache of the last 8 lengths kept up to ~7 MiB resident): a few adds over [blocks, 300]."""
    window_sq = (dsp.WIN * dsp.WIN).reshape(_HOPS_PER_FFT, HOP)
    wsum = np.zeros((stop - first, HOP), np.float32)
    for k in range(_HOPS_PER_FFT):
        lo, hi = max(first, k), min(stop, k + frames)
        if hi > lo:
            wsum[lo - first : hi - first] += window_sq[k]
    np.maximum(wsum, 1e-11, out=wsum)
    np.divide(1.0, wsum, out=wsum)
    return wsum


class _PulseTrain:
    """`hibari.dsp.pulses`, computed a few frames at a time with the phase carried over."""

    def __init__(self, f0: FloatArray) -> None:
        self._padded_f0 = np.pad(np.asarray(f0, np.float32), 1, mode="edge")
        self._frames = len(f0)
        self.samples = np.zeros(self._frames * HOP, np.float32)
        """The pulse train so far; filled frame by frame."""
        self.done = 0
        """Frames of `samples` computed."""
        self._phase_sum = np.zeros(1, np.float64)  # Σ f so far, before the 1/SR scaling

    def extend_to(self, frames: int) -> None:
        """Compute the pulse train up to frame `frames` (exclusive)."""
        start, stop = self.done, min(frames, self._frames)
        if stop <= start:
            return
        n, h2 = stop - start, HOP // 2
        u, v = _interpolation_weights()
        fp = self._padded_f0
        grid = np.empty((n, HOP), np.float32)
        np.multiply(fp[start:stop, None], v[:h2], out=grid[:, :h2])
        grid[:, :h2] += fp[start + 1 : stop + 1, None] * u[:h2]
        np.multiply(fp[start + 1 : stop + 1, None], v[h2:], out=grid[:, h2:])
        grid[:, h2:] += fp[start + 2 : stop + 2, None] * u[h2:]
        f = grid.reshape(-1)
        voiced = f > _VOICED_HZ
        np.maximum(f, _VOICED_HZ, out=f)
        # One sequential float64 running sum, continued from the previous window: the same
        # additions, in the same order, as the whole-sentence cumsum.
        t = np.cumsum(np.concatenate((self._phase_sum, f.astype(np.float64))))[1:]
        self._phase_sum = t[-1:].copy()
        t *= 1.0 / SAMPLE_RATE_HZ
        np.modf(t, t)
        t *= 2 * np.pi
        t32 = t.astype(np.float32)
        harmonics = np.floor(_MAX_HARMONIC_HZ / f)
        harmonics += 0.5
        s = np.sin(t32 * 0.5)
        s *= 2
        bad = np.abs(s) <= 2e-3
        e = np.sin(harmonics * t32)
        s[bad] = 1
        e /= s
        e[bad] = harmonics[bad]
        e -= 0.5
        e[~voiced] = 0
        self.samples[start * HOP : stop * HOP] = e
        self.done = stop


def _reflect_indices(first: int, stop: int, length: int) -> npt.NDArray[np.intp]:
    """Indices into a signal of `length` for padded positions [first, stop) (pad N_FFT/2, reflect)."""
    j = np.arange(first, stop) - _HALF
    j = np.where(j < 0, -j, j)
    return np.where(j >= length, 2 * (length - 1) - j, j)


class _Scratch:
    """Buffers for one step of `_WindowedSynth._spectra` (up to _STEP_FRAMES frames), made once
    per piece and thread: every step's arrays are views of these, so a piece's steps reuse the
    same memory instead of allocating temporaries of each window's size (see _STEP_FRAMES)."""

    def __init__(self, bins: int) -> None:
        size = bins * _STEP_FRAMES
        self.bins = bins
        """Spectral bins per frame."""
        self.padded = np.empty((_STEP_FRAMES - 1) * HOP + N_FFT, np.float32)
        """The pulse train's samples a step reads, where they are reflected at the piece's ends."""
        self.windowed = np.empty((_STEP_FRAMES, N_FFT), np.float32)
        """The step's STFT frames of the pulse train, windowed: the forward FFT's input."""
        self.spec = np.empty(size, np.complex64)
        """The step's spectrum, [bins, frames]."""
        self.rot = np.empty(size, np.complex64)
        """A branch's filter (harmonic, then free-phase), [bins, frames]."""
        self.noise = np.empty(size, np.complex64)
        """The step's noise, [bins, frames]."""
        self.first = np.empty(size, np.float32)
        """A real input (phase or clipped log magnitude) copied contiguous, [bins, frames]."""
        self.second = np.empty(size, np.float32)
        """What a transcendental function made of `first`, [bins, frames]."""

    def view(self, flat: npt.NDArray[Any], frames: int) -> npt.NDArray[Any]:
        """The first `frames` columns' worth of a flat buffer, as a contiguous [bins, frames]."""
        return flat[: self.bins * frames].reshape(self.bins, frames)


def _clipped_exp(log: FloatArray, scratch: _Scratch, frames: int) -> FloatArray:
    """`hibari.dsp.ex(log)` (exp of log clipped at 7) into `scratch.second`, through
    `scratch.first`: the same float32 minimum and exp, on a contiguous copy as `ex` gets it."""
    clipped = scratch.view(scratch.first, frames)
    np.minimum(log, 7.0, out=clipped)
    out: FloatArray = scratch.view(scratch.second, frames)
    np.exp(clipped, out=out)
    return out


class _WindowedSynth:
    """State of one sentence piece's windowed synthesis."""

    def __init__(
        self, frames: HibariFrames, rng: np.random.Generator, *, exact_noise: bool = True
    ) -> None:
        self.f = frames
        # f0 always covers the piece; the decoder's arrays may cover only its first frames yet
        # (`_DecodedFrames`), and are only read up to where they have been decoded.
        self.n = n = len(frames.f0)
        self.pulses = _PulseTrain(frames.f0)
        self.rng = rng
        # The one noise draw `dsp.synth` makes, same shape and order (see the module docstring);
        # None: each step draws its own columns.
        self.noise: npt.NDArray[np.complex64] | None = (
            rng.standard_normal((frames.bins, 2 * n), dtype=np.float32).view(np.complex64)
            if exact_noise
            else None
        )
        self.scratch = _Scratch(frames.bins)
        """The window path's step buffers (`synthesize_piece`'s second thread has its own)."""
        self.spec_done = 0
        # Inverse-FFT'd, windowed frames not yet fully overlap-added, [frame, hop slot, sample]:
        # frames [pending_start, spec_done) at the buffer's start. Made for the largest window
        # (its frames and the 3 kept from the window before), larger only for a larger window.
        self._pending = np.empty(
            (min(n, LARGEST_WINDOW_FRAMES + _HOPS_PER_FFT), _HOPS_PER_FFT, HOP), np.float32
        )
        self.pending_start = 0
        self.columns: Callable[[int, int], HibariFrames] | None = None
        """Where a step gets its frames, when not from `f`: the frames that hold columns
        [start, stop) of the piece (`_BlockFrames.covering`)."""

    def _spectra(
        self,
        start: int,
        stop: int,
        out: FloatArray,
        scratch: _Scratch,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Time-domain windowed frames [start, stop) — `synth` then `ola`'s irfft and window —
        into `out` ([stop − start, N_FFT]), _STEP_FRAMES at a time through `scratch`.

        Without the exact noise draw, each step's noise comes from `rng` (default: the piece's
        generator); reads the pulse train only up to where it has been extended."""
        for first in range(start, stop, _STEP_FRAMES):
            last = min(stop, first + _STEP_FRAMES)
            self._step(first, last, out[first - start : last - start], scratch, rng)

    def _step(
        self,
        start: int,
        stop: int,
        out: FloatArray,
        s: _Scratch,
        rng: np.random.Generator | None,
    ) -> None:
        f = self.f if self.columns is None else self.columns(start, stop)
        k = stop - start
        self.pulses.extend_to(stop + 1)  # frame k reads pulse frames up to k + 1
        samples = self.pulses.samples
        # STFT frame k reads padded samples [k·HOP, k·HOP + N_FFT): the piece's own samples
        # [k·HOP − N_FFT/2, …), reflected only at the piece's ends.
        lo, hi = start * HOP - _HALF, (stop - 1) * HOP + _HALF
        if lo >= 0 and hi <= len(samples):
            padded = samples[lo:hi]
        else:
            padded = s.padded[: hi - lo]
            positions = _reflect_indices(start * HOP, (stop - 1) * HOP + N_FFT, len(samples))
            np.take(samples, positions, out=padded)
        windowed = s.windowed[:k]
        frames_view = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
        np.multiply(frames_view, dsp.WIN_SRC, out=windowed)
        spec = s.view(s.spec, k)
        np.copyto(spec, dsp.rfft(windowed, 1).T)
        cols = slice(start - f.start_frame, stop - f.start_frame)
        rot = s.view(s.rot, k)
        phase = s.view(s.first, k)
        np.copyto(phase, f.theta[:, cols])
        c = s.view(s.second, k)
        np.tanh(phase, out=c)
        c *= np.pi
        np.cos(c, out=rot.real)
        np.sin(c, out=rot.imag)
        rot *= _clipped_exp(f.lh[:, cols], s, k)
        spec *= rot
        z = s.view(s.noise, k)
        if f.noise is not None:
            np.copyto(z, f.noise[:, cols])
        elif self.noise is not None:
            np.copyto(z, self.noise[:, start:stop])
        else:
            # The same (bins, 2·frames) draw, written where `z` views it.
            noise = s.view(s.noise.view(np.float32), 2 * k)
            (rng if rng is not None else self.rng).standard_normal(
                noise.shape, dtype=np.float32, out=noise
            )
        z *= _clipped_exp(f.ln[:, cols], s, k)
        spec += z
        np.copyto(phase, f.phi[:, cols])
        np.cos(phase, out=rot.real)
        np.sin(phase, out=rot.imag)
        rot *= _clipped_exp(f.lr[:, cols], s, k)
        spec += rot
        np.multiply(dsp.irfft(spec.T, N_FFT, 1), dsp.WIN, out=out)

    def window(self, start: int, stop: int) -> FloatArray:
        """Audio of output frames [start, stop); windows must come in order."""
        n = self.n
        # Output frame m is overlap-add block m + 2, made of STFT frames m − 1 … m + 2.
        need = min(n, stop + 2)
        kept = self.spec_done - self.pending_start
        if need > self.spec_done:
            total = kept + need - self.spec_done
            if total > len(self._pending):
                larger = np.empty((total, _HOPS_PER_FFT, HOP), np.float32)
                larger[:kept] = self._pending[:kept]
                self._pending = larger
            new = self._pending[kept:total].reshape(-1, N_FFT)
            self._spectra(self.spec_done, need, new, self.scratch)
            self.spec_done = need
        pending = self._pending[: self.spec_done - self.pending_start]
        first_block, stop_block = start + 2, stop + 2
        out = np.zeros((stop_block - first_block, HOP), np.float32)
        # Same order of additions as `ola`: hop slot 0 (frame b), then slot 1 (frame b − 1), …
        for slot in range(_HOPS_PER_FFT):
            lo = max(first_block, self.pending_start + slot)
            hi = min(stop_block, self.pending_start + len(pending) + slot)
            if hi > lo:
                frames = pending[lo - slot - self.pending_start : hi - slot - self.pending_start]
                out[lo - first_block : hi - first_block] += frames[:, slot]
        out *= _ola_norm(first_block, stop_block, n)
        # Frames older than stop − 1 feed no later block: the rest moves to the buffer's start.
        drop = max(0, min(len(pending), stop - 1 - self.pending_start))
        if drop:
            self._pending[: len(pending) - drop] = pending[drop:]
            self.pending_start += drop
        return out.reshape(-1)


def synthesize_windows(
    frames: HibariFrames,
    rng: np.random.Generator,
    cancel: CancelToken,
    *,
    first_window_frames: int = DEFAULT_FIRST_WINDOW_FRAMES,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    exact_noise: bool = True,
    pace: StreamPace | None = None,
    frame_s: float = HOP / SAMPLE_RATE_HZ,
) -> Iterator[HibariPiece]:
    """`hibari.dsp.synth` of `frames`, yielded window by window; checks `cancel` between windows.

    With `exact_noise`, concatenated, the pieces equal `hibari.dsp.synth(..., rng)` with the
    generator in the same state, and leave the generator in the same state after it. Without
    it, each window draws its own noise, a step at a time (the first audio does not wait for the whole piece's
    draw): the same signal with other, equally distributed noise. Windows grow with `pace`'s
    lead (`_windows`).
    """
    plan = window_plan(frames.frames, first_window_frames, window_frames)
    # One window for the whole piece (a piece shorter than the first window): hibari's own
    # synth, which the windows equal sample for sample, without the windows' bookkeeping.
    if frames.frames < _MIN_WINDOWED_FRAMES or len(plan) == 1:
        cancel.raise_if_cancelled()
        whole = dsp.synth(frames.lh, frames.theta, frames.ln, frames.lr, frames.phi, frames.f0, rng)
        yield HibariPiece(np.asarray(whole, np.float32), 0, frames.frames, last=True)
        return
    state = _WindowedSynth(frames, rng, exact_noise=exact_noise)
    pace = pace if pace is not None else StreamPace()
    for start, stop in _windows(frames.frames, first_window_frames, window_frames, pace):
        cancel.raise_if_cancelled()
        started = pace.clock()
        samples = state.window(start, stop)
        pace.ran(stop - start, pace.clock() - started)
        pace.handed_out((stop - start) * frame_s)
        yield HibariPiece(samples, start, stop, last=stop == frames.frames)


def _windows(
    frames: int, first_window_frames: int, window_frames: int, pace: StreamPace, grow_from: int = 0
) -> GrowingWindows:
    """A piece's windows: `window_plan`'s at least, up to LARGEST_WINDOW_FRAMES with the lead."""
    return GrowingWindows(
        frames,
        first_window_frames,
        window_frames,
        max(window_frames, LARGEST_WINDOW_FRAMES),
        pace=pace,
        grow_from=grow_from,
    )


def synthesize_piece(
    frames: HibariFrames,
    rng: np.random.Generator,
    helper: Executor,
    *,
    exact_noise: bool = True,
) -> FloatArray:
    """`hibari.dsp.synth` of a whole piece, its per-frame spectra computed in two halves at once:
    the first on this thread, the second on `helper` (numpy and scipy release the GIL in their
    loops). The overlap-add is `dsp.ola`'s, in the same order.

    With `exact_noise`, the same samples as `dsp.synth(..., rng)` (one noise draw up front, the
    generator left where `synth` leaves it). Without it, each half draws its own noise, in
    parallel, from a generator seeded from `rng`: the noise draw was a third of the signal
    stage's time, and a request that is not deterministic needs only its distribution.
    """
    n = frames.frames
    if n < _MIN_PARALLEL_FRAMES:
        return np.asarray(
            dsp.synth(frames.lh, frames.theta, frames.ln, frames.lr, frames.phi, frames.f0, rng),
            np.float32,
        )
    state = _WindowedSynth(frames, rng, exact_noise=exact_noise)
    # Sequential (a running phase; the halves only read it), in steps: small temporaries.
    for first in range(0, n, _STEP_FRAMES):
        state.pulses.extend_to(first + _STEP_FRAMES)
    time_frames = np.empty((n, N_FFT), np.float32)

    def fill(
        start: int, stop: int, scratch: _Scratch, noise_rng: np.random.Generator | None
    ) -> None:
        state._spectra(start, stop, time_frames[start:stop], scratch, noise_rng)

    middle = n // 2
    second_rng = None if exact_noise else np.random.default_rng(int(rng.integers(1 << 62)))
    second = helper.submit(fill, middle, n, _Scratch(frames.bins), second_rng)
    try:
        fill(0, middle, state.scratch, None)
    finally:
        second.result()  # never leaves the helper's half running behind this call
    blocks = time_frames.reshape(n, _HOPS_PER_FFT, HOP)
    out = np.zeros((n + _HOPS_PER_FFT - 1, HOP), np.float32)
    for slot in range(_HOPS_PER_FFT):
        out[slot : slot + n] += blocks[:, slot]
    out *= _ola_norm(0, n + _HOPS_PER_FFT - 1, n)
    return out.reshape(-1)[_HALF : _HALF + n * HOP]


def _feeds(ids: Sequence[int], speed: float) -> dict[str, npt.NDArray[Any]]:
    return {"ids": np.asarray([ids], dtype=np.int64), "speed": np.array([speed], dtype=np.float32)}


def acoustic_frames(
    session: Session, ids: Sequence[int], speed: float, cancel: CancelToken | None = None
) -> HibariFrames:
    """Run the acoustic model on one piece's phoneme ids (with the 0 pads).

    Uses no random generator, so it may run ahead of the signal stage of the piece before
    (on another thread) without changing a sample.
    """
    outputs = session.run(MODEL_OUTPUTS, _feeds(ids, speed), cancel)
    if len(outputs) != len(MODEL_OUTPUTS):
        raise SynthesisError(f"{session.label}: expected outputs {MODEL_OUTPUTS}")
    frames = HibariFrames.from_outputs(outputs)
    _LOGGER.debug("hibari_frames label=%s ids=%d frames=%d", session.label, len(ids), frames.frames)
    return frames


def stream_ids(
    session: Session,
    ids: Sequence[int],
    speed: float,
    rng: np.random.Generator,
    cancel: CancelToken,
    *,
    first_window_frames: int = DEFAULT_FIRST_WINDOW_FRAMES,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    exact_noise: bool = True,
    decoder_windows: bool = False,
    pace: StreamPace | None = None,
    frame_s: float = HOP / SAMPLE_RATE_HZ,
) -> Iterator[HibariPiece]:
    """Run the acoustic model on one piece's phoneme ids (with the 0 pads), then stream its audio.

    `pace`: the request's clock of playback (one for all its pieces; None: one for this piece),
    in which each window's cost and its `frame_s` seconds of playing time per frame are
    recorded; windows grow as far as its lead affords (`engine/stream_windows.py`).

    What `hibari.Hibari.from_ids` does, with our session and the signal stage in windows
    (`exact_noise`: see `synthesize_windows`). With `decoder_windows` and a `SplitSession`, the
    model's decoder runs first on the frames the first two signal windows need, then on the rest
    (see `hibari/split.py`): the first audio waits for the front and a few decoder frames instead of
    the whole model, and the audio differs from the whole model's only by the decoder's
    per-call activation scale (and FIRST_CALL_CONTEXT). A piece whose request is far enough
    ahead of playback (`pace`) is decoded in one call instead: the whole model's frames.
    """
    cancel.raise_if_cancelled()
    if isinstance(session, SplitSession):
        feature, f0 = _front(session, ids, speed, cancel)
        pace = pace if pace is not None else StreamPace()
        if feature.shape[-1] > LONG_PIECE_FRAMES:
            yield from _stream_blocks(
                session,
                feature,
                f0,
                rng,
                cancel,
                first_window_frames=first_window_frames,
                window_frames=window_frames,
                first_call=decoder_windows,
                exact_noise=exact_noise,
                pace=pace,
                frame_s=frame_s,
            )
            return
        if decoder_windows:
            yield from _stream_decoder_windows(
                _DecodedFrames(session, feature, f0, cancel, pace),
                rng,
                cancel,
                first_window_frames=first_window_frames,
                window_frames=window_frames,
                exact_noise=exact_noise,
                pace=pace,
                frame_s=frame_s,
            )
            return
        frames = _whole_frames(session, feature, f0, cancel)
    else:
        frames = acoustic_frames(session, ids, speed, cancel)
    yield from synthesize_windows(
        frames,
        rng,
        cancel,
        first_window_frames=first_window_frames,
        window_frames=window_frames,
        exact_noise=exact_noise,
        pace=pace,
        frame_s=frame_s,
    )


FIRST_CALL_CONTEXT: Final = 0.5
"""Share of the decoder's context (27 frames) its first call on a piece sees after the frames
it decodes. Those frames already differ from the whole model's by the call's own activation
scale (`hibari/split.py`), and what the far context adds is below that: over the 55 pieces of
bench/text/prompts_en.txt, the first 14 frames' lh against the whole model's, min / median
39.7 / 45.0 dB with all 27 frames, 36.3 / 45.2 dB with 13; the piece's audio 109.5 / 142.1 and
109.2 / 142.2 dB (same noise both ways; 8 frames: 101.7 / 139.4, none: 87.2 / 131.6). The
first call then runs on 27 frames instead of 41: it is the decoder's only extra work for a
request's first piece (docs/benchmarks.md, "Streaming below the sentence")."""

DECODER_PART: Final = "hibari decoder"
"""The part name under which a request's `StreamPace` keeps the decoder's cost per frame."""


class _DecodedFrames:
    """A piece's spectral frames, filled by the decoder as the signal stage needs them: first
    the frames the first windows need (a short call), then the rest in one call on all the
    piece's frames, so that everything after the first call's frames is the whole model's
    output bit for bit (the decoder's activation scale is per call; see `hibari/split.py`).

    The whole-piece call's outputs become the frames as they are (no copy of the piece's five
    [bins, frames] arrays; only the first call's few columns are written into them), and its
    wall time goes to the pace as DECODER_PART, kept out of the windows' own cost."""

    def __init__(
        self,
        session: SplitSession,
        feature: npt.NDArray[Any],
        f0: FloatArray,
        cancel: CancelToken,
        pace: StreamPace,
    ) -> None:
        self._session = session
        self._cancel = cancel
        self._pace = pace
        self._first_context = int(session.context_frames * FIRST_CALL_CONTEXT)
        self._feature = feature
        self.count = int(feature.shape[-1])
        self._f0 = f0
        self.frames: HibariFrames | None = None
        self.done = 0
        self.decode_s = 0.0
        """Wall seconds spent in decoder calls so far."""

    def ensure(self, upto: int) -> HibariFrames:
        """The frames with at least [0, upto) decoded."""
        if self.frames is not None and upto <= self.done:
            return self.frames
        # The first call: the frames asked for; the second: all the piece's frames.
        stop = max(1, min(self.count, upto)) if self.done == 0 else self.count
        # The first call sees FIRST_CALL_CONTEXT of the decoder's context after its frames.
        seen = self.count if stop == self.count else min(self.count, stop + self._first_context)
        started = self._pace.clock()
        outputs = self._session.decode(self._feature[..., :seen], 0, stop, self._cancel)
        seconds = self._pace.clock() - started
        self.decode_s += seconds
        by_name = dict(zip(self._session.cut.decoder_outputs, outputs, strict=True))
        lh, theta, ln, lr, phi = (
            np.asarray(by_name[name][0], np.float32) for name in MODEL_OUTPUTS[:-1]
        )
        if stop == self.count:
            self._pace.timed(DECODER_PART, self.count, seconds)
            if self.frames is not None:
                # Frames the signal stage has read stay the first call's.
                for whole, first in zip((lh, theta, ln, lr, phi), self._arrays(), strict=True):
                    whole[:, : self.done] = first
        # The first call's arrays cover only its frames (`_WindowedSynth` reads f0 for the
        # piece's length): no piece-sized allocation for a few frames.
        self.frames = HibariFrames(lh, theta, ln, lr, phi, self._f0)
        self.done = stop
        return self.frames

    def _arrays(self) -> tuple[FloatArray, ...]:
        frames = self.frames
        assert frames is not None
        return frames.lh, frames.theta, frames.ln, frames.lr, frames.phi


def _stream_decoder_windows(
    decoded: _DecodedFrames,
    rng: np.random.Generator,
    cancel: CancelToken,
    *,
    first_window_frames: int,
    window_frames: int,
    exact_noise: bool,
    pace: StreamPace,
    frame_s: float,
) -> Iterator[HibariPiece]:
    n = decoded.count
    plan = window_plan(n, first_window_frames, window_frames)
    if n < _MIN_WINDOWED_FRAMES or len(plan) == 1:
        yield from synthesize_windows(
            decoded.ensure(n),
            rng,
            cancel,
            first_window_frames=n,
            window_frames=n,
            pace=pace,
            frame_s=frame_s,
        )
        return
    if pace.affords(DECODER_PART, n):
        # A later piece of a request whose audio is far enough ahead of playback to cover the
        # whole piece's decoder call (timed on an earlier piece): one call, the whole model's
        # frames bit for bit, and windows that grow from the first.
        early = 0
        frames = decoded.ensure(n)
    else:
        # Output frame m needs spectral frames up to m + 2 (`_WindowedSynth.window`). The first
        # call decodes the frames of the first two windows: the call on the whole piece then
        # has the first two windows' playing time (150 ms by default) to finish in, not just
        # the first's (50 ms: a long piece's whole decode came late under load, measured in
        # bench_streaming). The second window's call decodes the whole piece, which the
        # lead's cost figure (the first window's) knows nothing of: windows grow only after it.
        early = plan[min(1, len(plan) - 1)][1]
        frames = decoded.ensure(min(n, early + 2))
    state = _WindowedSynth(frames, rng, exact_noise=exact_noise)
    for start, stop in _windows(n, first_window_frames, window_frames, pace, grow_from=early):
        cancel.raise_if_cancelled()
        started, decoding_s = pace.clock(), decoded.decode_s
        # The whole piece's call hands over its own arrays (`_DecodedFrames.ensure`).
        state.f = decoded.ensure(min(n, stop + 2))
        samples = state.window(start, stop)
        # The window's own cost, without the decoder call (timed as DECODER_PART).
        pace.ran(stop - start, pace.clock() - started - (decoded.decode_s - decoding_s))
        pace.handed_out((stop - start) * frame_s)
        yield HibariPiece(samples, start, stop, last=stop == n)


def _front(
    session: SplitSession, ids: Sequence[int], speed: float, cancel: CancelToken
) -> tuple[npt.NDArray[Any], FloatArray]:
    """The model's front on a piece: (the decoder's input [1, channels, frames], f0 [frames])."""
    feature, others = session.features(_feeds(ids, speed), cancel)
    if "f0" not in others:
        raise SynthesisError(f"{session.label}: the model's front gives no f0")
    return feature, np.asarray(others["f0"][0], dtype=np.float32)


def _whole_frames(
    session: SplitSession, feature: npt.NDArray[Any], f0: FloatArray, cancel: CancelToken
) -> HibariFrames:
    """The decoder on all of a piece's frames: with the front, `session.run`, bit for bit."""
    outputs = session.decode(feature, 0, int(feature.shape[-1]), cancel)
    return _decoded_frames(session, outputs, f0)


def _decoded_frames(
    session: SplitSession,
    outputs: Sequence[npt.NDArray[Any]],
    f0: FloatArray,
    start_frame: int = 0,
) -> HibariFrames:
    """The decoder's outputs (`SplitSession.decode`) as frames from `start_frame` on."""
    by_name = dict(zip(session.cut.decoder_outputs, outputs, strict=True))
    lh, theta, ln, lr, phi = (
        np.asarray(by_name[name][0], np.float32) for name in MODEL_OUTPUTS[:-1]
    )
    if lh.shape[0] != _BINS:
        raise SynthesisError(f"{session.label}: the decoder gave {lh.shape[0]} bins, not {_BINS}")
    return HibariFrames(lh, theta, ln, lr, phi, f0, start_frame=start_frame)


class _BlockFrames:
    """A long piece's spectral frames (LONG_PIECE_FRAMES), decoded BLOCK_FRAMES at a time as the
    signal stage gets to them, each block with its noise drawn from the request's generator when
    it is decoded: blocks come in order whatever the windows, so the audio does not depend on
    them. A block is dropped once the signal stage is past it.

    `first_call(frames)` (a request that is not deterministic, for its first audio): the first
    frames decoded first, as `_DecodedFrames` does, with part of the context; with
    `block_noise`, their noise is the first block's, drawn then."""

    def __init__(
        self,
        session: SplitSession,
        feature: npt.NDArray[Any],
        f0: FloatArray,
        rng: np.random.Generator,
        cancel: CancelToken,
        pace: StreamPace,
        *,
        block_noise: bool = True,
    ) -> None:
        self._session = session
        self._block_noise = block_noise
        self._feature = feature
        self._f0 = f0
        self._rng = rng
        self._cancel = cancel
        self._pace = pace
        self.count = int(feature.shape[-1])
        self._blocks: list[HibariFrames] = []
        """Decoded blocks not yet passed, in order."""
        self._decoded_to = 0
        self._noise: dict[int, npt.NDArray[np.complex64]] = {}
        """Noise drawn ahead of its block's decoding (the first call's), by block start."""
        self._first: HibariFrames | None = None
        self.decode_s = 0.0
        """Wall seconds spent in decoder calls so far."""

    def _draw_noise(self, start: int) -> npt.NDArray[np.complex64] | None:
        if not self._block_noise:
            return None  # the signal stage draws each step's own (`_WindowedSynth`)
        drawn = self._noise.pop(start, None)
        if drawn is not None:
            return drawn
        width = min(self.count, start + BLOCK_FRAMES) - start
        return self._rng.standard_normal((_BINS, 2 * width), dtype=np.float32).view(np.complex64)

    def _decode(self, start: int, stop: int, seen: int | None = None) -> HibariFrames:
        feature = self._feature if seen is None else self._feature[..., :seen]
        began = self._pace.clock()
        outputs = self._session.decode(feature, start, stop, self._cancel)
        seconds = self._pace.clock() - began
        self.decode_s += seconds
        self._pace.timed(DECODER_PART, stop - start, seconds)
        return _decoded_frames(self._session, outputs, self._f0, start)

    def first_call(self, frames: int) -> None:
        """Decode frames [0, frames) now, seeing FIRST_CALL_CONTEXT of the context after them."""
        stop = max(1, min(self.count, frames))
        seen = min(self.count, stop + int(self._session.context_frames * FIRST_CALL_CONTEXT))
        noise = self._draw_noise(0)
        decoded = self._decode(0, stop, seen)
        if noise is not None:
            self._noise[0] = noise
            decoded = dataclasses.replace(decoded, noise=noise[:, :stop])
        self._first = decoded

    def covering(self, lo: int, hi: int) -> HibariFrames:
        """Frames whose columns include [lo, hi) (lo: where the signal stage is; in order)."""
        first = self._first
        if first is not None and hi <= first.frames:
            return first
        self._first = None
        self._blocks = [b for b in self._blocks if b.start_frame + b.frames > lo]
        while self._decoded_to < hi:
            # Before the next block is decoded, what is held shrinks to the columns from `lo`
            # (a window's at most), so that two whole blocks are never held at once.
            self._blocks = [_from_column(b, lo) for b in self._blocks]
            start = self._decoded_to
            stop = min(self.count, start + BLOCK_FRAMES)
            noise = self._draw_noise(start)
            self._blocks.append(dataclasses.replace(self._decode(start, stop), noise=noise))
            self._decoded_to = stop
        inside = [b for b in self._blocks if b.start_frame < hi]
        if len(inside) == 1:
            return inside[0]

        # A step across a block's end: its columns of both, copied (at most _STEP_FRAMES).
        def columns(name: str) -> npt.NDArray[Any]:
            return np.concatenate(
                [
                    getattr(b, name)[:, max(0, lo - b.start_frame) : hi - b.start_frame]
                    for b in inside
                ],
                axis=1,
            )

        return HibariFrames(
            columns("lh"),
            columns("theta"),
            columns("ln"),
            columns("lr"),
            columns("phi"),
            self._f0,
            start_frame=lo,
            noise=None if inside[0].noise is None else columns("noise"),
        )


def _from_column(frames: HibariFrames, column: int) -> HibariFrames:
    """`frames` without its columns before the piece's frame `column` (a copy, when it has
    any): the rest of a block the signal stage has not passed yet."""
    skip = column - frames.start_frame
    if skip <= 0:
        return frames
    noise = None if frames.noise is None else np.array(frames.noise[:, skip:])
    return HibariFrames(
        np.array(frames.lh[:, skip:]),
        np.array(frames.theta[:, skip:]),
        np.array(frames.ln[:, skip:]),
        np.array(frames.lr[:, skip:]),
        np.array(frames.phi[:, skip:]),
        frames.f0,
        start_frame=column,
        noise=noise,
    )


def _stream_blocks(
    session: SplitSession,
    feature: npt.NDArray[Any],
    f0: FloatArray,
    rng: np.random.Generator,
    cancel: CancelToken,
    *,
    first_window_frames: int,
    window_frames: int,
    first_call: bool,
    exact_noise: bool,
    pace: StreamPace,
    frame_s: float,
) -> Iterator[HibariPiece]:
    """A long piece's audio in windows, its frames decoded a block at a time (`_BlockFrames`).
    `first_call`: decode the first two windows' frames first (first audio after a short call,
    as `_stream_decoder_windows` does), unless the request's lead affords a whole block.
    `exact_noise`: each block's noise drawn with it, so the audio does not depend on the windows
    (a deterministic request); else each step draws its own (no block's draw before the first
    audio)."""
    blocks = _BlockFrames(session, feature, f0, rng, cancel, pace, block_noise=exact_noise)
    n = blocks.count
    early = 0
    if first_call and not pace.affords(DECODER_PART, BLOCK_FRAMES):
        plan = window_plan(n, first_window_frames, window_frames)
        early = plan[min(1, len(plan) - 1)][1]
        blocks.first_call(min(n, early + 2))
    empty = np.empty((_BINS, 0), np.float32)
    state = _WindowedSynth(
        HibariFrames(empty, empty, empty, empty, empty, f0), rng, exact_noise=False
    )
    # Each step of the signal stage (_STEP_FRAMES) takes its frames from the blocks: a step
    # across a block's end copies its few columns of both, never a window's.
    state.columns = blocks.covering
    for start, stop in _windows(n, first_window_frames, window_frames, pace, grow_from=early):
        cancel.raise_if_cancelled()
        started, decoding_s = pace.clock(), blocks.decode_s
        samples = state.window(start, stop)
        pace.ran(stop - start, pace.clock() - started - (blocks.decode_s - decoding_s))
        pace.handed_out((stop - start) * frame_s)
        yield HibariPiece(samples, start, stop, last=stop == n)


def piece_samples(
    session: Session,
    ids: Sequence[int],
    speed: float,
    rng: np.random.Generator,
    cancel: CancelToken,
    helper: Executor,
    *,
    exact_noise: bool = True,
) -> FloatArray:
    """One piece's whole audio for throughput (a file, `synthesize`): the acoustic model, then
    `synthesize_piece`; a long piece (LONG_PIECE_FRAMES) a block at a time, the same samples
    `stream_ids` gives it."""
    if isinstance(session, SplitSession):
        feature, f0 = _front(session, ids, speed, cancel)
        if feature.shape[-1] > LONG_PIECE_FRAMES:
            windows = _stream_blocks(
                session,
                feature,
                f0,
                rng,
                cancel,
                first_window_frames=LARGEST_WINDOW_FRAMES,
                window_frames=LARGEST_WINDOW_FRAMES,
                first_call=False,
                exact_noise=exact_noise,
                pace=StreamPace(),
                frame_s=HOP / SAMPLE_RATE_HZ,
            )
            return np.concatenate([window.samples for window in windows])
        frames = _whole_frames(session, feature, f0, cancel)
    else:
        frames = acoustic_frames(session, ids, speed, cancel)
    cancel.raise_if_cancelled()
    return synthesize_piece(frames, rng, helper, exact_noise=exact_noise)
