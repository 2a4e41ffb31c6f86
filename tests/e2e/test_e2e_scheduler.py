"""End to end on the real-time PulseAudio null sink: priorities (one test per SSIP rule), stop
(during the first window, during the last, between sentences, from another client), pause and
resume (nothing lost), streamed text in, sentence marks, and `describe` answering throughout.

One daemon serves the whole module (joe, the device at the null sink's 22050 Hz); every test
leaves it idle and unpaused. Timing is only used to place a request at a moment (while a job
speaks); assertions are on order, states and what the recording holds, with loose bounds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from audio_sinks import PulseNullSink, Recording
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon.client import Client, RequestFailed

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

JOE = "en_US-joe-medium"
RATE_HZ = 22050
LOUD = 200
"""Sample magnitude above which a 20 ms window counts as audible (the voice's noise floor is lower)."""

LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 6)
"""About 25 s of speech: a job that is surely still speaking a few seconds after it began."""

STOP_SILENT_WITHIN_S = 0.3
"""Loose bound for "nothing is heard after a stop" (the target is 30 ms; bench_stop.py measures)."""


class EventLog:
    """Every event the daemon publishes, collected by a thread, with the time it arrived."""

    def __init__(self, d: RunningDaemon) -> None:
        self._sock = d.subscribe()
        self._lock = threading.Lock()
        self.items: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(50):
                _, header = self._sock.recv_multipart()[:2]
                msg = json.loads(header)
                with self._lock:
                    self.items.append((time.monotonic(), msg["type"], msg["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close(linger=0)

    def of(self, job: str) -> list[str]:
        with self._lock:
            return [kind for _, kind, data in self.items if data.get("job") == job]

    def data(self, job: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [data for _, k, data in self.items if k == kind and data.get("job") == job]

    def wait(
        self, job: str, kinds: set[str], timeout_s: float = 60.0
    ) -> tuple[float, str, dict[str, Any]]:
        """The first event of `kinds` for `job` (already received or coming)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for item in self.items:
                    if item[1] in kinds and item[2].get("job") == job:
                        return item
            time.sleep(0.01)
        raise AssertionError(f"no {kinds} for {job} within {timeout_s} s; got {self.of(job)}")

    def end(self, job: str, timeout_s: float = 60.0) -> str:
        """The job's terminal event kind."""
        return self.wait(job, {"end", "stopped", "failed"}, timeout_s)[1]

    def reason(self, job: str) -> str:
        return str(self.data(job, "stopped")[0]["reason"])

    def begin_order(self) -> list[str]:
        with self._lock:
            return [data["job"] for _, kind, data in self.items if kind == "begin"]


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningDaemon, PulseNullSink]]:
    tmp = tmp_path_factory.mktemp("sched")
    with PulseNullSink(tmp / "pulse") as sink:
        cfg = {
            "audio": {"sample_rate_hz": RATE_HZ},
            "voices": {"default": JOE},
            "limits": {"stream_idle_s": 20.0},
            "log_level": "INFO",
        }
        with RunningDaemon(tmp, clean_env(sink.env), cfg) as d:
            with d.client() as c:  # warm the voice and the device once
                job = c.request("speak", {"text": "Ready."})[0]["data"]["job"]
            assert d.wait_job(job)["state"] == "done"
            yield d, sink


@pytest.fixture
def events(daemon: tuple[RunningDaemon, PulseNullSink]) -> Iterator[EventLog]:
    d, _ = daemon
    log = EventLog(d)
    yield log
    log.close()
    with d.client() as c:  # leave the daemon idle and unpaused for the next test
        c.request("cancel")
        try:
            c.request("resume")
        except RequestFailed as exc:
            assert exc.code == "not-paused"
    assert d.alive()


def _speak(c: Client, text: str, **data: Any) -> str:
    return str(c.request("speak", {"text": text, **data})[0]["data"]["job"])


def _describe(d: RunningDaemon) -> dict[str, Any]:
    """`describe` answers (promptly: the loop is never blocked); its `info` data."""
    with d.client(timeout_s=5) as c:
        header, _ = c.request("describe")
    assert header["type"] == "info"
    return dict(header["data"])


def _audible(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """One flag per 20 ms window: louder than LOUD somewhere in it."""
    win = RATE_HZ // 50
    n = len(samples) // win
    return np.asarray(
        np.abs(samples[: n * win].astype(np.int32)).reshape(n, win).max(axis=1) > LOUD
    )


def _audible_s(samples: npt.NDArray[np.int16]) -> float:
    return float(_audible(samples).sum()) / 50.0


def _last_loud_s(rec: Recording, after_index: int = 0) -> float | None:
    """time.monotonic() of the last loud sample recorded (at or after `after_index`)."""
    samples = rec.samples()[after_index:]
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > LOUD)
    return rec.sample_time_s(after_index + int(loud[-1])) if len(loud) else None


def _synth(d: RunningDaemon, text: str) -> npt.NDArray[np.int16]:
    with d.client() as c:
        _, payload = c.request(
            "synthesize", {"text": text, "deterministic": True, "format": "pcm"}, timeout_s=120
        )
    return np.frombuffer(payload or b"", "<i2")


def _until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- priorities: one test per rule -----------------------------------------------------------------


def test_important_is_never_interrupted_and_goes_before_everything(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as a, d.client() as b:
        first = _speak(
            a, "This important message is never cut short by anyone.", priority="important"
        )
        events.wait(first, {"begin"})
        message = _speak(b, "A message.", priority="message")
        text = _speak(b, "Some text.", priority="text")
        second = _speak(b, "Second important.", priority="important")
        note = _speak(b, "A notification.", priority="notification")
        assert _describe(d)["queue"]["current"] == first
        assert events.end(note, 10) == "stopped", "a notification yields to other speech"
        for job in (first, second, message, text):
            assert events.end(job) == "end", (job, events.of(job))
    order = [j for j in events.begin_order() if j in (first, second, message, text)]
    assert order == [first, second, message, text], "important first, then message, then text"


def test_message_interrupts_text_drops_waiting_text_and_never_interrupts_itself(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        text = _speak(c, LONG)
        events.wait(text, {"begin"})
        first = _speak(c, "The first message speaks to its end.", priority="message")
        assert events.end(text) == "stopped" and "message" in events.reason(text)
        events.wait(first, {"begin"})
        waiting_text = _speak(c, "Text that waits.")
        second = _speak(c, "The second message waits.", priority="message")
        assert events.end(waiting_text, 10) == "stopped", "a new message drops waiting text"
        assert events.end(first) == "end", "a message does not interrupt a message"
        assert events.end(second) == "end"
    assert events.begin_order().index(first) < events.begin_order().index(second)


def test_a_new_text_replaces_the_text_speaking_and_waiting_from_any_client(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as a, d.client() as b:
        t1 = _speak(a, LONG)
        events.wait(t1, {"begin"})
        t2 = _speak(b, LONG)
        assert events.end(t1) == "stopped" and "newer text" in events.reason(t1)
        events.wait(t2, {"begin"})
        t3 = _speak(a, "Replaced before it speaks.")
        t4 = _speak(a, "Only the latest text is said.")
        for job in (t2, t3):
            assert events.end(job) == "stopped", job
        assert events.end(t4) == "end"
        assert "begin" not in events.of(t3)


def test_notification_yields_to_other_speech_and_replaces_itself(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        n1 = _speak(c, LONG, priority="notification")
        events.wait(n1, {"begin"})
        n2 = _speak(c, LONG, priority="notification")
        assert events.end(n1) == "stopped", "a newer notification replaces the one speaking"
        events.wait(n2, {"begin"})
        text = _speak(c, "Text interrupts a notification.")
        assert events.end(n2) == "stopped"
        events.wait(text, {"begin"})
        n3 = _speak(c, "Not said.", priority="notification")
        assert events.end(n3, 10) == "stopped" and "begin" not in events.of(n3)
        assert "other speech" in events.reason(n3)
        assert events.end(text) == "end"


def test_progress_waits_only_the_latest_and_the_last_of_a_series_is_always_said(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        text = _speak(c, LONG)
        events.wait(text, {"begin"})
        p1 = _speak(c, "Ten percent.", priority="progress")
        p2 = _speak(c, "Fifty percent.", priority="progress")
        p3 = _speak(c, "Done, one hundred percent.", priority="progress")
        for job in (p1, p2):
            assert events.end(job, 10) == "stopped" and "superseded" in events.reason(job)
        assert c.request("job", {"job": text})[0]["data"]["state"] == "speaking", (
            "progress interrupts nothing"
        )
        message = _speak(c, "A message comes first.", priority="message")
        assert events.end(text) == "stopped"
        assert events.end(message) == "end"
        assert events.end(p3) == "end", "the last progress is promoted, not dropped"
    assert events.begin_order().index(message) < events.begin_order().index(p3)


# --- stop --------------------------------------------------------------------------------------


def _stop_and_check_silence(
    d: RunningDaemon, sink: PulseNullSink, events: EventLog, tmp_path: Path, when: str
) -> None:
    """Speak, stop at `when`, check the job stopped and nothing was heard afterwards."""
    text = "Stop me." if when == "last" else LONG
    duration_s = len(_synth(d, text)) / RATE_HZ if when == "last" else 0.0
    with sink.record(tmp_path / f"stop-{when}.raw") as rec, d.client() as c:
        job = _speak(c, text, deterministic=True)
        # Sentence 0's mark comes when its first window's first sample goes to the device.
        events.wait(job, {"sentence"})
        if when == "last":
            # The windows double in size, so the last one holds the end of the sentence.
            time.sleep(max(0.0, duration_s - 0.35))
        stop_sent_s = time.monotonic()
        stopped = c.request("stop", {"client": "self"})[0]["data"]["jobs"]
        kind = events.end(job, 10)
        time.sleep(0.5)  # the recording must show silence after the stop
        last_loud_s = _last_loud_s(rec)
    if when == "first":
        # The first window often opens with the voice's leading silence: little or nothing loud.
        assert kind == "stopped" and stopped == [job]
    else:  # the end of a sentence is a race: stopped, or it ended just before
        assert kind in ("stopped", "end")
        assert last_loud_s is not None, "the job was heard before the stop"
    if last_loud_s is not None:
        assert last_loud_s < stop_sent_s + STOP_SILENT_WITHIN_S, last_loud_s - stop_sent_s
    info = _describe(d)
    assert next(v for v in info["voices"] if v["id"] == JOE)["loaded"], "the voice stays loaded"
    with d.client() as c:
        after = _speak(c, "Next.")
    assert events.end(after) == "end", "the next job starts normally"


def test_stop_during_the_first_window(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog, tmp_path: Path
) -> None:
    d, sink = daemon
    _stop_and_check_silence(d, sink, events, tmp_path, "first")


def test_stop_during_the_last_window(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog, tmp_path: Path
) -> None:
    d, sink = daemon
    _stop_and_check_silence(d, sink, events, tmp_path, "last")


def test_stop_between_sentences_of_a_streamed_text(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog, tmp_path: Path
) -> None:
    d, sink = daemon
    with sink.record(tmp_path / "between.raw") as rec, d.client() as c:
        job = c.request("speak-start", {})[0]["data"]["job"]
        c.request("speak-chunk", {"job": job, "text": "The first sentence is all there is. "})
        events.wait(job, {"begin"})
        # Its only sentence plays out; the job then waits, silent, for more text.
        _until(lambda: len(rec.samples()) > 0 and _audible(rec.samples()).any())
        _until(lambda: not _audible(rec.samples()[-RATE_HZ // 2 :]).any())
        assert _describe(d)["queue"]["current"] == job
        assert c.request("job", {"job": job})[0]["data"]["state"] == "speaking"
        assert c.request("stop", {"job": job})[0]["data"]["jobs"] == [job]
        assert events.end(job, 10) == "stopped"
        with pytest.raises(RequestFailed) as err:
            c.request("speak-chunk", {"job": job, "text": "Too late."})
        assert err.value.code == "stream-closed"
        after = _speak(c, "Next.")
        assert events.end(after) == "end"


def test_stop_and_pause_from_another_client(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as a, d.client() as b:
        job = _speak(a, LONG)
        owner = events.wait(job, {"begin"})[2]["client"]
        assert b.request("stop", {"client": "self"})[0]["data"]["jobs"] == [], "not b's job"
        assert b.request("pause", {"client": owner})[0]["data"]["jobs"] == [job]
        events.wait(job, {"paused"}, 30)
        assert _describe(d)["queue"]["paused"]["clients"] == [owner]
        assert b.request("resume", {"client": owner})[0]["data"]["jobs"] == [job]
        events.wait(job, {"resumed"}, 10)
        assert b.request("stop", {"client": owner})[0]["data"]["jobs"] == [job]
        assert events.end(job, 10) == "stopped"
        with pytest.raises(RequestFailed) as err:
            b.request("resume", {"client": owner})
        assert err.value.code == "not-paused"


# --- pause and resume ------------------------------------------------------------------------------


def test_pause_holds_the_audio_and_resume_plays_the_rest_without_loss(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog, tmp_path: Path
) -> None:
    d, sink = daemon
    text = "Pausing keeps every word. The rest follows after the pause, and nothing is lost."
    expected_s = _audible_s(_synth(d, text))
    with sink.record(tmp_path / "pause.raw") as rec, d.client() as c:
        job = _speak(c, text, deterministic=True)
        events.wait(job, {"begin"})
        time.sleep(1.0)
        assert c.request("pause", {"job": job})[0]["data"]["jobs"] == [job]
        paused_s = events.wait(job, {"paused"}, 30)[0]
        time.sleep(1.5)  # silence, while the job keeps its place
        info = _describe(d)
        assert info["queue"]["current"] == job and info["queue"]["paused"]["jobs"] == [job]
        assert c.request("job", {"job": job})[0]["data"]["paused"] is True
        held = rec.samples()
        quiet = held[-int(RATE_HZ * 1.0) :]
        assert not _audible(quiet).any(), "the device is silent while paused"
        assert c.request("resume", {"job": job})[0]["data"]["jobs"] == [job]
        assert events.end(job) == "end"
        time.sleep(0.3)
        played = rec.samples()
    kinds = events.of(job)
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("end")
    loud = _audible(played)
    # One long silent run in the middle: the pause (natural pauses in speech are far shorter).
    assert paused_s > 0
    assert abs(_audible_s(played) - expected_s) < 0.2, (_audible_s(played), expected_s)
    runs = np.diff(np.flatnonzero(loud))
    assert runs.max() / 50.0 > 1.2, "the pause is a silent gap of well over a second"


def test_pause_everything_holds_later_jobs_and_drops_notifications(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        assert c.request("pause")[0]["data"]["jobs"] == []
        held = _speak(c, "Held until resume.")
        note = _speak(c, "Not said during a pause.", priority="notification")
        assert events.end(note, 10) == "stopped"
        time.sleep(0.5)
        assert events.of(held) == [], "a paused queue starts nothing"
        assert c.request("job", {"job": held})[0]["data"]["state"] == "queued"
        assert _describe(d)["queue"]["paused"]["all"] is True
        assert c.request("resume")[0]["data"]["jobs"] == [held]
        assert events.end(held) == "end"


# --- streamed text and sentence marks --------------------------------------------------------------


def test_streamed_text_speaks_its_first_sentence_before_the_last_piece(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        reply = c.request("speak-start", {"priority": "message"})[0]
        assert reply["type"] == "queued" and reply["data"]["priority"] == "message"
        job = reply["data"]["job"]
        for piece in ("The first", " sentence is", " complete now.", " And the second"):
            assert (
                c.request("speak-chunk", {"job": job, "text": piece})[0]["type"] == "chunk-queued"
            )
        events.wait(job, {"sentence"}, 60)  # heard while the text is still open
        assert _describe(d)["queue"]["current"] == job
        c.request("speak-chunk", {"job": job, "text": " one ends at the stop"})
        assert c.request("speak-stop", {"job": job})[0]["type"] == "text-closed"
        with pytest.raises(RequestFailed) as err:
            c.request("speak-stop", {"job": job})
        assert err.value.code == "stream-closed"
        assert events.end(job) == "end"
        marks = events.data(job, "sentence")
        with pytest.raises(RequestFailed) as err2:
            c.request("speak-chunk", {"job": _speak(c, "Plain."), "text": "x"})
        assert err2.value.code == "not-a-stream"
    assert [m["sentence"] for m in marks] == [0, 1]
    assert marks[0]["offset_samples"] == 0 < marks[1]["offset_samples"]
    assert marks[1]["sample_rate_hz"] == RATE_HZ


def test_sentence_marks_give_where_each_sentence_starts(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    text = "One sentence. Another one! And a third?"
    with d.client() as c:
        rid = c.send("synthesize", {"text": text, "deterministic": True, "stream": True})
        starts: dict[int, int] = {}
        total = 0
        while True:
            header, payload = c.receive(120)
            assert header["id"] == rid
            if header["type"] == "audio-stop":
                break
            if header["type"] == "audio-chunk":
                starts.setdefault(header["data"]["sentence"], total)
                total += len(payload or b"") // 2
        job = _speak(c, text, deterministic=True)
        assert events.end(job) == "end"
    marks = events.data(job, "sentence")
    assert {m["sentence"]: m["offset_samples"] for m in marks} == starts
    assert [m["sentence"] for m in marks] == [0, 1, 2]
    kinds = events.of(job)
    assert kinds.index("begin") < kinds.index("sentence") and kinds[-1] == "end"


def test_bad_targets_are_refused(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    with d.client() as c:
        for kind, data, code in (
            ("stop", {"job": "j1", "client": "self"}, "invalid-value"),
            ("pause", {"client": "not hex"}, "invalid-value"),
            ("cancel", {"job": "nope"}, "unknown-job"),
            ("resume", {}, "not-paused"),
            ("speak-chunk", {"job": "nope", "text": "x"}, "unknown-job"),
            ("speak", {"text": "x", "priority": "urgent"}, "invalid-value"),
        ):
            with pytest.raises(RequestFailed) as err:
                c.request(kind, data)
            assert err.value.code == code, (kind, data)


def test_cli_streams_standard_input_and_pauses(
    daemon: tuple[RunningDaemon, PulseNullSink], events: EventLog
) -> None:
    d, _ = daemon
    r = d.cli(
        "say", "--stream", "--wait", "--priority", "message", "-", input_text="One line.\nTwo"
    )
    assert r.returncode == 0, r.stderr
    r = d.cli("pause")
    assert r.returncode == 0 and r.stdout.startswith("paused"), (r.stdout, r.stderr)
    r = d.cli("resume")
    assert r.returncode == 0 and r.stdout.startswith("resumed"), (r.stdout, r.stderr)
    r = d.cli("resume")
    assert r.returncode == 1 and "not-paused" in r.stderr
