"""Start a real `utterd serve` process with a temporary config and talk to it over ZeroMQ."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, Self

import numpy as np
import yaml
import zmq
from utterd.daemon.client import Client, NotRunning


class RunningDaemon:
    """A daemon subprocess; use as a context manager. `config` entries override the defaults."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str],
        config: dict[str, Any] | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.tmp = tmp
        self.runtime_dir = tmp / "run"
        self.log_path = tmp / "utterd.log"
        cfg: dict[str, Any] = {
            "server": {"runtime_dir": str(self.runtime_dir)},
            "voices": {"folders": [str(tmp / "voices")], "threads": 2},
            "log_level": "DEBUG",
        }
        for key, value in (config or {}).items():
            if isinstance(value, dict):
                cfg.setdefault(key, {}).update(value)
            else:
                cfg[key] = value
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = f"ipc://{self.runtime_dir / 'utterd.sock'}"
        self.events_endpoint = f"ipc://{self.runtime_dir / 'utterd-events.sock'}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.terminate()

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "utterd.daemon.cli", "--config", str(self.config_path), "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"utterd exited with {self.proc.returncode}:\n{self.log()}")
            if (self.runtime_dir / "utterd.sock").exists():
                try:
                    with self.client(timeout_s=0.5) as c:
                        c.request("ping")
                    return
                except NotRunning:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"utterd did not answer within {self.start_timeout_s} s:\n{self.log()}")

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"utterd ignored SIGTERM:\n{self.log()}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, timeout_s: float = 30.0) -> Client:
        return Client(self.endpoint, timeout_s=timeout_s)

    def subscribe(self) -> zmq.Socket[bytes]:
        """A SUB socket on the event endpoint, subscribed to everything and already joined."""
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.events_endpoint)
        time.sleep(0.3)  # let the subscription reach the PUB socket (ZeroMQ's slow joiner)
        return sock

    def cli(
        self, *args: str, input_text: str | None = None, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "utterd.daemon.cli", "--config", str(self.config_path), *args],
            env=self.env,
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )

    def wait_job(self, job: str, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client() as c:
            while time.monotonic() < deadline:
                header, _ = c.request("job", {"job": job})
                if header["data"]["state"] in ("done", "stopped", "failed"):
                    return dict(header["data"])
                time.sleep(0.05)
        raise AssertionError(f"job {job} did not finish in {timeout_s} s")


def next_event(
    sock: zmq.Socket[bytes], kinds: set[str], job: str | None, timeout_s: float
) -> dict[str, Any]:
    """The next event of one of `kinds` (for `job`, if given); AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 or not sock.poll(left_ms):
            raise AssertionError(f"no {kinds} event for job {job} within {timeout_s} s")
        _topic, header = sock.recv_multipart()[:2]
        msg = json.loads(header)
        if msg["type"] in kinds and (job is None or msg["data"].get("job") == job):
            return dict(msg)


def wav_samples(payload: bytes) -> tuple[np.ndarray, int]:
    """Samples (int16) and rate of a mono 16-bit WAV payload."""
    with wave.open(io.BytesIO(payload)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
