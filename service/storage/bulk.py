"""Executemany statements compiled once and fed plain rows, for the delivery job's hot writes.

SQLAlchemy's executemany runs every row's parameters through the compiled statement's
machinery (building the parameter dict, looking processors up, checking keys): on SQLite
that costs about three times what the driver itself spends on the row, and the delivery job
writes several rows per message. A :class:`BulkStatement` compiles its statement once per
dialect, keeps the column types' bind processors, and hands the driver ready tuples (or
dicts, for named parameter styles) through ``exec_driver_sql``. The values still go through
the column types (``UTCDateTime`` refuses naive datetimes, SQLite gets its text format), so
the rows read back exactly as if SQLAlchemy had written them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Update
from sqlalchemy.ext.asyncio import AsyncSession

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    processors: tuple[_Processor | None, ...]
    positional: bool


class _Memo:
    """A bind processor that reuses its last result for the very same value.

    The job's rows share their timestamps (one ``now`` for every row of a batch), and a
    datetime's conversion through its column type costs more than the rest of its row.
    """

    __slots__ = ("_last", "_process", "_result")

    def __init__(self, process: _Processor) -> None:
        self._process = process
        self._last: Any = _Memo
        self._result: Any = None

    def __call__(self, value: Any) -> Any:
        # Identity, not equality: only the same (immutable) object is known to convert
        # the same way; a mutable value (a JSON dict) may have changed in between.
        if value is not self._last or not isinstance(value, datetime):
            self._result = self._process(value)
            self._last = value
        return self._result


class BulkStatement:
    """An INSERT or UPDATE run as one executemany over rows that all set ``keys``.

    ``keys`` are the row keys: the columns to set plus the statement's own bind parameters
    (``bindparam("b_id")`` in a WHERE clause). An INSERT is compiled without RETURNING.
    """

    def __init__(self, statement: Insert | Update, keys: Sequence[str]) -> None:
        if isinstance(statement, Insert):
            # No implicit RETURNING of the new ids: executemany reads nothing back.
            statement = statement.inline()
        self._statement = statement
        self._keys = list(keys)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            statement = self._statement.compile(dialect=dialect, column_keys=self._keys)
            names = tuple(
                statement.positiontup if dialect.positional and statement.positiontup else ()
            ) or tuple(statement.binds)
            if set(names) != set(self._keys):
                raise ValueError(f"statement binds {sorted(names)}, rows set {sorted(self._keys)}")
            processors = tuple(
                statement.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            compiled = self._compiled[key] = _Compiled(
                statement.string, names, processors, dialect.positional
            )
        return compiled

    def parameters(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[str, list[Any]]:
        """The SQL and the driver-ready parameters of ``rows`` on ``dialect``."""
        compiled = self._compile(dialect)
        columns = [
            (name, None if process is None else _Memo(process))
            for name, process in zip(compiled.names, compiled.processors, strict=True)
        ]
        if compiled.positional:
            return compiled.sql, [
                tuple(row[name] if memo is None else memo(row[name]) for name, memo in columns)
                for row in rows
            ]
        return compiled.sql, [
            {name: row[name] if memo is None else memo(row[name]) for name, memo in columns}
            for row in rows
        ]

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row, in one executemany; nothing for no rows."""
        if rows:
            connection.exec_driver_sql(*self.parameters(connection.dialect, rows))

    async def execute_async(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`execute` on the connection of ``session``'s transaction."""
        if rows:
            connection = await session.connection()
            await connection.exec_driver_sql(*self.parameters(connection.dialect, rows))
