"""End to end: what outside users found the wire and the doc disagreeing on (issue 16, findings
5 and 7), against a real daemon with the real default voice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon.client import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("findings")
    env, _ = file_sink_env(tmp)
    with RunningDaemon(tmp, clean_env(env)) as d:
        yield d


def test_a_stream_says_its_chunks_are_raw_pcm_whatever_format_was_asked(
    daemon: RunningDaemon,
) -> None:
    # Finding 7: `stream: true` with the default `format: "wav"` sends raw PCM chunks.
    with Client(daemon.endpoint) as c:
        for asked in ({}, {"format": "wav"}, {"format": "pcm"}):
            rid = c.send("synthesize", {"text": "Hello.", "stream": True, **asked})
            start, _ = c.receive(60)
            assert (start["id"], start["type"]) == (rid, "audio-start"), start
            assert start["data"]["format"] == "pcm", (asked, start)
            while True:
                reply, payload = c.receive(60)
                if reply["type"] == "audio-chunk":
                    assert payload is not None and not payload.startswith(b"RIFF")
                    continue
                assert reply["type"] == "audio-stop", reply
                break


def test_synthesize_takes_every_field_of_speak_priority_included(daemon: RunningDaemon) -> None:
    # Finding 5: docs/protocol.md says `synthesize` takes every field of `speak`.
    with Client(daemon.endpoint) as c:
        rid = c.send("synthesize", {"text": "Hello.", "format": "pcm", "priority": "important"})
        reply, payload = c.receive(60)
        assert (reply["id"], reply["type"]) == (rid, "audio"), reply
        assert payload
