"""JSON APIs mapped to items by dotted paths, with a GDELT DOC 2.0 preset.

Options: ``items`` (path to the list, default ``articles``), ``title``, ``link``, ``date``,
``summary``, ``guid``, ``language``, ``date_format``, and ``preset = "gdelt"`` for the GDELT
field mapping. Every path is dotted (``data.items``, ``meta.0.url``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urljoin

from service.exceptions import SourceParseError
from service.sources.parsers import ParsedDocument, ParsedItem
from service.sources.parsers._dates import parse_date_text

__all__ = ["GDELT_DOC_API", "GDELT_OPTIONS", "JsonParser", "gdelt_url", "resolve_path"]

GDELT_DOC_API = "https://api.gdeltproject.org/api/v2/doc/doc"

GDELT_OPTIONS: Mapping[str, str] = {
    "items": "articles",
    "title": "title",
    "link": "url",
    "date": "seendate",
    "date_format": "%Y%m%dT%H%M%SZ",
    "language": "language",
}
"""GDELT ArtList fields. ``seendate`` is when GDELT saw the article, the best date it has."""

_DEFAULTS: Mapping[str, str] = {
    "items": "articles",
    "title": "title",
    "link": "url",
    "date": "seendate",
}

# GDELT reports languages by English name; articles carry ISO 639-1 codes.
_LANGUAGE_NAMES = {
    "english": "en",
    "russian": "ru",
    "urdu": "ur",
    "arabic": "ar",
    "chinese": "zh",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "turkish": "tr",
    "persian": "fa",
    "hindi": "hi",
}


def gdelt_url(query: str, *, timespan: str = "24h", maxrecords: int = 250) -> str:
    """Build a GDELT DOC 2.0 ArtList JSON query URL.

    Args:
        query: GDELT query text (words, ``"phrases"``, ``(a OR b)``, ``sourcelang:english``...).
        timespan: GDELT ``timespan`` such as ``24h``, ``1d`` or ``2weeks``.
        maxrecords: number of articles, clamped to GDELT's 1-250.
    """
    params = {
        "query": query,
        "mode": "ArtList",
        "format": "json",
        "maxrecords": str(min(max(maxrecords, 1), 250)),
        "timespan": timespan,
        "sort": "DateDesc",
    }
    return f"{GDELT_DOC_API}?{urlencode(params)}"


def resolve_path(data: Any, path: str) -> Any:
    """Follow a dotted path through dicts and lists; ``None`` when any step is missing."""
    current = data
    if not path:
        return current
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is None:
            return None
    return current


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


class JsonParser:
    """Parser for the ``json`` kind."""

    def parse(
        self, content: bytes, *, url: str, content_type: str, options: Mapping[str, Any]
    ) -> ParsedDocument:
        """Map a JSON document's list of records to items.

        An empty object (GDELT's "no results") yields no items.

        Raises:
            SourceParseError: the body is HTML (GDELT reports bad queries that way), not JSON,
                or the items path does not lead to a list.
        """
        mapping: dict[str, Any] = dict(_DEFAULTS)
        if options.get("preset") == "gdelt":
            mapping.update(GDELT_OPTIONS)
        mapping.update({k: v for k, v in options.items() if k != "preset"})
        head = content.lstrip()[:200]
        if "html" in content_type.lower() or head[:1] == b"<":
            snippet = " ".join(head.decode("utf-8", "replace").split())[:120]
            raise SourceParseError(f"expected JSON, got HTML: {snippet}")
        try:
            data = json.loads(content) if content.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise SourceParseError(f"invalid JSON: {exc}") from exc
        if data == {}:
            return ParsedDocument(items=(), parser_used="json")
        records = resolve_path(data, str(mapping.get("items") or ""))
        if records is None:
            records = []
        if not isinstance(records, list):
            raise SourceParseError(f"{mapping.get('items')!r} is not a list in the JSON document")
        date_format = _string(mapping.get("date_format")) or None
        items: list[ParsedItem] = []
        for record in records:
            if not isinstance(record, Mapping):
                continue
            link = _string(resolve_path(record, str(mapping.get("link") or "")))
            title = _string(resolve_path(record, str(mapping.get("title") or "")))
            if not link and not title:
                continue
            absolute = urljoin(url, link) if link else None
            guid_path = mapping.get("guid")
            guid = _string(resolve_path(record, str(guid_path))) if guid_path else ""
            summary_path = mapping.get("summary")
            summary = _string(resolve_path(record, str(summary_path))) if summary_path else ""
            language_path = mapping.get("language")
            language = _string(resolve_path(record, str(language_path))) if language_path else ""
            date_text = _string(resolve_path(record, str(mapping.get("date") or "")))
            items.append(
                ParsedItem(
                    guid=guid or absolute,
                    url=absolute,
                    title=title,
                    summary_html=summary,
                    published=parse_date_text(date_text, date_format) if date_text else None,
                    language=_LANGUAGE_NAMES.get(language.lower(), language.lower()[:2]),
                )
            )
        return ParsedDocument(items=tuple(items), parser_used="json")
