"""Sound devices for machines without a sound card, for tests that play real audio.

Two sinks, as described in shared/audio/README.md:

- `file_sink_env`: an ALSA configuration whose default PCM appends every sample played to a file,
  faster than real time. Use it to check *what* was played.
- `PulseNullSink`: a private PulseAudio server with a null sink, paced in real time, recorded from
  its monitor with parec. Use it to check *when* things were heard (stop latency, gaps).

ALSA reads `$HOME/.asoundrc` when PortAudio initializes, so code under test must run in a
subprocess started with the returned environment.

Observed behaviour worth knowing (PortAudio 19.6 ALSA host API, PulseAudio 16.1):

- In callback mode every stream start writes one device buffer of silence (e.g. 768 frames for a
  20 ms latency and 256-frame blocks) before the first callback's audio; the file sink records it.
- An idle null sink sleeps in long blocks and stalls a newly started stream for up to ~2 s; the
  `PulseNullSink` therefore keeps a low-latency monitor client connected, which makes the sink
  consume audio in real time from the first sample, like a sound card.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import numpy as np
import numpy.typing as npt

NULL_SINK_NAME: Final = "utterd_null"
"""Name of the PulseAudio null sink; its monitor source is NULL_SINK_NAME + '.monitor'."""

NULL_SINK_RATE_HZ: Final = 22050
"""Rate of the null sink and of recordings made from its monitor."""

PULSE_PACKAGES: Final = "pulseaudio pulseaudio-utils libasound2-plugins"
"""Debian packages the PulseAudio null sink needs (the CI script installs them)."""

ASOUNDRC_FILE_SINK: Final = """\
# ALSA configuration for machines without a sound card (CI, development).
# The default PCM becomes a file sink: everything played is appended, as raw
# interleaved samples in the stream's own dtype and channel count (an
# OutputStream opened as mono int16 at 22050 Hz writes exactly those samples),
# to the file named by the environment variable UTTERD_ALSA_SINK (default
# utterd-alsa-sink.raw in the current folder).
# The "null" slave consumes audio as fast as it is written, so playback runs
# faster than real time.
#
# Use: put this file at $HOME/.asoundrc of the process that opens PortAudio
# (a test can point HOME at a temporary folder holding it), and install
# libportaudio2. sounddevice then lists one device, "default".
pcm.!default {
  type file
  slave.pcm "null"
  file {
    @func getenv
    vars [ UTTERD_ALSA_SINK ]
    default "utterd-alsa-sink.raw"
  }
  format "raw"
}
"""
"""Copy of shared/audio/asoundrc-file-sink, used when shared/ is not beside the checkout."""

ASOUNDRC_PULSE: Final = "pcm.!default { type pulse }\nctl.!default { type pulse }\n"
"""ALSA configuration routing the default PCM to PulseAudio (libasound2-plugins)."""

_STARTUP_TIMEOUT_S: Final = 10.0
_MONITOR_LATENCY_MS: Final = 5
_MAX_SOCKET_PATH_BYTES: Final = 100


def shared_dir() -> Path:
    """The shared/ folder: $UTTERD_SHARED_DIR, else the one beside the checkout."""
    env_dir = os.environ.get("UTTERD_SHARED_DIR")
    if env_dir:
        return Path(env_dir)
    return Path(__file__).resolve().parents[2] / "shared"


def file_sink_asoundrc() -> str:
    """Text of the file-sink ALSA configuration: shared/'s copy if present, else the constant."""
    path = shared_dir() / "audio" / "asoundrc-file-sink"
    return path.read_text() if path.is_file() else ASOUNDRC_FILE_SINK


def file_sink_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A HOME under tmp_path with the ALSA file sink; returns (environment, sink file).

    The environment is a copy of os.environ with HOME and UTTERD_ALSA_SINK set; a process started
    with it plays into the sink file (raw samples in the stream's dtype and channel count).
    """
    home = tmp_path / "alsa-file-sink-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".asoundrc").write_text(file_sink_asoundrc())
    sink = tmp_path / "alsa-file-sink.raw"
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["UTTERD_ALSA_SINK"] = str(sink)
    return env, sink


def read_s16(path: Path) -> npt.NDArray[np.int16]:
    """Raw little-endian 16-bit samples from a file (empty if it does not exist)."""
    if not path.exists():
        return np.zeros(0, dtype=np.int16)
    data = path.read_bytes()
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)


def nonsilent_bounds(samples: npt.NDArray[np.int16], threshold: int = 0) -> tuple[int, int] | None:
    """(first, end) sample indices of the audio louder than `threshold`; None if all is quieter.

    `end` is one past the last loud sample, so samples[first:end] is the audible part.
    """
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return None
    return int(loud[0]), int(loud[-1]) + 1


def strip_start_silences(
    played: npt.NDArray[np.int16],
    expected: npt.NDArray[np.int16],
    block_frames: int = 256,
    max_buffer_blocks: int = 8,
    atol: int = 0,
) -> npt.NDArray[np.int16]:
    """`played` (from a file sink) without the silence PortAudio writes at each stream start.

    PortAudio's ALSA host API writes one device buffer of zeros, a whole number of blocks, each
    time a callback stream starts, and the player (re)starts its stream only at block boundaries
    of a job's audio. This finds the buffer length and restart points that make `played` equal
    to `expected` followed by less than a block of zero padding, and returns `played` with those
    silences removed, so `np.array_equal(result[: len(expected)], expected)` holds. If no such
    reading exists, the recognised part is followed by the rest of `played` unchanged, so that the
    comparison fails where they part. Works for any `expected`, zeros included. With `atol` > 0,
    audio matches within that many steps (for an `expected` resampled separately).
    """
    best_reached, best_silences, best_frames = -1, [], block_frames
    for buffer_blocks in range(1, max_buffer_blocks + 1):
        silence_frames = block_frames * buffer_blocks
        found, reached, silences = _align(played, expected, block_frames, silence_frames, atol)
        if found:
            return _remove_runs(played, silences, silence_frames)
        if reached > best_reached:
            best_reached, best_silences, best_frames = reached, silences, silence_frames
    return _remove_runs(played, best_silences, best_frames)


def _align(
    played: npt.NDArray[np.int16],
    expected: npt.NDArray[np.int16],
    block_frames: int,
    silence_frames: int,
    atol: int = 0,
) -> tuple[bool, int, list[int]]:
    """Search (expected index, silences so far) states block by block; depth-first, matching
    audio before assuming a silence. Returns (found, furthest expected index, silence offsets)."""
    stack: list[tuple[int, list[int]]] = [(0, [])]
    seen: set[tuple[int, int]] = set()
    reached, reached_silences = 0, []
    while stack:
        j, silences = stack.pop()
        if (j, len(silences)) in seen:
            continue
        seen.add((j, len(silences)))
        i = j + len(silences) * silence_frames
        if j > reached:
            reached, reached_silences = j, silences
        if j >= len(expected):
            tail = played[i:]
            if len(tail) < block_frames and not tail.any():
                return True, j, silences
            continue
        if (
            len(silences) < 1000
            and i + silence_frames <= len(played)
            and not played[i : i + silence_frames].any()
        ):
            stack.append((j, [*silences, i]))
        step = min(block_frames, len(expected) - j)
        got, want = played[i : i + step], expected[j : j + step]
        if len(got) == step and (
            np.array_equal(got, want)
            if atol == 0
            else np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= atol
        ):
            stack.append((j + step, silences))
    return False, reached, reached_silences


def _remove_runs(
    played: npt.NDArray[np.int16], starts: list[int], length: int
) -> npt.NDArray[np.int16]:
    keep = np.ones(len(played), dtype=bool)
    for start in starts:
        keep[start : start + length] = False
    return played[keep]


@dataclass
class Recording:
    """A parec recording in progress or done, with the wall clock of its samples."""

    path: Path
    """Raw s16le mono samples at NULL_SINK_RATE_HZ, as recorded from the monitor."""

    rate_hz: int = NULL_SINK_RATE_HZ
    """Rate of the recording."""

    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(time.monotonic() when data arrived, samples recorded so far), one entry per read."""

    def sample_time_s(self, index: int) -> float:
        """time.monotonic() at which sample `index` was rendered by the sink, at the latest.

        Samples reach parec some milliseconds after the sink renders them, so each arrival gives
        an upper bound of the recording's start time; the smallest is the tightest. The result is
        late by parec's smallest delivery delay (a few ms), never early. CLOCK_MONOTONIC is
        system-wide on Linux, so other processes' time.monotonic() values compare with it.
        """
        if not self.arrivals:
            raise ValueError("nothing recorded yet")
        start_s = min(t - n / self.rate_hz for t, n in self.arrivals)
        return start_s + index / self.rate_hz

    def samples(self) -> npt.NDArray[np.int16]:
        """What was recorded so far."""
        return read_s16(self.path)


def _parec_command(latency_ms: int) -> list[str]:
    return [
        "parec",
        "-d",
        f"{NULL_SINK_NAME}.monitor",
        "--format=s16le",
        f"--rate={NULL_SINK_RATE_HZ}",
        "--channels=1",
        "--raw",
        f"--latency-msec={latency_ms}",
    ]


def _alsa_pulse_plugin_installed() -> bool:
    """Whether libasound2-plugins' PulseAudio PCM plugin is where libasound looks for it."""
    patterns = (
        "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",
        "/usr/lib*/alsa-lib/libasound_module_pcm_pulse.so",
    )
    return any(glob.glob(pattern) for pattern in patterns)


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Terminate one child by its pid, then kill it if it does not go."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)


class _Pump:
    """Copies a child's stdout to a file (or nowhere), noting when data arrives."""

    def __init__(self, proc: subprocess.Popen[bytes], sink: IO[bytes] | None) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.first_data = threading.Event()
        self._proc = proc
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name="parec-pump", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        total_bytes = 0
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            now_s = time.monotonic()
            total_bytes += len(data)
            if self._sink is not None:
                self._sink.write(data)
            self.arrivals.append((now_s, total_bytes // 2))
            self.first_data.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


class PulseNullSink:
    """A private PulseAudio server with a real-time null sink, for the life of a `with` block.

    `env` is for subprocesses: its HOME holds an .asoundrc routing ALSA's default to PulseAudio
    and XDG_RUNTIME_DIR/PULSE_SERVER point at this server. Everything started is stopped by pid.
    """

    def __init__(self, base_dir: Path | None = None) -> None:
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="utterd-pulse-")
            base_dir = Path(self._own_dir.name)
        self.base_dir = base_dir
        self.runtime_dir = base_dir / "runtime"
        self._own_runtime_dir = False
        if len(os.fsencode(self.runtime_dir / "pulse" / "native")) > _MAX_SOCKET_PATH_BYTES:
            # A unix socket path must fit sockaddr_un (108 bytes); deep tmp paths do not.
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="utterd-pa-"))
            self._own_runtime_dir = True
        self.home = base_dir / "home"
        self.log_path = base_dir / "pulseaudio.log"
        self.env: dict[str, str] = {}
        self._server: subprocess.Popen[bytes] | None = None
        self._keeper: subprocess.Popen[bytes] | None = None
        self._keeper_pump: _Pump | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        missing = [tool for tool in ("pulseaudio", "pactl", "parec") if shutil.which(tool) is None]
        if not _alsa_pulse_plugin_installed():
            missing.append("ALSA's pulse plugin")
        if missing:
            raise RuntimeError(
                f"the PulseAudio null sink needs {', '.join(missing)}: "
                f"install the Debian packages {PULSE_PACKAGES}"
            )
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o700)  # PulseAudio refuses a runtime dir others can enter
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".asoundrc").write_text(ASOUNDRC_PULSE)
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        env["PULSE_SERVER"] = f"unix:{self.runtime_dir / 'pulse' / 'native'}"
        self.env = env
        self._log = self.log_path.open("wb")
        self._server = subprocess.Popen(
            [
                "pulseaudio",
                "-n",  # no default.pa: only the modules below
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "-L",
                f"module-null-sink sink_name={NULL_SINK_NAME} rate={NULL_SINK_RATE_HZ}",
                "-L",
                "module-native-protocol-unix",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline_s = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"pulseaudio exited at start-up:\n{self._log_tail()}")
            answered = subprocess.run(
                ["pactl", "info"], env=env, capture_output=True, check=False, timeout=5
            )
            if answered.returncode == 0:
                break
            if time.monotonic() > deadline_s:
                raise RuntimeError(f"pulseaudio did not answer pactl info:\n{self._log_tail()}")
            time.sleep(0.05)
        # An idle null sink sleeps in long blocks and stalls a new stream for up to ~2 s; a
        # connected low-latency reader keeps it rendering in real time, as a sound card would.
        self._keeper = subprocess.Popen(
            _parec_command(_MONITOR_LATENCY_MS),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._keeper_pump = _Pump(self._keeper, None)
        if not self._keeper_pump.first_data.wait(_STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the null sink's monitor gave no data:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    @contextlib.contextmanager
    def record(self, path: Path) -> Iterator[Recording]:
        """Record what the sink plays into `path` (raw s16le mono at 22050 Hz) while inside.

        Returns once samples are flowing, so nothing played inside the block is missed.
        """
        if self._server is None:
            raise RuntimeError("PulseNullSink.record() outside its with block")
        recording = Recording(path)
        with path.open("wb") as out:
            proc = subprocess.Popen(
                _parec_command(_MONITOR_LATENCY_MS),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            pump = _Pump(proc, out)
            recording.arrivals = pump.arrivals
            try:
                if not pump.first_data.wait(_STARTUP_TIMEOUT_S):
                    raise RuntimeError("parec recorded nothing from the null sink's monitor")
                yield recording
            finally:
                _stop_process(proc)
                pump.join(5.0)
                if proc.stdout is not None:
                    proc.stdout.close()

    def close(self) -> None:
        """Stop the monitor reader and the server (by pid) and remove a temporary folder."""
        if self._keeper is not None:
            _stop_process(self._keeper)
            if self._keeper_pump is not None:
                self._keeper_pump.join(5.0)  # it reads the pipe until EOF; close it afterwards
            if self._keeper.stdout is not None:
                self._keeper.stdout.close()
        if self._server is not None:
            _stop_process(self._server)
        self._keeper = None
        self._keeper_pump = None
        self._server = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self._own_runtime_dir = False
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None
