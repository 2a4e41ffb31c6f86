"""hibari's acoustic model as front + decoder: exact when whole, within the seam threshold when
the decoder runs on a first window and then the rest, and the whole graph when it cannot be cut."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hibari
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper
from utterd.models import CancelToken, EngineSettings, Session, VoiceLoadError
from utterd.models.engine.backend import open_session
from utterd.models.engine.stream_windows import StreamPace, window_plan
from utterd.models.hibari.split import (
    SplitSession,
    cut_model,
    find_cut,
    open_split,
    separate_heads,
)
from utterd.models.hibari.stream import FIRST_CALL_CONTEXT, HOP, MODEL_OUTPUTS, stream_ids
from utterd.models.hibari.voice import open_decoder_windows, session_options

HEART_MODEL = Path(hibari.voices.voice_path("heart", download_missing=False))
PROMPTS = (
    "Battery low.",
    "Door unlocked.",
    "Checkbox, Remember me, not checked.",
    "Your appointment is confirmed for Tuesday, June 14th, at 10:15.",
    (
        "Before you leave the building tonight, please make sure that every window on the ground "
        "floor is closed."
    ),
)
SEAM_SNR_DB = 30.0
"""The streaming seam threshold (docs/benchmarks.md, tests/test_vits_stream.py): SNR of the
streamed audio against the one-shot audio."""


@pytest.fixture(scope="module")
def reference() -> hibari.Hibari:
    return hibari.Hibari(voice="heart", threads=1)


@pytest.fixture(scope="module")
def prompt_ids(reference: hibari.Hibari) -> list[list[int]]:
    return [reference.ids(ps) for text in PROMPTS for ps in reference.phonemize(text)]


@pytest.fixture(scope="module")
def whole() -> Iterator[Session]:
    opened = open_session(HEART_MODEL, EngineSettings(threads=1), label="hibari-whole")
    yield opened
    opened.close()


def feeds(ids: Sequence[int]) -> dict[str, npt.NDArray[Any]]:
    return {"ids": np.asarray([ids], np.int64), "speed": np.ones(1, np.float32)}


def snr_db(reference: npt.NDArray[Any], other: npt.NDArray[Any]) -> float:
    assert reference.shape == other.shape
    error = float(np.sum((reference.astype(np.float64) - other) ** 2))
    return float(
        10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(error, 1e-30))
    )


def test_the_cut_is_the_decoder_input() -> None:
    cut = find_cut(onnx.load(str(HEART_MODEL)), "heart")
    assert cut.decoder_outputs == MODEL_OUTPUTS[:-1]
    assert cut.front_outputs[1:] == ("f0",)
    # dec_in (kernel 7) and eight ConvNeXt blocks (depthwise kernel 7): 3 + 8 * 3 frames.
    assert cut.context_frames == 27


def test_the_cut_decoder_projects_each_output_on_its_own() -> None:
    _front, decoder, _cut = cut_model(HEART_MODEL.read_bytes(), "heart")
    graph = onnx.load_from_string(decoder).graph
    ops = [node.op_type for node in graph.node]
    assert "Split" not in ops
    assert ops.count("MatMulInteger") == 8 * 2 + len(MODEL_OUTPUTS[:-1])  # blocks, then heads
    produced = {out: node.op_type for node in graph.node for out in node.output}
    assert [produced[o.name] for o in graph.output] == ["Transpose"] * 5


def head_model(between: str | None = None) -> onnx.ModelProto:
    """x [1, frames, 3] → MatMul by [3, 6] → Add bias → (optional `between` op) → Transpose →
    Split into two outputs of 2 and 4 channels: a float head like hibari's quantized one."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "frames", 3])
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, size, "frames"])
        for name, size in (("a", 2), ("b", 4))
    ]
    rng = np.random.default_rng(5)
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((3, 6)).astype(np.float32), "w"),
        onnx.numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias"),
        onnx.numpy_helper.from_array(np.array([2, 4], np.int64), "sizes"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p"]),
        helper.make_node("Add", ["p", "bias"], ["q"]),
    ]
    last = "q"
    if between is not None:
        nodes.append(helper.make_node(between, ["q"], ["r"]))
        last = "r"
    nodes += [
        helper.make_node("Transpose", [last], ["t"], perm=[0, 2, 1]),
        helper.make_node("Split", ["t", "sizes"], ["a", "b"], axis=1),
    ]
    graph = helper.make_graph(nodes, "head", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run_model(model: onnx.ModelProto, x: npt.NDArray[np.float32]) -> list[npt.NDArray[Any]]:
    session = open_session(model.SerializeToString(), EngineSettings(threads=1), label="head")
    try:
        return session.run(None, {"x": x})
    finally:
        session.close()


def test_separate_heads_gives_the_same_outputs_from_one_projection_each() -> None:
    x = np.random.default_rng(6).standard_normal((1, 9, 3)).astype(np.float32)
    model = head_model()
    expected = run_model(model, x)
    assert separate_heads(model)
    assert [n.op_type for n in model.graph.node].count("MatMul") == 2
    assert "Split" not in [n.op_type for n in model.graph.node]
    got = run_model(model, x)
    assert [o.shape for o in got] == [(1, 2, 9), (1, 4, 9)]
    for mine, theirs in zip(got, expected, strict=True):
        assert np.array_equal(mine, theirs)


def test_separate_heads_leaves_another_tail_alone() -> None:
    model = head_model(between="Relu")  # not a projection's cast, scale or bias
    before = model.SerializeToString()
    assert not separate_heads(model)
    assert model.SerializeToString() == before


def test_front_and_decoder_on_all_frames_are_the_whole_graph_bit_for_bit(
    whole: Session, split: SplitSession, prompt_ids: list[list[int]]
) -> None:
    for ids in prompt_ids:
        expected = whole.run(MODEL_OUTPUTS, feeds(ids))
        got = split.run(MODEL_OUTPUTS, feeds(ids))
        for name, mine, theirs in zip(MODEL_OUTPUTS, got, expected, strict=True):
            assert np.array_equal(mine, theirs), name


class DecodeCalls:
    """Records which frames each decoder call of the real split session is asked for."""

    def __init__(self, split: SplitSession, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, int]] = []
        real = split.decode

        def decode(
            feature: npt.NDArray[Any], start: int, stop: int, cancel: Any = None
        ) -> list[npt.NDArray[Any]]:
            self.calls.append((start, stop, int(feature.shape[-1])))
            decoded: list[npt.NDArray[Any]] = real(feature, start, stop, cancel)
            return decoded

        monkeypatch.setattr(split, "decode", decode)


@pytest.mark.parametrize("first_window", [4, 48])
def test_only_the_first_window_differs_from_the_whole_model(
    split: SplitSession,
    prompt_ids: list[list[int]],
    monkeypatch: pytest.MonkeyPatch,
    first_window: int,
) -> None:
    """Same noise (one exact draw) both ways: the difference is the decoder windows alone.

    The first call decodes the first window's frames (its own activation scale); the second
    decodes the whole piece, so every audio frame past the first window's reach is the whole
    model's, bit for bit. With the default first window (4 frames, mostly the leading pause)
    the piece stays far above the seam threshold."""
    counting = DecodeCalls(split, monkeypatch)
    checked = 0
    for ids in prompt_ids:
        one_shot = np.concatenate(
            [
                p.samples
                for p in stream_ids(split, ids, 1.0, np.random.default_rng(5), CancelToken())
            ]
        )
        counting.calls.clear()
        pieces = stream_ids(
            split,
            ids,
            1.0,
            np.random.default_rng(5),
            CancelToken(),
            first_window_frames=first_window,
            window_frames=64,
            decoder_windows=True,
        )
        first = next(pieces)
        frames = one_shot.size // HOP
        # The first audio waited for a few windows' frames (plus 2 for the overlap-add), not
        # for the piece's ...
        plan = window_plan(frames, first_window, 64)
        if len(plan) == 1:
            assert counting.calls == [(0, frames, frames)]
            continue
        # ... of the first two windows (the whole piece's call then has their playing time).
        first_decoded = min(frames, plan[1][1] + 2)
        if first_decoded == frames:
            assert counting.calls == [(0, frames, frames)]
            continue
        # The first call sees a share of the decoder's context after its frames.
        seen = min(frames, first_decoded + int(split.context_frames * FIRST_CALL_CONTEXT))
        assert counting.calls == [(0, first_decoded, seen)]
        streamed = np.concatenate([first.samples, *(p.samples for p in pieces)])
        assert counting.calls == [(0, first_decoded, seen), (0, frames, frames)]
        assert streamed.size == one_shot.size == frames * HOP
        # Output frame m overlap-adds spectral frames m - 1 ... m + 2.
        exact_from = (first_decoded + 1) * HOP
        assert np.array_equal(streamed[exact_from:], one_shot[exact_from:])
        assert not np.array_equal(streamed[:exact_from], one_shot[:exact_from])
        if first_window == 4:
            assert snr_db(one_shot, streamed) >= SEAM_SNR_DB
        checked += 1
    assert checked >= 2


def test_windows_grow_only_after_the_whole_piece_is_decoded(
    split: SplitSession, prompt_ids: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second window's call decodes the whole piece, which the pace's cost figure cannot
    know: the first two windows keep the plan's sizes however large the lead, later ones grow.
    """
    counting = DecodeCalls(split, monkeypatch)
    ids = max(prompt_ids, key=len)
    pace = StreamPace(clock=lambda: 0.0)  # playback far behind: as large as allowed
    pieces = list(
        stream_ids(
            split,
            ids,
            1.0,
            np.random.default_rng(3),
            CancelToken(),
            decoder_windows=True,
            exact_noise=False,
            pace=pace,
        )
    )
    frames = pieces[-1].end_frame
    plan = window_plan(frames, 4, 32)
    assert len(plan) > 3
    assert [(p.start_frame, p.end_frame) for p in pieces[:2]] == plan[:2]
    seen = plan[1][1] + 2 + int(split.context_frames * FIRST_CALL_CONTEXT)
    assert counting.calls == [(0, plan[1][1] + 2, seen), (0, frames, frames)]
    assert len(pieces) < len(plan) and pieces[-1].end_frame == frames and pieces[-1].last
    assert max(p.end_frame - p.start_frame for p in pieces) > 32


def test_a_piece_shorter_than_two_windows_decodes_once(
    split: SplitSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = DecodeCalls(split, monkeypatch)
    pieces = list(
        stream_ids(
            split,
            [0, 50, 0],
            1.0,
            np.random.default_rng(1),
            CancelToken(),
            first_window_frames=64,
            window_frames=64,
            decoder_windows=True,
        )
    )
    frames = counting.calls[0][2]
    assert frames <= 64 + 32  # one window (window_plan merges a short remainder)
    assert counting.calls == [(0, frames, frames)]
    assert len(pieces) == 1 and pieces[0].last


def test_cached_parts_are_reused_and_a_damaged_part_is_cut_again(tmp_path: Path) -> None:
    options = session_options(tmp_path)
    first = open_split(HEART_MODEL, EngineSettings(threads=1), label="heart", options=options)
    first.close()
    (folder,) = tmp_path.glob("hibari-split-*")
    decoder_file = folder / "decoder.onnx"
    written = decoder_file.stat().st_mtime_ns
    again = open_split(HEART_MODEL, EngineSettings(threads=1), label="heart", options=options)
    again.close()
    assert decoder_file.stat().st_mtime_ns == written  # read, not cut again
    # Same size, garbage inside: the size check passes, ONNX Runtime refuses it, the parts are
    # cut again and the voice opens.
    decoder_file.write_bytes(b"\0" * decoder_file.stat().st_size)
    for stale in tmp_path.glob("decoder-*.ort-optimized.onnx"):
        stale.unlink()
    mended = open_split(HEART_MODEL, EngineSettings(threads=1), label="heart", options=options)
    try:
        outputs = mended.run(MODEL_OUTPUTS, feeds([0, 50, 83, 156, 0]))
        assert outputs[0].shape[1] == 601 and np.isfinite(outputs[0]).all()
    finally:
        mended.close()
    assert onnx.load(str(decoder_file)).graph.node  # a real graph again


def attention_only_model() -> bytes:
    """A graph whose only path to the output is a product of two activations (attention-like):
    nothing in it is a frame-local decoder."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "frames"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4])
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "attention", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def test_a_graph_without_a_decoder_cannot_be_cut() -> None:
    with pytest.raises(VoiceLoadError, match="no output is made by a convolutional decoder"):
        cut_model(attention_only_model(), "attention.onnx")
    with pytest.raises(VoiceLoadError, match="not an ONNX graph"):
        cut_model(b"not a model", "garbage.onnx")


def test_a_graph_that_cannot_be_cut_gives_no_decoder_windows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "attention.onnx"
    model.write_bytes(attention_only_model())
    with caplog.at_level(logging.WARNING):
        windows = open_decoder_windows(
            model, EngineSettings(threads=1), label="odd", options=session_options(tmp_path)
        )
    assert windows is None
    assert any("hibari_split_unavailable voice=odd" in r.getMessage() for r in caplog.records)
