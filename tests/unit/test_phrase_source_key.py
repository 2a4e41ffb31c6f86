"""The phrase cache key of a request: built from what the voice and its family declare."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from utterd.daemon.cache.phrase_source import PhraseSource
from utterd.daemon.cache.store import PhraseCache
from utterd.daemon.settings import CacheSettings
from utterd.models.text.frontend import FrontEndOptions
from utterd.models.text.normalize_en import EnglishOptions
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceInfo,
    VoiceRuntime,
)
from utterd.models.voice_store import VoiceStore


class _Voice(Voice):
    """A voice that reports a chosen runtime and says nothing."""

    def __init__(self, info: VoiceInfo, runtime: dict[str, Any]) -> None:
        self.info = info
        self._runtime = runtime

    def stream(
        self,
        text: str,
        params: SynthesisParams,
        cancel: CancelToken,
        *,
        low_latency: bool = True,
    ) -> Iterator[AudioChunk]:
        yield AudioChunk(np.zeros(10, np.float32), self.info.sample_rate_hz)

    def runtime_info(self) -> dict[str, Any]:
        return dict(self._runtime)


def _source() -> PhraseSource:
    engine = EngineSettings(threads=2)
    store = VoiceStore([], [], engine)
    return PhraseSource(store, PhraseCache(None, 1 << 20, 0), CacheSettings(), lambda _: engine)


def _key(source: PhraseSource, voice: Voice) -> str:
    keyed = source.key("Hello there.", voice, SynthesisParams())
    assert keyed is not None
    return keyed[0]


def _info(tmp_path: Path, **changes: Any) -> VoiceInfo:
    model = tmp_path / "m.onnx"
    if not model.exists():
        model.write_bytes(b"model")
    info = VoiceInfo("v", "any-family", "en-US", 22050, model_path=model, front_end_version="1")
    return dataclasses.replace(info, **changes)


def test_the_key_covers_the_declared_front_end_version(tmp_path: Path) -> None:
    source = _source()
    first = _key(source, _Voice(_info(tmp_path), {}))
    assert _key(source, _Voice(_info(tmp_path), {})) == first
    assert _key(source, _Voice(_info(tmp_path, front_end_version="2"), {})) != first


def test_the_key_hashes_every_declared_file(tmp_path: Path) -> None:
    source = _source()
    config = tmp_path / "m.onnx.json"
    config.write_text("{}")
    info = _info(tmp_path)
    declared = dataclasses.replace(info, model_files=(*info.model_files, config))
    before = _key(source, _Voice(declared, {}))
    assert before != _key(source, _Voice(info, {}))
    config.write_text('{"changed": true}')
    assert _key(source, _Voice(declared, {})) != before


def test_the_key_follows_the_runtime_the_voice_reports(tmp_path: Path) -> None:
    source = _source()
    info = _info(tmp_path)
    variant = tmp_path / "m.int8.onnx"
    variant.write_bytes(b"int8")
    plain = _key(source, _Voice(info, {}))
    # What the configured engine implies, reported explicitly, is the same key.
    assert _key(source, _Voice(info, {"backend": "onnxruntime", "threads": 2})) == plain
    assert _key(source, _Voice(info, {"backend": "openvino"})) != plain
    assert _key(source, _Voice(info, {"precision": "int8"})) != plain
    assert _key(source, _Voice(info, {"threads": 1})) != plain
    assert _key(source, _Voice(info, {"model_file": str(variant)})) != plain


def test_runtime_record_reads_the_report() -> None:
    runtime = VoiceRuntime.from_info(
        {"backend": "openvino", "precision": "int8", "threads": 2, "model_file": "/m", "x": 1}
    )
    assert runtime.backend == "openvino"
    assert runtime.precision == "int8"
    assert runtime.threads == 2
    assert runtime.model_file == Path("/m")
    assert runtime.details["x"] == 1
    empty = VoiceRuntime.from_info({"threads": 0, "model_file": ""})
    assert (empty.backend, empty.precision, empty.threads, empty.model_file) == (
        None,
        None,
        None,
        None,
    )


def test_the_key_covers_the_text_front_end_and_its_options(tmp_path: Path) -> None:
    engine = EngineSettings(threads=2)
    store = VoiceStore([], [], engine)

    def key(front_end: FrontEndOptions, *, words: bool = False) -> str:
        source = PhraseSource(
            store, PhraseCache(None, 1 << 20, 0), CacheSettings(), lambda _: engine, front_end
        )
        keyed = source.key(
            "Pay $5 by 10/04.", _Voice(_info(tmp_path), {}), SynthesisParams(), words=words
        )
        assert keyed is not None
        return keyed[0]

    keys = [
        key(FrontEndOptions()),
        key(FrontEndOptions(EnglishOptions(date_order="dmy"))),
        key(FrontEndOptions(EnglishOptions(lexicon={"Pay": "Pey"}))),
        key(FrontEndOptions(phoneme_lexicon={"Pay": "pˈeɪ"})),
        key(FrontEndOptions(own_normalizer=frozenset({"any-family"}))),
        key(FrontEndOptions(), words=True),
    ]
    assert len(set(keys)) == len(keys)
    assert key(FrontEndOptions()) == keys[0]
