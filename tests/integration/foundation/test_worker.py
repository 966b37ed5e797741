"""The worker's ticker drives polling by itself, and SQLite refuses a second worker."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from service.catalogue import SourceDefinition, sync_sources
from service.db.models import Source
from service.jobs.scheduler import WorkerAlreadyRunningError, running_scheduler, sqlite_worker_lock
from service.runtime import Resources
from service.settings import PollSettings
from tests.support.http_server import LocalHTTPServer, Response

pytestmark = pytest.mark.integration

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


async def test_the_ticker_polls_due_sources(resources: Resources) -> None:
    fast = resources.settings.model_copy(update={"poll": PollSettings(tick_seconds=0.2)})
    resources = dataclasses.replace(resources, settings=fast)
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=FEED))
        async with resources.sessionmaker() as session:
            await sync_sources(
                session,
                [SourceDefinition(id="local", name="Local", url=server.url("/feed"))],
                now=resources.clock(),
            )
            await session.commit()
        async with running_scheduler(resources):
            for _ in range(100):
                await asyncio.sleep(0.05)
                if server.requests_for("/feed"):
                    break
        assert len(server.requests_for("/feed")) == 1
    async with resources.sessionmaker() as session:
        source = await session.get(Source, "local")
        assert source is not None
        assert (source.last_status, source.polls_total) == ("ok", 1)


def test_sqlite_allows_one_worker_per_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with sqlite_worker_lock(url), pytest.raises(WorkerAlreadyRunningError), sqlite_worker_lock(url):
        pass
    with sqlite_worker_lock(url):  # released when the first worker stops
        pass
    with (
        sqlite_worker_lock("postgresql+psycopg://u@h/db"),
        sqlite_worker_lock("postgresql+psycopg://u@h/db"),
    ):
        pass
