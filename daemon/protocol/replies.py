"""Replies: what the daemon answers on the request socket, one frozen dataclass per reply type.

Each is encoded by `codec.encode_reply` as `{"type": TYPE, "id": ..., "data": {fields}}`; the
fields' order is the order of the keys on the wire. docs/protocol.md (Replies) lists the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from utterd.daemon.protocol.messages import AudioFormat
from utterd.daemon.protocol.wire import OMIT_IF_NONE, SPREAD, WireData

__all__ = [
    "Audio",
    "AudioChunk",
    "AudioStart",
    "AudioStop",
    "CacheCleared",
    "CacheWarming",
    "Cancelled",
    "ChunkQueued",
    "Error",
    "Info",
    "JobStatus",
    "Paused",
    "Pong",
    "Queued",
    "Reply",
    "Resumed",
    "Stopped",
    "TextClosed",
]


class Reply(WireData):
    """Base of every reply."""


@dataclass(frozen=True)
class Pong(Reply):
    """Answer to `ping`."""

    TYPE: ClassVar[str] = "pong"

    version: str
    """The daemon's version."""


@dataclass(frozen=True)
class Info(Reply):
    """Answer to `describe`: what the daemon offers and how it is doing."""

    TYPE: ClassVar[str] = "info"

    name: str
    """Always `utterd`."""

    version: str
    """The daemon's version."""

    state: str
    """Where the daemon is in its life: `starting`, `started`, `stopping`, `stopped`."""

    uptime_s: float
    """Seconds since the server was built."""

    default_voice: str
    """The voice id used when a request names none."""

    voices: Sequence[Mapping[str, Any]]
    """Every voice found: id, family, language, rate, speakers, load state, backend, runtime."""

    backend: Mapping[str, Any]
    """The inference backend as configured, its threads and the CPU."""

    device: Mapping[str, Any]
    """The sound device's state as the player sees it."""

    queue: Mapping[str, Any]
    """The speech queue: length, bound, the job speaking and the pauses in force."""

    counters: Mapping[str, int]
    """Requests, errors, syntheses and jobs counted since start."""

    cache: Mapping[str, Any]
    """Phrase-cache statistics and pre-warm progress."""

    sections: Mapping[str, Any] = field(default_factory=dict, metadata={SPREAD: True})
    """Further top-level sections the service adds (`config`, `faults`, `watchdog`), by name."""


@dataclass(frozen=True)
class Queued(Reply):
    """Answer to `speak` and `speak-start`: the job is accepted."""

    TYPE: ClassVar[str] = "queued"

    job: str
    """The new job's id."""

    voice: str
    """The voice id it speaks with (the default resolved)."""

    priority: str
    """Its priority."""


@dataclass(frozen=True)
class ChunkQueued(Reply):
    """Answer to `speak-chunk`."""

    TYPE: ClassVar[str] = "chunk-queued"

    job: str
    """The streamed job the text was added to."""


@dataclass(frozen=True)
class TextClosed(Reply):
    """Answer to `speak-stop`."""

    TYPE: ClassVar[str] = "text-closed"

    job: str
    """The streamed job whose text is now complete."""


@dataclass(frozen=True)
class Stopped(Reply):
    """Answer to `stop`."""

    TYPE: ClassVar[str] = "stopped"

    jobs: Sequence[str]
    """The jobs stopped or dropped, syntheses cut short included."""


@dataclass(frozen=True)
class Cancelled(Reply):
    """Answer to `cancel`."""

    TYPE: ClassVar[str] = "cancelled"

    jobs: Sequence[str]
    """The job stopped, the waiting jobs dropped and the syntheses cut short."""


@dataclass(frozen=True)
class Paused(Reply):
    """Answer to `pause`."""

    TYPE: ClassVar[str] = "paused"

    jobs: Sequence[str]
    """The jobs now held by a pause."""


@dataclass(frozen=True)
class Resumed(Reply):
    """Answer to `resume`."""

    TYPE: ClassVar[str] = "resumed"

    jobs: Sequence[str]
    """The jobs no longer held."""


@dataclass(frozen=True)
class JobStatus(Reply):
    """Answer to `job`: one job's status."""

    TYPE: ClassVar[str] = "job"

    job: str
    """The job's id."""

    state: str
    """`queued`, `speaking`, `done`, `stopped` or `failed`."""

    error: str | None
    """Why it stopped or failed; None otherwise."""

    first_audio_ms: float | None
    """Request received → first sample handed to the device; None while none was."""

    priority: str
    """Its priority."""

    paused: bool
    """Its audio is held by a pause now."""


@dataclass(frozen=True)
class CacheCleared(Reply):
    """Answer to `cache-clear`."""

    TYPE: ClassVar[str] = "cache-cleared"

    removed: int
    """How many entries were removed."""


@dataclass(frozen=True)
class CacheWarming(Reply):
    """Answer to `cache-warm`."""

    TYPE: ClassVar[str] = "cache-warming"

    entries: int
    """How many prompts were queued for rendering."""


@dataclass(frozen=True)
class AudioStart(Reply):
    """First reply of a streamed `synthesize`: the audio's format, before any audio."""

    TYPE: ClassVar[str] = "audio-start"

    sample_rate_hz: int
    """The voice's sample rate."""

    sample_width: int
    """Bytes per sample: 2 (signed 16-bit little-endian)."""

    channels: int
    """1 (mono)."""

    voice: str
    """The voice id."""

    job: str
    """The synthesis's job id, for `stop` and `cancel`."""

    format: AudioFormat
    """What the `audio-chunk` payloads are: always `pcm` (raw samples), whatever format the
    request asked for, since a stream has no length for a WAV header to carry."""


@dataclass(frozen=True)
class AudioChunk(Reply):
    """One piece of a streamed `synthesize`; the payload frame holds its raw PCM."""

    TYPE: ClassVar[str] = "audio-chunk"

    sentence: int
    """0-based index of the sentence the piece belongs to."""


@dataclass(frozen=True)
class AudioStop(Reply):
    """Last reply of a streamed `synthesize`: the totals."""

    TYPE: ClassVar[str] = "audio-stop"

    duration_s: float
    """Seconds of audio sent, rounded to 0.1 ms."""

    samples: int
    """Samples sent."""

    job: str
    """The synthesis's job id."""

    marks: list[dict[str, Any]] | None = field(default=None, metadata={OMIT_IF_NONE: True})
    """SSML `<mark>`s in document order, each `{name, offset_samples}`; absent when none."""


@dataclass(frozen=True)
class Audio(Reply):
    """The reply of a whole `synthesize`; the payload frame holds the audio."""

    TYPE: ClassVar[str] = "audio"

    sample_rate_hz: int
    """The voice's sample rate."""

    sample_width: int
    """Bytes per sample: 2 (signed 16-bit little-endian)."""

    channels: int
    """1 (mono)."""

    voice: str
    """The voice id."""

    duration_s: float
    """Seconds of audio, rounded to 0.1 ms."""

    samples: int
    """Number of samples."""

    job: str
    """The synthesis's job id."""

    format: AudioFormat
    """The payload: `wav` (a RIFF/WAVE file) or `pcm` (raw samples), as asked."""

    marks: list[dict[str, Any]] | None = field(default=None, metadata={OMIT_IF_NONE: True})
    """SSML `<mark>`s in document order, each `{name, offset_samples}`; absent when none."""


@dataclass(frozen=True)
class Error(Reply):
    """A request failed (or a synthesis ended early); `code` is stable (docs/protocol.md)."""

    TYPE: ClassVar[str] = "error"

    code: str
    """The error code, such as `unknown-voice`."""

    message: str
    """What went wrong, for a person."""

    retry_after_s: float | None = field(default=None, metadata={OMIT_IF_NONE: True})
    """With `rate-limited`: seconds until a request is admitted again; left out otherwise."""

    job: str | None = field(default=None, metadata={OMIT_IF_NONE: True})
    """The synthesis job the error ends; left out for other requests."""
