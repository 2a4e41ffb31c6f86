"""The SSML parser (models/text/ssml.py): elements, inheritance, sentences, errors, hostile XML,
streaming."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from timing import growth
from utterd.models.errors import UtterdError
from utterd.models.text import ssml
from utterd.models.text.segments import (
    Break,
    Mark,
    Prosody,
    SayAs,
    Segment,
    Sentence,
    TextSegment,
)
from utterd.models.text.ssml import InvalidSsml, SsmlDocument, SsmlLimits, SsmlStream

NS = 'xmlns="http://www.w3.org/2001/10/synthesis"'


def speak(body: str, attrs: str = "") -> str:
    return f"<speak {attrs}>{body}</speak>" if attrs else f"<speak>{body}</speak>"


def segments(body: str, attrs: str = "") -> list[Segment]:
    """All segments of a document, sentence boundaries dropped."""
    return [
        seg for sentence in ssml.parse(speak(body, attrs)).sentences for seg in sentence.segments
    ]


def texts(body: str) -> list[list[str]]:
    """Each sentence as its segments' texts (breaks and marks as `<...>`)."""
    out = []
    for sentence in ssml.parse(speak(body)).sentences:
        row = []
        for seg in sentence.segments:
            if isinstance(seg, TextSegment):
                row.append(seg.text)
            elif isinstance(seg, Break):
                row.append(f"<break {seg.duration_ms}>")
            else:
                row.append(f"<mark {seg.name}>")
        out.append(row)
    return out


def only_text(body: str, attrs: str = "") -> TextSegment:
    (seg,) = segments(body, attrs)
    assert isinstance(seg, TextSegment)
    return seg


def refused(text: str, limits: SsmlLimits | None = None) -> InvalidSsml:
    with pytest.raises(InvalidSsml) as info:
        ssml.parse(text, limits)
    assert info.value.code == "invalid-ssml"
    assert isinstance(info.value, UtterdError)
    assert f"(line {info.value.line}, column {info.value.column})" in str(info.value)
    return info.value


# -- the root and the document ------------------------------------------------------------


def test_plain_document() -> None:
    doc = ssml.parse(
        f'<?xml version="1.0"?>\n<speak version="1.1" {NS} xml:lang="en-US">Hi.</speak>'
    )
    assert doc == SsmlDocument((Sentence((TextSegment("Hi.", lang="en-US"),)),), ())


def test_speak_without_namespace_and_empty_speak() -> None:
    assert texts("Hello") == [["Hello"]]
    assert ssml.parse("<speak/>").sentences == ()
    assert ssml.parse("<speak>  \n </speak>").sentences == ()


@pytest.mark.parametrize(
    "text",
    ["Hello world", "<p>Hello</p>", '<x:speak xmlns:x="urn:other">Hi</x:speak>', ""],
)
def test_root_must_be_speak(text: str) -> None:
    error = refused(text)
    assert error.line == 1


def test_encoding_declaration_does_not_change_the_text() -> None:
    doc = '<?xml version="1.0" encoding="ISO-8859-1"?><speak>Zoë café</speak>'
    assert texts(doc.removeprefix('<?xml version="1.0" encoding="ISO-8859-1"?><speak>')[:-8]) == [
        ["Zoë café"]
    ]
    assert ssml.parse(doc).sentences[0].segments[0] == TextSegment("Zoë café")


def test_entities_and_character_references() -> None:
    assert texts("Fish &amp; chips &lt;3 &#65;&#x42;") == [["Fish & chips <3 AB"]]


# -- break ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "duration_ms"),
    [
        ('time="500ms"', 500),
        ('time="1.5s"', 1500),
        ('time="2s"', 2000),
        ('time=" 250ms "', 250),
        ('time="0ms"', 0),
        ('time="10s"', 10_000),
        ('strength="none"', 0),
        ('strength="x-weak"', 100),
        ('strength="weak"', 250),
        ('strength="medium"', 400),
        ('strength="strong"', 700),
        ('strength="x-strong"', 1000),
        ("", 400),  # no attribute: medium
        ('time="300ms" strength="x-strong"', 300),  # time wins
    ],
)
def test_break(attrs: str, duration_ms: int) -> None:
    assert segments(f"<break {attrs}/>") == [Break(duration_ms)]
    assert ssml.BREAK_STRENGTH_MS["medium"] == 400


@pytest.mark.parametrize(
    "attrs",
    ['time="fast"', 'time="-1s"', 'time="500"', 'time="11s"', 'time="1e3ms"', 'strength="huge"'],
)
def test_bad_break_values_are_refused_where_they_are(attrs: str) -> None:
    error = refused(f"<speak>\nA <break {attrs}/></speak>")
    assert (error.line, error.column) == (2, 3)
    assert "break" in error.reason


def test_break_must_be_empty() -> None:
    assert segments("<break> </break>") == [Break(400)]
    assert "may contain nothing" in refused("<speak><break>now</break></speak>").reason
    assert "may contain nothing" in refused("<speak><mark name='a'><s/></mark></speak>").reason


# -- say-as, sub, phoneme -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ssml.SAY_AS_INTERPRETATIONS))
def test_say_as(kind: str) -> None:
    seg = only_text(f'<say-as interpret-as="{kind}">12</say-as>')
    assert seg == TextSegment("12", say_as=SayAs(kind))


def test_say_as_date_format_and_detail() -> None:
    seg = only_text('<say-as interpret-as="date" format="dmy" detail="2">4/10/2027</say-as>')
    assert seg.say_as == SayAs("date", "dmy", "2")


def test_say_as_unsupported_values_are_read_as_text_with_a_warning() -> None:
    doc = ssml.parse(
        '<speak><say-as interpret-as="vxml:boolean">true</say-as>'
        '<say-as interpret-as="date" format="qq">1/2</say-as></speak>'
    )
    segs = doc.sentences[0].segments
    assert segs == (TextSegment("true"), TextSegment("1/2", say_as=SayAs("date")))
    assert [(w.kind, w.name) for w in doc.warnings] == [
        ("unsupported-value", "say-as@interpret-as=vxml:boolean"),
        ("unsupported-value", "say-as@format=qq"),
    ]


def test_say_as_is_one_segment_and_never_split() -> None:
    assert texts(
        'Call <say-as interpret-as="telephone">555. 0198</say-as> now. '
        '<say-as interpret-as="digits">12</say-as><say-as interpret-as="digits">34</say-as>'
    ) == [["Call", "555. 0198", "now."], ["12", "34"]]


def test_say_as_errors() -> None:
    assert "interpret-as" in refused("<speak><say-as>12</say-as></speak>").reason
    error = refused('<speak><say-as interpret-as="digits">1<break/>2</say-as></speak>')
    assert "only text" in error.reason
    assert (error.line, error.column) == (1, 39)


def test_sub_speaks_its_alias() -> None:
    assert segments('<sub alias="World Wide Web">WWW</sub>') == [TextSegment("World Wide Web")]
    assert texts('Visit the <sub alias="W3C">World Wide Web Consortium</sub> site.') == [
        ["Visit the", "W3C", "site."]
    ]
    assert "alias" in refused("<speak><sub>WWW</sub></speak>").reason
    assert "only text" in refused('<speak><sub alias="a"><mark name="m"/></sub></speak>').reason


def test_phoneme() -> None:
    seg = only_text('<phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme>')
    assert seg == TextSegment("tomato", phonemes="təˈmɑːtoʊ")
    assert only_text('<phoneme ph="pɪˈkɑːn">pecan</phoneme>').phonemes == "pɪˈkɑːn"
    assert "ph" in refused("<speak><phoneme>x</phoneme></speak>").reason


def test_phoneme_in_another_alphabet_is_read_as_text() -> None:
    doc = ssml.parse('<speak><phoneme alphabet="x-sampa" ph="t@">tomato</phoneme></speak>')
    assert doc.sentences[0].segments == (TextSegment("tomato"),)
    assert doc.warnings[0].name == "phoneme@alphabet=x-sampa"


# -- prosody, emphasis, lang, voice -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("x-slow", 0.5),
        ("slow", 0.75),
        ("medium", 1.0),
        ("fast", 1.5),
        ("x-fast", 2.0),
        ("default", 1.0),
        ("150%", 1.5),
        ("50%", 0.5),
        ("+10%", 1.1),
        ("-20%", 0.8),
        ("1.25", 1.25),
    ],
)
def test_prosody_rate(value: str, rate: float) -> None:
    seg = only_text(f'<prosody rate="{value}">x</prosody>')
    assert seg.prosody.rate_factor == pytest.approx(rate)


@pytest.mark.parametrize(
    ("value", "gain"),
    [
        ("silent", 0.0),
        ("x-soft", 10 ** (-12 / 20)),
        ("soft", 10 ** (-6 / 20)),
        ("medium", 1.0),
        ("loud", 10 ** (6 / 20)),
        ("x-loud", 10 ** (12 / 20)),
        ("+6dB", 10 ** (6 / 20)),
        ("-3.5dB", 10 ** (-3.5 / 20)),
        ("0dB", 1.0),
        ("50%", 0.5),
        ("+50%", 1.5),
        ("-25%", 0.75),
    ],
)
def test_prosody_volume(value: str, gain: float) -> None:
    seg = only_text(f'<prosody volume="{value}">x</prosody>')
    assert seg.prosody.volume_gain == pytest.approx(gain)


@pytest.mark.parametrize(
    ("value", "semitones", "offset_hz"),
    [
        ("x-low", -6.0, 0.0),
        ("low", -3.0, 0.0),
        ("medium", 0.0, 0.0),
        ("high", 3.0, 0.0),
        ("x-high", 6.0, 0.0),
        ("+2st", 2.0, 0.0),
        ("-1.5st", -1.5, 0.0),
        ("+20Hz", 0.0, 20.0),
        ("-10Hz", 0.0, -10.0),
        ("+100%", 12.0, 0.0),  # twice the frequency: an octave
        ("-50%", -12.0, 0.0),
        ("+10%", 12 * math.log2(1.1), 0.0),
    ],
)
def test_prosody_pitch(value: str, semitones: float, offset_hz: float) -> None:
    prosody = only_text(f'<prosody pitch="{value}">x</prosody>').prosody
    assert prosody.pitch_semitones == pytest.approx(semitones)
    assert prosody.pitch_offset_hz == pytest.approx(offset_hz)


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("rate", "+1.5"),  # a signed factor means nothing
        ("rate", "quick"),
        ("rate", "0%"),
        ("rate", "5000%"),
        ("rate", "1" * 400),  # a float that is infinite
        ("volume", "50"),  # a bare number (SSML 1.0's absolute scale) is not taken
        ("volume", "+200dB"),
        ("volume", "+1" + "0" * 400 + "dB"),
        ("volume", "loudest"),
        ("pitch", "200Hz"),  # absolute pitch: no voice knows its base frequency here
        ("pitch", "10%"),  # pitch changes are signed
        ("pitch", "-100%"),
        ("pitch", "+30st"),
        ("pitch", "+1e3Hz"),
    ],
)
def test_bad_prosody_values(attr: str, value: str) -> None:
    error = refused(f'<speak>\n\n    <prosody {attr}="{value}">x</prosody></speak>')
    assert (error.line, error.column) == (3, 5)
    assert attr in error.reason


def test_prosody_composes_and_labels_reset() -> None:
    doc = ssml.parse(
        '<speak><prosody rate="200%" volume="-6dB" pitch="+2st">a '
        '<prosody rate="50%" volume="+6dB" pitch="+20Hz">b '
        '<prosody rate="fast" volume="silent" pitch="low">c</prosody> '
        '<prosody rate="1000%"><prosody rate="1000%">d</prosody></prosody>'
        "</prosody> e</prosody> f</speak>"
    )
    a, b, c, d, e, f = (seg for seg in doc.sentences[0].segments if isinstance(seg, TextSegment))
    assert a.prosody == replace(Prosody(2.0, 2.0, 0.0), volume_gain=a.prosody.volume_gain)
    assert a.prosody.volume_gain == pytest.approx(10 ** (-6 / 20))
    assert b.prosody == replace(Prosody(1.0, 2.0, 20.0), volume_gain=b.prosody.volume_gain)
    assert b.prosody.volume_gain == pytest.approx(1.0)
    assert c.prosody == Prosody(1.5, -3.0, 0.0, 0.0)
    assert d.prosody.rate_factor == ssml.RATE_FACTOR_RANGE[1]  # composition is held in range
    assert e.prosody == a.prosody
    assert f.prosody == Prosody()


def test_prosody_unsupported_attributes_are_ignored_with_a_warning() -> None:
    doc = ssml.parse('<speak><prosody duration="2s" contour="(0%,+20Hz)">x</prosody></speak>')
    assert doc.sentences[0].segments == (TextSegment("x"),)
    assert {w.name for w in doc.warnings} == {"prosody@duration", "prosody@contour"}
    assert {w.kind for w in doc.warnings} == {"ignored-attribute"}


@pytest.mark.parametrize(
    ("attrs", "level"),
    [("", "moderate"), ('level="strong"', "strong"), ('level="none"', "none"),
     ('level="reduced"', "reduced"), ('level="moderate"', "moderate")],
)  # fmt: skip
def test_emphasis(attrs: str, level: str) -> None:
    assert only_text(f"<emphasis {attrs}>x</emphasis>").emphasis == level


def test_emphasis_bad_level() -> None:
    assert "level" in refused('<speak><emphasis level="very">x</emphasis></speak>').reason


def test_lang() -> None:
    segs = segments(
        '<lang xml:lang="fr-FR">Bonjour</lang> <p xml:lang="de">Hallo '
        '<s xml:lang="zh-CN">你好</s></p> <voice name="v" xml:lang="es">Hola</voice> end',
        'xml:lang="en-US"',
    )
    langs = [(seg.text, seg.lang) for seg in segs if isinstance(seg, TextSegment)]
    assert langs == [
        ("Bonjour", "fr-FR"),
        ("Hallo", "de"),
        ("你好", "zh-CN"),
        ("Hola", "es"),
        ("end", "en-US"),
    ]
    assert only_text('<lang xml:lang="">x</lang>', 'xml:lang="en"').lang is None


def test_lang_errors() -> None:
    assert "xml:lang" in refused("<speak><lang>x</lang></speak>").reason
    assert "language tag" in refused('<speak xml:lang="en US!">x</speak>').reason


def test_voice() -> None:
    segs = segments('<voice name="hibari">Hi <emphasis>there</emphasis></voice> joe')
    assert [(s.text, s.voice) for s in segs if isinstance(s, TextSegment)] == [
        ("Hi", "hibari"),
        ("there", "hibari"),
        ("joe", None),
    ]
    assert "name" in refused('<speak><voice name="">x</voice></speak>').reason


def test_voice_by_gender_is_not_supported() -> None:
    doc = ssml.parse('<speak><voice name="a"><voice gender="female">x</voice></voice></speak>')
    assert doc.sentences[0].segments == (TextSegment("x", voice="a"),)
    assert doc.warnings[0].kind == "ignored-attribute"
    assert doc.warnings[0].name == "voice@gender"


def test_inheritance_flows_down_and_stops_at_the_end_tag() -> None:
    segs = segments(
        '<voice name="v"><prosody rate="fast"><lang xml:lang="fr">'
        '<emphasis level="strong"><say-as interpret-as="digits">42</say-as></emphasis>'
        "</lang> mid</prosody> out</voice> plain",
        'xml:lang="en"',
    )
    fast = Prosody(rate_factor=1.5)
    assert segs == [
        TextSegment("42", "fr", "v", fast, "strong", SayAs("digits")),
        TextSegment("mid", "en", "v", fast),
        TextSegment("out", "en", "v"),
        TextSegment("plain", "en"),
    ]


# -- mark ----------------------------------------------------------------------------------


def test_marks_in_order_with_their_place_among_segments() -> None:
    assert texts(
        '<mark name="start"/>Press one <mark name="m1"/>for sales, '
        '<emphasis>two<mark name="m2"/></emphasis> for support.<mark name="end"/>'
    ) == [
        [
            "<mark start>",
            "Press one",
            "<mark m1>",
            "for sales,",
            "two",
            "<mark m2>",
            "for support.",
        ],
        ["<mark end>"],
    ]


def test_marks_and_breaks_between_sentences_go_with_the_next() -> None:
    assert texts('<s>One.</s><break time="1s"/><mark name="two"/><s>Two.</s>') == [
        ["One."],
        ["<break 1000>", "<mark two>", "Two."],
    ]


def test_mark_needs_a_name() -> None:
    assert segments('<mark name="section-2.1"/>') == [Mark("section-2.1")]
    error = refused("<speak>\n<mark/></speak>")
    assert (error.line, error.column, "name" in error.reason) == (2, 1, True)


# -- sentences -----------------------------------------------------------------------------


def test_p_and_s_end_sentences() -> None:
    assert texts("<p><s>One</s><s>Two</s></p><p>Three</p>Four <s>Five</s> six") == [
        ["One"],
        ["Two"],
        ["Three"],
        ["Four"],
        ["Five"],
        ["six"],
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Hello there. How are you? Fine! Good.", ["Hello there.", "How are you?", "Fine!", "Good."]),
        ("It costs $3.25 today. Sat., Oct. 4 at 1:00 AM.", ["It costs $3.25 today.", "Sat., Oct. 4 at 1:00 AM."]),
        ("Call Dr. Smith at Acme Inc. Now.", ["Call Dr. Smith at Acme Inc. Now."]),
        ("See e.g. the U.S. Army. J. Smith said so.", ["See e.g. the U.S. Army.", "J. Smith said so."]),
        ("Wait... What? \"Yes.\" (Sure.) Then 3 left.", ["Wait...", "What?", "\"Yes.\"", "(Sure.)", "Then 3 left."]),
        ("not a cut. here", ["not a cut. here"]),
        ("你好。今天天气很好！再见", ["你好。", "今天天气很好！", "再见"]),
        ("  lots   of\n\n space . ", ["lots of space ."]),
    ],
)  # fmt: skip
def test_plain_text_is_cut_into_sentences(body: str, expected: list[str]) -> None:
    assert texts(body) == [[sentence] for sentence in expected]


def test_no_cuts_inside_s() -> None:
    assert texts("<s>One. Two. <emphasis>Three. Four</emphasis></s>") == [
        ["One. Two.", "Three. Four"]
    ]


def test_a_run_ending_in_punctuation_ends_its_sentence() -> None:
    assert texts("Done. <mark name='m'/>Next <emphasis>one</emphasis>. After") == [
        ["Done."],
        ["<mark m>", "Next", "one", "."],
        ["After"],
    ]
    assert texts("Call Dr.<break/>Smith") == [["Call Dr.", "<break 400>", "Smith"]]


# -- unknown and skipped elements --------------------------------------------------------


def test_unknown_elements_are_spoken_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="utterd.models.text.ssml")
    doc = ssml.parse(
        '<speak>Say <foo bar="1">this <emphasis>too</emphasis></foo> and '
        '<amazon:effect xmlns:amazon="https://amazon.com/ssml">that</amazon:effect> '
        "<foo>again</foo> <audio src='x.wav'>fallback</audio> wh<foo>ole</foo></speak>"
    )
    assert [
        [s.text for s in sen.segments if isinstance(s, TextSegment)] for sen in doc.sentences
    ] == [["Say this", "too", "and that again fallback whole"]]
    assert [(w.kind, w.name, w.line, w.column) for w in doc.warnings] == [
        ("unknown-element", "foo", 1, 12),
        ("unknown-element", "{https://amazon.com/ssml}effect", 1, 65),
        ("unknown-element", "audio", 1, 157),
    ]
    assert "event=ssml-unknown-element name=foo line=1 column=12" in caplog.messages
    assert len(caplog.messages) == 3  # each name once


def test_nested_speak_is_unknown() -> None:
    doc = ssml.parse("<speak><speak>x</speak></speak>")
    assert doc.warnings[0].name == "speak"
    assert doc.sentences[0].segments == (TextSegment("x"),)


def test_metadata_is_not_spoken() -> None:
    doc = ssml.parse(
        '<speak><meta name="a" content="b"/><metadata><rdf>secret<mark name="no"/></rdf>'
        '</metadata><lexicon uri="x.pls"/>Hi <audio src="a.wav"><desc>a bell</desc>ding</audio>'
        "</speak>"
    )
    assert doc.sentences[0].segments == (TextSegment("Hi ding"),)
    assert {w.name for w in doc.warnings} == {"lexicon", "audio"}


def test_warnings_are_bounded() -> None:
    doc = ssml.parse(speak("".join(f"<x{i}>w</x{i}>" for i in range(500))))
    assert len(doc.warnings) == ssml.MAX_WARNINGS


# -- malformed XML ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("<speak>\n  <break time=500ms/>\n</speak>", 2, 15),  # unquoted attribute
        ('<speak>\n<break time="1s" time="2s"/></speak>', 2, 18),  # duplicate attribute
        ("<speak>\n  <p>Hello\n</speak>", 3, 3),  # mismatched end tag
        ("<speak>\n  <p>Hello", 2, 11),  # unclosed: found at close
        ("<speak>Fish & chips</speak>", 1, 14),  # expat points after the &
        ("<speak>&nbsp;</speak>", 1, 8),  # undefined entity (no DTD, no HTML entities)
        ("<speak>x</speak>junk", 1, 17),
        ("<speak>a\x00b</speak>", 1, 9),
        ("<speak>a\ud800b</speak>", 1, 9),  # a lone surrogate
        ('<speak><s:p xmlns:t="u">x</s:p></speak>', 1, 8),  # unbound prefix
    ],
)
def test_malformed_xml_gives_line_and_column(text: str, line: int, column: int) -> None:
    error = refused(text)
    assert (error.line, error.column) == (line, column), error.message


# -- hostile XML -------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE speak [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<speak>&lol9;</speak>"
)

HUGE = SsmlLimits(max_chars=10_000_000)
"""Limits with room for the hostile documents, so that each meets the limit it is aimed at."""


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("billion laughs", BILLION_LAUGHS, "DOCTYPE"),
        (
            "external entity",
            '<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><speak>&xxe;</speak>',
            "DOCTYPE",
        ),
        ("external DTD", '<!DOCTYPE speak SYSTEM "http://example.com/x.dtd"><speak/>', "DOCTYPE"),
        ("any DOCTYPE", "<!DOCTYPE speak><speak>x</speak>", "DOCTYPE"),
        ("parameter entity", '<!DOCTYPE s [<!ENTITY % p SYSTEM "file:///x"> %p;]><speak/>', "DOCTYPE"),
        ("deep nesting", "<speak>" + "<p>" * 10_000 + "x" + "</p>" * 10_000 + "</speak>", "deeper"),
        ("many elements", "<speak>" + "<break/>" * 100_000 + "</speak>", "elements"),
        ("huge attribute", '<speak><mark name="' + "a" * 1_000_000 + '"/></speak>', "attribute"),
        ("huge text", "<speak>" + "a " * 6_000_000 + "</speak>", "longer than"),
    ],
)  # fmt: skip
def test_hostile_xml_is_refused_fast(name: str, text: str, reason: str) -> None:
    for limits in (HUGE, None):
        started = time.perf_counter()
        error = refused(text, limits)
        elapsed_s = time.perf_counter() - started
        assert elapsed_s < 1.0, name
        if limits is HUGE:
            assert reason in error.reason, error.message


def test_hostile_xml_positions() -> None:
    assert refused(BILLION_LAUGHS).line == 2  # the DOCTYPE's line
    deep = refused("<speak>" + "<p>" * 100 + "</speak>")
    assert (deep.line, deep.column) == (1, 8 + 3 * 31)  # the 33rd element
    long_text = refused("<speak>\n" + "a" * 300_000)
    assert (long_text.line, long_text.column) == (2, 200_000 - 8 + 1)


def test_limits_are_settings() -> None:
    limits = SsmlLimits(max_chars=100, max_depth=3, max_elements=5, max_attribute_chars=4)
    ssml.parse("<speak><p><s>x</s></p></speak>", limits)
    assert "deeper than 3" in refused("<speak><p><s><emphasis/></s></p></speak>", limits).reason
    assert "more than 5" in refused("<speak>" + "<break/>" * 5 + "</speak>", limits).reason
    assert "longer than 4" in refused('<speak><mark name="abcde"/></speak>', limits).reason
    assert "100 characters" in refused(speak("x" * 100), limits).reason


# -- any input: only the parser's own error --------------------------------------------------

_FRAGMENTS = [
    "<speak>", "</speak>", "<p>", "</p>", "<s>", "</s>", "<break/>", '<break time="1s"/>',
    '<break strength="x">', '<say-as interpret-as="digits">', "</say-as>", '<sub alias="a">',
    "</sub>", '<prosody rate="150%" volume="-6dB" pitch="+2st">', '<prosody rate="x">',
    "</prosody>", "<emphasis>", "</emphasis>", '<mark name="m"/>', '<lang xml:lang="fr">',
    "</lang>", '<voice name="v">', "</voice>", '<phoneme ph="a">', "</phoneme>", "<foo>",
    "</foo>", "<!DOCTYPE x>", "&amp;", "&lol;", "&#0;", "<!-- c -->", "<![CDATA[x<y]]>",
    "<?pi x?>", ". ", "Dr. ", "。", "<", ">", "&", '"', "'", "\x00", "\ud800", "\n", "Hi",
]  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=8)), max_size=30),
    st.booleans(),
)
def test_any_input_parses_or_raises_invalid_ssml(parts: list[str], wrap: bool) -> None:
    text = "".join(parts)
    if wrap:
        text = speak(text)
    try:
        doc = ssml.parse(text)
    except InvalidSsml as error:
        assert error.line >= 1 and error.column >= 1
        return
    for sentence in doc.sentences:
        assert sentence.segments
        for seg in sentence.segments:
            if isinstance(seg, TextSegment):
                assert seg.text and seg.text == " ".join(seg.text.split())


# -- streaming --------------------------------------------------------------------------------

STREAMED_DOCUMENTS = [
    speak(
        "Hello Dr. Smith. Your balance is <say-as interpret-as='currency'>$12.50</say-as>. "
        '<break time="500ms"/><mark name="m1"/><s>Press <emphasis>one</emphasis>. Now.</s>'
        '<foo>x. Y</foo> 你好。再见！ (Yes.) "No!"   Wait... what? Sat., Oct. 4. End',
        f'{NS} xml:lang="en-US"',
    ),
    speak(
        "<p>One. Two? <prosody rate='fast'>Three! Four</prosody> five. Six</p>"
        "<!-- a comment. X --><p><sub alias='Doctor'>Dr.</sub> Who. &amp; more. 3.25. E.g. yes.</p>"
    ),
]


def stream_in(text: str, cuts: list[int]) -> tuple[list[Sentence], tuple[ssml.SsmlWarning, ...]]:
    stream = SsmlStream()
    sentences: list[Sentence] = []
    start = 0
    for cut in [*cuts, len(text)]:
        sentences.extend(stream.feed(text[start:cut]))
        start = cut
    sentences.extend(stream.close())
    return sentences, stream.warnings


@pytest.mark.parametrize("text", STREAMED_DOCUMENTS)
def test_streaming_gives_the_same_result_for_any_split(text: str) -> None:
    whole = ssml.parse(text)
    for cut in range(len(text) + 1):
        assert stream_in(text, [cut]) == (list(whole.sentences), whole.warnings), cut
    assert stream_in(text, list(range(1, len(text))))[0] == list(whole.sentences)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_streaming_gives_the_same_result_for_any_chunks(cuts: list[int]) -> None:
    text = STREAMED_DOCUMENTS[0]
    assert stream_in(text, sorted(c for c in cuts if c <= len(text)))[0] == list(
        ssml.parse(text).sentences
    )


def test_streaming_hands_on_sentences_as_they_complete() -> None:
    stream = SsmlStream()
    assert stream.feed("<speak>Hello there. How") == [Sentence((TextSegment("Hello there."),))]
    assert stream.feed(" are you? I") == [Sentence((TextSegment("How are you?"),))]
    assert stream.feed("'m fine.</s") == []
    assert stream.feed("peak>") == [Sentence((TextSegment("I'm fine."),))]
    assert stream.close() == []


def test_streaming_a_long_text_in_small_chunks_cuts_where_one_shot_cuts() -> None:
    text = speak("Word " * 30 + ". Next " + "x" * 70 + "!  " * 3 + "Last.")
    for size in (1, 3, 7, 50):
        assert stream_in(text, list(range(size, len(text), size)))[0] == list(
            ssml.parse(text).sentences
        )


@pytest.mark.parametrize("spaces", range(50, 75))
def test_streaming_a_cut_at_the_edge_of_the_rescanned_window(spaces: int) -> None:
    # Fed a character at a time, the `.` of `Inc.` lies at the start of the window rescanned
    # when `Smith` arrives, where the window alone would take `nc.` for a sentence end.
    text = speak("We met Acme Inc." + " " * spaces + "Smith. Later")
    assert stream_in(text, list(range(1, len(text))))[0] == list(ssml.parse(text).sentences)
    assert len(ssml.parse(text).sentences) == 2


def test_streaming_errors() -> None:
    stream = SsmlStream()
    stream.feed("<speak>\nfine\n")
    with pytest.raises(InvalidSsml) as info:
        stream.feed("  <break time='x'/>")
    assert (info.value.line, info.value.column) == (3, 3)
    with pytest.raises(InvalidSsml):
        stream.feed("more")  # the stream stays failed
    with pytest.raises(InvalidSsml) as info:
        stream.close()
    unfinished = SsmlStream()
    unfinished.feed("<speak><p>Hi")
    with pytest.raises(InvalidSsml, match="no element found"):
        unfinished.close()


def test_streaming_size_limit_counts_every_chunk() -> None:
    stream = SsmlStream(SsmlLimits(max_chars=20))
    stream.feed("<speak>")
    stream.feed("a\nbcdefghij")
    with pytest.raises(InvalidSsml) as info:
        stream.feed("klmnop")
    assert (info.value.line, info.value.column) == (2, 12)


def test_closed_stream_refuses_more() -> None:
    stream = SsmlStream()
    assert stream.feed("<speak>x</speak>") == [Sentence((TextSegment("x"),))]
    assert stream.close() == []
    with pytest.raises(InvalidSsml, match="closed"):
        stream.feed("y")


# -- cost ----------------------------------------------------------------------------------------


def _growth(small: Callable[[], object], large: Callable[[], object]) -> float:
    """How many times longer `large` takes than `small` (CPU time, tests/timing.py)."""
    small_s, large_s = growth(small, large, 8, runs=5)
    return large_s / small_s


def _body(n: int) -> str:
    unit = (
        'Press <emphasis>one</emphasis> for sales. <break time="200ms"/><mark name="m"/>'
        '<prosody rate="fast"><say-as interpret-as="digits">42</say-as> Dr. Who? </prosody>'
    )
    return speak(unit * n)


@pytest.mark.parametrize(
    "make",
    [
        _body,
        lambda n: speak("word " * (20 * n)),
        lambda n: speak("." * (20 * n)),
        lambda n: speak(". " * (20 * n) + "x"),
        lambda n: speak("a" * (20 * n) + ". B"),
        lambda n: speak("<foo>" * min(n, 30) + "x " * (20 * n) + "</foo>" * min(n, 30)),
    ],
)
def test_cost_is_linear(make: Callable[[int], str]) -> None:
    small, large = make(250), make(1000)  # about 40 KB and 160 KB for _body
    assert len(large) <= SsmlLimits().max_chars
    ratio = _growth(lambda: ssml.parse(small), lambda: ssml.parse(large))
    assert ratio < 8, ratio  # 4 times the text: generous for a linear parser


def test_streamed_cost_is_linear_in_small_chunks() -> None:
    def streamed(n: int) -> None:
        text = speak("word " * n + "and more")
        stream = SsmlStream()
        for start in range(0, len(text), 4):
            stream.feed(text[start : start + 4])
        stream.close()

    ratio = _growth(lambda: streamed(5_000), lambda: streamed(20_000))
    assert ratio < 8, ratio
