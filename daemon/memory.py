"""Keep a long-running daemon's heap from creeping: fewer glibc malloc arenas, and trimming.

glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and
frees inside an arena rarely go back to the kernel. A daemon with a dozen threads (socket loop,
speech and synthesis workers, player supervisor, ONNX Runtime pools) that loads and closes
voice instances and decodes windows of many sizes sees its RSS drift up for hours: the soak
benchmark measured +11 % in ten minutes after warm-up, and a pre-warm instance's memory
staying resident after it was closed. One arena: the threads that allocate large blocks take
turns (a phrase's synthesis runs on a thread of its own, and the speech worker, the player and
ONNX Runtime's pool hand its audio on), so with two arenas each came to hold a long sentence's
working set and its free space: the default voice's peak RSS while speaking was 177 MiB with
two and 157 with one, at the same CPU (bench_memory.py, docs/benchmarks.md "Memory and ready
time"); the Python code holds the GIL around most allocations anyway. `malloc_trim` hands
freed pages back after big releases (and after start-up, whose model loading frees what it
parsed), and `TrimOnGrowth` after a sentence once the heap has grown since the last time. On request (config `memory.mmap_threshold_bytes`), large blocks
get their own mappings, so a synthesis's big arrays go back to the kernel when freed instead of
staying in the heap (less RSS, more page faults).
All are no-ops where the C library is not glibc (musl has none of these calls).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from typing import Final

_LOGGER = logging.getLogger(__name__)

_M_ARENA_MAX: Final = -8
"""mallopt parameter number of M_ARENA_MAX in glibc's malloc.h."""

_M_MMAP_THRESHOLD: Final = -3
"""mallopt parameter number of M_MMAP_THRESHOLD in glibc's malloc.h."""


DEFAULT_ARENAS: Final = 1

DEFAULT_TRIM_GROWTH_BYTES: Final = 8 * 1024 * 1024
"""RSS growth since the last trim from which `TrimOnGrowth` trims again (see there)."""


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def limit_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before the worker threads start). True if applied."""
    libc = _libc()
    if libc is None:
        return False
    applied = bool(libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))
    _LOGGER.debug("event=malloc-arenas max=%d applied=%s", arenas, applied)
    return applied


def fix_mmap_threshold(size_bytes: int) -> bool:
    """Fix glibc's mmap threshold at `size_bytes` (config `memory.mmap_threshold_bytes`): blocks
    from that size up are mapped on their own and go back to the kernel when freed, where
    glibc's own threshold rises after each large free (up to 32 MiB) and keeps them in the heap.
    Call at start, before the worker threads. True if applied."""
    libc = _libc()
    if libc is None:
        return False
    applied = bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(size_bytes)))
    _LOGGER.debug("event=malloc-mmap-threshold size_bytes=%d applied=%s", size_bytes, applied)
    return applied


def trim() -> bool:
    """Return freed heap pages to the kernel (after closing a voice instance). True if any."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))


def _rss_bytes() -> int | None:
    """This process's resident set size (Linux /proc), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class TrimOnGrowth:
    """`trim` at a pause in the work (after a sentence), once the process's RSS has grown by
    `growth_bytes` since the pause that trimmed last. Thread-safe.

    A sentence's arrays are freed by threads that take turns on the heap, and what they leave
    free in its middle stays resident: the default voice's peak RSS while speaking the held-out
    text was 151-162 MiB untrimmed (bench_memory.py). Trimming after every sentence held it at
    145-158 MiB but cost 10-16 % more CPU while speaking (each sentence faulted its working set
    in again); trimming only after 8 MiB of growth gave 146-161 MiB at the CPU of not trimming
    (docs/benchmarks.md, "Memory and ready time").
    """

    def __init__(self, growth_bytes: int = DEFAULT_TRIM_GROWTH_BYTES) -> None:
        self.growth_bytes = growth_bytes
        """RSS growth since the last trim from which the next pause trims."""
        self._trimmed_at_bytes: int | None = None
        self._lock = threading.Lock()

    def pause(self) -> bool:
        """A pause in the work: trim if RSS grew by `growth_bytes` since the last trim (or
        none was made yet). True if this call trimmed."""
        with self._lock:
            rss = _rss_bytes()
            if rss is None:
                return False
            last = self._trimmed_at_bytes
            if last is not None and rss - last < self.growth_bytes:
                return False
            trim()
            self._trimmed_at_bytes = _rss_bytes()
            return True
