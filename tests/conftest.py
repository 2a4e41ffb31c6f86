"""Fixtures shared by several test files."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """hibari-heart's model cut at its decoder (`SplitSession`) as its voice opens it, on one
    ONNX Runtime thread (as hibari itself runs, so float sums match), its parts in a folder of
    the session. Tests may monkeypatch its `decode`; none closes it."""
    import hibari.voices
    from utterd.models import EngineSettings
    from utterd.models.hibari.split import open_split
    from utterd.models.hibari.voice import session_options

    opened = open_split(
        Path(hibari.voices.voice_path("heart", download_missing=False)),
        EngineSettings(threads=1),
        label="hibari-split",
        options=session_options(tmp_path_factory.mktemp("split-cache")),
    )
    yield opened
    opened.close()
