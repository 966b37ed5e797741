"""Sources as the admin API edits them. Session-first; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Source
from service.exceptions import ConflictError
from service.storage.paging import contains_text, get_or_raise, paginate, snapshot, sort_columns
from service.storage.versioning import bump_version, delete_versioned, set_fields

# The Core table, for the poller's per-document update (no ORM unit of work).
SOURCES = cast(Table, Source.__table__)

EDITABLE = (
    "name",
    "kind",
    "url",
    "tier",
    "country",
    "language",
    "interval_minutes",
    "enabled",
    "options",
)
AUDITED = ("id", *EDITABLE, "origin", "version")
SORTS = {"id": Source.id, "name": Source.name, "updated_at": Source.updated_at}


def source_snapshot(source: Source) -> dict[str, Any]:
    return snapshot(source, AUDITED)


async def get_source(session: AsyncSession, source_id: str) -> Source:
    return await get_or_raise(session, Source, source_id, "source")


async def list_sources(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    kind: str | None = None,
    tier: str | None = None,
    country: str | None = None,
    health: str | None = None,
    q: str | None = None,
    sort: str = "id",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Source], int]:
    statement: Select[Source] = select(Source)
    if enabled is not None:
        statement = statement.where(Source.enabled.is_(enabled))
    if kind is not None:
        statement = statement.where(Source.kind == kind)
    if tier is not None:
        statement = statement.where(Source.tier == tier)
    if country is not None:
        statement = statement.where(Source.country == country)
    if health is not None:
        statement = statement.where(Source.health == health)
    if q:
        statement = statement.where(contains_text(q, Source.name, Source.id, Source.url))
    return await paginate(
        session,
        statement,
        order_by=sort_columns(sort, dict(SORTS), Source.id),
        limit=limit,
        offset=offset,
    )


async def create_source(
    session: AsyncSession, values: Mapping[str, Any], *, now: datetime
) -> Source:
    """Add a source, due for polling at once.

    Raises:
        ConflictError: the id is taken.
    """
    if await session.get(Source, values["id"]) is not None:
        raise ConflictError(f"a source with id {values['id']!r} exists")
    source = Source(
        **values,
        origin="api",
        version=1,
        created_at=now,
        updated_at=now,
        next_poll_at=now,
        health="new",
        consecutive_failures=0,
        items_seen=0,
        polls_total=0,
        polls_not_modified=0,
    )
    session.add(source)
    await session.flush()
    return source


async def update_source(
    session: AsyncSession,
    source: Source,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    now: datetime,
) -> Source:
    """Apply ``changes`` if the source is still at ``expected_version``.

    A changed URL forgets the validators (ETag, Last-Modified) of the old one and is polled
    at once; re-enabling a source makes it due at once.

    Raises:
        PreconditionFailedError: the source changed meanwhile.
    """
    await bump_version(session, source, expected_version)
    if "url" in changes and changes["url"] != source.url:
        source.etag = None
        source.last_modified = None
        source.next_poll_at = now
    if changes.get("enabled") is True and not source.enabled:
        source.next_poll_at = now
    set_fields(source, changes, EDITABLE, now=now)
    await session.flush()
    return source


async def delete_source(session: AsyncSession, source: Source, *, expected_version: int) -> None:
    """Delete a source; the database's ON DELETE CASCADE removes its articles and matches."""
    await delete_versioned(session, source, expected_version)
