"""Rows written through a BulkStatement read back exactly as rows written by SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import Article, Source, Story
from service.runtime import Resources
from service.storage.bulk import BulkStatement

pytestmark = pytest.mark.integration

SOURCES = cast(Table, Source.__table__)
KEYS = [
    "id",
    "name",
    "kind",
    "url",
    "options",
    "tier",
    "interval_minutes",
    "enabled",
    "origin",
    "version",
    "created_at",
    "updated_at",
    "next_poll_at",
    "health",
    "consecutive_failures",
    "items_seen",
    "polls_total",
    "polls_not_modified",
]


def source(source_id: str, at: datetime) -> dict[str, object]:
    return {
        "id": source_id,
        "name": f"Source {source_id}",
        "kind": "feed",
        "url": f"https://news.example.org/{source_id}",
        "options": {"selector": "article", "limit": 3},
        "tier": "news",
        "interval_minutes": 30,
        "enabled": True,
        "origin": "api",
        "version": 1,
        "created_at": at,
        "updated_at": at,
        "next_poll_at": at,
        "health": "new",
        "consecutive_failures": 0,
        "items_seen": 0,
        "polls_total": 0,
        "polls_not_modified": 0,
    }


async def read_back(resources: Resources, source_id: str) -> dict[str, object]:
    async with resources.sessionmaker() as session:
        row = (await session.execute(select(SOURCES).where(SOURCES.c.id == source_id))).one()
    return dict(row._mapping)


async def test_bulk_rows_read_back_like_sqlalchemy_rows(resources: Resources) -> None:
    # A non-UTC offset: the column type normalises it on the way in, as SQLAlchemy does.
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    async with resources.sessionmaker() as session:
        await session.execute(insert(SOURCES), [source("orm", at)])
        await BulkStatement(insert(SOURCES), KEYS).execute_async(
            session, [source("bulk-1", at), source("bulk-2", at)]
        )
        await session.commit()
    expected = await read_back(resources, "orm")
    for source_id in ("bulk-1", "bulk-2"):
        got = await read_back(resources, source_id)
        assert {**got, "id": "orm", "name": "Source orm", "url": expected["url"]} == expected
    assert expected["created_at"] == at.astimezone(UTC)

    later = at + timedelta(hours=1)
    moves = [
        {"b_id": "bulk-1", "next_poll_at": later, "health": "ok"},
        {"b_id": "bulk-2", "next_poll_at": at, "health": "failing"},
    ]
    moving = BulkStatement(
        update(SOURCES).where(SOURCES.c.id == bindparam("b_id")),
        ["b_id", "next_poll_at", "health"],
    )
    # The synchronous path (the delivery job's writer thread) writes the same values.
    with resources.sync_engine.begin() as connection:
        moving.execute(connection, moves)
        moving.execute(connection, [])
    first, second = await read_back(resources, "bulk-1"), await read_back(resources, "bulk-2")
    assert (first["next_poll_at"], first["health"]) == (later.astimezone(UTC), "ok")
    assert (second["next_poll_at"], second["health"]) == (at.astimezone(UTC), "failing")


async def test_bulk_rows_refuse_naive_datetimes(resources: Resources) -> None:
    statement = BulkStatement(insert(SOURCES), KEYS)
    naive = source("naive", datetime(2026, 3, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive datetime"):
        async with resources.sessionmaker() as session:
            await statement.execute_async(session, [naive])


def test_rows_must_set_exactly_the_statement_binds(resources: Resources) -> None:
    statement = BulkStatement(
        update(SOURCES).where(SOURCES.c.id == bindparam("b_id")), ["health", "b_id", "extra"]
    )
    with (
        pytest.raises(ValueError, match="statement binds"),
        resources.sync_engine.begin() as connection,
    ):
        statement.execute(connection, [{"b_id": "x", "health": "ok", "extra": 1}])


STORIES = cast(Table, Story.__table__)
ARTICLES = cast(Table, Article.__table__)
STORY_KEYS = [
    "title",
    "canonical_article_id",
    "first_seen_at",
    "last_seen_at",
    "article_count",
    "source_ids",
]


def story(title: str, at: datetime, outlets: list[str]) -> dict[str, object]:
    return {
        "title": title,
        "canonical_article_id": None,
        "first_seen_at": at,
        "last_seen_at": at,
        "article_count": 1,
        "source_ids": outlets,
    }


@pytest.mark.parametrize("count", [0, 1, 7, 120])
def test_insert_ids_are_the_new_rows_keys_in_row_order(resources: Resources, count: int) -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    statement = BulkStatement(insert(STORIES), STORY_KEYS)
    with resources.sync_engine.connect() as connection:
        # Nothing run on the connection yet: the rows still join its transaction.
        ids = statement.insert_ids(
            connection, [story(f"story {i}", at, ["a", "b"]) for i in range(count)]
        )
        connection.commit()
    assert len(ids) == count
    with resources.sync_engine.connect() as connection:
        titles = {row.id: row.title for row in connection.execute(select(STORIES))}
    assert [titles[story_id] for story_id in ids] == [f"story {i}" for i in range(count)]


def test_insert_ids_roll_back_with_the_transaction(resources: Resources) -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    statement = BulkStatement(insert(STORIES), STORY_KEYS)
    with resources.sync_engine.connect() as connection:
        connection.begin()
        statement.insert_ids(connection, [story("gone", at, [])])
        connection.rollback()
        assert connection.execute(select(STORIES.c.id)).all() == []


def test_insert_ids_raise_sqlalchemy_errors(resources: Resources) -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    row = {
        "source_id": "no-such-source",
        "identity": "x",
        "url": "https://example.org/x",
        "canonical_url": "https://example.org/x",
        "title": "X",
        "summary": "",
        "text": "",
        "published_at": at,
        "published_valid": True,
        "countries": [],
        "entities": [],
        "fetched_at": at,
        "content_hash": "0" * 64,
    }
    statement = BulkStatement(insert(ARTICLES), list(row))
    with resources.sync_engine.connect() as connection, pytest.raises(IntegrityError):
        statement.insert_ids(connection, [row])


def test_insert_ids_need_an_auto_incremented_key(resources: Resources) -> None:
    statement = BulkStatement(insert(SOURCES), KEYS)
    with (
        resources.sync_engine.connect() as connection,
        pytest.raises(TypeError, match="auto-incremented"),
    ):
        statement.insert_ids(connection, [source("x", datetime(2026, 3, 1, tzinfo=UTC))])


def test_rows_sharing_one_value_read_back_like_rows_with_their_own(resources: Resources) -> None:
    # A value object shared by rows is converted once: it must still land in every row, and a
    # tuple is stored as the JSON list SQLAlchemy writes for a list.
    at = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3)))
    shared = ["pk", "ru"]
    statement = BulkStatement(insert(STORIES), STORY_KEYS)
    with resources.sync_engine.connect() as connection:
        ids = statement.insert_ids(
            connection,
            [story("a", at, shared), story("b", at, shared), story("c", at + timedelta(0), ["x"])],
        )
        ids += statement.insert_ids(connection, [story("d", at, ("pk", "ru"))])  # type: ignore[arg-type]
        connection.execute(insert(STORIES), [story("e", at, ["pk", "ru"])])
        connection.commit()
    with resources.sync_engine.connect() as connection:
        stored = {
            row.title: (row.first_seen_at, row.last_seen_at, row.source_ids)
            for row in connection.execute(select(STORIES))
        }
    expected = (at.astimezone(UTC), at.astimezone(UTC), ["pk", "ru"])
    assert stored == {
        "a": expected,
        "b": expected,
        "c": (*expected[:2], ["x"]),
        "d": expected,
        "e": expected,
    }


def test_fetch_reads_rows_as_connection_execute_does(resources: Resources) -> None:
    at = datetime(2026, 3, 1, 9, 30, 15, 5, tzinfo=timezone(timedelta(hours=2)))
    query = select(STORIES.c.id, STORIES.c.first_seen_at, STORIES.c.source_ids).where(
        STORIES.c.title == bindparam("b_title")
    )
    with resources.sync_engine.connect() as connection:
        BulkStatement(insert(STORIES), STORY_KEYS).insert_ids(
            connection,
            [story("a", at, ["x"]), story("a", at + timedelta(days=1), []), story("b", at, [])],
        )
        got = BulkStatement(query, ["b_title"]).fetch(connection, {"b_title": "a"})
        expected = [tuple(row) for row in connection.execute(query, {"b_title": "a"})]
    assert sorted(got) == sorted(expected)
    assert {row[1] for row in got} == {at.astimezone(UTC), (at + timedelta(days=1)).astimezone(UTC)}


async def test_statements_run_in_an_async_sessions_transaction(resources: Resources) -> None:
    # The poller's PostgreSQL path (and SQLite's in-memory one) runs them through run_sync.
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    inserting = BulkStatement(insert(STORIES), STORY_KEYS)
    renaming = BulkStatement(
        update(STORIES).where(STORIES.c.id == bindparam("b_id")), ["b_id", "title"]
    )
    reading = BulkStatement(
        select(STORIES.c.title).where(STORIES.c.id == bindparam("b_id")), ["b_id"]
    )

    def write(session: Session) -> list[Any]:
        connection = session.connection()
        ids = inserting.insert_ids(connection, [story("a", at, []), story("b", at, [])])
        renaming.execute(connection, [{"b_id": ids[1], "title": "c"}])
        return [reading.fetch(connection, {"b_id": story_id}) for story_id in ids]

    async with resources.sessionmaker() as session:
        assert await session.run_sync(write) == [[("a",)], [("c",)]]
        await session.rollback()
    async with resources.sessionmaker() as session:
        assert (await session.execute(select(STORIES.c.id))).all() == []
