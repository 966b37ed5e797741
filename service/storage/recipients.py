"""Subscribers, webhook endpoints and subscriptions as the admin API edits them.

Creation lives in :mod:`service.storage.subscriptions` (shared with the jobs); this module adds
listing, versioned updates, deletion and secret rotation. The caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Subscriber, Subscription, WebhookEndpoint
from service.exceptions import ConflictError
from service.secretbox import SecretBox
from service.storage.paging import contains_text, get_or_raise, json_text, paginate, snapshot
from service.storage.subscriptions import first_due_at, new_secret_entry
from service.storage.versioning import bump_version

SUBSCRIBER_FIELDS = ("id", "email", "name", "status", "status_reason", "version")
ENDPOINT_FIELDS = ("id", "name", "url", "enabled", "disabled_reason", "version")
SUBSCRIPTION_FIELDS = (
    "id",
    "subscriber_id",
    "endpoint_id",
    "rule_ids",
    "rule_tags",
    "cadence",
    "send_time",
    "weekday",
    "timezone",
    "heartbeat",
    "enabled",
    "version",
)
SCHEDULE_FIELDS = frozenset({"cadence", "send_time", "weekday", "timezone"})


def _may_name_rule(rule_id: str) -> ColumnElement[bool]:
    # Rule ids are validated slugs: no LIKE wildcards inside the quotes.
    return json_text(Subscription.rule_ids).like(f'%"{rule_id}"%')


def subscriber_snapshot(row: Subscriber) -> dict[str, Any]:
    return snapshot(row, SUBSCRIBER_FIELDS)


def endpoint_snapshot(row: WebhookEndpoint) -> dict[str, Any]:
    """The endpoint for the audit log: secret dates only, never a secret."""
    values = snapshot(row, ENDPOINT_FIELDS)
    values["secrets"] = [
        {"created_at": entry.get("created_at"), "expires_at": entry.get("expires_at")}
        for entry in row.secrets
    ]
    return values


def subscription_snapshot(row: Subscription) -> dict[str, Any]:
    return snapshot(row, SUBSCRIPTION_FIELDS)


# --- subscribers -----------------------------------------------------------------------------


async def get_subscriber(session: AsyncSession, subscriber_id: int) -> Subscriber:
    return await get_or_raise(session, Subscriber, subscriber_id, "subscriber")


async def list_subscribers(
    session: AsyncSession,
    *,
    status: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Subscriber], int]:
    statement: Select[Subscriber] = select(Subscriber)
    if status is not None:
        statement = statement.where(Subscriber.status == status)
    if q:
        statement = statement.where(contains_text(q, Subscriber.email, Subscriber.name))
    return await paginate(
        session, statement, order_by=[Subscriber.id.asc()], limit=limit, offset=offset
    )


async def update_subscriber(
    session: AsyncSession,
    row: Subscriber,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    now: datetime,
) -> Subscriber:
    """Apply ``changes``; a new e-mail address must be free.

    Raises:
        ConflictError: another subscriber has the new address.
        PreconditionFailedError: the subscriber changed meanwhile.
    """
    email = changes.get("email")
    if email is not None and email.lower() != row.email:
        taken = (
            await session.execute(select(Subscriber.id).where(Subscriber.email == email.lower()))
        ).scalar_one_or_none()
        if taken is not None:
            raise ConflictError(f"a subscriber with e-mail {email} exists")
    await bump_version(session, row, expected_version)
    for name, value in changes.items():
        if name == "email":
            row.email = value.lower()
        elif name == "status":
            if value == "active" and row.status != "active":
                row.confirmed_at = row.confirmed_at or now
            row.status = value
            row.status_reason = "set by an admin"
        elif name == "name":
            row.name = value
    row.updated_at = now
    await session.flush()
    return row


# --- endpoints -------------------------------------------------------------------------------


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    return await get_or_raise(session, WebhookEndpoint, endpoint_id, "webhook endpoint")


async def list_endpoints(
    session: AsyncSession, *, enabled: bool | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[WebhookEndpoint], int]:
    statement: Select[WebhookEndpoint] = select(WebhookEndpoint)
    if enabled is not None:
        statement = statement.where(WebhookEndpoint.enabled.is_(enabled))
    return await paginate(
        session, statement, order_by=[WebhookEndpoint.id.asc()], limit=limit, offset=offset
    )


async def update_endpoint(
    session: AsyncSession,
    row: WebhookEndpoint,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    now: datetime,
) -> WebhookEndpoint:
    """Apply ``changes``; re-enabling clears the failure state."""
    await bump_version(session, row, expected_version)
    for name in ("name", "url"):
        if name in changes:
            setattr(row, name, changes[name])
    if "enabled" in changes:
        if changes["enabled"] and not row.enabled:
            row.disabled_reason = None
            row.failing_since = None
        elif not changes["enabled"] and row.enabled:
            row.disabled_reason = "disabled by an admin"
        row.enabled = changes["enabled"]
    row.updated_at = now
    await session.flush()
    return row


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


async def rotate_endpoint_secret(
    session: AsyncSession,
    row: WebhookEndpoint,
    *,
    new_secret: str,
    box: SecretBox,
    overlap: timedelta,
    expected_version: int,
    now: datetime,
) -> WebhookEndpoint:
    """Put ``new_secret`` first; the previous one keeps signing until ``now + overlap``.

    At most two secrets stay: rotating again during an overlap drops the oldest at once
    (delivery-standards SEC-06), and expired entries are dropped.
    """
    await bump_version(session, row, expected_version)
    kept: list[dict[str, Any]] = []
    for entry in row.secrets:
        expires = _parse(entry.get("expires_at"))
        if expires is not None and expires <= now:
            continue
        kept.append(entry)
    previous = []
    if kept and overlap > timedelta(0):
        current = dict(kept[0])
        current_expiry = _parse(current.get("expires_at"))
        until = now + overlap
        current["expires_at"] = (
            min(until, current_expiry) if current_expiry is not None else until
        ).isoformat()
        previous = [current]
    row.secrets = [
        new_secret_entry(new_secret, box=box, now=now),
        *previous,
    ]
    row.updated_at = now
    await session.flush()
    return row


# --- subscriptions ---------------------------------------------------------------------------


async def get_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    return await get_or_raise(session, Subscription, subscription_id, "subscription")


async def list_subscriptions(
    session: AsyncSession,
    *,
    subscriber_id: int | None = None,
    endpoint_id: int | None = None,
    rule_id: str | None = None,
    cadence: str | None = None,
    enabled: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Subscription], int]:
    statement: Select[Subscription] = select(Subscription)
    if subscriber_id is not None:
        statement = statement.where(Subscription.subscriber_id == subscriber_id)
    if endpoint_id is not None:
        statement = statement.where(Subscription.endpoint_id == endpoint_id)
    if rule_id is not None:
        statement = statement.where(_may_name_rule(rule_id))
    if cadence is not None:
        statement = statement.where(Subscription.cadence == cadence)
    if enabled is not None:
        statement = statement.where(Subscription.enabled.is_(enabled))
    return await paginate(
        session, statement, order_by=[Subscription.id.asc()], limit=limit, offset=offset
    )


async def update_subscription(
    session: AsyncSession,
    row: Subscription,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    now: datetime,
) -> Subscription:
    """Apply ``changes``; a schedule change recomputes when the subscription is next due.

    Raises:
        ValueError: the resulting schedule is invalid (a weekly cadence without a weekday).
        PreconditionFailedError: the subscription changed meanwhile.
    """
    cadence = changes.get("cadence", row.cadence)
    weekday = changes.get("weekday", row.weekday)
    if cadence == "weekly" and weekday is None:
        raise ValueError("a weekly cadence needs a weekday (0 = Monday ... 6 = Sunday)")
    rule_ids = changes.get("rule_ids", row.rule_ids)
    rule_tags = changes.get("rule_tags", row.rule_tags)
    if not rule_ids and not rule_tags:
        raise ValueError("a subscription needs rule_ids, rule_tags or both")
    await bump_version(session, row, expected_version)
    for name, value in changes.items():
        setattr(row, name, value)
    if SCHEDULE_FIELDS & changes.keys() or (changes.get("enabled") and row.next_due_at is None):
        row.next_due_at = (
            None
            if row.cadence == "immediate"
            else first_due_at(
                cadence=row.cadence,
                send_time=row.send_time,
                weekday=row.weekday,
                timezone=row.timezone,
                now=now,
            )
        )
    row.updated_at = now
    await session.flush()
    return row


async def subscriptions_following(session: AsyncSession, rule_id: str) -> list[Subscription]:
    """The subscriptions that name ``rule_id`` in their ``rule_ids`` (not through a tag)."""
    # The LIKE narrows the rows; the membership test makes the answer exact.
    rows = await session.scalars(
        select(Subscription).where(_may_name_rule(rule_id)).order_by(Subscription.id)
    )
    return [row for row in rows if rule_id in row.rule_ids]


async def detach_rule(
    session: AsyncSession, subscriptions: list[Subscription], rule_id: str, *, now: datetime
) -> None:
    """Remove ``rule_id`` from each subscription; one left following nothing is disabled.

    A subscription with no rule and no tag would match nothing forever; disabling it (rather
    than deleting it) keeps the recipient's schedule and lets an admin point it elsewhere.
    """
    for row in subscriptions:
        await bump_version(session, row, row.version)
        row.rule_ids = [value for value in row.rule_ids if value != rule_id]
        if not row.rule_ids and not row.rule_tags:
            row.enabled = False
        row.updated_at = now
    await session.flush()


async def reseal_endpoint_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Encrypt every stored signing secret under the current key; return the endpoints changed.

    Covers secrets written before encryption existed and secrets under a previous key after
    the master key was rotated. The endpoint's version is not bumped: nothing an admin sees
    changes, so an admin's concurrent edit must not fail because of it.

    Raises:
        SecretBoxError: a secret is under a key that is no longer configured.
    """
    changed = 0
    for row in await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)):
        if all(box.is_current(entry) for entry in row.secrets):
            continue
        row.secrets = [box.reseal(entry) for entry in row.secrets]
        changed += 1
    await session.flush()
    return changed
