"""Subscribers, webhook endpoints and subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.schedule import next_due
from service.db.models import Subscriber, Subscription, WebhookEndpoint
from service.exceptions import ConflictError
from service.secretbox import SecretBox


def first_due_at(
    *, cadence: str, send_time: str, weekday: int | None, timezone: str, now: datetime
) -> datetime:
    """When a new or rescheduled subscription is next due (UTC)."""
    if cadence == "immediate":
        return now
    hour, minute = (int(part) for part in send_time.split(":"))
    return next_due(
        cadence=cadence,  # type: ignore[arg-type]
        send_time=time(hour, minute),
        weekday=weekday,
        tz=timezone,
        after=now,
    )


async def create_subscriber(
    session: AsyncSession, *, email: str, name: str = "", status: str, now: datetime
) -> Subscriber:
    existing = (
        await session.execute(select(Subscriber).where(Subscriber.email == email.lower()))
    ).scalar_one_or_none()
    if existing is not None:
        raise ConflictError(f"a subscriber with e-mail {email} exists")
    subscriber = Subscriber(
        email=email.lower(),
        name=name,
        status=status,
        confirmed_at=now if status == "active" else None,
        created_at=now,
        updated_at=now,
    )
    session.add(subscriber)
    await session.flush()
    return subscriber


def new_secret_entry(secret: str, *, box: SecretBox, now: datetime) -> dict[str, Any]:
    """A stored signing-secret entry: encrypted, dated, not expiring."""
    return {**box.seal(secret), "created_at": now.isoformat(), "expires_at": None}


async def create_endpoint(
    session: AsyncSession, *, name: str, url: str, secret: str, box: SecretBox, now: datetime
) -> WebhookEndpoint:
    """Add an endpoint whose signing ``secret`` is stored encrypted by ``box``."""
    endpoint = WebhookEndpoint(
        name=name,
        url=url,
        secrets=[new_secret_entry(secret, box=box, now=now)],
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def create_subscription(
    session: AsyncSession,
    *,
    subscriber_id: int | None = None,
    endpoint_id: int | None = None,
    rule_ids: Sequence[str] = (),
    rule_tags: Sequence[str] = (),
    cadence: str = "daily",
    send_time: str = "08:00",
    weekday: int | None = None,
    timezone: str = "UTC",
    heartbeat: bool = False,
    now: datetime,
    **extra: Any,
) -> Subscription:
    """Add a subscription, due at its first scheduled instant after ``now``."""
    if (subscriber_id is None) == (endpoint_id is None):
        raise ValueError("a subscription has exactly one recipient: a subscriber or an endpoint")
    subscription = Subscription(
        subscriber_id=subscriber_id,
        endpoint_id=endpoint_id,
        rule_ids=sorted(set(rule_ids)),
        rule_tags=sorted(set(rule_tags)),
        cadence=cadence,
        send_time=send_time,
        weekday=weekday,
        timezone=timezone,
        heartbeat=heartbeat,
        enabled=True,
        next_due_at=(
            None
            if cadence == "immediate"
            else first_due_at(
                cadence=cadence, send_time=send_time, weekday=weekday, timezone=timezone, now=now
            )
        ),
        created_at=now,
        updated_at=now,
        **extra,
    )
    session.add(subscription)
    await session.flush()
    return subscription
