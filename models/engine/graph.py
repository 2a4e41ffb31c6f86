"""Reading ONNX graphs: who produces and consumes each tensor, constants, node attributes.

Shared by the families that cut their graphs into streaming parts. onnx is imported lazily:
only a split (done once per model) needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

__all__ = ["GraphIndex", "attr", "attr_int", "attr_ints", "attr_str"]


class GraphIndex:
    """Producers, consumers and constant values of a graph's tensors."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.nodes = list(graph.node)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = index
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(index)
        self.initializers = {init.name: init for init in graph.initializer}
        self._numpy_helper = numpy_helper

    def const_ints(self, name: str) -> list[int] | None:
        """The integer values of an initializer or a `Constant` node output, else None."""
        if not name:
            return None
        tensor = self.initializers.get(name)
        if tensor is None:
            index = self.producer.get(name)
            if index is None or self.nodes[index].op_type != "Constant":
                return None
            for attr in self.nodes[index].attribute:
                if attr.name == "value":
                    tensor = attr.t
            if tensor is None:
                return None
        return [int(v) for v in self._numpy_helper.to_array(tensor).reshape(-1)]

    def downstream(self, start: str) -> set[str]:
        """Every tensor whose value depends on `start` (nodes are in topological order)."""
        reached = {start}
        for node in self.nodes:
            if any(name in reached for name in node.input):
                reached.update(name for name in node.output if name)
        return reached


def attr(node: onnx.NodeProto, name: str) -> Any:
    """The value of the node's attribute `name`; None when it has none."""
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def attr_ints(node: onnx.NodeProto, name: str) -> list[int]:
    """An integer-list attribute; empty when absent."""
    value = attr(node, name)
    return [int(v) for v in value] if value is not None else []


def attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    """An integer attribute; `default` when absent."""
    value = attr(node, name)
    return int(value) if value is not None else default


def attr_str(node: onnx.NodeProto, name: str) -> str:
    """A string attribute; empty when absent."""
    value = attr(node, name)
    return value.decode() if isinstance(value, bytes) else str(value or "")
