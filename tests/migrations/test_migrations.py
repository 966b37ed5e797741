"""The Alembic history builds the models' schema on this database, and goes down and up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from service.db.base import Base
from service.db.migrate import alembic_config
from service.db.session import make_engine
from service.settings import DatabaseSettings

pytestmark = pytest.mark.integration


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _down_and_up(connection: Connection) -> list[str]:
    config = alembic_config(connection)
    command.downgrade(config, "base")
    emptied = [t for t in inspect(connection).get_table_names() if t != "alembic_version"]
    command.upgrade(config, "head")
    return emptied


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_then_upgrade_again(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    try:
        async with engine.begin() as connection:
            assert await connection.run_sync(_down_and_up) == []
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()
