"""The eco profile (daemon/profile.py, issue 20): one inference thread, pre-warming wholly at the
lowest priority, no spinning, and an idle daemon that does not wake the CPU for nothing.

Wake-ups are counted as context switches of the threads concerned (/proc/.../status): a thread
blocked in a wait switches out once each time it wakes. The bounds are on counts over a window,
with room for a busy machine, never on how long something took.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
from fakes import FakeSoundDevice, fake_sd_fixture  # noqa: F401  # the fixture fake_sd
from onnx import TensorProto, helper, save_model
from utterd.daemon.audio.player import Player, PlayerHealth
from utterd.daemon.cache.prewarm import Prewarmer, PrewarmSpec
from utterd.daemon.config import ConfigError, settings_from_mapping
from utterd.daemon.faults import DEFAULT_POLL_INTERVAL_S
from utterd.daemon.outbox import OUTBOX_ENDPOINT, Outbox, decode, is_wake
from utterd.daemon.profile import (
    ECO_FAULT_POLL_S,
    ECO_STATUS_PERIOD_S,
    fault_poll_interval_s,
    status_period_s,
)
from utterd.daemon.sdnotify import Notifier
from utterd.daemon.settings import AudioSettings
from utterd.daemon.watchdog import STATUS_PERIOD_S, Heartbeat, Watchdog, liveness_problem
from utterd.models.engine.ort_session import open_onnxruntime
from utterd.models.engine.session import SessionOptions
from utterd.models.engine.threads import intra_op_threads, physical_core_count
from utterd.models.voice import EngineSettings, SynthesisParams

# -- the setting --------------------------------------------------------------------------------


def test_eco_resolves_auto_threads_to_one_and_keeps_an_explicit_count() -> None:
    eco = settings_from_mapping({"profile": "eco"}, "config.yaml")
    assert eco.profile == "eco"
    assert eco.voices.threads == 1
    assert intra_op_threads(EngineSettings(threads=eco.voices.threads)) == 1

    explicit = settings_from_mapping({"profile": "eco", "voices": {"threads": 2}}, "config.yaml")
    assert explicit.voices.threads == 2

    default = settings_from_mapping({}, "config.yaml")
    assert default.profile == "default"
    assert default.voices.threads == 0
    assert intra_op_threads(EngineSettings(threads=default.voices.threads)) == (
        physical_core_count()
    )


def test_an_unknown_profile_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"profile": "turbo"}, "config.yaml")
    assert str(caught.value) == ("config.yaml: profile: expected one of default, eco, got 'turbo'")


def test_eco_waits_longer_between_periodic_looks() -> None:
    assert status_period_s("default") == STATUS_PERIOD_S
    assert status_period_s("eco") == ECO_STATUS_PERIOD_S > STATUS_PERIOD_S
    assert fault_poll_interval_s("default") == DEFAULT_POLL_INTERVAL_S
    assert fault_poll_interval_s("eco") == ECO_FAULT_POLL_S > DEFAULT_POLL_INTERVAL_S


# -- one thread, no spinning ----------------------------------------------------------------------


def _matmul_model(path: Path) -> Path:
    """A MatMul big enough that ONNX Runtime would split it over a thread pool if it had one."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 256])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "x"], ["y"])], "mm", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    save_model(model, str(path))
    return path


def _own_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_an_eco_session_runs_on_its_callers_thread_and_does_not_spin(tmp_path: Path) -> None:
    model = _matmul_model(tmp_path / "mm.onnx")
    eco = settings_from_mapping({"profile": "eco"}, "config.yaml")
    # The runtime's own process-wide threads come with the first session: start from there.
    first = open_onnxruntime(model, EngineSettings(threads=1), "first", SessionOptions())
    before = _own_threads()
    session = open_onnxruntime(
        model, EngineSettings(threads=eco.voices.threads), "mm", SessionOptions()
    )
    pooled = open_onnxruntime(model, EngineSettings(threads=2), "pooled", SessionOptions())
    try:
        assert session.runtime_info()["threads"] == 1
        assert _own_threads() == before + 1, "only the two-thread session added a pool thread"
        ort_session = session._session  # type: ignore[attr-defined]
        options = ort_session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        x = np.ones((256, 256), dtype=np.float32)
        (y,) = session.run(None, {"x": x})
        assert float(y[0, 0]) == 256.0
    finally:
        for opened in (first, session, pooled):
            opened.close()


def test_prewarm_renders_at_the_lowest_priority_on_its_own_thread(tmp_path: Path) -> None:
    """With one inference thread the whole render is the warming thread's work, so it all runs
    SCHED_IDLE at nice 19 (with more threads the live pool's threads would do part of it)."""
    model = _matmul_model(tmp_path / "mm.onnx")
    session = open_onnxruntime(model, EngineSettings(threads=1), "mm", SessionOptions())
    seen: list[tuple[int, int, int, int]] = []

    def render(_spec: PrewarmSpec, _cancel: object) -> None:
        tid = threading.get_native_id()
        threads_before = _own_threads()
        session.run(None, {"x": np.ones((256, 256), dtype=np.float32)})
        seen.append(
            (
                os.sched_getscheduler(tid),
                os.getpriority(os.PRIO_PROCESS, tid),
                threads_before,
                _own_threads(),
            )
        )

    spec = PrewarmSpec(text="Battery low.", voice=None, params=SynthesisParams(), source="test")
    warmer = Prewarmer([spec], render, lambda _s: False, lambda: False)
    warmer.start()
    try:
        assert warmer.wait(30.0)
    finally:
        session.close()
    [(policy, nice, threads_before, threads_after)] = seen
    assert policy == os.SCHED_IDLE
    assert nice == 19
    assert threads_after == threads_before, "no thread at normal priority joined the render"


# -- idle wake-ups ----------------------------------------------------------------------------------


def _switches(tid: int) -> int:
    status = Path(f"/proc/self/task/{tid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def _wait(predicate: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_an_idle_player_supervisor_does_not_wake(fake_sd: FakeSoundDevice) -> None:
    player = Player(AudioSettings(sample_rate_hz=22050), 22050, lambda _e: None)
    player.start()
    try:
        supervisor = player._supervisor  # its thread id, to read its counters
        _wait(lambda: math.isinf(player.health().supervisor_sleep_s))
        tid = supervisor.native_id
        assert tid is not None
        first = _switches(tid)
        time.sleep(3.0)  # it used to wake once a second
        assert _switches(tid) - first <= 1
        health = player.health()
        assert liveness_problem(time.monotonic() + 60.0, Heartbeat(), health, 2.0) is not None, (
            "only because the loop heartbeat is old: the waiting supervisor itself is fine"
        )
        fresh = Heartbeat()
        assert liveness_problem(time.monotonic(), fresh, health, 2.0) is None
    finally:
        player.close()
    ended = player.health()
    assert ended.supervisor_sleep_s == 0.0, "an ended supervisor never comes round"


def test_a_loop_waiting_for_work_is_not_stuck_and_is_watched_again_once_woken() -> None:
    now = [100.0]
    loop = Heartbeat(lambda: now[0])
    idle_audio = PlayerHealth(supervisor_beat_s=100.0, supervisor_sleep_s=math.inf, callback_s=None)
    loop.beat(wait_s=math.inf)
    now[0] += 3600.0
    assert liveness_problem(now[0], loop, idle_audio, 2.0) is None
    loop.beat()  # woken: working from here
    now[0] += 2.5
    problem = liveness_problem(now[0], loop, idle_audio, 2.0)
    assert problem == "socket loop has not turned for 2.5 s"
    loop.beat(wait_s=1.0)
    now[0] += 2.9
    assert liveness_problem(now[0], loop, idle_audio, 2.0) is None
    now[0] += 0.2
    assert liveness_problem(now[0], loop, idle_audio, 2.0) is not None


def test_the_eco_watchdog_looks_only_as_often_as_systemd_needs(tmp_path: Path) -> None:
    audio = lambda: PlayerHealth(0.0, math.inf, None)
    address = str(tmp_path / "notify")
    with_ping = Notifier(address, watchdog_usec=30_000_000)  # WatchdogSec=30s, as shipped
    eco = Watchdog(
        with_ping, Heartbeat(), audio, lambda: "x", status_period_s=status_period_s("eco")
    )
    default = Watchdog(with_ping, Heartbeat(), audio, lambda: "x")
    assert default.tick_s == STATUS_PERIOD_S
    assert eco.tick_s == 15.0, "a ping every half WatchdogSec, no more"
    no_ping = Notifier(address)
    eco_status = Watchdog(
        no_ping, Heartbeat(), audio, lambda: "x", status_period_s=status_period_s("eco")
    )
    assert eco_status.tick_s == ECO_STATUS_PERIOD_S


def test_the_outbox_wakes_the_loop_with_a_message_that_is_no_reply() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(OUTBOX_ENDPOINT)
    outbox = Outbox(ctx)
    try:
        outbox.wake()
        outbox.reply([b"peer", b""], [b"reply"])
        assert pull.poll(2000)
        woken = pull.recv_multipart()
        assert is_wake(woken)
        reply = pull.recv_multipart()
        assert not is_wake(reply)
        assert decode(reply).frames == (b"reply",)
    finally:
        outbox.close()
        pull.close(linger=0)
        ctx.term()


def _all_switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        total += int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return total


IDLE_WINDOW_S = 5.0
IDLE_WAKEUPS_PER_S_MAX = 5.0
"""Generous: 0.3/s measured on the ALSA file sink (1.3/s in the default profile; 12-14/s before
the socket loop and the player's supervisor slept until they had work, docs/benchmarks.md, "Eco
profile"). A spinning thread pool or a busy loop would be hundreds or thousands."""


@pytest.mark.e2e
@pytest.mark.audio
def test_a_real_eco_daemon_hardly_wakes_while_idle(tmp_path: Path) -> None:
    env, _sink = file_sink_env(tmp_path)
    with RunningDaemon(tmp_path, clean_env(env), {"profile": "eco", "voices": {"threads": 0}}) as d:
        assert d.proc is not None
        with d.client() as client:
            header, _ = client.request("synthesize", {"text": "Ready.", "format": "wav"})
            assert header["type"] == "audio"
        opened = [
            line
            for line in d.log().splitlines()
            if "event=session_open" in line
            or ("session_open" in line and "intra_op_threads=" in line)
        ]
        assert opened and all("intra_op_threads=1" in line for line in opened), opened
        time.sleep(1.0)  # the reply's own wake-ups settle
        first = _all_switches(d.proc.pid)
        time.sleep(IDLE_WINDOW_S)
        per_s = (_all_switches(d.proc.pid) - first) / IDLE_WINDOW_S
    assert per_s <= IDLE_WAKEUPS_PER_S_MAX


def test_warming_that_waits_for_long_live_work_looks_ever_less_often() -> None:
    """While live work goes on (minutes of speech), the waiting warming thread looked 50 times a
    second (and its watcher woke as often); now it backs off, and the watcher sleeps."""
    looks = [0]
    busy = threading.Event()
    busy.set()

    def is_busy() -> bool:
        looks[0] += 1
        return busy.is_set()

    rendered: list[str] = []
    spec = PrewarmSpec(text="Door open.", voice=None, params=SynthesisParams(), source="test")
    warmer = Prewarmer([spec], lambda s, _c: rendered.append(s.text), lambda _s: False, is_busy)
    warmer.start()
    try:
        time.sleep(3.0)
        assert looks[0] <= 20, f"{looks[0]} looks in 3 s (it was about 150)"
        assert rendered == []
        busy.clear()
        assert warmer.wait(5.0), "warming resumes once the live work is over"
        assert rendered == ["Door open."]
    finally:
        warmer.stop()


_SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


@pytest.mark.e2e
@pytest.mark.audio
@pytest.mark.skipif(os.uname().machine not in _SYS_TGKILL, reason="tgkill's number unknown here")
def test_an_idle_daemon_stops_on_a_sigterm_that_another_thread_takes(tmp_path: Path) -> None:
    """Python runs signal handlers on the main thread (the socket loop) only; a loop that sleeps
    until it has work must still wake when the kernel hands SIGTERM to another thread."""
    import ctypes
    import signal

    env, _sink = file_sink_env(tmp_path)
    d = RunningDaemon(tmp_path, clean_env(env), {"profile": "eco"})
    with d:
        assert d.proc is not None
        pid = d.proc.pid
        time.sleep(1.0)
        others = [
            int(tid)
            for tid in os.listdir(f"/proc/{pid}/task")
            if int(tid) != pid
            and Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == "python"
        ]
        assert others, "the daemon has threads besides the main one"
        libc = ctypes.CDLL(None, use_errno=True)
        sent = libc.syscall(_SYS_TGKILL[os.uname().machine], pid, others[-1], signal.SIGTERM)
        assert sent == 0, os.strerror(ctypes.get_errno())
        assert d.proc.wait(timeout=20.0) == 0
