"""ONNX Runtime static INT8 (QDQ) for a Piper VITS graph, plus INT8 storage of the other weights.

Steps: ONNX Runtime's pre-processing (graph optimization and shape inference), then
`quantize_static` in QDQ format with per-channel symmetric INT8 weights and UINT8 activations
whose ranges come from MinMax calibration on the calibration feeds, restricted to the nodes of
the chosen `QuantScope`. Finally every Conv/ConvTranspose weight still in float is stored as
per-channel INT8 with a DequantizeLinear in front (weight-only): activations there stay float,
so the speech keeps its quality while the file shrinks to about a quarter.

Histogram calibrators (percentile, entropy) are not offered: in onnxruntime 1.31 they stack the
collected tensors and fail on VITS's data-dependent lengths ("inhomogeneous shape").
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.quantize.scope import WEIGHT_ONLY_OP_TYPES, QuantScope

_LOGGER = logging.getLogger(__name__)

Feeds = dict[str, npt.NDArray[Any]]
Tick = Callable[[], None]
"""Called once per calibration sample consumed (drives the progress bar)."""

_INT8_MAX: Final = 127


@dataclass(frozen=True)
class OrtQuantResult:
    """What `quantize_onnxruntime` made."""

    path: Path
    """The INT8 model file."""

    static_nodes: int
    """Nodes quantized statically (INT8 activations and weights)."""

    weight_only_nodes: int
    """Nodes whose weights only were stored as INT8."""

    method: str
    """One line for the manifest."""


def quantize_onnxruntime(
    source: Path,
    output: Path,
    calibration: Sequence[Feeds],
    scope: QuantScope,
    *,
    tick: Tick | None = None,
) -> OrtQuantResult:
    """Quantize `source` into `output` (see the module docstring). Returns what was done."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._samples: Iterator[Feeds] = iter(calibration)

        def get_next(self) -> Feeds | None:
            sample = next(self._samples, None)
            if sample is not None and tick is not None:
                tick()
            return sample

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="utterd-quant-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Symbolic shape inference cannot follow VITS's data-dependent lengths; ONNX's own
        # shape inference and the graph optimizer are what QDQ placement needs.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        nodes = [(n.name, n.op_type) for n in model.graph.node]
        selected = scope.select(nodes)
        del model
        static = Path(work) / "static.onnx"
        quantize_static(
            str(prepared),
            str(static),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(scope.op_types),
            nodes_to_quantize=selected,
            calibrate_method=CalibrationMethod.MinMax,
            # MinMax reduces every tensor to its min and max inside the augmented graph, so
            # calibration memory does not grow with the sentences' lengths.
            extra_options={"WeightSymmetric": True},
        )
        quantized = onnx.load(str(static))
        weight_only = store_weights_int8(quantized, WEIGHT_ONLY_OP_TYPES)
        onnx.save(quantized, str(output))
    method = (
        f"onnxruntime quantize_static QDQ, MinMax calibration, per-channel symmetric INT8 "
        f"weights, UINT8 activations, scope {scope.name} ({len(selected)} nodes: "
        f"{scope.description}); weight-only per-channel INT8 for the other "
        f"{'/'.join(WEIGHT_ONLY_OP_TYPES)} weights ({weight_only} nodes)"
    )
    _LOGGER.info(
        "ort_quantized source=%s output=%s static_nodes=%d weight_only_nodes=%d",
        source,
        output,
        len(selected),
        weight_only,
    )
    return OrtQuantResult(output, len(selected), weight_only, method)


def store_weights_int8(model: Any, op_types: Sequence[str]) -> int:
    """Replace float weights of `op_types` nodes by INT8 + DequantizeLinear. Returns the count.

    Per output channel, symmetric (zero point 0): Conv weights are (out, in/groups, k) so the
    channel axis is 0; ConvTranspose weights are (in, out/groups, k), axis 1.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    new_nodes: list[Any] = []
    count = 0
    for node in graph.node:
        if node.op_type in op_types and len(node.input) > 1:
            weight_name = node.input[1]
            init = initializers.get(weight_name)
            if init is not None and init.data_type == TensorProto.FLOAT and uses[weight_name] == 1:
                axis = 1 if node.op_type == "ConvTranspose" else 0
                group = next((a.i for a in node.attribute if a.name == "group"), 1)
                if node.op_type == "ConvTranspose" and group != 1:
                    new_nodes.append(node)  # per-channel axis is ambiguous across groups
                    continue
                weights = numpy_helper.to_array(init).astype(np.float32)
                quantized, scale = _per_channel_int8(weights, axis)
                base = weight_name.replace("/", "_").strip("_") or f"w{count}"
                q_name, s_name, z_name = f"{base}_int8", f"{base}_scale", f"{base}_zero_point"
                graph.initializer.remove(init)
                graph.initializer.extend(
                    [
                        numpy_helper.from_array(quantized, q_name),
                        numpy_helper.from_array(scale, s_name),
                        numpy_helper.from_array(np.zeros(scale.shape, np.int8), z_name),
                    ]
                )
                dequantized = f"{base}_dequantized"
                new_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [q_name, s_name, z_name],
                        [dequantized],
                        name=f"{node.name}_weight_DequantizeLinear",
                        axis=axis,
                    )
                )
                node.input[1] = dequantized
                count += 1
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return count


def _per_channel_int8(
    weights: npt.NDArray[np.float32], axis: int
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    other_axes = tuple(a for a in range(weights.ndim) if a != axis)
    peak = np.max(np.abs(weights), axis=other_axes)
    scale = np.where(peak > 0, peak / _INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * weights.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(weights / scale.reshape(shape)), -_INT8_MAX, _INT8_MAX)
    return quantized.astype(np.int8), scale
