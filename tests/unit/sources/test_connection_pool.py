"""The process client's connection pool gives an idle connection to one waiting request."""

from __future__ import annotations

import asyncio

import httpcore
import httpx

from service.safety import _ConnectionPool, guarded_transport

RESPONSE = [b"HTTP/1.1 204 No Content\r\n", b"\r\n"]


class CountingPool(_ConnectionPool):
    """Counts the attempts to start a request on a connection (retries included)."""

    attempts = 0

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        connection = super().create_connection(origin)
        start = connection.handle_async_request

        async def counted(request: httpcore.Request) -> httpcore.Response:
            self.attempts += 1
            return await start(request)

        connection.handle_async_request = counted  # type: ignore[method-assign]
        return connection


async def test_requests_started_together_each_get_a_connection_once() -> None:
    # Every connection the mock backend opens can answer up to 20 requests.
    backend = httpcore.AsyncMockBackend(RESPONSE * 20)
    pool = CountingPool(max_connections=10, network_backend=backend)
    async with pool:

        async def post() -> int:
            response = await pool.request("POST", "http://hooks.example.org/in", content=b"{}")
            return response.status

        for _ in range(5):
            assert await asyncio.gather(*(post() for _ in range(4))) == [204] * 4
        # Without the pool's bookkeeping, the second to fourth request of each round are
        # first given the connection the first one took, and go round again.
        assert pool.attempts == 20
        assert len(pool.connections) == 4


async def test_more_requests_than_connections_wait_their_turn() -> None:
    backend = httpcore.AsyncMockBackend(RESPONSE * 20)
    pool = CountingPool(max_connections=2, network_backend=backend)
    async with pool:

        async def post() -> int:
            response = await pool.request("POST", "http://hooks.example.org/in", content=b"{}")
            return response.status

        assert await asyncio.gather(*(post() for _ in range(7))) == [204] * 7
        assert pool.attempts == 7
        assert len(pool.connections) == 2


def test_the_guarded_transport_uses_the_pool() -> None:
    transport = guarded_transport(allow_loopback=False, limits=httpx.Limits(max_connections=4))
    assert isinstance(transport._pool, _ConnectionPool)
