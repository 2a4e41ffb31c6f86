"""Graph surgery for the split: extract a part, rename tensors, add the decoder's inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from utterd.models.engine.graph import GraphIndex
from utterd.models.errors import VoiceLoadError
from utterd.models.piper.split_info import TRIM

if TYPE_CHECKING:
    import onnx

__all__ = ["add_trim", "extract", "mask_from_latent", "rename", "set_float_type"]


def extract(
    model: onnx.ModelProto,
    index: GraphIndex,
    inputs: list[str],
    outputs: list[str],
    label: str,
    part: str,
) -> onnx.ModelProto:
    """The subgraph computing `outputs` from `inputs` (and initializers), as a new model.

    Unlike `onnx.utils.Extractor` this needs no value_info for the cut tensors and checks that
    the part needs nothing beyond its inputs (else the cut is in the wrong place).
    """
    from onnx import helper

    stop = set(inputs)
    keep: set[int] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in stop:
            continue
        producer = index.producer.get(name)
        if producer is None or producer in keep:
            continue
        keep.add(producer)
        stack.extend(n for n in index.nodes[producer].input if n)
    nodes = [index.nodes[i] for i in sorted(keep)]

    available = stop | set(index.initializers)
    for node in nodes:
        available.update(n for n in node.output if n)
    needed = {n for node in nodes for n in node.input if n}
    missing = sorted(needed - available)
    stock_inputs = {i.name for i in model.graph.input}
    if missing:
        raise VoiceLoadError(
            f"cannot split {label}: the {part} part needs {missing} beyond its inputs {inputs}"
        )
    stray = sorted((needed & stock_inputs) - stop)
    if stray:
        raise VoiceLoadError(f"cannot split {label}: the {part} part depends on inputs {stray}")

    value_infos: dict[str, onnx.ValueInfoProto] = {vi.name: vi for vi in model.graph.input}
    value_infos.update({vi.name: vi for vi in model.graph.output})

    def io(name: str) -> onnx.ValueInfoProto:
        if name in value_infos:
            return value_infos[name]
        # Internal tensors of the stock graph: float32, shape left open (set where it matters).
        value_info: onnx.ValueInfoProto = helper.make_tensor_value_info(name, 1, None)
        return value_info

    initializers = [index.initializers[n] for n in sorted(needed & set(index.initializers))]
    graph = helper.make_graph(
        nodes,
        f"{model.graph.name or 'vits'}-{part}",
        [io(n) for n in inputs],
        [io(n) for n in outputs],
        initializer=initializers,
    )
    part_model = helper.make_model(
        graph,
        ir_version=model.ir_version,
        opset_imports=list(model.opset_import),
        producer_name="utterd.models.piper.vits_split",
    )
    return part_model


def rename(graph: onnx.GraphProto, names: Mapping[str, str]) -> None:
    """Rename tensors everywhere they appear in `graph`."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
        for i, name in enumerate(node.output):
            if name in names:
                node.output[i] = names[name]
    for value_info in (*graph.input, *graph.output, *graph.value_info):
        if value_info.name in names:
            value_info.name = names[value_info.name]


def mask_from_latent(graph: onnx.GraphProto, prior_name: str, mask_name: str) -> None:
    """Replace the decoder's `y_mask` input with ones shaped [batch, 1, frames] like the latent.

    Within one sentence the mask is all ones (batch of one, no padding), so a window needs none.
    """
    from onnx import TensorProto, helper

    kept_inputs = [vi for vi in graph.input if vi.name != mask_name]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    prefix = "utterd_mask"
    graph.initializer.extend(
        [
            helper.make_tensor(f"{prefix}_batch_axis", TensorProto.INT64, [1], [0]),
            helper.make_tensor(f"{prefix}_time_axis", TensorProto.INT64, [1], [2]),
            helper.make_tensor(f"{prefix}_one", TensorProto.INT64, [1], [1]),
        ]
    )
    nodes = [
        helper.make_node("Shape", [prior_name], [f"{prefix}_shape"], name=f"{prefix}/Shape"),
        helper.make_node(
            "Gather",
            [f"{prefix}_shape", f"{prefix}_batch_axis"],
            [f"{prefix}_batch"],
            name=f"{prefix}/GatherBatch",
            axis=0,
        ),
        helper.make_node(
            "Gather",
            [f"{prefix}_shape", f"{prefix}_time_axis"],
            [f"{prefix}_frames"],
            name=f"{prefix}/GatherFrames",
            axis=0,
        ),
        helper.make_node(
            "Concat",
            [f"{prefix}_batch", f"{prefix}_one", f"{prefix}_frames"],
            [f"{prefix}_mask_shape"],
            name=f"{prefix}/Concat",
            axis=0,
        ),
        helper.make_node(
            "ConstantOfShape",
            [f"{prefix}_mask_shape"],
            [mask_name],
            name=f"{prefix}/Ones",
            value=helper.make_tensor(f"{prefix}_value", TensorProto.FLOAT, [1], [1.0]),
        ),
    ]
    _prepend_nodes(graph, nodes)


def add_trim(graph: onnx.GraphProto, generator_input: str) -> None:
    """Insert `Slice(generator_input, trim[0], frames − trim[1])` on the time axis.

    The flow runs on the window plus its own context; the generator only needs the window plus
    the generator's context, so the flow's extra frames are dropped in the graph, before the
    (costlier) generator runs on them.
    """
    from onnx import TensorProto, helper

    prefix = "utterd_trim"
    trimmed = f"{prefix}_latent"
    graph.input.append(helper.make_tensor_value_info(TRIM, TensorProto.INT64, [2]))
    graph.initializer.extend(
        [
            helper.make_tensor(f"{prefix}_left_start", TensorProto.INT64, [1], [0]),
            helper.make_tensor(f"{prefix}_left_end", TensorProto.INT64, [1], [1]),
            helper.make_tensor(f"{prefix}_right_end", TensorProto.INT64, [1], [2]),
            helper.make_tensor(f"{prefix}_axis0", TensorProto.INT64, [1], [0]),
            helper.make_tensor(f"{prefix}_time_axis", TensorProto.INT64, [1], [2]),
        ]
    )
    consumers = [n for n in graph.node if generator_input in n.input]
    for node in consumers:
        for i, name in enumerate(node.input):
            if name == generator_input:
                node.input[i] = trimmed
    slice_nodes = [
        helper.make_node(
            "Slice",
            [TRIM, f"{prefix}_left_start", f"{prefix}_left_end", f"{prefix}_axis0"],
            [f"{prefix}_left"],
            name=f"{prefix}/Left",
        ),
        helper.make_node(
            "Slice",
            [TRIM, f"{prefix}_left_end", f"{prefix}_right_end", f"{prefix}_axis0"],
            [f"{prefix}_right"],
            name=f"{prefix}/Right",
        ),
        helper.make_node("Shape", [generator_input], [f"{prefix}_shape"], name=f"{prefix}/Shape"),
        helper.make_node(
            "Gather",
            [f"{prefix}_shape", f"{prefix}_time_axis"],
            [f"{prefix}_frames"],
            name=f"{prefix}/GatherFrames",
            axis=0,
        ),
        helper.make_node(
            "Sub", [f"{prefix}_frames", f"{prefix}_right"], [f"{prefix}_end"], name=f"{prefix}/End"
        ),
        helper.make_node(
            "Slice",
            [generator_input, f"{prefix}_left", f"{prefix}_end", f"{prefix}_time_axis"],
            [trimmed],
            name=f"{prefix}/Slice",
        ),
    ]
    # Insert right after the node producing generator_input, keeping topological order.
    nodes = list(graph.node)
    at = next(i for i, n in enumerate(nodes) if generator_input in n.output) + 1
    del graph.node[:]
    graph.node.extend(nodes[:at] + slice_nodes + nodes[at:])


def _prepend_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)


def set_float_type(
    values: Iterable[onnx.ValueInfoProto], name: str, dims: Sequence[int | str]
) -> None:
    """Declare tensor `name` float32 with `dims` (a str is a dynamic axis, e.g. `frames`)."""
    from onnx import TensorProto, helper

    for value_info in values:
        if value_info.name == name:
            value_info.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
