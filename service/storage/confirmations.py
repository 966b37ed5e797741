"""The confirmation e-mail as an outbox item: claim the due ones, record what SMTP said.

A sign-up stores its token encrypted and a retry time a few minutes ahead; the request sends
the e-mail at once. Whatever stops that send (a relay that is down, a 4xx, a process that
dies) leaves the row due, and a worker sends the same token again, with the same Message-ID,
until a relay accepts it, a 5xx says the address does not exist, or the link would expire.
The caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Subscriber

__all__ = [
    "CONFIRM_RETRY_DELAYS",
    "CONFIRM_SEND_GRACE",
    "PendingConfirmation",
    "claim_due_confirmations",
    "load_confirmations",
    "record_confirmation",
]

CONFIRM_SEND_GRACE = timedelta(minutes=5)
"""How long the sign-up request has to send the e-mail before a worker may send it."""

CONFIRM_RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
)
"""Waits after the 1st, 2nd... failed attempt; after the last one the e-mail is given up."""


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    """What sending one confirmation e-mail needs."""

    subscriber_id: int
    email: str
    sealed_token: dict[str, str]
    token_hash: str
    sent_at: datetime


async def claim_due_confirmations(
    session: AsyncSession, *, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Take up to ``limit`` due confirmation e-mails by moving their retry time past ``now``.

    The retry time doubles as the lease: another process sees the row as not due until
    ``now + lease``, by which time this one has recorded an outcome or died.
    """
    due = (
        select(Subscriber.id)
        .where(
            Subscriber.status == "pending",
            Subscriber.confirm_retry_at <= now,
            Subscriber.confirm_token_sealed.is_not(None),
        )
        .order_by(Subscriber.confirm_retry_at, Subscriber.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Subscriber)
        .where(Subscriber.id.in_(due.scalar_subquery()))
        .values(confirm_retry_at=now + lease)
        .returning(Subscriber.id)
        .execution_options(synchronize_session=False)
    )
    return sorted((await session.execute(statement)).scalars())


async def load_confirmations(
    session: AsyncSession, subscriber_ids: Sequence[int]
) -> list[PendingConfirmation]:
    """The confirmation e-mails of ``subscriber_ids`` that are still to be sent."""
    if not subscriber_ids:
        return []
    rows = await session.scalars(
        select(Subscriber)
        .where(
            Subscriber.id.in_(subscriber_ids),
            Subscriber.status == "pending",
            Subscriber.confirm_token_sealed.is_not(None),
        )
        .order_by(Subscriber.id)
    )
    return [
        PendingConfirmation(
            subscriber_id=row.id,
            email=row.email,
            sealed_token=dict(row.confirm_token_sealed or {}),
            token_hash=row.confirm_token_hash or "",
            sent_at=row.confirm_sent_at or row.created_at,
        )
        for row in rows
        if row.confirm_token_hash
    ]


async def record_confirmation(
    session: AsyncSession,
    pending: PendingConfirmation,
    *,
    status: str,
    detail: str,
    ttl: timedelta,
    now: datetime,
) -> str:
    """Record an SMTP outcome (``sent``, ``retry`` or ``permanent``), or ``expired`` for an
    e-mail not sent because its link expired; return what follows.

    Returns ``done``, ``retrying``, ``given_up`` (the next try would come after the link
    expires, or every delay is spent), ``bounced``, or ``stale`` when the subscriber signed up
    again meanwhile (a new token: this outcome is about the old one and changes nothing).
    """
    row = await session.get(Subscriber, pending.subscriber_id, with_for_update=True)
    if row is None or row.confirm_token_hash != pending.token_hash:
        return "stale"
    row.confirm_attempts += 1
    row.updated_at = now
    if status == "sent":
        row.confirm_token_sealed = None
        row.confirm_retry_at = None
        row.status_reason = None
        return "done"
    if status == "permanent":
        row.status = "bounced"
        row.status_reason = f"confirmation e-mail refused: {detail}"[:1000]
        row.confirm_token_sealed = None
        row.confirm_retry_at = None
        return "bounced"
    index = row.confirm_attempts - 1
    retry_at = now + CONFIRM_RETRY_DELAYS[index] if index < len(CONFIRM_RETRY_DELAYS) else None
    if status == "expired" or retry_at is None or retry_at >= pending.sent_at + ttl:
        row.status_reason = f"confirmation e-mail not delivered: {detail}"[:1000]
        row.confirm_token_sealed = None
        row.confirm_retry_at = None
        return "given_up"
    row.confirm_retry_at = retry_at
    row.status_reason = f"confirmation e-mail delayed: {detail}"[:1000]
    return "retrying"
