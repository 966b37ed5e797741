"""SSRF guard for admin-supplied URLs (news sources and webhooks).

The check runs on the *resolved* addresses, so decimal, hex, IPv4-mapped and DNS-based
spellings of a private address are all refused (delivery-standards §4.1, SEC-01).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from service.exceptions import UnsafeURLError

__all__ = ["Resolver", "check_url", "ip_refusal_reason"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``async (host, port) -> [ip literal, ...]``; injectable so tests need no DNS."""

_ALLOWED_SCHEMES = frozenset({"http", "https"})

# Explicit deny list: ``ipaddress``'s ``is_global`` shifts between Python versions, so the
# ranges from delivery-standards §4.1 are spelled out and checked as well.
_DENIED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified address"),
        ("10.0.0.0/8", "private address"),
        ("100.64.0.0/10", "carrier-grade NAT address"),
        ("127.0.0.0/8", "loopback address"),
        ("169.254.0.0/16", "link-local or metadata address"),
        ("172.16.0.0/12", "private address"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation address"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("198.51.100.0/24", "documentation address"),
        ("203.0.113.0/24", "documentation address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved address"),
        ("255.255.255.255/32", "broadcast address"),
        ("::/128", "unspecified address"),
        ("::1/128", "loopback address"),
        ("64:ff9b::/96", "NAT64 address"),
        ("64:ff9b:1::/48", "NAT64 address"),
        ("100::/64", "discard-only address"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation address"),
        ("2002::/16", "6to4 address"),
        ("fc00::/7", "unique local address"),
        ("fe80::/10", "link-local address"),
        ("fec0::/10", "site-local address"),
        ("ff00::/8", "multicast address"),
    )
)
_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def _unwrap(ip: IPAddress) -> IPAddress:
    """Return the IPv4 address embedded in mapped, 6to4 or NAT64 IPv6 forms, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        packed = ip.packed
        if packed[:12] == ipaddress.ip_address("64:ff9b::").packed[:12]:
            return ipaddress.IPv4Address(packed[12:])
        # IPv4-compatible addresses (::a.b.c.d) are deprecated but still routable on some stacks.
        if packed[:12] == bytes(12) and int(ip) > 1:
            return ipaddress.IPv4Address(packed[12:])
    return ip


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _LOOPBACK_V4
    return ip == _LOOPBACK_V6


def ip_refusal_reason(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Return why ``ip`` must not be contacted, or ``None`` when it is a public address.

    Args:
        ip: the resolved address.
        allow_loopback: accept ``127.0.0.0/8`` and ``::1`` (tests and local sources only).
    """
    inner = _unwrap(ip)
    for candidate in (inner, ip) if inner != ip else (ip,):
        if allow_loopback and _is_loopback(candidate):
            return None
        for network, reason in _DENIED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return reason
        if (
            candidate.is_private
            or candidate.is_reserved
            or candidate.is_multicast
            or candidate.is_link_local
            or candidate.is_unspecified
            or candidate.is_loopback
        ):
            return "non-public address"
    return None


async def _default_resolver(host: str, port: int) -> Sequence[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, *, allow_loopback: bool, resolver: Resolver | None = None) -> None:
    """Refuse URLs that could reach internal services.

    Args:
        url: the absolute URL about to be fetched (or stored as a webhook target).
        allow_loopback: accept loopback addresses; only tests and local development set it.
        resolver: ``async (host, port) -> ip literals``; defaults to the event loop's
            ``getaddrinfo``.

    Raises:
        UnsafeURLError: the scheme is not http(s), the URL carries credentials or no host, the
            host does not resolve, or any resolved address is not public.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(url, "malformed URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise UnsafeURLError(url, f"scheme {scheme or '(none)'!r} is not allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError(url, "credentials in URLs are not allowed")
    host = parts.hostname
    if not host:
        raise UnsafeURLError(url, "URL has no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    else:
        try:
            addresses = await (resolver or _default_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURLError(url, f"host {host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeURLError(url, f"host {host!r} does not resolve")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError as exc:
            raise UnsafeURLError(url, f"unparseable address {address!r}") from exc
        reason = ip_refusal_reason(ip, allow_loopback=allow_loopback)
        if reason is not None:
            raise UnsafeURLError(url, f"{host} resolves to a {reason} ({ip})")
