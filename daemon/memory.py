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
parsed). On request (config `memory.mmap_threshold_bytes`), large blocks
get their own mappings, so a synthesis's big arrays go back to the kernel when freed instead of
staying in the heap (less RSS, more page faults).
All are no-ops where the C library is not glibc (musl has none of these calls).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Final

_LOGGER = logging.getLogger(__name__)

_M_ARENA_MAX: Final = -8
"""mallopt parameter number of M_ARENA_MAX in glibc's malloc.h."""

_M_MMAP_THRESHOLD: Final = -3
"""mallopt parameter number of M_MMAP_THRESHOLD in glibc's malloc.h."""


DEFAULT_ARENAS: Final = 1


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
