"""Polling: claim due sources, fetch, parse, normalise, store, match, queue notifications.

One source is one unit of work: its own claim, its own transaction, its own failure. The
network fetch happens with no transaction open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    bindparam,
    literal_column,
    null,
    select,
    true,
    update,
)

import alerts
from alerts.enrich import Gazetteer
from alerts.matching import Matcher
from alerts.normalise import (
    canonical_url,
    content_hash,
    detect_language,
    html_to_text,
    identity,
    language_sample,
    normalise_published,
)
from alerts.stories import StoryIndex, story_text
from service import metrics, stages
from service.db.models import Article, Source
from service.exceptions import FetchError, SourceParseError, UnsafeURLError
from service.jobs.matchers import MatcherCache
from service.preview import fetch_options_from
from service.runtime import Resources
from service.settings import config_dir
from service.sources.fetcher import Fetched, FetchOptions, HostLimiter, NotModified, fetch
from service.sources.parsers import ParsedDocument, ParsedItem, parser_for
from service.sources.parsers.html import extract_main_text
from service.sources.schedule import SchedulePolicy, next_poll_at
from service.storage.articles import (
    ARTICLES,
    ArticleData,
    complete_plan,
    plan_articles,
    write_articles,
)
from service.storage.bulk import BulkStatement
from service.storage.claims import claim_due
from service.storage.matches import (
    Audience,
    list_audiences,
    list_rule_tags,
    record_matches_many,
)
from service.storage.sources import SOURCES
from service.storage.stories import (
    finish_stories,
    open_stories,
    recent_story_entries,
    story_key,
)

log = logging.getLogger(__name__)

_STORY_SYNC_EVERY = timedelta(seconds=30)

# The per-document statements are built once: building an UPDATE of 16 columns and its cache
# key cost ~7x its execution on SQLite (~340 us of ~400 per document). They run as
# BulkStatements, with parameters made ready for the driver: through Connection.execute,
# binding them cost several times SQLite's work.
# Constants are written into the statements (a BulkStatement binds only its rows' keys; SQLite
# would otherwise bind an OFFSET of its own).
_RECENT_PUBLISHED = BulkStatement(
    select(ARTICLES.c.published_at)
    .where(ARTICLES.c.source_id == bindparam("source_id"), ARTICLES.c.published_valid.is_(true()))
    .order_by(ARTICLES.c.published_at.desc())
    .limit(literal_column("20"))
    .offset(literal_column("0")),
    ["source_id"],
)


def _source_polled(*, new_items: bool) -> BulkStatement:
    """The source's update after a successful poll (with ``last_new_item_at`` when it had new
    items): the bound parameters are ``source_id`` and the ``p_*`` names."""

    def bound(name: str, column: str) -> BindParameter[Any]:
        return bindparam(name, type_=SOURCES.c[column].type)

    values: dict[str, object] = {
        "etag": bound("p_etag", "etag"),
        "last_modified": bound("p_last_modified", "last_modified"),
        "last_status": bound("p_last_status", "last_status"),
        "last_http_status": bound("p_last_http_status", "last_http_status"),
        "last_error": null(),
        "last_polled_at": bound("p_now", "last_polled_at"),
        "last_success_at": bound("p_now", "last_success_at"),
        "consecutive_failures": literal_column("0"),
        "health": bound("p_health", "health"),
        "items_seen": SOURCES.c.items_seen + bound("p_new", "items_seen"),
        "polls_total": SOURCES.c.polls_total + literal_column("1"),
        "polls_not_modified": SOURCES.c.polls_not_modified
        + bound("p_not_modified", "polls_not_modified"),
        "next_poll_at": bound("p_next_poll_at", "next_poll_at"),
        "lease_owner": null(),
        "lease_until": null(),
    }
    if new_items:
        values["last_new_item_at"] = bound("p_now", "last_new_item_at")
    return BulkStatement(
        update(SOURCES).where(SOURCES.c.id == bindparam("source_id")).values(**values),
        [
            "source_id",
            "p_etag",
            "p_last_modified",
            "p_last_status",
            "p_last_http_status",
            "p_now",
            "p_health",
            "p_new",
            "p_not_modified",
            "p_next_poll_at",
        ],
    )


_SOURCE_POLLED = _source_polled(new_items=False)
_SOURCE_POLLED_NEW = _source_polled(new_items=True)
_T = TypeVar("_T")

Outcome = Literal["ok", "not_modified", "error"]


@dataclass(frozen=True, slots=True)
class PollResult:
    """What polling one source did. Failures are values here: one source never stops a batch."""

    source_id: str
    outcome: Outcome
    new: int = 0
    updated: int = 0
    matches: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _SourceView:
    id: str
    kind: str
    url: str
    tier: str
    options: dict[str, Any]
    interval_minutes: int
    etag: str | None
    last_modified: str | None
    consecutive_failures: int
    created_at: datetime
    last_new_item_at: datetime | None


def _view_of(row: Source) -> _SourceView:
    return _SourceView(
        id=row.id,
        kind=row.kind,
        url=row.url,
        tier=row.tier,
        options=dict(row.options),
        interval_minutes=row.interval_minutes,
        etag=row.etag,
        last_modified=row.last_modified,
        consecutive_failures=row.consecutive_failures,
        created_at=row.created_at,
        last_new_item_at=row.last_new_item_at,
    )


def fetch_options(resources: Resources) -> FetchOptions:
    return fetch_options_from(resources.settings.http)


class Poller:
    """Polls sources for one process; holds the per-host limiter and the compiled rules."""

    def __init__(
        self,
        resources: Resources,
        *,
        limiter: HostLimiter | None = None,
        matchers: MatcherCache | None = None,
        gazetteer: Gazetteer | None = None,
    ) -> None:
        self.resources = resources
        self.options = fetch_options(resources)
        self.limiter = limiter or HostLimiter.from_options(self.options)
        self.matchers = matchers or MatcherCache()
        self.gazetteer = gazetteer or load_gazetteer()
        poll = resources.settings.poll
        self.policy = SchedulePolicy(
            min_interval=timedelta(minutes=poll.min_interval_minutes),
            max_interval=timedelta(minutes=poll.max_interval_minutes),
        )
        self.stories = StoryIndex()
        self._story_window = timedelta(hours=poll.story_window_hours)
        self._stories_built_at: datetime | None = None
        self._stories_synced_at: datetime | None = None
        # Sources are polled concurrently; assigning a story and recording it in the index
        # must not interleave, or two copies of one story arriving together found two stories.
        self._story_lock = asyncio.Lock()
        # SQLite has one writer: concurrent store transactions only queue on its file lock
        # (and time out under load), so this process stores one source at a time there while
        # fetching and parsing stay concurrent. PostgreSQL stores concurrently.
        self._store_gate: asyncio.Lock | None = (
            asyncio.Lock() if resources.engine.dialect.name == "sqlite" else None
        )

    async def poll_due(self) -> list[PollResult]:
        """Claim the due sources and poll them with bounded concurrency."""
        settings = self.resources.settings.poll
        now = self.resources.clock()
        async with self.resources.sessionmaker() as session:
            ids = await claim_due(
                session,
                Source,
                due_column=Source.next_poll_at,
                now=now,
                owner=self.resources.owner,
                lease_until=now + timedelta(seconds=settings.lease_seconds),
                limit=settings.batch_size,
                where=[Source.enabled.is_(True)],
            )
            await session.commit()
        if not ids:
            return []
        # One read for the whole batch: a session and a query per source cost as much as
        # storing a few of its items. Likewise the rules: a rule changed while this batch
        # runs applies from the next tick on, as one changed during a store always did.
        async with self.resources.sessionmaker() as session:
            views = {
                row.id: _view_of(row)
                for row in (await session.execute(select(Source).where(Source.id.in_(ids))))
                .scalars()
                .all()
            }
            matcher = await self.matchers.get(session)
        gate = asyncio.Semaphore(settings.concurrency)

        async def one(source_id: str) -> PollResult:
            async with gate:
                view = views.get(source_id)
                if view is None:
                    return PollResult(source_id, "error", error="source deleted")
                return await self._poll_view(view, matcher)

        return list(await asyncio.gather(*(one(source_id) for source_id in ids)))

    async def poll_source_now(self, source_id: str) -> PollResult | None:
        """Poll one source now, due or not (unless another process is polling it)."""
        now = self.resources.clock()
        lease = now + timedelta(seconds=self.resources.settings.poll.lease_seconds)
        async with self.resources.sessionmaker() as session:
            source = await session.get(Source, source_id)
            if source is None:
                return None
            ids = await claim_due(
                session,
                Source,
                due_column=Source.next_poll_at,
                now=max(now, source.next_poll_at),
                owner=self.resources.owner,
                lease_until=lease,
                limit=1,
                where=[Source.id == source_id],
            )
            await session.commit()
        if not ids:
            return PollResult(source_id, "error", error="being polled by another process")
        return await self._poll(source_id)

    async def _poll(self, source_id: str) -> PollResult:
        async with self.resources.sessionmaker() as session:
            row = await session.get(Source, source_id)
            if row is None:
                return PollResult(source_id, "error", error="source deleted")
            view = _view_of(row)
        return await self._poll_view(view)

    async def _poll_view(self, view: _SourceView, matcher: Matcher | None = None) -> PollResult:
        try:
            with stages.stage("fetch"):
                response = await fetch(
                    self.resources.http,
                    view.url,
                    etag=view.etag,
                    last_modified=view.last_modified,
                    options=self.options,
                    limiter=self.limiter,
                )
            document = None
            if isinstance(response, Fetched):
                with stages.stage("parse"):
                    document = parser_for(view.kind).parse(
                        response.content,
                        url=response.final_url,
                        content_type=response.content_type,
                        options=view.options,
                    )
        except (FetchError, SourceParseError, UnsafeURLError) as exc:
            return await self._record_failure(view, exc)
        try:
            known: set[str] = set()
            pages: dict[str, str] = {}
            if document is not None and view.kind == "html" and view.options.get("follow"):
                known, pages = await self._follow(view, document)
            if self._store_gate is None:
                return await self._store(
                    view, response, document, pages=pages, known=known, matcher=matcher
                )
            async with self._store_gate:
                return await self._store(
                    view, response, document, pages=pages, known=known, matcher=matcher
                )
        except Exception as exc:  # per-source boundary: the batch goes on, the error is recorded
            log.exception("storing source %s failed", view.id)
            # The rolled-back articles may be in the story index (and SQLite reuses their ids):
            # rebuild it from the database at the next store.
            self._stories_built_at = None
            return await self._record_failure(view, exc)

    async def _follow(
        self, view: _SourceView, document: ParsedDocument
    ) -> tuple[set[str], dict[str, str]]:
        """Fetch the pages of a listing's new items; return known identities and page texts.

        Items already stored are not fetched again (and not re-stored: without their page
        text they would look changed).
        """
        now = self.resources.clock()
        candidates: dict[str, ParsedItem] = {}
        for item in document.items:
            data = normalise_item(item, fetched_at=now)
            if data is not None and item.url:
                candidates[data.identity] = item
        async with self.resources.sessionmaker() as session:
            known = set(
                (
                    await session.execute(
                        select(Article.identity).where(
                            Article.source_id == view.id,
                            Article.identity.in_(list(candidates)),
                        )
                    )
                ).scalars()
            )
        fresh = [item for key, item in candidates.items() if key not in known]
        fresh = fresh[: self.resources.settings.poll.follow_limit]
        selector = view.options.get("content")

        async def page(item: ParsedItem) -> tuple[str, str] | None:
            assert item.url is not None
            try:
                result = await fetch(
                    self.resources.http,
                    item.url,
                    etag=None,
                    last_modified=None,
                    options=self.options,
                    limiter=self.limiter,
                )
            except (FetchError, UnsafeURLError) as exc:
                log.warning("article page failed source_id=%s error=%s", view.id, exc)
                return None
            if not isinstance(result, Fetched):
                return None
            text = extract_main_text(
                result.content,
                selector=selector if isinstance(selector, str) else None,
                content_type=result.content_type,
            )
            return item.url, text

        found = await asyncio.gather(*(page(item) for item in fresh))
        return known, dict(pair for pair in found if pair is not None)

    async def _store(
        self,
        view: _SourceView,
        response: Fetched | NotModified,
        document: ParsedDocument | None,
        *,
        pages: dict[str, str] | None = None,
        known: set[str] | None = None,
        matcher: Matcher | None = None,
    ) -> PollResult:
        now = self.resources.clock()
        pages = pages or {}
        known = known or set()
        rule_tags: dict[str, frozenset[str]] = {}
        audiences: list[Audience] = []
        prepared: dict[str, PreparedItem] = {}
        batch: list[ArticleData] = []
        if document is not None:
            if document.parser_used == "feedparser":
                metrics.PARSER_FALLBACKS.inc()
            with stages.stage("normalise"):
                for item in document.items:
                    ready = prepare_item(
                        item,
                        fetched_at=now,
                        default_language=document.language,
                        page_text=pages.get(item.url or ""),
                    )
                    if ready is not None and ready.data.identity not in known:
                        batch.append(ready.data)
                        # The first copy of an identity is the one stored.
                        prepared.setdefault(ready.data.identity, ready)
        if document is not None and (matcher is None or len(matcher)):
            async with self.resources.sessionmaker() as session:
                if matcher is None:
                    matcher = await self.matchers.get(session)
                # Tags and audiences only serve recording matches: none without rules.
                if len(matcher):
                    rule_tags = await list_rule_tags(session)
                    audiences = await list_audiences(session)

        def write(conn: Connection) -> tuple[int, int, int]:
            if document is not None:
                with stages.stage("story SQL"):
                    self._sync_story_index(conn, now)
            return self._write(
                conn,
                view,
                response,
                document,
                batch=batch,
                prepared=prepared,
                matcher=matcher,
                rule_tags=rule_tags,
                audiences=audiences,
                now=now,
            )

        # The rest is one synchronous function on one connection, under the story lock
        # (placing articles in the index and writing their stories must not interleave with
        # another source's): Core statements, not the ORM's unit of work.
        engine = self.resources.write_engine
        if engine is not None:
            # SQLite: the whole transaction on a worker thread with a plain sqlite3
            # connection, one hand-over per document instead of one per DBAPI call.
            async with self._story_lock:
                new, updated, matched = await asyncio.to_thread(_in_transaction, engine, write)
        else:
            async with self.resources.sessionmaker() as session:
                async with self._story_lock:
                    new, updated, matched = await session.run_sync(
                        lambda sync: write(sync.connection())
                    )
                with stages.stage("commit"):
                    await session.commit()
        outcome: Outcome = "not_modified" if isinstance(response, NotModified) else "ok"
        metrics.POLLS.labels(outcome).inc()
        metrics.ARTICLES.labels("new").inc(new)
        metrics.ARTICLES.labels("updated").inc(updated)
        metrics.MATCHES.inc(matched)
        log.info(
            "source polled source_id=%s outcome=%s new=%d matches=%d",
            view.id,
            outcome,
            new,
            matched,
        )
        return PollResult(view.id, outcome, new=new, updated=updated, matches=matched)

    def _write(
        self,
        conn: Connection,
        view: _SourceView,
        response: Fetched | NotModified,
        document: ParsedDocument | None,
        *,
        batch: list[ArticleData],
        prepared: dict[str, PreparedItem],
        matcher: Matcher | None,
        rule_tags: dict[str, frozenset[str]],
        audiences: list[Audience],
        now: datetime,
    ) -> tuple[int, int, int]:
        """Store a document's articles, file the new ones into stories, record their matches
        and update the source; return the counts of new, updated and matched articles.

        Runs under the story lock: placing articles in the index and writing their stories
        must not interleave with another source's.
        """
        new = updated = matched = 0
        if document is not None:
            gazetteer = self.gazetteer

            def complete(data: ArticleData) -> ArticleData:
                ready = prepared[data.identity]
                with stages.stage("normalise"):
                    data = ready.with_language(data)
                with stages.stage("gazetteer"):
                    return ready.with_mentions(data, gazetteer)

            with stages.stage("article SQL"):
                plan = plan_articles(conn, source_id=view.id, items=batch)
            plan = complete_plan(plan, complete)
            with stages.stage("stories"):
                keys = [story_key(view.id, data.identity) for data in plan.fresh]
                texts = [story_text(data.title, data.summary or data.text) for data in plan.fresh]
                # A founder is known as "-(its position + 1)" until its story row has an id,
                # so a near-duplicate later in this same document joins it.
                found = self.stories.place_many(
                    [
                        (key, text, f"-{i + 1}")
                        for i, (key, text) in enumerate(zip(keys, texts, strict=True))
                    ]
                )
            with stages.stage("story SQL"):
                opened = open_stories(
                    conn,
                    articles=plan.fresh,
                    placements=[int(story) if story is not None else None for story in found],
                    source_id=view.id,
                    now=now,
                )
            with stages.stage("article SQL"):
                stored = write_articles(
                    conn,
                    plan,
                    now=now,
                    story_ids={
                        data.identity: story_id
                        for data, story_id in zip(plan.fresh, opened.story_ids, strict=True)
                    },
                )
            fresh = [article for article, change in stored if change == "new"]
            with stages.stage("story SQL"):
                finish_stories(conn, opened=opened, articles=fresh, tier=view.tier, now=now)
            with stages.stage("stories"):
                # place_many filed every one of them: only their story keys change.
                self.stories.update_stories(zip(keys, map(str, opened.story_ids), strict=True))
            found_matches: list[tuple[int, list[alerts.Match]]] = []
            for article, change in stored:
                if change == "unchanged":
                    continue
                if change == "new":
                    new += 1
                else:
                    updated += 1
                if matcher is None or not len(matcher):
                    continue
                data = article.data
                found_matches.append(
                    (
                        article.id,
                        matcher.match(
                            alerts.Article(
                                id=str(article.id),
                                title=data.title,
                                body=data.text or data.summary,
                                url=data.url,
                                source=view.id,
                                domain=urlsplit(data.url).hostname or "",
                                tier=view.tier,
                                lang=data.language or "",
                                countries=frozenset(data.countries),
                                entities=frozenset(data.entities),
                                published=data.published_at,
                            )
                        ),
                    )
                )
            if found_matches:
                matched = record_matches_many(
                    conn, found=found_matches, rule_tags=rule_tags, audiences=audiences, now=now
                )
        with stages.stage("source SQL"):
            self._update_source(conn, view, response, document, new=new, now=now)
        return new, updated, matched

    def _update_source(
        self,
        conn: Connection,
        view: _SourceView,
        response: Fetched | NotModified,
        document: ParsedDocument | None,
        *,
        new: int,
        now: datetime,
    ) -> None:
        not_modified = isinstance(response, NotModified)
        last_new = now if new else view.last_new_item_at
        stale_hours = view.options.get("stale_after_hours")
        stale_after = timedelta(
            hours=stale_hours
            if isinstance(stale_hours, int | float) and stale_hours > 0
            else self.resources.settings.poll.stale_after_hours
        )
        silent = now - (last_new or view.created_at) > stale_after
        # Served by the covering index ix_articles_source_id_published_valid_published_at.
        recent = [row[0] for row in _RECENT_PUBLISHED.fetch(conn, {"source_id": view.id})]
        due = next_poll_at(
            now=now,
            interval=timedelta(minutes=view.interval_minutes),
            outcome="not_modified" if not_modified else "ok",
            consecutive_failures=0,
            retry_after=None,
            max_age=response.max_age_seconds,
            ttl_minutes=document.ttl_minutes if document is not None else None,
            recent_item_times=recent,
            jitter_seed=view.id,
            policy=self.policy,
        )
        (_SOURCE_POLLED_NEW if new else _SOURCE_POLLED).execute(
            conn,
            [
                {
                    "source_id": view.id,
                    "p_etag": response.etag,
                    "p_last_modified": response.last_modified,
                    "p_last_status": "not_modified" if not_modified else "ok",
                    "p_last_http_status": 304 if not_modified else response.status_code,  # type: ignore[union-attr]
                    "p_now": now,
                    "p_health": "stale" if silent else "ok",
                    "p_new": new,
                    "p_not_modified": 1 if not_modified else 0,
                    "p_next_poll_at": due,
                }
            ],
        )

    def _sync_story_index(self, conn: Connection, now: datetime) -> None:
        """Bring the in-memory story index up to date with what every process stored.

        This process adds its own articles as it files them; the database only matters for
        other processes' articles. So the index is rebuilt from the database every quarter
        window (dropping articles that left the window), and otherwise, at most every
        ``_STORY_SYNC_EVERY``, topped up with the articles it does not know yet among those
        fetched since the last sync (with an overlap of one lease for late commits). The
        caller holds the story lock.
        """
        built = self._stories_built_at
        synced = self._stories_synced_at
        if built is None or now - built > self._story_window / 4 or now < built:
            entries = recent_story_entries(conn, since=now - self._story_window)
            self.stories = StoryIndex(entries)
            self._stories_built_at = now
        elif synced is not None and now - synced >= _STORY_SYNC_EVERY:
            overlap = timedelta(seconds=self.resources.settings.poll.lease_seconds)
            for entry in recent_story_entries(conn, since=synced - overlap, known=self.stories):
                self.stories.add(*entry)
        else:
            return
        self._stories_synced_at = now

    async def _record_failure(self, view: _SourceView, exc: Exception) -> PollResult:
        now = self.resources.clock()
        failures = view.consecutive_failures + 1
        message = f"{type(exc).__name__}: {exc}"
        retry_after = exc.retry_after if isinstance(exc, FetchError) else None
        due = next_poll_at(
            now=now,
            interval=timedelta(minutes=view.interval_minutes),
            outcome="error",
            consecutive_failures=failures,
            retry_after=retry_after,
            max_age=None,
            ttl_minutes=None,
            recent_item_times=(),
            jitter_seed=view.id,
            policy=self.policy,
        )
        failing_after = self.resources.settings.poll.failing_after
        async with self.resources.sessionmaker() as session:
            await session.execute(
                update(Source)
                .where(Source.id == view.id)
                .values(
                    last_status="error",
                    last_http_status=exc.status_code if isinstance(exc, FetchError) else None,
                    last_error=message[:2000],
                    last_polled_at=now,
                    consecutive_failures=failures,
                    health="failing" if failures >= failing_after else "degraded",
                    polls_total=Source.polls_total + 1,
                    next_poll_at=due,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        metrics.POLLS.labels("error").inc()
        log.warning("source failed source_id=%s error=%s", view.id, message)
        return PollResult(view.id, "error", error=message)


def _in_transaction(engine: Engine, work: Callable[[Connection], _T]) -> _T:
    """Run ``work`` in one transaction of ``engine`` (on the calling thread) and commit."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            result = work(conn)
        except BaseException:
            transaction.rollback()
            raise
        with stages.stage("commit"):
            transaction.commit()
    return result


_BUNDLED_GAZETTEER = Path(__file__).resolve().parents[2] / "config" / "gazetteer.toml"


def load_gazetteer(path: Path | None = None) -> Gazetteer:
    """Read the gazetteer once per process.

    ``path``, else ``gazetteer.toml`` in the config folder, else the one shipped with the code
    (a config folder that only overrides sources or rules still gets enrichment). With none
    found, articles are stored without countries and entities and a warning is logged.
    """
    for candidate in (path, config_dir() / "gazetteer.toml", _BUNDLED_GAZETTEER):
        if candidate is not None and candidate.is_file():
            return Gazetteer.from_toml(candidate.read_text(encoding="utf-8"))
    log.warning("no gazetteer.toml found; articles will not be enriched")
    return Gazetteer({}, {})


def _language_code(tag: str) -> str:
    """``en-US`` -> ``en``: rules filter on ISO 639-1 codes."""
    return tag.replace("_", "-").split("-")[0].strip().lower()[:12]


def normalise_item(
    item: ParsedItem,
    *,
    fetched_at: datetime,
    default_language: str = "",
    gazetteer: Gazetteer | None = None,
    page_text: str | None = None,
) -> ArticleData | None:
    """Turn a parsed item into storable, matchable data; None for an item with no link/title.

    Args:
        item: what the parser produced.
        fetched_at: when the document was fetched (the fallback publication time).
        default_language: the document's declared language, used when the item has none.
        gazetteer: finds the countries and entities the article mentions.
        page_text: main text of the item's page (HTML sources that follow links).
    """
    prepared = prepare_item(
        item, fetched_at=fetched_at, default_language=default_language, page_text=page_text
    )
    return prepared.complete(gazetteer) if prepared is not None else None


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """A normalised item whose language detection and enrichment are still to do.

    Identity and content hash are known, so the store can tell new and changed items from
    unchanged ones first and spend the costly steps on the former only.
    """

    data: ArticleData
    mentions: str
    language_sample: str | None

    def complete(self, gazetteer: Gazetteer | None) -> ArticleData:
        """Return the data with its language (if it had to be detected) and mentions."""
        return self.with_mentions(self.with_language(self.data), gazetteer)

    def with_language(self, data: ArticleData) -> ArticleData:
        """``data`` (this item's) with its detected language, when it had to be detected."""
        if self.language_sample is None:
            return data
        language = _language_code(detect_language(self.language_sample))
        return replace(data, language=language or None)

    def with_mentions(self, data: ArticleData, gazetteer: Gazetteer | None) -> ArticleData:
        """``data`` (this item's) with the countries and entities the gazetteer finds."""
        if gazetteer is None:
            return data
        countries, entities = gazetteer.find_sorted(self.mentions)
        # Most articles mention nothing the gazetteer knows and keep their empty defaults:
        # copying a 14-field dataclass for nothing cost 4 us.
        if countries == data.countries and entities == data.entities:
            return data
        return replace(data, countries=countries, entities=entities)


def prepare_item(
    item: ParsedItem,
    *,
    fetched_at: datetime,
    default_language: str = "",
    page_text: str | None = None,
) -> PreparedItem | None:
    """First half of :func:`normalise_item`: everything but language detection and enrichment.

    Args:
        item: what the parser produced.
        fetched_at: when the document was fetched (the fallback publication time).
        default_language: the document's declared language, used when the item has none.
        page_text: main text of the item's page (HTML sources that follow links).
    """
    title = html_to_text(item.title).strip()
    if not title and not item.url:
        return None
    summary = html_to_text(item.summary_html)
    text = page_text or html_to_text(item.content_html) or summary
    url = item.url or ""
    canonical = canonical_url(url) if url else ""
    digest = content_hash(title, text, collapsed=page_text is None)
    published, replaced = normalise_published(item.published, fetched_at=fetched_at)
    declared = item.language or default_language
    language = _language_code(declared) if declared else ""
    # A feed without full content gives its summary as the text: searching it twice finds
    # nothing more.
    parts = (title, text) if summary == text else (title, summary, text)
    # html_to_text's output is already collapsed: joined by single spaces, the gazetteer need
    # not collapse it again (a page's text may not be, and keeps the newlines that make it).
    mentions = ("\n" if page_text else " ").join(part for part in parts if part)
    return PreparedItem(
        data=ArticleData(
            identity=identity(item.guid, canonical, digest),
            guid=item.guid,
            url=url,
            canonical_url=canonical,
            title=title or url,
            summary=summary,
            text=text,
            author=item.author or None,
            published_at=published,
            published_valid=not replaced,
            language=language or None,
            content_hash=digest,
        ),
        mentions=mentions,
        language_sample=None if declared else language_sample(title, summary or text),
    )
