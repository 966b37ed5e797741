from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts.digest import Digest, DigestCandidate, DigestLimits, Outlet, build_digest
from tests.support.digests import candidate, sample_digest

START = datetime(2026, 10, 31, 4, tzinfo=UTC)
END = datetime(2026, 11, 1, 4, tzinfo=UTC)


def at(hour: int) -> datetime:
    return datetime(2026, 11, 1, hour, tzinfo=UTC)


def build(candidates: list[DigestCandidate], **kwargs: Any) -> Digest:
    return build_digest(
        subscription_id="sub",
        period_key="2026-11-01",
        window_start=START,
        window_end=END,
        candidates=candidates,
        **kwargs,
    )


def test_one_entry_per_story_official_first() -> None:
    digest = sample_digest()
    assert [s.rule_id for s in digest.sections] == ["lng", "pipeline"]
    lng = digest.sections[0]
    assert len(lng.entries) == 1
    entry = lng.entries[0]
    # The official outlet represents the story even though the news one was earlier.
    assert entry.article_id == "a2"
    assert entry.tier == "official"
    assert entry.also_reported_by == ("APP", "Business Recorder", "Dawn")
    assert digest.total == 2
    assert digest.omitted == 0


def test_snippet_falls_back_to_body_without_highlights() -> None:
    entry = sample_digest().sections[1].entries[0]
    assert entry.snippet.startswith("The 1,100 km Pakistan Stream")
    assert entry.highlights == ()
    assert entry.story_id == "s2"


def test_entries_newest_first_and_undated_last() -> None:
    digest = build(
        [
            candidate("old", published=at(1)),
            candidate("undated"),
            candidate("new", published=at(3)),
            candidate("mid", published=at(2)),
        ]
    )
    assert [e.article_id for e in digest.sections[0].entries] == ["new", "mid", "old", "undated"]


def test_same_story_in_two_rules_shown_once_by_default() -> None:
    both = [
        candidate("x", rule_id="a", rule_name="A", story_id="s"),
        candidate("x", rule_id="b", rule_name="B", story_id="s"),
        candidate("y", rule_id="b", rule_name="B"),
    ]
    digest = build(both)
    assert [(s.rule_id, [e.article_id for e in s.entries]) for s in digest.sections] == [
        ("a", ["x"]),
        ("b", ["y"]),
    ]
    kept = build(both, limits=DigestLimits(dedupe_across_rules=False))
    assert [len(s.entries) for s in kept.sections] == [1, 2]


def test_duplicate_candidates_collapse() -> None:
    digest = build([candidate("x"), candidate("x")])
    assert digest.total == 1
    assert digest.sections[0].entries[0].also_reported_by == ()


def test_limits_count_omitted_stories() -> None:
    many = [candidate(f"r1-{i}", rule_id="r1", published=at(i % 24)) for i in range(5)]
    many += [candidate(f"r2-{i}", rule_id="r2", published=at(i % 24)) for i in range(5)]
    digest = build(many, limits=DigestLimits(per_section=3, total=4))
    assert [len(s.entries) for s in digest.sections] == [3, 1]
    assert digest.total == 4
    assert digest.omitted == 6


def test_sections_follow_rule_order_then_name() -> None:
    digest = build(
        [
            candidate("1", rule_id="z", rule_name="Alpha"),
            candidate("2", rule_id="y", rule_name="Beta"),
            candidate("3", rule_id="x", rule_name="Gamma"),
        ],
        rule_order=["x"],
    )
    assert [s.rule_name for s in digest.sections] == ["Gamma", "Alpha", "Beta"]


def test_representative_prefers_score_then_earliest() -> None:
    digest = build(
        [
            candidate("late-strong", story_id="s", score=2.0, published=at(5), source="A"),
            candidate("early-weak", story_id="s", score=1.0, published=at(1), source="B"),
            candidate("early-strong", story_id="s", score=2.0, published=at(2), source="C"),
        ],
        story_outlets={"s": [Outlet("C"), Outlet("D", "aggregator")]},
    )
    entry = digest.sections[0].entries[0]
    assert entry.article_id == "early-strong"
    assert entry.also_reported_by == ("A", "B", "D")


def test_empty_digest() -> None:
    digest = build([])
    assert digest.is_empty
    assert digest.sections == ()
