"""One explicit table from request type to handler, typed by message class: registering a
handler for `Speak` type-checks that it takes a `Speak`, and `dispatch` hands each request's
message to the handler registered for its class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from utterd.daemon.protocol.messages import REQUEST_TYPES, Message, Request

__all__ = ["HandlerTable"]

M = TypeVar("M", bound=Message)


class HandlerTable:
    """Request handlers by message class. A handler is called as `handler(envelope, request,
    message)`, `message` being `request.message` with its own type."""

    def __init__(self) -> None:
        self._handlers: dict[type[object], Callable[[list[bytes], Request, Any], None]] = {}

    def register(
        self, cls: type[M], handler: Callable[[list[bytes], Request, M], None]
    ) -> HandlerTable:
        """Handle requests whose message is a `cls` (exactly) with `handler`; returns self."""
        if cls in self._handlers:
            raise ValueError(f"{cls.__name__} already has a handler")
        self._handlers[cls] = handler
        return self

    def missing(self) -> list[str]:
        """Request types (names) that have no handler."""
        return [name for name, cls in REQUEST_TYPES.items() if cls not in self._handlers]

    def dispatch(self, envelope: list[bytes], request: Request) -> None:
        """Call the handler of the request's message class (KeyError if there is none)."""
        self._handlers[type(request.message)](envelope, request, request.message)
