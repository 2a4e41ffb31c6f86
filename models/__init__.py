"""utterd.models: voices and engines (voice store, Piper VITS runner, hibari, inference backends).

Importing this package loads neither onnxruntime nor piper-tts; they load with the first voice.
"""

from typing import TYPE_CHECKING, Any

from utterd.models.engine.backend import Session, available_backends, open_session, register_backend
from utterd.models.errors import (
    Cancelled,
    InvalidParameter,
    SynthesisError,
    UnknownSpeaker,
    UnknownVoice,
    UtterdError,
    VoiceLoadError,
)
from utterd.models.hibari.family import HibariFamily
from utterd.models.piper.family import PiperFamily, PiperVitsVoice
from utterd.models.voice import (
    MAX_RATE,
    MAX_VOLUME,
    MIN_RATE,
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceFamily,
    VoiceInfo,
    float_to_pcm16,
)
from utterd.models.voice_store import VoiceStore, default_families

if TYPE_CHECKING:
    from utterd.models.hibari.voice import HibariVoice


def __getattr__(name: str) -> Any:
    # HibariVoice imports hibari and scipy (about 0.2 s): only when someone asks for it.
    if name == "HibariVoice":
        from utterd.models.hibari.voice import HibariVoice

        return HibariVoice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_RATE",
    "MAX_VOLUME",
    "MIN_RATE",
    "AudioChunk",
    "CancelToken",
    "Cancelled",
    "EngineSettings",
    "HibariFamily",
    "HibariVoice",
    "InvalidParameter",
    "PiperFamily",
    "PiperVitsVoice",
    "Session",
    "SynthesisError",
    "SynthesisParams",
    "UnknownSpeaker",
    "UnknownVoice",
    "UtterdError",
    "Voice",
    "VoiceFamily",
    "VoiceInfo",
    "VoiceLoadError",
    "VoiceStore",
    "available_backends",
    "default_families",
    "float_to_pcm16",
    "open_session",
    "register_backend",
]
