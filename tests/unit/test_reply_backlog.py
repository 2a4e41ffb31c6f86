"""Tests for daemon/outbox.py's ReplyBacklog on a real ROUTER_MANDATORY socket: replies to a
full client are kept in order and sent when it reads, the bound is in bytes, and a client that is
gone is reported, never written to silently."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq
from utterd.daemon.outbox import MESSAGE_OVERHEAD_BYTES, Delivery, ReplyBacklog


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes], bytes]]:
    """(router, dealer, the dealer's routing id) over ipc-like tcp, small queues both sides."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.SNDHWM, 2)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVHWM, 1)
    dealer.setsockopt(zmq.RCVBUF, 4096)
    dealer.setsockopt(zmq.ROUTING_ID, b"slow")
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"hello")
    assert router.recv_multipart() == [b"slow", b"hello"]
    try:
        yield router, dealer, b"slow"
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()


def _fill(router: zmq.Socket[bytes], backlog: ReplyBacklog, peer: bytes) -> int:
    """Send 1 KiB replies until one is kept; returns how many went straight out."""
    for sent in range(100_000):
        result = backlog.send(router, (peer,), (b"%08d" % sent + b"x" * 1016,))
        if result is Delivery.KEPT:
            return sent
        assert result is Delivery.SENT
    raise AssertionError("the client's queue never filled")


def test_replies_to_a_full_client_are_kept_in_order_and_sent_when_it_reads(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes], bytes],
) -> None:
    router, dealer, peer = pair
    backlog = ReplyBacklog(client_bytes=64 * 1024, total_bytes=1024 * 1024)
    sent = _fill(router, backlog, peer)
    for i in range(sent + 1, sent + 10):  # behind the kept one, whatever the queue says now
        assert backlog.send(router, (peer,), (b"%08d" % i + b"x" * 1016,)) is Delivery.KEPT
    assert backlog.size_bytes(peer) == 10 * (1024 + len(peer) + MESSAGE_OVERHEAD_BYTES)
    received = []
    deadline = time.monotonic() + 10
    while len(received) < sent + 10:
        assert time.monotonic() < deadline, len(received)
        backlog.flush(router)
        while dealer.poll(10):
            received.append(int(dealer.recv()[:8]))
    assert received == list(range(sent + 10))
    assert not backlog and backlog.size_bytes() == 0


def test_the_bound_is_in_bytes_and_one_reply_always_fits(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes], bytes],
) -> None:
    router, _, peer = pair
    backlog = ReplyBacklog(client_bytes=4096, total_bytes=1024 * 1024)
    _fill(router, backlog, peer)  # the first kept reply
    assert backlog.send(router, (peer,), (b"y" * 100_000,)) is Delivery.OVER
    assert backlog.send(router, (peer,), (b"small",), "j1") is Delivery.KEPT
    while backlog.send(router, (peer,), (b"z" * 512,), "j2") is Delivery.KEPT:
        pass
    assert backlog.size_bytes(peer) <= 4096
    assert backlog.send(router, (peer,), (b"err",), force=True) is Delivery.KEPT
    taken = backlog.take_jobs(peer)
    assert {k.job for k in taken} == {"j1", "j2"}
    assert backlog.size_bytes(peer) == 2 * (len(peer) + MESSAGE_OVERHEAD_BYTES) + 1024 + 3


def test_a_client_that_is_gone_is_reported_and_its_backlog_dropped(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes], bytes],
) -> None:
    router, dealer, peer = pair
    backlog = ReplyBacklog(client_bytes=64 * 1024, total_bytes=1024 * 1024)
    _fill(router, backlog, peer)
    dealer.close(0)
    deadline = time.monotonic() + 10
    while True:
        gone = backlog.flush(router)
        if gone:
            break
        assert time.monotonic() < deadline, "the closed client was never found gone"
        time.sleep(0.01)
    assert gone == [peer] and not backlog and backlog.size_bytes() == 0
    assert backlog.send(router, (peer,), (b"late",)) is Delivery.GONE
    assert backlog.send(router, (b"nobody",), (b"x",)) is Delivery.GONE
