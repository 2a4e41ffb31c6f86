"""hibari's acoustic model cut in two, so that a piece's first audio waits for a few decoder frames.

hibari's graph runs, in one call: text encoder and durations (per phoneme), the length regulator
and a prosody stack that predicts F0 (per frame), then a decoder: one convolution and eight
ConvNeXt blocks (depthwise convolution, LayerNorm over channels, two pointwise projections) and a
head that gives the five spectral outputs per 12.5 ms frame. The decoder is about half of the
model's time, and it is local in time: frame t depends on the decoder input's frames t ± 27
(the sum of its convolutions' half widths). We cut the graph at the decoder's input:

- **front**: `ids`, `speed` → the decoder input (a [1, channels, frames] tensor) and the outputs
  not made by the decoder (`f0`);
- **decoder**: a window of the decoder input's frames → `lh`, `theta`, `ln`, `lr`, `phi` for
  those frames.

Run on all frames at once, front + decoder give the whole graph's outputs bit for bit (tested).
On a window, the decoder's outputs differ in one thing: its projections are dynamically
quantized, with one activation scale per call (from the tensor's range). So the streaming path
calls the decoder twice per piece: on the first two windows' frames (with their context), then
on all the piece's frames, keeping the ones not decoded yet. Everything after the first call's
frames is the whole model's output bit for bit; those frames have their own scale, which is no
worse: against a float copy of the decoder (weights dequantized) a short call is as close as
the whole-piece call (lh, first 6 frames: 49.0 vs 47.3 dB; first 50: 45.7 vs 44.7 dB; medians
over the 57 pieces of bench/text/prompts_en.txt). With the default windows (4 then 8 frames,
mostly the leading pause) a piece's audio stays > 100 dB above its difference from the whole
model's (min 109.8 dB over those pieces). A piece longer than `stream.LONG_PIECE_FRAMES` is
decoded in blocks with the whole context on both sides, in every path (`stream._BlockFrames`):
each block's scale is its own, and the blocks are as close to the decoder's float arithmetic as
one call on the whole piece (tests/unit/test_hibari_blocks.py).

The cut is found by structure: the decoder is what produces the spectral outputs through
frame-local operators (convolutions, elementwise maths, LayerNorm, transposes, projections by
constant weights); the single tensor where that region starts is the cut. Anything else there
(an attention, a reshape of the time axis, a reduction) makes the cut fail with VoiceLoadError,
and the voice runs the whole graph instead.

The decoder's head is one projection to all five outputs' channels (3005 = 5 × 601), a
transpose of the whole [frames, 3005] result and a split into the outputs: for a 768-frame piece
three 9.2 MB tensors, of which two are alive at once. The cut decoder instead projects and
transposes once per output, from the same quantized input (`separate_heads`): the same integer
products, scales and biases per element, so the outputs are bit for bit the same (tested),
and a long piece's decoder call peaks at about half the memory (768 frames: 27.9 -> 15.6 MiB
in use; 1200 frames: 43.6 -> 24.3 MiB), no slower (docs/benchmarks.md, "Memory and ready
time").

The parts are kept as files beside the optimized graphs (`optimized_dir`), keyed by the source
file's path, size and modification time, so ONNX Runtime can keep their optimized graphs too
and a restart neither cuts nor optimizes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import Feeds, Session, SessionOptions, open_session
from utterd.models.engine.cache_folder import publish_folder
from utterd.models.engine.graph import GraphIndex, attr_int, attr_ints
from utterd.models.errors import SynthesisError, VoiceLoadError
from utterd.models.voice import CancelToken, EngineSettings

if TYPE_CHECKING:
    import onnx

_LOGGER = logging.getLogger(__name__)

SPLIT_FORMAT_VERSION: Final = 2
"""Bumped whenever the cut changes, so that parts cut by older code are cut again."""

_FRONT_FILE: Final = "front.onnx"
_DECODER_FILE: Final = "decoder.onnx"
_INFO_FILE: Final = "split.json"
_FOLDER_PREFIX: Final = "hibari-split"

# Operators through which a frame's value depends only on the same frame (elementwise, or
# mixing channels within a frame). MatMul and MatMulInteger only with a constant weight (a
# projection); Conv is the one operator that reaches other frames, by its kernel.
_FRAME_LOCAL_OPS: Final = frozenset(
    {
        "Add", "Cast", "Clip", "Div", "Erf", "Exp", "Gelu", "LayerNormalization", "Log", "Mul",
        "Relu", "Sigmoid", "Softplus", "Split", "Sqrt", "Sub", "Tanh", "Transpose",
        "MatMul", "MatMulInteger", "Conv",
    }
)  # fmt: skip
# Dynamic quantization of the projections' activations: local except for its one scale per
# tensor (see the module docstring).
_PER_CALL_SCALE_OPS: Final = frozenset({"DynamicQuantizeLinear"})
# What may lie between the head's projection and its transpose: the quantized product's cast,
# scale and bias (or a float projection's bias).
_HEAD_OPS: Final = frozenset({"MatMul", "MatMulInteger", "Cast", "Mul", "Add"})


@dataclass(frozen=True)
class HibariCut:
    """Where the decoder starts and how much context a window of it needs."""

    feature: str
    """The decoder input: the front's first output, the decoder's only input."""

    front_outputs: tuple[str, ...]
    """The front's outputs: `feature`, then the graph outputs the decoder does not make."""

    decoder_outputs: tuple[str, ...]
    """The graph outputs the decoder makes, in graph order."""

    context_frames: int
    """Decoder-input frames each side of a window that its outputs depend on."""

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "front_outputs": list(self.front_outputs),
            "decoder_outputs": list(self.decoder_outputs),
            "context_frames": self.context_frames,
        }

    @staticmethod
    def from_json(data: Any) -> HibariCut:
        return HibariCut(
            str(data["feature"]),
            tuple(str(n) for n in data["front_outputs"]),
            tuple(str(n) for n in data["decoder_outputs"]),
            int(data["context_frames"]),
        )


def find_cut(model: onnx.ModelProto, label: str) -> HibariCut:
    """The decoder region of a hibari graph (see the module docstring); VoiceLoadError if none."""
    index = GraphIndex(model.graph)
    outputs = [o.name for o in model.graph.output]
    graph_inputs = {i.name for i in model.graph.input}

    def is_constant(name: str) -> bool:
        producer = index.producer.get(name)
        return name in index.initializers or (
            producer is not None and index.nodes[producer].op_type == "Constant"
        )

    def region_of(output: str) -> tuple[set[int], set[str]]:
        """Frame-local nodes behind `output`, and the tensors where that region starts."""
        nodes: set[int] = set()
        starts: set[str] = set()
        stack = [output]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or not name or is_constant(name):
                continue
            seen.add(name)
            producer = index.producer.get(name)
            if name in graph_inputs or producer is None:
                starts.add(name)
                continue
            node = index.nodes[producer]
            if node.op_type not in _FRAME_LOCAL_OPS | _PER_CALL_SCALE_OPS:
                starts.add(name)
                continue
            if node.op_type in ("MatMul", "MatMulInteger") and not is_constant(node.input[1]):
                starts.add(name)  # a product of two activations (attention) is not local
                continue
            nodes.add(producer)
            stack.extend(node.input)
        return nodes, starts

    decoder_nodes: set[int] = set()
    starts: set[str] = set()
    decoder_outputs: list[str] = []
    for output in outputs:
        nodes, found = region_of(output)
        if any(index.nodes[i].op_type == "Conv" for i in nodes):
            decoder_outputs.append(output)
            decoder_nodes |= nodes
            starts |= found
    if not decoder_outputs:
        raise VoiceLoadError(f"cannot split {label}: no output is made by a convolutional decoder")
    if len(starts) != 1:
        raise VoiceLoadError(
            f"cannot split {label}: the decoder does not start at one tensor ({sorted(starts)})"
        )
    (feature,) = starts
    if feature in graph_inputs:
        raise VoiceLoadError(f"cannot split {label}: the decoder starts at the graph input")
    context = 0
    for i in decoder_nodes:
        node = index.nodes[i]
        if node.op_type != "Conv":
            continue
        kernel = attr_ints(node, "kernel_shape")
        dilation = (attr_ints(node, "dilations") or [1])[0]
        stride = (attr_ints(node, "strides") or [1])[0]
        pads = attr_ints(node, "pads") or [0, 0]
        span = dilation * (kernel[0] - 1) if len(kernel) == 1 else -1
        if span < 0 or stride != 1 or len(pads) != 2 or pads[0] + pads[1] != span:
            raise VoiceLoadError(
                f"cannot split {label}: convolution {node.name!r} is not a 1-D convolution "
                f"keeping the frame count"
            )
        # The decoder is a chain (residual additions reach no further), so the reaches add up;
        # for parallel branches the sum is an upper bound, which is safe.
        context += max(pads)
    front_outputs = (feature, *(o for o in outputs if o not in decoder_outputs))
    return HibariCut(feature, front_outputs, tuple(decoder_outputs), context)


def cut_model(source: bytes, label: str) -> tuple[bytes, bytes, HibariCut]:
    """(front bytes, decoder bytes, cut) of the hibari graph `source`; VoiceLoadError if it
    cannot be cut."""
    import onnx
    from onnx.utils import Extractor

    try:
        model = onnx.load_from_string(source)
    except Exception as err:  # protobuf's DecodeError and friends: a damaged file
        raise VoiceLoadError(f"cannot split {label}: not an ONNX graph ({err})") from err
    cut = find_cut(model, label)
    # onnx's Extractor keeps the inferred shapes of the tensors it keeps; without them ONNX
    # Runtime optimized the front's f0 branch into other kernels, a few ULPs off the whole
    # graph's f0 (and so off hibari's own audio).
    try:
        extractor = Extractor(model)
        inputs = [i.name for i in model.graph.input]
        front = extractor.extract_model(inputs, list(cut.front_outputs))
        decoder = extractor.extract_model([cut.feature], list(cut.decoder_outputs))
    except Exception as err:  # shape inference or extraction refused the graph
        raise VoiceLoadError(f"cannot split {label}: {err}") from err
    if not separate_heads(decoder):
        _LOGGER.info("hibari_split_heads_kept label=%s (the head is not one projection)", label)
    return front.SerializeToString(), decoder.SerializeToString(), cut


def _scalar_operand(index: GraphIndex, name: str) -> bool:
    """Whether `name` is one value for every channel: a one-element constant, the scale of a
    DynamicQuantizeLinear (a scalar by the operator's definition), or a product of such."""
    tensor = index.initializers.get(name)
    if tensor is not None:
        return bool(math.prod(tensor.dims) == 1)
    producer = index.producer.get(name)
    if producer is None:
        return False
    node = index.nodes[producer]
    if node.op_type == "DynamicQuantizeLinear":
        return bool(name == node.output[1])
    if node.op_type == "Constant":
        values = index.const_ints(name)
        return values is not None and len(values) == 1
    return node.op_type == "Mul" and all(_scalar_operand(index, i) for i in node.input)


def separate_heads(model: onnx.ModelProto) -> bool:
    """Rewrite the decoder's tail `projection → transpose → split into the outputs` as one
    projection and transpose per output (see the module docstring); False, graph untouched,
    when the tail is not that.

    The projection is a MatMul or MatMulInteger by a constant [channels in, channels out]
    weight, followed only by Cast, Mul and Add whose other operand is per channel (a constant
    [channels out], sliced per output) or one value for all (a scalar, shared). Each output gets
    the weight's and the per-channel constants' columns of its channels: every output element is
    the same sum of the same products as before.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    index = GraphIndex(graph)
    outputs = [o.name for o in graph.output]
    split_at = index.producer.get(outputs[0]) if outputs else None
    if split_at is None:
        return False
    split = index.nodes[split_at]
    if split.op_type != "Split" or list(split.output) != outputs:
        return False
    transpose_at = index.producer.get(split.input[0])
    if transpose_at is None or index.consumers.get(split.input[0]) != [split_at]:
        return False
    transpose = index.nodes[transpose_at]
    perm = attr_ints(transpose, "perm")
    axis = attr_int(split, "axis", 0)
    if transpose.op_type != "Transpose" or not perm or perm[axis % len(perm)] != len(perm) - 1:
        return False
    # The chain from the transpose back to the projection; every link feeds only the next.
    chain: list[int] = []
    name = transpose.input[0]
    weight: npt.NDArray[Any] | None = None
    while weight is None:
        at = index.producer.get(name)
        if at is None or len(index.consumers.get(name, [])) != 1:
            return False
        node = index.nodes[at]
        if node.op_type not in _HEAD_OPS:
            return False
        chain.append(at)
        if node.op_type in ("MatMul", "MatMulInteger"):
            tensor = index.initializers.get(node.input[1])
            zero_points = node.input[3:] if node.op_type == "MatMulInteger" else []
            if tensor is None or len(tensor.dims) != 2:
                return False
            if any(z and not _scalar_operand(index, z) for z in zero_points):
                return False
            weight = numpy_helper.to_array(tensor)
        elif node.op_type == "Cast":
            name = node.input[0]
        else:
            inner = [i for i in node.input if index.producer.get(i) is not None and i != ""]
            links = [i for i in inner if not _scalar_operand(index, i)]
            if len(links) != 1:
                return False
            name = links[0]
    channels = int(weight.shape[1])
    sizes = index.const_ints(split.input[1]) if len(split.input) > 1 else None
    if sizes is None:
        if attr_ints(split, "split") or channels % len(outputs):
            return False
        sizes = [channels // len(outputs)] * len(outputs)
    if sum(sizes) != channels:
        return False
    # Per-channel operands are constants [channels]; anything else must be one shared value.
    per_channel: dict[str, npt.NDArray[Any]] = {}
    for at in chain[:-1]:
        node = index.nodes[at]
        for operand in node.input:
            tensor = index.initializers.get(operand)
            if tensor is None or _scalar_operand(index, operand):
                continue
            if list(tensor.dims) != [channels]:
                return False
            per_channel[operand] = numpy_helper.to_array(tensor)
    projection = index.nodes[chain[-1]]
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    low = 0
    for output, size in zip(outputs, sizes, strict=True):
        high = low + size

        def renamed(tensor: str, output: str = output) -> str:
            return f"{tensor}/{output}"

        weight_name = renamed(projection.input[1])
        new_inits.append(
            numpy_helper.from_array(np.ascontiguousarray(weight[:, low:high]), weight_name)
        )
        for operand, values in per_channel.items():
            new_inits.append(
                numpy_helper.from_array(np.ascontiguousarray(values[low:high]), renamed(operand))
            )
        previous = ""
        for at in reversed(chain):
            node = index.nodes[at]
            inputs = []
            for i in node.input:
                if at == chain[-1] and i == projection.input[1]:
                    inputs.append(weight_name)
                elif i in per_channel or i == previous:
                    inputs.append(renamed(i))
                else:
                    inputs.append(i)
            copy = helper.make_node(
                node.op_type,
                inputs,
                [renamed(node.output[0])],
                name=renamed(node.name or node.output[0]),
                domain=node.domain,
            )
            copy.attribute.extend(node.attribute)
            new_nodes.append(copy)
            previous = node.output[0]
        last = helper.make_node(
            "Transpose", [renamed(previous)], [output], name=renamed(transpose.name or "head")
        )
        last.attribute.extend(transpose.attribute)
        new_nodes.append(last)
        low = high
    dropped = {*chain, transpose_at, split_at}
    kept = [node for at, node in enumerate(index.nodes) if at not in dropped]
    used = {i for node in [*kept, *new_nodes] for i in node.input}
    del graph.node[:]
    graph.node.extend([*kept, *new_nodes])  # every input of the new nodes is made before
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend([*inits, *new_inits])
    kept_info = [v for v in graph.value_info if v.name in used]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    return True


def _cache_folder(model: Path, folder: Path) -> Path | None:
    try:
        stat = model.stat()
        where = str(model.resolve())
    except OSError:
        return None
    facts = f"{where}|{stat.st_size}|{stat.st_mtime_ns}|{SPLIT_FORMAT_VERSION}"
    key = hashlib.sha256(facts.encode()).hexdigest()[:16]
    return folder / f"{_FOLDER_PREFIX}-{model.stem}-{key}"


def _read_cache(folder: Path) -> tuple[Path, Path, HibariCut] | None:
    front, decoder = folder / _FRONT_FILE, folder / _DECODER_FILE
    try:
        data = json.loads((folder / _INFO_FILE).read_text(encoding="utf-8"))
        cut = HibariCut.from_json(data["cut"])
        sizes = [front.stat().st_size, decoder.stat().st_size]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        _LOGGER.warning("hibari_split_cache_unusable folder=%s reason=%r", folder, err)
        return None
    if sizes != data.get("sizes"):
        _LOGGER.warning("hibari_split_cache_truncated folder=%s", folder)
        return None
    return front, decoder, cut


def _write_cache(folder: Path, front: bytes, decoder: bytes, cut: HibariCut) -> bool:
    """Write the parts and their info as `folder`; False when it cannot be written (the parts
    are then used from memory)."""
    info = {"cut": cut.to_json(), "sizes": [len(front), len(decoder)]}
    try:
        publish_folder(
            folder,
            [
                (_FRONT_FILE, front),
                (_DECODER_FILE, decoder),
                (_INFO_FILE, json.dumps(info, indent=2).encode("utf-8")),
            ],
        )
    except OSError as err:
        _LOGGER.warning("hibari_split_cache_write_failed folder=%s reason=%r", folder, err)
        return False
    return True


def split_parts(
    model: Path, cache_dir: Path | None, label: str
) -> tuple[Path | bytes, Path | bytes, HibariCut]:
    """The parts of `model` (files in `cache_dir` where possible, else bytes) and the cut.

    Raises VoiceLoadError when the model cannot be read or cut.
    """
    folder = _cache_folder(model, cache_dir) if cache_dir is not None else None
    if folder is not None:
        found = _read_cache(folder)
        if found is not None:
            return found
    try:
        source = model.read_bytes()
    except OSError as err:
        raise VoiceLoadError(f"cannot split {model}: {err.strerror or err}") from err
    front, decoder, cut = cut_model(source, str(model))
    if folder is not None and _write_cache(folder, front, decoder, cut):
        _LOGGER.info("hibari_split_cached folder=%s context_frames=%d", folder, cut.context_frames)
        return folder / _FRONT_FILE, folder / _DECODER_FILE, cut
    return front, decoder, cut


def forget_parts(model: Path, cache_dir: Path | None) -> None:
    """Drop the cached parts of `model` (they could not be opened)."""
    folder = _cache_folder(model, cache_dir) if cache_dir is not None else None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class SplitSession(Session):
    """hibari's acoustic model as front + decoder sessions.

    `run` runs both on all frames: the whole graph's outputs, bit for bit. `features` and
    `decode` let the streaming path decode a window of frames at a time.
    """

    def __init__(self, front: Session, decoder: Session, cut: HibariCut) -> None:
        self._front = front
        self._decoder = decoder
        self.cut = cut
        self.label = front.label
        self.backend = front.backend

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._front.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return (*self.cut.decoder_outputs, *self.cut.front_outputs[1:])

    @property
    def context_frames(self) -> int:
        return self.cut.context_frames

    def features(
        self, feeds: Feeds, cancel: CancelToken | None = None
    ) -> tuple[npt.NDArray[Any], dict[str, npt.NDArray[Any]]]:
        """The front's run: (decoder input [1, channels, frames], the other outputs by name)."""
        outputs = self._front.run(self.cut.front_outputs, feeds, cancel)
        feature = outputs[0]
        if feature.ndim != 3:
            raise SynthesisError(
                f"{self.label}: decoder input {self.cut.feature!r} has shape {feature.shape}, "
                f"expected [1, channels, frames]"
            )
        return feature, dict(zip(self.cut.front_outputs[1:], outputs[1:], strict=True))

    def decode(
        self,
        feature: npt.NDArray[Any],
        start: int,
        stop: int,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        """The decoder's outputs for frames [start, stop) of `feature` (frames on the last axis),
        run on those frames with `context_frames` of context each side where the piece has them."""
        frames = int(feature.shape[-1])
        if not 0 <= start < stop <= frames:
            raise SynthesisError(
                f"{self.label}: cannot decode frames [{start}, {stop}) of {frames}"
            )
        low = max(0, start - self.cut.context_frames)
        high = min(frames, stop + self.cut.context_frames)
        window = (
            feature if (low, high) == (0, frames) else np.ascontiguousarray(feature[..., low:high])
        )
        outputs = self._decoder.run(self.cut.decoder_outputs, {self.cut.feature: window}, cancel)
        decoded: list[npt.NDArray[Any]] = []
        for output in outputs:
            if output.shape[-1] != high - low:
                raise SynthesisError(
                    f"{self.label}: the decoder gave {output.shape[-1]} frames for {high - low}"
                )
            decoded.append(output[..., start - low : stop - low])
        return decoded

    def run(
        self,
        output_names: Sequence[str] | None,
        feeds: Feeds,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        feature, others = self.features(feeds, cancel)
        decoded = self.decode(feature, 0, int(feature.shape[-1]), cancel)
        by_name = {**dict(zip(self.cut.decoder_outputs, decoded, strict=True)), **others}
        wanted = self.output_names if output_names is None else output_names
        try:
            return [by_name[name] for name in wanted]
        except KeyError as err:
            raise SynthesisError(f"{self.label}: no output {err.args[0]!r}") from err

    def close(self) -> None:
        self._front.close()
        self._decoder.close()

    def runtime_info(self) -> dict[str, Any]:
        return {
            **self._front.runtime_info(),
            "decoder_windows": True,
            "decoder_context_frames": self.cut.context_frames,
        }


def open_split(
    model: Path, engine: EngineSettings, *, label: str, options: SessionOptions
) -> SplitSession:
    """Open `model` as front + decoder (parts cached in `options.optimized_cache_dir`).

    Raises VoiceLoadError when the graph cannot be cut or its parts cannot be opened; cached
    parts that fail to open are dropped and cut again once.
    """
    cache = options.optimized_cache_dir
    for attempt in (1, 2):
        front_part, decoder_part, cut = split_parts(model, cache, label)
        try:
            front = open_session(front_part, engine, label=f"{label} front", options=options)
        except VoiceLoadError:
            if attempt == 1 and isinstance(front_part, Path):
                forget_parts(model, cache)
                continue
            raise
        try:
            decoder = open_session(decoder_part, engine, label=f"{label} decoder", options=options)
        except VoiceLoadError:
            front.close()
            if attempt == 1 and isinstance(decoder_part, Path):
                forget_parts(model, cache)
                continue
            raise
        session = SplitSession(front, decoder, cut)
        session.label = label
        return session
    raise AssertionError("unreachable")  # pragma: no cover
