"""Hold the audio utterd played on the emulated ARM64 machine against the x86-64 result.

Both sides ran the same deterministic request (.ci/arm64/speak.py), so they were asked for the
same samples; but not byte equality: the arm64 and x86-64 kernels of ONNX Runtime (and numpy)
order and fuse their float operations differently, so the values differ in their last bits,
hibari's waveform (its phase) turns that into visibly different samples, and a predicted phoneme
length that lies near a rounding boundary may come out one frame longer or shorter. What must
hold is that it is the same speech:

- **Duration.** The audible part (from the first to the last sample louder than
  `SILENCE_THRESHOLD`) may differ by at most `DURATION_TOLERANCE_S`. hibari makes whole frames
  of 25 ms (600 samples at 24 kHz; the test sentence is 219 of them), and four frames of slack
  cover rounding in a few phoneme lengths, while the wrong kernels seen under qemu's `max` CPU
  model gave 17-36 % less audio.
- **Spectral distance.** Log-mel spectra (40 bands, 25 ms windows every 10 ms), floored 80 dB
  below the loudest value so that near-silence does not count, are aligned by dynamic time
  warping (one frame more in one phoneme then does not misalign everything after it), and the
  root-mean-square difference per aligned frame, in dB, is averaged along the path. Measured on
  the test sentence (docs/benchmarks.md, "ARM64 (emulated)"): rounding alone gives 0.60 dB on
  x86-64 itself (3 threads against 2: the same model, float sums in another order; the
  waveforms then differ by a 9 dB signal-to-difference ratio, because hibari's phase is
  sensitive) and 0.69 dB for emulated Cortex-A72 against x86-64; a real difference gives more:
  a level 2 dB lower 1.95 dB, a 5 % faster rate 2.55 dB, two of 15 words changed 3.36 dB,
  qemu's `max` model 23 dB, another voice 13.7 dB. `MAX_SPECTRAL_DISTANCE_DB` (1.5 dB) sits
  between: 2.5 times what rounding gives, below every real change.

Before that, each side's file sink must hold exactly the samples its `synthesize` returned, once
the silence PortAudio writes at each stream start is taken out (tests/audio_sinks.py's
`strip_start_silences`): on each machine the player played what the voice made.

Usage: compare_audio.py X86_FOLDER ARM_FOLDER [--json OUT], folders as speak.py writes them.
Exit status 0 when both checks pass, 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from audio_sinks import read_s16, strip_start_silences

SILENCE_THRESHOLD: Final = 33
"""Samples at most this loud (-60 dBFS in int16 steps) count as silence at the ends."""

DURATION_TOLERANCE_S: Final = 0.1
"""Largest difference of the audible durations: four hibari frames of 25 ms."""

MAX_SPECTRAL_DISTANCE_DB: Final = 1.5
"""Largest mean log-mel distance along the alignment path, in dB."""

MEL_BANDS: Final = 40
WINDOW_S: Final = 0.025
HOP_S: Final = 0.010
FLOOR_DB: Final = 80.0
BAND_FRACTION: Final = 0.1
"""The warping path stays within this fraction of the longer sequence off the diagonal."""


@dataclass(frozen=True)
class Comparison:
    """What was measured and whether it passes."""

    reference_s: float
    """Audible duration of the reference (x86-64) audio, in seconds."""

    candidate_s: float
    """Audible duration of the audio under test (arm64), in seconds."""

    duration_diff_s: float
    """candidate_s - reference_s."""

    spectral_distance_db: float
    """Mean RMS log-mel difference per aligned frame, in dB."""

    duration_ok: bool
    """|duration_diff_s| <= the tolerance."""

    spectrum_ok: bool
    """spectral_distance_db <= the limit."""


def audible(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The samples from the first to the last one louder than SILENCE_THRESHOLD."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_THRESHOLD)
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def _mel_filters(rate_hz: int, n_fft: int) -> npt.NDArray[np.float64]:
    """Triangular mel filters (MEL_BANDS x n_fft//2+1) from 60 Hz to the Nyquist rate."""

    def mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(60.0)), mel(np.array(rate_hz / 2)), MEL_BANDS + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    filters = np.zeros((MEL_BANDS, len(bins)))
    for band in range(MEL_BANDS):
        low, centre, high = edges[band : band + 3]
        rising = (bins - low) / (centre - low)
        falling = (high - bins) / (high - centre)
        filters[band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


def log_mel(samples: npt.NDArray[np.int16], rate_hz: int) -> npt.NDArray[np.float64]:
    """Frames x MEL_BANDS log-mel power in dB, floored FLOOR_DB below the loudest value."""
    window = int(WINDOW_S * rate_hz)
    hop = int(HOP_S * rate_hz)
    n_fft = 1 << (window - 1).bit_length()
    audio = samples.astype(np.float64) / 32768.0
    if len(audio) < window:
        audio = np.pad(audio, (0, window - len(audio)))
    count = 1 + (len(audio) - window) // hop
    frames = np.lib.stride_tricks.sliding_window_view(audio, window)[::hop][:count]
    power = np.abs(np.fft.rfft(frames * np.hanning(window), n_fft)) ** 2
    mel = power @ _mel_filters(rate_hz, n_fft).T
    db: npt.NDArray[np.float64] = 10.0 * np.log10(np.maximum(mel, 1e-12))
    floored: npt.NDArray[np.float64] = np.maximum(db, db.max() - FLOOR_DB)
    return floored


def dtw_distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Mean RMS difference (dB) per aligned frame pair along the cheapest warping path.

    The path is kept within BAND_FRACTION of the longer length off the (scaled) diagonal, so the
    cost is linear in the length of the audio for a fixed band.
    """
    n, m = len(a), len(b)
    band = max(2, int(BAND_FRACTION * max(n, m)))
    total = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=np.int64)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        centre = (i * m) // n
        lo, hi = max(1, centre - band), min(m, centre + band)
        cost = np.sqrt(np.mean((b[lo - 1 : hi] - a[i - 1]) ** 2, axis=1))
        for j, c in zip(range(lo, hi + 1), cost, strict=True):
            moves = (
                (total[i - 1, j - 1], steps[i - 1, j - 1]),
                (total[i - 1, j], steps[i - 1, j]),
                (total[i, j - 1], steps[i, j - 1]),
            )
            best, count = min(moves, key=lambda move: move[0])
            total[i, j] = best + c
            steps[i, j] = count + 1
    return float(total[n, m] / steps[n, m])


def compare(
    reference: npt.NDArray[np.int16], candidate: npt.NDArray[np.int16], rate_hz: int
) -> Comparison:
    """Duration and spectral distance of `candidate` against `reference`."""
    ref, cand = audible(reference), audible(candidate)
    if len(ref) == 0 or len(cand) == 0:
        return Comparison(len(ref) / rate_hz, len(cand) / rate_hz, 0.0, float("inf"), False, False)
    ref_s, cand_s = len(ref) / rate_hz, len(cand) / rate_hz
    distance = dtw_distance(log_mel(ref, rate_hz), log_mel(cand, rate_hz))
    return Comparison(
        reference_s=round(ref_s, 4),
        candidate_s=round(cand_s, 4),
        duration_diff_s=round(cand_s - ref_s, 4),
        spectral_distance_db=round(distance, 3),
        duration_ok=abs(cand_s - ref_s) <= DURATION_TOLERANCE_S,
        spectrum_ok=distance <= MAX_SPECTRAL_DISTANCE_DB,
    )


def played_as_synthesized(folder: Path) -> tuple[npt.NDArray[np.int16], int, str]:
    """The audio speak.py got from `synthesize` in `folder`, its rate, and a problem or "".

    The problem is set when the file sink did not receive exactly those samples (after the
    silence PortAudio writes at each stream start is taken out): the player on that machine
    played something else than its voice made.
    """
    result = json.loads((folder / "result.json").read_text())
    synth = read_s16(folder / "synth.raw")
    rate_hz = int(result["synth_rate_hz"])
    if int(result["device_rate_hz"]) != rate_hz:
        return synth, rate_hz, f"the device ran at {result['device_rate_hz']} Hz, not {rate_hz}"
    played = strip_start_silences(read_s16(folder / "alsa-file-sink.raw"), synth)
    if not np.array_equal(played[: len(synth)], synth) or played[len(synth) :].any():
        return synth, rate_hz, "the file sink did not receive the synthesized samples"
    return synth, rate_hz, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="speak.py's folder from x86-64")
    parser.add_argument("candidate", type=Path, help="speak.py's folder from arm64")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    reference, ref_rate, ref_problem = played_as_synthesized(args.reference)
    candidate, cand_rate, cand_problem = played_as_synthesized(args.candidate)
    problems = [f"x86-64: {ref_problem}"] if ref_problem else []
    problems += [f"arm64: {cand_problem}"] if cand_problem else []
    if ref_rate != cand_rate:
        problems.append(f"rates differ: x86-64 {ref_rate} Hz, arm64 {cand_rate} Hz")
    result = compare(reference, candidate, ref_rate)
    if args.json:
        args.json.write_text(json.dumps({**asdict(result), "problems": problems}, indent=2) + "\n")
    print(
        f"compare_audio: x86-64 {result.reference_s:.3f} s, arm64 {result.candidate_s:.3f} s "
        f"(difference {result.duration_diff_s:+.3f} s, limit {DURATION_TOLERANCE_S} s); "
        f"spectral distance {result.spectral_distance_db:.2f} dB "
        f"(limit {MAX_SPECTRAL_DISTANCE_DB} dB)"
    )
    for problem in problems:
        print(f"compare_audio: {problem}")
    return 0 if result.duration_ok and result.spectrum_ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
