"""A long hibari piece (LONG_PIECE_FRAMES) decoded a block at a time: what it calls, that its audio
is deterministic whatever the windows and the path, that it is as close to the model's float
arithmetic as one call on the whole piece, and that what it holds does not grow with the piece."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hibari
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from utterd.models import CancelToken, EngineSettings
from utterd.models.engine.stream_windows import StreamPace
from utterd.models.hibari import stream
from utterd.models.hibari.split import SplitSession, open_split
from utterd.models.hibari.stream import (
    BLOCK_FRAMES,
    LONG_PIECE_FRAMES,
    MODEL_OUTPUTS,
    piece_samples,
    stream_ids,
)
from utterd.models.hibari.voice import session_options

HEART_MODEL = Path(hibari.voices.voice_path("heart", download_missing=False))
LONG = (
    "Before you leave the building tonight, please make sure that every window on the ground "
    "floor is closed, the lights in the meeting rooms are switched off, and the alarm panel next "
    "to the main entrance shows a green light."
)
LONGER = (
    "When the storm finally passed over the valley in the early hours of the morning, the farmers "
    "who had spent the whole night watching the river rise along the old stone walls walked slowly "
    "back across the flooded fields toward their houses and barns without saying a single word to "
    "one another about what they had seen."
)


@pytest.fixture(scope="module")
def reference() -> hibari.Hibari:
    return hibari.Hibari(voice="heart", threads=1)


def ids_of(reference: hibari.Hibari, text: str) -> list[int]:
    (phonemes,) = reference.phonemize(text)
    ids: list[int] = reference.ids(phonemes)
    return ids


def frames_of(split: SplitSession, ids: list[int]) -> int:
    feature, _ = split.features(
        {"ids": np.asarray([ids], np.int64), "speed": np.ones(1, np.float32)}
    )
    return int(feature.shape[-1])


def joined(pieces: Iterator[Any]) -> npt.NDArray[np.float32]:
    return np.concatenate([p.samples for p in pieces])


def test_a_long_piece_decodes_in_blocks_with_the_whole_context(
    split: SplitSession, reference: hibari.Hibari, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ids_of(reference, LONG)
    n = frames_of(split, ids)
    assert n > LONG_PIECE_FRAMES
    calls: list[tuple[int, int, int]] = []
    real = split.decode

    def decode(feature: npt.NDArray[Any], start: int, stop: int, cancel: Any = None) -> Any:
        calls.append((start, stop, int(feature.shape[-1])))
        return real(feature, start, stop, cancel)

    monkeypatch.setattr(split, "decode", decode)
    rng = np.random.default_rng(0)
    pieces = list(stream_ids(split, ids, 1.0, rng, CancelToken()))
    assert pieces[-1].end_frame == n and pieces[-1].last
    # Deterministic: blocks of BLOCK_FRAMES in order, each seeing all the piece's frames (its
    # context on both sides), never one call on the whole piece.
    starts = list(range(0, n, BLOCK_FRAMES))
    assert calls == [(s, min(n, s + BLOCK_FRAMES), n) for s in starts]
    calls.clear()
    list(stream_ids(split, ids, 1.0, rng, CancelToken(), decoder_windows=True, exact_noise=False))
    # Not deterministic: the first audio's few frames first (part of the context), then blocks.
    (first_start, first_stop, first_seen), *rest = calls
    assert first_start == 0 and first_stop < 40 and first_seen < n
    assert rest == [(s, min(n, s + BLOCK_FRAMES), n) for s in starts]


def test_a_long_piece_sounds_the_same_whatever_the_windows_and_the_path(
    split: SplitSession, reference: hibari.Hibari
) -> None:
    ids = ids_of(reference, LONG)
    helper_pool = ThreadPoolExecutor(1)
    try:
        runs = []
        for first, window in ((4, 32), (8, 64), (128, 128)):
            rng = np.random.default_rng(3)
            audio = joined(
                stream_ids(
                    split, ids, 1.0, rng, CancelToken(), first_window_frames=first,
                    window_frames=window, pace=StreamPace(),
                )
            )  # fmt: skip
            runs.append((audio, rng.standard_normal()))
        rng = np.random.default_rng(3)
        whole = piece_samples(split, ids, 1.0, rng, CancelToken(), helper_pool)
        runs.append((whole, rng.standard_normal()))
    finally:
        helper_pool.shutdown()
    audio, after = runs[0]
    assert len(audio) == frames_of(split, ids) * stream.HOP
    for other, other_after in runs[1:]:
        assert np.array_equal(other, audio)
        assert other_after == after, "the generator is left where every path leaves it"
    other_seed = joined(stream_ids(split, ids, 1.0, np.random.default_rng(4), CancelToken()))
    assert not np.array_equal(other_seed, audio), "the noise comes from the request's generator"


def float_decoder(split: SplitSession, folder: Path) -> ort.InferenceSession:
    """The cut decoder with its integer projections done in float on the same weights (each
    DynamicQuantizeLinear passes its input through with scale 1, each MatMulInteger becomes a
    MatMul on its weights minus their zero point): the arithmetic the quantized decoder
    approximates."""
    (path,) = folder.glob("**/decoder.onnx")
    model = onnx.load(str(path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = []
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            quantized, scale, zero = node.output
            nodes.append(helper.make_node("Identity", [node.input[0]], [quantized]))
            for name, constant in ((scale, 1.0), (zero, 0.0)):
                tensor = numpy_helper.from_array(np.array(constant, np.float32))
                nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        elif node.op_type == "MatMulInteger":
            weights = values[node.input[1]].astype(np.float32)
            if len(node.input) > 3 and node.input[3]:
                weights = weights - values[node.input[3]].astype(np.float32)
            name = f"{node.input[1]}_float"
            model.graph.initializer.append(numpy_helper.from_array(weights, name))
            nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output)))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def snr_db(reference: npt.NDArray[Any], other: npt.NDArray[Any]) -> float:
    signal = np.sum(reference.astype(np.float64) ** 2)
    return float(10 * np.log10(signal / np.sum((other.astype(np.float64) - reference) ** 2)))


def test_blocks_are_as_close_to_the_float_decoder_as_one_call(
    split: SplitSession, reference: hibari.Hibari, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each call quantizes its activations with its own scale, so blocks differ from one call on
    the whole piece (about 28 dB on the audio without its noise); both are the same INT8
    approximation of the decoder's float arithmetic, and equally close to it."""
    folder = tmp_path_factory.mktemp("split-float")
    part = open_split(
        HEART_MODEL, EngineSettings(threads=1), label="f", options=session_options(folder)
    )
    part.close()
    exact = float_decoder(split, folder)
    ids = ids_of(reference, LONGER)
    cancel = CancelToken()
    feature, f0 = stream._front(split, ids, 1.0, cancel)
    n = int(feature.shape[-1])
    assert n > 2 * BLOCK_FRAMES
    names = list(split.cut.decoder_outputs)
    ideal = dict(zip(names, exact.run(names, {split.cut.feature: feature}), strict=True))
    whole = stream._whole_frames(split, feature, f0, cancel)
    blocks = stream._BlockFrames(split, feature, f0, np.random.default_rng(0), cancel, StreamPace())
    pieces = [blocks.covering(s, min(n, s + BLOCK_FRAMES)) for s in range(0, n, BLOCK_FRAMES)]
    for name in MODEL_OUTPUTS[:-1]:
        ours = np.concatenate([getattr(p, name)[:, : p.frames] for p in pieces], axis=1)
        assert ours.shape == getattr(whole, name).shape
        one_call = snr_db(ideal[name][0], getattr(whole, name))
        in_blocks = snr_db(ideal[name][0], ours)
        assert in_blocks > 30.0 and in_blocks > one_call - 1.0, (name, in_blocks, one_call)


def _peak_traced_bytes(run: Any) -> int:
    tracemalloc.start()
    try:
        for _ in run():
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_what_a_long_piece_holds_does_not_grow_with_it(
    split: SplitSession, reference: hibari.Hibari, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrays a piece's synthesis holds at its peak (numpy's own allocations, as tracemalloc
    sees them; ONNX Runtime's outputs are not among them): with one decoder call they grow with
    the piece (its noise, 4.8 kB a frame, and the pulse train, 1.2 kB), in blocks only by the
    pulse train."""

    def peaks() -> dict[str, int]:
        found = {}
        for label, text in (("long", LONG), ("longer", LONGER)):
            ids = ids_of(reference, text)
            found[label] = _peak_traced_bytes(
                lambda ids=ids: stream_ids(split, ids, 1.0, np.random.default_rng(0), CancelToken())
            )
        return found

    blocks = peaks()
    monkeypatch.setattr(stream, "LONG_PIECE_FRAMES", 10**9)
    whole = peaks()
    n_long, n_longer = (frames_of(split, ids_of(reference, t)) for t in (LONG, LONGER))
    more = n_longer - n_long
    assert more > 200
    # Measured here: one call grows 6.0 kB a frame (noise and pulse train), blocks 1.2-1.6 kB
    # (the pulse train; what else is traced at the peak varies a little between runs).
    grown_whole = whole["longer"] - whole["long"]
    assert grown_whole > 4000 * more
    assert blocks["longer"] - blocks["long"] < 0.4 * grown_whole
    assert blocks["longer"] < 0.75 * whole["longer"]
