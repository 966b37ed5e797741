"""Read stored articles back as matcher input, for backtests and batch matching."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import alerts
from service.db.models import Article, Source, WatchRule
from service.storage.articles_query import to_alerts_article


async def list_articles_since(
    session: AsyncSession, since: datetime, *, after_id: int = 0, limit: int = 1000
) -> list[alerts.Article]:
    """Return stored articles published at or after ``since``, oldest id first, one page.

    Pages are keyed by article id so a long backtest never holds every article at once: pass
    the last returned ``int(article.id)`` as ``after_id`` to get the next page.

    Args:
        session: an open session (read only).
        since: timezone-aware UTC lower bound on ``published_at``.
        after_id: return only articles with a larger id.
        limit: page size.

    Returns:
        Matcher input with the article id as text, the source's tier and the URL's host.
    """
    rows = (
        await session.execute(
            select(Article, Source.tier)
            .join(Source, Source.id == Article.source_id)
            .where(Article.published_at >= since, Article.id > after_id)
            .order_by(Article.id)
            .limit(limit)
        )
    ).all()
    return [to_alerts_article(article, tier=tier) for article, tier in rows]


async def list_enabled_rule_specs(session: AsyncSession) -> list[alerts.RuleSpec]:
    """Return the enabled watch rules as matcher input, ordered by id."""
    rows = (
        (
            await session.execute(
                select(WatchRule).where(WatchRule.enabled.is_(True)).order_by(WatchRule.id)
            )
        )
        .scalars()
        .all()
    )
    return [_spec(row) for row in rows]


async def get_rule_spec(session: AsyncSession, rule_id: str) -> alerts.RuleSpec | None:
    """Return one stored rule (enabled or not) as matcher input, or None if there is none."""
    row = await session.get(WatchRule, rule_id)
    return None if row is None else _spec(row)


def _spec(row: WatchRule) -> alerts.RuleSpec:
    return alerts.RuleSpec(
        id=row.id,
        query=row.query,
        name=row.name,
        min_score=row.min_score,
        tags=frozenset(row.tags),
    )
