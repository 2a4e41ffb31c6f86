"""The voice family interface: what the daemon knows about any voice, whatever engine runs it.

A *family* (Piper VITS, hibari) finds its voices and loads them; a loaded *voice* turns text into
an iterator of audio chunks and checks a cancellation token between pieces of work. The daemon
only ever talks to these types (through `VoiceStore`), never to a family module directly.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.models.errors import (
    Cancelled,
    InvalidParameter,
    PhonemesUnsupported,
    UnknownSpeaker,
)

MIN_RATE: Final = 0.25
MAX_RATE: Final = 4.0
MAX_VOLUME: Final = 4.0
MIN_PROSODY_RATIO: Final = 0.5
"""Lowest `pitch` and `energy` a request may ask for."""
MAX_PROSODY_RATIO: Final = 2.0
"""Highest `pitch` and `energy` a request may ask for."""
PROSODY_FIELDS: Final = frozenset({"pitch", "energy"})
"""The `SynthesisParams` fields a voice honours only if its family says so (`VoiceInfo.prosody`)."""


@dataclass(frozen=True)
class VoiceInfo:
    """What is known about a voice without loading its model."""

    voice_id: str
    """Stable id, unique across families (`en_US-joe-medium`); the family chooses it."""

    family: str
    """Name of the family that found it (`VoiceFamily.name`)."""

    language: str
    """Language tag, BCP 47 style (`en-US`)."""

    sample_rate_hz: int
    """Rate of the audio the voice produces."""

    speakers: tuple[str, ...] = ()
    """Speaker names in id order; empty for a single-speaker voice."""

    model_path: Path | None = None
    """The model file, for hashing (cache keys, manifests) and diagnostics."""

    source: str = ""
    """Where the voice came from: a folder path or a PyPI package name."""

    model_files: tuple[Path, ...] = ()
    """Every file whose bytes shape the voice's audio, in hashing order (cache keys, missing-file
    checks), as the family declares them: a Piper voice's model and its `.onnx.json`. Empty
    means just `model_path` (filled in on construction)."""

    front_end_version: str = ""
    """Version of the family's text front end (G2P, phonemizer: the package's version), which
    changes the audio as much as the model does; keyed by the phrase cache. Empty: untracked."""

    licence: str = ""
    """The voice's licence note for `describe`, as its family knows it: the package's licence
    and the training data's terms (`MIT package; Baker corpus: non-commercial use only`).
    Empty: unknown, see where the voice came from (`source`)."""

    prosody: frozenset[str] = frozenset()
    """Which of `PROSODY_FIELDS` (`pitch`, `energy`) the voice honours, declared by its family
    at discovery, so a request can be checked without loading the voice; empty: neither."""

    def check_prosody(self, params: SynthesisParams) -> None:
        """Raise InvalidParameter naming the voice and the fields when `params` asks for pitch
        or energy this voice cannot give (`prosody`); for the daemon, before a job is queued."""
        unsupported = params.prosody_requested() - self.prosody
        if unsupported:
            raise InvalidParameter(
                f"voice {self.voice_id!r} cannot change {', '.join(sorted(unsupported))}"
                f" (it honours: {', '.join(sorted(self.prosody)) or 'neither'})"
            )

    def __post_init__(self) -> None:
        if not self.model_files and self.model_path is not None:
            object.__setattr__(self, "model_files", (self.model_path,))

    def speaker_id(self, speaker: str | int | None) -> int | None:
        """Resolve a speaker name or id to an id; None means the voice's default speaker."""
        if speaker is None:
            return None
        if not self.speakers:
            if speaker in (0, "0"):
                return None
            raise UnknownSpeaker(f"voice {self.voice_id!r} has a single speaker; got {speaker!r}")
        if isinstance(speaker, bool):
            raise UnknownSpeaker(f"speaker must be a name or an id, got {speaker!r}")
        if isinstance(speaker, int):
            if 0 <= speaker < len(self.speakers):
                return speaker
            raise UnknownSpeaker(
                f"voice {self.voice_id!r} has speaker ids 0..{len(self.speakers) - 1}; got {speaker}"
            )
        if speaker in self.speakers:
            return self.speakers.index(speaker)
        # isdecimal, not isdigit: int() refuses the superscript digits isdigit() accepts; and a
        # speaker id is short, so huge digit strings never reach int() (its 4,300-digit limit).
        if speaker.isdecimal() and len(speaker) <= 9 and int(speaker) < len(self.speakers):
            return int(speaker)
        raise UnknownSpeaker(f"voice {self.voice_id!r} has no speaker {speaker!r}")


@dataclass(frozen=True)
class SynthesisParams:
    """Per-request synthesis settings; applied without reloading anything."""

    speaker: str | int | None = None
    """Speaker name or id for multi-speaker voices; None means the voice's default."""

    rate: float = 1.0
    """Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast (each family decides how:
    durations, its own speed, WSOLA; the duration is within 10 % of duration / rate)."""

    volume: float = 1.0
    """Fixed linear gain applied to every chunk (never a per-sentence normalization)."""

    deterministic: bool = False
    """Noise scales at 0 (Piper) or a fixed noise seed (hibari): the same text gives the same audio."""

    pitch: float = 1.0
    """Pitch ratio: 1.0 is the voice's own intonation, above raises it, below lowers it (a
    FastSpeech2 voice scales its predicted F0). Only a voice whose `VoiceInfo.prosody` names
    `pitch` honours a value other than 1.0."""

    energy: float = 1.0
    """Loudness/emphasis ratio the model itself applies (a FastSpeech2 voice scales its predicted
    energy), unlike `volume`'s gain on the audio. Only a voice whose `VoiceInfo.prosody` names
    `energy` honours a value other than 1.0."""

    def validated(self) -> SynthesisParams:
        """Return self, or raise InvalidParameter naming the field that is out of range."""
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise InvalidParameter(f"rate must be in [{MIN_RATE}, {MAX_RATE}], got {self.rate}")
        if not 0.0 <= self.volume <= MAX_VOLUME:
            raise InvalidParameter(f"volume must be in [0, {MAX_VOLUME}], got {self.volume}")
        for name in sorted(PROSODY_FIELDS):
            value = getattr(self, name)
            if not MIN_PROSODY_RATIO <= value <= MAX_PROSODY_RATIO:
                raise InvalidParameter(
                    f"{name} must be in [{MIN_PROSODY_RATIO}, {MAX_PROSODY_RATIO}], got {value}"
                )
        return self

    def prosody_requested(self) -> frozenset[str]:
        """The `PROSODY_FIELDS` this request sets away from 1.0."""
        return frozenset(name for name in PROSODY_FIELDS if getattr(self, name) != 1.0)


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesized speech, mono float32 in [-1, 1]."""

    samples: npt.NDArray[np.float32]
    """The audio; may be empty only for a sentence that produced no sound."""

    sample_rate_hz: int
    """Rate of `samples`."""

    sentence_index: int = 0
    """Which sentence of the request this chunk belongs to (0-based)."""

    sentence_end: bool = True
    """True when this chunk is the last one of its sentence."""

    marks: tuple[str, ...] = ()
    """Names of SSML `<mark>`s that fall where this chunk starts, in document order (the daemon
    reports each with its sample offset when the chunk starts to play). A chunk may be empty
    only to carry marks or to end a sentence."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass
class CancelToken:
    """One per job. `cancel()` from any thread; every stage checks it between pieces of work."""

    _event: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _interrupts: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def cancel(self, reason: str = "stopped") -> None:
        with self._lock:
            self.reason = reason
            self._event.set()
            interrupts, self._interrupts = self._interrupts, []
        for interrupt in interrupts:
            interrupt()

    @contextmanager
    def interrupting(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """Call `interrupt` (from the cancelling thread) if the token is cancelled while the
        block runs, or at once if it already is: for one piece of work that cannot check the
        token itself, such as a model run, so that a stop does not wait for it to end."""
        with self._lock:
            already = self._event.is_set()
            if not already:
                self._interrupts.append(interrupt)
        if already:
            interrupt()
        try:
            yield
        finally:
            with self._lock:
                if interrupt in self._interrupts:
                    self._interrupts.remove(interrupt)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason or "cancelled")


class Voice(ABC):
    """A loaded voice. Thread-safe: `stream` may be called from several worker threads."""

    info: VoiceInfo

    @abstractmethod
    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        """Synthesize `text`, yielding chunks as soon as each is ready.

        Checks `cancel` between pieces of work and raises `Cancelled` when it is set.
        `low_latency` (for a listener waiting, e.g. playback): the first sentence's audio leaves
        in small windows, at some extra CPU per window. False (a file, a cache entry): each
        sentence in as few model calls as possible, for throughput; the audio may differ from
        the low-latency one only at window seams (docs/benchmarks.md gives the measured SNR).
        """

    supports_phonemes: bool = False
    """Whether `stream_phonemes` works: the voice says IPA given in the request (SSML
    `<phoneme alphabet="ipa">`). False: the front end says the phoneme element's text instead."""

    def stream_phonemes(
        self,
        phonemes: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        """Say `phonemes` (IPA as SSML writes it: spaces between words, stress marks allowed)
        instead of text, chunk by chunk like `stream`. Symbols the voice cannot say are skipped
        and logged; nothing left to say raises `NothingToSay`. The default raises
        `PhonemesUnsupported`: check `supports_phonemes` first."""
        raise PhonemesUnsupported(f"voice {self.info.voice_id!r} does not take phonemes")

    def warm_up(self) -> None:
        """Run one short synthesis so the first request does not pay for lazy initialization."""
        for _ in self.stream("Ready.", SynthesisParams(deterministic=True), CancelToken()):
            pass

    def runtime_info(self) -> dict[str, Any]:
        """How this voice runs (backend, precision, threads, model_file, and whatever else the
        family reports), for `describe`. The default knows nothing."""
        return {}

    def runtime(self) -> VoiceRuntime:
        """How this voice runs, typed: what the phrase-cache key needs, plus `runtime_info()`."""
        return VoiceRuntime.from_info(self.runtime_info())

    def close(self) -> None:
        """Release the model's memory. The default does nothing."""


@dataclass(frozen=True)
class VoiceRuntime:
    """How a loaded voice runs: the fields the phrase-cache key names, and the full report."""

    backend: str | None = None
    """Inference backend it actually runs (`onnxruntime`, `openvino`); None: not reported (the
    configured one applies)."""

    precision: str | None = None
    """Precision of the model it runs (`fp32`, `int8`); None: not reported."""

    threads: int | None = None
    """Intra-op threads its sessions use; None: not reported (the configured count applies)."""

    model_file: Path | None = None
    """The model variant it actually runs (an INT8 or optimized file) when that differs from
    the declared `VoiceInfo.model_files`; None: those files are all there is."""

    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Everything the voice reports (`runtime_info()`), for `describe`."""

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> VoiceRuntime:
        """Read the typed fields out of a `runtime_info()` report."""
        backend, precision = info.get("backend"), info.get("precision")
        model_file = info.get("model_file")
        return cls(
            backend=None if backend is None else str(backend),
            precision=None if precision is None else str(precision),
            threads=int(info["threads"]) if info.get("threads") else None,
            model_file=Path(str(model_file)) if model_file else None,
            details=MappingProxyType(dict(info)),
        )


class VoiceFamily(ABC):
    """Finds and loads the voices of one engine family."""

    name: str

    @abstractmethod
    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        """Voices this family offers: from the given folders and from installed packages.

        Cheap (reads metadata only) and never raises for one bad file: a broken voice file is
        logged and skipped so that the other voices stay available.
        """

    @abstractmethod
    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        """Load the voice's model; raises VoiceLoadError naming the file on any failure."""


@dataclass(frozen=True)
class EngineSettings:
    """How a model is run."""

    backend: str = "onnxruntime"
    """Inference backend: `onnxruntime` (more in the INT8 work: `openvino`, `auto`)."""

    threads: int = 0
    """Intra-op threads; 0 means one per physical core."""

    variants: bool = True
    """Run the fastest quantized variant that passed its gates (`utterd quantize`) when the
    model store has one; False: the voice's own FP32 model (the numerics check's fallback when a
    variant fails its canary, engine/canary.py)."""


def distribution_version(name: str) -> str:
    """The installed version of distribution `name` (`piper-tts`); empty when it is absent."""
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def float_to_pcm16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Float audio in [-1, 1] to little-endian 16-bit PCM, clipping (fixed gain, no normalization)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
