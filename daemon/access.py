"""Who may talk to the daemon, and how much: ipc socket permissions, CurveZMQ keys checked by a
ZAP handler on the TCP endpoints, and per-client limits (request rate, share of the queues).

ZAP: pyzmq's `ThreadAuthenticator` speaks the ZAP wire protocol (RFC 27) in its own thread, so
the socket loop never waits on a handshake; the allow-list is ours (`AllowList`, a
`configure_curve_callback` provider), so that it can merge a key folder with keys listed in
config.yaml and be reloaded in place. The TCP listeners also set `ZMQ_ZAP_DOMAIN` and
`ZMQ_ZAP_ENFORCE_DOMAIN`: without them libzmq lets any Curve client in whenever no ZAP handler
answers; with them a missing handler refuses everyone (fails closed).

Curve options are set on a socket only after its ipc endpoints are bound. libzmq copies a
socket's options into each listener when it binds, so the ipc endpoints stay plain (guarded by
file permissions) while the TCP endpoints need Curve.
"""

from __future__ import annotations

import datetime
import grp
import logging
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import zmq
from utterd.daemon.settings import LimitsSettings, ServerSettings
from utterd.daemon.speech.scheduler import Busy
from utterd.models.errors import UtterdError
from zmq.auth import load_certificate
from zmq.utils import z85

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

# zmq.auth.thread (the ZAP handler) brings asyncio and ssl (+6.5 MiB RSS, docs/benchmarks.md
# "Memory and ready time"): it is imported in start_curve, so only a daemon with server.curve
# on pays for it.

_LOGGER = logging.getLogger(__name__)

CURVE_DOMAIN: Final = "utterd"
"""ZAP domain of the Curve listeners; the authenticator answers only for it."""

SERVER_KEY_NAME: Final = "server"
"""The server key pair is `<curve_dir>/server.key` (public) and `server.key_secret`."""

PUBLIC_SUFFIX: Final = ".key"
SECRET_SUFFIX: Final = ".key_secret"

MAX_TRACKED_CLIENTS: Final = 4096
"""Most clients whose rate-limit state is kept; the least recently seen is forgotten beyond it."""

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A key pair's file name stem, as `utterd keys client NAME` accepts it."""


# ---------------------------------------------------------------------------------------------
# Errors.


class UnknownGroup(UtterdError):
    """`server.client_group` names a group this system does not have (start-up error)."""

    code = "unknown-group"


class SocketGroupError(UtterdError):
    """The ipc folder cannot be given to `server.client_group` (start-up error)."""

    code = "runtime-dir"


class CurveKeyError(UtterdError):
    """A Curve key or key file is missing, malformed or unsafe (start-up or CLI error)."""

    code = "curve-keys"


class RateLimited(UtterdError):
    """The client sent more requests than `limits.requests_per_s` allows (with its burst)."""

    code = "rate-limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """Seconds until the client's next request would be accepted."""


# ---------------------------------------------------------------------------------------------
# ipc socket permissions.


@dataclass(frozen=True)
class SocketPermissions:
    """Who besides the daemon's user may reach the ipc sockets: nobody, or one group."""

    group: str | None = None
    """Group name from `server.client_group`; None: owner only."""

    gid: int | None = None
    """That group's id."""

    @property
    def dir_mode(self) -> int:
        # setgid: socket files made inside inherit the folder's group, with no chown afterwards.
        # Group search only (no read, no write): members can reach a socket by its name, but
        # cannot list the folder or replace a socket with their own.
        return 0o700 if self.gid is None else 0o2710

    @property
    def umask(self) -> int:
        """The umask while binding, so socket files are born with their final mode."""
        return 0o077 if self.gid is None else 0o007

    def apply_to_dir(self, path: Path) -> None:
        """Give the folder its owner and mode; the group first, the mode second (no window)."""
        st = path.stat()
        if self.gid is not None and st.st_gid != self.gid:
            try:
                os.chown(path, -1, self.gid)
            except PermissionError:
                raise SocketGroupError(
                    f"cannot give {path} to group {self.group!r} (server.client_group): this "
                    f"user is not a member of it; add it (systemd: SupplementaryGroups=)"
                ) from None
        if stat.S_IMODE(st.st_mode) != self.dir_mode or (
            self.gid is not None and st.st_gid != self.gid
        ):
            os.chmod(path, self.dir_mode)

    def check_socket(self, path: Path) -> None:
        """After bind: the socket file carries the group (inherited from the setgid folder)."""
        if self.gid is None or not path.exists():
            return
        if path.stat().st_gid != self.gid:
            # Only reachable through the folder, which already has the right group and mode.
            os.chown(path, -1, self.gid)


OWNER_ONLY: Final = SocketPermissions()


def socket_permissions(group: str | None) -> SocketPermissions:
    """The permissions for `server.client_group`; UnknownGroup naming it when it does not exist."""
    if group is None:
        return OWNER_ONLY
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownGroup(
            f"server.client_group names group {group!r}, which does not exist on this system "
            f"(create it with `groupadd --system {group}`, or set client_group: null)"
        ) from None
    return SocketPermissions(group=group, gid=gid)


# ---------------------------------------------------------------------------------------------
# Curve keys.


def is_z85_key(text: str) -> bool:
    """Whether `text` is a Curve key in Z85 (40 characters encoding 32 bytes)."""
    if len(text) != 40:
        return False
    try:
        return len(z85.decode(text.encode("ascii"))) == 32
    except (KeyError, ValueError, UnicodeEncodeError):
        return False


@dataclass(frozen=True)
class KeyPair:
    """A Curve key pair, both halves in Z85."""

    public: bytes
    """The public key: share it."""

    secret: bytes
    """The secret key: never leaves its owner's files."""


def new_key_pair() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def _banner(kind: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"#   ****  Generated on {now} by utterd  ****\n#   ZeroMQ CURVE {kind} Certificate\n"


def _write_new(path: Path, text: str, mode: int) -> None:
    """Write a file that must not exist yet, with `mode` from its first byte (no chmod later)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits the public file needs
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists():
        tmp.unlink()
        raise CurveKeyError(f"{path} already exists; not overwriting a key")
    os.replace(tmp, path)


def write_key_pair(folder: Path, name: str, pair: KeyPair) -> tuple[Path, Path]:
    """Write NAME.key (public, 0644) and NAME.key_secret (secret, 0600) in the ZeroMQ
    certificate format (`zmq.auth.load_certificate` and czmq read it). Never overwrites."""
    if not _KEY_NAME.fullmatch(name):
        raise CurveKeyError(f"key name {name!r}: use letters, digits, '.', '_' and '-'")
    public_path = folder / (name + PUBLIC_SUFFIX)
    secret_path = folder / (name + SECRET_SUFFIX)
    for path in (public_path, secret_path):
        if path.exists():
            raise CurveKeyError(f"{path} already exists; not overwriting a key")
    curve = f'curve\n    public-key = "{pair.public.decode("ascii")}"\n'
    _write_new(
        secret_path,
        _banner("**Secret**")
        + "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
        + "metadata\n"
        + curve
        + f'    secret-key = "{pair.secret.decode("ascii")}"\n',
        0o600,
    )
    _write_new(
        public_path,
        _banner("**Public**")
        + "#   Exchange securely, or verify the key after exchange: whoever holds the\n"
        + "#   matching secret key is whom utterd lets in when this key is allowed.\n\n"
        + "metadata\n"
        + curve,
        0o644,
    )
    return public_path, secret_path


def _check_private(path: Path) -> None:
    """A secret key file must be ours and unreadable by anyone else."""
    st = path.stat()
    if st.st_uid != os.getuid():
        raise CurveKeyError(f"{path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise CurveKeyError(
            f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); a secret key "
            f"must be mode 0600 (if others could read it, make a new pair)"
        )


def read_secret_key_file(path: Path) -> KeyPair:
    """A key pair from a `.key_secret` file; CurveKeyError naming the file if it is not one."""
    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read key file {path}: {exc}") from None
    if secret is None:
        raise CurveKeyError(f"{path} holds no secret key (give the {SECRET_SUFFIX} file)")
    pair = KeyPair(public, secret)
    if not (
        is_z85_key(public.decode("ascii", "replace"))
        and is_z85_key(secret.decode("ascii", "replace"))
    ):
        raise CurveKeyError(f"{path}: the keys are not 40-character Z85 Curve keys")
    if zmq.curve_public(secret) != public:
        raise CurveKeyError(f"{path}: the public key does not belong to the secret key")
    return pair


def read_public_key(source: str | Path) -> bytes:
    """A public key given as Z85 text or as a key file (`.key` or `.key_secret`)."""
    text = str(source)
    if is_z85_key(text) and not Path(text).exists():
        return text.encode("ascii")
    try:
        public, _ = load_certificate(text)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"{text!r} is neither a Z85 public key nor a key file: {exc}") from None
    if not is_z85_key(public.decode("ascii", "replace")):
        raise CurveKeyError(f"{text}: the public key is not a 40-character Z85 Curve key")
    return public


def _prepare_key_dir(folder: Path) -> None:
    """The key folder: ours, and writable by nobody else (else anyone could swap the keys)."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise CurveKeyError(
            f"{folder} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise CurveKeyError(
            f"{folder} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"make it 0755 or stricter"
        )


def load_or_create_server_keys(folder: Path) -> KeyPair:
    """The server key pair from `folder`, made on first use (secret 0600, public 0644)."""
    _prepare_key_dir(folder)
    public_path = folder / (SERVER_KEY_NAME + PUBLIC_SUFFIX)
    secret_path = folder / (SERVER_KEY_NAME + SECRET_SUFFIX)
    if not secret_path.exists():
        if public_path.exists():
            raise CurveKeyError(
                f"{public_path} exists without {secret_path.name}; delete it to make a new pair "
                f"(clients then need the new public key)"
            )
        pair = new_key_pair()
        write_key_pair(folder, SERVER_KEY_NAME, pair)
        _LOGGER.info("event=curve-server-key-created public_key=%s", pair.public.decode())
        return pair
    _check_private(secret_path)
    pair = read_secret_key_file(secret_path)
    if not public_path.exists():
        _write_new(
            public_path,
            _banner("**Public**") + "\nmetadata\ncurve\n"
            f'    public-key = "{pair.public.decode("ascii")}"\n',
            0o644,
        )
    elif read_public_key(public_path) != pair.public:
        raise CurveKeyError(
            f"{public_path} does not match {secret_path.name}; delete it to rewrite it"
        )
    return pair


def server_public_key(folder: Path) -> bytes:
    """The server's public key from `folder` (for `utterd keys server`); never creates one."""
    path = folder / (SERVER_KEY_NAME + PUBLIC_SUFFIX)
    if not path.exists():
        raise CurveKeyError(
            f"no server key at {path} yet: `utterd serve` makes it on its first start with "
            f"server.curve: true"
        )
    return read_public_key(path)


class AllowList:
    """Client public keys allowed on the Curve endpoints: the `.key` files of a folder plus the
    keys listed in config.yaml. Asked by the ZAP thread; `reload()` swaps the set atomically."""

    def __init__(self, folder: Path | None, keys: Sequence[str], folder_required: bool) -> None:
        self._folder = folder
        self._inline = tuple(keys)
        self._folder_required = folder_required
        self._keys: frozenset[bytes] = frozenset()
        self._denied_log = TokenBucket(burst=10.0, now_s=time.monotonic())
        self.reload()

    def __len__(self) -> int:
        return len(self._keys)

    def reload(self) -> int:
        """Read the folder again; CurveKeyError (old set kept) if a file is bad. Returns the count."""
        keys: set[bytes] = set()
        for index, key in enumerate(self._inline):
            if not is_z85_key(key):
                raise CurveKeyError(
                    f"server.curve_clients[{index}]: {key!r} is not a Z85 public key"
                )
            keys.add(key.encode("ascii"))
        folder = self._folder
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*" + PUBLIC_SUFFIX)):
                keys.add(read_public_key(path))
        elif folder is not None and self._folder_required:
            raise CurveKeyError(f"server.curve_clients_dir: {folder} is not a folder")
        self._keys = frozenset(keys)
        _LOGGER.info("event=curve-allow-list keys=%d folder=%s", len(keys), folder)
        return len(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: whether the client with this Z85 public key may connect (ZAP thread)."""
        allowed = domain == CURVE_DOMAIN and key in self._keys
        if not allowed:
            # A stranger retrying in a loop must not flood the journal.
            loud = self._denied_log.take(time.monotonic(), rate_per_s=1.0, burst=10.0) == 0.0
            _LOGGER.log(
                logging.WARNING if loud else logging.DEBUG,
                "event=curve-denied client_key=%s",
                key.decode("ascii", "replace"),
            )
        return allowed


@dataclass(frozen=True)
class CurveClientKeys:
    """What a client needs to reach a Curve endpoint."""

    server_public: bytes
    """The daemon's public key (`utterd keys server`)."""

    pair: KeyPair
    """The client's own key pair; its public half must be on the daemon's allow-list."""

    @classmethod
    def load(cls, server_key: str | Path, client_secret_file: str | Path) -> CurveClientKeys:
        return cls(read_public_key(server_key), read_secret_key_file(Path(client_secret_file)))

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make `sock` a Curve client; call before connect."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.pair.public
        sock.curve_secretkey = self.pair.secret


# ---------------------------------------------------------------------------------------------
# Per-client limits.


class TokenBucket:
    """A token bucket: `burst` tokens at most, refilled at `rate_per_s`; one per request.

    The rate and size are passed in on each call, so that a table of many buckets stores only
    two floats for each.
    """

    __slots__ = ("stamp_s", "tokens")

    def __init__(self, burst: float, now_s: float) -> None:
        self.tokens = burst
        self.stamp_s = now_s

    def level(self, now_s: float, rate_per_s: float, burst: float) -> float:
        """Tokens at `now_s`."""
        return min(burst, self.tokens + max(0.0, now_s - self.stamp_s) * rate_per_s)

    def take(self, now_s: float, rate_per_s: float, burst: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there will be one."""
        self.tokens = self.level(now_s, rate_per_s, burst)
        self.stamp_s = max(self.stamp_s, now_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate_per_s


class RateLimiter:
    """A token bucket per client, in a table that cannot grow without bound.

    Buckets are kept in least-recently-used order. One idle long enough to have refilled is the
    same as a new one, so it is dropped (from the old end, amortized O(1) per request); beyond
    `max_clients` the least recently seen is dropped even if not full, which gives that client a
    fresh bucket: a client that can make unlimited identities is bounded by the total limits,
    not by this table.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._refill_s = self.burst / rate_per_s
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.evicted = 0
        """Buckets dropped before they had refilled (the table was full)."""

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str) -> None:
        """Count one request of `client`; RateLimited (with retry-after) if it is over its rate."""
        now = self._clock()
        self._expire(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.burst, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(client)
        wait_s = bucket.take(now, self.rate_per_s, self.burst)
        if wait_s > 0.0:
            raise RateLimited(
                f"more than {self.rate_per_s:g} requests per second (burst {self.burst:g}) from "
                f"this client; retry after {wait_s:.3f} s",
                retry_after_s=round(wait_s, 3),
            )

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            client, bucket = next(iter(buckets.items()))
            if now - bucket.stamp_s < self._refill_s:
                return
            del buckets[client]


class InFlight:
    """Requests of one kind (`synthesize`) waiting or running, counted per client and in total.

    Entries exist only while a client has requests in flight, so the table is bounded by
    `max_total`.
    """

    def __init__(self, what: str, max_total: int, max_per_client: int) -> None:
        self._what = what
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.total = 0

    def acquire(self, client: str) -> None:
        """Count one more for `client`; Busy when a limit is reached."""
        with self._lock:
            mine = self._counts.get(client, 0)
            if self.total >= self.max_total:
                raise Busy(
                    f"{self.total} {self._what} requests are in progress (limits.max_queue); "
                    f"try again later"
                )
            if mine >= self.max_per_client:
                raise Busy(
                    f"this client has {mine} {self._what} requests in progress "
                    f"(limits.max_queue_per_client); try again later"
                )
            self._counts[client] = mine + 1
            self.total += 1

    def release(self, client: str) -> None:
        with self._lock:
            left = self._counts.get(client, 0) - 1
            if left > 0:
                self._counts[client] = left
            else:
                self._counts.pop(client, None)
            self.total = max(0, self.total - 1)

    def clients(self) -> int:
        with self._lock:
            return len(self._counts)


def client_id(envelope: Sequence[bytes], user_id: str | None) -> str:
    """Whom the per-client limits count a request against: its Curve public key when it came
    over Curve (one key, however many connections), else its ROUTER routing id."""
    if user_id:
        return "key:" + user_id
    return "id:" + (envelope[0].hex() if envelope else "")


def receive(sock: zmq.Socket[bytes]) -> tuple[list[bytes], str | None]:
    """One message from a ROUTER (non-blocking; zmq.Again if none) and the Curve public key
    (Z85) that ZAP vouched for, or None for a plain (ipc) peer."""
    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
    try:
        value = frames[-1].get("User-Id")
    except zmq.ZMQError:  # no ZAP handshake on this connection (ipc): no User-Id property
        value = None
    user_id = value if isinstance(value, str) and value else None
    return [f.bytes for f in frames], user_id


# ---------------------------------------------------------------------------------------------
# The server's side of all this.


class AccessControl:
    """What the server asks at bind time (permissions, Curve) and for each request (limits)."""

    def __init__(
        self,
        server: ServerSettings,
        limits: LimitsSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server = server
        self.rate = RateLimiter(limits.requests_per_s, limits.request_burst, clock=clock)
        self.synth = InFlight("synthesize", limits.max_queue, limits.max_queue_per_client)
        self.allow_list: AllowList | None = None
        self.server_keys: KeyPair | None = None
        self._auth: ThreadAuthenticator | None = None

    @property
    def curve_on(self) -> bool:
        """Whether the TCP endpoints use Curve."""
        return self._server.curve and self._server.tcp_port is not None

    def socket_permissions(self) -> SocketPermissions:
        return socket_permissions(self._server.client_group)

    def start_curve(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        """Load the keys and start the ZAP handler; before any TCP endpoint is bound."""
        if not self.curve_on:
            return
        server = self._server
        self.server_keys = load_or_create_server_keys(server.resolved_curve_dir())
        self.allow_list = AllowList(
            server.resolved_curve_clients_dir(),
            server.curve_clients,
            folder_required=server.curve_clients_dir is not None,
        )
        if not len(self.allow_list):
            raise CurveKeyError(
                f"server.curve is on but no client key is allowed: put clients' public .key files "
                f"in {server.resolved_curve_clients_dir()} (`utterd keys client NAME` makes a "
                f"pair) or list keys in server.curve_clients"
            )
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
        auth.start()
        auth.configure_curve_callback(CURVE_DOMAIN, credentials_provider=self.allow_list)
        self._auth = auth
        _LOGGER.info(
            "event=curve-on server_key=%s clients=%d",
            self.server_keys.public.decode(),
            len(self.allow_list),
        )

    def secure(self, sock: zmq.Socket[bytes]) -> None:
        """Curve server options for the endpoints `sock` binds from now on (TCP only)."""
        if self.server_keys is None:
            return
        sock.curve_secretkey = self.server_keys.secret
        sock.curve_publickey = self.server_keys.public
        sock.curve_server = True
        sock.zap_domain = CURVE_DOMAIN.encode()
        try:
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        except (zmq.ZMQError, AttributeError):
            # Older libzmq: a ZAP handler that is gone would let any key in; ours is started
            # before the bind and stopped after the sockets close.
            _LOGGER.warning("event=zap-enforce-unavailable libzmq=%s", zmq.zmq_version())

    def admit(self, client: str) -> None:
        """Rate limit one request; RateLimited when over."""
        self.rate.check(client)

    def close(self) -> None:
        """Stop the ZAP handler; after the sockets are closed, before the context ends."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def bind_order(endpoints: Iterable[str]) -> list[str]:
    """Plain endpoints first, TCP last: Curve options set in between apply to TCP only."""
    return sorted(endpoints, key=lambda ep: ep.startswith("tcp://"))
