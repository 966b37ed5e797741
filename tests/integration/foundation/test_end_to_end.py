"""Feed → match → inbox, once per period: the product's one path, with real parts.

A local HTTP server serves an RSS feed, the real poller stores and matches it in the real
database, and the real delivery job sends a digest to a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from alerts.rulefile import RuleDefinition
from service.catalogue import SourceDefinition, sync_rules, sync_sources
from service.jobs.digests import run_due_deliveries
from service.jobs.poll import Poller
from service.runtime import Resources, open_resources
from service.settings import Settings, SmtpSettings
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.clock import FakeClock
from tests.support.http_server import LocalHTTPServer, Response
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.integration

RULE = RuleDefinition(
    id="pk-ru-energy",
    name="Pakistan–Russia energy",
    description="",
    query="(Pakistan OR Islamabad) (Russia OR Russian OR Moscow) (oil OR LNG OR crude OR pipeline)",
    tags=("pakistan", "russia"),
)


def rss(items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<link>https://news.example.org/{guid}</link><description>{body}</description>"
        "<pubDate>Mon, 02 Nov 2026 00:30:00 GMT</pubDate></item>"
        for guid, title, body in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Example energy news</title><link>https://news.example.org/</link>{entries}"
        "</channel></rss>"
    ).encode()


FIRST = [
    (
        "a1",
        "Pakistan and Russia sign LNG supply deal",
        "Islamabad agreed to buy Russian LNG cargoes from 2027.",
    ),
    (
        "a2",
        "Russian crude arrives in Karachi",
        "The second cargo of Russian oil reached Pakistan on Sunday.",
    ),
    ("a3", "Pakistan beat Australia in the cricket final", "A thrilling finish in Lahore."),
]
SECOND = [
    (
        "a4",
        "Pakistan Stream gas pipeline talks resume in Moscow",
        "Pakistan and Russia discussed the pipeline's financing.",
    ),
]


@pytest.fixture
def feed_server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        server.route(
            "/feed.xml", Response(body=rss(FIRST), headers={"Content-Type": "application/rss+xml"})
        )
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def inbox(server: SmtpServer) -> list[EmailMessage]:
    return [received.message for received in server.received]


@pytest.fixture
def e2e_settings(settings: Settings, smtp: SmtpServer) -> Settings:
    return settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none")}
    )


async def _setup(resources: Resources, feed_url: str) -> None:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        await sync_sources(
            session,
            [
                SourceDefinition(
                    id="example-news", name="Example News", url=feed_url, interval_minutes=30
                )
            ],
            now=now,
        )
        await sync_rules(session, [RULE], now=now)
        subscriber = await create_subscriber(
            session, email="reader@example.org", status="active", now=now
        )
        await create_subscription(
            session,
            subscriber_id=subscriber.id,
            rule_ids=["pk-ru-energy"],
            cadence="daily",
            send_time="08:00",
            timezone="Asia/Karachi",
            now=now,
        )
        await session.commit()


def _bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


async def test_feed_to_inbox_once_per_period(
    e2e_settings: Settings,
    resources: Resources,
    clock: FakeClock,
    feed_server: LocalHTTPServer,
    smtp: SmtpServer,
) -> None:
    clock.set(datetime(2026, 11, 2, 1, 0, tzinfo=UTC))  # 06:00 in Karachi
    async with open_resources(e2e_settings, clock=clock) as res:
        await _setup(res, feed_server.url("/feed.xml"))
        poller = Poller(res)

        results = await poller.poll_due()
        assert [(r.source_id, r.outcome, r.new, r.matches) for r in results] == [
            ("example-news", "ok", 3, 2)
        ]
        report = await run_due_deliveries(res)
        assert report.planned == 0
        assert inbox(smtp) == []

        clock.set(datetime(2026, 11, 2, 3, 0, tzinfo=UTC))  # 08:00 in Karachi
        report = await run_due_deliveries(res)
        assert (report.planned, report.delivered) == (1, 1)
        assert len(inbox(smtp)) == 1
        message = inbox(smtp)[0]
        assert message.get_content_type() == "multipart/alternative"
        assert message["To"] == "reader@example.org"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = _bodies(message)
        for body in (text, html):
            assert "Pakistan and Russia sign LNG supply deal" in body
            assert "Russian crude arrives in Karachi" in body
            assert "cricket" not in body

        # Running again in the same period sends nothing.
        report = await run_due_deliveries(res)
        assert (report.planned, report.delivered) == (0, 0)
        assert len(inbox(smtp)) == 1

        # A new matching article appears later that day: it waits for tomorrow's digest.
        feed_server.route("/feed.xml", Response(body=rss(FIRST + SECOND)))
        clock.set(datetime(2026, 11, 2, 4, 0, tzinfo=UTC))
        results = await poller.poll_due()
        assert [(r.new, r.matches) for r in results] == [(1, 1)]
        await run_due_deliveries(res)
        assert len(inbox(smtp)) == 1

        clock.set(datetime(2026, 11, 3, 3, 0, tzinfo=UTC))  # 08:00 the next day
        report = await run_due_deliveries(res)
        assert report.delivered == 1
        assert len(inbox(smtp)) == 2
        text, _ = _bodies(inbox(smtp)[1])
        assert "Pakistan Stream gas pipeline talks resume in Moscow" in text
        assert "Pakistan and Russia sign LNG supply deal" not in text
        assert inbox(smtp)[0]["Message-ID"] != inbox(smtp)[1]["Message-ID"]
