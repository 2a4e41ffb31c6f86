"""What replies and events have in common: a frozen dataclass whose fields, in order, are the
`data` object on the wire.

A field's metadata can say `OMIT_IF_NONE` (the key is left out when the value is None, for the
optional details of an `error`) or `SPREAD` (a mapping whose keys go into `data` itself, for the
sections of `info` that the service adds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Final

__all__ = ["OMIT_IF_NONE", "SPREAD", "WireData"]

OMIT_IF_NONE: Final = "omit_if_none"
"""Field-metadata key: leave the key out of `data` when the value is None."""

SPREAD: Final = "spread"
"""Field-metadata key: the field is a mapping whose items go into `data` at its place."""


class WireData:
    """Base of the reply and event dataclasses: `TYPE` is the `type` on the wire, the fields are
    its `data`."""

    TYPE: ClassVar[str]
    """The reply or event kind, as the header's `type` (and an event's topic) carries it."""

    def data(self) -> dict[str, object]:
        """The `data` object: the fields in declaration order (the order on the wire)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get(SPREAD):
                assert isinstance(value, Mapping)
                out.update(value)
            elif value is not None or not f.metadata.get(OMIT_IF_NONE):
                out[f.name] = value
        return out
