"""Cache key: every part changes the digest, equal parts agree, normalization is sound."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from utterd.daemon.cache.key import (
    KEY_SCHEMA_VERSION,
    NORMALIZER_VERSION,
    CacheKeyParts,
    FileHasher,
    ModelHashError,
    front_end_stamp,
    normalize_text,
    voice_model_files,
)
from utterd.models.errors import UnknownSpeaker
from utterd.models.text.guard import GUARD_VERSION
from utterd.models.voice import SynthesisParams, VoiceInfo

_WHITESPACE = [" ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "  \n\t "]

texts = st.text(min_size=1, max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

parts_strategy = st.builds(
    CacheKeyParts,
    text=texts,
    voice_id=st.text(min_size=1, max_size=20),
    model_sha256=hex64,
    speaker_id=st.none() | st.integers(0, 1000),
    rate=finite,
    volume=finite,
    deterministic=st.booleans(),
    sample_rate_hz=st.integers(8000, 96000),
    backend=st.sampled_from(["onnxruntime", "openvino"]),
    precision=st.sampled_from(["fp32", "int8", "fp16"]),
    threads=st.integers(1, 64),
    sample_format=st.sampled_from(["s16le", "f32le"]),
    engine_version=st.text(max_size=20),
    other_params=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=2).map(
        tuple
    ),
    normalizer_version=st.integers(1, 5),
    schema_version=st.integers(1, 5),
)


def _other_value(name: str, value: Any, draw: st.DrawFn) -> Any:
    """A value for field `name` that differs from `value` (after text normalization)."""
    if name == "text":
        return draw(texts.filter(lambda t: normalize_text(t) != normalize_text(value)))
    if name == "speaker_id":
        return draw((st.none() | st.integers(0, 1000)).filter(lambda v: v != value))
    if name == "other_params":
        return value + (("x", repr(draw(st.integers()))),)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + draw(st.integers(1, 100))
    if isinstance(value, float):
        return draw(finite.filter(lambda v: repr(v) != repr(value)))
    assert isinstance(value, str)
    return draw(st.text(max_size=30).filter(lambda v: v != value))


@st.composite
def parts_and_changed(draw: st.DrawFn) -> tuple[CacheKeyParts, CacheKeyParts, str]:
    parts = draw(parts_strategy)
    name = draw(st.sampled_from([f.name for f in dataclasses.fields(CacheKeyParts)]))
    changed = dataclasses.replace(parts, **{name: _other_value(name, getattr(parts, name), draw)})
    return parts, changed, name


@given(parts_and_changed())
@settings(max_examples=400)
def test_any_change_to_any_part_changes_the_digest(
    case: tuple[CacheKeyParts, CacheKeyParts, str],
) -> None:
    parts, changed, name = case
    assert parts.digest() != changed.digest(), f"changing {name} kept the digest"


@given(parts_strategy)
def test_equal_parts_give_equal_digests(parts: CacheKeyParts) -> None:
    copy = dataclasses.replace(parts)
    assert copy.digest() == parts.digest()
    assert len(parts.digest()) == 64
    assert int(parts.digest(), 16) >= 0


def _respace(text: str, draw: st.DrawFn) -> str:
    """Same words, different whitespace runs and decomposed characters."""
    words = text.split()
    seps = [draw(st.sampled_from(_WHITESPACE)) for _ in range(len(words) + 1)]
    body = "".join(s + w for s, w in zip(seps, words, strict=False)) + seps[-1]
    return unicodedata.normalize("NFD", body) if draw(st.booleans()) else body


@st.composite
def equivalent_texts(draw: st.DrawFn) -> tuple[str, str]:
    text = draw(st.text(min_size=1, max_size=40))
    return text, _respace(text, draw)


@given(equivalent_texts(), parts_strategy)
def test_normalization_equivalent_texts_share_a_digest(
    pair: tuple[str, str], parts: CacheKeyParts
) -> None:
    a, b = pair
    assert normalize_text(a) == normalize_text(b)
    assert (
        dataclasses.replace(parts, text=a).digest() == dataclasses.replace(parts, text=b).digest()
    )


@given(st.text(max_size=60))
def test_normalize_is_idempotent_and_trimmed(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip()
    assert "  " not in once
    assert not any(c.isspace() and c != " " for c in once)
    assert unicodedata.is_normalized("NFC", once)


def test_normalize_examples() -> None:
    assert normalize_text("  Battery\u00a0 low.\n") == "Battery low."
    assert normalize_text("Cafe\u0301") == "Caf\u00e9"
    # Case and punctuation change the speech, so they stay.
    assert normalize_text("US") != normalize_text("us")
    assert normalize_text("Stop.") != normalize_text("Stop!")


def test_versions_are_positive_integers() -> None:
    assert KEY_SCHEMA_VERSION >= 1 and NORMALIZER_VERSION >= 1


# --- for_request ---------------------------------------------------------------------------------

MULTI = VoiceInfo(
    voice_id="en_US-multi-medium",
    family="piper",
    language="en-US",
    sample_rate_hz=22050,
    speakers=("alice", "bob"),
)


def _for(text: str = "Hello.", **params: Any) -> CacheKeyParts:
    return CacheKeyParts.for_request(
        text,
        MULTI,
        SynthesisParams(**params),
        model_sha256="0" * 64,
        backend="onnxruntime",
        precision="fp32",
        threads=2,
    )


def test_for_request_keys_every_synthesis_param() -> None:
    # Every SynthesisParams field has a named key field today; a new one lands in other_params.
    assert _for().other_params == ()
    base = _for().digest()
    assert _for(rate=1.1).digest() != base
    assert _for(volume=0.5).digest() != base
    assert _for(deterministic=True).digest() != base
    assert _for(speaker="bob").digest() != base


def test_for_request_resolves_speaker_names_to_ids() -> None:
    assert _for(speaker="bob").digest() == _for(speaker=1).digest() == _for(speaker="1").digest()
    with pytest.raises(UnknownSpeaker):
        _for(speaker="carol")


def test_for_request_normalizes_text() -> None:
    assert _for("  Hello. ").text == "Hello."
    assert _for("  Hello.\n").digest() == _for("Hello.").digest()


def test_unknown_synthesis_fields_are_keyed_generically() -> None:
    @dataclasses.dataclass(frozen=True)
    class FutureParams(SynthesisParams):
        noise_scale: float = 0.667

    parts = CacheKeyParts.for_request(
        "Hi.",
        MULTI,
        FutureParams(noise_scale=0.3),
        model_sha256="0" * 64,
        backend="onnxruntime",
        precision="fp32",
        threads=2,
    )
    assert parts.other_params == (("noise_scale", "0.3"),)
    default = dataclasses.replace(parts, other_params=(("noise_scale", "0.667"),))
    assert parts.digest() != default.digest()


# --- model file hashing --------------------------------------------------------------------------


def test_file_hasher_hashes_the_file_and_remembers_it(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"weights" * 1000)
    hasher = FileHasher()
    assert hasher.sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    # Remembered: a read-protected file would fail to hash again, so a hit proves the memo
    # (root ignores modes, so the memo is checked through its dictionary instead).
    assert len(hasher._known) == 1
    hasher.sha256(model)
    assert len(hasher._known) == 1


def test_file_hasher_rehashes_a_changed_model(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"A" * 4096)
    hasher = FileHasher()
    first = hasher.sha256(model)
    stat = model.stat()
    # Same size, same mtime: only the inode (a replaced file) or ctime tells them apart.
    replacement = tmp_path / "new.onnx"
    replacement.write_bytes(b"B" * 4096)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, model)
    assert model.stat().st_mtime_ns == stat.st_mtime_ns
    second = hasher.sha256(model)
    assert second != first
    assert second == hashlib.sha256(b"B" * 4096).hexdigest()


def test_file_hasher_digest_covers_every_declared_file(tmp_path: Path) -> None:
    model, config = tmp_path / "v.onnx", tmp_path / "v.onnx.json"
    model.write_bytes(b"model")
    config.write_text('{"inference": {"noise_scale": 0.667}}')
    hasher = FileHasher()
    info = VoiceInfo("v", "f", "en-US", 22050, model_path=model, model_files=(model, config))
    assert voice_model_files(info) == (model, config)
    before = hasher.digest(voice_model_files(info))
    config.write_text('{"inference": {"noise_scale": 0.5}}')
    assert hasher.digest(voice_model_files(info)) != before


def test_model_files_default_to_the_model_path(tmp_path: Path) -> None:
    model = tmp_path / "v.onnx"
    assert voice_model_files(VoiceInfo("v", "f", "en-US", 22050, model_path=model)) == (model,)
    assert voice_model_files(VoiceInfo("v", "f", "en-US", 22050)) == ()


def test_front_end_stamp_covers_the_front_end_and_the_guard() -> None:
    assert front_end_stamp("1.8.0") == f"1.8.0+guard{GUARD_VERSION}"
    assert front_end_stamp("1.8.0") != front_end_stamp("1.8.1")
    assert front_end_stamp("") == f"+guard{GUARD_VERSION}"


def test_file_hasher_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelHashError, match="missing.onnx") as info:
        FileHasher().sha256(tmp_path / "missing.onnx")
    assert info.value.code == "model-unreadable"
