"""Pre-warm list parsing and the background warmer (real threads, a real SIGKILL'd process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon.cache.prewarm import (
    LOWEST_NICE,
    OPTION_KEYS,
    InvalidPrewarmList,
    Prewarmer,
    PrewarmSpec,
    PrewarmState,
    load_prewarm_list,
    parse_prewarm_entry,
    parse_prewarm_file,
)
from utterd.daemon.cache.store import ENTRY_SUFFIX, read_entry_file
from utterd.models.errors import SynthesisError, UnknownVoice
from utterd.models.voice import CancelToken, SynthesisParams

# --- the list syntax ---------------------------------------------------------------------------


def test_entry_forms() -> None:
    assert parse_prewarm_entry("  Battery low. ", "x") == [
        PrewarmSpec("Battery low.", None, SynthesisParams(), "x")
    ]
    assert parse_prewarm_entry("voice=en_US-joe-medium rate=1.1 | Battery low.", "x") == [
        PrewarmSpec("Battery low.", "en_US-joe-medium", SynthesisParams(rate=1.1), "x")
    ]
    [spec] = parse_prewarm_entry("speaker=2 volume=0.8 | Door open.", "x")
    assert spec.params == SynthesisParams(speaker=2, volume=0.8)
    [spec] = parse_prewarm_entry("speaker=alice | Hi.", "x")
    assert spec.params.speaker == "alice"
    [spec] = parse_prewarm_entry("| Press 1 | 2 for sales.", "x")
    assert spec.text == "Press 1 | 2 for sales."
    assert parse_prewarm_entry("# a comment", "x") == []
    assert parse_prewarm_entry("   ", "x") == []


def test_speaker_digits_that_are_no_number() -> None:
    # Found by tests/test_e2e_fuzz.py: "²".isdigit() is true but int("²") raises, which made a
    # `cache-warm` request answer internal-error.
    [spec] = parse_prewarm_entry("speaker=\u00b2 | Hi.", "x")
    assert spec.params.speaker == "\u00b2"  # a speaker name, as any non-number is
    [spec] = parse_prewarm_entry("speaker=\u0663 | Hi.", "x")  # Arabic-Indic 3 is a number
    assert spec.params.speaker == 3
    with pytest.raises(InvalidPrewarmList, match="speaker id has 5000 digits"):
        parse_prewarm_entry("speaker=" + "9" * 5000 + " | Hi.", "x")


@given(
    key=st.sampled_from(OPTION_KEYS),
    value=st.text(min_size=1).filter(lambda v: "|" not in v and not any(c.isspace() for c in v)),
)
def test_any_option_value_is_parsed_or_refused(key: str, value: str) -> None:
    try:
        parse_prewarm_entry(f"{key}={value} | Hi.", "x")
    except InvalidPrewarmList:
        pass  # anything else escaping would be an internal-error reply to `cache-warm`


def test_template_entries_warm_their_fixed_parts() -> None:
    specs = parse_prewarm_entry("template=yes | Your balance is {amount}. Press 1 to repeat.", "x")
    assert [s.text for s in specs] == ["Your balance is", "Press 1 to repeat."]
    # Without template=yes the braces are plain text.
    [plain] = parse_prewarm_entry("Say {this}.", "x")
    assert plain.text == "Say {this}."


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("Choose A | B", "'Choose' is not an option"),
        ("pitch=2 | Hi.", "'pitch=2' is not an option"),
        ("rate= | Hi.", "option 'rate' has no value"),
        ("rate=1 rate=2 | Hi.", "given twice"),
        ("rate=fast | Hi.", "rate must be a number"),
        ("rate=nan | Hi.", "finite number"),
        ("rate=9 | Hi.", "rate must be in"),
        ("volume=-1 | Hi.", "volume must be in"),
        ("voice=x |   ", "no prompt"),
        ("template=maybe | Hi.", "template must be yes or no"),
        ("template=yes | Bad {slot", "unclosed '{'"),
    ],
)
def test_entry_errors(entry: str, fragment: str) -> None:
    with pytest.raises(InvalidPrewarmList, match="^prompts.txt:7: ") as info:
        parse_prewarm_entry(entry, "prompts.txt:7")
    assert fragment in info.value.message
    assert info.value.code == "invalid-prewarm"


_words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda t: t.strip() and not t.strip().startswith("#"))
_voice = st.none() | st.from_regex(r"[a-z][a-zA-Z0-9_-]{0,15}", fullmatch=True)
_rate = st.none() | st.floats(0.25, 4.0)
_speaker = st.none() | st.integers(0, 9) | st.from_regex(r"[a-z]{1,8}", fullmatch=True)


@given(_words, _voice, _rate, _speaker)
def test_formatted_entries_parse_back(
    text: str, voice: str | None, rate: float | None, speaker: int | str | None
) -> None:
    options = []
    if voice is not None:
        options.append(f"voice={voice}")
    if rate is not None:
        options.append(f"rate={rate!r}")
    if speaker is not None:
        options.append(f"speaker={speaker}")
    entry = f"{' '.join(options)} | {text}" if options or "|" in text else text
    [spec] = parse_prewarm_entry(entry, "x")
    assert spec.text == text.strip()
    assert spec.voice == voice
    assert spec.params == SynthesisParams(speaker=speaker, rate=1.0 if rate is None else rate)


def test_file_and_inline_list(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "# IVR prompts\nWelcome.\n\nvoice=en_US-joe-medium | Welcome.\nBattery low.\n",
        encoding="utf-8",
    )
    specs = load_prewarm_list(["Battery low.", "Goodbye."], prompts)
    assert [(s.text, s.voice, s.source) for s in specs] == [
        ("Battery low.", None, "config cache.prewarm[0]"),
        ("Goodbye.", None, "config cache.prewarm[1]"),
        ("Welcome.", None, f"{prompts}:2"),
        ("Welcome.", "en_US-joe-medium", f"{prompts}:4"),
    ]  # the file's "Battery low." repeats the inline one and is dropped


def test_file_errors_name_the_line(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Fine.\nrate=2 rate=3 | Twice.\n", encoding="utf-8")
    with pytest.raises(InvalidPrewarmList, match=f"^{prompts}:2: "):
        parse_prewarm_file(prompts)
    with pytest.raises(InvalidPrewarmList, match="cannot read"):
        parse_prewarm_file(tmp_path / "missing.txt")
    prompts.write_bytes(b"caf\xe9\n")
    with pytest.raises(InvalidPrewarmList, match="not UTF-8"):
        parse_prewarm_file(prompts)


# --- the warmer --------------------------------------------------------------------------------


def specs_for(*texts: str) -> list[PrewarmSpec]:
    return [PrewarmSpec(t, None, SynthesisParams(), f"test:{i}") for i, t in enumerate(texts)]


class FakeCache:
    """Records renders; a render takes `render_s`, checking its token like a voice does."""

    def __init__(self, cached: set[str] | None = None, render_s: float = 0.01) -> None:
        self.cached = set(cached or ())
        self.render_s = render_s
        self.rendered: list[str] = []
        self.starts: list[float] = []
        self.lock = threading.Lock()

    def render(self, spec: PrewarmSpec, cancel: CancelToken) -> None:
        with self.lock:
            self.starts.append(time.monotonic())
        deadline = time.monotonic() + self.render_s
        while time.monotonic() < deadline:
            cancel.raise_if_cancelled()
            time.sleep(0.002)
        cancel.raise_if_cancelled()
        with self.lock:
            self.rendered.append(spec.text)
            self.cached.add(spec.text)

    def is_cached(self, spec: PrewarmSpec) -> bool:
        with self.lock:
            return spec.text in self.cached


def test_renders_missing_entries_and_skips_cached() -> None:
    cache = FakeCache(cached={"b"})
    warmer = Prewarmer(specs_for("a", "b", "c"), cache.render, cache.is_cached, lambda: False)
    warmer.start()
    assert warmer.wait(10)
    assert cache.rendered == ["a", "c"]
    progress = warmer.progress()
    assert (progress.state, progress.rendered, progress.cached, progress.remaining) == (
        PrewarmState.DONE,
        2,
        1,
        0,
    )


def test_waits_while_live_requests_are_busy() -> None:
    cache = FakeCache()
    busy = threading.Event()
    busy.set()
    warmer = Prewarmer(specs_for("a", "b"), cache.render, cache.is_cached, busy.is_set)
    warmer.start()
    time.sleep(0.3)
    assert cache.starts == []  # nothing starts while a live request is busy
    released = time.monotonic()
    busy.clear()
    assert warmer.wait(10)
    assert cache.rendered == ["a", "b"]
    assert cache.starts[0] >= released


def test_live_request_preempts_the_entry_being_rendered() -> None:
    cache = FakeCache(render_s=2.0)
    busy = threading.Event()
    warmer = Prewarmer(specs_for("long"), cache.render, cache.is_cached, busy.is_set)
    warmer.start()
    while not cache.starts:
        time.sleep(0.005)
    arrived = time.monotonic()
    busy.set()
    # The render is cancelled within a few polls, and nothing restarts while busy.
    deadline = time.monotonic() + 2
    while warmer.progress().preempted == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert warmer.progress().preempted == 1
    assert time.monotonic() - arrived < 0.5
    time.sleep(0.2)
    assert len(cache.starts) == 1
    cache.render_s = 0.01
    busy.clear()
    assert warmer.wait(10)
    assert cache.rendered == ["long"] and len(cache.starts) == 2


def test_failures_are_counted_and_warming_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    cache = FakeCache()

    def render(spec: PrewarmSpec, cancel: CancelToken) -> None:
        if spec.text == "bad voice":
            raise UnknownVoice("no voice 'x'")
        if spec.text == "bug":
            raise RuntimeError("oops")
        if spec.text == "engine":
            raise SynthesisError("engine broke")
        cache.render(spec, cancel)

    warmer = Prewarmer(
        specs_for("bad voice", "bug", "engine", "ok"), render, cache.is_cached, lambda: False
    )
    warmer.start()
    assert warmer.wait(10)
    assert cache.rendered == ["ok"]
    assert warmer.progress().failed == 3
    assert "event=prewarm-failed source=test:0 code=unknown-voice" in caplog.text


def test_stop_then_resume() -> None:
    cache = FakeCache(render_s=0.05)
    texts = [f"p{i}" for i in range(20)]
    warmer = Prewarmer(specs_for(*texts), cache.render, cache.is_cached, lambda: False)
    warmer.start()
    while len(cache.rendered) < 3:
        time.sleep(0.005)
    assert warmer.stop(5)
    progress = warmer.progress()
    assert progress.state is PrewarmState.STOPPED and 0 < progress.remaining < 20
    done_before = list(cache.rendered)
    warmer.start()
    assert warmer.wait(10)
    assert cache.rendered[: len(done_before)] == done_before
    assert sorted(cache.rendered) == sorted(texts)  # nothing lost, nothing twice


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_renders_run_idle_priority_and_so_do_threads_they_start() -> None:
    """The voice instance's inference threads are created while rendering: they must inherit
    the lowest priority, so live requests always get the CPU first."""
    seen: list[tuple[int, int, int]] = []

    def render(spec: PrewarmSpec, cancel: CancelToken) -> None:
        def child() -> None:
            tid = threading.get_native_id()
            seen.append((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid), 1))

        tid = threading.get_native_id()
        seen.append((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid), 0))
        worker = threading.Thread(target=child)
        worker.start()
        worker.join()

    warmer = Prewarmer(specs_for("a"), render, lambda spec: False, lambda: False)
    warmer.start()
    assert warmer.wait(10)
    assert seen == [(os.SCHED_IDLE, LOWEST_NICE, 0), (os.SCHED_IDLE, LOWEST_NICE, 1)]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller's thread is untouched


def test_extend_queues_on_the_running_warmer_and_is_refused_once_done() -> None:
    """Later `cache-warm` requests join the running warmer: one thread, however many requests
    arrive while live load keeps it waiting (the soak piled up a thread pair per request)."""
    cache = FakeCache()
    busy = threading.Event()
    busy.set()
    warmer = Prewarmer(specs_for("a"), cache.render, cache.is_cached, busy.is_set)
    assert not warmer.extend(specs_for("early"))  # not started: the caller makes a new one
    warmer.start()
    threads_before = threading.active_count()
    for text in ("b", "c"):
        assert warmer.extend([PrewarmSpec(text, None, SynthesisParams(), "test:extend")])
    assert threading.active_count() == threads_before
    assert (warmer.progress().total, warmer.progress().remaining) == (3, 3)
    busy.clear()
    assert warmer.wait(10)
    assert cache.rendered == ["a", "b", "c"]
    progress = warmer.progress()
    assert (progress.state, progress.remaining) == (PrewarmState.DONE, 0)
    assert not warmer.extend(specs_for("late"))  # done: never stranded on an ended thread


_WARM_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time
    from pathlib import Path
    import numpy as np
    from utterd.daemon.cache.store import PhraseCache
    from utterd.daemon.cache.prewarm import Prewarmer, load_prewarm_list
    from utterd.models.voice import AudioChunk

    folder, prompts = Path(sys.argv[1]), Path(sys.argv[2])
    cache = PhraseCache(folder, 1 << 20, 64 << 20)
    specs = load_prewarm_list([], prompts)

    def key(spec):
        return hashlib.sha256(spec.text.encode()).hexdigest()

    def produce(text):
        def run(token):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            for i in range(3):
                time.sleep(0.01)
                token.raise_if_cancelled()
                noise = np.random.default_rng([seed, i]).standard_normal(4000)
                yield AudioChunk((noise * 0.1).astype(np.float32), 16000, i, True)
        return run

    def render(spec, cancel):
        for _ in cache.stream(key(spec), "v", produce(spec.text), cancel):
            pass

    warmer = Prewarmer(specs, render, lambda s: cache.contains(key(s)), lambda: False)
    print("ready", flush=True)
    warmer.start()
    warmer.wait()
    cache.wait_idle()
    p = warmer.progress()
    print(json.dumps({"rendered": p.rendered, "cached": p.cached, "failed": p.failed}))
    cache.close()
    """
)


def test_sigkill_while_warming_then_restart_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Prompt number {i}.\n" for i in range(40)), encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-c", _WARM_CHILD, str(folder), str(prompts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    # Kill once a few entries are on disk: mid-warming, likely mid-write.
    deadline = time.monotonic() + 30
    while len(list(folder.glob("*" + ENTRY_SUFFIX))) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert child.returncode == -signal.SIGKILL
    survived = len(list(folder.glob("*" + ENTRY_SUFFIX)))
    assert 5 <= survived < 40

    rerun = subprocess.run(
        [sys.executable, "-c", _WARM_CHILD, str(folder), str(prompts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0
    assert result["cached"] >= survived  # already there: skipped, not rendered again
    assert result["rendered"] + result["cached"] == 40
    files = list(folder.glob("*" + ENTRY_SUFFIX))
    assert len(files) == 40
    for path in files:
        entry = read_entry_file(path)  # every entry verifies
        assert entry.sample_count == 12000


def test_preempt_cancels_the_entry_being_rendered_at_once() -> None:
    """The server calls preempt() when live work arrives; the render stops without waiting
    for the watcher's poll (here: a watcher that would take a minute)."""
    cache = FakeCache(render_s=5.0)
    busy = threading.Event()
    warmer = Prewarmer(
        specs_for("a"), cache.render, cache.is_cached, busy.is_set, poll_interval_s=60
    )
    warmer.start()
    deadline = time.monotonic() + 5
    while not cache.starts and time.monotonic() < deadline:
        time.sleep(0.001)
    busy.set()
    asked = time.monotonic()
    warmer.preempt()
    while warmer.progress().preempted == 0 and time.monotonic() < asked + 2:
        time.sleep(0.001)
    assert warmer.progress().preempted == 1
    busy.clear()
    warmer.stop()
