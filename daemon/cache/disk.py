"""The disk tier: one verified file per entry in a folder, least recently used evicted first.

Crash safety: an entry is written to a temporary file in the same folder (`.<key>.<rand>.tmp`),
fsynced, renamed over its final name and the folder fsynced. A `kill -9` at any moment leaves
either no entry, the old entry or the new one, never a partial one under an entry name; stray
temporary files are deleted when the tier opens. The in-memory index (voice id, size, last use
per entry) is rebuilt from the entry headers at every start, so there is no index file to break;
last use is kept in each file's mtime: set on writes and disk hits, on RAM hits at most every few
minutes (to spare flash), and brought up to date for every entry used since at `close_locked()`.

An entry that fails its checks when read is deleted, logged as one `event=cache-corrupt` line and
reported as a miss, so the caller synthesizes it again.

Budget: each file counts rounded up to 4 KiB blocks, and the tier makes room (deleting the least
recently used entries) *before* it writes, reserving the new file's size, so the folder's entry
and temporary files never exceed the budget, even with several writers at once.

Degraded modes never fail a request: no folder configured or an unusable one (cannot be
created, not a folder, locked by another utterd process) turns the tier `off`; a read-only or
full folder, or any write error, makes it `read-only`: existing entries are still served, new
ones are not written, and a write is tried again after `write_retry_s`; the first write that
succeeds makes it `ok` again. The reason is logged once as `event=cache-degraded`;
`on_disk_fault` is told the fault code (`cache-read-only`, `cache-full`, `cache-write-failed`,
`cache-unavailable`) when it changes and None when the tier recovers.

Locking: the tier shares the phrase cache's lock (methods ending in `_locked` expect it held;
the others take it themselves), so that one lookup sees RAM, disk index and flights together.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Final

from utterd.daemon.cache.entry import (
    ENTRY_SUFFIX,
    TEMP_SUFFIX,
    CacheEntry,
    CorruptCacheEntry,
    decode_entry,
    encode_entry,
    is_key,
    read_index_info,
)
from utterd.daemon.cache.stats import DiskState, TierStats
from utterd.daemon.faults import CACHE_FULL, CACHE_READ_ONLY, CACHE_UNAVAILABLE, CACHE_WRITE_FAILED

__all__ = ["LOCK_NAME", "DiskRecord", "DiskTier", "disk_cost"]

_LOGGER = logging.getLogger(__name__)

LOCK_NAME: Final = ".lock"
"""flock'ed by the process using the folder, so a second daemon cannot evict under the first."""

RETRY_WRITE_S: Final = 60.0
"""After a failed disk write, how long the tier stays read-only before trying again."""

TOUCH_INTERVAL_S: Final = 300.0
"""Least time between two mtime updates of one entry: LRU across restarts without wearing flash."""

_BLOCK_BYTES: Final = 4096


def disk_cost(size_bytes: int) -> int:
    """A file's charge against the disk budget: its size rounded up to whole blocks."""
    return -(-size_bytes // _BLOCK_BYTES) * _BLOCK_BYTES


class DiskRecord:
    """What the index knows of one entry file."""

    __slots__ = ("cost_bytes", "stale_mtime", "touched_s", "voice_id")

    def __init__(self, cost_bytes: int, voice_id: str, touched_s: float) -> None:
        self.cost_bytes = cost_bytes
        self.voice_id = voice_id
        self.touched_s = touched_s
        """Monotonic time the file's mtime was last set."""
        self.stale_mtime = False
        """Used since its mtime was last set (a RAM hit inside the touch interval)."""


class DiskTier:
    """The entry files of one folder and their index. Opened (scanned) on construction."""

    def __init__(
        self,
        cache_dir: Path | None,
        budget_bytes: int,
        lock: threading.Lock,
        *,
        write_retry_s: float = RETRY_WRITE_S,
        on_fault: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        """`lock` is the phrase cache's lock; `on_fault(code, reason)` is called without it."""
        self.budget_bytes = budget_bytes
        self.hits = 0
        """Lookups the tier answered."""
        self.misses = 0
        """Lookups that reached the tier and found nothing usable (a corrupt entry is a miss)."""
        self.corrupt = 0
        """Entries found corrupt and discarded since the tier opened."""
        self.state = DiskState.OFF
        """Whether the tier is in use; read and written under the lock."""
        self.reason: str | None = None
        """Why the tier is read-only or off; None when it is ok."""
        self._lock = lock
        self._dir = cache_dir
        self._index: OrderedDict[str, DiskRecord] = OrderedDict()
        self._bytes = 0
        self._reserved_bytes = 0
        self._last_stamp_ns = 0
        self._lock_fd: int | None = None
        self._retry_at_s: float | None = None
        self._write_retry_s = write_retry_s
        self._on_fault = on_fault
        self._fault: tuple[str | None, str | None] = (None, None)
        self._fault_lock = threading.Lock()  # held while telling, so changes arrive in order
        self._open()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def record(self, key: str) -> DiskRecord | None:
        """The index's record of `key` (lock held)."""
        return self._index.get(key)

    # -- opening --------------------------------------------------------------------------------
    def _open(self) -> None:
        path = self._dir
        if path is None:
            self._set_off("no cache directory configured")
            return
        if self.budget_bytes == 0:
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
        self.state = DiskState.OK
        try:
            probe = path / f".probe-{secrets.token_hex(4)}{TEMP_SUFFIX}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except OSError as exc:
            self._degrade(exc)
        self._scan(path)

    def _set_off(self, reason: str, fault_code: str | None = None) -> None:
        self.state = DiskState.OFF
        self.reason = reason
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
                if self.state is DiskState.OK:
                    item.unlink(missing_ok=True)
                    stale += 1
                continue
            key = name.removesuffix(ENTRY_SUFFIX)
            if not name.endswith(ENTRY_SUFFIX) or not is_key(key):
                continue
            try:
                st = item.lstat()
                voice_id, size = read_index_info(item, key)
            except CorruptCacheEntry as exc:
                self._discard(key, item, exc.reason, None)
                continue
            except OSError as exc:
                _LOGGER.warning("event=cache-read-error key=%s error=%r", key, exc)
                continue
            found.append((st.st_mtime_ns, key, disk_cost(size), voice_id))
        now = time.monotonic()
        self._last_stamp_ns = max((mtime for mtime, *_ in found), default=0)
        for _, key, cost, voice_id in sorted(found):
            self._index[key] = DiskRecord(cost, voice_id, now)
            self._bytes += cost
        with self._lock:
            # A budget lowered in the config since the last run is enforced at once.
            doomed = self._evict_locked(0) if self.state is DiskState.OK else []
        _LOGGER.info(
            "event=cache-open dir=%s entries=%d size_bytes=%d budget_bytes=%d evicted=%d "
            "stale_temp_files=%d disk_state=%s",
            path,
            len(self._index),
            self._bytes,
            self.budget_bytes,
            0 if doomed is None else len(doomed),
            stale,
            self.state.value,
        )

    def close_locked(self) -> None:
        """Bring last-use times up to date, release the folder lock, turn the tier off."""
        self._flush_last_use_locked()
        self._release_lock()
        self.state = DiskState.OFF
        self.reason = "cache closed"

    # -- last use -------------------------------------------------------------------------------
    def used_locked(
        self, key: str, record: DiskRecord, interval_s: float = TOUCH_INTERVAL_S
    ) -> bool:
        """Mark `key` most recently used (if `record` is still its record); True when its mtime
        should be set now (call `touch` after releasing the lock)."""
        if self._index.get(key) is not record:
            return False
        self._index.move_to_end(key)
        return self._due_for_touch_locked(record, interval_s)

    def _due_for_touch_locked(self, record: DiskRecord, interval_s: float) -> bool:
        """Whether to set the file's mtime now; else remember it is stale."""
        now = time.monotonic()
        if self.state is not DiskState.OK or now - record.touched_s < interval_s:
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
        if self.state is not DiskState.OK:
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

    def touch(self, key: str) -> None:
        """Set the entry file's mtime to a new last-use stamp (lock not held)."""
        with self._lock:
            stamp = self._stamp_locked()
        try:
            os.utime(self._path(key), ns=(stamp, stamp))
        except OSError as exc:
            _LOGGER.debug("event=cache-touch-failed key=%s error=%r", key, exc)

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{key}{ENTRY_SUFFIX}"

    # -- reading --------------------------------------------------------------------------------
    def read(self, key: str, record: DiskRecord) -> CacheEntry | None:
        """The verified entry (lock not held); None if it is gone or corrupt (then discarded)."""
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

    def _forget(self, key: str, record: DiskRecord) -> None:
        with self._lock:
            if self._index.get(key) is record:
                del self._index[key]
                self._bytes -= record.cost_bytes

    def _discard(
        self,
        key: str,
        path: Path,
        reason: str,
        inode: tuple[int, int] | None,
        record: DiskRecord | None = None,
    ) -> None:
        """Log a corrupt entry, drop it from the index and delete its file (if still that file)."""
        _LOGGER.warning("event=cache-corrupt key=%s reason=%r path=%s", key, reason, path)
        with self._lock:
            self.corrupt += 1
            if record is not None and self._index.get(key) is record:
                del self._index[key]
                self._bytes -= record.cost_bytes
            if self.state is not DiskState.OK:
                return
            try:
                # A concurrent rewrite may have renamed a good file over the bad one.
                st = path.lstat()
                if inode is None or (st.st_dev, st.st_ino) == inode:
                    path.unlink()
            except OSError:
                pass

    # -- writing --------------------------------------------------------------------------------
    def _writable_locked(self) -> bool:
        if self.state is DiskState.OK:
            return True
        if self.state is DiskState.READ_ONLY and self._retry_at_s is not None:
            return time.monotonic() >= self._retry_at_s
        return False

    def _evict_locked(self, needed_bytes: int) -> list[str] | None:
        """Delete LRU entries until `needed_bytes` more fit; None if they cannot be made to fit."""
        doomed: list[str] = []
        budget = self.budget_bytes
        while self._index and self._bytes + self._reserved_bytes + needed_bytes > budget:
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
            self._bytes -= record.cost_bytes
            doomed.append(key)
        if self._bytes + self._reserved_bytes + needed_bytes > budget:
            return None
        if doomed:
            _LOGGER.debug("event=cache-evict tier=disk entries=%d", len(doomed))
        return doomed

    def write(self, key: str, entry: CacheEntry, current: Callable[[], bool]) -> bool:
        """Write the entry's file (fsync included; lock not held), making room first; True when
        the entry is on disk (indexed) afterwards.

        `current()` (called with the lock held) says whether the entry may still be stored:
        False once the cache was cleared since the entry was made; the write is then dropped.
        """
        with self._lock:
            if not self._writable_locked() or not current():
                return False
        try:
            data = encode_entry(key, entry)
        except (ValueError, TypeError) as exc:  # e.g. metadata too large: RAM only, no crash
            _LOGGER.warning("event=cache-skip key=%s reason=%r", key, str(exc))
            return False
        cost = disk_cost(len(data))
        if cost > self.budget_bytes:
            _LOGGER.info(
                "event=cache-skip key=%s reason=larger-than-disk-budget size_bytes=%d",
                key,
                cost,
            )
            return False
        with self._lock:
            if not current() or self._evict_locked(cost) is None:
                return False
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
                if not current():  # cleared while we wrote
                    temp.unlink(missing_ok=True)
                    self._reserved_bytes -= cost
                    reserved = False
                    return False
                os.replace(temp, final)
                self._reserved_bytes -= cost
                reserved = False
                old = self._index.pop(key, None)
                if old is not None:
                    self._bytes -= old.cost_bytes
                self._index[key] = DiskRecord(cost, entry.voice_id, time.monotonic())
                self._bytes += cost
                # Stamped in index order, so a restart rebuilds the same LRU order.
                stamp = self._stamp_locked()
                try:
                    os.utime(final, ns=(stamp, stamp))
                except OSError as exc:
                    _LOGGER.debug("event=cache-touch-failed key=%s error=%r", key, exc)
                recovered = self.state is not DiskState.OK
                if recovered:
                    self.state, self.reason, self._retry_at_s = DiskState.OK, None, None
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
            return not reserved  # not reserved: renamed and indexed, the folder's fsync failed
        return True

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
            first = self.state is DiskState.OK
            self.state = DiskState.READ_ONLY
            self.reason = reason
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
        """Tell `on_fault` about a change of the tier's fault (not a repeat of it)."""
        with self._fault_lock:
            if self._fault == (code, reason):
                return
            self._fault = (code, reason)
            if self._on_fault is not None:
                self._on_fault(code, reason)

    # -- clearing and stats ---------------------------------------------------------------------
    def remove_locked(self, voice_id: str | None) -> list[str]:
        """Delete every entry (None) or every entry of one voice; returns the keys removed."""
        removed: list[str] = []
        for key in [k for k, r in self._index.items() if voice_id in (None, r.voice_id)]:
            if self.state is not DiskState.OFF:
                try:
                    self._path(key).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    _LOGGER.warning("event=cache-clear-failed key=%s error=%r", key, exc)
                    continue
            self._bytes -= self._index.pop(key).cost_bytes
            removed.append(key)
        return removed

    def stats_locked(self) -> TierStats:
        return TierStats(
            len(self._index),
            self._bytes + self._reserved_bytes,
            self.budget_bytes if self.state is not DiskState.OFF else 0,
            self.hits,
            self.misses,
        )
