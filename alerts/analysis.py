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

import functools
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, cast

import Stemmer

__all__ = [
    "AnalysedText",
    "Token",
    "analyse",
    "analyse_words",
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
_WORD_RE: Final = re.compile(r"[^\W_]+")
# Runs of non-whitespace: the same words as ``str.split()`` (both use str.isspace).
_RUN_RE: Final = re.compile(r"\S+")
# Characters that always separate words: punctuation, spaces, symbols and controls. Letters,
# digits, combining marks and format characters (the ZWNJ inside Urdu words) are kept.
_SEPARATORS: Final = frozenset(
    chr(code)
    for code in range(0x20000)
    if unicodedata.category(chr(code))[0] in "PZS" or unicodedata.category(chr(code)) == "Cc"
) | {"_"}
_MARK_RE: Final = re.compile(f"[{_MARKS}]+")
# ASCII text is spaced by bytes.translate: a 256-byte table, several times cheaper per
# character than str.translate's mapping.
_ASCII_SEPARATORS: Final = bytes(
    32 if chr(code) in _SEPARATORS else code if code < 128 else 0 for code in range(256)
)
# The non-ASCII punctuation of most English news text; removing it first lets most articles
# take the fast ASCII path.
_COMMON_NON_ASCII: Final = "\u2019\u2018\u201c\u201d\u2014\u2013\u2026\u00a0\u00ab\u00bb"


# Arabic and Urdu keyboards produce different code points for the same letters (yeh, kaf);
# fold them to the Urdu letters and drop tatweel (a pure elongation character).
_ARABIC_SCRIPT: Final = str.maketrans(
    {"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9", "\u0640": None}
)

# PyStemmer: the Snowball algorithms compiled to C (libstemmer), the same stems as the
# pure-Python snowballstemmer package (a test compares them) at ~1/80 of the cost. Every new
# word of an article (names, mostly) is stemmed once before the word cache knows it.
_ENGLISH: Final = Stemmer.Stemmer("english")
_RUSSIAN: Final = Stemmer.Stemmer("russian")
_CYRILLIC_RE: Final = re.compile("[\u0400-\u04ff]")
_LATIN_RE: Final = re.compile("[a-z]")

_CACHE_LIMIT: Final = 200_000
_INDEX_AFTER: Final = 6
# Direct span look-ups before finding every span at once (that costs about 10 look-ups).
_WALK_AFTER: Final = 3


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


# Raw word -> its space-joined forms, and raw word -> its space-joined stems. Two flat maps
# let ``analyse`` build a line with one C-level ``map`` and ``join``.
_form_cache: dict[str, str] = {}
_stem_cache: dict[str, str] = {}


def _analyse_word(raw: str) -> tuple[str, str]:
    """Return the space-joined forms and stems of one raw word, and cache them.

    NFKC may split a word (``½`` -> ``1 2``) or leave nothing of it (``©`` -> ``""``).
    """
    forms = _WORD_RE.findall(fold(raw))
    form_text = " ".join(forms)
    stem_text = " ".join(stem(form) for form in forms)
    if len(_stem_cache) >= _CACHE_LIMIT:
        _form_cache.clear()
        _stem_cache.clear()
    raw = sys.intern(raw)
    _form_cache[raw] = form_text
    _stem_cache[raw] = stem_text
    return form_text, stem_text


def _looked_up(words: list[str], cache: dict[str, str]) -> Sequence[str]:
    """Return ``cache[word]`` for every word; raises KeyError for an unknown word."""
    if len(words) > 1:
        # One C-level call looks every word up into a tuple: no per-word method call, and
        # join takes the tuple as it is.
        return cast(tuple[str, ...], itemgetter(*words)(cache))
    return [cache[word] for word in words]


def _joined(words: list[str], cache: dict[str, str], which: int) -> str:
    try:
        # Usually every word is known: one C-level pass, no list of parts to check.
        joined = " ".join(_looked_up(words, cache))
    except KeyError:
        # A few new words (names, mostly): analyse just those (found by set operations in
        # C, not a Python loop over the article), then join again.
        for word in set(words).difference(cache):
            _analyse_word(word)
        try:
            joined = " ".join(_looked_up(words, cache))
        except KeyError:  # the caches were full and started again midway
            joined = " ".join(
                [cache[word] if word in cache else _analyse_word(word)[which] for word in words]
            )
    line = " " + joined + " "
    # A word that analyses to nothing (a lone format character) leaves a double space.
    return line if "  " not in line else " " + " ".join(line.split()) + " "


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


class AnalysedText:
    """A text split into tokens; index ``i`` of each sequence describes token position ``i``.

    ``form_line`` and ``stem_line`` are the tokens joined by single spaces, padded with a
    space at both ends, ready for whole-token substring search. Everything but ``stem_line``
    (forms, tuples, character spans) is computed on first use: most articles never need it.
    """

    __slots__ = (
        "_cursor",
        "_form_index",
        "_form_line",
        "_forms",
        "_lookups",
        "_spaced",
        "_span_lookups",
        "_spans",
        "_stem_index",
        "_stems",
        "_words",
        "stem_line",
        "text",
    )

    def __init__(self, text: str, spaced: str) -> None:
        self.text = text
        self._spaced = spaced
        words = spaced.split()
        self._words = words
        self.stem_line = _joined(words, _stem_cache, 1)
        self._form_line: str | None = None
        self._forms: tuple[str, ...] | None = None
        self._stems: tuple[str, ...] | None = None
        self._spans: list[tuple[int, int]] = []
        self._cursor = (0, 0)
        self._form_index: dict[str, list[int]] | None = None
        self._lookups = 0
        self._span_lookups = 0
        self._stem_index: dict[str, list[int]] | None = None

    @property
    def form_line(self) -> str:
        """Folded forms joined by single spaces, padded with a space at both ends."""
        if self._form_line is None:
            self._form_line = _joined(self._words, _form_cache, 0)
        return self._form_line

    @property
    def forms(self) -> tuple[str, ...]:
        """Folded forms by position."""
        if self._forms is None:
            self._forms = tuple(self.form_line.split())
        return self._forms

    @property
    def stems(self) -> tuple[str, ...]:
        """Stems by position."""
        if self._stems is None:
            self._stems = tuple(self.stem_line.split())
        return self._stems

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` character offsets in ``text`` by position."""
        if self._words:
            self._walk(len(self.forms) - 1)
        return tuple(self._spans)

    def span(self, position: int) -> tuple[int, int]:
        """Return the ``(start, end)`` character offsets of the token at ``position``.

        Offsets are found word by word only as far as needed: snippets usually look at the
        first few hundred characters of a long body.
        """
        if position < len(self._spans):
            return self._spans[position]
        self._span_lookups += 1
        # The line has one space more than tokens: a cheap count, no split.
        one_to_one = len(self._words) == self.stem_line.count(" ") - 1
        if self._span_lookups <= _WALK_AFTER and one_to_one:
            return self._word_span(position)
        if one_to_one and all(map(_stem_cache.get, self._words)):
            # No word analysed to nothing, so every word is exactly one token: the spans
            # are the runs of non-spaces in the spaced text, found by one regex pass.
            self._spans = [match.span() for match in _RUN_RE.finditer(self._spaced)]
            self._cursor = (len(self._words), len(self.text))
            return self._spans[position]
        return self._walk(position)

    def _walk(self, position: int) -> tuple[int, int]:
        spans = self._spans
        if position >= len(spans):
            text = self.text
            words = self._words
            index, cursor = self._cursor
            while position >= len(spans) and index < len(words):
                word = words[index]
                start = text.find(word, cursor)
                cursor = start + len(word)
                forms = _form_cache.get(word)
                if forms is None:
                    forms = _analyse_word(word)[0]
                spans.extend([(start, cursor)] * len(forms.split()))
                index += 1
            self._cursor = (index, cursor)
        return spans[position]

    def _word_span(self, position: int) -> tuple[int, int]:
        # Every word is one token here, so the token is the word at ``position``: find its
        # n-th whole-word occurrence in the spaced text (same offsets as ``text``) with C-level
        # searches instead of walking every word before it.
        word = self._words[position]
        seen = self._words[:position].count(word)
        padded = " " + self._spaced + " "
        needle = f" {word} "
        index = -1
        start = 0
        for _ in range(seen + 1):
            index = padded.find(needle, start)
            start = index + len(word) + 1
        return index, index + len(word)

    def positions(self, token: str, *, exact: bool = False) -> list[int]:
        """Return the positions of ``token`` (a stem, or a form when ``exact``), ascending."""
        index = self._form_index if exact else self._stem_index
        tokens = self.forms if exact else self.stems
        if index is None:
            # A scan is cheaper than building the index for the first few look-ups.
            self._lookups += 1
            if self._lookups < _INDEX_AFTER:
                return [i for i, value in enumerate(tokens) if value == token]
            index = {}
            for position, value in enumerate(tokens):
                found = index.get(value)
                if found is None:
                    index[value] = [position]
                else:
                    found.append(position)
            if exact:
                self._form_index = index
            else:
                self._stem_index = index
        return index.get(token, [])

    def __len__(self) -> int:
        return len(self.forms)

    def __repr__(self) -> str:
        return f"AnalysedText({self.text!r}, forms={self.forms!r}, stems={self.stems!r})"


def analyse(text: str) -> AnalysedText:
    """Split ``text`` into tokens with positions, folded forms, stems and character spans.

    Args:
        text: plain text (never HTML).

    Returns:
        The analysed text. Positions count tokens from 0.
    """
    return AnalysedText(text, _space_separators(text))


@functools.lru_cache(maxsize=65_536)
def analyse_words(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the folded forms and the stems of a short text, such as a word of a query.

    Cached: rule sets repeat the same words thousands of times.
    """
    analysed = analyse(text)
    return analysed.forms, analysed.stems


def _space_separators(text: str) -> str:
    """Return ``text`` with every separator character replaced by a space (same length)."""
    if not text.isascii():
        for char in _COMMON_NON_ASCII:
            if char in text:
                text = text.replace(char, " ")
        if not text.isascii():
            # str.translate is slow on non-ASCII text; replacing only the separators
            # present is several times faster, and keeps every word a substring of ``text``.
            for char in _SEPARATORS.intersection(set(text)):
                if char != " ":
                    text = text.replace(char, " ")
            return text
    return text.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii")


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
