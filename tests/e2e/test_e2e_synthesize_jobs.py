"""End to end: a `synthesize` is a job that `cancel` and `stop` reach, and a client that leaves
its replies unread gets each stream complete or ended by an error it can see when it reads again
(issue 15, findings 5 and 7). A real daemon, the real default voice (hibari-heart), real ZeroMQ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon import protocol
from utterd.daemon.client import Client, NotRunning

pytestmark = pytest.mark.e2e

PARAGRAPH = (
    "Welcome to the city library. Our opening hours are nine in the morning to six in the "
    "evening, Monday to Saturday. Books may be borrowed for three weeks and renewed twice, "
    "online or at the front desk."
)
LONG = " ".join([PARAGRAPH] * 8)
"""About two minutes of speech: still being synthesized when the test cancels it."""

TERMINAL = {"audio-stop", "audio", "error"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("synthjobs")
    env, _ = file_sink_env(tmp)
    with RunningDaemon(tmp, clean_env(env), {"limits": {"max_text_chars": 5000}}) as d:
        yield d


def _stream(c: Client, text: str = LONG) -> tuple[str, str]:
    """Start a streaming synthesize and wait for its first chunk; (request id, job id)."""
    rid = c.send("synthesize", {"text": text, "stream": True, "format": "pcm"})
    start, _ = c.receive(60)
    assert (start["id"], start["type"]) == (rid, "audio-start"), start
    job = start["data"].get("job")
    assert isinstance(job, str) and job, f"audio-start names no job: {start}"
    chunk, _ = c.receive(60)
    assert (chunk["id"], chunk["type"]) == (rid, "audio-chunk"), chunk
    return rid, job


def _until_cancelled(
    c: Client, rid: str, control_id: str, timeout_s: float = 5.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read until the stream's `error` and the control request's reply; chunks of the stream may
    come before its error, nothing of it after. Returns (error, control reply)."""
    error: dict[str, Any] | None = None
    control: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout_s
    while error is None or control is None:
        header, _ = c.receive(max(0.01, deadline - time.monotonic()))
        if header["id"] == control_id:
            control = header
        elif header["id"] == rid:
            assert error is None, f"a reply of the stream after its error: {header}"
            assert header["type"] in ("audio-chunk", "error"), f"the stream went on: {header}"
            if header["type"] == "error":
                error = header
    assert time.monotonic() < deadline
    return error, control


def _assert_silent(c: Client, quiet_s: float = 1.0) -> None:
    with pytest.raises(NotRunning):
        header, _ = c.receive(quiet_s)
        pytest.fail(f"a reply after the stream ended: {header}")


def test_cancel_self_ends_a_streaming_synthesize_at_once_with_cancelled(
    daemon: RunningDaemon,
) -> None:
    with daemon.client() as c:
        rid, job = _stream(c)
        t0 = time.monotonic()
        cid = c.send("cancel", {"client": "self"})
        error, reply = _until_cancelled(c, rid, cid)
        cancelled_s = time.monotonic() - t0
        assert error["data"]["code"] == "cancelled" and error["data"]["job"] == job, error
        assert reply["type"] == "cancelled" and job in reply["data"]["jobs"], reply
        assert cancelled_s < 2.0, cancelled_s
        _assert_silent(c)
        assert c.request("ping")[0]["type"] == "pong"


def test_stop_by_job_id_from_another_client_ends_the_stream(daemon: RunningDaemon) -> None:
    """A bridge cancels a synthesis from a control socket of its own, by the job id."""
    with daemon.client() as c, daemon.client() as control:
        rid, job = _stream(c)
        reply, _ = control.request("stop", {"job": job})
        assert reply["data"]["jobs"] == [job], reply
        error: dict[str, Any] | None = None
        deadline = time.monotonic() + 5.0
        while error is None:
            header, _ = c.receive(max(0.01, deadline - time.monotonic()))
            assert header["id"] == rid and header["type"] in ("audio-chunk", "error"), header
            if header["type"] == "error":
                error = header
        assert error["data"]["code"] == "cancelled" and error["data"]["job"] == job
        _assert_silent(c)
        # The id is remembered: stopping it again finds nothing to stop, not an unknown job.
        assert control.request("cancel", {"job": job})[0]["data"]["jobs"] == []


def test_a_finished_synthesis_reports_its_job_and_a_late_stop_finds_nothing(
    daemon: RunningDaemon,
) -> None:
    with daemon.client() as c:
        header, payload = c.request("synthesize", {"text": "Hello there.", "format": "pcm"})
        job = header["data"]["job"]
        assert header["type"] == "audio" and payload
        assert c.request("stop", {"job": job})[0]["data"]["jobs"] == []
        rid = c.send("synthesize", {"text": "Hello there.", "stream": True, "format": "pcm"})
        kinds, jobs = [], set()
        while not kinds or kinds[-1] not in TERMINAL:
            h, _ = c.receive(60)
            assert h["id"] == rid
            kinds.append(h["type"])
            if h["type"] in ("audio-start", "audio-stop"):
                jobs.add(h["data"]["job"])
        assert kinds[-1] == "audio-stop" and len(jobs) == 1, (kinds, jobs)


def _counters(c: Client) -> dict[str, int]:
    return dict(c.request("describe")[0]["data"]["counters"])


def test_a_client_that_does_not_read_gets_every_stream_complete_or_ended_by_an_error(
    daemon: RunningDaemon,
) -> None:
    """Far more audio than ZeroMQ's queues and the reply backlog hold, asked for by a client
    that reads nothing until every synthesis is over; another client is served meanwhile."""
    n = 24
    text = " ".join([PARAGRAPH] * 2)  # ~30 s of speech, ~1.4 MB of PCM each: ~35 MB in all
    slow = zmq.Context.instance().socket(zmq.DEALER)
    slow.setsockopt(zmq.LINGER, 0)
    slow.setsockopt(zmq.RCVHWM, 4)
    slow.connect(daemon.endpoint)
    ids = [f"slow-{i}" for i in range(n)]
    try:
        with daemon.client() as other:
            before = _counters(other)
            for rid in ids:
                data = {"text": text, "stream": True, "format": "pcm"}
                slow.send_multipart(protocol.request_frames("synthesize", data, request_id=rid))
            worst_ping_s = 0.0
            deadline = time.monotonic() + 240
            while True:
                t0 = time.monotonic()
                assert other.request("ping", timeout_s=5)[0]["type"] == "pong"
                worst_ping_s = max(worst_ping_s, time.monotonic() - t0)
                now = _counters(other)
                over = now["synthesized"] + now["errors"] - before["synthesized"] - before["errors"]
                if over >= n:
                    break
                assert time.monotonic() < deadline, f"{over} of {n} syntheses over"
                time.sleep(0.25)
        assert worst_ping_s < 1.0, worst_ping_s

        streams: dict[str, list[tuple[dict[str, Any], int]]] = {rid: [] for rid in ids}
        while any(not s or s[-1][0]["type"] not in TERMINAL for s in streams.values()):
            if not slow.poll(10_000):
                break
            frames = slow.recv_multipart()
            header = json.loads(frames[0])
            streams[header["id"]].append((header, len(frames[1]) if len(frames) > 1 else 0))
        assert not slow.poll(500), "replies after every stream had ended"
    finally:
        slow.close(linger=0)

    outcomes: dict[str, int] = {}
    for rid, replies in streams.items():
        kinds = [h["type"] for h, _ in replies]
        assert kinds and kinds[-1] in TERMINAL, f"{rid} left hanging after {kinds[-3:]}"
        assert sum(k in TERMINAL for k in kinds) == 1, f"{rid}: {kinds}"
        if kinds[0] == "audio-start":
            assert set(kinds[1:-1]) <= {"audio-chunk"}, f"{rid}: {kinds}"
        last = replies[-1][0]
        if last["type"] == "audio-stop":
            assert kinds[0] == "audio-start", f"{rid}: {kinds}"
            pcm_bytes = sum(size for h, size in replies if h["type"] == "audio-chunk")
            assert pcm_bytes == 2 * last["data"]["samples"], f"{rid} lost chunks"
            outcomes["complete"] = outcomes.get("complete", 0) + 1
        else:
            code = last["data"]["code"]
            assert code in ("client-too-slow", "busy"), last
            outcomes[code] = outcomes.get(code, 0) + 1
    assert outcomes.get("client-too-slow", 0) > 0, outcomes  # the backlog's bound was reached
    with daemon.client() as c:
        assert c.request("ping")[0]["type"] == "pong"


def test_a_client_that_disconnects_cancels_its_synthesis(daemon: RunningDaemon) -> None:
    with daemon.client() as other:
        before = _counters(other)
        with daemon.client() as c:
            _stream(c)  # ~2 minutes of speech: several seconds of synthesis still to come
        deadline = time.monotonic() + 3.0
        while True:
            now = _counters(other)
            if now["errors"] > before["errors"] or now["synthesized"] > before["synthesized"]:
                break
            assert time.monotonic() < deadline, "the synthesis went on for a client that left"
            time.sleep(0.05)
        assert now["synthesized"] == before["synthesized"], "it was synthesized to the end"
        assert other.request("ping")[0]["type"] == "pong"
