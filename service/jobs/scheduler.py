"""APScheduler 3.11 as a ticker only: one in-memory interval job, nothing persisted."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from service.db.session import is_sqlite
from service.exceptions import ServiceError
from service.jobs.poll import Poller
from service.jobs.tick import tick
from service.runtime import Resources

log = logging.getLogger(__name__)

TICK_JOB_ID = "worker.tick"


class WorkerAlreadyRunningError(ServiceError):
    """Another worker already uses this SQLite database."""


@contextmanager
def sqlite_worker_lock(database_url: str) -> Iterator[None]:
    """Refuse a second worker on one SQLite file: it has one writer and no row locks."""
    if not is_sqlite(database_url):
        yield
        return
    database = make_url(database_url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(f"{database}.worker.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise WorkerAlreadyRunningError(
                f"another dealwatch worker is using {database}; SQLite supports one worker "
                "process (use PostgreSQL to run several)"
            ) from exc
        yield
    finally:
        os.close(fd)


async def _safe_tick(resources: Resources, poller: Poller, running: asyncio.Lock) -> None:
    async with running:
        try:
            await tick(resources, poller)
        except Exception:  # the ticker's boundary: log and let the next tick try again
            log.exception("tick failed")


@asynccontextmanager
async def running_scheduler(resources: Resources) -> AsyncIterator[AsyncIOScheduler]:
    """Run the tick every ``poll.tick_seconds`` while the context is open."""
    with sqlite_worker_lock(resources.settings.database.url):
        scheduler = AsyncIOScheduler()
        running = asyncio.Lock()
        poller = Poller(resources)
        freeze_startup_heap()
        scheduler.add_job(
            _safe_tick,
            "interval",
            seconds=resources.settings.poll.tick_seconds,
            args=[resources, poller, running],
            id=TICK_JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            # APScheduler runs on wall-clock time, not the injectable clock: a next_run_time
            # in the (simulated) past would make it enumerate every missed run since then.
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        try:
            yield scheduler
        finally:
            # Stop new ticks, let one that is mid-flight finish (shutdown would cancel it
            # mid-transaction), then stop.
            scheduler.pause()
            async with running:
                scheduler.shutdown(wait=False)


def freeze_startup_heap() -> None:
    """Exempt everything allocated so far from the garbage collector's later passes.

    By now the process holds its long-lived objects (modules, settings, compiled rules, the
    gazetteer's automaton, the poller): each full collection would walk them all again to
    find nothing, and polling allocates enough to trigger one every few documents.
    Measured with ``bench.ingest`` (5 alternating runs with and without): median 1,130 against
    1,020 items per CPU-second, about 10%.
    """
    gc.collect()
    gc.freeze()


async def run_worker(resources: Resources, stop: asyncio.Event) -> None:
    """Tick until ``stop`` is set (by a signal handler in the CLI)."""
    async with running_scheduler(resources):
        log.info("worker started owner=%s", resources.owner)
        await stop.wait()
    log.info("worker stopped")
