"""SSRF guard for admin-supplied URLs (news sources and webhooks).

The check runs on the *resolved* addresses, so decimal, hex, IPv4-mapped and DNS-based
spellings of a private address are all refused (delivery-standards §4.1, SEC-01).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import select
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import httpcore
import httpx

from service.exceptions import UnsafeURLError

__all__ = [
    "GuardedBackend",
    "Resolver",
    "check_url",
    "guarded_transport",
    "ip_refusal_reason",
    "send_on_transport",
]

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
    return _refusal_reason(ip, allow_loopback)


@functools.lru_cache(maxsize=4096)
def _refusal_reason(ip: IPAddress, allow_loopback: bool) -> str | None:
    # A pure function of the address, asked again for every request to an endpoint.
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


_INET_ATON_FORM = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


@functools.lru_cache(maxsize=1024)
def _literal_address(host: str) -> IPAddress | None:
    """Return ``host`` as an address when it is one, in any spelling the C resolver accepts.

    ``inet_aton`` forms (``2130706433``, ``0x7f000001``, ``127.1``) are checked here rather
    than left to the resolver, so an injected resolver cannot hide them.
    """
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if _INET_ATON_FORM.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
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
    literal = _literal_address(host)
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


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve once, refuse non-public addresses, connect to the address that was checked.

    :func:`check_url` runs before a request; this backend repeats the check at connect time
    and pins the connection to the validated IP, so a name that resolves to a public address
    for the check and to 127.0.0.1 a moment later (DNS rebinding) still cannot reach inside.
    TLS keeps using the URL's host name for SNI and certificate checks (httpcore passes it
    separately). delivery-standards §4.1 SEC-02.
    """

    def __init__(self, *, allow_loopback: bool, resolver: Resolver | None = None) -> None:
        """Create a backend.

        Args:
            allow_loopback: accept loopback addresses (tests and local sources only).
            resolver: DNS override (tests); the event loop's ``getaddrinfo`` by default.
        """
        self._inner = httpcore.AnyIOBackend()
        self._allow_loopback = allow_loopback
        self._resolver = resolver or _default_resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to a resolved address, in order, once every resolved address passed."""
        literal = _literal_address(host)
        try:
            addresses = [str(literal)] if literal is not None else await self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"host {host!r} does not resolve") from exc
        checked: list[IPAddress] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            reason = ip_refusal_reason(ip, allow_loopback=self._allow_loopback)
            if reason is not None:
                raise httpcore.ConnectError(f"blocked destination {host} ({reason}: {ip})")
            checked.append(ip)
        failure: httpcore.ConnectError | None = None
        for ip in dict.fromkeys(checked):
            try:
                stream = await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _SocketStream(stream)
            except httpcore.ConnectError as exc:
                # "localhost" may list ::1 first while the server listens on 127.0.0.1 only.
                failure = exc
        raise failure or httpcore.ConnectError(f"host {host!r} does not resolve")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are never an outbound destination."""
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Delegate to the wrapped backend."""
        await self._inner.sleep(seconds)


def _is_readable(sock: socket.socket | None) -> bool:
    """Whether a socket has data (or its end) waiting; a missing or closed one counts as so."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _SocketStream(httpcore.AsyncNetworkStream):
    """A connection's stream that looks its socket up once, when the connection is made.

    The pool asks every kept-alive connection whether its socket became readable (the
    server closed it) each time it assigns a request or takes a response back. anyio answers
    that by rebuilding the stream's attribute table, ``getpeername()`` included, per
    question; the socket cannot change for the life of the stream, so it is kept here.
    Nothing about the checks changes: each new connection still goes through
    :meth:`GuardedBackend.connect_tcp`.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return _SocketStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            return _is_readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class _ConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, except that a connection is handed to one waiting request at a time.

    httpcore 1.0's pass that assigns queued requests to connections treats an idle HTTP/1.1
    connection as free until the request it was given actually starts on it. Requests that
    arrive together (the delivery job's lanes start a group at once) are therefore all
    given the same idle connection; all but one fail with ``ConnectionNotAvailable`` and go
    round the pool again, each retry another pass over every connection. Here a connection
    given to a request that has not started yet is spoken for: not reused for, and not
    closed under, another request (encode/httpcore#1110 and the review of #1111). Otherwise
    this is httpcore 1.0.9's ``_assign_requests_to_connections``, including its count of
    surplus keep-alive connections; ``tests/unit/sources/test_connection_pool.py`` fails if
    the pool stops using it.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        # Idle, yet already given to a request that has not started on it.
        spoken_for = {
            id(request.connection)
            for request in self._requests
            if request.connection is not None and request.connection.is_idle()
        }
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.has_expired() or (
                # A surplus keep-alive connection (httpcore counts all connections here).
                connection.is_idle()
                and id(connection) not in spoken_for
                and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(connection)
                closing.append(connection)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = [
                connection
                for connection in self._connections
                if id(connection) not in spoken_for
                and connection.can_handle_request(origin)
                and connection.is_available()
            ]
            if available:
                connection = available[0]
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
            else:
                idle = [
                    connection
                    for connection in self._connections
                    if id(connection) not in spoken_for and connection.is_idle()
                ]
                if not idle:
                    continue
                self._connections.remove(idle[0])
                closing.append(idle[0])
                connection = self.create_connection(origin)
                self._connections.append(connection)
            pool_request.assign_to_connection(connection)
            spoken_for.add(id(connection))
        return closing


def guarded_transport(
    *,
    allow_loopback: bool,
    limits: httpx.Limits,
    resolver: Resolver | None = None,
) -> httpx.AsyncHTTPTransport:
    """Return an httpx transport whose every connection goes through :class:`GuardedBackend`.

    Proxy environment variables are ignored: a proxy would resolve names where we cannot
    check them.

    Args:
        allow_loopback: accept loopback addresses (tests and local sources only).
        limits: connection pool limits.
        resolver: DNS override (tests).
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    # httpx 0.28 has no public way to hand a network backend to its pool, so the pool is
    # rebuilt with one; httpx is pinned and tests/integration/sources/test_safety_transport.py
    # fails if this stops taking effect.
    transport._pool = _ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(allow_loopback=allow_loopback, resolver=resolver),
    )
    return transport


async def send_on_transport(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send ``request`` straight to ``client``'s transport for its URL; return the response.

    The transport keeps what a request needs from the client: the keep-alive pool and the
    connect-time checks of :func:`guarded_transport`. What is skipped is the client's request
    machinery, which neither the fetcher nor the webhook sender wants: redirects (both follow
    or refuse them by hand, re-checking each hop), cookies (a source's or a receiver's cookies
    are neither kept nor sent anywhere), auth and event hooks, at ~20 % of a fetch's CPU.
    The caller puts the headers and the ``timeout`` extension on the request itself and closes
    the response. ``response.aiter_bytes()`` still decodes ``Content-Encoding``.
    """
    # httpx has no public per-request way to skip its client layers; httpx is pinned, and the
    # transport tests fail if this private look-up goes.
    response = await client._transport_for_url(request.url).handle_async_request(request)
    response.request = request
    return response
