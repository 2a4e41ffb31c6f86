"""ONNX Runtime sessions on the CPU execution provider.

Worker threads do not spin, all sessions of the process share one CPU memory arena, and a
model given as a file can keep its graph as optimized for this CPU and runtime version, so a
restart skips the optimizer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt
from utterd.models.engine.session import (
    ONNXRUNTIME,
    Feeds,
    Session,
    SessionOptions,
    describe_model,
)
from utterd.models.engine.threads import intra_op_threads
from utterd.models.errors import Cancelled, SynthesisError, VoiceLoadError
from utterd.models.voice import CancelToken, EngineSettings

__all__ = ["OnnxRuntimeSession", "open_onnxruntime"]

_LOGGER = logging.getLogger(__name__)


class OnnxRuntimeSession(Session):
    """An `onnxruntime.InferenceSession` on the CPU execution provider."""

    backend = ONNXRUNTIME

    def __init__(self, session: Any, label: str, threads: int = 0) -> None:
        self._session = session
        self.label = label
        self._threads = threads
        self._input_names = tuple(i.name for i in session.get_inputs())
        self._output_names = tuple(o.name for o in session.get_outputs())

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    def run(
        self,
        output_names: Sequence[str] | None,
        feeds: Feeds,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        session = self._session
        if session is None:
            raise SynthesisError(f"{self.label}: the model was closed")
        names = None if output_names is None else list(output_names)
        try:
            if cancel is None:
                outputs: list[npt.NDArray[Any]] = session.run(names, dict(feeds))
                return outputs
            # A stop aborts the run in progress (RunOptions.terminate), so it never waits for
            # a long piece's model call to end.
            import onnxruntime as ort

            options = ort.RunOptions()
            with cancel.interrupting(lambda: setattr(options, "terminate", True)):
                outputs = session.run(names, dict(feeds), options)
            cancel.raise_if_cancelled()
            return outputs
        except Cancelled:
            raise
        except Exception as err:  # ORT raises its own pybind exception types, not a common base
            if cancel is not None and cancel.cancelled:
                raise Cancelled(cancel.reason or "cancelled") from err
            raise SynthesisError(f"{self.label}: inference failed: {err}") from err

    def close(self) -> None:
        self._session = None

    def runtime_info(self) -> dict[str, Any]:
        return {"backend": self.backend, "threads": self._threads}

    def __repr__(self) -> str:
        return f"OnnxRuntimeSession(label={self.label!r}, inputs={self._input_names})"


_SHARED_ARENA_LOCK = threading.Lock()
_shared_arena: bool | None = None
"""Whether the process-wide CPU arena is registered (None: not tried yet)."""


def _share_cpu_arena(ort: Any) -> bool:
    """Register one CPU memory arena for every ONNX Runtime session of the process (once).

    Each session otherwise keeps its own arena at its own peak: a split voice has two (encoder,
    decoder), a daemon several voices and pre-warm instances. Shared, the arena holds what the
    sessions need at once, not the sum of their peaks. Measured with bench_int8 (joe, 2 threads,
    2 repeats, streaming and throughput paths): peak RSS INT8 246 -> 189-194 MiB, FP32 378 ->
    345 MiB, at the same speed. (Extending the arena by exactly what is requested, not the
    default doubling, kept 246 MiB and ran slower.)
    """
    global _shared_arena
    with _SHARED_ARENA_LOCK:
        if _shared_arena is None:
            try:
                info = ort.OrtMemoryInfo(
                    "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
                )
                ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
                _shared_arena = True
            except Exception as err:  # noqa: BLE001  (pybind types; without it: per-session arenas)
                _LOGGER.warning("event=shared-arena-unavailable reason=%s", err)
                _shared_arena = False
        return _shared_arena


def open_onnxruntime(
    model: Path | bytes, engine: EngineSettings, label: str, options: SessionOptions
) -> Session:
    """Open `model` with ONNX Runtime (a `SessionFactory`)."""
    import onnxruntime as ort  # lazy: importing utterd.models must stay cheap

    ort_options = ort.SessionOptions()
    ort_options.intra_op_num_threads = intra_op_threads(engine)
    # One graph per request runs at a time per worker; parallelism lives inside the operators.
    ort_options.inter_op_num_threads = 1
    ort_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    ort_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort_options.log_severity_level = 3
    # Idle worker threads would spin after each run and hold the cores the next session needs
    # (encoder then windowed decoder, several voices): measured, the first streamed window took
    # p50 83 ms with spinning and 34 ms without, and whole-graph runs were no slower.
    ort_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ort_options.enable_mem_reuse = options.memory_reuse
    if not options.memory_arena:
        ort_options.enable_cpu_mem_arena = False
    elif _share_cpu_arena(ort):
        ort_options.add_session_config_entry("session.use_env_allocators", "1")
    if options.cpu_pinning:
        _pin_onnxruntime_threads(ort_options, ort_options.intra_op_num_threads)
    cached = (
        _optimized_path(model, options.optimized_cache_dir, ort.__version__)
        if isinstance(model, Path) and options.optimized_cache_dir is not None
        else None
    )
    session = _open_optimized(ort, cached, ort_options, label) if cached is not None else None
    if session is None:
        session = _open_and_optimize(ort, model, cached, ort_options, label)
    _LOGGER.debug(
        "session_open label=%s backend=%s intra_op_threads=%d",
        label,
        ONNXRUNTIME,
        ort_options.intra_op_num_threads,
    )
    return OnnxRuntimeSession(session, label, ort_options.intra_op_num_threads)


_OPTIMIZED_SUFFIX: Final = ".ort-optimized.onnx"


def _optimized_path(model: Path, folder: Path, ort_version: str) -> Path | None:
    """Where the optimized graph of `model` is kept; None when the model cannot be stat'ed.

    The name carries what the optimized graph depends on: the source file (path, size and
    modification time: a changed file is a new entry), the runtime version and the CPU (the
    optimizer picks kernels and layouts for the CPU it runs on).
    """
    from utterd.models.engine.cpu_features import cpu_features  # lazy: reads /proc/cpuinfo once

    try:
        stat = model.stat()
        where = str(model.resolve())
    except OSError:
        return None
    cpu = cpu_features()
    owner = hashlib.sha256(where.encode()).hexdigest()[:12]
    facts = f"{stat.st_size}|{stat.st_mtime_ns}|{ort_version}|{cpu.model_name}|{cpu.features}"
    key = hashlib.sha256(facts.encode()).hexdigest()[:16]
    return folder / f"{model.stem}-{owner}.{key}{_OPTIMIZED_SUFFIX}"


def _open_optimized(ort: Any, cached: Path, ort_options: Any, label: str) -> Any:
    """The session from the kept optimized graph, or None (absent, or unusable: then dropped)."""
    if not cached.is_file():
        return None
    level = ort_options.graph_optimization_level
    ort_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(cached), ort_options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001  # damaged, or another build: optimize the source
        _LOGGER.warning("optimized_model_unusable label=%s file=%s reason=%r", label, cached, err)
        cached.unlink(missing_ok=True)
        return None
    finally:
        ort_options.graph_optimization_level = level


def _open_and_optimize(
    ort: Any, model: Path | bytes, cached: Path | None, ort_options: Any, label: str
) -> Any:
    """Open `model` with the optimizer on; keep its optimized graph at `cached` if given."""
    staging = _staging_file(cached) if cached is not None else None
    if staging is not None:
        ort_options.optimized_model_filepath = str(staging)
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, ort_options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT reports corrupt/truncated graphs with several pybind types
        if staging is not None:
            staging.unlink(missing_ok=True)
        raise VoiceLoadError(
            f"cannot load model {describe_model(model, label)}: {str(err).strip()}"
        ) from err
    if cached is not None and staging is not None:
        _keep_optimized(staging, cached, label)
    return session


def _staging_file(cached: Path) -> Path | None:
    """A temporary name beside `cached` for ORT to write to; None when the folder is not ours."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _LOGGER.info("optimized_model_not_kept folder=%s reason=%r", cached.parent, err)
        return None
    if not os.access(cached.parent, os.W_OK):
        _LOGGER.info("optimized_model_not_kept folder=%s reason='not writable'", cached.parent)
        return None
    return cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _keep_optimized(staging: Path, cached: Path, label: str) -> None:
    """Move the written graph into place and drop this model's older entries."""
    owner = cached.name.split(".", 1)[0] + "."
    try:
        if not staging.is_file() or staging.stat().st_size == 0:
            staging.unlink(missing_ok=True)
            return
        with staging.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(staging, cached)
        for old in cached.parent.glob(owner + "*" + _OPTIMIZED_SUFFIX):
            if old != cached:
                old.unlink(missing_ok=True)
    except OSError as err:
        _LOGGER.info("optimized_model_not_kept file=%s reason=%r", cached, err)
        staging.unlink(missing_ok=True)
        return
    _LOGGER.info("optimized_model_kept label=%s file=%s", label, cached)


def _pin_onnxruntime_threads(ort_options: Any, threads: int) -> None:
    """Pin ORT's worker threads (the caller's thread is thread 0) one per allowed CPU."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if threads < 2 or len(cpus) < threads:
        return
    # "session.intra_op_thread_affinities": ';'-separated CPU lists (1-based) for threads 1..n-1.
    affinities = ";".join(str(cpu + 1) for cpu in cpus[1:threads])
    ort_options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
