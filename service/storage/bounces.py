"""Bounces and complaints: find who a report is about and suppress the address (EM-51/52).

A hard bounce or a complaint suppresses the address at once; a complaint also ends every
subscription of it. Soft bounces suppress only when they keep coming: ``SOFT_LIMIT`` reports
spread over at least ``SOFT_SPAN``, with no gap longer than ``SOFT_GAP`` between two of them
(a report after a longer gap starts the count again: the mailbox worked meanwhile, as far as
we can tell). Suppressed addresses are never handed to SMTP again; the delivery job cancels
their queued digests. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bounces import BounceKind, BounceReport
from service.db.models import BounceEvent, Delivery, Subscriber, Subscription
from service.storage.lifecycle import unsubscribe
from service.storage.paging import paginate

__all__ = [
    "SOFT_GAP",
    "SOFT_LIMIT",
    "SOFT_SPAN",
    "BounceInput",
    "input_from_report",
    "list_bounces",
    "record_bounce",
]

SOFT_LIMIT = 3
SOFT_SPAN = timedelta(hours=72)
SOFT_GAP = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class BounceInput:
    """One report, from a DSN, an ARF complaint or a relay's event (``source``)."""

    kind: BounceKind
    email: str
    source: str
    status: str = ""
    detail: str = ""
    token: str = ""


def input_from_report(report: BounceReport) -> BounceInput | str:
    """The bounce a parsed report describes, or why it describes none."""
    if report.kind is None:
        return "not a failure report"
    if not report.recipient and not report.token:
        return "the report names no recipient"
    return BounceInput(
        kind=report.kind,
        email=report.recipient,
        source="arf" if report.kind == "complaint" else "dsn",
        status=report.status,
        detail=report.detail,
        token=report.token,
    )


async def _subject(
    session: AsyncSession, report: BounceInput
) -> tuple[Subscriber | None, int | None]:
    """The subscriber (and delivery) a report is about: by VERP token first, then address."""
    token = report.token
    if token.startswith("msg_"):
        found = (
            await session.execute(
                select(Delivery.id, Subscription.subscriber_id)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                .where(Delivery.message_id == token)
            )
        ).first()
        if found is not None and found[1] is not None:
            return await session.get(Subscriber, found[1]), found[0]
    if token.startswith("confirm-"):
        number = token.split("-")[1]
        if number.isdigit():
            subscriber = await session.get(Subscriber, int(number))
            if subscriber is not None:
                return subscriber, None
    if report.email:
        subscriber = (
            await session.execute(
                select(Subscriber).where(Subscriber.email == report.email.strip().lower())
            )
        ).scalar_one_or_none()
        return subscriber, None
    return None, None


def _suppress(subscriber: Subscriber, reason: str, *, now: datetime) -> None:
    subscriber.status = "suppressed"
    subscriber.status_reason = reason[:1000]
    subscriber.version += 1
    subscriber.updated_at = now


async def record_bounce(
    session: AsyncSession, report: BounceInput, *, now: datetime
) -> BounceEvent:
    """Apply one report to its subscriber and log it; return the logged event."""
    subscriber, delivery_id = await _subject(session, report)
    what = " ".join(part for part in (report.status, report.detail) if part)
    action: str
    if subscriber is None:
        action = "unknown_address"
    elif subscriber.status == "suppressed":
        action = "already_suppressed"
    elif report.kind == "complaint":
        enabled = await session.scalars(
            select(Subscription.id).where(
                Subscription.subscriber_id == subscriber.id, Subscription.enabled.is_(True)
            )
        )
        for subscription_id in list(enabled):
            await unsubscribe(session, subscription_id, now=now)
        _suppress(subscriber, f"complaint ({report.detail or 'abuse'})", now=now)
        action = "unsubscribed"
    elif report.kind == "hard":
        _suppress(subscriber, f"hard bounce: {what}", now=now)
        action = "suppressed"
    else:
        last = subscriber.soft_bounce_last
        if last is None or subscriber.soft_bounce_since is None or now - last > SOFT_GAP:
            subscriber.soft_bounces, subscriber.soft_bounce_since = 0, now
        subscriber.soft_bounces += 1
        subscriber.soft_bounce_last = now
        since = subscriber.soft_bounce_since
        if subscriber.soft_bounces >= SOFT_LIMIT and now - since >= SOFT_SPAN:
            _suppress(
                subscriber,
                f"{subscriber.soft_bounces} soft bounces since {since.isoformat()}: {what}",
                now=now,
            )
            action = "suppressed"
        else:
            action = "counted"
    event = BounceEvent(
        received_at=now,
        kind=report.kind,
        email=(report.email or (subscriber.email if subscriber else "")).strip().lower()[:320],
        subscriber_id=subscriber.id if subscriber is not None else None,
        delivery_id=delivery_id,
        status=report.status[:20],
        detail=report.detail[:2000],
        source=report.source,
        action=action,
    )
    session.add(event)
    await session.flush()
    return event


async def list_bounces(
    session: AsyncSession,
    *,
    email: str | None = None,
    kind: str | None = None,
    subscriber_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[BounceEvent], int]:
    """Bounce events, newest first."""
    statement: Select[BounceEvent] = select(BounceEvent)
    if email is not None:
        statement = statement.where(BounceEvent.email == email.strip().lower())
    if kind is not None:
        statement = statement.where(BounceEvent.kind == kind)
    if subscriber_id is not None:
        statement = statement.where(BounceEvent.subscriber_id == subscriber_id)
    return await paginate(
        session,
        statement,
        order_by=[BounceEvent.received_at.desc(), BounceEvent.id.desc()],
        limit=limit,
        offset=offset,
    )
