"""utterd.models: voices and engines (voice store, Piper VITS runner, hibari, inference backends).

Importing this package loads neither onnxruntime nor piper-tts; they load with the first voice.
"""

from typing import TYPE_CHECKING, Any

from .backend import Session, available_backends, open_session, register_backend
from .errors import (
    Cancelled,
    InvalidParameter,
    SynthesisError,
    UnknownSpeaker,
    UnknownVoice,
    UtterdError,
    VoiceLoadError,
)
from .hibari_family import HibariFamily
from .piper_family import PiperFamily, PiperVitsVoice
from .voice import (
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
from .voice_store import VoiceStore, default_families

if TYPE_CHECKING:
    from .hibari_voice import HibariVoice


def __getattr__(name: str) -> Any:
    # HibariVoice imports hibari and scipy (about 0.2 s): only when someone asks for it.
    if name == "HibariVoice":
        from .hibari_voice import HibariVoice

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
