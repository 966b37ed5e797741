"""The full delivery path for the benchmark: outbox rows in a database, planned and sent by the job.

Seeds ``count`` subscriptions that are due now, each with one queued match, then runs
:func:`service.jobs.digests.run_due_deliveries` (plan, claim with a lease, attempt row, render,
send, record) until every delivery is done.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, insert, select

from service.db.migrate import upgrade_to_head
from service.db.models import (
    Article,
    Delivery,
    Match,
    Notification,
    Source,
    Subscriber,
    Subscription,
    WatchRule,
    WebhookEndpoint,
)
from service.db.session import make_engine
from service.jobs.digests import run_due_deliveries
from service.notify.webhook import generate_secret
from service.runtime import open_resources
from service.settings import (
    DatabaseSettings,
    DeliverySettings,
    HttpSettings,
    Settings,
    SmtpSettings,
)

_CHUNK = 1000


async def _seed(settings: Settings, *, count: int, channel: str, webhook_url: str) -> None:
    engine = make_engine(settings.database)
    await upgrade_to_head(engine)
    now = datetime.now(UTC)
    due = now - timedelta(seconds=1)
    async with engine.begin() as connection:
        await connection.execute(
            insert(Source).values(
                id="bench",
                name="Bench News",
                kind="feed",
                url="http://127.0.0.1:9/",
                options={},
                tier="news",
                interval_minutes=30,
                enabled=False,
                origin="api",
                version=1,
                created_at=now,
                updated_at=now,
                next_poll_at=now,
                health="new",
                consecutive_failures=0,
                items_seen=0,
                polls_total=0,
                polls_not_modified=0,
            )
        )
        await connection.execute(
            insert(WatchRule).values(
                id="pk-ru-energy",
                name="Pakistan–Russia energy",
                description="",
                query="Pakistan Russia LNG",
                tags=[],
                enabled=True,
                min_score=0.0,
                version=1,
                origin="api",
                created_at=now,
                updated_at=now,
            )
        )
        article_id = (
            await connection.execute(
                insert(Article)
                .values(
                    source_id="bench",
                    identity="a1",
                    url="https://news.example.org/a1",
                    canonical_url="https://news.example.org/a1",
                    title="Pakistan and Russia sign an LNG supply deal",
                    summary="Islamabad agreed to buy Russian LNG cargoes from 2027.",
                    text="",
                    published_at=now,
                    published_valid=True,
                    fetched_at=now,
                    content_hash="h",
                    countries=[],
                    entities=[],
                )
                .returning(Article.id)
            )
        ).scalar_one()
        await connection.execute(
            insert(Match).values(
                article_id=article_id,
                rule_id="pk-ru-energy",
                score=1.0,
                terms=["LNG"],
                snippet="Pakistan and Russia sign an LNG supply deal",
                highlights=[[31, 34]],
                matched_at=now,
            )
        )
        endpoint_id = None
        if channel == "webhook":
            endpoint_id = (
                await connection.execute(
                    insert(WebhookEndpoint)
                    .values(
                        name="bench",
                        url=webhook_url,
                        enabled=True,
                        version=1,
                        secrets=[
                            {
                                "secret": generate_secret(),
                                "created_at": now.isoformat(),
                                "expires_at": None,
                            }
                        ],
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(WebhookEndpoint.id)
                )
            ).scalar_one()
        for start in range(0, count, _CHUNK):
            numbers = range(start, min(count, start + _CHUNK))
            subscriber_ids: list[int | None] = [None] * len(numbers)
            if channel == "email":
                subscriber_ids = list(
                    (
                        await connection.execute(
                            insert(Subscriber).returning(Subscriber.id),
                            [
                                {
                                    "email": f"reader{n}@example.org",
                                    "name": "",
                                    "status": "active",
                                    "confirm_sends": 0,
                                    "version": 1,
                                    "created_at": now,
                                    "updated_at": now,
                                }
                                for n in numbers
                            ],
                        )
                    ).scalars()
                )
            subscription_ids = list(
                (
                    await connection.execute(
                        insert(Subscription).returning(Subscription.id),
                        [
                            {
                                "subscriber_id": subscriber_id,
                                "endpoint_id": endpoint_id,
                                "rule_ids": ["pk-ru-energy"],
                                "rule_tags": [],
                                "cadence": "daily",
                                "send_time": "08:00",
                                "timezone": "Asia/Karachi",
                                "heartbeat": False,
                                "enabled": True,
                                "next_due_at": due,
                                "version": 1,
                                "created_at": now,
                                "updated_at": now,
                            }
                            for subscriber_id in subscriber_ids
                        ],
                    )
                ).scalars()
            )
            await connection.execute(
                insert(Notification),
                [
                    {
                        "subscription_id": sid,
                        "article_id": article_id,
                        "rule_id": "pk-ru-energy",
                        "created_at": now,
                    }
                    for sid in subscription_ids
                ],
            )
    await engine.dispose()


async def run_outbox(
    *,
    count: int,
    channel: str,
    smtp_port: int,
    webhook_url: str,
    database_url: str,
    folder: Path,
    concurrency: int,
) -> float:
    """Seed ``count`` due deliveries of ``channel`` in an empty, migrated database.

    Returns deliveries per second.
    """
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        http=HttpSettings(allow_loopback=True, timeout_seconds=30),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp_port, tls="none", timeout_seconds=30),
        # The job sends over as many lanes as the raw loops have workers.
        delivery=DeliverySettings(batch_size=500, concurrency=concurrency),
        data_dir=folder,
        secret_key=SecretStr("bench-" + "k" * 40),
    )
    await _seed(settings, count=count, channel=channel, webhook_url=webhook_url)
    async with open_resources(settings) as resources:
        started, cpu = time.perf_counter(), time.process_time()
        while True:
            report = await run_due_deliveries(resources)
            if report.planned == 0 and report.delivered == 0 and report.retrying == 0:
                break
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        async with resources.sessionmaker() as session:
            delivered = (
                await session.execute(select(func.count()).where(Delivery.status == "delivered"))
            ).scalar_one()
    if delivered != count:
        raise RuntimeError(f"outbox {channel}: {delivered} of {count} delivered")
    rate = count / elapsed
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    label = f"{channel} outbox job ({backend})"
    print(
        f"{label:<34} {count:>6} in {elapsed:7.2f} s  {rate:9.0f}/s"
        f"  cpu {cpu / count * 1000:5.2f} ms each"
    )
    return rate
