"""Streaming windows: `window_plan`'s sizes at least, larger as far as the lead affords.

A fake clock stands in for the wall clock, so every window the lead allows is known exactly.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.models.engine.stream_windows import (
    GROWTH_MARGIN,
    GROWTH_STEP,
    GrowingWindows,
    StreamPace,
    window_plan,
)
from utterd.models.errors import InvalidParameter


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_lead_is_audio_handed_out_less_the_time_since_the_first_piece() -> None:
    clock = FakeClock()
    pace = StreamPace(clock)
    assert pace.lead_s() == 0.0
    clock.now_s += 5.0  # nothing handed out yet: the time before the first piece does not count
    pace.handed_out(0.5)
    assert pace.lead_s() == pytest.approx(0.5)
    clock.now_s += 0.2
    pace.handed_out(1.0)
    assert pace.lead_s() == pytest.approx(1.3)
    clock.now_s += 2.0
    assert pace.lead_s() == pytest.approx(-0.7)


def test_affordable_frames_need_a_lead_and_a_measured_cost() -> None:
    clock = FakeClock()
    pace = StreamPace(clock)
    pace.ran(100, 0.100)
    assert pace.affordable_frames() == 0  # no piece handed out: no lead yet
    pace.handed_out(0.4)
    # 0.4 s of lead, 1 ms a frame: 0.4 / GROWTH_MARGIN / 0.001 frames
    assert pace.affordable_frames() == int(0.4 / GROWTH_MARGIN / 0.001)
    pace.ran(100, 0.200)  # the last window's cost counts: 2 ms a frame
    assert pace.affordable_frames() == int(0.4 / GROWTH_MARGIN / 0.002)
    pace.ran(10, 0.001)  # cheap, but small: at most GROWTH_STEP times its frames
    assert pace.affordable_frames() == GROWTH_STEP * 10
    clock.now_s += 0.5  # playback overtook synthesis
    assert pace.affordable_frames() == 0


def test_a_timed_part_is_afforded_within_a_share_of_the_lead() -> None:
    clock = FakeClock()
    pace = StreamPace(clock)
    pace.handed_out(0.4)
    assert not pace.affords("decoder", 1)  # never timed: nothing known of its cost
    pace.timed("decoder", 200, 0.010)  # 50 us per frame
    # 0.4 s of lead, of which 1/GROWTH_MARGIN at 50 us a frame
    fits = int(0.4 / GROWTH_MARGIN / 50e-6)
    assert pace.affords("decoder", fits - 1) and not pace.affords("decoder", fits + 1)
    assert not pace.affords("encoder", 1)  # each part its own figure
    pace.ran(10, 1.0)  # the windows' cost is another figure
    assert pace.affords("decoder", fits - 1)
    clock.now_s += 0.5  # playback overtook synthesis
    assert not pace.affords("decoder", 1)


def test_without_a_pace_windows_follow_the_plan() -> None:
    assert list(GrowingWindows(300, 8, 64, 384)) == window_plan(300, 8, 64)
    assert window_plan(300, 8, 64) == [
        (0, 8), (8, 24), (24, 56), (56, 120), (120, 184), (184, 248), (248, 300)
    ]  # fmt: skip


def test_windows_grow_to_what_the_lead_affords_less_context() -> None:
    clock = FakeClock()
    pace = StreamPace(clock)
    windows = iter(GrowingWindows(1000, 8, 64, 384, pace=pace, context_frames=22))
    assert next(windows) == (0, 8)  # no lead before the first piece: the first window as planned
    pace.ran(30, 0.030)  # 1 ms per computed frame
    pace.handed_out(0.1)
    # 0.1 s / 2 / 1 ms = 50 frames, of which 22 are context: 28 > the planned 16
    assert next(windows) == (8, 36)
    pace.ran(60, 0.060)
    pace.handed_out(0.4)
    clock.now_s += 0.05
    # lead 0.45 s: 225 frames (GROWTH_STEP allows 240), less 22
    assert next(windows) == (36, 239)
    pace.ran(225, 0.225)
    pace.handed_out(3.0)
    assert next(windows) == (239, 623)  # capped at the largest window
    pace.ran(406, 0.406)
    clock.now_s += 10.0  # far behind: back to the plan's doubling (64 by now)
    assert next(windows) == (623, 687)


def test_a_window_grows_at_most_growth_step_times_the_one_before() -> None:
    pace = StreamPace(FakeClock())  # the clock stands still: the lead only grows
    pace.handed_out(100.0)
    windows = GrowingWindows(2000, 8, 64, 384, pace=pace, context_frames=22)
    sizes = []
    for start, end in windows:
        sizes.append(end - start)
        pace.ran(end - start + 22, 0.0)
    assert sizes[:4] == [8, GROWTH_STEP * 30 - 22, 384, 384]


def test_windows_before_grow_from_keep_the_plan() -> None:
    pace = StreamPace(FakeClock())
    pace.ran(1000, 1e-6)
    pace.handed_out(10.0)
    windows = list(GrowingWindows(200, 4, 32, 128, pace=pace, grow_from=12))
    assert windows[:2] == [(0, 4), (4, 12)]
    assert windows[2:] == [(12, 140), (140, 200)]


def test_a_sliver_rides_with_the_grown_window_before_it() -> None:
    pace = StreamPace(FakeClock())
    pace.ran(1000, 1e-6)
    pace.handed_out(10.0)
    assert list(GrowingWindows(131, 8, 64, 128, pace=pace)) == [(0, 131)]


@given(
    frames=st.integers(0, 2000),
    first=st.integers(1, 32),
    extra=st.integers(0, 64),
    largest=st.integers(1, 512),
    leads=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=40),
    waits=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=40),
    costs=st.lists(st.floats(1e-5, 0.01), min_size=1, max_size=40),
)
def test_windows_tile_the_frames_and_never_shrink_below_the_plan(
    frames: int,
    first: int,
    extra: int,
    largest: int,
    leads: list[float],
    waits: list[float],
    costs: list[float],
) -> None:
    clock = FakeClock()
    pace = StreamPace(clock)
    pace.handed_out(0.0)
    window_frames = first + extra
    plan = window_plan(frames, first, window_frames)
    windows = []
    for number, window in enumerate(
        GrowingWindows(frames, first, window_frames, largest, pace=pace, context_frames=5)
    ):
        windows.append(window)
        pace.ran(10, costs[number % len(costs)] * 10)
        pace.handed_out(leads[number % len(leads)])
        clock.now_s += waits[number % len(waits)]
    if frames == 0:
        assert windows == []
        return
    assert [start for start, _ in windows] == [0, *(end for _, end in windows[:-1])]
    assert windows[-1][1] == frames
    cap = max(window_frames, largest) + max(1, first // 2)
    planned_sizes = [end - start for start, end in plan]
    for number, (start, end) in enumerate(windows[:-1]):
        # never smaller than the plan's window of the same rank (its doubling goes on beneath)
        assert end - start >= planned_sizes[min(number, len(planned_sizes) - 1)]
        assert end - start < cap


def test_bad_window_sizes_are_refused() -> None:
    with pytest.raises(InvalidParameter):
        GrowingWindows(10, 0, 8)
    with pytest.raises(InvalidParameter):
        window_plan(10, 16, 8)
