"""The matcher: semantics of every operator, scores, snippets and build errors."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from alerts.exceptions import InvalidRuleError
from alerts.matching import (
    Matcher,
    MatchOptions,
    _round4,
    brute_force_match,
    estimate_frequencies,
    evaluate,
)
from alerts.query import parse_query
from alerts.types import Article, Match, RuleSpec

DEAL = Article(
    id="a1",
    title="Pakistan and Russia sign crude oil deal",
    body=(
        "Islamabad: Pakistan and Russia agreed on Tuesday to expand crude oil supplies. "
        "The Pakistan Stream gas pipeline will carry LNG-derived gas from Karachi to Lahore. "
        "Officials said new pipelines are planned."
    ),
    source="Dawn",
    domain="www.dawn.com",
    tier="news",
    lang="en",
    countries=frozenset({"PK", "RU"}),
    entities=frozenset({"project:pakistan-stream"}),
    tags=frozenset({"energy"}),
)
CRICKET = Article(
    id="a2",
    title="Pakistan beat Russia in cricket friendly",
    body="A pipeline of talent: the young side showed its oil-and-water batting order.",
    tier="news",
    lang="en",
    countries=frozenset({"PK", "RU"}),
)
RUSSIAN = Article(
    id="a3",
    title="Россия увеличит поставки нефти в Пакистан",
    body="Москва и Исламабад обсудили строительство газопровода.",
    domain="government.ru",
    tier="official",
    lang="ru",
)
URDU = Article(id="a4", title="پاکستان اور روس کے درمیان تیل کا معاہدہ", body="", lang="ur")
ARTICLES = (DEAL, CRICKET, RUSSIAN, URDU)


def matching(query: str) -> list[str]:
    matcher = Matcher.build([RuleSpec("r", query)])
    found = [a.id for a in ARTICLES if matcher.match(a)]
    assert found == [a.id for a in ARTICLES if evaluate(parse_query(query), a)]
    return found


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("Pakistan Russia", ["a1", "a2"]),
        ("Pakistan AND Russia AND oil", ["a1", "a2"]),
        ("Pakistan Russia oil -cricket", ["a1"]),
        ("Pakistan Russia oil NOT cricket", ["a1"]),
        ("cricket OR нефть", ["a2", "a3"]),
        ("(crude OR LNG) AND pipeline", ["a1"]),
        ('"Pakistan Stream"', ["a1"]),
        ('"Stream Pakistan"', []),
        ('"Pakistan crude"~4', ["a1"]),
        ('"Pakistan crude"~3', []),
        ("Pakistan NEAR/3 oil", ["a1"]),
        ("Pakistan NEAR/2 oil", []),
        ("Karachi NEAR/2 (Lahore OR Islamabad)", ["a1"]),
        ("pipelin*", ["a1", "a2"]),
        ("газопровод*", ["a3"]),
        ("pipeline", ["a1", "a2"]),
        ("=pipelines", ["a1"]),
        ("=pipeline", ["a1", "a2"]),
        ("нефть", ["a3"]),
        ("пакистан", ["a3"]),
        ("تیل", ["a4"]),
        ("title:pipeline", []),
        ("body:pipeline -title:cricket", ["a1"]),
        ("title:(crude OR cricket)", ["a1", "a2"]),
        ("tier:official", ["a3"]),
        ("domain:dawn.com", ["a1"]),
        ("domain:ru", ["a3"]),
        ("source:dawn", ["a1"]),
        ("lang:ru OR lang:ur", ["a3", "a4"]),
        ("country:PK oil", ["a1", "a2"]),
        ("entity:project:pakistan-stream", ["a1"]),
        ("tag:energy", ["a1"]),
        ("CASA-1000 OR LNG", ["a1"]),
        ("oil -(cricket OR talent)", ["a1"]),
    ],
)
def test_operators(query: str, ids: list[str]) -> None:
    assert matching(query) == ids


def test_matches_are_sorted_by_rule_id_and_explain_why() -> None:
    matcher = Matcher.build(
        [RuleSpec("z-last", "pipeline"), RuleSpec("a-first", "Pakistan (oil OR LNG) -cricket")]
    )
    matches = matcher.match(DEAL)
    assert [m.rule_id for m in matches] == ["a-first", "z-last"]
    first = matches[0]
    assert first.article_id == "a1"
    assert first.terms == ("Pakistan", "oil", "LNG")
    for start, end in first.highlights:
        assert first.snippet[start:end].casefold() in {"pakistan", "oil", "lng"}
    assert len(first.highlights) >= 3


def test_score_counts_frequency_with_a_title_boost() -> None:
    matcher = Matcher.build([RuleSpec("t", "Karachi"), RuleSpec("p", "Pakistan")])
    scores = {m.rule_id: m.score for m in matcher.match(DEAL)}
    assert scores["t"] == 1.0
    # Title: 2.0; body: "Pakistan" twice (once inside "Pakistan Stream"): 1 + ln 2.
    assert scores["p"] == pytest.approx(2.0 + 1.0 + 0.6931, abs=1e-4)


def test_min_score_filters() -> None:
    rules = [RuleSpec("low", "Karachi", min_score=1.5), RuleSpec("high", "Pakistan", min_score=3)]
    assert [m.rule_id for m in Matcher.build(rules).match(DEAL)] == ["high"]
    assert brute_force_match(rules, DEAL) == ["high"]


def test_snippet_is_a_window_around_the_first_hit() -> None:
    body = "word " * 100 + "the Pakistan Stream pipeline " + "word " * 100
    article = Article(id="x", title="Update", body=body)
    (match,) = Matcher.build([RuleSpec("r", '"Pakistan Stream"')]).match(article)
    assert match.snippet.startswith("…")
    assert match.snippet.endswith("…")
    assert len(match.snippet) <= 202
    ((start, end),) = match.highlights
    assert match.snippet[start:end] == "Pakistan Stream"


def test_title_only_match_uses_the_title_as_snippet() -> None:
    (match,) = Matcher.build([RuleSpec("r", "title:cricket")]).match(CRICKET)
    assert match.snippet == CRICKET.title
    assert [match.snippet[a:b] for a, b in match.highlights] == ["cricket"]


def test_metadata_only_rules_run_for_every_article() -> None:
    matcher = Matcher.build([RuleSpec("official", "tier:official"), RuleSpec("oil", "oil")])
    assert matcher.always_run == 1
    assert len(matcher) == 2
    assert [m.rule_id for m in matcher.match(RUSSIAN)] == ["official"]


def test_presearch_skips_rules_whose_anchor_is_absent() -> None:
    matcher = Matcher.build(
        [RuleSpec("a", "Karachi oil"), RuleSpec("b", "Lahore NEAR/3 gas"), RuleSpec("c", "Moscow")]
    )
    assert matcher.candidates(DEAL) == ["a", "b"]
    assert matcher.candidates(URDU) == []


def test_frequencies_choose_the_rarer_anchor() -> None:
    common = Article(id="c", title="oil oil", body="")
    frequencies = estimate_frequencies([common, common, DEAL])
    matcher = Matcher.build([RuleSpec("r", "oil Karachi")], frequencies=frequencies)
    assert matcher.candidates(common) == []
    assert matcher.candidates(DEAL) == ["r"]


def test_bad_rule_names_its_id() -> None:
    with pytest.raises(InvalidRuleError) as info:
        Matcher.build([RuleSpec("good", "oil"), RuleSpec("bad", "oil AND (gas")])
    assert info.value.rule_id == "bad"
    assert info.value.position == 12
    assert "bad" in str(info.value)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(InvalidRuleError) as info:
        Matcher.build([RuleSpec("x", "oil"), RuleSpec("x", "gas")])
    assert info.value.rule_id == "x"


def test_empty_matcher_matches_nothing() -> None:
    matcher = Matcher.build([])
    assert len(matcher) == 0
    assert matcher.match(DEAL) == []


def test_match_many_keeps_article_order() -> None:
    matcher = Matcher.build([RuleSpec("r", "Pakistan OR пакистан")])
    assert [m.article_id for m in matcher.match_many([RUSSIAN, DEAL])] == ["a3", "a1"]


@pytest.mark.parametrize(
    "query",
    [
        # More constants than a generated predicate takes: composed closures are used.
        " OR ".join(f"word{n}" for n in range(300)) + " OR pipeline",
        # Nested deeper than a generated predicate goes (alternating, so nothing flattens).
        "".join(f"(w{n} {'OR' if n % 2 else 'AND'} " for n in range(45))
        + "crude"
        + ")" * 45
        + " OR (oil -cricket)",
    ],
)
def test_very_large_rules_match_like_the_reference(query: str) -> None:
    rules = [RuleSpec("big", query)]
    matcher = Matcher.build(rules)
    for article in (DEAL, CRICKET, RUSSIAN):
        assert [m.rule_id for m in matcher.match(article)] == brute_force_match(rules, article)
    assert [m.rule_id for m in matcher.match(DEAL)] == ["big"]


def test_wide_rule_scores_and_explains_like_a_narrow_one() -> None:
    # More scored terms than the matcher's score table has columns: scored one by one.
    filler = " OR ".join(f"word{n}" for n in range(40))
    wide, narrow = Matcher.build(
        [RuleSpec("wide", f"{filler} OR Pakistan OR oil"), RuleSpec("narrow", "Pakistan OR oil")]
    ).match(DEAL)
    assert wide.score == narrow.score
    assert wide.terms == narrow.terms == ("Pakistan", "oil")


def test_matches_read_their_attributes_like_matches_built_by_hand() -> None:
    (found,) = Matcher.build([RuleSpec("r", '"Pakistan Stream" OR Karachi')]).match(DEAL)
    by_hand = Match(
        rule_id="r",
        article_id="a1",
        score=found.score,
        terms=('"Pakistan Stream"', "Karachi"),
        snippet=found.snippet,
        highlights=found.highlights,
    )
    assert found == by_hand
    assert hash(found) == hash(by_hand)
    assert pickle.loads(pickle.dumps(found)) == by_hand
    assert repr(found) == repr(by_hand)
    assert [found.snippet[a:b] for a, b in found.highlights] == ["Pakistan Stream", "Karachi"]


def test_matches_without_snippets_have_empty_ones() -> None:
    matcher = Matcher.build([RuleSpec("r", "pipeline")]).with_options(MatchOptions(snippets=False))
    (match,) = matcher.match(DEAL)
    assert (match.snippet, match.highlights, match.terms) == ("", (), ("pipeline",))


@pytest.mark.parametrize(
    "query",
    [
        "-(Karachi NEAR/2 Lahore) pipeline",
        'pipeline -"crude Pakistan"~3',
        "domain:dawn.com OR domain:gov.pk",
        "-domain:com oil",
        "source:daw* Pakistan",
        "(oil AND (gas OR LNG)) OR (Karachi AND (Lahore OR cricket))",
    ],
)
def test_negations_metadata_and_distributed_clauses_match_like_the_reference(query: str) -> None:
    rules = [RuleSpec("r", query)]
    matcher = Matcher.build(rules)
    for article in ARTICLES:
        assert [m.rule_id for m in matcher.match(article)] == brute_force_match(rules, article)


def test_scores_round_like_python() -> None:
    values = [0.00005 * n for n in range(20_000)] + [1.03125, 2.5, 1e12 + 0.5, 3.14159265]
    assert _round4(np.array(values)) == [round(value, 4) for value in values]
    assert _round4(np.array(values[-3:])) == [round(value, 4) for value in values[-3:]]


@pytest.mark.parametrize(
    "query",
    [
        # A phrase hit ends after a word hit that starts later: positions come from ends.
        '"crude oil supplies" NEAR/1 expand',
        '"crude oil" NEAR/0 supplies',
        "oil NEAR/0 (crude OR supplies)",
        # Overlapping occurrences of a repeated phrase, and a prefix.
        '"gas gas" NEAR/0 pipelin*',
        '"gas gas" NEAR/1 title:gas',
        'title:(gas NEAR/1 pipeline) OR "gas pipeline gas"~2',
    ],
)
def test_proximity_positions_match_the_reference(query: str) -> None:
    articles = [
        *ARTICLES,
        Article(id="g", title="Gas pipeline gas", body="gas gas gas pipelines, gas gas pipeline"),
    ]
    rules = [RuleSpec("r", query)]
    matcher = Matcher.build(rules)
    for article in articles:
        found = matcher.match(article)
        assert [m.rule_id for m in found] == brute_force_match(rules, article)
        for match in found:
            assert all(match.snippet[a:b] for a, b in match.highlights)


def test_per_thread_tables_are_left_clean_and_threads_match_alike() -> None:
    rules = [
        RuleSpec("a", "Pakistan OR пакистан"),
        RuleSpec("b", "pipeline -cricket"),
        RuleSpec("c", "domain:dawn.com oil"),
        RuleSpec("d", "Karachi NEAR/3 Lahore"),
        RuleSpec("e", "lang:ru"),
    ]
    matcher = Matcher.build(rules)
    expected = {a.id: [(m.rule_id, m.score, m.terms) for m in matcher.match(a)] for a in ARTICLES}
    for article in ARTICLES:
        assert [m.rule_id for m in matcher.match(article)] == brute_force_match(rules, article)
    scratch = matcher._scratch
    assert not scratch.scores.any()
    assert (scratch.values == matcher._tables.absent).all()

    def run(_: int) -> dict[str, list[tuple[str, float, tuple[str, ...]]]]:
        return {
            a.id: [(m.rule_id, m.score, m.terms) for m in matcher.match(a)] for a in ARTICLES * 50
        }

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(found == expected for found in pool.map(run, range(8)))
