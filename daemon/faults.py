"""Faults: what is broken right now, what it affects, since when and why.

The daemon keeps serving what it still can when a part fails (no sound device: `synthesize`
still works; a read-only cache folder: speech is synthesized instead of cached; a voice file
deleted: the loaded voice keeps speaking). Those parts report into one `FaultRegistry`, which
`describe` shows under `faults` and which publishes a `fault` event when a fault appears and a
`fault-cleared` event when it goes.

A fault is keyed by its `code` and its `subject` (what it affects: `device`, `cache`,
`voice:<id>`). Reporting an active fault again only refreshes its message and count, so an error
that repeats does not flood the event socket. Parts either push (`report`, `clear`, `set_fault`) when
they notice a change themselves, or are polled (`watch`) when nothing tells them.

Events leave from the registry's own thread (`utterd-faults`), one at a time in the order the
changes happened, so a `fault-cleared` never overtakes its `fault`. The same thread runs the
watched checks every `poll_interval_s`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "CACHE_FULL",
    "CACHE_READ_ONLY",
    "CACHE_UNAVAILABLE",
    "CACHE_WRITE_FAILED",
    "DEVICE_UNAVAILABLE",
    "FAULT_CODES",
    "NUMERICS_MISMATCH",
    "VOICE_FILE_MISSING",
    "Fault",
    "FaultRegistry",
]

_LOGGER = logging.getLogger(__name__)

DEVICE_UNAVAILABLE: Final = "device-unavailable"
"""The sound device is missing or failed; `speak` answers `device-unavailable`, `synthesize`
works; the player reopens the device every `audio.retry_interval_s`."""

CACHE_READ_ONLY: Final = "cache-read-only"
"""The cache folder cannot be written (read-only file system, permissions); cached entries are
still served, new ones stay in RAM."""

CACHE_FULL: Final = "cache-full"
"""The cache folder's file system is full (or over quota); as `cache-read-only`."""

CACHE_WRITE_FAILED: Final = "cache-write-failed"
"""Another write error in the cache folder; as `cache-read-only`."""

CACHE_UNAVAILABLE: Final = "cache-unavailable"
"""The cache folder cannot be used at all (cannot be created, not a folder, locked by another
utterd); the cache is RAM only until the daemon restarts."""

VOICE_FILE_MISSING: Final = "voice-file-missing"
"""A voice's model or config file is gone from disk; a loaded voice keeps speaking from memory."""

NUMERICS_MISMATCH: Final = "numerics-mismatch"
"""A voice's canary at load differed from its reference (a kernel computing wrong on this CPU,
a damaged model file): it runs on a fallback execution path that passed, or it refused to load
(the message says which, with the figures). Polled from `VoiceStore.numerics_faults`; cleared
when a later load of the voice passes on its configured path."""

FAULT_CODES: Final[Mapping[str, str]] = {
    DEVICE_UNAVAILABLE: "sound device missing or failed",
    CACHE_READ_ONLY: "cache folder read-only",
    CACHE_FULL: "cache folder full",
    CACHE_WRITE_FAILED: "cache write failed",
    CACHE_UNAVAILABLE: "cache folder unusable",
    VOICE_FILE_MISSING: "voice file deleted",
    NUMERICS_MISMATCH: "voice computes wrong on this machine",
}
"""Every fault code the daemon reports, with a short description."""

DEFAULT_POLL_INTERVAL_S: Final = 1.0
"""How often watched checks run (a few stat calls each)."""

Emit = Callable[[str, dict[str, Any]], None]
"""Publishes an event: (type, data); the server's `emit`."""

Check = Callable[[], Mapping[str, str]]
"""A watched condition: the subjects that have the fault now, each with its message."""


def _utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Fault:
    """One active fault."""

    code: str
    """Stable code (see FAULT_CODES)."""

    subject: str
    """What it affects: `device`, `cache` or `voice:<voice id>`."""

    message: str
    """The last error seen, for a person (names the device, folder or file)."""

    since_s: float
    """Wall-clock time (seconds since the epoch) when it appeared."""

    reports: int = 1
    """How often it was reported while active."""

    def as_dict(self, now_s: float | None = None) -> dict[str, Any]:
        """The fault as `describe` and the `fault` event carry it."""
        now_s = time.time() if now_s is None else now_s
        return {
            "code": self.code,
            "subject": self.subject,
            "message": self.message,
            "since": _utc(self.since_s),
            "active_s": round(max(0.0, now_s - self.since_s), 3),
            "reports": self.reports,
        }


class FaultRegistry:
    """The daemon's active faults, their events and the checks that are polled. Thread-safe."""

    def __init__(
        self,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Fault] = {}
        self._checks: list[tuple[str, Check]] = []
        # Events are queued under the lock, so their order is the order of the changes.
        self._events: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._emit: Emit | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- reporting --------------------------------------------------------------------------------
    def report(self, code: str, subject: str, message: str) -> bool:
        """The fault is present now; True when it is new (a `fault` event goes out)."""
        with self._lock:
            return self._report_locked(code, subject, message)

    def clear(self, code: str, subject: str) -> bool:
        """The fault is gone; True when it was active (a `fault-cleared` event goes out)."""
        with self._lock:
            return self._clear_locked(code, subject)

    def set_fault(self, subject: str, code: str | None, message: str = "") -> None:
        """`subject` has exactly this fault now (None: none); its other faults are cleared.

        For a part with one state at a time, e.g. the cache going from read-only to full.
        """
        with self._lock:
            for key in [k for k in self._active if k[1] == subject and k[0] != code]:
                self._clear_locked(*key)
            if code is not None:
                self._report_locked(code, subject, message)

    def reconcile(self, code: str, current: Mapping[str, str]) -> None:
        """`current` (subject -> message) is every subject that has fault `code` now."""
        with self._lock:
            for key in [k for k in self._active if k[0] == code and k[1] not in current]:
                self._clear_locked(*key)
            for subject, message in current.items():
                self._report_locked(code, subject, message)

    def _report_locked(self, code: str, subject: str, message: str) -> bool:
        key = (code, subject)
        old = self._active.get(key)
        if old is not None:
            self._active[key] = replace(old, message=message, reports=old.reports + 1)
            return False
        fault = Fault(code, subject, message, self._clock())
        self._active[key] = fault
        _LOGGER.warning("event=fault code=%s subject=%s message=%r", code, subject, message)
        self._events.put(("fault", fault.as_dict(fault.since_s)))
        return True

    def _clear_locked(self, code: str, subject: str) -> bool:
        fault = self._active.pop((code, subject), None)
        if fault is None:
            return False
        now_s = self._clock()
        data = fault.as_dict(now_s)
        data["cleared"] = _utc(now_s)
        _LOGGER.info(
            "event=fault-cleared code=%s subject=%s active_s=%.3f", code, subject, data["active_s"]
        )
        self._events.put(("fault-cleared", data))
        return True

    # -- reading ----------------------------------------------------------------------------------
    def active(self) -> list[Fault]:
        """Active faults, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda f: (f.since_s, f.code, f.subject))

    def is_active(self, code: str, subject: str) -> bool:
        with self._lock:
            return (code, subject) in self._active

    def as_list(self) -> list[dict[str, Any]]:
        """Active faults as `describe` shows them, oldest first."""
        now_s = self._clock()
        return [fault.as_dict(now_s) for fault in self.active()]

    # -- polling and events -----------------------------------------------------------------------
    def watch(self, code: str, check: Check) -> None:
        """Run `check` every poll interval and `reconcile(code, ...)` what it returns."""
        with self._lock:
            self._checks.append((code, check))

    def poll(self) -> None:
        """Run every watched check once now (the registry's thread does this periodically)."""
        with self._lock:
            checks = list(self._checks)
        for code, check in checks:
            try:
                current = check()
            except Exception:  # a broken check keeps its faults as they were; others still run
                _LOGGER.exception("event=fault-check-failed code=%s", code)
                continue
            self.reconcile(code, current)

    def start(self, emit: Emit) -> None:
        """Publish events with `emit` (queued ones first) and start polling. Once only."""
        if self._thread is not None:
            raise RuntimeError("the fault registry is already started")
        self._emit = emit
        self._thread = threading.Thread(target=self._run, name="utterd-faults", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop polling after publishing the queued events. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._events.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_poll_s = time.monotonic()
        while True:
            wait_s = next_poll_s - time.monotonic()
            if wait_s <= 0:
                self.poll()
                next_poll_s = time.monotonic() + self._poll_interval_s
                continue
            try:
                item = self._events.get(timeout=wait_s)
            except queue.Empty:
                continue
            if item is None:
                self._drain()
                return
            self._publish(*item)

    def _drain(self) -> None:
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._publish(*item)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        assert self._emit is not None
        try:
            self._emit(kind, data)
        except Exception:  # a failing publisher must not end fault reporting
            _LOGGER.exception("event=fault-publish-failed kind=%s", kind)
