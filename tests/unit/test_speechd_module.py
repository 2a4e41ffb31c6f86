"""sd_utterd, speech-dispatcher's output module: its protocol state machine with a fake daemon
and fake stdin/stdout, the settings and voice mapping, the SSML it builds (checked with utterd's
own SSML parser) and its config file."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon.bridges import speechd_text as text
from utterd.daemon.bridges.speechd_config import (
    ModuleConfig,
    ModuleConfigError,
    VoiceChoice,
    endpoints,
    events_endpoint_for,
    load_config,
    parse_config,
)
from utterd.daemon.bridges.speechd_link import DaemonRefused, DaemonUnreachable
from utterd.daemon.bridges.speechd_module import JOB_CHECK_S, ModuleSession, logging_level
from utterd.daemon.bridges.speechd_settings import (
    BadSetting,
    MessageSettings,
    VoiceEntry,
    apply_setting,
    choose_voice,
    utterd_rate,
    utterd_volume,
)
from utterd.models.text import ssml
from utterd.models.text.segments import Break, Mark, TextSegment

REPO = Path(__file__).resolve().parents[2]
JOE = "en_US-joe-medium"
HEART = "hibari-heart"
VOICES = [
    {"id": HEART, "language": "en-US", "load_error": None},
    {"id": JOE, "language": "en-US", "load_error": None},
    {"id": "de_DE-thorsten-medium", "language": "de-DE", "load_error": None},
    {"id": "broken", "language": "en-US", "load_error": "model missing"},
]


@dataclass
class FakeLink:
    """The daemon as the module sees it: records requests, answers as told."""

    speak_errors: list[Exception] = field(default_factory=list)
    """Raised by the next speak calls, in order (then speak succeeds)."""

    cancel_answer: list[str] | None = None
    """Jobs `cancel` reports; None: the job speaking."""

    pause_answer: list[str] | None = None
    job_answer: dict[str, Any] = field(default_factory=lambda: {"state": "speaking"})
    unreachable: bool = False
    spoken: list[dict[str, object]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    jobs: int = 0

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.unreachable:
            raise DaemonUnreachable("utterd is not answering on ipc:///nowhere")

    @property
    def current(self) -> str:
        return f"j-{self.jobs}"

    def speak(self, request: Mapping[str, object]) -> str:
        self._check("speak")
        self.spoken.append(dict(request))
        if self.speak_errors:
            raise self.speak_errors.pop(0)
        self.jobs += 1
        return self.current

    def cancel(self) -> list[str]:
        self._check("cancel")
        return [self.current] if self.cancel_answer is None else self.cancel_answer

    def pause(self, job: str) -> list[str]:
        self._check("pause")
        return [job] if self.pause_answer is None else self.pause_answer

    def job(self, job: str) -> dict[str, Any]:
        self._check("job")
        return self.job_answer

    def describe(self) -> dict[str, Any]:
        self._check("describe")
        return {"version": "0.1.0", "default_voice": HEART, "voices": VOICES}


class Harness:
    """A session wired to a fake link, fake stdout and a hand-driven clock."""

    def __init__(self, config: ModuleConfig | None = None, init: bool = True) -> None:
        self.link = FakeLink()
        self.config = config or ModuleConfig()
        self.out: list[str] = []
        self.now = 100.0
        self.levels: list[int] = []
        self.debug_files: list[str | None] = []
        self.session = ModuleSession(
            lambda: (self.link, self.config, "utterd 0.1.0, 3 voices"),
            self.out.append,
            clock=lambda: self.now,
            set_log_level=self.levels.append,
            set_debug_file=self.debug_files.append,
        )
        if init:
            self.feed("INIT")
            assert self.take() == ["299-utterd 0.1.0, 3 voices", "299 OK LOADED SUCCESSFULLY"]

    def feed(self, *lines: str) -> None:
        for line in lines:
            self.session.feed(line)

    def take(self) -> list[str]:
        """Lines written since the last call."""
        lines = "".join(self.out).splitlines()
        self.out.clear()
        return lines

    def speak(self, kind: str = "SPEAK", *data: str) -> list[str]:
        self.feed(kind, *(data or ("<speak>Hello.</speak>",)), ".")
        return self.take()

    def event(self, kind: str, **data: object) -> list[str]:
        self.session.on_event(kind, {"job": self.link.current, **data})
        return self.take()


@pytest.fixture
def h() -> Iterator[Harness]:
    yield Harness()


# -- the handshake -------------------------------------------------------------------------------


def test_init_failure_answers_399_and_ends_the_module() -> None:
    def fail() -> Any:
        raise ModuleConfigError("utterd.conf, line 3: unknown key 'Rate'")

    out: list[str] = []
    session = ModuleSession(fail, out.append)
    session.feed("INIT")
    assert "".join(out).splitlines() == [
        "399-utterd.conf, line 3: unknown key 'Rate'",
        "399 ERR CANT INIT MODULE",
    ]
    assert session.finished and session.exit_code == 1


def test_a_first_line_other_than_init_ends_the_module() -> None:
    fresh = Harness(init=False)
    fresh.feed("SPEAK")
    assert fresh.take() == []
    assert fresh.session.finished and fresh.session.exit_code == 3


def test_unknown_command_and_quit(h: Harness) -> None:
    h.feed("FLY")
    assert h.take() == ["300 ERR UNKNOWN COMMAND"]
    h.feed("QUIT")
    assert h.take() == ["210 OK QUIT"]
    assert h.session.finished and h.session.exit_code == 0


# -- speaking ------------------------------------------------------------------------------------


def test_speak_relays_ssml_with_text_priority_and_reports_the_jobs_events(h: Harness) -> None:
    document = '<speak>Hello.<mark name="__spd_0"/> How <mark name="x"/>are you?</speak>'
    assert h.speak("SPEAK", document) == ["202 OK RECEIVING MESSAGE", "200 OK SPEAKING"]
    request = h.link.spoken[-1]
    assert request["text"] == document
    assert request["text_format"] == "ssml"
    assert request["priority"] == "text"
    assert request["cache"] == "off"  # a screen reader's text stays off the disk cache
    assert request["rate"] == 1.0 and request["volume"] == 1.0
    assert request["voice"] == HEART  # the daemon's default voice speaks the language
    assert h.session.speaking
    h.session.on_event("begin", {"job": "someone-else"})
    assert h.take() == []
    assert h.event("begin") == ["701 BEGIN"]
    assert h.event("sentence", sentence=1) == []
    assert h.event("mark", name="__spd_0") == ["700-__spd_0", "700 INDEX MARK"]
    assert h.event("mark", name="x") == ["700-x", "700 INDEX MARK"]
    assert h.event("end") == ["702 END"]
    assert not h.session.speaking
    assert h.event("end") == []  # one end per message


def test_speak_data_undoes_dot_escaping_and_joins_lines(h: Harness) -> None:
    h.speak("SPEAK", "<speak>One", "..two", "..", "", "three</speak>")
    assert h.link.spoken[-1]["text"] == "<speak>One\n.two\n.\n\nthree</speak>"


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\n\r"), max_size=30)))
def test_any_message_arrives_as_speech_dispatcher_wrote_it(lines: list[str]) -> None:
    h = Harness()
    message = "\n".join(lines)
    escaped = ["." + line if line.startswith(".") else line for line in lines]
    h.feed("SPEAK", *escaped, ".")
    replies = h.take()
    if not message:
        assert replies == ["202 OK RECEIVING MESSAGE", "301 ERROR CANT SPEAK"]
        assert h.link.spoken == []
    else:
        assert replies == ["202 OK RECEIVING MESSAGE", "200 OK SPEAKING"]
        assert h.link.spoken[-1]["text"] == text.ssml_document(message)


def test_a_message_without_a_root_gets_one() -> None:
    assert (
        text.ssml_document('Hi <mark name="a"/> there')
        == '<speak>Hi <mark name="a"/> there</speak>'
    )
    for rooted in ("<speak>a</speak>", ' <?xml version="1.0"?>\n<speak xml:lang="en">a</speak>'):
        assert text.ssml_document(rooted) == rooted
    assert text.ssml_document("<speaker>a</speaker>").startswith("<speak><speaker>")


def test_nothing_to_say_still_begins_and_ends(h: Harness) -> None:
    h.link.speak_errors = [DaemonRefused("nothing-to-say", "only symbols")]
    assert h.speak() == ["202 OK RECEIVING MESSAGE", "200 OK SPEAKING", "701 BEGIN", "702 END"]
    assert not h.session.speaking


def test_ssml_utterd_refuses_is_spoken_as_text(h: Harness) -> None:
    # A message resumed after a pause can close an element it no longer opens.
    h.link.speak_errors = [DaemonRefused("invalid-ssml", "mismatched tag (line 1, column 13)")]
    assert h.speak("SPEAK", "<speak> B &amp; C.</prosody></speak>")[-1] == "200 OK SPEAKING"
    assert [r["text_format"] for r in h.link.spoken] == ["ssml", "text"]
    assert h.link.spoken[-1]["text"] == "B & C."


@pytest.mark.parametrize(
    "error",
    [DaemonUnreachable("utterd is not answering"), DaemonRefused("busy", "queue full")],
)
def test_a_message_the_daemon_cannot_take_is_stopped_at_once(h: Harness, error: Exception) -> None:
    # Not 301: speech-dispatcher would drop the message without telling the client waiting on it.
    h.link.speak_errors = [error]
    assert h.speak() == ["202 OK RECEIVING MESSAGE", "200 OK SPEAKING", "703 STOP"]
    assert not h.session.speaking


def test_a_daemon_down_before_the_voices_are_known_stops_the_message_at_once() -> None:
    h = Harness()
    h.link.unreachable = True
    assert h.speak() == ["202 OK RECEIVING MESSAGE", "200 OK SPEAKING", "703 STOP"]
    assert h.link.calls == ["describe"]
    h.link.unreachable = False
    assert h.speak()[-1] == "200 OK SPEAKING"


def test_char_key_and_icon_take_one_line(h: Harness) -> None:
    for kind in ("CHAR", "KEY", "SOUND_ICON"):
        assert h.speak(kind, "a", "b") == [
            "202 OK RECEIVING MESSAGE",
            "305 DATA MORE THAN ONE LINE",
        ]
    assert h.link.spoken == []


def test_chars_and_keys_use_the_cache_texts_do_not(h: Harness) -> None:
    for kind, data in (("CHAR", "a"), ("KEY", "shift_a"), ("SOUND_ICON", "message")):
        h.speak(kind, data)
        h.event("end")
        assert h.link.spoken[-1]["cache"] == "auto", kind
    everything = Harness(ModuleConfig(cache="all"))
    everything.speak()
    assert everything.link.spoken[-1]["cache"] == "auto"
    nothing = Harness(ModuleConfig(cache="none"))
    nothing.speak("CHAR", "a")
    assert nothing.link.spoken[-1]["cache"] == "off"


def test_sound_icon_is_a_short_silence(h: Harness) -> None:
    h.speak("SOUND_ICON", "capital")
    document = ssml.parse(str(h.link.spoken[-1]["text"]))
    assert [s.segments for s in document.sentences] == [(Break(100),)]
    at_once = Harness(ModuleConfig(sound_icon_ms=0))
    assert at_once.speak("SOUND_ICON", "capital") == [
        "202 OK RECEIVING MESSAGE",
        "200 OK SPEAKING",
        "701 BEGIN",
        "702 END",
    ]
    assert at_once.link.spoken == []


def test_a_message_speaking_when_the_next_arrives_is_cancelled_silently(h: Harness) -> None:
    h.speak()
    h.speak()
    assert h.link.calls.count("cancel") == 1
    assert h.event("end") == ["701 BEGIN", "702 END"]  # only the new job reports


# -- stop and pause ------------------------------------------------------------------------------


def test_stop_cancels_and_reports_once_the_daemon_stopped_the_job(h: Harness) -> None:
    h.speak()
    h.event("begin")
    h.feed("STOP")
    assert h.link.calls[-1] == "cancel"
    assert h.take() == ["703 STOP"]
    assert h.event("stopped", reason="stopped") == []


def test_stop_of_a_job_that_just_ended_waits_for_its_end(h: Harness) -> None:
    h.speak()
    h.link.cancel_answer = []
    h.feed("STOP")
    assert h.take() == []
    assert h.event("end") == ["701 BEGIN", "702 END"]


def test_stop_when_idle_does_nothing(h: Harness) -> None:
    h.feed("STOP", "PAUSE")
    assert h.take() == [] and "cancel" not in h.link.calls and "pause" not in h.link.calls


def test_stop_with_the_daemon_gone_still_ends_the_message(h: Harness) -> None:
    h.speak()
    h.link.unreachable = True
    h.feed("STOP")
    assert h.take() == ["703 STOP"]


def test_pause_reports_once_paused_and_frees_the_device(h: Harness) -> None:
    h.speak()
    h.event("begin")
    h.event("mark", name="__spd_0")
    h.feed("PAUSE")
    assert h.link.calls[-1] == "pause" and h.take() == []
    assert h.event("paused") == ["704 PAUSE"]
    assert h.link.calls[-1] == "cancel"  # speech-dispatcher resumes by sending the rest again
    assert not h.session.speaking


def test_pause_of_a_job_still_waiting_reports_at_once(h: Harness) -> None:
    h.speak()
    h.feed("PAUSE")
    assert h.take() == ["704 PAUSE"]
    assert h.link.calls[-2:] == ["pause", "cancel"]


def test_pause_of_a_job_that_ends_first_reports_its_end(h: Harness) -> None:
    h.speak()
    h.event("begin")
    h.link.pause_answer = []
    h.feed("PAUSE")
    assert h.event("end") == ["702 END"]


@pytest.mark.parametrize(("pause", "report"), [(False, "703 STOP"), (True, "704 PAUSE")])
def test_a_job_stopped_or_failed_in_the_daemon_ends_the_message(
    h: Harness, pause: bool, report: str
) -> None:
    h.speak()
    h.event("begin")
    if pause:
        h.feed("PAUSE")
    assert h.event("stopped", reason="interrupted by an important message") == [report]
    h.speak()
    assert h.event("failed", code="device-unavailable", message="gone") == ["703 STOP"]


# -- the daemon going away -----------------------------------------------------------------------


def test_a_lost_daemon_ends_the_message_speaking(h: Harness) -> None:
    h.speak()
    h.event("begin")
    h.session.on_connection(False)
    assert h.take() == ["703 STOP"]
    h.session.on_connection(True)
    assert h.take() == []


def test_a_quiet_job_is_looked_up_and_a_missed_end_reported(h: Harness) -> None:
    h.speak()
    h.now += JOB_CHECK_S / 2
    h.session.tick()
    assert "job" not in h.link.calls
    h.now += JOB_CHECK_S
    h.session.tick()
    assert h.link.calls[-1] == "job" and h.take() == []
    h.link.job_answer = {"state": "done", "paused": False}
    h.now += JOB_CHECK_S
    h.session.tick()
    assert h.take() == ["701 BEGIN", "702 END"]


def test_a_job_the_daemon_no_longer_answers_for_ends_stopped(h: Harness) -> None:
    h.speak()
    h.link.unreachable = True
    h.now += JOB_CHECK_S
    h.session.tick()
    assert h.take() == ["703 STOP"]


def test_quit_silences_the_message_speaking(h: Harness) -> None:
    h.speak()
    h.feed("QUIT")
    assert h.take() == ["210 OK QUIT"]
    assert h.link.calls[-1] == "cancel"


# -- settings ------------------------------------------------------------------------------------


def test_set_applies_settings_to_the_next_message(h: Harness) -> None:
    h.feed("SET", "rate=50", "volume=-50", "pitch=30", "voice=female1", "language=en")
    h.feed("synthesis_voice=NULL", "punctuation_mode=none", ".")
    assert h.take() == ["203 OK RECEIVING SETTINGS", "203 OK SETTINGS RECEIVED"]
    h.speak()
    request = h.link.spoken[-1]
    assert request["rate"] == pytest.approx(2.0)
    assert request["volume"] == pytest.approx(0.5)


def test_set_refuses_a_bad_value_and_keeps_the_good_ones(h: Harness) -> None:
    h.feed("SET", "rate=250", "volume=-100", "punctuation_mode=loud", ".")
    assert h.take() == ["203 OK RECEIVING SETTINGS", "303 ERROR INVALID PARAMETER OR VALUE"]
    h.feed("SET", "volume", ".")
    assert h.take() == ["203 OK RECEIVING SETTINGS", "302 ERROR BAD SYNTAX"]
    h.speak()
    assert h.link.spoken[-1]["volume"] == 0.0
    assert h.link.spoken[-1]["rate"] == 1.0


def test_synthesis_voice_picks_the_voice(h: Harness) -> None:
    h.feed("SET", f"synthesis_voice={JOE}", ".")
    h.speak()
    assert h.link.spoken[-1]["voice"] == JOE


def test_audio_refuses_server_playback_and_takes_the_rest(h: Harness) -> None:
    h.feed("AUDIO", "audio_output_method=server", ".")
    assert h.take() == ["207 OK RECEIVING AUDIO SETTINGS", "303 ERROR INVALID PARAMETER OR VALUE"]
    h.feed("AUDIO", "audio_output_method=pulse", "audio_pulse_device=default", ".")
    assert h.take() == ["207 OK RECEIVING AUDIO SETTINGS", "203 OK AUDIO INITIALIZED"]


def test_loglevel_sets_the_module_log_level(h: Harness) -> None:
    h.feed("LOGLEVEL", "log_level=2", ".")
    assert h.take() == ["207 OK RECEIVING LOGLEVEL SETTINGS", "203 OK LOGLEVEL SET"]
    h.feed("LOGLEVEL", "log_level=5", ".")
    h.take()
    assert h.levels == [logging.WARNING, logging.DEBUG]
    assert [logging_level(n) for n in range(6)] == [50, 40, 30, 20, 10, 10]


def test_debug_on_and_off(h: Harness, tmp_path: Path) -> None:
    h.feed(f"DEBUG ON {tmp_path / 'debug.log'}", "DEBUG OFF", "DEBUG")
    assert h.take() == ["200 OK DEBUGGING ON", "200 OK DEBUGGING OFF", "302 ERROR BAD SYNTAX"]
    assert h.debug_files == [str(tmp_path / "debug.log"), None]


def test_list_voices_lists_the_daemons_loadable_voices(h: Harness) -> None:
    h.feed("LIST VOICES")
    assert h.take() == [
        f"200-{HEART}\ten-US\tnone",
        f"200-{JOE}\ten-US\tnone",
        "200-de_DE-thorsten-medium\tde-DE\tnone",
        "200 OK VOICE LIST SENT",
    ]
    h.feed("LIST VOICES de")
    assert h.take() == ["200-de_DE-thorsten-medium\tde-DE\tnone", "200 OK VOICE LIST SENT"]
    h.feed("LIST VOICES fr")
    assert h.take() == ["304 CANT LIST VOICES"]
    h.link.unreachable = True
    h.feed("LIST VOICES")
    assert h.take() == ["304 CANT LIST VOICES"]


def test_rate_is_exponential_from_a_quarter_to_four_times() -> None:
    assert utterd_rate(0) == 1.0
    assert utterd_rate(100) == pytest.approx(4.0)
    assert utterd_rate(-100) == pytest.approx(0.25)
    assert utterd_rate(50) == pytest.approx(2.0)
    assert utterd_rate(-50) == pytest.approx(0.5)
    rates = [utterd_rate(r) for r in range(-100, 101)]
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


def test_volume_runs_from_silence_through_unchanged_to_the_configured_maximum() -> None:
    assert utterd_volume(-100, 1.5) == 0.0
    assert utterd_volume(-50, 1.5) == pytest.approx(0.5)
    assert utterd_volume(0, 1.5) == 1.0
    assert utterd_volume(100, 1.5) == pytest.approx(1.5)
    assert utterd_volume(100, 4.0) == pytest.approx(4.0)
    assert utterd_volume(50, 3.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("rate", "101"), ("pitch", "x"), ("voice", "robot"), ("spelling_mode", "yes"), ("tone", "1")],
)
def test_bad_settings(name: str, value: str) -> None:
    with pytest.raises(BadSetting):
        apply_setting(MessageSettings(), name, value)


def test_voice_choice_order() -> None:
    voices = [VoiceEntry(HEART, "en-US"), VoiceEntry(JOE, "en-US"), VoiceEntry("thorsten", "de-DE")]
    choices = [VoiceChoice("en", "male1", JOE), VoiceChoice("en", "female1", "missing")]

    def chosen(default: str | None = HEART, **settings: str) -> str | None:
        return choose_voice(MessageSettings(**settings), voices, choices, default)

    assert chosen(voice_type="male1", language="en") == JOE  # an AddVoice line
    assert chosen(voice_type="male1", language="de") == "thorsten"  # the line is for English
    assert chosen(voice_type="female1", language="en-us") == HEART  # its voice is missing
    assert chosen(voice_type="male1", language="en", synthesis_voice="thorsten") == "thorsten"
    assert chosen(synthesis_voice="nobody", language="c") == HEART
    assert chosen(None) is None  # the daemon's default
    assert chosen(None, language="en-GB") is None  # no voice speaks it


# -- the SSML the module builds ------------------------------------------------------------------


def _said(document: str) -> list[tuple[str, str | None]]:
    """(text, say-as) of each text segment utterd's parser finds."""
    parsed = ssml.parse(document)
    return [
        (seg.text, seg.say_as.interpret_as if seg.say_as else None)
        for sentence in parsed.sentences
        for seg in sentence.segments
        if isinstance(seg, TextSegment) and seg.text.strip()
    ]


def test_spelling_wraps_free_text_only() -> None:
    document = text.spelled(
        '<speak>ab <mark name="m"/><say-as interpret-as="digits">12</say-as> Cd</speak>', False
    )
    segments = [seg for sentence in ssml.parse(document).sentences for seg in sentence.segments]
    assert [
        (seg.text, seg.say_as.interpret_as if seg.say_as else None)
        if isinstance(seg, TextSegment)
        else seg
        for seg in segments
    ] == [("ab", "characters"), Mark("m"), ("12", "digits"), ("Cd", "characters")]


def test_spelling_with_capitals_says_capital(h: Harness) -> None:
    document = text.spelled("<speak>aB</speak>", True)
    said = _said(document)
    assert [t.strip() for t, _ in said] == ["a", "capital", "B"]
    h.feed("SET", "spelling_mode=on", "cap_let_recogn=spell", ".")
    h.speak("SPEAK", "<speak>Hi</speak>")
    assert "capital" in str(h.link.spoken[-1]["text"])


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("none", []),
        ("some", ["at", "and"]),
        ("most", ["at", "and", "open paren", "close paren", "colon"]),
        ("all", ["at", "and", "open paren", "close paren", "colon", "comma", "dot"]),
    ],
)
def test_punctuation_modes_name_more_and_more(mode: str, named: list[str]) -> None:
    source = "<speak>Mail me@home &amp; (work): now, please.</speak>"
    document = text.with_punctuation_names(source, mode)
    words = " ".join(t for t, _ in _said(document))
    for name in named:
        assert f" {name} " in f" {words} ", (mode, name, words)
    for name in {"comma", "colon", "at"} - set(named):
        assert f" {name} " not in f" {words} ", (mode, name, words)


def _xml_allows(value: str) -> bool:
    """Whether XML 1.0 allows every character of `value` (utterd's parser refuses the rest)."""
    return all(
        c in "\t\n\r" or 0x20 <= ord(c) < 0xD800 or 0xE000 <= ord(c) < 0xFFFE or ord(c) > 0xFFFF
        for c in value
    )


@given(st.text(max_size=40).filter(_xml_allows))
def test_documents_built_from_any_text_are_valid_ssml(value: str) -> None:
    body = text.speak(text.escape(value))
    for document in (
        text.spelled(body, True),
        text.with_punctuation_names(body, "all"),
        text.character_document(value[:1] or " ", "spell"),
        text.key_document(value.replace("\n", "") or "a", "spell"),
    ):
        ssml.parse(document)


@pytest.mark.parametrize(
    ("char", "capitals", "said"),
    [
        ("a", "none", [("a", "characters")]),
        ("A", "spell", [("capital", None), ("A", "characters")]),
        ("A", "icon", [("A", "characters")]),
        (" ", "none", [("space", None)]),
        (",", "none", [("comma", None)]),
        ("‰", "none", [("per mille sign", None)]),
        ("<", "none", [("less than", None)]),
    ],
)
def test_characters(char: str, capitals: str, said: list[tuple[str, str | None]]) -> None:
    assert [(t.strip(), k) for t, k in _said(text.character_document(char, capitals))] == said


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("a", "a"),
        ("shift_a", "shift a"),
        ("shift_kp-enter", "shift keypad enter"),
        ("control_alt_delete", "control alt delete"),
        ("kp--", "keypad dash"),
        ("double-quote", "double quote"),
        ("underscore", "underscore"),
        ("prior", "page up"),
        ("num-lock", "num lock"),
    ],
)
def test_keys(key: str, words: str) -> None:
    said = " ".join(t.strip() for t, _ in _said(text.key_document(key, "none")))
    assert " ".join(said.split()) == words


def test_plain_text_drops_markup_and_resolves_entities() -> None:
    assert text.plain_text('<speak>A &amp; <mark name="x"/>B\n  &lt;C&gt;</speak>') == "A & B <C>"


# -- the config file -----------------------------------------------------------------------------


def test_the_shipped_config_file_says_the_defaults() -> None:
    assert load_config(REPO / "speechd" / "utterd.conf") == ModuleConfig()


def test_config_values() -> None:
    config = parse_config(
        """
        # comment
        UtterdEndpoint "tcp://127.0.0.1:5555"   # trailing comment
        UtterdTimeout 1.5
        UtterdMaxVolume 2
        UtterdCache "all"
        UtterdSoundIconMs 0
        UtterdDefaultVoice "en_US-joe-medium"
        AddVoice "en" "MALE1" "en_US-joe-medium"
        AddVoice "de" "female2" "thorsten"
        """,
        "utterd.conf",
    )
    assert config.endpoint == "tcp://127.0.0.1:5555"
    assert config.reply_timeout_s == 1.5 and config.max_volume == 2.0
    assert config.cache == "all" and config.sound_icon_ms == 0
    assert config.default_voice == JOE
    assert config.voices == (
        VoiceChoice("en", "male1", JOE),
        VoiceChoice("de", "female2", "thorsten"),
    )
    assert endpoints(config) == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("Rate 3", "unknown key 'Rate'"),
        ("UtterdTimeout soon", "must be a number"),
        ("UtterdMaxVolume 9", "must be in 1..4"),
        ('UtterdCache "disk"', "must be one of"),
        ('AddVoice "en" "ROBOT" "x"', "none of"),
        ('AddVoice "en" "MALE1"', "AddVoice takes"),
        ('UtterdEndpoint "a" "b"', "takes one value"),
        ('UtterdEndpoint "unclosed', "No closing quotation"),
    ],
)
def test_config_errors_name_file_and_line(line: str, problem: str) -> None:
    with pytest.raises(ModuleConfigError) as err:
        parse_config(f"# first\n{line}\n", "/etc/speech-dispatcher/modules/utterd.conf")
    assert "/etc/speech-dispatcher/modules/utterd.conf, line 2" in err.value.message
    assert problem in err.value.message


def test_missing_config_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "utterd.conf") == ModuleConfig()
    assert load_config(None) == ModuleConfig()


def test_endpoints_come_from_utterds_config_file(tmp_path: Path) -> None:
    utterd_config = tmp_path / "config.yaml"
    utterd_config.write_text(f"server:\n  runtime_dir: {tmp_path / 'run'}\n")
    request, events = endpoints(ModuleConfig(utterd_config=utterd_config))
    assert request == f"ipc://{tmp_path / 'run' / 'utterd.sock'}"
    assert events == f"ipc://{tmp_path / 'run' / 'utterd-events.sock'}"
    utterd_config.write_text("server:\n  runtime_dir: 5\n")
    with pytest.raises(ModuleConfigError):
        endpoints(ModuleConfig(utterd_config=utterd_config))


def test_event_endpoint_beside_the_request_endpoint() -> None:
    assert events_endpoint_for("ipc:///run/utterd/utterd.sock") == (
        "ipc:///run/utterd/utterd-events.sock"
    )
    assert events_endpoint_for("tcp://[::1]:7000") == "tcp://[::1]:7001"
    with pytest.raises(ModuleConfigError):
        events_endpoint_for("ipc:///run/other.sock")
