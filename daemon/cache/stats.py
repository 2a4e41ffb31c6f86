"""What the phrase cache reports: each tier's contents and counters, and the disk tier's state."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheStats", "DiskState", "TierStats"]


class DiskState(enum.Enum):
    """What the disk tier is doing."""

    OK = "ok"
    """Entries are read and written."""

    READ_ONLY = "read-only"
    """Entries on disk are served; new ones stay in RAM (read-only or full folder, write error)."""

    OFF = "off"
    """No disk tier: none configured, or the folder is unusable. RAM only."""


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
