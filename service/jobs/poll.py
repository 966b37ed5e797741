"""Polling: claim due sources, fetch, parse, normalise, store, match, queue notifications.

One source is one unit of work: its own claim, its own transaction, its own failure. The
network fetch happens with no transaction open.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import update

import alerts
from alerts.normalise import (
    canonical_url,
    content_hash,
    detect_language,
    html_to_text,
    identity,
    normalise_published,
)
from service import metrics
from service.db.models import Source
from service.exceptions import FetchError, SourceParseError, UnsafeURLError
from service.jobs.matchers import MatcherCache
from service.runtime import Resources
from service.sources.fetcher import Fetched, FetchOptions, HostLimiter, NotModified, fetch
from service.sources.parsers import ParsedDocument, ParsedItem, parser_for
from service.storage.articles import ArticleData, upsert_article
from service.storage.claims import claim_due
from service.storage.matches import list_audiences, list_rule_tags, record_matches

log = logging.getLogger(__name__)

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
    options: dict[str, object]
    interval_minutes: int
    etag: str | None
    last_modified: str | None
    consecutive_failures: int


def fetch_options(resources: Resources) -> FetchOptions:
    http = resources.settings.http
    return FetchOptions(
        timeout_seconds=http.timeout_seconds,
        max_bytes=http.max_body_bytes,
        max_redirects=http.max_redirects,
        allow_loopback=http.allow_loopback,
        min_host_interval_seconds=http.min_host_interval_seconds,
        per_host_concurrency=http.per_host_concurrency,
        user_agent=http.user_agent,
    )


class Poller:
    """Polls sources for one process; holds the per-host limiter and the compiled rules."""

    def __init__(
        self,
        resources: Resources,
        *,
        limiter: HostLimiter | None = None,
        matchers: MatcherCache | None = None,
    ) -> None:
        self.resources = resources
        self.options = fetch_options(resources)
        self.limiter = limiter or HostLimiter.from_options(self.options)
        self.matchers = matchers or MatcherCache()

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
        gate = asyncio.Semaphore(settings.concurrency)

        async def one(source_id: str) -> PollResult:
            async with gate:
                return await self._poll(source_id)

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
            view = _SourceView(
                id=row.id,
                kind=row.kind,
                url=row.url,
                tier=row.tier,
                options=dict(row.options),
                interval_minutes=row.interval_minutes,
                etag=row.etag,
                last_modified=row.last_modified,
                consecutive_failures=row.consecutive_failures,
            )
        try:
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
                document = parser_for(view.kind).parse(
                    response.content,
                    url=response.final_url,
                    content_type=response.content_type,
                    options=view.options,
                )
        except (FetchError, SourceParseError, UnsafeURLError) as exc:
            return await self._record_failure(view, exc)
        try:
            return await self._store(view, response, document)
        except Exception as exc:  # per-source boundary: the batch goes on, the error is recorded
            log.exception("storing source %s failed", view.id)
            return await self._record_failure(view, exc)

    async def _store(
        self,
        view: _SourceView,
        response: Fetched | NotModified,
        document: ParsedDocument | None,
    ) -> PollResult:
        now = self.resources.clock()
        new = updated = matched = 0
        async with self.resources.sessionmaker() as session:
            if document is not None:
                if document.parser_used == "feedparser":
                    metrics.PARSER_FALLBACKS.inc()
                matcher = await self.matchers.get(session)
                rule_tags = await list_rule_tags(session)
                audiences = await list_audiences(session)
                for item in document.items:
                    data = normalise_item(item, fetched_at=now, default_language=document.language)
                    if data is None:
                        continue
                    article, change = await upsert_article(
                        session, source_id=view.id, data=data, now=now
                    )
                    if change == "unchanged":
                        continue
                    if change == "new":
                        new += 1
                    else:
                        updated += 1
                    matches = matcher.match(
                        alerts.Article(
                            id=str(article.id),
                            title=article.title,
                            body=article.text or article.summary,
                            url=article.url,
                            source=view.id,
                            domain=urlsplit(article.url).hostname or "",
                            tier=view.tier,
                            lang=article.language or "",
                            countries=frozenset(article.countries),
                            entities=frozenset(article.entities),
                            published=article.published_at,
                        )
                    )
                    matched += await record_matches(
                        session,
                        article_id=article.id,
                        matches=matches,
                        rule_tags=rule_tags,
                        audiences=audiences,
                        now=now,
                    )
            not_modified = isinstance(response, NotModified)
            values: dict[str, object] = {
                "etag": response.etag,
                "last_modified": response.last_modified,
                "last_status": "not_modified" if not_modified else "ok",
                "last_http_status": 304 if not_modified else response.status_code,  # type: ignore[union-attr]
                "last_error": None,
                "last_polled_at": now,
                "last_success_at": now,
                "consecutive_failures": 0,
                "health": "ok",
                "items_seen": Source.items_seen + new,
                "polls_total": Source.polls_total + 1,
                "polls_not_modified": Source.polls_not_modified + (1 if not_modified else 0),
                "next_poll_at": now + timedelta(minutes=view.interval_minutes),
                "lease_owner": None,
                "lease_until": None,
            }
            if new:
                values["last_new_item_at"] = now
            await session.execute(
                update(Source)
                .where(Source.id == view.id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
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

    async def _record_failure(self, view: _SourceView, exc: Exception) -> PollResult:
        now = self.resources.clock()
        failures = view.consecutive_failures + 1
        message = f"{type(exc).__name__}: {exc}"
        retry_after = exc.retry_after if isinstance(exc, FetchError) else None
        # Exponential backoff, capped at a day; Retry-After wins when it asks for longer.
        backoff = min(
            timedelta(minutes=view.interval_minutes) * 2 ** min(failures, 10), timedelta(days=1)
        )
        if retry_after is not None:
            backoff = max(backoff, timedelta(seconds=retry_after))
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
                    next_poll_at=now + backoff,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        metrics.POLLS.labels("error").inc()
        log.warning("source failed source_id=%s error=%s", view.id, message)
        return PollResult(view.id, "error", error=message)


def normalise_item(
    item: ParsedItem, *, fetched_at: datetime, default_language: str = ""
) -> ArticleData | None:
    """Turn a parsed item into storable, matchable data; None for an item with no link/title."""
    title = html_to_text(item.title).strip()
    if not title and not item.url:
        return None
    summary = html_to_text(item.summary_html)
    text = html_to_text(item.content_html) or summary
    url = item.url or ""
    canonical = canonical_url(url) if url else ""
    digest = content_hash(title, text)
    published, valid = normalise_published(item.published, fetched_at=fetched_at)
    language = item.language or default_language or detect_language(f"{title}\n{text}")
    return ArticleData(
        identity=identity(item.guid, canonical, digest),
        guid=item.guid,
        url=url,
        canonical_url=canonical,
        title=title or url,
        summary=summary,
        text=text,
        author=item.author or None,
        published_at=published,
        published_valid=valid,
        language=(language or None) and language[:12],
        content_hash=digest,
    )
