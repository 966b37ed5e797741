"""Articles: stored once per (source, identity); a changed article is updated, not duplicated."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.db.models import Article
from service.storage.bulk import BulkStatement

UpsertOutcome = Literal["new", "updated", "unchanged"]

# Core table rather than the mapped class: the ORM's bulk-insert layer doubles the CPU cost
# of inserting a document's rows.
# (A declarative class's ``__table__`` is a Table; SQLAlchemy types it as any FromClause.)
ARTICLES = cast(Table, Article.__table__)


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


_IN_CHUNK = 512


# The lookup of a document's stored items, one statement per list length rounded up to a
# power of two (the list padded with its last identity): SQLAlchemy's expanding IN renders
# and binds its list afresh at every execution, which cost more than SQLite's lookups.
_STORED: dict[int, BulkStatement] = {}


def _stored(size: int) -> BulkStatement:
    statement = _STORED.get(size)
    if statement is None:
        names = [f"i{k}" for k in range(size)]
        statement = _STORED[size] = BulkStatement(
            select(ARTICLES.c.id, ARTICLES.c.identity, ARTICLES.c.content_hash).where(
                ARTICLES.c.source_id == bindparam("source_id"),
                ARTICLES.c.identity.in_([bindparam(name) for name in names]),
            ),
            ["source_id", *names],
        )
    return statement


_CONTENT = (
    "guid",
    "url",
    "canonical_url",
    "title",
    "summary",
    "text",
    "author",
    "published_at",
    "published_valid",
    "language",
    "content_hash",
    "countries",
    "entities",
)
# Rows handed to the driver ready-made: through SQLAlchemy's executemany, binding a row cost
# more than SQLite's writing it.
_INSERT = BulkStatement(
    insert(ARTICLES), ("source_id", "identity", *_CONTENT, "fetched_at", "story_id")
)
_UPDATE = BulkStatement(
    update(ARTICLES).where(ARTICLES.c.id == bindparam("b_id")), ("b_id", *_CONTENT, "updated_at")
)


@dataclass(frozen=True, slots=True)
class StoredArticle:
    """An article of :func:`upsert_articles`: its row id and the data it was given.

    For an ``"unchanged"`` article, ``data`` is the incoming copy (same content hash as the
    stored row, which was left as it is), not passed through ``complete``.
    """

    id: int
    source_id: str
    data: ArticleData


@dataclass(slots=True)
class ArticlePlan:
    """What storing a document's items will do, decided before anything is written.

    Attributes:
        source_id: the source the items come from.
        outcomes: each item's data (completed when new or changed) and outcome, in order.
        fresh: the new items, to insert.
        changed: the changed items with their row ids, to update.
        ids: row id by identity of the stored items (the new ones once written).
    """

    source_id: str
    outcomes: list[tuple[ArticleData, UpsertOutcome]]
    fresh: list[ArticleData]
    changed: list[tuple[int, ArticleData]]
    ids: dict[str, int]


def plan_articles(
    conn: Connection,
    *,
    source_id: str,
    items: Sequence[ArticleData],
    complete: Callable[[ArticleData], ArticleData] | None = None,
) -> ArticlePlan:
    """Look up a document's items (one query) and sort them into new, changed and unchanged.

    An identity that occurs twice in one document is stored once (its later copies are
    reported unchanged). ``complete`` is applied to new and changed items only.
    """
    identities = list(dict.fromkeys(item.identity for item in items))
    stored: dict[str, tuple[int, str]] = {}
    for start in range(0, len(identities), _IN_CHUNK):
        chunk = identities[start : start + _IN_CHUNK]
        size = 1 << (len(chunk) - 1).bit_length()
        chunk += chunk[-1:] * (size - len(chunk))
        parameters = {f"i{k}": identity for k, identity in enumerate(chunk)}
        parameters["source_id"] = source_id
        for row_id, identity, digest in _stored(size).fetch(conn, parameters):
            stored[identity] = (row_id, digest)
    outcomes: list[tuple[ArticleData, UpsertOutcome]] = []
    first: dict[str, ArticleData] = {}
    fresh: list[ArticleData] = []
    changed: list[tuple[int, ArticleData]] = []
    for data in items:
        if data.identity in first:
            outcomes.append((first[data.identity], "unchanged"))
            continue
        first[data.identity] = data
        row = stored.get(data.identity)
        if row is not None and row[1] == data.content_hash:
            outcomes.append((data, "unchanged"))
            continue
        if complete is not None:
            data = complete(data)
            first[data.identity] = data
        if row is None:
            fresh.append(data)
            outcomes.append((data, "new"))
        else:
            changed.append((row[0], data))
            outcomes.append((data, "updated"))
    ids = {identity: row[0] for identity, row in stored.items()}
    return ArticlePlan(source_id, outcomes, fresh, changed, ids)


def complete_plan(plan: ArticlePlan, complete: Callable[[ArticleData], ArticleData]) -> ArticlePlan:
    """Return ``plan`` with ``complete`` applied to its new and changed items (only)."""
    done: dict[str, ArticleData] = {}
    fresh = []
    for data in plan.fresh:
        fresh.append(done.setdefault(data.identity, complete(data)))
    changed = []
    for row_id, data in plan.changed:
        changed.append((row_id, done.setdefault(data.identity, complete(data))))
    outcomes = [(done.get(data.identity, data), outcome) for data, outcome in plan.outcomes]
    return ArticlePlan(plan.source_id, outcomes, fresh, changed, plan.ids)


def write_articles(
    conn: Connection,
    plan: ArticlePlan,
    *,
    now: datetime,
    story_ids: Mapping[str, int] | None = None,
) -> list[tuple[StoredArticle, UpsertOutcome]]:
    """Insert the plan's new items (one statement) and update its changed ones (one more).

    Args:
        conn: the caller's connection, in the caller's transaction.
        plan: from :func:`plan_articles`.
        now: the fetch time.
        story_ids: the story of each new item, by identity, written with the row (so no
            second statement has to set it).
    """
    source_id = plan.source_id
    ids = plan.ids
    if plan.fresh:
        stories = story_ids or {}
        inserted = _INSERT.insert_ids(
            conn,
            [
                {
                    "source_id": source_id,
                    "identity": d.identity,
                    "guid": d.guid,
                    "url": d.url,
                    "canonical_url": d.canonical_url,
                    "title": d.title,
                    "summary": d.summary,
                    "text": d.text,
                    "author": d.author,
                    "published_at": d.published_at,
                    "published_valid": d.published_valid,
                    "language": d.language,
                    "content_hash": d.content_hash,
                    # The tuples themselves, stored as JSON lists: one object shared by many
                    # rows (the empty tuple) is converted once per statement.
                    "countries": d.countries,
                    "entities": d.entities,
                    "fetched_at": now,
                    "story_id": stories.get(d.identity),
                }
                for d in plan.fresh
            ],
        )
        ids.update(zip([d.identity for d in plan.fresh], inserted, strict=True))
    if plan.changed:
        _UPDATE.execute(
            conn,
            [
                {"b_id": row_id, "updated_at": now, **_columns(data)}
                for row_id, data in plan.changed
            ],
        )
    return [
        (StoredArticle(ids[data.identity], source_id, data), outcome)
        for data, outcome in plan.outcomes
    ]


async def upsert_articles(
    session: AsyncSession,
    *,
    source_id: str,
    items: Sequence[ArticleData],
    now: datetime,
    complete: Callable[[ArticleData], ArticleData] | None = None,
) -> list[tuple[StoredArticle, UpsertOutcome]]:
    """Store a document's items in a few statements: one lookup, one insert, one update.

    Same outcomes as :func:`upsert_article`, in the order of ``items``; an identity that occurs
    twice in one document is stored once (its later copies are reported unchanged). Rows are
    written with Core bulk statements on the session's connection (one round trip each), not
    ORM objects: building and flushing an ORM object per item cost more than normalising the
    item. New articles get no story here (the poller files them with
    :func:`plan_articles` and :func:`write_articles` directly).

    Args:
        session: the caller's session (the caller commits).
        source_id: the source the items come from.
        items: the document's normalised items.
        now: the fetch time.
        complete: applied to new and changed items only, before they are written (language
            detection and enrichment: unchanged items, most of a re-polled feed, skip them).
    """

    def run(sync: Session) -> list[tuple[StoredArticle, UpsertOutcome]]:
        conn = sync.connection()
        plan = plan_articles(conn, source_id=source_id, items=items, complete=complete)
        return write_articles(conn, plan, now=now)

    return await session.run_sync(run)


def _columns(data: ArticleData) -> dict[str, object]:
    return {
        "guid": data.guid,
        "url": data.url,
        "canonical_url": data.canonical_url,
        "title": data.title,
        "summary": data.summary,
        "text": data.text,
        "author": data.author,
        "published_at": data.published_at,
        "published_valid": data.published_valid,
        "language": data.language,
        "content_hash": data.content_hash,
        "countries": data.countries,
        "entities": data.entities,
    }


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
