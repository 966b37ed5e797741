"""Story rows after a batch: whatever joins whom, each story holds what its articles say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select

from alerts.stories import StoryMember, canonical_member
from service.runtime import Resources
from service.storage.articles import ARTICLES, ArticleData, plan_articles, write_articles
from service.storage.sources import SOURCES
from service.storage.stories import STORIES, finish_stories, open_stories
from tests.integration.sources.test_article_rows import add_source
from tests.support.articles import article_data

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

# For each article: ("found",), ("join", j) a founder or joiner j earlier in the batch, or
# ("earlier", k) the k-th story of the first batch.
_PLACEMENT = st.one_of(
    st.just(("found", 0)),
    st.tuples(st.just("join"), st.integers(0, 20)),
    st.tuples(st.just("earlier"), st.integers(0, 20)),
)


def article(source_id: str, n: int, minutes: int) -> ArticleData:
    return article_data(
        f"{source_id}-{n}",
        url=f"https://example.org/{source_id}/{n}",
        title=f"{source_id} story {n}",
        # Few distinct times: ties are broken by the article key.
        published_at=NOW - timedelta(minutes=minutes),
        content_hash=f"{n:064d}",
        text="text",
        language="en",
    )


def store_batch(
    conn: Connection,
    source_id: str,
    tier: str,
    placements: list[tuple[str, int]],
    minutes: list[int],
    earlier: list[int],
    now: datetime,
    interloper: bool = False,
) -> None:
    items = [
        article(source_id, n, m) for n, m in zip(range(len(placements)), minutes, strict=False)
    ]
    resolved: list[int | None] = []
    for i, (kind, ref) in enumerate(placements[: len(items)]):
        if kind == "join" and i:
            resolved.append(-(ref % i + 1))
        elif kind == "earlier" and earlier:
            resolved.append(earlier[ref % len(earlier)])
        else:
            resolved.append(None)
    plan = plan_articles(conn, source_id=source_id, items=items)
    opened = open_stories(
        conn, articles=plan.fresh, placements=resolved, source_id=source_id, now=now
    )
    if interloper:
        # Another writer's article between the stories and the articles: the ids guessed for
        # the founders are all wrong.
        other = article("other", len(placements), 0)
        write_articles(conn, plan_articles(conn, source_id="other", items=[other]), now=now)
    written = write_articles(
        conn,
        plan,
        now=now,
        story_ids={
            d.identity: story for d, story in zip(plan.fresh, opened.story_ids, strict=True)
        },
    )
    finish_stories(conn, opened=opened, articles=[a for a, _ in written], tier=tier, now=now)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.lists(_PLACEMENT, max_size=12),
    second=st.lists(_PLACEMENT, max_size=12),
    minutes=st.lists(st.integers(0, 3), min_size=24, max_size=24),
    tier=st.sampled_from(["news", "official", "aggregator"]),
    interloper=st.booleans(),
)
def test_each_story_holds_its_articles(
    resources: Resources,
    first: list[tuple[str, int]],
    second: list[tuple[str, int]],
    minutes: list[int],
    tier: str,
    interloper: bool,
) -> None:
    later = NOW + timedelta(minutes=5)
    with resources.sync_engine.connect() as conn:
        conn.begin()
        try:
            add_source(conn, "early")
            add_source(conn, "late", tier)
            add_source(conn, "other")
            store_batch(conn, "early", "news", first, minutes[:12], [], NOW)
            earlier = list(conn.execute(select(STORIES.c.id).order_by(STORIES.c.id)).scalars())
            store_batch(conn, "late", tier, second, minutes[12:], earlier, later, interloper)

            tiers = dict(conn.execute(select(SOURCES.c.id, SOURCES.c.tier)).all())
            members: dict[int, list[tuple[StoryMember, str, str]]] = {}
            for row in conn.execute(select(ARTICLES).where(ARTICLES.c.source_id != "other")):
                assert row.story_id is not None
                members.setdefault(row.story_id, []).append(
                    (
                        StoryMember(str(row.id), tiers[row.source_id], row.published_at),
                        row.title,
                        row.source_id,
                    )
                )
            stories = {row.id: row for row in conn.execute(select(STORIES))}
            assert set(stories) == set(members)
            for story_id, story in stories.items():
                found = members[story_id]
                best = canonical_member(member for member, _, _ in found)
                assert story.canonical_article_id == int(best.article_key)
                assert story.title == next(t for m, t, _ in found if m is best)
                assert story.article_count == len(found)
                outlets = list(
                    dict.fromkeys(
                        source
                        for _, _, source in sorted(found, key=lambda f: int(f[0].article_key))
                    )
                )
                assert story.source_ids == outlets
                touched = any(source == "late" for _, _, source in found)
                assert story.last_seen_at == (later if touched else NOW)
        finally:
            conn.rollback()
