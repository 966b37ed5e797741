"""Stories: one row per piece of news, however many outlets reported it.

The near-duplicate decision is made by :class:`alerts.stories.StoryIndex`; these functions only
read the recent window for it and keep the story rows (outlets, counts, canonical article).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, func, insert, literal_column, select, update

from alerts.stories import StoryMember, canonical_member, story_text
from service.db.models import Story
from service.storage.articles import ARTICLES, ArticleData, StoredArticle
from service.storage.bulk import BulkStatement
from service.storage.sources import SOURCES

__all__ = [
    "NewStories",
    "StoryEntry",
    "finish_stories",
    "open_stories",
    "recent_story_entries",
    "story_key",
]

# Core tables for the bulk writes: the ORM's bulk layer costs more than the statements.
STORIES = cast(Table, Story.__table__)

# The per-document statements, built once: building one (and its cache key) costs more than
# running it.
_MEMBERS = (
    select(ARTICLES.c.id, ARTICLES.c.published_at, SOURCES.c.tier)
    .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
    .where(ARTICLES.c.id.in_(bindparam("ids", expanding=True)))
)
_EXISTING = select(
    STORIES.c.id,
    STORIES.c.title,
    STORIES.c.canonical_article_id,
    STORIES.c.article_count,
    STORIES.c.source_ids,
).where(STORIES.c.id.in_(bindparam("ids", expanding=True)))
# Rows handed to the driver ready-made (see service.storage.bulk).
_FOUND = BulkStatement(
    insert(STORIES),
    (
        "title",
        "canonical_article_id",
        "first_seen_at",
        "last_seen_at",
        "article_count",
        "source_ids",
    ),
)
_LAST_ARTICLE = BulkStatement(
    select(func.coalesce(func.max(ARTICLES.c.id), literal_column("0"))), ()
)
_SET_CANONICAL = BulkStatement(
    update(STORIES).where(STORIES.c.id == bindparam("b_id")), ("b_id", "canonical_article_id")
)
_UPDATE = BulkStatement(
    update(STORIES).where(STORIES.c.id == bindparam("b_id")),
    ("b_id", "title", "canonical_article_id", "article_count", "last_seen_at", "source_ids"),
)

StoryEntry = tuple[str, str, str]
"""``(article key, story text, story id)`` as :class:`alerts.stories.StoryIndex` takes them."""


def story_key(source_id: str, identity: str) -> str:
    """An article's key in the story index: known before its row (and id) exists."""
    return f"{source_id}\n{identity}"


def recent_story_entries(
    conn: Connection, *, since: datetime, known: Container[str] = ()
) -> list[StoryEntry]:
    """Return the articles fetched since ``since`` that belong to a story.

    Articles whose key (:func:`story_key`) is in ``known`` (the caller's index) are skipped
    without reading their text: the caller already has them.
    """
    ids = conn.execute(
        select(ARTICLES.c.id, ARTICLES.c.source_id, ARTICLES.c.identity).where(
            ARTICLES.c.fetched_at >= since, ARTICLES.c.story_id.is_not(None)
        )
    )
    wanted = [row.id for row in ids if story_key(row.source_id, row.identity) not in known]
    entries: list[StoryEntry] = []
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(
                ARTICLES.c.source_id,
                ARTICLES.c.identity,
                ARTICLES.c.title,
                ARTICLES.c.summary,
                ARTICLES.c.text,
                ARTICLES.c.story_id,
            ).where(ARTICLES.c.id.in_(wanted[start : start + 500]))
        )
        entries.extend(
            (
                story_key(row.source_id, row.identity),
                story_text(row.title, row.summary or row.text),
                str(row.story_id),
            )
            for row in rows
        )
    return entries


def _members(conn: Connection, article_ids: Sequence[int]) -> dict[int, StoryMember]:
    if not article_ids:
        return {}
    rows = conn.execute(_MEMBERS, {"ids": list(article_ids)})
    return {
        row.id: StoryMember(article_key=str(row.id), tier=row.tier, published=row.published_at)
        for row in rows
    }


@dataclass(slots=True)
class _Draft:
    """A story row as the batch leaves it."""

    id: int
    title: str
    canonical_article_id: int | None
    article_count: int
    source_ids: list[str]


@dataclass(frozen=True, slots=True)
class NewStories:
    """The stories a batch of new articles joins, from :func:`open_stories`.

    Attributes:
        story_ids: the story of each article, in the batch's order.
        existing: the earlier stories the batch joins, as stored before it.
        founded: the stories the batch founded, each with the canonical article it was
            inserted with (its founder's likely id, which :func:`finish_stories` checks).
    """

    story_ids: list[int]
    existing: dict[int, _Draft]
    founded: dict[int, int]


def open_stories(
    conn: Connection,
    *,
    articles: Sequence[ArticleData],
    placements: Sequence[int | None],
    source_id: str,
    now: datetime,
) -> NewStories:
    """Give each new article its story id before the article rows are written.

    Inserts one row per story the batch founds, so the articles' INSERT carries their
    ``story_id`` (no second statement per article). A founded story's canonical article, its
    founder unless others join it, has no id yet: the story is stored with the id the founder
    will most likely get, one more than the largest article id per article inserted before it
    (SQLite's choice for a new row, and PostgreSQL's while nothing else inserts).
    :func:`finish_stories` rewrites the stories whose guess was wrong (none, as a rule), in the
    same transaction.

    Args:
        articles: the source's new articles, in the order they are then inserted.
        placements: for each article, the id of the earlier story it joins (``> 0``), ``-(j +
            1)`` to join the story founded by article ``j`` of this batch, or ``None`` to
            found a new story.
        source_id: the articles' source.
        now: the fetch time.
    """
    wanted = {story for story in placements if story is not None and story > 0}
    existing: dict[int, _Draft] = {}
    if wanted:
        rows = conn.execute(_EXISTING, {"ids": list(wanted)})
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
    founders = [
        i
        for i, story in enumerate(placements)
        if story is None or (story > 0 and story not in existing)
    ]
    last = _LAST_ARTICLE.fetch(conn, {})[0][0] if founders else 0
    outlets = [source_id]  # one object for every row: its JSON is made once
    ids = _FOUND.insert_ids(
        conn,
        [
            {
                "title": articles[i].title,
                "canonical_article_id": last + i + 1,
                "first_seen_at": now,
                "last_seen_at": now,
                "article_count": 1,
                "source_ids": outlets,
            }
            for i in founders
        ],
    )
    founded = dict(zip(founders, ids, strict=True))
    story_ids: list[int] = []
    for i, story in enumerate(placements):
        if i in founded:
            story_ids.append(founded[i])
        elif story is not None and story > 0:
            story_ids.append(story)
        else:
            assert story is not None  # a founder's index is in founded
            story_ids.append(story_ids[-story - 1])
    return NewStories(
        story_ids, existing, {story_id: last + i + 1 for i, story_id in founded.items()}
    )


def finish_stories(
    conn: Connection,
    *,
    opened: NewStories,
    articles: Sequence[StoredArticle],
    tier: str,
    now: datetime,
) -> None:
    """Bring the batch's stories up to date now that its articles have ids.

    Each story remembers every outlet (source id) that reported it; its canonical article is
    the official-tier one if any, else the earliest published. A founded story that got no
    other article (most of them) was inserted as it stays, its founder's id guessed right as
    a rule (else it is set); the others are updated in full.

    Args:
        opened: from :func:`open_stories` for the same batch.
        articles: the batch's articles as written, in the same order.
        tier: the tier of the articles' source.
        now: the fetch time.
    """
    existing = opened.existing
    canonical = _members(
        conn,
        [s.canonical_article_id for s in existing.values() if s.canonical_article_id is not None],
    )
    drafts: dict[int, _Draft] = dict(existing)
    best: dict[int, StoryMember] = {}
    # A founder is its story's only member so far, hence its canonical article; most stay
    # alone, so their member is made only once another article joins.
    founders: dict[int, StoredArticle] = {}
    for article, story_id in zip(articles, opened.story_ids, strict=True):
        data = article.data
        story = drafts.get(story_id)
        if story is None:
            drafts[story_id] = _Draft(story_id, data.title, article.id, 1, [article.source_id])
            founders[story_id] = article
            continue
        newcomer = StoryMember(str(article.id), tier, data.published_at)
        story.article_count += 1
        if article.source_id not in story.source_ids:
            story.source_ids = [*story.source_ids, article.source_id]
        current = best.get(story_id)
        if current is None and story_id in founders:
            founder = founders[story_id]
            current = StoryMember(str(founder.id), tier, founder.data.published_at)
        elif current is None and story.canonical_article_id is not None:
            current = canonical.get(story.canonical_article_id)
        winner = canonical_member([newcomer] if current is None else [current, newcomer])
        best[story_id] = winner
        if winner is newcomer:
            story.canonical_article_id = article.id
            story.title = data.title
    # A founder alone in its story is its canonical article: stored already, unless the id
    # guessed for it was not the one it got.
    alone = {story_id for story_id in opened.founded if drafts[story_id].article_count == 1}
    _SET_CANONICAL.execute(
        conn,
        [
            {"b_id": story_id, "canonical_article_id": drafts[story_id].canonical_article_id}
            for story_id in alone
            if drafts[story_id].canonical_article_id != opened.founded[story_id]
        ],
    )
    _UPDATE.execute(
        conn,
        [
            {
                "b_id": d.id,
                "title": d.title,
                "canonical_article_id": d.canonical_article_id,
                "article_count": d.article_count,
                "last_seen_at": now,
                "source_ids": d.source_ids,
            }
            for story_id, d in drafts.items()
            if story_id not in alone
        ],
    )
