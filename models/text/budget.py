"""Budgets on what one model call and one request may take, whatever the text holds.

The guard (`guard.py`) bounds the characters handed to a family at once; a family's phonemizer
can still expand a piece (digits, symbols, spelled letters), so each family cuts its phoneme
sequences with `split` before they reach a model, and every request's audio is held to
`max_audio_s` of its length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Final, TypeVar

S = TypeVar("S", bound=Sequence[object])

AUDIO_S_PER_CHAR: Final = 1.0
"""Seconds of audio one character of text may produce at rate 1.0 (English speech runs at
0.06-0.08 s per character, read-out digits and symbols up to about 0.4; docs/protocol.md)."""

AUDIO_S_FLOOR: Final = 10.0
"""Seconds any request may produce however short it is (a single `%` reads as a word)."""


def max_audio_s(chars: int, rate: float = 1.0) -> float:
    """The most audio a text of `chars` characters may produce at speaking rate `rate`."""
    return (AUDIO_S_FLOOR + AUDIO_S_PER_CHAR * chars) / max(rate, 1e-3)


def is_clause_mark(item: object) -> bool:
    """A clause mark as phonemizers keep it (`,`, `;`, `:`): the best place to cut a sentence."""
    return item in (",", ";", ":")


def is_space(item: object) -> bool:
    """A word boundary: the place to cut a sentence without a clause mark."""
    return item == " "


def split(seq: S, max_len: int, *boundaries: Callable[[object], bool]) -> Iterator[S]:
    """`seq` in consecutive parts of at most `max_len` items. Each part ends just after the last
    item in the second half of its window that the first of `boundaries` accepts (else the
    next predicate, ...), or at `max_len` when none does.

    Linear: every cut advances at least `max_len // 2` items and looks back at most as far
    (once per predicate).
    """
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2, got {max_len}")
    start = 0
    while len(seq) - start > max_len:
        cut = start + max_len
        for is_boundary in boundaries:
            found = _last(seq, start + max_len // 2, start + max_len, is_boundary)
            if found >= 0:
                cut = found + 1
                break
        yield seq[start:cut]  # type: ignore[misc]
        start = cut
    if start < len(seq):
        yield seq[start:]  # type: ignore[misc]


def _last(seq: Sequence[object], low: int, high: int, accept: Callable[[object], bool]) -> int:
    """Index of the last item in seq[low:high] that `accept` takes, or -1."""
    for i in range(high - 1, low - 1, -1):
        if accept(seq[i]):
            return i
    return -1
