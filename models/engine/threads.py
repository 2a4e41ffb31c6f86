"""How many threads inference uses: one per physical core unless the settings say otherwise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from utterd.models.errors import VoiceLoadError
from utterd.models.voice import EngineSettings

__all__ = ["intra_op_threads", "physical_core_count"]


def physical_core_count() -> int:
    """Physical cores this process may run on; hyper-threads share a core's FPU, so they don't count.

    Reads Linux sysfs topology; elsewhere (or when it is unreadable) falls back to os.cpu_count().
    """
    try:
        cpus: Sequence[int] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = range(os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        for cpu in cpus:
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
            cores.add((package, core))
    except OSError:
        return max(1, len(cpus))
    return max(1, len(cores))


def intra_op_threads(engine: EngineSettings) -> int:
    """Intra-op thread count for `engine`: its `threads`, or one per physical core when 0."""
    if engine.threads < 0:
        raise VoiceLoadError(f"engine threads must be >= 0, got {engine.threads}")
    return engine.threads or physical_core_count()
