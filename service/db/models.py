"""Typed SQLAlchemy models. Every stored time is timezone-aware UTC.

Schema changes go through Alembic (``migrations/``); ``alembic check`` must stay clean.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, BigId, UTCDateTime


class Source(Base):
    """A place dealwatch polls: a feed, an HTML listing page or a JSON API."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier: Mapped[str] = mapped_column(String(20), default="news")
    country: Mapped[str | None] = mapped_column(String(2))
    language: Mapped[str | None] = mapped_column(String(12))
    interval_minutes: Mapped[int] = mapped_column(Integer, default=30)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where the row came from ("config" or "api") and the hash of the config entry last applied:
    # a config-born row whose current values no longer hash to it was changed by an admin.
    origin: Mapped[str] = mapped_column(String(10), default="api")
    config_hash: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # Fetch state.
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Health.
    health: Mapped[str] = mapped_column(String(12), default="new")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_new_item_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    polls_total: Mapped[int] = mapped_column(Integer, default=0)
    polls_not_modified: Mapped[int] = mapped_column(Integer, default=0)


class Story(Base):
    """Articles from several outlets that report the same news."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(Text)
    # Not a foreign key: stories and articles point at each other.
    canonical_article_id: Mapped[int | None] = mapped_column(BigId)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    article_count: Mapped[int] = mapped_column(Integer, default=1)
    source_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


class Article(Base):
    """One item of one source, normalised."""

    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("source_id", "identity"),
        # Covers the poller's "latest valid publication times of this source" read (the
        # adaptive interval): without it, every poll scans the source's articles.
        Index(
            "ix_articles_source_id_published_valid_published_at",
            "source_id",
            "published_valid",
            "published_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    identity: Mapped[str] = mapped_column(String(255))
    guid: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    canonical_url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_valid: Mapped[bool] = mapped_column(Boolean, default=True)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    language: Mapped[str | None] = mapped_column(String(12))
    content_hash: Mapped[str] = mapped_column(String(64))
    story_id: Mapped[int | None] = mapped_column(
        ForeignKey("stories.id", ondelete="SET NULL"), index=True
    )
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    entities: Mapped[list[str]] = mapped_column(JSON, default=list)


class WatchRule(Base):
    """A boolean query that articles are matched against."""

    __tablename__ = "watch_rules"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    query: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_score: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    origin: Mapped[str] = mapped_column(String(10), default="api")
    config_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RuleVersion(Base):
    """A previous state of a watch rule, kept on every update."""

    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("watch_rules.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    query: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_score: Mapped[float] = mapped_column(Float, default=0.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(200))


class Match(Base):
    """An article matched a rule. Keyed article-first: inserts append, never scatter."""

    __tablename__ = "matches"
    __table_args__ = (Index("ix_matches_rule_id_matched_at", "rule_id", "matched_at"),)

    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    rule_id: Mapped[str] = mapped_column(
        ForeignKey("watch_rules.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[float] = mapped_column(Float)
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)
    snippet: Mapped[str] = mapped_column(Text, default="")
    highlights: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Subscriber(Base):
    """A person who receives e-mail digests."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # pending, active, unsubscribed, bounced, suppressed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    confirm_token_hash: Mapped[str | None] = mapped_column(String(64))
    confirm_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Consent evidence for the double opt-in (EM-30): when, from where, through what.
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(Text)
    consent_source: Mapped[str | None] = mapped_column(String(40))
    # Confirmation e-mails sent since ``confirm_window_start`` (EM-32 rate limit per address).
    confirm_sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    confirm_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The confirmation e-mail is an outbox item too: its token, encrypted (service.secretbox),
    # stays until an SMTP server accepts the message, and ``confirm_retry_at`` says when a
    # worker sends it (again). The sign-up request sends it at once and sets this a few minutes
    # ahead, so a process that dies before sending leaves it to a worker.
    confirm_token_sealed: Mapped[dict[str, str] | None] = mapped_column(JSON)
    confirm_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    confirm_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Soft bounces since ``soft_bounce_since``; enough of them over enough time suppress the
    # address (EM-52). A report after a quiet gap starts the count again.
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    soft_bounce_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    soft_bounce_last: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookEndpoint(Base):
    """An integrator's URL that receives signed webhooks."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    # [{"ciphertext": Fernet token, "key_id": ..., "created_at": iso, "expires_at": iso | null}],
    # the newest first; see service.secretbox (rows written before encryption hold "secret").
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Subscription(Base):
    """Which rules a subscriber or an endpoint receives, and when."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("(subscriber_id IS NULL) <> (endpoint_id IS NULL)", name="one_recipient"),
        Index("ix_subscriptions_next_due_at", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    rule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    rule_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # immediate, hourly, daily, weekly
    cadence: Mapped[str] = mapped_column(String(10), default="daily")
    send_time: Mapped[str] = mapped_column(String(5), default="08:00")
    weekday: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    heartbeat: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_period_key: Mapped[str | None] = mapped_column(String(40))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Delivery(Base):
    """Outbox row: one digest (or immediate alert) for one subscription and period."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_key"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))  # email, webhook
    event_type: Mapped[str] = mapped_column(String(40))  # digest.published, match.created
    period_key: Mapped[str] = mapped_column(String(60))
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # pending, sending, retry_wait, delivered, failed, cancelled
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Stable across retries: the e-mail Message-ID or the webhook-id.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Notification(Base):
    """A match waiting for (or included in) a subscription's delivery: the outbox's items.

    Written in the same transaction as the match, so a committed match is never missed;
    ``delivery_id`` is set once, when a digest claims it, so it is never sent twice.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("subscription_id", "article_id", "rule_id"),
        Index("ix_notifications_subscription_id_delivery_id", "subscription_id", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(ForeignKey("watch_rules.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryAttempt(Base):
    """Append-only log of delivery attempts; committed before the network call."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # started, delivered, retry, failed, disabled, abandoned, cancelled (started, then its
    # endpoint was disabled before it was sent)
    outcome: Mapped[str] = mapped_column(String(12), default="started")
    code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class BounceEvent(Base):
    """A bounce or complaint report about an address we sent to, and what it led to."""

    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # hard, soft, complaint
    kind: Mapped[str] = mapped_column(String(12))
    email: Mapped[str] = mapped_column(String(320), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(20), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    # dsn, arf, api
    source: Mapped[str] = mapped_column(String(12))
    # suppressed, unsubscribed, counted, already_suppressed, unknown_address
    action: Mapped[str] = mapped_column(String(24))


class ApiKey(Base):
    """An admin API key. Only a hash is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(10))  # admin, editor, viewer
    prefix: Mapped[str] = mapped_column(String(20), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who changed what, when, with the state before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_key_id: Mapped[int | None] = mapped_column(BigId)
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
