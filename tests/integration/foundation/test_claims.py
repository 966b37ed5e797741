"""Several processes share one database: a source is polled by one at a time, a digest is sent
once, and a crashed process's lease expires so another takes its work."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from alerts.rulefile import RuleDefinition
from service.catalogue import SourceDefinition, sync_rules, sync_sources
from service.db.models import Delivery, Source
from service.jobs.digests import run_due_deliveries
from service.jobs.poll import Poller
from service.runtime import Resources, open_resources
from service.settings import Settings, SmtpSettings
from service.storage.claims import claim_due
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.clock import FakeClock
from tests.support.http_server import LocalHTTPServer, RecordedRequest, Response
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.integration

SOURCES = 12


class Recorder:
    """Records (path, start, end) of every feed request, from the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, float, float]] = []

    def handler(self, request: RecordedRequest) -> Response:
        start = time.monotonic()
        time.sleep(0.05)
        with self.lock:
            self.spans.append((request.path, start, time.monotonic()))
        body = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
            f"<guid>{request.path}</guid><title>Pakistan Russia oil {request.path}</title>"
            "<link>https://example.org/x</link></item></channel></rss>"
        )
        return Response(body=body.encode())


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        for index in range(SOURCES):
            server.route(f"/feed/{index}", recorder.handler)
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def two_processes(
    settings: Settings, resources: Resources, clock: FakeClock, smtp: SmtpServer
) -> AsyncIterator[tuple[Resources, Resources]]:
    """Two sets of resources with their own engines and owners: two processes' worth."""
    shared = settings.model_copy(update={"smtp": SmtpSettings(port=smtp.port, tls="none")})
    async with (
        open_resources(shared, clock=clock) as first,
        open_resources(shared, clock=clock) as second,
    ):
        assert first.owner != second.owner
        yield first, second


async def _seed(resources: Resources, server: LocalHTTPServer) -> None:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        await sync_sources(
            session,
            [
                SourceDefinition(
                    id=f"s{i}", name=f"S{i}", url=server.url(f"/feed/{i}"), interval_minutes=10
                )
                for i in range(SOURCES)
            ],
            now=now,
        )
        await sync_rules(
            session,
            [RuleDefinition(id="r", name="R", description="", query="Pakistan oil")],
            now=now,
        )
        subscriber = await create_subscriber(
            session, email="a@example.org", status="active", now=now
        )
        await create_subscription(
            session,
            subscriber_id=subscriber.id,
            rule_ids=["r"],
            cadence="daily",
            send_time="09:00",
            timezone="Europe/Berlin",
            now=now,
        )
        await session.commit()


def _overlaps(spans: list[tuple[str, float, float]]) -> list[str]:
    by_path: dict[str, list[tuple[float, float]]] = {}
    for path, start, end in spans:
        by_path.setdefault(path, []).append((start, end))
    bad: list[str] = []
    for path, intervals in by_path.items():
        intervals.sort()
        bad.extend(path for a, b in itertools.pairwise(intervals) if b[0] < a[1])
    return bad


async def test_two_processes_never_poll_one_source_twice_at_once(
    two_processes: tuple[Resources, Resources],
    clock: FakeClock,
    server: LocalHTTPServer,
    recorder: Recorder,
) -> None:
    first, second = two_processes
    clock.set(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    await _seed(first, server)
    pollers = [Poller(first), Poller(second)]
    rounds = 3
    for _ in range(rounds):
        results = await asyncio.gather(*(p.poll_due() for p in pollers), pollers[0].poll_due())
        polled = [r.source_id for batch in results for r in batch]
        assert sorted(polled) == sorted(f"s{i}" for i in range(SOURCES))
        clock.advance(minutes=11)
    assert len(recorder.spans) == SOURCES * rounds
    assert _overlaps(recorder.spans) == []


async def test_an_expired_lease_lets_another_process_take_the_source(
    two_processes: tuple[Resources, Resources],
    clock: FakeClock,
    server: LocalHTTPServer,
) -> None:
    first, second = two_processes
    clock.set(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    await _seed(first, server)
    now = clock()
    async with first.sessionmaker() as session:  # the first process claims, then "crashes"
        claimed = await claim_due(
            session,
            Source,
            due_column=Source.next_poll_at,
            now=now,
            owner=first.owner,
            lease_until=now + timedelta(minutes=10),
            limit=SOURCES,
        )
        await session.commit()
    assert len(claimed) == SOURCES
    assert await Poller(second).poll_due() == []  # leased: nobody else polls them
    clock.advance(minutes=11)
    taken = await Poller(second).poll_due()
    assert sorted(r.source_id for r in taken) == sorted(claimed)
    assert all(r.outcome == "ok" for r in taken)


async def test_a_digest_due_in_two_processes_is_sent_once(
    two_processes: tuple[Resources, Resources],
    clock: FakeClock,
    server: LocalHTTPServer,
    smtp: SmtpServer,
) -> None:
    first, second = two_processes
    clock.set(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    await _seed(first, server)
    await Poller(first).poll_due()
    clock.set(datetime(2026, 11, 2, 8, 0, tzinfo=UTC))  # 09:00 in Berlin
    await asyncio.gather(run_due_deliveries(first), run_due_deliveries(second))
    await asyncio.gather(run_due_deliveries(first), run_due_deliveries(second))
    assert len(smtp.received) == 1
    async with first.sessionmaker() as session:
        count = (await session.execute(select(func.count()).select_from(Delivery))).scalar_one()
    assert count == 1
