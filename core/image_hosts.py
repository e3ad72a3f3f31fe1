"""Which hosts an answer's image links may reach: public addresses only, unless allowed.

A GPT's answer can be steered by whoever talks to it, so its image links must not make the bot
fetch from the operator's own network (a local service, cloud metadata at 169.254.169.254) and
post what it got. Names are checked where they are resolved, by the connection's resolver
(`PublicAddressesOnly`), so every connection of every redirect hop is checked and a name cannot
resolve to a public address for a check and a private one for the connection (DNS rebinding).
aiohttp never resolves an IP literal, so the fetcher checks literal hosts itself
(`literal_host_is_private`) on the link and on each redirect.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class PrivateAddress(OSError):
    """A host that is, or resolves only to, a non-public address."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} is not a public address")
        self.host = host


def is_public(address: str) -> bool:
    """Whether `address` (an IP address, IPv6 possibly with a %zone) is on the public internet:
    not loopback, private, link-local, unique-local, multicast, reserved or unspecified,
    IPv4-mapped IPv6 judged as the IPv4 address it carries."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_private
    )


def literal_host_is_private(host: str | None) -> bool:
    """Whether a URL's `host` is an IP literal that is not public (names are the resolver's)."""
    try:
        return host is not None and not is_public(host.strip("[]"))
    except ValueError:
        return False  # a name


class PublicAddressesOnly(AbstractResolver):
    """A resolver keeping only the public addresses `inner` gives for a name; a name with none
    raises `PrivateAddress` (aiohttp hands it on as a ClientConnectorError's `os_error`)."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = [
            address
            for address in await self.inner.resolve(host, port, family)
            if is_public(address["host"])
        ]
        if not addresses:
            raise PrivateAddress(host)
        return addresses

    async def close(self) -> None:
        await self.inner.close()
