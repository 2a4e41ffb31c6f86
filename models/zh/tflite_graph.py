"""A TFLite flatbuffer read into plain Python objects: tensors, constants and operators.

Only what the converter needs: one subgraph, every tensor's type and shape signature (-1 for a
dynamic dimension), constant buffers as numpy arrays with int8 weights already dequantized
(`(q - zero_point) * scale`, per tensor or per channel), and each operator's name (builtin or
custom) with its options table. The flatbuffer schema comes from the `tflite` package (generated
code, pure Python); a file it cannot parse raises `VoiceLoadError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import tflite
from utterd.models.errors import VoiceLoadError

_NUMPY_TYPES: Final[dict[int, type[np.generic]]] = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.INT8: np.int8,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.BOOL: np.bool_,
    tflite.TensorType.INT16: np.int16,
    tflite.TensorType.FLOAT16: np.float16,
}

_BUILTIN_NAMES: Final[dict[int, str]] = {
    value: name for name, value in vars(tflite.BuiltinOperator).items() if not name.startswith("_")
}
_OPTION_NAMES: Final[dict[int, str]] = {
    value: name for name, value in vars(tflite.BuiltinOptions).items() if not name.startswith("_")
}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of an int8/uint8 tensor: real = (q - zero_point) * scale."""

    scale: np.ndarray
    """Scales, one per tensor or one per channel along `axis`."""

    zero_point: np.ndarray
    """Zero points, the same length as `scale`."""

    axis: int
    """The quantized dimension when there is one scale per channel."""


@dataclass(frozen=True)
class Tensor:
    """One tensor of the subgraph."""

    index: int
    """Its index in the subgraph's tensor list (operators refer to tensors by it)."""

    name: str
    """The name TensorFlow gave it (for messages and ONNX value names)."""

    dtype: type[np.generic]
    """Element type as stored (np.int8 for quantized tensors)."""

    shape: tuple[int, ...]
    """Shape signature: -1 marks a dimension that varies between calls."""

    quantization: Quantization | None
    """Affine quantization parameters of an int8/uint8 tensor, else None."""

    data: np.ndarray | None
    """Constant value (int8 weights dequantized to float32), or None for a computed tensor."""


@dataclass(frozen=True)
class Operator:
    """One operator of the subgraph, in execution order."""

    index: int
    """Position in the subgraph's operator list."""

    name: str
    """Builtin operator name (`CONV_2D`) or the custom code (`FlexRandomUniform`)."""

    inputs: tuple[int, ...]
    """Tensor indices of the inputs; -1 marks an omitted optional input."""

    outputs: tuple[int, ...]
    """Tensor indices of the outputs."""

    options: Any
    """The operator's options table (`tflite.Conv2DOptions`, ...), or None."""


@dataclass(frozen=True)
class Graph:
    """The main subgraph of a TFLite model."""

    path: Path
    """The file it was read from (named in every error)."""

    tensors: tuple[Tensor, ...]
    """All tensors, indexed by `Tensor.index`."""

    operators: tuple[Operator, ...]
    """All operators in execution order."""

    inputs: tuple[int, ...]
    """Tensor indices of the graph inputs."""

    outputs: tuple[int, ...]
    """Tensor indices of the graph outputs."""


def read_graph(path: Path) -> Graph:
    """Parse `path`; raise VoiceLoadError naming the file when it is not a readable TFLite model."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VoiceLoadError(f"cannot read TFLite model {path}: {exc}") from exc
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise VoiceLoadError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _parse(path, data)
    except VoiceLoadError:
        raise
    except Exception as exc:  # the generated reader raises anything on a damaged buffer
        raise VoiceLoadError(f"corrupt TFLite model {path}: {type(exc).__name__}: {exc}") from exc


def _parse(path: Path, data: bytes) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise VoiceLoadError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
    subgraph = model.Subgraphs(0)
    op_names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_names.append(custom.decode() if custom else _BUILTIN_NAMES.get(builtin, str(builtin)))
    tensors = tuple(_read_tensor(path, model, subgraph, i) for i in range(subgraph.TensorsLength()))
    operators = []
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        inputs = tuple(int(t) for t in op.InputsAsNumpy()) if op.InputsLength() else ()
        outputs = tuple(int(t) for t in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        operators.append(Operator(i, op_names[op.OpcodeIndex()], inputs, outputs, _options(op)))
    return Graph(
        path=path,
        tensors=tensors,
        operators=tuple(operators),
        inputs=tuple(int(t) for t in subgraph.InputsAsNumpy()),
        outputs=tuple(int(t) for t in subgraph.OutputsAsNumpy()),
    )


def _options(op: Any) -> Any:
    table = op.BuiltinOptions()
    name = _OPTION_NAMES.get(op.BuiltinOptionsType())
    if table is None or name is None or name == "NONE":
        return None
    options = getattr(tflite, name)()
    options.Init(table.Bytes, table.Pos)
    return options


def _read_tensor(path: Path, model: Any, subgraph: Any, index: int) -> Tensor:
    raw = subgraph.Tensors(index)
    name = raw.Name().decode()
    dtype = _NUMPY_TYPES.get(raw.Type())
    if dtype is None:
        raise VoiceLoadError(f"{path}: tensor {name} has unsupported type {raw.Type()}")
    if raw.ShapeSignatureLength():
        shape = tuple(int(d) for d in raw.ShapeSignatureAsNumpy())
    else:
        shape = tuple(int(d) for d in raw.ShapeAsNumpy()) if raw.ShapeLength() else ()
    quant = raw.Quantization()
    quantization = None
    if quant is not None and quant.ScaleLength():
        quantization = Quantization(
            scale=quant.ScaleAsNumpy().astype(np.float32),
            zero_point=quant.ZeroPointAsNumpy().astype(np.int64)
            if quant.ZeroPointLength()
            else np.zeros(quant.ScaleLength(), np.int64),
            axis=int(quant.QuantizedDimension()),
        )
    buffer = model.Buffers(raw.Buffer())
    data = None
    if buffer is not None and buffer.DataLength():
        static_shape = tuple(int(d) for d in raw.ShapeAsNumpy()) if raw.ShapeLength() else ()
        data = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype).reshape(static_shape)
        if quantization is not None and dtype in (np.int8, np.uint8):
            data = _dequantize(data, quantization)
    return Tensor(index, name, dtype, shape, quantization, data)


def _dequantize(values: np.ndarray, quantization: Quantization) -> np.ndarray:
    """Real values of int8 weights, per tensor or per channel along the quantized axis."""
    shape = [1] * values.ndim
    if quantization.scale.size > 1:
        shape[quantization.axis] = quantization.scale.size
    scale = quantization.scale.reshape(shape)
    zero_point = quantization.zero_point.reshape(shape)
    real: np.ndarray = ((values.astype(np.int64) - zero_point) * scale).astype(np.float32)
    return real
