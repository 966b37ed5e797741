"""RSS 0.9x/1.0/2.0, Atom, RDF and JSON Feed.

fastfeedparser (Rust core, 50-130x faster than feedparser on our corpus) parses first; feedparser
is the fallback for what it rejects, and :data:`PARSE_COUNTS` records which one answered.

Before either library sees the bytes, :func:`prepare_xml` makes the document safe and sane: the
DOCTYPE (with any entity declarations, the vehicle of billion-laughs and XXE) is removed, HTML
named entities become numeric references (lxml's recover mode otherwise truncates the text at
an undeclared entity), and the body is re-encoded as UTF-8 whatever its declaration claims.
"""

from __future__ import annotations

import calendar
import codecs
import contextlib
import html.entities
import io
import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import fastfeedparser
import feedparser

from service.exceptions import SourceParseError
from service.sources.parsers import ParsedDocument, ParsedItem

__all__ = ["PARSE_COUNTS", "FeedParser", "decode_markup", "prepare_xml"]

PARSE_COUNTS: Counter[str] = Counter()
"""Documents parsed per library (``fastfeedparser``, ``feedparser``) and ``failed``.

Process-wide; the service exports it as a Prometheus counter.
"""

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_XML_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# A DOCTYPE with an internal subset ends at "]>", one without at the first ">".
_DOCTYPE = re.compile(r"<!DOCTYPE(?:[^\[>]*\[.*?\]\s*>|[^>]*>)", re.IGNORECASE | re.DOTALL)
_ENTITY_DECL = re.compile(r"<!ENTITY", re.IGNORECASE)
# What both of the above start with ("D" and "E" have no case partners outside ASCII): most
# feeds have neither, and this one scan costs two thirds of the two.
_DECLARATION_START = re.compile("<![DdEe]")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
# The five XML entities are left to the XML parser; excluding them in the pattern spares a
# Python call per "&lt;" of an escaped-HTML description (tens of thousands per feed).
_NAMED_ENTITY = re.compile(
    rf"&(?!(?:{'|'.join(sorted(_XML_ENTITIES))});)([A-Za-z][A-Za-z0-9]{{1,31}});"
)
_TTL = re.compile(r"<ttl>\s*(\d{1,6})\s*</ttl>", re.IGNORECASE)
_CHANNEL_LANGUAGE = re.compile(
    r"<(?:dc:)?language>\s*([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)\s*</", re.IGNORECASE
)
_XML_LANG = re.compile(r"""<(?:feed|rss|rdf:RDF|channel)\b[^>]*\bxml:lang=["']([^"']+)""")


_HAS_YEAR = re.compile(r"\d{4}")
# An absolute http(s) URL that urlsplit and urlunparse give back as it is: lower-case scheme,
# a host (and port) without brackets, and nothing that they strip, split off or drop (spaces
# and control characters, ";" parameters, "?" and "#"). Most item links are such URLs, and
# this match costs a tenth of urljoin. The path is printable ASCII but "#" (x23), ";" (x3b) and
# "?" (x3f), spelled as ranges: a class up to U+10FFFF takes 2 ms to compile.
_PLAIN_LINK = re.compile(r"https?://[A-Za-z0-9.:-]+(?:/[!-\x22\x24-\x3a\x3c-\x3e\x40-~]*)?")


def _install_date_guard() -> None:
    """Make fastfeedparser refuse dates without a year.

    Its last-resort date parser (dateutil) fills missing fields from the wall clock, so an EIA
    ``<pubDate>13:00:00 EST</pubDate>`` became "today at 18:00 UTC", a plausible and wrong
    date. The Rust core looks the Python function up at call time, so wrapping the module
    attribute covers both paths; ``tests/unit/sources/test_feed.py`` fails if the hook moves.
    """
    main = getattr(fastfeedparser, "main", None)
    original = getattr(main, "_parse_date", None)
    if main is None or original is None or getattr(original, "_dealwatch_guard", False):
        return

    def parse_date(value: str) -> str | None:
        if not value or not _HAS_YEAR.search(value):
            return None
        result: str | None = original(value)
        return result

    parse_date._dealwatch_guard = True  # type: ignore[attr-defined]
    main._parse_date = parse_date


_install_date_guard()


def _codec(name: bytes | str | None) -> str | None:
    if not name:
        return None
    label = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    try:
        return codecs.lookup(label.strip().lower()).name
    except LookupError:
        return None


def decode_markup(content: bytes, content_type: str = "") -> str:
    """Decode an XML or HTML body whose declared encoding may be wrong.

    Valid UTF-8 wins over any declaration: a multi-byte UTF-8 sequence is vanishingly rare in
    genuine single-byte text, while "declared ISO-8859-1, actually UTF-8" is the most common lie
    on the web. Otherwise the BOM, the XML declaration or ``<meta charset>``, the HTTP charset
    and finally windows-1252 are tried in that order.

    Args:
        content: the raw body.
        content_type: the HTTP ``Content-Type`` header, for its charset.
    """
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if content.startswith(bom):
            return content[len(bom) :].decode(codec, "replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    head = content[:2048]
    candidates: list[str | None] = []
    declared = _XML_ENCODING.search(head) if _XML_DECL.match(head) else None
    candidates.append(_codec(declared.group(1)) if declared else None)
    meta = _META_CHARSET.search(head)
    candidates.append(_codec(meta.group(1)) if meta else None)
    http = _HTTP_CHARSET.search(content_type)
    candidates.append(_codec(http.group(1)) if http else None)
    for candidate in candidates:
        if candidate and candidate not in {"utf-8", "ascii"}:
            try:
                return content.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    return content.decode("cp1252", "replace")


def _numeric_entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    codepoint = html.entities.name2codepoint.get(name)
    if codepoint is None:
        text = html.entities.html5.get(name + ";")
        if text is None:
            # An unknown entity would make lxml drop the rest of the text node; keep it literal.
            return f"&amp;{name};"
        return "".join(f"&#{ord(ch)};" for ch in text)
    return f"&#{codepoint};"


def prepare_xml(content: bytes, content_type: str = "") -> bytes:
    """Return a safe UTF-8 copy of an XML feed body.

    Removes leading whitespace and the XML declaration (re-added as UTF-8), removes any
    DOCTYPE (entity declarations are never honoured, so billion-laughs and external entities
    cannot expand or read files), and rewrites HTML named entities as numeric references.
    """
    text = decode_markup(content, content_type).lstrip("\ufeff \t\r\n")
    text = _XML_DECL_TEXT.sub("", text, count=1).lstrip()
    if _DECLARATION_START.search(text) is not None:
        text = _DOCTYPE.sub("", text, count=1)
        if _ENTITY_DECL.search(text[:65536]):
            # A second DOCTYPE or a stray declaration: drop every one rather than risk expansion.
            text = re.sub(r"<!ENTITY[^>]*>", "", text, flags=re.IGNORECASE)
    text = _NAMED_ENTITY.sub(_numeric_entity, text)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + text.encode("utf-8")


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _struct_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _absolute(link: Any, base: str) -> str | None:
    if not isinstance(link, str):
        return None
    stripped: str = link.strip()
    if not stripped:
        return None
    if _PLAIN_LINK.fullmatch(stripped) is not None:
        # urljoin gives such a link back unchanged, whatever the base, once it has parsed the
        # base (urlsplit caches it), which raises for a base that is no URL.
        urlsplit(base)
        return stripped
    return urljoin(base, stripped)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _content_value(entry: Mapping[str, Any]) -> str:
    content = entry.get("content")
    if isinstance(content, list) and content:
        first = content[0]
        if isinstance(first, Mapping):
            return _text(first.get("value"))
    return ""


def _channel_hints(xml: bytes) -> tuple[str, int | None]:
    head = xml[:16384].decode("utf-8", "replace")
    items_start = min(
        (pos for pos in (head.find("<item"), head.find("<entry")) if pos >= 0), default=len(head)
    )
    channel = head[:items_start]
    language = _CHANNEL_LANGUAGE.search(channel) or _XML_LANG.search(channel)
    ttl = _TTL.search(channel)
    return (language.group(1) if language else ""), (int(ttl.group(1)) if ttl else None)


def _item(
    entry: Mapping[str, Any],
    base: str,
    language: str,
    *,
    summary: str,
    published: datetime | None,
    updated: datetime | None,
) -> ParsedItem:
    """One entry of either parser; they differ only in where summary and dates are found."""
    content = _content_value(entry)
    return ParsedItem(
        guid=_text(entry.get("id")) or None,
        url=_absolute(entry.get("link"), base),
        title=_text(entry.get("title")),
        summary_html=summary,
        content_html="" if content == summary else content,
        published=published,
        updated=updated,
        author=_text(entry.get("author")),
        language=language,
    )


class FeedParser:
    """Parser for the ``feed`` kind."""

    def parse(
        self, content: bytes, *, url: str, content_type: str, options: Mapping[str, Any]
    ) -> ParsedDocument:
        """Parse an RSS, Atom, RDF or JSON Feed document.

        Raises:
            SourceParseError: the body is empty, HTML, or not a feed either library accepts.
        """
        stripped = content.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not stripped:
            PARSE_COUNTS["failed"] += 1
            raise SourceParseError("empty document")
        is_json = stripped.startswith((b"{", b"["))
        body = stripped if is_json else prepare_xml(content, content_type)
        try:
            document = self._fast(body, url)
        except Exception as fast_exc:  # the fast parser raises many types
            if is_json:
                PARSE_COUNTS["failed"] += 1
                raise SourceParseError(f"not a JSON Feed: {fast_exc}") from fast_exc
            try:
                document = self._fallback(body, url)
            except SourceParseError as exc:
                PARSE_COUNTS["failed"] += 1
                raise SourceParseError(f"{exc.message} (fastfeedparser: {fast_exc})") from exc
        else:
            if not document.items and not is_json:
                # fastfeedparser accepts RSS 0.90 and some namespaced variants but finds no
                # items in them; feedparser knows those dialects.
                with contextlib.suppress(SourceParseError):
                    document = self._fallback(body, url)
        PARSE_COUNTS[document.parser_used] += 1
        return document

    def _fast(self, body: bytes, url: str) -> ParsedDocument:
        parsed = fastfeedparser.parse(body, include_tags=False, include_media=False)
        feed = parsed.get("feed") or {}
        language, ttl = ("", None) if body.startswith(b"{") else _channel_hints(body)
        language = _text(feed.get("language")) or language
        items = [
            _item(
                entry,
                url,
                language,
                summary=_text(entry.get("description")),
                published=_aware(entry.get("published")),
                updated=_aware(entry.get("updated")),
            )
            for entry in parsed.get("entries") or []
        ]
        return ParsedDocument(
            items=tuple(items),
            title=_text(feed.get("title")),
            language=language,
            ttl_minutes=ttl,
            parser_used="fastfeedparser",
        )

    def _fallback(self, body: bytes, url: str) -> ParsedDocument:
        # A file-like object: feedparser treats bytes that look like a path as a file to open.
        parsed = feedparser.parse(
            io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False
        )
        if not parsed.get("version") or not parsed.get("entries"):
            reason = parsed.get("bozo_exception") or "no feed items found"
            raise SourceParseError(f"not a feed: {reason}")
        feed = parsed.get("feed") or {}
        language = _text(feed.get("language"))
        ttl_text = _text(feed.get("ttl"))
        items = [
            _item(
                entry,
                url,
                language,
                summary=_text(entry.get("summary")),
                published=_struct_time(entry.get("published_parsed")),
                updated=_struct_time(entry.get("updated_parsed")),
            )
            for entry in parsed["entries"]
        ]
        return ParsedDocument(
            items=tuple(items),
            title=_text(feed.get("title")),
            language=language,
            ttl_minutes=int(ttl_text) if ttl_text.isdigit() else None,
            parser_used="feedparser",
        )
