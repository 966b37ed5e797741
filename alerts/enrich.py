"""Enrichment: which countries, companies, projects and commodities an article mentions.

One Aho-Corasick automaton holds every alias of ``config/gazetteer.toml``, folded (lower case,
NFKC, one kind of dash and apostrophe); a hit counts only on word boundaries, and aliases
written in capitals (acronyms: PSO, PPL, US) must match the original text's case.

The automaton is ahocorasick-rs's DFA (Rust): scanning an article's text with it costs a sixth
of what pyahocorasick's trie walk did, and enrichment scans every new article's whole text.
Text that is ASCII once its typographic apostrophes and dashes are folded (much English text)
takes a shorter road to the same findings: a second automaton holds only the ASCII aliases and
scans the text's bytes, lowered by ``bytes.lower``, so there are no character offsets to
compute and the DFA is smaller (the non-ASCII aliases widen its alphabet and double the scan's
cost); an all-ASCII text also skips the folding table.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick_rs

from alerts.exceptions import AlertsError

__all__ = ["ENTITY_KINDS", "Enrichment", "Gazetteer", "GazetteerError", "fold"]

ENTITY_KINDS: Mapping[str, str] = {
    "companies": "company",
    "projects": "project",
    "commodities": "commodity",
}
"""Gazetteer table name to entity id prefix (``company:gazprom``)."""

_CHAR_FOLD = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2019": "'",
        "\u2018": "'",
        "\u00a0": " ",
        "ё": "е",
        "Ё": "Е",
        "«": '"',
        "»": '"',
    }
)
_CHAR_FOLD_PAIRS = tuple((chr(code), target) for code, target in _CHAR_FOLD.items())
"""The folding table as (character, replacement) pairs: ``str.translate`` with a dict looks up
every character of a non-ASCII text in Python (about 50 ns each, 100 us for an article), one
``str.replace`` per pair present costs a scan in C. No replacement is itself replaced."""


class GazetteerError(AlertsError, ValueError):
    """The gazetteer file is malformed."""


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What :meth:`Gazetteer.find` found: ISO country codes and entity ids."""

    countries: frozenset[str] = frozenset()
    entities: frozenset[str] = frozenset()


def fold(text: str) -> str:
    """Fold ``text`` for matching without changing its length, so offsets stay valid."""
    return _lower_keeping_length(_translate(text))


def _translate(text: str) -> str:
    """``text.translate(_CHAR_FOLD)``, faster."""
    if text.isascii():
        # The table maps no ASCII character.
        return text
    for char, target in _CHAR_FOLD_PAIRS:
        if char in text:
            text = text.replace(char, target)
    return text


def _lower_keeping_length(normalised: str) -> str:
    lowered = normalised.lower()
    if len(lowered) == len(normalised):
        return lowered
    # Rare characters (İ) grow when lowered: fold those one by one to keep offsets.
    out = []
    for ch in normalised:
        lowered = ch.lower()
        out.append(lowered if len(lowered) == 1 else ch)
    return "".join(out)


def _is_acronym(alias: str) -> bool:
    return any(ch.isalpha() for ch in alias) and alias == alias.upper()


def _is_word_char(ch: str) -> bool:
    # Combining marks (Urdu diacritics, Cyrillic accents) belong to the word they follow.
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


_ASCII_WORD_BYTE = tuple(_is_word_char(chr(code)) for code in range(128))
"""``_is_word_char`` of each ASCII character, by code: what the fast path's bytes index."""
_DOUBLE_SPACE = "  "
"""Pattern of the ASCII automaton that sends a text back to the general path, whose
whitespace collapsing it needs (aliases never hold two spaces in a row)."""


@dataclass(frozen=True, slots=True)
class _Target:
    alias: str
    exact: bool
    country: str | None
    entity: str | None


class Gazetteer:
    """Alias automaton over countries and entities."""

    def __init__(
        self,
        countries: Mapping[str, list[str]],
        entities: Mapping[str, list[str]],
    ) -> None:
        """Build the automaton.

        Args:
            countries: ISO 3166-1 alpha-2 code to aliases.
            entities: entity id (``company:gazprom``) to aliases.
        """
        targets: dict[str, list[_Target]] = {}
        for code, aliases in countries.items():
            for alias in aliases:
                self._add(targets, alias, country=code.upper(), entity=None)
        for entity_id, aliases in entities.items():
            for alias in aliases:
                self._add(targets, alias, country=None, entity=entity_id)
        self._targets = [tuple(values) for values in targets.values()]
        # An ASCII text can only hold the ASCII aliases (every other one has a character it
        # lacks), at the same offsets in its bytes as in its characters.
        ascii_keys = [key for key in targets if key.isascii()]
        self._ascii_targets = [tuple(targets[key]) for key in ascii_keys]
        self._ascii_automaton = ahocorasick_rs.BytesAhoCorasick(
            [key.encode("ascii") for key in [*ascii_keys, _DOUBLE_SPACE]],
            matchkind=ahocorasick_rs.MATCHKIND_STANDARD,
            implementation=ahocorasick_rs.Implementation.DFA,
        )
        # The standard match kind reports every alias that ends anywhere, overlapping ones
        # included ("Pakistan" inside "Pakistan Stream"), as the word-boundary rules need.
        self._automaton = (
            ahocorasick_rs.AhoCorasick(
                list(targets),
                matchkind=ahocorasick_rs.MATCHKIND_STANDARD,
                implementation=ahocorasick_rs.Implementation.DFA,
            )
            if targets
            else None
        )
        self.country_codes = frozenset(code.upper() for code in countries)
        self.entity_ids = frozenset(entities)

    @staticmethod
    def _add(
        targets: dict[str, list[_Target]], alias: str, *, country: str | None, entity: str | None
    ) -> None:
        cleaned = " ".join(alias.split())
        if not cleaned:
            return
        key = fold(cleaned)
        target = _Target(
            alias=cleaned.translate(_CHAR_FOLD),
            exact=_is_acronym(cleaned),
            country=country,
            entity=entity,
        )
        bucket = targets.setdefault(key, [])
        if target not in bucket:
            bucket.append(target)

    @classmethod
    def from_toml(cls, text: str) -> Gazetteer:
        """Build a gazetteer from the text of ``config/gazetteer.toml``.

        Raises:
            GazetteerError: invalid TOML or a table without a ``names`` list of strings.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GazetteerError(f"invalid gazetteer TOML: {exc}") from exc
        countries = {
            code: cls._names(f"countries.{code}", table)
            for code, table in data.get("countries", {}).items()
        }
        entities: dict[str, list[str]] = {}
        for table_name, prefix in ENTITY_KINDS.items():
            for ident, table in data.get(table_name, {}).items():
                entities[f"{prefix}:{ident}"] = cls._names(f"{table_name}.{ident}", table)
        unknown = set(data) - {"countries", *ENTITY_KINDS}
        if unknown:
            raise GazetteerError(f"unknown gazetteer tables: {', '.join(sorted(unknown))}")
        return cls(countries, entities)

    @staticmethod
    def _names(where: str, table: Any) -> list[str]:
        names = table.get("names") if isinstance(table, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GazetteerError(f"[{where}] needs names = [strings]")
        return list(names)

    def find(self, text: str) -> Enrichment:
        """Return the countries and entities ``text`` mentions (whole words only)."""
        if self._automaton is None or not text:
            return Enrichment()
        if "\n" in text:
            return self._find_folded(_translate(" ".join(text.split())))
        translated = _translate(text)
        if translated.isascii():
            # ASCII, or made so by the folding table (typographic apostrophes and dashes).
            found = self._find_ascii(translated)
            if found is not None:
                return found
        if "  " in text:
            translated = _translate(" ".join(text.split()))
        return self._find_folded(translated)

    def _find_folded(self, original: str) -> Enrichment:
        """:meth:`find` of a text whose whitespace is collapsed (where it had a newline or two
        spaces in a row) and whose characters went through the folding table: ``original``."""
        if self._automaton is None:
            return Enrichment()
        folded = _lower_keeping_length(original)
        size = len(folded)
        countries: set[str] = set()
        entities: set[str] = set()
        # Offsets are in characters; ``end`` is exclusive.
        for index, start, end in self._automaton.find_matches_as_indexes(folded, overlapping=True):
            if start > 0 and _is_word_char(folded[start - 1]) and _is_word_char(folded[start]):
                continue
            if end < size and _is_word_char(folded[end]) and _is_word_char(folded[end - 1]):
                continue
            _collect(self._targets[index], original[start:end], countries, entities)
        return Enrichment(countries=frozenset(countries), entities=frozenset(entities))

    def find_sorted(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return :meth:`find`'s countries and entity ids, each sorted (as articles hold them)."""
        found = self.find(text)
        return (
            tuple(sorted(found.countries)) if found.countries else (),
            tuple(sorted(found.entities)) if found.entities else (),
        )

    def _find_ascii(self, text: str) -> Enrichment | None:
        """:meth:`find` for a text without newlines whose folding table translation ``text`` is
        ASCII, or ``None`` if it has two spaces in a row (which may need collapsing first).

        The same decisions as the general path: the rest of folding ASCII is lowering it, and
        nothing needs collapsing, so ``text``'s characters and offsets are the folded text's.
        """
        haystack = text.encode("ascii").lower()
        size = len(haystack)
        word = _ASCII_WORD_BYTE
        targets = self._ascii_targets
        countries: set[str] = set()
        entities: set[str] = set()
        for index, start, end in self._ascii_automaton.find_matches_as_indexes(
            haystack, overlapping=True
        ):
            if index == len(targets):
                return None
            if start > 0 and word[haystack[start - 1]] and word[haystack[start]]:
                continue
            if end < size and word[haystack[end]] and word[haystack[end - 1]]:
                continue
            _collect(targets[index], text[start:end], countries, entities)
        return Enrichment(countries=frozenset(countries), entities=frozenset(entities))


def _collect(
    targets: Sequence[_Target], matched: str, countries: set[str], entities: set[str]
) -> None:
    """Add what an alias hit names (``matched``: the hit's unlowered text) to the found sets."""
    for target in targets:
        # Only acronyms compare against the unlowered text.
        if target.exact and matched != target.alias:
            continue
        if target.country is not None:
            countries.add(target.country)
        if target.entity is not None:
            entities.add(target.entity)
