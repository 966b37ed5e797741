"""HTML listing pages turned into items with CSS selectors (selectolax / lexbor).

Options (from ``sources.toml``): ``item`` (required), ``title``, ``link``, ``date``,
``summary``, ``date_format``, ``follow`` and ``content``. Selectors apply inside each item;
a missing ``link`` selector means the item's first ``a[href]``, a missing ``title`` the link
text. ``follow`` and ``content`` are read by the poll job, which fetches each new item's page
and calls :func:`extract_main_text`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from service.exceptions import SourceParseError
from service.sources.parsers import ParsedDocument, ParsedItem
from service.sources.parsers._dates import parse_date_text
from service.sources.parsers.feed import decode_markup

__all__ = ["HtmlParser", "extract_main_text"]

_BOILERPLATE = (
    "script, style, noscript, template, nav, header, footer, aside, form, iframe, svg, "
    "[role=navigation], [role=banner], [role=contentinfo], .share, .social, .breadcrumb"
)
_MAIN_CANDIDATES = ("[itemprop=articleBody]", "article", "main", "[role=main]")


def _option(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    return " ".join((node.text(separator=" ") or "").split())


def _link_of(node: LexborNode | None) -> str | None:
    if node is None:
        return None
    href = node.attributes.get("href")
    if not href:
        anchor = node.css_first("a[href]")
        href = anchor.attributes.get("href") if anchor is not None else None
    return href.strip() if href and href.strip() else None


def _date_text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    for attribute in ("datetime", "content", "title"):
        value = node.attributes.get(attribute)
        if value:
            return value
    return _text(node)


class HtmlParser:
    """Parser for the ``html`` kind."""

    def parse(
        self, content: bytes, *, url: str, content_type: str, options: Mapping[str, Any]
    ) -> ParsedDocument:
        """Extract items from a listing page.

        Raises:
            SourceParseError: no ``item`` selector, an invalid selector, or no item found.
        """
        item_selector = _option(options, "item")
        if item_selector is None:
            raise SourceParseError("html sources need an 'item' selector")
        tree = LexborHTMLParser(decode_markup(content, content_type))
        base = url
        base_node = tree.css_first("base[href]")
        if base_node is not None and base_node.attributes.get("href"):
            base = urljoin(url, base_node.attributes["href"] or "")
        title_sel = _option(options, "title")
        link_sel = _option(options, "link")
        date_sel = _option(options, "date")
        summary_sel = _option(options, "summary")
        date_format = _option(options, "date_format")
        try:
            nodes = tree.css(item_selector)
        except Exception as exc:  # lexbor raises bare Exception
            raise SourceParseError(f"invalid selector {item_selector!r}: {exc}") from exc
        items: list[ParsedItem] = []
        seen: set[str] = set()
        for node in nodes:
            link_node = node.css_first(link_sel) if link_sel else node
            href = _link_of(link_node)
            title_node = node.css_first(title_sel) if title_sel else link_node
            title = _text(title_node)
            if not href and not title:
                continue
            link = urljoin(base, href) if href else None
            if link is not None:
                if link in seen:
                    continue
                seen.add(link)
            date_node = node.css_first(date_sel) if date_sel else None
            summary_node = node.css_first(summary_sel) if summary_sel else None
            items.append(
                ParsedItem(
                    guid=link,
                    url=link,
                    title=title,
                    summary_html=(summary_node.html or "") if summary_node is not None else "",
                    published=parse_date_text(_date_text(date_node), date_format),
                )
            )
        if not items:
            raise SourceParseError(f"no items matched {item_selector!r}")
        lang_node = tree.css_first("html[lang]")
        language = (lang_node.attributes.get("lang") or "") if lang_node is not None else ""
        return ParsedDocument(
            items=tuple(items),
            title=_text(tree.css_first("title")),
            language=language.split("-")[0].lower(),
            parser_used="selectolax",
        )


def extract_main_text(html: bytes, *, selector: str | None = None, content_type: str = "") -> str:
    """Return the main text of an article page, paragraphs separated by blank lines.

    Args:
        html: the article page.
        selector: the source's ``content`` option, tried first when given.
        content_type: the HTTP ``Content-Type`` header, for its charset.

    Navigation, headers, footers and scripts are dropped; then the explicit selector, an
    ``articleBody``/``article``/``main`` element, or else the element holding the most
    paragraph text is used.
    """
    tree = LexborHTMLParser(decode_markup(html, content_type))
    for junk in tree.css(_BOILERPLATE):
        junk.decompose()
    candidates = ((selector,) if selector else ()) + _MAIN_CANDIDATES
    for candidate in candidates:
        try:
            node = tree.css_first(candidate)
        except Exception:  # an invalid admin selector falls through
            continue
        if node is not None and len(_text(node)) > 80:
            return _paragraphs(node)
    scores: defaultdict[int, int] = defaultdict(int)
    parents: dict[int, LexborNode] = {}
    for paragraph in tree.css("p"):
        parent = paragraph.parent
        if parent is None:
            continue
        key = parent.mem_id
        parents[key] = parent
        scores[key] += len(_text(paragraph))
    if scores:
        best = max(scores, key=scores.__getitem__)
        return _paragraphs(parents[best])
    body = tree.body
    return _text(body)


def _paragraphs(node: LexborNode) -> str:
    blocks = [_text(p) for p in node.css("p, h2, h3, li, blockquote")]
    blocks = [block for block in blocks if block]
    return "\n\n".join(blocks) if blocks else _text(node)
