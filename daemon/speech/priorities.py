"""Speech priorities with speech-dispatcher's rules (SSIP `SET SELF PRIORITY`): what a new job
does to the job speaking and to the jobs waiting, and in which order the waiting ones speak.

Pure rules over priorities, so they can be read (and tested) apart from threads and audio; the
scheduler applies the decisions. docs/protocol.md states the same rules for client authors.

Order: `important` jobs first, then `message` (and promoted `progress`), then `text`, then
`notification` and `progress`; first come, first served within a rank. When a job arrives:

- `important`: interrupts the speaking job unless it is `important` (an important job is never
  interrupted by priority); drops waiting `notification` jobs; promotes a waiting `progress` job.
  Waiting `message` and `text` jobs stay (postponed).
- `message`: interrupts a speaking `text`, `notification` or `progress` job; drops waiting `text`
  and `notification` jobs; promotes a waiting `progress` job. Waits behind `important` and
  earlier `message` jobs: it never interrupts them (nor itself).
- `text`: the same as `message` (so a new `text` replaces the `text` speaking and every `text`
  waiting: only the latest is said); waits behind `important` and `message` jobs.
- `notification`: dropped at once if a job of another priority is speaking or waiting;
  otherwise it interrupts a speaking `notification` and drops waiting ones (only the latest).
- `progress`: interrupts a speaking `notification` and drops waiting ones; supersedes (drops) a
  waiting `progress` job; then waits for everything else (it interrupts nothing, not even
  another `progress`), so while other speech goes on only the latest of a series waits.
  The last of a series is always said: where `important`, `message` or `text` would drop a
  waiting `progress` job, it is promoted instead: it takes the `message` rank (behind waiting
  `important` and `message` jobs, ahead of `text`) without interrupting anything, and from then
  on is treated as a `message` job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, Protocol, TypeVar, get_args

Priority = Literal["important", "message", "text", "notification", "progress"]
"""A `speak` job's priority, with speech-dispatcher's (SSIP) rules."""

PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)
"""Every priority, most urgent first."""

DEFAULT_PRIORITY: Final[Priority] = "text"
"""Priority of a `speak` that names none: speech-dispatcher's default."""

_RANK: Final[dict[str, int]] = {
    "important": 0,
    "message": 1,
    "text": 2,
    "notification": 3,
    "progress": 3,
}

_INTERRUPTIBLE_BY_TEXT: Final = frozenset({"text", "notification", "progress"})
"""What a new `message` or `text` interrupts (SSIP: "being spoken ... they are canceled")."""


class Prioritized(Protocol):
    """What the rules need of a job."""

    @property
    def priority(self) -> Priority: ...

    @property
    def promoted(self) -> bool: ...


J = TypeVar("J", bound=Prioritized)


def effective(job: Prioritized) -> Priority:
    """The priority a job is treated with now: a promoted `progress` job counts as `message`."""
    return "message" if job.priority == "progress" and job.promoted else job.priority


def rank(job: Prioritized) -> int:
    """Queue rank: lower speaks first."""
    return _RANK[effective(job)]


@dataclass(frozen=True)
class Admission(Generic[J]):
    """What a new job does on arrival."""

    drop_new: bool = False
    """The new job is not spoken at all (a `notification` that yields)."""

    interrupt_current: bool = False
    """The job speaking is stopped for it."""

    drop: tuple[tuple[J, str], ...] = ()
    """Waiting jobs that are dropped, each with the reason its `stopped` event gives."""

    promote: tuple[J, ...] = ()
    """Waiting `progress` jobs that take the `message` rank (the last of a series)."""

    reason: str = ""
    """Why the job speaking is interrupted, or the new job dropped."""


def admit(new: J, current: J | None, waiting: Sequence[J]) -> Admission[J]:
    """Apply the arrival rules of `new`'s priority to the job speaking and the jobs waiting."""
    p = new.priority
    cur = effective(current) if current is not None else None
    if p == "notification":
        if (cur is not None and cur != "notification") or any(
            effective(w) != "notification" for w in waiting
        ):
            return Admission(drop_new=True, reason="notification not said: other speech goes on")
        replaced = "replaced by a newer notification"
        return Admission(
            interrupt_current=cur == "notification",
            drop=tuple((w, replaced) for w in waiting if w.priority == "notification"),
            reason=replaced,
        )
    if p == "progress":
        drop = [
            (w, "dropped for a progress message") for w in waiting if w.priority == "notification"
        ]
        drop += [(w, "superseded by a newer progress") for w in waiting if w.priority == "progress"]
        return Admission(
            interrupt_current=cur == "notification",
            drop=tuple(drop),
            reason="interrupted by a progress message",
        )
    promote = tuple(w for w in waiting if w.priority == "progress" and not w.promoted)
    if p == "important":
        return Admission(
            interrupt_current=cur is not None and cur != "important",
            drop=tuple(
                (w, "dropped for an important message")
                for w in waiting
                if w.priority == "notification"
            ),
            promote=promote,
            reason="interrupted by an important message",
        )
    why = "replaced by a newer text" if p == "text" else "dropped for a message"
    return Admission(
        interrupt_current=cur in _INTERRUPTIBLE_BY_TEXT,
        drop=tuple((w, why) for w in waiting if effective(w) in ("text", "notification")),
        promote=promote,
        reason="interrupted by a newer text" if p == "text" else "interrupted by a message",
    )
