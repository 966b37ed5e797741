"""Property: the presearched matcher finds what brute-force evaluation finds, same scores."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.exceptions import InvalidRuleError
from alerts.matching import (
    Matcher,
    MatchOptions,
    _canonical,
    _Doc,
    _occurrences,
    _score_parts,
    _term_score,
    brute_force_match,
    brute_force_scores,
)
from alerts.query import Meta, iter_leaves, parse_query
from alerts.types import Article, RuleSpec

WORDS = [
    "oil",
    "oils",
    "gas",
    "pipeline",
    "pipelines",
    "Pakistan",
    "Russia",
    "LNG",
    "crude",
    "cricket",
    "talent",
    "of",
    "нефть",
    "нефти",
    "газ",
    "پاکستان",
    "تیل",
    "Café",
    "cafe",
]
PREFIXES = ["pipel*", "pak*", "неф*", "caf*", "cri*"]

word = st.sampled_from(WORDS)
leaf = st.one_of(
    word,
    word.map(lambda w: "=" + w),
    st.sampled_from(PREFIXES),
    st.lists(word, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
    st.tuples(st.lists(word, min_size=2, max_size=3), st.integers(1, 6)).map(
        lambda t: '"' + " ".join(t[0]) + f'"~{t[1]}'
    ),
    st.tuples(st.sampled_from(["title:", "body:"]), word).map("".join),
    st.sampled_from(["country:PK", "country:RU", "tier:official", "lang:ru", "domain:gov.pk"]),
    st.tuples(word, st.integers(0, 5), word).map(lambda t: f"{t[0]} NEAR/{t[1]} {t[2]}"),
    st.tuples(word, word, st.integers(0, 4), st.sampled_from(PREFIXES)).map(
        lambda t: f'title:(("{t[0]} {t[1]}" OR {t[3]}) NEAR/{t[2]} {t[0]})'
    ),
    st.lists(word, min_size=2, max_size=3).map(lambda ws: '="' + " ".join(ws) + '"'),
    st.lists(word, min_size=2, max_size=2).map(lambda ws: 'body:"' + " ".join(ws) + '"~2'),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda cs: "(" + " ".join(cs) + ")"),
        st.lists(children, min_size=2, max_size=3).map(lambda cs: "(" + " OR ".join(cs) + ")"),
        st.tuples(children, children).map(lambda t: f"({t[0]} -{t[1]})"),
    )


query_text = st.recursive(leaf, _combine, max_leaves=6)


def _valid(text: str) -> bool:
    try:
        parse_query(text)
    except InvalidRuleError:
        return False
    return True


rule_specs = st.lists(
    st.tuples(query_text.filter(_valid), st.sampled_from([0.0, 0.0, 1.0, 3.0])),
    min_size=1,
    max_size=12,
).map(lambda qs: [RuleSpec(f"r{i:02d}", q, min_score=s) for i, (q, s) in enumerate(qs)])

text = st.lists(word, max_size=25).map(" ".join)
articles = st.builds(
    Article,
    id=st.just("a"),
    title=text,
    body=text,
    tier=st.sampled_from(["news", "official"]),
    lang=st.sampled_from(["en", "ru", ""]),
    domain=st.sampled_from(["dawn.com", "www.finance.gov.pk"]),
    countries=st.frozensets(st.sampled_from(["PK", "RU", "IN"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_specs, article_list=st.lists(articles, min_size=1, max_size=4))
def test_presearch_equals_brute_force(rules: list[RuleSpec], article_list: list[Article]) -> None:
    matcher = Matcher.build(rules)
    for article in article_list:
        found = [m.rule_id for m in matcher.match(article)]
        assert found == brute_force_match(rules, article)
        assert set(found) <= set(matcher.candidates(article))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=rule_specs,
    article_list=st.lists(articles, min_size=1, max_size=4),
    weights=st.sampled_from([(2.0, 1.0), (1.0, 1.0), (3.5, 0.25), (0.0, 1.0), (1.0, 0.0)]),
)
def test_presearched_scores_equal_brute_force_scores(
    rules: list[RuleSpec], article_list: list[Article], weights: tuple[float, float]
) -> None:
    # The matcher scores from packed counts and one score table per article; the reference
    # scans tokens per leaf. Equal floats, not merely close ones: scores are stored and shown.
    options = MatchOptions(title_weight=weights[0], body_weight=weights[1])
    matcher = Matcher.build(rules, options=options)
    by_id = {rule.id: rule for rule in rules}
    for article in article_list:
        matches = matcher.match(article)
        found = {m.rule_id: m.score for m in matches}
        assert found == brute_force_scores(rules, article, options)
        for match in matches:
            assert match.terms == _reference_terms(by_id[match.rule_id], article, options)


def _reference_terms(rule: RuleSpec, article: Article, options: MatchOptions) -> tuple[str, ...]:
    """Return the terms of ``rule`` that score in ``article``, from token scans.

    A term is the first leaf text written for its pattern and scope; it is found when its
    score is not zero.
    """
    doc = _Doc(article, {})
    texts: dict[tuple[object, ...], str] = {}
    found: dict[tuple[object, ...], bool] = {}
    for leaf in iter_leaves(parse_query(rule.query).root, positive_only=True):
        if isinstance(leaf, Meta):
            continue
        for part in _score_parts(leaf):
            key = _canonical(part)
            texts.setdefault(key, leaf.text)
            title = len(_occurrences(doc.title, part)) if part.field != "body" else 0
            body = len(_occurrences(doc.body, part)) if part.field != "title" else 0
            found[key] = _term_score(title, body, options) != 0.0
    return tuple(dict.fromkeys(text for key, text in texts.items() if found[key]))
