"""Digests and alerts: plan what is due into the outbox, then send what the outbox holds.

Planning (one transaction per subscription) creates at most one delivery per
(subscription, period key) and attaches every pending notification to it, so a committed
match is delivered exactly once. Sending claims deliveries with a lease, commits an attempt
row before any network call, and reuses the delivery's Message-ID / webhook-id on retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

import alerts
from alerts.digest import Digest, DigestCandidate, DigestLimits, Outlet, build_digest
from alerts.render import render_email, webhook_payload
from alerts.schedule import Cadence, due_period
from service import metrics
from service.db.models import (
    Article,
    Delivery,
    DeliveryAttempt,
    Match,
    Notification,
    Source,
    Subscriber,
    Subscription,
    WatchRule,
    WebhookEndpoint,
)
from service.notify.email import Mailer, MailerConnection, build_message
from service.notify.tokens import subscription_link
from service.notify.webhook import WebhookSender, retry_delay, should_disable
from service.runtime import Resources, smtp_options
from service.safety import check_url
from service.storage.claims import claim_due
from service.storage.deliveries import active_secrets

log = logging.getLogger(__name__)

_PLAN_CHUNK = 250
_DELIVERIES = cast(Table, Delivery.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_SUBSCRIBERS = cast(Table, Subscriber.__table__)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    planned: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def _send_time(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


async def run_due_deliveries(resources: Resources, *, max_rounds: int = 20) -> DeliveryReport:
    """Plan every digest due now, then send every delivery due now.

    Works in rounds of ``delivery.batch_size`` claims and keeps going while a round found a
    full batch (a busy 08:00 must not wait for the next ticks), up to ``max_rounds`` so one
    tick cannot starve source polling.
    """
    batch = resources.settings.delivery.batch_size
    planned = delivered = retrying = failed = 0
    for _ in range(max_rounds):
        claimed_subscriptions, created = await _plan_round(resources)
        sent = await send_due(resources)
        planned += created
        delivered, retrying, failed = (
            delivered + sent.delivered,
            retrying + sent.retrying,
            failed + sent.failed,
        )
        if claimed_subscriptions < batch and sent.claimed < batch:
            break
    return DeliveryReport(planned, delivered, retrying, failed)


async def plan_due(resources: Resources) -> int:
    """Create the deliveries of subscriptions due now (one batch). Returns how many."""
    return (await _plan_round(resources))[1]


async def _plan_round(resources: Resources) -> tuple[int, int]:
    now = resources.clock()
    lease = now + timedelta(seconds=resources.settings.delivery.lease_seconds)
    async with resources.sessionmaker() as session:
        ids = await claim_due(
            session,
            Subscription,
            due_column=Subscription.next_due_at,
            now=now,
            owner=resources.owner,
            lease_until=lease,
            limit=resources.settings.delivery.batch_size,
            where=[Subscription.enabled.is_(True)],
        )
        await session.commit()
    created = 0
    # Several subscriptions per transaction: each one's plan is still atomic (its delivery,
    # its attached notifications and its next due time commit together, REL-01).
    for start in range(0, len(ids), _PLAN_CHUNK):
        chunk = ids[start : start + _PLAN_CHUNK]
        async with resources.sessionmaker() as session:
            created += await _plan_chunk(session, chunk, now=now, owner=resources.owner)
            await session.commit()
    return len(ids), created


@dataclass(frozen=True, slots=True)
class _Planned:
    subscription_id: int
    channel: str
    event: str
    period_key: str
    window: tuple[datetime | None, datetime]
    # Set for match.created webhooks, which carry one match (and webhook-id) each.
    notification_id: int | None = None


async def _plan_chunk(
    session: AsyncSession, chunk: Sequence[int], *, now: datetime, owner: str
) -> int:
    """Plan a chunk of leased subscriptions with a handful of statements in all."""
    loaded = (
        (await session.execute(select(Subscription).where(Subscription.id.in_(chunk))))
        .scalars()
        .all()
    )
    by_id = {sub.id: sub for sub in loaded}
    subs = [
        sub
        for sub in (by_id.get(subscription_id) for subscription_id in chunk)
        if sub is not None and sub.lease_owner == owner and sub.next_due_at is not None
    ]
    if not subs:
        return 0
    pending: dict[int, list[int]] = {}
    pending_rows = await session.execute(
        select(Notification.subscription_id, Notification.id)
        .where(
            Notification.subscription_id.in_([sub.id for sub in subs]),
            Notification.delivery_id.is_(None),
        )
        .order_by(Notification.id)
    )
    for subscription_id, notification_id in pending_rows.all():
        pending.setdefault(subscription_id, []).append(notification_id)
    plans: list[_Planned] = []
    for sub in subs:
        plans += _plan_subscription(sub, pending.get(sub.id, []), now=now)
        sub.lease_owner = None
        sub.lease_until = None
    created = await _create_deliveries(session, plans, now=now)
    await session.flush()
    return created


def _plan_subscription(
    sub: Subscription, pending: Sequence[int], *, now: datetime
) -> list[_Planned]:
    """Decide one subscription's deliveries and move its due time (no I/O)."""
    channel = "email" if sub.subscriber_id is not None else "webhook"
    plans: list[_Planned] = []
    if sub.cadence == "immediate":
        if pending and channel == "webhook":
            plans = [
                _Planned(
                    sub.id,
                    channel,
                    "match.created",
                    f"match-{notification_id}",
                    (None, now),
                    notification_id,
                )
                for notification_id in pending
            ]
        elif pending:
            plans = [
                _Planned(sub.id, channel, "digest.published", f"alert-{pending[0]}", (None, now))
            ]
        sub.next_due_at = None
        return plans
    assert sub.next_due_at is not None
    cadence: Cadence = sub.cadence  # type: ignore[assignment]
    period = due_period(
        cadence=cadence,
        send_time=_send_time(sub.send_time),
        weekday=sub.weekday,
        tz=sub.timezone,
        next_due_at=sub.next_due_at,
        covered_until=None,
        now=now,
    )
    if period is not None:
        if pending or sub.heartbeat:
            plans = [
                _Planned(
                    sub.id,
                    channel,
                    "digest.published",
                    period.period_key,
                    (period.window_start, period.window_end),
                )
            ]
        sub.last_period_key = period.period_key
        sub.next_due_at = period.next_due
    return plans


async def _create_deliveries(
    session: AsyncSession, plans: Sequence[_Planned], *, now: datetime
) -> int:
    if not plans:
        return 0
    existing = set(
        (
            await session.execute(
                select(Delivery.subscription_id, Delivery.period_key).where(
                    Delivery.subscription_id.in_({plan.subscription_id for plan in plans}),
                    Delivery.period_key.in_({plan.period_key for plan in plans}),
                )
            )
        ).all()
    )
    # A replayed or repeated period (DST, a second process): the unique key absorbs it.
    fresh = [plan for plan in plans if (plan.subscription_id, plan.period_key) not in existing]
    if not fresh:
        return 0
    inserted = await session.execute(
        insert(_DELIVERIES).returning(_DELIVERIES.c.id, sort_by_parameter_order=True),
        [
            {
                "subscription_id": plan.subscription_id,
                "channel": plan.channel,
                "event_type": plan.event,
                "period_key": plan.period_key,
                "window_start": plan.window[0],
                "window_end": plan.window[1],
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "message_id": f"pending-{plan.subscription_id}-{plan.period_key}",
                "item_count": 0,
                "possible_duplicate": False,
                "created_at": now,
            }
            for plan in fresh
        ],
    )
    delivery_ids = list(inserted.scalars())
    notifications = cast(Table, Notification.__table__)
    whole = [
        {"sub": plan.subscription_id, "delivery": delivery_id}
        for plan, delivery_id in zip(fresh, delivery_ids, strict=True)
        if plan.notification_id is None
    ]
    if whole:
        await session.execute(
            update(notifications)
            .where(
                notifications.c.subscription_id == bindparam("sub"),
                notifications.c.delivery_id.is_(None),
            )
            .values(delivery_id=bindparam("delivery")),
            whole,
        )
    single = [
        {"one": plan.notification_id, "delivery": delivery_id}
        for plan, delivery_id in zip(fresh, delivery_ids, strict=True)
        if plan.notification_id is not None
    ]
    if single:
        await session.execute(
            update(notifications)
            .where(notifications.c.id == bindparam("one"), notifications.c.delivery_id.is_(None))
            .values(delivery_id=bindparam("delivery")),
            single,
        )
    counts = dict(
        (
            await session.execute(
                select(Notification.delivery_id, func.count())
                .where(Notification.delivery_id.in_(delivery_ids))
                .group_by(Notification.delivery_id)
            )
        ).all()
    )
    await session.execute(
        update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id")),
        [
            {
                "b_id": delivery_id,
                "message_id": f"msg_{delivery_id}",
                "item_count": counts.get(delivery_id, 0),
            }
            for delivery_id in delivery_ids
        ],
    )
    return len(delivery_ids)


@dataclass(frozen=True, slots=True)
class _SendTotals:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    claimed: int = 0


#: Deliveries prepared (loaded, digests rebuilt) per read transaction. Preparing writes
#: nothing, so a chunk can be large: a delivery only becomes an attempt when it is started.
_PREPARE_CHUNK = 100


async def send_due(resources: Resources) -> _SendTotals:
    """Claim due deliveries and send them, ``delivery.concurrency`` at a time."""
    now = resources.clock()
    settings = resources.settings.delivery
    async with resources.sessionmaker() as session:
        ids = await claim_due(
            session,
            Delivery,
            due_column=Delivery.next_attempt_at,
            now=now,
            owner=resources.owner,
            lease_until=now + timedelta(seconds=settings.lease_seconds),
            limit=settings.batch_size,
            where=[Delivery.status.in_(("pending", "retry_wait", "sending"))],
        )
        if ids:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(status="sending")
                .execution_options(synchronize_session=False)
            )
        await session.commit()
    if not ids:
        return _SendTotals()
    mailer = Mailer(smtp_options(resources.settings.smtp))
    sender = WebhookSender(
        resources.http,
        timeout=resources.settings.http.timeout_seconds,
        url_guard=partial(check_url, allow_loopback=resources.settings.http.allow_loopback),
    )
    # ``concurrency`` lanes send side by side, each e-mail lane over its own SMTP connection
    # (opened on first use, reused for the whole batch). Deliveries are prepared a large
    # chunk at a time (reads only; the next chunk is read while this one is on the wire),
    # and started a group at a time: one delivery per lane, whose attempt rows commit
    # together right before the group's network calls. Never more per group: a delivery
    # started but caught unsent by a crash is flagged as a possible duplicate on its retry.
    lanes = max(1, settings.concurrency)
    writer = _Writer(resources)

    async def lane(connection: MailerConnection, item: _Prepared, started: _Started) -> None:
        result = await _transmit(resources, item, connection, sender)
        if result.disable_endpoint and item.endpoint is not None:
            writer.disabled_endpoints.add(item.endpoint.id)
        writer.add(item, started, result, at=resources.clock())

    chunks = [ids[start : start + _PREPARE_CHUNK] for start in range(0, len(ids), _PREPARE_CHUNK)]
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(mailer.connection()) for _ in range(lanes)]
        writing = asyncio.create_task(writer.run())
        upcoming = asyncio.create_task(_prepare_chunk(resources, chunks[0], writer))
        try:
            for index in range(len(chunks)):
                prepared = await upcoming
                if index + 1 < len(chunks):
                    upcoming = asyncio.create_task(
                        _prepare_chunk(resources, chunks[index + 1], writer)
                    )
                for group in _groups(prepared, lanes, writer):
                    started = await writer.start(group)
                    await asyncio.gather(*map(lane, connections, group, started))
        finally:
            upcoming.cancel()
            await asyncio.wait([upcoming])
            if not upcoming.cancelled():
                # Retrieved so a failed read-ahead is not reported a second time.
                upcoming.exception()
            writer.close()
            await writing
    outcomes = writer.outcomes
    return _SendTotals(
        delivered=outcomes.count("delivered"),
        retrying=outcomes.count("retry"),
        failed=outcomes.count("failed"),
        claimed=len(ids),
    )


def _groups(
    prepared: Sequence[_Prepared], lanes: int, writer: _Writer
) -> Iterator[list[_Prepared]]:
    """Cut a prepared chunk into groups of one delivery per lane, lazily.

    An endpoint disabled while the chunk is sending (410 Gone, or 5 days of failures) gets
    nothing more: its remaining deliveries are cancelled, as if it had been disabled before.
    """
    group: list[_Prepared] = []
    for item in prepared:
        if item.endpoint is not None and item.endpoint.id in writer.disabled_endpoints:
            writer.cancel([item.delivery.id])
            continue
        group.append(item)
        if len(group) == lanes:
            yield group
            group = []
    if group:
        yield group


@dataclass(frozen=True, slots=True)
class _Prepared:
    delivery: Delivery
    subscription: Subscription
    subscriber: Subscriber | None
    endpoint: WebhookEndpoint | None
    digest: Digest
    number: int
    # Attempts a dead worker left unfinished: they may have reached the receiver.
    abandoned: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Started:
    at: datetime


@dataclass(frozen=True, slots=True)
class _Sent:
    status: str
    code: int | None
    detail: str
    retry_after: timedelta | None = None
    disable_endpoint: bool = False
    permanent_recipient: bool = False


async def _prepare_chunk(
    resources: Resources, ids: Sequence[int], writer: _Writer
) -> list[_Prepared]:
    """Load a chunk of claimed deliveries and rebuild their digests; writes nothing."""
    prepared: list[_Prepared] = []
    async with resources.sessionmaker() as session:
        deliveries = {
            d.id: d
            for d in (await session.execute(select(Delivery).where(Delivery.id.in_(ids))))
            .scalars()
            .all()
        }
        sub_ids = {d.subscription_id for d in deliveries.values()}
        subs = {
            s.id: s
            for s in (
                await session.execute(select(Subscription).where(Subscription.id.in_(sub_ids)))
            )
            .scalars()
            .all()
        }
        subscriber_ids = {s.subscriber_id for s in subs.values() if s.subscriber_id is not None}
        endpoint_ids = {s.endpoint_id for s in subs.values() if s.endpoint_id is not None}
        subscribers = (
            {
                row.id: row
                for row in (
                    await session.execute(
                        select(Subscriber).where(Subscriber.id.in_(subscriber_ids))
                    )
                ).scalars()
            }
            if subscriber_ids
            else {}
        )
        endpoints = (
            {
                row.id: row
                for row in (
                    await session.execute(
                        select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
                    )
                ).scalars()
            }
            if endpoint_ids
            else {}
        )
        mine = [
            deliveries[delivery_id]
            for delivery_id in ids
            if delivery_id in deliveries and deliveries[delivery_id].lease_owner == resources.owner
        ]
        writer.outcomes += ["skipped"] * (len(ids) - len(mine))
        digests = await load_digests(
            session, mine, limit=resources.settings.delivery.digest_item_limit
        )
        retried = [d.id for d in mine if d.attempts]
        unfinished: dict[int, list[int]] = {}
        if retried:
            for delivery_id, attempt_id in await session.execute(
                select(DeliveryAttempt.delivery_id, DeliveryAttempt.id).where(
                    DeliveryAttempt.delivery_id.in_(retried),
                    DeliveryAttempt.outcome == "started",
                )
            ):
                unfinished.setdefault(delivery_id, []).append(attempt_id)
        # A read-only transaction: committing it just ends it, keeping the loaded objects.
        await session.commit()
    cancelled: list[int] = []
    for delivery in mine:
        sub = subs.get(delivery.subscription_id)
        subscriber = (
            subscribers.get(sub.subscriber_id)
            if sub is not None and sub.subscriber_id is not None
            else None
        )
        endpoint = (
            endpoints.get(sub.endpoint_id)
            if sub is not None and sub.endpoint_id is not None
            else None
        )
        gone = (
            sub is None
            or not sub.enabled
            or (subscriber is not None and subscriber.status != "active")
            or (endpoint is not None and not endpoint.enabled)
        )
        if gone:
            cancelled.append(delivery.id)
            continue
        assert sub is not None
        prepared.append(
            _Prepared(
                delivery,
                sub,
                subscriber,
                endpoint,
                digests[delivery.id],
                delivery.attempts + 1,
                tuple(unfinished.get(delivery.id, ())),
            )
        )
    if cancelled:
        writer.cancel(cancelled)
    return prepared


_T = TypeVar("_T")
_Outcome = tuple[_Prepared, _Started, _Sent, datetime]

#: How long outcomes collect before they are written together (group commit).
_RECORD_DELAY = 0.05


class _Writer:
    """The send job's only writer: starts attempts and records outcomes, in group commits.

    A start (a group's attempt rows and attempt counts, committed before its network calls)
    is written as soon as it is asked for, ahead of anything else, since the group waits for
    it. Outcomes collect for at most ``_RECORD_DELAY`` and are then written together, while
    the next groups are on the wire; a crash leaves only the attempts in flight or finished
    in that window unfinished, and those are flagged as possible duplicates on their retry.
    """

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._outcomes: list[_Outcome] = []
        self._starts: list[tuple[Sequence[_Prepared], asyncio.Future[list[_Started]]]] = []
        self._cancelled: list[int] = []
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._due = False
        # Endpoints this job has seen fail: only those (and endpoints already failing when
        # their chunk was read) can need ``failing_since`` cleared after a success.
        self._failed_endpoints: set[int] = set()
        self._closed = False
        self._failed: BaseException | None = None
        self._stack = AsyncExitStack()
        self._connection: AsyncConnection | None = None
        self.outcomes: list[str] = []
        self.disabled_endpoints: set[int] = set()

    def add(self, item: _Prepared, started: _Started, sent: _Sent, *, at: datetime) -> None:
        self._outcomes.append((item, started, sent, at))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_RECORD_DELAY, self._record_now)

    def _record_now(self) -> None:
        self._due = True
        self._wake.set()

    def cancel(self, delivery_ids: Sequence[int]) -> None:
        self._cancelled += delivery_ids
        self.outcomes += ["failed"] * len(delivery_ids)
        self._wake.set()

    async def start(self, group: Sequence[_Prepared]) -> list[_Started]:
        """Commit the group's attempt rows; return them once committed."""
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[list[_Started]] = asyncio.get_running_loop().create_future()
        self._starts.append((group, future))
        self._wake.set()
        return await future

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        async with self._stack:
            try:
                await self._run()
            except BaseException as exc:
                self._failed = exc
                for _, future in self._starts:
                    future.set_exception(exc)
                raise

    async def _run(self) -> None:
        while True:
            if self._starts or self._cancelled:
                starts, self._starts = self._starts, []
                cancelled, self._cancelled = self._cancelled, []
                try:
                    results = await self._write(
                        self._start_groups, [g for g, _ in starts], cancelled
                    )
                except BaseException as exc:
                    for _, future in starts:
                        future.set_exception(exc)
                    raise
                for (_, future), started in zip(starts, results, strict=True):
                    future.set_result(started)
            elif self._outcomes and (self._due or self._closed):
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self._due = False
                outcomes, self._outcomes = self._outcomes, []
                statuses = await self._write(self._record, outcomes, ())
                self._count(outcomes, statuses)
            elif self._closed:
                return
            else:
                self._wake.clear()
                await self._wake.wait()

    def _count(self, outcomes: Sequence[_Outcome], statuses: Sequence[str]) -> None:
        for (item, _, sent, _), final in zip(outcomes, statuses, strict=True):
            metrics.DELIVERIES.labels(item.delivery.channel, final).inc()
            log.info(
                "delivery attempted delivery_id=%s status=%s code=%s",
                item.delivery.id,
                final,
                sent.code,
            )
            self.outcomes.append(
                {"delivered": "delivered", "retry_wait": "retry"}.get(final, "failed")
            )

    async def _write(
        self,
        step: Callable[[AsyncConnection, Sequence[Any]], Awaitable[list[_T]]],
        items: Sequence[Any],
        cancelled: Sequence[int],
    ) -> list[_T]:
        # One connection for the whole job and Core statements only: the per-statement cost
        # (and on SQLite each thread hop) is what a group's start waits for.
        if self._connection is None:
            self._connection = await self._stack.enter_async_context(
                self._resources.engine.connect()
            )
        connection = self._connection
        async with connection.begin():
            if cancelled:
                await connection.execute(
                    update(_DELIVERIES)
                    .where(_DELIVERIES.c.id.in_(cancelled))
                    .values(status="cancelled", lease_owner=None, lease_until=None)
                )
            return await step(connection, items) if items else []

    async def _start_groups(
        self, connection: AsyncConnection, starts: Sequence[Sequence[_Prepared]]
    ) -> list[list[_Started]]:
        items = [item for group in starts for item in group]
        now = self._resources.clock()
        abandoned = [attempt for item in items for attempt in item.abandoned]
        if abandoned:
            # A worker died between committing these attempts and recording their outcome:
            # the message may have reached the receiver, who dedupes on the same id.
            await connection.execute(
                update(_ATTEMPTS)
                .where(_ATTEMPTS.c.id.in_(abandoned))
                .values(
                    outcome="abandoned",
                    finished_at=now,
                    error="the worker stopped before recording the outcome",
                )
            )
            await connection.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id.in_([item.delivery.id for item in items if item.abandoned]))
                .values(possible_duplicate=True)
            )
        await connection.execute(
            update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id")),
            [{"b_id": item.delivery.id, "attempts": item.number} for item in items],
        )
        await connection.execute(
            insert(_ATTEMPTS),
            [
                {
                    "delivery_id": item.delivery.id,
                    "number": item.number,
                    "started_at": now,
                    "outcome": "started",
                }
                for item in items
            ],
        )
        return [[_Started(now) for _ in group] for group in starts]

    async def _record(self, connection: AsyncConnection, outcomes: Sequence[_Outcome]) -> list[str]:
        """Write a batch of outcomes: a few executemany UPDATEs by primary key."""
        max_attempts = self._resources.settings.delivery.max_attempts
        rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        attempts: list[dict[str, Any]] = []
        statuses: list[str] = []
        for item, started, sent, at in outcomes:
            row, attempt = _outcome(item, started, sent, at=at, max_attempts=max_attempts)
            rows.setdefault(tuple(row), []).append(row)
            attempts.append(attempt)
            statuses.append(row["status"])
        # executemany needs one column set per statement: one UPDATE per kind of outcome.
        for batch in rows.values():
            await connection.execute(
                update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id")), batch
            )
        await connection.execute(
            update(_ATTEMPTS).where(
                _ATTEMPTS.c.delivery_id == bindparam("b_delivery"),
                _ATTEMPTS.c.number == bindparam("b_number"),
            ),
            attempts,
        )
        await self._record_endpoints(connection, outcomes, statuses)
        for item, _, sent, at in outcomes:
            if sent.permanent_recipient and item.subscriber is not None:
                await connection.execute(
                    update(_SUBSCRIBERS)
                    .where(_SUBSCRIBERS.c.id == item.subscriber.id)
                    .values(
                        status="suppressed",
                        status_reason=f"SMTP {sent.code}: {sent.detail[:200]}",
                        updated_at=at,
                    )
                )
        return statuses

    async def _record_endpoints(
        self, connection: AsyncConnection, outcomes: Sequence[_Outcome], statuses: Sequence[str]
    ) -> None:
        """Endpoint health: successes clear ``failing_since``, failures start or extend it.

        A batch of successes only touches endpoints that may be failing; an endpoint with a
        failure in the batch replays the batch's outcomes in order on its row.
        """
        failing = {
            item.endpoint.id
            for (item, _, _, _), status in zip(outcomes, statuses, strict=True)
            if item.endpoint is not None and status != "delivered"
        }
        self._failed_endpoints |= failing
        healthy = {
            item.endpoint.id
            for item, _, _, _ in outcomes
            if item.endpoint is not None
            and item.endpoint.id not in failing
            and (
                item.endpoint.failing_since is not None
                or item.endpoint.id in self._failed_endpoints
            )
        }
        if healthy:
            await connection.execute(
                update(_ENDPOINTS)
                .where(_ENDPOINTS.c.id.in_(healthy), _ENDPOINTS.c.failing_since.is_not(None))
                .values(failing_since=None)
            )
        if not failing:
            return
        health = {
            endpoint_id: _EndpointHealth(failing_since)
            for endpoint_id, failing_since in await connection.execute(
                select(_ENDPOINTS.c.id, _ENDPOINTS.c.failing_since).where(
                    _ENDPOINTS.c.id.in_(failing)
                )
            )
        }
        for (item, _, sent, at), status in zip(outcomes, statuses, strict=True):
            if item.endpoint is not None and item.endpoint.id in health:
                health[item.endpoint.id].update(status, disable=sent.disable_endpoint, now=at)
        for endpoint_id, state in health.items():
            values: dict[str, Any] = {"failing_since": state.failing_since}
            if state.disabled_reason is not None:
                self.disabled_endpoints.add(endpoint_id)
                values.update(
                    enabled=False, disabled_reason=state.disabled_reason, updated_at=state.at
                )
            await connection.execute(
                update(_ENDPOINTS).where(_ENDPOINTS.c.id == endpoint_id).values(**values)
            )


async def _transmit(
    resources: Resources,
    prepared: _Prepared,
    connection: MailerConnection,
    sender: WebhookSender,
) -> _Sent:
    if prepared.subscriber is not None:
        status, code, detail = await _send_email(resources, prepared, connection)
        permanent = status == "failed" and code is not None and 500 <= code < 600
        return _Sent(status, code, detail, permanent_recipient=permanent)
    assert prepared.endpoint is not None
    status, code, detail, retry_after = await _send_webhook(resources, prepared, sender)
    return _Sent(status, code, detail, retry_after, disable_endpoint=status == "disabled")


def _outcome(
    prepared: _Prepared,
    started: _Started,
    sent: _Sent,
    *,
    at: datetime,
    max_attempts: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The delivery and attempt columns an outcome sets, as bulk UPDATE parameters."""
    now = started.at
    row: dict[str, Any] = {"b_id": prepared.delivery.id, "lease_owner": None, "lease_until": None}
    attempt: dict[str, Any] = {
        "b_delivery": prepared.delivery.id,
        "b_number": prepared.number,
        "finished_at": at,
        "code": sent.code,
        "response": sent.detail[:1024],
    }
    if sent.status == "delivered":
        row.update(status="delivered", delivered_at=at, last_error=None)
        attempt["outcome"] = "delivered"
    elif (
        sent.status == "retry"
        and (delay := _next_delay(prepared.number, max_attempts, sent.retry_after)) is not None
    ):
        row.update(status="retry_wait", next_attempt_at=now + delay, last_error=sent.detail)
        attempt["outcome"] = "retry"
    else:
        row.update(status="failed", last_error=sent.detail)
        attempt["outcome"] = "disabled" if sent.disable_endpoint else "failed"
    return row, attempt


def _next_delay(
    attempts: int, max_attempts: int, retry_after: timedelta | None
) -> timedelta | None:
    if attempts >= max_attempts:
        return None
    return retry_delay(attempts, retry_after=retry_after, rng=random.Random())


@dataclass(slots=True)
class _EndpointHealth:
    """An endpoint's failure run, replayed over a batch of outcomes (WH-13)."""

    failing_since: datetime | None
    disabled_reason: str | None = None
    at: datetime | None = None

    def update(self, status: str, *, disable: bool, now: datetime) -> None:
        if status == "delivered":
            self.failing_since = None
            return
        if self.failing_since is None:
            self.failing_since = now
        expired = should_disable(status="retry", failing_since=self.failing_since, now=now)
        if disable or expired:
            self.disabled_reason = "410 Gone" if disable else "failing for 5 days"
            self.at = now


def _links(resources: Resources, subscription_id: int) -> tuple[str, str]:
    base = resources.settings.public_base_url
    return (
        subscription_link(resources.secret_key, "unsubscribe", subscription_id, base_url=base),
        subscription_link(resources.secret_key, "preferences", subscription_id, base_url=base),
    )


async def _send_email(
    resources: Resources, prepared: _Prepared, connection: MailerConnection
) -> tuple[str, int | None, str]:
    settings = resources.settings
    assert prepared.subscriber is not None
    unsubscribe_url, preferences_url = _links(resources, prepared.subscription.id)
    rendered = render_email(
        prepared.digest,
        subject_prefix=settings.delivery.subject_prefix,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        tz=prepared.subscription.timezone,
    )
    domain = settings.delivery.list_id
    message = build_message(
        rendered,
        sender=settings.smtp.sender,
        to=prepared.subscriber.email,
        message_id=f"<{prepared.delivery.message_id}@{domain}>",
        list_id=f"dealwatch digest <{domain}>",
        unsubscribe_url=unsubscribe_url,
        date=prepared.delivery.created_at,
    )
    outcome = await connection.send(message)
    status = {"sent": "delivered", "retry": "retry", "permanent": "failed"}[outcome.status]
    return status, outcome.code, outcome.message


async def _send_webhook(
    resources: Resources, prepared: _Prepared, sender: WebhookSender
) -> tuple[str, int | None, str, timedelta | None]:
    assert prepared.endpoint is not None
    now = resources.clock()
    digest = prepared.digest
    payload: dict[str, Any]
    if prepared.delivery.event_type == "match.created" and digest.sections:
        section = digest.sections[0]
        payload = webhook_payload(
            "match.created",
            event_time=prepared.delivery.created_at,
            sequence=prepared.delivery.id,
            subscription_id=str(prepared.subscription.id),
            entry=section.entries[0],
            rule_id=section.rule_id,
            rule_name=section.rule_name,
        )
        event = "match.created"
    else:
        payload = webhook_payload(
            "digest.published",
            event_time=prepared.delivery.created_at,
            sequence=prepared.delivery.id,
            subscription_id=str(prepared.subscription.id),
            digest=digest,
        )
        event = "digest.published"
    secrets = active_secrets(prepared.endpoint.secrets, box=resources.secret_box, now=now)
    outcome = await sender.send(
        prepared.endpoint.url,
        msg_id=prepared.delivery.message_id,
        event_type=event,
        payload=payload,
        secrets=secrets,
        timestamp=now,
    )
    return outcome.status, outcome.http_status, outcome.response_excerpt, outcome.retry_after


async def load_digest(session: AsyncSession, delivery: Delivery, *, limit: int) -> Digest:
    """Rebuild a delivery's digest from its notifications: the same content on every retry."""
    return (await load_digests(session, [delivery], limit=limit))[delivery.id]


async def load_digests(
    session: AsyncSession, deliveries: Sequence[Delivery], *, limit: int
) -> dict[int, Digest]:
    """Rebuild several deliveries' digests in two queries, keyed by delivery id."""
    if not deliveries:
        return {}
    rows = (
        await session.execute(
            select(Notification, Article, Match, WatchRule, Source)
            .join(Article, Article.id == Notification.article_id)
            .join(
                Match,
                (Match.article_id == Notification.article_id)
                & (Match.rule_id == Notification.rule_id),
            )
            .join(WatchRule, WatchRule.id == Notification.rule_id)
            .join(Source, Source.id == Article.source_id)
            .where(Notification.delivery_id.in_([d.id for d in deliveries]))
            .order_by(Notification.id)
        )
    ).all()
    story_ids = {article.story_id for _, article, _, _, _ in rows if article.story_id}
    outlets: dict[str, list[Outlet]] = {}
    if story_ids:
        story_rows = await session.execute(
            select(Article.story_id, Source.name, Source.tier)
            .join(Source, Source.id == Article.source_id)
            .where(Article.story_id.in_(story_ids))
        )
        for story_id, name, tier in story_rows.all():
            outlets.setdefault(str(story_id), []).append(Outlet(name=name, tier=tier))
    candidates: dict[int | None, list[DigestCandidate]] = {}
    for notification, article, match, rule, source in rows:
        candidates.setdefault(notification.delivery_id, []).append(
            DigestCandidate(
                match=alerts.Match(
                    rule_id=match.rule_id,
                    article_id=str(article.id),
                    score=match.score,
                    terms=tuple(match.terms),
                    snippet=match.snippet,
                    highlights=tuple((int(a), int(b)) for a, b in match.highlights),
                ),
                article=alerts.Article(
                    id=str(article.id),
                    title=article.title,
                    body=article.text or article.summary,
                    url=article.url,
                    source=source.id,
                    domain=urlsplit(article.url).hostname or "",
                    tier=source.tier,
                    lang=article.language or "",
                    published=article.published_at,
                ),
                story_id=str(article.story_id) if article.story_id else "",
                rule_name=rule.name,
                source_name=source.name,
            )
        )
    digests: dict[int, Digest] = {}
    for delivery in deliveries:
        mine = candidates.get(delivery.id, [])
        stories = {candidate.story_id for candidate in mine if candidate.story_id}
        window_end = delivery.window_end or delivery.created_at
        window_start = delivery.window_start or window_end
        digests[delivery.id] = build_digest(
            subscription_id=str(delivery.subscription_id),
            period_key=delivery.period_key,
            window_start=window_start,
            window_end=window_end,
            candidates=mine,
            story_outlets={key: outlets[key] for key in stories if key in outlets},
            limits=DigestLimits(total=limit),
        )
    return digests
