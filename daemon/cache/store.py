"""The phrase cache: a RAM tier (LRU by bytes) in front of a disk tier, with single flight.

The parts live in their own modules: `entry` (an entry and its file format), `ram` and `disk`
(the tiers), `single_flight` (one synthesis per key), `stats` (what is reported). This module
composes them into `PhraseCache` and re-exports the names its importers use.

Degraded modes never fail a request (see `disk`): without a usable folder the cache is RAM
only; a read-only or full folder keeps serving what it holds. `stats()` reports the disk tier's
state and the reason.

Single flight: identical requests in flight are synthesized once. `stream()` is the playback
form: on a miss it starts synthesis in a background thread of its own ("flight") and every
requester of the key, the first one and any that arrive while it runs, streams the flight's
chunks from the beginning as they are produced, at its own pace. A follower therefore gets its
first audio as soon as the first chunk exists, not after the whole phrase; and because no
consumer drives the synthesis, a slow consumer (the player, paced by the sound card) never holds
back the entry for a fast one (a `synthesize` client). When the last listener leaves (its job was
stopped) before synthesis finished, the flight is cancelled and nothing is stored. When it
finishes, the entry goes to disk (to RAM when it is read back, see `PhraseCache._store`).
`get_or_create()` is the blocking form around a producer that returns a whole entry; it joins
the same flights.

After each sentence a flight has synthesized, the heap's free pages go back to the system once
the process has grown by a few MiB since they last did (`memory.TrimOnGrowth`): a sentence's
arrays are freed between threads that take turns on the heap, and what they leave free in its
middle stayed resident.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from utterd.daemon import memory
from utterd.daemon.cache.disk import RETRY_WRITE_S, DiskTier
from utterd.daemon.cache.entry import (
    DEFAULT_HIT_CHUNK_SAMPLES,
    ENTRY_SUFFIX,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    TEMP_SUFFIX,
    CacheEntry,
    CorruptCacheEntry,
    EntryBuilder,
    MetaValue,
    check_key,
    decode_entry,
    encode_entry,
    pcm16_to_float,
    read_entry_file,
)
from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.cache.ram import RamTier
from utterd.daemon.cache.single_flight import (
    RETRY,
    Flight,
    Flights,
    FlightState,
    follow,
    wait_entry,
)
from utterd.daemon.cache.stats import CacheStats, DiskState, TierStats
from utterd.models.errors import Cancelled
from utterd.models.voice import AudioChunk, CancelToken

__all__ = [
    "CACHE_MODES",
    "ENTRY_SUFFIX",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "TEMP_SUFFIX",
    "CacheEntry",
    "CacheMode",
    "CacheStats",
    "CorruptCacheEntry",
    "DiskState",
    "MetaValue",
    "PhraseCache",
    "TierStats",
    "decode_entry",
    "encode_entry",
    "pcm16_to_float",
    "read_entry_file",
]

_LOGGER = logging.getLogger(__name__)

CACHE_MODES: Final[tuple[CacheMode, ...]] = ("auto", "refresh", "off")


class _JoinKind(enum.Enum):
    HIT = "hit"
    LEAD = "lead"
    FOLLOW = "follow"
    LOOK_AGAIN = "look-again"
    CLOSING = "closing"


@dataclass(frozen=True)
class _Joined:
    kind: _JoinKind
    flight: Flight | None = None
    entry: CacheEntry | None = None


class PhraseCache:
    """RAM LRU in front of a disk store, with single-flight synthesis. Thread-safe.

    `cache_dir` None (or a disk budget of 0) means RAM only. Opening scans the folder: deletes
    leftover temporary files and corrupt headers, rebuilds the index, evicts down to the budget.
    One lock guards both tiers, the flights and the clear generation, so a lookup sees them in
    one consistent state; file I/O happens outside it.
    """

    def __init__(
        self,
        cache_dir: Path | None,
        ram_budget_bytes: int,
        disk_budget_bytes: int,
        *,
        hit_chunk_samples: int = DEFAULT_HIT_CHUNK_SAMPLES,
        write_retry_s: float = RETRY_WRITE_S,
        on_disk_fault: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        """`on_disk_fault(code, reason)` is told when the disk tier degrades for a fault and
        `(None, None)` when it recovers; it is called without the cache's lock held."""
        if ram_budget_bytes < 0 or disk_budget_bytes < 0:
            raise ValueError("cache budgets must be >= 0 bytes")
        if hit_chunk_samples <= 0:
            raise ValueError("hit_chunk_samples must be positive")
        self._hit_chunk_samples = hit_chunk_samples
        self._lock = threading.Lock()
        self._ram = RamTier(ram_budget_bytes)
        self._flights = Flights(self._lock)
        self._generation = 0
        """Bumped by `clear`: an entry made under an older generation is not stored."""
        self._closing = False
        self._trimmer = memory.TrimOnGrowth()
        """Gives the heap's free pages back after a flight's sentences (module doc)."""
        self._disk = DiskTier(
            cache_dir,
            disk_budget_bytes,
            self._lock,
            write_retry_s=write_retry_s,
            on_fault=on_disk_fault,
        )

    def close(self) -> None:
        """Cancel running flights, wait briefly for them, release the folder lock."""
        with self._lock:
            self._closing = True
            flights = self._flights.all()
        for flight in flights:
            flight.token.cancel("cache closing")
        if not self.wait_idle(timeout_s=5.0):
            _LOGGER.warning("event=cache-close-timeout in_flight=%d", len(self._flights))
        with self._lock:
            self._disk.close_locked()

    # -- lookups --------------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """Whether either tier holds the key (the disk entry is not verified; no counters)."""
        check_key(key)
        with self._lock:
            return key in self._ram or key in self._disk

    def get(self, key: str) -> CacheEntry | None:
        """The entry, from RAM or (verified) from disk; None on a miss."""
        check_key(key)
        touch = False
        with self._lock:
            # A phrase just made is held by its flight until the disk has it (`_finish`): a
            # request in that window is a hit, as it was when new phrases went to RAM first.
            entry = self._ram.get(key)
            if entry is None:
                entry = self._flights.done_entry(key)
            record = self._disk.record(key)
            if entry is not None:
                self._ram.hits += 1
                if record is not None:
                    touch = self._disk.used_locked(key, record)
            else:
                self._ram.misses += 1
                if record is None:
                    if self._disk.state is not DiskState.OFF:
                        self._disk.misses += 1
                    return None
        if entry is not None:
            if touch:
                self._disk.touch(key)
            return entry
        assert record is not None
        entry = self._disk.read(key, record)
        with self._lock:
            if entry is None:
                self._disk.misses += 1
                return None
            self._disk.hits += 1
            touch = self._disk.used_locked(key, record, interval_s=0.0)
            self._ram.insert(key, entry)
        if touch:
            self._disk.touch(key)
        return entry

    # -- storing --------------------------------------------------------------------------------
    def put(self, key: str, entry: CacheEntry) -> None:
        """Store a new entry: on disk (the write is synchronous: fsync included), in RAM only
        when the disk does not take it (`_store`)."""
        check_key(key)
        with self._lock:
            generation = self._generation
        self._store(key, entry, generation)

    def _store(self, key: str, entry: CacheEntry, generation: int) -> None:
        """A new entry goes to disk; the RAM tier takes it when it is read back from there (a
        phrase asked for again), or at once when the disk does not take it (no folder, read
        only, full, larger than the disk budget).

        Every new phrase in RAM as well held the audio of everything said lately, heard again
        or not: 8 MiB for the 40 lines of bench/text/heldout_en.txt, of a daemon that peaks at
        150-190 MiB (docs/benchmarks.md, "Memory and ready time"). A phrase's first repeat now
        reads its file (page cache, checksum), later ones come from RAM."""
        if self._disk.write(key, entry, lambda: generation == self._generation):
            return
        with self._lock:
            if generation == self._generation:
                self._ram.insert(key, entry)

    # -- clearing -------------------------------------------------------------------------------
    def clear(self, voice_id: str | None = None) -> int:
        """Remove every entry (or every entry of one voice) from both tiers; returns how many.

        Phrases being synthesized right now still reach their listeners but are not stored.
        """
        with self._lock:
            self._generation += 1
            removed = {*self._ram.remove(voice_id), *self._disk.remove_locked(voice_id)}
        _LOGGER.info("event=cache-clear voice=%s entries=%d", voice_id, len(removed))
        return len(removed)

    # -- single flight --------------------------------------------------------------------------
    def get_or_create(
        self, key: str, producer: Callable[[], CacheEntry], *, refresh: bool = False
    ) -> CacheEntry:
        """The cached entry, or the one `producer` makes (stored in both tiers).

        Threads asking for the same missing key at once run `producer` once: the first runs it
        (in its own, calling thread), the others wait and get its entry. If the producer raises,
        waiters get the same exception, except `Cancelled` (the first requester was stopped):
        then one of the waiters runs its own producer. `refresh` skips the lookup and replaces
        the entry.
        """
        check_key(key)
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
                outcome = wait_entry(flight)
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
        check_key(key)
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
                outcome = yield from follow(flight, cancel, self._replay)
            finally:
                self._leave(flight)
            if outcome is not RETRY:
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
                        return _Joined(_JoinKind.HIT, entry=entry)
                    if key in self._disk:
                        return _Joined(_JoinKind.LOOK_AGAIN)
                flight = self._flights.start(key, streaming=streaming, generation=self._generation)
                return _Joined(_JoinKind.LEAD, flight=flight)
            flight.subscribers += 1
            return _Joined(_JoinKind.FOLLOW, flight=flight)

    def _leave(self, flight: Flight) -> None:
        with self._lock:
            flight.subscribers -= 1
            abandon = (
                flight.streaming and flight.subscribers == 0 and flight.state is FlightState.RUNNING
            )
            if abandon:
                # Removed now, under the lock, so no newcomer can join a cancelled flight.
                self._flights.unlist(flight)
        if abandon:
            flight.token.cancel("no listener left")

    def _run_flight(
        self,
        flight: Flight,
        produce: Callable[[CancelToken], Iterable[AudioChunk]],
        voice_id: str,
        metadata: Mapping[str, MetaValue],
    ) -> None:
        started = time.perf_counter()
        builder = EntryBuilder(limit_bytes=max(self._ram.budget_bytes, self._disk.budget_bytes))
        try:
            for chunk in produce(flight.token):
                builder.add(chunk)
                flight.add_chunk(chunk)
                if chunk.sentence_end:
                    self._trimmer.pause()
            # A producer that stopped early without raising must not leave a truncated entry.
            flight.token.raise_if_cancelled()
        except Exception as exc:  # noqa: BLE001  # handed to every listener, and logged
            self._fail(flight, exc)
            return
        if builder.abandoned is not None:
            _LOGGER.info("event=cache-skip key=%s reason=%r", flight.key, builder.abandoned)
        entry = builder.entry(voice_id, metadata)
        _LOGGER.debug(
            "event=cache-flight-done key=%s synth_ms=%.1f stored=%s",
            flight.key,
            (time.perf_counter() - started) * 1e3,
            entry is not None,
        )
        self._finish(flight, entry)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no phrase is being synthesized or written; False on timeout.

        `stream()` returns to its listener before the entry reaches the disk; tests, `cache warm`
        and shutdown use this to know the writes have landed.
        """
        return self._flights.wait_idle(timeout_s)

    def _fail(self, flight: Flight, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            _LOGGER.debug("event=cache-flight-abandoned key=%s reason=%r", flight.key, exc.message)
        else:
            _LOGGER.warning("event=cache-flight-failed key=%s error=%r", flight.key, exc)
        with self._lock:
            self._flights.unlist(flight)
        flight.fail(exc)

    def _finish(self, flight: Flight, entry: CacheEntry | None) -> None:
        """Listeners released, then the entry stored (`_store`), then unlisted: until then a
        newcomer follows the flight and gets its entry."""
        flight.finish(entry)
        try:
            if entry is not None:
                self._store(flight.key, entry, flight.generation)
        finally:
            with self._lock:
                self._flights.unlist(flight)

    # -- stats ----------------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                ram=self._ram.stats(),
                disk=self._disk.stats_locked(),
                disk_state=self._disk.state,
                disk_reason=self._disk.reason,
                in_flight=len(self._flights),
                corrupt_discarded=self._disk.corrupt,
            )

    @property
    def disk_state(self) -> DiskState:
        """The status flag: ok, read-only or off (see `stats().disk_reason` for why)."""
        with self._lock:
            return self._disk.state
