"""hibari's G2P tables (lexicons, tagger) packed into one file that is mapped, not parsed.

hibari's G2P reads five JSON tables at construction: the gold and silver lexicons of the voice's
accent (about 180,000 words), and the part-of-speech tagger's word tags, vocabulary and feature
weights (80,000 features, 290,000 weights). As Python dicts they held 101 MiB of a daemon whose
budget on a 512 MB board is 120 MiB, and parsing them took 0.3 s of every start (bench_memory.py,
docs/benchmarks.md "Memory and ready time").

Here each table is a sorted run of UTF-8 keys with their values, looked up by binary search; the
five live in one file in the model store's `optimized/` folder, written at the first load from
hibari's own JSON and mapped read-only (mmap) at every later one. Only the pages a lookup
touches are read in, and they are file pages the kernel may drop under pressure. A lookup
bisects every 64th key, held in memory, then compares at most 6 mapped keys: a few
microseconds, a sentence needs a few hundred, and the G2P took 0.45 ms more per sentence than
on dicts. If the folder cannot be written, the packed tables are kept in memory instead (still
compact, but packed again at every start: 0.6 s).

The answers are those of hibari's dicts exactly: the same values, the tagger's weights as the
same floats (tests/unit/test_hibari_g2p_tables.py compares every entry and whole texts).
File layout (native byte order, recorded in the header; a file from another layout or another
hibari release has another name and is rebuilt):

    b"UTDG2P02" | u32 length of the JSON directory | JSON directory | tables (the directory
    gives each one's offset from the directory's end)...
    table: u32 count | u32 key_offsets[count + 1] | u32 value_offsets[count + 1] | keys | values
           | u32 sparse count | u32 sparse offsets[sparse count + 1] | every 64th key
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gzip
import hashlib
import json
import logging
import mmap
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

MAGIC: Final = b"UTDG2P02"
_U32: Final = struct.Struct("=I")
_WEIGHT: Final = struct.Struct("=Bd")
"""One tagger weight: the tag's index in the tag list, the weight as the JSON's float."""

_LEXICON_STR: Final = b"s"
_LEXICON_JSON: Final = b"j"
"""Lexicon values: a phoneme string, or (a part-of-speech → phonemes map) as JSON."""

SPARSE_STEP: Final = 64
"""One key in this many is kept in memory to start each search near its key (see PackedTable)."""

WEIGHTS_CACHED: Final = 1024
"""Decoded tagger features kept (least recently used dropped; 3.7 tags per feature on average,
so well under 1 MiB): the features every word has (bias, position, previous tags) are then
found without a search."""

TABLE_NAMES: Final = ("gold", "silver", "tagdict", "vocab", "weights")


class PackedTable:
    """Sorted UTF-8 keys → bytes values inside a buffer; `raw(key)` finds a key's value."""

    def __init__(self, buffer: Any, offset: int) -> None:
        """`buffer`: bytes or an mmap holding the table at `offset`."""
        count: int = _U32.unpack_from(buffer, offset)[0]
        self._count = count
        self._buffer = buffer
        start = offset + _U32.size
        step = (count + 1) * _U32.size
        view = memoryview(buffer)
        self._key_offsets = view[start : start + step].cast("I")
        self._value_offsets = view[start + step : start + 2 * step].cast("I")
        self._keys_at = start + 2 * step
        self._values_at = self._keys_at + self._key_offsets[count]
        # Every SPARSE_STEP-th key, in memory: `bisect` (in C) finds the stretch, and the
        # search in the mapped keys is only that stretch's (6 comparisons, not 17). The file
        # keeps them together after the values, so reading them touches a few pages only.
        sparse_at = self._values_at + self._value_offsets[count]
        (sparse_count,) = _U32.unpack_from(buffer, sparse_at)
        bounds = struct.unpack_from(f"={sparse_count + 1}I", buffer, sparse_at + _U32.size)
        blob = sparse_at + (sparse_count + 2) * _U32.size
        self._sparse = [
            bytes(buffer[blob + bounds[i] : blob + bounds[i + 1]]) for i in range(sparse_count)
        ]

    def __len__(self) -> int:
        return self._count

    def raw(self, key: str) -> bytes | None:
        """The value stored for `key`, or None."""
        try:
            wanted = key.encode()
        except UnicodeEncodeError:  # a lone surrogate: no table key has one
            return None
        offsets, buffer, base = self._key_offsets, self._buffer, self._keys_at
        stretch = bisect.bisect_right(self._sparse, wanted) - 1
        if stretch < 0:
            return None
        lo = stretch * SPARSE_STEP
        hi = min(lo + SPARSE_STEP, self._count)
        while lo < hi:
            mid = (lo + hi) >> 1
            if buffer[base + offsets[mid] : base + offsets[mid + 1]] < wanted:
                lo = mid + 1
            else:
                hi = mid
        if lo == self._count or buffer[base + offsets[lo] : base + offsets[lo + 1]] != wanted:
            return None
        values = self._value_offsets
        return bytes(buffer[self._values_at + values[lo] : self._values_at + values[lo + 1]])

    def release(self) -> None:
        """Drop the views into the buffer (an mmap can only be closed without them)."""
        self._key_offsets.release()
        self._value_offsets.release()


class WordTable:
    """A lexicon (word → phonemes, or a part-of-speech → phonemes map) or word → tag table, with
    the `get` and `in` that hibari's code uses on its dicts."""

    def __init__(self, table: PackedTable, *, lexicon: bool) -> None:
        self._table = table
        self._lexicon = lexicon

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._table.raw(key)
        if raw is None:
            return default
        if not self._lexicon:
            return raw.decode()
        if raw[:1] == _LEXICON_STR:
            return raw[1:].decode()
        return json.loads(raw[1:])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._table.raw(key) is not None

    def __len__(self) -> int:
        return len(self._table)


class TagWeights:
    """The tagger's feature → {tag: weight} table, with the `get` its `predict` uses."""

    def __init__(self, table: PackedTable, tags: list[str]) -> None:
        self._table = table
        self._tags = tags
        # The context features ("b", "i+", "t-1=NN", ...) come with every word; kept decoded.
        self._decoded = functools.lru_cache(maxsize=WEIGHTS_CACHED)(self._decode)

    def get(self, feature: str, default: Any = None) -> dict[str, float] | Any:
        """The feature's weights (a shared dict: read it, do not change it), or `default`."""
        weights = self._decoded(feature)
        return default if weights is None else weights

    def _decode(self, feature: str) -> dict[str, float] | None:
        raw = self._table.raw(feature)
        if raw is None:
            return None
        tags = self._tags
        return {tags[index]: weight for index, weight in _WEIGHT.iter_unpack(raw)}

    def __len__(self) -> int:
        return len(self._table)


class G2pTables:
    """The five tables of one accent, over one buffer (a mapped file, or bytes)."""

    def __init__(self, buffer: Any, *, path: Path | None = None) -> None:
        """`buffer` holds a whole packed file (see the module doc); `path`: where it was mapped
        from (None: built in memory)."""
        if bytes(buffer[: len(MAGIC)]) != MAGIC:
            raise ValueError("not a packed G2P table file")
        (length,) = _U32.unpack_from(buffer, len(MAGIC))
        start = len(MAGIC) + _U32.size
        directory = json.loads(bytes(buffer[start : start + length]))
        if directory.get("byteorder") != sys.byteorder:
            raise ValueError("packed for another byte order")
        self.path = path
        self.source_key: str = directory["source_key"]
        """What the tables were packed from (see `source_key`)."""
        self.tags: list[str] = list(directory["tags"])
        """The tagger's tags, in its order (its `tags` list)."""
        self._buffer = buffer
        at = start + length  # table offsets count from the end of the directory
        self._tables = {
            name: PackedTable(buffer, at + directory["tables"][name]) for name in TABLE_NAMES
        }
        self.gold = WordTable(self._tables["gold"], lexicon=True)
        self.silver = WordTable(self._tables["silver"], lexicon=True)
        self.tagdict = WordTable(self._tables["tagdict"], lexicon=False)
        self.vocab = WordTable(self._tables["vocab"], lexicon=False)
        self.weights = TagWeights(self._tables["weights"], self.tags)

    def drop_pages(self) -> None:
        """Unmap the pages lookups made resident (the voice does it after each sentence).

        They stay in the page cache, so the next lookups map them again without reading the
        disk; meanwhile they are no part of the daemon's RSS. A sentence's lookups touch up to
        a few MiB of the file (the tagger's features spread over all of it): held, the tables'
        resident pages grew from 2.4 to 6 MiB over the held-out text (bench_memory.py)."""
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Unmap the file (the tables must not be used after)."""
        for table in self._tables.values():
            table.release()
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()


def _pack_table(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """One table from (key, value) pairs (keys unique)."""
    pairs = sorted(items)
    key_offsets, value_offsets = [0], [0]
    for key, value in pairs:
        key_offsets.append(key_offsets[-1] + len(key))
        value_offsets.append(value_offsets[-1] + len(value))
    sparse = [key for key, _ in pairs[::SPARSE_STEP]]
    sparse_offsets = [0]
    for key in sparse:
        sparse_offsets.append(sparse_offsets[-1] + len(key))
    return b"".join(
        (
            _U32.pack(len(pairs)),
            struct.pack(f"={len(key_offsets)}I", *key_offsets),
            struct.pack(f"={len(value_offsets)}I", *value_offsets),
            *(key for key, _ in pairs),
            *(value for _, value in pairs),
            _U32.pack(len(sparse)),
            struct.pack(f"={len(sparse_offsets)}I", *sparse_offsets),
            *sparse,
        )
    )


def _lexicon_value(value: object) -> bytes:
    if isinstance(value, str):
        return _LEXICON_STR + value.encode()
    return _LEXICON_JSON + json.dumps(value, ensure_ascii=False).encode()


def pack(
    gold: Mapping[str, object],
    silver: Mapping[str, object],
    tagger: Mapping[str, Any],
    source_key: str,
) -> bytes:
    """hibari's tables (as its JSON files hold them) → one packed file's bytes."""
    tags: list[str] = list(tagger["tags"])
    tag_index = {tag: index for index, tag in enumerate(tags)}
    if len(tags) > 256:
        raise ValueError(f"the tagger has {len(tags)} tags; at most 256 can be packed")
    tables = {
        "gold": _pack_table((k.encode(), _lexicon_value(v)) for k, v in gold.items()),
        "silver": _pack_table((k.encode(), _lexicon_value(v)) for k, v in silver.items()),
        "tagdict": _pack_table((k.encode(), v.encode()) for k, v in tagger["tagdict"].items()),
        "vocab": _pack_table((w.encode(), b"") for w in set(tagger.get("vocab", ()))),
        "weights": _pack_table(
            (
                feature.encode(),
                b"".join(_WEIGHT.pack(tag_index[t], w) for t, w in weights.items()),
            )
            for feature, weights in tagger["weights"].items()
        ),
    }
    offsets, at = {}, 0
    for name in TABLE_NAMES:
        offsets[name] = at
        at += len(tables[name])
    directory = json.dumps(
        {"source_key": source_key, "byteorder": sys.byteorder, "tags": tags, "tables": offsets}
    ).encode()
    return b"".join(
        (MAGIC, _U32.pack(len(directory)), directory, *(tables[name] for name in TABLE_NAMES))
    )


def source_key(files: Iterable[Path], version: str) -> str:
    """A short digest of the JSON files (name, size, change time) and hibari's version: a
    packed file made from other sources has another name."""
    digest = hashlib.sha256(f"{version}|{MAGIC.decode()}|{sys.byteorder}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_tables(
    folder: Path | None,
    stem: str,
    sources: list[Path],
    version: str,
    read_sources: Callable[
        [], tuple[Mapping[str, object], Mapping[str, object], Mapping[str, Any]]
    ],
) -> G2pTables:
    """The packed tables named `stem` for `sources`: mapped from `folder` when a file packed
    from these sources is there, else packed now with `read_sources()` (gold, silver, tagger)
    and written there for the next start (kept in memory if `folder` is None or not writable).
    """
    key = source_key(sources, version)
    path = folder / f"{stem}-{key}.tables" if folder is not None else None
    if path is not None and path.is_file():
        try:
            return _mapped(path, key)
        except (OSError, ValueError, KeyError) as err:
            _LOGGER.warning(
                "event=g2p-tables-unreadable path=%s reason=%r (packed again)", path, err
            )
    gold, silver, tagger = read_sources()
    packed = pack(gold, silver, tagger, key)
    if path is not None:
        try:
            _write(path, packed, stale=f"{stem}-*.tables")
            _LOGGER.info("event=g2p-tables-packed path=%s size_bytes=%d", path, len(packed))
            return _mapped(path, key)
        except OSError as err:
            _LOGGER.warning("event=g2p-tables-not-written path=%s reason=%r", path, err)
    return G2pTables(packed)


def _mapped(path: Path, key: str) -> G2pTables:
    with path.open("rb") as file:
        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    # Lookups jump about: no read-ahead, so only the pages a search touches become resident.
    buffer.madvise(mmap.MADV_RANDOM)
    try:
        tables = G2pTables(buffer, path=path)
    except BaseException:
        buffer.close()
        raise
    if tables.source_key != key:
        tables.close()
        raise ValueError(f"packed from other sources ({tables.source_key}, not {key})")
    return tables


def _write(path: Path, packed: bytes, stale: str) -> None:
    """Write `packed` to `path` atomically; remove older files of the same tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(stale):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(packed)
            file.flush()
            os.fsync(file.fileno())
            # Out of the page cache: written in one piece it sits there in large folios, and
            # mapping it would make the whole file resident at the first lookups; read back
            # page by page, only what searches touch is.
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def read_json(path: Path) -> Any:
    """One of hibari's JSON assets (gzip-compressed when its name ends in .gz)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as file:
            return json.load(file)
    with path.open(encoding="utf-8") as file:
        return json.load(file)


def packed_g2p(
    oov: Callable[[str], Any], *, british: bool, folder: Path | None
) -> tuple[Any, G2pTables]:
    """hibari's `G2P` for the accent, its tables packed (`load_tables` in `folder`): the same
    pipeline and answers as `hibari.g2p.G2P(oov=oov, british=british)`; and the tables (for
    `G2pTables.drop_pages`).

    `G2P.__init__` would parse the JSON tables into dicts; the instance is built without it and
    given the attributes it sets (checked against hibari 0.2.1; the test compares whole texts
    with hibari's own G2P, so a release that changes them fails there).
    """
    import hibari.g2p
    from hibari.g2p.lexicon import Lexicon
    from hibari.g2p.tagger import Tagger
    from hibari.g2p.tokenize import Tokenizer

    # The packed tables depend on hibari's lexicons, i.e. its version, not on how utterd
    # synthesizes (front_end_version's revision): a new revision must not repack them.
    from utterd.models.hibari.family import hibari_version

    assets = Path(hibari.g2p.ASSETS)
    accent = "gb" if british else "us"
    sources = [
        assets / f"lexicon_{accent}_gold.json.gz",
        assets / f"lexicon_{accent}_silver.json.gz",
        assets / "tagger.json.gz",
    ]

    def read_sources() -> tuple[Mapping[str, object], Mapping[str, object], Mapping[str, Any]]:
        return read_json(sources[0]), read_json(sources[1]), read_json(sources[2])

    tables = load_tables(folder, f"hibari-g2p-{accent}", sources, hibari_version(), read_sources)
    tagger = Tagger.__new__(Tagger)
    tagger.tagdict = tables.tagdict
    tagger.tags = tables.tags
    tagger.vocab = tables.vocab
    tagger.weights = tables.weights
    g2p = hibari.g2p.G2P.__new__(hibari.g2p.G2P)
    g2p.lexicon = Lexicon(tables.gold, tables.silver, british)
    g2p.tokenizer = Tokenizer(read_json(assets / "tokenizer_exceptions.json"))
    g2p.tagger = tagger
    g2p._oov = oov
    g2p.unk = ""
    g2p.british = british
    return g2p, tables
