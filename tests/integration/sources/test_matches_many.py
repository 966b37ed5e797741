"""A document's matches recorded in one call: every table written once, nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import alerts
from service.db.models import Match, Notification, Subscription
from service.runtime import Resources
from service.storage.articles import ArticleData, upsert_articles
from service.storage.matches import list_audiences, list_rule_tags, record_matches_many
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.articles import article_data
from tests.support.outbox import RULE, seed_catalogue

pytestmark = pytest.mark.integration

NOW = datetime(2024, 6, 14, 15, 0, tzinfo=UTC)


def _data(n: int) -> ArticleData:
    return article_data(
        f"guid:{n}",
        url=f"https://news.example.org/{n}",
        title=f"Pakistan Russia LNG {n}",
        published_at=NOW,
        content_hash=str(n),
        guid=str(n),
        language="en",
    )


def _match(article_id: int) -> alerts.Match:
    return alerts.Match(
        rule_id=RULE.id,
        article_id=str(article_id),
        score=1.0,
        terms=("Pakistan", "Russia", "LNG"),
        snippet="Pakistan Russia LNG",
        highlights=((0, 8),),
    )


async def test_matches_of_a_document_are_recorded_once_and_queued(resources: Resources) -> None:
    async with resources.sessionmaker() as session:
        await seed_catalogue(session, now=NOW)
        subscriber = await create_subscriber(
            session, email="reader@example.org", status="active", now=NOW
        )
        subscription = await create_subscription(
            session, subscriber_id=subscriber.id, rule_ids=[RULE.id], cadence="immediate", now=NOW
        )
        stored = await upsert_articles(
            session, source_id="example-news", items=[_data(1), _data(2), _data(3)], now=NOW
        )
        first, second, third = (article.id for article, _ in stored)
        audiences = await list_audiences(session)
        tags = await list_rule_tags(session)

        def record(sync: Session) -> int:
            return record_matches_many(
                sync.connection(),
                found=[(first, [_match(first)]), (second, [_match(second)]), (third, [])],
                rule_tags=tags,
                audiences=audiences,
                now=NOW,
            )

        assert await session.run_sync(record) == 2
        assert await session.run_sync(record) == 0  # already recorded: nothing twice
        await session.commit()
    async with resources.sessionmaker() as session:
        matches = (await session.execute(select(Match.article_id, Match.terms))).all()
        queued = (
            await session.execute(select(Notification.subscription_id, Notification.article_id))
        ).all()
        due = await session.scalar(
            select(Subscription.next_due_at).where(Subscription.id == subscription.id)
        )
    assert sorted(matches) == [
        (first, ["Pakistan", "Russia", "LNG"]),
        (second, ["Pakistan", "Russia", "LNG"]),
    ]
    assert sorted(queued) == [(subscription.id, first), (subscription.id, second)]
    assert due == NOW
