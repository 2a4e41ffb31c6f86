"""Rules that rewrite written forms into spoken words, applied in one pass over the text.

Language-independent: a language's normalizer is a list of `Rule`s (a pattern and a function
from its match to the words to say) and a `Rewriter` joins them into one alternation, so the
text is scanned once, left to right; at each position the first rule that matches wins, and
text no rule matches is kept as it is. The cost stays linear in the text length as long as
every pattern is bounded: fixed-width or `{m,n}` quantifiers only, or an unbounded run that
never has to give characters back (e.g. a trailing `\\d+`). Rules look at their surroundings
through `Span.before` and `Span.after`, which read at most `CONTEXT_CHARS` characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

CONTEXT_CHARS: Final = 40
"""Most characters a rule reads before or after its match (keeps lookaround constant-time)."""


@dataclass(frozen=True)
class Span:
    """One rule's match: its groups, numbered from 1 within the rule's own pattern."""

    text: str
    """The whole text being rewritten."""

    start: int
    """Where the match begins in `text`."""

    end: int
    """Where the match ends in `text`."""

    _match: re.Match[str]
    """The match of the joined pattern."""

    _base: int
    """Index of the rule's own outer group in the joined pattern."""

    def group(self, index: int = 0) -> str:
        """The rule's group `index` (0: the whole match); an unmatched group is ``""``."""
        return self._match.group(self._base + index) or ""

    def before(self, chars: int = CONTEXT_CHARS) -> str:
        """Up to `chars` characters before the match."""
        return self.text[max(0, self.start - min(chars, CONTEXT_CHARS)) : self.start]

    def after(self, chars: int = CONTEXT_CHARS) -> str:
        """Up to `chars` characters after the match."""
        return self.text[self.end : self.end + min(chars, CONTEXT_CHARS)]


@dataclass(frozen=True)
class Rule:
    """One written form and how to say it."""

    name: str
    """What the rule reads (e.g. `money`); used in errors and tests."""

    pattern: str
    """A bounded regular expression; its groups must be unnamed and it must not refer back to
    a group by number (the joined pattern numbers groups differently)."""

    speak: Callable[[Span], str]
    """The words to say for a match."""


class Rewriter:
    """A list of rules joined into one pattern and applied in one left-to-right pass."""

    def __init__(self, rules: Sequence[Rule], *, space_words: bool = True, skip: str = "") -> None:
        """`space_words`: put a space between a rule's words and a letter or digit they touch,
        in the text or in the words of the match just before (English `B12` → `B twelve`,
        `5%+1` → `five percent plus one`); languages written without spaces turn it off.
        `skip`: a pattern for positions where no rule can start (English: inside a word and on
        a space); checked once per position before the rules, it makes the pass several times
        faster on plain text."""
        self._rules = tuple(rules)
        self._space_words = space_words
        parts: list[str] = []
        self._bases: dict[str, tuple[Rule, int]] = {}
        group = 1
        for index, rule in enumerate(self._rules):
            try:
                inner = re.compile(rule.pattern).groups
            except re.error as error:
                raise ValueError(f"rule {rule.name!r}: bad pattern: {error}") from error
            parts.append(f"(?P<r{index}>{rule.pattern})")
            self._bases[f"r{index}"] = (rule, group)
            group += inner + 1
        guard = f"(?!{skip})" if skip else ""
        self._pattern = re.compile(guard + "(?:" + "|".join(parts) + ")")

    def apply(self, text: str) -> str:
        """The text with every rule's matches replaced by their words."""
        spaced_until = -1  # end of the last match that already put a space after its words
        word_until = -1  # end of the last match whose words end in a letter or digit

        def replace(match: re.Match[str]) -> str:
            nonlocal spaced_until, word_until
            name = match.lastgroup
            assert name is not None  # every alternative is a named group
            rule, base = self._bases[name]
            span = Span(text, match.start(), match.end(), match, base)
            words = rule.speak(span)
            if self._space_words and words:
                start, end = span.start, span.end
                touches = start == word_until or (start > 0 and text[start - 1].isalnum())
                if touches and start != spaced_until and words[0].isalnum():
                    words = " " + words
                if end < len(text) and text[end].isalnum() and words[-1].isalnum():
                    words += " "
                    spaced_until = end
                word_until = end if words[-1].isalnum() else -1
            return words

        return self._pattern.sub(replace, text)
