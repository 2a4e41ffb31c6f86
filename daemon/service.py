"""The daemon's lifecycle: build the parts from settings, start them in order, stop them cleanly."""

from __future__ import annotations

import dataclasses
import enum
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from utterd.models.errors import UtterdError
from utterd.models.voice import EngineSettings, SynthesisParams
from utterd.models.voice_store import VoiceStore, default_families

from .cache_store import PhraseCache
from .jobs import Job
from .phrase_source import PhraseSource
from .prewarm import load_prewarm_list
from .player import Player, PlayerEvent
from .scheduler import Scheduler
from .server import Server
from .settings import Settings

_LOGGER = logging.getLogger(__name__)


class State(enum.Enum):
    """Where the daemon is in its life."""

    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Daemon:
    """Voices, player, scheduler and socket loop, wired together."""

    def __init__(self, settings: Settings, version: str) -> None:
        self.settings = settings
        self.version = version
        self.state = State.STARTING
        self._server: Server | None = None

    def _on_player_event(self, event: PlayerEvent) -> None:
        server = self._server
        if server is None:
            return
        if event.kind == "started":
            server.scheduler.on_started(event.job_id, event.at_s)
        elif event.kind == "played":
            server.scheduler.on_played(event.job_id)
        elif event.kind == "flushed":
            server.scheduler.on_played(event.job_id, event.error)
        elif event.kind == "mark":
            server.scheduler.on_mark(event.job_id, event.mark)
        elif event.kind == "paused":
            server.scheduler.on_paused(event.job_id)
        elif event.kind == "resumed":
            server.scheduler.on_resumed(event.job_id)
        elif event.kind == "underrun":
            _LOGGER.info("event=underrun job=%s", event.job_id)
        elif event.kind == "device":
            _LOGGER.warning("event=device available=%s error=%r", event.available, event.error)
            server.emit("device", {"available": event.available, "error": event.error})

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code."""
        started = time.monotonic()
        cfg = self.settings
        store = VoiceStore(
            default_families(cfg.voices.resolved_model_store(), cpu_pinning=cfg.voices.cpu_pinning),
            [p.expanduser() for p in cfg.voices.folders],
            EngineSettings(backend=cfg.voices.backend, threads=cfg.voices.threads),
        )
        default = store.info(cfg.voices.default)  # unknown default voice: fail at start, clearly
        prewarm = load_prewarm_list(cfg.cache.prewarm, cfg.cache.prewarm_file)
        cache = None
        if cfg.cache.enabled:
            cache = PhraseCache(
                cfg.cache.resolved_dir(), cfg.cache.ram_budget_bytes, cfg.cache.disk_budget_bytes
            )
        source = PhraseSource(store, cache, cfg.cache, store.engine)
        player = Player(cfg.audio, default_rate_hz=default.sample_rate_hz, on_event=self._on_player_event)

        def device_state() -> dict[str, Any]:
            return {**dataclasses.asdict(player.state)}

        server = Server(
            cfg,
            store,
            source,
            lambda emit: Scheduler(
                source,
                player,
                emit,
                cfg.limits.max_queue,
                cfg.limits.stream_idle_s,
                max_queue_per_client=cfg.limits.max_queue_per_client,
            ),
            device_state,
            self.version,
        )
        self._server = server
        server.bind()
        player.start()
        for voice_id in (cfg.voices.default, *cfg.voices.preload):
            try:
                store.get(voice_id)
                _LOGGER.info("event=voice-loaded voice=%s load_s=%.3f", voice_id, store.load_seconds(voice_id))
            except UtterdError as exc:  # the daemon still serves the other voices
                _LOGGER.error("event=voice-load-failed voice=%s error=%r", voice_id, exc.message)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            _LOGGER.info("event=signal signal=%s", signal.Signals(signum).name)
            server.request_stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        server.scheduler.start()
        if cfg.greeting:
            server.scheduler.submit(Job(text=cfg.greeting, voice_id=default.voice_id, params=SynthesisParams()))
        server.start_warming(prewarm)
        self.state = State.STARTED
        _LOGGER.info("event=ready start_s=%.3f version=%s", time.monotonic() - started, self.version)
        try:
            server.run()
        finally:
            self.state = State.STOPPING
            server.close()
            player.close()
            if cache is not None:
                cache.close()
            store.close()
            self.state = State.STOPPED
            _LOGGER.info("event=stopped")
        return 0
