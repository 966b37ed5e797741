"""Text analysis shared by rule queries and articles: tokens, folding, stemming.

Rules and articles go through the same functions so that a word in a rule and the same word
in an article always produce the same token. Every token has two normalised forms:

* ``form``: NFKC, case-folded, combining marks removed (``Café`` -> ``cafe``, ``Ёлка`` ->
  ``елка``, Urdu/Arabic harakat dropped). Used by exact-form terms (``=term``) and prefixes.
* ``stem``: ``form`` reduced by a Snowball stemmer chosen by script: English for Latin
  letters, Russian for Cyrillic, none for other scripts (Urdu and Arabic are matched on
  ``form``). ``pipelines`` -> ``pipelin``, ``нефти`` -> ``нефт``.

The stemmer is chosen by the token's script rather than the article's language, so a mixed
article (an English lead quoting a Russian title) still matches both kinds of rule.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Final

import snowballstemmer

__all__ = [
    "AnalysedText",
    "Token",
    "analyse",
    "fold",
    "stem",
    "tokenize",
]


def _mark_ranges() -> str:
    """Return a regex character-class body listing every combining mark (category M*)."""
    parts: list[str] = []
    start = -1
    prev = -2
    for code in range(0x30000):
        if unicodedata.category(chr(code)).startswith("M"):
            if code != prev + 1:
                if start >= 0:
                    parts.append(f"\\U{start:08x}-\\U{prev:08x}")
                start = code
            prev = code
    if start >= 0:
        parts.append(f"\\U{start:08x}-\\U{prev:08x}")
    return "".join(parts)


_MARKS: Final = _mark_ranges()
# A token is a run of letters/digits, with combining marks allowed inside it: Arabic-script
# harakat and decomposed Latin accents are category M, which ``\w`` does not include.
_TOKEN_RE: Final = re.compile(f"(?:[^\\W_]|[{_MARKS}])+")
_WORD_RE: Final = re.compile(r"[^\W_]+")
_MARK_RE: Final = re.compile(f"[{_MARKS}]+")


# Arabic and Urdu keyboards produce different code points for the same letters (yeh, kaf);
# fold them to the Urdu letters and drop tatweel (a pure elongation character).
_ARABIC_SCRIPT: Final = str.maketrans(
    {"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9", "\u0640": None}
)

_ENGLISH: Final = snowballstemmer.stemmer("english")
_RUSSIAN: Final = snowballstemmer.stemmer("russian")
_CYRILLIC_RE: Final = re.compile("[\u0400-\u04ff]")
_LATIN_RE: Final = re.compile("[a-z]")

_CACHE_LIMIT: Final = 200_000


def fold(text: str) -> str:
    """Return ``text`` normalised for matching: NFKC, case-folded, combining marks removed.

    Args:
        text: any Unicode text.

    Returns:
        The folded text; its length may differ from the input's.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded
    folded = folded.translate(_ARABIC_SCRIPT)
    decomposed = unicodedata.normalize("NFD", _protect(folded))
    return _unprotect(unicodedata.normalize("NFC", _MARK_RE.sub("", decomposed)))


def _protect(text: str) -> str:
    # "й" is a letter of its own in Russian, not "и" with a breve: keep it so the Russian
    # stemmer still sees endings such as "-ой". U+E000 (private use) shields it from NFD.
    return text.replace("й", "\ue000") if "й" in text else text


def _unprotect(text: str) -> str:
    return text.replace("\ue000", "й") if "\ue000" in text else text


def stem(form: str) -> str:
    """Return the stem of one folded token (English for Latin, Russian for Cyrillic).

    Args:
        form: a token already passed through :func:`fold`.

    Returns:
        The stem; tokens in other scripts, and numbers, are returned unchanged.
    """
    if _LATIN_RE.search(form):
        return str(_ENGLISH.stemWord(form))
    if _CYRILLIC_RE.search(form):
        return str(_RUSSIAN.stemWord(form))
    return form


_token_cache: dict[str, tuple[tuple[str, str], ...]] = {}


def _analyse_word(raw: str) -> tuple[tuple[str, str], ...]:
    """Return ``(form, stem)`` pairs for one raw token (NFKC may split it, e.g. ``½``)."""
    cached = _token_cache.get(raw)
    if cached is not None:
        return cached
    result = tuple((form, stem(form)) for form in _WORD_RE.findall(fold(raw)))
    if len(_token_cache) >= _CACHE_LIMIT:
        _token_cache.clear()
    _token_cache[sys.intern(raw)] = result
    return result


@dataclass(frozen=True, slots=True)
class Token:
    """One analysed token.

    Attributes:
        form: folded surface form (case, accents and compatibility forms removed).
        stem: stemmed ``form``.
        start: offset of the first character in the original text.
        end: offset after the last character in the original text.
    """

    form: str
    stem: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class AnalysedText:
    """A text split into tokens; index ``i`` of each tuple describes token position ``i``."""

    text: str
    forms: tuple[str, ...]
    stems: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.forms)


def analyse(text: str) -> AnalysedText:
    """Split ``text`` into tokens with positions, folded forms, stems and character spans.

    Args:
        text: plain text (never HTML).

    Returns:
        The analysed text. Positions count tokens from 0.
    """
    forms: list[str] = []
    stems: list[str] = []
    spans: list[tuple[int, int]] = []
    for match in _TOKEN_RE.finditer(text):
        span = match.span()
        for form, stemmed in _analyse_word(match.group()):
            forms.append(form)
            stems.append(stemmed)
            spans.append(span)
    return AnalysedText(text, tuple(forms), tuple(stems), tuple(spans))


def tokenize(text: str) -> list[Token]:
    """Return the tokens of ``text`` as :class:`Token` objects (convenient, not hot-path).

    Args:
        text: plain text.

    Returns:
        Tokens in order of appearance.
    """
    analysed = analyse(text)
    return [
        Token(form, stemmed, start, end)
        for form, stemmed, (start, end) in zip(
            analysed.forms, analysed.stems, analysed.spans, strict=True
        )
    ]
