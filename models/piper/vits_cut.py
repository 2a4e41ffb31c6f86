"""Where to cut a stock Piper VITS graph, and the cut itself (`cut_vits`).

See `vits_split` for the parts and why the graph is cut; everything is found by graph
structure, not by node names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from utterd.models.engine.graph import GraphIndex, attr_int, attr_ints
from utterd.models.errors import VoiceLoadError
from utterd.models.piper.receptive_field import reach
from utterd.models.piper.split_info import (
    AUDIO,
    DURATIONS,
    LATENT,
    SPEAKER_INPUT,
    TRIM,
    SplitInfo,
)
from utterd.models.piper.vits_attention import band_relative_attention
from utterd.models.piper.vits_stateful import NotStreamable, StatefulDecoder, make_stateful
from utterd.models.piper.vits_surgery import (
    add_trim,
    extract,
    mask_from_latent,
    rename,
    set_float_type,
)

__all__ = ["cut_vits"]

_LOGGER = logging.getLogger(__name__)

_STOCK_INPUTS: Final = ("input", "input_lengths", "scales")
# Ops of a quantized graph (QDQ, or operators with integer arithmetic).
_QUANTIZED_OPS: Final = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "QLinearMatMul", "ConvInteger", "MatMulInteger",
    }
)  # fmt: skip


def cut_vits(
    source: bytes, label: str, sha256: str, flow_in_decoder: bool
) -> tuple[bytes, bytes, bytes | None, SplitInfo]:
    """(encoder, windowed decoder, stateful decoder or None, info) cut from a stock graph."""
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

    dec_reach = reach(index, generator_input, audio_out, label, "the HiFi-GAN generator")
    hop_length = dec_reach.rate
    decoder_context = dec_reach.context_frames()

    if flow_in_decoder:
        prior = _find_prior_sample(index, label)
        flow_out, y_mask = _split_mask_product(index, generator_input, prior, label)
        flow_reach = reach(index, prior, flow_out, label, "the flow")
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
    encoder = extract(model, index, list(stock_inputs), encoder_outputs, label, "encoder")
    decoder = extract(model, index, decoder_inputs, [audio_out], label, "decoder")

    quantized = any(n.op_type in _QUANTIZED_OPS for n in model.graph.node)
    # Float graphs only: the banded QDQ (INT8) encoder gives the same numbers and runs faster
    # when ONNX Runtime optimizes it at load, but reopened from the graph ORT saved optimized
    # (what every start does), its runs peaked 50 MiB higher than the exported one's and were
    # no faster (joe INT8, measured; docs/benchmarks.md).
    banded = 0 if quantized else band_relative_attention(encoder.graph)
    rename(encoder.graph, {cut_at: LATENT, **({durations: DURATIONS} if durations else {})})
    if y_mask is not None:
        mask_from_latent(decoder.graph, prior_name=cut_at, mask_name=y_mask)
    # The stateful decoder streams flow and generator alike: no trim, no context.
    whole_decoder = onnx.ModelProto()
    whole_decoder.CopyFrom(decoder)
    if y_mask is not None:
        add_trim(decoder.graph, generator_input)
    for part_model in (decoder, whole_decoder):
        rename(part_model.graph, {cut_at: LATENT, audio_out: AUDIO})
        set_float_type(part_model.graph.input, LATENT, ["batch", latent_channels, "frames"])
    set_float_type(encoder.graph.output, LATENT, ["batch", latent_channels, "frames"])
    set_float_type(encoder.graph.output, DURATIONS, ["batch", 1, "phonemes"])
    stateful: onnx.ModelProto | None = None
    stateful_info: StatefulDecoder | None = None
    try:
        stateful, stateful_info = make_stateful(whole_decoder, LATENT, AUDIO)
    except NotStreamable as err:  # the windowed decoder still streams, at a seam's cost
        _LOGGER.info("vits_split_not_stateful model=%s reason=%s", label, err)
    del whole_decoder

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
        stateful_lag_samples=None if stateful_info is None else stateful_info.lag_samples,
        stateful_states=()
        if stateful_info is None
        else tuple((s.name, s.channels, s.samples, s.first_samples) for s in stateful_info.states),
    )
    parts = [("encoder", encoder), ("decoder", decoder)]
    if stateful is not None:
        parts.append(("stateful decoder", stateful))
    for part, part_model in parts:
        try:
            onnx.checker.check_model(part_model)
        except onnx.checker.ValidationError as err:
            raise VoiceLoadError(
                f"cannot split {label}: the {part} part is invalid: {err}"
            ) from err
    _LOGGER.info(
        "vits_split model=%s flow_in_decoder=%s latent_channels=%d hop=%d decoder_context=%d "
        "flow_context=%d banded_attention=%d encoder_nodes=%d decoder_nodes=%d "
        "stateful_lag_samples=%s",
        label,
        flow_in_decoder,
        latent_channels,
        hop_length,
        decoder_context,
        flow_context,
        banded,
        len(encoder.graph.node),
        len(decoder.graph.node),
        info.stateful_lag_samples,
    )
    return (
        encoder.SerializeToString(),
        decoder.SerializeToString(),
        None if stateful is None else stateful.SerializeToString(),
        info,
    )


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
