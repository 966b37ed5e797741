"""``make demo``: the whole path on one machine with no internet.

Serves the sample feeds in ``config/demo/`` from a local HTTP server, polls them into a
temporary SQLite database, matches the default rules, sends the daily digest of a sample
subscriber to a local SMTP sink, and prints the e-mail that arrived.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from service.catalogue import SourceDefinition, load_catalogue_files, sync_rules, sync_sources
from service.db.migrate import upgrade_to_head
from service.jobs.digests import run_due_deliveries
from service.jobs.poll import Poller
from service.runtime import open_resources
from service.settings import (
    DatabaseSettings,
    HttpSettings,
    Settings,
    SmtpSettings,
    config_dir,
)
from service.storage.subscriptions import create_subscriber, create_subscription

console = Console()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the demo's output to what matters."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _feed_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def run_demo(workdir: Path) -> EmailMessage | None:
    inbox = _Inbox()
    smtp_port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    # The demo's clock starts an hour before the subscriber's 08:00 digest, then jumps to it.
    now = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    current = {"now": now}
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{workdir / 'demo.db'}"),
        http=HttpSettings(allow_loopback=True, min_host_interval_seconds=0.0),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp_port, tls="none"),
        data_dir=workdir,
        public_base_url="http://127.0.0.1:8000",
    )
    try:
        with _feed_server(config_dir() / "demo") as base:
            async with open_resources(settings, clock=lambda: current["now"]) as resources:
                await upgrade_to_head(resources.engine)
                _, rules = load_catalogue_files(config_dir())
                async with resources.sessionmaker() as session:
                    await sync_sources(
                        session,
                        [
                            SourceDefinition(
                                id="sample-pk-business",
                                name="Pakistan Business Daily (sample)",
                                url=f"{base}/pk-news.xml",
                                country="PK",
                            ),
                            SourceDefinition(
                                id="sample-kremlin",
                                name="President of Russia (sample)",
                                url=f"{base}/kremlin.xml",
                                tier="official",
                                country="RU",
                            ),
                        ],
                        now=now,
                    )
                    await sync_rules(session, rules, now=now)
                    subscriber = await create_subscriber(
                        session, email="analyst@example.org", status="active", now=now
                    )
                    await create_subscription(
                        session,
                        subscriber_id=subscriber.id,
                        rule_tags=["energy"],
                        rule_ids=[rule.id for rule in rules],
                        cadence="daily",
                        send_time="08:00",
                        timezone="Asia/Karachi",
                        now=now,
                    )
                    await session.commit()
                console.print(f"[bold]1.[/bold] sample feeds served at {base}")
                for result in await Poller(resources).poll_due():
                    console.print(
                        f"[bold]2.[/bold] polled {result.source_id}: {result.outcome}, "
                        f"{result.new} new articles, {result.matches} rule matches"
                    )
                current["now"] = now + timedelta(hours=1)  # 08:00 in Asia/Karachi
                report = await run_due_deliveries(resources)
                console.print(
                    f"[bold]3.[/bold] digest due at 08:00 Asia/Karachi: {report.planned} planned, "
                    f"{report.delivered} delivered to the local SMTP sink on port {smtp_port}"
                )
    finally:
        controller.stop()
    return inbox.messages[0] if inbox.messages else None


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dealwatch-demo-") as folder:
        message = asyncio.run(run_demo(Path(folder)))
    if message is None:
        console.print("[red]no e-mail arrived[/red]")
        raise SystemExit(1)
    headers = "\n".join(
        f"{name}: {message[name]}"
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe")
    )
    text = message.get_body(("plain",))
    body = text.get_content() if text is not None else ""
    # Text(): "[dealwatch]" in the subject is text, not a rich style tag.
    console.print(Panel(Text(f"{headers}\n\n{body}"), title="the e-mail that arrived"))


if __name__ == "__main__":
    main()
