from __future__ import annotations

import asyncio
import gzip
import itertools
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from service.exceptions import FetchError, SourceParseError, UnsafeURLError
from service.sources.fetcher import (
    Fetched,
    FetchOptions,
    HostLimiter,
    NotModified,
    fetch,
    parse_retry_after,
)
from service.sources.parsers import parser_for
from tests.support.http_server import LocalHTTPServer, RecordedRequest, Response, repeat_bytes

pytestmark = pytest.mark.integration

FEEDS = Path(__file__).parents[2] / "data" / "feeds"
OPTIONS = FetchOptions(
    timeout_seconds=5.0,
    max_bytes=1_000_000,
    max_redirects=5,
    allow_loopback=True,
    min_host_interval_seconds=0.0,
    per_host_concurrency=4,
    user_agent="dealwatch/0.1 (+https://github.com/dealwatch)",
)
ATOM = (FEEDS / "kremlin_en_atom.xml").read_bytes()


async def get(client: httpx.AsyncClient, url: str, **kwargs: object) -> Fetched | NotModified:
    arguments: dict[str, object] = {"etag": None, "last_modified": None, "options": OPTIONS}
    arguments.update(kwargs)
    return await fetch(client, url, **arguments)  # type: ignore[arg-type]


async def test_conditional_get_round_trip(server: LocalHTTPServer, client: httpx.AsyncClient):
    def feed(request: RecordedRequest) -> Response:
        if request.headers.get("if-none-match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"', "Cache-Control": "max-age=600"})
        return Response(
            body=ATOM,
            headers={
                "Content-Type": "application/atom+xml; charset=utf-8",
                "ETag": '"v1"',
                "Last-Modified": "Wed, 03 Jul 2024 14:45:00 GMT",
                "Cache-Control": "public, max-age=300",
            },
        )

    server.route("/feed", feed)
    first = await get(client, server.url("/feed"))
    assert isinstance(first, Fetched)
    assert first.content == ATOM
    assert (first.etag, first.last_modified, first.max_age_seconds) == (
        '"v1"',
        "Wed, 03 Jul 2024 14:45:00 GMT",
        300,
    )
    assert first.content_type.startswith("application/atom+xml")
    second = await get(
        client, server.url("/feed"), etag=first.etag, last_modified=first.last_modified
    )
    assert second == NotModified(
        url=server.url("/feed"),
        etag='"v1"',
        last_modified="Wed, 03 Jul 2024 14:45:00 GMT",
        max_age_seconds=600,
    )
    requests = server.requests_for("/feed")
    assert "if-none-match" not in requests[0].headers
    assert requests[1].headers["if-modified-since"] == "Wed, 03 Jul 2024 14:45:00 GMT"
    assert requests[1].headers["user-agent"].startswith("dealwatch/0.1")


async def test_gzip_is_decoded(server: LocalHTTPServer, client: httpx.AsyncClient):
    server.route("/gz", Response(body=gzip.compress(ATOM), headers={"Content-Encoding": "gzip"}))
    result = await get(client, server.url("/gz"))
    assert isinstance(result, Fetched)
    assert result.content == ATOM


async def test_a_source_cookie_is_neither_kept_nor_sent(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/feed", Response(body=ATOM, headers={"Set-Cookie": "visitor=abc; Path=/"}))
    for _ in range(2):
        assert isinstance(await get(client, server.url("/feed")), Fetched)
    assert [r.headers.get("cookie") for r in server.requests_for("/feed")] == [None, None]
    assert len(client.cookies.jar) == 0


async def test_the_clients_headers_and_timeouts_apply(server: LocalHTTPServer):
    server.route("/feed", Response(body=ATOM))
    async with httpx.AsyncClient(
        trust_env=False, headers={"User-Agent": "from-the-client/2.0", "X-Probe": "1"}
    ) as http:
        await get(http, server.url("/feed"), options=replace(OPTIONS, user_agent=None))
        await get(http, server.url("/feed"))
    first, second = server.requests_for("/feed")
    assert (first.headers["user-agent"], first.headers["x-probe"]) == ("from-the-client/2.0", "1")
    # The fetch options' User-Agent, when set, wins over the client's.
    assert second.headers["user-agent"] == OPTIONS.user_agent
    assert "gzip" in first.headers["accept-encoding"]

    server.route("/slow", Response(body=ATOM, delay=1.0))
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(0.2)) as http:
        with pytest.raises(FetchError, match="ReadTimeout"):
            await get(http, server.url("/slow"))


async def test_retry_after_seconds_and_http_date(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/busy", Response(status=429, headers={"Retry-After": "120"}))
    server.route(
        "/down", Response(status=503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    )
    server.route("/gone", Response(status=410))
    with pytest.raises(FetchError) as busy:
        await get(client, server.url("/busy"))
    assert (busy.value.status_code, busy.value.retry_after) == (429, 120.0)
    with pytest.raises(FetchError) as down:
        await get(client, server.url("/down"))
    assert down.value.status_code == 503
    assert down.value.retry_after is not None
    assert down.value.retry_after > 86400
    with pytest.raises(FetchError) as gone:
        await get(client, server.url("/gone"))
    assert (gone.value.status_code, gone.value.retry_after) == (410, None)


def test_parse_retry_after_values() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


async def test_redirects_are_followed_and_rechecked(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/old", Response(status=301, headers={"Location": "/new"}))
    server.route("/new", Response(status=302, headers={"Location": server.url("/feed")}))
    server.route("/feed", Response(body=ATOM))
    result = await get(client, server.url("/old"))
    assert isinstance(result, Fetched)
    assert (result.url, result.final_url) == (server.url("/old"), server.url("/feed"))

    server.route("/metadata", Response(status=302, headers={"Location": "http://169.254.169.254/"}))
    with pytest.raises(UnsafeURLError, match=r"169\.254\.169\.254"):
        await get(client, server.url("/metadata"))
    server.route("/to-file", Response(status=302, headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(UnsafeURLError, match="scheme"):
        await get(client, server.url("/to-file"))


async def test_redirect_loop_stops(server: LocalHTTPServer, client: httpx.AsyncClient):
    server.route("/a", Response(status=302, headers={"Location": "/b"}))
    server.route("/b", Response(status=302, headers={"Location": "/a"}))
    with pytest.raises(FetchError, match="more than 5 redirects"):
        await get(client, server.url("/a"))
    assert len(server.requests) == 6


async def test_loopback_refused_unless_allowed(server: LocalHTTPServer, client: httpx.AsyncClient):
    server.route("/feed", Response(body=ATOM))
    strict = FetchOptions(allow_loopback=False)
    with pytest.raises(UnsafeURLError, match="loopback"):
        await get(client, server.url("/feed"), options=strict)
    assert server.requests == []


async def test_declared_oversize_body_is_refused_before_reading(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    size = 50 * 1024 * 1024
    server.route(
        "/huge",
        Response(body=repeat_bytes(b"x" * 65536, size), headers={"Content-Length": str(size)}),
    )
    with pytest.raises(FetchError, match="exceeds the 1000000-byte limit"):
        await get(client, server.url("/huge"))


async def test_undeclared_50mb_body_is_cut_at_the_cap(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/stream", Response(body=repeat_bytes(b"<x/>" * 16384, 50 * 1024 * 1024)))
    with pytest.raises(FetchError, match="body exceeds the 1000000-byte limit"):
        await get(client, server.url("/stream"))


async def test_trickling_server_hits_the_total_time_limit(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/slow", Response(body=repeat_bytes(b"<", 10_000), chunk_delay=0.05))
    quick = FetchOptions(timeout_seconds=0.5, allow_loopback=True)
    with pytest.raises(FetchError, match=r"no complete response within 0\.5 s"):
        await get(client, server.url("/slow"), options=quick)


async def test_unreachable_port_is_a_fetch_error(client: httpx.AsyncClient):
    probe = LocalHTTPServer()
    url = probe.url("/feed")
    probe.stop()
    with pytest.raises(FetchError, match="ConnectError"):
        await get(client, url)


async def test_hostile_bodies_fetch_fine_and_fail_to_parse(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    html = (FEEDS / "mofa_press_releases.html").read_bytes()
    server.route("/html", Response(body=html, headers={"Content-Type": "text/html"}))
    server.route("/empty", Response(body=b"", headers={"Content-Type": "application/rss+xml"}))
    for path, message in (("/html", "not a feed"), ("/empty", "empty")):
        result = await get(client, server.url(path))
        assert isinstance(result, Fetched)
        with pytest.raises(SourceParseError, match=message):
            parser_for("feed").parse(
                result.content, url=result.final_url, content_type=result.content_type, options={}
            )


async def test_wrong_http_charset_still_parses(server: LocalHTTPServer, client: httpx.AsyncClient):
    body = (
        '<?xml version="1.0" encoding="windows-1251"?><rss version="2.0"><channel><title>ТАСС'
        "</title><item><title>Новатэк отгрузил СПГ</title><link>/1</link></item></channel></rss>"
    ).encode("cp1251")
    server.route("/ru", Response(body=body, headers={"Content-Type": "text/xml; charset=utf-8"}))
    result = await get(client, server.url("/ru"))
    assert isinstance(result, Fetched)
    document = parser_for("feed").parse(
        result.content, url=result.final_url, content_type=result.content_type, options={}
    )
    assert document.items[0].title == "Новатэк отгрузил СПГ"
    assert document.items[0].url == server.url("/1")


async def test_host_limiter_caps_concurrency_and_spaces_requests(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/slow", Response(body=ATOM, delay=0.1))
    limiter = HostLimiter(per_host_concurrency=1, min_interval_seconds=0.05)
    results = await asyncio.gather(
        *(get(client, server.url("/slow"), limiter=limiter) for _ in range(4))
    )
    assert all(isinstance(result, Fetched) for result in results)
    assert server.max_in_flight == 1
    starts = sorted(request.received_at for request in server.requests_for("/slow"))
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(starts))


async def test_host_limiter_allows_configured_parallelism(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/slow", Response(body=ATOM, delay=0.2))
    limiter = HostLimiter(per_host_concurrency=2, min_interval_seconds=0.0)
    await asyncio.gather(*(get(client, server.url("/slow"), limiter=limiter) for _ in range(6)))
    assert server.max_in_flight == 2


async def test_one_broken_source_does_not_stop_the_others(
    server: LocalHTTPServer, client: httpx.AsyncClient
):
    server.route("/good", Response(body=ATOM))
    server.route("/bad", Response(status=500))
    server.route("/html", Response(body=b"<html><body>oops</body></html>"))

    async def poll(path: str) -> int:
        result = await get(client, server.url(path))
        assert isinstance(result, Fetched)
        return len(
            parser_for("feed").parse(result.content, url="", content_type="", options={}).items
        )

    outcomes = await asyncio.gather(
        poll("/bad"), poll("/good"), poll("/html"), return_exceptions=True
    )
    assert isinstance(outcomes[0], FetchError)
    assert outcomes[1] == 3
    assert isinstance(outcomes[2], SourceParseError)
