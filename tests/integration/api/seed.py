"""Rows the API tests read: a source, articles, a story, matches, a delivery."""

from __future__ import annotations

from datetime import datetime, timedelta

from service.db.models import Delivery, DeliveryAttempt, Match, Source, Story
from service.runtime import Resources
from service.storage.articles import ArticleData, upsert_article


async def add_source(resources: Resources, source_id: str, *, tier: str = "news") -> None:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        session.add(
            Source(
                id=source_id,
                name=source_id,
                kind="feed",
                url=f"http://127.0.0.1:9/{source_id}",
                tier=tier,
                options={},
                created_at=now,
                updated_at=now,
                next_poll_at=now + timedelta(days=1),
            )
        )
        await session.commit()


async def add_article(
    resources: Resources,
    source_id: str,
    title: str,
    *,
    published: datetime,
    text: str = "",
    countries: tuple[str, ...] = (),
    story_id: int | None = None,
) -> int:
    async with resources.sessionmaker() as session:
        article, _ = await upsert_article(
            session,
            source_id=source_id,
            data=ArticleData(
                identity=title[:200],
                guid=None,
                url=f"https://news.example/{abs(hash(title))}",
                canonical_url=f"https://news.example/{abs(hash(title))}",
                title=title,
                summary=text[:100],
                text=text,
                author=None,
                published_at=published,
                published_valid=True,
                language="en",
                content_hash=str(abs(hash(title + text))),
                countries=countries,
            ),
            now=published,
        )
        article.story_id = story_id
        await session.commit()
        return article.id


async def add_story(resources: Resources, title: str, *, seen: datetime) -> int:
    async with resources.sessionmaker() as session:
        story = Story(title=title, first_seen_at=seen, last_seen_at=seen, source_ids=[])
        session.add(story)
        await session.commit()
        return story.id


async def add_match(
    resources: Resources, article_id: int, rule_id: str, *, at: datetime, score: float = 1.0
) -> None:
    async with resources.sessionmaker() as session:
        session.add(
            Match(
                article_id=article_id,
                rule_id=rule_id,
                score=score,
                terms=["lng"],
                snippet="…LNG…",
                highlights=[[1, 4]],
                matched_at=at,
            )
        )
        await session.commit()


async def add_delivery(
    resources: Resources, subscription_id: int, *, status: str, key: str = "p1"
) -> int:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        delivery = Delivery(
            subscription_id=subscription_id,
            channel="email",
            event_type="digest.published",
            period_key=key,
            status=status,
            attempts=3,
            next_attempt_at=now,
            message_id=f"<{key}-{subscription_id}@dealwatch.test>",
            last_error="550 mailbox unavailable" if status == "failed" else None,
            created_at=now,
        )
        session.add(delivery)
        await session.flush()
        session.add(
            DeliveryAttempt(
                delivery_id=delivery.id,
                number=1,
                started_at=now,
                finished_at=now,
                outcome="failed",
                code=550,
                error="mailbox unavailable",
            )
        )
        await session.commit()
        return delivery.id
