"""Engine and session factories."""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from service.settings import DatabaseSettings


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def dumps_json(value: Any) -> str:
    """``json.dumps(value)``, with a shortcut for lists and tuples of strings.

    Every article row has two such sequences (countries, entities) and every story row one
    (source ids): ``json.dumps`` builds an encoder per call, ~1 us more per value. The text is
    the same as ``json.dumps`` gives (ASCII, ``", "`` between items; a tuple as a list).
    """
    if (type(value) is list or type(value) is tuple) and all(type(item) is str for item in value):
        return "[" + ", ".join(map(encode_basestring_ascii, value)) + "]"
    return json.dumps(value)


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Create the process's engine; SQLite gets WAL, a busy timeout and foreign keys."""
    kwargs: dict[str, Any] = {"echo": settings.echo, "json_serializer": dumps_json}
    if not is_sqlite(settings.url):
        kwargs.update(pool_size=settings.pool_size, pool_pre_ping=True)
    engine = create_async_engine(settings.url, **kwargs)
    if is_sqlite(settings.url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


#: The synchronous driver of each asynchronous one (psycopg 3 serves both worlds).
_SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}


def make_sync_engine(url: str, *, echo: bool = False) -> Engine:
    """Create a synchronous engine on the same database, for work run in a thread of its own.

    ``sqlite+aiosqlite`` becomes ``sqlite`` (pysqlite), with the same pragmas as
    :func:`make_engine`; ``postgresql+psycopg`` stays psycopg, used synchronously.
    """
    parsed = make_url(url)
    parsed = parsed.set(drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": dumps_json}
    if is_sqlite(url):
        # A connection opened in a worker thread may be closed by the pool from another
        # thread (at dispose); it is never used from two threads at once.
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        # One job writer per process holds one connection; the overflow covers a second job.
        kwargs.update(pool_size=1, max_overflow=1, pool_pre_ping=True)
    engine = create_engine(parsed, **kwargs)
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def is_file_sqlite(url: str) -> bool:
    """Whether ``url`` names an SQLite file (a second engine on ``:memory:`` opens another one)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; the busy timeout turns brief writer
    # contention into a wait instead of "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
