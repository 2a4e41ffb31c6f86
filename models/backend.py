"""Inference backends: one small `Session` interface over the engines that run ONNX graphs.

Families never touch onnxruntime directly; they call `open_session`, so thread settings, graph
optimization and error wording are the same for every voice, and an OpenVINO backend (the INT8
work) can be registered beside ONNX Runtime without changing a family.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt

from .errors import SynthesisError, VoiceLoadError
from .voice import EngineSettings

_LOGGER = logging.getLogger(__name__)

ONNXRUNTIME: Final = "onnxruntime"

Feeds = Mapping[str, npt.NDArray[Any]]
SessionFactory = Callable[[Path | bytes, EngineSettings, str], "Session"]
"""Opens a model (a file or its bytes) with the given settings; the str is the session's label."""


class Session(ABC):
    """A loaded model graph. `run` is safe to call from several threads at once."""

    backend: str
    """Name of the backend that runs the graph (`onnxruntime`, ...)."""

    label: str
    """What this session is for (voice id, model file): used in logs and error messages."""

    @property
    @abstractmethod
    def input_names(self) -> tuple[str, ...]:
        """The graph's input names, in graph order."""

    @property
    @abstractmethod
    def output_names(self) -> tuple[str, ...]:
        """The graph's output names, in graph order."""

    @abstractmethod
    def run(self, output_names: Sequence[str] | None, feeds: Feeds) -> list[npt.NDArray[Any]]:
        """Run the graph; None means every output. Raises SynthesisError naming the label."""

    def close(self) -> None:
        """Release the graph's memory. The default does nothing."""


class OnnxRuntimeSession(Session):
    """An `onnxruntime.InferenceSession` on the CPU execution provider."""

    backend = ONNXRUNTIME

    def __init__(self, session: Any, label: str) -> None:
        self._session = session
        self.label = label
        self._input_names = tuple(i.name for i in session.get_inputs())
        self._output_names = tuple(o.name for o in session.get_outputs())

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    def run(self, output_names: Sequence[str] | None, feeds: Feeds) -> list[npt.NDArray[Any]]:
        session = self._session
        if session is None:
            raise SynthesisError(f"{self.label}: the model was closed")
        try:
            outputs: list[npt.NDArray[Any]] = session.run(
                None if output_names is None else list(output_names), dict(feeds)
            )
        except Exception as err:  # ORT raises its own pybind exception types, not a common base
            raise SynthesisError(f"{self.label}: inference failed: {err}") from err
        return outputs

    def close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxRuntimeSession(label={self.label!r}, inputs={self._input_names})"


def physical_core_count() -> int:
    """Physical cores this process may run on; hyper-threads share a core's FPU, so they don't count.

    Reads Linux sysfs topology; elsewhere (or when it is unreadable) falls back to os.cpu_count().
    """
    try:
        cpus: Sequence[int] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = range(os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        for cpu in cpus:
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
            cores.add((package, core))
    except OSError:
        return max(1, len(cpus))
    return max(1, len(cores))


def intra_op_threads(engine: EngineSettings) -> int:
    """Intra-op thread count for `engine`: its `threads`, or one per physical core when 0."""
    if engine.threads < 0:
        raise VoiceLoadError(f"engine threads must be >= 0, got {engine.threads}")
    return engine.threads or physical_core_count()


def _describe(model: Path | bytes, label: str) -> str:
    return (
        str(model) if isinstance(model, Path) else f"{label} (in-memory model, {len(model)} bytes)"
    )


def _open_onnxruntime(model: Path | bytes, engine: EngineSettings, label: str) -> Session:
    import onnxruntime as ort  # lazy: importing utterd.models must stay cheap

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(engine)
    # One graph per request runs at a time per worker; parallelism lives inside the operators.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT reports corrupt/truncated graphs with several pybind types
        raise VoiceLoadError(
            f"cannot load model {_describe(model, label)}: {str(err).strip()}"
        ) from err
    _LOGGER.debug(
        "session_open label=%s backend=%s intra_op_threads=%d",
        label,
        ONNXRUNTIME,
        options.intra_op_num_threads,
    )
    return OnnxRuntimeSession(session, label)


_BACKENDS: dict[str, SessionFactory] = {ONNXRUNTIME: _open_onnxruntime}


def register_backend(name: str, factory: SessionFactory) -> None:
    """Make a backend available to `open_session` under `name` (replaces one of that name)."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    """Names `EngineSettings.backend` may take."""
    return sorted(_BACKENDS)


def open_session(model: Path | bytes, engine: EngineSettings, *, label: str) -> Session:
    """Load `model` (a file, or its bytes) with the backend `engine` names.

    Raises VoiceLoadError naming the backend when it is unknown, or naming the file and the
    underlying reason when the model is missing, truncated or not a valid graph.
    """
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
    return factory(model, engine, label)
