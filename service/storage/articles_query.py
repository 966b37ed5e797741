"""Read-side queries over articles, stories and matches for the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

import alerts
from service.db.models import Article, Match, Source, Story
from service.exceptions import NotFoundError
from service.storage.paging import json_text, paginate


@dataclass(frozen=True, slots=True)
class ArticleFilters:
    """Filters shared by article and story searches. ``country`` is ISO alpha-2, upper case."""

    rule_id: str | None = None
    source_id: str | None = None
    tier: str | None = None
    country: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None


def _filter_articles(statement: Select[Any], filters: ArticleFilters) -> Select[Any]:
    if filters.rule_id is not None:
        statement = statement.where(
            Article.id.in_(select(Match.article_id).where(Match.rule_id == filters.rule_id))
        )
    if filters.source_id is not None:
        statement = statement.where(Article.source_id == filters.source_id)
    if filters.tier is not None:
        statement = statement.where(
            Article.source_id.in_(select(Source.id).where(Source.tier == filters.tier))
        )
    if filters.country is not None:
        # Validated as two capital letters, so the quoted form holds no LIKE wildcard.
        statement = statement.where(json_text(Article.countries).like(f'%"{filters.country}"%'))
    if filters.since is not None:
        statement = statement.where(Article.published_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(Article.published_at < filters.until)
    if filters.q:
        statement = statement.where(Article.title.ilike(f"%{filters.q}%"))
    return statement


async def list_articles(
    session: AsyncSession,
    filters: ArticleFilters,
    *,
    story_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Article], int]:
    """Articles matching ``filters``, newest published first."""
    statement = _filter_articles(select(Article), filters)
    if story_id is not None:
        statement = statement.where(Article.story_id == story_id)
    return await paginate(
        session,
        statement,
        order_by=[Article.published_at.desc(), Article.id.desc()],
        limit=limit,
        offset=offset,
    )


async def get_article(session: AsyncSession, article_id: int) -> Article:
    article = await session.get(Article, article_id)
    if article is None:
        raise NotFoundError(f"no article {article_id}")
    return article


async def list_stories(
    session: AsyncSession, filters: ArticleFilters, *, limit: int = 50, offset: int = 0
) -> tuple[list[Story], int]:
    """Stories with at least one article matching ``filters``, most recently seen first."""
    statement = select(Story)
    article_filters = ArticleFilters(
        rule_id=filters.rule_id,
        source_id=filters.source_id,
        tier=filters.tier,
        country=filters.country,
        q=filters.q,
    )
    if article_filters != ArticleFilters():
        statement = statement.where(
            Story.id.in_(
                _filter_articles(select(Article.story_id), article_filters).where(
                    Article.story_id.is_not(None)
                )
            )
        )
    if filters.since is not None:
        statement = statement.where(Story.last_seen_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(Story.first_seen_at < filters.until)
    return await paginate(
        session,
        statement,
        order_by=[Story.last_seen_at.desc(), Story.id.desc()],
        limit=limit,
        offset=offset,
    )


async def get_story(session: AsyncSession, story_id: int) -> tuple[Story, list[Article]]:
    story = await session.get(Story, story_id)
    if story is None:
        raise NotFoundError(f"no story {story_id}")
    articles = (
        await session.execute(
            select(Article)
            .where(Article.story_id == story_id)
            .order_by(Article.published_at.asc(), Article.id.asc())
        )
    ).scalars()
    return story, list(articles)


@dataclass(frozen=True, slots=True)
class MatchRow:
    match: Match
    article: Article


async def list_matches(
    session: AsyncSession,
    *,
    rule_id: str | None = None,
    source_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[MatchRow], int]:
    """Matches newest first (by match time), with their articles."""
    statement = select(Match)
    if rule_id is not None:
        statement = statement.where(Match.rule_id == rule_id)
    if source_id is not None:
        statement = statement.where(
            Match.article_id.in_(select(Article.id).where(Article.source_id == source_id))
        )
    if since is not None:
        statement = statement.where(Match.matched_at >= since)
    if until is not None:
        statement = statement.where(Match.matched_at < until)
    matches, total = await paginate(
        session,
        statement,
        order_by=[Match.matched_at.desc(), Match.article_id.desc(), Match.rule_id.asc()],
        limit=limit,
        offset=offset,
    )
    ids = {match.article_id for match in matches}
    articles = {
        article.id: article
        for article in (await session.execute(select(Article).where(Article.id.in_(ids)))).scalars()
    }
    return [MatchRow(match, articles[match.article_id]) for match in matches], total


async def recent_articles(
    session: AsyncSession, *, since: datetime, limit: int
) -> tuple[list[tuple[Article, alerts.Article]], bool]:
    """Articles published since ``since`` as the matcher sees them, newest first.

    Returns:
        Up to ``limit`` pairs of (stored row, matcher view), and whether more existed.
    """
    rows = (
        await session.execute(
            select(Article, Source.tier)
            .join(Source, Source.id == Article.source_id)
            .where(Article.published_at >= since)
            .order_by(Article.published_at.desc(), Article.id.desc())
            .limit(limit + 1)
        )
    ).all()
    pairs = [(row[0], to_alerts_article(row[0], tier=row[1])) for row in rows[:limit]]
    return pairs, len(rows) > limit


def to_alerts_article(article: Article, *, tier: str) -> alerts.Article:
    """The matcher's view of a stored article (the same view the poller matches)."""
    return alerts.Article(
        id=str(article.id),
        title=article.title,
        body=article.text or article.summary,
        url=article.url,
        source=article.source_id,
        domain=urlsplit(article.url).hostname or "",
        tier=tier,
        lang=article.language or "",
        countries=frozenset(article.countries),
        entities=frozenset(article.entities),
        published=article.published_at,
    )
