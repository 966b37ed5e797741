"""Engine and session factories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
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


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Create the process's engine; SQLite gets WAL, a busy timeout and foreign keys."""
    kwargs: dict[str, Any] = {"echo": settings.echo}
    if not is_sqlite(settings.url):
        kwargs.update(pool_size=settings.pool_size, pool_pre_ping=True)
    engine = create_async_engine(settings.url, **kwargs)
    if is_sqlite(settings.url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sqlite_write_engine(settings: DatabaseSettings) -> Engine | None:
    """A synchronous engine on the same SQLite file, for the poller's document writes.

    aiosqlite runs every DBAPI call on its own thread and wakes the event loop for each
    result: a document's write is ~30 calls, and each hand-over cost more than the SQL. The
    poller instead runs the whole write as one function on a worker thread with this engine
    (SQLite has one writer anyway). ``None`` for other databases and in-memory SQLite (a
    second engine would open a different database).
    """
    url = make_url(settings.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    engine = create_engine(
        url.set(drivername="sqlite+pysqlite"),
        echo=settings.echo,
        # Checked out by one worker thread at a time, not always the same one.
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
