"""The priority rules (SSIP) as pure decisions, one test per rule; the end-to-end tests in
test_e2e_scheduler.py check the same rules on a running daemon."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from utterd.daemon.protocol import PRIORITIES, Priority, Speak
from utterd.daemon.speech.priorities import DEFAULT_PRIORITY, admit, effective, rank


@dataclass
class J:
    priority: Priority
    promoted: bool = False
    name: str = ""


def _dropped(admission: object) -> list[str]:
    return [j.name for j, _ in admission.drop]  # type: ignore[attr-defined]


def test_default_is_text_as_in_speech_dispatcher() -> None:
    assert DEFAULT_PRIORITY == "text" == Speak(text="x").priority
    assert PRIORITIES == ("important", "message", "text", "notification", "progress")


def test_order_important_message_text_then_the_rest() -> None:
    ranks = [rank(J(p)) for p in PRIORITIES]
    assert ranks == sorted(ranks) and ranks[0] < ranks[1] < ranks[2] < ranks[3] == ranks[4]
    assert effective(J("progress", promoted=True)) == "message"


@pytest.mark.parametrize("speaking", PRIORITIES)
def test_important_is_never_interrupted_and_interrupts_everything_else(speaking: Priority) -> None:
    for new in PRIORITIES:
        a = admit(J(new), J(speaking), [])
        if speaking == "important":
            assert not a.interrupt_current, new
    a = admit(J("important"), J(speaking), [])
    assert a.interrupt_current == (speaking != "important")


def test_important_postpones_message_and_text_and_drops_notifications() -> None:
    waiting = [J("message", name="m"), J("text", name="t"), J("notification", name="n")]
    a = admit(J("important"), None, waiting)
    assert _dropped(a) == ["n"] and not a.drop_new


def test_message_does_not_interrupt_itself_and_cancels_text_and_lower() -> None:
    assert not admit(J("message"), J("message"), []).interrupt_current
    for speaking in ("text", "notification", "progress"):
        assert admit(J("message"), J(speaking), []).interrupt_current
    waiting = [J("message", name="m"), J("text", name="t"), J("notification", name="n")]
    assert _dropped(admit(J("message"), None, waiting)) == ["t", "n"]


def test_text_replaces_text_speaking_and_waiting_but_waits_for_message() -> None:
    assert admit(J("text"), J("text"), []).interrupt_current
    assert not admit(J("text"), J("message"), []).interrupt_current
    waiting = [J("message", name="m"), J("text", name="t1"), J("text", name="t2")]
    assert _dropped(admit(J("text"), None, waiting)) == ["t1", "t2"]


def test_notification_yields_to_anything_else_and_replaces_itself() -> None:
    for other in ("important", "message", "text", "progress"):
        assert admit(J("notification"), J(other), []).drop_new
        assert admit(J("notification"), None, [J(other)]).drop_new
    a = admit(J("notification"), J("notification"), [J("notification", name="n")])
    assert a.interrupt_current and _dropped(a) == ["n"] and not a.drop_new


def test_progress_interrupts_nothing_but_notifications_and_only_the_latest_waits() -> None:
    for speaking in ("important", "message", "text", "progress"):
        a = admit(J("progress"), J(speaking), [])
        assert not a.interrupt_current and not a.drop_new
    assert admit(J("progress"), J("notification"), []).interrupt_current
    a = admit(J("progress"), J("text"), [J("progress", name="p"), J("notification", name="n")])
    assert sorted(_dropped(a)) == ["n", "p"]


@pytest.mark.parametrize("new", ["important", "message", "text"])
def test_the_last_progress_is_promoted_not_dropped(new: Priority) -> None:
    waiting = [J("progress", name="p")]
    a = admit(J(new), None, waiting)
    assert _dropped(a) == [] and [j.name for j in a.promote] == ["p"]
    promoted = J("progress", promoted=True)
    assert not admit(J("text"), promoted, []).interrupt_current, "it now speaks as a message"
    assert admit(J("important"), promoted, []).interrupt_current
