"""Events: what the daemon publishes on the PUB socket, one frozen dataclass per kind.

Each is encoded by `codec.encode_event` as two frames, `[kind, {"type": kind, "data": {fields}}]`;
the fields' order is the order of the keys on the wire. docs/protocol.md (Events) lists the same.
The speech queue and the fault registry publish theirs as (kind, data) through the same
publisher; these classes say what those carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from utterd.daemon.protocol.wire import WireData

__all__ = [
    "BeginEvent",
    "ConfigRejectedEvent",
    "ConfigReloadedEvent",
    "DeviceEvent",
    "EndEvent",
    "Event",
    "FailedEvent",
    "FaultClearedEvent",
    "FaultEvent",
    "MarkEvent",
    "PausedEvent",
    "ResumedEvent",
    "SentenceEvent",
    "StoppedEvent",
]


class Event(WireData):
    """Base of every event."""


@dataclass(frozen=True)
class BeginEvent(Event):
    """A job's first audio goes to the sound device."""

    TYPE: ClassVar[str] = "begin"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it (empty for the daemon's greeting)."""

    voice: str
    """The voice id."""

    priority: str
    """Its priority."""


@dataclass(frozen=True)
class SentenceEvent(Event):
    """A sentence of the job starts to play."""

    TYPE: ClassVar[str] = "sentence"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""

    sentence: int
    """0-based index of the sentence in the job."""

    offset_samples: int
    """Samples of the job's audio before the sentence."""

    sample_rate_hz: int
    """Rate of the job's audio (the voice's rate)."""


@dataclass(frozen=True)
class MarkEvent(Event):
    """An SSML `<mark>` of the job is reached: the audio where it falls starts to play."""

    TYPE: ClassVar[str] = "mark"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""

    name: str
    """The mark's `name`, as written."""

    offset_samples: int
    """Samples of the job's audio before the mark."""

    sample_rate_hz: int
    """Rate of the job's audio (the request voice's rate)."""


@dataclass(frozen=True)
class PausedEvent(Event):
    """A pause took effect: the job's audio stopped at a piece boundary."""

    TYPE: ClassVar[str] = "paused"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""


@dataclass(frozen=True)
class ResumedEvent(Event):
    """A paused job's audio goes on."""

    TYPE: ClassVar[str] = "resumed"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""


@dataclass(frozen=True)
class EndEvent(Event):
    """The job's last sample has been handed to the device."""

    TYPE: ClassVar[str] = "end"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""

    first_audio_ms: float | None
    """Request received → first sample handed to the device; None if none was."""


@dataclass(frozen=True)
class StoppedEvent(Event):
    """A job was stopped or interrupted while speaking, or dropped."""

    TYPE: ClassVar[str] = "stopped"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""

    first_audio_ms: float | None
    """Request received → first sample handed to the device; None if none was."""

    reason: str | None
    """Why: the stop, cancel or priority rule that ended it."""


@dataclass(frozen=True)
class FailedEvent(Event):
    """A job failed (voice failed to load, engine error, device lost)."""

    TYPE: ClassVar[str] = "failed"

    job: str
    """The job's id."""

    client: str
    """Hex routing id of the client that sent it."""

    first_audio_ms: float | None
    """Request received → first sample handed to the device; None if none was."""

    code: str | None
    """The error code (docs/protocol.md, Errors)."""

    message: str | None
    """What went wrong, for a person."""


@dataclass(frozen=True)
class DeviceEvent(Event):
    """The sound device was lost or came back."""

    TYPE: ClassVar[str] = "device"

    available: bool
    """The device is open and playing."""

    error: str | None
    """The last error while it is unavailable; None when it is back."""


@dataclass(frozen=True)
class ConfigReloadedEvent(Event):
    """A SIGHUP reload validated the config file and applied it."""

    TYPE: ClassVar[str] = "config-reloaded"

    file: str | None
    """The config file read; None: no file was found, the defaults apply."""

    generation: int
    """The new generation (1 is the config read at start)."""

    changed: Sequence[str]
    """Dotted keys applied at once."""

    restart_required: Sequence[str]
    """Dotted keys whose new value waits for a restart."""

    curve_clients: int | None
    """Client keys on the Curve allow-list after its folder was read again; None without Curve."""


@dataclass(frozen=True)
class ConfigRejectedEvent(Event):
    """A SIGHUP reload found the config (or a client key file) invalid; what is in force stays."""

    TYPE: ClassVar[str] = "config-rejected"

    file: str | None
    """The file at fault (or `command line`)."""

    key: str | None
    """The dotted key at fault; None for a file-level problem such as a YAML syntax error."""

    reason: str
    """The message naming the file, key and value."""

    generation: int
    """The generation still in force."""


@dataclass(frozen=True)
class FaultEvent(Event):
    """A fault appeared (a part is broken while the daemon serves what it can)."""

    TYPE: ClassVar[str] = "fault"

    code: str
    """The fault code, such as `cache-full` (daemon/faults.py)."""

    subject: str
    """What it affects: `device`, `cache` or `voice:<id>`."""

    message: str
    """The last error seen."""

    since: str
    """When it appeared, ISO 8601 UTC."""

    active_s: float
    """Seconds it has been active."""

    reports: int
    """How often it was seen."""


@dataclass(frozen=True)
class FaultClearedEvent(Event):
    """A fault went away by itself."""

    TYPE: ClassVar[str] = "fault-cleared"

    code: str
    """The fault code."""

    subject: str
    """What it affected."""

    message: str
    """The last error seen."""

    since: str
    """When it appeared, ISO 8601 UTC."""

    active_s: float
    """How long it lasted, in seconds."""

    reports: int
    """How often it was seen."""

    cleared: str
    """When it went, ISO 8601 UTC."""
