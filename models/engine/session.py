"""The `Session` interface every inference backend implements, and what opening one takes.

Families never touch onnxruntime or openvino directly; they call `open_session` (`backend.py`),
so thread settings, graph optimization, precision and error wording are the same for every voice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt
from utterd.models.voice import CancelToken, EngineSettings

__all__ = [
    "AUTO",
    "ONNXRUNTIME",
    "OPENVINO",
    "Feeds",
    "PaddedInput",
    "Session",
    "SessionFactory",
    "SessionOptions",
    "describe_model",
]

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

    memory_arena: bool = True
    """ONNX Runtime: take the run's buffers from the process-wide CPU arena (ort_session.py),
    which keeps what it grew to. Off, each buffer comes from malloc and goes back at once:
    for a model whose runs vary a lot in size and which allocates few, large buffers (hibari),
    that lowered the daemon's peak RSS while speaking at the same speed (bench_memory.py)."""

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
    def run(
        self,
        output_names: Sequence[str] | None,
        feeds: Feeds,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        """Run the graph; None means every output. Raises SynthesisError naming the label, and
        Cancelled when `cancel` is set during the run (a backend that can abort a run does so
        at once; one that cannot finishes it first)."""

    def close(self) -> None:
        """Release the graph's memory. The default does nothing."""

    def runtime_info(self) -> dict[str, Any]:
        """What runs the graph, for `describe`: backend, threads, precision, ..."""
        return {"backend": self.backend}


def describe_model(model: Path | bytes, label: str) -> str:
    """A model for messages: its path, or its label and size when it is bytes."""
    return (
        str(model) if isinstance(model, Path) else f"{label} (in-memory model, {len(model)} bytes)"
    )
