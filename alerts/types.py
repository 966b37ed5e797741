"""Plain data shared by the core and the shell. Immutable, hashable, no behaviour beyond
``Match`` cutting its snippet on first use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol

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


class Excerpt(Protocol):
    """Where a match's snippet comes from: made already, or made on first use."""

    def make(self, key: object) -> tuple[str, tuple[tuple[int, int], ...]]:
        """Return the snippet and its highlights for the match that holds ``key``."""
        ...


@dataclass(frozen=True, slots=True)
class Snippet:
    """A snippet already made (stored with a match, or given by hand)."""

    text: str = ""
    highlights: tuple[tuple[int, int], ...] = ()

    def make(self, key: object) -> tuple[str, tuple[tuple[int, int], ...]]:
        return self.text, self.highlights


NO_SNIPPET: Final = Snippet()


class Match(tuple[str, str, float, tuple[str, ...], Excerpt, object]):
    """Why an article matched a rule. Immutable and hashable.

    ``terms`` are the distinct rule terms found in the article (as written in the rule).
    ``snippet`` is a short plain-text excerpt; ``highlights`` are ``(start, end)`` character
    offsets into ``snippet`` to emphasise (renderers escape the text and wrap these spans).

    The matcher makes a match per matching rule, often a hundred per article, and most are
    only counted or filtered: it hands each match an :class:`Excerpt` that keeps what it
    found in the article, and the snippet text is cut when ``snippet`` is first read. A
    match built by hand (or from storage) takes its ``snippet`` and ``highlights`` as given.
    Equality compares the six public attributes.
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
        excerpt = Snippet(snippet, highlights) if snippet or highlights else NO_SNIPPET
        return tuple.__new__(cls, (rule_id, article_id, score, terms, excerpt, None))

    @property
    def rule_id(self) -> str:
        return self[0]

    @property
    def article_id(self) -> str:
        return self[1]

    @property
    def score(self) -> float:
        return self[2]

    @property
    def terms(self) -> tuple[str, ...]:
        return self[3]

    @property
    def snippet(self) -> str:
        return self[4].make(self[5])[0]

    @property
    def highlights(self) -> tuple[tuple[int, int], ...]:
        return self[4].make(self[5])[1]

    def _public(self) -> tuple[object, ...]:
        text, highlights = self[4].make(self[5])
        return (self[0], self[1], self[2], self[3], text, highlights)

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

    def __getnewargs__(self) -> tuple[object, ...]:  # type: ignore[override]
        return self._public()
