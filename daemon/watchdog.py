"""Liveness for systemd's watchdog: `WATCHDOG=1` goes out only while the daemon is really alive.

Two things must move for the daemon to be alive: the socket loop (it renews a `Heartbeat` every
turn, and may announce how long it will then wait for work) and the audio path (the player's
supervisor thread comes round within the sleep it announced, and while the device stream is
started, the PortAudio callback keeps running). A thread waiting for work within what it
announced is not stuck, so neither needs to wake while the daemon is idle only to prove it lives. If either stands still for longer than `stale_after_s`, the watchdog thread stops
sending `WATCHDOG=1`, says why in STATUS and the log, and systemd restarts the service once
`WatchdogSec=` has passed without a ping.

The same thread refreshes the STATUS line (`ready: 2/2 voices loaded, queue 0, device ok`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from utterd.daemon.audio.player import PlayerHealth
from utterd.daemon.profile import DEFAULT_STATUS_PERIOD_S
from utterd.daemon.sdnotify import Notifier

__all__ = ["Heartbeat", "Watchdog", "liveness_problem", "stale_limit_s"]

_LOGGER = logging.getLogger(__name__)

STATUS_PERIOD_S: Final = DEFAULT_STATUS_PERIOD_S
"""How often STATUS is refreshed by default (and, at most, how far apart watchdog pings are);
the eco profile waits longer (daemon/profile.py)."""

MIN_STALE_S: Final = 2.0
"""Shortest stall counted as stuck: short hiccups (a busy machine, a device start) are not."""


class Heartbeat:
    """A time stamp that a loop renews every turn and other threads read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_s: float = clock()
        """`clock()` at the last `beat()` (a float assignment: atomic, no lock needed)."""
        self.wait_s: float = 0.0
        """What the last `beat()` announced: the loop may block this long waiting for work."""

    def beat(self, wait_s: float = 0.0) -> None:
        """The loop turns. `wait_s`: it is about to wait up to that long for work (a poll with
        a timeout; `math.inf` for none), and is not stuck meanwhile; beat again once woken, so
        that what it then does is watched. A loop may so sleep until it has work, rather than
        wake every so often only to prove it lives."""
        self.wait_s = wait_s
        self.last_s = self._clock()

    def age_s(self, now_s: float | None = None) -> float:
        """Seconds since the last beat."""
        return (self._clock() if now_s is None else now_s) - self.last_s

    def overdue_s(self, now_s: float | None = None) -> float:
        """Seconds past the announced wait since the last beat (negative while within it)."""
        return self.age_s(now_s) - self.wait_s


def stale_limit_s(watchdog_interval_s: float | None) -> float:
    """How long a part may stand still before it counts as stuck: the ping interval (half of
    `WatchdogSec=`), at least MIN_STALE_S."""
    return max(MIN_STALE_S, watchdog_interval_s or 0.0)


def liveness_problem(
    now_s: float, loop: Heartbeat, audio: PlayerHealth, stale_after_s: float
) -> str | None:
    """Why the daemon is not alive at `now_s`, in words; None when it is."""
    if loop.overdue_s(now_s) > stale_after_s:
        return f"socket loop has not turned for {loop.age_s(now_s):.1f} s"
    overdue_s = now_s - (audio.supervisor_beat_s + audio.supervisor_sleep_s)
    if overdue_s > stale_after_s:
        return f"audio supervisor thread is {overdue_s:.1f} s overdue"
    if audio.callback_s is not None:
        silent_s = now_s - audio.callback_s
        if silent_s > stale_after_s:
            return f"audio callback has not run for {silent_s:.1f} s while the stream is started"
    return None


class Watchdog:
    """The thread that pings systemd's watchdog while the daemon is alive and refreshes STATUS.

    Does nothing (starts no thread) when no service manager listens.
    """

    def __init__(
        self,
        notifier: Notifier,
        loop: Heartbeat,
        audio_health: Callable[[], PlayerHealth],
        status: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        status_period_s: float = STATUS_PERIOD_S,
    ) -> None:
        """`status_period_s`: the longest wait between two looks (a ping is sent at least every
        half `WatchdogSec=` whatever it says); `profile.status_period_s` gives it per profile."""
        self._notifier = notifier
        self._loop = loop
        self._audio_health = audio_health
        self._status = status
        self._clock = clock
        interval_s = notifier.watchdog_interval_s
        self.enabled = interval_s is not None
        """Whether systemd's watchdog is on (WatchdogSec= set for this process)."""
        self.stale_after_s = stale_limit_s(interval_s)
        """Stall that counts as stuck."""
        self.tick_s = min(interval_s, status_period_s) if interval_s else status_period_s
        """Time between checks; pings go out every tick while alive."""
        self.problem: str | None = None
        """The last check's finding; None while alive."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="utterd-watchdog", daemon=True)
        self._sent_status: str | None = None

    def start(self) -> None:
        if self._notifier.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def forget_status(self) -> None:
        """Someone else sent a STATUS line: send ours again at the next tick."""
        self._sent_status = None

    def check(self) -> str | None:
        """Look once; remember and log a change of finding."""
        problem = liveness_problem(
            self._clock(), self._loop, self._audio_health(), self.stale_after_s
        )
        if problem is not None and self.problem is None:
            _LOGGER.error("event=watchdog-withheld reason=%r", problem)
        elif problem is None and self.problem is not None:
            _LOGGER.warning("event=watchdog-recovered after=%r", self.problem)
        self.problem = problem
        return problem

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                problem = self.check()
                status = f"stuck: {problem}" if problem else self._status()
                changed = status if status != self._sent_status else None
                if problem is None and self.enabled:
                    self._notifier.watchdog(changed)
                elif changed is not None:
                    self._notifier.status(changed)
                self._sent_status = status
            except Exception:  # a bug here must not end the pings for good
                _LOGGER.exception("event=watchdog-error")
            self._stop.wait(self.tick_s)
