"""Fixtures shared by every test: environment isolation, a migrated database, settings."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.db.session import make_engine
from service.runtime import Resources, open_resources
from service.settings import DatabaseSettings, HttpSettings, Settings, SmtpSettings
from tests.support.clock import FakeClock
from tests.support.database import empty_all_tables, temporary_database

TEST_DATABASE_SERVER = os.environ.get("DEALWATCH_TEST_DATABASE_URL", "")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's DEALWATCH_* variables must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("DEALWATCH_") and name != "DEALWATCH_CONFIG_DIR":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with temporary_database(TEST_DATABASE_SERVER, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(url=database_url),
        http=HttpSettings(allow_loopback=True, min_host_interval_seconds=0.0, timeout_seconds=10.0),
        smtp=SmtpSettings(host="127.0.0.1", port=1, timeout_seconds=10.0),
        data_dir=tmp_path,
        secret_key=SecretStr("test-secret-key-" + "x" * 32),
        public_base_url="http://dealwatch.test",
    )


@pytest.fixture
async def resources(settings: Settings, clock: FakeClock) -> AsyncIterator[Resources]:
    """Open resources on an emptied database; the clock is the test's ``clock``."""
    engine = make_engine(settings.database)
    await empty_all_tables(engine)
    await engine.dispose()
    async with open_resources(settings, clock=clock) as opened:
        yield opened
