"""Polite, bounded HTTP fetching of sources.

One shared ``httpx.AsyncClient`` is passed in. Every hop of a redirect chain is re-checked by
the SSRF guard (redirects are followed by hand), the body is streamed under a byte cap, the
whole exchange runs under a total-time budget so that a trickling server cannot hold a worker,
and a per-host limiter keeps us from hammering one site.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from service.exceptions import FetchError
from service.safety import Resolver, check_url, send_on_transport

__all__ = [
    "FetchOptions",
    "Fetched",
    "HostLimiter",
    "NotModified",
    "fetch",
    "parse_max_age",
    "parse_retry_after",
]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Limits for one fetch; built once from settings by the caller.

    Attributes:
        timeout_seconds: total time budget for the whole exchange, redirects and body included
            (time spent waiting for a host slot is not counted).
        max_bytes: cap on the decoded body; the fetch fails as soon as it is exceeded.
        max_redirects: hops followed before giving up.
        allow_loopback: let the SSRF guard accept loopback addresses (tests, local sources).
        min_host_interval_seconds: minimum spacing between request starts to one host.
        per_host_concurrency: requests in flight to one host at once.
        user_agent: sent when set; otherwise the client's default header applies.
    """

    timeout_seconds: float = 30.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    allow_loopback: bool = False
    min_host_interval_seconds: float = 1.0
    per_host_concurrency: int = 2
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 2xx response with its body and caching validators."""

    url: str
    final_url: str
    status_code: int
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    max_age_seconds: int | None
    elapsed_seconds: float


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304: the source did not change since the validators were recorded."""

    url: str
    etag: str | None
    last_modified: str | None
    max_age_seconds: int | None


@dataclass(slots=True)
class _HostState:
    semaphore: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0


class HostLimiter:
    """Per-host concurrency cap and minimum spacing between request starts.

    Create one per process and share it between every fetch, so politeness holds however many
    sources point to one host.
    """

    def __init__(self, *, per_host_concurrency: int, min_interval_seconds: float) -> None:
        """Create a limiter.

        Args:
            per_host_concurrency: requests in flight to one host at once (at least 1).
            min_interval_seconds: minimum time between two request starts to one host.
        """
        self._concurrency = max(1, per_host_concurrency)
        self._interval = max(0.0, min_interval_seconds)
        self._hosts: dict[str, _HostState] = {}

    @classmethod
    def from_options(cls, options: FetchOptions) -> HostLimiter:
        """Build a limiter from the politeness fields of ``options``."""
        return cls(
            per_host_concurrency=options.per_host_concurrency,
            min_interval_seconds=options.min_host_interval_seconds,
        )

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s slots, starting no sooner than the spacing allows."""
        key = host.lower()
        state = self._hosts.get(key)
        if state is None:
            state = self._hosts[key] = _HostState(asyncio.Semaphore(self._concurrency))
        async with state.semaphore:
            loop = asyncio.get_running_loop()
            async with state.lock:
                wait = state.next_start - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.next_start = loop.time() + self._interval
            yield


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds.

    Args:
        value: the header value, delta-seconds or an HTTP-date.
        now: reference time for HTTP-dates; defaults to the current time.

    Returns:
        Non-negative seconds, or ``None`` when the header is absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def parse_max_age(cache_control: str | None) -> int | None:
    """Return ``max-age`` (or ``s-maxage``) from a ``Cache-Control`` header, if any."""
    if not cache_control:
        return None
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None


def _conditional_headers(
    etag: str | None, last_modified: str | None, options: FetchOptions
) -> dict[str, str]:
    headers: dict[str, str] = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    if options.user_agent:
        headers["User-Agent"] = options.user_agent
    return headers


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise FetchError(
            f"body of {declared} bytes exceeds the {max_bytes}-byte limit",
            url=url,
            status_code=response.status_code,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(
                f"body exceeds the {max_bytes}-byte limit",
                url=url,
                status_code=response.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    options: FetchOptions,
    limiter: HostLimiter | None = None,
    resolver: Resolver | None = None,
) -> Fetched | NotModified:
    """Fetch ``url`` politely, with conditional GET and manual, re-checked redirects.

    Args:
        client: the process's shared client: its headers, timeouts and transport (pool and
            connect-time SSRF checks) apply; its redirect, cookie, auth and hook layers do
            not (see :func:`service.safety.send_on_transport`).
        url: the source URL.
        etag: the validator recorded at the last successful fetch.
        last_modified: the ``Last-Modified`` value recorded at the last successful fetch.
        options: limits and politeness settings.
        limiter: the process-wide per-host limiter; ``None`` disables host politeness.
        resolver: DNS override for the SSRF guard (tests).

    Returns:
        ``Fetched`` for a 2xx response, ``NotModified`` for a 304.

    Raises:
        UnsafeURLError: the URL or a redirect target is refused by the SSRF guard.
        FetchError: network failure, HTTP status >= 400 (with ``status_code`` and
            ``retry_after``), too many redirects, a body over the cap, or the time budget spent.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    budget = options.timeout_seconds
    headers = client.headers.copy()
    headers.update(_conditional_headers(etag, last_modified, options))
    extensions = {"timeout": client.timeout.as_dict()}
    current = url
    hops = 0
    while True:
        await check_url(current, allow_loopback=options.allow_loopback, resolver=resolver)
        try:
            request = httpx.Request("GET", current, headers=headers, extensions=extensions)
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", url=url) from exc
        host = request.url.host
        slot = limiter.slot(host) if limiter is not None else _no_slot()
        async with slot:
            hop_started = loop.time()
            try:
                async with asyncio.timeout(max(budget, 0.0)):
                    outcome = await _exchange(client, request, url, current, options)
            except TimeoutError as exc:
                raise FetchError(
                    f"no complete response within {options.timeout_seconds:g} s", url=url
                ) from exc
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}", url=url) from exc
            budget -= loop.time() - hop_started
        if isinstance(outcome, str):
            hops += 1
            if hops > options.max_redirects:
                raise FetchError(f"more than {options.max_redirects} redirects", url=url)
            current = outcome
            continue
        if isinstance(outcome, NotModified):
            return NotModified(
                url=url,
                etag=outcome.etag or etag,
                last_modified=outcome.last_modified or last_modified,
                max_age_seconds=outcome.max_age_seconds,
            )
        return Fetched(
            url=url,
            final_url=outcome.final_url,
            status_code=outcome.status_code,
            content=outcome.content,
            content_type=outcome.content_type,
            etag=outcome.etag,
            last_modified=outcome.last_modified,
            max_age_seconds=outcome.max_age_seconds,
            elapsed_seconds=loop.time() - started,
        )


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield


async def _exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    url: str,
    current: str,
    options: FetchOptions,
) -> Fetched | NotModified | str:
    """Send one request; return the next hop's URL for a redirect."""
    response = await send_on_transport(client, request)
    try:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                raise FetchError(f"HTTP {status} without Location", url=url, status_code=status)
            return str(response.url.join(location))
        max_age = parse_max_age(response.headers.get("Cache-Control"))
        if status == 304:
            return NotModified(
                url=url,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                max_age_seconds=max_age,
            )
        if status >= 300:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise FetchError(
                f"HTTP {status}",
                url=url,
                status_code=status,
                retry_after=retry_after,
            )
        content = await _read_capped(response, url, options.max_bytes)
        return Fetched(
            url=url,
            final_url=current,
            status_code=status,
            content=content,
            content_type=response.headers.get("Content-Type", ""),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            max_age_seconds=max_age,
            elapsed_seconds=0.0,
        )
    finally:
        await response.aclose()
