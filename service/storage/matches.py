"""Matches and the notifications (outbox items) they create, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import alerts
from service.db.models import (
    Match,
    Notification,
    Subscriber,
    Subscription,
    WatchRule,
    WebhookEndpoint,
)


@dataclass(frozen=True, slots=True)
class Audience:
    """A live subscription and what it wants; loaded once per unit of work."""

    subscription_id: int
    rule_ids: frozenset[str]
    rule_tags: frozenset[str]
    cadence: str

    def wants(self, rule_id: str, rule_tags: Iterable[str]) -> bool:
        return rule_id in self.rule_ids or not self.rule_tags.isdisjoint(rule_tags)


async def list_audiences(session: AsyncSession) -> list[Audience]:
    """Enabled subscriptions whose subscriber is active or whose endpoint is enabled."""
    rows = await session.execute(
        select(Subscription)
        .outerjoin(Subscriber, Subscription.subscriber_id == Subscriber.id)
        .outerjoin(WebhookEndpoint, Subscription.endpoint_id == WebhookEndpoint.id)
        .where(
            Subscription.enabled.is_(True),
            or_(Subscriber.status == "active", WebhookEndpoint.enabled.is_(True)),
        )
    )
    return [
        Audience(
            subscription_id=sub.id,
            rule_ids=frozenset(sub.rule_ids),
            rule_tags=frozenset(sub.rule_tags),
            cadence=sub.cadence,
        )
        for sub in rows.scalars()
    ]


async def record_matches(
    session: AsyncSession,
    *,
    article_id: int,
    matches: Sequence[alerts.Match],
    rule_tags: dict[str, frozenset[str]],
    audiences: Sequence[Audience],
    now: datetime,
) -> int:
    """Store new matches of one article and queue them for every subscription that wants them.

    Idempotent: a (article, rule) pair already stored is skipped, and so are its notifications.
    Immediate subscriptions become due now. Returns the number of new matches.
    """
    if not matches:
        return 0
    existing = set(
        (
            await session.execute(
                select(Match.rule_id).where(
                    Match.article_id == article_id,
                    Match.rule_id.in_([m.rule_id for m in matches]),
                )
            )
        ).scalars()
    )
    immediate: set[int] = set()
    added = 0
    for match in matches:
        if match.rule_id in existing:
            continue
        added += 1
        session.add(
            Match(
                article_id=article_id,
                rule_id=match.rule_id,
                score=match.score,
                terms=list(match.terms),
                snippet=match.snippet,
                highlights=[list(span) for span in match.highlights],
                matched_at=now,
            )
        )
        tags = rule_tags.get(match.rule_id, frozenset())
        for audience in audiences:
            if audience.wants(match.rule_id, tags):
                session.add(
                    Notification(
                        subscription_id=audience.subscription_id,
                        article_id=article_id,
                        rule_id=match.rule_id,
                        created_at=now,
                    )
                )
                if audience.cadence == "immediate":
                    immediate.add(audience.subscription_id)
    if immediate:
        await session.execute(
            update(Subscription)
            .where(
                Subscription.id.in_(immediate),
                or_(Subscription.next_due_at.is_(None), Subscription.next_due_at > now),
            )
            .values(next_due_at=now)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    return added


async def list_rule_tags(session: AsyncSession) -> dict[str, frozenset[str]]:
    rows = await session.execute(select(WatchRule.id, WatchRule.tags))
    return {rule_id: frozenset(tags) for rule_id, tags in rows.all()}
