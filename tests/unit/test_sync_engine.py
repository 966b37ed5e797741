"""The synchronous engine a worker thread writes with points at the async engine's database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from service.db.session import make_sync_engine


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql+asyncpg://user@db.example:5432/dealwatch", "postgresql+psycopg"),
        ("postgresql+psycopg://user@db.example:5432/dealwatch", "postgresql+psycopg"),
        ("sqlite+aiosqlite:///{tmp}/dealwatch.db", "sqlite"),
    ],
)
def test_the_sync_engine_uses_a_synchronous_driver_on_the_same_database(
    url: str, driver: str, tmp_path: Path
) -> None:
    given = make_url(url.format(tmp=tmp_path))
    engine = make_sync_engine(given.render_as_string(hide_password=False))
    try:
        assert engine.url.drivername == driver
        assert (engine.url.host, engine.url.port, engine.url.database) == (
            given.host,
            given.port,
            given.database,
        )
    finally:
        engine.dispose()
