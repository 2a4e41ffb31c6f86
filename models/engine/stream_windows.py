"""How a sentence's frames are cut into windows for streaming: small first, larger once ahead.

Shared by the Piper VITS decoder (`piper/vits_stream.py`) and hibari's signal stage
(`hibari/stream.py`). The first window is small so the first piece leaves early; later windows
double up to `window_frames` (`window_plan`), so every window is computed well within the
playing time of those before it. Each seam costs the context recomputed on both sides of it
(joe: 11 generator frames a side, at the same CPU per frame as any other; hibari: a model call
and numpy's per-call overhead), and windows of 64 frames had so many seams that streaming cost
1.4-1.5x the CPU of whole sentences (docs/benchmarks.md, "Windows that grow with the lead").

So windows grow past that once synthesis is ahead of playback (`GrowingWindows`): a request's
`StreamPace` knows the audio handed out since its first piece against the wall clock (the
lead) and what a computed frame has cost so far, and a window may be as large as what it
predicts can be computed in 1/GROWTH_MARGIN of the lead, up to a largest size (the throughput
path's window, so memory peaks no higher). Playback is taken to start when the first piece
is handed out, which is early (the device only starts later): the lead is underestimated, never
overestimated. A window is never smaller than `window_plan`'s, so first audio and a slow
machine's windows are as before; growing only ever replaces several calls by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from utterd.models.errors import InvalidParameter

GROWTH_MARGIN: Final = 2.0
"""A grown window's predicted compute time is at most the lead divided by this: after it, at
least half the lead is left for what follows (the next sentence's encoder, its first window),
and a prediction off by up to 2x (other jobs slowing the machine) is absorbed. 1.5 saved 3 % of
joe's streamed CPU on the tuning text and had more gaps under load (docs/benchmarks.md)."""

GROWTH_STEP: Final = 4
"""A window computes at most this many times the frames of the window before it, so that its
cost is predicted from a window of nearby size: on a loaded machine a large window on two
threads cost up to 2.7x per frame what a small one did (a thread descheduled holds up the
other), and growing from 19 frames straight to 384 left gaps."""


def _check(first_window_frames: int, window_frames: int) -> None:
    if first_window_frames < 1 or window_frames < first_window_frames:
        raise InvalidParameter(
            f"need 1 <= first_window_frames <= window_frames, got {first_window_frames} and "
            f"{window_frames}"
        )


def window_plan(frames: int, first_window_frames: int, window_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering `frames`: first window small, then doubling.

    A remainder shorter than half the first window is merged into the window before it, since a
    call on a sliver costs the same fixed overhead as a full window.
    """
    _check(first_window_frames, window_frames)
    return list(GrowingWindows(frames, first_window_frames, window_frames))


class StreamPace:
    """One request's stream against the clock: audio handed out and what computing it cost.

    Kept across the request's sentences, so that a later sentence starts with the lead the
    earlier ones built up. Used from the one thread that runs the request's synthesis.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._first_piece_at: float | None = None
        self._audio_s = 0.0
        self._frame_cost_s: float | None = None
        self._last_computed_frames = 0
        self._part_cost_s: dict[str, float] = {}

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the lead is measured on (callers time their windows with it)."""
        return self._clock

    def handed_out(self, audio_s: float) -> None:
        """A piece of `audio_s` seconds of playing time is being handed to the listener."""
        if self._first_piece_at is None:
            self._first_piece_at = self._clock()
        self._audio_s += audio_s

    def ran(self, computed_frames: int, seconds: float) -> None:
        """A window computed `computed_frames` frames (its context included) in `seconds`."""
        if computed_frames > 0:
            self._frame_cost_s = seconds / computed_frames
            self._last_computed_frames = computed_frames

    def timed(self, part: str, computed_frames: int, seconds: float) -> None:
        """Work other than the windows (hibari's decoder on a whole piece) computed
        `computed_frames` frames in `seconds`: its cost per frame, for `affords`."""
        if computed_frames > 0:
            self._part_cost_s[part] = seconds / computed_frames

    def affords(self, part: str, frames: int) -> bool:
        """Whether `frames` frames of `part`, at its last measured cost, fit in 1/GROWTH_MARGIN
        of the lead; False before a piece is handed out or before `part` was timed."""
        cost = self._part_cost_s.get(part)
        lead = self.lead_s()
        return cost is not None and lead > 0.0 and cost * frames <= lead / GROWTH_MARGIN

    def lead_s(self) -> float:
        """Seconds of audio handed out beyond what has played since the first piece (0 before)."""
        if self._first_piece_at is None:
            return 0.0
        return self._audio_s - (self._clock() - self._first_piece_at)

    def affordable_frames(self) -> int:
        """Frames (context included) that fit in 1/GROWTH_MARGIN of the lead at the last
        window's cost per frame, and at most GROWTH_STEP times its frames; 0 before a first
        piece or a first measured window."""
        cost = self._frame_cost_s
        lead = self.lead_s()
        if cost is None or lead <= 0.0:
            return 0
        step = GROWTH_STEP * self._last_computed_frames
        return step if cost <= 0.0 else min(step, int(lead / GROWTH_MARGIN / cost))


class GrowingWindows:
    """A sentence's [start, end) windows, decided one at a time as the caller gets to them.

    At least `window_plan`'s sizes (first window, then doubling up to `window_frames`); with a
    `pace`, as large as the lead affords (`StreamPace.affordable_frames`, less the caller's
    `context_frames` per window), up to `largest_window_frames`; windows that start before
    `grow_from` keep `window_plan`'s sizes (for a window whose cost the pace cannot know). A
    remainder shorter than half the first window rides with the window before it.
    """

    def __init__(
        self,
        frames: int,
        first_window_frames: int,
        window_frames: int,
        largest_window_frames: int | None = None,
        *,
        pace: StreamPace | None = None,
        context_frames: int = 0,
        grow_from: int = 0,
    ) -> None:
        _check(first_window_frames, window_frames)
        self.frames = frames
        self.first_window_frames = first_window_frames
        self.window_frames = window_frames
        self.largest_window_frames = max(window_frames, largest_window_frames or 0)
        self.pace = pace
        self.context_frames = context_frames
        self.grow_from = grow_from

    def __iter__(self) -> Iterator[tuple[int, int]]:
        frames = self.frames
        start, size = 0, self.first_window_frames
        min_tail = max(1, self.first_window_frames // 2)
        while start < frames:
            grown = 0
            if self.pace is not None and start >= self.grow_from:
                grown = self.pace.affordable_frames() - self.context_frames
            end = min(frames, start + max(size, min(self.largest_window_frames, grown)))
            if frames - end < min_tail:
                end = frames
            yield start, end
            start, size = end, min(self.window_frames, size * 2)
