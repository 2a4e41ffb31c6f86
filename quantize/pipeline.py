"""`utterd quantize VOICE`: make INT8 variants, gate them on this machine, write the manifest.

1. Calibration feeds: the calibration text, phonemized like at synthesis time, each sentence
   once noise-free and once with the voice's default noise (requests use both).
2. Variants: ONNX Runtime static INT8 (QDQ) and OpenVINO INT8 (NNCF), each with its backend's
   layer scope (`scope.DEFAULT_SCOPES`) unless one scope is asked for.
3. Quality gate on the held-out validation text, noise scales at 0, against the FP32 source on
   ONNX Runtime: log-mel distance and duration ratio (and, on request, Whisper's WER). The FP32
   source compiled by OpenVINO is gated too: its precision is checked, never assumed.
4. Speed gate: every candidate and the FP32 reference timed in the same interleaved rounds; a
   variant slower than FP32 is not used.
5. Variants are made and gated in a staging folder in the voice's folder, then moved in under
   names carrying their hash (never over the files in force); the manifest is written last
   (atomically), and only then are the old manifest's files deleted. A run killed at any point
   leaves the voice as it was; a reader never pairs a manifest with other files.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import (
    ONNXRUNTIME,
    OPENVINO,
    Session,
    SessionOptions,
    intra_op_threads,
    open_session,
)
from utterd.models.engine.cpu_features import cpu_features
from utterd.models.errors import SynthesisError, UtterdError, VoiceLoadError
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    FP32_OPENVINO,
    INT8_ORT_QDQ,
    INT8_OV_NNCF,
    FileRecord,
    Manifest,
    ModelStore,
    QualityFigures,
    SpeedFigures,
    Variant,
    best_variant,
)
from utterd.models.piper.family import (
    LENGTH_BUCKETS,
    PADDED_INPUTS,
    PiperSettings,
    PiperVitsVoice,
    config_path_for,
    read_config,
)
from utterd.models.voice import EngineSettings, VoiceInfo
from utterd.quantize.ort_int8 import quantize_onnxruntime
from utterd.quantize.ov_int8 import quantize_openvino
from utterd.quantize.progress import LogProgress, Progress
from utterd.quantize.quality import QualityThresholds, SentenceScore, gate_reasons, score_sentence
from utterd.quantize.scope import DEFAULT_SCOPES, QuantScope, scope_named
from utterd.quantize.texts import (
    CALIBRATION_FILE,
    INTELLIGIBILITY_FILE,
    VALIDATION_FILE,
    TextSet,
    read_text_set,
)

_LOGGER = logging.getLogger(__name__)

BACKENDS: Final = (ONNXRUNTIME, OPENVINO)
Feeds = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class QuantizeOptions:
    """How `quantize_voice` works; the defaults are what `utterd quantize VOICE` does."""

    calibration: str | Path = CALIBRATION_FILE
    """Calibration text: a shipped set's file name or a path to a file of one utterance a line."""

    calibration_sentences: int | None = None
    """Use only the first N calibration lines (CI uses a handful); None: all of them."""

    validation: str | Path = VALIDATION_FILE
    """Held-out validation text for the quality gate (and the speed measurement)."""

    validation_sentences: int | None = None
    """Use only the first N validation lines; None: all of them."""

    scope: str | None = None
    """Layers quantized statically (see `scope.SCOPES`), for every backend; the others get INT8
    weights only. None: each backend's measured default (`scope.DEFAULT_SCOPES`)."""

    def scope_for(self, backend: str) -> QuantScope:
        """The scope a backend's variant is made with."""
        return scope_named(self.scope if self.scope is not None else DEFAULT_SCOPES[backend])

    backends: tuple[str, ...] = BACKENDS
    """Backends to make variants for: `onnxruntime`, `openvino` or both."""

    threads: int = 0
    """Intra-op threads for calibration, gates and timing; 0: one per physical core."""

    speed_rounds: int = 3
    """Interleaved timing rounds over the validation text; the median round counts."""

    wer: bool = False
    """Also gate on Whisper tiny.en's word error rate (needs `utterd[eval]`)."""

    wer_text: str | Path = INTELLIGIBILITY_FILE
    """Text the word error rates are measured on: larger than the validation text (about 580
    words), so that the 1-point criterion is more than one or two misheard words."""

    wer_sentences: int | None = None
    """Use only the first N lines of `wer_text`; None: all of them."""

    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    """Quality gate limits."""


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_voice` did."""

    manifest: Manifest
    """The manifest written."""

    manifest_path: Path
    """Where it was written."""

    chosen: dict[str, str]
    """Variant a voice would run with for `auto`, `onnxruntime` and `openvino`."""

    wall_s: float
    """How long the whole command took."""


@dataclass
class _Candidate:
    """A variant being gated."""

    name: str
    backend: str
    precision: str
    method: str
    session: Session | None
    files: tuple[FileRecord, ...] = ()
    reasons: list[str] = field(default_factory=list)
    quality: QualityFigures | None = None
    rtfs: list[float] = field(default_factory=list)


def quantize_voice(
    info: VoiceInfo,
    store: ModelStore,
    options: QuantizeOptions | None = None,
    progress: Progress | None = None,
) -> QuantizeReport:
    """Make, gate and record INT8 variants of a Piper voice (see the module docstring).

    Raises VoiceLoadError when the voice itself cannot be loaded, ValueError for bad options.
    A variant that cannot be made or fails a gate is recorded as failed with its reason.
    """
    options = options or QuantizeOptions()
    progress = progress or LogProgress()
    started = time.perf_counter()
    if info.family != "piper" or info.model_path is None:
        raise VoiceLoadError(f"voice {info.voice_id!r} is not a Piper voice: only those quantize")
    unknown = [b for b in options.backends if b not in BACKENDS]
    if unknown or not options.backends:
        raise ValueError(f"backends must be among {BACKENDS}, got {options.backends}")
    if options.speed_rounds < 1:
        raise ValueError(f"speed_rounds must be at least 1, got {options.speed_rounds}")
    scopes = {backend: options.scope_for(backend) for backend in options.backends}
    calibration = read_text_set(options.calibration, options.calibration_sentences)
    validation = read_text_set(options.validation, options.validation_sentences)
    # Read now, so that a wrong path fails before minutes of calibration, not after.
    wer_text = read_text_set(options.wer_text, options.wer_sentences) if options.wer else None
    source = info.model_path
    engine = EngineSettings(backend=ONNXRUNTIME, threads=options.threads)

    config_path = config_path_for(source)
    settings = PiperSettings.from_config(read_config(config_path), config_path)
    voice_dir = store.voice_dir(info.voice_id)
    voice_dir.mkdir(parents=True, exist_ok=True)
    # The variants in force (manifest and files) stay untouched until the new ones are gated
    # and in place: a run that is killed or fails leaves the voice as it was.
    _drop_stale_staging(voice_dir)
    reference = PiperVitsVoice(info, settings, open_session(source, engine, label=info.voice_id))
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=voice_dir))
    try:
        return _quantize_into(
            info,
            store,
            options,
            progress,
            _Inputs(reference, source, scopes, calibration, validation, wer_text, engine),
            staging,
            started,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class _Inputs:
    """What one quantize run works from."""

    reference: PiperVitsVoice
    source: Path
    scopes: dict[str, QuantScope]
    calibration: TextSet
    validation: TextSet
    wer_text: TextSet | None
    engine: EngineSettings


def _quantize_into(
    info: VoiceInfo,
    store: ModelStore,
    options: QuantizeOptions,
    progress: Progress,
    inputs: _Inputs,
    staging: Path,
    started: float,
) -> QuantizeReport:
    """Make and gate the variants in `staging`, then move them in and write the manifest."""
    reference, source, scopes = inputs.reference, inputs.source, inputs.scopes
    calibration, validation, engine = inputs.calibration, inputs.validation, inputs.engine
    threads = intra_op_threads(engine)

    progress.stage("phonemizing", None)
    calibration_feeds = _calibration_feeds(reference, calibration)
    validation_ids = [reference.sentence_ids(line) for line in validation.lines]
    source_record = FileRecord.of(source, name=str(source))

    candidates: list[_Candidate] = [
        _Candidate(FP32_ONNXRUNTIME, ONNXRUNTIME, "fp32", "source model", reference.session)
    ]
    ov_options = SessionOptions(
        cache_dir=store.openvino_cache_dir,
        length_buckets=LENGTH_BUCKETS,
        padded_inputs=PADDED_INPUTS,
    )
    ov_engine = EngineSettings(backend=OPENVINO, threads=options.threads)
    try:
        if ONNXRUNTIME in options.backends:
            candidates.append(
                _make_ort(
                    info, source, staging, calibration_feeds, scopes[ONNXRUNTIME], engine, progress
                )
            )
        if OPENVINO in options.backends:
            candidates.append(
                _open_candidate(
                    FP32_OPENVINO,
                    OPENVINO,
                    "fp32",
                    "source model compiled by OpenVINO, INFERENCE_PRECISION_HINT f32",
                    (),
                    lambda: open_session(
                        source, ov_engine, label=info.voice_id, options=ov_options
                    ),
                )
            )
            candidates.append(
                _make_ov(
                    info,
                    source,
                    staging,
                    calibration_feeds,
                    scopes[OPENVINO],
                    ov_engine,
                    ov_options,
                    progress,
                )
            )

        _quality_gate(reference, candidates, validation_ids, options.thresholds, progress)
        wer_info = _wer_gate(reference, candidates, inputs.wer_text, options, threads, progress)
        fp32_rtf = _speed_gate(
            reference, candidates, validation_ids, options.speed_rounds, progress
        )
    finally:
        progress.close()
        for candidate in candidates:
            if candidate.session is not None and candidate.name != FP32_ONNXRUNTIME:
                candidate.session.close()
        reference.close()

    previous = _previous_files(store, info.voice_id)
    for candidate in candidates:
        candidate.files = _move_in(candidate.files, staging, store.voice_dir(info.voice_id))
    variants = tuple(_variant(c, fp32_rtf, threads) for c in candidates)
    manifest = Manifest(
        voice_id=info.voice_id,
        source=source_record,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        calibration={
            **calibration.record(),
            "samples": len(calibration_feeds),
            "noise": "each sentence noise-free and with the voice's default noise scales",
        },
        validation={
            **validation.record(),
            "noise": "noise scales 0 (deterministic) for FP32 and variants",
            "thresholds": asdict(options.thresholds),
            "wer": wer_info,
            "speed_rounds": options.speed_rounds,
        },
        machine={
            "cpu": cpu_features().as_dict(),
            "threads": threads,
            "versions": _versions(),
        },
        variants=variants,
    )
    manifest_path = store.write_manifest(manifest)
    # Only now are the previous variants' files unused.
    kept = {f.name for v in variants for f in v.files}
    for name in sorted(previous - kept):
        store.variant_path(info.voice_id, name).unlink(missing_ok=True)
    chosen = {}
    for backend in ("auto", *BACKENDS):
        best = best_variant(manifest, backend)
        chosen[backend] = best.name if best is not None else f"fp32 ({backend}: none passed)"
    return QuantizeReport(manifest, manifest_path, chosen, time.perf_counter() - started)


_STAGING_PREFIX: Final = ".quantize-"


def _drop_stale_staging(voice_dir: Path) -> None:
    """Remove staging folders left by runs that were killed (their process is gone)."""
    for folder in voice_dir.glob(f"{_STAGING_PREFIX}*"):
        try:
            pid = int(folder.name[len(_STAGING_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            _LOGGER.info("quantize_staging_dropped folder=%s", folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _previous_files(store: ModelStore, voice_id: str) -> set[str]:
    """File names the manifest in force lists (none when it is missing or unreadable)."""
    try:
        manifest = store.load_manifest(voice_id)
    except UtterdError:
        return set()
    return {f.name for v in manifest.variants for f in v.files} if manifest else set()


def _move_in(
    files: tuple[FileRecord, ...], staging: Path, voice_dir: Path
) -> tuple[FileRecord, ...]:
    """Move a gated variant's files from `staging` into the voice's folder under names that
    carry the first file's hash (`NAME.VARIANT.<sha12>.onnx`; an OpenVINO .xml and its .bin
    share one stem, as OpenVINO expects), so they never overwrite the files of the variants in
    force. Same bytes, same mtime: the records stay true but for the names."""
    if not files:
        return files
    tag = files[0].sha256[:12]
    moved = []
    for record in files:
        stem, suffix = os.path.splitext(record.name)
        name = f"{stem}.{tag}{suffix}"
        os.replace(staging / record.name, voice_dir / name)
        moved.append(FileRecord(name, record.sha256, record.size_bytes, record.mtime_ns))
    return tuple(moved)


def _calibration_feeds(voice: PiperVitsVoice, calibration: TextSet) -> list[Feeds]:
    settings = voice.settings
    noisy = np.array(
        [settings.noise_scale, settings.length_scale, settings.noise_w], dtype=np.float32
    )
    clean = np.array([0.0, settings.length_scale, 0.0], dtype=np.float32)
    return [
        voice.feeds(ids, scales)
        for line in calibration.lines
        for ids in voice.sentence_ids(line)
        for scales in (clean, noisy)
    ]


def _open_candidate(
    name: str,
    backend: str,
    precision: str,
    method: str,
    files: tuple[FileRecord, ...],
    opener: Callable[[], Session],
) -> _Candidate:
    try:
        session: Session | None = opener()
        reasons: list[str] = []
    except UtterdError as err:
        session, reasons = None, [f"cannot be loaded: {err.message}"]
    return _Candidate(name, backend, precision, method, session, files, reasons)


def _make_ort(
    info: VoiceInfo,
    source: Path,
    voice_dir: Path,
    calibration: Sequence[Feeds],
    scope: QuantScope,
    engine: EngineSettings,
    progress: Progress,
) -> _Candidate:
    output = voice_dir / f"{info.voice_id}.{INT8_ORT_QDQ}.onnx"
    progress.stage("onnxruntime INT8 calibration", len(calibration))
    try:
        result = quantize_onnxruntime(source, output, calibration, scope, tick=progress.advance)
    except Exception as err:  # the quantizer raises anything; record it, keep the other variants
        _LOGGER.exception("ort_quantize_failed voice=%s", info.voice_id)
        return _Candidate(
            INT8_ORT_QDQ,
            ONNXRUNTIME,
            "int8",
            "onnxruntime static INT8",
            None,
            reasons=[f"quantization failed: {err}"],
        )
    files = (FileRecord.of(output),)
    return _open_candidate(
        INT8_ORT_QDQ,
        ONNXRUNTIME,
        "int8",
        result.method,
        files,
        lambda: open_session(output, engine, label=info.voice_id),
    )


def _make_ov(
    info: VoiceInfo,
    source: Path,
    voice_dir: Path,
    calibration: Sequence[Feeds],
    scope: QuantScope,
    engine: EngineSettings,
    options: SessionOptions,
    progress: Progress,
) -> _Candidate:
    xml = voice_dir / f"{info.voice_id}.{INT8_OV_NNCF}.xml"
    progress.stage("openvino INT8 calibration (NNCF)", len(calibration))
    try:
        result = quantize_openvino(source, xml, calibration, scope, tick=progress.advance)
    except Exception as err:  # NNCF raises anything; record it, keep the other variants
        _LOGGER.exception("ov_quantize_failed voice=%s", info.voice_id)
        return _Candidate(
            INT8_OV_NNCF,
            OPENVINO,
            "int8",
            "NNCF INT8",
            None,
            reasons=[f"quantization failed: {err}"],
        )
    files = (FileRecord.of(result.xml_path), FileRecord.of(result.bin_path))
    return _open_candidate(
        INT8_OV_NNCF,
        OPENVINO,
        "int8",
        result.method,
        files,
        lambda: open_session(result.xml_path, engine, label=info.voice_id, options=options),
    )


def _synthesize(
    voice: PiperVitsVoice, session: Session, ids: Sequence[int]
) -> npt.NDArray[np.float32]:
    scales = np.array([0.0, voice.settings.length_scale, 0.0], dtype=np.float32)
    output = session.run(None, voice.feeds(ids, scales))[0]
    return np.asarray(output, dtype=np.float32).reshape(-1)


def _quality_gate(
    voice: PiperVitsVoice,
    candidates: Sequence[_Candidate],
    validation_ids: Sequence[Sequence[Sequence[int]]],
    thresholds: QualityThresholds,
    progress: Progress,
) -> None:
    """Score every candidate against the FP32 reference (reasons added to those that fail)."""
    assert voice.session is not None
    sentences = [ids for line in validation_ids for ids in line]
    gated = [c for c in candidates if c.session is not None and c.name != FP32_ONNXRUNTIME]
    progress.stage("quality gate", len(sentences) * (1 + len(gated)))
    reference: list[npt.NDArray[np.float32]] = []
    for ids in sentences:
        reference.append(_synthesize(voice, voice.session, ids))
        progress.advance()
    for candidate in gated:
        assert candidate.session is not None
        scores: list[SentenceScore] = []
        try:
            for ids, ref in zip(sentences, reference, strict=True):
                scores.append(
                    score_sentence(
                        ref, _synthesize(voice, candidate.session, ids), voice.info.sample_rate_hz
                    )
                )
                progress.advance()
        except SynthesisError as err:
            candidate.reasons.append(f"failed on a validation sentence: {err.message}")
            continue
        distances = [s.logmel_distance_db for s in scores]
        ratios = [s.duration_ratio for s in scores]
        candidate.quality = QualityFigures(
            logmel_distance_db_mean=float(np.mean(distances)),
            logmel_distance_db_max=float(max(distances)),
            duration_ratio_min=float(min(ratios)),
            duration_ratio_max=float(max(ratios)),
            sentences=len(scores),
        )
        candidate.reasons.extend(gate_reasons(scores, thresholds))
        _LOGGER.info(
            "quality_gate variant=%s logmel_db_mean=%.2f logmel_db_max=%.2f "
            "duration_ratio=%.3f..%.3f reasons=%s",
            candidate.name,
            candidate.quality.logmel_distance_db_mean,
            candidate.quality.logmel_distance_db_max,
            candidate.quality.duration_ratio_min,
            candidate.quality.duration_ratio_max,
            candidate.reasons,
        )


def _wer_gate(
    voice: PiperVitsVoice,
    candidates: Sequence[_Candidate],
    text: TextSet | None,
    options: QuantizeOptions,
    threads: int,
    progress: Progress,
) -> dict[str, Any]:
    """Whisper WER of FP32 and every still-passing candidate on `text` (the intelligibility
    text, its own larger set; None: not asked for), noise scales 0; adds failures to the
    candidates' reasons."""
    if text is None:
        return {"run": False}
    from utterd.quantize.intelligibility import IntelligibilityUnavailable, WerJudge

    try:
        judge = WerJudge(threads)
    except IntelligibilityUnavailable as err:
        _LOGGER.warning("wer_unavailable reason=%s", err)
        return {"run": False, "unavailable": str(err)}
    rate = voice.info.sample_rate_hz
    gated = [c for c in candidates if c.session is not None and not c.reasons and c.quality]
    progress.stage("intelligibility (Whisper tiny.en)", len(text.lines) * (1 + len(gated)))
    text_ids = [voice.sentence_ids(line) for line in text.lines]

    def heard_by_line(session: Session) -> list[str]:
        heard = []
        for line in text_ids:
            pieces = [_synthesize(voice, session, ids) for ids in line]
            audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            heard.append(judge.transcribe(audio, rate))
            progress.advance()
        return heard

    reference = voice.session
    assert reference is not None
    fp32_wer = judge.corpus_wer(text.lines, heard_by_line(reference))
    figures: dict[str, Any] = {
        "run": True,
        "model": str(judge.model_path),
        "text": {
            **text.record(),
            "words": sum(len(line.split()) for line in text.lines),
        },
        "fp32_wer": fp32_wer,
    }
    for candidate in gated:
        assert candidate.session is not None and candidate.quality is not None
        wer = judge.corpus_wer(text.lines, heard_by_line(candidate.session))
        candidate.quality = QualityFigures(
            **{**asdict(candidate.quality), "wer": wer, "wer_fp32": fp32_wer}
        )
        candidate.reasons.extend(
            r for r in gate_reasons([SentenceScore(0.0, 1.0)], options.thresholds, wer, fp32_wer)
        )
        figures[candidate.name] = wer
    return figures


def _speed_gate(
    voice: PiperVitsVoice,
    candidates: Sequence[_Candidate],
    validation_ids: Sequence[Sequence[Sequence[int]]],
    rounds: int,
    progress: Progress,
) -> float:
    """Time every loaded candidate in interleaved rounds; returns the FP32 reference's RTF."""
    sentences = [ids for line in validation_ids for ids in line]
    timed = [c for c in candidates if c.session is not None and not c.reasons]
    progress.stage("speed", rounds * len(timed))
    for candidate in timed:  # one untimed pass: first-shape compilation is not speed
        assert candidate.session is not None
        _synthesize(voice, candidate.session, sentences[0])
    for round_index in range(rounds):
        # Rotate the order each round so machine noise spreads over every candidate.
        shift = round_index % len(timed)
        for candidate in timed[shift:] + timed[:shift]:
            assert candidate.session is not None
            audio_s = 0.0
            started = time.perf_counter()
            for ids in sentences:
                audio_s += (
                    len(_synthesize(voice, candidate.session, ids)) / voice.info.sample_rate_hz
                )
            candidate.rtfs.append((time.perf_counter() - started) / max(audio_s, 1e-9))
            progress.advance()
    fp32 = next(c for c in candidates if c.name == FP32_ONNXRUNTIME)
    fp32_rtf = statistics.median(fp32.rtfs)
    for candidate in timed:
        if candidate is not fp32 and statistics.median(candidate.rtfs) > fp32_rtf:
            candidate.reasons.append(
                f"slower than FP32 on this machine: rtf {statistics.median(candidate.rtfs):.4f} "
                f"> {fp32_rtf:.4f}"
            )
    return fp32_rtf


def _variant(candidate: _Candidate, fp32_rtf: float, threads: int) -> Variant:
    speed = (
        SpeedFigures(rtf=statistics.median(candidate.rtfs), fp32_rtf=fp32_rtf, threads=threads)
        if candidate.rtfs
        else None
    )
    return Variant(
        name=candidate.name,
        backend=candidate.backend,
        precision=candidate.precision,
        method=candidate.method,
        files=candidate.files,
        quality=candidate.quality,
        speed=speed,
        passed=not candidate.reasons and speed is not None,
        reasons=tuple(candidate.reasons),
    )


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("utterd", "onnxruntime", "openvino", "nncf", "onnx", "piper-tts"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
