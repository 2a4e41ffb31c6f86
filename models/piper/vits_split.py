"""Cut a stock Piper VITS `.onnx` graph into an encoder part and a windowed decoder part.

The stock graph runs text encoder → stochastic duration predictor → length regulator → prior
sample `z_p` → normalizing flow → HiFi-GAN generator, all in one call, so the first sample of a
sentence exists only once the whole sentence is synthesized. The flow and the generator are stacks
of 1-D convolutions with a bounded receptive field, so they can run on a window of frames with a
little context on each side and give the same samples as the whole-sentence run. We cut:

- **encoder**: the stock inputs (`input`, `input_lengths`, `scales`, `sid` for multi-speaker
  voices) → `latent` [1, C, frames] and `durations` [1, 1, phonemes] (frames per phoneme id);
- **decoder**: a window of `latent` frames → `audio`, shaped like the stock output
  ([1, 1, 1, frames · hop] for Piper).

Where the cut lies is a choice (`flow_in_decoder`). By default the flow goes to the decoder side:
`latent` is the prior sample `z_p` and the decoder graph runs flow + generator, with a `trim` input
[left, right] that drops the flow's context frames before the generator. The flow costs about as
much as the text encoder on a whole sentence, so leaving it in the encoder would double the time to
first audio of long sentences. With `flow_in_decoder=False`, `latent` is the generator's own input
(`z` after the flow) and the decoder graph is the generator alone.

Everything is found by graph structure, not by node names (old and new Piper exports name nodes
differently): the generator starts at the convolution before its first `ConvTranspose`, the
prior sample is the sum fed by the graph's last `RandomNormalLike`, and the durations are the one
`Ceil` output (as in `piper.patch_voice_with_alignment`). The receptive fields of both windowed
stages are computed from the convolution attributes; an op that could mix frames from afar (an
attention, a reshape of the time axis, a reduction) makes the split fail with `VoiceLoadError`.

Split models are cached in a folder, keyed by the source file's sha256, so the cut (about a
second of protobuf work for a 60 MB model, and the `onnx` package) happens once per model, not at
every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from utterd.models.engine.cache_folder import publish_folder
from utterd.models.engine.graph import GraphIndex, attr_int, attr_ints, attr_str
from utterd.models.errors import VoiceLoadError
from utterd.models.piper.vits_attention import band_relative_attention

if TYPE_CHECKING:
    import onnx

_LOGGER = logging.getLogger(__name__)

SPLIT_FORMAT_VERSION: Final = 3
"""Bumped whenever the cut changes, so that cached split models from older code are redone
(2: the encoder's relative attention is banded, `vits_attention.py`; 3: float encoders only)."""

LATENT: Final = "latent"
DURATIONS: Final = "durations"
TRIM: Final = "trim"
AUDIO: Final = "audio"
SPEAKER_INPUT: Final = "sid"

_STOCK_INPUTS: Final = ("input", "input_lengths", "scales")
_INFO_FILE: Final = "split.json"
_ENCODER_FILE: Final = "encoder.onnx"
_DECODER_FILE: Final = "decoder.onnx"
_HASH_BLOCK_BYTES: Final = 1 << 20

# Ops through which a value at time t depends only on values at time t (elementwise); every
# input that depends on the latent must have the same frame rate.
_ELEMENTWISE_OPS: Final = frozenset(
    {
        "Abs", "Add", "Cast", "Clip", "Div", "Dropout", "Erf", "Exp", "Identity", "LeakyRelu",
        "Log", "Max", "Min", "Mul", "Neg", "Pow", "Relu", "Sigmoid", "Softplus", "Sqrt", "Sub",
        "Tanh", "Where",
    }
)  # fmt: skip
# Ops of a quantized graph (QDQ, or operators with integer arithmetic).
_QUANTIZED_OPS: Final = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "QLinearMatMul", "ConvInteger", "MatMulInteger",
    }
)  # fmt: skip
# Ops whose output depends on the shape of their input, never on its values.
_SHAPE_ONLY_OPS: Final = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class SplitInfo:
    """What the split found in the stock graph, and the names of the split graphs' tensors."""

    source_sha256: str
    """sha256 of the stock `.onnx` file the parts were cut from (the cache key)."""

    flow_in_decoder: bool
    """True: `latent` is the prior sample `z_p` and the decoder runs flow + generator."""

    latent_channels: int
    """Channels C of the latent frames [1, C, frames]."""

    hop_length: int
    """Audio samples per latent frame (product of the generator's upsampling strides)."""

    decoder_context_frames: int
    """Frames of context each side of a window that make the generator's output exact."""

    flow_context_frames: int
    """Extra frames the flow needs each side (0 when the flow is in the encoder)."""

    multi_speaker: bool
    """True when both parts take a `sid` input."""

    encoder_inputs: tuple[str, ...]
    """Encoder input names: the stock graph's (`input`, `input_lengths`, `scales`[, `sid`])."""

    encoder_latent: str = LATENT
    """Encoder output [1, C, frames] that the decoder takes, a window at a time."""

    encoder_durations: str | None = DURATIONS
    """Encoder output [1, 1, phonemes]: frames per phoneme id; None if the graph has no `Ceil`."""

    decoder_latent: str = LATENT
    """Decoder input: a window of latent frames, context included."""

    decoder_trim: str | None = TRIM
    """Decoder input int64 [2]: flow context frames to drop left and right; None without flow."""

    decoder_audio: str = AUDIO
    """Decoder output, shaped like the stock output ([1, 1, 1, samples] for Piper): hop_length
    samples per latent frame kept after `trim`."""

    stock_latent_tensor: str = ""
    """Name in the stock graph of the tensor `latent` was cut at (for diagnostics)."""

    stock_generator_input: str = ""
    """Name in the stock graph of the tensor that feeds the HiFi-GAN generator."""

    format_version: int = SPLIT_FORMAT_VERSION
    """`SPLIT_FORMAT_VERSION` of the code that made the split."""

    banded_attention: int = 0
    """Relative-attention products of the encoder rewritten to their band (`vits_attention.py`;
    two per attention layer, 12 for a Piper voice; 0 for a quantized graph)."""

    quantized: bool = False
    """The graph has quantized activations (a QDQ INT8 variant). Any difference at a window's
    edge can move a value across a rounding step there, so such a graph is streamed with the
    flow's whole receptive field as context (exact), not a part of it."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> SplitInfo:
        fields = dict(data)
        fields["encoder_inputs"] = tuple(fields["encoder_inputs"])
        return SplitInfo(**fields)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as model_file:
        while block := model_file.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def split_vits(
    model: Path | str | bytes,
    cache_dir: Path | str | None = None,
    *,
    flow_in_decoder: bool = True,
) -> tuple[bytes, bytes, SplitInfo]:
    """Cut a Piper VITS model (a file or its bytes) into (encoder bytes, decoder bytes, info).

    With `cache_dir`, the parts are read from `cache_dir/<sha256>/vits-split-v<N>-<cut>/` when
    they are there and written there otherwise (atomically: a temporary folder renamed into
    place). Raises VoiceLoadError naming the model and what was not found when the graph is not a
    VITS graph with the expected structure.
    """
    label, source_bytes, source_path = _source(model)
    if source_path is not None and not source_path.is_file():
        raise VoiceLoadError(f"cannot split model {source_path}: no such file")
    if source_bytes is not None:
        sha256 = hashlib.sha256(source_bytes).hexdigest()
        read_source: Callable[[], bytes] = lambda: source_bytes
    else:
        assert source_path is not None
        sha256 = (
            _known_sha256(source_path, Path(cache_dir)) if cache_dir else file_sha256(source_path)
        )
        read_source = source_path.read_bytes
    if not cache_dir:
        return _split(read_source(), label, sha256, flow_in_decoder)
    encoder, decoder, info = _cached_split(
        label, read_source, sha256, Path(cache_dir), flow_in_decoder
    )
    return _as_bytes(encoder), _as_bytes(decoder), info


def split_vits_files(
    model: Path | str,
    cache_dir: Path | str,
    *,
    flow_in_decoder: bool = True,
) -> tuple[Path | bytes, Path | bytes, SplitInfo]:
    """Like `split_vits`, but the parts as the paths of their cached files where possible.

    For opening the parts from files: ONNX Runtime's Python session keeps the bytes it was
    given for as long as it lives (about the model's size again, per instance of the voice),
    and only a path when given one. Splits and caches the model when it is not cached yet; the
    parts come as bytes only when the cache cannot be written. Raises VoiceLoadError like
    `split_vits`.
    """
    path = Path(model)
    if not path.is_file():
        raise VoiceLoadError(f"cannot split model {path}: no such file")
    sha256 = _known_sha256(path, Path(cache_dir))
    return _cached_split(str(path), path.read_bytes, sha256, Path(cache_dir), flow_in_decoder)


def _cached_split(
    label: str,
    read_source: Callable[[], bytes],
    sha256: str,
    cache_dir: Path,
    flow_in_decoder: bool,
) -> tuple[Path | bytes, Path | bytes, SplitInfo]:
    """The parts' cached files, made (and cached) first when missing or unusable; the parts
    as bytes when the cache cannot be written."""
    folder = _cache_folder(cache_dir, sha256, flow_in_decoder)
    found = _check_cache(folder, sha256)
    if found is None:
        encoder, decoder, info = _split(read_source(), label, sha256, flow_in_decoder)
        _write_cache(folder, encoder, decoder, info)
        found = _check_cache(folder, sha256)
        if found is None:  # not written (read-only or full): the bytes, then
            return encoder, decoder, info
        del encoder, decoder  # read back from the files by whoever needs them
    else:
        _LOGGER.debug("vits_split_cache_hit model=%s folder=%s", label, folder)
    info, encoder_path, decoder_path = found
    return encoder_path, decoder_path, info


def _as_bytes(part: Path | bytes) -> bytes:
    return part.read_bytes() if isinstance(part, Path) else part


_HASHES_FILE: Final = "source-hashes.json"


def _known_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of `path`, remembered in `cache_dir` by the file's identity and modification.

    Hashing joe's 60 MB took ~100 ms of every start. The model store trusts size and mtime the
    same way for its manifests' sources (docs/quantization.md); any write to the file changes
    its mtime, and a new file at the same path changes its inode too.
    """
    try:
        st = path.stat()
    except OSError:
        return file_sha256(path)
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
    memo_path = cache_dir.expanduser() / _HASHES_FILE
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        known = entry.get("sha256")
        if isinstance(known, str) and len(known) == 64:
            return known
    sha256 = file_sha256(path)
    memo[key] = {"stamp": stamp, "sha256": sha256}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        staging = memo_path.with_name(f".{_HASHES_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        staging.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(staging, memo_path)
    except OSError as err:  # a read-only cache: hash again next time
        _LOGGER.info("vits_split_hash_not_kept folder=%s reason=%r", memo_path.parent, err)
    return sha256


def _source(model: Path | str | bytes) -> tuple[str, bytes | None, Path | None]:
    if isinstance(model, bytes):
        return f"(in-memory model, {len(model)} bytes)", model, None
    path = Path(model)
    return str(path), None, path


def _cache_folder(cache_dir: Path, sha256: str, flow_in_decoder: bool) -> Path:
    cut = "flow-in-decoder" if flow_in_decoder else "flow-in-encoder"
    return cache_dir.expanduser() / sha256 / f"vits-split-v{SPLIT_FORMAT_VERSION}-{cut}"


def _check_cache(folder: Path, sha256: str) -> tuple[SplitInfo, Path, Path] | None:
    """The cached parts' info and files, or None when absent or unusable.

    Checks the recorded source hash, format version and file sizes (a truncated part is
    made again), without reading the parts.
    """
    encoder_path, decoder_path = folder / _ENCODER_FILE, folder / _DECODER_FILE
    try:
        data = json.loads((folder / _INFO_FILE).read_text(encoding="utf-8"))
        info = SplitInfo.from_json(data["info"])
        sizes = (encoder_path.stat().st_size, decoder_path.stat().st_size)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        _LOGGER.warning("vits_split_cache_unusable folder=%s reason=%r", folder, err)
        return None
    if info.source_sha256 != sha256 or info.format_version != SPLIT_FORMAT_VERSION:
        _LOGGER.warning("vits_split_cache_stale folder=%s", folder)
        return None
    if sizes != (data.get("encoder_bytes"), data.get("decoder_bytes")):
        _LOGGER.warning("vits_split_cache_truncated folder=%s", folder)
        return None
    return info, encoder_path, decoder_path


def _write_cache(folder: Path, encoder: bytes, decoder: bytes, info: SplitInfo) -> None:
    """Write the parts and their info as `folder` (`cache_folder.publish_folder`).

    A failure to write is logged, not raised: the voice still works, it just splits again next time.
    """
    meta = {"info": info.to_json(), "encoder_bytes": len(encoder), "decoder_bytes": len(decoder)}
    try:
        publish_folder(
            folder,
            [
                (_ENCODER_FILE, encoder),
                (_DECODER_FILE, decoder),
                (_INFO_FILE, json.dumps(meta, indent=2).encode("utf-8")),
            ],
        )
    except OSError as err:
        _LOGGER.warning("vits_split_cache_write_failed folder=%s reason=%r", folder, err)
        return
    _LOGGER.info("vits_split_cached folder=%s", folder)
    _drop_older_versions(folder)


def _drop_older_versions(folder: Path) -> None:
    """Remove the same model's parts cut by older code (`vits-split-v<N>-...`, N older), with
    the optimized graphs kept in them: no code of this version reads them, and a voice's parts
    are tens of MB. Also the folder where code before format 3 kept every voice's optimized
    parts (`<cache>/optimized`): those graphs are now kept beside their parts."""
    current = f"vits-split-v{SPLIT_FORMAT_VERSION}-"
    legacy = folder.parent.parent / "optimized"
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
        _LOGGER.info("vits_split_cache_dropped folder=%s (older layout)", legacy)
    try:
        siblings = list(folder.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        name = sibling.name
        if name.startswith("vits-split-v") and not name.startswith(current) and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
            _LOGGER.info("vits_split_cache_dropped folder=%s (older format)", sibling)


# --------------------------------------------------------------------------- the cut itself


def _split(
    source: bytes, label: str, sha256: str, flow_in_decoder: bool
) -> tuple[bytes, bytes, SplitInfo]:
    try:
        import onnx
    except ImportError as err:
        raise VoiceLoadError(
            f"cannot split {label}: the `onnx` package is needed to cut VITS graphs"
        ) from err
    try:
        model = onnx.load_model_from_string(source)
    except Exception as err:  # protobuf raises DecodeError and friends, with no common base here
        raise VoiceLoadError(f"cannot split {label}: not an ONNX model ({err})") from err

    graph = model.graph
    index = GraphIndex(graph)
    stock_inputs = tuple(i.name for i in graph.input if i.name not in index.initializers)
    if len(graph.output) < 1:
        raise VoiceLoadError(f"cannot split {label}: the graph has no output")
    audio_out = graph.output[0].name
    multi_speaker = SPEAKER_INPUT in stock_inputs
    missing_inputs = sorted(set(_STOCK_INPUTS) - set(stock_inputs))
    if missing_inputs:
        raise VoiceLoadError(
            f"cannot split {label}: no graph input {missing_inputs}; found {list(stock_inputs)}"
        )

    generator_input, conv_pre = _find_generator_input(index, label)
    latent_channels = _conv_in_channels(index, conv_pre, label)
    durations = _find_durations(index)

    dec_reach = _reach(index, generator_input, audio_out, label, "the HiFi-GAN generator")
    hop_length = dec_reach.rate
    decoder_context = dec_reach.context_frames()

    if flow_in_decoder:
        prior = _find_prior_sample(index, label)
        flow_out, y_mask = _split_mask_product(index, generator_input, prior, label)
        flow_reach = _reach(index, prior, flow_out, label, "the flow")
        if flow_reach.rate != 1:
            raise VoiceLoadError(f"cannot split {label}: the flow changes the frame rate")
        flow_context = flow_reach.context_frames()
        cut_at = prior
        decoder_inputs = [prior, y_mask]
    else:
        flow_context = 0
        cut_at = generator_input
        y_mask = None
        decoder_inputs = [generator_input]
    if multi_speaker:
        decoder_inputs.append(SPEAKER_INPUT)

    encoder_outputs = [cut_at] + ([durations] if durations else [])
    encoder = _extract(model, index, list(stock_inputs), encoder_outputs, label, "encoder")
    decoder = _extract(model, index, decoder_inputs, [audio_out], label, "decoder")

    quantized = any(n.op_type in _QUANTIZED_OPS for n in model.graph.node)
    # Float graphs only: the banded QDQ (INT8) encoder gives the same numbers and runs faster
    # when ONNX Runtime optimizes it at load, but reopened from the graph ORT saved optimized
    # (what every start does), its runs peaked 50 MiB higher than the exported one's and were
    # no faster (joe INT8, measured; docs/benchmarks.md).
    banded = 0 if quantized else band_relative_attention(encoder.graph)
    _rename(encoder.graph, {cut_at: LATENT, **({durations: DURATIONS} if durations else {})})
    if y_mask is not None:
        _mask_from_latent(decoder.graph, prior_name=cut_at, mask_name=y_mask)
        _add_trim(decoder.graph, generator_input)
    _rename(decoder.graph, {cut_at: LATENT, audio_out: AUDIO})
    _set_float_type(encoder.graph.output, LATENT, ["batch", latent_channels, "frames"])
    _set_float_type(encoder.graph.output, DURATIONS, ["batch", 1, "phonemes"])
    _set_float_type(decoder.graph.input, LATENT, ["batch", latent_channels, "frames"])

    info = SplitInfo(
        source_sha256=sha256,
        flow_in_decoder=flow_in_decoder,
        latent_channels=latent_channels,
        hop_length=hop_length,
        decoder_context_frames=decoder_context,
        flow_context_frames=flow_context,
        multi_speaker=multi_speaker,
        encoder_inputs=stock_inputs,
        encoder_durations=DURATIONS if durations else None,
        decoder_trim=TRIM if flow_in_decoder else None,
        stock_latent_tensor=cut_at,
        stock_generator_input=generator_input,
        banded_attention=banded,
        quantized=quantized,
    )
    for part, part_model in (("encoder", encoder), ("decoder", decoder)):
        try:
            onnx.checker.check_model(part_model)
        except onnx.checker.ValidationError as err:
            raise VoiceLoadError(
                f"cannot split {label}: the {part} part is invalid: {err}"
            ) from err
    _LOGGER.info(
        "vits_split model=%s flow_in_decoder=%s latent_channels=%d hop=%d decoder_context=%d "
        "flow_context=%d banded_attention=%d encoder_nodes=%d decoder_nodes=%d",
        label,
        flow_in_decoder,
        latent_channels,
        hop_length,
        decoder_context,
        flow_context,
        banded,
        len(encoder.graph.node),
        len(decoder.graph.node),
    )
    return encoder.SerializeToString(), decoder.SerializeToString(), info


def _find_generator_input(index: GraphIndex, label: str) -> tuple[str, int]:
    """(tensor feeding the HiFi-GAN generator, index of its `conv_pre` node).

    HiFi-GAN is `conv_pre` [+ `cond(g)`] → LeakyReLU → ConvTranspose …; the first ConvTranspose in
    topological order is the generator's first upsampling layer (no other VITS part upsamples).
    """
    first_up = next((i for i, n in enumerate(index.nodes) if n.op_type == "ConvTranspose"), None)
    if first_up is None:
        raise VoiceLoadError(
            f"cannot split {label}: no ConvTranspose (HiFi-GAN upsampling) found; "
            "is this a Piper VITS model?"
        )
    current = index.nodes[first_up].input[0]
    # Walk back over the activation and the speaker conditioning to the conv_pre Conv.
    for _ in range(4):
        producer = index.producer.get(current)
        if producer is None:
            break
        node = index.nodes[producer]
        if node.op_type == "Conv":
            return node.input[0], producer
        if node.op_type in ("LeakyRelu", "Relu"):
            current = node.input[0]
        elif node.op_type == "Add":
            # conv_pre(x) + cond(g): follow the branch produced by a Conv on a time-varying input.
            current = _conv_branch(index, node.input) or ""
        else:
            break
    raise VoiceLoadError(
        f"cannot split {label}: no Conv (HiFi-GAN conv_pre) before the first ConvTranspose "
        f"{index.nodes[first_up].name!r}"
    )


def _conv_branch(index: GraphIndex, names: Iterable[str]) -> str | None:
    """Of an Add's inputs, the one made by conv_pre (not by the 1x1 `cond` conv on the speaker)."""
    candidates = []
    for name in names:
        producer = index.producer.get(name)
        if producer is not None and index.nodes[producer].op_type == "Conv":
            candidates.append((name, index.nodes[producer]))
    for name, node in candidates:
        kernel = attr_ints(node, "kernel_shape")
        if kernel and kernel[0] > 1:
            return name
    return candidates[0][0] if len(candidates) == 1 else None


def _conv_in_channels(index: GraphIndex, conv: int, label: str) -> int:
    name = index.nodes[conv].input[1]
    producer = index.producer.get(name)
    if producer is not None and index.nodes[producer].op_type == "DequantizeLinear":
        name = index.nodes[producer].input[0]  # a quantized (QDQ) graph: the int8 weight
    weight = index.initializers.get(name)
    if weight is None or len(weight.dims) != 3:
        raise VoiceLoadError(
            f"cannot split {label}: the generator's first Conv has no 1-D weight initializer"
        )
    group = attr_int(index.nodes[conv], "group", 1)
    return int(weight.dims[1]) * group


def _find_durations(index: GraphIndex) -> str | None:
    """The `w_ceil` tensor (frames per phoneme id): the graph's only Ceil output, if any."""
    ceils = [n.output[0] for n in index.nodes if n.op_type == "Ceil"]
    return ceils[0] if len(ceils) == 1 else None


def _find_prior_sample(index: GraphIndex, label: str) -> str:
    """`z_p = m_p + randn_like(m_p) · exp(logs_p) · noise_scale`: the flow's input.

    The stochastic duration predictor draws noise too, before the durations are rounded; the
    prior's draw is the last RandomNormalLike, and z_p is the Add its (scaled) output feeds.
    """
    randoms = [i for i, n in enumerate(index.nodes) if n.op_type == "RandomNormalLike"]
    if not randoms:
        raise VoiceLoadError(
            f"cannot split {label}: no RandomNormalLike (the prior sample z_p) found; "
            "split with flow_in_decoder=False to keep the flow in the encoder"
        )
    current = index.nodes[randoms[-1]].output[0]
    for _ in range(4):
        consumers = index.consumers.get(current, [])
        if len(consumers) != 1:
            break
        node = index.nodes[consumers[0]]
        if node.op_type == "Add":
            return str(node.output[0])
        if node.op_type != "Mul":
            break
        current = node.output[0]
    raise VoiceLoadError(
        f"cannot split {label}: the last RandomNormalLike does not feed an Add (m_p + noise); "
        "split with flow_in_decoder=False to keep the flow in the encoder"
    )


def _split_mask_product(
    index: GraphIndex, generator_input: str, prior: str, label: str
) -> tuple[str, str]:
    """The generator's input is `flow(z_p) · y_mask`: return (flow output, y_mask)."""
    producer = index.producer.get(generator_input)
    node = index.nodes[producer] if producer is not None else None
    if node is None or node.op_type != "Mul" or len(node.input) != 2:
        raise VoiceLoadError(
            f"cannot split {label}: the generator's input is not `flow output · mask` (a Mul)"
        )
    depends_on_prior = index.downstream(prior)
    flow_side = [name for name in node.input if name in depends_on_prior]
    mask_side = [name for name in node.input if name not in depends_on_prior]
    if len(flow_side) != 1 or len(mask_side) != 1:
        raise VoiceLoadError(
            f"cannot split {label}: cannot tell the flow output from the mask in {node.name!r}"
        )
    return flow_side[0], mask_side[0]


# --------------------------------------------------------------- receptive field of a conv stack


@dataclass(frozen=True)
class _Reach:
    """How far a tensor's values reach into the start tensor's frames."""

    rate: int
    """Samples of this tensor per start frame."""

    left: Fraction
    """Start frames before the element's centre that it depends on."""

    right: Fraction
    """Start frames after the element's centre that it depends on."""

    rank: int
    """Tensor rank; the time axis is the last one."""

    def context_frames(self) -> int:
        """Frames of context each side that make every output sample of a frame exact.

        An output sample's centre lies at least half a sample inside its frame, while the input
        frames' centres sit at frame + 1/2; hence the half-frame and half-sample corrections.
        """
        reach = max(self.left, self.right)
        return max(0, math.floor(reach + Fraction(1, 2) - Fraction(1, 2 * self.rate)))


class _NotConvolutional(Exception):
    def __init__(self, node: onnx.NodeProto, why: str) -> None:
        super().__init__(f"{node.op_type} node {node.name!r} {why}")


def _reach(index: GraphIndex, start: str, stop: str, label: str, what: str) -> _Reach:
    """Propagate receptive fields from `start` to `stop`; VoiceLoadError if unbounded."""
    reach: dict[str, _Reach] = {start: _Reach(1, Fraction(0), Fraction(0), 3)}
    try:
        for node in index.nodes:
            deps = [reach[name] for name in node.input if name in reach]
            if not deps:
                continue
            if node.op_type in _SHAPE_ONLY_OPS:
                continue
            out = _propagate(index, node, deps, [n for n in node.input if n in reach])
            for name in node.output:
                if name:
                    reach[name] = out
            if stop in reach:
                return reach[stop]
    except _NotConvolutional as err:
        raise VoiceLoadError(
            f"cannot split {label}: {what} is not a stack of 1-D convolutions with a bounded "
            f"receptive field: {err}"
        ) from err
    raise VoiceLoadError(f"cannot split {label}: {what} output does not depend on its input")


def _propagate(
    index: GraphIndex, node: onnx.NodeProto, deps: list[_Reach], dep_names: list[str]
) -> _Reach:
    op = node.op_type
    if op == "Conv":
        if node.input[0] not in dep_names or len(dep_names) > 1:
            raise _NotConvolutional(node, "has a weight that depends on the audio path")
        return _conv_reach(node, deps[0])
    if op == "ConvTranspose":
        if node.input[0] not in dep_names or len(dep_names) > 1:
            raise _NotConvolutional(node, "has a weight that depends on the audio path")
        return _conv_transpose_reach(node, deps[0])
    rates = {d.rate for d in deps}
    if len(rates) != 1:
        raise _NotConvolutional(node, f"mixes frame rates {sorted(rates)}")
    merged = _Reach(
        deps[0].rate,
        max(d.left for d in deps),
        max(d.right for d in deps),
        max(d.rank for d in deps),
    )
    if op in _ELEMENTWISE_OPS:
        return merged
    if op in ("QuantizeLinear", "DequantizeLinear"):
        # A quantized (QDQ) graph's activations: elementwise with a per-tensor scale; a
        # per-axis scale must not run along time.
        scale = index.initializers.get(node.input[1])
        if scale is None or any(d > 1 for d in scale.dims):
            _check_axes(node, [attr_int(node, "axis", 1)], merged.rank)
        return merged
    if op in ("Split", "Concat", "Gather"):
        default_axis = 0
        axis = attr_int(node, "axis", default_axis)
        if op == "Gather" and node.input[0] not in dep_names:
            raise _NotConvolutional(node, "gathers with indices taken from the audio path")
        _check_axes(node, [axis], merged.rank)
        return merged
    if op == "Slice":
        axes = index.const_ints(node.input[3]) if len(node.input) > 3 else None
        if axes is None or any(n in dep_names for n in node.input[1:]):
            raise _NotConvolutional(node, "slices with non-constant axes")
        _check_axes(node, axes, merged.rank)
        return merged
    if op in ("Unsqueeze", "Squeeze"):
        axes = index.const_ints(node.input[1]) if len(node.input) > 1 else attr_ints(node, "axes")
        if not axes:
            raise _NotConvolutional(node, "has no constant axes")
        out_rank = merged.rank + len(axes) if op == "Unsqueeze" else merged.rank - len(axes)
        _check_axes(node, axes, out_rank if op == "Unsqueeze" else merged.rank)
        return _Reach(merged.rate, merged.left, merged.right, out_rank)
    raise _NotConvolutional(node, "may mix distant frames")


def _check_axes(node: onnx.NodeProto, axes: Sequence[int], rank: int) -> None:
    if any(a % rank == rank - 1 for a in axes):
        raise _NotConvolutional(node, "works along the time axis")


def _conv_reach(node: onnx.NodeProto, src: _Reach) -> _Reach:
    kernel = attr_ints(node, "kernel_shape")
    dilation = (attr_ints(node, "dilations") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    stride = (attr_ints(node, "strides") or [1])[0]
    auto_pad = attr_str(node, "auto_pad")
    if not kernel or len(kernel) != 1:
        raise _NotConvolutional(node, "is not a 1-D convolution")
    span = dilation * (kernel[0] - 1)
    if stride != 1 or auto_pad not in ("", "NOTSET") or pads[0] + pads[1] != span:
        raise _NotConvolutional(node, "changes the frame count")
    rate = Fraction(src.rate)
    return _Reach(
        src.rate, src.left + pads[0] / rate, src.right + (span - pads[0]) / rate, src.rank
    )


def _conv_transpose_reach(node: onnx.NodeProto, src: _Reach) -> _Reach:
    kernel = attr_ints(node, "kernel_shape")
    stride = (attr_ints(node, "strides") or [1])[0]
    pads = attr_ints(node, "pads") or [0, 0]
    dilation = (attr_ints(node, "dilations") or [1])[0]
    if not kernel or len(kernel) != 1 or dilation != 1:
        raise _NotConvolutional(node, "is not a plain 1-D transposed convolution")
    if attr_ints(node, "output_shape") or any(attr_ints(node, "output_padding")):
        raise _NotConvolutional(node, "has an explicit output shape")
    if kernel[0] - pads[0] - pads[1] != stride:
        raise _NotConvolutional(node, "does not upsample by exactly its stride")
    # Output o takes inputs i with i·s ∈ [o + p − k + 1, o + p]; measured between element centres.
    out_rate = src.rate * stride
    half_cell = Fraction(stride - 1, 2)
    left = (kernel[0] - 1 - pads[0] - half_cell) / out_rate
    right = (pads[0] + half_cell) / out_rate
    return _Reach(out_rate, src.left + left, src.right + right, src.rank)


# ----------------------------------------------------------------------------- graph surgery


def _extract(
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


def _rename(graph: onnx.GraphProto, names: Mapping[str, str]) -> None:
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


def _mask_from_latent(graph: onnx.GraphProto, prior_name: str, mask_name: str) -> None:
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


def _add_trim(graph: onnx.GraphProto, generator_input: str) -> None:
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


def _set_float_type(
    values: Iterable[onnx.ValueInfoProto], name: str, dims: Sequence[int | str]
) -> None:
    """Declare tensor `name` float32 with `dims` (a str is a dynamic axis, e.g. `frames`)."""
    from onnx import TensorProto, helper

    for value_info in values:
        if value_info.name == name:
            value_info.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
