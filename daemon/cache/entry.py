"""One cached phrase, and its file on disk: encode, decode, verify.

An entry is one phrase's audio: 16-bit mono PCM, its sample rate, the sample offset where each
sentence starts, the voice id and a little metadata. Keys are `CacheKeyParts.digest()` values.

File format (one file per entry, `<key>.upc` in the cache folder; integers little-endian):

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
caught before the checksum, and the checksum is verified on every read from disk. A file that
fails either check raises `CorruptCacheEntry` naming the problem.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
from utterd.models.errors import UtterdError
from utterd.models.voice import AudioChunk, float_to_pcm16

__all__ = [
    "DEFAULT_HIT_CHUNK_SAMPLES",
    "ENTRY_SUFFIX",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "TEMP_SUFFIX",
    "CacheEntry",
    "CorruptCacheEntry",
    "EntryBuilder",
    "MetaValue",
    "check_key",
    "decode_entry",
    "encode_entry",
    "is_key",
    "pcm16_to_float",
    "read_entry_file",
    "read_index_info",
]

MAGIC: Final = b"UTDPHRC\x00"
"""First 8 bytes of every entry file."""

FORMAT_VERSION: Final = 1
"""Entry file format version; files of another version are discarded (it is only a cache)."""

ENTRY_SUFFIX: Final = ".upc"
"""Entry files are `<64 hex key>.upc`."""

TEMP_SUFFIX: Final = ".tmp"
"""Temporary files end with this; any found when the cache opens are leftovers of a crash."""

DEFAULT_HIT_CHUNK_SAMPLES: Final = 8192
"""Largest chunk a cached entry is replayed in."""

MetaValue = str | int | float | bool | None
"""A metadata value: a JSON scalar."""

_FIXED = struct.Struct("<8sHHIQII32s")
_CHECKSUM_BYTES: Final = 32
HEADER_BYTES: Final = _FIXED.size + _CHECKSUM_BYTES
"""Bytes before the sentence offsets: the fixed fields and the checksum (96)."""

_OFFSET = struct.Struct("<Q")
_MAX_SENTENCES: Final = 1 << 20
_MAX_META_BYTES: Final = 1 << 16
_ENTRY_OVERHEAD_BYTES: Final = 512
"""Charged per RAM entry for the Python objects around the audio."""

_HEX = frozenset("0123456789abcdef")


class CorruptCacheEntry(UtterdError):
    """An entry file failed its structure or checksum check; never reaches a client (a miss)."""

    code = "cache-corrupt"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_key(text: str) -> bool:
    """Whether `text` has the shape of a cache key: 64 lowercase hex characters."""
    return len(text) == 64 and _HEX.issuperset(text)


def check_key(key: str) -> None:
    """Raise ValueError unless `key` has the shape of a cache key."""
    if not is_key(key):
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

    def chunks(self, max_chunk_samples: int = DEFAULT_HIT_CHUNK_SAMPLES) -> Iterator[AudioChunk]:
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
        """Collect synthesized chunks into an entry (the same conversion a flight uses)."""
        builder = EntryBuilder(limit_bytes=None)
        for chunk in chunks:
            builder.add(chunk)
        entry = builder.entry(voice_id, metadata or {})
        if entry is None:
            raise ValueError(f"chunks cannot be cached: {builder.abandoned}")
        return entry


class EntryBuilder:
    """Accumulates a phrase's chunks as PCM while they stream to listeners (the tee)."""

    def __init__(self, limit_bytes: int | None) -> None:
        """`limit_bytes`: past this much PCM the audio is abandoned (it could not be stored)."""
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
        """The collected entry; None when it was abandoned."""
        if self.abandoned is not None:
            return None
        return CacheEntry(
            pcm=b"".join(self._parts),
            sample_rate_hz=self._rate or 1,
            sentence_offsets=tuple(self._offsets),
            voice_id=voice_id,
            metadata=metadata,
        )


def encode_entry(key: str, entry: CacheEntry) -> bytes:
    """The bytes of an entry file (see the module docstring for the layout)."""
    check_key(key)
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
    check_key(key)
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


def read_index_info(path: Path, key: str) -> tuple[str, int]:
    """Voice id and file size from an entry's header, without reading the audio (or checksum)."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
        header = _parse_fixed(key, head)
        size = os.fstat(fh.fileno()).st_size
        if size != header.file_bytes:
            raise CorruptCacheEntry(f"length {size} bytes, header says {header.file_bytes}")
        fh.seek(HEADER_BYTES + 8 * header.sentence_count)
        voice_id, _ = _parse_meta(fh.read(header.meta_bytes))
    return voice_id, size
