"""Inference backends: one small `Session` interface over the engines that run ONNX graphs.

Families never touch onnxruntime or openvino directly; they call `open_session`, so thread
settings, graph optimization, precision and error wording are the same for every voice.

Two backends: ONNX Runtime (CPU execution provider) and OpenVINO (CPU plugin). OpenVINO is run
with f32 inference precision unless told otherwise: on CPUs with native bf16 its default silently
computes in bf16, which made the joe voice unintelligible on a quarter of the words. Its compiled
models are cached on disk so a restart does not recompile, and variable-length inputs can be
padded to a few fixed length buckets so compiled shapes are reused and memory stays bounded.
`FallbackSession` runs a request again on ONNX Runtime when OpenVINO fails on it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.errors import SynthesisError, VoiceLoadError
from utterd.models.voice import EngineSettings

_LOGGER = logging.getLogger(__name__)

ONNXRUNTIME: Final = "onnxruntime"
OPENVINO: Final = "openvino"
AUTO: Final = "auto"
"""Not a backend: tells a family to pick the fastest variant that passed the gates (manifest)."""

Feeds = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class PaddedInput:
    """A variable-length input that may be padded to a length bucket without changing the result.

    Only valid when the graph masks the padding out (a Piper VITS `input` with its true length
    in `input_lengths`: padded phonemes get zero duration, so the audio is the same).
    """

    name: str
    """Input name."""

    axis: int
    """Axis whose length varies."""

    pad_value: int | float = 0
    """Value written into the padding (Piper's pad phoneme id is 0)."""


@dataclass(frozen=True)
class SessionOptions:
    """Backend-specific choices beyond `EngineSettings`; the defaults suit every backend."""

    inference_precision: str = "f32"
    """OpenVINO INFERENCE_PRECISION_HINT. f32 unless a variant proved another precision accurate."""

    cache_dir: Path | None = None
    """OpenVINO compiled-model cache folder; None disables the cache (every load recompiles)."""

    length_buckets: tuple[int, ...] = ()
    """OpenVINO: sorted lengths the `padded_inputs` are padded up to; empty disables padding.

    Longer inputs are padded to a multiple of the largest bucket, so the set of compiled shapes
    stays small whatever the text."""

    padded_inputs: tuple[PaddedInput, ...] = ()
    """Inputs that may be padded to a bucket (see `PaddedInput`)."""

    cpu_pinning: bool = False
    """Pin inference threads to cores (OpenVINO ENABLE_CPU_PINNING); off: the OS schedules."""

    optimized_cache_dir: Path | None = None
    """ONNX Runtime: folder keeping the graph as optimized for this CPU and runtime version, so
    a later open skips the optimizer (only for a model given as a file). None: optimize at
    every open."""

    memory_reuse: bool = True
    """ONNX Runtime: plan buffer reuse between a run's tensors when the session opens. Off, the
    arena hands out and takes back buffers as the run goes. Worth turning off for graphs of
    thousands of small nodes (a VITS text encoder: 2,193 nodes), where the planner takes most
    of the session's opening time (joe's encoder: 1.0-1.5 s with it, 0.3 s without) and its
    runs were no slower, nor larger (measured in docs/benchmarks.md)."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further OpenVINO compile properties, passed through as given (for experiments)."""


SessionFactory = Callable[[Path | bytes, EngineSettings, str, SessionOptions], "Session"]
"""Opens a model (a file or its bytes) with the given settings; the str is the session's label."""


class Session(ABC):
    """A loaded model graph. `run` is safe to call from several threads at once."""

    backend: str
    """Name of the backend that runs the graph (`onnxruntime`, `openvino`)."""

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

    def runtime_info(self) -> dict[str, Any]:
        """What runs the graph, for `describe`: backend, threads, precision, ..."""
        return {"backend": self.backend}


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

    def runtime_info(self) -> dict[str, Any]:
        return {"backend": self.backend, "threads": self._threads}

    def __repr__(self) -> str:
        return f"OnnxRuntimeSession(label={self.label!r}, inputs={self._input_names})"


class OpenVinoSession(Session):
    """An OpenVINO compiled model on the CPU plugin, with a pool of infer requests.

    An infer request is not thread-safe, so each `run` borrows one from the pool (made on
    demand, at most one per concurrent caller) and gives it back.
    """

    backend = OPENVINO

    def __init__(self, compiled: Any, label: str, options: SessionOptions, threads: int) -> None:
        self._compiled: Any = compiled
        self.label = label
        self._options = options
        self._threads = threads
        self._input_names = tuple(port.get_any_name() for port in compiled.inputs)
        self._output_names = tuple(port.get_any_name() for port in compiled.outputs)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._shapes_lock = threading.Lock()
        self._shapes_seen: set[tuple[tuple[int, ...], ...]] = set()
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        self._precision = str(precision).lower().replace("<type: '", "").replace("'>", "")

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def inference_precision(self) -> str:
        """The precision the plugin computes in, as it reports it (`f32`, `bf16`)."""
        return self._precision

    @property
    def compiled_shapes(self) -> int:
        """Distinct input shape sets run so far: with buckets, a small bounded number."""
        with self._shapes_lock:
            return len(self._shapes_seen)

    def pad_to_bucket(self, feeds: Feeds) -> dict[str, npt.NDArray[Any]]:
        """`feeds` with the paddable inputs padded up to their length bucket."""
        out = dict(feeds)
        buckets = self._options.length_buckets
        if not buckets:
            return out
        for spec in self._options.padded_inputs:
            array = out.get(spec.name)
            if array is None:
                continue
            length = array.shape[spec.axis]
            target = bucket_length(length, buckets)
            if target > length:
                widths = [(0, 0)] * array.ndim
                widths[spec.axis] = (0, target - length)
                out[spec.name] = np.pad(array, widths, constant_values=spec.pad_value)
        return out

    def run(self, output_names: Sequence[str] | None, feeds: Feeds) -> list[npt.NDArray[Any]]:
        compiled = self._compiled
        if compiled is None:
            raise SynthesisError(f"{self.label}: the model was closed")
        padded = self.pad_to_bucket(feeds)
        with self._shapes_lock:
            self._shapes_seen.add(tuple(tuple(a.shape) for a in padded.values()))
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            results = request.infer(padded)
            wanted = self._output_names if output_names is None else tuple(output_names)
            # Copies: the request's buffers are reused by the next caller that borrows it.
            outputs = [np.array(results[name]) for name in wanted]
        except Exception as err:  # OpenVINO raises RuntimeError and pybind types alike
            raise SynthesisError(f"{self.label}: OpenVINO inference failed: {err}") from err
        finally:
            self._requests.put(request)
        return outputs

    def close(self) -> None:
        self._compiled = None
        self._requests = queue.SimpleQueue()

    def runtime_info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "threads": self._threads,
            "inference_precision": self._precision,
            "length_buckets": list(self._options.length_buckets),
            "compiled_shapes": self.compiled_shapes,
            "cache_dir": str(self._options.cache_dir) if self._options.cache_dir else None,
        }

    def __repr__(self) -> str:
        return f"OpenVinoSession(label={self.label!r}, precision={self._precision!r})"


class FallbackSession(Session):
    """Runs `primary`; when it fails on a request, runs that request on a fallback session.

    The fallback (ONNX Runtime) is opened on the first failure only, so a healthy OpenVINO voice
    does not pay its memory. A failure is an exception, an empty first output or a non-finite
    value in it (OpenVINO in the wrong precision has produced both without raising).
    """

    def __init__(self, primary: Session, open_fallback: Callable[[], Session]) -> None:
        self._primary = primary
        self._open_fallback = open_fallback
        self._fallback: Session | None = None
        self._lock = threading.Lock()
        self.label = primary.label
        self.backend = primary.backend
        self.fallbacks = 0
        """Requests the fallback answered."""

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._primary.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._primary.output_names

    @property
    def primary(self) -> Session:
        """The session tried first."""
        return self._primary

    def run(self, output_names: Sequence[str] | None, feeds: Feeds) -> list[npt.NDArray[Any]]:
        try:
            outputs = self._primary.run(output_names, feeds)
            problem = _output_problem(outputs)
        except SynthesisError as err:
            problem = err.message
        if problem is None:
            return outputs
        fallback = self._fallback_session(problem)
        with self._lock:
            self.fallbacks += 1
        _LOGGER.warning(
            "backend_fallback label=%s from=%s to=%s reason=%s",
            self.label,
            self._primary.backend,
            fallback.backend,
            problem,
        )
        return fallback.run(output_names, feeds)

    def _fallback_session(self, problem: str) -> Session:
        with self._lock:
            if self._fallback is None:
                try:
                    self._fallback = self._open_fallback()
                except VoiceLoadError as err:
                    raise SynthesisError(
                        f"{self.label}: {self._primary.backend} failed ({problem}) and the "
                        f"fallback could not be opened: {err.message}"
                    ) from err
            return self._fallback

    def close(self) -> None:
        self._primary.close()
        with self._lock:
            if self._fallback is not None:
                self._fallback.close()
                self._fallback = None

    def runtime_info(self) -> dict[str, Any]:
        info = self._primary.runtime_info()
        info["fallback_backend"] = ONNXRUNTIME
        info["fallbacks"] = self.fallbacks
        return info


def _output_problem(outputs: Sequence[npt.NDArray[Any]]) -> str | None:
    """Why a graph's outputs are unusable, or None when they look sane."""
    if not outputs or outputs[0].size == 0:
        return "empty output"
    first = outputs[0]
    if np.issubdtype(first.dtype, np.floating) and not np.isfinite(first).all():
        return "non-finite values in the output"
    return None


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `length`; beyond the largest, the next multiple of the largest."""
    for bucket in buckets:
        if bucket >= length:
            return bucket
    largest = buckets[-1]
    return -(-length // largest) * largest


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


def _open_onnxruntime(
    model: Path | bytes, engine: EngineSettings, label: str, options: SessionOptions
) -> Session:
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
    if _share_cpu_arena(ort):
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
            f"cannot load model {_describe(model, label)}: {str(err).strip()}"
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


OPENVINO_SHAPE_CACHE: Final = 50
"""Input shapes whose prepared CPU kernels OpenVINO keeps (its default: 5000)."""


def openvino_config(engine: EngineSettings, options: SessionOptions) -> dict[str, Any]:
    """The CPU plugin properties utterd compiles with."""
    config: dict[str, Any] = {
        # Never the plugin's default: on bf16-capable CPUs it computes in bf16 (wrong speech).
        "INFERENCE_PRECISION_HINT": options.inference_precision,
        "INFERENCE_NUM_THREADS": intra_op_threads(engine),
        # One request at a time per worker thread: latency, not throughput streams.
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "ENABLE_CPU_PINNING": options.cpu_pinning,
        # Kernels prepared per input shape are cached, 5000 shapes by default. A VITS graph's
        # inner lengths differ with every sentence, so the cache only grows: over the benchmark
        # set (joe INT8, whole sentences, 2 passes) the peak was 1564-1580 MiB by default,
        # 1161 MiB with 50 shapes (0: 1054-1202 MiB, 3-10 % slower), and no slower with 50.
        "CPU_RUNTIME_CACHE_CAPACITY": OPENVINO_SHAPE_CACHE,
    }
    config.update(options.extra)
    return config


def _open_openvino(
    model: Path | bytes, engine: EngineSettings, label: str, options: SessionOptions
) -> Session:
    if not isinstance(model, Path):
        raise VoiceLoadError(f"{_describe(model, label)}: the openvino backend needs a model file")
    try:
        import openvino as ov  # lazy: a second or more to import
    except ImportError as err:
        raise VoiceLoadError(f"cannot load model {model}: openvino is not installed") from err

    core = ov.Core()
    if options.cache_dir is not None:
        try:
            options.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(options.cache_dir)})
        except OSError as err:  # an unwritable cache costs a recompile, not the voice
            _LOGGER.warning("openvino_cache_unusable dir=%s reason=%s", options.cache_dir, err)
    config = openvino_config(engine, options)
    try:
        # compile_model(path) rather than read_model + compile: only then can a cache hit skip
        # reading and compiling the graph altogether.
        compiled = core.compile_model(str(model), "CPU", config)
    except Exception as err:  # OpenVINO raises RuntimeError and pybind types alike
        raise VoiceLoadError(f"cannot load model {model} with OpenVINO: {err}") from err
    session = OpenVinoSession(compiled, label, options, config["INFERENCE_NUM_THREADS"])
    _LOGGER.debug(
        "session_open label=%s backend=%s threads=%d precision=%s cache_dir=%s",
        label,
        OPENVINO,
        config["INFERENCE_NUM_THREADS"],
        session.inference_precision,
        options.cache_dir,
    )
    return session


_BACKENDS: dict[str, SessionFactory] = {ONNXRUNTIME: _open_onnxruntime, OPENVINO: _open_openvino}


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
        # Families that keep no measured variants (hibari) have nothing to choose from: `auto`
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
