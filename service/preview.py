"""``dealwatch fetch``: what a source would yield, without storing anything."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from alerts.normalise import html_to_text
from service.exceptions import SourceParseError
from service.runtime import make_http_client
from service.settings import HttpSettings, Settings
from service.sources.fetcher import Fetched, FetchOptions, fetch
from service.sources.parsers import parser_for

__all__ = ["PreviewItem", "fetch_options_from", "parse_selectors", "preview_source"]


@dataclass(frozen=True, slots=True)
class PreviewItem:
    """One item as ``dealwatch fetch`` shows it."""

    title: str
    link: str | None
    published: datetime | None
    summary: str

    def as_json(self) -> dict[str, Any]:
        """The item in the ``--json`` output."""
        return {
            "title": self.title,
            "link": self.link,
            "published": self.published.isoformat() if self.published else None,
            "summary": self.summary,
        }


def fetch_options_from(http: HttpSettings) -> FetchOptions:
    """Fetch limits from the ``[http]`` settings."""
    return FetchOptions(
        timeout_seconds=http.timeout_seconds,
        max_bytes=http.max_body_bytes,
        max_redirects=http.max_redirects,
        allow_loopback=http.allow_loopback,
        min_host_interval_seconds=http.min_host_interval_seconds,
        per_host_concurrency=http.per_host_concurrency,
        user_agent=http.user_agent,
    )


def parse_selectors(values: Sequence[str]) -> dict[str, Any]:
    """Turn ``--selector`` values into parser options.

    ``key=value`` sets an option (``title=h2 a``, ``date_format=%d-%m-%Y``,
    ``items=data.results``, ``follow=true``); a value without ``=`` is the item selector.

    Raises:
        SourceParseError: an empty key.
    """
    options: dict[str, Any] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            options["item"] = value.strip()
            continue
        key = key.strip()
        if not key:
            raise SourceParseError(f"selector {value!r} has no name before '='")
        options[key] = {"true": True, "false": False}.get(rest.strip().lower(), rest.strip())
    return options


def _guess_kind(url: str, content_type: str, options: Mapping[str, Any]) -> tuple[str, str]:
    host = (urlsplit(url).hostname or "").lower()
    if host == "api.gdeltproject.org":
        return "json", "gdelt"
    lowered = content_type.lower()
    if "json" in lowered and "feed+json" not in lowered:
        return "json", ""
    if "item" in options and "html" in lowered:
        return "html", ""
    return "feed", ""


async def preview_source(
    settings: Settings, url: str, *, kind: str | None, options: Mapping[str, Any]
) -> list[PreviewItem]:
    """Fetch and parse ``url`` the way the poller would, and return its items.

    Args:
        settings: the process settings (HTTP limits and the SSRF switch).
        url: the source URL.
        kind: ``feed``, ``html`` or ``json``; guessed from the response when ``None``.
        options: parser options (CSS selectors, JSON paths).

    Raises:
        FetchError, UnsafeURLError, SourceParseError: the URL cannot be fetched or parsed.
    """
    async with make_http_client(settings.http) as client:
        result = await fetch(
            client,
            url,
            etag=None,
            last_modified=None,
            options=fetch_options_from(settings.http),
        )
    if not isinstance(result, Fetched):
        raise SourceParseError("the server answered 304 Not Modified to a plain GET")
    parser_options = dict(options)
    if kind is None:
        kind, preset = _guess_kind(result.final_url, result.content_type, parser_options)
        if preset:
            parser_options.setdefault("preset", preset)
    document = parser_for(kind).parse(
        result.content,
        url=result.final_url,
        content_type=result.content_type,
        options=parser_options,
    )
    return [
        PreviewItem(
            title=html_to_text(item.title),
            link=item.url,
            published=item.published,
            summary=html_to_text(item.summary_html or item.content_html),
        )
        for item in document.items
    ]
