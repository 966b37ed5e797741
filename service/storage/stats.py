"""Counts of the service's state, read when ``/metrics`` is scraped.

They come from the database, not from this process's memory, so every process reports the
same numbers: alert on them with ``max`` across instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Delivery, Source, Subscriber

__all__ = ["StateCounts", "state_counts"]

QUEUED = ("pending", "retry_wait")


@dataclass(frozen=True, slots=True)
class StateCounts:
    """Sources by health (enabled ones), subscribers by status, queued deliveries by channel,
    and how late the most overdue delivery is (0 when none is overdue)."""

    sources: dict[str, int]
    subscribers: dict[str, int]
    queued: dict[str, int]
    overdue_seconds: float


async def state_counts(session: AsyncSession, *, now: datetime) -> StateCounts:
    sources = await session.execute(
        select(Source.health, func.count()).where(Source.enabled.is_(True)).group_by(Source.health)
    )
    subscribers = await session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    )
    queued = await session.execute(
        select(Delivery.channel, func.count())
        .where(Delivery.status.in_(QUEUED))
        .group_by(Delivery.channel)
    )
    oldest = await session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.status.in_(QUEUED), Delivery.next_attempt_at <= now
        )
    )
    return StateCounts(
        sources={str(health): int(count) for health, count in sources.all()},
        subscribers={str(status): int(count) for status, count in subscribers.all()},
        queued={str(channel): int(count) for channel, count in queued.all()},
        overdue_seconds=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
