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
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
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
from service.notify.email import Mailer, MailerConnection, SmtpOptions, build_message
from service.notify.tokens import subscription_link
from service.notify.webhook import WebhookSender, retry_delay, should_disable
from service.runtime import Resources
from service.safety import check_url
from service.storage.claims import claim_due
from service.storage.deliveries import active_secrets

log = logging.getLogger(__name__)

_PLAN_CHUNK = 50


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    planned: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def smtp_options(resources: Resources) -> SmtpOptions:
    smtp = resources.settings.smtp
    return SmtpOptions(
        host=smtp.host,
        port=smtp.port,
        tls=smtp.tls,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        timeout=smtp.timeout_seconds,
        pace_seconds=smtp.pace_seconds,
    )


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
            # One query loads the chunk; the per-subscription gets then hit the identity map.
            await session.execute(select(Subscription).where(Subscription.id.in_(chunk)))
            for subscription_id in chunk:
                created += await _plan_one(session, subscription_id, now=now, owner=resources.owner)
            await session.commit()
    return len(ids), created


async def _plan_one(
    session: AsyncSession, subscription_id: int, *, now: datetime, owner: str
) -> int:
    sub = await session.get(Subscription, subscription_id)
    if sub is None or sub.lease_owner != owner or sub.next_due_at is None:
        return 0
    channel = "email" if sub.subscriber_id is not None else "webhook"
    pending = select(func.count(), func.min(Notification.id)).where(
        Notification.subscription_id == sub.id, Notification.delivery_id.is_(None)
    )
    pending_count, first = (await session.execute(pending)).one()
    created = 0
    if sub.cadence == "immediate":
        if pending_count:
            if channel == "webhook":
                # match.created carries one match: one delivery (and webhook-id) per match.
                pending_ids = (
                    await session.execute(
                        select(Notification.id)
                        .where(
                            Notification.subscription_id == sub.id,
                            Notification.delivery_id.is_(None),
                        )
                        .order_by(Notification.id)
                    )
                ).scalars()
                for notification_id in list(pending_ids):
                    created += await _create_delivery(
                        session,
                        sub,
                        channel=channel,
                        event="match.created",
                        period_key=f"match-{notification_id}",
                        window=(None, now),
                        now=now,
                        notification_ids=[notification_id],
                    )
            else:
                created = await _create_delivery(
                    session,
                    sub,
                    channel=channel,
                    event="digest.published",
                    period_key=f"alert-{first}",
                    window=(None, now),
                    now=now,
                )
        sub.next_due_at = None
    else:
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
            if pending_count or sub.heartbeat:
                created = await _create_delivery(
                    session,
                    sub,
                    channel=channel,
                    event="digest.published",
                    period_key=period.period_key,
                    window=(period.window_start, period.window_end),
                    now=now,
                )
            sub.last_period_key = period.period_key
            sub.next_due_at = period.next_due
    sub.lease_owner = None
    sub.lease_until = None
    await session.flush()
    return created


async def _create_delivery(
    session: AsyncSession,
    sub: Subscription,
    *,
    channel: str,
    event: str,
    period_key: str,
    window: tuple[datetime | None, datetime],
    now: datetime,
    notification_ids: Sequence[int] | None = None,
) -> int:
    exists = (
        await session.execute(
            select(Delivery.id).where(
                Delivery.subscription_id == sub.id, Delivery.period_key == period_key
            )
        )
    ).scalar_one_or_none()
    if exists is not None:
        # A replayed or repeated period (DST, a second process): the unique key absorbs it.
        return 0
    delivery = Delivery(
        subscription_id=sub.id,
        channel=channel,
        event_type=event,
        period_key=period_key,
        window_start=window[0],
        window_end=window[1],
        status="pending",
        attempts=0,
        next_attempt_at=now,
        message_id=f"pending-{sub.id}-{period_key}",
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    delivery.message_id = f"msg_{delivery.id}"
    attach = [Notification.subscription_id == sub.id, Notification.delivery_id.is_(None)]
    if notification_ids is not None:
        attach.append(Notification.id.in_(notification_ids))
    result = await session.execute(
        update(Notification)
        .where(*attach)
        .values(delivery_id=delivery.id)
        .execution_options(synchronize_session=False)
    )
    delivery.item_count = int(result.rowcount)  # type: ignore[attr-defined]
    await session.flush()
    return 1


@dataclass(frozen=True, slots=True)
class _SendTotals:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    claimed: int = 0


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
    mailer = Mailer(smtp_options(resources))
    sender = WebhookSender(
        resources.http,
        timeout=resources.settings.http.timeout_seconds,
        url_guard=partial(check_url, allow_loopback=resources.settings.http.allow_loopback),
    )
    # ``concurrency`` lanes send side by side, each e-mail lane over its own SMTP connection
    # (opened on first use, reused for the whole batch); the attempt rows of a chunk commit
    # together before any of its network calls.
    lanes = max(1, settings.concurrency)
    outcomes: list[str] = []
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(mailer.connection()) for _ in range(lanes)]
        for start in range(0, len(ids), lanes):
            chunk = ids[start : start + lanes]
            outcomes += await _send_chunk(resources, chunk, connections, sender)
    return _SendTotals(
        delivered=outcomes.count("delivered"),
        retrying=outcomes.count("retry"),
        failed=outcomes.count("failed"),
        claimed=len(ids),
    )


@dataclass(frozen=True, slots=True)
class _Prepared:
    delivery: Delivery
    subscription: Subscription
    subscriber: Subscriber | None
    endpoint: WebhookEndpoint | None
    digest: Digest
    attempt_id: int
    number: int


@dataclass(frozen=True, slots=True)
class _Sent:
    status: str
    code: int | None
    detail: str
    retry_after: timedelta | None = None
    disable_endpoint: bool = False
    permanent_recipient: bool = False


async def _send_chunk(
    resources: Resources,
    ids: Sequence[int],
    connections: Sequence[MailerConnection],
    sender: WebhookSender,
) -> list[str]:
    now = resources.clock()
    outcomes: list[str] = []
    prepared: list[_Prepared] = []
    async with resources.sessionmaker() as session:
        # Load the chunk's rows in four queries; the gets in _prepare hit the identity map.
        deliveries = (
            (await session.execute(select(Delivery).where(Delivery.id.in_(ids)))).scalars().all()
        )
        sub_ids = {d.subscription_id for d in deliveries}
        subs = (
            (await session.execute(select(Subscription).where(Subscription.id.in_(sub_ids))))
            .scalars()
            .all()
        )
        subscriber_ids = {s.subscriber_id for s in subs if s.subscriber_id is not None}
        endpoint_ids = {s.endpoint_id for s in subs if s.endpoint_id is not None}
        if subscriber_ids:
            await session.execute(select(Subscriber).where(Subscriber.id.in_(subscriber_ids)))
        if endpoint_ids:
            await session.execute(
                select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
            )
        for delivery_id in ids:
            item = await _prepare(session, resources, delivery_id, now=now)
            if isinstance(item, str):
                outcomes.append(item)
            else:
                prepared.append(item)
        # Committed before the network calls: a crash leaves evidence of the phase reached.
        await session.commit()
    if not prepared:
        return outcomes

    async def deliver(lane: int, item: _Prepared) -> str:
        result = await _transmit(resources, item, connections[lane], sender)
        # Each outcome commits as soon as it is known, so a crash only leaves the attempts
        # still in flight unfinished (and flagged as possible duplicates on their retry).
        async with resources.sessionmaker() as session:
            final = await _record(session, resources, item, result, now=now, at=resources.clock())
            await session.commit()
        metrics.DELIVERIES.labels(item.delivery.channel, final).inc()
        log.info(
            "delivery attempted delivery_id=%s status=%s code=%s",
            item.delivery.id,
            final,
            result.code,
        )
        return {"delivered": "delivered", "retry_wait": "retry"}.get(final, "failed")

    outcomes += await asyncio.gather(*(deliver(lane, item) for lane, item in enumerate(prepared)))
    return outcomes


async def _prepare(
    session: AsyncSession, resources: Resources, delivery_id: int, *, now: datetime
) -> _Prepared | str:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.lease_owner != resources.owner:
        return "skipped"
    sub = await session.get(Subscription, delivery.subscription_id)
    subscriber = (
        await session.get(Subscriber, sub.subscriber_id)
        if sub is not None and sub.subscriber_id is not None
        else None
    )
    endpoint = (
        await session.get(WebhookEndpoint, sub.endpoint_id)
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
        delivery.status = "cancelled"
        delivery.lease_owner = delivery.lease_until = None
        return "failed"
    assert sub is not None
    digest = await load_digest(
        session, delivery, limit=resources.settings.delivery.digest_item_limit
    )
    unfinished = (
        (
            await session.execute(
                select(DeliveryAttempt).where(
                    DeliveryAttempt.delivery_id == delivery.id,
                    DeliveryAttempt.outcome == "started",
                )
            )
        ).scalars()
        if delivery.attempts
        else ()
    )
    for lost in unfinished:
        # A worker died between committing this attempt and recording its outcome: the
        # message may have reached the receiver, who dedupes on the same id (REL-06).
        lost.outcome, lost.finished_at = "abandoned", now
        lost.error = "the worker stopped before recording the outcome"
        delivery.possible_duplicate = True
    delivery.attempts += 1
    attempt = DeliveryAttempt(
        delivery_id=delivery.id, number=delivery.attempts, started_at=now, outcome="started"
    )
    session.add(attempt)
    await session.flush()
    return _Prepared(delivery, sub, subscriber, endpoint, digest, attempt.id, delivery.attempts)


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


async def _record(
    session: AsyncSession,
    resources: Resources,
    prepared: _Prepared,
    sent: _Sent,
    *,
    now: datetime,
    at: datetime,
) -> str:
    row = await session.get(Delivery, prepared.delivery.id)
    attempt = await session.get(DeliveryAttempt, prepared.attempt_id)
    assert row is not None
    assert attempt is not None
    attempt.finished_at = at
    attempt.code = sent.code
    attempt.response = sent.detail[:1024]
    row.lease_owner = row.lease_until = None
    max_attempts = resources.settings.delivery.max_attempts
    if sent.status == "delivered":
        row.status, row.delivered_at, row.last_error = "delivered", at, None
        attempt.outcome = "delivered"
    elif (
        sent.status == "retry"
        and (delay := _next_delay(row.attempts, max_attempts, sent.retry_after)) is not None
    ):
        row.status, row.next_attempt_at, row.last_error = "retry_wait", now + delay, sent.detail
        attempt.outcome = "retry"
    else:
        row.status, row.last_error = "failed", sent.detail
        attempt.outcome = "disabled" if sent.disable_endpoint else "failed"
    if prepared.endpoint is not None:
        await _update_endpoint_health(
            session, prepared.endpoint.id, row.status, disable=sent.disable_endpoint, now=at
        )
    if sent.permanent_recipient and prepared.subscriber is not None:
        subscriber = await session.get(Subscriber, prepared.subscriber.id)
        if subscriber is not None:
            subscriber.status = "suppressed"
            subscriber.status_reason = f"SMTP {sent.code}: {sent.detail[:200]}"
            subscriber.updated_at = at
    return row.status


def _next_delay(
    attempts: int, max_attempts: int, retry_after: timedelta | None
) -> timedelta | None:
    if attempts >= max_attempts:
        return None
    return retry_delay(attempts, retry_after=retry_after, rng=random.Random())


async def _update_endpoint_health(
    session: AsyncSession, endpoint_id: int, status: str, *, disable: bool, now: datetime
) -> None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return
    if status == "delivered":
        endpoint.failing_since = None
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    expired = should_disable(status="retry", failing_since=endpoint.failing_since, now=now)
    if disable or expired:
        endpoint.enabled = False
        endpoint.disabled_reason = "410 Gone" if disable else "failing for 5 days"
        endpoint.updated_at = now


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
    secrets = active_secrets(prepared.endpoint.secrets, now=now)
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
            .where(Notification.delivery_id == delivery.id)
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
    candidates = [
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
        for _, article, match, rule, source in rows
    ]
    window_end = delivery.window_end or delivery.created_at
    window_start = delivery.window_start or window_end
    return build_digest(
        subscription_id=str(delivery.subscription_id),
        period_key=delivery.period_key,
        window_start=window_start,
        window_end=window_end,
        candidates=candidates,
        story_outlets=outlets,
        limits=DigestLimits(total=limit),
    )
