"""The quality gate: how far a variant's speech is from its FP32 source's, and whether that is ok.

Both run the validation text with the noise scales at 0, so the FP32 audio is a fixed reference
and any difference is the variant's. Two figures per sentence:

- **log-mel distance** (dB): frame-wise RMS difference of 80-band log-mel spectra, averaged over
  frames after aligning the two frame sequences with dynamic time warping (DTW) inside a narrow
  band. Aligning first keeps a one-frame shift of a phoneme (a timing matter, judged by the
  duration ratio) from being counted as a spectral error on every frame after it.
- **duration ratio**: variant audio length / FP32 audio length.

Thresholds (see docs/quantization.md for the measurements behind them): the joe voice's own
generator noise (`noise_scale` 0.667, no duration noise) moves FP32 speech by 2.4 dB mean, 2.6 dB
worst sentence, from its noise-free rendering, and its duration noise (`noise_w` 0.8) changes
sentence lengths by -3 % .. +6 %. A variant must stay inside that natural variation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

N_FFT: Final = 1024
HOP: Final = 256
N_MELS: Final = 80
FMAX_HZ: Final = 8000.0
DYNAMIC_RANGE_DB: Final = 80.0
"""Spectra are floored at this many dB below the reference's peak: silence noise is not speech."""
DTW_BAND_FRACTION: Final = 0.1
"""DTW may stray this fraction of the sentence (plus `DTW_BAND_MIN_FRAMES`) off the diagonal."""
DTW_BAND_MIN_FRAMES: Final = 8


@dataclass(frozen=True)
class QualityThresholds:
    """Limits a variant must meet on the validation set (noise scales 0) to be used."""

    logmel_distance_db_mean: float = 2.5
    """Mean log-mel distance over sentences; the voice's own generator noise gives 2.4 dB."""

    logmel_distance_db_max: float = 3.5
    """Worst sentence; the generator noise gives at most 2.6 dB, the margin allows one odd word."""

    duration_ratio_tolerance: float = 0.03
    """Every sentence's length within ±3 % of FP32's; duration noise alone moves it -3 .. +6 %."""

    wer_points: float = 1.0
    """With `utterd[eval]`: the variant's word error rate at most this many points above FP32's."""


@dataclass(frozen=True)
class SentenceScore:
    """One validation sentence: variant against FP32."""

    logmel_distance_db: float
    """DTW-aligned mean log-mel distance in dB."""

    duration_ratio: float
    """Variant samples / FP32 samples."""


def mel_filterbank(
    sample_rate_hz: int, n_fft: int = N_FFT, n_mels: int = N_MELS, fmax_hz: float = FMAX_HZ
) -> npt.NDArray[np.float64]:
    """Triangular mel filters (HTK mel scale), shape (n_mels, n_fft // 2 + 1)."""
    return _mel_filterbank(sample_rate_hz, n_fft, n_mels, min(fmax_hz, sample_rate_hz / 2))


@functools.cache
def _mel_filterbank(
    sample_rate_hz: int, n_fft: int, n_mels: int, fmax_hz: float
) -> npt.NDArray[np.float64]:
    def hz_to_mel(hz: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
        return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0), dtype=np.float64)

    def mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(700.0 * (10.0 ** (mel / 2595.0) - 1.0), dtype=np.float64)

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(fmax_hz), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    bank = np.zeros((n_mels, len(bins)))
    for band in range(n_mels):
        low, centre, high = edges[band : band + 3]
        rising = (bins - low) / max(centre - low, 1e-9)
        falling = (high - bins) / max(high - centre, 1e-9)
        bank[band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def log_mel(samples: npt.NDArray[np.float32], sample_rate_hz: int) -> npt.NDArray[np.float64]:
    """Log-mel power spectrogram in dB, shape (frames, N_MELS), Hann window, hop 256."""
    audio = np.asarray(samples, dtype=np.float64).reshape(-1)
    if len(audio) < N_FFT:
        audio = np.pad(audio, (0, N_FFT - len(audio)))
    frames = 1 + (len(audio) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(audio[index] * np.hanning(N_FFT), axis=1)) ** 2
    mel = power @ mel_filterbank(sample_rate_hz).T
    return np.asarray(10.0 * np.log10(np.maximum(mel, 1e-10)), dtype=np.float64)


def dtw_mean_cost(cost: npt.NDArray[np.float64], band: int) -> float:
    """Mean frame cost along the cheapest monotonic alignment path within a diagonal band."""
    rows, cols = cost.shape
    inf = float("inf")
    total = np.full((rows + 1, cols + 1), inf)
    steps = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    total[0, 0] = 0.0
    for i in range(1, rows + 1):
        centre = (i - 1) * (cols - 1) / max(rows - 1, 1)
        lo, hi = max(1, int(centre) - band + 1), min(cols, int(centre) + band + 1)
        for j in range(lo, hi + 1):
            diag, up, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
            if diag <= up and diag <= left:
                best, length = diag, steps[i - 1, j - 1]
            elif up <= left:
                best, length = up, steps[i - 1, j]
            else:
                best, length = left, steps[i, j - 1]
            total[i, j] = best + cost[i - 1, j - 1]
            steps[i, j] = length + 1
    if not np.isfinite(total[rows, cols]):
        return inf
    return float(total[rows, cols] / steps[rows, cols])


def logmel_distance_db(
    reference: npt.NDArray[np.float32], test: npt.NDArray[np.float32], sample_rate_hz: int
) -> float:
    """DTW-aligned mean frame RMS log-mel difference in dB (0 for identical audio)."""
    ref, tst = log_mel(reference, sample_rate_hz), log_mel(test, sample_rate_hz)
    floor = ref.max() - DYNAMIC_RANGE_DB
    ref, tst = np.maximum(ref, floor), np.maximum(tst, floor)
    # Frame-to-frame RMS distance matrix, computed without a (rows, cols, mels) temporary.
    squared = np.sum(ref**2, axis=1)[:, None] + np.sum(tst**2, axis=1)[None, :] - 2.0 * ref @ tst.T
    cost = np.sqrt(np.maximum(squared, 0.0) / ref.shape[1])
    band = max(DTW_BAND_MIN_FRAMES, int(DTW_BAND_FRACTION * max(len(ref), len(tst))))
    band = max(band, abs(len(ref) - len(tst)) + 2)
    return dtw_mean_cost(cost, band)


def score_sentence(
    reference: npt.NDArray[np.float32], test: npt.NDArray[np.float32], sample_rate_hz: int
) -> SentenceScore:
    """Compare one sentence's variant audio with its FP32 audio."""
    if len(reference) == 0:
        raise ValueError("the FP32 reference produced no audio")
    if len(test) == 0:
        return SentenceScore(logmel_distance_db=float("inf"), duration_ratio=0.0)
    return SentenceScore(
        logmel_distance_db=logmel_distance_db(reference, test, sample_rate_hz),
        duration_ratio=len(test) / len(reference),
    )


def gate_reasons(
    scores: Sequence[SentenceScore],
    thresholds: QualityThresholds,
    wer: float | None = None,
    wer_fp32: float | None = None,
) -> list[str]:
    """Why these scores fail the quality gate; empty when they pass."""
    if not scores:
        return ["no validation sentence was scored"]
    reasons: list[str] = []
    distances = [s.logmel_distance_db for s in scores]
    ratios = [s.duration_ratio for s in scores]
    mean = float(np.mean(distances))
    if not mean <= thresholds.logmel_distance_db_mean:
        reasons.append(
            f"log-mel distance {mean:.2f} dB mean > {thresholds.logmel_distance_db_mean} dB"
        )
    if not max(distances) <= thresholds.logmel_distance_db_max:
        reasons.append(
            f"log-mel distance {max(distances):.2f} dB on the worst sentence > "
            f"{thresholds.logmel_distance_db_max} dB"
        )
    tolerance = thresholds.duration_ratio_tolerance
    if min(ratios) < 1.0 - tolerance or max(ratios) > 1.0 + tolerance:
        reasons.append(
            f"duration ratio {min(ratios):.3f}..{max(ratios):.3f} outside 1 ± {tolerance}"
        )
    if wer is not None and wer_fp32 is not None and wer > wer_fp32 + thresholds.wer_points / 100:
        reasons.append(
            f"word error rate {100 * wer:.1f} % > FP32's {100 * wer_fp32:.1f} % + "
            f"{thresholds.wer_points} point(s)"
        )
    return reasons
