"""Replies on their way to clients: from worker threads to the socket loop, and from the loop to
a client that may read slowly.

ZeroMQ sockets belong to one thread, so workers never touch the ROUTER socket. Each worker thread
gets its own PUSH socket (created on first use) connected to an inproc PULL that the socket loop
polls beside the ROUTER; the loop forwards what arrives. (Events do not come this way: they go
straight onto the PUB socket from any thread, daemon/publisher.py.)

The ROUTER runs with ZMQ_ROUTER_MANDATORY, so a reply to a client whose queue is full raises
instead of vanishing. The loop then keeps it in that client's `ReplyBacklog` and sends it when
the client reads again; the backlog is bounded in bytes, and what happens beyond the bound is the
server's decision (daemon/server.py), never a silent drop.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Final

import zmq

_LOGGER = logging.getLogger(__name__)

OUTBOX_ENDPOINT: Final = "inproc://utterd-outbox"

WAKE: Final = b""
"""The one frame of a wake-up message (a reply always has its envelope length first)."""

CLIENT_QUEUE_MESSAGES: Final = 100
"""The ROUTER's send high-water mark: replies ZeroMQ queues for one client (in messages, of any
size) before a send raises zmq.Again and the backlog takes over. Lower than ZeroMQ's 1000, so
that what a slow client costs is mostly the backlog's, which is counted in bytes."""

CLIENT_BACKLOG_BYTES: Final = 4 * 1024 * 1024
"""Most reply bytes kept for one client whose ZeroMQ queue is full (beyond a single reply)."""

TOTAL_BACKLOG_BYTES: Final = 64 * 1024 * 1024
"""Most reply bytes kept for all such clients together."""

MESSAGE_OVERHEAD_BYTES: Final = 256
"""What a kept reply counts on top of its frames, so that many small replies are bounded too."""


@dataclass(frozen=True)
class Outgoing:
    """One reply from a worker, as the socket loop reads it from the outbox."""

    envelope: tuple[bytes, ...]
    """The client's routing id (and REQ delimiter)."""

    frames: tuple[bytes, ...]
    """The reply itself."""

    job: str | None = None
    """The `synthesize` job the reply belongs to; None for anything else."""

    final: bool = True
    """The job's last reply (`audio`, `audio-stop` or `error`)."""


class Outbox:
    """Thread-safe sender of replies to the socket loop."""

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

    def reply(
        self,
        envelope: list[bytes],
        frames: list[bytes],
        job: str | None = None,
        final: bool = True,
    ) -> None:
        """Send a reply to the client behind `envelope` (routing id and REQ delimiter); `job`
        and `final` say which synthesis it belongs to and whether it is that one's last."""
        sock = self._socket()
        if sock is not None:
            sock.send_multipart(
                [
                    len(envelope).to_bytes(2, "big"),
                    *envelope,
                    (job or "").encode(),
                    b"1" if final else b"0",
                    *frames,
                ]
            )

    def wake(self) -> None:
        """Wake the socket loop from its poll with a message that carries no reply (`is_wake`):
        how another thread tells a loop that sleeps until it has work to look again (a stop)."""
        sock = self._socket()
        if sock is not None:
            sock.send(WAKE)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close(linger=0)
            self._sockets.clear()


def is_wake(frames: list[bytes]) -> bool:
    """Whether an outbox message is `Outbox.wake`'s, which is no reply (never `decode` it)."""
    return frames == [WAKE]


def decode(frames: list[bytes]) -> Outgoing:
    """An outbox message as the loop reads it."""
    n = int.from_bytes(frames[0], "big")
    envelope = tuple(frames[1 : 1 + n])
    job, final = frames[1 + n], frames[2 + n]
    return Outgoing(envelope, tuple(frames[3 + n :]), job.decode() or None, final == b"1")


class Delivery(enum.Enum):
    """What became of a reply handed to `ReplyBacklog.send`."""

    SENT = "sent"
    """In the client's ZeroMQ queue."""

    KEPT = "kept"
    """The client's queue is full: kept in its backlog, sent when it reads again."""

    OVER = "over"
    """The client's queue is full and the backlog has no room for the reply: nothing kept."""

    GONE = "gone"
    """The client is gone (EHOSTUNREACH): nothing kept."""


@dataclass(frozen=True)
class Kept:
    """A reply waiting in a backlog."""

    envelope: tuple[bytes, ...]
    frames: tuple[bytes, ...]
    job: str | None
    size_bytes: int


class ReplyBacklog:
    """Replies waiting for clients whose ZeroMQ queue is full; socket loop thread only.

    A client with a backlog gets every later reply in order behind it. Never blocks: a send that
    would wait is kept instead.
    """

    def __init__(
        self,
        client_bytes: int = CLIENT_BACKLOG_BYTES,
        total_bytes: int = TOTAL_BACKLOG_BYTES,
    ) -> None:
        self.client_bytes = client_bytes
        self.total_bytes = total_bytes
        self._kept: dict[bytes, deque[Kept]] = {}
        self._size: dict[bytes, int] = {}
        self._total = 0

    def __bool__(self) -> bool:
        return bool(self._kept)

    def size_bytes(self, peer: bytes | None = None) -> int:
        """Bytes kept for `peer`, or for everyone."""
        return self._total if peer is None else self._size.get(peer, 0)

    def send(
        self,
        sock: zmq.Socket[bytes],
        envelope: tuple[bytes, ...],
        frames: tuple[bytes, ...],
        job: str | None = None,
        *,
        force: bool = False,
    ) -> Delivery:
        """Send a reply now, or keep it behind the client's earlier ones. `force`: keep it even
        beyond the bound (for the small last word a cut-off request gets)."""
        peer = envelope[0]
        if peer not in self._kept:
            result = _try_send(sock, envelope, frames)
            if result is not Delivery.KEPT:
                return result
        size = sum(len(f) for f in envelope + frames) + MESSAGE_OVERHEAD_BYTES
        mine = self._size.get(peer, 0)
        over = mine + size > self.client_bytes or self._total + size > self.total_bytes
        if over and mine and not force:  # one reply always fits: it was made in memory anyway
            return Delivery.OVER
        self._kept.setdefault(peer, deque()).append(Kept(envelope, frames, job, size))
        self._size[peer] = mine + size
        self._total += size
        return Delivery.KEPT

    def flush(self, sock: zmq.Socket[bytes]) -> list[bytes]:
        """Send what the clients' queues take now; returns the clients found gone (their
        backlogs are dropped)."""
        gone: list[bytes] = []
        for peer in list(self._kept):
            queue = self._kept[peer]
            while queue:
                head = queue[0]
                result = _try_send(sock, head.envelope, head.frames)
                if result is Delivery.KEPT:
                    break
                if result is Delivery.GONE:
                    gone.append(peer)
                    queue.clear()
                    break
                queue.popleft()
                self._size[peer] -= head.size_bytes
                self._total -= head.size_bytes
            if not queue:
                self.drop_peer(peer)
        return gone

    def take_jobs(self, peer: bytes) -> list[Kept]:
        """Remove and return the client's kept replies that belong to a synthesis job."""
        queue = self._kept.get(peer)
        if not queue:
            return []
        taken = [k for k in queue if k.job is not None]
        self._kept[peer] = deque(k for k in queue if k.job is None)
        freed = sum(k.size_bytes for k in taken)
        self._size[peer] -= freed
        self._total -= freed
        if not self._kept[peer]:
            self.drop_peer(peer)
        return taken

    def drop_peer(self, peer: bytes) -> int:
        """Forget the client's backlog; returns how many replies it held."""
        queue = self._kept.pop(peer, deque())
        self._total -= self._size.pop(peer, 0)
        return len(queue)


def _try_send(
    sock: zmq.Socket[bytes], envelope: tuple[bytes, ...], frames: tuple[bytes, ...]
) -> Delivery:
    """One non-blocking send on a ROUTER_MANDATORY socket: SENT, KEPT (queue full: try again
    later) or GONE."""
    try:
        sock.send_multipart([*envelope, *frames], zmq.NOBLOCK)
    except zmq.Again:
        return Delivery.KEPT
    except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer disconnected (or never was)
        if exc.errno != zmq.EHOSTUNREACH:
            _LOGGER.warning("event=reply-send-failed error=%s", exc)
        return Delivery.GONE
    return Delivery.SENT
