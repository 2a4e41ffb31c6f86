"""Messages from worker threads to the socket loop.

ZeroMQ sockets belong to one thread, so workers never touch the ROUTER or PUB socket. Each worker
thread gets its own PUSH socket (created on first use) connected to an inproc PULL that the socket
loop polls beside the ROUTER; the loop forwards what arrives.
"""

from __future__ import annotations

import threading

import zmq

OUTBOX_ENDPOINT = "inproc://utterd-outbox"
KIND_REPLY = b"R"
KIND_EVENT = b"E"


class Outbox:
    """Thread-safe sender of replies and events to the socket loop."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._context = context
        self._local = threading.local()
        self._sockets: list[zmq.Socket[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _socket(self) -> zmq.Socket[bytes] | None:
        sock: zmq.Socket[bytes] | None = getattr(self._local, "sock", None)
        if sock is None:
            with self._lock:
                if self._closed:
                    return None
                sock = self._context.socket(zmq.PUSH)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(OUTBOX_ENDPOINT)
                self._sockets.append(sock)
            self._local.sock = sock
        return sock

    def reply(self, envelope: list[bytes], frames: list[bytes]) -> None:
        """Send a reply to the client behind `envelope` (routing id and REQ delimiter)."""
        sock = self._socket()
        if sock is not None:
            sock.send_multipart([KIND_REPLY, len(envelope).to_bytes(2, "big"), *envelope, *frames])

    def event(self, frames: list[bytes]) -> None:
        """Publish an event on the PUB socket."""
        sock = self._socket()
        if sock is not None:
            sock.send_multipart([KIND_EVENT, *frames])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close(linger=0)
            self._sockets.clear()


def decode(frames: list[bytes]) -> tuple[bytes, list[bytes], list[bytes]]:
    """Split an outbox message into (kind, envelope, frames)."""
    kind = frames[0]
    if kind == KIND_REPLY:
        n = int.from_bytes(frames[1], "big")
        return kind, frames[2 : 2 + n], frames[2 + n :]
    return kind, [], frames[1:]
