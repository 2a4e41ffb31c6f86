"""Events on their way to subscribers: one PUB socket, any thread may publish.

A ZeroMQ socket may move between threads when a full memory barrier separates its users; a lock
is one. So every thread (the speech thread, the player's events thread, the fault poller, the
socket loop) sends on the PUB socket itself, under the lock, instead of handing each event to the
socket loop through the outbox: a player event reaches clients from the thread that learnt of
it. A PUB send never blocks (a subscriber that cannot keep up loses messages, as PUB does), so
the lock is held for one non-blocking send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import zmq
from utterd.daemon.protocol import Event, encode_event, event

_LOGGER = logging.getLogger(__name__)

__all__ = ["EventPublisher"]


class EventPublisher:
    """Publishes events on the PUB socket the server binds (`attach`); thread-safe.

    Built before the scheduler and the server, so that both get it from the service instead of
    the scheduler reaching the server's `emit` through a factory. Events published before the
    socket is attached (no subscriber can be connected yet) or after it is detached are dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: zmq.Socket[bytes] | None = None

    def attach(self, sock: zmq.Socket[bytes]) -> None:
        """Publish on `sock` (a bound PUB socket) from now on."""
        with self._lock:
            self._sock = sock

    def detach(self) -> None:
        """Stop publishing; the caller closes the socket."""
        with self._lock:
            self._sock = None

    def publish(self, body: Event) -> None:
        """Publish an event dataclass."""
        self._send(body.TYPE, encode_event(body))

    def emit(self, kind: str, data: Mapping[str, object]) -> None:
        """Publish an event given as (kind, data), as the speech queue and the fault registry
        build theirs (speech imports nothing of the wire)."""
        self._send(kind, event(kind, data))

    def _send(self, kind: str, frames: list[bytes]) -> None:
        with self._lock:
            if self._sock is None:
                _LOGGER.debug("event=event-dropped kind=%s reason=no-socket", kind)
                return
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass  # PUB drops at its high-water mark rather than block; no error is raised
