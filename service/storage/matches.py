"""Matches and the notifications (outbox items) they create, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, insert, or_, select, update
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

# Core tables: a document's matches are written with one executemany per table.
MATCHES = cast(Table, Match.__table__)
NOTIFICATIONS = cast(Table, Notification.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_IN_CHUNK = 500


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

    :func:`record_matches_many` for one article, on the session's connection.
    """
    if not matches:
        return 0
    return await session.run_sync(
        lambda sync: record_matches_many(
            sync.connection(),
            found=[(article_id, matches)],
            rule_tags=rule_tags,
            audiences=audiences,
            now=now,
        )
    )


def record_matches_many(
    conn: Connection,
    *,
    found: Sequence[tuple[int, Sequence[alerts.Match]]],
    rule_tags: dict[str, frozenset[str]],
    audiences: Sequence[Audience],
    now: datetime,
) -> int:
    """Store the new matches of a document's articles and queue them for every subscription
    that wants them, in one statement per table (not one per article).

    Idempotent: a (article, rule) pair already stored is skipped, and so are its notifications.
    Immediate subscriptions become due now. Returns the number of new matches.

    Args:
        conn: the caller's connection, in the caller's transaction.
        found: each article id with the matches it got (an article may appear once).
        rule_tags: each rule's tags (subscriptions may ask for rules by tag).
        audiences: the live subscriptions.
        now: the match time.
    """
    found = [(article_id, matches) for article_id, matches in found if matches]
    if not found:
        return 0
    existing: set[tuple[int, str]] = set()
    article_ids = [article_id for article_id, _ in found]
    for start in range(0, len(article_ids), _IN_CHUNK):
        rows = conn.execute(
            select(MATCHES.c.article_id, MATCHES.c.rule_id).where(
                MATCHES.c.article_id.in_(article_ids[start : start + _IN_CHUNK])
            )
        )
        existing.update((row.article_id, row.rule_id) for row in rows)
    match_rows: list[dict[str, object]] = []
    notification_rows: list[dict[str, object]] = []
    immediate: set[int] = set()
    for article_id, matches in found:
        for match in matches:
            if (article_id, match.rule_id) in existing:
                continue
            existing.add((article_id, match.rule_id))
            match_rows.append(
                {
                    "article_id": article_id,
                    "rule_id": match.rule_id,
                    "score": match.score,
                    "terms": list(match.terms),
                    "snippet": match.snippet,
                    "highlights": [list(span) for span in match.highlights],
                    "matched_at": now,
                }
            )
            tags = rule_tags.get(match.rule_id, frozenset())
            for audience in audiences:
                if audience.wants(match.rule_id, tags):
                    notification_rows.append(
                        {
                            "subscription_id": audience.subscription_id,
                            "article_id": article_id,
                            "rule_id": match.rule_id,
                            "created_at": now,
                        }
                    )
                    if audience.cadence == "immediate":
                        immediate.add(audience.subscription_id)
    if match_rows:
        conn.execute(insert(MATCHES), match_rows)
    if notification_rows:
        conn.execute(insert(NOTIFICATIONS), notification_rows)
    if immediate:
        conn.execute(
            update(SUBSCRIPTIONS)
            .where(
                SUBSCRIPTIONS.c.id.in_(immediate),
                or_(SUBSCRIPTIONS.c.next_due_at.is_(None), SUBSCRIPTIONS.c.next_due_at > now),
            )
            .values(next_due_at=now)
        )
    return len(match_rows)


async def list_rule_tags(session: AsyncSession) -> dict[str, frozenset[str]]:
    rows = await session.execute(select(WatchRule.id, WatchRule.tags))
    return {rule_id: frozenset(tags) for rule_id, tags in rows.all()}
