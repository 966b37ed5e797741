"""The outbox as operators see it: list, inspect, retry, replay, recover; signing secrets.

A retry or replay reuses the delivery's row, so the webhook-id / Message-ID and the content
stay the same and only the timestamp and signature of the new attempt change (WH-15). The
caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Delivery, DeliveryAttempt, Subscription, WebhookEndpoint
from service.exceptions import ConflictError, NotFoundError
from service.secretbox import SecretBox
from service.storage.paging import paginate

RETRYABLE = frozenset({"failed", "cancelled", "retry_wait"})


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    channel: str | None = None,
    subscription_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Delivery], int]:
    """Deliveries newest first."""
    statement: Select[Delivery] = select(Delivery)
    if status is not None:
        statement = statement.where(Delivery.status == status)
    if channel is not None:
        statement = statement.where(Delivery.channel == channel)
    if subscription_id is not None:
        statement = statement.where(Delivery.subscription_id == subscription_id)
    if since is not None:
        statement = statement.where(Delivery.created_at >= since)
    if until is not None:
        statement = statement.where(Delivery.created_at < until)
    return await paginate(
        session,
        statement,
        order_by=[Delivery.created_at.desc(), Delivery.id.desc()],
        limit=limit,
        offset=offset,
    )


async def get_delivery(
    session: AsyncSession, delivery_id: int
) -> tuple[Delivery, list[DeliveryAttempt]]:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFoundError(f"no delivery {delivery_id}")
    return delivery, list(await list_attempts(session, delivery_id))


async def retry_delivery(session: AsyncSession, delivery: Delivery, *, now: datetime) -> Delivery:
    """Queue a failed, cancelled or waiting delivery for an attempt at the next tick.

    Raises:
        ConflictError: the delivery was delivered or is being sent.
    """
    if delivery.status not in RETRYABLE:
        raise ConflictError(
            f"delivery {delivery.id} is {delivery.status}; only "
            f"{', '.join(sorted(RETRYABLE))} deliveries can be retried"
        )
    _queue(delivery, now=now)
    await session.flush()
    return delivery


REPLAYABLE = ("delivered", "failed", "cancelled")


def _queue(delivery: Delivery, *, now: datetime) -> None:
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.lease_owner = None
    delivery.lease_until = None
    delivery.last_error = None


async def replay_delivery(session: AsyncSession, delivery_id: int, *, now: datetime) -> Delivery:
    """Queue a finished delivery to be sent again, with its original id and content.

    Raises:
        NotFoundError: no such delivery.
        ConflictError: the delivery is still pending, retrying or being sent.
    """
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFoundError(f"delivery {delivery_id} not found")
    if delivery.status not in REPLAYABLE:
        raise ConflictError(f"delivery {delivery_id} is {delivery.status}; it will be sent anyway")
    _queue(delivery, now=now)
    await session.flush()
    return delivery


async def recover_failed(
    session: AsyncSession, endpoint_id: int, *, since: datetime, now: datetime
) -> list[int]:
    """Queue every failed delivery of an endpoint created since ``since``, once, oldest first.

    Returns the queued delivery ids. The endpoint is re-enabled, since a recovery is only
    useful once the integrator has fixed their side.
    """
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
    rows = await session.execute(
        select(Delivery)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(
            Subscription.endpoint_id == endpoint_id,
            Delivery.status == "failed",
            Delivery.created_at >= since,
        )
        .order_by(Delivery.created_at, Delivery.id)
    )
    queued = []
    # Stagger by a microsecond each so the claim order (by due time) is the creation order.
    for offset, delivery in enumerate(rows.scalars()):
        _queue(delivery, now=now + timedelta(microseconds=offset))
        queued.append(delivery.id)
    if not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = None
        endpoint.failing_since = None
        endpoint.updated_at = now
    await session.flush()
    return queued


async def list_attempts(session: AsyncSession, delivery_id: int) -> Sequence[DeliveryAttempt]:
    """Return the attempt log of a delivery, oldest first."""
    rows = await session.execute(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == delivery_id)
        .order_by(DeliveryAttempt.number, DeliveryAttempt.id)
    )
    return list(rows.scalars())


def active_secrets(
    entries: Sequence[dict[str, Any]], *, box: SecretBox, now: datetime
) -> list[str]:
    """Return the secrets to sign with now, decrypted, newest first (expired ones dropped).

    Raises:
        SecretBoxError: a secret was encrypted with a key this process does not have.
    """
    return [box.open(entry) for entry in active_secrets_entries(entries, now=now)]


def active_secrets_entries(
    entries: Sequence[dict[str, Any]], *, now: datetime
) -> list[dict[str, Any]]:
    """Return the stored secret entries still active at ``now``, newest first."""
    return [
        entry
        for entry in entries
        if not entry.get("expires_at") or datetime.fromisoformat(entry["expires_at"]) > now
    ]
