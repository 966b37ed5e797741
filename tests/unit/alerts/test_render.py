from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.digest import Digest, DigestLimits, build_digest
from alerts.render import (
    RenderedEmail,
    highlight_html,
    highlight_text,
    merge_highlights,
    render_confirmation,
    render_email,
    webhook_payload,
)
from tests.support.digests import candidate, sample_digest
from tests.support.golden import assert_golden

UNSUB = "https://dealwatch.example.org/u/tok"
PREFS = "https://dealwatch.example.org/p/tok"


def render(digest: Digest | None = None, **kwargs: Any) -> RenderedEmail:
    return render_email(
        digest or sample_digest(),
        subject_prefix="[dealwatch]",
        unsubscribe_url=UNSUB,
        preferences_url=PREFS,
        tz=kwargs.pop("tz", "Asia/Karachi"),
        list_name="Pakistan–Russia energy",
        **kwargs,
    )


def test_digest_golden() -> None:
    rendered = render()
    assert rendered.subject == "[dealwatch] Pakistan–Russia energy: 2 new stories (2026-11-01)"
    assert_golden(rendered.text, "emails/daily_digest.expected.txt")
    assert_golden(rendered.html, "emails/daily_digest.expected.html")


def test_heartbeat_golden() -> None:
    empty = build_digest(
        subscription_id="sub-1",
        period_key="2026-11-01",
        window_start=datetime(2026, 10, 31, 4, tzinfo=UTC),
        window_end=datetime(2026, 11, 1, 4, tzinfo=UTC),
        candidates=[],
    )
    rendered = render(empty)
    assert rendered.subject == "[dealwatch] Pakistan–Russia energy: nothing new (2026-11-01)"
    assert_golden(rendered.text, "emails/heartbeat.expected.txt")
    assert_golden(rendered.html, "emails/heartbeat.expected.html")


def test_confirmation_golden() -> None:
    rendered = render_confirmation(
        confirm_url="https://dealwatch.example.org/confirm?t=abc&x=<1>",
        list_name="Pakistan–Russia energy",
    )
    assert rendered.subject == "Please confirm your subscription to Pakistan–Russia energy"
    assert "https://dealwatch.example.org/confirm?t=abc&x=<1>" in rendered.text
    assert "confirm?t=abc&amp;x=&lt;1&gt;" in rendered.html
    assert_golden(rendered.text, "emails/confirmation.expected.txt")
    assert_golden(rendered.html, "emails/confirmation.expected.html")


def test_html_escapes_feed_text_and_marks_highlights() -> None:
    html = render().html
    assert "<b>route</b>" not in html
    assert "Pakistan Stream pipeline: &lt;b&gt;route&lt;/b&gt; finalised" in html
    assert "<mark>&lt;LNG&gt;</mark>" in html
    assert "&amp; more." in html
    assert UNSUB in html
    assert PREFS in html


def test_text_part_has_visible_links_and_local_times() -> None:
    rendered = render()
    assert f"Unsubscribe: {UNSUB}" in rendered.text
    # 07:00Z is 12:00 in Karachi (PKT, UTC+5).
    assert "1 Nov 2026, 12:00 PKT" in rendered.text
    assert "*<LNG>*" in rendered.text
    in_berlin = render(tz="Europe/Berlin")
    assert "1 Nov 2026, 08:00 CET" in in_berlin.text


def test_only_web_urls_become_links() -> None:
    digest = build_digest(
        subscription_id="s",
        period_key="k",
        window_start=datetime(2026, 10, 31, tzinfo=UTC),
        window_end=datetime(2026, 11, 1, tzinfo=UTC),
        candidates=[
            replace(
                candidate("x"), article=replace(candidate("x").article, url="javascript:alert(1)")
            )
        ],
    )
    rendered = render(digest)
    assert "javascript:" not in rendered.html
    assert "javascript:" not in rendered.text
    assert "<strong>Article x</strong>" in rendered.html


def test_footer_html_is_sanitised() -> None:
    rendered = render(
        footer_html='Ltd, 1 Road <script>alert(1)</script><a href="javascript:x">x</a>'
    )
    assert "<script>" not in rendered.html
    assert "javascript:" not in rendered.html
    assert "Ltd, 1 Road" in rendered.text


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        (((0, 3), (2, 5)), [(0, 5)]),
        (((4, 2), (8, 20)), [(8, 10)]),
        (((-3, 1), (1, 2)), [(0, 2)]),
        (((6, 8), (0, 1)), [(0, 1), (6, 8)]),
    ],
)
def test_merge_highlights(spans, expected) -> None:
    assert merge_highlights(10, spans) == expected


def test_highlight_helpers_escape_outside_and_inside_marks() -> None:
    assert str(highlight_html("a<b>c", [(1, 4)])) == "a<mark>&lt;b&gt;</mark>c"
    assert highlight_text("oil and gas", [(0, 3), (8, 11)]) == "*oil* and *gas*"


def test_digest_published_payload() -> None:
    digest = sample_digest()
    payload = webhook_payload(
        "digest.published",
        event_time=datetime(2026, 11, 1, 4, 0, 1, tzinfo=UTC),
        sequence=7,
        subscription_id="sub-1",
        digest=digest,
        digest_url="https://dealwatch.example.org/digests/1",
    )
    assert payload["type"] == "digest.published"
    assert payload["version"] == 1
    assert payload["timestamp"] == "2026-11-01T04:00:01Z"
    assert payload["sequence"] == 7
    data = payload["data"]
    assert data["period_key"] == "2026-11-01"
    assert data["window_start"] == "2026-10-31T04:00:00Z"
    assert [item["article_id"] for item in data["items"]] == ["a2", "a3"]
    assert data["items"][0]["rule_id"] == "lng"
    assert data["items"][0]["also_reported_by"] == ["APP", "Business Recorder", "Dawn"]
    assert data["truncated"] is False
    json.dumps(payload)


def test_digest_payload_is_thin_and_truncated() -> None:
    many = [
        candidate(f"a{i}", title="T" * 200, published=datetime(2026, 11, 1, tzinfo=UTC))
        for i in range(100)
    ]
    digest = build_digest(
        subscription_id="s",
        period_key="k",
        window_start=datetime(2026, 10, 31, tzinfo=UTC),
        window_end=datetime(2026, 11, 1, tzinfo=UTC),
        candidates=many,
        limits=DigestLimits(per_section=100),
    )
    payload = webhook_payload(
        "digest.published",
        event_time=datetime(2026, 11, 1, tzinfo=UTC),
        sequence=1,
        subscription_id="s",
        digest=digest,
    )
    assert 10 < len(payload["data"]["items"]) < 50
    assert payload["data"]["truncated"] is True
    assert len(json.dumps(payload, separators=(",", ":")).encode()) < 20_000


def test_match_created_payload() -> None:
    entry = replace(sample_digest().sections[0].entries[0], published=None)
    payload = webhook_payload(
        "match.created",
        event_time=datetime(2026, 11, 1, 4, tzinfo=UTC),
        sequence=1,
        subscription_id="sub-1",
        entry=entry,
        rule_id="lng",
        rule_name="LNG supply",
    )
    assert payload["data"]["rule"] == {"id": "lng", "name": "LNG supply"}
    assert payload["data"]["match"]["published"] is None
    assert payload["data"]["match"]["source"] == "Ministry of Energy (Petroleum Division)"
    with pytest.raises(ValueError, match="entry"):
        webhook_payload(
            "match.created",
            event_time=datetime(2026, 11, 1, tzinfo=UTC),
            sequence=1,
            subscription_id="s",
        )
