"""Signed webhooks in the Standard Webhooks format (v1 HMAC-SHA256, ``whsec_`` secrets).

The signature is computed here from the integer timestamp, not with
``standardwebhooks.Webhook.sign()``, which mislabels non-UTC aware datetimes (delivery
standards §0 finding 2). The HMAC key is the base64-decoded part after ``whsec_`` (finding 1).
The body is serialised once and those exact bytes are signed and sent (WH-02).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from secrets import token_bytes
from typing import Any, Literal

import httpx

from service.exceptions import UnsafeURLError
from service.safety import send_on_transport

SECRET_PREFIX = "whsec_"
USER_AGENT = "dealwatch-webhooks/1"
DISABLE_AFTER = timedelta(days=5)
MAX_RETRY_AFTER = timedelta(hours=24)
EXCERPT_BYTES = 1024
_URL_CACHE = 1024
_MSG_ID = re.compile(r"^[A-Za-z0-9_-]+\Z")

WebhookStatus = Literal["delivered", "retry", "disabled", "failed"]
UrlGuard = Callable[[str], Awaitable[None]]


def generate_secret() -> str:
    """Return a new signing secret: ``whsec_`` + base64 of 32 random bytes (WH-04)."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret (its base64-decoded bytes).

    Raises:
        ValueError: the secret lacks the prefix or is not valid base64 of 24–64 bytes.
    """
    return _secret_key(secret)


@functools.lru_cache(maxsize=256)
def _secret_key(secret: str) -> bytes:
    # Every attempt to an endpoint signs with the same few secrets.
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secrets start with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("webhook secret must decode to 24-64 bytes")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """Return one ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """Return the ``webhook-signature`` value: one signature per active secret, space-separated.

    During a rotation pass the new secret first and the old one second (SEC-06); a receiver
    holding either verifies.

    Raises:
        ValueError: no secret given, or a malformed one.
    """
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    return " ".join(sign(msg_id, timestamp, body, secret) for secret in secrets)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Serialise a payload once, compactly; these bytes are both signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_headers(
    *, msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """Return the Standard Webhooks headers for one attempt (WH-01, WH-09).

    Raises:
        ValueError: ``msg_id`` contains characters other than letters, digits, ``_`` and
            ``-`` (a ``.`` would make the signed content ambiguous, WH-03).
    """
    if not _MSG_ID.match(msg_id):
        raise ValueError(f"webhook-id must match {_MSG_ID.pattern}: {msg_id!r}")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(msg_id, timestamp, body, secrets),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """Parse ``Retry-After`` (seconds or an HTTP date) into a delay, capped at a day."""
    if not value:
        return None
    value = value.strip()
    delay: timedelta
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(timedelta(0), when - now)
    return min(delay, MAX_RETRY_AFTER)


def retry_delay(
    attempt: int,
    *,
    retry_after: timedelta | None,
    rng: random.Random,
    schedule: Sequence[timedelta],
    jitter: float,
) -> timedelta | None:
    """Return the wait before the next attempt, or ``None`` when retries are exhausted.

    Args:
        attempt: how many attempts have failed so far (1 after the first failure).
        retry_after: the endpoint's ``Retry-After``; the delay is never shorter.
        rng: source of jitter (seed it in tests).
        schedule: base delays after each failure (``delivery.retry_schedule_seconds``, Svix's
            by default); its length bounds the retries.
        jitter: relative spread; each delay is scaled by a factor in ``[1, 1 + j]``. Upward
            only, so the schedule is a floor: a symmetric spread could shrink the 27.6 hours of
            retries below the day the delivery standard (WH-11) promises integrators.

    Raises:
        ValueError: ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts and starts at 1")
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * rng.uniform(1, 1 + jitter)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


def should_disable(
    *,
    status: WebhookStatus,
    failing_since: datetime | None,
    now: datetime,
    after: timedelta = DISABLE_AFTER,
) -> bool:
    """Whether an endpoint must be disabled after an attempt (WH-13).

    Args:
        status: the outcome of the latest attempt.
        failing_since: when the current run of failures began (``None`` after a success).
        now: the current instant.
        after: how long an endpoint may fail without any success.
    """
    if status == "disabled":
        return True
    if status == "delivered" or failing_since is None:
        return False
    return now - failing_since >= after


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What happened to one webhook attempt.

    Attributes:
        status: ``delivered`` (2xx); ``retry`` (429, 5xx, timeout, connection error);
            ``disabled`` (410 or the receiver's ``webhook-delivery: disable``); ``failed``
            (redirects, other 4xx, refused URL).
        http_status: the response status, if a response came.
        retry_after: the endpoint's ``Retry-After``, if any.
        response_excerpt: at most 1 KB of the response body, or the error description.
        duration: time from the request start to the outcome.
    """

    status: WebhookStatus
    http_status: int | None
    retry_after: timedelta | None
    response_excerpt: str
    duration: timedelta


def classify_response(status_code: int, headers: httpx.Headers) -> WebhookStatus:
    """Map an HTTP response to a webhook status (WH-06, WH-10)."""
    control = headers.get("webhook-delivery", "").strip().lower()
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410 or control == "disable":
        return "disabled"
    if control == "abort-message":
        return "failed"
    if status_code == 429 or status_code >= 500:
        return "retry"
    return "failed"


class WebhookSender:
    """Posts signed webhooks through a shared ``httpx.AsyncClient``.

    A webhook is one request and its answer, so each attempt goes straight to the client's
    transport for the URL (its keep-alive pool, and the connect-time checks of a guarded
    transport) rather than through the client's request machinery: redirects are never
    followed, no cookies are stored or sent, and the client's auth and event hooks do not
    apply. The timeout covers each phase (connect, write, read, pool wait). ``url_guard``
    runs before every attempt; pair it with a client whose transport pins the resolved
    address (SEC-02), since the guard alone cannot prevent DNS rebinding.
    """

    def __init__(
        self, client: httpx.AsyncClient, *, timeout: float = 15.0, url_guard: UrlGuard
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._guard = url_guard
        # Parsed endpoint URLs: a batch sends to few endpoints, many times each.
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def send(
        self,
        url: str,
        *,
        msg_id: str,
        event_type: str,
        payload: Mapping[str, Any],
        secrets: Sequence[str],
        timestamp: datetime,
    ) -> WebhookOutcome:
        """Send one attempt and classify it; never raises for network or HTTP failures.

        Args:
            url: the endpoint URL.
            msg_id: the ``webhook-id``; the same for every retry and replay of a message.
            event_type: must equal ``payload["type"]``.
            payload: the JSON payload (see :func:`alerts.render.webhook_payload`).
            secrets: the endpoint's active ``whsec_`` secrets, newest first.
            timestamp: this attempt's time (timezone-aware); sent as integer Unix seconds.

        Raises:
            ValueError: a programming error (type mismatch, bad id or secret, naive time).
        """
        if payload.get("type") != event_type:
            raise ValueError(f"payload type {payload.get('type')!r} is not {event_type!r}")
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        body = encode_payload(payload)
        headers = signed_headers(
            msg_id=msg_id, timestamp=int(timestamp.timestamp()), body=body, secrets=secrets
        )
        started = time.perf_counter()

        def elapsed() -> timedelta:
            return timedelta(seconds=time.perf_counter() - started)

        try:
            await self._guard(url)
        except UnsafeURLError as exc:
            return WebhookOutcome("failed", None, None, f"refused URL: {exc.reason}", elapsed())
        # The receiver's answer is read as sent (at most 1 KB of it): ask for it unencoded.
        headers["accept-encoding"] = "identity"
        try:
            target = self._url(url)
            request = httpx.Request(
                "POST",
                target,
                content=body,
                headers=headers,
                extensions={"timeout": self._timeouts},
            )
            response = await send_on_transport(self._client, request)
            excerpt = bytearray()
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            chunks = aiter(stream)
            try:
                async for chunk in chunks:
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
            finally:
                if isinstance(chunks, AsyncGenerator):
                    await chunks.aclose()
                await stream.aclose()
        except httpx.TimeoutException as exc:
            return WebhookOutcome("retry", None, None, f"timeout: {type(exc).__name__}", elapsed())
        except httpx.TransportError as exc:
            return WebhookOutcome("retry", None, None, f"{type(exc).__name__}: {exc}", elapsed())
        status = classify_response(response.status_code, response.headers)
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=timestamp)
        text = bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
        if 300 <= response.status_code < 400:
            text = f"redirect to {response.headers.get('location', '?')} not followed; {text}"
        return WebhookOutcome(status, response.status_code, retry_after, text, elapsed())
