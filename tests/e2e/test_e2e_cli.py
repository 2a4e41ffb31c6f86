"""End to end: the `utterd` command line as a newcomer uses it, against a real daemon (file sink)
and against none. Every error is one line on standard error and a non-zero exit, never a
traceback; the CLI answers at once when no daemon's socket exists."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env

pytestmark = pytest.mark.e2e

HIBARI = "hibari-heart"
JOE = "en_US-joe-medium"

HANG_GUARD_S = 60.0
"""Subprocess bound for commands that must return at once: a wait of --timeout (1000 s here)
or of the old 300 s floor fails the test by TimeoutExpired instead of hanging the suite."""


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one, no traceback)."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("utterd: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def fresh_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """A daemon that has done nothing yet: no cache lookups, no jobs (tests here keep it so,
    except where they say)."""
    tmp = tmp_path_factory.mktemp("clid")
    env, _ = file_sink_env(tmp)
    with RunningDaemon(tmp, clean_env(env)) as d:
        yield d


def _synthesized(d: RunningDaemon) -> int:
    with d.client() as c:
        return int(c.request("describe")[0]["data"]["counters"]["synthesized"])


# -- a fresh daemon: status and cache stats ----------------------------------------------------


def test_status_on_a_fresh_daemon_is_a_short_summary_of_what_the_readme_promises(
    fresh_daemon: RunningDaemon,
) -> None:
    r = fresh_daemon.cli("status")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    # README: "voices, backend, device, queue, cache".
    for heading in ("voices:", "backend:", "device:", "queue:", "cache:"):
        assert any(line.startswith(heading) for line in out.splitlines()), (heading, out)
    assert HIBARI in out and JOE in out
    assert "no lookups yet" in out, "a fresh cache has no hit rate"
    assert len(out.splitlines()) <= 12, "a summary, not a dump"
    # `describe` is the daemon's whole self-description; `status` is not a copy of it.
    described = fresh_daemon.cli("describe")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["default_voice"] == HIBARI
    assert described.stdout != out
    # --json stays the whole reply, for scripts.
    as_json = fresh_daemon.cli("status", "--json")
    assert as_json.returncode == 0 and "faults" in json.loads(as_json.stdout)


def test_cache_stats_on_a_fresh_daemon(fresh_daemon: RunningDaemon) -> None:
    r = fresh_daemon.cli("cache", "stats")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[:2]] == ["ram", "disk"]
    assert "no lookups yet" in r.stdout
    assert json.loads(fresh_daemon.cli("cache", "stats", "--json").stdout)["hit_rate"] is None


# -- no daemon --------------------------------------------------------------------------------


def _no_daemon_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"server:\n  runtime_dir: {tmp_path / 'run'}\n")
    return cfg


@pytest.mark.parametrize("command", ["synth", "say"])
def test_a_missing_socket_is_reported_at_once(tmp_path: Path, command: str) -> None:
    d = RunningDaemon(tmp_path, clean_env({}))
    cfg = _no_daemon_config(tmp_path)
    args = [command, "Hello."] + (["-o", str(tmp_path / "x.wav")] if command == "synth" else [])
    r = d.cli("--config", str(cfg), "--timeout", "1000", *args, timeout_s=HANG_GUARD_S)
    assert r.returncode == 3
    line = _one_line_error(r)
    assert "no socket at" in line and str(tmp_path / "run" / "utterd.sock") in line
    assert "utterd serve" in line


def test_synth_timeout_bounds_the_wait_for_a_daemon_that_does_not_answer(tmp_path: Path) -> None:
    """A socket file with no daemon behind it (left by a killed daemon): `--timeout` decides."""
    d = RunningDaemon(tmp_path, clean_env({}))
    cfg = _no_daemon_config(tmp_path)
    (tmp_path / "run").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "run" / "utterd.sock"))
    stale.close()  # the file stays; nobody listens
    r = d.cli(
        "--config",
        str(cfg),
        "--timeout",
        "0.5",
        "synth",
        "Hello.",
        "-o",
        str(tmp_path / "x.wav"),
        timeout_s=HANG_GUARD_S,
    )
    assert r.returncode == 3
    assert "not answering" in _one_line_error(r)


# -- bad input: one line, non-zero, nothing done ------------------------------------------------


def test_cache_warm_with_a_missing_file_is_one_line(
    fresh_daemon: RunningDaemon, tmp_path: Path
) -> None:
    missing = tmp_path / "prompts.txt"
    line = _one_line_error(fresh_daemon.cli("cache", "warm", str(missing)))
    assert str(missing) in line


def test_cache_warm_with_a_folder_or_a_non_utf8_file_is_one_line(
    fresh_daemon: RunningDaemon, tmp_path: Path
) -> None:
    _one_line_error(fresh_daemon.cli("cache", "warm", str(tmp_path)))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\xe9 ouvert.\n".encode("latin-1"))
    assert "UTF-8" in _one_line_error(fresh_daemon.cli("cache", "warm", str(latin1)))


def test_synth_into_a_missing_folder_fails_before_synthesizing(
    fresh_daemon: RunningDaemon, tmp_path: Path
) -> None:
    before = _synthesized(fresh_daemon)
    target = tmp_path / "no-such-folder" / "x.wav"
    line = _one_line_error(fresh_daemon.cli("synth", "Battery low.", "-o", str(target)))
    assert str(target.parent) in line
    line = _one_line_error(fresh_daemon.cli("synth", "Battery low.", "-o", str(tmp_path)))
    assert str(tmp_path) in line
    assert _synthesized(fresh_daemon) == before, "nothing may be synthesized for a bad path"
    assert not target.parent.exists()


def test_other_cli_errors_are_one_line(fresh_daemon: RunningDaemon, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("voices: [\n")
    assert "bad.yaml" in _one_line_error(fresh_daemon.cli("--config", str(bad), "status"))
    _one_line_error(fresh_daemon.cli("--config", str(tmp_path / "none.yaml"), "status"))
    _one_line_error(fresh_daemon.cli("keys", "client", "kiosk", "--dir", str(tmp_path / "no")))
    _one_line_error(
        fresh_daemon.cli("--server-key", str(tmp_path / "k"), "--client-key", "x", "status")
    )
    # The daemon's error replies.
    assert "unknown-voice" in _one_line_error(fresh_daemon.cli("say", "--voice", "nobody", "hi"))
    assert "unknown-job" in _one_line_error(fresh_daemon.cli("stop", "--job", "j-nope"))


@pytest.mark.parametrize("command", [["synth", "-", "-o", "-"], ["say", "--stream", "-"]])
def test_standard_input_that_is_not_utf8_is_one_line(
    fresh_daemon: RunningDaemon, command: list[str]
) -> None:
    raw = subprocess.run(
        [sys.executable, "-m", "utterd.daemon.cli", "--config", str(fresh_daemon.config_path)]
        + command,
        env=fresh_daemon.env,
        input="Caf\xe9 ouvert.\n".encode("latin-1"),
        capture_output=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    r = subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(errors="replace"), raw.stderr.decode()
    )
    assert "UTF-8" in _one_line_error(r)
