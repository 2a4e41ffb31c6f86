"""Fixtures shared by several test files."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket with an abstract name, as a service manager's
    NOTIFY_SOCKET: (socket, the name as NOTIFY_SOCKET spells it, "@...")."""
    name = f"utterd-test-notify-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()
