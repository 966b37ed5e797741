"""The poll job with everything in place: real server, real database, real parsers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.catalogue import SourceDefinition, sync_sources
from service.db.models import Article, Source, Story
from service.jobs.poll import Poller
from service.runtime import Resources
from service.storage.articles import ArticleData, upsert_articles
from tests.support.articles import article_data
from tests.support.clock import FakeClock
from tests.support.http_server import LocalHTTPServer, RecordedRequest, Response

pytestmark = pytest.mark.integration

FEEDS = Path(__file__).parents[2] / "data" / "feeds"
NOW = datetime(2024, 6, 14, 15, 0, tzinfo=UTC)


async def add_sources(resources: Resources, *definitions: SourceDefinition) -> None:
    async with resources.sessionmaker() as session:
        await sync_sources(session, list(definitions), now=resources.clock())
        await session.commit()


def source(id: str, url: str, **fields: Any) -> SourceDefinition:
    return SourceDefinition(id=id, name=id, url=url, **fields)


async def rows(resources: Resources, model: Any, *where: Any) -> list[Any]:
    async with resources.sessionmaker() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


@pytest.fixture
def server() -> Any:
    with LocalHTTPServer() as running:
        yield running


async def test_same_story_from_two_outlets_prefers_the_official_one(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    dawn = (FEEDS / "dawn_business_rss.xml").read_bytes()
    # The official copy is published after Dawn's: tier must win over time.
    app = (
        (FEEDS / "app_wordpress_rss.xml")
        .read_bytes()
        .replace(b"Fri, 14 Jun 2024 11:05:12 +0000", b"Fri, 14 Jun 2024 14:00:00 +0000")
    )
    server.route("/dawn", Response(body=dawn, headers={"Content-Type": "application/rss+xml"}))
    server.route("/app", Response(body=app, headers={"Content-Type": "application/rss+xml"}))
    await add_sources(
        resources,
        source("dawn-business", server.url("/dawn"), tier="news"),
        source("app-pk", server.url("/app"), tier="official"),
    )
    poller = Poller(resources)
    assert (await poller.poll_source_now("dawn-business")).new == 3  # type: ignore[union-attr]
    assert (await poller.poll_source_now("app-pk")).new == 3  # type: ignore[union-attr]

    articles = {a.title: a for a in await rows(resources, Article)}
    official = articles["Pakistan, Russia agree to boost trade in energy sector"]
    news = articles["Russia, Pakistan agree to boost trade, particularly in energy sector"]
    assert official.story_id == news.story_id is not None
    (story,) = await rows(resources, Story, Story.id == official.story_id)
    assert story.canonical_article_id == official.id
    assert story.article_count == 2
    assert sorted(story.source_ids) == ["app-pk", "dawn-business"]
    assert len({a.story_id for a in articles.values()}) == 5

    assert set(official.countries) == {"PK", "RU"}
    assert "project:pakistan-stream" in official.entities
    assert "commodity:lng" in official.entities
    pso = articles["PSO places order for Russian crude oil cargo"]
    assert {"company:pso", "company:prl", "commodity:crude-oil"} <= set(pso.entities)
    assert news.canonical_url == (
        "https://dawn.com/news/1839201/russia-pakistan-agree-to-boost-trade-particularly-in-energy-sector"
    )
    assert news.language == "en"
    assert news.published_at == datetime(2024, 6, 14, 11, 30, 10, tzinfo=UTC)


async def test_changed_item_is_updated_not_new(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    body = (FEEDS / "tass_rss_v2.xml").read_bytes()
    server.route("/tass", Response(body=body))
    await add_sources(resources, source("tass-en", server.url("/tass")))
    poller = Poller(resources)
    first = await poller.poll_source_now("tass-en")
    assert first is not None
    assert (first.new, first.updated) == (2, 0)

    server.route(
        "/tass", Response(body=body.replace(b"on Wednesday.", b"on Wednesday, TASS says."))
    )
    clock.advance(minutes=30)
    second = await poller.poll_source_now("tass-en")
    assert second is not None
    assert (second.new, second.updated) == (0, 1)
    articles = await rows(resources, Article)
    assert len(articles) == 2
    changed = next(a for a in articles if a.updated_at is not None)
    assert changed.summary.endswith("TASS says.")
    assert changed.story_id is not None


async def test_invalid_dates_fall_back_to_fetch_time_and_are_flagged(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    server.route("/twip", Response(body=(FEEDS / "eia_twip_rss.xml").read_bytes()))
    await add_sources(resources, source("eia-twip", server.url("/twip"), tier="official"))
    await Poller(resources).poll_source_now("eia-twip")
    articles = {a.title: a for a in await rows(resources, Article)}
    undated = articles["Propane/propylene inventories increase"]
    assert (undated.published_at, undated.published_valid) == (NOW, False)
    dated = articles["U.S. crude oil inventories fall as refinery runs rise"]
    assert dated.published_valid is True


async def test_conditional_get_ratio_and_ttl(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    body = (FEEDS / "government_ru_rss.xml").read_bytes()

    def feed(request: RecordedRequest) -> Response:
        if request.headers.get("if-none-match") == '"g1"':
            return Response(status=304, headers={"ETag": '"g1"'})
        return Response(body=body, headers={"ETag": '"g1"'})

    server.route("/gov", feed)
    await add_sources(
        resources, source("government-ru-en", server.url("/gov"), interval_minutes=15)
    )
    poller = Poller(resources)
    await poller.poll_source_now("government-ru-en")
    (row,) = await rows(resources, Source)
    # <ttl>60</ttl> pushes the 15-minute interval (minus jitter) to an hour.
    assert row.next_poll_at >= NOW + timedelta(minutes=60)
    for _ in range(3):
        clock.advance(minutes=61)
        result = await poller.poll_source_now("government-ru-en")
        assert result is not None
        assert result.outcome == "not_modified"
    (row,) = await rows(resources, Source)
    assert (row.polls_total, row.polls_not_modified, row.items_seen) == (4, 3, 3)
    assert row.health == "ok"
    assert server.requests_for("/gov")[-1].headers["if-none-match"] == '"g1"'


async def test_failures_back_off_honour_retry_after_and_mark_failing(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer, settings: Any
) -> None:
    clock.set(NOW)
    server.route("/down", Response(status=503, headers={"Retry-After": "7200"}))
    await add_sources(resources, source("flaky", server.url("/down"), interval_minutes=10))
    poller = Poller(resources)
    for attempt in range(1, settings.poll.failing_after + 1):
        result = await poller.poll_source_now("flaky")
        assert result is not None
        assert result.outcome == "error"
        (row,) = await rows(resources, Source)
        assert row.consecutive_failures == attempt
        assert row.next_poll_at >= clock() + timedelta(hours=2)
        assert row.health == ("failing" if attempt == settings.poll.failing_after else "degraded")
        clock.advance(hours=3)
    assert row.last_http_status == 503
    assert "HTTP 503" in (row.last_error or "")

    server.route("/down", Response(body=(FEEDS / "tass_rss_v2.xml").read_bytes()))
    result = await poller.poll_source_now("flaky")
    assert result is not None
    assert result.outcome == "ok"
    (row,) = await rows(resources, Source)
    assert (row.consecutive_failures, row.health, row.last_error) == (0, "ok", None)


async def test_hostile_sources_are_recorded_and_do_not_stop_the_batch(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    server.route("/good", Response(body=(FEEDS / "tass_rss_v2.xml").read_bytes()))
    server.route("/html", Response(body=(FEEDS / "sco_news.html").read_bytes()))
    server.route("/empty", Response(body=b""))
    server.route("/loop", Response(status=302, headers={"Location": "/loop"}))
    await add_sources(
        resources,
        source("good", server.url("/good")),
        source("html-not-feed", server.url("/html")),
        source("empty", server.url("/empty")),
        source("loop", server.url("/loop")),
    )
    results = {r.source_id: r for r in await Poller(resources).poll_due()}
    assert results["good"].outcome == "ok"
    assert results["good"].new == 2
    assert {k: r.outcome for k, r in results.items() if k != "good"} == {
        "html-not-feed": "error",
        "empty": "error",
        "loop": "error",
    }
    errors = {row.id: row.last_error for row in await rows(resources, Source)}
    assert "not a feed" in (errors["html-not-feed"] or "")
    assert "empty" in (errors["empty"] or "")
    assert "redirects" in (errors["loop"] or "")


async def test_html_listing_follows_new_items_once(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    listing = b"""<html lang="en"><body><div class="news">
      <div class="item"><a href="/a/1">Pakistan and Russia sign PSGP protocol</a>
        <span class="d">14-06-2024</span></div>
      <div class="item"><a href="/a/2">Minister reviews LNG supply</a>
        <span class="d">13-06-2024</span></div></div></body></html>"""
    article = (
        "<html><body><nav>Home</nav><article><p>ISLAMABAD: The Petroleum Division said the "
        "protocol on the Pakistan Stream Gas Pipeline was signed with Gazprom participation."
        "</p><p>{extra}</p></article></body></html>"
    )
    server.route("/list", Response(body=listing, headers={"Content-Type": "text/html"}))
    server.route("/a/1", Response(body=article.format(extra="First page.").encode()))
    server.route("/a/2", Response(body=article.format(extra="Second page.").encode()))
    await add_sources(
        resources,
        source(
            "petroleum-division",
            server.url("/list"),
            kind="html",
            tier="official",
            options={
                "item": ".news .item",
                "link": "a",
                "date": ".d",
                "date_format": "%d-%m-%Y",
                "follow": True,
            },
        ),
    )
    poller = Poller(resources)
    first = await poller.poll_source_now("petroleum-division")
    assert first is not None
    assert first.new == 2
    texts = {a.url: a for a in await rows(resources, Article)}
    page = texts[server.url("/a/1")]
    assert page.text.startswith("ISLAMABAD: The Petroleum Division said")
    assert page.text.endswith("First page.")
    assert "Home" not in page.text
    assert "company:gazprom" in page.entities
    assert page.published_at == datetime(2024, 6, 14, tzinfo=UTC)

    clock.advance(hours=1)
    second = await poller.poll_source_now("petroleum-division")
    assert second is not None
    assert (second.new, second.updated) == (0, 0)
    assert len(server.requests_for("/a/1")) == 1


async def test_silent_source_becomes_stale(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    server.route("/tass", Response(body=(FEEDS / "tass_rss_v2.xml").read_bytes()))
    await add_sources(
        resources,
        source("tass-en", server.url("/tass"), options={"stale_after_hours": 48}),
    )
    poller = Poller(resources)
    await poller.poll_source_now("tass-en")
    clock.advance(hours=24)
    await poller.poll_source_now("tass-en")
    assert (await rows(resources, Source))[0].health == "ok"
    clock.advance(hours=25)
    await poller.poll_source_now("tass-en")
    assert (await rows(resources, Source))[0].health == "stale"


def _rss(*items: tuple[str, str, str, str]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>https://x.example/{guid}</link>"
        f"<pubDate>{published}</pubDate><description>{text}</description></item>"
        for guid, title, published, text in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://x.example/</link><language>en</language>{entries}</channel></rss>"
    ).encode()


async def test_near_duplicates_within_one_document_and_across_sources_share_a_story(
    resources: Resources, clock: FakeClock, server: LocalHTTPServer
) -> None:
    clock.set(NOW)
    lead = "Pakistan and Russia signed an agreement on the Pakistan Stream gas pipeline in Moscow"
    first = ("a1", "Pakistan, Russia sign gas pipeline deal", "Fri, 14 Jun 2024 10:00:00 +0000")
    again = ("a2", "Pakistan, Russia sign gas pipeline deal", "Fri, 14 Jun 2024 09:00:00 +0000")
    other = ("a3", "Oil prices fall on demand worries", "Fri, 14 Jun 2024 08:00:00 +0000")
    server.route(
        "/one",
        Response(
            body=_rss(
                (*first, f"{lead} today."),
                (*again, f"{lead} on Friday."),
                (*other, "Brent crude slipped as traders weighed weaker demand in Asia."),
                (*first, f"{lead} today."),
            )
        ),
    )
    server.route(
        "/two", Response(body=_rss(("b1", first[1], "Fri, 14 Jun 2024 11:00:00 +0000", f"{lead}.")))
    )
    await add_sources(
        resources, source("one", server.url("/one")), source("two", server.url("/two"))
    )
    poller = Poller(resources)
    assert (await poller.poll_source_now("one")).new == 3  # type: ignore[union-attr]
    assert (await poller.poll_source_now("two")).new == 1  # type: ignore[union-attr]

    articles = {a.guid: a for a in await rows(resources, Article)}
    assert len(articles) == 4
    shared = articles["a1"].story_id
    assert shared is not None
    assert articles["a2"].story_id == articles["b1"].story_id == shared
    assert articles["a3"].story_id not in {None, shared}
    (story,) = await rows(resources, Story, Story.id == shared)
    assert story.article_count == 3
    assert sorted(story.source_ids) == ["one", "two"]
    # The earliest published copy is canonical, though it came second in its feed.
    assert story.canonical_article_id == articles["a2"].id
    (single,) = await rows(resources, Story, Story.id == articles["a3"].story_id)
    assert (single.article_count, single.source_ids) == (1, ["one"])
    assert single.canonical_article_id == articles["a3"].id


async def test_language_and_enrichment_only_for_new_and_changed_items(
    resources: Resources, clock: FakeClock
) -> None:
    clock.set(NOW)
    await add_sources(resources, source("s", "https://s.example/feed"))

    def data(n: int, body: str) -> ArticleData:
        return article_data(
            f"guid:{n}",
            url=f"https://s.example/{n}",
            title=f"Item {n}",
            published_at=NOW,
            content_hash=f"{n}-{body}",
            guid=str(n),
            summary=body,
            text=body,
        )

    completed: list[str] = []

    def complete(item: ArticleData) -> ArticleData:
        completed.append(item.identity)
        return replace(item, language="en", countries=("PK",))

    async with resources.sessionmaker() as session:
        await upsert_articles(
            session, source_id="s", items=[data(1, "a"), data(2, "b")], now=NOW, complete=complete
        )
        await session.commit()
    completed.clear()
    async with resources.sessionmaker() as session:
        stored = await upsert_articles(
            session,
            source_id="s",
            items=[data(1, "a"), data(2, "b2"), data(3, "c"), data(3, "c")],
            now=NOW,
            complete=complete,
        )
        await session.commit()

    assert completed == ["guid:2", "guid:3"]
    assert [change for _, change in stored] == ["unchanged", "updated", "new", "unchanged"]
    assert stored[2][0].id == stored[3][0].id
    assert stored[2][0].data.countries == ("PK",)
    rows_by_guid = {a.guid: a for a in await rows(resources, Article)}
    assert {guid: (a.language, a.countries) for guid, a in rows_by_guid.items()} == {
        "1": ("en", ["PK"]),
        "2": ("en", ["PK"]),
        "3": ("en", ["PK"]),
    }
    assert rows_by_guid["2"].summary == "b2"
