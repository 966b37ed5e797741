"""Sample digests for rendering and delivery tests (Pakistan–Russia energy stories)."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.digest import Digest, DigestCandidate, Outlet, build_digest
from alerts.types import Article, Match


def candidate(
    article_id: str,
    *,
    rule_id: str = "lng",
    rule_name: str = "LNG supply",
    title: str = "",
    source: str = "Dawn",
    tier: str = "news",
    story_id: str = "",
    score: float = 1.0,
    published: datetime | None = None,
    snippet: str = "",
    highlights: tuple[tuple[int, int], ...] = (),
    body: str = "",
) -> DigestCandidate:
    article = Article(
        id=article_id,
        title=title or f"Article {article_id}",
        body=body,
        url=f"https://news.example.org/{article_id}",
        source=source,
        tier=tier,
        published=published,
    )
    match = Match(
        rule_id=rule_id, article_id=article_id, score=score, snippet=snippet, highlights=highlights
    )
    return DigestCandidate(match=match, article=article, story_id=story_id, rule_name=rule_name)


def sample_digest() -> Digest:
    """A two-section digest with a multi-outlet story, highlights and HTML-looking text."""
    snippet = "Russia will supply <LNG> cargoes to Pakistan under a G2G deal & more."
    lng = snippet.index("<LNG>")
    pakistan = snippet.index("Pakistan")
    candidates = [
        candidate(
            "a1",
            title="Pakistan, Russia sign LNG supply deal",
            source="Dawn",
            story_id="s1",
            published=datetime(2026, 11, 1, 6, 5, tzinfo=UTC),
            snippet=snippet,
            highlights=((lng, lng + 5), (pakistan, pakistan + 8)),
        ),
        candidate(
            "a2",
            title="Russia and Pakistan agree on LNG cargoes",
            source="Ministry of Energy (Petroleum Division)",
            tier="official",
            story_id="s1",
            published=datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
            snippet=snippet,
            highlights=((lng, lng + 5),),
        ),
        candidate(
            "a3",
            title="Pakistan Stream pipeline: <b>route</b> finalised",
            rule_id="pipeline",
            rule_name="Pakistan Stream",
            source="TASS",
            story_id="s2",
            published=datetime(2026, 11, 1, 3, 0, tzinfo=UTC),
            body="The 1,100 km Pakistan Stream Gas Pipeline will run from Karachi to Lahore.",
        ),
    ]
    return build_digest(
        subscription_id="sub-1",
        period_key="2026-11-01",
        window_start=datetime(2026, 10, 31, 4, tzinfo=UTC),
        window_end=datetime(2026, 11, 1, 4, tzinfo=UTC),
        candidates=candidates,
        story_outlets={"s1": [Outlet("Business Recorder"), Outlet("APP", "official")]},
        rule_order=["lng", "pipeline"],
    )
