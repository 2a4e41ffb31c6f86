"""Rewrite the Piper VITS decoder into a streaming graph that keeps state between calls.

The windowed decoder (`vits_stream`) runs flow and generator on each window widened by context
(11 generator frames a side for joe, 16 flow frames beyond), so every seam recomputes ~22
generator frames: with the small first windows streaming needs, that made streamed synthesis
cost 1.2x the CPU of whole sentences. Here each op that mixes time steps keeps what it needs of
its past input instead, so a window costs its own frames:

- a `Conv` (kernel k, dilation d, pads pl + pr = (k-1)·d) runs unpadded on
  `concat(state, input)`, the state being its last (k-1)·d input samples; its output then lags
  its input by pr samples of its rate;
- a `ConvTranspose` (stride s, pads p) keeps ceil(k/s)-1 input samples and its output is sliced
  at fixed offsets; its output lags s·(input lag) + p samples;
- an elementwise op joining branches with different lags (a residual add, the sum of one MRF's
  resblocks, a coupling layer's halves) delays the less lagged ones through a small buffer.

Lags are counted in samples of each tensor's own rate (samples per latent frame), so they stay
integers. A sentence's first and last calls are told apart by two int64 inputs, so that nothing
is ever computed outside the sentence: on the first call a convolution's state is its left
padding (`pl` zeros, given by the caller), a delay's buffer is empty and a transposed
convolution keeps the outputs from time 0; on the last call each convolution appends its right
padding (`pr` zeros) and nothing is held back. Each op thus sees exactly the zeros the
whole-sentence graph padded with, and a sentence costs its frames once, whatever its windows.
The audio of a call fed latent frames [a, b) is samples [a·hop − lag, b·hop − lag) of the
sentence, from 0 on its first call and up to its end on its last.

Any op outside these (the graph is not a stack of 1-D convolutions along the last axis), or a
use of a window's length other than a constant-filled tensor, raises `NotStreamable`; the split
keeps the windowed decoder then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from utterd.models.engine.graph import GraphIndex, attr_int, attr_ints, attr_str
from utterd.models.piper.receptive_field import ELEMENTWISE_OPS

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FIRST_CALL",
    "LAST_CALL",
    "NotStreamable",
    "StateShape",
    "StatefulDecoder",
    "make_stateful",
]

FIRST_CALL: Final = "first_call"
"""int64 [1]: 1 on a sentence's first call (the states are then the `first_samples` zeros)."""
LAST_CALL: Final = "last_call"
"""int64 [1]: 1 on a sentence's last call (the convolutions pad its end, nothing is held)."""

_STATE_IN: Final = "state_in_"
_STATE_OUT: Final = "state_out_"
_PREFIX: Final = "utterd_stateful"
_INT64_MAX: Final = (1 << 63) - 1
_PASS_THROUGH_OPS: Final = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that move data along one axis given by their `axis` attribute.
_AXIS_OPS: Final = frozenset({"Concat", "Split", "Gather"})


class NotStreamable(Exception):
    """The graph has an op the streaming rewrite cannot keep exact."""


@dataclass(frozen=True)
class StateShape:
    """One state tensor of the streaming decoder."""

    name: str
    """Input name; the graph returns its next value as the same name with `state_out_`."""

    channels: int
    """Channels C of the state [1, C, samples]."""

    samples: int
    """Samples along time after a first call: what the op keeps of its past input."""

    first_samples: int
    """Samples of the zeros to give on a sentence's first call (a convolution's left padding;
    0 for a delay or a transposed convolution, which hold nothing then)."""


@dataclass(frozen=True)
class StatefulDecoder:
    """What the rewrite made: the states to carry and how far the audio lags the input."""

    lag_samples: int
    """Audio samples by which a call's output lags its input: a call fed latent frames [a, b)
    returns samples [a·hop − lag, b·hop − lag) (from 0 on the first call, to the end on the
    last)."""

    states: tuple[StateShape, ...] = field(default_factory=tuple)
    """The state inputs, in graph order."""


@dataclass(frozen=True)
class _Track:
    """Where a streamed tensor's chunk lies in its sentence."""

    rate: int
    """Samples per latent frame."""

    lag: int | None
    """Samples the chunk lags the input's (None: constant in time, lines up with any lag)."""

    channels: int | None
    """Channels (axis 1), where known."""

    rank: int
    """Tensor rank; time is the last axis."""


class _Builder:
    """Accumulates the new nodes, inputs, outputs and initializers of the rewritten graph."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[onnx.NodeProto] = []
        """Nodes to place before the node being rewritten."""
        self.after: list[onnx.NodeProto] = []
        """Nodes to place right after it."""
        self.initializers: list[onnx.TensorProto] = []
        self.state_inputs: list[onnx.ValueInfoProto] = []
        self.state_outputs: list[onnx.ValueInfoProto] = []
        self.states: list[StateShape] = []
        self._consts: dict[tuple[int, ...], str] = {}
        self._delays: dict[tuple[str, int], str] = {}
        self._pending: list[str] = []  # state outputs no main-path node depends on yet
        self._count = 0

    def name(self, what: str) -> str:
        self._count += 1
        return f"{_PREFIX}/{what}_{self._count}"

    def const(self, values: tuple[int, ...]) -> str:
        from onnx import TensorProto

        if values not in self._consts:
            name = f"{_PREFIX}/const_{len(self._consts)}"
            self.initializers.append(
                self.helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))
            )
            self._consts[values] = name
        return self._consts[values]

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def length(self, x: str) -> str:
        """int64 [1]: the samples of `x` along time."""
        return self.node(
            "Slice", [self.node("Shape", [x]), self.const((-1,)), self.const((_INT64_MAX,))]
        )

    def scaled_flag(self, flag: str, by: int) -> str:
        """int64 [1]: `by` on calls where `flag` is 1, else 0 (anchoring the pending states)."""
        value = self.node("Mul", [flag, self.const((by,))])
        if not self._pending:
            return value
        # + Σ (batch of each state − 1) = + 0: the states' Slices become inputs of the main
        # path. Left leaves, ONNX Runtime's order (a reverse DFS from the leaves) ran every
        # state Slice after the audio, keeping each conv's joined input alive to the end of
        # the run: one 171-frame call held 360 MiB instead of about 50 (140 anchored).
        batches = [self.node("Shape", [state], start=0, end=1) for state in self._pending]
        total = self.node("ReduceSum", [self.node("Concat", [value, *batches], axis=0)])
        self._pending.clear()
        return self.node("Sub", [total, self.const((len(batches),))])

    def state(self, channels: int, samples: int, first_samples: int) -> tuple[str, str]:
        """A new state: (input name, output name)."""
        from onnx import TensorProto

        index = len(self.states)
        name_in, name_out = f"{_STATE_IN}{index}", f"{_STATE_OUT}{index}"
        shape: list[int | str] = [1, channels, f"state_{index}"]
        self.state_inputs.append(
            self.helper.make_tensor_value_info(name_in, TensorProto.FLOAT, shape)
        )
        self.state_outputs.append(
            self.helper.make_tensor_value_info(name_out, TensorProto.FLOAT, shape)
        )
        self.states.append(StateShape(name_in, channels, samples, first_samples))
        return name_in, name_out

    def with_state(
        self,
        x: str,
        channels: int,
        samples: int,
        first_samples: int,
        right_pad: int = 0,
        *,
        rate: int = 1,
    ) -> str:
        """concat(state, x[, right_pad zeros on the last call]) along time; the state's next
        value is the last `samples` of it. States of tensors above the latent rate are
        anchored to the main path (`scaled_flag`); the latent rate's are small."""
        from onnx import TensorProto

        name_in, name_out = self.state(channels, samples, first_samples)
        parts = [name_in, x]
        if right_pad:
            zeros_shape = self.node(
                "Concat",
                [self.const((1, channels)), self.scaled_flag(LAST_CALL, right_pad)],
                axis=0,
            )
            parts.append(
                self.node(
                    "ConstantOfShape",
                    [zeros_shape],
                    value=self.helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
                )
            )
        joined = self.node("Concat", parts, axis=-1)
        self.nodes.append(
            self.helper.make_node(
                "Slice",
                [joined, self.const((-samples,)), self.const((_INT64_MAX,)), self.const((-1,))],
                [name_out],
                name=self.name("StateOut"),
            )
        )
        if rate > 1:
            self._pending.append(name_out)
        return joined

    def delayed(self, x: str, channels: int, samples: int, rate: int) -> str:
        """`x` delayed by `samples` along time: what is pushed out waits in a state (nothing
        waits on a last call, nothing is held before a first one)."""
        key = (x, samples)
        if key not in self._delays:
            joined = self.with_state(x, channels, samples, 0, rate=rate)
            held = self.node("Sub", [self.const((samples,)), self.scaled_flag(LAST_CALL, samples)])
            end = self.node("Sub", [self.length(joined), held])
            self._delays[key] = self.node(
                "Slice", [joined, self.const((0,)), end, self.const((-1,))]
            )
        return self._delays[key]


def make_stateful(
    decoder: onnx.ModelProto, start: str, audio: str
) -> tuple[onnx.ModelProto, StatefulDecoder]:
    """The decoder made streaming from the tensor `start` (its latent frames) to `audio`.

    Adds the inputs FIRST_CALL, LAST_CALL and the states (`state_in_<i>`, with outputs
    `state_out_<i>`). A first call that is not also the last must be fed at least
    ceil(lag / hop) frames (each op's chunk must not be shorter than what it holds back).
    Raises NotStreamable naming the op it cannot stream.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(decoder)
    graph = model.graph
    index = GraphIndex(graph)
    build = _Builder()
    tracks: dict[str, _Track] = {start: _Track(1, 0, None, 3)}
    shapes: dict[str, int] = {}  # tensors computed from a streamed tensor's shape: its rate
    kept: list[onnx.NodeProto] = []
    for node in index.nodes:
        deps = [name for name in node.input if name in tracks]
        from_shapes = [shapes[name] for name in node.input if name in shapes]
        if node.op_type == "Shape" and deps:
            shapes.update((name, tracks[deps[0]].rate) for name in node.output if name)
        elif from_shapes and deps:
            raise NotStreamable(f"{node.op_type} node {node.name!r} uses a window's length")
        elif from_shapes and node.op_type == "ConstantOfShape":
            # The same value at every time step (a mask of ones, zeros to add to): made one
            # step long, it broadcasts along time to any chunk, whatever its lag and length.
            node.input[0] = build.node(
                "Concat",
                [
                    build.node("Slice", [node.input[0], build.const((0,)), build.const((-1,))]),
                    build.const((1,)),
                ],
                axis=0,
            )
            tracks[node.output[0]] = _Track(from_shapes[0], None, None, 3)
        elif from_shapes:
            shapes.update((name, from_shapes[0]) for name in node.output if name)
        elif deps:
            _stream_node(node, deps, tracks, build, index)
        kept.extend(build.nodes)
        kept.append(node)
        kept.extend(build.after)
        build.nodes.clear()
        build.after.clear()
    if audio not in tracks:
        raise NotStreamable(f"the audio output {audio!r} does not depend on {start!r}")
    final = tracks[audio]
    if final.lag is None:
        raise NotStreamable(f"the audio output {audio!r} is constant in time")

    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(build.initializers)
    graph.input.extend(
        [helper.make_tensor_value_info(n, TensorProto.INT64, [1]) for n in (FIRST_CALL, LAST_CALL)]
    )
    graph.input.extend(build.state_inputs)
    graph.output.extend(build.state_outputs)
    return model, StatefulDecoder(final.lag, tuple(build.states))


def _stream_node(
    node: onnx.NodeProto,
    deps: list[str],
    tracks: dict[str, _Track],
    build: _Builder,
    index: GraphIndex,
) -> None:
    """Rewrite `node` (whose inputs `deps` are streamed) in place, adding the nodes it needs
    around it to `build`, and record its outputs' tracks."""
    op = node.op_type
    outputs = [name for name in node.output if name]  # before a rewrite renames them
    if op in ("Conv", "ConvTranspose") and tracks[node.input[0]].lag is None:
        raise NotStreamable(f"{op} node {node.name!r} convolves a constant")
    if op == "Conv":
        out = _stream_conv(node, deps, tracks[node.input[0]], build, index)
    elif op == "ConvTranspose":
        out = _stream_conv_transpose(node, deps, tracks[node.input[0]], build, index)
    else:
        out = _stream_pointwise(node, deps, tracks, build, index)
    channels = _output_channels(node, out, tracks, index)
    for name, count in zip(outputs, channels, strict=False):
        tracks[name] = _Track(out.rate, out.lag, count, out.rank)


def _output_channels(
    node: onnx.NodeProto, out: _Track, tracks: dict[str, _Track], index: GraphIndex
) -> list[int | None]:
    """Channels of each output of `node` where they can be told (for a delay's state)."""
    op = node.op_type
    outputs = [name for name in node.output if name]
    source = tracks.get(node.input[0])
    known = source.channels if source is not None else None
    if op in ("Split", "Slice", "Concat") and out.rank == 3:
        axis = attr_int(node, "axis", 0) % 3 if op != "Slice" else None
        if op == "Split" and axis == 1:
            sizes = index.const_ints(node.input[1]) if len(node.input) > 1 else None
            sizes = sizes or attr_ints(node, "split")
            if not sizes and known is not None:
                sizes = [known // len(outputs)] * len(outputs)
            return list(sizes) if sizes else [None] * len(outputs)
        if op == "Concat" and axis == 1:
            counts = [tracks[n].channels if n in tracks else None for n in node.input]
            return [None if None in counts else sum(c or 0 for c in counts)]
        if op == "Slice":
            axes = index.const_ints(node.input[3]) if len(node.input) > 3 else None
            if axes is not None and 1 in [a % 3 for a in axes]:
                if known is None:
                    return [None]
                at = [a % 3 for a in axes].index(1)
                starts = index.const_ints(node.input[1]) or [0]
                ends = index.const_ints(node.input[2]) or [0]
                steps = (index.const_ints(node.input[4]) if len(node.input) > 4 else None) or []
                step = steps[at] if steps else 1
                return [len(range(known)[starts[at] : ends[at] : step])]
    return [out.channels] * len(outputs)


def _weight_dims(index: GraphIndex, node: onnx.NodeProto) -> list[int]:
    name = node.input[1]
    producer = index.producer.get(name)
    if producer is not None and index.nodes[producer].op_type == "DequantizeLinear":
        name = index.nodes[producer].input[0]  # a QDQ graph: the int8 weight
    weight = index.initializers.get(name)
    if weight is None or len(weight.dims) != 3:
        raise NotStreamable(f"{node.op_type} node {node.name!r} has no 1-D weight initializer")
    return [int(d) for d in weight.dims]


def _set_attr(node: onnx.NodeProto, name: str, values: list[int]) -> None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            node.attribute.remove(attribute)
            break
    node.attribute.append(helper.make_attribute(name, values))


def _stream_conv(
    node: onnx.NodeProto, deps: list[str], src: _Track, build: _Builder, index: GraphIndex
) -> _Track:
    if deps != [node.input[0]]:
        raise NotStreamable(f"Conv node {node.name!r} has a weight on the audio path")
    kernel = attr_ints(node, "kernel_shape")
    dilation = (attr_ints(node, "dilations") or [1])[0]
    stride = (attr_ints(node, "strides") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    if len(kernel) != 1 or stride != 1 or attr_str(node, "auto_pad") not in ("", "NOTSET"):
        raise NotStreamable(f"Conv node {node.name!r} is not a stride-1 1-D convolution")
    span = dilation * (kernel[0] - 1)
    if pads[0] + pads[1] != span:
        raise NotStreamable(f"Conv node {node.name!r} changes the frame count")
    dims = _weight_dims(index, node)
    channels_out = dims[0]
    if span == 0:
        return _Track(src.rate, src.lag, channels_out, src.rank)  # pointwise
    channels_in = dims[1] * attr_int(node, "group", 1)
    quantized = _activation_qdq(index, node.input[0])
    if quantized is None:
        node.input[0] = build.with_state(
            node.input[0], channels_in, span, pads[0], pads[1], rate=src.rate
        )
    else:
        # A QDQ graph's quantized activation: the state joins the float tensor before its
        # QuantizeLinear, so that ONNX Runtime still fuses DQ → Conv → Q into an integer conv.
        joined = build.with_state(
            quantized[0].input[0], channels_in, span, pads[0], pads[1], rate=src.rate
        )
        for original in quantized:
            copy = build.helper.make_node(
                original.op_type,
                [joined, *original.input[1:]],
                [build.name(original.op_type)],
                name=build.name(original.op_type),
            )
            copy.attribute.extend(original.attribute)
            build.nodes.append(copy)
            joined = copy.output[0]
        node.input[0] = joined
    _set_attr(node, "pads", [0, 0])
    return _Track(src.rate, (src.lag or 0) + pads[1], channels_out, src.rank)


def _activation_qdq(index: GraphIndex, name: str) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """(QuantizeLinear, DequantizeLinear) when `name` is a quantized activation, else None."""
    dequantize = index.producer.get(name)
    if dequantize is None or index.nodes[dequantize].op_type != "DequantizeLinear":
        return None
    quantize = index.producer.get(index.nodes[dequantize].input[0])
    if quantize is None or index.nodes[quantize].op_type != "QuantizeLinear":
        return None
    return index.nodes[quantize], index.nodes[dequantize]


def _stream_conv_transpose(
    node: onnx.NodeProto, deps: list[str], src: _Track, build: _Builder, index: GraphIndex
) -> _Track:
    if deps != [node.input[0]]:
        raise NotStreamable(f"ConvTranspose node {node.name!r} has a weight on the audio path")
    kernel = attr_ints(node, "kernel_shape")
    stride = (attr_ints(node, "strides") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    dilation = (attr_ints(node, "dilations") or [1])[0]
    if len(kernel) != 1 or dilation != 1 or attr_str(node, "auto_pad") not in ("", "NOTSET"):
        raise NotStreamable(f"ConvTranspose node {node.name!r} is not a plain 1-D one")
    if attr_ints(node, "output_shape") or any(attr_ints(node, "output_padding")):
        raise NotStreamable(f"ConvTranspose node {node.name!r} has an explicit output shape")
    if kernel[0] - pads[0] - pads[1] != stride:
        raise NotStreamable(f"ConvTranspose node {node.name!r} does not upsample by its stride")
    dims = _weight_dims(index, node)
    channels_in, channels_out = dims[0], dims[1] * attr_int(node, "group", 1)
    # Output o takes inputs i with i·s in [o + p − k + 1, o + p]. Of the unpadded output of
    # concat(the last `kept` inputs, chunk of n), samples [kept·s, (kept + n)·s) are complete;
    # on a first call (nothing kept) from p, where time 0 is; on a last call p more, to the end.
    kept = math.ceil(kernel[0] / stride) - 1
    if kept:
        node.input[0] = build.with_state(node.input[0], channels_in, kept, 0, rate=src.rate)
    _set_attr(node, "pads", [0, 0])
    output = node.output[0]
    raw = build.name("ConvTransposeRaw")
    node.output[0] = raw
    nodes, build.nodes = build.nodes, build.after
    begin = build.node(
        "Add",
        [build.const((kept * stride,)), build.scaled_flag(FIRST_CALL, pads[0] - kept * stride)],
    )
    complete = build.node("Mul", [build.length(node.input[0]), build.const((stride,))])
    end = build.node("Add", [complete, build.scaled_flag(LAST_CALL, pads[0])])
    build.nodes = nodes
    build.after.append(
        build.helper.make_node(
            "Slice",
            [raw, begin, end, build.const((-1,))],
            [output],
            name=build.name("ConvTransposeSlice"),
        )
    )
    return _Track(src.rate * stride, (src.lag or 0) * stride + pads[0], channels_out, src.rank)


def _stream_pointwise(
    node: onnx.NodeProto,
    deps: list[str],
    tracks: dict[str, _Track],
    build: _Builder,
    index: GraphIndex,
) -> _Track:
    op = node.op_type
    sources = [tracks[name] for name in deps]
    rates = {t.rate for t in sources}
    if len(rates) != 1:
        raise NotStreamable(f"{op} node {node.name!r} mixes frame rates {sorted(rates)}")
    rank = max(t.rank for t in sources)
    if op in ("Unsqueeze", "Squeeze"):
        axes = index.const_ints(node.input[1]) if len(node.input) > 1 else attr_ints(node, "axes")
        out_rank = rank + len(axes or []) if op == "Unsqueeze" else rank - len(axes or [])
        if not axes or any(a % max(rank, out_rank) == max(rank, out_rank) - 1 for a in axes):
            raise NotStreamable(f"{op} node {node.name!r} may move the time axis")
        rank = out_rank
    elif op in _AXIS_OPS:
        axis = attr_int(node, "axis", 0)
        if axis % rank == rank - 1:
            raise NotStreamable(f"{op} node {node.name!r} works along the time axis")
    elif op == "Slice":
        axes = index.const_ints(node.input[3]) if len(node.input) > 3 else None
        if axes is None or any(name in tracks for name in node.input[1:]):
            raise NotStreamable(f"Slice node {node.name!r} has non-constant axes")
        if any(a % rank == rank - 1 for a in axes):
            raise NotStreamable(f"Slice node {node.name!r} works along the time axis")
    elif op not in ELEMENTWISE_OPS and op not in _PASS_THROUGH_OPS:
        raise NotStreamable(f"{op} node {node.name!r} may mix distant frames")
    lags = [t.lag for t in sources if t.lag is not None]
    lag = max(lags) if lags else None
    for i, name in enumerate(node.input):
        track = tracks.get(name)
        if track is None or track.lag is None or lag is None:
            continue
        if track.lag < lag:
            if track.channels is None:
                raise NotStreamable(f"{op} node {node.name!r}: unknown channels to delay")
            node.input[i] = build.delayed(name, track.channels, lag - track.lag, track.rate)
    channels = next((t.channels for t in sources if t.channels is not None), None)
    return _Track(rates.pop(), lag, channels, rank)
