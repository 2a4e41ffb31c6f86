"""utterd's settings: frozen dataclasses, one per part of the daemon, nested in `Settings`.

The defaults here are the defaults of `config.yaml` at the top of the repository (a test keeps the
two equal). `config.py` loads and validates a YAML file into these types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit


def _default_voice_folders() -> tuple[Path, ...]:
    return (Path("~/.local/share/utterd/voices"), Path("/var/lib/utterd/voices"))


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the daemon listens."""

    runtime_dir: Path | None = None
    """Folder for the ipc sockets, created owner-only. None: $RUNTIME_DIRECTORY (systemd),
    else $XDG_RUNTIME_DIR/utterd, else /tmp/utterd-<uid>."""

    tcp_port: int | None = None
    """Also serve requests on tcp://tcp_host:tcp_port and events on tcp_port + 1. None: ipc only."""

    tcp_host: str = "127.0.0.1"
    """Address for the TCP endpoints; a non-loopback one needs allow_non_loopback."""

    allow_non_loopback: bool = False
    """Must be true to bind tcp_host to anything but a loopback address (curve must be on too)."""

    client_group: str | None = None
    """Group whose members may also use the ipc sockets (folder 2710, sockets 0770, set before
    they are bound). None: owner only."""

    curve: bool = False
    """CurveZMQ (encryption, and ZAP checking client keys) on the TCP endpoints. Required when
    tcp_host is not loopback. The ipc sockets stay plain (file permissions guard them)."""

    curve_dir: Path | None = None
    """Folder of the server key pair (server.key public, server.key_secret secret), made on the
    first start with curve on. None: $STATE_DIRECTORY/curve (systemd), else
    $XDG_DATA_HOME/utterd/curve, else ~/.local/share/utterd/curve."""

    curve_clients_dir: Path | None = None
    """Folder of allowed client public keys (*.key files). None: curve_dir/clients."""

    curve_clients: tuple[str, ...] = ()
    """Allowed client public keys in Z85 (40 characters), besides those in curve_clients_dir."""

    max_message_bytes: int = 1_048_576
    """Largest inbound message ZeroMQ accepts (ZMQ_MAXMSGSIZE); larger ones are dropped."""

    synth_workers: int = 2
    """Threads serving `synthesize` requests (speech for playback has its own thread)."""

    on_shutdown: str = "stop"
    """What SIGTERM does to the job speaking: `stop` silences it at once; `finish` lets it end,
    waiting at most shutdown_finish_s. Waiting jobs are dropped either way."""

    shutdown_finish_s: float = 10.0
    """With on_shutdown `finish`: longest wait for the job speaking before it is stopped."""

    def resolved_runtime_dir(self) -> Path:
        if self.runtime_dir is not None:
            return self.runtime_dir.expanduser()
        systemd_dir = os.environ.get("RUNTIME_DIRECTORY")
        if systemd_dir:
            return Path(systemd_dir.split(":")[0])
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg:
            return Path(xdg) / "utterd"
        return Path(f"/tmp/utterd-{os.getuid()}")

    def resolved_curve_dir(self) -> Path:
        if self.curve_dir is not None:
            return self.curve_dir.expanduser()
        state = os.environ.get("STATE_DIRECTORY")
        if state:
            return Path(state.split(":")[0]) / "curve"
        data_home = os.environ.get("XDG_DATA_HOME", "")
        base = Path(data_home) if os.path.isabs(data_home) else Path("~/.local/share").expanduser()
        return base / "utterd" / "curve"

    def resolved_curve_clients_dir(self) -> Path:
        if self.curve_clients_dir is not None:
            return self.curve_clients_dir.expanduser()
        return self.resolved_curve_dir() / "clients"

    def request_endpoints(self) -> list[str]:
        eps = [f"ipc://{self.resolved_runtime_dir() / 'utterd.sock'}"]
        if self.tcp_port is not None:
            eps.append(f"tcp://{self.tcp_host}:{self.tcp_port}")
        return eps

    def event_endpoints(self) -> list[str]:
        eps = [f"ipc://{self.resolved_runtime_dir() / 'utterd-events.sock'}"]
        if self.tcp_port is not None:
            eps.append(f"tcp://{self.tcp_host}:{self.tcp_port + 1}")
        return eps


@dataclass(frozen=True)
class VoiceSettings:
    """Which voices exist and how their models run."""

    default: str = "hibari-heart"
    """Voice used when a request names none; loaded and warmed up at start-up."""

    folders: tuple[Path, ...] = field(default_factory=_default_voice_folders)
    """Folders searched for Piper voices (NAME.onnx beside NAME.onnx.json); missing ones are skipped."""

    preload: tuple[str, ...] = ()
    """Voices loaded at start-up besides the default; others load on first use."""

    backend: str = "auto"
    """Inference backend for voices not in `backends`: `auto` (the fastest variant that passed
    the quality and speed gates on this machine, from `utterd quantize`, among those that stream
    below the sentence; FP32 on ONNX Runtime otherwise), `onnxruntime` or `openvino`."""

    backends: Mapping[str, str] = field(default_factory=dict)
    """Per-voice backend, voice id -> one of the `backend` values; it wins over `backend` for
    that voice. An id that is not installed is logged at start-up, not refused. Read-only."""

    by_language: Mapping[str, str] = field(default_factory=dict)
    """Voice per language tag (`zh`, `en`, `zh-CN`), for spans of plain text in another language
    than the request's voice and for SSML `xml:lang`: the exact tag wins over its primary
    language; the voice loads on first use. An id that is not installed is logged at start-up,
    not refused. Empty: the first loaded voice of that language, else the first installed one
    (by id; it loads on first use). Read-only."""

    threads: int = 0
    """Intra-op threads per inference; 0 means one per physical core."""

    model_store: Path | None = None
    """Folder of quantized variants and their manifest (written by `utterd quantize`). None:
    $STATE_DIRECTORY/models (systemd), else $XDG_DATA_HOME/utterd/models, else
    ~/.local/share/utterd/models."""

    cpu_pinning: bool = False
    """Pin inference threads to cores (OpenVINO); helps on a busy machine, hurts a shared one."""

    idle_unload_s: float | None = None
    """Seconds without use after which a voice other than `default` is unloaded (the next request
    loads it again: one load, logged and counted). None: voices stay loaded."""

    def backend_for(self, voice_id: str) -> str:
        """The backend voice `voice_id` is configured to run on: its own, else the default."""
        return self.backends.get(voice_id, self.backend)

    def resolved_model_store(self) -> Path:
        if self.model_store is not None:
            return self.model_store.expanduser()
        state = os.environ.get("STATE_DIRECTORY")
        if state:
            return Path(state.split(":")[0]) / "models"
        data_home = os.environ.get("XDG_DATA_HOME")
        base = Path(data_home) if data_home else Path("~/.local/share").expanduser()
        return base / "utterd" / "models"


@dataclass(frozen=True)
class AudioSettings:
    """The sound device."""

    device: str | int | None = None
    """PortAudio output device, by name (substring) or index; None is the system default."""

    sample_rate_hz: int | None = None
    """Rate the device stream is opened at. None: the default voice's rate. Audio of another rate
    is resampled (soxr); if the device refuses the rate, its own default rate is used."""

    latency_ms: float = 20.0
    """Device buffer the stream asks PortAudio for; lower stops faster, too low underruns."""

    block_frames: int = 256
    """Frames per PortAudio callback."""

    retry_interval_s: float = 2.0
    """How often a missing or failed device is tried again."""


@dataclass(frozen=True)
class LimitsSettings:
    """Bounds on what a client may ask."""

    max_text_chars: int = 20_000
    """Longest text accepted in one request, in characters."""

    max_queue: int = 256
    """Most jobs waiting for playback; beyond it `speak` answers `busy`. Also the most
    `synthesize` requests waiting or running."""

    max_queue_per_client: int = 64
    """Most jobs one client may have waiting for playback (and `synthesize` requests in
    progress); beyond it that client's requests answer `busy`, other clients' do not."""

    requests_per_s: float = 100.0
    """Requests per second one client may send, sustained (its token bucket's refill rate);
    beyond it requests answer `rate-limited` with `retry_after_s`."""

    request_burst: int = 200
    """Requests one client may send at once above that rate (its token bucket's size)."""

    stream_idle_s: float = 30.0
    """A streamed `speak` (`speak-start`) that waits this long for its next text while it has
    the device fails with `stream-idle`, so a vanished client cannot hold the speech forever."""


DETERMINISTIC_POLICIES: Final[tuple[str, ...]] = ("always", "request")
PREWARM_SESSIONS: Final[tuple[str, ...]] = ("shared", "private")

SHUTDOWN_MODES: Final[tuple[str, ...]] = ("stop", "finish")
"""Values of `server.on_shutdown`."""


@dataclass(frozen=True)
class CacheSettings:
    """The phrase cache: a RAM tier in front of a disk tier, both with byte budgets."""

    enabled: bool = True
    """false: nothing is looked up or stored; every request is synthesized."""

    dir: Path | None = None
    """Folder of the disk tier, created owner-only. None: $CACHE_DIRECTORY/phrases (systemd),
    else $XDG_CACHE_HOME/utterd/phrases, else ~/.cache/utterd/phrases."""

    ram_budget_bytes: int = 64 * 1024 * 1024
    """Most bytes of audio kept in memory (64 MiB is about 25 minutes at 22 kHz)."""

    disk_budget_bytes: int = 512 * 1024 * 1024
    """Most bytes the folder may hold, temporary files included; 0 keeps the cache in RAM only."""

    deterministic: str = "always"
    """How cached audio is made repeatable. `always`: every cached phrase is synthesized with
    `deterministic` on, whatever the request says (Piper: noise scales 0; hibari: fixed noise
    seed). `request`: only requests that ask for `deterministic` use the cache."""

    max_text_chars: int = 500
    """Longer requests bypass the cache (it is for prompts, and a miss holds its audio in RAM)."""

    write_retry_s: float = 60.0
    """After a failed disk write (read-only or full folder), how long new entries stay in RAM
    only before a write is tried again; the first write that succeeds clears the fault."""

    prewarm: tuple[str, ...] = ()
    """Prompts rendered in the background after start-up; syntax in daemon/cache/prewarm.py
    (`voice=en_US-joe-medium rate=1.1 | Battery low.`)."""

    prewarm_file: Path | None = None
    """A UTF-8 file of pre-warm entries, one a line, after the inline ones. None: no file."""

    prewarm_sessions: str = "shared"
    """What pre-warming renders on. `shared`: the live voice's own sessions, only while no live
    work waits and stopped at the next small window when some arrives (no extra memory).
    `private`: a second instance of each voice it warms, opened at the lowest CPU priority
    while warming runs (the voice's weights and buffers twice over meanwhile)."""

    def resolved_dir(self) -> Path:
        if self.dir is not None:
            return self.dir.expanduser()
        systemd_dir = os.environ.get("CACHE_DIRECTORY")
        if systemd_dir:
            return Path(systemd_dir.split(":")[0]) / "phrases"
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path("~/.cache").expanduser()
        return base / "utterd" / "phrases"


DATE_ORDERS: Final[tuple[str, ...]] = ("mdy", "dmy")
EMOJI_POLICIES: Final[tuple[str, ...]] = ("skip", "name")


@dataclass(frozen=True)
class TextSettings:
    """The text front end (models/text, docs/text.md): how written text becomes the words
    a voice says. Changes take effect at restart."""

    date_order: str = "mdy"
    """Order of day and month in a numeric date: `mdy` (en-US, `10/04` is October fourth) or
    `dmy` (en-GB, the tenth of April)."""

    emoji: str = "skip"
    """Emoji and other pictographs: `skip` them, or say their Unicode `name` (for readers)."""

    lexicon: Mapping[str, str] = field(default_factory=dict)
    """Your words (names, brands) → how to say them: as words (`Nguyen: win`), or as IPA
    between slashes (`Nguyen: /ŋwˈɪn/`) for voices that take phonemes (others read the word).
    Whole words, exact spelling first, then ignoring case."""

    own_normalizer: tuple[str, ...] = ()
    """Voice families (`piper`, `hibari`) that read plain text with their own normalizer
    instead of utterd's. Chosen by measurement (docs/benchmarks.md, "Text front end")."""


@dataclass(frozen=True)
class WyomingSettings:
    """The Wyoming bridge (daemon/bridges/wyoming.py, docs/home-assistant.md): Home Assistant's
    protocol served by `utterd serve` itself, on the same voices, cache and synthesis pool.
    Wyoming has no authentication: whoever reaches the port can use it."""

    uri: str | None = None
    """Where to listen, `tcp://HOST:PORT` (`tcp://127.0.0.1:10200`). None: no Wyoming server."""

    allow_non_loopback: bool = False
    """Must be true to listen on anything but a loopback address (Home Assistant on another
    machine): every host that reaches the port can then make the daemon synthesize."""

    zeroconf: bool = False
    """Announce the server over mDNS (`_wyoming._tcp`), as Home Assistant discovers Wyoming
    services; needs the `zeroconf` package (`utterd[zeroconf]`) and a non-loopback host."""

    zeroconf_name: str | None = None
    """The name announced. None: `utterd-` and the machine's host name."""

    max_clients: int = 16
    """Wyoming connections served at once; one more is answered `busy` and closed."""

    def endpoint(self) -> tuple[str, int] | None:
        """(host, port) of `uri`; None when it is not set. ValueError naming what is wrong."""
        if self.uri is None:
            return None
        parsed = urlsplit(self.uri.strip())
        if parsed.scheme != "tcp":
            raise ValueError("expected tcp://HOST:PORT (Wyoming over TCP)")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or not 1 <= port <= 65535:
            raise ValueError("expected tcp://HOST:PORT with a host and a port in 1..65535")
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
            raise ValueError("expected tcp://HOST:PORT and nothing more")
        return parsed.hostname, port


@dataclass(frozen=True)
class MemorySettings:
    """How the daemon's heap hands memory back to the system (daemon/memory.py)."""

    mmap_threshold_bytes: int | None = None
    """Heap blocks from this size up get a mapping of their own, returned to the system as soon
    as they are freed; None keeps the C library's sliding threshold (glibc: up to 32 MiB after
    big frees, so a synthesis's large arrays stay resident between requests). 1048576 on a
    512 MB board: the default voice's peak RSS while speaking fell 15 MiB, for about a quarter
    more CPU per sentence in page faults (docs/benchmarks.md, "Memory and ready time")."""


@dataclass(frozen=True)
class Settings:
    """Everything the daemon reads from config.yaml."""

    server: ServerSettings = field(default_factory=ServerSettings)
    voices: VoiceSettings = field(default_factory=VoiceSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    text: TextSettings = field(default_factory=TextSettings)
    wyoming: WyomingSettings = field(default_factory=WyomingSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)

    profile: str = "default"
    """`default`, or `eco` for battery- or thermally-limited boards: one inference thread where
    `voices.threads` is 0, and fewer periodic wake-ups (daemon/profile.py). Applied at load."""

    greeting: str | None = None
    """Spoken with the default voice once the daemon is ready; None says nothing."""

    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
