"""Which layers of a Piper VITS graph get INT8 activations, which only INT8 weights.

Measured on the joe voice (docs/quantization.md has the table): static INT8 (weights and
activations) holds the speech within the voice's natural variation in the flow's convolutions
(1.3 dB log-mel) and the text encoder's attention MatMuls (1.4 dB); it does not in the text
encoder's convolutions (4.0 dB, durations off by 5 %) nor in the HiFi-GAN decoder (8.8-11 dB).
Those keep float activations; their weights are still stored as INT8 (per output channel) and
dequantized at load, which is what brings the file under 30 % of FP32.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class QuantScope:
    """A named choice of the nodes that get static INT8 (activations and weights)."""

    name: str
    """Short name used on the command line and in the manifest."""

    node_patterns: tuple[str, ...]
    """Regular expressions on ONNX node names; a node matching one is statically quantized."""

    op_types: tuple[str, ...]
    """Operator types considered (a matching node of another type stays float)."""

    description: str
    """One line for the manifest and the help text."""

    def select(self, nodes: Iterable[tuple[str, str]]) -> list[str]:
        """Names of the (name, op_type) nodes this scope quantizes."""
        patterns = [re.compile(p) for p in self.node_patterns]
        return [
            name
            for name, op_type in nodes
            if op_type in self.op_types and any(p.search(name) for p in patterns)
        ]


SCOPES: Final[dict[str, QuantScope]] = {
    scope.name: scope
    for scope in (
        QuantScope(
            "flow-attention",
            (r"^/flow/", r"^/enc_p/encoder/attn_layers\.\d+/MatMul"),
            ("Conv", "MatMul"),
            "static INT8 in the flow's convolutions and the text encoder's attention MatMuls",
        ),
        QuantScope(
            "flow",
            (r"^/flow/",),
            ("Conv",),
            "static INT8 in the flow's convolutions only",
        ),
        QuantScope(
            "encoder",
            (r"^/enc_p/", r"^/dp/"),
            ("Conv", "MatMul"),
            "static INT8 in the text encoder and duration predictor (measured: shifts durations)",
        ),
        QuantScope(
            "decoder",
            (r"^/dec/",),
            ("Conv", "ConvTranspose"),
            "static INT8 in the HiFi-GAN decoder (measured: audible error)",
        ),
        QuantScope(
            "all",
            (r".",),
            ("Conv", "ConvTranspose", "MatMul"),
            "static INT8 everywhere it applies (measured: fails the gate)",
        ),
    )
}
DEFAULT_SCOPE: Final = "flow-attention"
"""The default for ONNX Runtime (QDQ)."""

DEFAULT_SCOPES: Final[dict[str, str]] = {"onnxruntime": DEFAULT_SCOPE, "openvino": "flow"}
"""Scope per backend when none is asked for. OpenVINO's NNCF variant of `flow-attention` moved
one validation sentence's duration by 3.5 % (the gate allows 3 %: it failed, full calibration,
2026-11-22), because NNCF quantizes the attention MatMuls' activations differently from ONNX
Runtime; with `flow` alone it measured 0.983 .. 1.018 and 1.51 / 1.66 dB, and was still faster
than FP32 (docs/quantization.md)."""

WEIGHT_ONLY_OP_TYPES: Final = ("Conv", "ConvTranspose")
"""Operators whose remaining float weights are stored as INT8 and dequantized (weight-only)."""


def scope_named(name: str) -> QuantScope:
    """The scope of that name; ValueError listing the known ones."""
    try:
        return SCOPES[name]
    except KeyError:
        raise ValueError(f"unknown scope {name!r}; known: {', '.join(SCOPES)}") from None


def ignored_nodes(nodes: Sequence[tuple[str, str]], scope: QuantScope) -> list[str]:
    """Names of quantizable nodes outside `scope` (for NNCF's ignored scope)."""
    selected = set(scope.select(nodes))
    quantizable = {"Conv", "ConvTranspose", "MatMul"}
    return [name for name, op_type in nodes if op_type in quantizable and name not in selected]
