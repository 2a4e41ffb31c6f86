"""Requests: the `data` object of each request type as a frozen dataclass, and the one table
from type name to dataclass that the parser (codec.py) and docs/protocol.md follow.

What is documented on a field is what is enforced: the parser reads field names, type hints,
defaults and the metadata keys below.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from utterd.daemon.cache.mode import CacheMode
from utterd.daemon.protocol.errors import RequestId
from utterd.daemon.speech.priorities import Priority
from utterd.daemon.speech.text_stream import TextFormat
from utterd.models.voice import (
    MAX_PROSODY_RATIO,
    MAX_RATE,
    MAX_VOLUME,
    MIN_PROSODY_RATIO,
    MIN_RATE,
    SynthesisParams,
)

__all__ = [
    "PAYLOAD_TYPES",
    "REQUEST_TYPES",
    "AudioFormat",
    "CacheClear",
    "CacheWarm",
    "Cancel",
    "Describe",
    "JobQuery",
    "Message",
    "Pause",
    "Ping",
    "Request",
    "Resume",
    "Speak",
    "SpeakChunk",
    "SpeakStart",
    "SpeakStop",
    "Stop",
    "Synthesize",
]

AudioFormat = Literal["wav", "pcm"]
"""`wav`: a complete RIFF/WAVE file. `pcm`: raw signed 16-bit little-endian mono samples."""

RANGE: Final = "range"
"""Field-metadata key: inclusive (low, high) bounds of a number."""

TEXT: Final = "text"
"""Field-metadata key: the field is the text to speak (empty-text and text-too-long apply)."""

PIECE: Final = "piece"
"""Field-metadata key: the field is a piece of a text sent in parts: it may be empty or only
whitespace (a space between two words is a piece), and text-too-long applies."""


@dataclass(frozen=True)
class _SpeechRequest:
    """Fields shared by `speak` and `synthesize`."""

    text: str = field(metadata={TEXT: True})
    """What to say, as plain text or an SSML document (`text_format`); not empty, at most
    `limits.max_text_chars` characters."""

    text_format: TextFormat = "text"
    """`text` (plain text, the default) or `ssml` (an SSML document with a `<speak>` root; the
    subset is in docs/protocol.md)."""

    voice: str | None = None
    """Voice id; None means the configured default voice."""

    speaker: str | int | None = None
    """Speaker name or id (>= 0) of a multi-speaker voice; None means the voice's default."""

    rate: float = field(default=1.0, metadata={RANGE: (MIN_RATE, MAX_RATE)})
    """Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast; 0.25..4.0."""

    volume: float = field(default=1.0, metadata={RANGE: (0.0, MAX_VOLUME)})
    """Linear gain applied to every chunk: 0 is silent, 1.0 unchanged; 0..4.0."""

    pitch: float = field(default=1.0, metadata={RANGE: (MIN_PROSODY_RATIO, MAX_PROSODY_RATIO)})
    """Pitch ratio: 1.0 is the voice's own, 2.0 an octave up; 0.5..2.0. Only for a voice whose
    `describe` entry lists `pitch` under `prosody`; another voice refuses a value other than 1.0
    (`invalid-value`)."""

    energy: float = field(default=1.0, metadata={RANGE: (MIN_PROSODY_RATIO, MAX_PROSODY_RATIO)})
    """Energy ratio the model applies (louder, more emphatic speech; `volume` is a gain on the
    audio): 1.0 is the voice's own; 0.5..2.0. Only for a voice whose `describe` entry lists
    `energy` under `prosody`, as for `pitch`."""

    deterministic: bool = False
    """Synthesize without random noise: the same request gives the same audio."""

    cache: CacheMode = "auto"
    """Phrase cache use: `auto` (replay a hit, store a miss), `refresh` (synthesize anew and
    replace the entry), `off` (neither read nor store)."""

    slots: dict[str, str] | None = None
    """Values for a templated prompt: `text` is then a template such as
    `Your balance is {amount}.`; the fixed parts come from the cache, the slots are synthesized."""

    priority: Priority = "text"
    """How a `speak` job competes with the others (SSIP's rules, docs/protocol.md): `important`,
    `message`, `text` (the default, as in speech-dispatcher), `notification`, `progress`.
    Accepted by `synthesize` too, where it has no effect: a synthesis does not queue."""

    def synthesis_params(self) -> SynthesisParams:
        """The engine's view of this request."""
        return SynthesisParams(
            speaker=self.speaker,
            rate=self.rate,
            volume=self.volume,
            pitch=self.pitch,
            energy=self.energy,
            deterministic=self.deterministic,
        )


@dataclass(frozen=True)
class Speak(_SpeechRequest):
    """Queue text for playback on the sound device. Reply: `queued` with the job id."""


@dataclass(frozen=True)
class SpeakStart:
    """Open a `speak` job whose text follows in `speak-chunk`s and ends with `speak-stop`;
    sentences are spoken as they are complete. Reply: `queued` with the job id."""

    text_format: TextFormat = "text"
    """`text` (plain text, the default) or `ssml`: the chunks are then one SSML document,
    parsed as it arrives (a malformed one fails the chunk that shows it, and the job)."""

    voice: str | None = None
    """Voice id; None means the configured default voice."""

    speaker: str | int | None = None
    """Speaker name or id (>= 0) of a multi-speaker voice; None means the voice's default."""

    rate: float = field(default=1.0, metadata={RANGE: (MIN_RATE, MAX_RATE)})
    """Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast; 0.25..4.0."""

    volume: float = field(default=1.0, metadata={RANGE: (0.0, MAX_VOLUME)})
    """Linear gain applied to every chunk: 0 is silent, 1.0 unchanged; 0..4.0."""

    pitch: float = field(default=1.0, metadata={RANGE: (MIN_PROSODY_RATIO, MAX_PROSODY_RATIO)})
    """Pitch ratio: 1.0 is the voice's own, 2.0 an octave up; 0.5..2.0. Only for a voice whose
    `describe` entry lists `pitch` under `prosody`; another voice refuses a value other than 1.0
    (`invalid-value`)."""

    energy: float = field(default=1.0, metadata={RANGE: (MIN_PROSODY_RATIO, MAX_PROSODY_RATIO)})
    """Energy ratio the model applies (louder, more emphatic speech; `volume` is a gain on the
    audio): 1.0 is the voice's own; 0.5..2.0. Only for a voice whose `describe` entry lists
    `energy` under `prosody`, as for `pitch`."""

    deterministic: bool = False
    """Synthesize without random noise: the same request gives the same audio."""

    cache: CacheMode = "auto"
    """Phrase cache use for each sentence, as for `speak`."""

    priority: Priority = "text"
    """As for `speak`; the rules apply when `speak-start` arrives."""

    def synthesis_params(self) -> SynthesisParams:
        """The engine's view of this request."""
        return SynthesisParams(
            speaker=self.speaker,
            rate=self.rate,
            volume=self.volume,
            pitch=self.pitch,
            energy=self.energy,
            deterministic=self.deterministic,
        )


@dataclass(frozen=True)
class SpeakChunk:
    """More text for a job opened by `speak-start`. Reply: `chunk-queued`."""

    job: str
    """The job id, as returned to `speak-start`."""

    text: str = field(metadata={PIECE: True})
    """The next piece of the text, joined to the previous ones as it is (put the spaces in);
    may be only whitespace. At most `limits.max_text_chars` characters may wait unspoken."""


@dataclass(frozen=True)
class SpeakStop:
    """No more text for a job opened by `speak-start`: its last sentence is complete and the job
    ends once everything is spoken. Reply: `text-closed`."""

    job: str
    """The job id, as returned to `speak-start`."""


@dataclass(frozen=True)
class Synthesize(_SpeechRequest):
    """Synthesize text and send the audio back instead of playing it. Reply: `audio`."""

    format: AudioFormat = "wav"
    """`wav` or `pcm` (raw s16le mono at the voice's rate)."""

    stream: bool = False
    """True: reply with `audio-start`, `audio-chunk`s as they are made, then `audio-stop`."""


@dataclass(frozen=True)
class _Target:
    """Whose speech a `stop`, `cancel`, `pause` or `resume` is about (SSIP's id | self | all)."""

    job: str | None = None
    """One job id. Leave out `job` and `client` for every client's jobs."""

    client: str | None = None
    """`self` for the sender's own jobs, or a client id as events carry it (the hex of a ZeroMQ
    routing id) for that client's jobs; not together with `job`."""


@dataclass(frozen=True)
class Stop(_Target):
    """Silence the speaking job of the target (a named job is also dropped if it waits); the
    queue goes on. Reply: `stopped`."""


@dataclass(frozen=True)
class Cancel(_Target):
    """Like `stop`, and drop the target's waiting jobs as well. Reply: `cancelled`."""


@dataclass(frozen=True)
class Pause(_Target):
    """Pause the target's speech at the next piece boundary, keeping the rest; its waiting (and
    later) jobs wait until `resume`. Reply: `paused`."""


@dataclass(frozen=True)
class Resume(_Target):
    """End a pause made with the same target (no target ends every pause). Reply: `resumed`."""


@dataclass(frozen=True)
class Describe:
    """Ask what the daemon offers (voices, formats, limits). Reply: `info`."""


@dataclass(frozen=True)
class Ping:
    """Check that the daemon answers. Reply: `pong`."""


@dataclass(frozen=True)
class JobQuery:
    """Ask for the status of one job. Reply: `job`."""

    job: str
    """Job id, as returned in `queued`; required."""


@dataclass(frozen=True)
class CacheClear:
    """Remove phrase-cache entries. Reply: `cache-cleared`."""

    voice: str | None = None
    """Only the entries of this voice id; None clears everything."""


@dataclass(frozen=True)
class CacheWarm:
    """Render prompts into the phrase cache in the background. Reply: `cache-warming`."""

    entries: list[str]
    """Pre-warm entries, one prompt each, in the pre-warm syntax of config.yaml
    (`Battery low.` or `voice=en_US-joe-medium rate=1.1 | Battery low.`)."""


Message = (
    Speak
    | SpeakStart
    | SpeakChunk
    | SpeakStop
    | Synthesize
    | Stop
    | Cancel
    | Pause
    | Resume
    | Describe
    | Ping
    | JobQuery
    | CacheClear
    | CacheWarm
)
"""The `data` of any request, decoded."""

REQUEST_TYPES: Final[Mapping[str, type[Message]]] = types.MappingProxyType(
    {
        "speak": Speak,
        "synthesize": Synthesize,
        "speak-start": SpeakStart,
        "speak-chunk": SpeakChunk,
        "speak-stop": SpeakStop,
        "stop": Stop,
        "cancel": Cancel,
        "pause": Pause,
        "resume": Resume,
        "describe": Describe,
        "ping": Ping,
        "job": JobQuery,
        "cache-clear": CacheClear,
        "cache-warm": CacheWarm,
    }
)
"""Request type name → the dataclass of its `data`. The one table the parser and docs follow."""

PAYLOAD_TYPES: Final[frozenset[str]] = frozenset()
"""Request types that may carry a payload frame; none does yet."""


@dataclass(frozen=True)
class Request:
    """One parsed request."""

    type: str
    """The request type, a key of `REQUEST_TYPES`."""

    id: RequestId
    """The client's id, echoed in every reply to this request; None if it sent none."""

    message: Message
    """The decoded `data`."""

    payload: bytes | None = None
    """The payload frame, for types in `PAYLOAD_TYPES`; None otherwise."""
