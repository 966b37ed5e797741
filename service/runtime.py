"""Process-wide resources, opened once at the edge and passed down explicitly."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.session import is_file_sqlite, make_engine, make_sessionmaker, make_sync_engine
from service.notify.email import DkimSigner, SmtpOptions
from service.safety import guarded_transport
from service.secretbox import SecretBox
from service.settings import HttpSettings, Settings, SmtpSettings

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Resources:
    """Everything a job or a request needs besides its data.

    Attributes:
        settings: the settings the process was started with.
        engine / sessionmaker: the database.
        sync_engine: the same database through a synchronous driver, for work that runs in
            a thread of its own (the delivery job's writer); connects on first use.
        http: the one HTTP client of the process (feeds and webhooks).
        clock: returns the current time, timezone-aware UTC (tests inject a fixed one).
        owner: identifies this process in lease columns.
        secret_key: signs links in e-mails.
        previous_secret_keys: older secret keys, still accepted while a rotation completes.
        secret_box: encrypts and decrypts webhook signing secrets at rest.
    """

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    sync_engine: Engine
    http: httpx.AsyncClient
    clock: Clock
    owner: str
    secret_key: bytes
    previous_secret_keys: tuple[bytes, ...]
    secret_box: SecretBox

    @property
    def write_engine(self) -> Engine | None:
        """On an SQLite file, :attr:`sync_engine`, which the poller writes documents with.

        aiosqlite hands every DBAPI call to its own thread and wakes the event loop for each
        result; a document's write is ~30 calls, so the poller runs the whole write as one
        function on a worker thread instead (SQLite has one writer anyway). ``None`` on
        PostgreSQL, where one ``run_sync`` per document does as well.
        """
        return self.sync_engine if is_file_sqlite(self.settings.database.url) else None


def make_http_client(settings: HttpSettings) -> httpx.AsyncClient:
    """Build the process's HTTP client. Redirects are followed by the fetcher, hop by hop."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
        limits=limits,
        headers={"User-Agent": settings.user_agent},
        follow_redirects=False,
        # Every connection re-checks and pins the resolved address (SSRF, DNS rebinding).
        transport=guarded_transport(allow_loopback=settings.allow_loopback, limits=limits),
        trust_env=False,
    )


def smtp_options(settings: SmtpSettings) -> SmtpOptions:
    """The mailer's options, from the settings (the one place the two meet)."""
    return SmtpOptions(
        host=settings.host,
        port=settings.port,
        tls=settings.tls,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        timeout=settings.timeout_seconds,
        pace_seconds=settings.pace_seconds,
        bounce_domain=settings.bounce_domain,
        dkim=DkimSigner(
            domain=settings.dkim_domain,
            selector=settings.dkim_selector,
            private_key=settings.dkim_private_key.get_secret_value().encode(),
        )
        if settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key
        else None,
    )


def resolve_secret_key(settings: Settings) -> bytes:
    """Return the link-signing key: the configured one, else one generated once per data dir."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting together must not write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    http: httpx.AsyncClient | None = None,
) -> AsyncIterator[Resources]:
    """Open the engine and the HTTP client; close them in reverse order on exit."""
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database)
        stack.push_async_callback(engine.dispose)
        sync_engine = make_sync_engine(settings.database.url, echo=settings.database.echo)
        stack.callback(sync_engine.dispose)
        if http is None:
            http = await stack.enter_async_context(make_http_client(settings.http))
        key = resolve_secret_key(settings)
        previous = tuple(
            value.get_secret_value().encode() for value in settings.previous_secret_keys
        )
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            sync_engine=sync_engine,
            http=http,
            clock=clock,
            owner=process_owner(),
            secret_key=key,
            previous_secret_keys=previous,
            secret_box=SecretBox(key, previous),
        )
