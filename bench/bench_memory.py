"""Memory and ready time of a real `utterd serve` process, per voice configuration (issue 20).

    python bench/bench_memory.py --model-store DIR [--repeats 3] [--configs default,joe-int8,both]
        [--before TREE] [--text bench/text/heldout_en.txt] [--smaps] [--out FILE]

Run `utterd quantize en_US-joe-medium --model-store DIR --backends onnxruntime` first: the
joe configurations use its ONNX Runtime INT8 variant from DIR's manifest (DIR also keeps the
graphs utterd derives at load, so every start after the first reuses them, as a daemon's does).

Each run starts `python -m utterd.daemon.cli serve` as a fresh process with a config of its own
(a fresh phrase cache folder, so every line is synthesized; the ALSA file sink of
tests/audio_sinks.py as the sound device, which plays faster than real time), then:

- ``ready_s``: process start (just before `exec`) to the first answered `ping`. The request is
  sent as soon as the request socket exists; the daemon answers it once its socket loop runs,
  after the default voice (and any preloaded one) is loaded and warmed up;
- ``idle_rss_mib``: VmRSS one second after ready (nothing asked yet), and ``idle_hwm_mib``:
  VmHWM then (the highest RSS of the start-up);
- ``peak_rss_mib``: VmHWM after every line of the text set was spoken through the API
  (`speak`, one `message` job per line, all queued, waited for until done; with two voices the lines
  alternate between them), i.e. the highest RSS of the process's life; ``after_rss_mib``: VmRSS
  then;
- ``speak_cpu_s``: the daemon's CPU seconds (all threads) from the idle reading to the end, i.e.
  what speaking the text cost (a memory setting that saves RSS by returning memory to the
  kernel at once may cost CPU in page faults: this shows it);
- ``children_rss_mib``: the RSS of the daemon's child processes at the end (the espeak-ng
  phonemizer that Piper voices run in its own process), which is memory the board pays too.

`--after TREE` measures the code in TREE instead of the checkout's (the same layout), e.g. a
commit's files with one's own changes on top, away from other work in progress in the checkout.
`--before TREE` also measures older code: TREE holds `utterd/{daemon,models,quantize}` (e.g.
`git archive <commit> daemon models quantize | tar -x -C TREE/utterd`) and is put first on the
daemon's PYTHONPATH. The two trees alternate in every repeat (order reversed on odd repeats),
after one unmeasured start of each (bytecode written, page cache warm), so the machine's load
falls on both alike. `--tree LABEL=TREE` (repeatable, instead of --before/--after) measures
any number of trees the same way, e.g. one per step of a change, each against the first.
`--set KEY=VALUE` overrides a config key in every run (what-if runs, e.g. a smaller cache RAM tier).
`--smaps` adds, per run, the largest mappings of /proc/PID/smaps at idle
and at the end, summed by file (shared objects) and anonymous memory. `--trace-hwm` samples
VmRSS and VmHWM every 5 ms while the text is spoken and records, per run, every rise of the
high-water mark by more than 1.5 MiB within one sample (seconds into the text, before, after):
where a peak comes from, and whether two runs' peaks differ by one burst.

Figures are the median over repeats with the range; ratios are after / before of the medians.
Writes JSON to bench/results/ and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Final, Self

import yaml

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
sys.path.insert(0, str(REPO_DIR / "tests"))

from audio_sinks import file_sink_env
from utterd.daemon.client import Client, NotRunning

DEFAULT_TEXT: Final = BENCH_DIR / "text" / "heldout_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
HIBARI: Final = "hibari-heart"
JOE: Final = "en_US-joe-medium"
IDLE_SETTLE_S: Final = 1.0
"""Wait after ready before the idle reading (background start-up work settles)."""

CONFIGS: Final[dict[str, dict[str, Any]]] = {
    "default": {"voices": {"default": HIBARI}},
    "joe-int8": {"voices": {"default": JOE, "backends": {JOE: "onnxruntime"}}},
    "both": {"voices": {"default": HIBARI, "preload": [JOE], "backends": {JOE: "onnxruntime"}}},
}
"""Voice configurations: the default voice alone, joe (INT8 on ONNX Runtime) alone, both."""

VOICES_SPOKEN: Final = {"default": (HIBARI,), "joe-int8": (JOE,), "both": (HIBARI, JOE)}
METRICS: Final = (
    "ready_s",
    "idle_rss_mib",
    "idle_hwm_mib",
    "peak_rss_mib",
    "after_rss_mib",
    "children_rss_mib",
    "speak_cpu_s",
)


def read_status_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_rss_kib(pid: int) -> int:
    """Summed VmRSS of the direct children of `pid`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in children:
            try:
                total += read_status_kib(int(child)).get("VmRSS", 0)
            except (OSError, ValueError):
                continue
    return total


def smaps_by_mapping(pid: int, top: int = 15) -> list[tuple[str, int]]:
    """Rss (KiB) of /proc/PID/smaps summed per mapped file, anonymous memory as one row."""
    sizes: dict[str, int] = defaultdict(int)
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5] if len(head) == 6 else "[anon]"
        elif line.startswith("Rss:"):
            sizes[name] += int(line.split()[1])
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:top]


def daemon_env(tmp: Path, tree: Path | None) -> dict[str, str]:
    env, _sink = file_sink_env(tmp)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def write_config(
    tmp: Path, name: str, model_store: Path, overrides: dict[str, Any] | None = None
) -> Path:
    cfg: dict[str, Any] = {
        "server": {"runtime_dir": str(tmp / "run")},
        "voices": {"model_store": str(model_store), "folders": [str(tmp / "voices")]},
        "cache": {"dir": str(tmp / "phrases")},
        "limits": {"max_text_chars": 5000},
        "log_level": "INFO",
    }
    for key, value in CONFIGS[name].items():
        cfg[key] = {**cfg.get(key, {}), **value}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        target = cfg.setdefault(section, {}) if section else cfg
        target[key] = value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_ready(
    proc: subprocess.Popen[bytes], sock: Path, started: float, timeout_s: float
) -> float:
    """Seconds from `started` to the first answered ping."""
    deadline = started + timeout_s
    while not sock.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        if time.perf_counter() > deadline:
            raise RuntimeError("no request socket")
        time.sleep(0.002)
    with Client(f"ipc://{sock}", timeout_s=timeout_s) as client:
        client.request("ping")
    return time.perf_counter() - started


def speak_all(sock: Path, lines: list[str], voices: tuple[str, ...]) -> None:
    """Queue every line (voices alternating) and wait until every job is over."""
    with Client(f"ipc://{sock}", timeout_s=60.0) as client:
        jobs = []
        for index, line in enumerate(lines):
            header, _ = client.request(
                "speak",
                # `message` jobs queue behind each other (a `text` job replaces the one speaking).
                {"text": line, "voice": voices[index % len(voices)], "priority": "message"},
            )
            jobs.append(header["data"]["job"])
        for job in jobs:
            deadline = time.monotonic() + 600.0
            while True:
                header, _ = client.request("job", {"job": job})
                state = header["data"]["state"]
                if state in ("done", "stopped", "failed"):
                    if state != "done":
                        raise RuntimeError(f"job {job} {state}: {header['data']}")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job} did not finish")
                time.sleep(0.05)


HWM_SAMPLE_S: Final = 0.005
HWM_JUMP_MIB: Final = 1.5
"""`--trace-hwm`: the sampling period, and the smallest rise of VmHWM between two samples
that is recorded."""


class HwmTrace:
    """Rises of a process's VmHWM while it works, sampled on a thread of the bench."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.jumps: list[tuple[float, float, float]] = []
        """(seconds since start, VmHWM before, VmHWM after) in MiB, for each rise."""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.perf_counter()
        previous = read_status_kib(self._pid)["VmHWM"] / 1024
        while not self._stop.wait(HWM_SAMPLE_S):
            hwm = read_status_kib(self._pid)["VmHWM"] / 1024
            if hwm - previous > HWM_JUMP_MIB:
                self.jumps.append((round(time.perf_counter() - started, 3), previous, hwm))
            previous = hwm


def run_once(
    name: str,
    tree: Path | None,
    model_store: Path,
    lines: list[str],
    smaps: bool,
    overrides: dict[str, Any] | None = None,
    trace_hwm: bool = False,
) -> dict[str, Any]:
    """Start a daemon with configuration `name`, measure, stop it; the figures of one run."""
    with tempfile.TemporaryDirectory(prefix="utterd-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        config = write_config(tmp, name, model_store, overrides)
        env = daemon_env(tmp, tree)
        log = (tmp / "utterd.log").open("wb")
        command = [sys.executable, "-m", "utterd.daemon.cli", "--config", str(config), "serve"]
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            sock = tmp / "run" / "utterd.sock"
            try:
                ready_s = wait_ready(proc, sock, started, 120.0)
            except (RuntimeError, NotRunning) as err:
                raise RuntimeError(f"{err}:\n{(tmp / 'utterd.log').read_text()}") from err
            time.sleep(IDLE_SETTLE_S)
            idle = read_status_kib(proc.pid)
            idle_maps = smaps_by_mapping(proc.pid) if smaps else []
            cpu_before = cpu_seconds(proc.pid)
            if trace_hwm:
                with HwmTrace(proc.pid) as trace:
                    speak_all(sock, lines, VOICES_SPOKEN[name])
            else:
                speak_all(sock, lines, VOICES_SPOKEN[name])
            speak_cpu_s = cpu_seconds(proc.pid) - cpu_before
            end = read_status_kib(proc.pid)
            end_maps = smaps_by_mapping(proc.pid) if smaps else []
            children = children_rss_kib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    figures: dict[str, Any] = {
        "ready_s": ready_s,
        "idle_rss_mib": idle["VmRSS"] / 1024,
        "idle_hwm_mib": idle["VmHWM"] / 1024,
        "peak_rss_mib": end["VmHWM"] / 1024,
        "after_rss_mib": end["VmRSS"] / 1024,
        "children_rss_mib": children / 1024,
        "speak_cpu_s": speak_cpu_s,
        "idle_anon_mib": idle["RssAnon"] / 1024,
        "idle_file_mib": idle["RssFile"] / 1024,
        "idle_threads": idle["Threads"],
    }
    if trace_hwm:
        figures["hwm_jumps_mib"] = trace.jumps
    if smaps:
        figures["idle_smaps_kib"] = idle_maps
        figures["end_smaps_kib"] = end_maps
    return figures


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        m: {
            "median": statistics.median(r[m] for r in runs),
            "min": min(r[m] for r in runs),
            "max": max(r[m] for r in runs),
        }
        for m in METRICS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--before", type=Path, default=None, help="older code tree (see doc)")
    parser.add_argument(
        "--after", type=Path, default=None, help="code tree to measure (default: this checkout)"
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=TREE",
        help="a code tree to measure under LABEL (repeatable; ratios against the first)",
    )
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--lines", type=int, default=None, help="only the first N lines")
    parser.add_argument("--smaps", action="store_true")
    parser.add_argument(
        "--trace-hwm", action="store_true", help="record the rises of VmHWM while speaking"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="config override for every run, e.g. cache.ram_budget_bytes=0 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; known: {sorted(CONFIGS)}")
    overrides = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.set)}
    lines = [ln.strip() for ln in args.text.read_text().splitlines() if ln.strip()]
    lines = lines[: args.lines] if args.lines else lines
    after = args.after.resolve() if args.after is not None else None
    trees: dict[str, Path | None] = {"after": after}
    if args.before is not None:
        trees = {"before": args.before.resolve(), "after": after}
    if args.tree:
        if args.before is not None or args.after is not None:
            parser.error("--tree replaces --before and --after")
        trees = {
            label: Path(tree).resolve() for label, _, tree in (t.partition("=") for t in args.tree)
        }
    load_at_start = os.getloadavg()
    for label, tree in trees.items():  # unmeasured: bytecode written, page cache warm
        for name in configs:
            run_once(name, tree, args.model_store, lines[:1], False, overrides)
            print(f"warm-up {label} {name} done", file=sys.stderr)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        label: {name: [] for name in configs} for label in trees
    }
    for repeat in range(args.repeats):
        order = list(trees.items())
        if repeat % 2:
            order.reverse()
        for name in configs:
            for label, tree in order:
                figures = run_once(
                    name, tree, args.model_store, lines, args.smaps, overrides, args.trace_hwm
                )
                runs[label][name].append(figures)
                print(
                    f"repeat {repeat} {label:6} {name:8} ready {figures['ready_s']:.3f} s  "
                    f"idle {figures['idle_rss_mib']:.1f}  peak {figures['peak_rss_mib']:.1f}  "
                    f"children {figures['children_rss_mib']:.1f} MiB  load {os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                )
                for at_s, before_mib, after_mib in figures.get("hwm_jumps_mib", []):
                    print(
                        f"  VmHWM {before_mib:.1f} -> {after_mib:.1f} MiB at {at_s:.2f} s",
                        file=sys.stderr,
                    )
    result: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "load_start": load_at_start,
        "load_end": os.getloadavg(),
        "text": str(args.text),
        "lines": len(lines),
        "overrides": overrides,
        "before_tree": str(args.before) if args.before else None,
        "after_tree": str(args.after) if args.after else None,
        "trees": {label: str(tree) if tree else None for label, tree in trees.items()},
        "runs": runs,
        "summary": {
            label: {name: summary(r) for name, r in per.items()} for label, per in runs.items()
        },
    }
    print_table(result, configs, list(trees))
    out = args.out or RESULTS_DIR / f"bench_memory-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


def print_table(result: dict[str, Any], configs: list[str], labels: list[str]) -> None:
    summ = result["summary"]
    print(f"load {result['load_start'][0]:.2f} -> {result['load_end'][0]:.2f}")
    base = labels[0]
    header = "| config | figure | " + " | ".join(labels)
    header += "".join(f" | {label}/{base}" for label in labels[1:]) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in configs:
        for metric in METRICS:
            cells = []
            for label in labels:
                s = summ[label][name][metric]
                cells.append(f"{s['median']:.3g} ({s['min']:.3g}-{s['max']:.3g})")
            row = f"| {name} | {metric} | " + " | ".join(cells)
            first = summ[base][name][metric]["median"]
            for label in labels[1:]:
                ratio = summ[label][name][metric]["median"] / first if first else float("nan")
                row += f" | {ratio:.2f}"
            print(row + " |")


if __name__ == "__main__":
    raise SystemExit(main())
