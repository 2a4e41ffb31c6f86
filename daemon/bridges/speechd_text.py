"""speech-dispatcher's messages as the SSML documents utterd speaks.

speech-dispatcher hands its modules SSML: a text message from a client in text mode arrives
escaped and wrapped in `<speak>` with speech-dispatcher's own index marks (`<mark
name="__spd_0"/>` after each sentence end); a client in SSML mode has its document passed on as
written, which may lack the `<speak>` root; and a message resumed after a pause is the rest of
the document after a mark, which may close elements it no longer opens. `ssml_document` gives
every message a root; a document utterd still refuses is spoken as its text (`plain_text`), so
speech never stops on a client's markup.

Spelling, punctuation names, characters and keys are rewritten here as SSML utterd already
reads (`<say-as interpret-as="characters">`, words), rather than as new daemon features. Every
function scans its input once with one regular expression of tags and text (no XML parser runs
on the client's markup here: utterd's parser, with its limits, is the one that reads it).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from typing import Final

from utterd.models.text.lexicon_en import SYMBOL_NAMES

_TOKENS: Final = re.compile(r"<[^>]*>|[^<]+|<")
"""A tag (`<...>`, comments and declarations included), a run of text, or a stray `<`."""

_ROOT: Final = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?<speak[\s>/]")
"""A document that already has its `<speak>` root (after an optional XML declaration)."""

_TEXT_ONLY: Final = frozenset({"say-as", "sub", "phoneme"})
"""Elements utterd allows only text in: their text is left as written."""

_ENTITY_OR_CHAR: Final = re.compile(r"&#?\w+;|.", re.DOTALL)

SOME_PUNCTUATION: Final = frozenset("#$%&*+/<=>@\\^_|~")
"""Read by name at punctuation mode `some`: symbols that are not sentence punctuation."""

MOST_SPARED: Final = frozenset(".,?!'’")
"""Left unnamed at punctuation mode `most` (every other punctuation mark and symbol is named)."""

KEY_WORDS: Final = {
    "double-quote": "double quote",
    "kp": "keypad",
    "prior": "page up",
    "next": "page down",
}
"""Key names (docs: SSIP "Key Names") that are not read as written; others are, `-` as a space."""


def escape(text: str) -> str:
    """Text as SSML character data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def speak(body: str) -> str:
    """A document of SSML content."""
    return f"<speak>{body}</speak>"


def ssml_document(data: str) -> str:
    """speech-dispatcher's SSML with a `<speak>` root, added if missing."""
    return data if _ROOT.match(data) else speak(data)


def plain_text(document: str) -> str:
    """What a document says, without markup (entities resolved, white space folded)."""
    text = "".join(t for t in _TOKENS.findall(document) if not t.startswith("<"))
    return " ".join(html.unescape(text).split())


def _tag_name(tag: str) -> str:
    return tag.strip("</>").split(None, 1)[0] if tag.strip("</>") else ""


def _runs(document: str) -> Iterator[tuple[str, bool]]:
    """(token, is free text): free text is character data in the root, outside any element
    that takes only text (say-as, sub, phoneme)."""
    depth = 0
    inside_root = False
    for token in _TOKENS.findall(document):
        if token.startswith("<") and len(token) > 1:
            name = _tag_name(token)
            if name == "speak":
                inside_root = not token.startswith("</")
            elif name in _TEXT_ONLY and not token.endswith("/>"):
                depth += -1 if token.startswith("</") else 1
            yield token, False
        else:
            yield token, inside_root and depth == 0 and not token.isspace()


def _say_characters(text: str) -> str:
    return f'<say-as interpret-as="characters">{text}</say-as>'


def spelled(document: str, capitals: bool) -> str:
    """The document with its free text spelled letter by letter; `capitals`: each capital
    letter is said as "capital X" (speech-dispatcher's capital-letter recognition `spell`)."""
    out: list[str] = []
    for token, free in _runs(document):
        if not free:
            out.append(token)
        elif not capitals:
            out.append(_say_characters(token))
        else:
            start = 0
            for i, char in enumerate(token):
                if char.isupper():
                    if token[start:i].strip():
                        out.append(_say_characters(token[start:i]))
                    out.append(" capital " + _say_characters(char) + " ")
                    start = i + 1
            if token[start:].strip():
                out.append(_say_characters(token[start:]))
    return "".join(out)


def symbol_name(char: str) -> str:
    """How a punctuation mark or symbol is read: its short name, else its Unicode name."""
    return SYMBOL_NAMES.get(char) or unicodedata.name(char, "symbol").lower()


def is_punctuation(char: str) -> bool:
    return len(char) == 1 and unicodedata.category(char)[0] in "PS"


def _named_at(char: str, mode: str) -> bool:
    if not is_punctuation(char):
        return False
    if mode == "some":
        return char in SOME_PUNCTUATION
    if mode == "most":
        return char not in MOST_SPARED
    return mode == "all"


def with_punctuation_names(document: str, mode: str) -> str:
    """The document with punctuation of its free text read by name, as speech-dispatcher's
    punctuation mode asks (`none`, `some`, `most`, `all`); the mark itself stays, for the pause
    it gives."""
    if mode == "none":
        return document
    out: list[str] = []
    for token, free in _runs(document):
        if not free:
            out.append(token)
            continue
        for piece in _ENTITY_OR_CHAR.findall(token):
            char = html.unescape(piece)
            out.append(f" {escape(symbol_name(char))} {piece}" if _named_at(char, mode) else piece)
    return "".join(out)


def _character(char: str, capitals: str) -> str:
    """SSML content saying one character."""
    if char in (" ", "space"):
        return "space"
    if len(char) != 1:
        return escape(char)
    if char.isalnum():
        said = _say_characters(escape(char))
        return "capital " + said if capitals == "spell" and char.isupper() else said
    return escape(symbol_name(char))


def character_document(char: str, capitals: str) -> str:
    """A document saying one character (speech-dispatcher's CHAR); `capitals` is its
    capital-letter recognition (`none`, `spell`, `icon`)."""
    return speak(_character(char, capitals))


def key_document(key: str, capitals: str) -> str:
    """A document saying a key name (speech-dispatcher's KEY: `a`, `shift_A`, `kp-enter`,
    `control_alt_delete`): modifiers first, then the key."""
    if len(key) == 1 or key == "underscore":
        return speak(_character("_" if key == "underscore" else key, capitals))
    *modifiers, name = key.split("_")
    words = [escape(m) for m in modifiers if m]
    prefix, _, rest = name.partition("-")
    if len(name) == 1:
        words.append(_character(name, capitals))
    elif prefix == "kp" and rest:
        words.append(KEY_WORDS["kp"])
        words.append(_character(rest, capitals) if len(rest) == 1 else escape(rest))
    else:
        words.append(escape(KEY_WORDS.get(name, name.replace("-", " "))))
    return speak(" ".join(words))


def silence_document(duration_ms: int) -> str:
    """A document of silence only (a sound icon)."""
    return speak(f'<break time="{duration_ms}ms"/>')
