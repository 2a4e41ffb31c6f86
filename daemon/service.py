"""The daemon's lifecycle: build the parts from settings, start them in order, stop them cleanly.

Signals (handled on the `utterd-control` thread; the handlers only queue the signal number):

- SIGTERM / SIGINT: stop serving. `server.on_shutdown` says what happens to the job speaking:
  `stop` silences it now, `finish` waits up to `server.shutdown_finish_s` for it to end (a second
  signal cuts the wait short). Then the queue is dropped, the phrase cache's pending writes are
  flushed, and the process exits 0.
- SIGHUP: re-read the config file `serve` was started with (and re-apply its command-line
  overrides), validate it fully, and apply the keys in LIVE_KEYS; any other changed key is logged
  as taking effect at restart; with Curve, the allow-list's key folder is read again too. An
  invalid file (or client key file) is rejected with a logged reason and the settings in force
  stay. Either way an event goes out (`config-reloaded` / `config-rejected`) and
  `describe` shows the result under `config`.

Under systemd (`Type=notify`, see daemon/sdnotify.py) the daemon reports STATUS lines at each
start-up phase, READY=1 once the sockets are bound and the default voice is loaded and warm,
RELOADING=1 / READY=1 around a reload, STOPPING=1 at shutdown, and WATCHDOG=1 while the socket
loop and the audio path are alive (daemon/watchdog.py).

With `wyoming.uri` set, the Wyoming server (daemon/bridges/wyoming.py) listens before READY=1
(a port it cannot take stops the start) and is the first part stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from utterd.daemon import memory
from utterd.daemon.audio.player import Player, PlayerEvent
from utterd.daemon.cache.phrase_source import PhraseSource
from utterd.daemon.cache.prewarm import PrewarmSpec, load_prewarm_list
from utterd.daemon.cache.store import PhraseCache
from utterd.daemon.config import ConfigError, find_config_file
from utterd.daemon.faults import (
    DEVICE_UNAVAILABLE,
    NUMERICS_MISMATCH,
    VOICE_FILE_MISSING,
    FaultRegistry,
)
from utterd.daemon.profile import fault_poll_interval_s, status_period_s
from utterd.daemon.protocol.events import ConfigRejectedEvent, ConfigReloadedEvent, DeviceEvent
from utterd.daemon.publisher import EventPublisher
from utterd.daemon.sdnotify import Notifier
from utterd.daemon.server import Server
from utterd.daemon.settings import Settings, TextSettings
from utterd.daemon.speech.jobs import Job
from utterd.daemon.speech.render import SsmlRenderer
from utterd.daemon.speech.scheduler import Scheduler
from utterd.daemon.watchdog import Watchdog
from utterd.models.errors import UtterdError
from utterd.models.text import frontend
from utterd.models.text.frontend import FrontEndOptions
from utterd.models.text.normalize_en import DateOrder, EmojiPolicy, EnglishOptions
from utterd.models.voice import EngineSettings, SynthesisParams
from utterd.models.voice_store import VoiceStore, default_families

if TYPE_CHECKING:
    from utterd.daemon.bridges.wyoming import WyomingBridge

_LOGGER = logging.getLogger(__name__)

LIVE_KEYS: Final[frozenset[str]] = frozenset(
    {
        "log_level",
        "limits.max_text_chars",
        "cache.max_text_chars",
        "cache.deterministic",
        "cache.prewarm",
        "cache.prewarm_file",
        "cache.prewarm_sessions",
        "server.on_shutdown",
        "server.shutdown_finish_s",
    }
)
"""Dotted keys a SIGHUP reload applies at once; every other key takes effect at restart."""

_STARTED: Final = -1
"""Queued on the control thread once start-up is complete (a reload may wait for it)."""

_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def front_end_options(text: TextSettings) -> FrontEndOptions:
    """The text front end's options from config `text:` (values already validated)."""
    date_order: DateOrder = "dmy" if text.date_order == "dmy" else "mdy"
    emoji: EmojiPolicy = "name" if text.emoji == "name" else "skip"
    words = {w: said for w, said in text.lexicon.items() if not _is_ipa(said)}
    phonemes = {w: said.strip()[1:-1] for w, said in text.lexicon.items() if _is_ipa(said)}
    return FrontEndOptions(
        english=EnglishOptions(date_order=date_order, emoji=emoji, lexicon=words),
        own_normalizer=frozenset(text.own_normalizer),
        phoneme_lexicon=phonemes,
    )


def _is_ipa(said: str) -> bool:
    """A lexicon entry written `/.../` gives phonemes (IPA), not words."""
    said = said.strip()
    return len(said) > 2 and said.startswith("/") and said.endswith("/")


class State(enum.Enum):
    """Where the daemon is in its life."""

    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"


def flatten(settings: object, prefix: str = "") -> dict[str, Any]:
    """Settings as {dotted key: value}, leaves only (a list is one value)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


def _replace_key(settings: Any, dotted: str, value: object) -> Any:
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(settings, **{head: value})
    return dataclasses.replace(
        settings, **{head: _replace_key(getattr(settings, head), rest, value)}
    )


def merge_live(current: Settings, new: Settings) -> tuple[Settings, list[str], list[str]]:
    """(settings to run with, live keys that changed, restart keys that differ from `current`).

    The result is `current` with the LIVE_KEYS of `new`: keys needing a restart keep the value
    the daemon runs with, so `describe` never shows a value that is not in force.
    """
    old_flat, new_flat = flatten(current), flatten(new)
    changed = sorted(k for k in LIVE_KEYS if old_flat[k] != new_flat[k])
    restart = sorted(k for k in old_flat if k not in LIVE_KEYS and old_flat[k] != new_flat[k])
    merged = current
    for key in changed:
        merged = _replace_key(merged, key, new_flat[key])
    return merged, changed, restart


@dataclasses.dataclass
class ConfigStatus:
    """The config in force and the last reload's outcome, for `describe` and the events."""

    file: str | None
    """The file last read (at start, or by the last reload applied); None: defaults (no file
    was found)."""

    generation: int = 1
    """1 for the config read at start, +1 for every reload applied."""

    restart_required: list[str] = dataclasses.field(default_factory=list)
    """Keys whose value in the file differs from the value in force until a restart."""

    last_reload: dict[str, Any] | None = None
    """`{"result": "applied" | "rejected", "at": ISO time, ...}` of the last SIGHUP; None if none."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Daemon:
    """Voices, player, scheduler and socket loop, wired together."""

    def __init__(
        self,
        settings: Settings,
        version: str,
        *,
        reload_settings: Callable[[], Settings] | None = None,
        config_file: Path | None = None,
        notifier: Notifier | None = None,
        find_file: Callable[[], Path | None] = find_config_file,
    ) -> None:
        """`reload_settings` reads the config again for SIGHUP (None: reloads are refused).

        `config_file` is the file named or found at start. Without one, `reload_settings` searches
        again (a file may have been written since, at $XDG_CONFIG_HOME/utterd/config.yaml):
        `find_file` is that same search, so a reload reports the file it read.
        """
        self.settings = settings
        self.version = version
        self.state = State.STARTING
        self.faults = FaultRegistry(poll_interval_s=fault_poll_interval_s(settings.profile))
        """Active faults (device, cache, voice files): `describe` and the fault events."""
        self._reload_settings = reload_settings
        self._notifier = notifier if notifier is not None else Notifier(None)
        self._config_file = config_file
        self._find_file = find_file
        self._config = ConfigStatus(str(config_file) if config_file is not None else None)
        self._publisher = EventPublisher()
        """Every event leaves through it; built first, so the scheduler and server get it."""
        self._scheduler: Scheduler | None = None
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._server: Server | None = None
        self._player: Player | None = None
        self._store: VoiceStore | None = None
        self._watchdog: Watchdog | None = None
        self._stop_requested = threading.Event()

    def _on_player_event(self, event: PlayerEvent) -> None:
        """The player's events thread: the scheduler's events go out from here, straight onto
        the PUB socket (daemon/publisher.py), not through the socket loop."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        if event.kind == "started":
            scheduler.on_started(event.job_id, event.at_s)
        elif event.kind == "played":
            scheduler.on_played(event.job_id)
        elif event.kind == "flushed":
            scheduler.on_played(event.job_id, event.error)
        elif event.kind == "mark":
            scheduler.on_mark(event.job_id, event.mark)
        elif event.kind == "paused":
            scheduler.on_paused(event.job_id)
        elif event.kind == "resumed":
            scheduler.on_resumed(event.job_id)
        elif event.kind == "underrun":
            _LOGGER.info("event=underrun job=%s", event.job_id)
        elif event.kind == "device":
            _LOGGER.warning("event=device available=%s error=%r", event.available, event.error)
            # The player sets `available` on every device event.
            self._publisher.publish(DeviceEvent(bool(event.available), event.error))
            self.faults.reconcile(DEVICE_UNAVAILABLE, self._device_faults())

    def _on_cache_fault(self, code: str | None, reason: str | None) -> None:
        """The cache's disk tier degraded (read-only, full, ...) or recovered (None)."""
        self.faults.set_fault("cache", code, reason or "")

    def _device_faults(self) -> dict[str, str]:
        """The device fault as the player sees it now (its events and the fault poll ask)."""
        player = self._player
        if player is None:
            return {}
        state = player.state
        return {} if state.available else {"device": state.error or "unavailable"}

    def _voice_faults(self) -> dict[str, str]:
        """Voices whose files were deleted, polled: a loaded one keeps speaking from memory."""
        store = self._store
        if store is None:
            return {}
        faults = {}
        for voice_id, paths in store.missing_files().items():
            gone = ", ".join(str(path) for path in paths)
            try:
                loaded = store.is_loaded(voice_id)
            except UtterdError:  # rescanned away meanwhile
                continue
            effect = (
                "the loaded voice keeps speaking from memory; at the next start it is unknown"
                if loaded
                else "the voice cannot be loaded until the file is back"
            )
            faults[f"voice:{voice_id}"] = f"deleted: {gone}; {effect}"
        return faults

    def _status(self, text: str) -> None:
        """A start-up or shutdown phase, for `systemctl status` and the log."""
        _LOGGER.debug("event=status status=%r", text)
        self._notifier.status(text)
        if self._watchdog is not None:
            self._watchdog.forget_status()

    def status_line(self) -> str:
        """`ready: 2/2 voices loaded, queue 0, device ok` (STATUS while serving)."""
        server, store, player = self._server, self._store, self._player
        if server is None or store is None or player is None:
            return self.state.value
        infos = store.infos()
        loaded = sum(1 for info in infos if store.is_loaded(info.voice_id))
        device = player.state
        return (
            f"ready: {loaded}/{len(infos)} voices loaded, queue {server.scheduler.queue_length()}, "
            f"device {'ok' if device.available else 'unavailable'}"
            + ("" if self._config.generation == 1 else f", config #{self._config.generation}")
        )

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code."""
        started = time.monotonic()
        cfg = self.settings
        # Handlers first: until they are in place SIGHUP would kill the process.
        control = threading.Thread(target=self._control, name="utterd-control", daemon=True)
        control.start()
        self._install_signal_handlers()
        self._status("starting: finding voices")
        store = VoiceStore(
            default_families(cfg.voices.resolved_model_store(), cpu_pinning=cfg.voices.cpu_pinning),
            [p.expanduser() for p in cfg.voices.folders],
            EngineSettings(backend=cfg.voices.backend, threads=cfg.voices.threads),
            backends=cfg.voices.backends,
            idle_unload_s=cfg.voices.idle_unload_s,
            keep_loaded=(cfg.voices.default,),
        )
        self._store = store
        default = store.info(cfg.voices.default)  # unknown default voice: fail at start, clearly
        installed = {info.voice_id for info in store.infos()}
        for voice_id, backend in cfg.voices.backends.items():
            if voice_id not in installed:  # not an error: the voice may be installed later
                _LOGGER.warning(
                    "event=backend-for-unknown-voice voice=%s backend=%s", voice_id, backend
                )
        prewarm = load_prewarm_list(cfg.cache.prewarm, cfg.cache.prewarm_file)
        cache = None
        if cfg.cache.enabled:
            self._status("starting: opening the phrase cache")
            cache = PhraseCache(
                cfg.cache.resolved_dir(),
                cfg.cache.ram_budget_bytes,
                cfg.cache.disk_budget_bytes,
                write_retry_s=cfg.cache.write_retry_s,
                on_disk_fault=self._on_cache_fault,
            )
        front_end = front_end_options(cfg.text)
        frontend.warm_up(front_end)
        source = PhraseSource(store, cache, cfg.cache, store.engine_for, front_end)
        ssml = SsmlRenderer(source, store, front_end, by_language=cfg.voices.by_language)
        player = Player(
            cfg.audio, default_rate_hz=default.sample_rate_hz, on_event=self._on_player_event
        )
        self._player = player

        def device_state() -> dict[str, Any]:
            return {**dataclasses.asdict(player.state)}

        # In order: the publisher (built with the daemon), the scheduler publishing through it,
        # the server serving both.
        scheduler = Scheduler(
            source,
            player,
            self._publisher.emit,
            cfg.limits.max_queue,
            cfg.limits.stream_idle_s,
            max_queue_per_client=cfg.limits.max_queue_per_client,
            ssml=ssml,
        )
        self._scheduler = scheduler
        server = Server(
            cfg, store, source, scheduler, self._publisher, device_state, self.version, ssml
        )
        self._server = server
        if self._stop_requested.is_set():  # a stop signal came while the parts were built
            server.request_stop()
        server.describe_sections["config"] = self._config.as_dict
        server.describe_sections["faults"] = self.faults.as_list
        self._status("starting: binding sockets")
        server.bind()
        player.start()
        self.faults.watch(DEVICE_UNAVAILABLE, self._device_faults)
        self.faults.watch(VOICE_FILE_MISSING, self._voice_faults)
        self.faults.watch(NUMERICS_MISMATCH, store.numerics_faults)
        self.faults.start(self._publisher.emit)
        for voice_id in (cfg.voices.default, *cfg.voices.preload):
            if self._stop_requested.is_set():
                break
            self._status(f"starting: loading voice {voice_id}")
            try:
                store.get(voice_id)
                _LOGGER.info(
                    "event=voice-loaded voice=%s load_s=%.3f",
                    voice_id,
                    store.load_seconds(voice_id),
                )
            except UtterdError as exc:  # the daemon still serves the other voices
                _LOGGER.error("event=voice-load-failed voice=%s error=%r", voice_id, exc.message)
        # Loading parsed and optimized graphs and freed the scratch: give those pages back.
        memory.trim()
        scheduler.start()
        if cfg.greeting:
            scheduler.submit(
                Job(text=cfg.greeting, voice_id=default.voice_id, params=SynthesisParams())
            )
        server.start_warming(prewarm)
        watchdog = Watchdog(
            self._notifier,
            server.heartbeat,
            player.health,
            self.status_line,
            status_period_s=status_period_s(cfg.profile),
        )
        self._watchdog = watchdog
        server.describe_sections["watchdog"] = lambda: {
            "enabled": watchdog.enabled,
            "stale_after_s": watchdog.stale_after_s,
            "problem": watchdog.problem,
        }
        server.heartbeat.beat()
        watchdog.start()
        bridge = self._wyoming_bridge(store, source, ssml, server)
        try:
            if bridge is not None:
                self._status("starting: Wyoming server")
                bridge.start()  # BridgeBindError stops the start, the parts closed below
            self.state = State.STARTED
            self._notifier.ready(self.status_line())
            _LOGGER.info(
                "event=ready start_s=%.3f version=%s", time.monotonic() - started, self.version
            )
            self._signals.put(_STARTED)
            server.run()
        finally:
            self.state = State.STOPPING
            self._notifier.stopping("stopping")
            if bridge is not None:  # first: its syntheses run on the server's pool
                bridge.stop()
            watchdog.stop()
            self.faults.close()  # its last events go out before the sockets close
            server.close()
            player.close()
            if cache is not None:
                # close() lets writes under way land (fsync, rename) and stamps last-use times.
                cache.close()
                stats = cache.stats()
                _LOGGER.info(
                    "event=cache-flushed disk_entries=%d in_flight=%d",
                    stats.disk.entries,
                    stats.in_flight,
                )
            store.close()
            self.state = State.STOPPED
            _LOGGER.info("event=stopped")
        return 0

    def _wyoming_bridge(
        self, store: VoiceStore, source: PhraseSource, ssml: SsmlRenderer, server: Server
    ) -> WyomingBridge | None:
        """The Wyoming server on the daemon's own parts, when `wyoming.uri` is set."""
        if self.settings.wyoming.uri is None:
            return None
        # Imported only here: the bridge's asyncio and wyoming cost every start 1 MiB and
        # 60 ms (bench_memory.py), and most daemons serve no Wyoming.
        from utterd.daemon.bridges.wyoming import DaemonSynthesizer, WyomingBridge

        synth = DaemonSynthesizer(
            store, source, ssml, lambda: server.settings, server.submit_synthesis
        )
        bridge = WyomingBridge(self.settings.wyoming, synth, self.version)
        server.describe_sections["wyoming"] = bridge.describe
        return bridge

    # -- signals -------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller stops the daemon

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            # SimpleQueue.put is reentrant: safe in a handler that may interrupt anything.
            self._signals.put(signum)

        for signum in (*_STOP_SIGNALS, signal.SIGHUP):
            signal.signal(signum, on_signal)

    def _control(self) -> None:
        """Act on signals, one at a time, off the socket loop."""
        started = False
        reload_pending = False
        while True:
            signum = self._signals.get()
            if signum == _STARTED:
                started = True
                if reload_pending:
                    reload_pending = False
                    self._reload_safely()
                continue
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if started:
                    _LOGGER.info("event=signal signal=%s action=reload", name)
                    self._reload_safely()
                else:
                    _LOGGER.info("event=signal signal=%s action=reload-after-start", name)
                    reload_pending = True
                continue
            self._shutdown(name, started)
            return

    def _shutdown(self, name: str, started: bool) -> None:
        self._stop_requested.set()
        server = self._server
        if server is None:  # still building the parts: run() sees the flag
            _LOGGER.info("event=signal signal=%s action=stop", name)
            return
        settings = server.settings.server
        finish = settings.on_shutdown == "finish" and started
        current = server.scheduler.finish() if finish else None
        if current is not None and not current.state.terminal:
            _LOGGER.info(
                "event=signal signal=%s action=finish job=%s wait_s=%.1f",
                name,
                current.job_id,
                settings.shutdown_finish_s,
            )
            self._notifier.stopping(f"stopping: finishing job {current.job_id}")
            deadline_s = time.monotonic() + settings.shutdown_finish_s
            while not current.state.terminal:
                left_s = deadline_s - time.monotonic()
                if left_s <= 0:
                    _LOGGER.warning("event=shutdown-finish-timeout job=%s", current.job_id)
                    break
                try:
                    again = self._signals.get(timeout=min(0.05, left_s))
                except queue.Empty:
                    continue
                if again in _STOP_SIGNALS:
                    _LOGGER.info(
                        "event=signal signal=%s action=stop-now", signal.Signals(again).name
                    )
                    break
                # SIGHUP while stopping: nothing to reload into.
        else:
            _LOGGER.info("event=signal signal=%s action=stop", name)
            self._notifier.stopping("stopping")
        server.request_stop()

    # -- reload ----------------------------------------------------------------------------------
    def _reload_safely(self) -> None:
        try:
            self._reload()
        except Exception:  # a bug in a reload must not end signal handling (and so SIGTERM)
            _LOGGER.exception("event=config-reload-crash")
            self._notifier.ready(self.status_line())

    def _reload(self) -> None:
        """Re-read the config; apply it if valid, keep the one in force if not."""
        server = self._server
        assert server is not None
        self._notifier.reloading("reloading config")
        status = self._config
        try:
            if self._reload_settings is None:
                raise ConfigError(
                    "command line", None, "this daemon was started without a config loader"
                )
            # The file the loader reads: the one of the start, else what the search finds now.
            read = self._config_file if self._config_file is not None else self._find_file()
            new = self._reload_settings()
            merged, changed, restart = merge_live(server.settings, new)
            prewarm: tuple[PrewarmSpec, ...] | None = None
            if {"cache.prewarm", "cache.prewarm_file"} & set(changed):
                # Parsed before anything is applied, so a bad entry rejects the whole file.
                prewarm = load_prewarm_list(
                    merged.cache.prewarm,
                    merged.cache.prewarm_file,
                    config_source=str(read) if read is not None else "config",
                )
            # The Curve allow-list's folder is read again (a key added or removed); a bad key
            # file rejects the reload and the keys in force stay (AllowList.reload swaps last).
            allow_list = server.access.allow_list
            curve_clients = allow_list.reload() if allow_list is not None else None
        except UtterdError as exc:
            key = getattr(exc, "key", None)
            source = getattr(exc, "source", status.file)
            status.last_reload = {
                "result": "rejected",
                "at": _now_iso(),
                "error": exc.message,
                "key": key,
            }
            _LOGGER.error(
                "event=config-rejected file=%s key=%s generation=%d reason=%r",
                source,
                key,
                status.generation,
                exc.message,
            )
            self._publisher.publish(
                ConfigRejectedEvent(
                    file=source, key=key, reason=exc.message, generation=status.generation
                )
            )
            self._notifier.ready(f"{self.status_line()}; config reload rejected: {exc.message}")
            self._forget_status()
            return
        self._apply(server, merged, changed, prewarm)
        status.file = str(read) if read is not None else None
        status.generation += 1
        status.restart_required = restart
        status.last_reload = {
            "result": "applied",
            "at": _now_iso(),
            "error": None,
            "changed": changed,
            "restart_required": restart,
            "curve_clients": curve_clients,
        }
        _LOGGER.info(
            "event=config-reloaded file=%s generation=%d changed=%s",
            status.file,
            status.generation,
            ",".join(changed) or "-",
        )
        for key in restart:
            _LOGGER.warning("event=config-needs-restart key=%s file=%s", key, status.file)
        self._publisher.publish(
            ConfigReloadedEvent(
                file=status.file,
                generation=status.generation,
                changed=changed,
                restart_required=restart,
                curve_clients=curve_clients,
            )
        )
        self._notifier.ready(self.status_line())
        self._forget_status()

    def _apply(
        self,
        server: Server,
        merged: Settings,
        changed: list[str],
        prewarm: tuple[PrewarmSpec, ...] | None,
    ) -> None:
        """Put the live keys of a validated config into force."""
        if "log_level" in changed:
            logging.getLogger().setLevel(merged.log_level)
        # The socket loop reads limits from server.settings per request; one reference swap.
        server.source.settings = merged.cache
        server.settings = merged
        self.settings = merged
        if prewarm is not None:
            server.start_warming(prewarm)

    def _forget_status(self) -> None:
        if self._watchdog is not None:
            self._watchdog.forget_status()
