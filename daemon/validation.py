"""Type-hint checks shared by the two edges that validate input against dataclasses: the config
loader (YAML into settings, daemon/config.py) and the request parser (JSON into messages,
daemon/protocol/codec.py).

Each edge keeps its own words for errors and its own extra shapes (paths and sections for the
config, objects and arrays of strings on the wire); what they share is how a hint is read and
how a JSON/YAML scalar is matched against it: booleans are never numbers, an integer is a
number, and null matches only `None`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Union, get_args, get_origin, get_type_hints

__all__ = [
    "NONE_TYPE",
    "FieldSpec",
    "field_specs",
    "is_union",
    "literal_choices",
    "matches_scalar",
    "members",
]

NONE_TYPE: Final = type(None)


def is_union(hint: object) -> bool:
    """`A | B` or `Optional[A]`, in either spelling."""
    origin = get_origin(hint)
    return origin is Union or origin is types.UnionType


def members(hint: object) -> tuple[object, ...]:
    """The members of a union, or the hint itself."""
    return get_args(hint) if is_union(hint) else (hint,)


def literal_choices(hint: object) -> tuple[str, ...]:
    """The values of the first `Literal[...]` in the hint (a union's members included); () if none."""
    for member in members(hint):
        if get_origin(member) is Literal:
            return tuple(str(arg) for arg in get_args(member))
    return ()


def matches_scalar(hint: object, value: object) -> bool | None:
    """Whether `value` has the shape of a scalar hint (None, bool, int, float, str, a string
    Literal); None when `hint` is not one of those, for the caller to judge."""
    if hint is NONE_TYPE:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False if hint in (int, float, str) or get_origin(hint) is Literal else None
    if hint is int:
        return isinstance(value, int)
    if hint is float:
        return isinstance(value, int | float)
    if hint is str or get_origin(hint) is Literal:
        return isinstance(value, str)
    return None


@dataclass(frozen=True)
class FieldSpec:
    """One init field of a dataclass, with its resolved type hint."""

    name: str
    """The field's name, which is the key in the input."""

    hint: Any
    """Its type hint, resolved (`from __future__ import annotations` leaves strings)."""

    required: bool
    """It has no default: the input must give it."""

    metadata: Mapping[str, Any]
    """The field's metadata (ranges, text roles): the edge's own checks read it."""


def field_specs(cls: type[Any]) -> tuple[FieldSpec, ...]:
    """The init fields of dataclass `cls`, in order. get_type_hints is slow: cache the result."""
    hints = get_type_hints(cls)
    return tuple(
        FieldSpec(
            name=f.name,
            hint=hints[f.name],
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            metadata=f.metadata,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )
