"""Eco profile benchmark: CPU per second of speech, and wake-ups while idle, per profile (issue 20).

    python bench/bench_eco.py [--before REV] [--after worktree|REV] [--extra LABEL=DIR]
                              [--profiles default,eco] [--idle-s 30] [--settle-s 5]
                              [--voice hibari-heart] [--lines N] [--config JSON] [--out FILE]

One run starts a private PulseAudio server with a null sink paced in real time (a sound card;
tests/audio_sinks.py) and, for each code version (`--before`, a git revision exported to a
folder, `--after`, the work tree by default, and any `--extra` folder holding a `utterd/`
package, such as HEAD with a proposed change applied) and each profile, one real `utterd serve`
process on it (tests/daemon_harness.py). For each daemon:

1. **Idle wake-ups.** After the daemon answered `ping` and `--settle-s` passed, the voluntary and
   involuntary context switches of every thread (/proc/PID/task/*/status) are summed at the
   start and the end of `--idle-s` seconds in which nobody talks to it. A thread blocked in a
   wait switches out once each time it wakes, so the difference over the window, per second, is
   the daemon's wake-ups per second while idle. The per-thread counts are in the JSON
   (threads are named by their kernel `comm`; the Python ones are all `python`).
2. **CPU per second of speech.** The held-out text (bench/text/heldout_en.txt, comments
   dropped; `--lines` limits it) is spoken as one `speak` job with the cache off, played in real
   time on the null sink; the daemon's CPU time (utime + stime of /proc/PID/stat, all threads,
   those that ended included) from the request to the job's `end` event is divided by the
   seconds of audio. Then the same text is asked for with `synthesize` (no device) and its CPU
   time divided likewise; the audio seconds of both come from that WAV.

Each daemon runs as under the shipped unit (systemd/utterd.service: Type=notify,
WatchdogSec=30s): `$NOTIFY_SOCKET` names a datagram socket this script reads, and
`$WATCHDOG_USEC` is 30 s, so the watchdog thread pings and refreshes STATUS as in production
(`--no-systemd`: neither, as when started by hand).

Profiles: `default` is config.yaml as shipped (voices.threads 0: one per physical core).
`eco` is `profile: eco`; code that has no such key (`--before`, measured before the profile
existed) runs its nearest equivalent, `voices.threads: 1`, so the baseline is the old code's
best one-thread configuration.

No figure is asserted: the machine is shared. Prints a table and writes JSON to bench/results/
(or --out) with the CPU model, load averages, the exact command and the git state.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TESTS_DIR: Final = REPO_DIR / "tests"
RESULTS_DIR: Final = BENCH_DIR / "results"
HELDOUT: Final = BENCH_DIR / "text" / "heldout_en.txt"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink
from daemon_harness import RunningDaemon, clean_env, next_event

_CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
_JOB_TIMEOUT_S: Final = 900.0


def task_switches(pid: int) -> dict[str, dict[str, Any]]:
    """Context switches (voluntary + involuntary) of every thread of `pid`, by thread id."""
    counts: dict[str, dict[str, Any]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        switches = int(fields["voluntary_ctxt_switches"]) + int(
            fields["nonvoluntary_ctxt_switches"]
        )
        counts[tid] = {"comm": comm, "switches": switches}
    return counts


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (every thread, ended ones included), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S


def measure_idle(pid: int, idle_s: float) -> dict[str, Any]:
    """Wake-ups per second of the idle daemon over `idle_s` seconds, in all and per thread."""
    before = task_switches(pid)
    cpu_before = cpu_seconds(pid)
    time.sleep(idle_s)
    after = task_switches(pid)
    cpu_after = cpu_seconds(pid)
    per_thread = {
        f"{tid} {row['comm']}": round(
            (row["switches"] - before.get(tid, {"switches": 0})["switches"]) / idle_s, 2
        )
        for tid, row in sorted(after.items(), key=lambda kv: int(kv[0]))
    }
    return {
        "idle_s": idle_s,
        "wakeups_per_s": round(sum(per_thread.values()), 2),
        "threads": len(after),
        "cpu_ms_per_s": round((cpu_after - cpu_before) * 1000 / idle_s, 3),
        "per_thread_per_s": {k: v for k, v in per_thread.items() if v > 0},
    }


def wav_seconds(payload: bytes) -> float:
    with wave.open(io.BytesIO(payload)) as w:
        return w.getnframes() / w.getframerate()


def measure_speech(daemon: RunningDaemon, text: str, voice: str) -> dict[str, Any]:
    """CPU seconds per second of audio: `speak` played in real time, then `synthesize`."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    events = daemon.subscribe()
    try:
        with daemon.client(timeout_s=_JOB_TIMEOUT_S) as client:
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            header, _ = client.request("speak", {"text": text, "voice": voice, "cache": "off"})
            job = str(header["data"]["job"])
            event = next_event(events, {"end", "stopped", "failed"}, job, _JOB_TIMEOUT_S)
            cpu1, wall1 = cpu_seconds(pid), time.monotonic()
            if event["type"] != "end":
                raise RuntimeError(f"speak job ended {event['type']}: {event['data']}")
            header, payload = client.request(
                "synthesize", {"text": text, "voice": voice, "cache": "off", "format": "wav"}
            )
            cpu2, wall2 = cpu_seconds(pid), time.monotonic()
            underruns = client.request("describe")[0]["data"]["device"].get("underruns")
    finally:
        events.close(linger=0)
    audio_s = wav_seconds(payload)
    return {
        "audio_s": round(audio_s, 3),
        "speak": {
            "cpu_s": round(cpu1 - cpu0, 3),
            "wall_s": round(wall1 - wall0, 3),
            "cpu_s_per_audio_s": round((cpu1 - cpu0) / audio_s, 4),
            "first_audio_ms": event["data"].get("first_audio_ms"),
            "underruns": underruns,
        },
        "synthesize": {
            "cpu_s": round(cpu2 - cpu1, 3),
            "wall_s": round(wall2 - wall1, 3),
            "cpu_s_per_audio_s": round((cpu2 - cpu1) / audio_s, 4),
        },
    }


def export_revision(rev: str, dest: Path) -> str:
    """Export `rev`'s daemon/, models/, quantize/ as dest/utterd/...; returns the full commit.

    Put `dest` first on the daemon's PYTHONPATH and it imports that code (the editable install's
    finder comes after PathFinder), whatever the shared work tree holds meanwhile.
    """
    commit = git("rev-parse", rev)
    package = dest / "utterd"
    package.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", commit, "daemon", "models", "quantize"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive.stdout, check=True)
    return commit


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def profile_config(profile: str, has_profile_key: bool) -> dict[str, Any]:
    """Config entries for `profile` on code that does (not) know the `profile` key."""
    if profile == "default":
        return {}
    if has_profile_key:
        return {"profile": profile}
    return {"voices": {"threads": 1}}


class NotifySocket:
    """A service manager's notification socket, as systemd passes it: read and counted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                self._sock.recv(4096)
            except OSError:
                return
            self.messages += 1

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


WATCHDOG_USEC: Final = 30_000_000
"""WatchdogSec=30s, as in systemd/utterd.service."""


def run_one(
    tmp: Path,
    sink_env: dict[str, str],
    code_dir: Path | None,
    profile: str,
    args: argparse.Namespace,
    text: str,
) -> dict[str, Any]:
    """One daemon of one code version and profile: its idle and speech figures."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = clean_env(sink_env)
    notify = None if args.no_systemd else NotifySocket(tmp / "notify")
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
        env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
    if code_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(code_dir), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
    has_key = (
        code_dir is None
        or (code_dir / "utterd" / "daemon" / "settings.py")
        .read_text(encoding="utf-8")
        .count("profile: str")
        > 0
    )
    config: dict[str, Any] = {
        "voices": {"threads": 0, "default": args.voice},
        "audio": {"sample_rate_hz": NULL_SINK_RATE_HZ},
        "cache": {"dir": str(tmp / "cache")},
        "log_level": "INFO",
    }
    for key, value in [*profile_config(profile, has_key).items(), *args.config.items()]:
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    try:
        with RunningDaemon(tmp, env, config) as daemon:
            assert daemon.proc is not None
            time.sleep(args.settle_s)
            row: dict[str, Any] = {"profile": profile, "config": config}
            before = notify.messages if notify is not None else 0
            row["idle"] = measure_idle(daemon.proc.pid, args.idle_s)
            if notify is not None:
                row["idle"]["notify_messages"] = notify.messages - before
            row["speech"] = measure_speech(daemon, text, args.voice)
            row["load_average"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if notify is not None:
            notify.close()
    return row


def heldout_text(lines: int | None) -> str:
    rows = [
        line.strip()
        for line in HELDOUT.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return " ".join(rows[:lines] if lines else rows)


def format_table(report: dict[str, Any]) -> str:
    head = (
        f"{'code':<10} {'profile':<8} {'idle wake-ups/s':>16} {'idle CPU ms/s':>14} "
        f"{'speak CPU s/s':>14} {'synth CPU s/s':>14} {'audio s':>8} {'load':>6}"
    )
    out = [head, "-" * len(head)]
    for row in report["runs"]:
        idle, speech = row["idle"], row["speech"]
        out.append(
            f"{row['code']:<10} {row['profile']:<8} {idle['wakeups_per_s']:>16.2f} "
            f"{idle['cpu_ms_per_s']:>14.3f} {speech['speak']['cpu_s_per_audio_s']:>14.4f} "
            f"{speech['synthesize']['cpu_s_per_audio_s']:>14.4f} {speech['audio_s']:>8.1f} "
            f"{row['load_average'][0]:>6.2f}"
        )
    return "\n".join(out)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", default=None, help="git revision measured as the baseline")
    p.add_argument(
        "--after", default="worktree", help="`worktree` (default), a git revision, or `none`"
    )
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="another code version: DIR holds utterd/ (e.g. HEAD with a proposed change applied)",
    )
    p.add_argument("--profiles", default="default,eco")
    p.add_argument("--idle-s", type=float, default=30.0)
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--voice", default="hibari-heart")
    p.add_argument("--lines", type=int, default=None, help="first N lines of the held-out text")
    p.add_argument(
        "--config",
        type=json.loads,
        default={},
        help='config entries for every daemon, as JSON: \'{"audio": {"block_frames": 1024}}\'',
    )
    p.add_argument("--no-systemd", action="store_true", help="no $NOTIFY_SOCKET, no watchdog")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    started = datetime.now(UTC)
    text = heldout_text(args.lines)
    report: dict[str, Any] = {
        "benchmark": "bench_eco",
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/bench_eco.py", *raw_argv]),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "head": git("rev-parse", "HEAD"),
        "text_chars": len(text),
        "systemd": None if args.no_systemd else {"watchdog_usec": WATCHDOG_USEC},
        "sink": {"kind": "pulseaudio-null-sink", "rate_hz": NULL_SINK_RATE_HZ, "real_time": True},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-eco-") as tmp_name:
        tmp = Path(tmp_name)
        codes: list[tuple[str, Path | None]] = []
        if args.before:
            report["before"] = export_revision(args.before, tmp / "before")
            codes.append(("before", tmp / "before"))
        if args.after == "none":
            pass
        elif args.after == "worktree":
            report["after"] = "work tree"
            codes.append(("after", None))
        else:
            report["after"] = export_revision(args.after, tmp / "after")
            codes.append(("after", tmp / "after"))
        for extra in args.extra:
            label, _, folder = extra.partition("=")
            codes.append((label, Path(folder).resolve()))
            report[label] = str(Path(folder).resolve())
        with PulseNullSink(tmp / "pulse") as sink:
            for profile in profiles:
                for name, code_dir in codes:
                    row = run_one(
                        tmp / f"{name}-{profile}", sink.env, code_dir, profile, args, text
                    )
                    row["code"] = name
                    report["runs"].append(row)
                    print(format_table({"runs": [row]}).splitlines()[-1], flush=True)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    out = args.out or RESULTS_DIR / f"bench_eco-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
