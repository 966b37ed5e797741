"""Articles: stored once per (source, identity); a changed article is updated, not duplicated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Article

UpsertOutcome = Literal["new", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class ArticleData:
    """A normalised item ready to store."""

    identity: str
    guid: str | None
    url: str
    canonical_url: str
    title: str
    summary: str
    text: str
    author: str | None
    published_at: datetime
    published_valid: bool
    language: str | None
    content_hash: str
    countries: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()


async def upsert_article(
    session: AsyncSession, *, source_id: str, data: ArticleData, now: datetime
) -> tuple[Article, UpsertOutcome]:
    """Insert a new article or update the stored one when its content changed."""
    article = (
        await session.execute(
            select(Article).where(Article.source_id == source_id, Article.identity == data.identity)
        )
    ).scalar_one_or_none()
    if article is None:
        article = Article(source_id=source_id, identity=data.identity, fetched_at=now)
        _assign(article, data)
        session.add(article)
        await session.flush()
        return article, "new"
    if article.content_hash == data.content_hash:
        return article, "unchanged"
    _assign(article, data)
    article.updated_at = now
    await session.flush()
    return article, "updated"


_IN_CHUNK = 500


async def upsert_articles(
    session: AsyncSession, *, source_id: str, items: Sequence[ArticleData], now: datetime
) -> list[tuple[Article, UpsertOutcome]]:
    """Store a document's items in a few statements: one lookup, one batched write.

    Same outcomes as :func:`upsert_article`, in the order of ``items``; an identity that occurs
    twice in one document is stored once (its later copies are reported unchanged).
    """
    identities = list(dict.fromkeys(item.identity for item in items))
    stored: dict[str, Article] = {}
    for start in range(0, len(identities), _IN_CHUNK):
        chunk = identities[start : start + _IN_CHUNK]
        rows = await session.execute(
            select(Article).where(Article.source_id == source_id, Article.identity.in_(chunk))
        )
        stored.update((article.identity, article) for article in rows.scalars())
    results: list[tuple[Article, UpsertOutcome]] = []
    seen: set[str] = set()
    fresh: list[Article] = []
    for data in items:
        article = stored.get(data.identity)
        if data.identity in seen:
            assert article is not None
            results.append((article, "unchanged"))
            continue
        seen.add(data.identity)
        if article is None:
            article = Article(source_id=source_id, identity=data.identity, fetched_at=now)
            _assign(article, data)
            stored[data.identity] = article
            fresh.append(article)
            results.append((article, "new"))
        elif article.content_hash == data.content_hash:
            results.append((article, "unchanged"))
        else:
            _assign(article, data)
            article.updated_at = now
            results.append((article, "updated"))
    session.add_all(fresh)
    await session.flush()
    return results


def _assign(article: Article, data: ArticleData) -> None:
    article.guid = data.guid
    article.url = data.url
    article.canonical_url = data.canonical_url
    article.title = data.title
    article.summary = data.summary
    article.text = data.text
    article.author = data.author
    article.published_at = data.published_at
    article.published_valid = data.published_valid
    article.language = data.language
    article.content_hash = data.content_hash
    article.countries = list(data.countries)
    article.entities = list(data.entities)
