"""Plain data shared by the core and the shell. Immutable and hashable; ``Match`` works out
some attributes when they are first read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, cast

Tier = Literal["official", "news", "aggregator"]
TIERS: tuple[Tier, ...] = ("official", "news", "aggregator")


@dataclass(frozen=True, slots=True)
class Article:
    """An article as the matcher sees it: normalised plain text plus enrichment.

    ``id`` is the caller's identity for the article (the database id as text in the service,
    the ``id`` field of a JSONL line in batch mode). ``body`` is plain text (summary and main
    text), never HTML. ``countries`` are ISO 3166-1 alpha-2 codes in upper case; ``entities``
    are gazetteer ids (for example ``project:pakistan-stream``); ``lang`` is an ISO 639-1 code
    or the empty string when unknown. ``published`` is timezone-aware UTC.
    """

    id: str
    title: str
    body: str = ""
    url: str = ""
    source: str = ""
    domain: str = ""
    tier: str = "news"
    lang: str = ""
    countries: frozenset[str] = frozenset()
    entities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    published: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A watch rule as the matcher needs it: a stable id, its query and its threshold."""

    id: str
    query: str
    name: str = ""
    min_score: float = 0.0
    tags: frozenset[str] = frozenset()


class MatchSource(Protocol):
    """What a :class:`Match` reads its attributes from (see there)."""

    @property
    def article_id(self) -> str:
        """The matched article's id."""
        ...

    def rule_id_of(self, rule: object) -> str:
        """Return the id of the rule the match keeps as ``rule``."""
        ...

    def terms_of(self, rule: object, found: object) -> tuple[str, ...]:
        """Return the matched terms, from the match's ``rule`` and ``found``."""
        ...

    def excerpt_of(self, rule: object) -> tuple[str, tuple[tuple[int, int], ...]]:
        """Return the snippet and its highlights for the match's ``rule``."""
        ...


@dataclass(frozen=True, slots=True)
class GivenMatch:
    """The source of a match built by hand or read from storage: everything as given."""

    article_id: str
    snippet: str = ""
    highlights: tuple[tuple[int, int], ...] = ()

    def rule_id_of(self, rule: object) -> str:
        return cast(str, rule)

    def terms_of(self, rule: object, found: object) -> tuple[str, ...]:
        return cast(tuple[str, ...], found)

    def excerpt_of(self, rule: object) -> tuple[str, tuple[tuple[int, int], ...]]:
        return self.snippet, self.highlights


class Match(tuple[object, float, object, MatchSource]):
    """Why an article matched a rule. Immutable and hashable.

    ``terms`` are the distinct rule terms found in the article (as written in the rule).
    ``snippet`` is a short plain-text excerpt; ``highlights`` are ``(start, end)`` character
    offsets into ``snippet`` to emphasise (renderers escape the text and wrap these spans).

    The matcher makes a match per matching rule, often a hundred per article, and most are
    only counted, filtered or stored: so a match it makes keeps the rule's number, the score,
    a bitmask of the rule's terms found and one source shared by the article's matches, and
    works out the rule id, the terms and the snippet (cut from the analysed article) when
    they are read. A match built by hand (or from storage) keeps its attributes as given.
    Equality and hashing use the six public attributes.
    """

    __slots__ = ()

    def __new__(
        cls,
        rule_id: str,
        article_id: str,
        score: float,
        terms: tuple[str, ...] = (),
        snippet: str = "",
        highlights: tuple[tuple[int, int], ...] = (),
    ) -> Match:
        return tuple.__new__(
            cls, (rule_id, score, terms, GivenMatch(article_id, snippet, highlights))
        )

    @property
    def rule_id(self) -> str:
        return self[3].rule_id_of(self[0])

    @property
    def article_id(self) -> str:
        return self[3].article_id

    @property
    def score(self) -> float:
        return self[1]

    @property
    def terms(self) -> tuple[str, ...]:
        return self[3].terms_of(self[0], self[2])

    @property
    def snippet(self) -> str:
        return self[3].excerpt_of(self[0])[0]

    @property
    def highlights(self) -> tuple[tuple[int, int], ...]:
        return self[3].excerpt_of(self[0])[1]

    def _public(self) -> tuple[str, str, float, tuple[str, ...], str, tuple[tuple[int, int], ...]]:
        source = self[3]
        snippet, highlights = source.excerpt_of(self[0])
        return (
            source.rule_id_of(self[0]),
            source.article_id,
            self[1],
            source.terms_of(self[0], self[2]),
            snippet,
            highlights,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Match):
            return NotImplemented
        return self._public() == other._public()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._public())

    def __repr__(self) -> str:
        rule_id, article_id, score, terms, snippet, highlights = self._public()
        return (
            f"Match(rule_id={rule_id!r}, article_id={article_id!r}, score={score!r}, "
            f"terms={terms!r}, snippet={snippet!r}, highlights={highlights!r})"
        )

    def __getnewargs__(self) -> tuple[object, ...]:
        return self._public()
