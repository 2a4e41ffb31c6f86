"""hibari voices: small English models (24 kHz) from the hibari-tts package.

Discovery only reads hibari's voice registry (`hibari/voices.py` and its `voices.json`), without
importing the `hibari` package: a daemon that speaks only Piper voices never pays for it; and
without the `urllib.request` that module imports for downloads (`_DownloadsOnly`). `load`
imports hibari with its DSP's FFT loaded alone (`fft.py`: all of scipy.fft cost 25 MiB and
0.25-0.4 s), then `voice.py`, which runs the voice. Only
voices whose model file is already on disk are offered: hibari would download the others, and
utterd never downloads at run time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from utterd.models.errors import VoiceLoadError
from utterd.models.model_store import OPTIMIZED_DIR_NAME, default_model_store_dir
from utterd.models.voice import (
    EngineSettings,
    Voice,
    VoiceFamily,
    VoiceInfo,
    distribution_version,
)

_LOGGER = logging.getLogger(__name__)

FAMILY: Final = "hibari"
VOICE_ID_PREFIX: Final = "hibari-"
PACKAGE: Final = "hibari-tts"
"""The distribution that holds the voices, their runtime and the G2P (the front end)."""
SAMPLE_RATE_HZ: Final[int] = 24_000
"""hibari's output rate (`hibari.SAMPLE_RATE`); `hibari_voice.load_voice` checks they agree."""


class _DownloadsOnly(ModuleType):
    """`urllib.request` as hibari's `voices.py` gets it at import: a stand-in that imports the
    real module at the first attribute read.

    `voices.py` (the registry, read at discovery, and imported again with the package at load)
    imports `urllib.request` for its downloads, which utterd never asks for (only models already
    on disk are offered). The real import brings http.client, ssl and email: 3.9 MiB of every
    daemon's RSS and a few ms of its start, for nothing (docs/benchmarks.md, "Memory and ready
    time")."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("urllib.request") is self:
            del sys.modules["urllib.request"]
        return getattr(importlib.import_module("urllib.request"), name)


@contextlib.contextmanager
def _downloads_deferred() -> Iterator[None]:
    """Run an import of hibari's `voices.py` with `_DownloadsOnly` as `urllib.request`.

    The stand-in leaves `sys.modules` afterwards, so anything importing `urllib.request` later
    gets the real module (which also replaces the stand-in as the `urllib` package's attribute,
    through which hibari reaches it)."""
    if "urllib.request" in sys.modules:
        yield
        return
    import urllib

    stand_in = _DownloadsOnly("urllib.request")
    sys.modules["urllib.request"] = stand_in
    vars(urllib)["request"] = stand_in  # what `urllib.request.x` in voices.py reads
    try:
        yield
    finally:
        if sys.modules.get("urllib.request") is stand_in:
            del sys.modules["urllib.request"]


@functools.cache
def _registry() -> ModuleType | None:
    """hibari's `voices` module (registry + where each model lives), or None if hibari is absent.

    The module only needs the standard library, so it is loaded from its file on its own when
    the package has not been imported yet; importing `hibari.voices` would run `hibari/__init__`.
    """
    loaded = sys.modules.get("hibari.voices")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("hibari")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "voices.py"
    file_spec = importlib.util.spec_from_file_location("_utterd_hibari_registry", path)
    if file_spec is None or file_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(file_spec)
    try:
        with _downloads_deferred():
            file_spec.loader.exec_module(module)
    except (OSError, ValueError) as err:
        _LOGGER.warning("hibari_registry_unreadable path=%s reason=%r", path, err)
        return None
    return module


SYNTHESIS_REVISION: Final = 2
"""Bumped whenever utterd makes other audio from the same text and model, so that phrase-cache
entries made before are not served for it: 2, a piece over 6.4 s is decoded in blocks
(`stream.LONG_PIECE_FRAMES`)."""


@functools.cache
def hibari_version() -> str:
    """The installed hibari-tts's version: its G2P turns text into the model's phonemes."""
    return distribution_version(PACKAGE)


@functools.cache
def front_end_version() -> str:
    """What turns text into this voice's audio, for phrase-cache keys: hibari-tts's version and
    utterd's SYNTHESIS_REVISION."""
    return f"{hibari_version()}+synth{SYNTHESIS_REVISION}"


def _hibari_name(info: VoiceInfo) -> str:
    return info.voice_id.removeprefix(VOICE_ID_PREFIX)


class HibariFamily(VoiceFamily):
    """The hibari voices whose model is on disk (bundled in the package, or already cached)."""

    name = FAMILY
    _optimized_dir: Path | None = None

    def __init__(self, optimized_dir: Path | None = None) -> None:
        """`optimized_dir`: where the models' graphs, as optimized for this CPU, are kept (a
        restart then skips ONNX Runtime's optimizer); default `<model store>/optimized`."""
        self._optimized_dir = optimized_dir

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        # Folders hold Piper voices; hibari's own registry says where its models are.
        registry = _registry()
        if registry is None:
            _LOGGER.debug("family_unavailable family=hibari reason='hibari-tts not installed'")
            return []
        found: list[VoiceInfo] = []
        for name, entry in registry.VOICES.items():
            try:
                model_path = Path(registry.voice_path(name, download_missing=False))
            except (FileNotFoundError, ValueError, OSError) as err:
                _LOGGER.debug("voice_not_local family=hibari name=%s reason=%r", name, err)
                continue
            if not model_path.is_file():
                _LOGGER.debug("voice_not_local family=hibari name=%s path=%s", name, model_path)
                continue
            found.append(
                VoiceInfo(
                    voice_id=VOICE_ID_PREFIX + name,
                    family=FAMILY,
                    language=str(entry.get("language", "en-US")),
                    sample_rate_hz=SAMPLE_RATE_HZ,
                    model_path=model_path,
                    source=PACKAGE if entry.get("bundled") else str(model_path.parent),
                    model_files=(model_path,),
                    front_end_version=front_end_version(),
                    licence="Apache-2.0" if entry.get("bundled") else "",
                )
            )
        return found

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        name = _hibari_name(info)
        registry = _registry()
        if registry is None or name not in registry.VOICES:
            raise VoiceLoadError(f"voice {info.voice_id!r} is not in hibari's voice registry")
        from utterd.models.hibari.fft import import_hibari

        with _downloads_deferred():
            import_hibari()  # before voice.py imports hibari: its DSP without all of scipy.fft
            from utterd.models.hibari.voice import load_voice

        optimized = self._optimized_dir or default_model_store_dir() / OPTIMIZED_DIR_NAME
        return load_voice(info, name, engine, optimized_dir=optimized)
