"""The model store: quantized variants of each voice and the manifest that vouches for them.

Layout (one folder per voice, the default root is `~/.local/share/utterd/models`):

    <root>/<voice_id>/manifest.json                  what was made, from what, and how it scored
    <root>/<voice_id>/<voice_id>.int8-ort-qdq.<sha12>.onnx   ONNX Runtime static INT8 (QDQ)
    <root>/<voice_id>/<voice_id>.int8-ov-nncf.<sha12>.xml    OpenVINO INT8 IR made with NNCF (+ .bin)

(`<sha12>`: the start of the file's SHA-256, so a new run's files never overwrite those in force.)
    <root>/openvino-cache/                           OpenVINO's compiled-model cache

The manifest records the source model's hash, so a variant made from another model (a voice
package upgrade) is refused, and every variant file's hash, so a truncated or replaced file is
refused, both with an error naming the file instead of producing wrong speech.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from utterd.models.errors import VoiceLoadError

_LOGGER = logging.getLogger(__name__)

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = 1
OPENVINO_CACHE_NAME: Final = "openvino-cache"
OPTIMIZED_DIR_NAME: Final = "optimized"
"""Folder of graphs as ONNX Runtime optimized them for this CPU (see backend.SessionOptions)."""

FP32_ONNXRUNTIME: Final = "fp32-onnxruntime"
"""Variant name of the source model on ONNX Runtime: the reference every variant is gated against."""
FP32_OPENVINO: Final = "fp32-openvino"
"""Variant name of the source model compiled by OpenVINO with f32 inference precision."""
INT8_ORT_QDQ: Final = "int8-ort-qdq"
"""Variant name of the ONNX Runtime static INT8 model (QDQ format)."""
INT8_OV_NNCF: Final = "int8-ov-nncf"
"""Variant name of the OpenVINO INT8 IR made with NNCF."""

_HASH_CHUNK_BYTES: Final = 1 << 20


def default_model_store_dir() -> Path:
    """`$XDG_DATA_HOME/utterd/models`, or `~/.local/share/utterd/models`."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "utterd" / "models"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (models are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRecord:
    """One file of a variant (or the source), as it was when the manifest was written."""

    name: str
    """File name, relative to the voice's folder in the store (the source: its absolute path)."""

    sha256: str
    """Hex SHA-256 of the file's bytes."""

    size_bytes: int
    """File size; a cheap first check before hashing."""

    mtime_ns: int = 0
    """Modification time when hashed; lets the source be checked without re-hashing 60 MB."""

    @staticmethod
    def of(path: Path, name: str | None = None) -> FileRecord:
        """Hash and stat `path` now."""
        stat = path.stat()
        return FileRecord(
            name=name if name is not None else path.name,
            sha256=file_sha256(path),
            size_bytes=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
        )


@dataclass(frozen=True)
class QualityFigures:
    """How far a variant's speech is from the FP32 source's, on the validation set, noise at 0."""

    logmel_distance_db_mean: float
    """Mean over sentences of the frame-averaged RMS log-mel difference, in dB (0 = identical)."""

    logmel_distance_db_max: float
    """The worst sentence's log-mel distance, in dB."""

    duration_ratio_min: float
    """Smallest per-sentence ratio of the variant's audio length to the source's."""

    duration_ratio_max: float
    """Largest per-sentence ratio of the variant's audio length to the source's."""

    sentences: int
    """Validation sentences compared."""

    wer: float | None = None
    """Word error rate of the variant's speech as heard by Whisper tiny.en; None when not run."""

    wer_fp32: float | None = None
    """Word error rate of the FP32 source's speech on the same text; None when not run."""


@dataclass(frozen=True)
class SpeedFigures:
    """A short speed measurement on this machine at quantize time."""

    rtf: float
    """Median real-time factor: wall seconds of inference / seconds of audio (lower is faster)."""

    fp32_rtf: float
    """The FP32 ONNX Runtime source's median real-time factor in the same interleaved run."""

    threads: int
    """Intra-op threads used for both."""

    @property
    def speedup(self) -> float:
        """How many times faster than FP32 on ONNX Runtime (above 1 is faster)."""
        return self.fp32_rtf / self.rtf if self.rtf > 0 else 0.0


@dataclass(frozen=True)
class Variant:
    """One way to run the voice, with the figures that decide whether it may be used."""

    name: str
    """Variant name: `int8-ort-qdq`, `int8-ov-nncf`, `fp32-openvino`, `fp32-onnxruntime`."""

    backend: str
    """Backend that runs it: `onnxruntime` or `openvino`."""

    precision: str
    """`int8` or `fp32` (the precision of the weights and of most of the arithmetic)."""

    method: str
    """How it was made (quantizer, format, calibration method, which layers)."""

    files: tuple[FileRecord, ...]
    """Its files in the voice's store folder; empty for the FP32 source itself."""

    quality: QualityFigures | None
    """Quality against the FP32 source; None for the source itself."""

    speed: SpeedFigures | None
    """Speed measured at quantize time; None when it was not measured (gate not reached)."""

    passed: bool
    """True when it passed both the quality gate and the speed gate on the quantizing machine."""

    reasons: tuple[str, ...] = ()
    """Why it failed a gate (empty when it passed)."""

    @property
    def model_file(self) -> str | None:
        """The file to open (`.onnx` or `.xml`); None for the source itself."""
        for record in self.files:
            if record.name.endswith((".onnx", ".xml")):
                return record.name
        return None


@dataclass(frozen=True)
class Manifest:
    """What `utterd quantize` made for one voice, from which model, and how each variant scored."""

    voice_id: str
    """The voice the variants belong to."""

    source: FileRecord
    """The FP32 model quantized (absolute path, hash, size, mtime)."""

    created_utc: str
    """When the variants were made, ISO 8601 UTC."""

    calibration: Mapping[str, Any]
    """Calibration set: file name, sentences, hash of its text, sampling settings."""

    validation: Mapping[str, Any]
    """Validation set (held out from calibration) and the gate's thresholds."""

    machine: Mapping[str, Any]
    """CPU model and features, threads and library versions of the quantizing machine."""

    variants: tuple[Variant, ...]
    """Every variant tried, passed or not, the FP32 reference included."""

    format_version: int = MANIFEST_FORMAT
    """Layout version of this file."""

    def variant(self, name: str) -> Variant | None:
        """The variant of that name, if the manifest has one."""
        return next((v for v in self.variants if v.name == name), None)

    def to_json(self) -> str:
        """The manifest as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @staticmethod
    def from_json(text: str) -> Manifest:
        """Parse a manifest; KeyError/TypeError/ValueError when it is malformed."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("top level is not a JSON object")
        version = int(data.get("format_version", 0))
        if version != MANIFEST_FORMAT:
            raise ValueError(f"format_version {version} is not {MANIFEST_FORMAT}")
        return Manifest(
            voice_id=str(data["voice_id"]),
            source=FileRecord(**data["source"]),
            created_utc=str(data["created_utc"]),
            calibration=dict(data["calibration"]),
            validation=dict(data["validation"]),
            machine=dict(data["machine"]),
            variants=tuple(_variant_from_dict(v) for v in data["variants"]),
            format_version=version,
        )


def _variant_from_dict(data: Mapping[str, Any]) -> Variant:
    quality = data.get("quality")
    speed = data.get("speed")
    return Variant(
        name=str(data["name"]),
        backend=str(data["backend"]),
        precision=str(data["precision"]),
        method=str(data["method"]),
        files=tuple(FileRecord(**f) for f in data["files"]),
        quality=QualityFigures(**quality) if quality is not None else None,
        speed=SpeedFigures(**speed) if speed is not None else None,
        passed=bool(data["passed"]),
        reasons=tuple(str(r) for r in data.get("reasons", ())),
    )


@dataclass(frozen=True)
class ModelStore:
    """A folder of quantized variants, one subfolder per voice."""

    root: Path = field(default_factory=default_model_store_dir)
    """The store's folder; created on the first write."""

    @property
    def openvino_cache_dir(self) -> Path:
        """OpenVINO's compiled-model cache (shared by every voice: entries are keyed by hash)."""
        return self.root / OPENVINO_CACHE_NAME

    @property
    def optimized_dir(self) -> Path:
        """Graphs as ONNX Runtime optimized them for this CPU and runtime version."""
        return self.root / OPTIMIZED_DIR_NAME

    def voice_dir(self, voice_id: str) -> Path:
        """The voice's folder. Voice ids are file stems; anything path-like is refused."""
        if not voice_id or voice_id in (".", "..") or "/" in voice_id or "\\" in voice_id:
            raise ValueError(f"voice id {voice_id!r} cannot name a folder")
        return self.root / voice_id

    def manifest_path(self, voice_id: str) -> Path:
        """Where the voice's manifest is (or would be)."""
        return self.voice_dir(voice_id) / MANIFEST_NAME

    def load_manifest(self, voice_id: str) -> Manifest | None:
        """The voice's manifest; None when there is none. VoiceLoadError naming it if unreadable."""
        path = self.manifest_path(voice_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise VoiceLoadError(f"cannot read manifest {path}: {err}") from err
        try:
            manifest = Manifest.from_json(text)
        except (KeyError, TypeError, ValueError) as err:
            raise VoiceLoadError(
                f"manifest {path} is malformed ({err!r}); run `utterd quantize {voice_id}` again"
            ) from err
        if manifest.voice_id != voice_id:
            raise VoiceLoadError(
                f"manifest {path} is for voice {manifest.voice_id!r}, not {voice_id!r}"
            )
        return manifest

    def write_manifest(self, manifest: Manifest) -> Path:
        """Write atomically (temp file, fsync, rename): a reader never sees half a manifest."""
        path = self.manifest_path(manifest.voice_id)
        write_atomic(path, manifest.to_json().encode("utf-8"))
        _LOGGER.info("manifest_written voice=%s path=%s", manifest.voice_id, path)
        return path

    def variant_path(self, voice_id: str, file_name: str) -> Path:
        """A variant file's path in the voice's folder."""
        if "/" in file_name or "\\" in file_name or file_name in ("", ".", ".."):
            raise VoiceLoadError(f"manifest names an unsafe file {file_name!r}")
        return self.voice_dir(voice_id) / file_name


STREAMING_BACKENDS: Final = ("onnxruntime",)
"""Backends whose variants stream below the sentence (the split runner); `auto` picks among
these only: a variant that makes a listener wait for whole sentences is not the best one, however
fast its throughput (OpenVINO runs whole sentences: docs/quantization.md)."""


def best_variant(manifest: Manifest, backend: str) -> Variant | None:
    """The fastest variant that passed both gates, for `backend` (`auto`: the fastest on a
    backend that streams below the sentence, STREAMING_BACKENDS).

    Speeds are the ones measured at quantize time on the quantizing machine, in one interleaved
    run, so they compare with each other. None when no variant passed.
    """
    allowed = STREAMING_BACKENDS if backend == "auto" else (backend,)
    candidates = [
        v for v in manifest.variants if v.passed and v.speed is not None and v.backend in allowed
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda v: v.speed.rtf if v.speed is not None else float("inf"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def verify_source(manifest: Manifest, model_path: Path, manifest_path: Path) -> None:
    """Raise VoiceLoadError when `model_path` is not the model the manifest's variants came from.

    Same size and mtime as recorded: trusted without hashing (hashing 60 MB costs ~0.25 s of the
    0.5 s cold-start budget). Otherwise the file is hashed: a touched but identical file passes.
    """
    recorded = manifest.source
    try:
        stat = model_path.stat()
    except OSError as err:
        raise VoiceLoadError(f"cannot read model {model_path}: {err}") from err
    if stat.st_size == recorded.size_bytes and stat.st_mtime_ns == recorded.mtime_ns:
        return
    if stat.st_size == recorded.size_bytes and file_sha256(model_path) == recorded.sha256:
        return
    raise VoiceLoadError(
        f"manifest {manifest_path} was made from another model than {model_path} "
        f"(recorded sha256 {recorded.sha256[:12]}…, size {recorded.size_bytes}); "
        f"run `utterd quantize {manifest.voice_id}` again"
    )


def verify_files(records: Sequence[FileRecord], folder: Path, manifest_path: Path) -> None:
    """Raise VoiceLoadError naming the first variant file that is missing or differs from its hash.

    Always hashed (unlike the source): these are the bytes that will run, and a truncated or
    swapped INT8 file would otherwise speak garbage rather than fail.
    """
    for record in records:
        path = folder / record.name
        try:
            size = path.stat().st_size
        except OSError as err:
            raise VoiceLoadError(
                f"model file {path} listed in {manifest_path} is unreadable: {err}"
            ) from err
        if size != record.size_bytes:
            raise VoiceLoadError(
                f"model file {path} is {size} bytes but manifest {manifest_path} records "
                f"{record.size_bytes} (truncated or replaced); run `utterd quantize` again"
            )
        if file_sha256(path) != record.sha256:
            raise VoiceLoadError(
                f"model file {path} does not match the sha256 in manifest {manifest_path} "
                f"(corrupt or replaced); run `utterd quantize` again"
            )
