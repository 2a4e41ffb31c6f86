"""A `stop` may land at any moment of a job's life; the job's events must stay consistent.

The scheduler runs for real (its worker thread, its queue lock) on a fake voice and a fake player,
and the stop is made at an exact moment: from inside the fake at that point of the job. Whatever
the moment, a job's events are `stopped`, `begin` then `stopped`, or `begin` then `end`; a job
that a stop's reply lists ends `stopped`; a job that ends `end` had its first audio played.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakes import FakePlayer, FakeSource
from utterd.daemon.speech.jobs import Job
from utterd.daemon.speech.scheduler import Scheduler, Target
from utterd.models.voice import SynthesisParams


class Harness:
    """A scheduler on the fakes; `stop_at` names the moment a stop of the job is made."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.stop_at = stop_at
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stop_replies: list[list[str]] = []
        self._done = threading.Condition()
        self.job: Job | None = None
        self.player = FakePlayer(self.hook)
        self.scheduler = Scheduler(FakeSource(self.hook), self.player, self.emit, max_queue=8)
        self.player.scheduler = self.scheduler

    def hook(self, moment: str) -> None:
        if moment == self.stop_at and self.job is not None:
            self.stop_at = None  # once
            self.stop()

    def stop(self) -> None:
        assert self.job is not None
        self.stop_replies.append(self.scheduler.stop(Target(job=self.job.job_id)))

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        with self._done:
            self.events.append((kind, data))
            self._done.notify_all()
        self.hook(kind)

    def run(
        self, after_submit: Callable[[], None] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        self.scheduler.start()
        try:
            self.job = Job(text="Hello.", voice_id="fake", params=SynthesisParams(), client="c1")
            self.scheduler.submit(self.job)
            if after_submit is not None:
                after_submit()
            with self._done:
                assert self._done.wait_for(
                    lambda: any(k in ("end", "stopped", "failed") for k, _ in self.events), 5.0
                ), self.events
            time.sleep(0.01)  # anything emitted after the terminal event would show up here
        finally:
            self.scheduler.close()
        return [(k, d) for k, d in self.events if d.get("job") == self.job.job_id]


def check_consistent(h: Harness, events: list[tuple[str, dict[str, Any]]]) -> None:
    kinds = [k for k, _ in events if k != "sentence"]
    assert kinds in (["stopped"], ["begin", "stopped"], ["begin", "end"]), kinds
    terminal, data = events[-1]
    assert h.job is not None
    if any(h.job.job_id in reply for reply in h.stop_replies):
        assert terminal == "stopped", (h.stop_replies, kinds)
    if terminal == "end":
        assert data["first_audio_ms"] is not None, events


MOMENTS = ["synthesis", "begin", "play", "end_job", "played", "end"]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_stop_at_any_moment_of_a_job_leaves_its_events_consistent(moment: str) -> None:
    h = Harness(stop_at=moment)
    events = h.run()
    assert h.stop_replies, f"the stop at {moment!r} was not made"
    check_consistent(h, events)


def test_a_stop_after_the_last_audio_played_does_not_report_a_job_that_ends_end() -> None:
    """The moment of issue 15 finding 6: the job's audio is all out and the worker is ending it
    when the stop lands. The stop either wins (the job ends stopped) or finds nothing."""
    h = Harness(stop_at="end")
    events = h.run()
    assert [k for k, _ in events] == ["begin", "sentence", "end"]
    assert h.stop_replies == [[]]


def test_stops_racing_a_job_from_another_thread_leave_its_events_consistent() -> None:
    rng = random.Random(15)
    for _ in range(200):
        h = Harness()
        delay_s = rng.uniform(0.0, 0.002)

        def stop_soon(h: Harness = h, delay_s: float = delay_s) -> None:
            time.sleep(delay_s)
            h.stop()

        events = h.run(after_submit=stop_soon)
        check_consistent(h, events)
