"""Rendering digests: e-mail text and HTML from Jinja2 templates, and webhook payloads.

Pure: no clock reads (event times are passed in) and no I/O beyond loading the packaged
templates. HTML templates autoescape; undefined template variables are errors
(``StrictUndefined``). Article text is plain text by contract (:class:`alerts.types.Article`),
so it is escaped, never trusted; the only HTML that comes from outside the templates (an
operator's footer) is sanitised with nh3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
import nh3
from markupsafe import Markup, escape

from alerts.digest import Digest, DigestEntry

EventType = Literal["match.created", "digest.published"]
EVENT_TYPES: tuple[EventType, ...] = ("match.created", "digest.published")
PAYLOAD_VERSION = 1
TIER_LABELS: Mapping[str, str] = {
    "official": "Official",
    "news": "News",
    "aggregator": "Aggregator",
}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("alerts", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message: subject line, plain-text part and HTML part."""

    subject: str
    text: str
    html: str


def merge_highlights(
    text_length: int, highlights: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Clip highlight spans to the text, drop empty ones and merge overlaps, in order."""
    spans = sorted(
        (max(0, start), min(text_length, end))
        for start, end in highlights
        if min(text_length, end) > max(0, start)
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight_html(text: str, highlights: Sequence[tuple[int, int]]) -> Markup:
    """Return ``text`` escaped, with each highlight span wrapped in ``<mark>``."""
    parts: list[str] = []
    cursor = 0
    for start, end in merge_highlights(len(text), highlights):
        parts.append(escape(text[cursor:start]))
        parts.append(Markup("<mark>%s</mark>") % text[start:end])
        cursor = end
    parts.append(escape(text[cursor:]))
    return Markup("").join(parts)


def highlight_text(text: str, highlights: Sequence[tuple[int, int]]) -> str:
    """Return ``text`` with each highlight span wrapped in asterisks (plain-text emphasis)."""
    parts: list[str] = []
    cursor = 0
    for start, end in merge_highlights(len(text), highlights):
        parts.append(text[cursor:start])
        parts.append(f"*{text[start:end]}*")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def format_local(moment: datetime | None, tz: ZoneInfo) -> str:
    """Format an instant in the subscriber's zone, e.g. ``27 Nov 2026, 19:05 PKT``."""
    if moment is None:
        return ""
    local = moment.astimezone(tz)
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def _entry_view(entry: DigestEntry, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "title": entry.title,
        # Feed links are data: only web URLs become links (no javascript: or data: hrefs).
        "url": entry.url if entry.url.startswith(("https://", "http://")) else "",
        "source_name": entry.source_name,
        "tier": entry.tier,
        "tier_label": TIER_LABELS.get(entry.tier, entry.tier.title()),
        "published": format_local(entry.published, tz),
        "snippet_text": highlight_text(entry.snippet, entry.highlights),
        "snippet_html": highlight_html(entry.snippet, entry.highlights),
        "also_reported_by": ", ".join(entry.also_reported_by),
    }


def _period_label(digest: Digest, tz: ZoneInfo) -> str:
    start = digest.window_start.astimezone(tz)
    end = digest.window_end.astimezone(tz)
    return f"{start:%d %b %Y %H:%M} – {end:%d %b %Y %H:%M} {end.tzname()}"


def digest_subject(digest: Digest, *, subject_prefix: str, list_name: str) -> str:
    """Return the subject line of a digest e-mail."""
    prefix = f"{subject_prefix} " if subject_prefix else ""
    if digest.total == 0:
        return f"{prefix}{list_name}: nothing new ({digest.period_key})"
    noun = "story" if digest.total == 1 else "stories"
    return f"{prefix}{list_name}: {digest.total} new {noun} ({digest.period_key})"


def render_email(
    digest: Digest,
    *,
    subject_prefix: str,
    unsubscribe_url: str,
    preferences_url: str,
    tz: str = "UTC",
    list_name: str = "dealwatch digest",
    footer_html: str = "",
) -> RenderedEmail:
    """Render a digest as a multipart-ready e-mail (subject, text and HTML).

    Args:
        digest: the digest to render; an empty one renders as a "nothing new" heartbeat.
        subject_prefix: prepended to the subject (for example ``[dealwatch]``).
        unsubscribe_url: the one-click unsubscribe page, shown visibly in both parts (EM-17).
        preferences_url: the signed preferences page.
        tz: the subscriber's IANA zone; every time is shown in it.
        list_name: the human-readable list name.
        footer_html: operator-provided HTML (postal address...), sanitised with nh3; its text
            content is used in the plain part.
    """
    zone = ZoneInfo(tz)
    footer = nh3.clean(footer_html) if footer_html else ""
    context = {
        "list_name": list_name,
        "period_key": digest.period_key,
        "period_label": _period_label(digest, zone),
        "total": digest.total,
        "omitted": digest.omitted,
        "sections": [
            {
                "rule_name": section.rule_name,
                "entries": [_entry_view(entry, zone) for entry in section.entries],
            }
            for section in digest.sections
        ],
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "footer_html": Markup(footer),
        "footer_text": nh3.clean(footer, tags=set()) if footer else "",
    }
    return RenderedEmail(
        subject=digest_subject(digest, subject_prefix=subject_prefix, list_name=list_name),
        text=_ENV.get_template("digest.txt").render(context),
        html=_ENV.get_template("digest.html").render(context),
    )


def render_confirmation(
    *,
    confirm_url: str,
    list_name: str = "dealwatch digest",
    subject_prefix: str = "",
    expires_hours: int = 72,
) -> RenderedEmail:
    """Render the double opt-in e-mail (the link opens a page whose button confirms).

    Args:
        confirm_url: the landing page carrying the single-use token.
        list_name: the list being subscribed to.
        subject_prefix: prepended to the subject.
        expires_hours: how long the link stays valid, shown to the reader.
    """
    prefix = f"{subject_prefix} " if subject_prefix else ""
    context = {"confirm_url": confirm_url, "list_name": list_name, "expires_hours": expires_hours}
    return RenderedEmail(
        subject=f"{prefix}Please confirm your subscription to {list_name}",
        text=_ENV.get_template("confirm.txt").render(context),
        html=_ENV.get_template("confirm.html").render(context),
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_payload(entry: DigestEntry) -> dict[str, Any]:
    """Return the thin JSON form of a digest entry (no snippet HTML, no body)."""
    return {
        "article_id": entry.article_id,
        "story_id": entry.story_id,
        "title": entry.title,
        "url": entry.url,
        "source": entry.source_name,
        "tier": entry.tier,
        "published": _iso(entry.published),
        "also_reported_by": list(entry.also_reported_by),
    }


def webhook_payload(
    event_type: EventType,
    *,
    event_time: datetime,
    sequence: int,
    subscription_id: str,
    digest: Digest | None = None,
    entry: DigestEntry | None = None,
    rule_id: str = "",
    rule_name: str = "",
    digest_url: str | None = None,
    max_items: int = 50,
    max_item_bytes: int = 16_000,
) -> dict[str, Any]:
    """Return the versioned webhook payload of an event (Standard Webhooks shape, WH-05).

    ``match.created`` needs ``entry`` (plus ``rule_id``/``rule_name``); ``digest.published``
    needs ``digest`` and lists at most ``max_items`` entries whose compact JSON fits in
    ``max_item_bytes`` (``truncated`` tells receivers to fetch ``digest_url`` for the rest),
    which keeps bodies under the spec's 20 KB guideline.

    Args:
        event_type: ``match.created`` or ``digest.published``.
        event_time: when the event happened (timezone-aware).
        sequence: increasing per subscription, so receivers can reorder (WH-16).
        subscription_id: the subscription the event belongs to.
        digest: the published digest.
        entry: the matched story.
        rule_id: the rule that matched (``match.created``).
        rule_name: its display name.
        digest_url: where the full digest can be fetched, if anywhere.
        max_items: cap on listed digest items.
        max_item_bytes: cap on the encoded size of the listed items.

    Raises:
        ValueError: unknown event type or missing ``digest``/``entry``.
    """
    data: dict[str, Any]
    if event_type == "match.created":
        if entry is None:
            raise ValueError("match.created needs an entry")
        data = {
            "subscription_id": subscription_id,
            "rule": {"id": rule_id, "name": rule_name},
            "match": entry_payload(entry),
        }
    elif event_type == "digest.published":
        if digest is None:
            raise ValueError("digest.published needs a digest")
        items: list[dict[str, Any]] = []
        budget = max_item_bytes
        views = (
            {"rule_id": section.rule_id, **entry_payload(item)}
            for section in digest.sections
            for item in section.entries
        )
        for view in views:
            budget -= len(json.dumps(view, separators=(",", ":"), ensure_ascii=False).encode())
            if budget < 0 or len(items) == max_items:
                break
            items.append(view)
        data = {
            "subscription_id": subscription_id,
            "period_key": digest.period_key,
            "window_start": _iso(digest.window_start),
            "window_end": _iso(digest.window_end),
            "total": digest.total,
            "items": items,
            "truncated": len(items) < digest.total or digest.omitted > 0,
            "url": digest_url,
        }
    else:
        raise ValueError(f"unknown event type: {event_type!r}")
    return {
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "timestamp": _iso(event_time),
        "sequence": sequence,
        "data": data,
    }
