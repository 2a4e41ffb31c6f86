"""Errors with stable codes. The daemon's protocol layer turns each into an error reply."""

from __future__ import annotations

from typing import ClassVar


class UtterdError(Exception):
    """Base of every error utterd reports to a client; `code` is stable across releases."""

    code: ClassVar[str] = "internal-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownVoice(UtterdError):
    """The request names a voice id that no voice folder or package provides."""

    code = "unknown-voice"


class UnknownSpeaker(UtterdError):
    """The voice exists but has no speaker of that name or id."""

    code = "unknown-speaker"


class InvalidParameter(UtterdError):
    """A synthesis parameter is out of its range (rate, volume, ...)."""

    code = "invalid-value"


class VoiceLoadError(UtterdError):
    """A voice's model or config could not be loaded (missing, corrupt, wrong inputs)."""

    code = "voice-load-failed"


class SynthesisError(UtterdError):
    """The engine failed while synthesizing a request."""

    code = "synthesis-failed"


class Cancelled(UtterdError):
    """The job's cancellation token was set; raised between pieces of work."""

    code = "cancelled"


class NothingToSay(UtterdError):
    """The text holds nothing the voice can say (only symbols, emoji, or another script)."""

    code = "nothing-to-say"


class PhonemizerFailed(UtterdError):
    """The phonemizer crashed or hung on this text; it was restarted and other jobs go on."""

    code = "phonemizer-failed"


class AudioTooLong(UtterdError):
    """The text produced more audio than its length allows (`limits` in docs/protocol.md)."""

    code = "audio-too-long"


class PhonemesUnsupported(UtterdError):
    """The voice cannot say phonemes given in the request (`Voice.supports_phonemes` is False)."""

    code = "phonemes-unsupported"
