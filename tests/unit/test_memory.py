"""daemon/memory.py against the real C library (glibc on Debian, Raspberry Pi OS and CI)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import subprocess
import sys
import textwrap

import pytest
from utterd.daemon import memory

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas and malloc_trim are glibc's"
)


@glibc
def test_limit_arenas_is_accepted_by_glibc() -> None:
    assert memory.limit_arenas(memory.DEFAULT_ARENAS) is True


@glibc
def test_trim_gives_freed_heap_pages_back() -> None:
    """Free 64 MiB of small blocks below a live one (so the heap top cannot shrink by itself):
    RSS stays up until `trim` returns the pages."""
    child = textwrap.dedent(
        """
        import ctypes, ctypes.util, sys
        from utterd.daemon import memory

        def rss_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = []
        for _ in range(64 * 1024):
            p = libc.malloc(1000)
            ctypes.memset(p, 1, 1000)
            blocks.append(p)
        keep = libc.malloc(1000)  # above the freed ones: the heap top stays in use
        for p in blocks:
            libc.free(p)
        freed = rss_kib()
        trimmed = memory.trim()
        after = rss_kib()
        print(freed, after, trimmed)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    freed_kib, after_kib, trimmed = int(out[0]), int(out[1]), out[2]
    assert trimmed == "True"
    assert freed_kib - after_kib > 32 * 1024, (freed_kib, after_kib)


_LARGE_BLOCKS_CHILD = textwrap.dedent(
    """
    import ctypes, ctypes.util, sys
    from utterd.daemon import memory

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    if sys.argv[1] == "fixed":
        assert memory.fix_mmap_threshold(1 << 20)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    first = libc.malloc(8 << 20)  # freed: glibc's own threshold rises to 8 MiB
    ctypes.memset(first, 1, 8 << 20)
    libc.free(first)
    blocks = []
    for _ in range(24):  # 48 MiB in 2 MiB blocks, as a long sentence's arrays
        p = libc.malloc(2 << 20)
        ctypes.memset(p, 1, 2 << 20)
        blocks.append(p)
        keep = libc.malloc(1000)  # small blocks between them pin the heap
    before = rss_kib()
    for p in blocks:
        libc.free(p)
    print(before - rss_kib())
    """
)


@glibc
@pytest.mark.parametrize("mode", ["fixed", "glibc"])
def test_a_fixed_mmap_threshold_returns_large_blocks_when_freed(mode: str) -> None:
    """With the threshold fixed at 1 MiB, 2 MiB blocks have their own mappings and go back to
    the kernel when freed; with glibc's sliding threshold they stay in the heap."""
    out = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCKS_CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    returned_kib = int(out)
    if mode == "fixed":
        assert returned_kib > 40 * 1024, returned_kib
    else:
        assert returned_kib < 8 * 1024, returned_kib


def test_calls_are_harmless_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.limit_arenas() is False
    assert memory.fix_mmap_threshold(1 << 20) is False
    assert memory.trim() is False


def test_the_c_library_is_found_here() -> None:
    assert ctypes.util.find_library("c") is not None


def test_trim_on_growth_trims_again_only_once_rss_has_grown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rss = [100 << 20]
    trims: list[int] = []
    monkeypatch.setattr(memory, "_rss_bytes", lambda: rss[0])
    monkeypatch.setattr(memory, "trim", lambda: trims.append(rss[0]) is None)
    trimmer = memory.TrimOnGrowth(growth_bytes=8 << 20)
    assert trimmer.pause()  # the first pause trims: nothing to compare with yet
    rss[0] += 7 << 20
    assert not trimmer.pause()  # 7 MiB more: not yet
    rss[0] += 1 << 20
    assert trimmer.pause()  # 8 MiB since the last trim
    assert not trimmer.pause()
    assert trims == [100 << 20, 108 << 20]


def test_trim_on_growth_reads_this_process_rss() -> None:
    rss = memory._rss_bytes()
    assert rss is not None and 1 << 20 < rss < 1 << 40
