from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from alerts.normalise import (
    canonical_url,
    content_hash,
    detect_language,
    html_to_text,
    identity,
    language_sample,
    normalise_published,
)

FETCHED = datetime(2024, 6, 14, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.dawn.com/news/1839201/russia-pakistan?utm_source=rss&utm_medium=feed",
            "https://dawn.com/news/1839201/russia-pakistan",
        ),
        ("https://m.dawn.com/news/1839201/russia-pakistan#comments", None),
        ("http://amp.dawn.com/news/1839201/russia-pakistan/amp/", None),
        ("HTTPS://WWW.DAWN.COM:443/news/1839201/russia-pakistan/?fbclid=abc&gclid=x", None),
        (
            "https://tribune.com.pk/story/1?b=2&a=1&utm_campaign=x",
            "https://tribune.com.pk/story/1?a=1&b=2",
        ),
        ("https://example.org:8443/a?amp=1", "https://example.org:8443/a"),
        ("https://example.org", "https://example.org/"),
    ],
)
def test_canonical_url(url: str, expected: str | None) -> None:
    assert canonical_url(url) == (expected or "https://dawn.com/news/1839201/russia-pakistan")


def test_canonical_url_keeps_meaningful_parameters_and_non_http() -> None:
    assert canonical_url("https://e.org/view?id=7&page=2") == "https://e.org/view?id=7&page=2"
    assert canonical_url("urn:uuid:1234") == "urn:uuid:1234"


def test_html_to_text() -> None:
    html = (
        "<div><p>Pakistan&nbsp;and <b>Russia</b></p><p>signed</p><script>alert(1)</script>"
        "<style>p{}</style><ul><li>gas</li><li>oil</li></ul>Caf&eacute;</div>"
    )
    assert html_to_text(html) == "Pakistan and Russia signed gas oil Café"
    assert html_to_text("  plain\n text  ") == "plain text"
    assert html_to_text("") == ""
    assert html_to_text("<img src=x onerror=alert(1)>") == ""


def test_html_to_text_drops_junk_whatever_its_case() -> None:
    assert html_to_text("<P>oil</P><SCRIPT>x()</SCRIPT><Style>p{}</Style><p>gas</p>") == "oil gas"
    assert html_to_text("<div>a<NoScript>b</NoScript><SVG><text>c</text></SVG>d</div>") == "ad"


def _fresh_document_text(html: str) -> str:
    """html_to_text as it was before fragments were parsed into a reused document."""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    marked = re.sub(
        r"<(?=/?(?i:p|div|br|li|dt|dd|h[1-6]|tr|td|th|blockquote|section|article|header|"
        r"footer|ul|ol|table|pre|figure|figcaption|hr|aside|main)\b)",
        " <",
        html,
    )
    tree = LexborHTMLParser(marked)
    for junk in tree.css("script, style, noscript, template, iframe, object, embed, svg, head"):
        junk.decompose()
    root = tree.body or tree.root
    return " ".join(root.text(separator="").split()) if root is not None else ""


_MARKUP = [
    "<p>",
    "</p>",
    "<br>",
    "<b>",
    "</b>",
    "<a href='x>y'>",
    "</a>",
    "<li>",
    "<td>",
    "<table>",
    "</table>",
    "<tr>",
    "<title>T</title>",
    "<meta charset=utf-8>",
    "<style>s{}</style>",
    "<script>x</script>",
    "<html>",
    "<head>",
    "</head>",
    "<body>",
    "<frameset>",
    "<select>",
    "<option>o",
    "<selectedcontent>",
    "<textarea>ta</textarea>",
    "<svg><text>sv</text></svg>",
    "<!DOCTYPE html>",
    "<!-- c -->",
    "&amp;",
    "&copy2024",
    "&#x1;",
    "a<b",
    "word",
    " ",
    "\x00",
]


@given(st.lists(st.sampled_from(_MARKUP), max_size=16))
def test_html_to_text_reads_as_a_fresh_document_would(parts: list[str]) -> None:
    # A reused document must give every fragment the text a document of its own gives it
    # (stored content hashes depend on it), however many fragments it has parsed before.
    html = "".join(parts)
    assert html_to_text(html) == _fresh_document_text(html)


def test_html_to_text_replaces_its_scratch_document() -> None:
    texts = {html_to_text(f"<title>t</title><p>item {i}</p><p>end</p>") for i in range(600)}
    assert texts == {f"item {i} end" for i in range(600)}


@given(st.text(alphabet=st.sampled_from(["a", "é", " ", "\t", "\n", "\xa0", "\u2003", "\x1f"])))
def test_plain_text_whitespace_collapses_like_the_regex(text: str) -> None:
    assert html_to_text(text) == re.sub(r"\s+", " ", text).strip()


@given(st.lists(st.sampled_from(["A", "é", "ß", " ", "\n", "\xa0", "<p>", "İ", "&amp;"])))
def test_content_hash_of_collapsed_text_is_the_same_hash(parts: list[str]) -> None:
    text = "".join(parts)
    title, body = html_to_text(text[:5]), html_to_text(text)
    assert content_hash(title, body, collapsed=True) == content_hash(title, body)
    assert content_hash(f" {title}\n", f"{body}  ") == content_hash(title, body, collapsed=True)


def test_normalise_published() -> None:
    valid = datetime(2024, 6, 14, 9, 0, tzinfo=timezone(timedelta(hours=5)))
    assert normalise_published(valid, fetched_at=FETCHED) == (
        datetime(2024, 6, 14, 4, 0, tzinfo=UTC),
        False,
    )
    naive = datetime(2024, 6, 14, 9, 0)  # noqa: DTZ001 - what a sloppy feed gives
    assert normalise_published(naive, fetched_at=FETCHED) == (
        datetime(2024, 6, 14, 9, 0, tzinfo=UTC),
        False,
    )
    assert normalise_published(None, fetched_at=FETCHED) == (FETCHED, True)
    assert normalise_published(FETCHED + timedelta(days=3), fetched_at=FETCHED) == (FETCHED, True)
    assert normalise_published(FETCHED + timedelta(minutes=5), fetched_at=FETCHED)[1] is False
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert normalise_published(epoch, fetched_at=FETCHED) == (FETCHED, True)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Pakistan and Russia signed a protocol on the gas pipeline in Islamabad on Friday", "en"),
        ("Россия и Пакистан подписали протокол о строительстве газопровода", "ru"),
        ("پاکستان اور روس نے گیس پائپ لائن کے معاہدے پر دستخط کیے", "ur"),
        ("PSGP", ""),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_language_sample_is_title_then_the_start_of_the_lead() -> None:
    lead = "Газпром и Пакистан подписали соглашение о поставках сжиженного газа. " * 20
    sample = language_sample("Россия и Пакистан", lead)
    assert sample.startswith("Россия и Пакистан\nГазпром")
    assert len(sample) == 300 < len(lead)
    assert detect_language(sample) == "ru"
    assert language_sample("Short", "lead") == "Short\nlead"


def test_content_hash_ignores_case_and_spacing() -> None:
    assert content_hash("Deal  signed", "Text\n") == content_hash("deal signed", "text")
    assert content_hash("Deal", "a") != content_hash("Deal", "b")


def test_identity_prefers_guid_then_url_then_hash() -> None:
    digest = content_hash("t", "b")
    by_guid = identity("https://www.app.com.pk/?p=1", "https://app.com.pk/x", digest)
    by_url = identity(None, "https://app.com.pk/x", digest)
    by_hash = identity("  ", "", digest)
    assert by_guid.startswith("guid:")
    assert by_url.startswith("url:")
    assert by_hash == f"hash:{digest[:40]}"
    assert identity("https://www.app.com.pk/?p=1", "https://other", "0" * 64) == by_guid
    assert len(by_guid) == len("guid:") + 40


def test_html_to_text_drops_an_implied_head_beside_a_frameset() -> None:
    # Found by the property test above: a frameset document has no <body>, and its implied
    # <head> (no <head> tag in the markup) held the title.
    html = "<title>T</title><frameset>"
    assert html_to_text(html) == _fresh_document_text(html) == ""
