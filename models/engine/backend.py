"""Inference backends: which backend opens a model, behind one small `Session` interface.

Families never touch onnxruntime or openvino directly; they call `open_session`, so thread
settings, graph optimization, precision and error wording are the same for every voice. The
parts: `session` (the interface and options), `ort_session` (ONNX Runtime), `openvino_session`
(OpenVINO), `fallback` (OpenVINO failing over to ONNX Runtime per request), `threads`. This
module keeps the registry and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path

from utterd.models.engine.fallback import FallbackSession
from utterd.models.engine.openvino_session import (
    OPENVINO_SHAPE_CACHE,
    OpenVinoSession,
    bucket_length,
    open_openvino,
    openvino_config,
)
from utterd.models.engine.ort_session import OnnxRuntimeSession, open_onnxruntime
from utterd.models.engine.session import (
    AUTO,
    ONNXRUNTIME,
    OPENVINO,
    Feeds,
    PaddedInput,
    Session,
    SessionFactory,
    SessionOptions,
)
from utterd.models.engine.threads import intra_op_threads, physical_core_count
from utterd.models.errors import VoiceLoadError
from utterd.models.voice import EngineSettings

__all__ = [
    "AUTO",
    "ONNXRUNTIME",
    "OPENVINO",
    "OPENVINO_SHAPE_CACHE",
    "FallbackSession",
    "Feeds",
    "OnnxRuntimeSession",
    "OpenVinoSession",
    "PaddedInput",
    "Session",
    "SessionFactory",
    "SessionOptions",
    "available_backends",
    "bucket_length",
    "intra_op_threads",
    "open_session",
    "openvino_config",
    "physical_core_count",
    "register_backend",
]


_BACKENDS: dict[str, SessionFactory] = {ONNXRUNTIME: open_onnxruntime, OPENVINO: open_openvino}


def register_backend(name: str, factory: SessionFactory) -> None:
    """Make a backend available to `open_session` under `name` (replaces one of that name)."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    """Names `EngineSettings.backend` may take."""
    return sorted(_BACKENDS)


def open_session(
    model: Path | bytes,
    engine: EngineSettings,
    *,
    label: str,
    options: SessionOptions | None = None,
) -> Session:
    """Load `model` (a file, or its bytes) with the backend `engine` names.

    `auto` opens with ONNX Runtime (variant choice is the family's business, before this call).
    Raises VoiceLoadError naming the backend when it is unknown, or naming the file and the
    underlying reason when the model is missing, truncated or not a valid graph.
    """
    if engine.backend == AUTO:
        # Families that keep no measured variants have nothing to choose from: `auto`
        # means the reference backend for them.
        engine = EngineSettings(backend=ONNXRUNTIME, threads=engine.threads)
    factory = _BACKENDS.get(engine.backend)
    if factory is None:
        raise VoiceLoadError(
            f"unknown inference backend {engine.backend!r} for {label}; "
            f"available: {', '.join(available_backends())}"
        )
    if isinstance(model, Path):
        if not model.is_file():
            raise VoiceLoadError(f"cannot load model {model}: no such file")
    elif not model:
        raise VoiceLoadError(f"cannot load model {label}: the model bytes are empty")
    return factory(model, engine, label, options or SessionOptions())
