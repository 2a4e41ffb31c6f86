"""End to end: utterd as a systemd service — sd_notify (READY, STATUS, WATCHDOG) to a socket
bound here, SIGHUP reloads (applied and rejected), SIGTERM (stop and finish) with the phrase cache
flushed, and the unit's systemd-analyze exposure score."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env, next_event
from utterd.daemon.cache.store import ENTRY_SUFFIX, TEMP_SUFFIX, read_entry_file
from utterd.daemon.client import Client, RequestFailed

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "utterd.service"
OPERATIONS = REPO / "docs" / "operations.md"

PROMPTS = ("The front door is open.", "Battery low.")
LONG = " ".join(
    [
        "Welcome to the city library.",
        "Our opening hours are nine in the morning to six in the evening, Monday to Saturday.",
        "Books may be borrowed for three weeks and renewed twice, online or at the front desk.",
        "The reading room on the second floor is quiet at all times.",
    ]
    * 4
)
MEDIUM = "The lift is out of order. Please use the stairs on your left. Thank you."


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket; records every message.

    `on_ready` runs on the receiving thread as soon as READY=1 arrives.
    """

    def __init__(self, abstract: bool = False) -> None:
        self._folder: str | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"utterd-e2e-notify-{secrets.token_hex(6)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:  # a short folder: sun_path holds 108 bytes
            self._folder = tempfile.mkdtemp(prefix="utterd-n-")
            self.address = os.path.join(self._folder, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self.on_ready: Any = None
        self.ready_result: object = None
        self.ready_checked = threading.Event()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            lines = data.decode().split("\n")
            with self._lock:
                self.messages.append((time.monotonic(), lines))
            if "READY=1" in lines and self.on_ready is not None and not self.ready_checked.is_set():
                self.ready_result = self.on_ready()
                self.ready_checked.set()

    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, lines in self.messages for line in lines]

    def times_of(self, line: str) -> list[float]:
        with self._lock:
            return [t for t, lines in self.messages if line in lines]

    def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.lines()):
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout_s} s: {self.lines()}")
            time.sleep(0.02)

    def close(self) -> None:
        self._done.set()
        self._thread.join(2.0)
        self.sock.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _ping(endpoint: str) -> str:
    """What a client sees when it pings right now (2 s to answer)."""
    try:
        with Client(endpoint, timeout_s=2.0) as c:
            return str(c.request("ping")[0]["type"])
    except Exception as exc:  # noqa: BLE001  # reported to the test as the result
        return repr(exc)


def _describe(d: RunningDaemon) -> dict[str, Any]:
    with d.client() as c:
        return dict(c.request("describe")[0]["data"])


def _write_config(d: RunningDaemon, text: str) -> None:
    """Replace the daemon's config file atomically, as an editor or a deploy tool would."""
    tmp = d.config_path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, d.config_path)


def _config_with(base: str, **sections: dict[str, Any]) -> str:
    """The YAML text `base` with some keys changed."""
    cfg = yaml.safe_load(base)
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return yaml.safe_dump(cfg)


@pytest.fixture(scope="module")
def notified(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningDaemon, NotifyListener]]:
    """A daemon started as systemd would start it with WatchdogSec=2."""
    tmp = tmp_path_factory.mktemp("notified")
    env, _ = file_sink_env(tmp)
    listener = NotifyListener()
    daemon = RunningDaemon(
        tmp,
        clean_env({**env, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "2000000"}),
        {"limits": {"max_text_chars": 5000}},
    )
    listener.on_ready = lambda: _ping(daemon.endpoint)
    try:
        with daemon:
            yield daemon, listener
    finally:
        listener.close()


def test_ready_comes_once_the_daemon_answers_with_its_voice_warm(
    notified: tuple[RunningDaemon, NotifyListener],
) -> None:
    d, listener = notified
    assert listener.ready_checked.wait(30)
    assert listener.ready_result == "pong", "a ping sent the moment READY=1 arrived is answered"
    lines = listener.lines()
    ready_at = lines.index("READY=1")
    before = lines[:ready_at]
    assert "STATUS=starting: binding sockets" in before
    assert "STATUS=starting: loading voice hibari-heart" in before
    ready_status = lines[ready_at + 1]
    assert re.fullmatch(
        r"STATUS=ready: [1-9]\d*/\d+ voices loaded, queue 0, device ok", ready_status
    )
    assert lines.count("READY=1") == 1
    voice = next(v for v in _describe(d)["voices"] if v["id"] == "hibari-heart")
    assert voice["loaded"]


def test_watchdog_pings_keep_coming_while_it_serves(
    notified: tuple[RunningDaemon, NotifyListener],
) -> None:
    d, listener = notified
    listener.wait_for(lambda lines: "READY=1" in lines)
    t0 = time.monotonic()
    with d.client() as c:
        job = c.request("speak", {"text": MEDIUM})[0]["data"]["job"]
    assert d.wait_job(job)["state"] == "done"
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    pings = [t for t in listener.times_of("WATCHDOG=1") if t >= t0]
    # WatchdogSec=2: a ping at least every second, so none is ever missed for 2 s.
    assert len(pings) >= 3, listener.lines()[-20:]
    assert max(b - a for a, b in itertools.pairwise([t0, *pings])) < 1.8
    watchdog = _describe(d)["watchdog"]
    assert watchdog == {"enabled": True, "stale_after_s": 2.0, "problem": None}


def test_sighup_applies_a_valid_config_and_rejects_broken_ones(
    notified: tuple[RunningDaemon, NotifyListener],
) -> None:
    d, listener = notified
    assert d.proc is not None
    original = d.config_path.read_text()
    sixty = "This sentence is sixty characters long, give or take a few."
    sub = d.subscribe()
    try:
        # 1. A valid change: the text limit goes down, and a key that needs a restart changes.
        lowered = _config_with(original, limits={"max_text_chars": 50}, audio={"latency_ms": 40.0})
        _write_config(d, lowered)
        reloads_before = listener.lines().count("RELOADING=1")
        d.proc.send_signal(signal.SIGHUP)
        event = next_event(sub, {"config-reloaded", "config-rejected"}, None, 30)
        assert event["type"] == "config-reloaded", event
        assert event["data"]["changed"] == ["limits.max_text_chars"]
        assert event["data"]["restart_required"] == ["audio.latency_ms"]
        assert event["data"]["generation"] == 2
        with d.client() as c, pytest.raises(RequestFailed) as too_long:
            c.request("speak", {"text": sixty})
        assert too_long.value.code == "text-too-long"
        info = _describe(d)
        assert info["config"]["generation"] == 2
        assert info["config"]["last_reload"]["result"] == "applied"
        assert info["config"]["restart_required"] == ["audio.latency_ms"]
        assert info["device"]["available"]
        listener.wait_for(lambda lines: lines.count("RELOADING=1") == reloads_before + 1)
        listener.wait_for(lambda lines: lines.count("READY=1") == 2)
        log = d.log()
        assert "event=config-reloaded" in log and "changed=limits.max_text_chars" in log
        assert re.search(
            r"event=config-needs-restart key=audio\.latency_ms file=\S+config\.yaml", log
        )

        # 2. A YAML syntax error: rejected, naming the file and the line; the old config stays.
        _write_config(d, "limits:\n  max_text_chars: [5000\n")
        d.proc.send_signal(signal.SIGHUP)
        event = next_event(sub, {"config-reloaded", "config-rejected"}, None, 30)
        assert event["type"] == "config-rejected", event
        assert event["data"]["file"] == str(d.config_path)
        assert "invalid YAML" in event["data"]["reason"] and "line " in event["data"]["reason"]
        assert event["data"]["generation"] == 2

        # 3. A bad value: rejected, naming the key.
        _write_config(d, _config_with(lowered, limits={"max_text_chars": -5}))
        d.proc.send_signal(signal.SIGHUP)
        event = next_event(sub, {"config-reloaded", "config-rejected"}, None, 30)
        assert event["type"] == "config-rejected", event
        assert event["data"]["key"] == "limits.max_text_chars"
        assert "-5" in event["data"]["reason"]
    finally:
        sub.close(linger=0)
        _write_config(d, original)

    log = d.log()
    rejected = [line for line in log.splitlines() if "event=config-rejected" in line]
    assert len(rejected) == 2
    assert f"file={d.config_path}" in rejected[0] and "invalid YAML" in rejected[0]
    assert "key=limits.max_text_chars" in rejected[1]
    assert d.alive()
    # Still the config of generation 2: 50 characters, and it still speaks.
    info = _describe(d)
    assert info["config"]["generation"] == 2
    assert info["config"]["last_reload"]["result"] == "rejected"
    assert info["config"]["last_reload"]["key"] == "limits.max_text_chars"
    with d.client() as c:
        with pytest.raises(RequestFailed) as too_long:
            c.request("speak", {"text": sixty})
        assert too_long.value.code == "text-too-long"
        job = c.request("speak", {"text": "Still here."})[0]["data"]["job"]
    assert d.wait_job(job)["state"] == "done"
    assert listener.lines().count("READY=1") == 4, "every reload ends with READY=1"
    # Back to the original file (5000 characters) for whatever runs after.
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while _describe(d)["config"]["generation"] != 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _entries(cache_dir: Path) -> dict[str, int]:
    """Cache entry files, each read and checksum-verified, by name: sample count."""
    return {
        p.name: read_entry_file(p).sample_count for p in sorted(cache_dir.glob(f"*{ENTRY_SUFFIX}"))
    }


def _cache_idle(d: RunningDaemon) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        cache = dict(_describe(d)["cache"])
        if cache["in_flight"] == 0 or time.monotonic() > deadline:
            return cache
        time.sleep(0.05)


def test_sigterm_mid_speech_exits_0_and_keeps_the_cache(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    listener = NotifyListener(abstract=True)
    cache_dir = tmp_path / "phrases"
    cfg = {"cache": {"dir": str(cache_dir)}, "limits": {"max_text_chars": 5000}}
    try:
        with RunningDaemon(
            tmp_path, clean_env({**env, "NOTIFY_SOCKET": listener.address}), cfg
        ) as d:
            assert d.proc is not None
            with d.client() as c:
                for text in PROMPTS:
                    job = c.request("speak", {"text": text})[0]["data"]["job"]
                    assert d.wait_job(job)["state"] == "done"
            assert _cache_idle(d)["disk"]["entries"] == len(PROMPTS)
            written = _entries(cache_dir)
            sub = d.subscribe()
            try:
                with d.client() as c:
                    job = c.request("speak", {"text": LONG})[0]["data"]["job"]
                next_event(sub, {"begin"}, job, 60)
            finally:
                sub.close(linger=0)
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(30) == 0
            log = d.log()
            assert "event=signal signal=SIGTERM action=stop" in log
            assert "event=cache-flushed" in log and "event=stopped" in log
            assert "STOPPING=1" in listener.lines()
        assert not list(cache_dir.glob(f"*{TEMP_SUFFIX}")), "no temporary file left behind"
        assert _entries(cache_dir) == written, "entries written before the signal are intact"

        with RunningDaemon(tmp_path, clean_env(env), cfg) as d:
            before = _cache_idle(d)
            assert before["disk"]["entries"] == len(PROMPTS)
            with d.client() as c:
                job = c.request("speak", {"text": PROMPTS[0]})[0]["data"]["job"]
            assert d.wait_job(job)["state"] == "done"
            after = _cache_idle(d)
            assert after["disk"]["hits"] == before["disk"]["hits"] + 1
            assert after["corrupt_discarded"] == 0
    finally:
        listener.close()


def test_sigterm_with_on_shutdown_finish_lets_the_job_end(tmp_path: Path) -> None:
    env, sink = file_sink_env(tmp_path)
    cfg = {"server": {"on_shutdown": "finish", "shutdown_finish_s": 60.0}}
    with RunningDaemon(tmp_path, clean_env(env), cfg) as d:
        assert d.proc is not None
        sub = d.subscribe()
        try:
            with d.client() as c:
                # `important` is never interrupted; `message` waits behind it.
                data = {"text": MEDIUM, "cache": "off", "priority": "important"}
                job = c.request("speak", data)[0]["data"]["job"]
                data = {"text": PROMPTS[1], "cache": "off", "priority": "message"}
                queued = c.request("speak", data)[0]["data"]["job"]
            next_event(sub, {"begin"}, job, 60)
            d.proc.send_signal(signal.SIGTERM)
            end = next_event(sub, {"end", "stopped", "failed"}, job, 60)
            assert end["type"] == "end", end
            assert d.proc.wait(30) == 0
        finally:
            sub.close(linger=0)
        log = d.log()
        assert f"event=signal signal=SIGTERM action=finish job={job}" in log
        assert f"event=job-stopped job={queued}" in log, "the waiting job is dropped, not spoken"
        assert f"event=job-begin job={queued}" not in log
        assert sink.exists() and sink.stat().st_size > 0


# -- logs ---------------------------------------------------------------------------------------


def test_spoken_text_is_logged_at_debug_only(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    secret = "My account number is four four two one."
    with RunningDaemon(tmp_path, clean_env(env), {"log_level": "INFO"}) as d:
        with d.client() as c:
            job = c.request("speak", {"text": secret})[0]["data"]["job"]
        assert d.wait_job(job)["state"] == "done"
    log = d.log()
    assert secret not in log and "account number" not in log
    events = [line for line in log.splitlines() if f"job={job}" in line]
    assert any("event=job-queued" in line for line in events)
    assert any("event=job-end" in line for line in events)
    # One event per line: its name (`event=NAME`, or the bare name in models/), then key=value.
    for line in log.splitlines():
        if " INFO utterd." in line:
            assert re.search(r" INFO utterd\.[\w.]+ (event=)?[\w-]+( \w+=|$)", line), line


# -- the unit's hardening -------------------------------------------------------------------------


def _documented_score() -> float:
    match = re.search(r"exposure level for utterd\.service: (\d+\.\d+)", OPERATIONS.read_text())
    assert match, "docs/operations.md records the score systemd-analyze gives the unit"
    return float(match.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_exposure_stays_at_or_below_the_documented_score(tmp_path: Path) -> None:
    # A copy outside systemd's search path, so an installed utterd.service cannot shadow it.
    unit = tmp_path / "utterd.service"
    shutil.copy(UNIT, unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    if "Unknown option" in out or "unrecognized option" in out:
        pytest.skip(f"this systemd-analyze has no --offline mode: {out.strip()[:200]}")
    match = re.search(r"Overall exposure level for utterd\.service: (\d+\.\d+)", out)
    assert match, out
    score = float(match.group(1))
    assert score <= _documented_score(), out
    assert score <= 2.0, out
