"""OpenVINO INT8 for a Piper VITS graph with NNCF: the same layer choice as for ONNX Runtime.

NNCF's post-training `quantize` (MinMax ranges on the calibration feeds, per-channel weights,
FakeQuantize on the activations, fast bias correction) on the nodes of the chosen `QuantScope`;
every other operator is in NNCF's ignored scope. Then `compress_weights` stores the remaining
float weights of the convolutions as INT8 (weight-only), as `ort_int8.store_weights_int8` does.
The IR is saved with FP32 where float remains (no FP16 compression: precision is decided at
run time by INFERENCE_PRECISION_HINT, which utterd keeps at f32).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt
from utterd.quantize.scope import QuantScope

_LOGGER = logging.getLogger(__name__)

Feeds = dict[str, npt.NDArray[Any]]
Tick = Callable[[], None]

# ONNX operator type → the OpenVINO operations the ONNX frontend turns it into.
_OV_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "Conv": ("Convolution", "GroupConvolution"),
    "ConvTranspose": ("ConvolutionBackpropData", "GroupConvolutionBackpropData"),
    "MatMul": ("MatMul",),
}
_OV_ONNX_TYPE: Final = {ov: onnx for onnx, ovs in _OV_TYPES.items() for ov in ovs}


@dataclass(frozen=True)
class OvQuantResult:
    """What `quantize_openvino` made."""

    xml_path: Path
    """The IR's graph (.xml); its weights are in the .bin beside it."""

    bin_path: Path
    """The IR's weights."""

    static_nodes: int
    """Operations quantized statically (FakeQuantize on activations and weights)."""

    method: str
    """One line for the manifest."""


def quantize_openvino(
    source: Path,
    xml_path: Path,
    calibration: Sequence[Feeds],
    scope: QuantScope,
    *,
    tick: Tick | None = None,
) -> OvQuantResult:
    """Quantize the ONNX `source` into an OpenVINO IR at `xml_path` (see the module docstring)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    operations = [
        (op.get_friendly_name(), _OV_ONNX_TYPE[op.get_type_name()])
        for op in model.get_ops()
        if op.get_type_name() in _OV_ONNX_TYPE
    ]
    selected = set(scope.select(operations))
    # Every other operation is ignored, not only the other convolutions and MatMuls: NNCF also
    # puts FakeQuantize on element-wise operations (Add, Multiply, ...), which in the decoder
    # costs the speech as much as quantizing its convolutions.
    ignored = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_friendly_name() not in selected
        and op.get_type_name() not in ("Parameter", "Constant", "Result")
    ]

    def transform(sample: Feeds) -> Feeds:
        if tick is not None:
            tick()
        return sample

    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(calibration), transform),
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric activations, as ORT's UINT8 MinMax
        fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
    )
    quantized = nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_SYM)
    # NNCF records its parameters in the model (the ignored scope alone lists ~2,000 names,
    # 110 kB of XML); nothing reads them at run time and the manifest keeps the method.
    rt_info = quantized.get_rt_info()
    if "nncf" in rt_info:
        del rt_info["nncf"]
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    bin_path = xml_path.with_suffix(".bin")
    method = (
        f"NNCF {nncf.__version__} quantize (MinMax, PERFORMANCE preset, fast bias correction), "
        f"scope {scope.name} ({len(selected)} operations: {scope.description}); "
        f"compress_weights INT8_SYM (weight-only) for the other weights; IR without FP16 "
        f"compression, run with INFERENCE_PRECISION_HINT f32"
    )
    _LOGGER.info(
        "ov_quantized source=%s output=%s static_nodes=%d ignored=%d",
        source,
        xml_path,
        len(selected),
        len(ignored),
    )
    return OvQuantResult(xml_path, bin_path, len(selected), method)
