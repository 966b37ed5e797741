"""Normalisation of fetched items: canonical URLs, clean text, UTC dates, language, identity.

Pure: no I/O and no clock reads (the fetch time is passed in). The language model that
py3langid ships inside its package is loaded once, on first use.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = [
    "FUTURE_TOLERANCE",
    "canonical_url",
    "content_hash",
    "detect_language",
    "html_to_text",
    "identity",
    "language_sample",
    "normalise_published",
]

FUTURE_TOLERANCE = timedelta(minutes=15)
"""Clock skew accepted before a publication date counts as "in the future" (invalid)."""
_EARLIEST_PLAUSIBLE = datetime(1995, 1, 1, tzinfo=UTC)

_TRACKING_EXACT = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "cmpid",
        "ocid",
        "smid",
        "spm",
        "s_cid",
        "sr_share",
        "share",
        "guccounter",
        "__twitter_impression",
        "amp",
        "outputtype",
        "at_medium",
        "at_campaign",
        "at_link",
        "ito",
        "xtor",
    }
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "__hs", "oly_")
_HOST_VARIANTS = ("www.", "m.", "mobile.", "amp.", "wap.")
_AMP_PATH = re.compile(r"(?:/amp/?|\.amp|/amp\.html)$", re.IGNORECASE)
# The last character of every path _AMP_PATH can match (a path holds no newline).
_AMP_PATH_ENDS = frozenset("pP/lL")
# A URL that urlsplit would take apart as scheme, lower-case host and path (no port, user info,
# query or fragment; nothing it strips or rejects): most article links. Matching it costs a
# fifth of urlsplit and its ``port`` and ``hostname`` properties. The path is printable ASCII
# but "#" (x23) and "?" (x3f), spelled as ranges: a class up to U+10FFFF takes 2 ms to compile.
_PLAIN_URL = re.compile(r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(/[!-\x22\x24-\x3e\x40-~]*)?")
# Non-ASCII letters that the regex engine matches case-insensitively with an ASCII one (the
# list is complete: tests/unit/alerts/test_normalise.py asks the engine for every code point).
_CASE_PARTNERS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}


def _caseless(pattern: str) -> str:
    """Spell ``pattern``'s ASCII letters as the classes that ``(?i:...)`` would match.

    The same strings match, but the engine tests a class in one step where a case-insensitive
    letter costs a case conversion per character: a third less time per fragment. ``pattern``
    must have no escaped letters other than ``\\b``, no letter ranges and no ``(?`` flags or
    names.
    """
    out: list[str] = []
    in_class = False
    escaped = False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char.isascii() and char.isalpha():
            lower = char.lower()
            letters = lower + lower.upper() + _CASE_PARTNERS.get(lower, "")
            out.append(letters if in_class else f"[{letters}]")
        else:
            in_class = (in_class or char == "[") and char != "]"
            out.append(char)
    return "".join(out)


# The "<" of a block element's tag (the name is matched by a lookahead, case-insensitively):
# the "<" stays outside the lookahead so that the regex engine can skip to each "<" with a
# fast literal scan, and the replacement is a plain string (no template, no call).
# The names (p div br li dt dd h1-h6 tr td th blockquote section article header footer ul ol
# table pre figure figcaption hr aside main) are grouped by first letter: the engine tries
# the alternatives one after the other at every "<", and a group fails on its first letter
# (a quarter fewer instructions per fragment than the flat list of 27 names).
_BLOCK_TAG_START = re.compile(
    _caseless(
        r"<(?=/?(?:p(?:re)?|d(?:iv|[td])|b(?:r|lockquote)|li|h(?:[1-6r]|eader)|t(?:[rdh]|able)|"
        r"section|a(?:rticle|side)|f(?:ooter|ig(?:ure|caption))|ul|ol|main)\b)"
    )
)
_JUNK = "script, style, noscript, template, iframe, object, embed, svg, head"
_JUNK_HINT = re.compile("<(?i:" + "|".join(name.strip() for name in _JUNK.split(",")) + ")")
# Markup a fragment parse into a reused document does not read as a fresh document's parse
# does: a frameset (the "frameset-ok" state starts afresh with each document) and
# <selectedcontent> (filled by the document's mutation events). Such fragments get a document
# of their own.
_FRESH_DOCUMENT_ONLY = re.compile("<(?i:frameset|selectedcontent)")
# Either of the two above: most fragments hold neither, and one scan costs half of two. The
# class of first letters rejects most tags in one step, before the names are tried.
_JUNK_OR_FRESH_DOCUMENT_ONLY = re.compile(
    _caseless(
        "<(?=[sntioehf])(?:s(?:cript|tyle|vg|electedcontent)|noscript|template|iframe|object|"
        "embed|head|frameset)"
    )
)
_FRAGMENTS_PER_DOCUMENT = 256
"""Fragments parsed into one reused document before it is replaced: replaced children are
detached, not freed, until their document is (~4 bytes per byte of markup), so this bounds a
thread's scratch document to a few MB."""
_LANGUAGES = [
    "en",
    "ru",
    "ur",
    "ar",
    "fa",
    "zh",
    "fr",
    "de",
    "es",
    "it",
    "pt",
    "tr",
    "hi",
    "bn",
    "uk",
    "kk",
    "uz",
    "ky",
    "tg",
    "az",
    "ps",
    "id",
    "ms",
    "ja",
    "ko",
    "pl",
    "nl",
    "sv",
]


def canonical_url(url: str) -> str:
    """Return the identity form of a URL, so that variants of one page compare equal.

    Lower-cases scheme and host, drops the port when it is the scheme's default, the
    fragment, user info, tracking parameters (``utm_*``, ``fbclid``, ``gclid``...), AMP and
    mobile variants (``m.``/``amp.``/``www.`` hosts, a ``/amp`` suffix, ``?amp=1``), and
    sorts the remaining query parameters. ``http`` and ``https`` map to ``https``. The result
    is a comparison key, not necessarily a URL that serves the page.
    """
    url = url.strip()
    plain = _PLAIN_URL.fullmatch(url)
    port: int | None = None
    if plain is not None:
        host: str = plain.group(2)
        path: str = plain.group(3) or ""
        query = ""
    else:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return url
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        if not host or scheme not in {"http", "https"}:
            return url
        path, query = parts.path, parts.query
    for prefix in _HOST_VARIANTS:
        if host.startswith(prefix) and host.count(".") >= 2:
            host = host[len(prefix) :]
            break
    if port is not None and port not in {80, 443}:
        host = f"{host}:{port}"
    if path[-1:] in _AMP_PATH_ENDS:
        path = _AMP_PATH.sub("", path)
    # "/news/1/" and "/news/1" are the same page on every CMS we read.
    path = path.rstrip("/") or "/"
    if not query:
        # Most article links carry no query: the parse and re-encode below would give "", and
        # urlunsplit would give this (the path starts with "/").
        return f"https://{host}{path}"
    pairs = sorted(
        (key, value)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key.lower() not in _TRACKING_EXACT and not key.lower().startswith(_TRACKING_PREFIXES)
    )
    return urlunsplit(("https", host, path, urlencode(pairs), ""))


def html_to_text(html: str) -> str:
    """Return the visible text of an HTML fragment, whitespace collapsed to single spaces.

    Scripts, styles and other non-text elements are dropped; block elements separate words.
    Plain text passes through (entities decoded, whitespace collapsed).
    """
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return _collapse(html)
    # A space before every block tag keeps "</p><p>" from gluing words together; done on the
    # markup with one regex because editing the parsed tree node by node costs ten times more.
    marked = _BLOCK_TAG_START.sub(" <", html)
    # Most fragments hold no junk element: one scan for its tag is cheaper than a CSS query.
    special = _JUNK_OR_FRESH_DOCUMENT_ONLY.search(html) is not None
    junk_hint = special and _JUNK_HINT.search(html) is not None
    if special and _FRESH_DOCUMENT_ONLY.search(html) is not None:
        tree = LexborHTMLParser(marked)
        # Always: a frameset document has no <body>, so its text is read from the root, and
        # the <head> the parser made (without any <head> tag in the markup) must go too.
        for junk in tree.css(_JUNK):
            junk.decompose()
        fresh = tree.body or tree.root
        return _collapse(fresh.text(separator="")) if fresh is not None else ""
    root = _SCRATCH.parse(marked)
    if junk_hint:
        for junk in root.css(_JUNK):
            junk.decompose()
    return _collapse(root.text(separator=""))


class _ScratchDocument(threading.local):
    """One reused lexbor document per thread, for :func:`html_to_text`.

    Creating a lexbor document costs ~50 us, more than parsing a 2.5 KB article into one.
    Setting the children of its ``<html>`` element parses the markup as the HTML standard's
    fragment algorithm does with ``<html>`` as context: from the "before head" insertion mode,
    as a document's parse goes on after its ``<html>`` tag, so head elements still land in
    ``<head>`` and the body's text is that of a fresh document (same quirks mode, which a
    document without a doctype has).
    """

    def __init__(self) -> None:
        self.parser: LexborHTMLParser | None = None
        self.uses = 0

    def parse(self, markup: str) -> LexborNode:
        """Return the ``<body>`` (else the root) of ``markup`` parsed into the document."""
        if self.parser is None or self.uses >= _FRAGMENTS_PER_DOCUMENT:
            self.parser = LexborHTMLParser("")
            self.uses = 0
        self.uses += 1
        root = self.parser.root
        assert root is not None  # an empty document still has its <html> element
        root.inner_html = markup
        return self.parser.body or root


_SCRATCH = _ScratchDocument()


def _collapse(text: str) -> str:
    # Same result as ``re.sub(r"\s+", " ", text).strip()`` (both use Unicode whitespace).
    # In ASCII text whose only whitespace is the space (the parsed text of most fragments) only
    # runs of spaces need collapsing: one regex pass costs half of split() and join(), which
    # make a string of every word.
    if (
        text.isascii()
        and "\n" not in text
        and "\t" not in text
        and "\r" not in text
        and "\x0b" not in text
        and "\x0c" not in text
        and "\x1c" not in text
        and "\x1d" not in text
        and "\x1e" not in text
        and "\x1f" not in text
    ):
        return _SPACE_RUN.sub(" ", text).strip(" ")
    return " ".join(text.split())


# Two literal spaces, then any more: the engine scans for a two-character prefix (half the
# time of "  +", whose prefix is one space, found at every word).
_SPACE_RUN = re.compile("   *")


def _casefold(text: str) -> str:
    # casefold() has no fast path for ASCII, lower() has, and on ASCII they agree.
    return text.lower() if text.isascii() else text.casefold()


def normalise_published(dt: datetime | None, *, fetched_at: datetime) -> tuple[datetime, bool]:
    """Return a UTC publication time and whether it had to be replaced.

    Missing, naive-but-absurd, pre-1995 and future dates (beyond :data:`FUTURE_TOLERANCE`
    after ``fetched_at``) fall back to ``fetched_at`` and are flagged ``True``. Naive dates are
    taken as UTC.

    Args:
        dt: the date the source gave, if any.
        fetched_at: when the document was fetched (timezone-aware).
    """
    fetched = fetched_at.astimezone(UTC)
    if dt is None:
        return fetched, True
    value = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if value < _EARLIEST_PLAUSIBLE or value > fetched + FUTURE_TOLERANCE:
        return fetched, True
    return value, False


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # Restricting the candidates to languages our sources publish in avoids the classic
    # short-text confusions (English headlines classified as Latin, Urdu as Persian...).
    identifier.set_languages(_LANGUAGES)
    return identifier


LANGUAGE_SAMPLE_CHARS = 300
"""Characters of an article that language detection reads (title first, then the lead)."""


def language_sample(title: str, lead: str) -> str:
    """Return the part of an article :func:`detect_language` should read: title and lead.

    py3langid's cost grows with the text (its feature extraction walks every byte in
    Python: ~1 ms per 1,000 characters), while a headline and the start of the lead already
    decide the language; on the recorded feeds in ``tests/data/feeds`` the 300-character
    sample gave the same answer as the whole text for every item.
    """
    return f"{title}\n{lead}"[:LANGUAGE_SAMPLE_CHARS]


def detect_language(text: str) -> str:
    """Return the ISO 639-1 code of ``text``'s language, or ``""`` when unsure.

    Texts under 20 letters or classified with a normalised probability under 0.5 are "unsure".
    """
    sample = text[:2000]
    if sum(ch.isalpha() for ch in sample) < 20:
        return ""
    language, probability = _identifier().classify(sample)
    return str(language) if float(probability) >= 0.5 else ""


def _fold(text: str) -> str:
    return _casefold(_collapse(text))


def content_hash(title: str, text: str, *, collapsed: bool = False) -> str:
    """Return a stable hash of an article's title and text (case and spacing ignored).

    Args:
        title: the article's title.
        text: its text.
        collapsed: both are already whitespace-collapsed (as :func:`html_to_text` returns
            them), so that step can be skipped; the hash is the same either way.
    """
    folded = _casefold(f"{title}\n{text}") if collapsed else f"{_fold(title)}\n{_fold(text)}"
    return hashlib.sha256(folded.encode()).hexdigest()


def identity(guid: str | None, canonical_url: str | None, content_hash: str) -> str:
    """Return an article's identity within its source: guid, else canonical URL, else hash.

    The result is ``kind:hex`` with a 40-character hash, so it fits an indexed column whatever
    the source's guids look like.
    """
    if guid and guid.strip():
        kind, value = "guid", guid.strip()
    elif canonical_url and canonical_url.strip():
        kind, value = "url", canonical_url.strip()
    else:
        return f"hash:{content_hash[:40]}"
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:40]}"
