from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.exceptions import SourceParseError
from service.sources.parsers import PARSERS, ParsedDocument, parser_for
from service.sources.parsers.feed import (
    _NAMED_ENTITY,
    PARSE_COUNTS,
    _absolute,
    _numeric_entity,
    decode_markup,
    prepare_xml,
)

FEEDS = Path(__file__).parents[2] / "data" / "feeds"


def parse(
    content: bytes, url: str = "https://example.org/feed/", ctype: str = ""
) -> ParsedDocument:
    return parser_for("feed").parse(content, url=url, content_type=ctype, options={})


def fixture(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def test_registry_has_three_kinds_and_refuses_others() -> None:
    assert set(PARSERS) == {"feed", "html", "json"}
    with pytest.raises(SourceParseError, match="unknown source kind"):
        parser_for("pdf")


@pytest.mark.parametrize(
    ("name", "count", "first_title"),
    [
        ("kremlin_en_atom.xml", 3, "Meeting with Prime Minister of Pakistan Shehbaz Sharif"),
        ("government_ru_rss.xml", 3, "Alexei Overchuk co-chairs meeting of Russian-Pakistani"),
        ("eia_twip_rss.xml", 5, "U.S. crude oil inventories fall as refinery runs rise"),
        ("iaea_news_rss.xml", 3, "IAEA Reviews Pakistan's Nuclear Power Plant"),
        ("app_wordpress_rss.xml", 3, "Pakistan, Russia agree to boost trade in energy sector"),
        ("dawn_business_rss.xml", 3, "Russia, Pakistan agree to boost trade"),
        ("tribune_business_rss.xml", 3, "Pakistan, Russia discuss barter mechanism"),
        ("brecorder_latest_rss.xml", 3, "Pakistan, Russia sign protocol amending"),
        ("tass_rss_v2.xml", 2, "Putin, Sharif meet on sidelines"),
        ("google_news_rss.xml", 2, "Pakistan, Russia sign protocol to amend"),
        ("un_news_rss091.xml", 1, "Energy transition must be just"),
        ("opec_rdf.xml", 1, "37th OPEC and non-OPEC Ministerial Meeting"),
        ("energy_jsonfeed.json", 2, "PSGP protocol signed"),
    ],
)
def test_catalogue_fixtures_parse(name: str, count: int, first_title: str) -> None:
    document = parse(fixture(name))
    assert len(document.items) == count
    assert document.items[0].title.startswith(first_title)
    assert all(item.url and item.url.startswith(("http://", "https://")) for item in document.items)


def test_atom_dates_and_relative_links() -> None:
    document = parse(fixture("kremlin_en_atom.xml"), url="http://en.kremlin.ru/events/all/feed")
    first, _, third = document.items
    assert first.published == datetime(2024, 7, 3, 14, 40, tzinfo=UTC)
    assert first.updated == datetime(2024, 7, 3, 14, 45, tzinfo=UTC)
    assert "Pakistan Stream" in first.content_html
    assert third.url == "http://en.kremlin.ru/events/president/news/74420"
    assert document.language == "en"


def test_rss_channel_ttl_and_language() -> None:
    document = parse(fixture("government_ru_rss.xml"))
    assert document.ttl_minutes == 60
    assert document.language == "en"
    assert document.items[0].published == datetime(2024, 6, 13, 13, 30, tzinfo=UTC)


def test_invalid_dates_become_none_instead_of_invented_ones() -> None:
    items = parse(fixture("eia_twip_rss.xml")).items
    assert items[0].published == datetime(2024, 6, 12, 18, 0, tzinfo=UTC)
    # "13:00:00 EST" has no date at all; dateutil would fill in today's date.
    assert items[3].published is None


def test_missing_pubdate_is_none() -> None:
    assert all(item.published is None for item in parse(fixture("iaea_news_rss.xml")).items)


def test_wordpress_blank_lines_before_declaration_and_content_encoded() -> None:
    assert fixture("app_wordpress_rss.xml").startswith(b"\n\n<?xml")
    item = parse(fixture("app_wordpress_rss.xml")).items[0]
    assert item.guid == "https://www.app.com.pk/?p=1734501"
    assert item.author == "APP"
    assert "Pakistan Stream Gas Pipeline" in item.content_html
    assert item.summary_html.startswith("MOSCOW, June 14 (APP)")


def test_html_entities_without_dtd_survive() -> None:
    items = parse(fixture("tribune_business_rss.xml")).items
    assert items[2].title == "Café owners protest … new tax"
    assert "officials’ statement" in items[0].summary_html
    assert "\u00a0Pakistan" in items[0].summary_html


def test_rss091_doctype_is_dropped_not_fetched() -> None:
    document = parse(fixture("un_news_rss091.xml"))
    assert "—" in document.items[0].summary_html


def test_utf8_body_declared_latin1_is_read_as_utf8() -> None:
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>Газпром и Пакистан</title><link>https://e.org/1</link></item>"
        "</channel></rss>"
    ).encode()
    assert parse(body, ctype="text/xml; charset=iso-8859-1").items[0].title == "Газпром и Пакистан"


def test_cp1251_body_declared_utf8_over_http_uses_xml_declaration() -> None:
    body = (
        '<?xml version="1.0" encoding="windows-1251"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>Роснефть</title><link>https://e.org/1</link></item></channel></rss>"
    ).encode("cp1251")
    assert parse(body, ctype="application/rss+xml; charset=utf-8").items[0].title == "Роснефть"


def test_decode_markup_falls_back_to_cp1252() -> None:
    assert decode_markup(b"caf\xe9 \x93quoted\x94") == "café “quoted”"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>Laughs</title>
<item><title>boom &lol9;</title><link>https://e.org/1</link><description>&lol9;</description></item>
</channel></rss>"""


def test_billion_laughs_never_expands() -> None:
    document = parse(BILLION_LAUGHS)
    item = document.items[0]
    assert "lollol" not in item.title + item.summary_html
    assert len(item.title) < 100


def test_xxe_never_reads_local_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">'
        f'<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
        '<rss version="2.0"><channel><title>X</title><item><title>t &xxe;</title>'
        "<link>https://e.org/1</link><description>&xxe;</description></item></channel></rss>"
    ).encode()
    document = parse(body)
    assert "TOP-SECRET-MARKER" not in repr(document)
    assert b"<!ENTITY" not in prepare_xml(body)


def test_feedparser_body_that_is_a_file_path_is_not_opened(tmp_path: Path) -> None:
    secret = tmp_path / "feed.xml"
    secret.write_text(
        '<rss version="2.0"><channel><item><title>LEAKED</title></item></channel></rss>'
    )
    with pytest.raises(SourceParseError):
        parse(str(secret).encode())


def test_html_where_a_feed_was_expected() -> None:
    with pytest.raises(SourceParseError):
        parse(fixture("mofa_press_releases.html"), ctype="text/html; charset=utf-8")


@pytest.mark.parametrize("body", [b"", b"   \n\t", b"\xef\xbb\xbf"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(SourceParseError, match="empty"):
        parse(body)


def test_feedparser_fallback_is_used_and_counted() -> None:
    before = PARSE_COUNTS["feedparser"]
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><item><title>No channel</title>'
        b"<link>/a</link></item></rss>"
    )
    document = parse(body, url="https://e.org/feed")
    assert document.parser_used == "feedparser"
    assert document.items[0].url == "https://e.org/a"
    assert PARSE_COUNTS["feedparser"] == before + 1


def test_rss090_is_read_through_the_fallback() -> None:
    body = (
        b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        b' xmlns="http://my.netscape.com/rdf/simple/0.9/"><channel><title>T</title>'
        b"<link>https://e.org</link></channel><item><title>A</title><link>https://e.org/a</link>"
        b"</item></rdf:RDF>"
    )
    document = parse(body)
    assert [item.title for item in document.items] == ["A"]


def test_json_feed_relative_url_and_content() -> None:
    items = parse(fixture("energy_jsonfeed.json"), url="https://energy.example.org/feed.json").items
    assert items[0].content_html.startswith("<p>Pakistan and Russia")
    assert items[1].url == "https://energy.example.org/2024/06/13/lng"
    assert items[0].published == datetime(2024, 6, 14, 5, 0, tzinfo=UTC)


def test_invalid_json_feed() -> None:
    with pytest.raises(SourceParseError):
        parse(b'{"version": "https://jsonfeed.org/version/1.1", "items": [')


def _entities_one_by_one(text: str) -> str:
    """The entity rewrite as first written: every named entity through one Python call."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in {"amp", "lt", "gt", "quot", "apos"}:
            return match.group(0)
        codepoint = html.entities.name2codepoint.get(name)
        if codepoint is None:
            expanded = html.entities.html5.get(name + ";")
            if expanded is None:
                return f"&amp;{name};"
            return "".join(f"&#{ord(ch)};" for ch in expanded)
        return f"&#{codepoint};"

    return re.sub(r"&([A-Za-z][A-Za-z0-9]{1,31});", one, text)


@given(
    st.lists(
        st.sampled_from(
            ["&", ";", "amp", "lt", "gt", "quot", "apos", "Amp", "nbsp", "eacute", "x", " ", "<b>"]
        )
    )
)
def test_entity_rewrite_matches_the_one_by_one_rewrite(pieces: list[str]) -> None:
    body = "".join(pieces)
    expected = _entities_one_by_one(body)
    assert prepare_xml(f"<a>{body}</a>".encode()).decode().endswith(f"<a>{expected}</a>")


_LINK_PIECES = [
    "http://",
    "https://",
    "HTTPS://",
    "ftp://",
    "//",
    "mailto:",
    "example.org",
    "Example.ORG",
    "é.org",
    ":8080",
    ":",
    "@",
    "[::1]",
    "[",
    "]",
    "/",
    "a",
    "..",
    ".",
    ";p",
    ";",
    "?",
    "?q=1",
    "#",
    "#f",
    " ",
    "\t",
    "\n",
    "\x00",
    "\x7f",
    "%20",
    "é",
    "~",
]
_BASES = [
    "https://example.org/feed/",
    "http://127.0.0.1:8000/feed.xml",
    "https://example.org",
    "",
    "http://[bad/",
    "feed.xml",
]


def _urljoin_outcome(base: str, link: str) -> str | type[Exception]:
    try:
        return urljoin(base, link)
    except ValueError:
        return ValueError


def _absolute_outcome(base: str, link: str) -> str | type[Exception] | None:
    try:
        return _absolute(link, base)
    except ValueError:
        return ValueError


@given(st.lists(st.sampled_from(_LINK_PIECES), max_size=8), st.sampled_from(_BASES))
def test_item_links_are_joined_as_urljoin_joins_them(pieces: list[str], base: str) -> None:
    link = "".join(pieces)
    if not link.strip():
        assert _absolute(link, base) is None
        return
    assert _absolute_outcome(base, link) == _urljoin_outcome(base, link.strip())


def _prepare_xml_before(content: bytes, content_type: str = "") -> bytes:
    """prepare_xml before its declaration scans were guarded by one scan for "<!D" or "<!E"."""
    text = decode_markup(content, content_type).lstrip("\ufeff \t\r\n")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1, flags=re.IGNORECASE).lstrip()
    doctype = re.compile(r"<!DOCTYPE(?:[^\[>]*\[.*?\]\s*>|[^>]*>)", re.IGNORECASE | re.DOTALL)
    text = doctype.sub("", text, count=1)
    if re.search(r"<!ENTITY", text[:65536], flags=re.IGNORECASE):
        text = re.sub(r"<!ENTITY[^>]*>", "", text, flags=re.IGNORECASE)
    text = _NAMED_ENTITY.sub(_numeric_entity, text)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + text.encode("utf-8")


_XML_PIECES = [
    '<?xml version="1.0"?>',
    "<!DOCTYPE rss>",
    "<!doctype rss [",
    '<!ENTITY a "b">',
    "<!entity b SYSTEM 'file:///x'>",
    "<!Entity",
    "<!D",
    "<!E",
    "<!",
    "]>",
    "]",
    ">",
    "<",
    "<![CDATA[x]]>",
    "<rss><channel><item><title>",
    "</title></item></channel></rss>",
    "&amp;",
    "&lt;",
    "&nbsp;",
    "&eacute;",
    "&bogus;",
    "&",
    ";",
    "İ",
    "é",
    " ",
    "\n",
]


@given(st.lists(st.sampled_from(_XML_PIECES), max_size=14))
def test_prepare_xml_gives_what_it_gave_before(pieces: list[str]) -> None:
    body = "".join(pieces).encode()
    assert prepare_xml(body) == _prepare_xml_before(body)


def test_prepare_xml_of_the_fixtures_is_what_it_was() -> None:
    for path in sorted(FEEDS.iterdir()):
        assert prepare_xml(path.read_bytes()) == _prepare_xml_before(path.read_bytes())
