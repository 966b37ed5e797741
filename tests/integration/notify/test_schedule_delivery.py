"""Digests at the subscriber's local time across DST changes, and catch-up after downtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.db.models import Delivery
from service.jobs.digests import run_due_deliveries
from service.runtime import Resources, open_resources
from service.settings import Settings, SmtpSettings
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.clock import FakeClock
from tests.support.outbox import RULE, add_matched_articles, seed_catalogue
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def res(
    settings: Settings, resources: Resources, clock: FakeClock, smtp_server: SmtpServer
) -> AsyncIterator[Resources]:
    configured = settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=smtp_server.port, tls="none")}
    )
    async with open_resources(configured, clock=clock) as opened:
        yield opened


async def subscribe(res: Resources, **schedule: object) -> None:
    async with res.sessionmaker() as session:
        await seed_catalogue(session, now=res.clock())
        subscriber = await create_subscriber(
            session, email="reader@example.org", status="active", now=res.clock()
        )
        await create_subscription(
            session,
            subscriber_id=subscriber.id,
            rule_ids=[RULE.id],
            heartbeat=True,
            now=res.clock(),
            **schedule,  # type: ignore[arg-type]
        )
        await session.commit()


async def run_ticks(
    res: Resources, clock: FakeClock, until: datetime, step: timedelta
) -> list[datetime]:
    """Tick like the worker does; return the instants at which a digest went out."""
    sent = []
    while clock() < until:
        report = await run_due_deliveries(res)
        sent += [clock()] * report.delivered
        clock.advance(seconds=step.total_seconds())
    return sent


async def period_keys(res: Resources) -> list[str]:
    async with res.sessionmaker() as session:
        return list(
            (await session.execute(select(Delivery.period_key).order_by(Delivery.id))).scalars()
        )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def test_new_york_fall_back_sends_one_digest_per_day(
    res: Resources, clock: FakeClock, smtp_server: SmtpServer
) -> None:
    clock.set(utc(2026, 10, 31, 0, 0))
    await subscribe(res, cadence="daily", send_time="01:30", timezone="America/New_York")
    sent = await run_ticks(res, clock, utc(2026, 11, 3, 12, 0), timedelta(minutes=15))
    # 01:30 EDT, the first 01:30 on the fall-back day (not the repeated one), then 01:30 EST.
    assert sent == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
        utc(2026, 11, 3, 6, 30),
    ]
    assert await period_keys(res) == ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
    assert len(smtp_server.received) == 4


async def test_berlin_spring_forward_moves_into_the_gap_end(
    res: Resources, clock: FakeClock, smtp_server: SmtpServer
) -> None:
    clock.set(utc(2026, 3, 28, 0, 0))
    await subscribe(res, cadence="daily", send_time="02:30", timezone="Europe/Berlin")
    sent = await run_ticks(res, clock, utc(2026, 3, 31, 0, 0), timedelta(minutes=15))
    # 02:30 CET, then 03:00 CEST (02:30 does not exist on 29 March), then 02:30 CEST.
    assert sent == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert await period_keys(res) == ["2026-03-28", "2026-03-29", "2026-03-30"]


async def test_weekly_in_karachi(res: Resources, clock: FakeClock) -> None:
    clock.set(utc(2026, 11, 1, 0, 0))
    await subscribe(res, cadence="weekly", weekday=0, send_time="09:00", timezone="Asia/Karachi")
    sent = await run_ticks(res, clock, utc(2026, 11, 17, 0, 0), timedelta(hours=1))
    assert sent == [utc(2026, 11, 2, 4, 0), utc(2026, 11, 9, 4, 0), utc(2026, 11, 16, 4, 0)]
    assert await period_keys(res) == ["2026-W45", "2026-W46", "2026-W47"]


async def test_hourly(res: Resources, clock: FakeClock) -> None:
    clock.set(utc(2026, 11, 1, 0, 10))
    await subscribe(res, cadence="hourly", send_time="00:00", timezone="America/New_York")
    sent = await run_ticks(res, clock, utc(2026, 11, 1, 3, 5), timedelta(minutes=5))
    assert sent == [utc(2026, 11, 1, 1, 0), utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 3, 0)]
    assert await period_keys(res) == ["2026-11-01T01Z", "2026-11-01T02Z", "2026-11-01T03Z"]


async def test_catch_up_after_downtime_sends_one_digest(
    res: Resources, clock: FakeClock, smtp_server: SmtpServer
) -> None:
    clock.set(utc(2026, 11, 1, 0, 0))
    await subscribe(res, cadence="daily", send_time="08:00", timezone="Asia/Karachi")
    async with res.sessionmaker() as session:
        await add_matched_articles(session, ["Pakistan buys Russian LNG"], now=clock())
        await session.commit()
    # The worker is down from 1 to 4 November; three 08:00 digests were due meanwhile.
    clock.set(utc(2026, 11, 2, 3, 0) + timedelta(days=2, hours=5))
    async with res.sessionmaker() as session:
        await add_matched_articles(
            session, ["Russian oil reaches Karachi for Pakistan"], now=clock()
        )
        await session.commit()
    report = await run_due_deliveries(res)
    assert (report.planned, report.delivered) == (1, 1)
    assert await period_keys(res) == ["2026-11-04"]
    text = smtp_server.received[0].message.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "Pakistan buys Russian LNG" in body
    assert "Russian oil reaches Karachi" in body
    # Back on schedule: the next digest is tomorrow at 08:00 local.
    assert (await run_due_deliveries(res)).planned == 0
    clock.set(utc(2026, 11, 5, 3, 0))
    assert (await run_due_deliveries(res)).delivered == 1
