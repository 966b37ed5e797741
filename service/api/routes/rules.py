"""Watch rules: CRUD, versions, validate and preview."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from alerts.exceptions import InvalidRuleError
from alerts.matching import Matcher
from alerts.query import explain, parse_query, query_terms
from alerts.types import RuleSpec
from service.api.deps import (
    Editor,
    IfMatch,
    ResourcesDep,
    SessionDep,
    Viewer,
    expect_version,
    role,
)
from service.api.routes.common import (
    CHANGE,
    CREATE,
    READ,
    READ_ONE,
    Limit,
    Offset,
    audit,
    audited_change,
    audited_create,
    audited_delete,
    page,
    set_etag,
    with_etag,
)
from service.api.schemas import (
    TAG_PATTERN,
    DayCount,
    PreviewRequest,
    PreviewResult,
    PreviewSample,
    QueryError,
    QueryInput,
    QueryValidation,
    RuleCreate,
    RulePage,
    RulePublic,
    RuleUpdate,
    RuleVersionPage,
    RuleVersionPublic,
)
from service.exceptions import ConflictError
from service.storage import rules as store
from service.storage.articles_query import recent_articles
from service.storage.recipients import detach_rule, subscription_snapshot, subscriptions_following

router = APIRouter(prefix="/rules", tags=["rules"])

RuleId = Annotated[str, Path(min_length=1, max_length=100, description="The rule's slug.")]
RuleSort = Literal["id", "-id", "name", "-name", "updated_at", "-updated_at"]
PREVIEW_SCAN_LIMIT = 20_000


@router.get("", responses=READ, openapi_extra=role("viewer"))
async def list_rules(
    session: SessionDep,
    _: Viewer,
    enabled: bool | None = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
    q: Annotated[str | None, Query(max_length=200, description="In id, name or query.")] = None,
    sort: RuleSort = "id",
    limit: Limit = 50,
    offset: Offset = 0,
) -> RulePage:
    """List rules, filtered and sorted (the id breaks ties)."""
    rows, total = await store.list_rules(
        session, enabled=enabled, tag=tag, q=q, sort=sort, limit=limit, offset=offset
    )
    return page(RulePage, RulePublic.model_validate, rows, total=total, limit=limit, offset=offset)


@router.post("", status_code=201, responses=with_etag(CREATE, 201), openapi_extra=role("editor"))
async def create_rule(
    body: RuleCreate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
) -> RulePublic:
    """Add a rule. The query is parsed first: a malformed one answers 422 with its position."""
    now = resources.clock()
    rule = await store.create_rule(session, body.model_dump(), now=now)
    await audited_create(
        session,
        principal,
        rule,
        entity_type="rule",
        snapshot=store.rule_snapshot,
        now=now,
        response=response,
        location=f"/rules/{rule.id}",
    )
    return RulePublic.model_validate(rule)


@router.post("/validate", responses=READ, openapi_extra=role("viewer"))
async def validate_query(body: QueryInput, _: Viewer) -> QueryValidation:
    """Parse a query: its tree and terms, or the error with its position (still a 200)."""
    try:
        query = parse_query(body.query)
    except InvalidRuleError as exc:
        return QueryValidation(
            valid=False,
            query=body.query,
            error=QueryError(
                message=exc.message,
                position=exc.position,
                expected=exc.expected,
                caret=exc.caret(),
            ),
        )
    return QueryValidation(
        valid=True, query=body.query, explain=explain(query), terms=list(query_terms(query))
    )


@router.post("/preview", responses=READ, openapi_extra=role("viewer"))
async def preview_query(
    body: PreviewRequest, session: SessionDep, resources: ResourcesDep, _: Viewer
) -> PreviewResult:
    """Run a draft query over the articles published in the last ``days`` days.

    Nothing is stored. Answers the matches per day (UTC) and the newest sample matches.
    """
    until = resources.clock()
    since = until - timedelta(days=body.days)
    matcher = Matcher.build([RuleSpec(id="preview", query=body.query, min_score=body.min_score)])
    pairs, truncated = await recent_articles(session, since=since, limit=PREVIEW_SCAN_LIMIT)
    per_day: Counter[str] = Counter()
    samples: list[PreviewSample] = []
    matched = 0
    for row, article in pairs:
        found = matcher.match(article)
        if not found:
            continue
        matched += 1
        per_day[row.published_at.date().isoformat()] += 1
        if len(samples) < body.samples:
            match = found[0]
            samples.append(
                PreviewSample(
                    article_id=row.id,
                    source_id=row.source_id,
                    title=row.title,
                    url=row.url,
                    published_at=row.published_at,
                    score=match.score,
                    terms=list(match.terms),
                    snippet=match.snippet,
                    highlights=[list(span) for span in match.highlights],
                )
            )
    days = [(since + timedelta(days=offset)).date() for offset in range(body.days + 1)]
    return PreviewResult(
        query=body.query,
        since=since,
        until=until,
        scanned=len(pairs),
        matched=matched,
        truncated=truncated,
        per_day=[DayCount(date=day, count=per_day.get(day.isoformat(), 0)) for day in days],
        samples=samples,
    )


@router.get("/{rule_id}", responses=with_etag(READ_ONE), openapi_extra=role("viewer"))
async def read_rule(
    rule_id: RuleId, response: Response, session: SessionDep, _: Viewer
) -> RulePublic:
    """Read a rule, with its ``ETag``."""
    rule = await store.get_rule(session, rule_id)
    set_etag(response, rule.version)
    return RulePublic.model_validate(rule)


@router.patch("/{rule_id}", responses=with_etag(CHANGE), openapi_extra=role("editor"))
async def update_rule(
    rule_id: RuleId,
    body: RuleUpdate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
) -> RulePublic:
    """Change a rule; the previous state is kept as a version. ``If-Match`` is required.

    A body that changes nothing answers the rule as it is, without a new version.
    """
    rule = await store.get_rule(session, rule_id)
    expected = expect_version(if_match, rule.version)
    changes = {
        name: value for name, value in body.changes().items() if getattr(rule, name) != value
    }
    if not changes:
        # Nothing changes: no new version, no audit entry, the same ETag.
        set_etag(response, rule.version)
        return RulePublic.model_validate(rule)
    now = resources.clock()
    async with audited_change(
        session,
        principal,
        rule,
        action="update",
        entity_type="rule",
        snapshot=store.rule_snapshot,
        now=now,
        response=response,
    ):
        await store.update_rule(
            session, rule, changes, expected_version=expected, actor=principal.name, now=now
        )
    return RulePublic.model_validate(rule)


@router.delete("/{rule_id}", status_code=204, responses=CHANGE, openapi_extra=role("editor"))
async def delete_rule(
    rule_id: RuleId,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
    detach: Annotated[
        bool,
        Query(
            description="Also remove the rule from the subscriptions that name it (a "
            "subscription left following nothing is disabled). Without it, deleting a rule "
            "that subscriptions name is refused with 409."
        ),
    ] = False,
) -> Response:
    """Delete a rule with its versions and matches. ``If-Match`` is required.

    Subscriptions that follow the rule by id keep working only if it is removed from them:
    the answer is 409 listing them, unless ``detach=true`` removes it (each change audited).
    """
    rule = await store.get_rule(session, rule_id)
    expected = expect_version(if_match, rule.version)
    following = await subscriptions_following(session, rule_id)
    if following and not detach:
        ids = ", ".join(str(row.id) for row in following[:10])
        more = f" and {len(following) - 10} more" if len(following) > 10 else ""
        raise ConflictError(
            f"rule {rule_id!r} is named by {len(following)} subscription(s) (ids {ids}{more}); "
            "remove it from them first, or delete with ?detach=true"
        )
    if following:
        now = resources.clock()
        befores = [subscription_snapshot(row) for row in following]
        await detach_rule(session, following, rule_id, now=now)
        for before, row in zip(befores, following, strict=True):
            await audit(
                session,
                principal,
                action="update",
                entity_type="subscription",
                entity_id=row.id,
                before=before,
                after=subscription_snapshot(row),
                now=now,
            )
    return await audited_delete(
        session,
        principal,
        rule,
        lambda: store.delete_rule(session, rule, expected_version=expected),
        entity_type="rule",
        snapshot=store.rule_snapshot,
        clock=resources.clock,
    )


@router.get("/{rule_id}/versions", responses=READ_ONE, openapi_extra=role("viewer"))
async def rule_versions(
    rule_id: RuleId, session: SessionDep, _: Viewer, limit: Limit = 50, offset: Offset = 0
) -> RuleVersionPage:
    """The rule's previous states, newest first."""
    await store.get_rule(session, rule_id)
    rows, total = await store.list_versions(session, rule_id, limit=limit, offset=offset)
    return page(
        RuleVersionPage,
        RuleVersionPublic.model_validate,
        rows,
        total=total,
        limit=limit,
        offset=offset,
    )
