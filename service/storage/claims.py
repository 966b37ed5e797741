"""Leased claims: how several processes share work through the database.

One statement picks due rows and stamps them with a lease. On PostgreSQL the inner SELECT
takes row locks with SKIP LOCKED, so two processes never claim the same row; SQLite has a
single writer, which serialises the statement, and ignores FOR UPDATE. A lease that expires
(its process died) makes the row claimable again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


async def claim_due(
    session: AsyncSession,
    model: Any,
    *,
    due_column: InstrumentedAttribute[Any],
    now: datetime,
    owner: str,
    lease_until: datetime,
    limit: int,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[Any]:
    """Lease up to ``limit`` rows of ``model`` whose ``due_column`` is at or before ``now``.

    Returns the claimed primary keys, earliest due first. The caller commits.
    """
    candidates = (
        select(model.id)
        .where(
            due_column <= now,
            or_(model.lease_until.is_(None), model.lease_until < now),
            *where,
        )
        .order_by(due_column, model.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(model)
        .where(model.id.in_(candidates.scalar_subquery()))
        .values(lease_owner=owner, lease_until=lease_until)
        .returning(model.id, due_column)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    # RETURNING has no order: sort again, ties by id so equal due times keep creation order.
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[0]))]


async def release(session: AsyncSession, model: Any, row_id: Any, *, owner: str) -> bool:
    """Drop our lease on one row; False when another process holds it now."""
    statement = (
        update(model)
        .where(model.id == row_id, model.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]
