"""The phrase cache key: a sha256 over everything that changes the synthesized audio.

A key is content-addressed: two requests share cached audio exactly when every input that can
change a sample is equal. The inputs are collected in `CacheKeyParts`; `digest()` hashes a
canonical JSON encoding of them. Anything not in the key must not change the audio, so when a
new input appears (a synthesis parameter, a precision, a library whose numerics matter), add a
field here and bump `KEY_SCHEMA_VERSION`.

Text normalization (version `NORMALIZER_VERSION`) is deliberately small, so that it can never
change what the engine says: Unicode NFC, every run of Unicode whitespace (spaces, tabs,
newlines, no-break spaces) folded to one space, leading and trailing whitespace removed. Case and
punctuation are kept: "US" and "us", or "Stop." and "Stop!", are spoken differently. The caller
must synthesize the *normalized* text on the cache path, so that the audio stored under a key is
the audio of the text the key names (a newline can be a sentence break for some phonemizers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from utterd.models.errors import UtterdError
from utterd.models.text.guard import GUARD_VERSION
from utterd.models.voice import SynthesisParams, VoiceInfo

__all__ = [
    "KEY_SCHEMA_VERSION",
    "NORMALIZER_VERSION",
    "SAMPLE_FORMAT_S16LE",
    "CacheKeyParts",
    "FileHasher",
    "ModelHashError",
    "front_end_stamp",
    "normalize_text",
    "voice_model_files",
]

KEY_SCHEMA_VERSION: Final = 2
"""Version of the set of fields and their encoding; bumping it orphans every old entry.

2: the audio at rate != 1 is now made by utterd's own code (Piper's retimed durations, hibari's
speed, WSOLA: models/tsm.py), which no key field named; entries cached at another rate under
version 1 had the old durations and must not be replayed."""

NORMALIZER_VERSION: Final = 1
"""Version of `normalize_text`; bump it whenever its output can change for some input."""

SAMPLE_FORMAT_S16LE: Final = "s16le"
"""The only sample format the cache stores: signed 16-bit little-endian mono PCM."""

_KEY_NAMESPACE: Final = "utterd-phrase-cache"
"""Hashed first, so a key can never equal the sha256 of some other utterd structure."""

# SynthesisParams fields with a named CacheKeyParts field. `speaker` is keyed as the resolved
# `speaker_id`, so that a speaker's name and its id share an entry.
_NAMED_PARAM_FIELDS: Final = frozenset({"speaker", "rate", "volume", "deterministic"})

_HASH_BLOCK_BYTES: Final = 1 << 20


class ModelHashError(UtterdError):
    """A voice's model file could not be read to compute the cache key."""

    code = "model-unreadable"


def normalize_text(text: str) -> str:
    """The text as the cache keys it: NFC, whitespace runs folded to one space, trimmed."""
    # str.split() with no argument splits on every Unicode whitespace run, including U+00A0.
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class CacheKeyParts:
    """Everything that changes the audio of one cached phrase; `digest()` is its cache key."""

    text: str
    """The phrase; normalized with `normalize_text` when hashed (store it normalized, too)."""

    voice_id: str
    """Voice id (`en_US-joe-medium`, `hibari-heart`)."""

    model_sha256: str
    """sha256 hex of the voice's model file(s) (`FileHasher.digest`): a retrained or
    re-quantized model with the same voice id must not be served old audio."""

    speaker_id: int | None
    """Resolved speaker id (`VoiceInfo.speaker_id`); None for a single-speaker voice's default."""

    rate: float
    """`SynthesisParams.rate`."""

    volume: float
    """`SynthesisParams.volume` (a fixed gain, applied before the audio is cached)."""

    deterministic: bool
    """`SynthesisParams.deterministic`: noise off (Piper) or a fixed seed (hibari)."""

    sample_rate_hz: int
    """Rate of the cached samples (the voice's own rate; resampling happens after the cache)."""

    backend: str
    """Inference backend (`onnxruntime`, `openvino`): different kernels, different rounding."""

    precision: str
    """Model precision the backend runs (`fp32`, `int8`)."""

    threads: int
    """Resolved intra-op thread count (never 0): hibari's seeded audio differs by thread count
    because the reduction order of the graph's sums changes."""

    sample_format: str = SAMPLE_FORMAT_S16LE
    """Sample encoding of the cached audio."""

    engine_version: str = ""
    """Versions of the code between text and samples (`front_end_stamp`: the family's front-end
    package and the text guard): an upgrade may change phonemes, kernels or DSP. Empty when the
    caller does not track them."""

    other_params: tuple[tuple[str, str], ...] = ()
    """SynthesisParams fields this schema does not name yet, as sorted (name, repr(value)):
    keeps the key complete if the engine grows a parameter before this file does."""

    normalizer_version: int = NORMALIZER_VERSION
    """`NORMALIZER_VERSION` the text was normalized with."""

    schema_version: int = KEY_SCHEMA_VERSION
    """`KEY_SCHEMA_VERSION` of these fields and their encoding."""

    @classmethod
    def for_request(
        cls,
        text: str,
        info: VoiceInfo,
        params: SynthesisParams,
        *,
        model_sha256: str,
        backend: str,
        precision: str,
        threads: int,
        engine_version: str = "",
    ) -> CacheKeyParts:
        """The key parts of one request; resolves the speaker and keys every params field.

        Raises `UnknownSpeaker` (via `VoiceInfo.speaker_id`) for a speaker the voice lacks.
        """
        other = tuple(
            sorted(
                (f.name, repr(getattr(params, f.name)))
                for f in dataclasses.fields(params)
                # At its default a field is left out: a parameter added with a default that
                # keeps the old audio (pitch, energy at 1.0) keeps every old key valid.
                if f.name not in _NAMED_PARAM_FIELDS and getattr(params, f.name) != f.default
            )
        )
        return cls(
            text=normalize_text(text),
            voice_id=info.voice_id,
            model_sha256=model_sha256,
            speaker_id=info.speaker_id(params.speaker),
            rate=params.rate,
            volume=params.volume,
            deterministic=params.deterministic,
            sample_rate_hz=info.sample_rate_hz,
            backend=backend,
            precision=precision,
            threads=threads,
            engine_version=engine_version,
            other_params=other,
        )

    def canonical_bytes(self) -> bytes:
        """The exact bytes hashed: namespace and fields as sorted, compact JSON (UTF-8)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["text"] = normalize_text(self.text)
        fields["other_params"] = [list(pair) for pair in self.other_params]
        # json writes floats with repr(), which round-trips exactly; sort_keys fixes the order.
        return json.dumps(
            [_KEY_NAMESPACE, fields],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")

    def digest(self) -> str:
        """The cache key: sha256 hex (64 lowercase characters) of `canonical_bytes()`."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


def voice_model_files(info: VoiceInfo) -> tuple[Path, ...]:
    """Files whose bytes shape a voice's audio, as its family declares them (model, config)."""
    return info.model_files


def front_end_stamp(front_end_version: str, text_stamp: str = "") -> str:
    """The `engine_version` key field of a voice: its family's front-end version, then the text
    guard's, since the guard decides what reaches the family's front end, then utterd's own
    front end's (`text_stamp`: `FrontEndOptions.stamp`, or `words` for text already resolved
    into words), when there is one."""
    stamp = f"{front_end_version}+guard{GUARD_VERSION}"
    return f"{stamp}+{text_stamp}" if text_stamp else stamp


_StatKey = tuple[str, int, int, int, int, int]


class FileHasher:
    """sha256 of model files, computed once per file version and remembered.

    A file version is (path, device, inode, size, mtime_ns, ctime_ns): replacing or rewriting
    the file changes at least one of them, so a new model is hashed again. Hashing a 60 MB model
    takes a noticeable fraction of a second, so call `digest` when a voice loads, not on the
    first request. Thread-safe; two threads may hash the same new file at once (harmless).
    """

    def __init__(self) -> None:
        self._known: dict[_StatKey, str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        """sha256 hex of one file; raises ModelHashError naming the file if it is unreadable."""
        resolved = str(Path(path).resolve())
        try:
            before = os.stat(resolved)
        except OSError as exc:
            raise ModelHashError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
        stat_key: _StatKey = (
            resolved,
            before.st_dev,
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
            before.st_ctime_ns,
        )
        with self._lock:
            known = self._known.get(stat_key)
        if known is not None:
            return known
        hasher = hashlib.sha256()
        try:
            with open(resolved, "rb") as fh:
                while block := fh.read(_HASH_BLOCK_BYTES):
                    hasher.update(block)
                after = os.fstat(fh.fileno())
        except OSError as exc:
            raise ModelHashError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
        hex_digest = hasher.hexdigest()
        # A file rewritten while we read it gives a hash of neither version: do not remember it.
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == stat_key[3:]:
            with self._lock:
                self._known[stat_key] = hex_digest
        return hex_digest

    def digest(self, paths: Iterable[Path]) -> str:
        """One sha256 hex over several files (in the given order), e.g. `voice_model_files()`."""
        combined = hashlib.sha256()
        for path in paths:
            combined.update(bytes.fromhex(self.sha256(path)))
        return combined.hexdigest()
