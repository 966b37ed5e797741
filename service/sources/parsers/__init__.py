"""One parser per source kind behind one protocol.

A parser turns fetched bytes into :class:`ParsedItem` values. It does no I/O: following links
(HTML ``follow``) is the poll job's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.exceptions import SourceParseError

__all__ = [
    "PARSERS",
    "ParsedDocument",
    "ParsedItem",
    "Parser",
    "parser_for",
]


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """One entry as the source published it (links absolute, HTML not yet cleaned).

    ``published`` and ``updated`` are timezone-aware when the source gave a parseable date,
    else ``None``; normalisation decides what to do with missing or absurd dates.
    """

    guid: str | None
    url: str | None
    title: str
    summary_html: str = ""
    content_html: str = ""
    published: datetime | None = None
    updated: datetime | None = None
    author: str = ""
    language: str = ""


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """What one fetched document yielded.

    ``parser_used`` names the library that produced the items (``fastfeedparser``,
    ``feedparser``, ``selectolax``, ``json``) so the caller can count fallbacks.
    """

    items: tuple[ParsedItem, ...]
    title: str = ""
    language: str = ""
    ttl_minutes: int | None = None
    parser_used: str = ""


class Parser(Protocol):
    """Turns a fetched body into items."""

    def parse(
        self, content: bytes, *, url: str, content_type: str, options: Mapping[str, Any]
    ) -> ParsedDocument:
        """Parse ``content`` fetched from ``url``.

        Raises:
            SourceParseError: the body is not a document of this kind.
        """
        ...


def _registry() -> dict[str, Parser]:
    from service.sources.parsers.feed import FeedParser
    from service.sources.parsers.html import HtmlParser
    from service.sources.parsers.json import JsonParser

    return {"feed": FeedParser(), "html": HtmlParser(), "json": JsonParser()}


PARSERS: dict[str, Parser] = _registry()


def parser_for(kind: str) -> Parser:
    """Return the parser registered for a source ``kind``.

    Raises:
        SourceParseError: no parser handles ``kind``.
    """
    try:
        return PARSERS[kind]
    except KeyError as exc:
        raise SourceParseError(f"unknown source kind {kind!r}") from exc
