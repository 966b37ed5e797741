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
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

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
from service.settings import DeliverySettings
from service.storage.bulk import BulkStatement
from service.storage.claims import claim_due
from service.storage.deliveries import active_secrets

log = logging.getLogger(__name__)

_PLAN_CHUNK = 250
_DELIVERIES = cast(Table, Delivery.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_NOTIFICATIONS = cast(Table, Notification.__table__)
_ARTICLES = cast(Table, Article.__table__)
_MATCHES = cast(Table, Match.__table__)
_RULES = cast(Table, WatchRule.__table__)
_SOURCES = cast(Table, Source.__table__)


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


@dataclass(frozen=True, slots=True)
class _DueSubscription:
    """The columns planning reads of a leased subscription."""

    id: int
    subscriber_id: int | None
    cadence: str
    send_time: str
    weekday: int | None
    timezone: str
    heartbeat: bool
    next_due_at: datetime | None
    last_period_key: str | None
    lease_owner: str | None


@dataclass(frozen=True, slots=True)
class _Moved:
    """Where planning moves a subscription: its next due time and last planned period."""

    next_due_at: datetime | None
    last_period_key: str | None


async def _plan_chunk(
    session: AsyncSession, chunk: Sequence[int], *, now: datetime, owner: str
) -> int:
    """Plan a chunk of leased subscriptions with a handful of statements in all."""
    columns = [getattr(_SUBSCRIPTIONS.c, name) for name in _DueSubscription.__slots__]
    rows = await session.execute(select(*columns).where(_SUBSCRIPTIONS.c.id.in_(chunk)))
    by_id = {row.id: _DueSubscription(*row) for row in rows}
    subs = [
        sub
        for sub in (by_id.get(subscription_id) for subscription_id in chunk)
        if sub is not None and sub.lease_owner == owner and sub.next_due_at is not None
    ]
    if not subs:
        return 0
    pending: dict[int, list[int]] = {}
    pending_rows = await session.execute(
        select(_NOTIFICATIONS.c.subscription_id, _NOTIFICATIONS.c.id)
        .where(
            _NOTIFICATIONS.c.subscription_id.in_([sub.id for sub in subs]),
            _NOTIFICATIONS.c.delivery_id.is_(None),
        )
        .order_by(_NOTIFICATIONS.c.id)
    )
    for subscription_id, notification_id in pending_rows.all():
        pending.setdefault(subscription_id, []).append(notification_id)
    plans: list[_Planned] = []
    moves: list[dict[str, Any]] = []
    for sub in subs:
        planned, moved = _plan_subscription(sub, pending.get(sub.id, []), now=now)
        plans += planned
        moves.append(
            {
                "b_id": sub.id,
                "next_due_at": moved.next_due_at,
                "last_period_key": moved.last_period_key,
                "lease_owner": None,
                "lease_until": None,
            }
        )
    created = await _create_deliveries(session, plans, now=now)
    # One executemany UPDATE moves every subscription of the chunk and releases its lease.
    await _MOVE_SUBSCRIPTION.execute_async(session, moves)
    return created


def _plan_subscription(
    sub: _DueSubscription, pending: Sequence[int], *, now: datetime
) -> tuple[list[_Planned], _Moved]:
    """Decide one subscription's deliveries and its next due time (no I/O)."""
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
        return plans, _Moved(None, sub.last_period_key)
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
    if period is None:
        return plans, _Moved(sub.next_due_at, sub.last_period_key)
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
    return plans, _Moved(period.next_due, period.period_key)


# Planning's per-row statements, compiled once (see service.storage.bulk).
_MOVE_SUBSCRIPTION = BulkStatement(
    update(_SUBSCRIPTIONS).where(_SUBSCRIPTIONS.c.id == bindparam("b_id")),
    ["b_id", "next_due_at", "last_period_key", "lease_owner", "lease_until"],
)
_CREATE_DELIVERY = BulkStatement(
    insert(_DELIVERIES),
    [
        "subscription_id",
        "channel",
        "event_type",
        "period_key",
        "window_start",
        "window_end",
        "status",
        "attempts",
        "next_attempt_at",
        "message_id",
        "item_count",
        "possible_duplicate",
        "created_at",
    ],
)
_ATTACH_PENDING = BulkStatement(
    update(_NOTIFICATIONS)
    .where(
        _NOTIFICATIONS.c.subscription_id == bindparam("sub"),
        _NOTIFICATIONS.c.delivery_id.is_(None),
    )
    .values(delivery_id=bindparam("delivery")),
    ["sub", "delivery"],
)
_ATTACH_ONE = BulkStatement(
    update(_NOTIFICATIONS)
    .where(_NOTIFICATIONS.c.id == bindparam("one"), _NOTIFICATIONS.c.delivery_id.is_(None))
    .values(delivery_id=bindparam("delivery")),
    ["one", "delivery"],
)
_NAME_DELIVERY = BulkStatement(
    update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id")),
    ["b_id", "message_id", "item_count"],
)


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
    await _CREATE_DELIVERY.execute_async(
        session,
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
    # The ids by the unique key, in one query: an INSERT … RETURNING that must keep the
    # parameters' order is sent one row at a time by SQLAlchemy on some backends.
    keyed = {
        (subscription_id, period_key): delivery_id
        for delivery_id, subscription_id, period_key in await session.execute(
            select(_DELIVERIES.c.id, _DELIVERIES.c.subscription_id, _DELIVERIES.c.period_key).where(
                _DELIVERIES.c.subscription_id.in_({plan.subscription_id for plan in fresh}),
                _DELIVERIES.c.period_key.in_({plan.period_key for plan in fresh}),
            )
        )
    }
    delivery_ids = [keyed[(plan.subscription_id, plan.period_key)] for plan in fresh]
    whole = [
        {"sub": plan.subscription_id, "delivery": delivery_id}
        for plan, delivery_id in zip(fresh, delivery_ids, strict=True)
        if plan.notification_id is None
    ]
    await _ATTACH_PENDING.execute_async(session, whole)
    single = [
        {"one": plan.notification_id, "delivery": delivery_id}
        for plan, delivery_id in zip(fresh, delivery_ids, strict=True)
        if plan.notification_id is not None
    ]
    await _ATTACH_ONE.execute_async(session, single)
    counts = dict(
        (
            await session.execute(
                select(Notification.delivery_id, func.count())
                .where(Notification.delivery_id.in_(delivery_ids))
                .group_by(Notification.delivery_id)
            )
        ).all()
    )
    await _NAME_DELIVERY.execute_async(
        session,
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
    # together before the group's network calls. The job is pipelined one group deep: the
    # next group's attempt rows commit while the current group is on the wire, so the
    # database round trip hides behind the network. Never further ahead: a delivery started
    # but caught unsent by a crash is flagged as a possible duplicate on its retry, so at
    # most two groups (the one sending and the one started next) can be flagged unsent.
    lanes = max(1, settings.concurrency)
    writer = _Writer(resources)

    async def lane(connection: MailerConnection, item: _Prepared, started: _Started) -> None:
        if item.endpoint is not None and item.endpoint.id in writer.disabled_endpoints:
            # Started while the group before it was on the wire, whose answer disabled the
            # endpoint: nothing is sent, and the attempt is closed as cancelled.
            writer.add(item, started, _CANCELLED, at=resources.clock())
            return
        result = await _transmit(resources, item, connection, sender)
        if result.disable_endpoint and item.endpoint is not None:
            writer.disabled_endpoints.add(item.endpoint.id)
        writer.add(item, started, result, at=resources.clock())

    chunks = [ids[start : start + _PREPARE_CHUNK] for start in range(0, len(ids), _PREPARE_CHUNK)]

    async def groups() -> AsyncGenerator[list[_Prepared]]:
        upcoming = asyncio.create_task(_prepare_chunk(resources, chunks[0], writer))
        try:
            for index in range(len(chunks)):
                prepared = await upcoming
                if index + 1 < len(chunks):
                    upcoming = asyncio.create_task(
                        _prepare_chunk(resources, chunks[index + 1], writer)
                    )
                for group in _groups(prepared, lanes, writer):
                    yield group
        finally:
            await _settle(upcoming)

    source = groups()

    async def start_next() -> tuple[list[_Prepared], list[_Started]] | None:
        group = await anext(source, None)
        if group is None:
            return None
        return group, await writer.start(group)

    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(mailer.connection()) for _ in range(lanes)]
        writing = asyncio.create_task(writer.run())
        ahead = asyncio.create_task(start_next())
        try:
            while (current := await ahead) is not None:
                group, started = current
                ahead = asyncio.create_task(start_next())
                await asyncio.gather(*map(lane, connections, group, started))
        finally:
            await _settle(ahead)
            await source.aclose()
            writer.close()
            await writing
    outcomes = writer.outcomes
    return _SendTotals(
        delivered=outcomes.count("delivered"),
        retrying=outcomes.count("retry"),
        failed=outcomes.count("failed"),
        claimed=len(ids),
    )


async def _settle(task: asyncio.Task[Any]) -> None:
    """Cancel a read-ahead task and wait for it to end, retrieving its exception if any."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        # Retrieved so a failed read-ahead is not reported a second time.
        task.exception()


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
class _DeliveryRow:
    """The columns sending reads of a claimed delivery (a :class:`DeliveryWindow`)."""

    id: int
    subscription_id: int
    channel: str
    event_type: str
    period_key: str
    window_start: datetime | None
    window_end: datetime | None
    created_at: datetime
    message_id: str
    attempts: int
    lease_owner: str | None


@dataclass(frozen=True, slots=True)
class _RecipientRow:
    """A delivery's subscription with its subscriber or endpoint, from one outer join."""

    subscription_id: int | None
    enabled: bool | None
    timezone: str | None
    subscriber_id: int | None
    email: str | None
    subscriber_status: str | None
    endpoint_id: int | None
    url: str | None
    secrets: list[dict[str, Any]] | None
    endpoint_enabled: bool | None
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class _Subscription:
    id: int
    timezone: str


@dataclass(frozen=True, slots=True)
class _Subscriber:
    id: int
    email: str


@dataclass(frozen=True, slots=True)
class _Endpoint:
    id: int
    url: str
    secrets: list[dict[str, Any]]
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class _Prepared:
    delivery: _DeliveryRow
    subscription: _Subscription
    subscriber: _Subscriber | None
    endpoint: _Endpoint | None
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


#: The outcome of an attempt started for an endpoint that was disabled before it was sent.
_CANCELLED = _Sent("cancelled", None, "the endpoint was disabled before this attempt was sent")

_DELIVERY_COLUMNS = [getattr(_DELIVERIES.c, name) for name in _DeliveryRow.__slots__]
_RECIPIENT_COLUMNS = [
    _SUBSCRIPTIONS.c.id,
    _SUBSCRIPTIONS.c.enabled,
    _SUBSCRIPTIONS.c.timezone,
    _SUBSCRIBERS.c.id,
    _SUBSCRIBERS.c.email,
    _SUBSCRIBERS.c.status,
    _ENDPOINTS.c.id,
    _ENDPOINTS.c.url,
    _ENDPOINTS.c.secrets,
    _ENDPOINTS.c.enabled,
    _ENDPOINTS.c.failing_since,
]


async def _prepare_chunk(
    resources: Resources, ids: Sequence[int], writer: _Writer
) -> list[_Prepared]:
    """Read a chunk of claimed deliveries and rebuild their digests; writes nothing.

    Plain columns, not ORM objects: nothing here is changed through the session, and
    building identity-mapped objects cost more than the rest of the read.
    """
    prepared: list[_Prepared] = []
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(*_DELIVERY_COLUMNS, *_RECIPIENT_COLUMNS)
            .select_from(_DELIVERIES)
            .outerjoin(_SUBSCRIPTIONS, _SUBSCRIPTIONS.c.id == _DELIVERIES.c.subscription_id)
            .outerjoin(_SUBSCRIBERS, _SUBSCRIBERS.c.id == _SUBSCRIPTIONS.c.subscriber_id)
            .outerjoin(_ENDPOINTS, _ENDPOINTS.c.id == _SUBSCRIPTIONS.c.endpoint_id)
            .where(_DELIVERIES.c.id.in_(ids))
        )
        width = len(_DELIVERY_COLUMNS)
        loaded = {row[0]: (_DeliveryRow(*row[:width]), _RecipientRow(*row[width:])) for row in rows}
        mine = [
            loaded[delivery_id]
            for delivery_id in ids
            if delivery_id in loaded and loaded[delivery_id][0].lease_owner == resources.owner
        ]
        writer.outcomes += ["skipped"] * (len(ids) - len(mine))
        digests = await load_digests(
            session,
            [delivery for delivery, _ in mine],
            limit=resources.settings.delivery.digest_item_limit,
        )
        retried = [delivery.id for delivery, _ in mine if delivery.attempts]
        unfinished: dict[int, list[int]] = {}
        if retried:
            for delivery_id, attempt_id in await session.execute(
                select(_ATTEMPTS.c.delivery_id, _ATTEMPTS.c.id).where(
                    _ATTEMPTS.c.delivery_id.in_(retried),
                    _ATTEMPTS.c.outcome == "started",
                )
            ):
                unfinished.setdefault(delivery_id, []).append(attempt_id)
        await session.commit()
    cancelled: list[int] = []
    for delivery, recipient in mine:
        gone = (
            recipient.subscription_id is None
            or not recipient.enabled
            or (recipient.subscriber_id is not None and recipient.subscriber_status != "active")
            or (recipient.endpoint_id is not None and not recipient.endpoint_enabled)
        )
        if gone:
            cancelled.append(delivery.id)
            continue
        assert recipient.subscription_id is not None
        assert recipient.timezone is not None
        subscriber = endpoint = None
        if recipient.subscriber_id is not None:
            assert recipient.email is not None
            subscriber = _Subscriber(recipient.subscriber_id, recipient.email)
        if recipient.endpoint_id is not None:
            assert recipient.url is not None
            endpoint = _Endpoint(
                recipient.endpoint_id,
                recipient.url,
                recipient.secrets or [],
                recipient.failing_since,
            )
        prepared.append(
            _Prepared(
                delivery,
                _Subscription(recipient.subscription_id, recipient.timezone),
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

# The writer's per-message statements, compiled once (see service.storage.bulk).
_BY_ID = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
_COUNT_ATTEMPT = BulkStatement(_BY_ID, ["b_id", "attempts"])
_START_ATTEMPT = BulkStatement(
    insert(_ATTEMPTS), ["delivery_id", "number", "started_at", "outcome"]
)
_FINISH_ATTEMPT = BulkStatement(
    update(_ATTEMPTS).where(
        _ATTEMPTS.c.delivery_id == bindparam("b_delivery"),
        _ATTEMPTS.c.number == bindparam("b_number"),
    ),
    ["b_delivery", "b_number", "finished_at", "code", "response", "outcome"],
)
_CLOSING: dict[tuple[str, ...], BulkStatement] = {}


def _closing(keys: tuple[str, ...]) -> BulkStatement:
    """The UPDATE that records one kind of outcome on its deliveries (a few kinds in all)."""
    statement = _CLOSING.get(keys)
    if statement is None:
        statement = _CLOSING[keys] = BulkStatement(_BY_ID, keys)
    return statement


#: How long outcomes collect before they are written together (group commit).
_RECORD_DELAY = 0.05


class _Writer:
    """The send job's only writer: starts attempts and records outcomes, in group commits.

    A start (a group's attempt rows and attempt counts, committed before its network calls)
    is written as soon as it is asked for, ahead of anything else, since a group waits for
    it. Outcomes collect for at most ``_RECORD_DELAY`` and are then written together, while
    the next groups are on the wire; a crash leaves only the attempts in flight or finished
    in that window unfinished, and those are flagged as possible duplicates on their retry.

    The statements run on a synchronous connection in a thread of the writer's own, one
    thread hop per transaction: the event loop that drives the sockets never compiles or
    executes the job's SQL, and on SQLite each statement no longer costs a hop of its own.
    """

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._retries = _RetryPolicy.from_settings(resources.settings.delivery)
        self._outcomes: list[_Outcome] = []
        self._starts: list[tuple[Sequence[_Prepared], asyncio.Future[list[_Started]]]] = []
        self._cancelled: list[int] = []
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._due = False
        # Endpoints this job has seen fail: only those (and endpoints already failing when
        # their chunk was read) can need ``failing_since`` cleared after a success. Only
        # the writer's thread touches it.
        self._failed_endpoints: set[int] = set()
        self._closed = False
        self._failed: BaseException | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-writer")
        self._connection: Connection | None = None
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
        try:
            await self._run()
        except BaseException as exc:
            self._failed = exc
            for _, future in self._starts:
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
            self._thread.shutdown(wait=False)

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

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
                        if not future.done():
                            future.set_exception(exc)
                    raise
                for (_, future), started in zip(starts, results, strict=True):
                    # A start whose waiter was cancelled (the job is stopping) stays
                    # committed: its deliveries are retried, flagged, after the lease.
                    if not future.done():
                        future.set_result(started)
            elif self._outcomes and (self._due or self._closed):
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self._due = False
                outcomes, self._outcomes = self._outcomes, []
                statuses, disabled = await self._write(self._record, outcomes, ())
                self.disabled_endpoints |= disabled
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
        step: Callable[[Connection, Sequence[Any]], _T],
        items: Sequence[Any],
        cancelled: Sequence[int],
    ) -> _T:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._transaction, step, items, cancelled
        )

    def _transaction(
        self,
        step: Callable[[Connection, Sequence[Any]], _T],
        items: Sequence[Any],
        cancelled: Sequence[int],
    ) -> _T:
        """Run in the writer's thread: one transaction on the connection the job holds."""
        if self._connection is None:
            self._connection = self._resources.sync_engine.connect()
        connection = self._connection
        with connection.begin():
            if cancelled:
                connection.execute(
                    update(_DELIVERIES)
                    .where(_DELIVERIES.c.id.in_(cancelled))
                    .values(status="cancelled", lease_owner=None, lease_until=None)
                )
            return step(connection, items)

    def _start_groups(
        self, connection: Connection, starts: Sequence[Sequence[_Prepared]]
    ) -> list[list[_Started]]:
        items = [item for group in starts for item in group]
        if not items:
            return []
        now = self._resources.clock()
        abandoned = [attempt for item in items for attempt in item.abandoned]
        if abandoned:
            # A worker died between committing these attempts and recording their outcome:
            # the message may have reached the receiver, who dedupes on the same id.
            connection.execute(
                update(_ATTEMPTS)
                .where(_ATTEMPTS.c.id.in_(abandoned))
                .values(
                    outcome="abandoned",
                    finished_at=now,
                    error="the worker stopped before recording the outcome",
                )
            )
            connection.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id.in_([item.delivery.id for item in items if item.abandoned]))
                .values(possible_duplicate=True)
            )
        _COUNT_ATTEMPT.execute(
            connection, [{"b_id": item.delivery.id, "attempts": item.number} for item in items]
        )
        _START_ATTEMPT.execute(
            connection,
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

    def _record(
        self, connection: Connection, outcomes: Sequence[_Outcome]
    ) -> tuple[list[str], set[int]]:
        """Write a batch of outcomes: a few executemany UPDATEs by primary key.

        Returns the deliveries' new statuses and the endpoints this batch disabled.
        """
        retries = self._retries
        rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        attempts: list[dict[str, Any]] = []
        statuses: list[str] = []
        for item, started, sent, at in outcomes:
            row, attempt = _outcome(item, started, sent, at=at, retries=retries)
            rows.setdefault(tuple(row), []).append(row)
            attempts.append(attempt)
            statuses.append(row["status"])
        # executemany needs one column set per statement: one UPDATE per kind of outcome.
        for keys, batch in rows.items():
            _closing(keys).execute(connection, batch)
        _FINISH_ATTEMPT.execute(connection, attempts)
        disabled = self._record_endpoints(connection, outcomes, statuses)
        for item, _, sent, at in outcomes:
            if sent.permanent_recipient and item.subscriber is not None:
                connection.execute(
                    update(_SUBSCRIBERS)
                    .where(_SUBSCRIBERS.c.id == item.subscriber.id)
                    .values(
                        status="suppressed",
                        status_reason=f"SMTP {sent.code}: {sent.detail[:200]}",
                        updated_at=at,
                    )
                )
        return statuses, disabled

    def _record_endpoints(
        self, connection: Connection, outcomes: Sequence[_Outcome], statuses: Sequence[str]
    ) -> set[int]:
        """Endpoint health: successes clear ``failing_since``, failures start or extend it.

        A batch of successes only touches endpoints that may be failing; an endpoint with a
        failure in the batch replays the batch's outcomes in order on its row. An attempt
        cancelled unsent says nothing about the endpoint. Returns the endpoints disabled.
        """
        failing = {
            item.endpoint.id
            for (item, _, _, _), status in zip(outcomes, statuses, strict=True)
            if item.endpoint is not None and status not in ("delivered", "cancelled")
        }
        self._failed_endpoints |= failing
        healthy = {
            item.endpoint.id
            for (item, _, _, _), status in zip(outcomes, statuses, strict=True)
            if item.endpoint is not None
            and status == "delivered"
            and item.endpoint.id not in failing
            and (
                item.endpoint.failing_since is not None
                or item.endpoint.id in self._failed_endpoints
            )
        }
        if healthy:
            connection.execute(
                update(_ENDPOINTS)
                .where(_ENDPOINTS.c.id.in_(healthy), _ENDPOINTS.c.failing_since.is_not(None))
                .values(failing_since=None)
            )
        disabled: set[int] = set()
        if not failing:
            return disabled
        health = {
            endpoint_id: _EndpointHealth(failing_since)
            for endpoint_id, failing_since in connection.execute(
                select(_ENDPOINTS.c.id, _ENDPOINTS.c.failing_since).where(
                    _ENDPOINTS.c.id.in_(failing)
                )
            )
        }
        for (item, _, sent, at), status in zip(outcomes, statuses, strict=True):
            if item.endpoint is not None and item.endpoint.id in health and status != "cancelled":
                health[item.endpoint.id].update(status, disable=sent.disable_endpoint, now=at)
        for endpoint_id, state in health.items():
            values: dict[str, Any] = {"failing_since": state.failing_since}
            if state.disabled_reason is not None:
                disabled.add(endpoint_id)
                values.update(
                    enabled=False, disabled_reason=state.disabled_reason, updated_at=state.at
                )
            connection.execute(
                update(_ENDPOINTS).where(_ENDPOINTS.c.id == endpoint_id).values(**values)
            )
        return disabled


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
    retries: _RetryPolicy,
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
    elif sent.status == "cancelled":
        row.update(status="cancelled", last_error=sent.detail)
        attempt["outcome"] = "cancelled"
    elif (
        sent.status == "retry"
        and (delay := retries.next_delay(prepared.number, sent.retry_after)) is not None
    ):
        row.update(status="retry_wait", next_attempt_at=now + delay, last_error=sent.detail)
        attempt["outcome"] = "retry"
    else:
        row.update(status="failed", last_error=sent.detail)
        attempt["outcome"] = "disabled" if sent.disable_endpoint else "failed"
    return row, attempt


@dataclass(frozen=True, slots=True)
class _RetryPolicy:
    """When a retryable failure is tried again: ``delivery.max_attempts``,
    ``delivery.retry_schedule_seconds`` and ``delivery.retry_jitter``, read once per job."""

    max_attempts: int
    schedule: tuple[timedelta, ...]
    jitter: float

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> _RetryPolicy:
        return cls(settings.max_attempts, settings.retry_schedule, settings.retry_jitter)

    def next_delay(self, attempts: int, retry_after: timedelta | None) -> timedelta | None:
        """The wait after ``attempts`` failed attempts, or ``None`` when retries are spent."""
        if attempts >= self.max_attempts:
            return None
        return retry_delay(
            attempts,
            retry_after=retry_after,
            rng=random.Random(),
            schedule=self.schedule,
            jitter=self.jitter,
        )


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


class DeliveryWindow(Protocol):
    """What rebuilding a digest needs of a delivery: an ORM row or a plain one."""

    @property
    def id(self) -> int: ...
    @property
    def subscription_id(self) -> int: ...
    @property
    def period_key(self) -> str: ...
    @property
    def window_start(self) -> datetime | None: ...
    @property
    def window_end(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


async def load_digest(session: AsyncSession, delivery: DeliveryWindow, *, limit: int) -> Digest:
    """Rebuild a delivery's digest from its notifications: the same content on every retry."""
    return (await load_digests(session, [delivery], limit=limit))[delivery.id]


async def load_digests(
    session: AsyncSession, deliveries: Sequence[DeliveryWindow], *, limit: int
) -> dict[int, Digest]:
    """Rebuild several deliveries' digests in two queries, keyed by delivery id."""
    if not deliveries:
        return {}
    notifications, articles, matches, sources = _NOTIFICATIONS, _ARTICLES, _MATCHES, _SOURCES
    rows = (
        await session.execute(
            select(
                notifications.c.delivery_id,
                articles.c.id,
                articles.c.title,
                articles.c.text,
                articles.c.summary,
                articles.c.url,
                articles.c.language,
                articles.c.published_at,
                articles.c.story_id,
                matches.c.rule_id,
                matches.c.score,
                matches.c.terms,
                matches.c.snippet,
                matches.c.highlights,
                _RULES.c.name,
                sources.c.id,
                sources.c.tier,
                sources.c.name,
            )
            .select_from(notifications)
            .join(articles, articles.c.id == notifications.c.article_id)
            .join(
                matches,
                (matches.c.article_id == notifications.c.article_id)
                & (matches.c.rule_id == notifications.c.rule_id),
            )
            .join(_RULES, _RULES.c.id == notifications.c.rule_id)
            .join(sources, sources.c.id == articles.c.source_id)
            .where(notifications.c.delivery_id.in_([d.id for d in deliveries]))
            .order_by(notifications.c.id)
        )
    ).all()
    story_ids = {row[8] for row in rows if row[8]}
    outlets: dict[str, list[Outlet]] = {}
    if story_ids:
        story_rows = await session.execute(
            select(articles.c.story_id, sources.c.name, sources.c.tier)
            .join(sources, sources.c.id == articles.c.source_id)
            .where(articles.c.story_id.in_(story_ids))
        )
        for story_id, name, tier in story_rows.all():
            outlets.setdefault(str(story_id), []).append(Outlet(name=name, tier=tier))
    candidates: dict[int | None, list[DigestCandidate]] = {}
    for (
        delivery_id,
        article_id,
        title,
        text,
        summary,
        url,
        language,
        published_at,
        story_id,
        rule_id,
        score,
        terms,
        snippet,
        highlights,
        rule_name,
        source_id,
        tier,
        source_name,
    ) in rows:
        candidates.setdefault(delivery_id, []).append(
            DigestCandidate(
                match=alerts.Match(
                    rule_id=rule_id,
                    article_id=str(article_id),
                    score=score,
                    terms=tuple(terms),
                    snippet=snippet,
                    highlights=tuple((int(a), int(b)) for a, b in highlights),
                ),
                article=alerts.Article(
                    id=str(article_id),
                    title=title,
                    body=text or summary,
                    url=url,
                    source=source_id,
                    domain=urlsplit(url).hostname or "",
                    tier=tier,
                    lang=language or "",
                    published=published_at,
                ),
                story_id=str(story_id) if story_id else "",
                rule_name=rule_name,
                source_name=source_name,
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
