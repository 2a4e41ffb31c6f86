"""The watchdog's decision: WATCHDOG=1 only while the socket loop and the audio path move."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import numpy as np
import pytest
from fakes import FakeSoundDevice, fake_sd_fixture  # noqa: F401  # the fixture fake_sd
from fakes import wait_until as _wait
from utterd.daemon.audio.player import Player, PlayerHealth
from utterd.daemon.sdnotify import Notifier
from utterd.daemon.settings import AudioSettings
from utterd.daemon.watchdog import MIN_STALE_S, Heartbeat, Watchdog, liveness_problem, stale_limit_s
from utterd.models.voice import AudioChunk


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _idle_audio(at_s: float) -> PlayerHealth:
    return PlayerHealth(supervisor_beat_s=at_s, supervisor_sleep_s=1.0, callback_s=None)


def test_heartbeat_age() -> None:
    clock = Clock()
    beat = Heartbeat(clock)
    clock.now_s += 3.0
    assert beat.age_s() == 3.0
    beat.beat()
    assert beat.age_s() == 0.0


def test_stale_limit_follows_the_ping_interval_with_a_floor() -> None:
    assert stale_limit_s(15.0) == 15.0
    assert stale_limit_s(0.5) == MIN_STALE_S
    assert stale_limit_s(None) == MIN_STALE_S


def test_alive_while_the_loop_turns_and_the_audio_idles() -> None:
    clock = Clock()
    loop = Heartbeat(clock)
    clock.now_s += 4.0
    loop.beat()
    assert liveness_problem(clock.now_s, loop, _idle_audio(clock.now_s - 0.5), 5.0) is None


def test_a_loop_that_stopped_turning_is_stuck() -> None:
    clock = Clock()
    loop = Heartbeat(clock)
    clock.now_s += 5.0
    assert liveness_problem(clock.now_s, loop, _idle_audio(clock.now_s), 5.0) is None
    clock.now_s += 0.5
    problem = liveness_problem(clock.now_s, loop, _idle_audio(clock.now_s), 5.0)
    assert problem == "socket loop has not turned for 5.5 s"


def test_the_audio_supervisor_may_sleep_as_long_as_it_said() -> None:
    clock = Clock()
    loop = Heartbeat(clock)
    retrying = PlayerHealth(supervisor_beat_s=clock.now_s, supervisor_sleep_s=30.0, callback_s=None)
    clock.now_s += 34.0
    loop.beat()
    assert liveness_problem(clock.now_s, loop, retrying, 5.0) is None
    clock.now_s += 2.0
    loop.beat()
    problem = liveness_problem(clock.now_s, loop, retrying, 5.0)
    assert problem == "audio supervisor thread is 6.0 s overdue"


def test_a_started_stream_whose_callback_stopped_is_stuck() -> None:
    clock = Clock()
    loop = Heartbeat(clock)
    playing = PlayerHealth(
        supervisor_beat_s=clock.now_s, supervisor_sleep_s=0.25, callback_s=clock.now_s - 6.0
    )
    assert liveness_problem(clock.now_s, loop, playing, 5.0) == (
        "audio callback has not run for 6.0 s while the stream is started"
    )


# -- a real Player over the fake PortAudio (tests/fakes.py), whose callback runs only when pumped


def test_player_health_sees_a_callback_that_stopped_running(fake_sd: FakeSoundDevice) -> None:
    player = Player(
        AudioSettings(sample_rate_hz=22050, retry_interval_s=0.05), 22050, lambda _e: None
    )
    player.start()
    loop = Heartbeat()
    try:
        idle = player.health()
        assert idle.callback_s is None, "no stream is started while idle"
        assert liveness_problem(time.monotonic(), loop, idle, 0.3) is None

        samples = np.full(22050, 0.1, dtype=np.float32)
        player.play("j1", AudioChunk(samples, 22050))
        _wait(lambda: fake_sd.streams and fake_sd.streams[0].active)
        started = player.health()
        assert started.callback_s is not None
        # The device takes the stream but never calls back: stuck once the limit has passed.
        time.sleep(0.45)
        loop.beat()
        problem = liveness_problem(time.monotonic(), loop, player.health(), 0.3)
        assert problem is not None and problem.startswith("audio callback has not run")

        fake_sd.streams[0].pump(max_blocks=4)
        loop.beat()
        assert liveness_problem(time.monotonic(), loop, player.health(), 0.3) is None
    finally:
        player.close()


def test_player_health_sees_a_supervisor_that_ended(fake_sd: FakeSoundDevice) -> None:
    player = Player(AudioSettings(sample_rate_hz=22050), 22050, lambda _e: None)
    player.start()
    loop = Heartbeat()
    assert liveness_problem(time.monotonic(), loop, player.health(), 0.3) is None
    player.close()  # the supervisor thread returns: it will not come round again
    health = player.health()
    time.sleep(health.supervisor_sleep_s + 0.4)
    loop.beat()
    problem = liveness_problem(time.monotonic(), loop, player.health(), 0.3)
    assert problem is not None and "supervisor" in problem


# -- the thread, against a real notification socket -------------------------------------------


def _messages(sock: socket.socket, duration_s: float) -> list[tuple[float, list[str]]]:
    out: list[tuple[float, list[str]]] = []
    deadline = time.monotonic() + duration_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        out.append((time.monotonic(), data.decode().split("\n")))
    return out


def test_pings_stop_while_a_real_loop_is_stuck_and_resume_after(
    abstract_socket: tuple[socket.socket, str],
) -> None:
    sock, address = abstract_socket
    # WatchdogSec=0.4 s: a ping every 0.2 s, a loop standing still for MIN_STALE_S is stuck.
    notifier = Notifier(address, watchdog_usec=400_000)
    loop = Heartbeat()
    running = threading.Event()
    running.set()
    done = threading.Event()

    def socket_loop() -> None:  # turns every 10 ms, and stands still while `running` is clear
        while not done.is_set():
            running.wait()
            loop.beat()
            time.sleep(0.01)

    thread = threading.Thread(target=socket_loop, daemon=True)
    thread.start()
    audio = lambda: _idle_audio(time.monotonic())
    watchdog = Watchdog(notifier, loop, audio, lambda: "ready: test")
    assert watchdog.tick_s == pytest.approx(0.2)
    watchdog.start()
    try:
        healthy = _messages(sock, 1.0)
        pings = [t for t, lines in healthy if lines[0] == "WATCHDOG=1"]
        assert len(pings) >= 3, healthy
        assert healthy[0][1] == ["WATCHDOG=1", "STATUS=ready: test"]
        assert max(b - a for a, b in itertools.pairwise(pings)) < 0.6

        running.clear()  # the loop blocks
        stuck = _messages(sock, MIN_STALE_S + 1.2)
        stuck_from = next(
            t for t, lines in stuck if lines[0].startswith("STATUS=stuck: socket loop")
        )
        late_pings = [t for t, lines in stuck if lines[0] == "WATCHDOG=1" and t > stuck_from]
        assert late_pings == []
        assert watchdog.problem is not None and "socket loop" in watchdog.problem

        running.set()
        recovered = _messages(sock, 0.8)
        assert any(lines[0] == "WATCHDOG=1" for _, lines in recovered)
        assert watchdog.problem is None
    finally:
        done.set()
        running.set()
        watchdog.stop()
        thread.join(2.0)


def test_without_a_manager_no_thread_starts() -> None:
    watchdog = Watchdog(Notifier(None), Heartbeat(), lambda: _idle_audio(0.0), lambda: "x")
    watchdog.start()
    assert not watchdog.enabled
    watchdog.stop()
