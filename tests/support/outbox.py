"""Seed the outbox the way production does: articles, then matches through ``record_matches``."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

import alerts
from alerts.rulefile import RuleDefinition
from service.catalogue import SourceDefinition, sync_rules, sync_sources
from service.db.models import Article
from service.storage.matches import list_audiences, list_rule_tags, record_matches

RULE = RuleDefinition(
    id="pk-ru-energy",
    name="Pakistan–Russia energy",
    description="",
    query="Pakistan Russia (LNG OR oil)",
    tags=("energy",),
)


async def seed_catalogue(session: AsyncSession, *, now: datetime) -> None:
    """One news source and one watch rule (disabled source: nothing polls it in tests)."""
    await sync_sources(
        session,
        [
            SourceDefinition(
                id="example-news",
                name="Example News",
                url="http://127.0.0.1:9/feed.xml",
                enabled=False,
            )
        ],
        now=now,
    )
    await sync_rules(session, [RULE], now=now)


async def add_matched_articles(
    session: AsyncSession, titles: list[str], *, now: datetime, story_id: int | None = None
) -> list[int]:
    """Store articles and their matches; notifications are queued for every audience."""
    audiences = await list_audiences(session)
    tags = await list_rule_tags(session)
    ids = []
    for title in titles:
        digest = hashlib.sha256(title.encode()).hexdigest()
        article = Article(
            source_id="example-news",
            identity=digest[:40],
            url=f"https://news.example.org/{digest[:12]}",
            canonical_url=f"https://news.example.org/{digest[:12]}",
            title=title,
            summary=f"{title}. Pakistan and Russia discussed LNG and oil supply.",
            text="",
            published_at=now,
            fetched_at=now,
            content_hash=digest,
            story_id=story_id,
        )
        session.add(article)
        await session.flush()
        await record_matches(
            session,
            article_id=article.id,
            matches=[
                alerts.Match(
                    rule_id=RULE.id,
                    article_id=str(article.id),
                    score=1.0,
                    terms=("Pakistan", "Russia", "LNG"),
                    snippet=title,
                    highlights=((0, min(8, len(title))),),
                )
            ],
            rule_tags=tags,
            audiences=audiences,
            now=now,
        )
        ids.append(article.id)
    return ids
