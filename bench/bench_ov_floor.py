"""Where an OpenVINO voice's resident memory comes from, before it speaks (issue 3's RSS target).

    python bench/bench_ov_floor.py --model-store DIR [--threads 2]

Run `utterd quantize en_US-joe-medium --model-store DIR` first. Two fresh processes open joe's
OpenVINO INT8 IR (`int8-ov-nncf` from the manifest) with utterd's compile properties
(`backend.openvino_config`): the first with an empty compiled-model cache (compiles the IR),
the second from the cache the first wrote (as a daemon after its first start). Each reports its
peak resident memory (`ru_maxrss`) after every stage:

1. ``imports``: numpy, ONNX Runtime and OpenVINO imported (a daemon imports both);
2. ``plugin``: the CPU plugin loaded, by compiling a one-operator model;
3. ``compiled``: the voice's IR compiled (or imported from the cache);
4. ``one_sentence``: after one inference on 20 phoneme ids (a short prompt).

It also sums the IR's constants by element type, to compare with what compiling adds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import engines as eng

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
JOE_ID: Final = eng.JOE_VOICE_ID
SENTENCE_IDS: Final = 20


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(xml: Path, cache_dir: Path, threads: int) -> dict[str, Any]:
    """The stages in this fresh process; returns their peak RSS in MiB."""
    stages: dict[str, float] = {}
    import numpy as np
    import onnxruntime  # noqa: F401  (a daemon imports it too: its fallback backend)
    import openvino as ov
    import openvino.opset13 as ops
    from utterd.models.engine.backend import SessionOptions, openvino_config
    from utterd.models.voice import EngineSettings

    stages["imports"] = _rss_mib()
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache_dir)})
    config = openvino_config(EngineSettings("openvino", threads), SessionOptions())
    tiny_input = ops.parameter([1, 4], np.float32)
    core.compile_model(ov.Model([ops.relu(tiny_input)], [tiny_input]), "CPU", config)
    stages["plugin"] = _rss_mib()
    started = time.perf_counter()
    compiled = core.compile_model(str(xml), "CPU", config)
    compile_s = time.perf_counter() - started
    stages["compiled"] = _rss_mib()
    ids = np.random.default_rng(0).integers(1, 100, (1, SENTENCE_IDS), dtype=np.int64)
    request = compiled.create_infer_request()
    request.infer(
        {
            "input": ids,
            "input_lengths": np.array([SENTENCE_IDS], np.int64),
            "scales": np.array([0.667, 1.0, 0.8], np.float32),
        }
    )
    stages["one_sentence"] = _rss_mib()
    return {"stages_mib": stages, "compile_s": compile_s}


def constant_bytes(xml: Path) -> dict[str, int]:
    """The IR's constants: bytes per element type."""
    import openvino as ov

    sizes: dict[str, int] = {}
    for op in ov.Core().read_model(str(xml)).get_ops():
        if op.get_type_name() == "Constant":
            kind = op.get_element_type().get_type_name()
            sizes[kind] = sizes.get(kind, 0) + int(op.get_byte_size())
    return sizes


def spawn(xml: Path, cache_dir: Path, threads: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", str(xml), str(cache_dir), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--worker"]:
        print(json.dumps(run_worker(Path(args[1]), Path(args[2]), int(args[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-store", type=Path, required=True, help="store with joe's IR")
    parser.add_argument("--threads", type=int, default=2, help="OpenVINO inference threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    options = parser.parse_args(args)

    from utterd.models.model_store import ModelStore

    store = ModelStore(options.model_store)
    manifest = store.load_manifest(JOE_ID)
    variant = manifest.variant("int8-ov-nncf") if manifest is not None else None
    if variant is None or variant.model_file is None:
        raise SystemExit(
            f"no int8-ov-nncf variant in {store.voice_dir(JOE_ID)}: run utterd quantize"
        )
    xml = store.variant_path(JOE_ID, variant.model_file)
    with tempfile.TemporaryDirectory(prefix="utterd-ov-floor-") as cache:
        anew = spawn(xml, Path(cache), options.threads)
        cached = spawn(xml, Path(cache), options.threads)
    report = {
        "benchmark": "ov_floor",
        "date_utc": eng.utc_now_iso(),
        "command": " ".join(["python", "bench/bench_ov_floor.py", *args]),
        "cpu_model": eng.cpu_model(),
        "git_commit": eng.git_commit(),
        "ir": str(xml),
        "ir_constant_bytes": constant_bytes(xml),
        "compiled_anew": anew,
        "from_cache": cached,
    }
    out = options.out or RESULTS_DIR / f"ov_floor-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"CPU {report['cpu_model']}; IR constants (bytes): {report['ir_constant_bytes']}")
    print(f"{'stage':<14}{'anew MiB':>10}{'cached MiB':>12}")
    for stage, mib in anew["stages_mib"].items():
        print(f"{stage:<14}{mib:>10.0f}{cached['stages_mib'][stage]:>12.0f}")
    print(f"compile: {anew['compile_s']:.2f} s anew, {cached['compile_s']:.2f} s from the cache")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
