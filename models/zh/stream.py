"""The zh voice's two models run for streaming: FastSpeech2 once per piece, MB-MelGAN in windows.

FastSpeech2 (a transformer with a length regulator) sees a whole piece at once and gives its
mel spectrogram, 80 bins per 12.5 ms frame (`HOP` samples at 24 kHz). The multi-band MelGAN
vocoder is convolutional along time, so a window of mel frames can be turned into audio on its
own given enough frames of *context* on each side: the vocoder then computes the window's samples
from the same inputs as it does on the whole mel, and the streamed audio matches the one-shot
audio. The window's own samples are cut out of the context's.

The context is measured, not read off the graph: `measure_reach` perturbs single mel frames of
a random mel and finds how far the vocoder's output moves on each side (the converted graph
pads with reflection inside every stage, which a graph walk like piper/receptive_field.py does
not follow). For the Baker MB-MelGAN the farthest change seen was 17.5 frames before the frame
and 18.3 after (a larger push reaches further: a tiny change rounds away in float32 sooner);
`LEFT_CONTEXT_FRAMES` and `RIGHT_CONTEXT_FRAMES` are 20, and a unit test checks them against the
measurement of the model in use and the streamed audio against the one-shot audio. With 15
frames before a seam, the audio was already off by 0.009 at one seam (31.7 dB); with 17-22 on
three random mels, bit-identical.

Windows follow `engine/stream_windows.window_plan`: a small first window (first audio after
`DEFAULT_FIRST_WINDOW_FRAMES` frames plus right context, 28 frames of vocoder work), then
doubling to `DEFAULT_WINDOW_FRAMES`, since the context is paid again at every seam.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.session import Session
from utterd.models.engine.stream_windows import window_plan
from utterd.models.errors import SynthesisError
from utterd.models.voice import CancelToken

__all__ = [
    "DEFAULT_FIRST_WINDOW_FRAMES",
    "DEFAULT_WINDOW_FRAMES",
    "HOP",
    "LEFT_CONTEXT_FRAMES",
    "MEL_BINS",
    "MIN_VOCODER_FRAMES",
    "RIGHT_CONTEXT_FRAMES",
    "SAMPLE_RATE_HZ",
    "Acoustic",
    "Prosody",
    "acoustic_mel",
    "measure_reach",
    "vocode",
    "vocode_windows",
]

SAMPLE_RATE_HZ: Final = 24_000
HOP: Final = 300
"""Audio samples per mel frame (12.5 ms)."""
MEL_BINS: Final = 80

LEFT_CONTEXT_FRAMES: Final = 20
"""Mel frames before a window that its samples depend on (measured at most 17.5)."""
RIGHT_CONTEXT_FRAMES: Final = 20
"""Mel frames after a window that its samples depend on (measured at most 18.3)."""

MIN_VOCODER_FRAMES: Final = 10
"""Fewest mel frames the vocoder runs on: its reflection padding (27 samples at its first
upsampled stage, 3 per frame) needs more samples than it pads. A shorter mel is run with its
last frame repeated up to this length and the extra audio cut off."""

DEFAULT_FIRST_WINDOW_FRAMES: Final = 8
"""100 ms of audio: the first window, small so that the first audio leaves early."""
DEFAULT_WINDOW_FRAMES: Final = 128
"""1.6 s of audio: the largest later window. The 40 frames of context are paid per window: with
64-frame windows the streamed 40-character sentence took 1.45× the one-shot time (FP32, load 7),
with 128 about 1.2×; a window of 168 frames is still vocoded in under 100 ms."""

ACOUSTIC_INPUTS: Final = frozenset(
    {"input_ids", "speaker_ids", "speed_ratios", "f0_ratios", "energy_ratios"}
)
"""FastSpeech2's inputs (TensorFlowTTS's inference signature, kept by the conversion)."""
VOCODER_INPUT: Final = "mels"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Prosody:
    """FastSpeech2's per-request ratios."""

    speed_ratio: float = 1.0
    """Multiplies every predicted phoneme duration before rounding: 1 / rate."""

    f0_ratio: float = 1.0
    """Multiplies the predicted (normalized) F0 contour: the request's `pitch`."""

    energy_ratio: float = 1.0
    """Multiplies the predicted (normalized) energy contour: the request's `energy`."""


@dataclass(frozen=True)
class Acoustic:
    """Which of FastSpeech2's outputs hold what (names differ between conversions)."""

    mel: str
    """The mel after the post-net, [1, frames, 80]: what the vocoder takes."""


def acoustic_mel(
    session: Session,
    outputs: Acoustic,
    ids: list[int],
    prosody: Prosody,
    cancel: CancelToken | None = None,
) -> FloatArray:
    """Run FastSpeech2 on one piece's symbol ids: its mel, [frames, 80] (maybe 0 frames)."""
    feeds = {
        "input_ids": np.asarray([ids], dtype=np.int32),
        "speaker_ids": np.zeros(1, dtype=np.int32),
        "speed_ratios": np.asarray([prosody.speed_ratio], dtype=np.float32),
        "f0_ratios": np.asarray([prosody.f0_ratio], dtype=np.float32),
        "energy_ratios": np.asarray([prosody.energy_ratio], dtype=np.float32),
    }
    (mel,) = session.run([outputs.mel], feeds, cancel)
    if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[2] != MEL_BINS:
        raise SynthesisError(
            f"{session.label}: FastSpeech2 gave a mel of shape {mel.shape}, "
            f"expected [1, frames, {MEL_BINS}]"
        )
    return np.ascontiguousarray(mel[0], dtype=np.float32)


def vocode(vocoder: Session, mel: FloatArray, cancel: CancelToken | None = None) -> FloatArray:
    """The whole mel [frames, 80] to audio in one vocoder run: `HOP` samples per frame."""
    frames = len(mel)
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    if frames < MIN_VOCODER_FRAMES:
        mel = np.pad(mel, ((0, MIN_VOCODER_FRAMES - frames), (0, 0)), mode="edge")
    (wave,) = vocoder.run(None, {VOCODER_INPUT: mel[np.newaxis]}, cancel)
    samples = np.asarray(wave, dtype=np.float32).reshape(-1)
    if len(samples) != len(mel) * HOP:
        raise SynthesisError(
            f"{vocoder.label}: the vocoder gave {len(samples)} samples for {len(mel)} mel "
            f"frames, expected {len(mel) * HOP}"
        )
    return samples[: frames * HOP]


def vocode_windows(
    vocoder: Session,
    mel: FloatArray,
    cancel: CancelToken,
    *,
    first_window_frames: int = DEFAULT_FIRST_WINDOW_FRAMES,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    left_context: int = LEFT_CONTEXT_FRAMES,
    right_context: int = RIGHT_CONTEXT_FRAMES,
) -> Iterator[tuple[FloatArray, bool]]:
    """The mel's audio window by window: (samples, the last window) pairs.

    Each window runs the vocoder on its frames with up to `left_context` frames before and
    `right_context` after (fewer at the mel's ends, where the one-shot run sees its ends too)
    and keeps its own frames' samples. Checks `cancel` before each window; the run itself is
    interrupted by the backend when it can (`Session.run`).
    """
    frames = len(mel)
    if frames == 0:
        yield np.zeros(0, dtype=np.float32), True
        return
    plan = window_plan(frames, first_window_frames, window_frames)
    for number, (start, end) in enumerate(plan):
        cancel.raise_if_cancelled()
        lo = max(0, start - left_context)
        hi = min(frames, end + right_context)
        audio = vocode(vocoder, mel[lo:hi], cancel)
        yield audio[(start - lo) * HOP : (end - lo) * HOP], number == len(plan) - 1


def measure_reach(vocoder: Session, frames: int = 96, seed: int = 0) -> tuple[float, float]:
    """How far the vocoder's output depends on one mel frame: (frames before, frames after).

    Pushes every bin of one frame of a random mel (three frames, by 1 and by 5) and finds the
    first and last output samples that change; the farthest, in frames from the pushed frame's
    edges (a sample inside the frame counts 0). `frames` must exceed the reach on both sides.
    """
    rng = np.random.default_rng(seed)
    mel = (rng.standard_normal((frames, MEL_BINS)) * 2.0 - 3.0).astype(np.float32)
    reference = vocode(vocoder, mel)
    before = after = 0.0
    for frame in (frames // 3, frames // 2, 2 * frames // 3):
        for push in (1.0, 5.0):
            moved = mel.copy()
            moved[frame] += np.float32(push)
            changed = np.flatnonzero(vocode(vocoder, moved) != reference)
            if len(changed) == 0:
                continue
            before = max(before, frame - changed[0] / HOP)
            after = max(after, (changed[-1] + 1) / HOP - (frame + 1))
    if math.ceil(before) >= frames // 3 or math.ceil(after) >= frames // 3:
        raise SynthesisError(
            f"{vocoder.label}: the vocoder's reach ({before:.1f}, {after:.1f} frames) is not "
            f"inside a {frames}-frame probe"
        )
    return before, after
