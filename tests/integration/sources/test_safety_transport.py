"""The connect-time SSRF guard of the process's HTTP client (DNS rebinding, SEC-02)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import httpcore
import httpx
import pytest

from service.exceptions import FetchError
from service.runtime import make_http_client
from service.safety import _SocketStream, guarded_transport
from service.settings import HttpSettings
from service.sources.fetcher import Fetched, FetchOptions, fetch
from tests.support.http_server import LocalHTTPServer, Response

pytestmark = pytest.mark.integration

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


def resolves_to(*addresses: str):
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


async def test_loopback_is_blocked_at_connect_time() -> None:
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=b"ok"))
        transport = guarded_transport(allow_loopback=False, limits=LIMITS)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError, match="blocked destination"):
                await client.get(f"http://localhost:{server.port}/feed")
        assert server.requests == []


async def test_rebinding_after_the_check_is_still_blocked() -> None:
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=b"ok"))
        # The pre-request check sees a public address; the connect-time lookup, moments
        # later, gets loopback: the connection must not be made.
        transport = guarded_transport(
            allow_loopback=False, limits=LIMITS, resolver=resolves_to("127.0.0.1")
        )
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(FetchError, match="blocked destination"):
                await fetch(
                    client,
                    f"http://feeds.example.org:{server.port}/feed",
                    etag=None,
                    last_modified=None,
                    options=FetchOptions(allow_loopback=False),
                    resolver=resolves_to("93.184.216.34"),
                )
        assert server.requests == []


async def test_allowed_loopback_connects_to_the_checked_address() -> None:
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=b"ok"))
        transport = guarded_transport(
            allow_loopback=True, limits=LIMITS, resolver=resolves_to("::1", "127.0.0.1")
        )
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"http://feeds.example.org:{server.port}/feed")
        assert response.text == "ok"
        assert server.requests[0].headers["host"] == f"feeds.example.org:{server.port}"


async def test_the_process_client_uses_the_guard() -> None:
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=b"ok"))
        async with make_http_client(HttpSettings(allow_loopback=False)) as client:
            with pytest.raises(httpx.ConnectError, match="blocked destination"):
                await client.get(server.url("/feed"))
        async with make_http_client(HttpSettings(allow_loopback=True)) as client:
            result = await fetch(
                client,
                server.url("/feed"),
                etag=None,
                last_modified=None,
                options=FetchOptions(allow_loopback=True),
            )
            assert isinstance(result, Fetched)
        assert len(server.requests) == 1


class _FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lookups = 0

    def get_extra_info(self, info: str) -> Any:
        self.lookups += 1
        return self.sock if info == "socket" else None


def test_a_connection_looks_its_socket_up_once() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        inner = _FakeStream(ours)
        stream = _SocketStream(inner)
        assert stream.get_extra_info("is_readable") is False
        assert stream.get_extra_info("is_readable") is False
        theirs.close()  # the server ends a kept-alive connection
        assert stream.get_extra_info("is_readable") is True
        ours.close()
        assert stream.get_extra_info("is_readable") is True
        assert inner.lookups == 1


async def test_connections_are_reused_and_each_new_one_is_checked() -> None:
    checked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        checked.append(host)
        return ["127.0.0.1"]

    with LocalHTTPServer() as server:
        server.route("/hook", Response(status=204), method="POST")
        transport = guarded_transport(allow_loopback=True, limits=LIMITS, resolver=resolve)
        async with httpx.AsyncClient(transport=transport) as client:
            url = f"http://hooks.example.org:{server.port}/hook"
            for _ in range(3):
                responses = await asyncio.gather(*(client.post(url) for _ in range(4)))
                assert [response.status_code for response in responses] == [204] * 4
            connections = transport._pool.connections
            assert 1 <= len(connections) <= 4
        # One connect-time check per connection the pool opened, none per request.
        assert 1 <= len(checked) <= 4
