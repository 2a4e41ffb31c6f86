"""What cutting a Piper VITS graph found, and the names of the parts' tensors (`SplitInfo`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = [
    "AUDIO",
    "DURATIONS",
    "LATENT",
    "SPEAKER_INPUT",
    "SPLIT_FORMAT_VERSION",
    "TRIM",
    "SplitInfo",
]

SPLIT_FORMAT_VERSION: Final = 5
"""Bumped whenever the cut changes, so that cached split models from older code are redone
(2: the encoder's relative attention is banded, `vits_attention.py`; 3: float encoders only;
4: a stateful decoder beside the windowed one, `vits_stateful.py`; 5: its state Slices feed
the main path, so ONNX Runtime runs them early)."""

LATENT: Final = "latent"
DURATIONS: Final = "durations"
TRIM: Final = "trim"
AUDIO: Final = "audio"
SPEAKER_INPUT: Final = "sid"


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

    stateful_lag_samples: int | None = None
    """Audio samples the stateful decoder's output lags its input (`vits_stateful.py`); None
    when the generator could not be made stateful (only the windowed decoder exists)."""

    stateful_states: tuple[tuple[str, int, int, int], ...] = ()
    """The stateful decoder's state inputs as (name, channels, samples, samples of the zeros
    given on a sentence's first call); each has an output named `state_out_` for `state_in_`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> SplitInfo:
        fields = dict(data)
        fields["encoder_inputs"] = tuple(fields["encoder_inputs"])
        fields["stateful_states"] = tuple(
            (str(name), int(channels), int(samples), int(first))
            for name, channels, samples, first in fields.get("stateful_states", ())
        )
        return SplitInfo(**fields)
