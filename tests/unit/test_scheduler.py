"""The scheduler's priority, pause and stop rules (SSIP), on a fake voice and a fake player.

The scheduler runs for real (its worker thread, its queue lock); nothing else does: no daemon,
no sound device, no model. A text the fake voice holds stops after its first chunk, so its job
is speaking (it has begun) for as long as the test needs; jobs submitted before the worker starts
wait side by side. test_priorities.py checks the rules as pure decisions;
tests/e2e/test_e2e_scheduler.py checks them on a running daemon.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import EventLog, FakePlayer, FakeSource, wait_until
from utterd.daemon.speech.jobs import Job, JobState
from utterd.daemon.speech.priorities import Priority
from utterd.daemon.speech.scheduler import Busy, NotPaused, Scheduler, Target, UnknownJob
from utterd.models.voice import SynthesisParams

SAID = ["begin", "sentence", "end"]
"""A job's events when it is spoken to its end."""

CUT = ["begin", "sentence", "stopped"]
"""A job's events when it is stopped while it speaks."""

DROPPED = ["stopped"]
"""A job's events when it is stopped before it began."""


class Rig:
    """A scheduler on the fakes; its worker starts with `start` (or the first `speaking`)."""

    def __init__(self, max_queue: int = 16) -> None:
        self.source = FakeSource()
        self.player = FakePlayer()
        self.events = EventLog()
        self.scheduler = Scheduler(self.source, self.player, self.events, max_queue=max_queue)
        self.player.scheduler = self.scheduler
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.scheduler.start()

    def submit(self, text: str, priority: Priority = "text", client: str = "c1") -> Job:
        job = Job(
            text=text, voice_id="fake", params=SynthesisParams(), client=client, priority=priority
        )
        self.scheduler.submit(job)
        return job

    def speaking(self, text: str, priority: Priority = "text", client: str = "c1") -> Job:
        """A job that has begun and speaks until `release(text)`: its first chunk (and the mark
        of its first sentence) are with the player."""
        self.source.hold(text)
        job = self.submit(text, priority, client)
        self.start()
        self.events.wait(job.job_id, "sentence")
        return job

    def release(self, text: str) -> None:
        self.source.release(text)

    def ends(self, *jobs: Job) -> list[list[str]]:
        """Each job's events, once each has ended."""
        for job in jobs:
            self.events.wait_end(job.job_id)
        return [self.events.of(job.job_id) for job in jobs]

    def reason(self, job: Job) -> str:
        """Why the job was stopped, as its `stopped` event says."""
        return str(self.events.data(job.job_id, "stopped")["reason"])

    def begun(self) -> list[str]:
        """Job ids in the order they began."""
        return self.events.order("begin")

    def close(self) -> None:
        if self._started:
            self.scheduler.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def _ids(*jobs: Job) -> list[str]:
    return [job.job_id for job in jobs]


# -- priorities ----------------------------------------------------------------------------------


def test_a_lone_job_is_said_and_its_status_follows(rig: Rig) -> None:
    job = rig.submit("Hello.")
    assert job.state is JobState.QUEUED
    rig.start()
    assert rig.ends(job) == [SAID]
    status = job.status.snapshot()
    assert status.state is JobState.DONE and status.error is None and not status.paused
    assert status.first_audio_ms is not None and status.first_audio_ms >= 0
    begin = rig.events.data(job.job_id, "begin")
    assert begin == {"job": job.job_id, "client": "c1", "voice": "fake", "priority": "text"}
    assert rig.source.texts == ["Hello."]
    assert rig.scheduler.counters == {"accepted": 1, "done": 1, "stopped": 0, "failed": 0}


def test_important_is_never_interrupted_and_goes_before_everything(rig: Rig) -> None:
    first = rig.speaking("I1", "important")
    message = rig.submit("M", "message")
    text = rig.submit("T", "text")
    notification = rig.submit("N", "notification")
    progress = rig.submit("P", "progress")
    second = rig.submit("I2", "important")
    assert rig.events.of(notification.job_id) == DROPPED
    assert rig.reason(notification) == "notification not said: other speech goes on"
    assert not first.cancel.cancelled and rig.player.flushes == 0
    assert progress.promoted, "an important job promotes the waiting progress"
    rig.release("I1")
    assert rig.ends(first, second, message, progress, text) == [SAID] * 5
    assert rig.begun() == _ids(first, second, message, progress, text)


@pytest.mark.parametrize("speaking", ["message", "text", "notification", "progress"])
def test_important_interrupts_every_other_priority(rig: Rig, speaking: Priority) -> None:
    cut = rig.speaking("S", speaking)
    important = rig.submit("I", "important")
    assert rig.ends(cut, important) == [CUT, SAID]
    assert rig.reason(cut) == "interrupted by an important message"
    assert cut.state is JobState.STOPPED and cut.error == rig.reason(cut)
    assert rig.player.flushes == 1, "the device buffer is cleared"


def test_important_postpones_waiting_message_and_text_and_drops_waiting_notifications(
    rig: Rig,
) -> None:
    notification = rig.submit("N", "notification")  # alone: it may wait
    important = rig.submit("I", "important")
    assert rig.events.of(notification.job_id) == DROPPED
    assert rig.reason(notification) == "dropped for an important message"
    message = rig.submit("M", "message")
    text = rig.submit("T", "text")
    later = rig.submit("I2", "important")
    rig.start()
    assert rig.ends(important, later, message, text) == [SAID] * 4
    assert rig.begun() == _ids(important, later, message, text)


@pytest.mark.parametrize("speaking", ["text", "notification", "progress"])
def test_message_interrupts_text_notification_and_progress(rig: Rig, speaking: Priority) -> None:
    cut = rig.speaking("S", speaking)
    message = rig.submit("M", "message")
    assert rig.ends(cut, message) == [CUT, SAID]
    assert rig.reason(cut) == "interrupted by a message"


def test_message_never_interrupts_message_and_drops_waiting_text(rig: Rig) -> None:
    first = rig.speaking("M1", "message")
    text = rig.submit("T", "text")
    second = rig.submit("M2", "message")
    assert rig.events.of(text.job_id) == DROPPED
    assert rig.reason(text) == "dropped for a message"
    assert not first.cancel.cancelled
    rig.release("M1")
    assert rig.ends(first, second) == [SAID, SAID]
    assert rig.begun() == _ids(first, second)


def test_message_drops_a_waiting_notification(rig: Rig) -> None:
    notification = rig.submit("N", "notification")
    message = rig.submit("M", "message")
    assert rig.events.of(notification.job_id) == DROPPED
    assert rig.reason(notification) == "dropped for a message"
    rig.start()
    assert rig.ends(message) == [SAID]


def test_a_new_text_interrupts_the_text_speaking(rig: Rig) -> None:
    old = rig.speaking("T1", "text", client="a")
    new = rig.submit("T2", "text", client="b")
    assert rig.ends(old, new) == [CUT, SAID]
    assert rig.reason(old) == "interrupted by a newer text"


def test_a_new_text_replaces_waiting_text_of_any_client_and_waits_for_message(rig: Rig) -> None:
    message = rig.speaking("M", "message", client="a")
    older = rig.submit("T1", "text", client="b")
    newer = rig.submit("T2", "text", client="c")
    assert rig.events.of(older.job_id) == DROPPED
    assert rig.reason(older) == "replaced by a newer text"
    assert not message.cancel.cancelled, "text never interrupts a message"
    rig.release("M")
    assert rig.ends(message, newer) == [SAID, SAID]
    assert rig.source.texts == ["M", "T2"]


@pytest.mark.parametrize("other", ["important", "message", "text", "progress"])
def test_a_notification_is_dropped_while_other_speech_speaks_or_waits(
    rig: Rig, other: Priority
) -> None:
    waiting = rig.submit("W", other)
    dropped = rig.submit("N1", "notification")
    assert rig.events.of(dropped.job_id) == DROPPED
    assert rig.reason(dropped) == "notification not said: other speech goes on"
    rig.start()
    assert rig.ends(waiting) == [SAID]
    speaking = rig.speaking("S", other)
    dropped_too = rig.submit("N2", "notification")
    assert rig.events.of(dropped_too.job_id) == DROPPED
    assert not speaking.cancel.cancelled
    rig.release("S")
    assert rig.ends(speaking) == [SAID]


def test_a_notification_replaces_the_notification_speaking_and_waiting(rig: Rig) -> None:
    waiting = rig.submit("N0", "notification")
    replacing = rig.submit("N1", "notification")
    assert rig.events.of(waiting.job_id) == DROPPED
    assert rig.reason(waiting) == "replaced by a newer notification"
    rig.source.hold("N1")
    rig.start()
    rig.events.wait(replacing.job_id, "sentence")
    newest = rig.submit("N2", "notification")
    assert rig.ends(replacing, newest) == [CUT, SAID]
    assert rig.reason(replacing) == "replaced by a newer notification"


def test_progress_interrupts_a_notification_and_drops_a_waiting_one(rig: Rig) -> None:
    waiting = rig.submit("N0", "notification")
    progress = rig.submit("P0", "progress")
    assert rig.events.of(waiting.job_id) == DROPPED
    assert rig.reason(waiting) == "dropped for a progress message"
    rig.start()
    rig.ends(progress)
    notification = rig.speaking("N", "notification")
    interrupting = rig.submit("P", "progress")
    assert rig.ends(notification, interrupting) == [CUT, SAID]
    assert rig.reason(notification) == "interrupted by a progress message"


def test_progress_interrupts_nothing_else_and_only_the_latest_waits(rig: Rig) -> None:
    first = rig.speaking("P1", "progress")
    superseded = rig.submit("P2", "progress")
    latest = rig.submit("P3", "progress")
    assert rig.events.of(superseded.job_id) == DROPPED
    assert rig.reason(superseded) == "superseded by a newer progress"
    assert not first.cancel.cancelled, "progress does not interrupt progress"
    rig.release("P1")
    assert rig.ends(first, latest) == [SAID, SAID]


@pytest.mark.parametrize("speaking", ["important", "message", "text"])
def test_progress_waits_for_other_speech(rig: Rig, speaking: Priority) -> None:
    other = rig.speaking("S", speaking)
    progress = rig.submit("P", "progress")
    assert not other.cancel.cancelled and not progress.promoted
    rig.release("S")
    assert rig.ends(other, progress) == [SAID, SAID]


def test_the_last_progress_of_a_series_is_promoted_not_dropped(rig: Rig) -> None:
    text = rig.speaking("T1", "text")
    progress = rig.submit("P", "progress")
    newer = rig.submit("T2", "text")  # would drop a waiting text; the progress is kept
    assert progress.promoted
    assert rig.ends(text, progress, newer) == [CUT, SAID, SAID]
    assert rig.begun() == _ids(text, progress, newer), "promoted: the message rank, before text"


def test_a_full_queue_refuses_with_busy() -> None:
    r = Rig(max_queue=2)
    r.submit("A", "message")
    r.submit("B", "message")
    with pytest.raises(Busy, match="queue is full"):
        r.submit("C", "message")
    assert r.scheduler.queue_length() == 2


# -- pause and resume --------------------------------------------------------------------------


def test_pause_of_the_job_speaking_holds_it_and_the_jobs_behind_it(rig: Rig) -> None:
    job = rig.speaking("A", "message")
    behind = rig.submit("B", "message")
    assert rig.scheduler.pause(Target(job=job.job_id)) == [job.job_id]
    assert rig.events.of(job.job_id) == ["begin", "sentence", "paused"] and job.paused
    assert rig.scheduler.pause_state() == {"all": False, "clients": [], "jobs": [job.job_id]}
    rig.release("A")
    wait_until(lambda: rig.player.holds_end_of(job.job_id))
    assert rig.events.of(behind.job_id) == [], "the paused job keeps the device"
    assert rig.scheduler.resume(Target(job=job.job_id)) == [job.job_id]
    assert rig.ends(job, behind) == [["begin", "sentence", "paused", "resumed", "end"], SAID]
    assert not job.paused and job.state is JobState.DONE
    assert rig.scheduler.pause_state()["jobs"] == []


def test_pause_of_a_waiting_job_skips_it_until_resume(rig: Rig) -> None:
    first = rig.speaking("A", "message")
    paused = rig.submit("B", "message")
    after = rig.submit("C", "message")
    assert rig.scheduler.pause(Target(job=paused.job_id)) == [paused.job_id]
    rig.release("A")
    assert rig.ends(first, after) == [SAID, SAID]
    assert rig.events.of(paused.job_id) == [] and paused.state is JobState.QUEUED
    assert rig.scheduler.resume(Target(job=paused.job_id)) == [paused.job_id]
    assert rig.ends(paused) == [SAID]
    assert rig.begun() == _ids(first, after, paused)


def test_pause_of_a_client_holds_its_jobs_and_lets_others_speak(rig: Rig) -> None:
    assert rig.scheduler.pause(Target(client="a")) == []
    held = rig.submit("A", "message", client="a")  # a later job of the client is held too
    other = rig.submit("B", "message", client="b")
    rig.start()
    assert rig.ends(other) == [SAID]
    assert rig.events.of(held.job_id) == []
    assert rig.scheduler.pause_state()["clients"] == ["a"]
    with pytest.raises(NotPaused):
        rig.scheduler.resume(Target(client="b"))
    with pytest.raises(NotPaused):  # a client's pause ends by client, not by its job
        rig.scheduler.resume(Target(job=held.job_id))
    assert rig.scheduler.resume(Target(client="a")) == [held.job_id]
    assert rig.ends(held) == [SAID]


def test_pause_of_a_client_holds_its_job_speaking(rig: Rig) -> None:
    job = rig.speaking("A", "text", client="a")
    assert rig.scheduler.pause(Target(client="a")) == [job.job_id]
    rig.events.wait(job.job_id, "paused")
    rig.release("A")
    wait_until(lambda: rig.player.holds_end_of(job.job_id))
    assert rig.scheduler.resume(Target(client="a")) == [job.job_id]
    assert rig.ends(job) == [["begin", "sentence", "paused", "resumed", "end"]]


def test_pause_of_everything_holds_later_jobs_and_drops_notifications_and_progress(
    rig: Rig,
) -> None:
    job = rig.speaking("A", "text", client="a")
    assert rig.scheduler.pause(Target()) == [job.job_id]
    rig.release("A")
    wait_until(lambda: rig.player.holds_end_of(job.job_id))
    notification = rig.submit("N", "notification", client="b")
    progress = rig.submit("P", "progress", client="b")
    message = rig.submit("M", "message", client="b")
    assert rig.events.of(notification.job_id) == DROPPED
    assert rig.reason(notification) == "notification not said: its speech is paused"
    assert rig.events.of(progress.job_id) == DROPPED
    assert rig.reason(progress) == "progress not said: its speech is paused"
    assert not job.cancel.cancelled, "a held message silences nothing"
    assert rig.scheduler.pause_state()["all"] is True
    assert rig.scheduler.resume(Target()) == [job.job_id, message.job_id]
    assert rig.ends(job, message) == [["begin", "sentence", "paused", "resumed", "end"], SAID]
    assert rig.scheduler.pause_state() == {"all": False, "clients": [], "jobs": []}


def test_resume_without_a_matching_pause_is_not_paused(rig: Rig) -> None:
    with pytest.raises(NotPaused):
        rig.scheduler.resume(Target())
    with pytest.raises(NotPaused):
        rig.scheduler.resume(Target(client="a"))
    job = rig.submit("A", "message")
    with pytest.raises(NotPaused):
        rig.scheduler.resume(Target(job=job.job_id))


def test_resume_of_an_unknown_job_is_unknown_job(rig: Rig) -> None:
    """Issue 16 finding 4: docs/protocol.md says `unknown-job` for a job id the daemon does not
    know, for `resume` as for `pause`, `stop` and `cancel`; it answered `not-paused`."""
    with pytest.raises(UnknownJob) as raised:
        rig.scheduler.resume(Target(job="nope"))
    assert raised.value.code == "unknown-job"
    rig.scheduler.pause(Target())
    with pytest.raises(UnknownJob):  # even while something is paused
        rig.scheduler.resume(Target(job="nope"))


def test_pause_of_an_unknown_job_is_unknown_job_and_of_an_ended_one_pauses_nothing(
    rig: Rig,
) -> None:
    with pytest.raises(UnknownJob):
        rig.scheduler.pause(Target(job="nope"))
    job = rig.submit("A")
    rig.start()
    rig.ends(job)
    assert rig.scheduler.pause(Target(job=job.job_id)) == []
    assert rig.scheduler.pause_state()["jobs"] == []


# -- stop and cancel ---------------------------------------------------------------------------


def test_stop_of_the_job_speaking_cuts_it_and_the_queue_goes_on(rig: Rig) -> None:
    job = rig.speaking("A", "message")
    behind = rig.submit("B", "message")
    assert rig.scheduler.stop(Target(job=job.job_id)) == [job.job_id]
    assert rig.ends(job, behind) == [CUT, SAID]
    assert rig.reason(job) == "stopped" and rig.player.flushes == 1
    assert job.state is JobState.STOPPED


def test_stop_of_a_waiting_job_drops_it(rig: Rig) -> None:
    job = rig.speaking("A", "message")
    waiting = rig.submit("B", "message")
    assert rig.scheduler.stop(Target(job=waiting.job_id)) == [waiting.job_id]
    assert rig.events.of(waiting.job_id) == DROPPED
    assert rig.reason(waiting) == "stopped before it started"
    assert not job.cancel.cancelled and rig.player.flushes == 0
    rig.release("A")
    assert rig.ends(job) == [SAID]


def test_stop_of_a_client_cuts_its_job_speaking_and_keeps_its_waiting_jobs(rig: Rig) -> None:
    speaking = rig.speaking("A1", "message", client="a")
    mine = rig.submit("A2", "message", client="a")
    theirs = rig.submit("B", "message", client="b")
    assert rig.scheduler.stop(Target(client="b")) == [], "b has nothing speaking"
    assert rig.scheduler.stop(Target(client="a")) == [speaking.job_id]
    assert rig.ends(speaking, mine, theirs) == [CUT, SAID, SAID]
    assert rig.begun() == _ids(speaking, mine, theirs)


def test_cancel_of_a_client_cuts_its_job_speaking_and_drops_its_waiting_jobs(rig: Rig) -> None:
    speaking = rig.speaking("A1", "message", client="a")
    mine = rig.submit("A2", "message", client="a")
    theirs = rig.submit("B", "message", client="b")
    assert rig.scheduler.cancel(Target(client="a")) == [speaking.job_id, mine.job_id]
    assert rig.ends(speaking, mine, theirs) == [CUT, DROPPED, SAID]
    assert rig.reason(mine) == "stopped before it started"


def test_cancel_of_a_job_is_a_stop_of_it(rig: Rig) -> None:
    job = rig.speaking("A", "message")
    assert rig.scheduler.cancel(Target(job=job.job_id)) == [job.job_id]
    assert rig.ends(job) == [CUT]


def test_stop_of_everything_cuts_the_job_speaking_and_the_queue_goes_on(rig: Rig) -> None:
    speaking = rig.speaking("A", "message", client="a")
    waiting = rig.submit("B", "message", client="b")
    assert rig.scheduler.stop(Target()) == [speaking.job_id]
    assert rig.ends(speaking, waiting) == [CUT, SAID]


def test_cancel_of_everything_cuts_and_drops_every_job(rig: Rig) -> None:
    speaking = rig.speaking("A", "message", client="a")
    one = rig.submit("B", "message", client="b")
    two = rig.submit("C", "message", client="c")
    assert rig.scheduler.cancel(Target()) == _ids(speaking, one, two)
    assert rig.ends(speaking, one, two) == [CUT, DROPPED, DROPPED]
    wait_until(lambda: rig.scheduler.queue_length() == 0)
    counters = rig.scheduler.counters
    assert counters == {"accepted": 3, "done": 0, "stopped": 3, "failed": 0}


def test_stop_of_an_unknown_job_is_unknown_job_and_of_an_ended_one_stops_nothing(
    rig: Rig,
) -> None:
    with pytest.raises(UnknownJob):
        rig.scheduler.stop(Target(job="nope"))
    with pytest.raises(UnknownJob):
        rig.scheduler.cancel(Target(job="nope"))
    job = rig.submit("A")
    rig.start()
    rig.ends(job)
    assert rig.scheduler.stop(Target(job=job.job_id)) == []
    assert rig.scheduler.cancel(Target(job=job.job_id)) == []
    assert rig.events.of(job.job_id) == SAID


def test_a_stopped_job_can_be_followed_by_the_next_with_the_voice_still_there(rig: Rig) -> None:
    first = rig.speaking("A", "message")
    rig.scheduler.stop(Target(job=first.job_id))
    rig.ends(first)
    second = rig.submit("B", "message")
    assert rig.ends(second) == [SAID]
    assert rig.source.texts == ["A", "B"]


class _SilentEndPlayer(FakePlayer):
    """A player that never reports a job played, even when flushed (a device that hung)."""

    def end_job(self, job_id: str) -> None:
        self.hook("end_job")

    def flush(self) -> None:
        self.flushes += 1


def test_a_stop_ends_a_job_whose_last_sample_never_plays() -> None:
    # The scheduler sleeps until the player reports the job played; a stop must wake it
    # without a periodic poll.
    rig = Rig()
    rig.player = _SilentEndPlayer()
    rig.scheduler = Scheduler(rig.source, rig.player, rig.events, max_queue=16)
    rig.player.scheduler = rig.scheduler
    try:
        job = rig.submit("A", "message")
        rig.start()
        rig.events.wait(job.job_id, "sentence")
        assert job.state is JobState.SPEAKING  # its audio is queued; `played` never comes
        assert rig.scheduler.stop(Target(job=job.job_id)) == [job.job_id]
        assert rig.ends(job) == [CUT]
        assert job.state is JobState.STOPPED
    finally:
        rig.close()
