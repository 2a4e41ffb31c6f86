"""Counters that several threads increment (the socket loop, the synthesis workers)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["Counters"]


class Counters:
    """Named integer counters behind one lock; `snapshot` reads them all at once."""

    def __init__(self, names: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Count `amount` more of `name` (a name given at construction)."""
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        """Every counter's value, in the order the names were given."""
        with self._lock:
            return dict(self._values)
