"""Phrase templates: syntax, errors with positions, pieces, and seamless joins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.daemon.cache.templates import (
    CLAUSE_PAUSE_MS,
    SENTENCE_PAUSE_MS,
    TRIM_MARGIN_MS,
    WORD_PAUSE_MS,
    InvalidSlots,
    InvalidTemplate,
    Piece,
    TemplateSlot,
    TemplateText,
    join_pcm,
    parse_template,
    pause_after,
    silence,
    trim_silence,
)

RATE_HZ = 22050


def pieces(template: str, **slots: str) -> list[tuple[str, bool]]:
    return [(p.text, p.cached) for p in parse_template(template).render(slots)]


# --- syntax ------------------------------------------------------------------------------------


def test_slots_and_escapes() -> None:
    source = "Press {{1}} for {topic}, {{{name}}}."
    tpl = parse_template(source)
    assert tpl.parts == (
        TemplateText("Press {1} for ", 0),
        TemplateSlot("topic", source.index("{topic}")),
        TemplateText(", {", source.index(", {{")),
        TemplateSlot("name", source.index("{name}")),
        TemplateText("}.", source.index("}}.")),
    )
    assert tpl.slot_names == ("topic", "name")


def test_repeated_slot_is_listed_once() -> None:
    tpl = parse_template("{n} is {n}")
    assert tpl.slot_names == ("n",)
    assert pieces("{n} is {n}", n="five") == [("five", False), ("is", True), ("five", False)]


@pytest.mark.parametrize(
    ("template", "position", "fragment"),
    [
        ("Your balance is {amount.", 16, "unclosed '{'"),
        ("Balance {a {b}", 8, "unclosed '{'"),
        ("Balance } left", 8, "unmatched '}'"),
        ("Empty {} slot", 6, "empty slot name"),
        ("Bad {two words}", 5, "invalid slot name 'two words'"),
        ("Format {amount:>10}", 8, "invalid slot name 'amount:>10'"),
        ("Digit {1st}", 7, "invalid slot name '1st'"),
        ("Tail {", 5, "unclosed '{'"),
    ],
)
def test_errors_name_the_position(template: str, position: int, fragment: str) -> None:
    with pytest.raises(InvalidTemplate) as info:
        parse_template(template)
    assert info.value.code == "invalid-template"
    assert info.value.position == position
    assert fragment in info.value.message
    assert f"at character {position}" in info.value.message


def test_too_many_slots() -> None:
    with pytest.raises(InvalidTemplate, match="more than 64 slots"):
        parse_template("{a}" * 65)


_escaped_literal = st.text(max_size=15).map(lambda t: t.replace("{", "{{").replace("}", "}}"))
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_values = st.text(min_size=1, max_size=12).filter(lambda v: v.strip() != "")


@st.composite
def templates(draw: st.DrawFn) -> tuple[str, dict[str, str], str]:
    """A template source, values for its slots, and the text with the values substituted."""
    literals = draw(st.lists(_escaped_literal, min_size=1, max_size=5))
    names = [draw(_names) for _ in literals[1:]]
    values = {n: draw(_values) for n in names}
    source = literals[0] + "".join(f"{{{n}}}{lit}" for n, lit in zip(names, literals[1:]))
    plain = [lit.replace("{{", "{").replace("}}", "}") for lit in literals]
    text = plain[0] + "".join(values[n] + lit for n, lit in zip(names, plain[1:]))
    return source, values, text


@given(templates())
def test_rendering_loses_and_duplicates_nothing(case: tuple[str, dict[str, str], str]) -> None:
    source, values, text = case
    tpl = parse_template(source)
    rendered = tpl.render(values)
    squash = re.compile(r"\s+")
    assert squash.sub("", "".join(p.text for p in rendered)) == squash.sub("", text)
    assert all(p.text and p.text == " ".join(p.text.split()) for p in rendered)
    # Fixed pieces depend on the template only, so pre-warming knows them without values.
    assert tuple(p.text for p in rendered if p.cached) == tpl.fixed_texts()
    # Every slot's value is in a piece that is never cached.
    for piece in rendered:
        assert piece.cached == (piece.slots == ())


@given(st.text(max_size=40))
def test_parser_raises_only_invalid_template(source: str) -> None:
    try:
        tpl = parse_template(source)
    except InvalidTemplate as exc:
        assert 0 <= exc.position <= len(source)
    else:
        assert all(isinstance(p, TemplateText | TemplateSlot) for p in tpl.parts)


@given(st.text(max_size=40).filter(lambda t: "{" not in t and "}" not in t))
def test_brace_free_text_is_one_cached_piece(text: str) -> None:
    rendered = parse_template(text).render({})
    if text.strip():
        assert rendered == (Piece(" ".join(text.split()), cached=True),)
    else:
        assert rendered == ()


# --- pieces ------------------------------------------------------------------------------------


def test_ivr_examples() -> None:
    assert pieces("Your balance is {amount}.", amount="42 dollars") == [
        ("Your balance is", True),
        ("42 dollars.", False),
    ]
    # Closing punctuation goes with the slot; an all-punctuation literal joins two slots.
    assert pieces(
        "{name}, your balance is {dollars}.{cents} dollars. Press 1 to repeat.",
        name="Ann",
        dollars="12",
        cents="50",
    ) == [
        ("Ann,", False),
        ("your balance is", True),
        ("12.50", False),
        ("dollars. Press 1 to repeat.", True),
    ]
    assert pieces("Hello, {name}!", name="Bob") == [("Hello,", True), ("Bob!", False)]
    assert pieces('"{quote}" was said', quote="hi") == [('"hi"', False), ("was said", True)]
    assert pieces("?") == [("?", True)]


def test_slot_value_errors() -> None:
    tpl = parse_template("Your {what} is {amount}.")
    with pytest.raises(InvalidSlots, match="no value for amount") as info:
        tpl.render({"what": "balance"})
    assert info.value.code == "invalid-slots"
    with pytest.raises(InvalidSlots, match="has no slot amout"):
        tpl.render({"what": "balance", "amount": "1", "amout": "2"})
    with pytest.raises(InvalidSlots, match="'amount' is empty"):
        tpl.render({"what": "balance", "amount": "  "})
    with pytest.raises(InvalidSlots, match="must be a string"):
        tpl.render({"what": "balance", "amount": 42})


def test_slot_values_are_not_parsed() -> None:
    assert pieces("Say {x}.", x="{not a slot}") == [("Say", True), ("{not a slot}.", False)]


def test_pause_after_follows_punctuation() -> None:
    assert pause_after("Your balance is") == WORD_PAUSE_MS
    assert pause_after("Hello,") == CLAUSE_PAUSE_MS
    assert pause_after("42 dollars.") == SENTENCE_PAUSE_MS
    assert pause_after('He said "stop."') == SENTENCE_PAUSE_MS


# --- joins -------------------------------------------------------------------------------------


def jumps(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    return np.abs(np.diff(pcm.astype(np.float64)))


def seam_and_typical_jump(
    joined: npt.NDArray[np.int16], starts: tuple[int, ...], gaps: list[int], loud: float
) -> tuple[float, float]:
    """Largest jump near any join, and the 99th percentile jump of the loud (speech) parts."""
    d = jumps(joined)
    near = np.zeros(len(d), dtype=bool)
    window = round(0.03 * RATE_HZ)  # covers the fade and the kept margin on each side
    for start, gap in zip(starts[1:], gaps):
        near[max(0, start - gap - window) : start + window] = True
    speech = np.abs(joined[:-1].astype(np.float64)) > loud
    return float(d[near].max()), float(np.percentile(d[speech & ~near], 99))


def tone(duration_s: float, freq_hz: float, amplitude: float, phase: float) -> npt.NDArray[Any]:
    t = np.arange(round(duration_s * RATE_HZ)) / RATE_HZ
    return amplitude * np.sin(2 * np.pi * freq_hz * t + phase)


def worst_case_pieces() -> list[npt.NDArray[np.int16]]:
    """Speech-like bursts cut off at full amplitude, with and without noisy padding."""
    rng = np.random.default_rng(0)

    def pad(duration_s: float) -> npt.NDArray[Any]:  # the engine's quiet padding
        return rng.normal(0, 3, round(duration_s * RATE_HZ))

    first = np.concatenate([pad(0.1), tone(0.40114, 220, 12000, 0.0)])  # ends near a peak
    second = tone(0.3, 330, 15000, np.pi / 2)  # starts at its peak, no padding at all
    third = np.concatenate([pad(0.2), tone(0.3, 180, 9000, 0.0), pad(0.25)])
    return [np.clip(np.rint(p), -32767, 32767).astype(np.int16) for p in (first, second, third)]


def test_naive_concatenation_would_click() -> None:
    # The measure must be able to see a seam, or the next test would prove nothing.
    raw = worst_case_pieces()
    joined = np.concatenate(raw)
    starts = (0, len(raw[0]), len(raw[0]) + len(raw[1]))
    seam, typical = seam_and_typical_jump(joined, starts, [0, 0], loud=500)
    assert seam > 5 * typical


def test_join_has_no_discontinuity_spike() -> None:
    raw = worst_case_pieces()
    pauses = [WORD_PAUSE_MS, CLAUSE_PAUSE_MS]
    joined, starts = join_pcm(raw, RATE_HZ, pauses)
    gaps = [round(pause_ms * RATE_HZ / 1000) for pause_ms in pauses]
    seam, typical = seam_and_typical_jump(joined, starts, gaps, loud=500)
    # A smooth ramp adds at most its own slope to the tone's: under the typical jump x1.5.
    assert seam <= 1.5 * typical, (seam, typical)
    # The pause is digital silence of the requested length at each join.
    for start, gap in zip(starts[1:], gaps):
        assert not joined[start - gap : start].any()
    # Fixed gain: the loudest sample of each piece is unchanged.
    assert np.abs(joined).max() == max(int(np.abs(p).max()) for p in raw)


def test_trim_keeps_a_margin_and_outer_edges() -> None:
    burst = tone(0.2, 200, 8000, 0.0)
    pcm = np.concatenate([np.zeros(RATE_HZ // 2), burst, np.zeros(RATE_HZ // 2)]).astype(np.int16)
    trimmed = trim_silence(pcm, RATE_HZ)
    margin = round(TRIM_MARGIN_MS * RATE_HZ / 1000)
    assert len(burst) <= len(trimmed) <= len(burst) + 2 * margin + 2 * round(0.005 * RATE_HZ)
    assert len(trim_silence(pcm, RATE_HZ, start=False)) > len(pcm) // 2
    assert trim_silence(np.zeros(1000, np.int16), RATE_HZ).size == 0
    joined, _ = join_pcm([pcm], RATE_HZ, [])
    assert np.array_equal(joined, pcm)  # a single piece is left as the engine made it


def test_silence_length() -> None:
    assert len(silence(250.0, RATE_HZ)) == round(0.25 * RATE_HZ)


# --- with the real voice ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def heart() -> Iterator[Any]:
    pytest.importorskip("hibari")
    from utterd.models import EngineSettings
    from utterd.models.hibari.family import HibariFamily

    family = HibariFamily()
    infos = {i.voice_id: i for i in family.discover([])}
    if "hibari-heart" not in infos:
        pytest.skip("the bundled hibari heart voice is not installed")
    voice = family.load(infos["hibari-heart"], EngineSettings(threads=1))
    yield voice
    voice.close()


def test_real_voice_template_join(heart: Any) -> None:
    from utterd.models.voice import CancelToken, SynthesisParams, float_to_pcm16

    rendered = parse_template("Your balance is {amount}. Goodbye.").render({"amount": "42 dollars"})
    assert [p.text for p in rendered] == ["Your balance is", "42 dollars.", "Goodbye."]
    rate = heart.info.sample_rate_hz
    audio = []
    for piece in rendered:
        chunks = heart.stream(piece.text, SynthesisParams(deterministic=True), CancelToken())
        audio.append(np.concatenate([float_to_pcm16(c.samples) for c in chunks]))
    pauses = [pause_after(p.text) for p in rendered[:-1]]
    joined, starts = join_pcm(audio, rate, pauses)
    d = jumps(joined)
    typical = float(np.percentile(d[np.abs(joined[:-1]) > 300], 99))
    for start, pause_ms in zip(starts[1:], pauses):
        gap = round(pause_ms * rate / 1000)
        margin = round((TRIM_MARGIN_MS + 10) * rate / 1000)
        assert d[start - gap - margin : start + margin].max() <= typical
        # The engine's own padding is gone: the quiet stretch is about the chosen pause.
        quiet = np.abs(joined[start - gap - 4 * margin : start + 4 * margin]) < 30
        longest = max(len(run) for run in "".join("1" if q else "0" for q in quiet).split("0"))
        assert gap <= longest <= gap + 3 * margin
