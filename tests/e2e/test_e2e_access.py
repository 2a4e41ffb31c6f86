"""End to end: who may talk to a real `utterd serve`, and how much.

- A second local user cannot reach the ipc socket (owner-only by default); with
  `server.client_group` a member of that group can, and a non-member still cannot. These need
  root (to make system users with `useradd -r` and to switch to them) and skip otherwise.
- TCP on a non-loopback address: without Curve the daemon refuses to start; with Curve an
  allowed key gets replies, a wrong key or a plain client gets nothing, on requests and events.
- Per-client and total queue limits answer `busy`, the rate limit `rate-limited`, and other
  clients go on unaffected.
- Voice names that try to be paths answer `unknown-voice`.

Two daemons serve the module (about 2 s each to start); every "no reply" wait is 1.5 s.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
import zmq
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon import access, protocol
from utterd.daemon.access import CurveClientKeys
from utterd.daemon.client import Client, NotRunning, RequestFailed

pytestmark = pytest.mark.e2e

NO_REPLY_S = 1.5
"""How long a client that must get nothing waits for it."""

TEST_GROUP = "utterd-test-clients"
MEMBER = "utterd-test-member"
OTHER = "utterd-test-other"

HOSTILE_VOICES = [
    "../../etc/passwd",
    "/etc/passwd",
    "../../../../../../../../etc/shadow",
    "..",
    ".",
    "./hibari-heart",
    "hibari-heart/../hibari-heart",
    "hibari-heart\x00",
    "\x00/etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2fetc%2fpasswd",
    "file:///etc/passwd",
    "~root/.ssh/id_rsa",
    "hibari-heart\n",
    "v" * 5000,
]

# ---------------------------------------------------------------------------------------------
# Helpers.


def _ensure_users() -> str | None:
    """Create (or reuse) the test group and two system users; None, or why it cannot."""
    if os.geteuid() != 0:
        return "needs root to create a second local user and switch to it"
    if shutil.which("useradd") is None or shutil.which("groupadd") is None:
        return "useradd/groupadd are not installed"
    nologin = shutil.which("nologin") or "/bin/false"
    try:
        grp.getgrnam(TEST_GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", TEST_GROUP], check=False, capture_output=True)
    for user, groups in ((MEMBER, [TEST_GROUP]), (OTHER, [])):
        try:
            pwd.getpwnam(user)
        except KeyError:
            cmd = ["useradd", "--system", "--no-create-home", "--shell", nologin]
            if groups:
                cmd += ["--groups", ",".join(groups)]
            subprocess.run([*cmd, user], check=False, capture_output=True)
    try:
        pwd.getpwnam(MEMBER), pwd.getpwnam(OTHER)
        if MEMBER not in grp.getgrnam(TEST_GROUP).gr_mem:
            subprocess.run(["usermod", "-aG", TEST_GROUP, MEMBER], check=True)
    except (KeyError, subprocess.CalledProcessError) as exc:
        return f"could not create the test users: {exc!r}"
    return None


# Runs as root until it has imported what it needs, then becomes USER for good: the venv's
# interpreter lives where a system user may not read, so it cannot be started as that user.
_AS_USER = r"""
import errno, json, os, pwd, socket, sys
import zmq
user, sock_path, request = sys.argv[1], sys.argv[2], sys.argv[3].encode()
pw = pwd.getpwnam(user)
os.setgroups(os.getgrouplist(user, pw.pw_gid))
os.setgid(pw.pw_gid)
os.setuid(pw.pw_uid)
assert os.getuid() == pw.pw_uid and os.geteuid() == pw.pw_uid and 0 not in os.getgroups()
result = {"uid": os.getuid()}
raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    raw.connect(sock_path)
    result["connect"] = "ok"
except OSError as exc:
    result["connect"] = errno.errorcode.get(exc.errno, str(exc.errno))
finally:
    raw.close()
ctx = zmq.Context()
dealer = ctx.socket(zmq.DEALER)
dealer.linger = 0
dealer.connect("ipc://" + sock_path)
dealer.send(request)
result["reply"] = json.loads(dealer.recv()) if dealer.poll(int(sys.argv[4])) else None
dealer.close()
ctx.term()
print(json.dumps(result))
"""


def _as_user(user: str, d: RunningDaemon) -> dict[str, Any]:
    """Ping the daemon's ipc socket as `user`: the raw connect's outcome and the reply, if any."""
    request = protocol.request_frames("ping", {}, request_id="u")[0].decode()
    sock = str(d.runtime_dir / "utterd.sock")
    done = subprocess.run(
        [sys.executable, "-c", _AS_USER, user, sock, request, str(int(NO_REPLY_S * 1000))],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["uid"] == pwd.getpwnam(user).pw_uid
    return result


def _traversable_tmp() -> Path:
    """A folder every user may traverse, so that only the socket folder's own mode decides."""
    path = Path(tempfile.mkdtemp(prefix="utterd-access-"))
    path.chmod(0o755)
    return path


def _non_loopback_ip() -> str:
    """This machine's address on its default route, else 0.0.0.0 (all interfaces)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            ip = str(probe.getsockname()[0])
        if not ipaddress.ip_address(ip).is_loopback:
            return ip
    except OSError:
        pass
    return "0.0.0.0"


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (requests and events)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("", 0))
            port = int(a.getsockname()[1])
            if port >= 65534:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two free consecutive ports")


def _ping_reply(sock: zmq.Socket[bytes], timeout_s: float) -> dict[str, Any] | None:
    sock.send_multipart(protocol.request_frames("ping", {}, request_id="p"))
    if not sock.poll(int(timeout_s * 1000)):
        return None
    return dict(json.loads(sock.recv_multipart()[0]))


def _serve(config_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`utterd serve` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "utterd.daemon.cli", "--config", str(config_path), "serve"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------------------------------------
# Daemon 1: ipc only (group-accessible when root), tight limits.

PER_CLIENT = 3
TOTAL = 5
RATE_PER_S = 4.0
BURST = 8


@pytest.fixture(scope="module")
def users() -> str | None:
    return _ensure_users()


@pytest.fixture(scope="module")
def limited(users: str | None) -> Iterator[RunningDaemon]:
    tmp = _traversable_tmp()
    env, _ = file_sink_env(tmp)
    server: dict[str, Any] = {"client_group": TEST_GROUP} if users is None else {}
    config = {
        "server": server,
        "limits": {
            "max_queue": TOTAL,
            "max_queue_per_client": PER_CLIENT,
            "requests_per_s": RATE_PER_S,
            "request_burst": BURST,
        },
        "cache": {"enabled": False},
    }
    try:
        with RunningDaemon(tmp, clean_env(env), config) as d:
            yield d
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_ipc_group_members_only(limited: RunningDaemon, users: str | None) -> None:
    if users is not None:
        pytest.skip(users)
    d = limited
    run = d.runtime_dir
    gid = grp.getgrnam(TEST_GROUP).gr_gid
    assert stat.S_IMODE(run.stat().st_mode) == 0o2710 and run.stat().st_gid == gid
    for name in ("utterd.sock", "utterd-events.sock"):
        st = (run / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o770 and st.st_gid == gid, name
    with d.client() as c:
        assert c.request("ping")[0]["type"] == "pong"
    member = _as_user(MEMBER, d)
    assert member["connect"] == "ok"
    assert member["reply"] is not None and member["reply"]["type"] == "pong"
    other = _as_user(OTHER, d)
    assert other["connect"] == "EACCES"
    assert other["reply"] is None


def test_limits_per_client_and_total_answer_busy(limited: RunningDaemon) -> None:
    d = limited
    speak = {
        "text": "Queued, never spoken.",
        "priority": "message",
    }  # `message` jobs wait side by side
    with d.client() as control, d.client() as a, d.client() as b, d.client() as c:
        control.request("pause")  # nothing plays: every job waits
        try:
            for _ in range(PER_CLIENT):
                a.request("speak", speak)
            with pytest.raises(RequestFailed) as info:
                a.request("speak", speak)
            assert info.value.code == "busy" and "max_queue_per_client" in info.value.message
            for _ in range(TOTAL - PER_CLIENT):
                b.request("speak", speak)
            with pytest.raises(RequestFailed) as info:
                c.request("speak", speak)
            assert info.value.code == "busy" and "queue is full" in info.value.message
            # Busy is about the queue only: other requests are served.
            assert c.request("describe")[0]["data"]["queue"]["length"] == TOTAL
        finally:
            control.request("cancel")
            control.request("resume")
        b.request("speak", speak)  # room again
        control.request("cancel")


def test_rate_limit_answers_its_code_and_spares_others(limited: RunningDaemon) -> None:
    d = limited
    with d.client() as flood, d.client() as calm:
        ids = [flood.send("ping") for _ in range(3 * BURST)]
        replies = {}
        while len(replies) < len(ids):
            header, _ = flood.receive(10)
            replies[header["id"]] = header
        kinds = [replies[i]["type"] for i in ids]
        limited_replies = [r["data"] for r in replies.values() if r["type"] == "error"]
        # The burst passes, then (bar a token refilled meanwhile) every request is refused.
        assert kinds[:BURST] == ["pong"] * BURST
        assert len(limited_replies) >= 2 * BURST - 2
        assert {r["code"] for r in limited_replies} == {"rate-limited"}
        retry_s = max(r["retry_after_s"] for r in limited_replies)
        assert 0 < retry_s <= 1 / RATE_PER_S + 0.01
        assert calm.request("ping")[0]["type"] == "pong"  # another client is not affected
        time.sleep(retry_s + 0.05)
        assert flood.request("ping")[0]["type"] == "pong"
    with d.client() as c:
        assert c.request("describe")[0]["data"]["counters"]["rate_limited"] >= len(limited_replies)


@pytest.mark.parametrize("voice", HOSTILE_VOICES)
def test_path_like_voice_names_are_unknown(limited: RunningDaemon, voice: str) -> None:
    # A fresh client per name: three requests stay inside the rate limit's burst.
    with limited.client() as c:
        for kind, data in (
            ("synthesize", {"text": "Hello.", "voice": voice}),
            ("speak", {"text": "Hello.", "voice": voice}),
            ("cache-clear", {"voice": voice}),
        ):
            with pytest.raises(RequestFailed) as info:
                c.request(kind, data)
            assert info.value.code == "unknown-voice", (kind, info.value)
            assert len(info.value.message) < 400
    assert limited.alive()


# ---------------------------------------------------------------------------------------------
# Daemon 2: owner-only ipc, TCP on a non-loopback address with Curve.


class CurveSetup:
    def __init__(self, d: RunningDaemon, host: str, port: int, good: Path, tmp: Path) -> None:
        self.d = d
        self.connect_host = "127.0.0.1" if host == "0.0.0.0" else host
        self.port = port
        self.endpoint = f"tcp://{self.connect_host}:{port}"
        self.events = f"tcp://{self.connect_host}:{port + 1}"
        self.good_secret = good
        self.curve_dir = tmp / "curve"
        self.server_key = self.curve_dir / "server.key"

    def keys(self, secret: Path | None = None) -> CurveClientKeys:
        return CurveClientKeys.load(self.server_key, secret or self.good_secret)


@pytest.fixture(scope="module")
def curve() -> Iterator[CurveSetup]:
    tmp = _traversable_tmp()
    env, _ = file_sink_env(tmp)
    host = _non_loopback_ip()
    port = _free_port_pair()
    clients = tmp / "curve" / "clients"
    clients.mkdir(parents=True)
    (tmp / "curve").chmod(0o755)
    keys_dir = tmp / "client-keys"
    keys_dir.mkdir()
    good_public, good_secret = access.write_key_pair(keys_dir, "good", access.new_key_pair())
    shutil.copy(good_public, clients / "good.key")
    config = {
        "server": {
            "tcp_host": host,
            "tcp_port": port,
            "allow_non_loopback": True,
            "curve": True,
            "curve_dir": str(tmp / "curve"),
        },
        "cache": {"enabled": False},
    }
    try:
        with RunningDaemon(tmp, clean_env(env), config) as d:
            yield CurveSetup(d, host, port, good_secret, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_non_loopback_without_curve_refuses_to_start(tmp_path: Path) -> None:
    host = _non_loopback_ip()
    bad = {"server": {"tcp_host": host, "tcp_port": 7000, "allow_non_loopback": True}}
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(bad))
    done = _serve(tmp_path / "plain.yaml", clean_env({}))
    assert done.returncode == 2, done.stderr
    assert "server.curve" in done.stderr and repr(host) in done.stderr

    # Curve on, but no client key allowed: nobody could connect, so the daemon says so.
    port = _free_port_pair()
    empty = {
        "server": {
            **bad["server"],
            "tcp_port": port,
            "curve": True,
            "curve_dir": str(tmp_path / "curve"),
            "runtime_dir": str(tmp_path / "run"),
        },
        "voices": {"folders": [str(tmp_path / "voices")]},
        "cache": {"enabled": False},
    }
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump(empty))
    done = _serve(tmp_path / "empty.yaml", clean_env({}))
    assert done.returncode == 2, done.stderr
    assert "curve-keys" in done.stderr and "no client key is allowed" in done.stderr


def test_unknown_client_group_refuses_to_start(tmp_path: Path) -> None:
    config = {
        "server": {"client_group": "utterd-no-such-group", "runtime_dir": str(tmp_path / "run")},
        "voices": {"folders": [str(tmp_path / "voices")]},
        "cache": {"enabled": False},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = _serve(tmp_path / "c.yaml", clean_env({}))
    assert done.returncode == 2, done.stderr
    assert "unknown-group" in done.stderr and "'utterd-no-such-group'" in done.stderr
    assert not (tmp_path / "run" / "utterd.sock").exists()


def test_server_keys_made_owner_only_and_printed(curve: CurveSetup) -> None:
    secret = curve.curve_dir / "server.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(curve.server_key.stat().st_mode) == 0o644
    printed = curve.d.cli("keys", "server")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip().encode() == access.read_public_key(curve.server_key)


def test_curve_allowed_key_gets_replies_others_get_nothing(
    curve: CurveSetup, tmp_path: Path
) -> None:
    with Client(curve.endpoint, timeout_s=10, curve=curve.keys()) as good:
        assert good.request("ping")[0]["type"] == "pong"

    _, wrong_secret = access.write_key_pair(tmp_path, "wrong", access.new_key_pair())
    context = zmq.Context.instance()
    strangers = []
    for keys in (curve.keys(wrong_secret), None):
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        if keys is not None:
            keys.apply(sock)
        sock.connect(curve.endpoint)
        strangers.append(sock)
    try:
        for sock in strangers:  # both wait at once
            sock.send_multipart(protocol.request_frames("ping", {}, request_id="x"))
        time.sleep(NO_REPLY_S)
        assert [s.poll(0) for s in strangers] == [0, 0]
    finally:
        for sock in strangers:
            sock.close(0)

    # The CLI with the keys; and without them it reports that nothing answered.
    ok = curve.d.cli(
        "--endpoint",
        curve.endpoint,
        "--server-key",
        str(curve.server_key),
        "--client-key",
        str(curve.good_secret),
        "status",
    )
    assert ok.returncode == 0, ok.stderr
    nothing = curve.d.cli("--endpoint", curve.endpoint, "--timeout", str(NO_REPLY_S), "status")
    assert nothing.returncode == 3 and "--server-key" in nothing.stderr
    with Client(curve.endpoint, timeout_s=10, curve=curve.keys()) as good:
        assert good.request("ping")[0]["type"] == "pong"  # still serving


def test_curve_events_only_for_allowed_keys(curve: CurveSetup) -> None:
    context = zmq.Context.instance()
    subs = []
    for keys in (curve.keys(), None):
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if keys is not None:
            keys.apply(sub)
        sub.connect(curve.events)
        subs.append(sub)
    try:
        time.sleep(0.5)  # let the subscriptions through (ZeroMQ's slow joiner)
        with Client(curve.endpoint, timeout_s=30, curve=curve.keys()) as c:
            job = c.request("speak", {"text": "Hello."})[0]["data"]["job"]
        allowed, plain = subs
        assert allowed.poll(30_000), "the allowed subscriber gets the job's events"
        first = json.loads(allowed.recv_multipart()[1])
        assert first["data"].get("job") == job
        assert not plain.poll(int(NO_REPLY_S * 1000)), "a plain subscriber gets nothing"
    finally:
        for sub in subs:
            sub.close(0)


def test_second_user_cannot_reach_owner_only_ipc(curve: CurveSetup, users: str | None) -> None:
    if users is not None:
        pytest.skip(users)
    d = curve.d
    assert stat.S_IMODE(d.runtime_dir.stat().st_mode) == 0o700
    with d.client() as c:  # the owner (and the ipc socket beside Curve TCP stays plain)
        assert c.request("ping")[0]["type"] == "pong"
    for user in (OTHER, MEMBER):  # no group configured: membership does not matter
        result = _as_user(user, d)
        assert result["connect"] == "EACCES", user
        assert result["reply"] is None, user


def test_plain_client_times_out_cleanly(curve: CurveSetup) -> None:
    with (
        Client(curve.endpoint, timeout_s=NO_REPLY_S) as plain,
        pytest.raises(NotRunning, match="server-key"),
    ):
        plain.request("ping")
    assert curve.d.alive()


def _reload(d: RunningDaemon) -> dict[str, Any]:
    """SIGHUP the daemon and return `describe`'s `config.last_reload` once it changed."""
    with d.client() as c:
        before = c.request("describe")[0]["data"]["config"]
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with d.client() as c:
            config = c.request("describe")[0]["data"]["config"]
        if config["last_reload"] != before["last_reload"]:
            return dict(config["last_reload"])
        time.sleep(0.05)
    raise AssertionError("no reload within 20 s")


def _answers(curve: CurveSetup, secret: Path) -> bool:
    """Whether a fresh connection with this client key gets a reply (allow-list is per handshake)."""
    try:
        with Client(curve.endpoint, timeout_s=NO_REPLY_S, curve=curve.keys(secret)) as c:
            return bool(c.request("ping")[0]["type"] == "pong")
    except NotRunning:
        return False


def test_sighup_rereads_the_curve_allow_list(curve: CurveSetup, tmp_path: Path) -> None:
    """An operator adds a client's key file and reloads: it gets in; a bad key file rejects the
    reload and the allow-list in force stays; removing the file shuts new connections out."""
    clients = curve.curve_dir / "clients"
    late_public, late_secret = access.write_key_pair(tmp_path, "late", access.new_key_pair())
    assert not _answers(curve, late_secret)
    try:
        shutil.copy(late_public, clients / "late.key")
        applied = _reload(curve.d)
        assert applied["result"] == "applied" and applied["curve_clients"] == 2, applied
        assert _answers(curve, late_secret)

        (clients / "broken.key").write_text("not a key\n")
        rejected = _reload(curve.d)
        assert rejected["result"] == "rejected" and "broken.key" in rejected["error"], rejected
        assert _answers(curve, late_secret) and _answers(curve, curve.good_secret)
    finally:
        (clients / "broken.key").unlink(missing_ok=True)
        (clients / "late.key").unlink(missing_ok=True)
    assert _reload(curve.d)["curve_clients"] == 1
    assert not _answers(curve, late_secret)
    assert _answers(curve, curve.good_secret)
