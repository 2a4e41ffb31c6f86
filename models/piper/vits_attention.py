"""Banded relative attention: the VITS text encoder without its (2·length − 1)-wide detour.

VITS's text encoder (`attentions.MultiHeadAttention` with `window_size` w, 4 in Piper) adds a
relative-position term to each attention layer. As exported, that term is computed on a
[length, 2·length − 1] matrix: the 2w + 1 learned relative embeddings are zero-padded to
2·length − 1 positions, multiplied by every query, and the product is skewed to [length, length]
through pads and reshapes; on the value side the attention weights are skewed the other way to
[length, 2·length − 1] and multiplied by zero-padded value embeddings. Only 2w + 1 columns of
those matrices are ever non-zero. On a 600-phoneme sentence that detour is about a third of the
text encoder's time, and the text encoder is what a long sentence waits for before its first
audio.

`band_relative_attention` rewrites each such layer to work on the 2w + 1 columns that matter:

- keys: `q @ E_kᵀ` gives [length, 2w + 1]; a skew (pad right by length, flatten, drop length
  values, view as rows of length + 2w) places column r of row i at column i + r − w;
- values: pad the attention weights by w each side, flatten, pad by length, view as rows of
  length + 2w + 1 and keep 2w + 1 columns: column r of row i is the weight at i + r − w; that
  band times E_v is the relative term.

The products are the same numbers (the dropped terms are exact zeros: query · 0 and weight · 0);
only the order of a float sum may change, which moves the encoder's outputs at the 1e-6 level.
In a QDQ (INT8) graph the quantize/dequantize pairs around the embeddings and the products stay
where they are, with the same scales: zero is exact in every such pair. (`vits_split` applies the
rewrite to float graphs only: see the measurement there.)

A layer is rewritten only when its structure is the one described (an embedding initializer
[1, 2w + 1, d] reaching a MatMul through Pad/Slice/Unsqueeze/Transpose, a data path of
Pad/Reshape/Slice on the other side); anything else is left as exported.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import onnx

_LOGGER = logging.getLogger(__name__)

_EMBEDDING_PATH_OPS: Final = frozenset({"Pad", "Slice", "Unsqueeze", "Transpose"})
_SKEW_OPS: Final = frozenset({"Pad", "Reshape", "Slice"})
_PREFIX: Final = "utterd_band"


@dataclass
class _Graph:
    """Producer and consumer maps of a graph being edited (kept current by the edits below)."""

    graph: onnx.GraphProto

    def __post_init__(self) -> None:
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in self.graph.node:
            self._index(node)

    def _index(self, node: onnx.NodeProto) -> None:
        for name in node.output:
            if name:
                self.producer[name] = node
        for slot, name in enumerate(node.input):
            if name:
                self.consumers[name].append((node, slot))

    def add(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        node = self.graph.node.add()
        node.CopyFrom(helper.make_node(op, inputs, [name], name=name, **attrs))
        self._index(node)
        return name

    def const(self, name: str, values: list[int]) -> str:
        from onnx import helper

        if name not in self.initializers:
            tensor = helper.make_tensor(name, 7, [len(values)], values)  # 7: INT64
            self.graph.initializer.append(tensor)
            self.initializers[name] = tensor
        return name

    def matrix(self, embedding: onnx.TensorProto, transposed: bool) -> str:
        """Add the [1, 1, ...] matrix of a relative embedding (see `_embedding_matrix`)."""
        tensor = _embedding_matrix(embedding, transposed)
        self.graph.initializer.append(tensor)
        self.initializers[tensor.name] = tensor
        return str(tensor.name)

    def flatten(self, tensor: str, prefix: str) -> str:
        """[b, h, rows, cols] → [b, h, rows · cols]."""
        return self.add("Reshape", [tensor, self.const(f"{_PREFIX}/flat3", [0, 0, -1])], prefix)

    def rows(self, tensor: str, length: str, prefix: str) -> str:
        """[b, h, n] → [b, h, length, n / length]."""
        shape = self.add(
            "Concat",
            [
                self.const(f"{_PREFIX}/zeros2", [0, 0]),
                length,
                self.const(f"{_PREFIX}/minus1", [-1]),
            ],
            f"{prefix}/shape",
            axis=0,
        )
        return self.add("Reshape", [tensor, shape], f"{prefix}/rows")

    def set_input(self, node: onnx.NodeProto, slot: int, name: str) -> None:
        old = node.input[slot]
        self.consumers[old] = [(n, s) for n, s in self.consumers[old] if n is not node or s != slot]
        node.input[slot] = name
        self.consumers[name].append((node, slot))

    def data_consumers(self, name: str) -> list[tuple[onnx.NodeProto, int]]:
        """Consumers that read the values of `name` (not only its shape)."""
        return [
            (n, s) for n, s in self.consumers.get(name, []) if n.op_type not in ("Shape", "Size")
        ]


def band_relative_attention(graph: onnx.GraphProto) -> int:
    """Rewrite every relative-attention layer of `graph` in place; returns how many were."""
    g = _Graph(graph)
    rewritten = 0
    for number, node in enumerate(list(graph.node)):
        if node.op_type != "MatMul":
            continue
        b_value, b_sink = _unwrap_qdq(g, node, 1)
        found = _embedding(g, b_value)
        if found is None:
            continue
        embedding, transposed = found
        try:
            if transposed:
                _rewrite_keys(g, node, b_sink, embedding, f"{_PREFIX}/{number}")
            else:
                _rewrite_values(g, node, b_sink, embedding, f"{_PREFIX}/{number}")
        except _NoMatch as why:
            _LOGGER.debug("banded attention: %s left as exported: %s", node.name, why)
            continue
        rewritten += 1
    if rewritten:
        _prune(graph)
        _toposort(graph)
    return rewritten


class _NoMatch(Exception):
    pass


def _unwrap_qdq(
    g: _Graph, node: onnx.NodeProto, slot: int
) -> tuple[str, tuple[onnx.NodeProto, int]]:
    """The float tensor behind `node.input[slot]` (through one Quantize→Dequantize pair) and the
    (node, slot) where a replacement for it must be plugged in."""
    name = node.input[slot]
    dq = g.producer.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = g.producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and len(g.consumers[q.output[0]]) == 1:
            return q.input[0], (q, 0)
    return name, (node, slot)


def _after_qdq(g: _Graph, name: str) -> str:
    """`name` after the Quantize→Dequantize pair it alone feeds, if any."""
    consumers = g.consumers.get(name, [])
    if len(consumers) == 1 and consumers[0][0].op_type == "QuantizeLinear":
        q = consumers[0][0]
        dq = g.consumers.get(q.output[0], [])
        if len(dq) == 1 and dq[0][0].op_type == "DequantizeLinear":
            return str(dq[0][0].output[0])
    return name


def _embedding(g: _Graph, name: str) -> tuple[onnx.NodeProto, bool] | None:
    """(embedding initializer, whether a Transpose was on the way) if `name` is a zero-padded,
    sliced relative embedding; None otherwise."""
    transposed = False
    padded = False
    seen = 0
    while name not in g.initializers:
        node = g.producer.get(name)
        if node is None or node.op_type not in _EMBEDDING_PATH_OPS or seen > 8:
            return None
        transposed |= node.op_type == "Transpose"
        padded |= node.op_type == "Pad"
        name = node.input[0]
        seen += 1
    tensor = g.initializers[name]
    dims = list(tensor.dims)
    if not padded or len(dims) != 3 or dims[0] != 1 or dims[1] % 2 != 1 or dims[1] < 3:
        return None
    return tensor, transposed


def _embedding_matrix(tensor: onnx.TensorProto, transposed: bool) -> onnx.TensorProto:
    from onnx import numpy_helper

    values = numpy_helper.to_array(tensor)[0]  # [2w + 1, d]
    matrix = values.T if transposed else values
    return numpy_helper.from_array(matrix[None, None].copy(), f"{tensor.name}/{_PREFIX}")


def _length(g: _Graph, tensor: str, prefix: str) -> str:
    """int64 [1]: dimension 2 (the sequence length) of a rank-4 tensor."""
    return g.add("Shape", [tensor], f"{prefix}/length", start=2, end=3)


def _rewrite_keys(
    g: _Graph,
    matmul: onnx.NodeProto,
    b_sink: tuple[onnx.NodeProto, int],
    embedding: onnx.TensorProto,
    prefix: str,
) -> None:
    """q @ E_kᵀ on the band, then skewed to [length, length] for the score sum."""
    band = _after_qdq(g, matmul.output[0])
    end = _follow_skew_down(g, band)
    width = int(embedding.dims[1])
    half = width // 2
    matrix = g.matrix(embedding, transposed=True)

    length = _length(g, band, prefix)
    pads = g.add(
        "Concat", [g.const(f"{_PREFIX}/zeros7", [0] * 7), length], f"{prefix}/pads", axis=0
    )
    padded = g.add("Pad", [band, pads], f"{prefix}/padded")  # [b, h, l, 2w+1+l]
    flat = g.flatten(padded, f"{prefix}/flat")
    row = g.add("Add", [length, g.const(f"{_PREFIX}/k{width - 1}", [width - 1])], f"{prefix}/row")
    keep = g.add("Mul", [length, row], f"{prefix}/keep")
    cut = g.add(
        "Slice",
        [flat, g.const(f"{_PREFIX}/zero", [0]), keep, g.const(f"{_PREFIX}/axis2", [2])],
        f"{prefix}/cut",
    )
    rows = g.rows(cut, length, prefix)  # [b, h, l, l + 2w]
    stop = g.add("Add", [length, g.const(f"{_PREFIX}/k{half}", [half])], f"{prefix}/stop")
    scores = g.add(
        "Slice",
        [rows, g.const(f"{_PREFIX}/k{half}", [half]), stop, g.const(f"{_PREFIX}/axis3", [3])],
        f"{prefix}/scores",
    )
    g.set_input(b_sink[0], b_sink[1], matrix)
    for node, slot in list(g.consumers[end]):
        g.set_input(node, slot, scores)


def _rewrite_values(
    g: _Graph,
    matmul: onnx.NodeProto,
    b_sink: tuple[onnx.NodeProto, int],
    embedding: onnx.TensorProto,
    prefix: str,
) -> None:
    """The attention weights' band [length, 2w + 1] times E_v."""
    weights, a_sink = _unwrap_qdq(g, matmul, 0)
    attention = _follow_skew_up(g, weights)
    width = int(embedding.dims[1])
    half = width // 2
    matrix = g.matrix(embedding, transposed=False)

    length = _length(g, attention, prefix)
    sides = g.const(f"{_PREFIX}/sides{half}", [0, 0, 0, half, 0, 0, 0, half])
    padded = g.add("Pad", [attention, sides], f"{prefix}/padded")  # [b, h, l, l + 2w]
    flat = g.flatten(padded, f"{prefix}/flat")
    pads = g.add(
        "Concat", [g.const(f"{_PREFIX}/zeros5", [0] * 5), length], f"{prefix}/pads", axis=0
    )
    longer = g.add("Pad", [flat, pads], f"{prefix}/longer")  # [b, h, l · (l + 2w + 1)]
    rows = g.rows(longer, length, prefix)  # [b, h, l, l + 2w + 1]
    band = g.add(
        "Slice",
        [rows, g.const(f"{_PREFIX}/zero", [0]), g.const(f"{_PREFIX}/k{width}", [width]),
         g.const(f"{_PREFIX}/axis3", [3])],
        f"{prefix}/band",
    )  # fmt: skip
    g.set_input(b_sink[0], b_sink[1], matrix)
    g.set_input(a_sink[0], a_sink[1], band)


def _follow_skew_down(g: _Graph, name: str) -> str:
    """From the banded product, the end of the exported skew chain (Pad/Reshape/Slice on the data
    path) whose consumers take the [length, length] scores."""

    def step(name: str) -> str | None:
        consumers = g.data_consumers(name)
        if len(consumers) != 1:
            raise _NoMatch(f"{name} has {len(consumers)} consumers")
        node, slot = consumers[0]
        return str(node.output[0]) if node.op_type in _SKEW_OPS and slot == 0 else None

    return _follow_skew(name, step, "after the relative keys")


def _follow_skew_up(g: _Graph, name: str) -> str:
    """From the relative weights, back through the exported skew chain to the attention weights."""

    def step(name: str) -> str | None:
        node = g.producer.get(name)
        return str(node.input[0]) if node is not None and node.op_type in _SKEW_OPS else None

    return _follow_skew(name, step, "before the relative values")


def _follow_skew(name: str, step: Callable[[str], str | None], where: str) -> str:
    """Walk `step` from `name` to the chain's last tensor: 3 to 12 skew steps, else no match."""
    for steps in range(13):
        following = step(name)
        if following is None:
            if steps < 3:
                raise _NoMatch(f"only {steps} skew steps {where}")
            return name
        name = following
    raise _NoMatch("the skew chain is longer than expected")


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads, and initializers no node reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` so every node comes after the producers of its inputs (Kahn's
    algorithm; nodes keep their exported order where the data allows)."""
    import heapq

    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        sources = {producer[name] for name in node.input if name in producer}
        waiting[i] = len(sources)
        for source in sources:
            readers[source].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for reader in readers[i]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("the rewritten graph has a cycle")
    copies = [_copy(nodes[i]) for i in order]
    del graph.node[:]
    graph.node.extend(copies)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    return copy
