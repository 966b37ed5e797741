"""Plain data shared by the core and the shell. Frozen, hashable, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Match:
    """Why an article matched a rule.

    ``terms`` are the distinct rule terms found in the article (as written in the rule).
    ``snippet`` is a short plain-text excerpt; ``highlights`` are ``(start, end)`` character
    offsets into ``snippet`` to emphasise (renderers escape the text and wrap these spans).
    """

    rule_id: str
    article_id: str
    score: float
    terms: tuple[str, ...] = ()
    snippet: str = ""
    highlights: tuple[tuple[int, int], ...] = field(default=())
