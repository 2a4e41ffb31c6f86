"""The RAM tier: the most recently used entries, least recently used evicted first, by bytes."""

from __future__ import annotations

from collections import OrderedDict

from utterd.daemon.cache.entry import CacheEntry
from utterd.daemon.cache.stats import TierStats

__all__ = ["RamTier"]


class RamTier:
    """An LRU of entries within a byte budget.

    Not locked on its own: the phrase cache's lock is held around every call, so that one
    lookup sees the RAM tier, the disk index and the flights in one consistent state.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        """Most bytes (`CacheEntry.size_bytes`) the tier may hold."""
        self.size_bytes = 0
        """Bytes held now."""
        self.hits = 0
        """Lookups this tier answered."""
        self.misses = 0
        """Lookups this tier did not answer."""
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> CacheEntry | None:
        """The entry, now the most recently used; None if the tier lacks it (nothing counted)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def insert(self, key: str, entry: CacheEntry) -> None:
        """Hold `entry` under `key` (replacing any), evicting the least recently used to fit.

        An entry larger than the whole budget is not held.
        """
        old = self._entries.pop(key, None)
        if old is not None:
            self.size_bytes -= old.size_bytes
        if entry.size_bytes > self.budget_bytes:
            return
        self._entries[key] = entry
        self.size_bytes += entry.size_bytes
        while self.size_bytes > self.budget_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= evicted.size_bytes

    def remove(self, voice_id: str | None) -> list[str]:
        """Drop every entry (None) or every entry of one voice; returns the keys dropped."""
        doomed = [k for k, e in self._entries.items() if voice_id in (None, e.voice_id)]
        for key in doomed:
            self.size_bytes -= self._entries.pop(key).size_bytes
        return doomed

    def stats(self) -> TierStats:
        return TierStats(
            len(self._entries), self.size_bytes, self.budget_bytes, self.hits, self.misses
        )
