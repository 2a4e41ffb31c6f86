"""OpenVINO sessions on the CPU plugin.

OpenVINO is run with f32 inference precision unless told otherwise: on CPUs with native bf16
its default silently computes in bf16, which made the joe voice unintelligible on a quarter of
the words. Its compiled models are cached on disk so a restart does not recompile, and
variable-length inputs can be padded to a few fixed length buckets so compiled shapes are
reused and memory stays bounded.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.session import (
    OPENVINO,
    Feeds,
    Session,
    SessionOptions,
    describe_model,
)
from utterd.models.engine.threads import intra_op_threads
from utterd.models.errors import SynthesisError, VoiceLoadError
from utterd.models.voice import CancelToken, EngineSettings

__all__ = [
    "OPENVINO_SHAPE_CACHE",
    "OpenVinoSession",
    "bucket_length",
    "open_openvino",
    "openvino_config",
]

_LOGGER = logging.getLogger(__name__)


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

    def run(
        self,
        output_names: Sequence[str] | None,
        feeds: Feeds,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        """OpenVINO runs whole sentences; a cancel is seen once the run ends."""
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
        if cancel is not None:
            cancel.raise_if_cancelled()
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


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `length`; beyond the largest, the next multiple of the largest."""
    for bucket in buckets:
        if bucket >= length:
            return bucket
    largest = buckets[-1]
    return -(-length // largest) * largest


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


def open_openvino(
    model: Path | bytes, engine: EngineSettings, label: str, options: SessionOptions
) -> Session:
    """Open `model` (a file) with OpenVINO's CPU plugin (a `SessionFactory`)."""
    if not isinstance(model, Path):
        raise VoiceLoadError(
            f"{describe_model(model, label)}: the openvino backend needs a model file"
        )
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
