"""The outbox with real parts: database, the delivery job, aiosmtpd and a verifying receiver."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.db.models import Delivery, DeliveryAttempt, Subscriber, WebhookEndpoint
from service.jobs.digests import run_due_deliveries
from service.notify.webhook import generate_secret
from service.runtime import Resources, open_resources
from service.settings import DeliverySettings, Settings, SmtpSettings
from service.storage.deliveries import recover_failed, replay_delivery
from service.storage.recipients import rotate_endpoint_secret
from service.storage.subscriptions import (
    create_endpoint,
    create_subscriber,
    create_subscription,
)
from tests.support.clock import FakeClock
from tests.support.http_server import LocalHTTPServer, RecordedRequest, Response
from tests.support.outbox import RULE, add_matched_articles, seed_catalogue
from tests.support.smtp_server import SmtpServer
from tests.support.webhook_receiver import Scripted, WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def outbox_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=smtp_server.port, tls="none")}
    )


@asynccontextmanager
async def seeded(settings: Settings, clock: FakeClock) -> AsyncIterator[Resources]:
    # Webhook receivers check the timestamp against the real time (±5 minutes).
    clock.set(datetime.now(UTC).replace(microsecond=0))
    async with open_resources(settings, clock=clock) as opened:
        async with opened.sessionmaker() as session:
            await seed_catalogue(session, now=clock())
            await session.commit()
        yield opened


@pytest.fixture
async def res(
    outbox_settings: Settings, resources: Resources, clock: FakeClock
) -> AsyncIterator[Resources]:
    async with seeded(outbox_settings, clock) as opened:
        yield opened


async def webhook_subscription(
    res: Resources, url: str, secret: str, cadence: str = "immediate"
) -> int:
    now = res.clock()
    async with res.sessionmaker() as session:
        endpoint = await create_endpoint(
            session, name="integrator", url=url, secret=secret, box=res.secret_box, now=now
        )
        await create_subscription(
            session, endpoint_id=endpoint.id, rule_ids=[RULE.id], cadence=cadence, now=now
        )
        await session.commit()
        return endpoint.id


async def email_subscription(res: Resources, email: str = "reader@example.org", **kwargs) -> int:
    now = res.clock()
    async with res.sessionmaker() as session:
        subscriber = await create_subscriber(session, email=email, status="active", now=now)
        await create_subscription(
            session, subscriber_id=subscriber.id, rule_ids=[RULE.id], now=now, **kwargs
        )
        await session.commit()
        return subscriber.id


async def add_matches(res: Resources, *titles: str) -> None:
    async with res.sessionmaker() as session:
        await add_matched_articles(session, list(titles), now=res.clock())
        await session.commit()


async def deliveries(res: Resources) -> list[Delivery]:
    async with res.sessionmaker() as session:
        return list((await session.execute(select(Delivery).order_by(Delivery.id))).scalars())


async def attempts(res: Resources, delivery_id: int) -> list[DeliveryAttempt]:
    async with res.sessionmaker() as session:
        rows = await session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.number)
        )
        return list(rows.scalars())


async def test_match_created_per_match_500_then_200(
    res: Resources, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    await webhook_subscription(res, receiver.url(), receiver.secret)
    await add_matches(res, "Pakistan buys Russian LNG", "Russian oil for Pakistan")
    receiver.script("hooks", Scripted(500, body=b"busy"))

    report = await run_due_deliveries(res)
    assert (report.planned, report.delivered, report.retrying) == (2, 1, 1)
    rows = await deliveries(res)
    assert {row.event_type for row in rows} == {"match.created"}
    # The two are sent side by side: whichever arrived first got the 500.
    first = next(row for row in rows if row.status == "retry_wait")
    second = next(row for row in rows if row.status == "delivered")
    assert receiver.ids()[0] == first.message_id

    clock.advance(seconds=7)  # past the first retry delay (5 s ± 20 %)
    report = await run_due_deliveries(res)
    assert report.delivered == 1
    assert receiver.rejected == []
    assert Counter(receiver.ids()) == {first.message_id: 2, second.message_id: 1}
    payloads = {d.headers["webhook-id"]: d.payload for d in receiver.deliveries}
    titles = {p["data"]["match"]["title"] for p in payloads.values()}
    assert titles == {"Pakistan buys Russian LNG", "Russian oil for Pakistan"}
    assert not any(row.possible_duplicate for row in await deliveries(res))
    log = await attempts(res, first.id)
    assert [(a.number, a.outcome, a.code) for a in log] == [
        (1, "retry", 500),
        (2, "delivered", 200),
    ]
    assert log[0].response == "busy"
    # Nothing more to do.
    assert (await run_due_deliveries(res)).delivered == 0


async def test_410_disables_the_endpoint(res: Resources, receiver: WebhookReceiver) -> None:
    endpoint_id = await webhook_subscription(res, receiver.url(), receiver.secret)
    await add_matches(res, "Pakistan buys Russian LNG")
    receiver.script("hooks", Scripted(410))
    await run_due_deliveries(res)
    async with res.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert (endpoint.enabled, endpoint.disabled_reason) == (False, "410 Gone")
    (delivery,) = await deliveries(res)
    assert delivery.status == "failed"
    assert [a.outcome for a in await attempts(res, delivery.id)] == ["disabled"]
    # A disabled endpoint gets no new matches.
    await add_matches(res, "Russian oil for Pakistan")
    await run_due_deliveries(res)
    assert len(receiver.deliveries) == 1


async def test_410_stops_the_rest_of_the_batch(res: Resources, receiver: WebhookReceiver) -> None:
    await webhook_subscription(res, receiver.url(), receiver.secret)
    await add_matches(res, *(f"Pakistan buys Russian LNG cargo {n}" for n in range(9)))
    receiver.script("hooks", Scripted(410))
    await run_due_deliveries(res)
    # The first group (one delivery per lane) was on the wire when the 410 came (the others
    # of the group got 200); the rest of the batch is cancelled, not sent to a disabled
    # endpoint.
    lanes = res.settings.delivery.concurrency
    assert len(receiver.deliveries) == lanes
    rows = await deliveries(res)
    assert Counter(row.status for row in rows) == {
        "failed": 1,
        "delivered": lanes - 1,
        "cancelled": 9 - lanes,
    }
    # The next group's attempts were committed while the first group was on the wire: they
    # are closed as cancelled, unsent; the deliveries after it never got an attempt.
    logs = [[a.outcome for a in await attempts(res, row.id)] for row in rows]
    cancelled = [log for row, log in zip(rows, logs, strict=True) if row.status == "cancelled"]
    assert sorted(cancelled) == [[]] * (9 - 2 * lanes) + [["cancelled"]] * lanes


async def test_five_days_of_failure_disable(res: Resources, receiver: WebhookReceiver) -> None:
    endpoint_id = await webhook_subscription(res, receiver.url(), receiver.secret)
    async with res.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.failing_since = res.clock() - timedelta(days=5)
        await session.commit()
    await add_matches(res, "Pakistan buys Russian LNG")
    receiver.script("hooks", Scripted(503))
    await run_due_deliveries(res)
    async with res.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing for 5 days")


async def failing_since(res: Resources, endpoint_id: int) -> datetime | None:
    async with res.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        return endpoint.failing_since


async def test_a_success_ends_the_failure_run(
    res: Resources, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    endpoint_id = await webhook_subscription(res, receiver.url(), receiver.secret)
    await add_matches(res, "Pakistan buys Russian LNG")
    receiver.script("hooks", Scripted(503))
    failed_at = res.clock()
    await run_due_deliveries(res)
    assert await failing_since(res, endpoint_id) == failed_at

    # A later job reads the endpoint as failing and clears the run on its next success.
    clock.advance(seconds=7)
    assert (await run_due_deliveries(res)).delivered == 1
    assert await failing_since(res, endpoint_id) is None


async def fail_until_given_up(
    res: Resources, clock: FakeClock
) -> tuple[Delivery, list[RecordedRequest], list[timedelta]]:
    """Send one webhook to an endpoint that always answers 503, following its retries on the
    fake clock; return the delivery, the requests and each attempt's offset from the first."""
    with LocalHTTPServer() as server:
        server.route("/hooks", Response(status=503), method="POST")
        await webhook_subscription(res, server.url("/hooks"), generate_secret())
        await add_matches(res, "Pakistan buys Russian LNG")
        started = clock()
        offsets = []
        for _ in range(20):
            offsets.append(clock() - started)
            await run_due_deliveries(res)
            (delivery,) = await deliveries(res)
            if delivery.status == "failed":
                break
            clock.set(delivery.next_attempt_at)
        return delivery, server.requests_for("/hooks"), offsets


async def test_retries_span_more_than_a_day_then_fail(res: Resources, clock: FakeClock) -> None:
    delivery, requests, offsets = await fail_until_given_up(res, clock)
    assert delivery.status == "failed"
    assert len(requests) == 8
    assert offsets[-1] > timedelta(days=1)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.headers["webhook-timestamp"] for r in requests}) == 8


async def test_a_configured_retry_schedule_is_followed(
    outbox_settings: Settings, resources: Resources, clock: FakeClock
) -> None:
    settings = outbox_settings.model_copy(
        update={"delivery": DeliverySettings(retry_schedule_seconds=[60, 120], retry_jitter=0.0)}
    )
    async with seeded(settings, clock) as res:
        delivery, requests, offsets = await fail_until_given_up(res, clock)
    assert delivery.status == "failed"
    assert len(requests) == 3
    assert offsets == [timedelta(0), timedelta(seconds=60), timedelta(seconds=180)]


async def test_replay_and_recover_reuse_the_webhook_id(
    res: Resources, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    endpoint_id = await webhook_subscription(res, receiver.url(), receiver.secret)
    await add_matches(res, "Pakistan buys Russian LNG", "Russian oil for Pakistan")
    receiver.script("hooks", Scripted(200), Scripted(400, body=b"schema error"))
    await run_due_deliveries(res)
    rows = await deliveries(res)
    assert sorted(row.status for row in rows) == ["delivered", "failed"]
    ok = next(row for row in rows if row.status == "delivered")
    failed = next(row for row in rows if row.status == "failed")

    clock.advance(seconds=30)
    async with res.sessionmaker() as session:
        await replay_delivery(session, ok.id, now=clock())
        queued = await recover_failed(
            session, endpoint_id, since=clock() - timedelta(hours=1), now=clock()
        )
        await session.commit()
    assert queued == [failed.id]
    await run_due_deliveries(res)
    assert Counter(receiver.ids()) == {ok.message_id: 2, failed.message_id: 2}
    bodies = [d.body for d in receiver.deliveries if d.headers["webhook-id"] == ok.message_id]
    assert bodies[0] == bodies[1]
    assert [d.status for d in await deliveries(res)] == ["delivered", "delivered"]


async def test_secret_rotation_overlap(
    res: Resources, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    endpoint_id = await webhook_subscription(res, receiver.url(), receiver.secret)
    old = receiver.secret
    async with res.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        new = generate_secret()
        await rotate_endpoint_secret(
            session,
            endpoint,
            new_secret=new,
            box=res.secret_box,
            overlap=timedelta(seconds=60),
            expected_version=endpoint.version,
            now=clock(),
        )
        await session.commit()
    # During the overlap a receiver holding the old secret still verifies.
    await add_matches(res, "Pakistan buys Russian LNG")
    await run_due_deliveries(res)
    assert receiver.rejected == []
    assert len(receiver.deliveries[0].headers["webhook-signature"].split()) == 2
    # After it, only the new secret signs.
    clock.advance(seconds=61)
    await add_matches(res, "Russian oil for Pakistan")
    await run_due_deliveries(res)
    assert len(receiver.rejected) == 1
    receiver.secret = new
    async with res.sessionmaker() as session:
        failed = (
            await session.execute(select(Delivery).where(Delivery.status == "failed"))
        ).scalar_one()
        await replay_delivery(session, failed.id, now=clock())
        await session.commit()
    await run_due_deliveries(res)
    assert len(receiver.deliveries) == 2
    assert len(receiver.deliveries[1].headers["webhook-signature"].split()) == 1
    assert old != new


async def test_smtp_down_then_up_sends_once(
    res: Resources, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    await email_subscription(res, cadence="immediate")
    await add_matches(res, "Pakistan buys Russian LNG")
    smtp_server.stop()
    report = await run_due_deliveries(res)
    assert (report.planned, report.retrying) == (1, 1)
    (delivery,) = await deliveries(res)
    assert delivery.status == "retry_wait"
    clock.set(delivery.next_attempt_at)
    report = await run_due_deliveries(res)
    assert report.retrying == 1
    smtp_server.start()
    (delivery,) = await deliveries(res)
    clock.set(delivery.next_attempt_at)
    report = await run_due_deliveries(res)
    assert report.delivered == 1
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0].message
    assert message["Message-ID"] == f"<{delivery.message_id}@{res.settings.delivery.list_id}>"
    assert [a.outcome for a in await attempts(res, delivery.id)] == ["retry", "retry", "delivered"]


async def test_permanent_refusal_suppresses_the_address(
    res: Resources, smtp_server: SmtpServer
) -> None:
    subscriber_id = await email_subscription(res, "gone@example.org", cadence="immediate")
    smtp_server.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
    await add_matches(res, "Pakistan buys Russian LNG")
    await run_due_deliveries(res)
    async with res.sessionmaker() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        assert subscriber.status == "suppressed"
        assert subscriber.status_reason is not None
        assert "550" in subscriber.status_reason
    (delivery,) = await deliveries(res)
    assert delivery.status == "failed"
    # A suppressed address is never handed to SMTP again.
    await add_matches(res, "Russian oil for Pakistan")
    await run_due_deliveries(res)
    assert smtp_server.received == []
    assert len(await deliveries(res)) == 1


async def test_one_tick_drains_several_batches(
    outbox_settings: Settings, res: Resources, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    small = outbox_settings.model_copy(
        update={"delivery": outbox_settings.delivery.model_copy(update={"batch_size": 2})}
    )
    for number in range(5):
        await email_subscription(res, f"reader{number}@example.org", cadence="immediate")
    await add_matches(res, "Pakistan buys Russian LNG")
    async with open_resources(small, clock=clock) as batched:
        report = await run_due_deliveries(batched)
        assert (report.planned, report.delivered) == (5, 5)
        assert len(smtp_server.received) == 5
        # Bounded: with one round per tick, the rest waits for the next tick.
        await add_matches(res, "Russian oil for Pakistan")
        report = await run_due_deliveries(batched, max_rounds=1)
        assert (report.planned, report.delivered) == (2, 2)
