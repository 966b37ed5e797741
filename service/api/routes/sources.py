"""Sources: list, create, read, update, delete, enable/disable, poll now, health."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError

from service.api.deps import Editor, IfMatch, ResourcesDep, SessionDep, Viewer, expect_version, role
from service.api.routes.common import (
    ACTION,
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
    guard_url,
    invalid_body,
    page,
    set_etag,
    with_etag,
)
from service.api.schemas import (
    COUNTRY_PATTERN,
    PollResultPublic,
    SourceCreate,
    SourceHealth,
    SourceHealthPublic,
    SourcePage,
    SourcePublic,
    SourceUpdate,
)
from service.catalogue import SourceDefinition, SourceKind, SourceTier
from service.db.models import Source
from service.exceptions import NotFoundError
from service.jobs.poll import Poller
from service.storage import sources as store

router = APIRouter(prefix="/sources", tags=["sources"])

SourceId = Annotated[str, Path(min_length=1, max_length=100, description="The source's slug.")]
SourceSort = Literal["id", "-id", "name", "-name", "updated_at", "-updated_at"]


def _catalogue_rules(values: dict[str, Any]) -> None:
    """Hold API-made sources to the same rules as ``config/sources.toml`` entries."""
    try:
        SourceDefinition.model_validate(values)
    except ValidationError as exc:
        raise invalid_body(exc) from exc


@router.get("", responses=READ, openapi_extra=role("viewer"))
async def list_sources(
    session: SessionDep,
    _: Viewer,
    enabled: bool | None = None,
    kind: SourceKind | None = None,
    tier: SourceTier | None = None,
    country: Annotated[str | None, Query(pattern=COUNTRY_PATTERN)] = None,
    health: SourceHealth | None = None,
    q: Annotated[str | None, Query(max_length=200, description="In id, name or URL.")] = None,
    sort: SourceSort = "id",
    limit: Limit = 50,
    offset: Offset = 0,
) -> SourcePage:
    """List sources, filtered and sorted (the id breaks ties)."""
    rows, total = await store.list_sources(
        session,
        enabled=enabled,
        kind=kind,
        tier=tier,
        country=country,
        health=health,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return page(
        SourcePage, SourcePublic.model_validate, rows, total=total, limit=limit, offset=offset
    )


@router.post("", status_code=201, responses=with_etag(CREATE, 201), openapi_extra=role("editor"))
async def create_source(
    body: SourceCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
) -> SourcePublic:
    """Add a source; it is polled at the next tick. The URL must be public (SSRF guard)."""
    _catalogue_rules(body.model_dump())
    await guard_url(request, body.url)
    now = resources.clock()
    source = await store.create_source(session, body.model_dump(), now=now)
    await audited_create(
        session,
        principal,
        source,
        entity_type="source",
        snapshot=store.source_snapshot,
        now=now,
        response=response,
        location=f"/sources/{source.id}",
    )
    return SourcePublic.model_validate(source)


@router.get("/{source_id}", responses=with_etag(READ_ONE), openapi_extra=role("viewer"))
async def read_source(
    source_id: SourceId, response: Response, session: SessionDep, _: Viewer
) -> SourcePublic:
    """Read a source, with its ``ETag``."""
    source = await store.get_source(session, source_id)
    set_etag(response, source.version)
    return SourcePublic.model_validate(source)


@router.patch("/{source_id}", responses=with_etag(CHANGE), openapi_extra=role("editor"))
async def update_source(
    source_id: SourceId,
    body: SourceUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
) -> SourcePublic:
    """Change a source. ``If-Match`` is required; a stale one answers 412."""
    source = await store.get_source(session, source_id)
    expected = expect_version(if_match, source.version)
    changes = body.changes()
    current = {name: getattr(source, name) for name in store.EDITABLE}
    _catalogue_rules({"id": source.id, **current, **changes})
    if "url" in changes:
        await guard_url(request, changes["url"])
    return await _apply(
        session, resources, principal, response, source, changes, expected, "update"
    )


async def _apply(
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    response: Response,
    source: Source,
    changes: dict[str, object],
    expected: int,
    action: str,
) -> SourcePublic:
    now = resources.clock()
    async with audited_change(
        session,
        principal,
        source,
        action=action,
        entity_type="source",
        snapshot=store.source_snapshot,
        now=now,
        response=response,
    ):
        await store.update_source(session, source, changes, expected_version=expected, now=now)
    return SourcePublic.model_validate(source)


@router.delete("/{source_id}", status_code=204, responses=CHANGE, openapi_extra=role("editor"))
async def delete_source(
    source_id: SourceId,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
) -> Response:
    """Delete a source with its articles and their matches. ``If-Match`` is required."""
    source = await store.get_source(session, source_id)
    expected = expect_version(if_match, source.version)
    return await audited_delete(
        session,
        principal,
        source,
        lambda: store.delete_source(session, source, expected_version=expected),
        entity_type="source",
        snapshot=store.source_snapshot,
        clock=resources.clock,
    )


async def _toggle(
    source_id: str,
    enabled: bool,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: str | None,
) -> SourcePublic:
    source = await store.get_source(session, source_id)
    # Setting one flag to a fixed value overwrites nobody's edit, so If-Match is optional here.
    expected = expect_version(if_match, source.version, required=False)
    action = "enable" if enabled else "disable"
    return await _apply(
        session, resources, principal, response, source, {"enabled": enabled}, expected, action
    )


@router.post("/{source_id}/enable", responses=with_etag(CHANGE), openapi_extra=role("editor"))
async def enable_source(
    source_id: SourceId,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
) -> SourcePublic:
    """Enable a source (due at once). ``If-Match`` is optional; if sent, it is checked."""
    return await _toggle(source_id, True, response, session, resources, principal, if_match)


@router.post("/{source_id}/disable", responses=with_etag(CHANGE), openapi_extra=role("editor"))
async def disable_source(
    source_id: SourceId,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Editor,
    if_match: IfMatch = None,
) -> SourcePublic:
    """Disable a source: it is no longer polled. ``If-Match`` is optional; if sent, checked."""
    return await _toggle(source_id, False, response, session, resources, principal, if_match)


@router.post("/{source_id}/poll", responses=ACTION, openapi_extra=role("editor"))
async def poll_source(
    source_id: SourceId, session: SessionDep, resources: ResourcesDep, principal: Editor
) -> PollResultPublic:
    """Poll a source now, due or not; a failure is reported in the result, not as an error."""
    await store.get_source(session, source_id)
    await session.commit()
    result = await Poller(resources).poll_source_now(source_id)
    if result is None:
        raise NotFoundError(f"no source {source_id!r}")
    outcome = PollResultPublic(
        source_id=result.source_id,
        outcome=result.outcome,
        new=result.new,
        updated=result.updated,
        matches=result.matches,
        error=result.error,
    )
    await audit(
        session,
        principal,
        action="poll",
        entity_type="source",
        entity_id=source_id,
        before=None,
        after=outcome.model_dump(),
        now=resources.clock(),
    )
    await session.commit()
    return outcome


@router.get("/{source_id}/health", responses=READ_ONE, openapi_extra=role("viewer"))
async def source_health(source_id: SourceId, session: SessionDep, _: Viewer) -> SourceHealthPublic:
    """How polling the source is going: status, failures, last error, next poll."""
    return SourceHealthPublic.model_validate(await store.get_source(session, source_id))
