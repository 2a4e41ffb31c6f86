"""The ZeroMQ side of `sd_utterd`: requests to the daemon, its events, and whether it is there.

Not `daemon/client.py`'s `Client`, though it speaks the same frames (`protocol.request_frames`):
a speech-dispatcher module must never queue a request for a daemon that is not there (it would
speak late, when the daemon comes back), so the DEALER is in immediate mode (`ZMQ_IMMEDIATE`:
nothing is queued for a connection that does not exist) and a send that finds no connection
within a moment fails at once; a socket monitor says the moment the daemon's connection drops,
so a crash ends the message speech-dispatcher is waiting for instead of leaving it hanging.
ZeroMQ reconnects by itself when the daemon is back (both sockets), and the monitor says that
too.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import zmq
from utterd.daemon import protocol
from utterd.models.errors import UtterdError
from zmq.utils.monitor import recv_monitor_message

_LOGGER = logging.getLogger(__name__)

EVENT_KINDS: Final = ("begin", "mark", "end", "stopped", "failed", "paused")
"""The event topics the module subscribes to (docs/protocol.md, Events)."""

CONNECT_WAIT_S: Final = 0.25
"""How long a request waits for a connection to appear (a daemon just (re)started: ZeroMQ
retries every 100 ms) before the daemon counts as not there."""


class DaemonUnreachable(UtterdError):
    """No daemon answered on the endpoint (not running, restarting, or too slow to answer)."""

    code = "daemon-unreachable"


class DaemonRefused(UtterdError):
    """The daemon answered a request with an error reply; `reply_code` is its stable code."""

    code = "daemon-refused"

    def __init__(self, reply_code: str, message: str) -> None:
        super().__init__(f"{reply_code}: {message}")
        self.reply_code = reply_code
        """The daemon's error code (`nothing-to-say`, `invalid-ssml`, ...)."""


class ZmqLink:
    """A DEALER for requests, a SUB for events and a monitor of the DEALER's connection."""

    def __init__(
        self,
        endpoint: str,
        events_endpoint: str,
        timeout_s: float,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        ctx = context or zmq.Context.instance()
        self._dealer: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.setsockopt(zmq.IMMEDIATE, 1)
        self.monitor: zmq.Socket[bytes] = self._dealer.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
        )
        self._dealer.connect(endpoint)
        self.events: zmq.Socket[bytes] = ctx.socket(zmq.SUB)
        self.events.setsockopt(zmq.LINGER, 0)
        for kind in EVENT_KINDS:
            self.events.setsockopt(zmq.SUBSCRIBE, kind.encode())
        self.events.connect(events_endpoint)

    def close(self) -> None:
        self._dealer.disable_monitor()
        self.monitor.close(linger=0)
        self.events.close(linger=0)
        self._dealer.close(linger=0)

    def request(self, type_: str, data: Mapping[str, object]) -> dict[str, Any]:
        """Send one request and return its reply's `data`; DaemonRefused for an error reply,
        DaemonUnreachable when no daemon is connected or none answers within the timeout."""
        request_id = f"m{next(self._ids)}"
        frames = protocol.request_frames(type_, dict(data), request_id=request_id)
        if not self._dealer.poll(int(min(self.timeout_s, CONNECT_WAIT_S) * 1000), zmq.POLLOUT):
            raise DaemonUnreachable(f"utterd is not answering on {self.endpoint}")
        try:
            self._dealer.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            raise DaemonUnreachable(f"utterd is not answering on {self.endpoint}") from None
        deadline_ms = int(self.timeout_s * 1000)
        while self._dealer.poll(deadline_ms, zmq.POLLIN):
            header = json.loads(self._dealer.recv_multipart()[0])
            if header.get("id") != request_id:
                continue  # the late answer to a request that timed out
            body: dict[str, Any] = header.get("data") or {}
            if header.get("type") == "error":
                raise DaemonRefused(str(body.get("code")), str(body.get("message")))
            return body
        raise DaemonUnreachable(
            f"utterd did not answer {type_} on {self.endpoint} within {self.timeout_s:g} s"
        )

    def speak(self, request: Mapping[str, object]) -> str:
        return str(self.request("speak", request)["job"])

    def cancel(self) -> list[str]:
        return [str(j) for j in self.request("cancel", {"client": "self"})["jobs"]]

    def pause(self, job: str) -> list[str]:
        return [str(j) for j in self.request("pause", {"job": job})["jobs"]]

    def job(self, job: str) -> dict[str, Any]:
        return self.request("job", {"job": job})

    def describe(self) -> dict[str, Any]:
        return self.request("describe", {})

    def next_event(self) -> tuple[str, dict[str, Any]] | None:
        """The next event waiting on the SUB socket (kind, data), or None."""
        try:
            frames = self.events.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        header = json.loads(frames[1])
        return str(header.get("type")), dict(header.get("data") or {})

    def next_connection_change(self) -> bool | None:
        """True when the DEALER (re)connected, False when it lost the daemon, None if neither
        happened since the last call."""
        while True:
            try:
                message = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return None
            if message["event"] == zmq.EVENT_CONNECTED:
                return True
            if message["event"] == zmq.EVENT_DISCONNECTED:
                _LOGGER.warning("event=daemon-lost endpoint=%s", self.endpoint)
                return False
