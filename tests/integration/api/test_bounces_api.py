"""Bounce and complaint reports through the API and the CLI pipe, and the suppressions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from service.commands import ingest_bounce
from service.db.models import Delivery, Subscriber, Subscription
from service.runtime import Resources
from service.settings import Settings
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.integration.api.seed import add_delivery
from tests.support.clock import FakeClock

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[2] / "data" / "bounces"
RFC822 = {"Content-Type": "message/rfc822"}


async def _reader(resources: Resources, email: str) -> tuple[int, int]:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        subscriber = await create_subscriber(session, email=email, status="active", now=now)
        subscription = await create_subscription(
            session, subscriber_id=subscriber.id, rule_tags=["energy"], now=now
        )
        await session.commit()
        return subscriber.id, subscription.id


async def _status(resources: Resources, subscriber_id: int) -> tuple[str, str | None]:
    async with resources.sessionmaker() as session:
        row = await session.get(Subscriber, subscriber_id)
        assert row is not None
        return row.status, row.status_reason


async def test_a_hard_bounce_found_by_its_verp_token_suppresses_the_reader(
    resources: Resources, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # The report's recipient differs in case and the delivery is found by msg_<id>.
    subscriber_id, subscription_id = await _reader(resources, "reader@example.com")
    delivery_id = await add_delivery(resources, subscription_id, status="delivered")
    async with resources.sessionmaker() as session:
        await session.execute(
            update(Delivery).where(Delivery.id == delivery_id).values(message_id="msg_42")
        )
        await session.commit()
    raw = (DATA / "postfix-hard.eml").read_bytes()
    response = await client.post("/bounces", content=raw, headers={**admin, **RFC822})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["recorded"] is True
    event = body["event"]
    assert (event["kind"], event["action"], event["source"]) == ("hard", "suppressed", "dsn")
    assert (event["subscriber_id"], event["delivery_id"]) == (subscriber_id, delivery_id)
    status, reason = await _status(resources, subscriber_id)
    assert status == "suppressed"
    assert "5.1.1" in (reason or "")

    again = await client.post("/bounces", content=raw, headers={**admin, **RFC822})
    assert again.json()["event"]["action"] == "already_suppressed"
    listed = await client.get("/bounces", params={"email": "reader@example.com"}, headers=admin)
    assert [item["action"] for item in listed.json()["items"]] == [
        "already_suppressed",
        "suppressed",
    ]
    audit = await client.get("/audit", params={"entity_type": "subscriber"}, headers=admin)
    assert [entry["action"] for entry in audit.json()["items"]] == ["suppressed"]


async def test_a_complaint_unsubscribes_and_suppresses(
    resources: Resources, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    subscriber_id, subscription_id = await _reader(resources, "analyst@example.org")
    queued = await add_delivery(resources, subscription_id, status="pending", key="p2")
    raw = (DATA / "arf-complaint.eml").read_bytes()
    response = await client.post("/bounces", content=raw, headers={**admin, **RFC822})
    assert response.json()["event"]["action"] == "unsubscribed"
    assert response.json()["event"]["source"] == "arf"
    assert (await _status(resources, subscriber_id))[0] == "suppressed"
    async with resources.sessionmaker() as session:
        subscription = await session.get(Subscription, subscription_id)
        delivery = await session.get(Delivery, queued)
        assert subscription is not None
        assert delivery is not None
        assert subscription.enabled is False
        assert delivery.status == "cancelled"


async def test_soft_bounces_suppress_only_when_they_persist(
    resources: Resources, client: httpx.AsyncClient, admin: dict[str, str], clock: FakeClock
) -> None:
    subscriber_id, _ = await _reader(resources, "full@example.net")
    event = {"email": "Full@Example.net", "kind": "soft", "status": "4.2.2", "detail": "full"}
    actions = []
    for hours in (0, 30, 24 * 9, 30, 30, 30):
        clock.advance(hours=hours)
        response = await client.post("/bounces", json=event, headers=admin)
        assert response.status_code == 200, response.text
        actions.append(response.json()["event"]["action"])
    # A 9-day gap restarts the count: 3 reports in 60 h are not enough, the 4th at 90 h is.
    assert actions == ["counted", "counted", "counted", "counted", "counted", "suppressed"]
    assert (await _status(resources, subscriber_id))[0] == "suppressed"


async def test_reports_that_say_nothing_are_not_recorded(
    resources: Resources, client: httpx.AsyncClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    for name in ("postfix-delayed.eml", "auto-reply.eml"):
        raw = (DATA / name).read_bytes()
        response = await client.post("/bounces", content=raw, headers={**admin, **RFC822})
        assert response.json() == {
            "recorded": False,
            "reason": "not a failure report",
            "event": None,
        }
    unknown = await client.post(
        "/bounces", json={"email": "stranger@example.org", "kind": "hard"}, headers=admin
    )
    assert unknown.json()["event"]["action"] == "unknown_address"
    bad = await client.post("/bounces", json={"email": "x", "kind": "bouncy"}, headers=admin)
    assert bad.status_code == 422
    assert {tuple(error["loc"]) for error in bad.json()["errors"]} == {
        ("body", "email"),
        ("body", "kind"),
    }
    text = await client.post(
        "/bounces", content=b"hi", headers={**admin, "Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    assert "message/rfc822" in text.json()["detail"]
    huge = await client.post(
        "/bounces",
        content=b"x" * 1_000_001,
        headers={**admin, "Content-Type": "message/rfc822"},
    )
    assert huge.status_code == 413
    assert (await client.get("/bounces", headers=viewer)).status_code == 403


async def test_the_cli_pipe_records_a_report(settings: Settings, resources: Resources) -> None:
    subscriber_id, _ = await _reader(resources, "reader@example.com")
    raw = (DATA / "postfix-hard.eml").read_bytes()
    assert await ingest_bounce(settings, raw) == "hard bounce for reader@example.com: suppressed"
    assert await ingest_bounce(settings, (DATA / "auto-reply.eml").read_bytes()) == (
        "ignored: not a failure report"
    )
    async with resources.sessionmaker() as session:
        status = await session.scalar(
            select(Subscriber.status).where(Subscriber.id == subscriber_id)
        )
    assert status == "suppressed"


async def test_an_out_of_range_filter_is_a_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.get("/bounces", params={"subscriber_id": 2**70}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "subscriber_id"]
