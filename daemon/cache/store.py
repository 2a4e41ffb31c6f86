"""The phrase cache store: a RAM tier (LRU by bytes) in front of a disk tier (LRU by last use).

An entry is one phrase's audio: 16-bit mono PCM, its sample rate, the sample offset where each
sentence starts, the voice id and a little metadata. Keys are `CacheKeyParts.digest()` values.

Disk file format (one file per entry, `<key>.upc` in the cache folder; integers little-endian):

    offset  size  field
         0     8  magic b"UTDPHRC\\0"
         8     2  format version (FORMAT_VERSION)
        10     2  flags, 0 (readers reject anything else)
        12     4  sample rate, Hz
        16     8  pcm_bytes: length of the PCM payload
        24     4  sentence_count
        28     4  meta_bytes: length of the metadata JSON
        32    32  the key, raw (must match the file name)
        64    32  sha256 of bytes 0..63 followed by everything from byte 96 on
        96        sentence offsets: sentence_count x u64 (sample index where each sentence starts)
                  metadata: UTF-8 JSON {"voice_id": str, "metadata": {str: scalar}}
                  PCM: pcm_bytes of s16le mono

The file's length must equal 96 + 8 * sentence_count + meta_bytes + pcm_bytes, so truncation is
caught before the checksum, and the checksum is verified on every read from disk. An entry that
fails either check is deleted, logged as one `event=cache-corrupt` line and reported as a miss,
so the caller synthesizes it again.

Crash safety: an entry is written to a temporary file in the same folder (`.<key>.<rand>.tmp`),
fsynced, renamed over its final name and the folder fsynced. A `kill -9` at any moment leaves
either no entry, the old entry or the new one, never a partial one under an entry name; stray
temporary files are deleted when the cache opens. The in-memory index (voice id, size, last use
per entry) is rebuilt from the entry headers at every start, so there is no index file to break;
last use is kept in each file's mtime: set on writes and disk hits, on RAM hits at most every few
minutes (to spare flash), and brought up to date for every entry used since at `close()`.

Budgets: the disk tier counts each file rounded up to 4 KiB blocks and makes room (deleting the
least recently used entries) *before* it writes, reserving the new file's size, so the folder's
entry and temporary files never exceed the budget, even with several writers at once.

Degraded modes never fail a request: no folder configured or an unusable one (cannot be
created, not a folder, locked by another utterd process) turns the disk tier `off` (RAM only);
a read-only or full folder, or any write error, makes it `read-only`: existing entries are still
served, new ones stay in RAM, and a write is tried again after `write_retry_s` (a minute by
default); the first write that succeeds makes it `ok` again. `stats()` reports the state and the
reason, which is also logged once as `event=cache-degraded`; `on_disk_fault` is told the fault
code (`cache-read-only`, `cache-full`, `cache-write-failed`, `cache-unavailable`) when it
changes and None when the tier recovers (the daemon's fault registry listens).

Single flight: identical requests in flight are synthesized once. `stream()` is the playback
form: on a miss it starts synthesis in a background thread of its own ("flight") and every
requester of the key, the first one and any that arrive while it runs, streams the flight's
chunks from the beginning as they are produced, at its own pace. A follower therefore gets its
first audio as soon as the first chunk exists, not after the whole phrase; and because no
consumer drives the synthesis, a slow consumer (the player, paced by the sound card) never holds
back the entry for a fast one (a `synthesize` client). When the last listener leaves (its job was
stopped) before synthesis finished, the flight is cancelled and nothing is stored. When it
finishes, the entry goes to RAM at once and to disk right after. `get_or_create()` is the
blocking form around a producer that returns a whole entry; it joins the same flights.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.faults import CACHE_FULL, CACHE_READ_ONLY, CACHE_UNAVAILABLE, CACHE_WRITE_FAILED
from utterd.models.errors import Cancelled, UtterdError
from utterd.models.voice import AudioChunk, CancelToken, float_to_pcm16

__all__ = [
    "CACHE_MODES",
    "ENTRY_SUFFIX",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "CacheEntry",
    "CacheMode",
    "CacheStats",
    "CorruptCacheEntry",
    "DiskState",
    "PhraseCache",
    "TierStats",
    "decode_entry",
    "encode_entry",
    "pcm16_to_float",
    "read_entry_file",
]

_LOGGER = logging.getLogger(__name__)

MAGIC: Final = b"UTDPHRC\x00"
"""First 8 bytes of every entry file."""

FORMAT_VERSION: Final = 1
"""Entry file format version; files of another version are discarded (it is only a cache)."""

ENTRY_SUFFIX: Final = ".upc"
"""Entry files are `<64 hex key>.upc`."""

TEMP_SUFFIX: Final = ".tmp"
"""Temporary files end with this; any found when the cache opens are leftovers of a crash."""

LOCK_NAME: Final = ".lock"
"""flock'ed by the process using the folder, so a second daemon cannot evict under the first."""


CACHE_MODES: Final[tuple[CacheMode, ...]] = ("auto", "refresh", "off")

MetaValue = str | int | float | bool | None
"""A metadata value: a JSON scalar."""

_FIXED = struct.Struct("<8sHHIQII32s")
_CHECKSUM_BYTES: Final = 32
HEADER_BYTES: Final = _FIXED.size + _CHECKSUM_BYTES
"""Bytes before the sentence offsets: the fixed fields and the checksum (96)."""

_OFFSET = struct.Struct("<Q")
_MAX_SENTENCES: Final = 1 << 20
_MAX_META_BYTES: Final = 1 << 16
_BLOCK_BYTES: Final = 4096
_ENTRY_OVERHEAD_BYTES: Final = 512
"""Charged per RAM entry for the Python objects around the audio."""

_DEFAULT_HIT_CHUNK_SAMPLES: Final = 8192
_WAIT_SLICE_S: Final = 0.02
"""How often a waiting consumer looks at its cancel token (stop latency while waiting)."""

_RETRY_WRITE_S: Final = 60.0
"""After a failed disk write, how long the disk tier stays read-only before trying again."""

_TOUCH_INTERVAL_S: Final = 300.0
"""Least time between two mtime updates of one entry: LRU across restarts without wearing flash."""

_HEX = frozenset("0123456789abcdef")


class CorruptCacheEntry(UtterdError):
    """An entry file failed its structure or checksum check; never reaches a client (a miss)."""

    code = "cache-corrupt"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DiskState(enum.Enum):
    """What the disk tier is doing."""

    OK = "ok"
    """Entries are read and written."""

    READ_ONLY = "read-only"
    """Entries on disk are served; new ones stay in RAM (read-only or full folder, write error)."""

    OFF = "off"
    """No disk tier: none configured, or the folder is unusable. RAM only."""


def _check_key(key: str) -> None:
    if len(key) != 64 or not _HEX.issuperset(key):
        raise ValueError(f"a cache key is 64 lowercase hex characters, got {key!r}")


def pcm16_to_float(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """16-bit PCM to float32 such that `float_to_pcm16` gives back exactly the same samples.

    `float_to_pcm16` truncates toward zero, so each nonzero value is biased a quarter step away
    from zero (inaudible: -102 dBFS); a hit is then bit-identical to the miss that stored it.
    """
    wide = pcm.astype(np.float64)
    biased = np.where(wide == 0.0, 0.0, wide + np.copysign(0.25, wide))
    return (biased / 32767.0).astype(np.float32)


@dataclass(frozen=True)
class CacheEntry:
    """One cached phrase."""

    pcm: bytes
    """Mono signed 16-bit little-endian samples (even length)."""

    sample_rate_hz: int
    """Rate of `pcm`."""

    sentence_offsets: tuple[int, ...]
    """Sample index where each sentence starts: first 0, non-decreasing, each <= sample count.
    Empty only when there is no audio at all."""

    voice_id: str
    """The voice that spoke it (for `clear(voice_id)`)."""

    metadata: Mapping[str, MetaValue] = field(default_factory=lambda: MappingProxyType({}))
    """Free-form JSON scalars kept with the entry (text, params, creation time) for diagnostics."""

    def __post_init__(self) -> None:
        if len(self.pcm) % 2:
            raise ValueError("pcm must hold whole 16-bit samples")
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        offsets = self.sentence_offsets
        if offsets and offsets[0] != 0:
            raise ValueError("the first sentence must start at sample 0")
        if any(b < a for a, b in itertools.pairwise(offsets)):
            raise ValueError("sentence offsets must not decrease")
        if offsets and offsets[-1] > self.sample_count:
            raise ValueError("a sentence offset lies past the end of the audio")
        if not offsets and self.pcm:
            raise ValueError("audio needs at least one sentence offset (0)")
        # A read-only view, so a shared entry cannot be changed by one of its readers.
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration_s(self) -> float:
        return self.sample_count / self.sample_rate_hz

    @property
    def size_bytes(self) -> int:
        """What the entry costs in the RAM tier."""
        return len(self.pcm) + 8 * len(self.sentence_offsets) + _ENTRY_OVERHEAD_BYTES

    def samples(self) -> npt.NDArray[np.int16]:
        """The PCM as a read-only int16 array (no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")

    def chunks(self, max_chunk_samples: int = _DEFAULT_HIT_CHUNK_SAMPLES) -> Iterator[AudioChunk]:
        """The audio as chunks of at most `max_chunk_samples`, sentence boundaries kept.

        Converted lazily, chunk by chunk, so the first one is ready in microseconds.
        """
        samples = self.samples()
        bounds = (*self.sentence_offsets, self.sample_count)
        for index in range(len(self.sentence_offsets)):
            start, end = bounds[index], bounds[index + 1]
            if start == end:
                yield AudioChunk(np.zeros(0, np.float32), self.sample_rate_hz, index, True)
                continue
            for piece in range(start, end, max_chunk_samples):
                stop = min(piece + max_chunk_samples, end)
                yield AudioChunk(
                    pcm16_to_float(samples[piece:stop]),
                    self.sample_rate_hz,
                    sentence_index=index,
                    sentence_end=stop == end,
                )

    @staticmethod
    def from_chunks(
        chunks: Iterable[AudioChunk],
        voice_id: str,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> CacheEntry:
        """Collect synthesized chunks into an entry (the same conversion the tee uses)."""
        tee = _Tee(limit_bytes=None)
        for chunk in chunks:
            tee.add(chunk)
        entry = tee.entry(voice_id, metadata or {})
        if entry is None:
            raise ValueError(f"chunks cannot be cached: {tee.abandoned}")
        return entry


class _Tee:
    """Accumulates a flight's chunks as PCM while they stream to listeners."""

    def __init__(self, limit_bytes: int | None) -> None:
        self._limit_bytes = limit_bytes
        self._parts: list[bytes] = []
        self._samples = 0
        self._offsets: list[int] = []
        self._last_sentence: int | None = None
        self._rate: int | None = None
        self.abandoned: str | None = None
        """Why the audio will not be stored, once that is known."""

    def add(self, chunk: AudioChunk) -> None:
        if self.abandoned is not None:
            return
        if self._rate is None:
            self._rate = chunk.sample_rate_hz
        elif chunk.sample_rate_hz != self._rate:
            self._abandon(f"sample rate changed from {self._rate} to {chunk.sample_rate_hz}")
            return
        if chunk.sentence_index != self._last_sentence:
            self._offsets.append(self._samples)
            self._last_sentence = chunk.sentence_index
        pcm = float_to_pcm16(chunk.samples).tobytes()
        self._parts.append(pcm)
        self._samples += len(pcm) // 2
        if self._limit_bytes is not None and 2 * self._samples > self._limit_bytes:
            self._abandon(f"larger than {self._limit_bytes} bytes")

    def _abandon(self, reason: str) -> None:
        self.abandoned = reason
        self._parts.clear()

    def entry(self, voice_id: str, metadata: Mapping[str, MetaValue]) -> CacheEntry | None:
        if self.abandoned is not None:
            return None
        return CacheEntry(
            pcm=b"".join(self._parts),
            sample_rate_hz=self._rate or 1,
            sentence_offsets=tuple(self._offsets),
            voice_id=voice_id,
            metadata=metadata,
        )


# ---------------------------------------------------------------------------------------------
# The file format.


def encode_entry(key: str, entry: CacheEntry) -> bytes:
    """The bytes of an entry file (see the module docstring for the layout)."""
    _check_key(key)
    meta = json.dumps(
        {"voice_id": entry.voice_id, "metadata": dict(entry.metadata)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")
    if len(meta) > _MAX_META_BYTES:
        raise ValueError(f"entry metadata is {len(meta)} bytes; at most {_MAX_META_BYTES}")
    offsets = b"".join(_OFFSET.pack(o) for o in entry.sentence_offsets)
    fixed = _FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        0,
        entry.sample_rate_hz,
        len(entry.pcm),
        len(entry.sentence_offsets),
        len(meta),
        bytes.fromhex(key),
    )
    checksum = hashlib.sha256(fixed)
    for part in (offsets, meta, entry.pcm):
        checksum.update(part)
    return b"".join((fixed, checksum.digest(), offsets, meta, entry.pcm))


@dataclass(frozen=True)
class _Header:
    sample_rate_hz: int
    pcm_bytes: int
    sentence_count: int
    meta_bytes: int

    @property
    def file_bytes(self) -> int:
        return HEADER_BYTES + 8 * self.sentence_count + self.meta_bytes + self.pcm_bytes


def _parse_fixed(key: str, data: bytes) -> _Header:
    if len(data) < HEADER_BYTES:
        raise CorruptCacheEntry(f"truncated: {len(data)} bytes, header needs {HEADER_BYTES}")
    magic, version, flags, rate, pcm_bytes, count, meta_bytes, raw_key = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise CorruptCacheEntry("bad magic")
    if version != FORMAT_VERSION:
        raise CorruptCacheEntry(f"format version {version}, expected {FORMAT_VERSION}")
    if flags != 0:
        raise CorruptCacheEntry(f"unknown flags {flags:#x}")
    if raw_key != bytes.fromhex(key):
        raise CorruptCacheEntry("header key does not match the file name")
    if count > _MAX_SENTENCES or meta_bytes > _MAX_META_BYTES or pcm_bytes % 2 or rate <= 0:
        raise CorruptCacheEntry("implausible header fields")
    return _Header(rate, pcm_bytes, count, meta_bytes)


def _parse_meta(raw: bytes) -> tuple[str, dict[str, MetaValue]]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCacheEntry(f"metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("voice_id"), str):
        raise CorruptCacheEntry("metadata lacks a voice id")
    extra = meta.get("metadata", {})
    if not isinstance(extra, dict) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in extra.values()
    ):
        raise CorruptCacheEntry("metadata is not a mapping of scalars")
    return meta["voice_id"], extra


def decode_entry(key: str, data: bytes) -> CacheEntry:
    """Parse and verify an entry file's bytes; raises CorruptCacheEntry naming the problem."""
    _check_key(key)
    header = _parse_fixed(key, data)
    if len(data) != header.file_bytes:
        raise CorruptCacheEntry(f"length {len(data)} bytes, header says {header.file_bytes}")
    view = memoryview(data)
    checksum = hashlib.sha256(view[: _FIXED.size])
    checksum.update(view[HEADER_BYTES:])
    if checksum.digest() != data[_FIXED.size : HEADER_BYTES]:
        raise CorruptCacheEntry("checksum mismatch")
    pos = HEADER_BYTES
    offsets = tuple(o for (o,) in _OFFSET.iter_unpack(data[pos : pos + 8 * header.sentence_count]))
    pos += 8 * header.sentence_count
    voice_id, metadata = _parse_meta(data[pos : pos + header.meta_bytes])
    pos += header.meta_bytes
    try:
        return CacheEntry(data[pos:], header.sample_rate_hz, offsets, voice_id, metadata)
    except ValueError as exc:  # checksum fine but inconsistent: written by a buggy writer
        raise CorruptCacheEntry(str(exc)) from None


def read_entry_file(path: Path) -> CacheEntry:
    """Read and verify one entry file (its key is its name); for tools and tests."""
    key = path.name.removesuffix(ENTRY_SUFFIX)
    return decode_entry(key, path.read_bytes())


def _read_index_info(path: Path, key: str) -> tuple[str, int]:
    """Voice id and file size from an entry's header, without reading the audio."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
        header = _parse_fixed(key, head)
        size = os.fstat(fh.fileno()).st_size
        if size != header.file_bytes:
            raise CorruptCacheEntry(f"length {size} bytes, header says {header.file_bytes}")
        fh.seek(HEADER_BYTES + 8 * header.sentence_count)
        voice_id, _ = _parse_meta(fh.read(header.meta_bytes))
    return voice_id, size


def _disk_cost(size_bytes: int) -> int:
    """A file's charge against the disk budget: its size rounded up to whole blocks."""
    return -(-size_bytes // _BLOCK_BYTES) * _BLOCK_BYTES


# ---------------------------------------------------------------------------------------------
# Stats.


@dataclass(frozen=True)
class TierStats:
    """One tier's contents and counters since the cache opened."""

    entries: int
    """Entries held."""

    size_bytes: int
    """Bytes held (disk: files rounded to 4 KiB blocks, temporary files included)."""

    budget_bytes: int
    """Most bytes the tier may hold."""

    hits: int
    """Lookups this tier answered."""

    misses: int
    """Lookups that reached this tier and found nothing usable (a corrupt entry is a miss)."""

    @property
    def hit_rate(self) -> float | None:
        """hits / (hits + misses); None before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "size_bytes": self.size_bytes,
            "budget_bytes": self.budget_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
        }


@dataclass(frozen=True)
class CacheStats:
    """What `describe` and `utterd cache stats` report."""

    ram: TierStats
    """The RAM tier; every lookup reaches it."""

    disk: TierStats
    """The disk tier; reached by the lookups the RAM tier missed."""

    disk_state: DiskState
    """Whether the disk tier is in use (see DiskState)."""

    disk_reason: str | None
    """Why the disk tier is read-only or off; None when it is ok."""

    in_flight: int
    """Phrases being synthesized for the cache right now."""

    corrupt_discarded: int
    """Entries found corrupt and discarded since the cache opened."""

    @property
    def hits(self) -> int:
        return self.ram.hits + self.disk.hits

    @property
    def misses(self) -> int:
        """Lookups neither tier answered."""
        return self.ram.hits + self.ram.misses - self.hits

    @property
    def hit_rate(self) -> float | None:
        total = self.ram.hits + self.ram.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ram": self.ram.as_dict(),
            "disk": self.disk.as_dict(),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "disk_state": self.disk_state.value,
            "disk_reason": self.disk_reason,
            "in_flight": self.in_flight,
            "corrupt_discarded": self.corrupt_discarded,
        }


# ---------------------------------------------------------------------------------------------
# The cache.


class _DiskRecord:
    """What the index knows of one entry file."""

    __slots__ = ("cost_bytes", "stale_mtime", "touched_s", "voice_id")

    def __init__(self, cost_bytes: int, voice_id: str, touched_s: float) -> None:
        self.cost_bytes = cost_bytes
        self.voice_id = voice_id
        self.touched_s = touched_s
        """Monotonic time the file's mtime was last set."""
        self.stale_mtime = False
        """Used since its mtime was last set (a RAM hit inside the touch interval)."""


class _FlightState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class _Flight:
    """One synthesis of one key, shared by everyone who asks for the key while it runs."""

    def __init__(self, key: str, streaming: bool, generation: int) -> None:
        self.key = key
        self.streaming = streaming
        """True: chunks appear in `chunks` as they are made (stream); False: only `entry`."""
        self.generation = generation
        """The cache's clear generation at start; a clear since then means: do not store."""
        self.cond = threading.Condition()
        self.chunks: list[AudioChunk] = []
        self.state = _FlightState.RUNNING
        self.entry: CacheEntry | None = None
        self.error: BaseException | None = None
        self.subscribers = 0
        """Streaming listeners; the cache lock guards it. At 0 a running flight is cancelled."""
        self.token = CancelToken()
        self.thread: threading.Thread | None = None


class _Retry:
    """Returned by a follower when the flight it waited on gave up (its leader was stopped)."""


_RETRY: Final = _Retry()


class _JoinKind(enum.Enum):
    HIT = "hit"
    LEAD = "lead"
    FOLLOW = "follow"
    LOOK_AGAIN = "look-again"
    CLOSING = "closing"


@dataclass(frozen=True)
class _Joined:
    kind: _JoinKind
    flight: _Flight | None = None
    entry: CacheEntry | None = None


class PhraseCache:
    """RAM LRU in front of a disk store, with single-flight synthesis. Thread-safe.

    `cache_dir` None (or a disk budget of 0) means RAM only. Opening scans the folder: deletes
    leftover temporary files and corrupt headers, rebuilds the index, evicts down to the budget.
    """

    def __init__(
        self,
        cache_dir: Path | None,
        ram_budget_bytes: int,
        disk_budget_bytes: int,
        *,
        hit_chunk_samples: int = _DEFAULT_HIT_CHUNK_SAMPLES,
        write_retry_s: float = _RETRY_WRITE_S,
        on_disk_fault: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        if ram_budget_bytes < 0 or disk_budget_bytes < 0:
            raise ValueError("cache budgets must be >= 0 bytes")
        if hit_chunk_samples <= 0:
            raise ValueError("hit_chunk_samples must be positive")
        self._ram_budget = ram_budget_bytes
        self._disk_budget = disk_budget_bytes
        self._hit_chunk_samples = hit_chunk_samples
        self._lock = threading.Lock()
        self._ram: OrderedDict[str, CacheEntry] = OrderedDict()
        self._ram_bytes = 0
        self._index: OrderedDict[str, _DiskRecord] = OrderedDict()
        self._disk_bytes = 0
        self._reserved_bytes = 0
        self._flights: dict[str, _Flight] = {}
        self._idle = threading.Condition(self._lock)
        self._generation = 0
        self._last_stamp_ns = 0
        self._closing = False
        self._counts = {"ram_hits": 0, "ram_misses": 0, "disk_hits": 0, "disk_misses": 0}
        self._corrupt = 0
        self._dir = cache_dir
        self._lock_fd: int | None = None
        self._disk_state = DiskState.OFF
        self._disk_reason: str | None = None
        self._retry_at_s: float | None = None
        self._write_retry_s = write_retry_s
        # Told (fault code, reason) when the disk tier degrades for a fault, (None, None) when it
        # recovers; called without the cache's main lock held.
        self._on_disk_fault = on_disk_fault
        self._fault: tuple[str | None, str | None] = (None, None)
        self._fault_lock = threading.Lock()  # held while telling, so changes arrive in order
        self._open_disk()

    # -- opening --------------------------------------------------------------------------------
    def _open_disk(self) -> None:
        path = self._dir
        if path is None:
            self._set_off("no cache directory configured")
            return
        if self._disk_budget == 0:
            self._set_off("disk budget is 0 bytes")
            return
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
        except OSError as exc:
            self._set_off(f"cannot use {path}: {exc.strerror or exc}", CACHE_UNAVAILABLE)
            return
        if not self._take_lock(path):
            return
        self._disk_state = DiskState.OK
        try:
            probe = path / f".probe-{secrets.token_hex(4)}{TEMP_SUFFIX}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except OSError as exc:
            self._degrade(exc)
        self._scan(path)

    def _set_off(self, reason: str, fault_code: str | None = None) -> None:
        self._disk_state = DiskState.OFF
        self._disk_reason = reason
        if fault_code is not None:
            self._notify_fault(fault_code, reason)
        if self._dir is not None:
            _LOGGER.warning(
                "event=cache-degraded tier=disk state=off dir=%s reason=%r", self._dir, reason
            )

    def _take_lock(self, path: Path) -> bool:
        lock_path = path / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            try:  # a read-only folder can still be locked through an existing lock file
                fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return True  # nothing to lock with; read-only, so nothing we do can conflict
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._set_off(f"{path} is in use by another utterd process", CACHE_UNAVAILABLE)
            return False
        self._lock_fd = fd
        return True

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _scan(self, path: Path) -> None:
        found: list[tuple[int, str, int, str]] = []
        stale = 0
        try:
            names = os.listdir(path)
        except OSError as exc:
            self._release_lock()
            self._set_off(f"cannot list {path}: {exc.strerror or exc}", CACHE_UNAVAILABLE)
            return
        for name in names:
            item = path / name
            if name.endswith(TEMP_SUFFIX):
                if self._disk_state is DiskState.OK:
                    item.unlink(missing_ok=True)
                    stale += 1
                continue
            key = name.removesuffix(ENTRY_SUFFIX)
            if not name.endswith(ENTRY_SUFFIX) or len(key) != 64 or not _HEX.issuperset(key):
                continue
            try:
                st = item.lstat()
                voice_id, size = _read_index_info(item, key)
            except CorruptCacheEntry as exc:
                self._discard(key, item, exc.reason, None)
                continue
            except OSError as exc:
                _LOGGER.warning("event=cache-read-error key=%s error=%r", key, exc)
                continue
            found.append((st.st_mtime_ns, key, _disk_cost(size), voice_id))
        now = time.monotonic()
        self._last_stamp_ns = max((mtime for mtime, *_ in found), default=0)
        for _, key, cost, voice_id in sorted(found):
            self._index[key] = _DiskRecord(cost, voice_id, now)
            self._disk_bytes += cost
        with self._lock:
            # A budget lowered in the config since the last run is enforced at once.
            doomed = self._evict_disk_locked(0) if self._disk_state is DiskState.OK else []
        _LOGGER.info(
            "event=cache-open dir=%s entries=%d size_bytes=%d budget_bytes=%d evicted=%d "
            "stale_temp_files=%d disk_state=%s",
            path,
            len(self._index),
            self._disk_bytes,
            self._disk_budget,
            0 if doomed is None else len(doomed),
            stale,
            self._disk_state.value,
        )

    def close(self) -> None:
        """Cancel running flights, wait briefly for them, release the folder lock."""
        with self._lock:
            self._closing = True
            flights = list(self._flights.values())
        for flight in flights:
            flight.token.cancel("cache closing")
        if not self.wait_idle(timeout_s=5.0):
            _LOGGER.warning("event=cache-close-timeout in_flight=%d", len(self._flights))
        with self._lock:
            self._flush_last_use_locked()
            self._release_lock()
            self._disk_state = DiskState.OFF
            self._disk_reason = "cache closed"

    # -- lookups --------------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """Whether either tier holds the key (the disk entry is not verified; no counters)."""
        _check_key(key)
        with self._lock:
            return key in self._ram or key in self._index

    def get(self, key: str) -> CacheEntry | None:
        """The entry, from RAM or (verified) from disk; None on a miss."""
        _check_key(key)
        touch = False
        with self._lock:
            entry = self._ram.get(key)
            record = self._index.get(key)
            if entry is not None:
                self._ram.move_to_end(key)
                self._counts["ram_hits"] += 1
                if record is not None:
                    self._index.move_to_end(key)
                    touch = self._due_for_touch(record)
            else:
                self._counts["ram_misses"] += 1
                if record is None:
                    if self._disk_state is not DiskState.OFF:
                        self._counts["disk_misses"] += 1
                    return None
        if entry is not None:
            if touch:
                self._touch(key)
            return entry
        assert record is not None
        entry = self._read_disk(key, record)
        with self._lock:
            if entry is None:
                self._counts["disk_misses"] += 1
                return None
            self._counts["disk_hits"] += 1
            if self._index.get(key) is record:
                self._index.move_to_end(key)
                touch = self._due_for_touch(record, interval_s=0.0)
            self._ram_insert(key, entry)
        if touch:
            self._touch(key)
        return entry

    def _due_for_touch(self, record: _DiskRecord, interval_s: float = _TOUCH_INTERVAL_S) -> bool:
        """Whether to set the file's mtime now (lock held); else remember it is stale."""
        now = time.monotonic()
        if self._disk_state is not DiskState.OK or now - record.touched_s < interval_s:
            record.stale_mtime = True
            return False
        record.touched_s = now
        record.stale_mtime = False
        return True

    def _stamp_locked(self) -> int:
        """A strictly increasing last-use time in ns, for file mtimes.

        File times come from the kernel's coarse clock, so two uses a millisecond apart can
        get the same mtime and the LRU order would be lost at the next start; explicit stamps
        keep it exact.
        """
        self._last_stamp_ns = max(time.time_ns(), self._last_stamp_ns + 1)
        return self._last_stamp_ns

    def _flush_last_use_locked(self) -> None:
        """Give entries used since their last touch increasing mtimes, in LRU order."""
        if self._disk_state is not DiskState.OK:
            return
        renewing = False
        for key, record in self._index.items():
            # Everything after the first stale entry is renewed, so the order stays exact.
            renewing = renewing or record.stale_mtime
            if renewing:
                stamp = self._stamp_locked()
                try:
                    os.utime(self._path(key), ns=(stamp, stamp))
                except OSError as exc:
                    _LOGGER.debug("event=cache-touch-failed key=%s error=%r", key, exc)
                record.stale_mtime = False

    def _touch(self, key: str) -> None:
        with self._lock:
            stamp = self._stamp_locked()
        try:
            os.utime(self._path(key), ns=(stamp, stamp))
        except OSError as exc:
            _LOGGER.debug("event=cache-touch-failed key=%s error=%r", key, exc)

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{key}{ENTRY_SUFFIX}"

    def _read_disk(self, key: str, record: _DiskRecord) -> CacheEntry | None:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
                st = os.fstat(fh.fileno())
        except FileNotFoundError:  # evicted or cleared since the lookup
            self._forget(key, record)
            return None
        except OSError as exc:
            _LOGGER.warning("event=cache-read-error key=%s error=%r", key, exc)
            self._forget(key, record)
            return None
        try:
            return decode_entry(key, data)
        except CorruptCacheEntry as exc:
            self._discard(key, path, exc.reason, (st.st_dev, st.st_ino), record)
            return None

    def _forget(self, key: str, record: _DiskRecord) -> None:
        with self._lock:
            if self._index.get(key) is record:
                del self._index[key]
                self._disk_bytes -= record.cost_bytes

    def _discard(
        self,
        key: str,
        path: Path,
        reason: str,
        inode: tuple[int, int] | None,
        record: _DiskRecord | None = None,
    ) -> None:
        """Log a corrupt entry, drop it from the index and delete its file (if still that file)."""
        _LOGGER.warning("event=cache-corrupt key=%s reason=%r path=%s", key, reason, path)
        with self._lock:
            self._corrupt += 1
            if record is not None and self._index.get(key) is record:
                del self._index[key]
                self._disk_bytes -= record.cost_bytes
            if self._disk_state is not DiskState.OK:
                return
            try:
                # A concurrent rewrite may have renamed a good file over the bad one.
                st = path.lstat()
                if inode is None or (st.st_dev, st.st_ino) == inode:
                    path.unlink()
            except OSError:
                pass

    # -- storing --------------------------------------------------------------------------------
    def put(self, key: str, entry: CacheEntry) -> None:
        """Store an entry in both tiers (the disk write is synchronous: fsync included)."""
        _check_key(key)
        with self._lock:
            generation = self._generation
            self._ram_insert(key, entry)
        self._write_disk(key, entry, generation)

    def _ram_insert(self, key: str, entry: CacheEntry) -> None:
        old = self._ram.pop(key, None)
        if old is not None:
            self._ram_bytes -= old.size_bytes
        if entry.size_bytes > self._ram_budget:
            return
        self._ram[key] = entry
        self._ram_bytes += entry.size_bytes
        while self._ram_bytes > self._ram_budget:
            _, evicted = self._ram.popitem(last=False)
            self._ram_bytes -= evicted.size_bytes

    def _writable(self) -> bool:
        if self._disk_state is DiskState.OK:
            return True
        if self._disk_state is DiskState.READ_ONLY and self._retry_at_s is not None:
            return time.monotonic() >= self._retry_at_s
        return False

    def _evict_disk_locked(self, needed_bytes: int) -> list[str] | None:
        """Delete LRU entries until `needed_bytes` more fit; None if they cannot be made to fit."""
        doomed: list[str] = []
        budget = self._disk_budget
        while self._index and self._disk_bytes + self._reserved_bytes + needed_bytes > budget:
            key, record = self._index.popitem(last=False)
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                # Still on disk, so still counted: put it back as the next candidate.
                self._index[key] = record
                self._index.move_to_end(key, last=False)
                _LOGGER.warning("event=cache-evict-failed key=%s error=%r", key, exc)
                return None
            self._disk_bytes -= record.cost_bytes
            doomed.append(key)
        if self._disk_bytes + self._reserved_bytes + needed_bytes > budget:
            return None
        if doomed:
            _LOGGER.debug("event=cache-evict tier=disk entries=%d", len(doomed))
        return doomed

    def _write_disk(self, key: str, entry: CacheEntry, generation: int) -> None:
        with self._lock:
            if not self._writable() or generation != self._generation:
                return
        try:
            data = encode_entry(key, entry)
        except (ValueError, TypeError) as exc:  # e.g. metadata too large: RAM only, no crash
            _LOGGER.warning("event=cache-skip key=%s reason=%r", key, str(exc))
            return
        cost = _disk_cost(len(data))
        if cost > self._disk_budget:
            _LOGGER.info(
                "event=cache-skip key=%s reason=larger-than-disk-budget size_bytes=%d",
                key,
                cost,
            )
            return
        with self._lock:
            if generation != self._generation or self._evict_disk_locked(cost) is None:
                return
            self._reserved_bytes += cost
        final = self._path(key)
        temp = final.with_name(f".{key}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        reserved = True
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            with self._lock:
                # Renamed under the lock so that the index always describes the file in place;
                # the reservation is released only once its file is gone or indexed.
                if generation != self._generation:  # cleared while we wrote
                    temp.unlink(missing_ok=True)
                    self._reserved_bytes -= cost
                    reserved = False
                    return
                os.replace(temp, final)
                self._reserved_bytes -= cost
                reserved = False
                old = self._index.pop(key, None)
                if old is not None:
                    self._disk_bytes -= old.cost_bytes
                self._index[key] = _DiskRecord(cost, entry.voice_id, time.monotonic())
                self._disk_bytes += cost
                # Stamped in index order, so a restart rebuilds the same LRU order.
                stamp = self._stamp_locked()
                try:
                    os.utime(final, ns=(stamp, stamp))
                except OSError as exc:
                    _LOGGER.debug("event=cache-touch-failed key=%s error=%r", key, exc)
                recovered = self._disk_state is not DiskState.OK
                if recovered:
                    self._disk_state, self._disk_reason, self._retry_at_s = DiskState.OK, None, None
            if recovered:
                _LOGGER.info("event=cache-recovered tier=disk dir=%s", self._dir)
                self._notify_fault(None, None)
            self._fsync_dir()
        except OSError as exc:
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass
            if reserved:
                with self._lock:
                    self._reserved_bytes -= cost
            self._degrade(exc)

    def _fsync_dir(self) -> None:
        assert self._dir is not None
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _degrade(self, exc: OSError) -> None:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason, code = f"cache dir is read-only: {exc.strerror}", CACHE_READ_ONLY
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason, code = f"cache dir is full: {exc.strerror}", CACHE_FULL
        else:
            reason, code = f"cache write failed: {exc.strerror or exc}", CACHE_WRITE_FAILED
        with self._lock:
            first = self._disk_state is DiskState.OK
            self._disk_state = DiskState.READ_ONLY
            self._disk_reason = reason
            self._retry_at_s = time.monotonic() + self._write_retry_s
        if first:
            _LOGGER.warning(
                "event=cache-degraded tier=disk state=read-only dir=%s reason=%r retry_s=%g",
                self._dir,
                reason,
                self._write_retry_s,
            )
        self._notify_fault(code, f"{reason} ({self._dir})")

    def _notify_fault(self, code: str | None, reason: str | None) -> None:
        """Tell `on_disk_fault` about a change of the disk tier's fault (not a repeat of it)."""
        with self._fault_lock:
            if self._fault == (code, reason):
                return
            self._fault = (code, reason)
            if self._on_disk_fault is not None:
                self._on_disk_fault(code, reason)

    # -- clearing -------------------------------------------------------------------------------
    def clear(self, voice_id: str | None = None) -> int:
        """Remove every entry (or every entry of one voice) from both tiers; returns how many.

        Phrases being synthesized right now still reach their listeners but are not stored.
        """
        removed: set[str] = set()
        with self._lock:
            self._generation += 1
            for key in [k for k, e in self._ram.items() if voice_id in (None, e.voice_id)]:
                self._ram_bytes -= self._ram.pop(key).size_bytes
                removed.add(key)
            for key in [k for k, r in self._index.items() if voice_id in (None, r.voice_id)]:
                if self._disk_state is not DiskState.OFF:
                    try:
                        self._path(key).unlink()
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        _LOGGER.warning("event=cache-clear-failed key=%s error=%r", key, exc)
                        continue
                self._disk_bytes -= self._index.pop(key).cost_bytes
                removed.add(key)
        _LOGGER.info("event=cache-clear voice=%s entries=%d", voice_id, len(removed))
        return len(removed)

    # -- single flight --------------------------------------------------------------------------
    def get_or_create(
        self, key: str, producer: Callable[[], CacheEntry], *, refresh: bool = False
    ) -> CacheEntry:
        """The cached entry, or the one `producer` makes (stored in both tiers).

        Threads asking for the same missing key at once run `producer` once: the first runs it
        (in its own, calling thread), the others wait and get its entry. If the producer raises, waiters
        get the same exception, except `Cancelled` (the first requester was stopped): then one
        of the waiters runs its own producer. `refresh` skips the lookup and replaces the entry.
        """
        _check_key(key)
        while True:
            if not refresh:
                entry = self.get(key)
                if entry is not None:
                    return entry
            joined = self._join(key, streaming=False, refresh=refresh)
            if joined.entry is not None:
                return joined.entry
            if joined.kind is _JoinKind.CLOSING:
                return producer()
            flight = joined.flight
            if flight is None:
                continue  # landed on disk between our lookup and now: look again
            if joined.kind is _JoinKind.LEAD:
                try:
                    entry = producer()
                except BaseException as exc:  # even KeyboardInterrupt: never leave waiters hanging
                    self._fail(flight, exc)
                    raise
                self._finish(flight, entry)
                return entry
            try:
                outcome = self._wait_entry(flight)
            finally:
                self._leave(flight)
            if isinstance(outcome, CacheEntry):
                return outcome

    def stream(
        self,
        key: str,
        voice_id: str,
        produce: Callable[[CancelToken], Iterable[AudioChunk]],
        cancel: CancelToken | None = None,
        *,
        mode: CacheMode = "auto",
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Generator[AudioChunk, None, None]:
        """Audio for `key` as chunks: replayed on a hit, else synthesized once and stored.

        `produce(token)` makes the phrase's audio (e.g. `voice.stream(text, params, token)`);
        it runs in the flight's own thread with the flight's token, which is cancelled when no
        listener is left. `cancel` is this listener's token (its job): checked between chunks
        and while waiting, it raises `Cancelled` and detaches this listener only. A producer
        error reaches every listener. `mode` is the request's `cache` field.
        """
        _check_key(key)
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {CACHE_MODES}, got {mode!r}")
        if mode == "off":
            yield from produce(cancel if cancel is not None else CancelToken())
            return
        meta = dict(metadata or {})
        while True:
            if mode == "auto":
                entry = self.get(key)
                if entry is not None:
                    yield from self._replay(entry, cancel)
                    return
            joined = self._join(key, streaming=True, refresh=mode == "refresh")
            if joined.entry is not None:
                yield from self._replay(joined.entry, cancel)
                return
            if joined.kind is _JoinKind.CLOSING:
                yield from produce(cancel if cancel is not None else CancelToken())
                return
            flight = joined.flight
            if flight is None:
                continue  # landed on disk between our lookup and now: look again
            if joined.kind is _JoinKind.LEAD:
                flight.thread = threading.Thread(
                    target=self._run_flight,
                    args=(flight, produce, voice_id, meta),
                    name=f"utterd-cache-{key[:8]}",
                    daemon=True,
                )
                flight.thread.start()
            try:
                outcome = yield from self._follow(flight, cancel)
            finally:
                self._leave(flight)
            if outcome is not _RETRY:
                return

    def _replay(self, entry: CacheEntry, cancel: CancelToken | None) -> Iterator[AudioChunk]:
        for chunk in entry.chunks(self._hit_chunk_samples):
            if cancel is not None:
                cancel.raise_if_cancelled()
            yield chunk

    def _join(self, key: str, *, streaming: bool, refresh: bool) -> _Joined:
        """Under the lock: a RAM hit, a flight to lead or follow, or why neither."""
        with self._lock:
            if self._closing:
                return _Joined(_JoinKind.CLOSING)
            flight = self._flights.get(key)
            if flight is None:
                if not refresh:
                    entry = self._ram.get(key)
                    if entry is not None:
                        self._ram.move_to_end(key)
                        return _Joined(_JoinKind.HIT, entry=entry)
                    if key in self._index:
                        return _Joined(_JoinKind.LOOK_AGAIN)
                flight = _Flight(key, streaming, self._generation)
                self._flights[key] = flight
                flight.subscribers = 1
                return _Joined(_JoinKind.LEAD, flight=flight)
            flight.subscribers += 1
            return _Joined(_JoinKind.FOLLOW, flight=flight)

    def _leave(self, flight: _Flight) -> None:
        with self._lock:
            flight.subscribers -= 1
            abandon = (
                flight.streaming
                and flight.subscribers == 0
                and flight.state is _FlightState.RUNNING
            )
            if abandon:
                # Removed now, under the lock, so no newcomer can join a cancelled flight.
                self._unlist_locked(flight)
        if abandon:
            flight.token.cancel("no listener left")

    def _follow(
        self, flight: _Flight, cancel: CancelToken | None
    ) -> Generator[AudioChunk, None, _Retry | None]:
        """Yield the flight's chunks from the first; returns _RETRY if it gave up unheard."""
        index = 0
        while True:
            with flight.cond:
                while index >= len(flight.chunks) and flight.state is _FlightState.RUNNING:
                    if cancel is not None and cancel.cancelled:
                        break
                    flight.cond.wait(_WAIT_SLICE_S)
                ready = flight.chunks[index:]
                state, entry, error = flight.state, flight.entry, flight.error
            for chunk in ready:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                yield chunk
                index += 1
            if cancel is not None:
                cancel.raise_if_cancelled()
            if ready:
                continue
            if state is _FlightState.DONE:
                if not flight.streaming:
                    if entry is None:
                        return _RETRY
                    yield from self._replay(entry, cancel)
                return None
            if state is _FlightState.FAILED:
                assert error is not None
                if isinstance(error, Cancelled) and index == 0:
                    return _RETRY
                raise error

    def _wait_entry(self, flight: _Flight) -> CacheEntry | _Retry:
        with flight.cond:
            while flight.state is _FlightState.RUNNING:
                flight.cond.wait()
            state, entry, error = flight.state, flight.entry, flight.error
        if state is _FlightState.DONE:
            return entry if entry is not None else _RETRY
        assert error is not None
        if isinstance(error, Cancelled):
            return _RETRY
        raise error

    def _run_flight(
        self,
        flight: _Flight,
        produce: Callable[[CancelToken], Iterable[AudioChunk]],
        voice_id: str,
        metadata: Mapping[str, MetaValue],
    ) -> None:
        started = time.perf_counter()
        tee = _Tee(limit_bytes=max(self._ram_budget, self._disk_budget))
        try:
            for chunk in produce(flight.token):
                tee.add(chunk)
                with flight.cond:
                    flight.chunks.append(chunk)
                    flight.cond.notify_all()
            # A producer that stopped early without raising must not leave a truncated entry.
            flight.token.raise_if_cancelled()
        except Exception as exc:  # noqa: BLE001  # handed to every listener, and logged
            self._fail(flight, exc)
            return
        if tee.abandoned is not None:
            _LOGGER.info("event=cache-skip key=%s reason=%r", flight.key, tee.abandoned)
        entry = tee.entry(voice_id, metadata)
        _LOGGER.debug(
            "event=cache-flight-done key=%s synth_ms=%.1f stored=%s",
            flight.key,
            (time.perf_counter() - started) * 1e3,
            entry is not None,
        )
        self._finish(flight, entry)

    def _unlist_locked(self, flight: _Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
            if not self._flights:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no phrase is being synthesized or written; False on timeout.

        `stream()` returns to its listener before the entry reaches the disk; tests, `cache warm`
        and shutdown use this to know the writes have landed.
        """
        with self._idle:
            return self._idle.wait_for(lambda: not self._flights, timeout_s)

    def _fail(self, flight: _Flight, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            _LOGGER.debug("event=cache-flight-abandoned key=%s reason=%r", flight.key, exc.message)
        else:
            _LOGGER.warning("event=cache-flight-failed key=%s error=%r", flight.key, exc)
        with self._lock:
            self._unlist_locked(flight)
        with flight.cond:
            flight.state = _FlightState.FAILED
            flight.error = exc
            flight.cond.notify_all()

    def _finish(self, flight: _Flight, entry: CacheEntry | None) -> None:
        """RAM first and listeners released, then the (slower) disk write, then unlisted."""
        with self._lock:
            store = entry is not None and flight.generation == self._generation
            if store:
                assert entry is not None
                self._ram_insert(flight.key, entry)
        with flight.cond:
            flight.state = _FlightState.DONE
            flight.entry = entry
            flight.cond.notify_all()
        try:
            if store:
                assert entry is not None
                self._write_disk(flight.key, entry, flight.generation)
        finally:
            with self._lock:
                self._unlist_locked(flight)

    # -- stats ----------------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        with self._lock:
            counts = dict(self._counts)
            return CacheStats(
                ram=TierStats(
                    len(self._ram),
                    self._ram_bytes,
                    self._ram_budget,
                    counts["ram_hits"],
                    counts["ram_misses"],
                ),
                disk=TierStats(
                    len(self._index),
                    self._disk_bytes + self._reserved_bytes,
                    self._disk_budget if self._disk_state is not DiskState.OFF else 0,
                    counts["disk_hits"],
                    counts["disk_misses"],
                ),
                disk_state=self._disk_state,
                disk_reason=self._disk_reason,
                in_flight=len(self._flights),
                corrupt_discarded=self._corrupt,
            )

    @property
    def disk_state(self) -> DiskState:
        """The status flag: ok, read-only or off (see `stats().disk_reason` for why)."""
        with self._lock:
            return self._disk_state
