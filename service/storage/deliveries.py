"""Deliveries as the admin API lists and retries them. The caller commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Delivery, DeliveryAttempt
from service.exceptions import ConflictError, NotFoundError
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
    attempts = (
        await session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.number, DeliveryAttempt.id)
        )
    ).scalars()
    return delivery, list(attempts)


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
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.last_error = None
    delivery.lease_owner = None
    delivery.lease_until = None
    await session.flush()
    return delivery
