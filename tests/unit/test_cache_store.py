"""Phrase cache store: real files, real threads, real subprocesses killed with SIGKILL."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from utterd.daemon.cache.store import (
    ENTRY_SUFFIX,
    HEADER_BYTES,
    MAGIC,
    CacheEntry,
    CorruptCacheEntry,
    DiskState,
    PhraseCache,
    decode_entry,
    encode_entry,
    pcm16_to_float,
    read_entry_file,
)
from utterd.models.errors import Cancelled, SynthesisError
from utterd.models.voice import AudioChunk, CancelToken, float_to_pcm16

RATE_HZ = 22050
MiB = 1 << 20


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def make_entry(seed: int, samples: int = 4000, voice: str = "v", sentences: int = 2) -> CacheEntry:
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-20000, 20000, samples, dtype=np.int16).astype("<i2")
    step = max(1, samples // sentences)
    offsets = tuple(range(0, step * sentences, step))[:sentences]
    return CacheEntry(pcm.tobytes(), RATE_HZ, offsets, voice, {"seed": seed})


def chunks_of(seed: int, count: int = 3, samples: int = 2000) -> list[AudioChunk]:
    rng = np.random.default_rng(seed)
    return [
        AudioChunk(
            (rng.standard_normal(samples) * 0.2).astype(np.float32), RATE_HZ, i, sentence_end=True
        )
        for i in range(count)
    ]


def pcm_of(chunks: list[AudioChunk]) -> npt.NDArray[np.int16]:
    return np.concatenate([float_to_pcm16(c.samples) for c in chunks])


def dir_bytes(path: Path) -> int:
    total = 0
    for item in path.iterdir():
        try:
            total += item.stat().st_size
        except FileNotFoundError:  # evicted or renamed while we looked
            pass
    return total


def entry_files(path: Path) -> list[Path]:
    return sorted(path.glob("*" + ENTRY_SUFFIX))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --- the file format -------------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    entry = make_entry(1, samples=5000, sentences=3)
    data = encode_entry(key_of("a"), entry)
    assert data[:8] == MAGIC
    assert data.endswith(entry.pcm)
    assert decode_entry(key_of("a"), data) == entry


def test_every_truncation_is_detected() -> None:
    data = encode_entry(key_of("t"), make_entry(2, samples=50))
    for length in range(len(data)):
        with pytest.raises(CorruptCacheEntry):
            decode_entry(key_of("t"), data[:length])
    with pytest.raises(CorruptCacheEntry):
        decode_entry(key_of("t"), data + b"\0")


@given(st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_flipped_bit_is_detected(data: st.DataObject) -> None:
    raw = bytearray(encode_entry(key_of("f"), make_entry(3, samples=200)))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptCacheEntry):
        decode_entry(key_of("f"), bytes(raw))


def test_a_file_under_another_key_is_rejected() -> None:
    data = encode_entry(key_of("x"), make_entry(4))
    with pytest.raises(CorruptCacheEntry, match="key"):
        decode_entry(key_of("y"), data)


def test_pcm_conversion_round_trips_exactly() -> None:
    every = np.arange(-32767, 32768, dtype=np.int16)
    assert np.array_equal(float_to_pcm16(pcm16_to_float(every)), every)
    assert pcm16_to_float(np.zeros(3, np.int16)).tolist() == [0.0, 0.0, 0.0]


def test_entry_chunks_keep_sentences_and_size_limit() -> None:
    pcm = np.arange(10_000, dtype=np.int16)
    entry = CacheEntry(pcm.tobytes(), RATE_HZ, (0, 3000, 3000, 9000), "v")
    chunks = list(entry.chunks(max_chunk_samples=2000))
    assert [(c.sentence_index, len(c.samples), c.sentence_end) for c in chunks] == [
        (0, 2000, False),
        (0, 1000, True),
        (1, 0, True),  # an empty sentence keeps its index mark
        (2, 2000, False),
        (2, 2000, False),
        (2, 2000, True),
        (3, 1000, True),
    ]
    assert np.array_equal(pcm_of(chunks), pcm)


def test_from_chunks_records_sentence_offsets() -> None:
    chunks = [
        AudioChunk(np.full(100, 0.1, np.float32), RATE_HZ, 0, False),
        AudioChunk(np.full(50, 0.1, np.float32), RATE_HZ, 0, True),
        AudioChunk(np.full(70, 0.1, np.float32), RATE_HZ, 1, True),
    ]
    entry = CacheEntry.from_chunks(chunks, "v")
    assert entry.sentence_offsets == (0, 150)
    assert entry.sample_count == 220


# --- tiers, restart, eviction ----------------------------------------------------------------


def test_restart_sees_the_entries(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, 4 * MiB)
    entries = {key_of(f"p{i}"): make_entry(i) for i in range(5)}
    for key, entry in entries.items():
        cache.put(key, entry)
    cache.close()

    reopened = PhraseCache(cache_dir, MiB, 4 * MiB)
    assert reopened.stats().disk.entries == 5
    for key, entry in entries.items():
        assert reopened.get(key) == entry
    stats = reopened.stats()
    assert (stats.disk.hits, stats.ram.hits) == (5, 0)
    # Promoted: the second read comes from RAM.
    assert reopened.get(key_of("p0")) == entries[key_of("p0")]
    assert reopened.stats().ram.hits == 1
    reopened.close()


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_entry_is_a_logged_miss_and_is_recreated(
    cache_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = key_of("corrupt")
    good = make_entry(7, samples=8000)
    cache = PhraseCache(cache_dir, 0, 4 * MiB)  # no RAM tier: every read goes to the file
    cache.put(key, good)
    path = cache_dir / f"{key}{ENTRY_SUFFIX}"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        raw[HEADER_BYTES + 5000] ^= 0x40
        path.write_bytes(raw)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(os.urandom(len(raw)))

    with caplog.at_level(logging.WARNING, logger="utterd.daemon.cache.disk"):
        assert cache.get(key) is None
    assert f"event=cache-corrupt key={key}" in caplog.text
    assert not path.exists()
    assert cache.stats().corrupt_discarded == 1

    calls = []

    def producer() -> CacheEntry:
        calls.append(1)
        return good

    assert cache.get_or_create(key, producer) == good
    assert calls == [1]
    assert read_entry_file(path) == good
    cache.close()


def test_corrupt_entry_found_at_start_is_discarded(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, 0, 4 * MiB)
    cache.put(key_of("a"), make_entry(1))
    cache.put(key_of("b"), make_entry(2))
    cache.close()
    bad = cache_dir / f"{key_of('a')}{ENTRY_SUFFIX}"
    bad.write_bytes(bad.read_bytes()[:50])  # the header itself is cut
    reopened = PhraseCache(cache_dir, 0, 4 * MiB)
    assert not bad.exists()
    assert reopened.stats().disk.entries == 1
    assert reopened.get(key_of("b")) == make_entry(2)
    reopened.close()


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**9), st.integers(0, 7)), max_size=8))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_never_returns_corrupt_data(tmp_path: Path, flips: list[tuple[int, int, int]]) -> None:
    folder = tmp_path / f"never-{random.getrandbits(32):x}"
    cache = PhraseCache(folder, 0, 4 * MiB)
    originals = {key_of(f"n{i}"): make_entry(i, samples=300) for i in range(6)}
    for key, entry in originals.items():
        cache.put(key, entry)
    keys = list(originals)
    for which, where, bit in flips:
        path = folder / f"{keys[which]}{ENTRY_SUFFIX}"
        if path.exists():
            raw = bytearray(path.read_bytes())
            raw[where % len(raw)] ^= 1 << bit
            path.write_bytes(raw)
    cache.close()
    reopened = PhraseCache(folder, 0, 4 * MiB)
    for key, entry in originals.items():
        got = reopened.get(key)
        assert got is None or got == entry
    reopened.close()
    shutil.rmtree(folder)


def test_temp_files_are_removed_at_start(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, 0, MiB)
    cache.put(key_of("a"), make_entry(1))
    cache.close()
    leftover = cache_dir / f".{key_of('b')}.1234abcd.tmp"
    leftover.write_bytes(b"half an entry")
    reopened = PhraseCache(cache_dir, 0, MiB)
    assert not leftover.exists()
    assert reopened.get(key_of("a")) == make_entry(1)
    reopened.close()


def test_disk_eviction_keeps_the_most_recently_used(cache_dir: Path) -> None:
    size = len(encode_entry(key_of("a"), make_entry(ord("a"))))
    entry_cost = -(-size // 4096) * 4096  # charged in whole 4 KiB blocks
    cache = PhraseCache(cache_dir, 0, 3 * entry_cost)
    for name in "abc":
        cache.put(key_of(name), make_entry(ord(name)))
    assert cache.stats().disk.entries == 3
    assert cache.get(key_of("a")) is not None  # a is now the most recently used
    cache.put(key_of("d"), make_entry(ord("d")))  # evicts b, the least recently used
    assert not cache.contains(key_of("b"))
    assert all(cache.contains(key_of(n)) for n in "acd")
    assert dir_bytes(cache_dir) <= 3 * entry_cost
    cache.close()

    # Last use survives a restart (file mtimes), so the order does too.
    reopened = PhraseCache(cache_dir, 0, 3 * entry_cost)
    reopened.put(key_of("e"), make_entry(ord("e")))
    assert not reopened.contains(key_of("c"))
    assert all(reopened.contains(key_of(n)) for n in "ade")
    reopened.close()


def test_lru_order_survives_restart_even_within_one_clock_tick(cache_dir: Path) -> None:
    # File times come from a coarse kernel clock; uses microseconds apart must still be ordered.
    size = len(encode_entry(key_of("q0"), make_entry(0, samples=100)))
    cost = -(-size // 4096) * 4096
    cache = PhraseCache(cache_dir, 0, 12 * cost)
    for i in range(12):
        cache.put(key_of(f"q{i}"), make_entry(i, samples=100))
    for i in range(0, 12, 2):  # the even ones become the most recently used, in order
        assert cache.get(key_of(f"q{i}")) is not None
    cache.close()
    reopened = PhraseCache(cache_dir, 0, 12 * cost)
    for extra in range(6):  # evicts exactly the six odd ones, oldest first
        reopened.put(key_of(f"new{extra}"), make_entry(100 + extra, samples=100))
        assert not reopened.contains(key_of(f"q{2 * extra + 1}"))
        assert reopened.stats().disk.entries == 12
    assert all(reopened.contains(key_of(f"q{i}")) for i in range(0, 12, 2))
    reopened.close()


def test_lowered_budget_is_enforced_at_start(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, 0, MiB)
    for i in range(10):
        cache.put(key_of(f"x{i}"), make_entry(i))
    cache.close()
    smaller = PhraseCache(cache_dir, 0, 40 * 1024)
    assert dir_bytes(cache_dir) <= 40 * 1024
    assert smaller.stats().disk.size_bytes <= 40 * 1024
    assert smaller.contains(key_of("x9"))  # the newest survive
    smaller.close()


def test_ram_budget_and_lru(tmp_path: Path) -> None:
    one = make_entry(1).size_bytes
    cache = PhraseCache(None, 3 * one, 0)
    for name in "abc":
        cache.put(key_of(name), make_entry(1))
    cache.get(key_of("a"))
    cache.put(key_of("d"), make_entry(1))
    stats = cache.stats()
    assert stats.ram.entries == 3 and stats.ram.size_bytes <= 3 * one
    assert not cache.contains(key_of("b"))
    assert stats.disk_state is DiskState.OFF and stats.disk_reason
    huge = make_entry(9, samples=4 * one)
    cache.put(key_of("huge"), huge)  # larger than the whole budget: not kept
    assert not cache.contains(key_of("huge"))
    assert cache.stats().ram.size_bytes <= 3 * one


def test_disk_budget_holds_during_concurrent_writes(cache_dir: Path) -> None:
    budget = 256 * 1024
    cache = PhraseCache(cache_dir, 0, budget)
    worst = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            worst[0] = max(worst[0], dir_bytes(cache_dir))

    def write(worker: int) -> None:
        rng = random.Random(worker)
        for i in range(40):
            samples = rng.randrange(100, 30_000)
            cache.put(key_of(f"w{worker}-{i}"), make_entry(i, samples=samples))

    watcher = threading.Thread(target=watch)
    watcher.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    watcher.join()
    assert 0 < worst[0] <= budget
    stats = cache.stats()
    assert stats.disk.size_bytes <= budget
    assert stats.disk.entries == len(entry_files(cache_dir))
    assert not list(cache_dir.glob("*.tmp"))
    cache.close()


def test_entry_larger_than_disk_budget_is_not_written(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, 16 * 1024)
    cache.put(key_of("big"), make_entry(1, samples=20_000))
    assert entry_files(cache_dir) == []
    assert cache.get(key_of("big")) is not None  # still served from RAM
    cache.close()


def test_clear_by_voice(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, 4 * MiB)
    for i in range(3):
        cache.put(key_of(f"joe{i}"), make_entry(i, voice="joe"))
        cache.put(key_of(f"heart{i}"), make_entry(i, voice="heart"))
    assert cache.clear("joe") == 3
    assert not any(cache.contains(key_of(f"joe{i}")) for i in range(3))
    assert all(cache.contains(key_of(f"heart{i}")) for i in range(3))
    cache.close()
    reopened = PhraseCache(cache_dir, MiB, 4 * MiB)  # the files are gone, not only the index
    assert reopened.stats().disk.entries == 3
    assert reopened.clear() == 3
    assert entry_files(cache_dir) == []
    reopened.close()


def test_unusable_dir_means_ram_only(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    cache = PhraseCache(not_a_dir, MiB, MiB)
    assert cache.disk_state is DiskState.OFF
    assert "cannot use" in (cache.stats().disk_reason or "")
    cache.put(key_of("a"), make_entry(1))
    assert cache.get(key_of("a")) == make_entry(1)


def test_second_cache_on_the_same_dir_stays_off_disk(cache_dir: Path) -> None:
    first = PhraseCache(cache_dir, MiB, MiB)
    second = PhraseCache(cache_dir, MiB, MiB)
    assert first.disk_state is DiskState.OK
    assert second.disk_state is DiskState.OFF
    assert "in use" in (second.stats().disk_reason or "")
    first.close()
    third = PhraseCache(cache_dir, MiB, MiB)
    assert third.disk_state is DiskState.OK
    third.close()


# --- single flight -----------------------------------------------------------------------------


def test_get_or_create_runs_the_producer_once(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    calls = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def producer() -> CacheEntry:
        with lock:
            calls.append(threading.get_ident())
        time.sleep(0.2)
        return make_entry(5)

    results: list[CacheEntry] = []

    def ask() -> None:
        barrier.wait()
        results.append(cache.get_or_create(key_of("same"), producer))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [make_entry(5)] * 8
    cache.close()


def test_get_or_create_error_reaches_every_waiter(tmp_path: Path) -> None:
    cache = PhraseCache(None, MiB, 0)
    calls = []
    barrier = threading.Barrier(4)

    def producer() -> CacheEntry:
        calls.append(1)
        time.sleep(0.2)
        raise SynthesisError("engine broke")

    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            cache.get_or_create(key_of("e"), producer)
        except SynthesisError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(errors) == 4
    assert not cache.contains(key_of("e"))


def test_get_or_create_waiter_takes_over_when_the_first_is_stopped() -> None:
    cache = PhraseCache(None, MiB, 0)
    started = threading.Event()
    calls = []

    def stopped_producer() -> CacheEntry:
        calls.append("first")
        started.set()
        time.sleep(0.2)
        raise Cancelled("stopped")

    def producer() -> CacheEntry:
        calls.append("second")
        return make_entry(3)

    def first() -> None:
        with pytest.raises(Cancelled):
            cache.get_or_create(key_of("c"), stopped_producer)

    t = threading.Thread(target=first)
    t.start()
    started.wait(5)
    assert cache.get_or_create(key_of("c"), producer) == make_entry(3)
    t.join()
    assert calls == ["first", "second"]


class Producer:
    """A fake voice: yields chunks, can hold after the first, records its token."""

    def __init__(self, seed: int = 1, count: int = 4, delay_s: float = 0.02) -> None:
        self.chunks = chunks_of(seed, count)
        self.delay_s = delay_s
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self.first_sent = threading.Event()
        self.tokens: list[CancelToken] = []
        self.finished = threading.Event()

    def __call__(self, token: CancelToken) -> Iterator[AudioChunk]:
        self.calls += 1
        self.tokens.append(token)
        for i, chunk in enumerate(self.chunks):
            token.raise_if_cancelled()
            time.sleep(self.delay_s)
            yield chunk
            if i == 0:
                self.first_sent.set()
                while not self.hold.wait(0.01):
                    token.raise_if_cancelled()
        self.finished.set()


def test_stream_miss_then_hit_is_bit_identical(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=2)
    first = list(cache.stream(key_of("s"), "v", produce))
    assert cache.wait_idle(5)
    second = list(cache.stream(key_of("s"), "v", produce))
    assert produce.calls == 1
    assert np.array_equal(pcm_of(first), pcm_of(produce.chunks))
    assert np.array_equal(pcm_of(second), pcm_of(first))
    assert [c.sentence_index for c in second] == [0, 1, 2, 3]
    assert read_entry_file(cache_dir / f"{key_of('s')}{ENTRY_SUFFIX}").sentence_offsets == (
        0,
        2000,
        4000,
        6000,
    )
    cache.close()


def test_stream_followers_get_audio_before_synthesis_ends(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=3)
    produce.hold.clear()  # synthesis pauses after its first chunk
    received: dict[int, list[AudioChunk]] = {0: [], 1: [], 2: []}
    got_first = [threading.Event() for _ in received]

    def listen(n: int) -> None:
        for chunk in cache.stream(key_of("f"), "v", produce):
            received[n].append(chunk)
            got_first[n].set()

    threads = [threading.Thread(target=listen, args=(n,)) for n in received]
    for t in threads:
        t.start()
    # Every listener hears the first chunk while synthesis is still held.
    assert all(ev.wait(5) for ev in got_first)
    assert not produce.finished.is_set()
    produce.hold.set()
    for t in threads:
        t.join()
    assert produce.calls == 1
    for chunks in received.values():
        assert np.array_equal(pcm_of(chunks), pcm_of(produce.chunks))
    cache.close()


def test_stopping_the_first_listener_does_not_stop_the_others(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=4)
    produce.hold.clear()
    first_cancel = CancelToken()
    follower: list[AudioChunk] = []
    follower_heard = threading.Event()

    def lead() -> None:
        with pytest.raises(Cancelled):
            for _ in cache.stream(key_of("l"), "v", produce, first_cancel):
                follower_heard.wait(5)  # stop the first job only once the second listens
                first_cancel.cancel("stopped")

    def follow_() -> None:
        for chunk in cache.stream(key_of("l"), "v", produce):
            follower.append(chunk)
            follower_heard.set()

    leader = threading.Thread(target=lead)
    leader.start()
    assert produce.first_sent.wait(5)
    follow = threading.Thread(target=follow_)
    follow.start()
    leader.join(5)
    assert not leader.is_alive()
    produce.hold.set()
    follow.join(5)
    assert produce.calls == 1 and not produce.tokens[0].cancelled
    assert np.array_equal(pcm_of(follower), pcm_of(produce.chunks))
    assert cache.wait_idle(5)
    assert cache.contains(key_of("l"))
    cache.close()


def test_last_listener_leaving_cancels_synthesis(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=5)
    produce.hold.clear()
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for _ in cache.stream(key_of("x"), "v", produce, cancel):
            cancel.cancel("stopped")
    assert cache.wait_idle(5)
    assert produce.tokens[0].cancelled
    assert not cache.contains(key_of("x"))
    assert entry_files(cache_dir) == []
    # A new request starts afresh.
    produce.hold.set()
    assert len(list(cache.stream(key_of("x"), "v", produce))) == 4
    assert produce.calls == 2
    cache.close()


def test_closing_the_generator_early_counts_as_leaving(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=6)
    produce.hold.clear()
    stream = cache.stream(key_of("g"), "v", produce)
    next(stream)
    stream.close()
    assert cache.wait_idle(5)
    assert produce.tokens[0].cancelled and not cache.contains(key_of("g"))
    cache.close()


def test_producer_error_reaches_every_listener_and_nothing_is_stored(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    release = threading.Event()

    def broken(token: CancelToken) -> Iterator[AudioChunk]:
        yield chunks_of(1)[0]
        release.wait(5)
        raise SynthesisError("engine broke")

    errors: list[str] = []

    def listen() -> None:
        try:
            list(cache.stream(key_of("b"), "v", broken))
        except SynthesisError as exc:
            errors.append(exc.code)

    threads = [threading.Thread(target=listen) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join()
    assert errors == ["synthesis-failed"] * 3
    assert not cache.contains(key_of("b"))
    cache.close()


def test_modes_refresh_and_off(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    old, new = Producer(seed=7), Producer(seed=8)
    list(cache.stream(key_of("m"), "v", old))
    assert cache.wait_idle(5)
    refreshed = list(cache.stream(key_of("m"), "v", new, mode="refresh"))
    assert cache.wait_idle(5)
    assert np.array_equal(pcm_of(refreshed), pcm_of(new.chunks))
    hit = cache.get(key_of("m"))
    assert hit is not None and np.array_equal(hit.samples(), pcm_of(new.chunks))
    off = Producer(seed=9)
    list(cache.stream(key_of("o"), "v", off, mode="off"))
    assert off.calls == 1 and not cache.contains(key_of("o"))
    with pytest.raises(ValueError):
        list(cache.stream(key_of("o"), "v", off, mode="sometimes"))  # type: ignore[arg-type]
    cache.close()


def test_clear_during_synthesis_does_not_store_the_old_audio(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    produce = Producer(seed=10)
    produce.hold.clear()
    out: list[AudioChunk] = []
    t = threading.Thread(target=lambda: out.extend(cache.stream(key_of("c"), "v", produce)))
    t.start()
    assert produce.first_sent.wait(5)
    cache.clear("v")
    produce.hold.set()
    t.join(5)
    assert len(out) == 4  # the listener still hears everything
    assert cache.wait_idle(5)
    assert not cache.contains(key_of("c"))
    cache.close()


def test_stats_hit_rates(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    cache.put(key_of("a"), make_entry(1))
    cache.get(key_of("a"))  # disk hit, now in RAM too
    cache.get(key_of("a"))  # RAM hit
    cache.get(key_of("zz"))  # miss in both tiers
    stats = cache.stats()
    assert (stats.ram.hits, stats.ram.misses, stats.disk.hits, stats.disk.misses) == (1, 2, 1, 1)
    assert stats.hit_rate == 2 / 3
    as_dict = stats.as_dict()
    assert as_dict["disk_state"] == "ok" and as_dict["ram"]["entries"] == 1
    json.dumps(as_dict)  # describe sends it as JSON
    cache.close()


def test_a_new_phrase_is_held_in_ram_only_once_asked_for_again(cache_dir: Path) -> None:
    cache = PhraseCache(cache_dir, MiB, MiB)
    cache.put(key_of("a"), make_entry(1))
    produce = Producer(seed=2)
    first = list(cache.stream(key_of("b"), "v", produce))
    assert cache.wait_idle(5)
    stats = cache.stats()
    assert (stats.ram.entries, stats.ram.size_bytes, stats.disk.entries) == (0, 0, 2)
    again = list(cache.stream(key_of("b"), "v", produce))  # read back from disk...
    assert produce.calls == 1 and np.array_equal(pcm_of(again), pcm_of(first))
    stats = cache.stats()
    assert (stats.disk.hits, stats.ram.entries) == (1, 1)  # ...and kept in RAM from then on
    assert cache.get(key_of("b")) is not None
    assert cache.stats().ram.hits == 1
    cache.close()


def test_a_phrase_asked_for_again_while_its_file_is_written_is_a_hit(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk write (fsync included) follows the first requester's answer: a second request
    in between is served the flight's entry and counted as a hit, never synthesized again."""
    cache = PhraseCache(cache_dir, MiB, MiB)
    writing, release = threading.Event(), threading.Event()
    real_write = cache._disk.write

    def slow_write(*args: Any, **kwargs: Any) -> bool:
        writing.set()
        assert release.wait(5)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(cache._disk, "write", slow_write)
    calls: list[int] = []

    def producer() -> CacheEntry:
        calls.append(1)
        return make_entry(3)

    first = threading.Thread(target=cache.get_or_create, args=(key_of("p"), producer))
    first.start()
    try:
        assert writing.wait(5)
        assert cache.get(key_of("p")) == make_entry(3)
        assert cache.get_or_create(key_of("p"), producer) == make_entry(3)
        stats = cache.stats()
        assert (stats.hits, stats.misses, len(calls)) == (2, 1, 1)  # the miss: the first request
    finally:
        release.set()
        first.join(5)
    assert cache.wait_idle(5) and cache.stats().disk.entries == 1
    cache.close()


def test_a_flight_pauses_for_heap_trimming_after_each_sentence(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sentence's last chunk is followed by a pause of the cache's `TrimOnGrowth` before
    the next is made (which trims when the process has grown: tests/unit/test_memory.py)."""
    from utterd.daemon import memory

    made: list[str] = []
    monkeypatch.setattr(memory.TrimOnGrowth, "pause", lambda self: made.append("trim") is None)
    chunks = [
        AudioChunk(np.zeros(100, np.float32), RATE_HZ, index // 2, sentence_end=index % 2 == 1)
        for index in range(6)
    ]

    def produce(_token: CancelToken) -> Iterator[AudioChunk]:
        for chunk in chunks:
            made.append(f"s{chunk.sentence_index}")
            yield chunk

    cache = PhraseCache(cache_dir, MiB, MiB)
    assert len(list(cache.stream(key_of("t"), "v", produce))) == 6
    assert cache.wait_idle(5)
    assert made == ["s0", "s0", "trim", "s1", "s1", "trim", "s2", "s2", "trim"]
    cache.close()


def test_without_a_disk_tier_new_phrases_are_held_in_ram(tmp_path: Path) -> None:
    no_disk = PhraseCache(None, MiB, MiB)
    no_disk.put(key_of("a"), make_entry(1))
    assert no_disk.stats().ram.entries == 1
    too_small = PhraseCache(tmp_path / "cache", MiB, 1024)  # no entry fits the disk budget
    too_small.put(key_of("a"), make_entry(1))
    stats = too_small.stats()
    assert (stats.ram.entries, stats.disk.entries) == (1, 0)
    assert too_small.get(key_of("a")) == make_entry(1)
    too_small.close()


# --- crashes and degraded folders, in real subprocesses ------------------------------------------

_WRITER = textwrap.dedent(
    """
    import hashlib, random, sys
    from pathlib import Path
    import numpy as np
    from utterd.daemon.cache.store import CacheEntry, PhraseCache

    folder, seed, budget = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cache = PhraseCache(folder, 0, budget)
    rng = random.Random(seed)
    print("ready", flush=True)
    while True:
        i = rng.randrange(40)
        key = hashlib.sha256(f"k{i}".encode()).hexdigest()
        roll = rng.random()
        if roll < 0.25:
            cache.get(key)
        elif roll < 0.27:
            cache.clear("v" if rng.random() < 0.5 else None)
        else:
            n = rng.randrange(1, 30000)
            pcm = np.random.default_rng([i, n]).integers(-30000, 30000, n, dtype=np.int16)
            meta = {"i": i, "n": n}
            cache.put(key, CacheEntry(pcm.tobytes(), 16000, (0,), "v", meta))
    """
)


def expected_pcm(i: int, n: int) -> bytes:
    return np.random.default_rng([i, n]).integers(-30000, 30000, n, dtype=np.int16).tobytes()


def test_sigkill_at_random_moments_never_leaves_a_servable_corrupt_entry(tmp_path: Path) -> None:
    folder = tmp_path / "killed"
    budget = 300 * 1024
    rng = random.Random(1234)
    temp_files_seen = 0
    served = 0
    for round_ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder), str(round_), str(budget)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert child.returncode == -signal.SIGKILL
        temp_files_seen += len(list(folder.glob("*.tmp")))

        cache = PhraseCache(folder, 0, budget)
        assert not list(folder.glob("*.tmp"))
        assert dir_bytes(folder) <= budget
        for path in entry_files(folder):
            key = path.name.removesuffix(ENTRY_SUFFIX)
            entry = cache.get(key)
            if entry is None:
                continue
            served += 1
            meta = entry.metadata
            assert isinstance(meta["i"], int) and isinstance(meta["n"], int)
            assert key == key_of(f"k{meta['i']}")
            assert entry.pcm == expected_pcm(meta["i"], meta["n"])
        # Whatever is left on disk verifies on its own, too.
        for path in entry_files(folder):
            read_entry_file(path)
        cache.close()
    assert served > 0
    # The kills did land mid-write (otherwise this test would prove little).
    assert temp_files_seen > 0


_DEGRADED = textwrap.dedent(
    """
    import json, subprocess, sys, tempfile
    from pathlib import Path
    import numpy as np
    from utterd.daemon.cache.store import CacheEntry, PhraseCache

    def entry(i, n):
        pcm = np.random.default_rng(i).integers(-9000, 9000, n, dtype=np.int16)
        return CacheEntry(pcm.tobytes(), 16000, (0,), "v")

    mount = Path(tempfile.mkdtemp())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    folder = mount / "cache"
    result = {}

    # Full: the budget is larger than the file system.
    cache = PhraseCache(folder, 8 << 20, 8 << 20)
    keys = [f"{i:064x}" for i in range(6)]
    for i, key in enumerate(keys):
        cache.put(key, entry(i, 40000))  # 80 kB each; the fourth does not fit
    result["full_state"] = cache.stats().disk_state.value
    result["full_reason"] = cache.stats().disk_reason
    result["full_served"] = all(cache.get(k) == entry(i, 40000) for i, k in enumerate(keys))
    result["full_temp_left"] = len(list(folder.glob("*.tmp")))
    result["full_on_disk"] = len(list(folder.glob("*.upc")))
    cache.close()

    # Read-only: what is on disk is served, new entries stay in RAM.
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    cache = PhraseCache(folder, 8 << 20, 8 << 20)
    result["ro_state"] = cache.stats().disk_state.value
    result["ro_reason"] = cache.stats().disk_reason
    result["ro_disk_hits"] = sum(cache.get(k) is not None for k in keys[:3])
    new = f"{99:064x}"
    cache.put(new, entry(99, 1000))
    result["ro_new_served"] = cache.get(new) == entry(99, 1000)
    result["ro_clear"] = cache.clear()
    print(json.dumps(result))
    """
)


def test_full_and_read_only_dirs_degrade_to_ram() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"user+mount namespaces unavailable: {probe.stderr.decode().strip()}")
    proc = subprocess.run(
        [unshare, "-rm", sys.executable, "-c", _DEGRADED],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["full_state"] == "read-only"
    assert "full" in result["full_reason"]
    assert result["full_served"] is True
    assert result["full_temp_left"] == 0
    assert result["full_on_disk"] >= 1
    assert result["ro_state"] == "read-only"
    assert "read-only" in result["ro_reason"]
    assert result["ro_disk_hits"] == min(3, result["full_on_disk"])
    assert result["ro_new_served"] is True
    assert "event=cache-degraded" in proc.stderr


# --- with the real voice ---------------------------------------------------------------------


def test_real_voice_miss_then_hit_across_restart(cache_dir: Path) -> None:
    pytest.importorskip("hibari")
    from utterd.daemon.cache.key import CacheKeyParts, FileHasher, voice_model_files
    from utterd.models import EngineSettings
    from utterd.models.hibari.family import HibariFamily
    from utterd.models.voice import SynthesisParams

    family = HibariFamily()
    infos = {i.voice_id: i for i in family.discover([])}
    if "hibari-heart" not in infos:
        pytest.skip("the bundled hibari heart voice is not installed")
    info = infos["hibari-heart"]
    voice = family.load(info, EngineSettings(threads=1))
    try:
        params = SynthesisParams(deterministic=True)
        text = "Battery low. Please charge the device."
        parts = CacheKeyParts.for_request(
            text,
            info,
            params,
            model_sha256=FileHasher().digest(voice_model_files(info)),
            backend="onnxruntime",
            precision="fp32",
            threads=1,
        )
        key = parts.digest()

        def produce(token: CancelToken) -> Iterator[AudioChunk]:
            return voice.stream(parts.text, params, token)

        cache = PhraseCache(cache_dir, MiB, 16 * MiB)
        miss = list(cache.stream(key, info.voice_id, produce, metadata={"text": parts.text}))
        assert cache.wait_idle(10)
        cache.close()
        reopened = PhraseCache(cache_dir, MiB, 16 * MiB)
        hit = list(reopened.stream(key, info.voice_id, produce))
        assert reopened.stats().disk.hits == 1
        assert np.array_equal(pcm_of(hit), pcm_of(miss))
        assert {c.sentence_index for c in hit} == {c.sentence_index for c in miss} == {0, 1}
        entry = reopened.get(key)
        assert entry is not None and entry.metadata["text"] == parts.text
        assert entry.sample_rate_hz == info.sample_rate_hz
        reopened.close()
    finally:
        voice.close()
