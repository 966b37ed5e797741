"""Optimistic concurrency on rows with a ``version`` column.

The version is bumped with a guarded ``UPDATE ... WHERE version = :expected`` before any other
change: on PostgreSQL the row lock makes a concurrent writer wait and then find the version
moved; on SQLite writers are serialised anyway. Either way the second writer gets 412 instead of
silently overwriting the first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from service.exceptions import PreconditionFailedError


async def bump_version(session: AsyncSession, row: Any, expected: int) -> int:
    """Move ``row`` from version ``expected`` to the next one, or fail if it moved already.

    Args:
        session: the caller's session (its transaction stays open).
        row: a mapped object with ``id`` and ``version`` columns.
        expected: the version the client read (from ``If-Match``).

    Returns:
        The new version, also set on ``row``.

    Raises:
        PreconditionFailedError: another writer changed the row since it was read.
    """
    model = type(row)
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(model)
        .where(model.id == row.id, model.version == expected)
        .values(version=expected + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise PreconditionFailedError()
    row.version = expected + 1
    return expected + 1


async def delete_versioned(session: AsyncSession, row: Any, expected: int) -> None:
    """Delete ``row`` only if it is still at version ``expected``.

    Raises:
        PreconditionFailedError: another writer changed the row since it was read.
    """
    model = type(row)
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        delete(model)
        .where(model.id == row.id, model.version == expected)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise PreconditionFailedError()
    session.expunge(row)


def set_fields(
    row: Any, changes: Mapping[str, Any], editable: Collection[str], *, now: datetime
) -> None:
    """Copy the ``editable`` fields of ``changes`` onto ``row`` and stamp ``updated_at``."""
    for name, value in changes.items():
        if name in editable:
            setattr(row, name, value)
    row.updated_at = now
