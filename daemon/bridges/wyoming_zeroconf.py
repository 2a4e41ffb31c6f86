"""Announce the Wyoming server over mDNS, as Home Assistant discovers Wyoming services.

Optional (`wyoming.zeroconf`, off by default) and through the `zeroconf` package (LGPL-2.1,
the extra `utterd[zeroconf]`), imported only when asked for: without it the bridge logs why and
serves unannounced; a failure to announce never stops the server either. The service is
`_wyoming._tcp.local.`, named `wyoming.zeroconf_name` (default `utterd-<host name>`), at the
listening address, or, for 0.0.0.0, the address this machine reaches the mDNS group from.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_wyoming._tcp.local."
"""The DNS-SD service type Home Assistant browses for."""

MDNS_GROUP: Final = "224.0.0.251"
"""mDNS's IPv4 group: a UDP socket `connect`ed to it (nothing is sent) names the interface."""


class Announcement(Protocol):
    """A registered service, withdrawn at shutdown."""

    async def withdraw(self) -> None: ...


class _Registered:
    def __init__(self, zeroconf: Any, info: Any) -> None:
        self._zeroconf = zeroconf
        self._info = info

    async def withdraw(self) -> None:
        try:
            await self._zeroconf.async_unregister_service(self._info)
        finally:
            await self._zeroconf.async_close()


def service_name(name: str | None) -> str:
    """The instance name announced: the configured one, else `utterd-<host name>`."""
    return name or f"utterd-{socket.gethostname().split('.')[0]}"


def announced_address(host: str) -> str:
    """The IPv4 address to announce for a server listening on `host`."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return socket.gethostbyname(host)  # a configured name: what it stands for now
    if not address.is_unspecified:
        return str(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((MDNS_GROUP, 5353))  # picks the route; UDP connect sends nothing
        return str(probe.getsockname()[0])


async def announce(
    name: str | None,
    host: str,
    port: int,
    register: Callable[[str, str, str, int], Awaitable[Announcement]] | None = None,
) -> tuple[Announcement | None, str]:
    """Register the service; (its announcement or None, a state for `describe`). `register`
    stands in for the `zeroconf` package in tests."""
    try:
        if register is None:
            register = _zeroconf_register()
        address = announced_address(host)
        announcement = await register(SERVICE_TYPE, service_name(name), address, port)
    except ImportError:
        _LOGGER.warning(
            "event=wyoming-zeroconf-unavailable reason=%r",
            "the zeroconf package is not installed: pip install 'utterd[zeroconf]'",
        )
        return None, "unavailable: the zeroconf package is not installed"
    except Exception as exc:  # noqa: BLE001  # a convenience: the server serves without it
        _LOGGER.warning("event=wyoming-zeroconf-failed error=%r", f"{type(exc).__name__}: {exc}")
        return None, f"failed: {type(exc).__name__}: {exc}"
    _LOGGER.info(
        "event=wyoming-zeroconf name=%s address=%s port=%d", service_name(name), address, port
    )
    return announcement, f"announced as {service_name(name)} at {address}:{port}"


def _zeroconf_register() -> Callable[[str, str, str, int], Awaitable[Announcement]]:
    """The `zeroconf` package's registration; ImportError when it is not installed."""
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    async def register(service: str, name: str, address: str, port: int) -> Announcement:
        info = AsyncServiceInfo(
            service,
            f"{name}.{service}",
            addresses=[socket.inet_aton(address)],
            port=port,
        )
        zeroconf = AsyncZeroconf()
        try:
            await zeroconf.async_register_service(info)
        except BaseException:
            await zeroconf.async_close()
            raise
        return _Registered(zeroconf, info)

    return register
