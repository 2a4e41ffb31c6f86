"""utterd.models: voices and engines (the family interface, the voice store, inference backends).

Each voice family is a folder of its own (`utterd.models.piper`, `utterd.models.hibari`),
reached through `voice_store.default_families`; this package names none of them.

Importing this package loads neither onnxruntime nor piper-tts; they load with the first voice.
"""

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

__all__ = [
    "MAX_RATE",
    "MAX_VOLUME",
    "MIN_RATE",
    "AudioChunk",
    "CancelToken",
    "Cancelled",
    "EngineSettings",
    "InvalidParameter",
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
