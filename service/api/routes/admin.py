"""Deliveries (list, inspect, retry), API keys and the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from service.api.deps import Admin, ResourcesDep, SessionDep, role
from service.api.routes.common import (
    ACTION,
    CREATE,
    READ,
    READ_ONE,
    Limit,
    Offset,
    Since,
    Until,
    audit,
    aware,
    page,
)
from service.api.schemas import (
    AuditPage,
    AuditPublic,
    DeliveryAttemptPublic,
    DeliveryDetail,
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    KeyCreate,
    KeyCreated,
    KeyPage,
    KeyPublic,
)
from service.db.models import Delivery
from service.exceptions import NotFoundError
from service.storage import deliveries as delivery_store
from service.storage import keys as key_store
from service.storage.audit_query import list_audit
from service.storage.paging import snapshot

router = APIRouter()

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
KEY_AUDIT = ("id", "name", "role", "prefix", "revoked_at")


# --- deliveries ------------------------------------------------------------------------------


@router.get("/deliveries", responses=READ, openapi_extra=role("admin"), tags=["deliveries"])
async def list_deliveries(
    session: SessionDep,
    _: Admin,
    status: DeliveryStatus | None = None,
    channel: Literal["email", "webhook"] | None = None,
    subscription_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryPage:
    """Deliveries newest first; ``since``/``until`` apply to the creation time."""
    rows, total = await delivery_store.list_deliveries(
        session,
        status=status,
        channel=channel,
        subscription_id=subscription_id,
        since=aware(since, "since"),
        until=aware(until, "until"),
        limit=limit,
        offset=offset,
    )
    return page(
        DeliveryPage, DeliveryPublic.model_validate, rows, total=total, limit=limit, offset=offset
    )


@router.get(
    "/deliveries/{delivery_id}",
    responses=READ_ONE,
    openapi_extra=role("admin"),
    tags=["deliveries"],
)
async def read_delivery(delivery_id: Id, session: SessionDep, _: Admin) -> DeliveryDetail:
    """A delivery with its attempt log."""
    delivery, attempts = await delivery_store.get_delivery(session, delivery_id)
    return DeliveryDetail(
        **DeliveryPublic.model_validate(delivery).model_dump(),
        attempt_log=[DeliveryAttemptPublic.model_validate(attempt) for attempt in attempts],
    )


@router.post(
    "/deliveries/{delivery_id}/retry",
    responses=ACTION,
    openapi_extra=role("admin"),
    tags=["deliveries"],
)
async def retry_delivery(
    delivery_id: Id, session: SessionDep, resources: ResourcesDep, principal: Admin
) -> DeliveryPublic:
    """Send a failed, cancelled or waiting delivery again at the next tick (409 otherwise).

    The retry keeps the delivery's Message-ID / webhook-id, so receivers can deduplicate.
    """
    return await _send_again(
        session,
        resources,
        principal,
        delivery_id,
        "retry",
        lambda delivery, now: delivery_store.retry_delivery(session, delivery, now=now),
    )


@router.post(
    "/deliveries/{delivery_id}/replay",
    responses=ACTION,
    openapi_extra=role("admin"),
    tags=["deliveries"],
)
async def replay_delivery(
    delivery_id: Id, session: SessionDep, resources: ResourcesDep, principal: Admin
) -> DeliveryPublic:
    """Send a delivered, failed or cancelled delivery again, with the same id and content.

    For an integrator who lost a webhook: the replay carries the original ``webhook-id``
    (and an e-mail its original Message-ID), with a fresh timestamp and signature. 409 while
    the delivery is still pending, waiting for a retry or being sent.
    """
    return await _send_again(
        session,
        resources,
        principal,
        delivery_id,
        "replay",
        lambda delivery, now: delivery_store.replay_delivery(session, delivery.id, now=now),
    )


async def _send_again(
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
    delivery_id: int,
    action: str,
    queue: Callable[[Delivery, datetime], Awaitable[Delivery]],
) -> DeliveryPublic:
    """Queue a delivery again with ``queue`` (retry or replay), audit it and commit."""
    delivery, _attempts = await delivery_store.get_delivery(session, delivery_id)
    before = {"status": delivery.status, "attempts": delivery.attempts}
    now = resources.clock()
    await queue(delivery, now)
    await audit(
        session,
        principal,
        action=action,
        entity_type="delivery",
        entity_id=delivery.id,
        before=before,
        after={"status": delivery.status, "next_attempt_at": now.isoformat()},
        now=now,
    )
    await session.commit()
    return DeliveryPublic.model_validate(delivery)


# --- API keys --------------------------------------------------------------------------------


@router.get("/keys", responses=READ, openapi_extra=role("admin"), tags=["keys"])
async def list_keys(
    session: SessionDep,
    _: Admin,
    revoked: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> KeyPage:
    """List API keys by id (never the keys themselves)."""
    rows = await key_store.list_keys(session)
    if revoked is not None:
        rows = [row for row in rows if (row.revoked_at is not None) == revoked]
    return page(
        KeyPage,
        KeyPublic.model_validate,
        rows[offset : offset + limit],
        total=len(rows),
        limit=limit,
        offset=offset,
    )


@router.post("/keys", status_code=201, responses=CREATE, openapi_extra=role("admin"), tags=["keys"])
async def create_key(
    body: KeyCreate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    principal: Admin,
) -> KeyCreated:
    """Create an API key. The answer holds the key, shown this once; only a hash is stored."""
    now = resources.clock()
    key, plain = await key_store.create_key(session, name=body.name, role=body.role, now=now)
    await audit(
        session,
        principal,
        action="create",
        entity_type="api_key",
        entity_id=key.id,
        before=None,
        after=snapshot(key, KEY_AUDIT),
        now=now,
    )
    await session.commit()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/keys/{key.id}"
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), key=plain)


@router.post(
    "/keys/{key_id}/revoke", responses=READ_ONE, openapi_extra=role("admin"), tags=["keys"]
)
async def revoke_key(
    key_id: Id, session: SessionDep, resources: ResourcesDep, principal: Admin
) -> KeyPublic:
    """Revoke a key at once (idempotent). Requests with it answer 401 from now on."""
    key = await key_store.get_key(session, key_id)
    if key is None:
        raise NotFoundError(f"no API key {key_id}")
    if key.revoked_at is None:
        before = snapshot(key, KEY_AUDIT)
        now = resources.clock()
        await key_store.revoke_key(session, key, now=now)
        await audit(
            session,
            principal,
            action="revoke",
            entity_type="api_key",
            entity_id=key.id,
            before=before,
            after=snapshot(key, KEY_AUDIT),
            now=now,
        )
        await session.commit()
    return KeyPublic.model_validate(key)


# --- audit -----------------------------------------------------------------------------------

EntityType = Literal[
    "source", "rule", "subscriber", "endpoint", "subscription", "delivery", "api_key"
]


@router.get("/audit", responses=READ, openapi_extra=role("admin"), tags=["audit"])
async def read_audit(
    session: SessionDep,
    _: Admin,
    entity_type: EntityType | None = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    actor_key_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AuditPage:
    """Who changed what and when, with the state before and after; newest first."""
    rows, total = await list_audit(
        session,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        actor_key_id=actor_key_id,
        since=aware(since, "since"),
        until=aware(until, "until"),
        limit=limit,
        offset=offset,
    )
    return page(
        AuditPage, AuditPublic.model_validate, rows, total=total, limit=limit, offset=offset
    )
