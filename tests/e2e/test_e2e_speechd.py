"""End to end: speech-dispatcher drives a real utterd daemon through sd_utterd (issue 18).

Debian's `speech-dispatcher` runs as the test user with a private configuration whose only
output module is `sd_utterd` (the venv's executable, with a module config pointing at the
daemon's config file); the daemon plays into the ALSA file sink. The clients are the real ones:
`spd-say`, and speech-dispatcher's Python client (`python3-speechd`, which lives in Debian's
Python, so it runs in a child `/usr/bin/python3`). Checked: text reaches the sink, `spd-say -S`
stops it at once, SSML marks come back as index-mark callbacks in order, rate and volume change
the audio, characters, keys and sound icons are said, voices are listed and chosen by name, and
a daemon killed mid-message ends that message (CANCEL) and speech goes on once it is back.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from audio_sinks import file_sink_env, nonsilent_bounds, read_s16
from daemon_harness import RunningDaemon, clean_env, next_event, rms

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

PACKAGES = "speech-dispatcher python3-speechd"
"""Debian packages these tests need (`./setup.sh --with-tests` installs them)."""

SYSTEM_PYTHON = "/usr/bin/python3"
"""Debian's Python, where python3-speechd's `speechd` package is."""

SD_UTTERD = Path(sys.executable).parent / "sd_utterd"
"""The module as `pip install -e .` installed it beside this Python."""

HEART = "hibari-heart"
JOE = "en_US-joe-medium"
SPEECH_LEVEL = 100
"""Samples louder than this (-50 dBFS) count as speech in the sink."""

LONG_TEXT = " ".join(
    f"This is sentence number {n} of a long text that the listener interrupts." for n in range(12)
)
FASTEST_SPEECH_CHARS_PER_S = 25.0
"""No voice says more characters a second at its own pace (about 15 is usual): the long text
lasts at least len(LONG_TEXT) / 25 s."""

CLIENT = r"""
import json, sys, threading, time
import speechd

text, mode = sys.argv[1], sys.argv[2]
client = speechd.SSIPClient("utterd-e2e", autospawn=False)  # SPEECHD_ADDRESS says where
client.set_output_module("utterd")
if mode == "ssml":
    client.set_data_mode(speechd.DataMode.SSML)
names = {
    speechd.CallbackType.BEGIN: "begin",
    speechd.CallbackType.END: "end",
    speechd.CallbackType.CANCEL: "cancel",
    speechd.CallbackType.INDEX_MARK: "mark",
    speechd.CallbackType.PAUSE: "pause",
    speechd.CallbackType.RESUME: "resume",
}
seen = {name: threading.Event() for name in names.values()}

def report(kind, index_mark=None):
    print(json.dumps({"t": time.monotonic(), "kind": names[kind], "mark": index_mark}), flush=True)
    seen[names[kind]].set()

client.speak(text, callback=report, event_types=tuple(names))
if mode == "pause":  # callbacks run on the client's reader thread: control from this one
    seen["begin"].wait(60)
    time.sleep(0.2)
    client.pause()
    seen["pause"].wait(10)
    client.resume()
while not (seen["end"].wait(0.05) or seen["cancel"].is_set()):
    pass
client.close()
"""
"""speech-dispatcher's Python client speaking one message and printing its callbacks as JSON
lines with their time.monotonic() (system-wide, so comparable with the test's clock); in mode
`pause` it pauses the message 0.2 s after it begins and resumes it once paused."""


class SpeechDispatcher:
    """A private `speech-dispatcher` in the foreground, with sd_utterd its only module."""

    def __init__(self, tmp: Path, daemon: RunningDaemon, env: dict[str, str]) -> None:
        self.tmp = tmp
        conf = tmp / "conf"
        (conf / "modules").mkdir(parents=True)
        self.log_dir = tmp / "log"
        self.log_dir.mkdir()
        self.runtime = tmp / "run"
        self.runtime.mkdir(mode=0o700)
        self.socket = self.runtime / "speechd.sock"
        module_conf = conf / "modules" / "utterd.conf"
        module_conf.write_text(f'UtterdConfig "{daemon.config_path}"\nUtterdTimeout 10\n')
        (conf / "speechd.conf").write_text(
            f'CommunicationMethod "unix_socket"\n'
            f'SocketPath "{self.socket}"\n'
            f'LogDir "{self.log_dir}"\n'
            "LogLevel 4\n"
            'SymbolsPreproc "char"\n'
            'SymbolsPreprocFile "symbols.dic"\n'
            f'AddModule "utterd" "{SD_UTTERD}" "{module_conf}"\n'
            'DefaultModule "utterd"\n'
            "DisableAutoSpawn\n"
        )
        home = tmp / "home"
        home.mkdir()
        self.env = {
            **env,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "SPEECHD_ADDRESS": f"unix_socket:{self.socket}",
        }
        self.proc = subprocess.Popen(
            ["speech-dispatcher", "--run-single", "--timeout", "0"]
            + ["--config-dir", str(conf), "--socket-path", str(self.socket)]
            + ["--log-dir", str(self.log_dir), "--pid-file", str(self.runtime / "pid")],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=(tmp / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while "waiting for clients" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"speech-dispatcher did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.log_dir / "speech-dispatcher.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def module_log(self) -> str:
        path = self.log_dir / "utterd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def say(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run spd-say (short options only: Debian's 0.11.4 takes `--stop` as wanting a value)."""
        return subprocess.run(
            ["spd-say", "-o", "utterd", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout_s,
        )

    def client(self, text: str, mode: str = "text") -> subprocess.Popen[str]:
        return subprocess.Popen(
            [SYSTEM_PYTHON, "-c", CLIENT, text, mode],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def callbacks(proc: subprocess.Popen[str], until: set[str], timeout_s: float) -> list[Any]:
    """The client's callbacks, up to the first of `until` (AssertionError on timeout)."""
    assert proc.stdout is not None
    seen: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not seen or seen[-1]["kind"] not in until:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise AssertionError(f"no {until} callback within {timeout_s} s: {seen}")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"client ended without {until}: {seen} {proc.stderr.read()}")
        seen.append(json.loads(line))
    return seen


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("speechd-daemon")
    env, _ = file_sink_env(tmp)
    with RunningDaemon(tmp, clean_env(env)) as d:
        yield d


@pytest.fixture(scope="module")
def spd(
    tmp_path_factory: pytest.TempPathFactory, daemon: RunningDaemon
) -> Iterator[SpeechDispatcher]:
    missing = [t for t in ("speech-dispatcher", "spd-say") if shutil.which(t) is None]
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import speechd"], capture_output=True, check=False
    )
    if missing or probe.returncode != 0:
        pytest.fail(
            f"speech-dispatcher's tools are missing ({', '.join(missing) or 'python3 speechd'}): "
            f"install the Debian packages {PACKAGES} (./setup.sh --with-tests does)"
        )
    assert SD_UTTERD.exists(), "sd_utterd is not installed: pip install -e ."
    s = SpeechDispatcher(tmp_path_factory.mktemp("spd"), daemon, daemon.env)
    try:
        yield s
    finally:
        s.close()


def sink_path(daemon: RunningDaemon) -> Path:
    return Path(daemon.env["UTTERD_ALSA_SINK"])


def settled(path: Path) -> int:
    """The sink's size in samples once nothing more is being written to it."""
    size = -1
    while True:
        now = path.stat().st_size if path.exists() else 0
        if now == size:
            return size // 2
        size = now
        time.sleep(0.15)


def played(daemon: RunningDaemon, start: int) -> npt.NDArray[np.int16]:
    """What the sink received from sample `start` on."""
    return read_s16(sink_path(daemon))[start:]


def speech_s(samples: npt.NDArray[np.int16], rate_hz: int) -> float:
    bounds = nonsilent_bounds(samples, SPEECH_LEVEL)
    assert bounds is not None, "nothing audible reached the sink"
    return (bounds[1] - bounds[0]) / rate_hz


def device_rate(daemon: RunningDaemon) -> int:
    with daemon.client() as c:
        header, _ = c.request("describe")
    return int(header["data"]["device"]["sample_rate_hz"])


def say_and_measure(
    daemon: RunningDaemon, spd: SpeechDispatcher, *args: str
) -> npt.NDArray[np.int16]:
    """Samples the sink received for one `spd-say --wait` (which returns at the message's end)."""
    start = settled(sink_path(daemon))
    spd.say("-w", *args)
    settled(sink_path(daemon))
    return played(daemon, start)


def test_spd_say_speaks_through_the_daemon(daemon: RunningDaemon, spd: SpeechDispatcher) -> None:
    events = daemon.subscribe()
    text = "The kettle has boiled. Please come to the kitchen."
    audio = say_and_measure(daemon, spd, text)
    rate_hz = device_rate(daemon)
    begin = next_event(events, {"begin"}, None, 5)
    assert begin["data"]["voice"] == HEART and begin["data"]["priority"] == "text"
    end = next_event(events, {"end", "stopped", "failed"}, begin["data"]["job"], 5)
    assert end["type"] == "end"
    with daemon.client() as c:
        header, payload = c.request(
            "synthesize", {"text": f"<speak>{text}</speak>", "text_format": "ssml", "format": "pcm"}
        )
    assert payload is not None
    expected_s = speech_s(np.frombuffer(payload, "<i2"), header["data"]["sample_rate_hz"])
    assert speech_s(audio, rate_hz) == pytest.approx(expected_s, rel=0.2)
    assert "event=speak-" not in spd.module_log()


def test_index_marks_come_back_in_order(spd: SpeechDispatcher) -> None:
    document = (
        '<speak>First part.<mark name="one"/> Second part, <mark name="two"/>still going. '
        '<break time="300ms"/><mark name="three"/>The end.</speak>'
    )
    seen = callbacks(spd.client(document, "ssml"), {"end", "cancel"}, 60)
    assert [(c["kind"], c["mark"]) for c in seen] == [
        ("begin", None),
        ("mark", "one"),
        ("mark", "two"),
        ("mark", "three"),
        ("end", None),
    ]
    times = [c["t"] for c in seen]
    assert times == sorted(times)


def test_pause_and_resume_go_on_from_the_last_sentence(
    daemon: RunningDaemon, spd: SpeechDispatcher
) -> None:
    events = daemon.subscribe()
    seen = callbacks(spd.client(LONG_TEXT, "pause"), {"end", "cancel"}, 120)
    kinds = [c["kind"] for c in seen]
    assert kinds[0] == "begin" and kinds[-1] == "end", kinds
    assert kinds.index("pause") < kinds.index("resume"), kinds
    paused_job = next_event(events, {"begin"}, None, 5)["data"]["job"]
    assert next_event(events, {"stopped", "end"}, paused_job, 5)["type"] == "stopped"
    # speech-dispatcher sends the rest again, from its last index mark: a new job that ends.
    resumed_job = next_event(events, {"begin"}, None, 5)["data"]["job"]
    assert resumed_job != paused_job
    assert next_event(events, {"stopped", "end"}, resumed_job, 60)["type"] == "end"


def test_spd_say_stop_silences_at_once(daemon: RunningDaemon, spd: SpeechDispatcher) -> None:
    events = daemon.subscribe()
    start = settled(sink_path(daemon))
    client = spd.client(LONG_TEXT)
    callbacks(client, {"begin"}, 60)
    begin = next_event(events, {"begin"}, None, 5)
    stop_sent = time.monotonic()
    spd.say("-S")
    ended = callbacks(client, {"end", "cancel"}, 10)[-1]
    stopped = next_event(events, {"end", "stopped", "failed"}, begin["data"]["job"], 5)
    assert ended["kind"] == "cancel" and stopped["type"] == "stopped"
    # spd-say starting, speech-dispatcher and the module: well under a second on any machine.
    assert ended["t"] - stop_sent < 1.0, ended["t"] - stop_sent
    heard = settled(sink_path(daemon)) - start
    time.sleep(0.3)
    assert settled(sink_path(daemon)) - start == heard  # nothing more reaches the sink
    full_s = len(LONG_TEXT) / FASTEST_SPEECH_CHARS_PER_S
    assert heard / device_rate(daemon) < full_s / 2


def test_rate_changes_the_duration(daemon: RunningDaemon, spd: SpeechDispatcher) -> None:
    rate_hz = device_rate(daemon)
    text = "Rates of speech are measured in words per minute."
    normal = speech_s(say_and_measure(daemon, spd, "-r", "0", text), rate_hz)
    fast = speech_s(say_and_measure(daemon, spd, "-r", "50", text), rate_hz)  # utterd 2.0
    slow = speech_s(say_and_measure(daemon, spd, "-r", "-50", text), rate_hz)  # utterd 0.5
    assert 0.4 < fast / normal < 0.75, (fast, normal)
    assert 1.4 < slow / normal < 2.6, (slow, normal)


def test_volume_changes_the_level(daemon: RunningDaemon, spd: SpeechDispatcher) -> None:
    text = "Loud and quiet."
    normal = say_and_measure(daemon, spd, "-i", "0", text)
    half = say_and_measure(daemon, spd, "-i", "-50", text)  # utterd 0.5
    ratio = rms(half[np.abs(half) > 0]) / rms(normal[np.abs(normal) > 0])
    assert 0.35 < ratio < 0.65, ratio


def test_characters_keys_icons_and_voices(daemon: RunningDaemon, spd: SpeechDispatcher) -> None:
    rate_hz = device_rate(daemon)
    for args in (("-c", "a"), ("-k", "shift_kp-enter")):
        assert speech_s(say_and_measure(daemon, spd, *args), rate_hz) > 0.1, args
    spd.say("-w", "-I", "message", timeout_s=10)  # a short silence; it ends
    listed = spd.say("-L").stdout
    assert HEART in listed and JOE in listed
    events = daemon.subscribe()
    say_and_measure(daemon, spd, "-y", JOE, "Joe speaks now.")
    assert next_event(events, {"begin"}, None, 5)["data"]["voice"] == JOE


def test_a_daemon_crash_ends_the_message_and_speech_resumes(
    daemon: RunningDaemon, spd: SpeechDispatcher
) -> None:
    client = spd.client(LONG_TEXT)
    callbacks(client, {"begin"}, 60)
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    assert callbacks(client, {"end", "cancel"}, 5)[-1]["kind"] == "cancel"
    assert "event=daemon-lost-while-speaking" in spd.module_log()
    # A message while the daemon is down ends at once (not a wait for ever) and is logged.
    spd.say("-w", "Nobody is listening.", timeout_s=15)
    assert "event=speak-failed" in spd.module_log()
    daemon.start()
    audio = say_and_measure(daemon, spd, "The daemon is back.")
    assert speech_s(audio, device_rate(daemon)) > 0.5
