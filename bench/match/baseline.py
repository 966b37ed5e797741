"""The per-rule regex baseline: what a regex-list watcher (Miniflux-style) does per article.

Every rule keeps its own compiled regular expressions and is evaluated against every article;
nothing is shared between rules. Words match their written form only (no stemming), which
makes the baseline slightly cheaper than the real semantics, never dearer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from alerts.query import And, Meta, Near, Node, Not, Or, Phrase, Prefix, Term, parse_query
from alerts.types import Article, RuleSpec

Predicate = Callable[[Article, str, str], bool]


def _words(text: str) -> str:
    raw = text.lstrip("=").split('"~')[0].strip('"')
    return r"\W+".join(re.escape(word) for word in re.findall(r"\w+", raw.lower()))


def _leaf_pattern(leaf: Term | Phrase | Prefix) -> str:
    if isinstance(leaf, Prefix):
        return r"\b" + re.escape(leaf.prefix) + r"\w*"
    return r"\b" + _words(leaf.text) + r"\b"


def _compile(node: Node) -> Predicate:
    if isinstance(node, And):
        parts = [_compile(child) for child in node.children]
        return lambda a, t, b: all(part(a, t, b) for part in parts)
    if isinstance(node, Or):
        parts = [_compile(child) for child in node.children]
        return lambda a, t, b: any(part(a, t, b) for part in parts)
    if isinstance(node, Not):
        inner = _compile(node.child)
        return lambda a, t, b: not inner(a, t, b)
    if isinstance(node, Meta):
        field, value = node.field, node.value
        if field == "country":
            return lambda a, t, b: value.upper() in a.countries
        return lambda a, t, b: str(getattr(a, field, "")).lower() == value
    if isinstance(node, Near):
        left = "(?:" + "|".join(_leaf_pattern(leaf) for leaf in node.left) + ")"
        right = "(?:" + "|".join(_leaf_pattern(leaf) for leaf in node.right) + ")"
        gap = r"\W+(?:\w+\W+){0," + str(max(node.distance - 1, 0)) + "}"
        near = re.compile(f"{left}{gap}{right}|{right}{gap}{left}")
        return lambda a, t, b: bool(near.search(t) or near.search(b))
    pattern = re.compile(_leaf_pattern(node))
    if node.field == "title":
        return lambda a, t, b: bool(pattern.search(t))
    if node.field == "body":
        return lambda a, t, b: bool(pattern.search(b))
    return lambda a, t, b: bool(pattern.search(t) or pattern.search(b))


class RegexBaseline:
    """All rules, each compiled to its own regular expressions, run one after the other."""

    def __init__(self, rules: list[RuleSpec]) -> None:
        self._rules = [(rule.id, _compile(parse_query(rule.query).root)) for rule in rules]

    def match(self, article: Article) -> list[str]:
        """Return the ids of the matching rules."""
        title, body = article.title.lower(), article.body.lower()
        return [rule_id for rule_id, predicate in self._rules if predicate(article, title, body)]
