"""The webhooks dealwatch sends, described in the OpenAPI document's ``webhooks`` section.

These models document the payloads of :func:`alerts.render.webhook_payload` (version 1); a
test validates real payloads against them so the documentation cannot drift from the wire.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

RECEIVER_GUIDE = (
    "Signed with Standard Webhooks: verify `webhook-signature` (`v1,` HMAC-SHA256 over "
    "`{webhook-id}.{webhook-timestamp}.{raw body}`, key = base64-decoded part of your `whsec_` "
    "secret) on the raw body, reject timestamps more than 5 minutes off, and deduplicate on "
    "`webhook-id`: it stays the same across retries and manual replays. Answer 2xx quickly; any "
    "other status (redirects included) is a failure retried with backoff for more than a day, "
    "and 410 Gone disables the endpoint. Events may arrive out of order: use `sequence`."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookItem(_Strict):
    """One story as a webhook lists it."""

    article_id: str
    story_id: str
    title: str
    url: str
    source: str = Field(description="The outlet's display name.")
    tier: str = Field(description="official, news or aggregator.")
    published: str | None = Field(description="ISO 8601, UTC.")
    also_reported_by: list[str]


class DigestItem(WebhookItem):
    rule_id: str


class RuleRef(_Strict):
    id: str
    name: str


class MatchCreatedData(_Strict):
    subscription_id: str
    rule: RuleRef
    match: WebhookItem


class DigestPublishedData(_Strict):
    subscription_id: str
    period_key: str = Field(description="Local date, ISO week or UTC hour of the digest.")
    window_start: str | None
    window_end: str | None
    total: int
    items: list[DigestItem]
    truncated: bool = Field(description="True when items were left out to keep the body small.")
    url: str | None


class _Envelope(_Strict):
    version: Literal[1]
    timestamp: str = Field(description="When the event happened, ISO 8601 UTC.")
    sequence: int = Field(description="Increases per subscription; use it to reorder.")


class MatchCreatedEvent(_Envelope):
    """Sent once per matched article for subscriptions with the ``immediate`` cadence."""

    type: Literal["match.created"]
    data: MatchCreatedData


class DigestPublishedEvent(_Envelope):
    """Sent once per digest period (hourly, daily, weekly) of a subscription."""

    type: Literal["digest.published"]
    data: DigestPublishedData


def document_webhooks(app: FastAPI) -> None:
    """Add ``match.created`` and ``digest.published`` to the app's OpenAPI ``webhooks``."""

    @app.webhooks.post("match.created", tags=["webhooks"], description=RECEIVER_GUIDE)
    def match_created(body: MatchCreatedEvent) -> None:
        """A watch rule matched a new article."""

    @app.webhooks.post("digest.published", tags=["webhooks"], description=RECEIVER_GUIDE)
    def digest_published(body: DigestPublishedEvent) -> None:
        """A digest period closed."""
