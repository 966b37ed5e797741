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

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Insert, Select, Update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    # (position, processor) of the bound values that have one.
    processors: tuple[tuple[int, _Processor], ...]
    positional: bool
    get: Callable[[Mapping[str, Any]], Any]
    # (position, processor) of a SELECT's result columns that have one.
    results: tuple[tuple[int, _Processor], ...]


_UNSEEN = object()


def _convert(values: Sequence[Any], process: _Processor) -> list[Any]:
    """``values`` (one column of the rows) through ``process``, once per run of one object.

    The rows of one call share values (one ``now`` for every row, the same empty tuple of
    countries), and converting a datetime or a JSON value through its column type costs more
    than the rest of its row. Identity is enough: every row exists before the first is
    converted and nothing runs in between but the processors, so an object cannot change
    from one row to the next.
    """
    converted = []
    last: Any = _UNSEEN
    result: Any = None
    for value in values:
        if value is not last:
            result = process(value)
            last = value
        converted.append(result)
    return converted


class BulkStatement:
    """An INSERT or UPDATE run over rows that all set ``keys``, or a SELECT run once.

    ``keys`` are the row keys: the columns to set plus the statement's own bind parameters
    (``bindparam("b_id")`` in a WHERE clause). :meth:`execute` runs one executemany and reads
    nothing back; :meth:`insert_ids` (an INSERT only) returns the new rows' primary keys;
    :meth:`fetch` (a SELECT only) returns its rows.
    """

    def __init__(self, statement: Insert | Update | Select[Any], keys: Sequence[str]) -> None:
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
            get: Callable[[Mapping[str, Any]], Any] = (
                itemgetter(*names)
                if len(names) > 1
                else (lambda row: (row[names[0]],))
                if names
                else (lambda row: ())
            )
            results = []
            if isinstance(self._statement, Select):
                for position, column in enumerate(self._statement.selected_columns):
                    convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
                    if convert is not None:
                        results.append((position, convert))
            compiled = self._compiled[key] = _Compiled(
                statement.string,
                names,
                tuple(processors),
                dialect.positional,
                get,
                tuple(results),
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
        if not rows:
            return compiled.sql, []
        if not compiled.names:
            return compiled.sql, [() if compiled.positional else {} for _ in rows]
        # Column by column: one transposition in C, then each processor over its column.
        columns: list[Sequence[Any]] = list(zip(*map(compiled.get, rows), strict=True))
        for position, process in compiled.processors:
            columns[position] = _convert(columns[position], process)
        if compiled.positional:
            return compiled.sql, list(zip(*columns, strict=True))
        names = compiled.names
        return compiled.sql, [
            dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
        ]

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row, in one executemany; nothing for no rows."""
        if not rows:
            return
        sql, parameters = self.parameters(connection.dialect, rows)
        if connection.dialect.name != "sqlite":
            connection.exec_driver_sql(sql, parameters)
            return
        with _driver_cursor(connection, sql, parameters) as cursor:
            cursor.executemany(sql, parameters)

    async def execute_async(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`execute` on the connection of ``session``'s transaction."""
        if rows:
            connection = await session.connection()
            await connection.exec_driver_sql(*self.parameters(connection.dialect, rows))

    def fetch(self, connection: Connection, parameters: Mapping[str, Any]) -> list[Any]:
        """Run a SELECT once; its rows (tuples), each value converted by its column's type."""
        compiled = self._compile(connection.dialect)
        sql, (values,) = self.parameters(connection.dialect, [parameters])
        if connection.dialect.name == "sqlite":
            with _driver_cursor(connection, sql, values) as cursor:
                cursor.execute(sql, values)
                rows = cursor.fetchall()
        else:
            rows = [tuple(row) for row in connection.exec_driver_sql(sql, values)]
        if not compiled.results or not rows:
            return rows  # type: ignore[no-any-return]
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for position, convert in compiled.results:
            columns[position] = _convert(columns[position], convert)
        return list(zip(*columns, strict=True))

    def insert_ids(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert ``rows`` and return their new (auto-incremented) keys, in the order of ``rows``.

        On SQLite each row is one execution of the compiled statement, its key read from
        ``lastrowid``: the sqlite3 driver has no executemany with RETURNING, and one row at a
        time costs less than one multi-row ``VALUES ... RETURNING`` (which SQLite must parse
        afresh for each row count) or a RETURNING per row. Elsewhere SQLAlchemy's batched
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
        ids: list[int] = []
        with _driver_cursor(connection, sql, parameters) as cursor:
            for values in parameters:
                cursor.execute(sql, values)
                ids.append(cursor.lastrowid)
        return ids


@contextmanager
def _driver_cursor(connection: Connection, sql: str, parameters: Any) -> Iterator[Any]:
    """A cursor of ``connection``'s driver connection, in its transaction.

    On SQLite the statements run there rather than through ``exec_driver_sql``: SQLAlchemy's
    execution machinery (context, result, events) cost ~60 us per statement in the ingest, as
    much as SQLite's work for a 50-item document. What it would do that matters is done here:
    the connection's transaction begins as on any execution, and a driver error is raised as
    SQLAlchemy's (``IntegrityError``...). Not done: events and echo logging.
    """
    if not connection.in_transaction():
        connection.begin()
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    finally:
        cursor.close()
