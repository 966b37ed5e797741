"""Request and response models of the admin API: ``XCreate``, ``XUpdate``, ``XPublic``, ``XPage``.

Input is validated here, at the boundary: slugs, URLs (scheme here; the SSRF guard runs in the
route because it resolves names), IANA time zones, e-mail addresses, cadences, ``HH:MM``,
weekdays and rule queries. ``XUpdate`` models are partial: a field left out is unchanged, and
``null`` is accepted only where the stored value may be empty.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from functools import lru_cache
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from alerts.exceptions import InvalidRuleError
from alerts.query import parse_query
from alerts.schedule import Cadence
from service.catalogue import SourceKind, SourceTier

T = TypeVar("T")

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"
URL_PATTERN = r"^https?://[^\s/?#@]+[^\s]*$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}$"
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
MAX_QUERY = 4000

KeyRole = Literal["admin", "editor", "viewer"]
SubscriberStatus = Literal["pending", "active", "unsubscribed", "bounced", "suppressed"]
DeliveryStatus = Literal["pending", "sending", "retry_wait", "delivered", "failed", "cancelled"]
SourceHealth = Literal["new", "ok", "degraded", "failing", "stale"]


def _storable(value: Any) -> Any:
    """Refuse what a database cannot store: NUL characters and non-finite numbers."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("nul_character", "text cannot contain NUL characters")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "numbers must be finite")
    elif isinstance(value, list | tuple):
        for item in value:
            _storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    return value


Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=URL_PATTERN)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_values(cls, value: Any) -> Any:
        return _storable(value)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Partial(_In):
    """A PATCH body: ``null`` only for the fields listed in ``_nullable``."""

    _nullable: frozenset[str] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> _Partial:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self._nullable:
                raise PydanticCustomError(
                    "null_not_allowed", "{field} cannot be null", {"field": name}
                )
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent."""
        return self.model_dump(include=self.model_fields_set)


class Page(BaseModel, Generic[T]):
    """One page of a list, in a stable order (the sort key, then the id)."""

    items: list[T]
    total: int = Field(description="How many items match the filters in all.")
    limit: int
    offset: int


def _check_query(value: str) -> str:
    try:
        parse_query(value)
    except InvalidRuleError as exc:
        raise PydanticCustomError(
            "invalid_query",
            "{message}",
            {"message": exc.message, "position": exc.position, "expected": exc.expected},
        ) from exc
    return value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(value: str) -> str:
    if value not in _zones():
        raise PydanticCustomError(
            "invalid_timezone", "{value} is not an IANA time zone name", {"value": value[:64]}
        )
    return value


# --- sources ---------------------------------------------------------------------------------


class SourceCreate(_In):
    """A new source. Same rules as a ``[[source]]`` entry of ``config/sources.toml``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "mofa-pk",
                    "name": "Ministry of Foreign Affairs of Pakistan",
                    "kind": "feed",
                    "url": "https://mofa.gov.pk/feed/",
                    "tier": "official",
                    "country": "PK",
                    "language": "en",
                    "interval_minutes": 30,
                }
            ]
        }
    )

    id: str = Field(pattern=SLUG_PATTERN, description="Slug: lowercase letters, digits, '-'.")
    name: str = Field(min_length=1, max_length=200)
    kind: SourceKind = "feed"
    url: str = Field(min_length=8, max_length=2000, pattern=URL_PATTERN)
    tier: SourceTier = "news"
    country: str | None = Field(default=None, pattern=COUNTRY_PATTERN)
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN, max_length=12)
    interval_minutes: int = Field(default=30, ge=1, le=10080)
    enabled: bool = True
    options: dict[str, Any] = Field(
        default_factory=dict, description="Parser options (selectors for html, paths for json)."
    )


class SourceUpdate(_Partial):
    """Fields to change on a source."""

    _nullable = frozenset({"country", "language"})

    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    kind: SourceKind | SkipJsonSchema[None] = None
    url: Url | SkipJsonSchema[None] = None
    tier: SourceTier | SkipJsonSchema[None] = None
    country: str | None = Field(default=None, pattern=COUNTRY_PATTERN)
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN, max_length=12)
    interval_minutes: Annotated[int, Field(ge=1, le=10080)] | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None
    options: dict[str, Any] | SkipJsonSchema[None] = None


class SourceHealthPublic(_Out):
    """How polling a source is going."""

    id: str
    enabled: bool
    health: str = Field(
        description="new (never polled), ok, degraded (failed lately), failing (failed "
        "`poll.failing_after` times in a row) or stale (nothing new for longer than expected)."
    )
    consecutive_failures: int
    last_status: str | None
    last_http_status: int | None
    last_error: str | None
    last_polled_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_new_item_at: dt.datetime | None
    next_poll_at: dt.datetime
    items_seen: int
    polls_total: int
    polls_not_modified: int


class SourcePublic(_Out):
    """A source as stored."""

    id: str
    name: str
    kind: str
    url: str
    tier: str
    country: str | None
    language: str | None
    interval_minutes: int
    enabled: bool
    options: dict[str, Any]
    origin: str = Field(description="config (from sources.toml) or api.")
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    health: str
    consecutive_failures: int
    last_error: str | None
    last_polled_at: dt.datetime | None
    next_poll_at: dt.datetime


class SourcePage(Page[SourcePublic]):
    pass


class PollResultPublic(BaseModel):
    """What polling a source now did."""

    source_id: str
    outcome: Literal["ok", "not_modified", "error"]
    new: int
    updated: int
    matches: int
    error: str | None


# --- rules -----------------------------------------------------------------------------------


class RuleCreate(_In):
    """A new watch rule."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "pk-ru-energy",
                    "name": "Pakistan–Russia energy",
                    "query": 'Pakistan Russia (oil OR LNG OR "Pakistan Stream") -cricket',
                    "tags": ["energy"],
                    "min_score": 0,
                }
            ]
        }
    )

    id: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    query: str = Field(min_length=1, max_length=MAX_QUERY)
    tags: list[str] = Field(default_factory=list, max_length=50)
    enabled: bool = True
    min_score: float = Field(default=0.0, ge=0, le=1000)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return _check_query(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _check_tags(value)


def _check_tags(value: list[str]) -> list[str]:
    for tag in value:
        if not re.match(TAG_PATTERN, tag):
            raise PydanticCustomError(
                "invalid_tag", "tag {tag!r} must match " + TAG_PATTERN, {"tag": tag[:60]}
            )
    return sorted(set(value))


class RuleUpdate(_Partial):
    """Fields to change on a rule; changing any keeps the previous state as a version."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    description: Annotated[str, Field(max_length=4000)] | SkipJsonSchema[None] = None
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY)] | SkipJsonSchema[None] = None
    tags: Annotated[list[str], Field(max_length=50)] | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None
    min_score: Annotated[float, Field(ge=0, le=1000)] | SkipJsonSchema[None] = None

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        return None if value is None else _check_query(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)


class RulePublic(_Out):
    id: str
    name: str
    description: str
    query: str
    tags: list[str]
    enabled: bool
    min_score: float
    origin: str
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class RulePage(Page[RulePublic]):
    pass


class RuleVersionPublic(_Out):
    """A rule as it was before an update."""

    rule_id: str
    version: int
    name: str
    query: str
    tags: list[str]
    min_score: float
    enabled: bool
    created_at: dt.datetime = Field(description="When this state was replaced.")
    created_by: str | None = Field(description="The key that replaced it.")


class RuleVersionPage(Page[RuleVersionPublic]):
    pass


class QueryInput(_In):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "Pakistan Russia (oil OR LNG)"}]}
    )

    query: str = Field(min_length=1, max_length=MAX_QUERY)


class QueryError(BaseModel):
    message: str
    position: int
    expected: str
    caret: str = Field(description="The query with a caret under the error position.")


class QueryValidation(BaseModel):
    """Whether a query parses, and how it reads."""

    valid: bool
    query: str
    explain: str | None = Field(default=None, description="The parsed query as a tree.")
    terms: list[str] = Field(default_factory=list)
    error: QueryError | None = None


class PreviewRequest(_In):
    """A draft query to run over stored articles."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "Pakistan LNG", "days": 14, "samples": 5}]}
    )

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    days: int = Field(default=7, ge=1, le=90, description="Look back this many days.")
    min_score: float = Field(default=0.0, ge=0, le=1000)
    samples: int = Field(default=10, ge=0, le=50, description="How many sample matches.")

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return _check_query(value)


class DayCount(BaseModel):
    date: dt.date
    count: int


class PreviewSample(BaseModel):
    article_id: int
    source_id: str
    title: str
    url: str
    published_at: dt.datetime
    score: float
    terms: list[str]
    snippet: str
    highlights: list[list[int]]


class PreviewResult(BaseModel):
    """What the draft query would have matched."""

    query: str
    since: dt.datetime
    until: dt.datetime
    scanned: int = Field(description="Articles examined.")
    matched: int
    truncated: bool = Field(description="More articles existed than the scan limit.")
    per_day: list[DayCount]
    samples: list[PreviewSample]


# --- articles, stories, matches ------------------------------------------------------------


class ArticlePublic(_Out):
    id: int
    source_id: str
    url: str
    canonical_url: str
    title: str
    summary: str
    author: str | None
    published_at: dt.datetime
    fetched_at: dt.datetime
    language: str | None
    story_id: int | None
    countries: list[str]
    entities: list[str]


class ArticlePage(Page[ArticlePublic]):
    pass


class StoryPublic(_Out):
    id: int
    title: str
    canonical_article_id: int | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    article_count: int
    source_ids: list[str]


class StoryDetail(StoryPublic):
    articles: list[ArticlePublic]


class StoryPage(Page[StoryPublic]):
    pass


class MatchPublic(BaseModel):
    article_id: int
    rule_id: str
    score: float
    terms: list[str]
    snippet: str
    highlights: list[list[int]]
    matched_at: dt.datetime
    source_id: str
    title: str
    url: str
    published_at: dt.datetime


class MatchPage(Page[MatchPublic]):
    pass


# --- subscribers, endpoints, subscriptions ---------------------------------------------------


class SubscriberCreate(_In):
    """A person who receives e-mail digests.

    ``pending`` waits for the double opt-in confirmation; ``active`` is for people whose
    consent was collected elsewhere.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "analyst@example.org", "name": "Analyst"}]}
    )

    email: EmailStr
    name: str = Field(default="", max_length=200)
    status: Literal["pending", "active"] = "pending"


class SubscriberUpdate(_Partial):
    email: EmailStr | SkipJsonSchema[None] = None
    name: Annotated[str, Field(max_length=200)] | SkipJsonSchema[None] = None
    status: SubscriberStatus | SkipJsonSchema[None] = None


class SubscriberPublic(_Out):
    id: int
    email: str
    name: str
    status: str
    status_reason: str | None
    confirmed_at: dt.datetime | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class SubscriberPage(Page[SubscriberPublic]):
    pass


class EndpointCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Deals desk", "url": "https://hooks.example.org/dealwatch"}]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000, pattern=URL_PATTERN)


class EndpointUpdate(_Partial):
    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    url: Url | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None


class SecretInfo(BaseModel):
    """A signing secret's dates; the secret itself is only shown when created."""

    created_at: dt.datetime
    expires_at: dt.datetime | None


class EndpointPublic(_Out):
    id: int
    name: str
    url: str
    enabled: bool
    disabled_reason: str | None
    failing_since: dt.datetime | None
    secrets: list[SecretInfo]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class EndpointCreated(EndpointPublic):
    secret: str = Field(description="The signing secret. Shown once: store it now.")


class EndpointPage(Page[EndpointPublic]):
    pass


class RotateSecret(_In):
    overlap_hours: float = Field(
        default=24,
        ge=0,
        le=168,
        description="How long the previous secret keeps signing; 0 after a leak.",
    )


class RecoverFailed(_In):
    since: AwareDatetime = Field(
        description="Queue the endpoint's failed deliveries created at or after this time."
    )


class RecoverResult(BaseModel):
    endpoint: EndpointPublic
    queued: list[int] = Field(description="Ids of the deliveries queued again, oldest first.")


class SecretRotated(BaseModel):
    endpoint: EndpointPublic
    secret: str = Field(description="The new signing secret. Shown once.")


def _check_schedule(cadence: str | None, weekday: int | None) -> None:
    if cadence == "weekly" and weekday is None:
        raise PydanticCustomError(
            "weekday_required", "a weekly cadence needs a weekday (0 = Monday ... 6 = Sunday)"
        )


class SubscriptionCreate(_In):
    """Which rules a subscriber or an endpoint receives, and when."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subscriber_id": 1,
                    "rule_ids": ["pk-ru-energy"],
                    "cadence": "daily",
                    "send_time": "08:00",
                    "timezone": "Asia/Karachi",
                }
            ]
        }
    )

    subscriber_id: int | None = Field(default=None, ge=1)
    endpoint_id: int | None = Field(default=None, ge=1)
    rule_ids: list[str] = Field(default_factory=list, max_length=200)
    rule_tags: list[str] = Field(default_factory=list, max_length=50)
    cadence: Cadence = "daily"
    send_time: str = Field(default="08:00", pattern=HHMM_PATTERN, description="HH:MM, local.")
    weekday: int | None = Field(default=None, ge=0, le=6, description="0 = Monday (weekly).")
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone name.")
    heartbeat: bool = Field(default=False, description="Send an empty digest too.")
    enabled: bool = True

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("rule_ids")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        for rule_id in value:
            if not re.match(SLUG_PATTERN, rule_id):
                raise PydanticCustomError(
                    "invalid_rule_id", "rule id {rule_id!r} is not a slug", {"rule_id": rule_id}
                )
        return sorted(set(value))

    @field_validator("rule_tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _check_tags(value)

    @model_validator(mode="after")
    def _shape(self) -> SubscriptionCreate:
        if (self.subscriber_id is None) == (self.endpoint_id is None):
            raise PydanticCustomError(
                "one_recipient", "give exactly one of subscriber_id and endpoint_id"
            )
        if not self.rule_ids and not self.rule_tags:
            raise PydanticCustomError("no_rules", "give rule_ids, rule_tags or both")
        _check_schedule(self.cadence, self.weekday)
        return self


class SubscriptionUpdate(_Partial):
    _nullable = frozenset({"weekday"})

    rule_ids: Annotated[list[str], Field(max_length=200)] | SkipJsonSchema[None] = None
    rule_tags: Annotated[list[str], Field(max_length=50)] | SkipJsonSchema[None] = None
    cadence: Cadence | SkipJsonSchema[None] = None
    send_time: Annotated[str, Field(pattern=HHMM_PATTERN)] | SkipJsonSchema[None] = None
    weekday: int | None = Field(default=None, ge=0, le=6)
    timezone: Annotated[str, Field(max_length=64)] | SkipJsonSchema[None] = None
    heartbeat: bool | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)

    @field_validator("rule_ids")
    @classmethod
    def _rules(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else SubscriptionCreate._rules(value)

    @field_validator("rule_tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)


class SubscriptionPublic(_Out):
    id: int
    subscriber_id: int | None
    endpoint_id: int | None
    rule_ids: list[str]
    rule_tags: list[str]
    cadence: str
    send_time: str
    weekday: int | None
    timezone: str
    heartbeat: bool
    enabled: bool
    next_due_at: dt.datetime | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class SubscriptionPage(Page[SubscriptionPublic]):
    pass


# --- deliveries ------------------------------------------------------------------------------


class DeliveryPublic(_Out):
    id: int
    subscription_id: int
    channel: str
    event_type: str
    period_key: str
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    message_id: str
    item_count: int
    last_error: str | None
    possible_duplicate: bool
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class DeliveryAttemptPublic(_Out):
    number: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str = Field(
        description=(
            "started (in flight, or caught by a crash), delivered, retry (a later attempt "
            "follows), failed, disabled (the answer disabled the endpoint), abandoned (a crash "
            "left it unfinished; the retry is flagged possible_duplicate) or cancelled (the "
            "endpoint was disabled before this attempt was sent)"
        )
    )
    code: int | None
    response: str | None
    error: str | None


class DeliveryDetail(DeliveryPublic):
    attempt_log: list[DeliveryAttemptPublic]


class DeliveryPage(Page[DeliveryPublic]):
    pass


# --- keys and audit --------------------------------------------------------------------------


class KeyCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "alice-laptop", "role": "editor"}]}
    )

    name: str = Field(min_length=1, max_length=200)
    role: KeyRole


class KeyPublic(_Out):
    id: int
    name: str
    role: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The API key. Shown once: store it now.")


class KeyPage(Page[KeyPublic]):
    pass


class AuditPublic(_Out):
    id: int
    at: dt.datetime
    actor_key_id: int | None
    actor_name: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(Page[AuditPublic]):
    pass


BounceKindName = Literal["hard", "soft", "complaint"]


class BounceCreate(_In):
    """A bounce or complaint as a relay's event reports it (SES, Postmark, Mailgun... via a
    small bridge). Raw reports (RFC 3464 / RFC 5965) are posted as ``message/rfc822``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "reader@example.com",
                    "kind": "hard",
                    "status": "5.1.1",
                    "detail": "550 5.1.1 user unknown",
                    "message_id": "<msg_42@dealwatch.example.org>",
                }
            ]
        }
    )

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    kind: BounceKindName
    status: str = Field(default="", max_length=20)
    detail: str = Field(default="", max_length=2000)
    message_id: str = Field(
        default="",
        max_length=300,
        description="The Message-ID of the message that bounced, if the relay reports it.",
    )


class BouncePublic(_Out):
    """A recorded report and what it did."""

    id: int
    received_at: dt.datetime
    kind: str
    email: str
    subscriber_id: int | None
    delivery_id: int | None
    status: str
    detail: str
    source: str = Field(description="dsn, arf or api.")
    action: str = Field(
        description="suppressed, unsubscribed (complaint), counted (a soft bounce below the "
        "limit), already_suppressed or unknown_address."
    )


class BounceOutcome(BaseModel):
    """Whether a posted report was a failure report, and the event it recorded."""

    recorded: bool
    reason: str = Field(description="Why nothing was recorded, when ``recorded`` is false.")
    event: BouncePublic | None


class BouncePage(Page[BouncePublic]):
    pass
