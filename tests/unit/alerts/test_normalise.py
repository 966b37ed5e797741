from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from alerts.normalise import (
    _AMP_PATH,
    _BLOCK_TAG_START,
    _FRESH_DOCUMENT_ONLY,
    _HOST_VARIANTS,
    _JUNK,
    _JUNK_HINT,
    _JUNK_OR_FRESH_DOCUMENT_ONLY,
    _SCRATCH,
    _TRACKING_EXACT,
    _TRACKING_PREFIXES,
    _caseless,
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


# The implementations the faster ones replaced, kept to prove that every output is unchanged
# (stored canonical URLs, texts and content hashes depend on it).
_BLOCK_TAG_START_BEFORE = re.compile(
    r"<(?=/?(?i:p(?:re)?|d(?:iv|[td])|b(?:r|lockquote)|li|h(?:[1-6r]|eader)|t(?:[rdh]|able)|"
    r"section|a(?:rticle|side)|f(?:ooter|ig(?:ure|caption))|ul|ol|main)\b)"
)
_JUNK_OR_FRESH_DOCUMENT_ONLY_BEFORE = re.compile(
    "<(?i:script|style|noscript|template|iframe|object|embed|svg|head|frameset|selectedcontent)"
)


def _html_to_text_before(html: str) -> str:
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    marked = _BLOCK_TAG_START_BEFORE.sub(" <", html)
    special = _JUNK_OR_FRESH_DOCUMENT_ONLY_BEFORE.search(html) is not None
    junk_hint = special and _JUNK_HINT.search(html) is not None
    if special and _FRESH_DOCUMENT_ONLY.search(html) is not None:
        tree = LexborHTMLParser(marked)
        for junk in tree.css(_JUNK):
            junk.decompose()
        fresh = tree.body or tree.root
        return " ".join(fresh.text(separator="").split()) if fresh is not None else ""
    root = _SCRATCH.parse(marked)
    if junk_hint:
        for junk in root.css(_JUNK):
            junk.decompose()
    return " ".join(root.text(separator="").split())


def _canonical_url_before(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or scheme not in {"http", "https"}:
        return url.strip()
    for prefix in _HOST_VARIANTS:
        if host.startswith(prefix) and host.count(".") >= 2:
            host = host[len(prefix) :]
            break
    if port is not None and port not in {80, 443}:
        host = f"{host}:{port}"
    path = _AMP_PATH.sub("", parts.path)
    path = path.rstrip("/") or "/"
    if not parts.query:
        return urlunsplit(("https", host, path, "", ""))
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in _TRACKING_EXACT and not key.lower().startswith(_TRACKING_PREFIXES)
    )
    return urlunsplit(("https", host, path, urlencode(query), ""))


# Every character the regex engine matches case-insensitively with an ASCII letter, whatever
# its code point: _caseless must spell the same sets.
_ALL_CHARACTERS = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)


@pytest.mark.parametrize("letter", "abcdefghijklmnopqrstuvwxyz")
def test_caseless_letter_classes_are_what_ignorecase_matches(letter: str) -> None:
    ignorecase = set(re.findall(f"(?i:{letter})", _ALL_CHARACTERS))
    spelled = set(re.findall(_caseless(letter), _ALL_CHARACTERS))
    assert spelled == ignorecase
    assert set(re.findall(_caseless(f"[{letter}]"), _ALL_CHARACTERS)) == ignorecase


_TAG_PIECES = [
    *"<>/ !-=\"'\t\nabcdeghilmnoprstuvyPDBHTSAFUOMLRIEGYCNVK1236x\u017f\u0130\u0131\u212aé"
]
_TAGGY = st.lists(
    st.sampled_from(
        [
            *_TAG_PIECES,
            *["<p", "</P", "<Div", "<script", "<SVG", "<hEaD", "<br/>", "<section", "<TBODY"],
            *["<table", "<frameset", "<selectedcontent", "<thead", "<Li", "<ſtyle", "<İframe"],
        ]
    ),
    max_size=40,
).map("".join)


@given(_TAGGY)
def test_tag_regexes_find_what_the_case_insensitive_ones_found(markup: str) -> None:
    assert _BLOCK_TAG_START.sub(" <", markup) == _BLOCK_TAG_START_BEFORE.sub(" <", markup)
    assert (_JUNK_OR_FRESH_DOCUMENT_ONLY.search(markup) is None) == (
        _JUNK_OR_FRESH_DOCUMENT_ONLY_BEFORE.search(markup) is None
    )


_FRAGMENT_PARTS = [
    *_MARKUP,
    "<P>",
    "</DIV>",
    "<H2>",
    "<Script>x</Script>",
    "<ſcript>s</ſcript>",
    "<İframe>",
    "<Frameset>",
    "<pre>\n  a  b\n</pre>",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x1c",
    "\x1f",
    "\xa0",
    "\u2003",
    "  ",
    "&nbsp;",
    "&#9;",
    "&#x1F;",
    "é",
    "Ω",
]


@given(st.lists(st.sampled_from(_FRAGMENT_PARTS), max_size=16))
def test_html_to_text_gives_the_text_it_gave_before(parts: list[str]) -> None:
    html = "".join(parts)
    assert html_to_text(html) == _html_to_text_before(html)


@given(
    st.text(
        alphabet=st.sampled_from(
            [*" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000aZéßİ\x00\x7f"]
        )
    )
)
def test_plain_text_and_its_hash_are_what_they_were(text: str) -> None:
    collapsed = " ".join(text.split())
    assert html_to_text(text) == collapsed
    before = hashlib.sha256(f"{collapsed}\n{collapsed}".casefold().encode()).hexdigest()
    assert content_hash(collapsed, collapsed, collapsed=True) == before
    assert content_hash(text, text) == before


def test_bench_like_article_text_is_what_it_was() -> None:
    paragraph = "<p>Oil <a href='https://e.org/1'>more</a> <strong>Gas</strong> &amp; figures.</p>"
    html = f"<figure><img src='https://e.org/1.jpg'/></figure>{paragraph * 6}"
    assert html_to_text(html) == _html_to_text_before(html)
    assert html_to_text(html).startswith("Oil more Gas & figures. Oil")


_URL_PIECES = [
    "http://",
    "https://",
    "HTTP://",
    "ftp://",
    "//",
    "www.",
    "m.",
    "amp.",
    "example.org",
    "EXAMPLE.org",
    "news.co.uk",
    "é.org",
    ".",
    "-",
    ":8080",
    ":443",
    ":80",
    ":99999",
    ":x",
    ":",
    "@",
    "user:pw@",
    "[::1]",
    "[",
    "]",
    "/",
    "/news/1",
    "/amp",
    "/amp/",
    ".amp",
    "/AMP.html",
    "/x.html",
    ";p=1",
    "?",
    "?a=1&b=2",
    "?utm_source=x",
    "&fbclid=y",
    "?amp=1",
    "#frag",
    "#",
    " ",
    "\t",
    "\n",
    "\x00",
    "%20",
    "é",
    "~",
]


@given(st.lists(st.sampled_from(_URL_PIECES), max_size=10))
def test_canonical_url_is_what_it_was(pieces: list[str]) -> None:
    url = "".join(pieces)
    assert canonical_url(url) == _canonical_url_before(url)


@given(st.text(max_size=40))
def test_canonical_url_of_any_text_is_what_it_was(text: str) -> None:
    for url in (text, f"https://example.org/{text}", f"http://{text}"):
        assert canonical_url(url) == _canonical_url_before(url)
