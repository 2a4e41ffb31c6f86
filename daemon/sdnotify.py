"""systemd's readiness protocol (sd_notify) in a few lines, without libsystemd.

The service manager passes an AF_UNIX datagram socket in `$NOTIFY_SOCKET` (a path, or a Linux
abstract name written with a leading `@`); the service sends newline-separated `KEY=VALUE`
assignments to it, one datagram per message. The kernel attaches the sender's credentials, which
is how systemd knows the message comes from the main process (`NotifyAccess=main`). With
`WatchdogSec=` set, systemd also passes `$WATCHDOG_USEC` (and `$WATCHDOG_PID`): the service must
send `WATCHDOG=1` more often than that, or it is killed and restarted.

Without `$NOTIFY_SOCKET` (not run by systemd, or not `Type=notify`) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import MutableMapping
from typing import Final

__all__ = ["NOTIFY_SOCKET_ENV", "WATCHDOG_PID_ENV", "WATCHDOG_USEC_ENV", "Notifier"]

_LOGGER = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
"""Environment variable holding the service manager's notification socket."""

WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
"""Environment variable holding the watchdog timeout in microseconds (`WatchdogSec=`)."""

WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"
"""If set, the watchdog is meant for this process id only."""

_SEND_TIMEOUT_S: Final = 1.0
"""A service manager that does not read its socket must not hang the daemon."""


def _socket_address(value: str) -> str | None:
    """`$NOTIFY_SOCKET` as a Python AF_UNIX address; None for a kind we cannot use."""
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. `vsock:` (systemd >= 254, for VMs): not for a daemon on the host


class Notifier:
    """Sends state to the service manager; every method is a no-op when it is not enabled.

    Thread-safe: each message is one `sendto` of one datagram.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """`address` as in `$NOTIFY_SOCKET` (path or `@abstract`); None disables everything."""
        self._address = _socket_address(address) if address else None
        if address and self._address is None:
            _LOGGER.warning("event=sd-notify-unsupported socket=%r", address)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """A notifier for `$NOTIFY_SOCKET` / `$WATCHDOG_USEC` / `$WATCHDOG_PID`.

        With `unset`, the three variables are removed from `environ`, so that child processes
        (none today; a voice engine might spawn one) do not talk to the manager in our name.
        """
        env = os.environ if environ is None else environ
        address = env.get(NOTIFY_SOCKET_ENV) or None
        usec: int | None = None
        raw_usec = env.get(WATCHDOG_USEC_ENV)
        raw_pid = env.get(WATCHDOG_PID_ENV)
        try:
            usec = int(raw_usec) if raw_usec else None
            if raw_pid and int(raw_pid) != os.getpid():
                usec = None  # the watchdog is some other process's
        except ValueError:
            _LOGGER.warning(
                "event=sd-notify-bad-watchdog watchdog_usec=%r watchdog_pid=%r", raw_usec, raw_pid
            )
            usec = None
        if unset:
            for name in (NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV):
                env.pop(name, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._address is not None

    @property
    def watchdog_timeout_s(self) -> float | None:
        """The watchdog timeout systemd enforces (`WatchdogSec=`); None if there is none."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send `WATCHDOG=1`: half the timeout, as sd_watchdog_enabled(3) advises."""
        timeout_s = self.watchdog_timeout_s
        return None if timeout_s is None else timeout_s / 2

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one message; True if it was sent.

        A send failure is logged (once at WARNING, then at DEBUG) and never raised: the daemon
        serves whether or not the manager hears it.
        """
        if self._address is None or not assignments:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        try:
            with self._lock:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    sock.settimeout(_SEND_TIMEOUT_S)
                    self._sock = sock
                self._sock.sendto(message, self._address)
        except OSError as exc:
            level = logging.DEBUG if self._failed else logging.WARNING
            self._failed = True
            _LOGGER.log(level, "event=sd-notify-failed error=%r", str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify("READY=1", *(() if status is None else (f"STATUS={status}",)))

    def status(self, text: str) -> bool:
        """A one-line state for `systemctl status`."""
        return self.notify(f"STATUS={text}")

    def reloading(self, status: str | None = None) -> bool:
        """A configuration reload begins; `ready()` ends it.

        MONOTONIC_USEC goes with it, as systemd >= 253 expects for reloads (older ones ignore it).
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = () if status is None else (f"STATUS={status}",)
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *extra)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins."""
        return self.notify("STOPPING=1", *(() if status is None else (f"STATUS={status}",)))

    def watchdog(self, status: str | None = None) -> bool:
        """Keep-alive: the daemon is healthy (send only when it is)."""
        return self.notify("WATCHDOG=1", *(() if status is None else (f"STATUS={status}",)))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
