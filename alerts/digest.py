"""Digest building: matches in, one ordered, de-duplicated digest out.

A digest is grouped by rule, then by story: when several outlets report the same story, the
subscriber sees it once, from the most authoritative outlet (official first), with the other
outlets listed as "also reported by". Pure: the caller selects the matches of the period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.types import TIERS, Article, Match

_TIER_RANK: dict[str, int] = {tier: rank for rank, tier in enumerate(TIERS)}


def tier_rank(tier: str) -> int:
    """Return the sort rank of a source tier: official first, unknown tiers last."""
    return _TIER_RANK.get(tier, len(TIERS))


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One story in a digest section, shown through its best article.

    ``highlights`` are ``(start, end)`` offsets into ``snippet``; ``also_reported_by`` are the
    other outlets' names, official first; ``published`` is UTC or ``None`` when unknown.
    """

    article_id: str
    title: str
    url: str
    source_name: str
    tier: str
    published: datetime | None
    snippet: str
    highlights: tuple[tuple[int, int], ...]
    also_reported_by: tuple[str, ...]
    story_id: str


@dataclass(frozen=True, slots=True)
class DigestSection:
    """The entries one watch rule contributed to a digest."""

    rule_id: str
    rule_name: str
    entries: tuple[DigestEntry, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest for one subscription and one period.

    ``total`` counts the entries shown; ``omitted`` counts stories left out by the limits.
    ``window_start``/``window_end`` are the half-open UTC span the digest covers.
    """

    subscription_id: str
    period_key: str
    window_start: datetime
    window_end: datetime
    sections: tuple[DigestSection, ...]
    total: int
    omitted: int = 0

    @property
    def is_empty(self) -> bool:
        """Whether the digest has no entry (only a "nothing new" heartbeat would send it)."""
        return self.total == 0


@dataclass(frozen=True, slots=True)
class Outlet:
    """An outlet that reported a story: its display name and tier."""

    name: str
    tier: str = "news"


@dataclass(frozen=True, slots=True)
class DigestCandidate:
    """A match to consider for a digest, with what rendering needs.

    ``story_id`` groups near-duplicate articles; an empty one makes the article its own
    story. ``source_name`` defaults to the article's ``source`` (then its ``domain``).
    """

    match: Match
    article: Article
    story_id: str = ""
    rule_name: str = ""
    source_name: str = ""

    @property
    def story_key(self) -> str:
        """The story this candidate belongs to (``article:<id>`` when it has none)."""
        return self.story_id or f"article:{self.article.id}"

    @property
    def outlet(self) -> Outlet:
        """The outlet of this candidate's article."""
        name = self.source_name or self.article.source or self.article.domain
        return Outlet(name=name, tier=self.article.tier)


@dataclass(frozen=True, slots=True)
class DigestLimits:
    """Size limits of one digest (stories beyond them are counted in ``Digest.omitted``)."""

    per_section: int = 20
    total: int = 100
    snippet_chars: int = 280
    dedupe_across_rules: bool = field(default=True)


def _representative_key(candidate: DigestCandidate) -> tuple[int, float, float, str]:
    published = candidate.article.published
    return (
        tier_rank(candidate.article.tier),
        -candidate.match.score,
        published.timestamp() if published is not None else float("inf"),
        candidate.article.id,
    )


def _entry_order(entry: DigestEntry, score: float) -> tuple[float, float, str]:
    # Newest first; undated entries last; then the stronger match; then a stable tie-break.
    published = -entry.published.timestamp() if entry.published is not None else float("inf")
    return (published, -score, entry.article_id)


def _fallback_snippet(article: Article, limit: int) -> str:
    text = " ".join(article.body.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "…"


def _entry(
    chosen: DigestCandidate, story: Sequence[DigestCandidate], extra: Sequence[Outlet], limit: int
) -> DigestEntry:
    own = chosen.outlet.name
    outlets: dict[str, Outlet] = {}
    for outlet in [*(c.outlet for c in story), *extra]:
        if outlet.name and outlet.name != own:
            known = outlets.get(outlet.name)
            if known is None or tier_rank(outlet.tier) < tier_rank(known.tier):
                outlets[outlet.name] = outlet
    others = sorted(outlets.values(), key=lambda o: (tier_rank(o.tier), o.name.casefold()))
    snippet, highlights = chosen.match.snippet, chosen.match.highlights
    if not snippet:
        snippet, highlights = _fallback_snippet(chosen.article, limit), ()
    return DigestEntry(
        article_id=chosen.article.id,
        title=chosen.article.title,
        url=chosen.article.url,
        source_name=own,
        tier=chosen.article.tier,
        published=chosen.article.published,
        snippet=snippet,
        highlights=tuple(highlights),
        also_reported_by=tuple(o.name for o in others),
        story_id=chosen.story_key,
    )


def build_digest(
    *,
    subscription_id: str,
    period_key: str,
    window_start: datetime,
    window_end: datetime,
    candidates: Iterable[DigestCandidate],
    story_outlets: Mapping[str, Sequence[Outlet]] | None = None,
    rule_order: Sequence[str] = (),
    limits: DigestLimits | None = None,
) -> Digest:
    """Group matches by rule, then story, and return the ordered digest.

    Each story appears once per rule, through its most authoritative article (official tier
    first, then the higher score, then the earliest published). With
    ``limits.dedupe_across_rules`` a story matched by several rules is shown only in the first
    section. Sections follow ``rule_order`` (rules not in it come after, by name); entries are
    newest first. Safe to call twice with the same input: the output is deterministic.

    Args:
        subscription_id: the subscription the digest is for.
        period_key: the period key (see :mod:`alerts.schedule`).
        window_start: start of the covered span (UTC, inclusive).
        window_end: end of the covered span (UTC, exclusive).
        candidates: the matches of the period with their articles.
        story_outlets: every outlet known to have reported a story, by story id.
        rule_order: preferred section order, by rule id.
        limits: size limits; defaults to :class:`DigestLimits`.
    """
    limits = limits or DigestLimits()
    story_outlets = story_outlets or {}
    by_rule: dict[str, dict[str, list[DigestCandidate]]] = {}
    rule_names: dict[str, str] = {}
    for candidate in candidates:
        rule_id = candidate.match.rule_id
        rule_names[rule_id] = rule_names.get(rule_id) or candidate.rule_name or rule_id
        stories = by_rule.setdefault(rule_id, {})
        stories.setdefault(candidate.story_key, []).append(candidate)

    position = {rule_id: index for index, rule_id in enumerate(rule_order)}
    ordered_rules = sorted(
        by_rule,
        key=lambda r: (position.get(r, len(position)), rule_names[r].casefold(), r),
    )
    sections: list[DigestSection] = []
    shown_stories: set[str] = set()
    total = omitted = 0
    for rule_id in ordered_rules:
        scored: list[tuple[DigestEntry, float]] = []
        for story_key, story in by_rule[rule_id].items():
            if limits.dedupe_across_rules and story_key in shown_stories:
                continue
            chosen = min(story, key=_representative_key)
            extra = story_outlets.get(story_key, ())
            scored.append((_entry(chosen, story, extra, limits.snippet_chars), chosen.match.score))
        scored.sort(key=lambda pair: _entry_order(*pair))
        room = max(0, min(limits.per_section, limits.total - total))
        kept = tuple(entry for entry, _ in scored[:room])
        omitted += len(scored) - len(kept)
        if not kept:
            continue
        shown_stories.update(entry.story_id for entry in kept)
        total += len(kept)
        sections.append(DigestSection(rule_id=rule_id, rule_name=rule_names[rule_id], entries=kept))
    return Digest(
        subscription_id=subscription_id,
        period_key=period_key,
        window_start=window_start,
        window_end=window_end,
        sections=tuple(sections),
        total=total,
        omitted=omitted,
    )
