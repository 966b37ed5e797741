from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pydantic import SecretStr

from alerts.render import webhook_payload
from service.api.app import create_app
from service.api.webhook_docs import DigestPublishedEvent, MatchCreatedEvent
from service.settings import Settings
from tests.support.digests import sample_digest

NOW = datetime(2026, 11, 1, 4, tzinfo=UTC)


def test_real_payloads_match_the_documented_models() -> None:
    digest = sample_digest()
    published = webhook_payload(
        "digest.published", event_time=NOW, sequence=3, subscription_id="7", digest=digest
    )
    DigestPublishedEvent.model_validate(published)
    entry = replace(digest.sections[0].entries[0], published=None)
    created = webhook_payload(
        "match.created",
        event_time=NOW,
        sequence=4,
        subscription_id="7",
        entry=entry,
        rule_id="lng",
        rule_name="LNG supply",
    )
    MatchCreatedEvent.model_validate(created)


def test_openapi_lists_both_webhooks() -> None:
    app = create_app(Settings(secret_key=SecretStr("k" * 40)))
    schema = app.openapi()
    assert set(schema["webhooks"]) == {"match.created", "digest.published"}
    post = schema["webhooks"]["digest.published"]["post"]
    assert "webhook-id" in post["description"]
    reference = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert reference.endswith("/DigestPublishedEvent")
