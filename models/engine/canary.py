"""Numerics checked at load: a voice's first run held against a reference from a trusted machine.

A kernel that computes wrong on this CPU makes speech that is wrong without any error: no
exception, no NaN, just other audio. The case that made this module: on qemu's `max` CPU model
(arm64 with SME), hibari-heart spoke 14-36 % too short and garbled. The cause, found with
`.ci/arm64/enter.sh` and ONNX Runtime 1.32 (docs/operations.md, "Numerics checked at load"):
ONNX Runtime fuses hibari's DynamicQuantizeLinear + MatMulInteger pairs into
DynamicQuantizeMatMul, and on a CPU that reports SME its MLAS runs those through Arm's KleidiAI
kernels (`kai_matmul_clamp_f32_qai8dxp..._qsi8cxp..._sme_mopa`: int8 outer products in the SME
tile). Under `QEMU_CPU=max` these give wrong sums (246 frames of spectrum became 212 for a
test sentence); with SME off (`max,sme=off`, `max,sve=off`), with KleidiAI off (session entry
`mlas.disable_kleidiai=1`) or without the fusion (basic graph optimization) the output is right
(248 frames: float rounding of one duration). The FP32 kernels (joe) are right with SME on.
qemu 7.2 (Debian bookworm's) emulates SME but not SME2; whether real SME hardware (Apple M4,
newer Cortex-X) computes the same wrong sums or qemu's SME emulation is at fault is not known:
hence a check at load on every machine, not a rule for one CPU.

How the check works:

- **The canary.** A short sentence in the voice's language (`canary_text`: "Ready." as
  `Voice.warm_up` says it, 你好。 for Chinese: the zh voice says nothing for "Ready.", its
  front end skips the Latin letters), synthesized deterministically
  (`SynthesisParams(deterministic=True)`: noise off or seeded), so the same model on correct
  kernels gives the same audio up to float rounding. It is the
  voice's warm-up run: a voice with the default warm-up needs nothing more, one whose family
  warms up further says what is left once the canary ran (`WarmsUpAfterCanary`), so the check
  adds no model run to the load.
- **The reference** (`CanaryReference`): the canary's audible length in samples and its log-mel
  spectrogram (40 bands, 25 ms windows every 10 ms, in dB, floored 80 dB below the loudest
  value), recorded on x86-64 with ONNX Runtime FP32 kernels from the voice's own model, never
  a quantized variant (`python -m utterd.models.engine.canary record`), and shipped in
  `canary_references.json` beside this module, per voice id. A reference applies only to the
  model it was recorded from: same front end version (a new G2P changes the audio as much as a
  new model; for the zh voice it names the converter's version too, so re-record it when that
  changes) and the same model file size (a new model release). A corrupted file keeps its
  size, so it is checked, and fails. No reference is ever recorded at a first load or by
  `utterd quantize` on the machine itself: under qemu `max` every step, installation included,
  runs on the wrong kernels, so a reference made there would vouch for wrong audio. A voice
  without a reference is loaded unchecked, and `describe` says so (`canary: {"checked": false,
  "reason": ...}`).
- **The comparison** (`compare`): the audible length may differ by `DURATION_TOLERANCE`, and the
  log-mel spectrograms, aligned by dynamic time warping, by at most `MAX_DISTANCE_DB` (mean
  root-mean-square dB per aligned frame). The figures that set both are in their docstrings.
- **On failure** the voice store (`voice_store.py`) logs the figures, reports a numerics fault,
  closes the voice and loads it again on the next of `fallback_engines`: ONNX Runtime without
  KleidiAI (`ONNXRUNTIME_PORTABLE`, on arm64 only: elsewhere KleidiAI is never used), then the
  voice's FP32 model on the configured backend when what failed was a quantized variant
  (`EngineSettings.variants` off; int8 kernels are where the wrong sums were seen, and FP32 is
  what the reference was recorded from), then the other backend. When none passes, the voice
  refuses to load with the figures in the error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import (
    AUTO,
    ONNXRUNTIME,
    OPENVINO,
    OnnxRuntimeSession,
    Session,
    SessionOptions,
    available_backends,
    intra_op_threads,
    register_backend,
)
from utterd.models.engine.session import describe_model
from utterd.models.errors import VoiceLoadError
from utterd.models.voice import CancelToken, EngineSettings, SynthesisParams, Voice, VoiceInfo

__all__ = [
    "CANARY_TEXTS",
    "ONNXRUNTIME_PORTABLE",
    "Canary",
    "CanaryReference",
    "CanaryResult",
    "NumericsMismatch",
    "WarmsUpAfterCanary",
    "canary_audio",
    "canary_cap",
    "canary_text",
    "compare",
    "fallback_engines",
    "log_mel",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_CANARY_TEXT: Final = "Ready."
"""The sentence of `Voice.warm_up`: the canary is the warm-up's own first run, so that the check
adds no model run a voice with the default warm-up would not make anyway."""

CANARY_TEXTS: Final = MappingProxyType({"en": DEFAULT_CANARY_TEXT, "zh": "你好。"})
"""Canary per language (BCP 47 primary subtag); any other language says `DEFAULT_CANARY_TEXT`,
as its default warm-up does. Chinese: 你好 (ni3 hao3, said ni2 hao3: the tone-sandhi rule runs),
the zh voice's warm-up sentence before the canary, so its load costs what it did."""

REFERENCES_FILE: Final = Path(__file__).with_name("canary_references.json")
"""The references shipped with utterd, recorded on x86-64 (see the module docstring)."""

REFERENCE_FORMAT: Final = 1

SILENCE: Final = 10 ** (-60 / 20)
"""Samples at most this loud (-60 dBFS) count as silence at the ends of the canary."""

MEL_BANDS: Final = 40
WINDOW_S: Final = 0.025
HOP_S: Final = 0.010
FLOOR_DB: Final = 80.0
"""Log-mel values are floored this far below the loudest one, so near-silence does not count."""

BAND_FRACTION: Final = 0.2
"""The warping path stays within this fraction of the longer spectrogram off the diagonal (and
at least `_MIN_BAND` frames)."""
_MIN_BAND: Final = 4

MAX_DISTANCE_DB: Final = 1.0
"""Largest mean log-mel distance of the canary from its reference, in dB, when the voice runs
the precision the reference was recorded in. Float rounding gives at most 0.16 dB (measured,
docs/benchmarks.md "Canary": x86-64 at 1-4 threads 0.03 dB, OpenVINO against ONNX Runtime
0.03 dB for joe and 0.16 dB for hibari, emulated Cortex-A72 against x86-64 0.15 dB); a real
change gives more: Gaussian noise of 1 % of each weight tensor's spread 1.8 dB (joe), one int8
weight in a hundred replaced 6.0 dB (hibari), qemu `max`'s kernels 19.9 dB. 1 dB is six times
the rounding; it lets through damage below 1 % noise (0.3 %: 0.6 dB)."""

MAX_VARIANT_DISTANCE_DB: Final = 4.0
"""The limit, in dB, when the voice runs another precision than the reference (joe's INT8
variant against its FP32 reference: 2.26 dB measured). `utterd quantize` admits a variant whose
worst validation sentence is within 3.5 dB of FP32 (quantize/quality.py); half a dB more for
rounding. Still far below qemu `max` (19.9 dB) or damaged int8 weights (6.0 dB)."""

DURATION_TOLERANCE: Final = 0.1
"""Largest relative difference of the audible length from the reference's. Rounding moves a
phoneme by a frame (hibari: 25 ms of a 0.45 s canary, 5.5 %); the qemu `max` kernels made hibari
14-36 % shorter."""

ONNXRUNTIME_PORTABLE: Final = "onnxruntime-portable"
"""ONNX Runtime without Arm's optional KleidiAI kernels (session entry `mlas.disable_kleidiai`):
MLAS's own NEON kernels, the execution path that is right under qemu `max`. A backend name of
its own, so that `describe`, the logs and the phrase-cache key say which path ran."""


@dataclass(frozen=True)
class CanaryReference:
    """The canary as a trusted machine synthesized it."""

    voice_id: str
    """The voice it was recorded from."""

    sample_rate_hz: int
    """Rate of the canary audio."""

    audible_samples: int
    """Length from the first to the last sample louder than `SILENCE`."""

    log_mel_db: npt.NDArray[np.float64]
    """Frames x MEL_BANDS log-mel spectrogram of the audible part (`log_mel`), 0.1 dB steps."""

    front_end_version: str
    """The voice's `VoiceInfo.front_end_version` when recorded; another one: not applicable."""

    model_size_bytes: int
    """Size of the voice's model file when recorded; another size: not applicable."""

    model_sha256: str
    """SHA-256 of that model file, for people comparing files (not checked at load: hashing
    64 MB would cost ready time; a changed file changes the audio, which is checked)."""

    recorded_with: str
    """Machine, backend and runtime version that recorded it."""

    precision: str
    """Precision of the model it was recorded from (`fp32`, `int8`), as the voice reported it."""

    def as_dict(self) -> dict[str, Any]:
        """The reference as `canary_references.json` holds it."""
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "audible_samples": self.audible_samples,
            "front_end_version": self.front_end_version,
            "model_size_bytes": self.model_size_bytes,
            "model_sha256": self.model_sha256,
            "recorded_with": self.recorded_with,
            "precision": self.precision,
            "log_mel_db": [[round(float(v), 1) for v in row] for row in self.log_mel_db],
        }

    @staticmethod
    def from_dict(voice_id: str, data: Mapping[str, Any]) -> CanaryReference:
        """Read one entry of `canary_references.json` (KeyError, ValueError when malformed)."""
        log_mel_db = np.asarray(data["log_mel_db"], dtype=np.float64)
        if log_mel_db.ndim != 2 or log_mel_db.shape[1] != MEL_BANDS or len(log_mel_db) == 0:
            raise ValueError(f"log_mel_db must be frames x {MEL_BANDS}, got {log_mel_db.shape}")
        return CanaryReference(
            voice_id=voice_id,
            sample_rate_hz=int(data["sample_rate_hz"]),
            audible_samples=int(data["audible_samples"]),
            log_mel_db=log_mel_db,
            front_end_version=str(data["front_end_version"]),
            model_size_bytes=int(data["model_size_bytes"]),
            model_sha256=str(data["model_sha256"]),
            recorded_with=str(data["recorded_with"]),
            precision=str(data["precision"]),
        )


@dataclass(frozen=True)
class CanaryResult:
    """One voice's canary against its reference."""

    passed: bool
    """Both the duration and the spectrum are within their limits."""

    duration_s: float
    """Audible length of the canary here."""

    reference_duration_s: float
    """Audible length of the reference."""

    distance_db: float
    """Mean log-mel distance along the alignment (inf: no audible sound)."""

    limit_db: float
    """The spectral limit applied (`MAX_DISTANCE_DB` or `MAX_VARIANT_DISTANCE_DB`)."""

    reason: str
    """What failed, for the log and the error; empty when it passed."""

    def as_dict(self) -> dict[str, Any]:
        """The figures as `describe` shows them."""
        return {
            "passed": self.passed,
            "distance_db": round(self.distance_db, 2) if np.isfinite(self.distance_db) else None,
            "limit_db": self.limit_db,
            "duration_s": round(self.duration_s, 3),
            "reference_duration_s": round(self.reference_duration_s, 3),
        }


def audible(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The samples from the first to the last one louder than `SILENCE`."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE)
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def _mel_filters(rate_hz: int, n_fft: int) -> npt.NDArray[np.float64]:
    """Triangular mel filters (MEL_BANDS x n_fft//2+1) from 60 Hz to the Nyquist rate."""

    def mel(hz: float) -> float:
        return float(2595.0 * np.log10(1.0 + hz / 700.0))

    edges = 700.0 * (10.0 ** (np.linspace(mel(60.0), mel(rate_hz / 2), MEL_BANDS + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    filters: npt.NDArray[np.float64] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


def log_mel(samples: npt.NDArray[np.float32], rate_hz: int) -> npt.NDArray[np.float64]:
    """Frames x MEL_BANDS log-mel power in dB, floored FLOOR_DB below the loudest value."""
    window = int(WINDOW_S * rate_hz)
    hop = int(HOP_S * rate_hz)
    n_fft = 1 << (window - 1).bit_length()
    audio = samples.astype(np.float64)
    if len(audio) < window:
        audio = np.pad(audio, (0, window - len(audio)))
    count = 1 + (len(audio) - window) // hop
    frames = np.lib.stride_tricks.sliding_window_view(audio, window)[::hop][:count]
    power = np.abs(np.fft.rfft(frames * np.hanning(window), n_fft)) ** 2
    db = 10.0 * np.log10(np.maximum(power @ _mel_filters(rate_hz, n_fft).T, 1e-12))
    floored: npt.NDArray[np.float64] = np.maximum(db, db.max() - FLOOR_DB)
    return floored


def dtw_distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Mean RMS difference (dB) per aligned frame pair along the cheapest warping path.

    The path stays within a band off the (scaled) diagonal: cost linear in the length. The frame
    distances are computed per row with numpy, the path in plain floats: indexing numpy arrays
    cell by cell made a 46-frame canary cost 11 ms, this 0.8 ms.
    """
    n, m = len(a), len(b)
    band = max(_MIN_BAND, int(BAND_FRACTION * max(n, m)))
    inf = float("inf")
    previous = [(inf, 0)] * (m + 1)  # row i-1: (total, steps) per column 0..m
    previous[0] = (0.0, 0)
    for i in range(1, n + 1):
        centre = (i * m) // n
        lo, hi = max(1, centre - band), min(m, centre + band)
        costs = np.sqrt(np.mean((b[lo - 1 : hi] - a[i - 1]) ** 2, axis=1)).tolist()
        current = [(inf, 0)] * (m + 1)
        for j, cost in zip(range(lo, hi + 1), costs, strict=True):
            best = min(previous[j - 1], previous[j], current[j - 1], key=_total)
            current[j] = (best[0] + cost, best[1] + 1)
        previous = current
    total, steps = previous[m]
    return total / steps if steps and total < inf else inf


def _total(cell: tuple[float, int]) -> float:
    return cell[0]


def compare(
    reference: CanaryReference, samples: npt.NDArray[np.float32], precision: str | None = None
) -> CanaryResult:
    """The canary audio `samples` (at the reference's rate) against `reference`; `precision`:
    what the voice runs (None: the reference's), which picks the spectral limit."""
    limit = (
        MAX_DISTANCE_DB
        if precision is None or precision == reference.precision
        else MAX_VARIANT_DISTANCE_DB
    )
    rate = reference.sample_rate_hz
    sound = audible(samples)
    ref_s = reference.audible_samples / rate
    if len(sound) == 0:
        return CanaryResult(False, 0.0, ref_s, float("inf"), limit, "the canary is silent")
    duration_s = len(sound) / rate
    distance = dtw_distance(reference.log_mel_db, log_mel(sound, rate))
    problems = []
    change = duration_s / ref_s - 1.0
    if abs(change) > DURATION_TOLERANCE:
        problems.append(
            f"duration {duration_s:.3f} s against {ref_s:.3f} s ({change:+.0%}, "
            f"limit ±{DURATION_TOLERANCE:.0%})"
        )
    if not distance <= limit:
        problems.append(f"spectral distance {distance:.2f} dB (limit {limit} dB)")
    return CanaryResult(not problems, duration_s, ref_s, distance, limit, "; ".join(problems))


def canary_text(language: str) -> str:
    """The canary sentence for a voice of `language` (`zh-CN`, `en-US`): `CANARY_TEXTS`."""
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    return CANARY_TEXTS.get(primary, DEFAULT_CANARY_TEXT)


def canary_audio(voice: Voice, max_samples: int | None = None) -> npt.NDArray[np.float32]:
    """The voice's deterministic synthesis of its `canary_text`, as one array; with
    `max_samples`, cut short once it holds that many (`canary_cap`)."""
    text = canary_text(voice.info.language)
    chunks: list[npt.NDArray[np.float32]] = []
    total = 0
    for chunk in voice.stream(text, SynthesisParams(deterministic=True), CancelToken()):
        chunks.append(chunk.samples)
        total += len(chunk.samples)
        if max_samples is not None and total >= max_samples:
            break  # the rest of the stream is dropped unsaid
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def canary_cap(reference: CanaryReference) -> int:
    """Samples after which a canary cannot pass any more: twice the reference's audible length
    and a second for silence at the ends. Wrong kernels can make it far longer (joe's INT8 with
    damaged weights said "Ready." in 8.6 s, costing the load 0.7-1.2 s), and its length alone
    then fails it."""
    return 2 * reference.audible_samples + reference.sample_rate_hz


@runtime_checkable
class WarmsUpAfterCanary(Protocol):
    """A voice whose warm-up starts with the canary's own run (`canary_audio`) and goes on:
    once the voice store has run the canary it calls only `warm_up_after_canary`, so checking
    the voice costs its load nothing beyond the comparison."""

    def warm_up_after_canary(self) -> None:
        """What `warm_up` does beyond saying the canary."""


class NumericsMismatch(VoiceLoadError):
    """The voice's canary differed from its reference on every execution path tried: this
    machine computes the model wrong (a kernel, a CPU feature, a damaged file)."""


class Canary:
    """The references a voice store checks voices against. Thread-safe (read-only)."""

    def __init__(self, references: Mapping[str, CanaryReference]) -> None:
        self._references = dict(references)

    @staticmethod
    def load(path: Path = REFERENCES_FILE) -> Canary:
        """The references in `path`; none (logged) when it is missing or malformed, so a broken
        file turns the check off rather than refusing every voice."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != REFERENCE_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {REFERENCE_FORMAT}")
            references = {
                voice_id: CanaryReference.from_dict(voice_id, entry)
                for voice_id, entry in data["voices"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            _LOGGER.warning("event=canary-references-unusable file=%s reason=%r", path, err)
            return Canary({})
        return Canary(references)

    def reference_for(self, info: VoiceInfo) -> tuple[CanaryReference | None, str]:
        """The reference that applies to `info`'s model, or None and why not."""
        reference = self._references.get(info.voice_id)
        if reference is None:
            return None, "no reference recorded for this voice"
        if reference.front_end_version != info.front_end_version:
            return None, (
                f"reference recorded with front end {reference.front_end_version!r}, "
                f"this is {info.front_end_version!r}"
            )
        try:
            size = info.model_path.stat().st_size if info.model_path is not None else -1
        except OSError:
            size = -1
        if size != reference.model_size_bytes:
            return None, (
                f"reference recorded from a model of {reference.model_size_bytes} bytes, "
                f"this one has {size}"
            )
        return reference, ""


_PORTABLE_LOCK = threading.Lock()


def fallback_engines(engine: EngineSettings, *, fp32: bool = False) -> list[EngineSettings]:
    """Engines to try, in order, when `engine` fails the canary: other execution paths first.

    ONNX Runtime without KleidiAI (arm64 only; registered as a backend on first use), then, with
    `fp32` (what failed ran a quantized variant and the voice has an FP32 model), `engine` on
    the voice's FP32 model (`variants` off), then the other backend. A family that cannot run
    one of them refuses it at load, and the next is tried.
    """
    ort_like = engine.backend in (AUTO, ONNXRUNTIME)
    engines = []
    if ort_like and platform.machine().lower() in ("aarch64", "arm64"):
        with _PORTABLE_LOCK:
            if ONNXRUNTIME_PORTABLE not in available_backends():
                register_backend(ONNXRUNTIME_PORTABLE, _open_portable)
        engines.append(dataclasses.replace(engine, backend=ONNXRUNTIME_PORTABLE))
    if fp32 and engine.variants:
        engines.append(dataclasses.replace(engine, variants=False))
    engines.append(dataclasses.replace(engine, backend=OPENVINO if ort_like else ONNXRUNTIME))
    return engines


def _open_portable(
    model: Path | bytes, engine: EngineSettings, label: str, options: SessionOptions
) -> Session:
    """ONNX Runtime as `ort_session.open_onnxruntime` opens it, without KleidiAI's kernels, and
    without its optimized-graph cache and shared arena (a fallback path: the optimizer runs at
    each load, and the session keeps an arena of its own unless `memory_arena` is off)."""
    import onnxruntime as ort

    ort_options = ort.SessionOptions()
    ort_options.intra_op_num_threads = intra_op_threads(engine)
    ort_options.inter_op_num_threads = 1
    ort_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    ort_options.log_severity_level = 3
    ort_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ort_options.add_session_config_entry("mlas.disable_kleidiai", "1")
    ort_options.enable_mem_reuse = options.memory_reuse
    ort_options.enable_cpu_mem_arena = options.memory_arena
    source = str(model) if isinstance(model, Path) else model
    try:
        inner = ort.InferenceSession(source, ort_options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT reports corrupt graphs with several pybind types
        raise VoiceLoadError(
            f"cannot load model {describe_model(model, label)}: {str(err).strip()}"
        ) from err
    session = OnnxRuntimeSession(inner, label, ort_options.intra_op_num_threads)
    session.backend = ONNXRUNTIME_PORTABLE
    return session


def record(voice: Voice, recorded_with: str) -> CanaryReference:
    """The canary of `voice` as a reference (run this on a trusted machine only)."""
    from utterd.models.model_store import file_sha256

    info = voice.info
    if info.model_path is None:
        raise VoiceLoadError(f"voice {info.voice_id!r} has no model file to record against")
    sound = audible(canary_audio(voice))
    precision = voice.runtime_info().get("precision")
    return CanaryReference(
        voice_id=info.voice_id,
        sample_rate_hz=info.sample_rate_hz,
        audible_samples=len(sound),
        log_mel_db=np.round(log_mel(sound, info.sample_rate_hz), 1),
        front_end_version=info.front_end_version,
        model_size_bytes=info.model_path.stat().st_size,
        model_sha256=file_sha256(info.model_path),
        recorded_with=recorded_with,
        precision=str(precision or "fp32"),
    )


def write_references(path: Path, references: Sequence[CanaryReference]) -> None:
    """Write `references` to `path`, keeping the entries of other voices already there."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        voices = dict(data.get("voices", {})) if data.get("format") == REFERENCE_FORMAT else {}
    except (OSError, ValueError):
        voices = {}
    voices.update({ref.voice_id: ref.as_dict() for ref in references})
    document = {"format": REFERENCE_FORMAT, "voices": dict(sorted(voices.items()))}
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """`record VOICE...`: write references (x86-64, ONNX Runtime FP32 only); `check VOICE...`:
    run the canary as the voice store would and print the figures."""
    import onnxruntime
    from utterd.models.voice_store import default_families

    parser = argparse.ArgumentParser(prog="python -m utterd.models.engine.canary")
    parser.add_argument("action", choices=("record", "check"))
    parser.add_argument("voices", nargs="+")
    parser.add_argument("--backend", default=ONNXRUNTIME)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--folder", action="append", default=[], type=Path)
    parser.add_argument("--references", type=Path, default=REFERENCES_FILE)
    parser.add_argument(
        "--model-store", type=Path, help="where variants are looked up (check); default: utterd's"
    )
    args = parser.parse_args(argv)
    # A reference is of the voice's own model: never of a quantized variant in the store.
    engine = EngineSettings(
        backend=args.backend, threads=args.threads, variants=args.action != "record"
    )
    families = default_families(args.model_store)
    infos = {info.voice_id: (info, f) for f in families for info in f.discover(args.folder)}
    canary = Canary.load(args.references)
    recorded = []
    for voice_id in args.voices:
        info, family = infos[voice_id]
        voice = family.load(info, engine)
        try:
            if args.action == "record":
                if platform.machine() != "x86_64" or args.backend != ONNXRUNTIME:
                    raise SystemExit("references are recorded on x86-64 with onnxruntime only")
                machine = f"{platform.machine()} onnxruntime {onnxruntime.__version__}"
                recorded.append(record(voice, machine))
                print(f"{voice_id}: {recorded[-1].audible_samples} samples")
                continue
            reference, why = canary.reference_for(info)
            if reference is None:
                print(f"{voice_id}: not checked: {why}")
                continue
            precision = voice.runtime_info().get("precision")
            result = compare(reference, canary_audio(voice), str(precision) if precision else None)
            print(f"{voice_id}: {json.dumps(result.as_dict())} {result.reason}")
        finally:
            voice.close()
    if recorded:
        write_references(args.references, recorded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
