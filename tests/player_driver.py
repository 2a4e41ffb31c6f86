"""Runs the Player in a process of its own, for tests that need a sound device.

ALSA reads ~/.asoundrc when PortAudio initializes, so a test starts this script with
`sys.executable` and a sink's environment (see audio_sinks.py). The scenario is the first
argument; the last line on stdout is a JSON object with what happened, including
time.monotonic() stamps (CLOCK_MONOTONIC is system-wide, so the test can compare them with
its own recording's clock).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from utterd.daemon.audio.player import DeviceUnavailable, Player, PlayerEvent
from utterd.daemon.settings import AudioSettings
from utterd.models.voice import AudioChunk

RATE_HZ = 22050


def tone(freq_hz: float, duration_s: float, rate_hz: int, amplitude: float = 0.5) -> AudioChunk:
    """A sine chunk; starts at phase 0."""
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    samples = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return AudioChunk(samples=samples, sample_rate_hz=rate_hz)


def nonzero_signal(count: int, seed: int) -> npt.NDArray[np.float32]:
    """Deterministic noise whose int16 conversion has no zero sample (so silence is telling)."""
    rng = np.random.default_rng(seed)
    magnitude = rng.integers(1, 20000, count)
    sign = np.where(rng.random(count) < 0.5, -1, 1)
    # Half a step above each integer: float_to_pcm16 truncates, so it gives back sign * magnitude.
    signal: npt.NDArray[np.float32] = (sign * (magnitude + 0.5) / 32767.0).astype(np.float32)
    return signal


class Recorder:
    """Collects player events with the time they arrived."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: PlayerEvent) -> None:
        with self._cond:
            self.events.append(
                {
                    "kind": event.kind,
                    "job_id": event.job_id,
                    "available": event.available,
                    "error": event.error,
                    "t": time.monotonic(),
                    "thread": threading.current_thread().name,
                }
            )
            self._cond.notify_all()

    def wait_for(self, kind: str, job_id: str | None = None, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(
                e["kind"] == kind and (job_id is None or e["job_id"] == job_id) for e in self.events
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


def _state(player: Player) -> dict[str, Any]:
    s = player.state
    return {
        "available": s.available,
        "device_name": s.device_name,
        "sample_rate_hz": s.sample_rate_hz,
        "error": s.error,
        "underruns": s.underruns,
    }


def _settings(args: argparse.Namespace) -> AudioSettings:
    return AudioSettings(
        device=args.device,
        sample_rate_hz=args.rate,
        latency_ms=args.latency_ms,
        block_frames=args.block_frames,
        retry_interval_s=args.retry_interval_s,
    )


def scenario_chunks(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """Play noise chunks (sizes from --sizes) as one job, then an empty job."""
    chunks = [nonzero_signal(size, seed=i) for i, size in enumerate(args.sizes)]
    for samples in chunks:
        player.play("job-1", AudioChunk(samples=samples, sample_rate_hz=args.chunk_rate))
    player.end_job("job-1")
    player.end_job("job-empty")
    played = rec.wait_for("played", "job-1") and rec.wait_for("played", "job-empty")
    time.sleep(args.linger_s)  # "played" means handed to the device, not yet heard
    return {"played": played}


def scenario_resample(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """Play a sine at --chunk-rate in quarter-second chunks."""
    chunk = tone(args.freq_hz, args.duration_s, args.chunk_rate)
    step = args.chunk_rate // 4
    for start in range(0, len(chunk.samples), step):
        piece = chunk.samples[start : start + step]
        player.play("job-1", AudioChunk(samples=piece, sample_rate_hz=args.chunk_rate))
    player.end_job("job-1")
    return {"played": rec.wait_for("played", "job-1"), "input_frames": len(chunk.samples)}


def scenario_flush(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """A long tone in chunks, flushed after --flush-after-s; then a short tone."""
    first = tone(440.0, args.duration_s, RATE_HZ)
    step = RATE_HZ // 2
    t_play_s = time.monotonic()
    for start in range(0, len(first.samples), step):
        player.play("job-long", AudioChunk(first.samples[start : start + step], RATE_HZ))
    player.end_job("job-long")
    time.sleep(max(0.0, t_play_s + args.flush_after_s - time.monotonic()))
    t_flush_s = time.monotonic()
    player.flush()
    t_flushed_s = time.monotonic()
    flushed_event = rec.wait_for("flushed", "job-long", 2.0)
    time.sleep(0.5)
    t_play2_s = time.monotonic()
    player.play("job-short", tone(880.0, 0.5, RATE_HZ))
    player.end_job("job-short")
    played2 = rec.wait_for("played", "job-short", 5.0)
    time.sleep(0.3)  # the tail still in the device buffer
    return {
        "t_play_s": t_play_s,
        "t_flush_s": t_flush_s,
        "t_flushed_s": t_flushed_s,
        "t_play2_s": t_play2_s,
        "flushed_event": flushed_event,
        "played2": played2,
    }


def scenario_slow(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """Noise chunks (sizes from --sizes) arrive with pauses: synthesis slower than playback."""
    for i, size in enumerate(args.sizes):
        player.play("job-slow", AudioChunk(nonzero_signal(size, seed=i), RATE_HZ))
        time.sleep(args.pause_s)
    player.end_job("job-slow")
    return {"played": rec.wait_for("played", "job-slow", 5.0)}


def scenario_streamed(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """A streaming engine's job: noise chunks at --chunk-rate (sizes from --sizes), each after a
    --pause-s of synthesis, the first one small (hibari: 4 frames at 24 kHz, 1200 samples)."""
    for i, size in enumerate(args.sizes):
        if i:
            time.sleep(args.pause_s)
        player.play("job-1", AudioChunk(nonzero_signal(size, seed=i), args.chunk_rate))
    player.end_job("job-1")
    return {"played": rec.wait_for("played", "job-1", 5.0)}


def scenario_backpressure(
    args: argparse.Namespace, player: Player, rec: Recorder
) -> dict[str, Any]:
    """One chunk far longer than max_buffered_s: play blocks; a flush releases it."""
    returned = threading.Event()
    t_returned_s: list[float] = []

    def producer() -> None:
        player.play("job-big", tone(440.0, args.duration_s, RATE_HZ))
        t_returned_s.append(time.monotonic())
        returned.set()

    thread = threading.Thread(target=producer)
    t_play_s = time.monotonic()
    thread.start()
    blocked = not returned.wait(args.flush_after_s)
    t_flush_s = time.monotonic()
    player.flush()
    thread.join(5.0)
    return {
        "blocked_until_flush": blocked,
        "t_play_s": t_play_s,
        "t_flush_s": t_flush_s,
        "t_returned_s": t_returned_s[0] if t_returned_s else None,
        "flushed_event": rec.wait_for("flushed", "job-big", 2.0),
    }


def scenario_no_device(args: argparse.Namespace, player: Player, rec: Recorder) -> dict[str, Any]:
    """The device cannot be opened: play must raise DeviceUnavailable, end_job must not."""
    device_event = rec.wait_for("device", None, 5.0)
    result: dict[str, Any] = {"device_event": device_event}
    try:
        player.play("job-1", tone(440.0, 0.1, RATE_HZ))
        result["play_raised"] = None
    except DeviceUnavailable as exc:
        result["play_raised"] = {"code": exc.code, "message": exc.message}
    player.end_job("job-1")
    result["job_flushed"] = rec.wait_for("flushed", "job-1", 2.0)
    time.sleep(args.linger_s)  # lets the retry loop run a few times
    return result


SCENARIOS = {
    "chunks": scenario_chunks,
    "resample": scenario_resample,
    "flush": scenario_flush,
    "slow": scenario_slow,
    "streamed": scenario_streamed,
    "backpressure": scenario_backpressure,
    "no-device": scenario_no_device,
}


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """Makes `import sounddevice` fail as it does when libportaudio2 is not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


class StreamStarts:
    """Counts PortAudio stream starts: each writes a device buffer of silence on ALSA, so a
    file sink's recording has one such silence per start."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        """Wrap sounddevice.OutputStream.start (nothing without PortAudio)."""
        try:
            import sounddevice
        except OSError:
            return
        original = sounddevice.OutputStream.start

        def start(stream: Any) -> None:
            self.count += 1
            original(stream)

        sounddevice.OutputStream.start = start


def _device_arg(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


def run_driver(
    env: dict[str, str], *args: str, timeout_s: float = 15.0
) -> tuple[dict[str, Any], str]:
    """Run this script with `env`; returns (its JSON result, its stderr)."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(
            f"player driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, proc.stderr


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--device", type=_device_arg, default=None)
    parser.add_argument("--rate", type=int, default=RATE_HZ, help="AudioSettings.sample_rate_hz")
    parser.add_argument("--chunk-rate", type=int, default=RATE_HZ)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--block-frames", type=int, default=256)
    parser.add_argument("--retry-interval-s", type=float, default=2.0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000, 7777])
    parser.add_argument("--freq-hz", type=float, default=1000.0)
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--flush-after-s", type=float, default=1.0)
    parser.add_argument("--linger-s", type=float, default=0.0)
    parser.add_argument("--pause-s", type=float, default=0.3)
    parser.add_argument("--max-buffered-s", type=float, default=30.0)
    parser.add_argument("--no-portaudio", action="store_true")
    parser.add_argument(
        "--busy-threads", type=int, default=0, help="pure-Python threads competing for the GIL"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    if args.no_portaudio:
        sys.meta_path.insert(0, _NoPortAudio())

    busy_until_s = time.monotonic() + 60.0

    def busy() -> None:
        total = 0
        while time.monotonic() < busy_until_s:
            for i in range(10_000):
                total += i

    for _ in range(args.busy_threads):
        threading.Thread(target=busy, daemon=True).start()

    starts = StreamStarts()
    if not args.no_portaudio:
        starts.install()
    rec = Recorder()
    player = Player(
        _settings(args), default_rate_hz=RATE_HZ, on_event=rec, max_buffered_s=args.max_buffered_s
    )
    player.start()
    state_at_start = _state(player)
    result = SCENARIOS[args.scenario](args, player, rec)
    state_at_end = _state(player)
    player.close()
    busy_until_s = 0.0
    threads = sorted(
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and t.name.startswith("utterd")
    )
    out = {
        **result,
        "state_at_start": state_at_start,
        "state": state_at_end,
        "events": rec.events,
        "threads_after_close": threads,
        "stream_starts": starts.count,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
