"""Stories: one row per piece of news, however many outlets reported it.

The near-duplicate decision is made by :class:`alerts.stories.StoryIndex`; these functions only
read the recent window for it and keep the story rows (outlets, counts, canonical article).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.stories import StoryMember, canonical_member, story_text
from service.db.models import Article, Source, Story
from service.storage.articles import ARTICLES, StoredArticle

__all__ = ["StoryEntry", "attach_to_story", "file_into_stories", "recent_story_entries"]

# Core tables for the bulk writes: the ORM's bulk layer costs more than the statements.
STORIES = cast(Table, Story.__table__)

StoryEntry = tuple[str, str, str]
"""``(article id, story text, story id)`` as :class:`alerts.stories.StoryIndex` takes them."""


async def recent_story_entries(
    session: AsyncSession, *, since: datetime, known: Container[str] = ()
) -> list[StoryEntry]:
    """Return the articles fetched since ``since`` that belong to a story.

    Articles whose id (as text) is in ``known`` (the caller's index) are skipped without
    reading their text: the caller already has them.
    """
    ids = await session.execute(
        select(Article.id).where(Article.fetched_at >= since, Article.story_id.is_not(None))
    )
    wanted = [article_id for article_id in ids.scalars() if str(article_id) not in known]
    entries: list[StoryEntry] = []
    for start in range(0, len(wanted), 500):
        rows = await session.execute(
            select(
                Article.id, Article.title, Article.summary, Article.text, Article.story_id
            ).where(Article.id.in_(wanted[start : start + 500]))
        )
        entries.extend(
            (str(row.id), story_text(row.title, row.summary or row.text), str(row.story_id))
            for row in rows
        )
    return entries


async def _member(session: AsyncSession, article_id: int) -> StoryMember | None:
    row = (
        await session.execute(
            select(Article.id, Article.published_at, Source.tier)
            .join(Source, Source.id == Article.source_id)
            .where(Article.id == article_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return StoryMember(article_key=str(row.id), tier=row.tier, published=row.published_at)


async def attach_to_story(
    session: AsyncSession,
    *,
    article: Article,
    tier: str,
    story_id: int | None,
    now: datetime,
) -> Story:
    """Put ``article`` in story ``story_id`` (or a new story) and return the story.

    The story remembers every outlet (source id) that reported it; its canonical article is
    the official-tier one if any, else the earliest published.
    """
    story = await session.get(Story, story_id) if story_id is not None else None
    if story is None:
        story = Story(
            title=article.title,
            canonical_article_id=article.id,
            first_seen_at=now,
            last_seen_at=now,
            article_count=1,
            source_ids=[article.source_id],
        )
        session.add(story)
        await session.flush()
        article.story_id = story.id
        return story
    article.story_id = story.id
    story.article_count += 1
    story.last_seen_at = now
    if article.source_id not in story.source_ids:
        story.source_ids = [*story.source_ids, article.source_id]
    newcomer = StoryMember(article_key=str(article.id), tier=tier, published=article.published_at)
    current = (
        await _member(session, story.canonical_article_id)
        if story.canonical_article_id is not None
        else None
    )
    best = canonical_member([newcomer] if current is None else [current, newcomer])
    if best is newcomer:
        story.canonical_article_id = article.id
        story.title = article.title
    await session.flush()
    return story


async def _members(session: AsyncSession, article_ids: Sequence[int]) -> dict[int, StoryMember]:
    if not article_ids:
        return {}
    rows = await session.execute(
        select(Article.id, Article.published_at, Source.tier)
        .join(Source, Source.id == Article.source_id)
        .where(Article.id.in_(list(article_ids)))
    )
    return {
        row.id: StoryMember(article_key=str(row.id), tier=row.tier, published=row.published_at)
        for row in rows
    }


@dataclass(slots=True)
class _Draft:
    """A story row as the batch leaves it (``id`` is None until a new one is inserted)."""

    id: int | None
    title: str
    canonical_article_id: int | None
    article_count: int
    source_ids: list[str]


async def file_into_stories(
    session: AsyncSession,
    *,
    placements: Sequence[tuple[StoredArticle, int | None]],
    tier: str,
    now: datetime,
) -> dict[int, int]:
    """Batch form of :func:`attach_to_story` for one source's new articles.

    The stories are decided in memory and written with three bulk statements (new stories,
    changed stories, the articles' story ids) instead of one ORM flush per row.

    Args:
        placements: each new article with the id of the story it joins, or ``None`` to found
            a new story; an article may join a story founded earlier in the same batch by
            naming ``-article.id`` of its founder.
        tier: the tier of the articles' source.
        now: the fetch time.

    Returns:
        The story id of every placed article, by article id.
    """
    wanted = {story_id for _, story_id in placements if story_id is not None and story_id > 0}
    existing: dict[int, _Draft] = {}
    if wanted:
        rows = await session.execute(
            select(
                Story.id,
                Story.title,
                Story.canonical_article_id,
                Story.article_count,
                Story.source_ids,
            ).where(Story.id.in_(list(wanted)))
        )
        existing = {
            row.id: _Draft(
                row.id,
                row.title,
                row.canonical_article_id,
                row.article_count,
                list(row.source_ids),
            )
            for row in rows
        }
    canonical = await _members(
        session,
        [s.canonical_article_id for s in existing.values() if s.canonical_article_id is not None],
    )
    founded: dict[int, _Draft] = {}
    best: dict[int, StoryMember] = {}
    out: dict[int, _Draft] = {}
    for article, story_id in placements:
        data = article.data
        newcomer = StoryMember(str(article.id), tier, data.published_at)
        story: _Draft | None = None
        if story_id is not None and story_id > 0:
            story = existing.get(story_id)
        elif story_id is not None:
            story = founded.get(-story_id)
        if story is None:
            story = _Draft(None, data.title, article.id, 0, [])
            founded[article.id] = story
            best[id(story)] = newcomer
        story.article_count += 1
        if article.source_id not in story.source_ids:
            story.source_ids = [*story.source_ids, article.source_id]
        current = best.get(id(story))
        if current is None and story.canonical_article_id is not None:
            current = canonical.get(story.canonical_article_id)
        winner = canonical_member([newcomer] if current is None else [current, newcomer])
        best[id(story)] = winner
        if winner is newcomer:
            story.canonical_article_id = article.id
            story.title = data.title
        out[article.id] = story
    drafts = list(founded.values())
    if drafts:
        # Each new story's canonical article is one of its own articles, so no two share it:
        # it pairs the returned ids with the drafts in whatever order the rows come back.
        inserted = await session.execute(
            insert(STORIES).returning(STORIES.c.id, STORIES.c.canonical_article_id),
            [
                {
                    "title": d.title,
                    "canonical_article_id": d.canonical_article_id,
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "article_count": d.article_count,
                    "source_ids": d.source_ids,
                }
                for d in drafts
            ],
        )
        by_canonical = {d.canonical_article_id: d for d in drafts}
        for row in inserted:
            by_canonical[row.canonical_article_id].id = row.id
    new_drafts = {id(d) for d in drafts}
    touched = {id(d): d for d in out.values() if id(d) not in new_drafts}
    if touched:
        await session.execute(
            update(Story),
            [
                {
                    "id": d.id,
                    "title": d.title,
                    "canonical_article_id": d.canonical_article_id,
                    "article_count": d.article_count,
                    "last_seen_at": now,
                    "source_ids": d.source_ids,
                }
                for d in touched.values()
            ],
        )
    filed = {article_id: draft.id for article_id, draft in out.items() if draft.id is not None}
    if filed:
        await session.execute(
            update(ARTICLES)
            .where(ARTICLES.c.id == bindparam("article_id"))
            .values(story_id=bindparam("story_id")),
            [{"article_id": a, "story_id": s} for a, s in filed.items()],
        )
    return filed
