"""Article rows written by the ingest's ready-made statements equal those SQLAlchemy's Core
statements wrote before them (the old statements are kept here as the reference)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, bindparam, insert, select, update

from service.db.base import UTCDateTime
from service.runtime import Resources
from service.storage.articles import ARTICLES, ArticleData, plan_articles, write_articles
from service.storage.sources import SOURCES
from tests.support.articles import article_data

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 8, 15, 30, 250000, tzinfo=UTC)

# The statements write_articles ran through Connection.execute until the ingest moved to
# BulkStatement.
_OLD_INSERT = (
    insert(ARTICLES)
    .values(
        published_at=bindparam("b_published_at", type_=UTCDateTime()),
        fetched_at=bindparam("b_fetched_at", type_=UTCDateTime()),
    )
    .returning(ARTICLES.c.id, ARTICLES.c.identity)
)
_OLD_UPDATE = update(ARTICLES).where(ARTICLES.c.id == bindparam("row_id"))


def _old_columns(data: ArticleData) -> dict[str, object]:
    return {
        "guid": data.guid,
        "url": data.url,
        "canonical_url": data.canonical_url,
        "title": data.title,
        "summary": data.summary,
        "text": data.text,
        "author": data.author,
        "published_valid": data.published_valid,
        "language": data.language,
        "content_hash": data.content_hash,
        "countries": list(data.countries),
        "entities": list(data.entities),
    }


def old_insert(conn: Connection, source_id: str, items: list[ArticleData]) -> None:
    if not items:
        return
    conn.execute(
        _OLD_INSERT,
        [
            {
                "source_id": source_id,
                "identity": d.identity,
                "b_fetched_at": NOW,
                "b_published_at": d.published_at,
                "story_id": None,
                **_old_columns(d),
            }
            for d in items
        ],
    )


def old_update(conn: Connection, rows: list[tuple[int, ArticleData]], now: datetime) -> None:
    if not rows:
        return
    conn.execute(
        _OLD_UPDATE,
        [
            {
                "row_id": row_id,
                **_old_columns(data),
                "published_at": data.published_at,
                "updated_at": now,
            }
            for row_id, data in rows
        ],
    )


# Text a database takes: PostgreSQL refuses NUL characters, and lone surrogates are no UTF-8.
_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
_WORD = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-3, minutes=-30))]
)


@st.composite
def articles(draw: st.DrawFn) -> list[ArticleData]:
    identities = draw(st.lists(_WORD.map(lambda w: "id:" + w), unique=True, max_size=8))
    # One tuple object shared by several rows (as the empty tuple is) must reach them all.
    shared = draw(st.tuples(_WORD, _WORD))
    return [
        ArticleData(
            identity=identity,
            guid=draw(st.none() | _TEXT),
            url=draw(_TEXT),
            canonical_url=draw(_TEXT),
            title=draw(_TEXT),
            summary=draw(_TEXT),
            text=draw(_TEXT),
            author=draw(st.none() | _TEXT),
            published_at=draw(
                st.datetimes(
                    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
                    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                    timezones=_ZONES,
                )
            ),
            published_valid=draw(st.booleans()),
            language=draw(st.none() | _WORD),
            content_hash=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
            countries=draw(st.just(shared) | st.lists(_WORD, max_size=3).map(tuple)),
            entities=draw(st.just(()) | st.just(shared) | st.lists(_WORD, max_size=3).map(tuple)),
        )
        for identity in identities
    ]


def stored(conn: Connection, source_id: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(ARTICLES).where(ARTICLES.c.source_id == source_id))
    return {
        row.identity: {k: v for k, v in row._mapping.items() if k not in ("id", "source_id")}
        for row in rows
    }


def add_source(conn: Connection, source_id: str, tier: str = "news") -> None:
    conn.execute(
        insert(SOURCES),
        {
            "id": source_id,
            "name": source_id,
            "kind": "feed",
            "url": f"https://example.org/{source_id}",
            "options": {},
            "tier": tier,
            "interval_minutes": 30,
            "enabled": True,
            "origin": "api",
            "version": 1,
            "created_at": NOW,
            "updated_at": NOW,
            "next_poll_at": NOW,
            "health": "new",
            "consecutive_failures": 0,
            "items_seen": 0,
            "polls_total": 0,
            "polls_not_modified": 0,
        },
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=articles(), data=st.data())
def test_written_articles_equal_the_core_statements_rows(
    resources: Resources, items: list[ArticleData], data: st.DataObject
) -> None:
    with resources.sync_engine.connect() as conn:
        conn.begin()
        try:
            add_source(conn, "old")
            add_source(conn, "new")
            old_insert(conn, "old", items)
            plan = plan_articles(conn, source_id="new", items=items)
            written = write_articles(conn, plan, now=NOW)
            assert stored(conn, "new") == stored(conn, "old")
            ids = {row.id: row.identity for row in conn.execute(select(ARTICLES))}
            assert [(ids[article.id], outcome) for article, outcome in written] == [
                (item.identity, "new") for item in items
            ]

            # Changed items are updated in place, the same way.
            picked = data.draw(st.lists(st.sampled_from(items), unique=True)) if items else []
            changed = [
                replace(item, title=item.title + "!", content_hash="f" * 64, countries=())
                for item in picked
            ]
            later = NOW + timedelta(hours=1)
            old_ids = {
                row.identity: row.id
                for row in conn.execute(select(ARTICLES).where(ARTICLES.c.source_id == "old"))
            }
            old_update(conn, [(old_ids[item.identity], item) for item in changed], later)
            plan = plan_articles(conn, source_id="new", items=changed)
            assert [outcome for _, outcome in write_articles(conn, plan, now=later)] == [
                "updated"
            ] * len(changed)
            assert stored(conn, "new") == stored(conn, "old")
        finally:
            conn.rollback()


@pytest.mark.parametrize("count", [1, 2, 3, 63, 64, 65, 700])
def test_plan_finds_every_stored_item_whatever_the_batch_size(
    resources: Resources, count: int
) -> None:
    items = [
        article_data(
            f"item-{n}",
            url=f"https://example.org/{n}",
            title=f"Item {n}",
            published_at=NOW,
            content_hash=f"{n:064d}",
        )
        for n in range(count)
    ]
    with resources.sync_engine.connect() as conn:
        conn.begin()
        try:
            add_source(conn, "s")
            # Every third item stored, half of those since changed; a repeat at the end.
            stored_items = items[::3]
            write_articles(conn, plan_articles(conn, source_id="s", items=stored_items), now=NOW)
            again = [
                replace(item, content_hash="f" * 64) if n % 6 == 3 else item
                for n, item in enumerate(items)
            ] + items[-1:]
            plan = plan_articles(conn, source_id="s", items=again)
            outcomes = [outcome for _, outcome in plan.outcomes]
            assert outcomes == [
                "new" if n % 3 else ("updated" if n % 6 == 3 else "unchanged") for n in range(count)
            ] + ["unchanged"]
            assert set(plan.ids) == {item.identity for item in stored_items}
        finally:
            conn.rollback()
