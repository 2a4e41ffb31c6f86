"""A stop aborts a model run in progress: the worker never waits for a long piece's model call.

A cancel token interrupts what cannot check it itself (`CancelToken.interrupting`); ONNX Runtime
sessions abort a run through `RunOptions.terminate` when the run's token is cancelled.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from utterd.models.engine.backend import open_session
from utterd.models.errors import Cancelled
from utterd.models.voice import CancelToken, EngineSettings

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper


def test_interrupting_calls_back_once_on_cancel_and_not_after_the_block() -> None:
    token = CancelToken()
    calls: list[str] = []
    with token.interrupting(lambda: calls.append("in")):
        pass
    token.cancel()
    assert calls == []  # the block had ended
    with token.interrupting(lambda: calls.append("late")):
        pass
    assert calls == ["late"]  # already cancelled: at once


def _slow_model(path: str, loops: int) -> None:
    """A model whose run takes long: a MatMul repeated in a Loop of `loops` iterations."""
    size = 256
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_in", "w"], ["x_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor(
                "w", TensorProto.FLOAT, [size, size], np.eye(size, dtype=np.float32).ravel()
            )
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "cond", "x"], ["y"], body=body)],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [
            helper.make_tensor("n", TensorProto.INT64, [], [loops]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_a_cancel_aborts_an_onnxruntime_run_in_progress(tmp_path: Path) -> None:
    path = str(tmp_path / "slow.onnx")
    _slow_model(path, loops=4_000)
    session = open_session(path, EngineSettings("onnxruntime", threads=1), label="slow")
    feeds = {"x": np.ones((256, 256), np.float32)}
    started = time.perf_counter()
    session.run(None, feeds, CancelToken())
    whole_s = time.perf_counter() - started
    assert whole_s > 0.3, f"the model is too fast to show anything ({whole_s:.3f} s)"

    token = CancelToken()
    timer = threading.Timer(whole_s / 10, token.cancel)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        session.run(None, feeds, token)
    aborted_s = time.perf_counter() - started
    timer.join()
    assert aborted_s < whole_s / 2, (aborted_s, whole_s)
    # The session is still good for the next run.
    assert session.run(None, feeds)[0].shape == (256, 256)
