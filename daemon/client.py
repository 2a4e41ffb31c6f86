"""A small synchronous client for the daemon's ZeroMQ API (used by the CLI and the tests)."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import Any, Self

import zmq
from utterd.daemon import protocol
from utterd.daemon.access import CurveClientKeys


class NotRunning(Exception):
    """No daemon answered on the endpoint."""


class RequestFailed(Exception):
    """The daemon answered with an error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Client:
    """One DEALER socket; requests carry ids so replies can be matched.

    `curve`: the keys for a daemon whose TCP endpoint uses CurveZMQ (`server.curve`). Without
    them, or with a key the daemon does not allow, a Curve endpoint never answers.
    """

    def __init__(
        self, endpoint: str, timeout_s: float = 5.0, curve: CurveClientKeys | None = None
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.curve = curve
        self._ids = itertools.count(1)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock = self._context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def check_socket(self) -> None:
        """Raise NotRunning at once when an ipc endpoint has no socket file (no daemon made it)
        or its folder cannot be entered; other endpoints are only known by their answer."""
        if not self.endpoint.startswith("ipc://") or self.endpoint.startswith("ipc://@"):
            return  # "@": Linux's abstract namespace has no file
        path = Path(self.endpoint[6:])
        try:
            exists = path.exists()
        except PermissionError:
            raise NotRunning(
                f"cannot reach {self.endpoint}: permission denied on {path.parent} (it is the "
                "daemon user's own: run this as that user, or use server.client_group or "
                "server.tcp_port)"
            ) from None
        if not exists:
            raise self._not_running()

    def _not_running(self) -> NotRunning:
        hint = ""
        if self.endpoint.startswith("tcp://"):
            hint = (
                " (a daemon with server.curve answers only clients with an allowed key: "
                "--server-key and --client-key)"
                if self.curve is None
                else " (or it does not allow this client key, or --server-key is not its key)"
            )
        elif self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@"):
            path = Path(self.endpoint[6:])
            with contextlib.suppress(OSError):  # an unreadable folder: check_socket says so
                hint = "" if path.exists() else f" (no socket at {path})"
        return NotRunning(
            f"utterd is not answering on {self.endpoint}{hint}; start it with `utterd serve`"
        )

    def send(self, type_: str, data: dict[str, Any] | None = None) -> str:
        """Send a request without waiting; returns its id."""
        request_id = f"c{next(self._ids)}"
        self._sock.send_multipart(protocol.request_frames(type_, data or {}, request_id=request_id))
        return request_id

    def receive(self, timeout_s: float | None = None) -> tuple[dict[str, Any], bytes | None]:
        """Next reply: (header, payload or None). Raises NotRunning on timeout."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if not self._sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise self._not_running()
        frames = self._sock.recv_multipart()
        header: dict[str, Any] = json.loads(frames[0])
        return header, (frames[1] if len(frames) > 1 else None)

    def request(
        self, type_: str, data: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> tuple[dict[str, Any], bytes | None]:
        """Send and wait for the matching reply; error replies raise RequestFailed."""
        request_id = self.send(type_, data)
        while True:
            header, payload = self.receive(timeout_s)
            if header.get("id") != request_id:
                continue  # a late reply to an earlier, abandoned request
            if header.get("type") == "error":
                err = header.get("data", {})
                raise RequestFailed(str(err.get("code")), str(err.get("message")))
            return header, payload
