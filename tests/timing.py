"""CPU time of work, for tests that check a cost is linear on a busy shared machine.

This thread's CPU time leaves out other processes (wall time on a loaded 2-vCPU machine gave
4 times the text 8.7 times the time); interleaving the runs spreads a slow spell over every size;
the garbage collector is off, since a collection of the whole test session's heap is no cost of
the code under test.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable


def least_cpu_s(*works: Callable[[], object], runs: int = 3) -> list[float]:
    """The least CPU time of each work over `runs` interleaved runs."""
    best = [math.inf] * len(works)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            for index, work in enumerate(works):
                started = time.thread_time()
                work()
                best[index] = min(best[index], time.thread_time() - started)
    finally:
        if enabled:
            gc.enable()
    return best


def growth(
    small: Callable[[], object], large: Callable[[], object], limit: float, runs: int = 3
) -> tuple[float, float]:
    """(CPU time of `small`, of `large`), measured again, up to three times, while `large`
    takes `limit` times as long or more: a cost above the limit is above it in every
    measurement, a slow spell is not."""
    small_s = large_s = math.inf
    for _ in range(3):
        small_s, large_s = least_cpu_s(small, large, runs=runs)
        if large_s < limit * small_s:
            break
    return small_s, large_s
