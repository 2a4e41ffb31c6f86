"""The text front end's entry: what a voice family is handed for a request's text.

Every family gets text through here, whatever the request's format:

- **Plain text** becomes the words to say (`spoken`): for an English voice, utterd's own
  normalizer (`normalize_en`) rewrites numbers, money, dates, codes and symbols as words.
  The Chinese family reads its text with `normalize_zh` itself (its `front_end_version` names
  that normalizer's version for the phrase cache), so Chinese text passes here as written.
  A family named in `FrontEndOptions.own_normalizer` keeps its own normalizer instead and gets
  the text as written (the choice is measured per family: docs/benchmarks.md, "Text front end").
- **Mixed languages**: a plain text holding a Han character (`has_han`, one regex scan: the
  only cost an English text pays) is handed on as sentences (`plain_sentences`), so that the
  daemon's renderer splits each sentence into language spans (`models/text/lang_spans.py`)
  and has each said by a voice of its language (daemon/speech/render.py). A number next to
  Chinese goes with the Chinese span, so the Chinese voice reads it in Chinese.
- **SSML** is parsed into sentences of segments (`ssml.py`, `segments.py`); the daemon walks
  them (breaks, marks, prosody, voice and language switches) and hands each text segment's
  words here (`spoken_segment`): a `<say-as>` hint is read by `say_as_en` for every family,
  since no family's own normalizer knows SSML hints; `<sub>` arrives as its alias.
- **The user lexicon**: words with a spoken form go to the normalizer (`EnglishOptions.lexicon`);
  words with phonemes (`FrontEndOptions.phoneme_lexicon`) turn a plain text that holds one into
  sentences of segments (`lexicon_sentences`), spoken like SSML with a `<phoneme>` per word.
- Languages without a normalizer here pass through unchanged.

`stamp` names everything here that changes what is said (normalizer version and options), for
the phrase-cache key: a new lexicon entry or date order never replays old audio.

Every step is linear in the text (the normalizer's rules are bounded; see `rewrite.py`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from utterd.models.text import guard, normalize_en, sentences
from utterd.models.text.normalize_en import DEFAULT_OPTIONS, EnglishOptions
from utterd.models.text.say_as_en import say_as
from utterd.models.text.segments import Sentence, TextSegment

ENGLISH: Final = "en"
"""Primary language subtag of the languages `normalize_en` reads."""

CHINESE: Final = "zh"
"""Primary language subtag of Chinese (Mandarin) voices."""

_HAN: Final = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
"""A Han character (CJK ideographs, their extensions and compatibility forms)."""


@dataclass(frozen=True)
class FrontEndOptions:
    """How the front end treats text, from config (`text:`)."""

    english: EnglishOptions = DEFAULT_OPTIONS
    """Date order, emoji policy and the user lexicon for English text."""

    own_normalizer: frozenset[str] = field(default_factory=frozenset)
    """Families (`VoiceFamily.name`) that read plain text with their own normalizer instead of
    utterd's; every other family gets utterd's normalized words."""

    phoneme_lexicon: Mapping[str, str] = field(default_factory=dict)
    """The user's words said as phonemes: word → IPA (config `text.lexicon` entries written
    `/.../`). A plain text holding one is spoken like SSML with a `<phoneme>` for each
    (`lexicon_sentences`); a voice that takes no phonemes reads the word."""

    def __post_init__(self) -> None:
        for word, ipa in self.phoneme_lexicon.items():
            if not word.strip() or not ipa.strip():
                raise ValueError(f"lexicon: {word!r}: {ipa!r} is not a word and its phonemes")
        object.__setattr__(self, "phoneme_lexicon", MappingProxyType(dict(self.phoneme_lexicon)))

    def normalizes(self, family: str, language: str) -> bool:
        """Whether plain text for a voice of `family` speaking `language` is normalized here."""
        return family not in self.own_normalizer and primary_language(language) == ENGLISH

    def stamp(self, family: str, language: str) -> str:
        """What the phrase-cache key must name about this front end for such a voice: the
        normalizer's version and every option that changes what is said; empty when the
        family's own normalizer reads the text (its version is the family's own stamp)."""
        if not self.normalizes(family, language):
            return ""
        english = self.english
        lexicon = json.dumps(
            [sorted(english.lexicon.items()), sorted(self.phoneme_lexicon.items())],
            ensure_ascii=False,
        )
        digest = hashlib.sha256(lexicon.encode("utf-8")).hexdigest()[:16]
        return f"en{normalize_en.NORMALIZER_VERSION}-{english.date_order}-{english.emoji}-{digest}"


DEFAULT_FRONT_END: Final = FrontEndOptions()


def warm_up(options: FrontEndOptions) -> None:
    """Compile the normalizer's rules for these options now (about 50 ms), so the first
    request does not wait for it."""
    normalize_en.normalize("Warm up: $1.00 on 10/04 at 1:00 PM, call 555-0198.", options.english)


def primary_language(tag: str) -> str:
    """`en-US` → `en`; `EN_gb` → `en`."""
    return tag.replace("_", "-").split("-", 1)[0].lower()


def spoken(text: str, family: str, language: str, options: FrontEndOptions) -> str:
    """The plain text a voice of `family` speaking `language` is handed for `text`."""
    if options.normalizes(family, language):
        return normalize_en.normalize(text, options.english)
    return text


_LATIN_LETTER: Final = re.compile(r"[A-Za-z]")
"""A letter a Chinese voice hands to an English one."""


def has_han(text: str) -> bool:
    """Whether `text` holds a Han character (one scan)."""
    return _HAN.search(text) is not None


GROUP_CHARS: Final = 400
"""A plain text is normalized in groups of whole sentences of about this many characters
(`spoken_groups`): a typical prompt is one group, and a long text's first audio waits for
its first group only."""


MAX_GROUP_CHARS: Final = 2_000
"""Longest group: a longer run without a sentence end is cut at a clause mark or a space (the
voice then hears the cut as the end of a sentence: only a pathological text has one)."""


def spoken_groups(
    text: str, family: str, language: str, options: FrontEndOptions
) -> Iterator[tuple[str, str]]:
    """`text` as (written, spoken) groups of whole sentences, each `spoken` made only when it
    is asked for. A text the front end does not normalize is one group, as written."""
    if not options.normalizes(family, language):
        yield text, text
        return
    cuts, _ = sentences.sentence_cuts(text, at_end=False)
    start = 0
    for cut in [*cuts, len(text)]:
        if cut - start >= GROUP_CHARS or cut == len(text):
            written = text[start:cut]
            start = cut
            # A run with no sentence end is cut at a clause mark or space, so that its first
            # audio does not wait for its whole normalization either.
            parts = (
                guard.split(written, MAX_GROUP_CHARS)
                if len(written) > MAX_GROUP_CHARS
                else [written]
            )
            for part in parts:
                if part.strip():
                    yield part, normalize_en.normalize(part, options.english)


def spoken_segment(
    segment: TextSegment, family: str, language: str, options: FrontEndOptions
) -> str:
    """The words for one SSML text segment (`language`: the segment's language in force, or
    the voice's): its `<say-as>` reading, else `spoken`."""
    if segment.say_as is not None and primary_language(language) == ENGLISH:
        return say_as(segment.text, segment.say_as, options.english)
    return spoken(segment.text, family, language, options)


def plain_sentences(
    text: str, options: FrontEndOptions, language: str = ""
) -> tuple[Sentence, ...] | None:
    """A plain text as sentences of segments when it must be rendered like SSML: when it holds
    a word of the phoneme lexicon (`lexicon_sentences`), a Han character, or, for a voice of
    `language` Chinese, a Latin letter (each sentence one segment, which the renderer splits
    into language spans); None otherwise, for the plain path. Linear: a regex scan, and for
    such a text one sentence pass."""
    document = lexicon_sentences(text, options)
    if document is not None:
        return document
    foreign = has_han(text) or (
        primary_language(language) == CHINESE and _LATIN_LETTER.search(text) is not None
    )
    if not foreign:
        return None
    cuts, _ = sentences.sentence_cuts(text, at_end=False)
    out: list[Sentence] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        said = " ".join(text[start:end].split())
        if said:
            out.append(Sentence((TextSegment(said),)))
    return tuple(out)


def lexicon_sentences(text: str, options: FrontEndOptions) -> tuple[Sentence, ...] | None:
    """A plain text as sentences of segments when it holds a word of the phoneme lexicon (that
    word a `<phoneme>` segment, the text around it ordinary segments); None when it holds none,
    so that the text takes the plain path. Linear: one regex pass and one sentence pass."""
    if not options.phoneme_lexicon:
        return None
    pattern = _lexicon_pattern(tuple(options.phoneme_lexicon))
    if pattern.search(text) is None:
        return None
    cuts, _ = sentences.sentence_cuts(text, at_end=False)
    out: list[Sentence] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        segments: list[TextSegment] = []
        position = start
        for match in pattern.finditer(text, start, end):
            before = " ".join(text[position : match.start()].split())
            if before:
                segments.append(TextSegment(before))
            word = match.group()
            ipa = _lexicon_entry(word, options.phoneme_lexicon)
            segments.append(TextSegment(word, phonemes=ipa))
            position = match.end()
        rest = " ".join(text[position:end].split())
        if rest:
            segments.append(TextSegment(rest))
        if segments:
            out.append(Sentence(tuple(segments)))
    return tuple(out)


def _lexicon_entry(word: str, lexicon: Mapping[str, str]) -> str:
    """The word's IPA: the exact spelling first, then ignoring case."""
    if word in lexicon:
        return lexicon[word]
    folded = word.casefold()
    return next(ipa for key, ipa in lexicon.items() if key.casefold() == folded)


@lru_cache(maxsize=8)
def _lexicon_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words of the lexicon, longest first, ignoring case."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
