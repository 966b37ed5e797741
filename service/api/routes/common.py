"""Pieces every admin router uses: paging parameters, documented errors, auditing, URL checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.deps import Principal, etag
from service.exceptions import UnsafeURLError
from service.safety import Resolver, check_url
from service.settings import Settings
from service.storage.audit import record_audit

Snapshot = Callable[[Any], dict[str, Any]]
PageT = TypeVar("PageT", bound=BaseModel)

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")]
Since = Annotated[datetime | None, Query(description="From this instant (inclusive, ISO 8601).")]
Until = Annotated[datetime | None, Query(description="Before this instant (ISO 8601).")]


def codes(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {} for code in codes}


READ = codes(401, 403, 422)
READ_ONE = codes(401, 403, 404, 422)
CREATE = codes(401, 403, 409, 422)
ACTION = codes(401, 403, 404, 409, 422)
CHANGE = codes(401, 403, 404, 409, 412, 422, 428)
ETAG_HEADER = {
    "ETag": {"description": "The version to send back in `If-Match`.", "schema": {"type": "string"}}
}


def with_etag(
    codes: dict[int | str, dict[str, Any]], status: int = 200
) -> dict[int | str, dict[str, Any]]:
    return {**codes, status: {"headers": ETAG_HEADER}}


def page(
    page_type: type[PageT],
    item: Callable[[Any], Any],
    rows: Sequence[Any],
    *,
    total: int,
    limit: int,
    offset: int,
) -> PageT:
    """One page of a list answer, each row turned into its public form by ``item``."""
    return page_type(items=[item(row) for row in rows], total=total, limit=limit, offset=offset)


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def aware(value: datetime | None, name: str) -> datetime | None:
    """Refuse a naive time filter (guessing its zone would shift the window) or one that
    falls outside the representable range once converted to UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise invalid(
            ("query", name),
            "give a time zone offset (for example 2026-11-01T00:00:00Z)",
            "timezone_required",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise invalid(("query", name), "the instant is out of range", "datetime_range") from exc


async def strict_query(request: Request) -> None:
    """Refuse unknown query parameters (a misspelt filter must not silently match everything)
    and NUL characters in the path or query (PostgreSQL cannot compare them)."""
    if "\x00" in request.url.path:
        raise invalid(("path",), "NUL characters are not allowed", "nul_character")
    route = request.scope.get("route")
    known = _query_names(route) if isinstance(route, APIRoute) else None
    for key, value in request.query_params.multi_items():
        if known is not None and key not in known:
            raise invalid(("query", key), "unknown query parameter", "unknown_parameter")
        if "\x00" in value:
            raise invalid(("query", key), "NUL characters are not allowed", "nul_character")


def _query_names(route: APIRoute) -> frozenset[str]:
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


def invalid(
    loc: tuple[str | int, ...], message: str, kind: str = "value_error"
) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": kind}])


def invalid_body(exc: ValidationError) -> RequestValidationError:
    """A model checked by hand (not by FastAPI) reports its errors under ``body`` as well."""
    return RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
    )


async def guard_url(request: Request, url: str, *, field: str = "url") -> None:
    """Run the SSRF guard on an admin-supplied URL; a refusal is a 422 on ``field``.

    ``app.state.url_resolver`` (None in production) lets tests resolve names without DNS.
    """
    settings: Settings = request.app.state.settings
    resolver: Resolver | None = getattr(request.app.state, "url_resolver", None)
    try:
        await check_url(url, allow_loopback=settings.http.allow_loopback, resolver=resolver)
    except UnsafeURLError as exc:
        raise invalid(("body", field), exc.message, "unsafe_url") from exc


async def audit(
    session: AsyncSession,
    principal: Principal,
    *,
    action: str,
    entity_type: str,
    entity_id: str | int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
) -> None:
    await record_audit(
        session,
        at=now,
        actor_name=principal.name,
        actor_key_id=principal.key_id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        before=before,
        after=after,
    )


class _Versioned(Protocol):
    @property
    def id(self) -> Any: ...

    @property
    def version(self) -> int: ...


async def audited_create(
    session: AsyncSession,
    principal: Principal,
    row: _Versioned,
    *,
    entity_type: str,
    snapshot: Snapshot,
    now: datetime,
    response: Response,
    location: str,
) -> None:
    """Audit a row just added, commit, and answer its ETag and ``Location``."""
    await audit(
        session,
        principal,
        action="create",
        entity_type=entity_type,
        entity_id=row.id,
        before=None,
        after=snapshot(row),
        now=now,
    )
    await session.commit()
    set_etag(response, row.version)
    response.headers["Location"] = location


@asynccontextmanager
async def audited_change(
    session: AsyncSession,
    principal: Principal,
    row: _Versioned,
    *,
    action: str,
    entity_type: str,
    snapshot: Snapshot,
    now: datetime,
    response: Response,
) -> AsyncIterator[None]:
    """Wrap a change of a versioned row: audit it before/after, commit, answer the new ETag.

    The ``async with`` body makes the change; if it raises, nothing is audited or committed.
    """
    before = snapshot(row)
    yield
    await audit(
        session,
        principal,
        action=action,
        entity_type=entity_type,
        entity_id=row.id,
        before=before,
        after=snapshot(row),
        now=now,
    )
    await session.commit()
    set_etag(response, row.version)


async def audited_delete(
    session: AsyncSession,
    principal: Principal,
    row: _Versioned,
    remove: Callable[[], Awaitable[None]],
    *,
    entity_type: str,
    snapshot: Snapshot,
    clock: Callable[[], datetime],
) -> Response:
    """Delete a row with ``remove`` (which checks its version), audit it, commit; answer 204."""
    before = snapshot(row)
    entity_id = row.id
    await remove()
    await audit(
        session,
        principal,
        action="delete",
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=None,
        now=clock(),
    )
    await session.commit()
    return Response(status_code=204)
