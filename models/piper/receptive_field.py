"""How far a stack of 1-D convolutions reaches along time: the context a window needs.

From a start tensor to a stop tensor, every op must be convolutional in time (a convolution,
a transposed convolution, an elementwise op, a reshape that leaves the time axis alone); one
that could mix frames from afar raises `NotConvolutional`, which `reach` reports as a
VoiceLoadError naming the op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from utterd.models.engine.graph import GraphIndex, attr_int, attr_ints, attr_str
from utterd.models.errors import VoiceLoadError

if TYPE_CHECKING:
    import onnx

__all__ = ["ELEMENTWISE_OPS", "NotConvolutional", "Reach", "reach"]

# Ops through which a value at time t depends only on values at time t (elementwise); every
# input that depends on the latent must have the same frame rate.
ELEMENTWISE_OPS: Final = frozenset(
    {
        "Abs", "Add", "Cast", "Clip", "Div", "Dropout", "Erf", "Exp", "Identity", "LeakyRelu",
        "Log", "Max", "Min", "Mul", "Neg", "Pow", "Relu", "Sigmoid", "Softplus", "Sqrt", "Sub",
        "Tanh", "Where",
    }
)  # fmt: skip

# Ops whose output depends on the shape of their input, never on its values.
_SHAPE_ONLY_OPS: Final = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class Reach:
    """How far a tensor's values reach into the start tensor's frames."""

    rate: int
    """Samples of this tensor per start frame."""

    left: Fraction
    """Start frames before the element's centre that it depends on."""

    right: Fraction
    """Start frames after the element's centre that it depends on."""

    rank: int
    """Tensor rank; the time axis is the last one."""

    def context_frames(self) -> int:
        """Frames of context each side that make every output sample of a frame exact.

        An output sample's centre lies at least half a sample inside its frame, while the input
        frames' centres sit at frame + 1/2; hence the half-frame and half-sample corrections.
        """
        reach = max(self.left, self.right)
        return max(0, math.floor(reach + Fraction(1, 2) - Fraction(1, 2 * self.rate)))


class NotConvolutional(Exception):
    def __init__(self, node: onnx.NodeProto, why: str) -> None:
        super().__init__(f"{node.op_type} node {node.name!r} {why}")


def reach(index: GraphIndex, start: str, stop: str, label: str, what: str) -> Reach:
    """Propagate receptive fields from `start` to `stop`; VoiceLoadError if unbounded."""
    reach: dict[str, Reach] = {start: Reach(1, Fraction(0), Fraction(0), 3)}
    try:
        for node in index.nodes:
            deps = [reach[name] for name in node.input if name in reach]
            if not deps:
                continue
            if node.op_type in _SHAPE_ONLY_OPS:
                continue
            out = _propagate(index, node, deps, [n for n in node.input if n in reach])
            for name in node.output:
                if name:
                    reach[name] = out
            if stop in reach:
                return reach[stop]
    except NotConvolutional as err:
        raise VoiceLoadError(
            f"cannot split {label}: {what} is not a stack of 1-D convolutions with a bounded "
            f"receptive field: {err}"
        ) from err
    raise VoiceLoadError(f"cannot split {label}: {what} output does not depend on its input")


def _propagate(
    index: GraphIndex, node: onnx.NodeProto, deps: list[Reach], dep_names: list[str]
) -> Reach:
    op = node.op_type
    if op == "Conv":
        if node.input[0] not in dep_names or len(dep_names) > 1:
            raise NotConvolutional(node, "has a weight that depends on the audio path")
        return _conv_reach(node, deps[0])
    if op == "ConvTranspose":
        if node.input[0] not in dep_names or len(dep_names) > 1:
            raise NotConvolutional(node, "has a weight that depends on the audio path")
        return _conv_transpose_reach(node, deps[0])
    rates = {d.rate for d in deps}
    if len(rates) != 1:
        raise NotConvolutional(node, f"mixes frame rates {sorted(rates)}")
    merged = Reach(
        deps[0].rate,
        max(d.left for d in deps),
        max(d.right for d in deps),
        max(d.rank for d in deps),
    )
    if op in ELEMENTWISE_OPS:
        return merged
    if op in ("QuantizeLinear", "DequantizeLinear"):
        # A quantized (QDQ) graph's activations: elementwise with a per-tensor scale; a
        # per-axis scale must not run along time.
        scale = index.initializers.get(node.input[1])
        if scale is None or any(d > 1 for d in scale.dims):
            _check_axes(node, [attr_int(node, "axis", 1)], merged.rank)
        return merged
    if op in ("Split", "Concat", "Gather"):
        default_axis = 0
        axis = attr_int(node, "axis", default_axis)
        if op == "Gather" and node.input[0] not in dep_names:
            raise NotConvolutional(node, "gathers with indices taken from the audio path")
        _check_axes(node, [axis], merged.rank)
        return merged
    if op == "Slice":
        axes = index.const_ints(node.input[3]) if len(node.input) > 3 else None
        if axes is None or any(n in dep_names for n in node.input[1:]):
            raise NotConvolutional(node, "slices with non-constant axes")
        _check_axes(node, axes, merged.rank)
        return merged
    if op in ("Unsqueeze", "Squeeze"):
        axes = index.const_ints(node.input[1]) if len(node.input) > 1 else attr_ints(node, "axes")
        if not axes:
            raise NotConvolutional(node, "has no constant axes")
        out_rank = merged.rank + len(axes) if op == "Unsqueeze" else merged.rank - len(axes)
        _check_axes(node, axes, out_rank if op == "Unsqueeze" else merged.rank)
        return Reach(merged.rate, merged.left, merged.right, out_rank)
    raise NotConvolutional(node, "may mix distant frames")


def _check_axes(node: onnx.NodeProto, axes: Sequence[int], rank: int) -> None:
    if any(a % rank == rank - 1 for a in axes):
        raise NotConvolutional(node, "works along the time axis")


def _conv_reach(node: onnx.NodeProto, src: Reach) -> Reach:
    kernel = attr_ints(node, "kernel_shape")
    dilation = (attr_ints(node, "dilations") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    stride = (attr_ints(node, "strides") or [1])[0]
    auto_pad = attr_str(node, "auto_pad")
    if not kernel or len(kernel) != 1:
        raise NotConvolutional(node, "is not a 1-D convolution")
    span = dilation * (kernel[0] - 1)
    if stride != 1 or auto_pad not in ("", "NOTSET") or pads[0] + pads[1] != span:
        raise NotConvolutional(node, "changes the frame count")
    rate = Fraction(src.rate)
    return Reach(src.rate, src.left + pads[0] / rate, src.right + (span - pads[0]) / rate, src.rank)


def _conv_transpose_reach(node: onnx.NodeProto, src: Reach) -> Reach:
    kernel = attr_ints(node, "kernel_shape")
    stride = (attr_ints(node, "strides") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    dilation = (attr_ints(node, "dilations") or [1])[0]
    if not kernel or len(kernel) != 1 or dilation != 1:
        raise NotConvolutional(node, "is not a plain 1-D transposed convolution")
    if attr_ints(node, "output_shape") or any(attr_ints(node, "output_padding")):
        raise NotConvolutional(node, "has an explicit output shape")
    if kernel[0] - pads[0] - pads[1] != stride:
        raise NotConvolutional(node, "does not upsample by exactly its stride")
    # Output o takes inputs i with i·s ∈ [o + p − k + 1, o + p]; measured between element centres.
    out_rate = src.rate * stride
    half_cell = Fraction(stride - 1, 2)
    left = (kernel[0] - 1 - pads[0] - half_cell) / out_rate
    right = (pads[0] + half_cell) / out_rate
    return Reach(out_rate, src.left + left, src.right + right, src.rank)
