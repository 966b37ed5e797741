"""Subscriber lifecycle: sign-up with double opt-in, confirmation, one-click leave, preferences.

States: ``pending`` (signed up, not confirmed) → ``active`` (confirmed) → ``unsubscribed``
(left), and ``bounced`` / ``suppressed`` (set by delivery outcomes). Only active subscribers get
notifications (:func:`service.storage.matches.list_audiences`), and a pending subscriber's
subscription stays disabled until the confirmation, so nothing is planned for it. The caller
owns the transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import available_timezones

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Delivery, Notification, Subscriber, Subscription, WatchRule
from service.exceptions import ServiceError
from service.notify.tokens import hash_token, new_single_use_token
from service.secretbox import SecretBox
from service.storage.confirmations import CONFIRM_SEND_GRACE
from service.storage.subscriptions import first_due_at

CADENCES = ("immediate", "hourly", "daily", "weekly")
_EMAIL = re.compile(
    r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_SEND_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")


class InvalidPreferencesError(ServiceError, ValueError):
    """A sign-up or preferences form holds an invalid value.

    Attributes:
        field: the form field at fault.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a subscription receives and when."""

    rule_ids: tuple[str, ...] = ()
    rule_tags: tuple[str, ...] = ()
    cadence: str = "daily"
    send_time: str = "08:00"
    weekday: int | None = None
    timezone: str = "UTC"
    heartbeat: bool = False


@dataclass(frozen=True, slots=True)
class Consent:
    """Where a sign-up came from (EM-30 evidence)."""

    ip: str | None = None
    user_agent: str | None = None
    source: str = "form"


@dataclass(frozen=True, slots=True)
class SignupResult:
    """The outcome of a sign-up request.

    ``token`` is the single-use confirmation token to e-mail, or ``None`` when no e-mail may be
    sent (already active, suppressed, or the per-address limit reached). Callers answer the
    same way in every case, so the response does not reveal whether an address is known.
    """

    subscriber_id: int
    token: str | None
    reason: str


def normalise_email(value: str) -> str:
    """Return the address trimmed and lower-cased.

    Raises:
        InvalidPreferencesError: not a plausible address.
    """
    email = value.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidPreferencesError("email", "enter a valid e-mail address")
    return email


async def validate_preferences(session: AsyncSession, prefs: Preferences) -> Preferences:
    """Check a preferences form against the schedule rules and the enabled watch rules.

    Raises:
        InvalidPreferencesError: naming the offending field.
    """
    if prefs.cadence not in CADENCES:
        raise InvalidPreferencesError("cadence", "choose immediate, hourly, daily or weekly")
    if not _SEND_TIME.match(prefs.send_time):
        raise InvalidPreferencesError("send_time", "use a 24-hour time such as 08:00")
    if prefs.timezone not in available_timezones():
        raise InvalidPreferencesError("timezone", "choose a time zone such as Asia/Karachi")
    weekday = prefs.weekday
    if prefs.cadence == "weekly":
        if weekday is None or not 0 <= weekday <= 6:
            raise InvalidPreferencesError("weekday", "choose the day of the week")
    else:
        weekday = None
    rules = set(
        (await session.execute(select(WatchRule.id).where(WatchRule.enabled.is_(True)))).scalars()
    )
    unknown = sorted(set(prefs.rule_ids) - rules)
    if unknown:
        raise InvalidPreferencesError("rule_ids", f"unknown watch rules: {', '.join(unknown)}")
    if not prefs.rule_ids and not prefs.rule_tags:
        raise InvalidPreferencesError("rule_ids", "choose at least one watch rule")
    return Preferences(
        rule_ids=tuple(sorted(set(prefs.rule_ids))),
        rule_tags=tuple(sorted(set(prefs.rule_tags))),
        cadence=prefs.cadence,
        send_time=prefs.send_time,
        weekday=weekday,
        timezone=prefs.timezone,
        heartbeat=prefs.heartbeat,
    )


def _apply(sub: Subscription, prefs: Preferences, *, now: datetime) -> None:
    sub.rule_ids = list(prefs.rule_ids)
    sub.rule_tags = list(prefs.rule_tags)
    sub.cadence = prefs.cadence
    sub.send_time = prefs.send_time
    sub.weekday = prefs.weekday
    sub.timezone = prefs.timezone
    sub.heartbeat = prefs.heartbeat
    # A new schedule starts from now: the next due instant of the new rule.
    sub.next_due_at = (
        None
        if prefs.cadence == "immediate"
        else first_due_at(
            cadence=prefs.cadence,
            send_time=prefs.send_time,
            weekday=prefs.weekday,
            timezone=prefs.timezone,
            now=now,
        )
    )
    sub.version += 1
    sub.updated_at = now


async def request_subscription(
    session: AsyncSession,
    *,
    email: str,
    prefs: Preferences,
    consent: Consent,
    box: SecretBox,
    now: datetime,
    max_confirm_sends: int = 3,
    confirm_window: timedelta = timedelta(hours=24),
) -> SignupResult:
    """Record a sign-up and issue a confirmation token (double opt-in, EM-30/31/32).

    A new address gets a ``pending`` subscriber and a disabled subscription. A pending or
    unsubscribed address gets its preferences replaced and a fresh token, at most
    ``max_confirm_sends`` times per ``confirm_window``. Active, bounced and suppressed
    addresses get no e-mail.

    Raises:
        InvalidPreferencesError: a bad address or preference.
    """
    address = normalise_email(email)
    prefs = await validate_preferences(session, prefs)
    subscriber = (
        await session.execute(select(Subscriber).where(Subscriber.email == address))
    ).scalar_one_or_none()
    if subscriber is None:
        subscriber = Subscriber(
            email=address, status="pending", created_at=now, updated_at=now, confirm_sends=0
        )
        session.add(subscriber)
        await session.flush()
    elif subscriber.status in ("active", "bounced", "suppressed"):
        return SignupResult(subscriber.id, None, subscriber.status)
    window_start = subscriber.confirm_window_start
    if window_start is None or now - window_start >= confirm_window:
        subscriber.confirm_window_start, subscriber.confirm_sends = now, 0
    if subscriber.confirm_sends >= max_confirm_sends:
        return SignupResult(subscriber.id, None, "rate_limited")
    subscription = (
        await session.execute(
            select(Subscription)
            .where(Subscription.subscriber_id == subscriber.id)
            .order_by(Subscription.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if subscription is None:
        subscription = Subscription(
            subscriber_id=subscriber.id, enabled=False, version=0, created_at=now
        )
        session.add(subscription)
    subscription.enabled = False
    _apply(subscription, prefs, now=now)
    token, token_hash = new_single_use_token()
    subscriber.status = "pending"
    subscriber.status_reason = None
    subscriber.confirm_token_hash = token_hash
    subscriber.confirm_sent_at = now
    subscriber.confirm_sends += 1
    # The caller sends at once; if it cannot, a worker finds the e-mail due after the grace.
    subscriber.confirm_token_sealed = box.seal(token)
    subscriber.confirm_retry_at = now + CONFIRM_SEND_GRACE
    subscriber.confirm_attempts = 0
    subscriber.consent_at = now
    subscriber.consent_ip = consent.ip
    subscriber.consent_user_agent = (consent.user_agent or "")[:500] or None
    subscriber.consent_source = consent.source
    subscriber.updated_at = now
    await session.flush()
    return SignupResult(subscriber.id, token, "sent")


async def pending_for_token(
    session: AsyncSession, token: str, *, now: datetime, ttl: timedelta = timedelta(hours=72)
) -> Subscriber | None:
    """Return the pending subscriber a confirmation token belongs to, if still valid."""
    subscriber = (
        await session.execute(
            select(Subscriber).where(Subscriber.confirm_token_hash == hash_token(token))
        )
    ).scalar_one_or_none()
    if subscriber is None or subscriber.status != "pending":
        return None
    if subscriber.confirm_sent_at is None or now - subscriber.confirm_sent_at >= ttl:
        return None
    return subscriber


async def confirm_subscription(
    session: AsyncSession, token: str, *, now: datetime, ttl: timedelta = timedelta(hours=72)
) -> Subscriber | None:
    """Activate the subscriber of a valid token; the token cannot be used again.

    Returns ``None`` for an unknown, used or expired token.
    """
    subscriber = await pending_for_token(session, token, now=now, ttl=ttl)
    if subscriber is None:
        return None
    subscriber.status = "active"
    subscriber.confirmed_at = now
    subscriber.confirm_token_hash = None
    subscriber.confirm_token_sealed = None
    subscriber.confirm_retry_at = None
    subscriber.updated_at = now
    subscriptions = (
        await session.execute(
            select(Subscription).where(
                Subscription.subscriber_id == subscriber.id, Subscription.enabled.is_(False)
            )
        )
    ).scalars()
    for sub in subscriptions:
        sub.enabled = True
        sub.next_due_at = (
            None
            if sub.cadence == "immediate"
            else first_due_at(
                cadence=sub.cadence,
                send_time=sub.send_time,
                weekday=sub.weekday,
                timezone=sub.timezone,
                now=now,
            )
        )
        sub.updated_at = now
    await session.flush()
    return subscriber


async def unsubscribe(session: AsyncSession, subscription_id: int, *, now: datetime) -> bool:
    """Stop a subscription at once (RFC 8058 one-click); safe to call twice.

    Pending and retrying deliveries are cancelled and queued notifications dropped, so
    nothing more is sent (EM-17). A subscriber left with no enabled subscription becomes
    ``unsubscribed``. Returns ``False`` when the subscription does not exist.
    """
    sub = await session.get(Subscription, subscription_id)
    if sub is None:
        return False
    sub.enabled = False
    sub.next_due_at = None
    sub.updated_at = now
    await session.execute(
        update(Delivery)
        .where(
            Delivery.subscription_id == subscription_id,
            Delivery.status.in_(("pending", "retry_wait")),
        )
        .values(status="cancelled", last_error="unsubscribed")
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(Notification)
        .where(Notification.subscription_id == subscription_id, Notification.delivery_id.is_(None))
        .execution_options(synchronize_session=False)
    )
    if sub.subscriber_id is not None:
        subscriber = await session.get(Subscriber, sub.subscriber_id)
        others = (
            await session.execute(
                select(Subscription.id).where(
                    Subscription.subscriber_id == sub.subscriber_id,
                    Subscription.enabled.is_(True),
                    Subscription.id != subscription_id,
                )
            )
        ).first()
        if subscriber is not None and others is None and subscriber.status == "active":
            subscriber.status = "unsubscribed"
            subscriber.status_reason = "unsubscribed by the recipient"
            subscriber.updated_at = now
    await session.flush()
    return True


async def update_preferences(
    session: AsyncSession, subscription_id: int, prefs: Preferences, *, now: datetime
) -> Subscription:
    """Change what and when a subscription receives; the schedule restarts from ``now``.

    Raises:
        InvalidPreferencesError: a bad preference.
        LookupError: no such subscription.
    """
    sub = await session.get(Subscription, subscription_id)
    if sub is None:
        raise LookupError(subscription_id)
    prefs = await validate_preferences(session, prefs)
    _apply(sub, prefs, now=now)
    await session.flush()
    return sub


async def enabled_rules(session: AsyncSession) -> Sequence[WatchRule]:
    """Return the rules a subscriber may choose, by name."""
    rows = await session.execute(
        select(WatchRule).where(WatchRule.enabled.is_(True)).order_by(WatchRule.name)
    )
    return list(rows.scalars())
