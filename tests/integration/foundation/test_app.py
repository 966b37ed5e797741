"""The HTTP baseline: health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from service.db.models import Delivery, Source
from service.db.session import make_engine, make_sessionmaker
from service.runtime import Resources
from service.settings import DatabaseSettings
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.app import api_client
from tests.support.clock import FakeClock

pytestmark = pytest.mark.integration


async def test_health_readiness_metrics_and_docs(resources: Resources) -> None:
    async with api_client(resources) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "dealwatch_polls_total" in metrics.text

        spec = (await client.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.1")
        assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
        assert (await client.get("/docs")).status_code == 200


async def test_readyz_reports_an_unreachable_database(resources: Resources) -> None:
    # Nothing listens on port 1: the connection is refused at once, on either backend's test run.
    engine = make_engine(DatabaseSettings(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    try:
        async with api_client(dataclasses.replace(resources, engine=engine)) as client:
            ready = await client.get("/readyz")
    finally:
        await engine.dispose()
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_report_the_state_in_the_database(
    resources: Resources, clock: FakeClock
) -> None:
    now = clock.now
    async with resources.sessionmaker() as session:
        for number, health in enumerate(["ok", "ok", "failing", "stale"]):
            await session.execute(
                insert(Source).values(
                    id=f"s{number}",
                    name=f"s{number}",
                    kind="feed",
                    url=f"http://127.0.0.1:9/{number}",
                    options={},
                    health=health,
                    created_at=now,
                    updated_at=now,
                    next_poll_at=now,
                )
            )
        reader = await create_subscriber(session, email="r@example.org", status="active", now=now)
        subscription = await create_subscription(
            session, subscriber_id=reader.id, rule_tags=["energy"], now=now
        )
        for number, (status, due) in enumerate(
            [("pending", now - timedelta(seconds=90)), ("retry_wait", now + timedelta(hours=1))]
        ):
            session.add(
                Delivery(
                    subscription_id=subscription.id,
                    channel="email",
                    event_type="digest.published",
                    period_key=f"p{number}",
                    status=status,
                    next_attempt_at=due,
                    message_id=f"m{number}",
                    created_at=now,
                )
            )
        await session.commit()
    async with api_client(resources) as client:
        samples = _samples((await client.get("/metrics")).text)
    assert samples[("dealwatch_sources", (("health", "ok"),))] == 2
    assert samples[("dealwatch_sources", (("health", "failing"),))] == 1
    assert samples[("dealwatch_sources", (("health", "stale"),))] == 1
    assert samples[("dealwatch_sources", (("health", "degraded"),))] == 0
    assert samples[("dealwatch_subscribers", (("status", "active"),))] == 1
    assert samples[("dealwatch_deliveries_queued", (("channel", "email"),))] == 2
    assert samples[("dealwatch_deliveries_queued", (("channel", "webhook"),))] == 0
    assert samples[("dealwatch_delivery_overdue_seconds", ())] == 90


async def test_metrics_answer_when_the_database_does_not(resources: Resources) -> None:
    engine = make_engine(DatabaseSettings(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    broken = dataclasses.replace(resources, engine=engine, sessionmaker=make_sessionmaker(engine))
    try:
        async with api_client(broken) as client:
            metrics = await client.get("/metrics")
    finally:
        await engine.dispose()
    assert metrics.status_code == 200
    assert "dealwatch_polls_total" in metrics.text
