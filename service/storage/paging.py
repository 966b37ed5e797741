"""Offset pagination with a total, in a stable order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, String, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from service.exceptions import NotFoundError

T = TypeVar("T")


async def paginate(
    session: AsyncSession,
    statement: Select[T],
    *,
    order_by: Sequence[Any],
    limit: int,
    offset: int,
) -> tuple[list[T], int]:
    """Return one page of ``statement``'s rows and how many rows match in all.

    Args:
        statement: a filtered ``select`` of one entity.
        order_by: the sort columns; they must end with a unique column so pages never
            overlap or skip rows when values tie.
        limit / offset: the page.
    """
    total = (
        await session.execute(select(func.count()).select_from(statement.order_by(None).subquery()))
    ).scalar_one()
    rows = (
        (await session.execute(statement.order_by(*order_by).limit(limit).offset(offset)))
        .scalars()
        .all()
    )
    return list(rows), int(total)


def sort_columns(
    sort: str, columns: dict[str, InstrumentedAttribute[Any]], tiebreak: InstrumentedAttribute[Any]
) -> list[Any]:
    """Turn ``name`` or ``-name`` into ORDER BY columns ending with the unique ``tiebreak``."""
    descending = sort.startswith("-")
    column = columns[sort.lstrip("-")]
    if descending:
        return [column.desc(), tiebreak.desc()]
    return [column.asc(), tiebreak.asc()]


def snapshot(row: Any, fields: Sequence[str]) -> dict[str, Any]:
    """A JSON-ready copy of ``fields`` of ``row``, for the audit log."""
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(row, name)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, list):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        values[name] = value
    return values


def json_text(column: Any) -> ColumnElement[str]:
    """A JSON column as text, to find a quoted value in a list with LIKE (SQLite and PG)."""
    return cast(column, String)


def contains_text(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """The free-text filter of the list endpoints: ``q`` anywhere in any column, any case."""
    pattern = f"%{q.lower()}%"
    return or_(*(column.ilike(pattern) for column in columns))


async def get_or_raise(session: AsyncSession, model: type[T], key: Any, what: str) -> T:
    """The row of ``model`` with primary key ``key``.

    Raises:
        NotFoundError: there is none (the message names ``what`` and the key).
    """
    row = await session.get(model, key)
    if row is None:
        raise NotFoundError(f"no {what} {key!r}")
    return row
