"""sd_notify against real AF_UNIX datagram sockets, bound here as systemd binds its own."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from utterd.daemon.sdnotify import Notifier


def _receive(sock: socket.socket, timeout_s: float = 2.0) -> list[str]:
    sock.settimeout(timeout_s)
    data = sock.recv(4096)
    return data.decode().split("\n")


@pytest.fixture
def path_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short folder: sun_path holds 108 bytes and pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="utterd-notify-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


def test_path_socket_gets_each_message(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.status("loading voice hibari-heart")
    assert _receive(sock) == ["STATUS=loading voice hibari-heart"]
    assert notifier.ready("ready: 1/1 voices loaded")
    assert _receive(sock) == ["READY=1", "STATUS=ready: 1/1 voices loaded"]
    assert notifier.watchdog()
    assert _receive(sock) == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert _receive(sock) == ["STOPPING=1"]
    notifier.close()


def test_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    notifier = Notifier(address)
    assert notifier.ready()
    assert _receive(sock) == ["READY=1"]
    notifier.close()


def test_reloading_carries_monotonic_time(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    Notifier(address).reloading("reloading config")
    lines = _receive(sock)
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    usec = int(lines[1].split("=", 1)[1])
    assert abs(usec / 1e6 - time.monotonic()) < 5.0
    assert lines[2] == "STATUS=reloading config"


def test_a_newline_in_status_cannot_inject_an_assignment(
    abstract_socket: tuple[socket.socket, str],
) -> None:
    sock, address = abstract_socket
    Notifier(address).status("bad\nREADY=1")
    assert _receive(sock) == ["STATUS=bad READY=1"]


def test_sender_credentials_reach_the_manager(abstract_socket: tuple[socket.socket, str]) -> None:
    # systemd tells the main process by SCM_CREDENTIALS (NotifyAccess=main): the kernel adds
    # them for a receiver with SO_PASSCRED, nothing to do on our side but to send from this pid.
    sock, address = abstract_socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    Notifier(address).watchdog()
    sock.settimeout(2.0)
    _, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    creds = [data for level, kind, data in ancillary if kind == socket.SCM_CREDENTIALS]
    assert creds and int.from_bytes(creds[0][:4], "little") == os.getpid()


def test_from_environ_reads_and_unsets(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environ(env)
    assert env == {}, "the variables must not reach child processes"
    assert notifier.watchdog_timeout_s == 3.0
    assert notifier.watchdog_interval_s == 1.5
    notifier.watchdog()
    assert _receive(sock) == ["WATCHDOG=1"]


def test_watchdog_of_another_pid_is_not_ours(path_socket: tuple[socket.socket, str]) -> None:
    _, path = path_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_environ(env, unset=False)
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert "NOTIFY_SOCKET" in env


def test_bad_watchdog_value_disables_only_the_watchdog(
    path_socket: tuple[socket.socket, str],
) -> None:
    _, path = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"})
    assert notifier.enabled and notifier.watchdog_interval_s is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "2000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    notifier.close()


def test_unsupported_address_kind_is_disabled() -> None:
    assert not Notifier("vsock:2:1234").enabled
    assert not Notifier("relative/path").enabled


def test_vanished_manager_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="utterd.daemon.sdnotify")
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.ready()
    assert not notifier.watchdog()
    warnings = [r for r in caplog.records if "sd-notify-failed" in r.getMessage()]
    assert len(warnings) == 2 and warnings[0].levelname == "WARNING"
    assert warnings[1].levelname == "DEBUG"
