"""Single flight: one synthesis per key, shared by everyone who asks for the key while it runs.

A *flight* is one phrase being made. In the streaming form its chunks appear as they are made
and every listener reads them from the first, at its own pace, so a follower hears the phrase
as soon as its first chunk exists and a slow listener never holds back a fast one. In the
blocking form (a producer that returns a whole entry) followers wait for the entry.

A flight ends DONE (with the entry to store, or None when it must not be stored) or FAILED
(with the exception every listener gets). A `Cancelled` failure before a follower heard
anything returns `RETRY` to it: its leader was stopped, not its own job, so it asks again.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Final

from utterd.daemon.cache.entry import CacheEntry
from utterd.models.errors import Cancelled
from utterd.models.voice import AudioChunk, CancelToken

__all__ = ["RETRY", "Flight", "FlightState", "Flights", "Retry", "follow", "wait_entry"]

WAIT_SLICE_S: Final = 0.02
"""How often a waiting listener looks at its cancel token (stop latency while waiting)."""


class FlightState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Flight:
    """One synthesis of one key, shared by everyone who asks for the key while it runs."""

    def __init__(self, key: str, streaming: bool, generation: int) -> None:
        self.key = key
        self.streaming = streaming
        """True: chunks appear in `chunks` as they are made (stream); False: only `entry`."""
        self.generation = generation
        """The cache's clear generation at start; a clear since then means: do not store."""
        self.cond = threading.Condition()
        self.chunks: list[AudioChunk] = []
        self.state = FlightState.RUNNING
        self.entry: CacheEntry | None = None
        self.error: BaseException | None = None
        self.subscribers = 0
        """Streaming listeners; the cache lock guards it. At 0 a running flight is cancelled."""
        self.token = CancelToken()
        self.thread: threading.Thread | None = None

    def add_chunk(self, chunk: AudioChunk) -> None:
        """Publish one more chunk to the listeners."""
        with self.cond:
            self.chunks.append(chunk)
            self.cond.notify_all()

    def finish(self, entry: CacheEntry | None) -> None:
        """DONE: release the listeners (with the entry, or None when it is not stored)."""
        with self.cond:
            self.state = FlightState.DONE
            self.entry = entry
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """FAILED: every listener gets `exc`."""
        with self.cond:
            self.state = FlightState.FAILED
            self.error = exc
            self.cond.notify_all()


class Retry:
    """Returned to a follower when the flight it waited on gave up (its leader was stopped)."""


RETRY: Final = Retry()


class Flights:
    """The flights running now, by key. Guarded by the cache's lock, which the caller holds
    around every method but `wait_idle`."""

    def __init__(self, lock: threading.Lock) -> None:
        self._by_key: dict[str, Flight] = {}
        self._idle = threading.Condition(lock)

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Flight | None:
        return self._by_key.get(key)

    def done_entry(self, key: str) -> CacheEntry | None:
        """The entry of a flight that is done but still listed (its entry is being stored)."""
        flight = self._by_key.get(key)
        if flight is None or flight.state is not FlightState.DONE:
            return None
        return flight.entry

    def all(self) -> list[Flight]:
        return list(self._by_key.values())

    def start(self, key: str, *, streaming: bool, generation: int) -> Flight:
        """A new flight for `key`, listed, with its first subscriber (the leader)."""
        flight = Flight(key, streaming, generation)
        flight.subscribers = 1
        self._by_key[key] = flight
        return flight

    def unlist(self, flight: Flight) -> None:
        """Take `flight` off the list (if it is still there); wakes `wait_idle` at the last."""
        if self._by_key.get(flight.key) is flight:
            del self._by_key[flight.key]
            if not self._by_key:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float | None) -> bool:
        """Wait (taking the lock) until no flight is listed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._by_key, timeout_s)


def follow(
    flight: Flight,
    cancel: CancelToken | None,
    replay: Callable[[CacheEntry, CancelToken | None], Iterator[AudioChunk]],
) -> Generator[AudioChunk, None, Retry | None]:
    """Yield the flight's chunks from the first; returns RETRY if it gave up unheard.

    A blocking (non-streaming) flight has no chunks: its entry is replayed with `replay`.
    """
    index = 0
    while True:
        with flight.cond:
            while index >= len(flight.chunks) and flight.state is FlightState.RUNNING:
                if cancel is not None and cancel.cancelled:
                    break
                flight.cond.wait(WAIT_SLICE_S)
            ready = flight.chunks[index:]
            state, entry, error = flight.state, flight.entry, flight.error
        for chunk in ready:
            if cancel is not None:
                cancel.raise_if_cancelled()
            yield chunk
            index += 1
        if cancel is not None:
            cancel.raise_if_cancelled()
        if ready:
            continue
        if state is FlightState.DONE:
            if not flight.streaming:
                if entry is None:
                    return RETRY
                yield from replay(entry, cancel)
            return None
        if state is FlightState.FAILED:
            assert error is not None
            if isinstance(error, Cancelled) and index == 0:
                return RETRY
            raise error


def wait_entry(flight: Flight) -> CacheEntry | Retry:
    """Block until the flight ends: its entry, RETRY, or its error raised."""
    with flight.cond:
        while flight.state is FlightState.RUNNING:
            flight.cond.wait()
        state, entry, error = flight.state, flight.entry, flight.error
    if state is FlightState.DONE:
        return entry if entry is not None else RETRY
    assert error is not None
    if isinstance(error, Cancelled):
        return RETRY
    raise error
