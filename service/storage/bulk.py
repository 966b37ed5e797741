"""Statements compiled once and fed plain rows, for the hot writes of the delivery and ingest jobs.

SQLAlchemy's executemany runs every row's parameters through the compiled statement's
machinery (building the parameter dict, looking processors up, checking keys): on SQLite
that costs about three times what the driver itself spends on the row, and the jobs write
several rows per message or item. A :class:`BulkStatement` compiles its statement once per
dialect, keeps the column types' bind processors, and hands the driver ready rows (tuples,
or dicts for named parameter styles). The values still go through the column types
(``UTCDateTime`` refuses naive datetimes, SQLite gets its text format), so the rows read
back exactly as if SQLAlchemy had written them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Insert, Update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    # (position, processor) of the columns that have one.
    processors: tuple[tuple[int, _Processor], ...]
    positional: bool
    get: Callable[[Mapping[str, Any]], Any]


class _Memo:
    """A bind processor that reuses its last result for the very same object.

    The rows of one call share values (one ``now`` for every row, the same empty tuple of
    countries), and converting a datetime or a JSON value through its column type costs more
    than the rest of its row. Identity is enough: every row exists before the first is
    converted and nothing runs in between but the processors, so an object cannot change
    from one row to the next.
    """

    __slots__ = ("_last", "_process", "_result")

    def __init__(self, process: _Processor) -> None:
        self._process = process
        self._last: Any = _Memo
        self._result: Any = None

    def __call__(self, value: Any) -> Any:
        if value is not self._last:
            self._result = self._process(value)
            self._last = value
        return self._result


class BulkStatement:
    """An INSERT or UPDATE run over rows that all set ``keys``.

    ``keys`` are the row keys: the columns to set plus the statement's own bind parameters
    (``bindparam("b_id")`` in a WHERE clause). :meth:`execute` runs one executemany and reads
    nothing back; :meth:`insert_ids` (an INSERT only) returns the new rows' primary keys.
    """

    def __init__(self, statement: Insert | Update, keys: Sequence[str]) -> None:
        self._returning: Insert | None = None
        if isinstance(statement, Insert):
            key = getattr(statement.table, "autoincrement_column", None)
            if isinstance(key, Column):
                # Rows come back in parameter order, however the dialect batches them.
                self._returning = statement.returning(key, sort_by_parameter_order=True)
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
            processors = []
            for position, name in enumerate(names):
                type_ = statement.binds[name].type
                process = type_.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((position, process))
            # One C call reads a row's values in statement order (a lone key gives a scalar).
            get = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
            compiled = self._compiled[key] = _Compiled(
                statement.string, names, tuple(processors), dialect.positional, get
            )
        return compiled

    def parameters(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[str, list[Any]]:
        """The SQL and the driver-ready parameters of ``rows`` on ``dialect``.

        Positional parameters are tuples, the rows' values in statement order; named ones are
        dicts.
        """
        compiled = self._compile(dialect)
        get = compiled.get
        processors = [(position, _Memo(process)) for position, process in compiled.processors]
        ready: list[Any] = []
        for row in rows:
            values = list(get(row))
            for position, process in processors:
                values[position] = process(values[position])
            ready.append(tuple(values))
        if compiled.positional:
            return compiled.sql, ready
        names = compiled.names
        return compiled.sql, [dict(zip(names, values, strict=True)) for values in ready]

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row, in one executemany; nothing for no rows."""
        if rows:
            connection.exec_driver_sql(*self.parameters(connection.dialect, rows))

    async def execute_async(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`execute` on the connection of ``session``'s transaction."""
        if rows:
            connection = await session.connection()
            await connection.exec_driver_sql(*self.parameters(connection.dialect, rows))

    def insert_ids(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert ``rows`` and return their new (auto-incremented) keys, in the order of ``rows``.

        On SQLite each row is one execution of the compiled statement on a driver cursor, its
        key read from ``lastrowid``: the sqlite3 driver has no executemany with RETURNING, and
        one row at a time costs less than one multi-row ``VALUES ... RETURNING`` (which SQLite
        must parse afresh for each row count) or a RETURNING per row. A driver error is raised
        as SQLAlchemy's, as :meth:`Connection.execute` would. Elsewhere SQLAlchemy's batched
        ``INSERT ... RETURNING``, sorted by parameter order, inserts them.
        """
        if self._returning is None:
            raise TypeError("insert_ids needs an INSERT into a table with an auto-incremented key")
        if not rows:
            return []
        dialect = connection.dialect
        if dialect.name != "sqlite":
            return list(connection.execute(self._returning, list(rows)).scalars())
        sql, parameters = self.parameters(dialect, rows)
        if not connection.in_transaction():
            # As Connection.execute would: the rows belong to the connection's transaction.
            connection.begin()
        cursor = connection.connection.cursor()
        ids: list[int] = []
        values: Any = None
        try:
            for values in parameters:
                cursor.execute(sql, values)
                ids.append(cursor.lastrowid)
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                sql, values, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        finally:
            cursor.close()
        return ids
