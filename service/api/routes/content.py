"""Read-only views of what was collected: articles, stories and matches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service.api.deps import SessionDep, Viewer, role
from service.api.routes.common import READ, READ_ONE, Limit, Offset, Since, Until, aware, page
from service.api.schemas import (
    COUNTRY_PATTERN,
    ArticlePage,
    ArticlePublic,
    MatchPage,
    MatchPublic,
    StoryDetail,
    StoryPage,
    StoryPublic,
)
from service.catalogue import SourceTier
from service.storage import articles_query as store

router = APIRouter(tags=["articles"])

RuleFilter = Annotated[str | None, Query(max_length=100, description="Matched by this rule.")]
SourceFilter = Annotated[str | None, Query(max_length=100, description="From this source.")]
CountryFilter = Annotated[
    str | None, Query(pattern=COUNTRY_PATTERN, description="Mentions this country (ISO alpha-2).")
]
TextFilter = Annotated[str | None, Query(max_length=200, description="In the title.")]
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _filters(
    rule_id: str | None,
    source_id: str | None,
    tier: str | None,
    country: str | None,
    since: Since,
    until: Until,
    q: str | None,
) -> store.ArticleFilters:
    return store.ArticleFilters(
        rule_id=rule_id,
        source_id=source_id,
        tier=tier,
        country=country,
        since=aware(since, "since"),
        until=aware(until, "until"),
        q=q,
    )


@router.get("/articles", responses=READ, openapi_extra=role("viewer"))
async def list_articles(
    session: SessionDep,
    _: Viewer,
    rule_id: RuleFilter = None,
    source_id: SourceFilter = None,
    tier: SourceTier | None = None,
    country: CountryFilter = None,
    since: Since = None,
    until: Until = None,
    q: TextFilter = None,
    story_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ArticlePage:
    """Search stored articles, newest published first (the id breaks ties)."""
    filters = _filters(rule_id, source_id, tier, country, since, until, q)
    rows, total = await store.list_articles(
        session, filters, story_id=story_id, limit=limit, offset=offset
    )
    return page(
        ArticlePage, ArticlePublic.model_validate, rows, total=total, limit=limit, offset=offset
    )


@router.get("/articles/{article_id}", responses=READ_ONE, openapi_extra=role("viewer"))
async def read_article(article_id: Id, session: SessionDep, _: Viewer) -> ArticlePublic:
    """Read one article."""
    return ArticlePublic.model_validate(await store.get_article(session, article_id))


@router.get("/stories", responses=READ, openapi_extra=role("viewer"), tags=["stories"])
async def list_stories(
    session: SessionDep,
    _: Viewer,
    rule_id: RuleFilter = None,
    source_id: SourceFilter = None,
    tier: SourceTier | None = None,
    country: CountryFilter = None,
    since: Since = None,
    until: Until = None,
    q: TextFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> StoryPage:
    """Stories with an article matching the filters, most recently seen first.

    ``since``/``until`` select stories seen in that window.
    """
    filters = _filters(rule_id, source_id, tier, country, since, until, q)
    rows, total = await store.list_stories(session, filters, limit=limit, offset=offset)
    return page(
        StoryPage, StoryPublic.model_validate, rows, total=total, limit=limit, offset=offset
    )


@router.get(
    "/stories/{story_id}", responses=READ_ONE, openapi_extra=role("viewer"), tags=["stories"]
)
async def read_story(story_id: Id, session: SessionDep, _: Viewer) -> StoryDetail:
    """Read a story with its articles, oldest first."""
    story, articles = await store.get_story(session, story_id)
    return StoryDetail(
        **StoryPublic.model_validate(story).model_dump(),
        articles=[ArticlePublic.model_validate(article) for article in articles],
    )


@router.get("/matches", responses=READ, openapi_extra=role("viewer"), tags=["matches"])
async def list_matches(
    session: SessionDep,
    _: Viewer,
    rule_id: RuleFilter = None,
    source_id: SourceFilter = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MatchPage:
    """Matches newest first; ``since``/``until`` apply to the match time."""
    rows, total = await store.list_matches(
        session,
        rule_id=rule_id,
        source_id=source_id,
        since=aware(since, "since"),
        until=aware(until, "until"),
        limit=limit,
        offset=offset,
    )
    return page(MatchPage, _match, rows, total=total, limit=limit, offset=offset)


def _match(row: store.MatchRow) -> MatchPublic:
    return MatchPublic(
        article_id=row.match.article_id,
        rule_id=row.match.rule_id,
        score=row.match.score,
        terms=row.match.terms,
        snippet=row.match.snippet,
        highlights=row.match.highlights,
        matched_at=row.match.matched_at,
        source_id=row.article.source_id,
        title=row.article.title,
        url=row.article.url,
        published_at=row.article.published_at,
    )
