"""The server's small parts: the request-handler table, the thread-safe counters and the event
publisher that any thread may use."""

from __future__ import annotations

import json
import threading

import pytest
import zmq
from utterd.daemon import protocol
from utterd.daemon.counters import Counters
from utterd.daemon.protocol import HandlerTable, Ping, Request, Speak
from utterd.daemon.protocol.events import DeviceEvent
from utterd.daemon.publisher import EventPublisher


def test_the_table_hands_each_message_to_its_own_handler() -> None:
    seen: list[tuple[str, object]] = []

    def on_ping(envelope: list[bytes], request: Request, msg: Ping) -> None:
        seen.append(("ping", msg))

    def on_speak(envelope: list[bytes], request: Request, msg: Speak) -> None:
        seen.append(("speak", msg.text))

    table = HandlerTable().register(Ping, on_ping).register(Speak, on_speak)
    table.dispatch([b"id"], Request("speak", "r", Speak(text="hi")))
    table.dispatch([b"id"], Request("ping", None, Ping()))
    assert seen == [("speak", "hi"), ("ping", Ping())]
    assert "ping" not in table.missing() and "speak" not in table.missing()
    assert "synthesize" in table.missing()
    with pytest.raises(ValueError, match="already"):
        table.register(Ping, on_ping)


def test_counters_lose_no_increment_across_threads() -> None:
    counters = Counters(("requests", "errors"))
    n, threads = 20_000, 4

    def work() -> None:
        for _ in range(n):
            counters.add("requests")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert counters.snapshot() == {"requests": n * threads, "errors": 0}


def test_the_publisher_sends_from_any_thread_and_drops_while_detached() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub = context.socket(zmq.PUB)
    sub = context.socket(zmq.SUB)
    try:
        pub.bind("inproc://test-publisher")
        sub.connect("inproc://test-publisher")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        publisher = EventPublisher()
        publisher.emit("begin", {"job": "lost"})  # not attached: dropped, no error
        publisher.attach(pub)
        # A subscription reaches the PUB asynchronously: publish a probe until one arrives.
        for _ in range(1000):
            publisher.emit("probe", {})
            if sub.poll(10, zmq.POLLIN):
                break
        else:
            pytest.fail("the subscription never reached the publisher")
        while sub.poll(0, zmq.POLLIN):
            sub.recv_multipart()
        workers = [
            threading.Thread(target=publisher.emit, args=("begin", {"job": f"j{i}"}))
            for i in range(8)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        publisher.publish(DeviceEvent(True, None))
        got = []
        while sub.poll(1000, zmq.POLLIN):
            got.append(sub.recv_multipart())
            if len(got) == 9:
                break
        assert sorted(json.loads(h)["data"].get("job", "") for _, h in got[:8]) == sorted(
            f"j{i}" for i in range(8)
        )
        assert got[8] == protocol.encode_event(DeviceEvent(True, None))
        publisher.detach()
        publisher.emit("begin", {"job": "after"})
        assert not sub.poll(50, zmq.POLLIN)
    finally:
        sub.close(linger=0)
        pub.close(linger=0)
        context.term()
