"""Articles: stored once per (source, identity); a changed article is updated, not duplicated."""

from __future__ import annotations

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
