from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.render import webhook_payload
from service.exceptions import UnsafeURLError
from service.notify.webhook import WebhookSender, generate_secret, retry_delay
from service.settings import DeliverySettings
from tests.support.digests import sample_digest
from tests.support.smtp_server import free_port
from tests.support.webhook_receiver import Scripted, WebhookReceiver

pytestmark = pytest.mark.integration


async def allow_all(url: str) -> None:
    return None


async def refuse_all(url: str) -> None:
    raise UnsafeURLError(url, "loopback address")


def payload() -> dict[str, object]:
    return webhook_payload(
        "digest.published",
        event_time=datetime.now(UTC),
        sequence=1,
        subscription_id="sub-1",
        digest=sample_digest(),
    )


def sender(client: httpx.AsyncClient, **kwargs: object) -> WebhookSender:
    return WebhookSender(client, url_guard=kwargs.pop("url_guard", allow_all), **kwargs)  # type: ignore[arg-type]


async def send(
    webhook: WebhookSender,
    receiver: WebhookReceiver,
    *,
    path: str = "hooks",
    msg_id: str = "msg_1",
    secrets: list[str] | None = None,
    at: datetime | None = None,
):
    return await webhook.send(
        receiver.url(path),
        msg_id=msg_id,
        event_type="digest.published",
        payload=payload(),
        secrets=secrets or [receiver.secret],
        timestamp=at or datetime.now(UTC),
    )


async def test_500_then_200_keeps_the_webhook_id(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(500, body=b"upstream broke"))
    webhook = sender(http_client)
    now = datetime.now(UTC)
    first = await send(webhook, receiver, msg_id="msg_42", at=now - timedelta(seconds=30))
    second = await send(webhook, receiver, msg_id="msg_42", at=now)
    assert (first.status, first.http_status) == ("retry", 500)
    assert first.response_excerpt == "upstream broke"
    assert (second.status, second.http_status) == ("delivered", 200)
    assert receiver.rejected == []
    assert receiver.ids() == ["msg_42", "msg_42"]
    stamps = [d.headers["webhook-timestamp"] for d in receiver.deliveries]
    assert stamps[0] != stamps[1]
    assert all(s.isdigit() for s in stamps)
    delivered = receiver.deliveries[1]
    assert delivered.payload["type"] == "digest.published"
    assert delivered.payload["version"] == 1
    assert delivered.headers["content-type"] == "application/json"
    assert delivered.headers["user-agent"].startswith("dealwatch-webhooks/")


async def test_a_receiver_cookie_is_neither_kept_nor_sent(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(500, headers={"Set-Cookie": "session=abc; Path=/"}))
    webhook = sender(http_client)
    assert (await send(webhook, receiver)).status == "retry"
    assert (await send(webhook, receiver)).status == "delivered"
    assert "cookie" not in receiver.deliveries[1].headers
    assert len(http_client.cookies.jar) == 0
    # The answer's excerpt is read as sent.
    assert receiver.deliveries[0].headers["accept-encoding"] == "identity"


async def test_410_disables(receiver: WebhookReceiver, http_client: httpx.AsyncClient) -> None:
    receiver.script("hooks", Scripted(410))
    outcome = await send(sender(http_client), receiver)
    assert (outcome.status, outcome.http_status) == ("disabled", 410)


async def test_429_retry_after_is_honoured(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(429, headers={"Retry-After": "3600"}))
    outcome = await send(sender(http_client), receiver)
    assert outcome.status == "retry"
    assert outcome.retry_after == timedelta(hours=1)
    # The first retry would be ~5 s; the endpoint asked for an hour.
    defaults = DeliverySettings()
    first = retry_delay(
        1,
        retry_after=outcome.retry_after,
        rng=random.Random(0),
        schedule=defaults.retry_schedule,
        jitter=defaults.retry_jitter,
    )
    assert first == timedelta(hours=1)


async def test_redirects_are_failures_and_not_followed(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(302, headers={"Location": receiver.url("elsewhere")}))
    outcome = await send(sender(http_client), receiver)
    assert (outcome.status, outcome.http_status) == ("failed", 302)
    assert "not followed" in outcome.response_excerpt
    assert receiver.ids("elsewhere") == []


async def test_other_4xx_fail_with_a_bounded_excerpt(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(422, body=b"x" * 5000))
    outcome = await send(sender(http_client), receiver)
    assert (outcome.status, outcome.http_status) == ("failed", 422)
    assert outcome.response_excerpt == "x" * 1024


async def test_timeout_is_a_retry(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    receiver.script("hooks", Scripted(200, delay=2.0))
    outcome = await send(sender(http_client, timeout=0.3), receiver)
    assert outcome.status == "retry"
    assert outcome.http_status is None
    assert outcome.response_excerpt.startswith("timeout")


async def test_connection_refused_is_a_retry(http_client: httpx.AsyncClient) -> None:
    webhook = sender(http_client)
    outcome = await webhook.send(
        f"http://127.0.0.1:{free_port()}/hooks",
        msg_id="msg_1",
        event_type="digest.published",
        payload=payload(),
        secrets=[generate_secret()],
        timestamp=datetime.now(UTC),
    )
    assert (outcome.status, outcome.http_status) == ("retry", None)
    assert "ConnectError" in outcome.response_excerpt


async def test_refused_url_is_never_contacted(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    outcome = await send(sender(http_client, url_guard=refuse_all), receiver)
    assert outcome.status == "failed"
    assert "loopback" in outcome.response_excerpt
    assert receiver.deliveries == []


async def test_rotation_overlap_verifies_with_the_old_secret(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    # The receiver still holds the old secret while the new one is being rolled out.
    new = generate_secret()
    outcome = await send(sender(http_client), receiver, secrets=[new, receiver.secret])
    assert outcome.status == "delivered"
    assert len(receiver.deliveries[0].headers["webhook-signature"].split(" ")) == 2
    # Signed only with the new secret, the old-secret receiver refuses it.
    refused = await send(sender(http_client), receiver, secrets=[new])
    assert (refused.status, refused.http_status) == ("failed", 400)
    assert len(receiver.rejected) == 1


async def test_event_type_must_match_payload(
    receiver: WebhookReceiver, http_client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError, match="payload type"):
        await sender(http_client).send(
            receiver.url(),
            msg_id="msg_1",
            event_type="match.created",
            payload=payload(),
            secrets=[receiver.secret],
            timestamp=datetime.now(UTC),
        )
