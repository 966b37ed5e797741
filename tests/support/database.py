"""Test databases: a temporary SQLite file, or a fresh PostgreSQL database per test run.

``DEALWATCH_TEST_DATABASE_URL`` names a PostgreSQL server database to connect through
(``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); a new database with a random name
is created next to it for the run and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.base import Base
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine
from service.settings import DatabaseSettings


def _admin_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def temporary_database(server_url: str | None, folder: Path) -> Iterator[str]:
    """Yield the URL of a new, migrated, empty database; drop it afterwards."""
    if not server_url:
        url = f"sqlite+aiosqlite:///{folder / 'test.db'}"
        asyncio.run(_migrate(url))
        yield url
        return
    name = f"dealwatch_test_{secrets.token_hex(4)}"
    admin = _admin_dsn(server_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def empty_all_tables(engine: AsyncEngine) -> None:
    """Delete every row, children first, so each test starts from an empty schema."""
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))
