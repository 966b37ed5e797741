"""Subscribers, webhook endpoints and subscriptions (admin only: they hold personal data)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from alerts.schedule import Cadence
from service.api.deps import Admin, IfMatch, ResourcesDep, SessionDep, expect_version, role
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
    guard_url,
    invalid,
    page,
    set_etag,
    with_etag,
)
from service.api.schemas import (
    SLUG_PATTERN,
    EndpointCreate,
    EndpointCreated,
    EndpointPage,
    EndpointPublic,
    EndpointUpdate,
    RecoverFailed,
    RecoverResult,
    RotateSecret,
    SecretInfo,
    SecretRotated,
    SubscriberCreate,
    SubscriberPage,
    SubscriberPublic,
    SubscriberStatus,
    SubscriberUpdate,
    SubscriptionCreate,
    SubscriptionPage,
    SubscriptionPublic,
    SubscriptionUpdate,
)
from service.db.models import WebhookEndpoint
from service.exceptions import NotFoundError
from service.notify.webhook import generate_secret
from service.storage import recipients as store
from service.storage.deliveries import recover_failed
from service.storage.rules import existing_rule_ids
from service.storage.subscriptions import create_endpoint, create_subscriber, create_subscription
from service.storage.versioning import delete_versioned

router = APIRouter()

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


# --- subscribers -----------------------------------------------------------------------------


@router.get("/subscribers", responses=READ, openapi_extra=role("admin"), tags=["subscribers"])
async def list_subscribers(
    session: SessionDep,
    _: Admin,
    status: SubscriberStatus | None = None,
    q: Annotated[str | None, Query(max_length=200, description="In e-mail or name.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SubscriberPage:
    """List subscribers by id."""
    rows, total = await store.list_subscribers(
        session, status=status, q=q, limit=limit, offset=offset
    )
    return page(
        SubscriberPage,
        SubscriberPublic.model_validate,
        rows,
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/subscribers",
    status_code=201,
    responses=with_etag(CREATE, 201),
    openapi_extra=role("admin"),
    tags=["subscribers"],
)
async def add_subscriber(
    body: SubscriberCreate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
) -> SubscriberPublic:
    """Add a subscriber (409 if the address is known)."""
    now = resources.clock()
    row = await create_subscriber(
        session, email=body.email, name=body.name, status=body.status, now=now
    )
    await audited_create(
        session,
        principal,
        row,
        entity_type="subscriber",
        snapshot=store.subscriber_snapshot,
        now=now,
        response=response,
        location=f"/subscribers/{row.id}",
    )
    return SubscriberPublic.model_validate(row)


@router.get(
    "/subscribers/{subscriber_id}",
    responses=with_etag(READ_ONE),
    openapi_extra=role("admin"),
    tags=["subscribers"],
)
async def read_subscriber(
    subscriber_id: Id, response: Response, session: SessionDep, _: Admin
) -> SubscriberPublic:
    row = await store.get_subscriber(session, subscriber_id)
    set_etag(response, row.version)
    return SubscriberPublic.model_validate(row)


@router.patch(
    "/subscribers/{subscriber_id}",
    responses=with_etag(CHANGE),
    openapi_extra=role("admin"),
    tags=["subscribers"],
)
async def update_subscriber(
    subscriber_id: Id,
    body: SubscriberUpdate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> SubscriberPublic:
    """Change a subscriber. ``If-Match`` is required."""
    row = await store.get_subscriber(session, subscriber_id)
    expected = expect_version(if_match, row.version)
    now = resources.clock()
    async with audited_change(
        session,
        principal,
        row,
        action="update",
        entity_type="subscriber",
        snapshot=store.subscriber_snapshot,
        now=now,
        response=response,
    ):
        await store.update_subscriber(
            session, row, body.changes(), expected_version=expected, now=now
        )
    return SubscriberPublic.model_validate(row)


@router.delete(
    "/subscribers/{subscriber_id}",
    status_code=204,
    responses=CHANGE,
    openapi_extra=role("admin"),
    tags=["subscribers"],
)
async def delete_subscriber(
    subscriber_id: Id,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> Response:
    """Delete a subscriber and their subscriptions (erasure). ``If-Match`` is required."""
    row = await store.get_subscriber(session, subscriber_id)
    expected = expect_version(if_match, row.version)
    return await audited_delete(
        session,
        principal,
        row,
        lambda: delete_versioned(session, row, expected),
        entity_type="subscriber",
        snapshot=store.subscriber_snapshot,
        clock=resources.clock,
    )


# --- webhook endpoints -----------------------------------------------------------------------


def _endpoint(row: WebhookEndpoint) -> EndpointPublic:
    return EndpointPublic(
        id=row.id,
        name=row.name,
        url=row.url,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        secrets=[
            SecretInfo(
                created_at=datetime.fromisoformat(entry["created_at"]),
                expires_at=(
                    datetime.fromisoformat(entry["expires_at"]) if entry.get("expires_at") else None
                ),
            )
            for entry in row.secrets
        ],
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("/endpoints", responses=READ, openapi_extra=role("admin"), tags=["endpoints"])
async def list_endpoints(
    session: SessionDep,
    _: Admin,
    enabled: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EndpointPage:
    """List webhook endpoints by id (secrets are never listed)."""
    rows, total = await store.list_endpoints(session, enabled=enabled, limit=limit, offset=offset)
    return page(EndpointPage, _endpoint, rows, total=total, limit=limit, offset=offset)


@router.post(
    "/endpoints",
    status_code=201,
    responses=with_etag(CREATE, 201),
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def add_endpoint(
    body: EndpointCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
) -> EndpointCreated:
    """Add a webhook endpoint. The answer holds its signing secret, shown this once."""
    await guard_url(request, body.url)
    now = resources.clock()
    secret = generate_secret()
    row = await create_endpoint(
        session, name=body.name, url=body.url, secret=secret, box=resources.secret_box, now=now
    )
    await audited_create(
        session,
        principal,
        row,
        entity_type="endpoint",
        snapshot=store.endpoint_snapshot,
        now=now,
        response=response,
        location=f"/endpoints/{row.id}",
    )
    response.headers["Cache-Control"] = "no-store"
    return EndpointCreated(**_endpoint(row).model_dump(), secret=secret)


@router.get(
    "/endpoints/{endpoint_id}",
    responses=with_etag(READ_ONE),
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def read_endpoint(
    endpoint_id: Id, response: Response, session: SessionDep, _: Admin
) -> EndpointPublic:
    row = await store.get_endpoint(session, endpoint_id)
    set_etag(response, row.version)
    return _endpoint(row)


@router.patch(
    "/endpoints/{endpoint_id}",
    responses=with_etag(CHANGE),
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def update_endpoint(
    endpoint_id: Id,
    body: EndpointUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> EndpointPublic:
    """Change an endpoint; re-enabling clears its failure state. ``If-Match`` is required."""
    row = await store.get_endpoint(session, endpoint_id)
    expected = expect_version(if_match, row.version)
    changes = body.changes()
    if "url" in changes:
        await guard_url(request, changes["url"])
    now = resources.clock()
    async with audited_change(
        session,
        principal,
        row,
        action="update",
        entity_type="endpoint",
        snapshot=store.endpoint_snapshot,
        now=now,
        response=response,
    ):
        await store.update_endpoint(session, row, changes, expected_version=expected, now=now)
    return _endpoint(row)


@router.delete(
    "/endpoints/{endpoint_id}",
    status_code=204,
    responses=CHANGE,
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def delete_endpoint(
    endpoint_id: Id,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> Response:
    """Delete an endpoint and its subscriptions. ``If-Match`` is required."""
    row = await store.get_endpoint(session, endpoint_id)
    expected = expect_version(if_match, row.version)
    return await audited_delete(
        session,
        principal,
        row,
        lambda: delete_versioned(session, row, expected),
        entity_type="endpoint",
        snapshot=store.endpoint_snapshot,
        clock=resources.clock,
    )


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    responses=with_etag(CHANGE),
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def rotate_secret(
    endpoint_id: Id,
    body: RotateSecret,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> SecretRotated:
    """Issue a new signing secret (shown once); the old one signs too for ``overlap_hours``.

    ``If-Match`` is required. Rotating again during an overlap retires the oldest at once.
    """
    row = await store.get_endpoint(session, endpoint_id)
    expected = expect_version(if_match, row.version)
    now = resources.clock()
    secret = generate_secret()
    async with audited_change(
        session,
        principal,
        row,
        action="rotate_secret",
        entity_type="endpoint",
        snapshot=store.endpoint_snapshot,
        now=now,
        response=response,
    ):
        await store.rotate_endpoint_secret(
            session,
            row,
            new_secret=secret,
            box=resources.secret_box,
            overlap=timedelta(hours=body.overlap_hours),
            expected_version=expected,
            now=now,
        )
    response.headers["Cache-Control"] = "no-store"
    return SecretRotated(endpoint=_endpoint(row), secret=secret)


@router.post(
    "/endpoints/{endpoint_id}/recover",
    responses=CHANGE,
    openapi_extra=role("admin"),
    tags=["endpoints"],
)
async def recover_endpoint(
    endpoint_id: Id,
    body: RecoverFailed,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
) -> RecoverResult:
    """Queue again every failed delivery of the endpoint since ``since`` and re-enable it.

    For an integrator whose receiver was down: each delivery keeps its ``webhook-id``, and
    they are sent oldest first.
    """
    row = await store.get_endpoint(session, endpoint_id)
    now = resources.clock()
    before = store.endpoint_snapshot(row)
    queued = await recover_failed(session, endpoint_id, since=body.since, now=now)
    await audit(
        session,
        principal,
        action="recover",
        entity_type="endpoint",
        entity_id=row.id,
        before=before,
        after={**store.endpoint_snapshot(row), "queued": queued},
        now=now,
    )
    await session.commit()
    return RecoverResult(endpoint=_endpoint(row), queued=queued)


# --- subscriptions ---------------------------------------------------------------------------


async def _check_references(
    session: SessionDep, rule_ids: list[str] | None, *, loc: tuple[str, ...]
) -> None:
    if not rule_ids:
        return
    missing = sorted(set(rule_ids) - await existing_rule_ids(session, rule_ids))
    if missing:
        raise invalid(loc, f"unknown rule ids: {', '.join(missing)}", "unknown_rule")


@router.get("/subscriptions", responses=READ, openapi_extra=role("admin"), tags=["subscriptions"])
async def list_subscriptions(
    session: SessionDep,
    _: Admin,
    subscriber_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    endpoint_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    rule_id: Annotated[str | None, Query(pattern=SLUG_PATTERN)] = None,
    cadence: Cadence | None = None,
    enabled: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SubscriptionPage:
    """List subscriptions by id."""
    rows, total = await store.list_subscriptions(
        session,
        subscriber_id=subscriber_id,
        endpoint_id=endpoint_id,
        rule_id=rule_id,
        cadence=cadence,
        enabled=enabled,
        limit=limit,
        offset=offset,
    )
    return page(
        SubscriptionPage,
        SubscriptionPublic.model_validate,
        rows,
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/subscriptions",
    status_code=201,
    responses=with_etag(CREATE, 201),
    openapi_extra=role("admin"),
    tags=["subscriptions"],
)
async def add_subscription(
    body: SubscriptionCreate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
) -> SubscriptionPublic:
    """Subscribe a subscriber or an endpoint to rules (by id) and/or rule tags."""
    try:
        if body.subscriber_id is not None:
            await store.get_subscriber(session, body.subscriber_id)
        if body.endpoint_id is not None:
            await store.get_endpoint(session, body.endpoint_id)
    except NotFoundError as exc:
        field = "subscriber_id" if body.subscriber_id is not None else "endpoint_id"
        raise invalid(("body", field), exc.message, "unknown_recipient") from exc
    await _check_references(session, body.rule_ids, loc=("body", "rule_ids"))
    now = resources.clock()
    values: dict[str, Any] = body.model_dump(exclude={"enabled"})
    row = await create_subscription(session, now=now, **values)
    if not body.enabled:
        row.enabled = False
        await session.flush()
    await audited_create(
        session,
        principal,
        row,
        entity_type="subscription",
        snapshot=store.subscription_snapshot,
        now=now,
        response=response,
        location=f"/subscriptions/{row.id}",
    )
    return SubscriptionPublic.model_validate(row)


@router.get(
    "/subscriptions/{subscription_id}",
    responses=with_etag(READ_ONE),
    openapi_extra=role("admin"),
    tags=["subscriptions"],
)
async def read_subscription(
    subscription_id: Id, response: Response, session: SessionDep, _: Admin
) -> SubscriptionPublic:
    row = await store.get_subscription(session, subscription_id)
    set_etag(response, row.version)
    return SubscriptionPublic.model_validate(row)


@router.patch(
    "/subscriptions/{subscription_id}",
    responses=with_etag(CHANGE),
    openapi_extra=role("admin"),
    tags=["subscriptions"],
)
async def update_subscription(
    subscription_id: Id,
    body: SubscriptionUpdate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> SubscriptionPublic:
    """Change a subscription; a schedule change reschedules it. ``If-Match`` is required."""
    row = await store.get_subscription(session, subscription_id)
    expected = expect_version(if_match, row.version)
    changes = body.changes()
    await _check_references(session, changes.get("rule_ids"), loc=("body", "rule_ids"))
    now = resources.clock()
    async with audited_change(
        session,
        principal,
        row,
        action="update",
        entity_type="subscription",
        snapshot=store.subscription_snapshot,
        now=now,
        response=response,
    ):
        try:
            await store.update_subscription(
                session, row, changes, expected_version=expected, now=now
            )
        except ValueError as exc:
            raise invalid(("body",), str(exc)) from exc
    return SubscriptionPublic.model_validate(row)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=CHANGE,
    openapi_extra=role("admin"),
    tags=["subscriptions"],
)
async def delete_subscription(
    subscription_id: Id,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> Response:
    """Delete a subscription. ``If-Match`` is required."""
    row = await store.get_subscription(session, subscription_id)
    expected = expect_version(if_match, row.version)
    return await audited_delete(
        session,
        principal,
        row,
        lambda: delete_versioned(session, row, expected),
        entity_type="subscription",
        snapshot=store.subscription_snapshot,
        clock=resources.clock,
    )
