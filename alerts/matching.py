"""Match articles against many watch rules at once (a Lucene-Monitor-style presearcher).

How :class:`Matcher` works:

1. Every text leaf of every rule becomes a pattern over analysed tokens: ``" pipelin "`` (a
   stem), ``" pakistan stream "`` (a phrase), ``" explor"`` (a prefix, no trailing space).
   The patterns of each space (stems, folded forms) go into one Aho-Corasick automaton
   (ahocorasick-rs's DFA). An article is analysed once; its title and body become
   space-padded token strings, scanned once each, so the space padding gives whole-token
   matches without boundary checks.
2. Each rule is indexed under a minimal anchor set of patterns, at least one of which must
   occur in any article the rule matches (OR: union of the branches; AND: the branch with
   the rarest anchors; NOT and metadata: none). Rules with no anchor (only metadata, such as
   ``tier:official``) are run for every article.
3. The candidates found through the anchors are verified together: every rule is compiled
   into clauses of literals held in flat NumPy arrays (:class:`_Tables`), and a few array
   operations per article decide every candidate from the pattern counts. Proximity and
   sloppy phrases are Python checks, run only for rules that pass everything else;
   positions are only computed for them and for snippets.
4. Scores are gathered from the same arrays. A :class:`Match` keeps the rule's number and
   the score; the rule id, the terms found and the snippet are worked out when read.

The cost per article therefore grows with the patterns the article contains, not with the
number of rules. :func:`evaluate` is the brute-force reference used by the tests.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import Final, TypeVar, cast

import ahocorasick_rs
import numpy as np
import numpy.typing as npt

from alerts.analysis import AnalysedText, analyse
from alerts.exceptions import InvalidRuleError
from alerts.query import (
    And,
    Leaf,
    Meta,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Term,
    TextField,
    iter_leaves,
    parse_query,
)
from alerts.types import Article, Match, RuleSpec

__all__ = [
    "MatchOptions",
    "Matcher",
    "brute_force_match",
    "brute_force_scores",
    "evaluate",
    "score_leaves",
]

# Term counts are packed into one int per pattern: title count in the low bits, body count
# above them, so a field-scoped test is a single AND with a mask.
_SHIFT: Final = 20
_TITLE_MASK: Final = (1 << _SHIFT) - 1
_BODY_MASK: Final = ~_TITLE_MASK
_BODY_ONE: Final = 1 << _SHIFT
# Field mask -> scope index in a document's score table (title, body, either).
_SCOPES: Final = {_TITLE_MASK: 0, _BODY_MASK: 1, -1: 2}
# Truth values of a slot by its state (bit 1: in the title, bit 2: in the body): true in
# the title, in the body, anywhere, then the negations of the three.
_STATES: Final = np.array(
    [[0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], np.uint8
)
_STEMS: Final = 0
_FORMS: Final = 1
_Key = TypeVar("_Key", str, int)
_Located = dict[int, list[tuple[int, int]]]
# (line, the pattern of each automaton key, the automaton's hits on the line) for each line
# of a field a matcher scans; a hit is (key, start, end).
_Hits = list[tuple[str, tuple[int, ...], list[tuple[int, int, int]]]]
# A pattern space, its automaton, and the pattern of each of the automaton's keys.
_Automaton = tuple[int, ahocorasick_rs.AhoCorasick, tuple[int, ...]]
# Literal kinds: a pattern's presence, an exact metadata value, a check (a predicate).
# A literal is (kind, pattern / metadata value / check id, field mask, negated); the mask
# selects the title or body part of a packed count (see ``_mask``).
_PATTERN: Final = 0
_META: Final = 1
_CHECK: Final = 2
_Literal = tuple[int, int, int, bool]
# Clauses beyond these sizes (OR of ANDs distributes multiplicatively) make the rule a check.
_MAX_CLAUSES: Final = 64
_MAX_LITERALS: Final = 512
# Rules with more scored terms than this are scored one by one (rare, and still exact).
_MAX_WIDTH: Final = 32
# Below this many scores, Python's round is cheaper than the array calls of rounding in bulk.
_BULK_ROUND: Final = 24
# 1 + ln(n) for term counts; 0 for 0. Same doubles as ``math.log``, looked up by count.
_LOG_SIZE: Final = 4096
_ONE_PLUS_LOG: Final = np.array([0.0] + [1.0 + math.log(n) for n in range(1, _LOG_SIZE)])
# Entries of the found-terms memo before it starts again (a few MB at most).
_TERMS_MEMO: Final = 100_000
# Generated predicates: beyond these sizes a rule gets composed closures (the compiler's
# nesting limits are far above these; such rules are rare and still correct).
_MAX_DEPTH: Final = 40
_MAX_ARGS: Final = 250


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """Scoring and snippet settings.

    Attributes:
        title_weight: weight of a term occurrence in the title.
        body_weight: weight of a term occurrence in the body.
        snippet_chars: target length of a snippet in characters.
        snippets: build snippets and highlights; backtests that only count matches turn
            this off and get empty snippets.
    """

    title_weight: float = 2.0
    body_weight: float = 1.0
    snippet_chars: int = 200
    snippets: bool = True


# --- positions (shared by the brute-force evaluator and the compiled predicates) ----------


def _occurrences(text: AnalysedText, leaf: Leaf) -> list[tuple[int, int]]:
    """Return ``(first, last)`` token positions of every occurrence of ``leaf`` in ``text``."""
    if isinstance(leaf, Prefix):
        return [(i, i) for i, form in enumerate(text.forms) if form.startswith(leaf.prefix)]
    if isinstance(leaf, Term):
        return [(i, i) for i in text.positions(leaf.token, exact=leaf.exact)]
    tokens = text.forms if leaf.exact else text.stems
    if leaf.slop == 0:
        size = len(leaf.tokens)
        return [
            (i, i + size - 1)
            for i in text.positions(leaf.tokens[0], exact=leaf.exact)
            if tokens[i : i + size] == leaf.tokens
        ]
    return _sloppy(text, leaf)


def _sloppy(text: AnalysedText, leaf: Phrase) -> list[tuple[int, int]]:
    """Return windows where every word of ``leaf`` occurs within ``leaf.slop`` words, any order.

    Repeated words must occur as many times as they are repeated in the phrase.
    """
    need: dict[str, int] = {}
    for token in leaf.tokens:
        need[token] = need.get(token, 0) + 1
    located = sorted(
        (position, token) for token in need for position in text.positions(token, exact=leaf.exact)
    )
    return _windows(located, need, len(leaf.tokens), leaf.slop)


def _windows(
    located: list[tuple[int, _Key]], need: dict[_Key, int], total: int, slop: int
) -> list[tuple[int, int]]:
    """Return ``(first, last)`` windows of at most ``slop`` words holding every needed word.

    Args:
        located: ``(position, word)`` pairs sorted by position.
        need: how many times each word must occur in a window.
        total: the sum of ``need``.
        slop: the largest allowed ``last - first``.
    """
    found: list[tuple[int, int]] = []
    for a, (start, _word) in enumerate(located):
        have: dict[_Key, int] = {}
        missing = total
        for position, word in located[a:]:
            if position - start > slop:
                break
            if have.get(word, 0) < need[word]:
                have[word] = have.get(word, 0) + 1
                missing -= 1
                if missing == 0:
                    found.append((start, position))
                    break
    return found


def _near(doc: _Doc, field: TextField, node: Near) -> bool:
    lefts = [span for leaf in node.left for span in doc.occurrences(field, leaf)]
    if not lefts:
        return False
    rights = [span for leaf in node.right for span in doc.occurrences(field, leaf)]
    return _close(lefts, rights, node.distance)


def _close(lefts: list[tuple[int, int]], rights: list[tuple[int, int]], distance: int) -> bool:
    """Return whether some left and some right occurrence are within ``distance`` words.

    That is ``max(r_first - l_last, l_first - r_last) <= distance`` for some pair.
    """
    for l_first, l_last in lefts:
        low = l_first - distance
        high = l_last + distance
        for r_first, r_last in rights:
            if r_first <= high and r_last >= low:
                return True
    return False


def _fields(field: TextField | None) -> tuple[TextField, ...]:
    return ("title", "body") if field is None else (field,)


def _near_fields(node: Near) -> tuple[TextField, ...]:
    """Return the text fields a NEAR clause may match in (both sides must share one)."""
    fields: set[TextField] = {"title", "body"}
    for leaf in node.left + node.right:
        if leaf.field is not None:
            fields &= {leaf.field}
    return tuple(f for f in ("title", "body") if f in fields)


class _Doc:
    """One article prepared for matching: analysed fields, pattern counts, lazy metadata."""

    __slots__ = (
        "_char_spans",
        "_locate",
        "_located",
        "_meta",
        "_occurrences",
        "_windows",
        "article",
        "body",
        "counts",
        "hits",
        "title",
    )

    def __init__(
        self,
        article: Article,
        counts: dict[int, int],
        locate: Callable[[_Hits], _Located] | None = None,
    ) -> None:
        self.article = article
        self.title = analyse(article.title)
        self.body = analyse(article.body)
        self.counts = counts
        # Snippet windows by (field, first highlighted occurrence): rules that start at the
        # same word share the text and differ only in highlights.
        self._windows: dict[tuple[str, tuple[int, int]], tuple[str, int, int, int]] = {}
        # Character offsets of token occurrences, by field.
        self._char_spans: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}
        self._locate = locate
        self._located: dict[str, _Located] = {}
        # Automaton hits by field, kept by the matcher's scan for :meth:`spots`.
        self.hits: dict[str, _Hits] = {}
        self._meta: dict[str, frozenset[str]] = {}
        # Keyed by (field, id(leaf)): hashing the frozen dataclasses costs more than the
        # look-up saves, and the leaves outlive the document (they belong to the rules).
        self._occurrences: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def spots(self, field: TextField, pattern: int) -> Sequence[tuple[int, int]]:
        """Return the ``(first, last)`` positions of ``pattern`` in ``field``, ascending."""
        located = self._located.get(field)
        if located is None:
            assert self._locate is not None, "only matcher documents locate patterns"
            # Every pattern of the field at once: one walk over a few dozen hits costs less
            # than searching the line again for each pattern a clause or snippet asks for.
            located = self._located[field] = self._locate(self.hits.get(field, []))
        return located.get(pattern, ())

    def window(
        self, field: TextField, first: tuple[int, int], size: int
    ) -> tuple[str, int, int, int]:
        """Return the snippet cut around the occurrence ``first`` (see :func:`_window`)."""
        key = (field, first)
        cut = self._windows.get(key)
        if cut is None:
            text = self.text(field)
            cut = _window(text.text, text.span(first[0])[0], text.span(first[1])[1], size)
            self._windows[key] = cut
        return cut

    def char_spans(self, field: TextField) -> dict[tuple[int, int], tuple[int, int]]:
        """Return the cache of token occurrence -> ``(start, end)`` offsets in ``field``."""
        found = self._char_spans.get(field)
        if found is None:
            found = self._char_spans[field] = {}
        return found

    def occurrences(self, field: TextField, leaf: Leaf) -> list[tuple[int, int]]:
        """Return ``(first, last)`` positions of ``leaf`` in ``field``, computed once."""
        key = (field, id(leaf))
        found = self._occurrences.get(key)
        if found is None:
            found = _occurrences(self.text(field), leaf)
            self._occurrences[key] = found
        return found

    def text(self, field: TextField) -> AnalysedText:
        return self.title if field == "title" else self.body

    def meta(self, field: str) -> frozenset[str]:
        values = self._meta.get(field)
        if values is None:
            values = _meta_values(self.article, field)
            self._meta[field] = values
        return values


def _meta_values(article: Article, field: str) -> frozenset[str]:
    if field == "country":
        raw: Iterable[str] = article.countries
    elif field == "entity":
        raw = article.entities
    elif field == "tag":
        raw = article.tags
    else:
        raw = (getattr(article, field),)
    return frozenset(value.strip().casefold() for value in raw if value)


def _meta_matches(node: Meta, values: frozenset[str]) -> bool:
    if node.prefix:
        return any(value.startswith(node.value) for value in values)
    if node.value in values:
        return True
    if node.field == "domain":
        suffix = "." + node.value
        return any(value.endswith(suffix) for value in values)
    return False


# --- brute force --------------------------------------------------------------------------


def _evaluate(node: Node, doc: _Doc) -> bool:
    if isinstance(node, And):
        return all(_evaluate(child, doc) for child in node.children)
    if isinstance(node, Or):
        return any(_evaluate(child, doc) for child in node.children)
    if isinstance(node, Not):
        return not _evaluate(node.child, doc)
    if isinstance(node, Meta):
        return _meta_matches(node, doc.meta(node.field))
    if isinstance(node, Near):
        return any(_near(doc, field, node) for field in _near_fields(node))
    return any(doc.occurrences(field, node) for field in _fields(node.field))


def evaluate(query: Query, article: Article) -> bool:
    """Return whether ``article`` matches ``query``, checking every clause directly.

    This is the reference semantics: no presearch, no compiled predicates. It is slow
    (every leaf scans the tokens) and meant for tests and one-off checks.
    """
    return _evaluate(query.root, _Doc(article, {}))


def _term_score(title_count: int, body_count: int, options: MatchOptions) -> float:
    value = 0.0
    if title_count:
        value += options.title_weight * (1.0 + math.log(title_count))
    if body_count:
        value += options.body_weight * (1.0 + math.log(body_count))
    return value


def score_leaves(
    leaves: Iterable[tuple[int, int]], options: MatchOptions = MatchOptions()
) -> float:
    """Return the relevance score for ``(title_count, body_count)`` pairs of matched terms.

    Each term contributes ``weight * (1 + ln(tf))`` per field it occurs in, so repeated
    mentions count with diminishing returns and a title mention counts double by default.
    """
    total = 0.0
    for title_count, body_count in leaves:
        total += _term_score(title_count, body_count, options)
    return round(total, 4)


def brute_force_match(
    rules: Iterable[RuleSpec], article: Article, options: MatchOptions = MatchOptions()
) -> list[str]:
    """Return the ids of ``rules`` that match ``article`` by :func:`evaluate`, sorted.

    ``min_score`` is applied with scores computed from token scans, independently of the
    presearcher's counts. Used by tests to check :class:`Matcher` against the reference.
    """
    return sorted(brute_force_scores(rules, article, options))


def brute_force_scores(
    rules: Iterable[RuleSpec], article: Article, options: MatchOptions = MatchOptions()
) -> dict[str, float]:
    """Return rule id -> score for the ``rules`` that :func:`brute_force_match` returns.

    Scores come from token scans of each positive leaf (:func:`score_leaves`), not from the
    presearcher's counts and score tables: tests compare :meth:`Matcher.match` scores to them.
    """
    doc = _Doc(article, {})
    # Parse every rule first: the document caches by leaf identity, so leaves must live on.
    parsed = [(rule, parse_query(rule.query)) for rule in rules]
    matched: dict[str, float] = {}
    for rule, query in parsed:
        if not _evaluate(query.root, doc):
            continue
        counts: dict[tuple[object, ...], tuple[int, int]] = {}
        for leaf in iter_leaves(query.root, positive_only=True):
            if isinstance(leaf, Meta):
                continue
            for part in _score_parts(leaf):
                counts[_canonical(part)] = (
                    len(_occurrences(doc.title, part)) if part.field != "body" else 0,
                    len(_occurrences(doc.body, part)) if part.field != "title" else 0,
                )
        score = score_leaves(counts.values(), options)
        if score >= rule.min_score:
            matched[rule.id] = score
    return matched


def _canonical(leaf: Leaf) -> tuple[object, ...]:
    """Return what identifies a leaf's pattern and scope (the text as written does not)."""
    if isinstance(leaf, Prefix):
        return ("prefix", leaf.prefix, leaf.field)
    tokens = (leaf.token,) if isinstance(leaf, Term) else leaf.tokens
    return ("tokens", tokens, leaf.field, leaf.exact)


def _score_parts(leaf: Leaf) -> tuple[Leaf, ...]:
    """Return the leaves whose counts score ``leaf`` (a sloppy phrase scores its words)."""
    if isinstance(leaf, Phrase) and leaf.slop:
        return tuple(
            Term(token, token, leaf.field, leaf.exact) for token in dict.fromkeys(leaf.tokens)
        )
    return (leaf,)


# --- the presearcher ----------------------------------------------------------------------

# Predicates take the document's pattern counts (the hot input) and the document itself
# (for metadata and positions) and return something truthy when the rule matches.
_Predicate = Callable[[dict[int, int], _Doc], object]


@dataclass(frozen=True, slots=True)
class _Rule:
    spec: RuleSpec
    query: Query
    # The rule as a conjunction of clauses (see :meth:`_Compiler.clauses`).
    clauses: list[list[_Literal]]
    # For every positive leaf (a sloppy phrase's words), in order: the key of its pattern
    # and scope in a document's score table, and its text as written (the "why" of a match).
    score_keys: tuple[int, ...]
    score_texts: tuple[str, ...]
    # Patterns of the positive leaves that may be highlighted in the title, and in the body.
    highlight: tuple[tuple[int, ...], tuple[int, ...]]


class _Patterns:
    """Assigns ids to distinct patterns: ``(space, key)`` where space is stems or forms."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str], int] = {}
        self.keys: list[tuple[int, str]] = []
        self.by_leaf: dict[int, tuple[Leaf, int]] = {}

    def get(self, space: int, key: str) -> int:
        found = self.ids.get((space, key))
        if found is None:
            found = len(self.keys)
            self.ids[(space, key)] = found
            self.keys.append((space, key))
        return found

    def leaf(self, leaf: Leaf) -> int:
        # Compiling a rule asks for the same leaf several times (predicate, anchors,
        # scoring, highlights); remember the answer by identity while its rule is compiled.
        known = self.by_leaf.get(id(leaf))
        if known is not None and known[0] is leaf:
            return known[1]
        found = self._leaf(leaf)
        self.by_leaf[id(leaf)] = (leaf, found)
        return found

    def _leaf(self, leaf: Leaf) -> int:
        if isinstance(leaf, Prefix):
            return self.get(_FORMS, " " + leaf.prefix)
        space = _FORMS if leaf.exact else _STEMS
        if isinstance(leaf, Term):
            return self.get(space, f" {leaf.token} ")
        return self.get(space, " " + " ".join(leaf.tokens) + " ")

    def words(self, leaf: Phrase) -> list[int]:
        space = _FORMS if leaf.exact else _STEMS
        return [self.get(space, f" {token} ") for token in leaf.tokens]


def _join(node: And | Or, parts: list[_Predicate]) -> _Predicate:
    """Combine child predicates; small arities get closures without a generator."""
    both = isinstance(node, And)
    if len(parts) == 2:
        a, b = parts
        if both:
            return lambda c, d: a(c, d) and b(c, d)
        return lambda c, d: a(c, d) or b(c, d)
    if len(parts) == 3:
        a, b, e = parts
        if both:
            return lambda c, d: a(c, d) and b(c, d) and e(c, d)
        return lambda c, d: a(c, d) or b(c, d) or e(c, d)
    items = tuple(parts)
    if both:
        return lambda c, d: all(part(c, d) for part in items)
    return lambda c, d: any(part(c, d) for part in items)


def _join_present(node: And | Or, patterns: list[int]) -> _Predicate:
    """Combine unscoped word tests: a pattern in the counts occurs somewhere in the article."""
    items = frozenset(patterns)
    if isinstance(node, And):
        return lambda c, d: items.issubset(c)
    if len(items) <= 4:
        ordered = tuple(patterns)

        if len(ordered) == 2:
            first, second = ordered
            return lambda c, d: first in c or second in c
        return lambda c, d: any(pattern in c for pattern in ordered)
    return lambda c, d: not items.isdisjoint(c)


def _cost_rank(node: Node) -> int:
    """Order AND children cheapest first so a failing candidate is dropped early.

    Metadata tests are set look-ups, plain words one dict look-up; groups cost more and
    proximity needs positions. AND has no side effects, so the order is free.
    """
    if isinstance(node, Meta):
        return 0
    if isinstance(node, Term | Prefix) or (isinstance(node, Phrase) and not node.slop):
        return 1
    if isinstance(node, Or | And | Not):
        return 2
    return 3


def _arg(args: list[object], value: object) -> str:
    """Append ``value`` to a generated predicate's arguments and return its name."""
    args.append(value)
    return f"a{len(args) - 1}"


def _mask(field: TextField | None) -> int:
    if field == "title":
        return _TITLE_MASK
    if field == "body":
        return _BODY_MASK
    return -1


class _Compiler:
    """Turns one rule tree into a predicate, an anchor set and its scoring terms."""

    def __init__(self, patterns: _Patterns, weight: Callable[[tuple[int, str]], float]) -> None:
        self.patterns = patterns
        self._weigh = weight
        # Pattern id -> weight: anchor choice asks for the same patterns over and over.
        self._weights: dict[int, float] = {}
        # Expression shape -> compiled factory of predicates of that shape.
        self._factories: dict[str, Callable[..., object]] = {}
        # Checks: predicates of the clauses that counts alone cannot decide.
        self.checks: list[_Predicate] = []
        # (metadata field, value) -> id, for every exact metadata condition.
        self.meta_ids: dict[tuple[str, str], int] = {}

    def _plain(self, node: Node) -> int | None:
        """Return the pattern of a leaf that is a plain presence test in any field, else None."""
        if isinstance(node, Term | Prefix) or (isinstance(node, Phrase) and not node.slop):
            return self.patterns.leaf(node) if node.field is None else None
        return None

    def predicate(self, node: Node) -> _Predicate:
        """Return the rule's predicate: one generated function when the tree allows it.

        The tree becomes one Python expression over the counts, such as
        ``(a0 in c or a1 in c) and (a2 in d.meta(a3))``, so a candidate costs one call
        instead of a call per node. Only the expression's shape is compiled (pattern ids,
        metadata values and proximity closures are arguments of a factory), so the few
        shapes a rule set has are compiled once and no rule text ever reaches the compiler.
        Very large or deep trees fall back to composed closures.
        """
        args: list[object] = []
        expr = self._expr(node, args, 0)
        if expr is None or len(args) > _MAX_ARGS:
            return self._closure(node)
        factory = self._factories.get(expr)
        if factory is None:
            params = ", ".join(f"a{i}" for i in range(len(args)))
            source = f"lambda {params}: lambda c, d: {expr}"
            namespace = {"__builtins__": {}, "_meta_matches": _meta_matches}
            factory = eval(compile(source, "<rule predicate>", "eval"), namespace)
            self._factories[expr] = factory
        return cast(_Predicate, factory(*args))

    def _expr(self, node: Node, args: list[object], depth: int) -> str | None:
        """Return ``node`` as an expression over ``c`` (counts) and ``d`` (the document).

        Constants are appended to ``args`` and named ``a<index>``; None means too deep.
        """
        if depth > _MAX_DEPTH:
            return None
        if isinstance(node, And | Or):
            children = node.children
            if isinstance(node, And):
                children = tuple(sorted(children, key=_cost_rank))
            parts: list[str] = []
            for child in children:
                part = self._expr(child, args, depth + 1)
                if part is None:
                    return None
                parts.append(part)
            return "(" + (" and " if isinstance(node, And) else " or ").join(parts) + ")"
        if isinstance(node, Not):
            inner = self._expr(node.child, args, depth + 1)
            return None if inner is None else f"(not {inner})"
        if isinstance(node, Meta):
            field = _arg(args, node.field)
            if node.prefix or node.field == "domain":
                return f"_meta_matches({_arg(args, node)}, d.meta({field}))"
            return f"({_arg(args, node.value)} in d.meta({field}))"
        if isinstance(node, Near):
            return f"{_arg(args, self._near(node))}(c, d)"
        if isinstance(node, Phrase) and node.slop:
            return f"{_arg(args, self._sloppy(node))}(c, d)"
        pattern = _arg(args, self.patterns.leaf(node))
        if node.field is None:
            return f"({pattern} in c)"
        return f"(c.get({pattern}, 0) & {_mask(node.field)})"

    def _closure(self, node: Node) -> _Predicate:
        if isinstance(node, And | Or):
            plain = [self._plain(child) for child in node.children]
            if all(pattern is not None for pattern in plain):
                return _join_present(node, [p for p in plain if p is not None])
            children = node.children
            if isinstance(node, And):
                children = tuple(sorted(children, key=_cost_rank))
            return _join(node, [self._closure(child) for child in children])
        if isinstance(node, Not):
            inner = self._closure(node.child)
            return lambda c, d: not inner(c, d)
        if isinstance(node, Meta):
            meta = node
            return lambda c, d: _meta_matches(meta, d.meta(meta.field))
        if isinstance(node, Near):
            return self._near(node)
        if isinstance(node, Phrase) and node.slop:
            return self._sloppy(node)
        pattern = self.patterns.leaf(node)
        if node.field is None:
            return lambda c, d: pattern in c
        mask = _mask(node.field)
        return lambda c, d: c.get(pattern, 0) & mask

    def _near(self, node: Near) -> _Predicate:
        fields = _near_fields(node)
        left_ids = tuple(dict.fromkeys(self.patterns.leaf(leaf) for leaf in node.left))
        right_ids = tuple(dict.fromkeys(self.patterns.leaf(leaf) for leaf in node.right))
        distance = node.distance

        plan = tuple((field, _mask(field)) for field in fields)

        def near(counts: dict[int, int], doc: _Doc) -> bool:
            get = counts.get
            for field, mask in plan:
                # Positions are only worked out for a field holding both sides, and only for
                # the patterns it holds. (Plain loops, no comprehensions: this runs for every
                # candidate proximity rule, a few calls each costing more than the work.)
                left = []
                for i in left_ids:
                    if get(i, 0) & mask:
                        left.append(i)
                if not left:
                    continue
                right = []
                for i in right_ids:
                    if get(i, 0) & mask:
                        right.append(i)
                if not right:
                    continue
                spots = doc.spots
                lefts: list[tuple[int, int]] = []
                for i in left:
                    lefts += spots(field, i)
                rights: list[tuple[int, int]] = []
                for i in right:
                    rights += spots(field, i)
                if _close(lefts, rights, distance):
                    return True
            return False

        return near

    def _sloppy(self, node: Phrase) -> _Predicate:
        word_ids = self.patterns.words(node)
        mask = _mask(node.field)
        fields = _fields(node.field)
        need: dict[int, int] = {}
        for i in word_ids:
            need[i] = need.get(i, 0) + 1
        total, slop = len(word_ids), node.slop

        def sloppy(counts: dict[int, int], doc: _Doc) -> bool:
            if not all(counts.get(i, 0) & mask for i in need):
                return False
            for field in fields:
                spots = sorted((first, i) for i in need for first, _last in doc.spots(field, i))
                if _windows(spots, need, total, slop):
                    return True
            return False

        return sloppy

    def clauses(self, node: Node) -> list[list[_Literal]]:
        """Return the rule as a conjunction of clauses, each a disjunction of literals.

        A literal tests a pattern's presence in the fields of a mask, or an exact metadata
        value, or runs a check (proximity, sloppy phrases, metadata prefixes), possibly
        negated. NOT is pushed down to the literals and OR distributed over AND; a positive
        proximity or sloppy-phrase check gets presence clauses next to it, so counts alone
        rule out most candidates before any position is looked at. A rule whose clauses
        would be too many becomes one check: its whole predicate.
        """
        found = self._cnf(node, False)
        if found is None or sum(map(len, found)) > _MAX_LITERALS:
            return [[self._check(self.predicate(node), False)]]
        return found

    def _check(self, predicate: _Predicate, negated: bool) -> _Literal:
        self.checks.append(predicate)
        return (_CHECK, len(self.checks) - 1, 0, negated)

    def _cnf(self, node: Node, negated: bool) -> list[list[_Literal]] | None:
        if isinstance(node, Not):
            return self._cnf(node.child, not negated)
        if isinstance(node, And | Or):
            parts: list[list[list[_Literal]]] = []
            for child in node.children:
                part = self._cnf(child, negated)
                if part is None:
                    return None
                parts.append(part)
            if isinstance(node, And) != negated:
                merged = [clause for part in parts for clause in part]
                return merged if len(merged) <= _MAX_CLAUSES else None
            product: list[list[_Literal]] = [[]]
            for part in parts:
                product = [left + right for left in product for right in part]
                if len(product) > _MAX_CLAUSES:
                    return None
            return product
        if isinstance(node, Meta):
            if node.prefix:
                meta = node
                return [
                    [self._check(lambda c, d: _meta_matches(meta, d.meta(meta.field)), negated)]
                ]
            ident = self.meta_ids.setdefault((node.field, node.value), len(self.meta_ids))
            return [[(_META, ident, -1, negated)]]
        if isinstance(node, Near):
            near = [self._check(self._near(node), negated)]
            if negated:
                return [near]
            sides = [
                [(_PATTERN, self.patterns.leaf(leaf), -1, False) for leaf in side]
                for side in (node.left, node.right)
            ]
            return [*sides, near]
        if isinstance(node, Phrase) and node.slop:
            sloppy = [self._check(self._sloppy(node), negated)]
            if negated:
                return [sloppy]
            mask = _mask(node.field)
            words = dict.fromkeys(self.patterns.words(node))
            return [*([(_PATTERN, word, mask, False)] for word in words), sloppy]
        return [[(_PATTERN, self.patterns.leaf(node), _mask(node.field), negated)]]

    def anchors(self, node: Node) -> frozenset[int] | None:
        """Return pattern ids one of which any matching article contains, or None."""
        if isinstance(node, Not | Meta):
            return None
        if isinstance(node, Or):
            union: set[int] = set()
            for child in node.children:
                found = self.anchors(child)
                if found is None:
                    return None
                union |= found
            return frozenset(union)
        if isinstance(node, And):
            options = [a for a in map(self.anchors, node.children) if a is not None]
            return min(options, key=self._cost, default=None)
        if isinstance(node, Near):
            sides = [
                frozenset(self.patterns.leaf(leaf) for leaf in side)
                for side in (node.left, node.right)
            ]
            return min(sides, key=self._cost)
        if isinstance(node, Phrase) and node.slop:
            words = self.patterns.words(node)
            return frozenset({min(words, key=self.weight)})
        return frozenset({self.patterns.leaf(node)})

    def _cost(self, anchors: frozenset[int]) -> tuple[float, int]:
        return (sum(map(self.weight, anchors)), len(anchors))

    def weight(self, pattern: int) -> float:
        """Return the estimated frequency of ``pattern`` (see :func:`_default_weight`)."""
        found = self._weights.get(pattern)
        if found is None:
            found = self._weights[pattern] = self._weigh(self.patterns.keys[pattern])
        return found

    def terms(
        self, node: Node
    ) -> tuple[
        tuple[int, ...],
        tuple[str, ...],
        tuple[tuple[int, ...], tuple[int, ...]],
    ]:
        """Return what scoring and snippets need of the positive leaves, in one walk.

        Returns:
            The score keys (pattern times 3 plus the scope: title, body, either), the leaves'
            texts as written, and the highlight patterns usable in the title and in the body.
        """
        scored: dict[tuple[int, int], str] = {}
        title: dict[int, None] = {}
        body: dict[int, None] = {}
        for leaf in iter_leaves(node, positive_only=True):
            if isinstance(leaf, Meta):
                continue
            mask = _mask(leaf.field)
            if isinstance(leaf, Phrase) and leaf.slop:
                patterns = self.patterns.words(leaf)
            else:
                patterns = [self.patterns.leaf(leaf)]
            for pattern in patterns:
                scored.setdefault((pattern, mask), leaf.text)
                if leaf.field != "body":
                    title.setdefault(pattern, None)
                if leaf.field != "title":
                    body.setdefault(pattern, None)
        # The key packs pattern and scope: a pattern scores the same for every rule.
        keys = tuple(i * 3 + _SCOPES[mask] for i, mask in scored)
        texts = tuple(scored.values())
        return keys, texts, (tuple(title), tuple(body))


def _default_weight(frequencies: Mapping[str, float]) -> Callable[[tuple[int, str]], float]:
    """Return an estimate of how often a pattern occurs in an article (lower is rarer).

    Known document frequencies win; otherwise longer words and phrases are assumed rarer
    (Lucene Monitor's default term weighting prefers longer terms too) and prefixes commoner.
    """

    def weight(pattern: tuple[int, str]) -> float:
        _space, key = pattern
        words = key.split()
        if len(words) == 1 and key.endswith(" "):
            known = frequencies.get(words[0])
            if known is not None:
                return known
        base = 1.0 / (1 + len(key.strip()))
        if not key.endswith(" "):
            return base * 4
        if len(words) > 1:
            parts = [frequencies.get(w, 1.0 / (1 + len(w))) for w in words]
            return min(parts) * 0.5
        return base

    return weight


def estimate_frequencies(articles: Iterable[Article]) -> dict[str, float]:
    """Return the share of ``articles`` containing each stem and folded form.

    Pass the result to :meth:`Matcher.build` so AND rules are anchored on their rarest
    branch; a few hundred recent articles are enough.
    """
    seen: dict[str, int] = {}
    total = 0
    for article in articles:
        total += 1
        words: set[str] = set()
        for text in (analyse(article.title), analyse(article.body)):
            words.update(text.stems)
            words.update(text.forms)
        for word in words:
            seen[word] = seen.get(word, 0) + 1
    return {word: count / total for word, count in seen.items()} if total else {}


_Ints = npt.NDArray[np.int64]
# Some rules, their literals (in rule order, each rule's contiguous) and which literals
# start a clause.
_Part = tuple[_Ints, _Ints, npt.NDArray[np.bool_]]


def _ranges(starts: _Ints, lengths: _Ints) -> tuple[_Ints, _Ints]:
    """Return the concatenated ranges ``starts[i] .. starts[i] + lengths[i]``, and where
    each range begins in the result."""
    ends = np.add.accumulate(lengths)
    at = ends - lengths
    total = int(ends[-1]) if ends.size else 0
    return np.repeat(starts - at, lengths) + np.arange(total), at


@dataclass(frozen=True, slots=True)
class _Tables:
    """The compiled rules as flat arrays, so that one article is checked against all its
    candidate rules with a few array operations instead of a Python call per rule.

    Slots: ``[0, patterns)`` are patterns, then one per exact metadata value, then one that
    is always set: check literals read it, so they count as true until their check runs.

    Each slot has six truth values in a document (:data:`_STATES` by the slot's state):
    present in the title, in the body, anywhere, and the three negations. A literal is
    the index of its value, ``slot * 6 + scope + 3 * negated``, so deciding every literal
    of every candidate is one gather from the document's table of truth values.
    """

    patterns: int
    slots: int
    # Presearch: pattern -> the rules it anchors with their literals and clause starts
    # (patterns that anchor a rule only), and the same for the rules without anchors.
    anchored: dict[int, _Part]
    unanchored: _Part | None
    always: _Ints
    # Clauses: each rule's literals are contiguous; ``first`` marks the first of a clause.
    literal_count: _Ints
    clause_count: _Ints
    # Truth values of every slot in a document where nothing is found (see above).
    absent: npt.NDArray[np.uint8]
    has_check: npt.NDArray[np.bool_]
    # Per rule: (offset of the literal in the rule, check, negated) for its check literals.
    checks: list[tuple[tuple[int, _Predicate, bool], ...]]
    # Per rule with checks: each clause's (first, end) literal offsets in the rule, so a
    # failed check re-decides its rule alone; and whether every check is alone in its
    # clause (then a failed check fails the rule, no re-deciding).
    clause_bounds: list[tuple[tuple[int, int], ...]]
    checks_alone: list[bool]
    # Scoring: each rule's score keys (pattern times 3 plus the scope), padded with the
    # key of a pattern that is never found; ``wide`` rules (more keys than fit) are scored
    # one by one.
    score_keys: _Ints
    wide: npt.NDArray[np.bool_]
    any_wide: bool
    min_score: npt.NDArray[np.float64]
    any_min_score: bool
    # (metadata field, value) -> slot, and the fields rules ask about.
    meta_slots: dict[tuple[str, str], int]
    meta_fields: tuple[str, ...]

    @classmethod
    def build(
        cls,
        rules: list[_Rule],
        anchors: list[frozenset[int] | None],
        compiler: _Compiler,
    ) -> _Tables:
        patterns = len(compiler.patterns.keys)
        meta_slots = {key: patterns + ident for key, ident in compiler.meta_ids.items()}
        true = patterns + len(meta_slots)

        by_pattern: list[list[int]] = [[] for _ in range(patterns)]
        always: list[int] = []
        for position, anchor in enumerate(anchors):
            if anchor is None:
                always.append(position)
            else:
                for pattern in anchor:
                    by_pattern[pattern].append(position)

        slot: list[int] = []
        first: list[bool] = []
        starts: list[int] = []
        counts: list[int] = []
        clause_counts: list[int] = []
        checks: list[tuple[tuple[int, _Predicate, bool], ...]] = []
        clause_bounds: list[tuple[tuple[int, int], ...]] = []
        checks_alone: list[bool] = []
        for rule in rules:
            starts.append(len(slot))
            clause_counts.append(len(rule.clauses))
            mine: list[tuple[int, _Predicate, bool]] = []
            bounds: list[tuple[int, int]] = []
            for clause in rule.clauses:
                bounds.append((len(slot) - starts[-1], len(slot) - starts[-1] + len(clause)))
                for number, (kind, ref, field_mask, negative) in enumerate(clause):
                    first.append(number == 0)
                    if kind == _CHECK:
                        mine.append((len(slot) - starts[-1], compiler.checks[ref], negative))
                        slot.append(true * 6 + _SCOPES[-1])
                        continue
                    value = (ref if kind == _PATTERN else patterns + ref) * 6
                    slot.append(value + _SCOPES[field_mask] + 3 * negative)
            counts.append(len(slot) - starts[-1])
            checks.append(tuple(mine))
            clause_bounds.append(tuple(bounds) if mine else ())
            checks_alone.append(
                all(
                    len(clause) == 1
                    for clause in rule.clauses
                    if any(kind == _CHECK for kind, _ref, _mask, _neg in clause)
                )
            )

        width = max(1, min(_MAX_WIDTH, max((len(r.score_keys) for r in rules), default=1)))
        score_keys = np.full((len(rules), width), patterns * 3, np.int64)
        wide = np.zeros(len(rules), np.bool_)
        for position, rule in enumerate(rules):
            keys = rule.score_keys
            if len(keys) > width:
                wide[position] = True
                continue
            score_keys[position, : len(keys)] = keys
        min_score = np.array([rule.spec.min_score for rule in rules], np.float64)
        literals = np.array(slot, np.int64)
        firsts = np.array(first, np.bool_)
        literal_start = np.array(starts, np.int64)
        literal_count = np.array(counts, np.int64)

        def part(numbers: list[int]) -> _Part:
            # The rules' literals copied next to them: an article joins the parts of its
            # patterns instead of gathering every candidate's literals by ranges.
            found = np.array(numbers, np.int64)
            rows, _at = _ranges(literal_start[found], literal_count[found])
            return found, literals[rows], firsts[rows]

        return cls(
            patterns=patterns,
            slots=true + 1,
            anchored={pattern: part(found) for pattern, found in enumerate(by_pattern) if found},
            unanchored=part(always) if always else None,
            always=np.array(always, np.int64),
            literal_count=literal_count,
            clause_count=np.array(clause_counts, np.int64),
            absent=np.concatenate((np.tile(_STATES[0], true), _STATES[3])),
            has_check=np.array([bool(found) for found in checks], np.bool_),
            checks=checks,
            clause_bounds=clause_bounds,
            checks_alone=checks_alone,
            score_keys=score_keys,
            wide=wide,
            any_wide=bool(wide.any()),
            min_score=min_score,
            any_min_score=bool((min_score > 0).any()),
            meta_slots=meta_slots,
            meta_fields=tuple(sorted({field for field, _value in meta_slots})),
        )


def _distinct(numbers: _Ints) -> _Ints:
    """Return ``numbers`` sorted without repeats (sorts in place: pass a new array)."""
    numbers.sort()
    if numbers.size > 1:
        # Far cheaper than np.unique on a few hundred ints.
        return numbers[np.concatenate(([True], numbers[1:] != numbers[:-1]))]
    return numbers


def _round4(values: npt.NDArray[np.float64]) -> list[float]:
    """Return ``[round(value, 4) for value in values]``, the same floats, mostly in bulk.

    ``np.round`` scales, rounds half to even and scales back, which equals Python's
    correctly rounded ``round`` except when the scaled value lies within a rounding error of
    a tie; those few are rounded by Python.
    """
    if len(values) < _BULK_ROUND:
        return [round(value, 4) for value in values.tolist()]
    scaled = values * 10_000.0
    whole = np.rint(scaled)
    rounded: list[float] = (whole / 10_000.0).tolist()
    # Far from a tie (and below 2**30, where the error of ``scaled`` nears 1e-6) that error
    # cannot change the nearest integer. Infinities and NaN fail the first test.
    # (Ufunc reductions: the ndarray methods add a Python-level wrapper per call.)
    if not np.logical_and.reduce(np.abs(scaled) < 2.0**30):
        return [round(value, 4) for value in values.tolist()]
    near_tie = np.abs(scaled - whole) > 0.5 - 1e-6
    if np.logical_or.reduce(near_tie):
        for i in np.flatnonzero(near_tie).tolist():
            rounded[i] = round(float(values[i]), 4)
    return rounded


def _one_plus_log(counts: _Ints, largest: int) -> npt.NDArray[np.float64]:
    if largest >= _LOG_SIZE:
        return np.array([1.0 + math.log(c) if c else 0.0 for c in counts.tolist()])
    return _ONE_PLUS_LOG[counts]


class _Found:
    """The source of one article's matches (see :class:`alerts.types.Match`).

    A match keeps its rule's number (its ``found`` is None); this turns it into the rule
    id, works out the terms found from the document's pattern counts, and cuts snippets
    from the matcher's document (its analysed fields and automaton hits), each once, when
    they are first read.
    """

    __slots__ = ("_doc", "_made", "_matcher", "article_id")

    def __init__(self, matcher: Matcher, doc: _Doc) -> None:
        self.article_id = doc.article.id
        self._matcher = matcher
        self._doc = doc
        self._made: dict[int, tuple[str, tuple[tuple[int, int], ...]]] = {}

    def rule_id_of(self, rule: object) -> str:
        return self._matcher._ids[cast(int, rule)]

    def terms_of(self, rule: object, found: object) -> tuple[str, ...]:
        return self._matcher._found_terms(cast(int, rule), self._doc.counts)

    def excerpt_of(self, rule: object) -> tuple[str, tuple[tuple[int, int], ...]]:
        number = cast(int, rule)
        made = self._made.get(number)
        if made is None:
            options = self._matcher._options
            if options.snippets:
                patterns = self._matcher._highlights[number]
                made = _snippet(self._doc, patterns, options.snippet_chars)
            else:
                made = ("", ())
            self._made[number] = made
        return made


class _Scratch(threading.local):
    """Per-thread tables a matcher fills for one article at a time (see :meth:`Matcher.match`).

    Each thread gets its own (threads may match articles with one matcher at once); between
    articles they hold the states of an article without patterns: absent truth values and
    zero scores.
    """

    def __init__(self, tables: _Tables) -> None:
        self.values = tables.absent.copy()
        self.scores = np.zeros(tables.patterns * 3 + 3)


class Matcher:
    """All enabled rules compiled into one presearch index. Immutable once built."""

    def __init__(
        self,
        rules: list[_Rule],
        tables: _Tables,
        automata: tuple[_Automaton, ...],
        keys: list[tuple[int, str]],
        options: MatchOptions,
        terms: dict[tuple[int, int], tuple[str, ...]] | None = None,
    ) -> None:
        self._rules = rules
        self._tables = tables
        self._automata = automata
        # Each pattern's space and key, and its number of tokens (the last position of an
        # occurrence from its first).
        self._keys = keys
        self._sizes = [len(key.split()) for _space, key in keys]
        self._options = options
        self._scratch = _Scratch(tables)
        self._ids = [rule.spec.id for rule in rules]
        self._highlights = [rule.highlight for rule in rules]
        # (rule, found-terms bitmask) -> the terms as written: a memo shared by options.
        self._terms: dict[tuple[int, int], tuple[str, ...]] = {} if terms is None else terms

    @classmethod
    def build(
        cls,
        rules: Iterable[RuleSpec],
        *,
        frequencies: Mapping[str, float] | None = None,
        options: MatchOptions = MatchOptions(),
    ) -> Matcher:
        """Compile ``rules`` into a matcher.

        Args:
            rules: the rules; ids must be unique.
            frequencies: optional document frequencies of words (see
                :func:`estimate_frequencies`) used to pick the rarest anchors.
            options: scoring and snippet settings.

        Returns:
            The matcher.

        Raises:
            InvalidRuleError: a rule's query is invalid or an id is repeated; ``rule_id``
                names the rule.
        """
        patterns = _Patterns()
        compiler = _Compiler(patterns, _default_weight(frequencies or {}))
        compiled: list[_Rule] = []
        anchors: list[frozenset[int] | None] = []
        seen: set[str] = set()
        for spec in sorted(rules, key=lambda r: r.id):
            if spec.id in seen:
                raise InvalidRuleError(
                    f"rule {spec.id}: the id is used twice", query=spec.query, rule_id=spec.id
                )
            seen.add(spec.id)
            try:
                query = parse_query(spec.query)
            except InvalidRuleError as exc:
                raise InvalidRuleError(
                    f"rule {spec.id}: {exc.message}",
                    query=exc.query,
                    position=exc.position,
                    expected=exc.expected,
                    rule_id=spec.id,
                ) from exc
            compiled.append(
                _Rule(spec, query, compiler.clauses(query.root), *compiler.terms(query.root))
            )
            anchors.append(compiler.anchors(query.root))

        automata: list[_Automaton] = []
        for space in (_STEMS, _FORMS):
            # One automaton per space: a key is then one pattern, and a line is only scanned
            # for the patterns of its own space.
            ids = tuple(i for i, (other, _key) in enumerate(patterns.keys) if other == space)
            if ids:
                automaton = ahocorasick_rs.AhoCorasick(
                    [patterns.keys[i][1] for i in ids],
                    # Every key that ends anywhere, overlapping ones included (" oil " inside
                    # " crude oil price "); the DFA scans several times faster than a trie.
                    matchkind=ahocorasick_rs.MATCHKIND_STANDARD,
                    implementation=ahocorasick_rs.Implementation.DFA,
                )
                automata.append((space, automaton, ids))
        return cls(
            compiled,
            _Tables.build(compiled, anchors, compiler),
            tuple(automata),
            patterns.keys,
            options,
        )

    def __len__(self) -> int:
        return len(self._rules)

    def with_options(self, options: MatchOptions) -> Matcher:
        """Return a matcher sharing this one's compiled rules, with other scoring options."""
        return Matcher(
            self._rules,
            self._tables,
            self._automata,
            self._keys,
            options,
            self._terms,
        )

    @property
    def always_run(self) -> int:
        """Number of rules without anchors, verified for every article."""
        return len(self._tables.always)

    def _locate(self, hits: _Hits) -> _Located:
        """Return pattern id -> ``(first, last)`` token positions of its ``hits`` in a field."""
        found: _Located = {}
        sizes = self._sizes
        for line, ids, line_hits in hits:
            count = line.count
            spaces = previous = 0
            for key, _start, end in line_hits:
                # Hits come in order of their end (not their start); the spaces before the
                # last character number the last token.
                spaces += count(" ", previous, end - 1)
                previous = end - 1
                pattern = ids[key]
                found.setdefault(pattern, []).append((spaces - sizes[pattern], spaces - 1))
        return found

    def _scan(self, doc: _Doc) -> None:
        """Fill ``doc.counts`` with one automaton pass per line, and keep the hits.

        Positions are only worked out from the kept hits when a snippet or a proximity
        clause asks for them (:meth:`_Doc.spots`): no second pass over the text, and no
        position arithmetic for articles that need none.
        """
        counts = doc.counts
        get = counts.get
        for field, text, one in (("title", doc.title, 1), ("body", doc.body, _BODY_ONE)):
            hits: _Hits = []
            for space, automaton, ids in self._automata:
                line = text.stem_line if space == _STEMS else text.form_line
                found = automaton.find_matches_as_indexes(line, overlapping=True)
                hits.append((line, ids, found))
                for key, _start, _end in found:
                    pattern = ids[key]
                    counts[pattern] = get(pattern, 0) + one
            doc.hits[field] = hits

    def _meta(self, article: Article) -> list[int]:
        """Return the slots of the article's metadata values that rules ask about."""
        slots = self._tables.meta_slots
        found: list[int] = []
        for field in self._tables.meta_fields:
            values = _meta_values(article, field)
            if field == "domain":
                # ``domain:gov.pk`` matches www.finance.gov.pk: every dot-suffix is a value.
                values = values.union(
                    value[i + 1 :] for value in values for i, dot in enumerate(value) if dot == "."
                )
            for value in values:
                slot = slots.get((field, value))
                if slot is not None:
                    found.append(slot)
        return found

    def _parts(self, found: Iterable[int]) -> list[_Part]:
        """Return the parts of the rules the ``found`` patterns anchor, and those always run.

        A rule anchored by several found patterns is in several parts.
        """
        tables = self._tables
        parts = [part for part in map(tables.anchored.get, found) if part is not None]
        if tables.unanchored is not None:
            parts.append(tables.unanchored)
        return parts

    def candidates(self, article: Article) -> list[str]:
        """Return the ids of the rules the presearch selects for ``article`` (for benchmarks)."""
        doc = _Doc(article, {}, self._locate)
        self._scan(doc)
        parts = self._parts(doc.counts)
        if not parts:
            return []
        return [self._ids[i] for i in _distinct(np.concatenate([p[0] for p in parts])).tolist()]

    def match(self, article: Article) -> list[Match]:
        """Return the rules ``article`` matches, sorted by rule id, with score and snippet.

        Args:
            article: the article; ``title`` and ``body`` are plain text.

        Returns:
            One :class:`Match` per matching rule whose score reaches its ``min_score``. The
            snippet of a match is cut when it is first read.
        """
        doc = _Doc(article, {}, self._locate)
        self._scan(doc)
        tables = self._tables
        counts = doc.counts
        size = len(counts)
        found = np.fromiter(counts, np.int64, size)
        packed = np.fromiter(counts.values(), np.int64, size)
        parts = self._parts(counts)
        if not parts:
            return []
        # Truth values by slot (see :class:`_Tables`); a found pattern's state says whether
        # it is in the title (1), the body (2) or both; metadata values are "both". The
        # thread's table holds the absent states between articles: only the rows of the
        # article's patterns and metadata are set, and reset once read (copying the whole
        # table per article cost more than the rest of this step).
        values = self._scratch.values
        grid = values.reshape(-1, 6)
        meta = self._meta(article) if tables.meta_fields else []
        try:
            # (A list: a few dozen patterns cost less in Python than five array calls.)
            grid[found] = _STATES[
                [
                    ((value & _TITLE_MASK) != 0) + 2 * (value >= _BODY_ONE)
                    for value in counts.values()
                ]
            ]
            if meta:
                grid[meta] = _STATES[3]
            # Every literal of every candidate, then clauses (any literal) and rules (all
            # clauses). A rule anchored twice is decided twice: cheaper than finding the
            # repeats first.
            truth = values[np.concatenate([part[1] for part in parts])].view(np.bool_)
        finally:
            grid[found] = _STATES[0]
            if meta:
                grid[meta] = _STATES[0]
        candidates = np.concatenate([part[0] for part in parts])
        firsts = np.flatnonzero(np.concatenate([part[2] for part in parts]))
        clause_counts = tables.clause_count[candidates]
        rule_firsts = np.add.accumulate(clause_counts) - clause_counts
        passed = np.logical_and.reduceat(np.logical_or.reduceat(truth, firsts), rule_firsts)
        checked = tables.has_check[candidates]
        if np.logical_or.reduce(checked):
            # Checks counted as true so far: the clauses are monotone in their literals, so
            # only rules that pass without them run their checks, and a failed check
            # re-decides its own rule from that rule's literals.
            pending = np.flatnonzero(passed & checked)
            if pending.size:
                decided: dict[int, bool] = {}
                failed: list[int] = []
                alone = tables.checks_alone
                checks = tables.checks
                for index, rule in zip(pending.tolist(), candidates[pending].tolist(), strict=True):
                    known = decided.get(rule)
                    if known is None:
                        if alone[rule]:
                            # Checks alone in their clauses decide the rule (the usual case:
                            # a proximity clause), so they run here, not in a method call.
                            known = True
                            for _offset, check, negated in checks[rule]:
                                if bool(check(counts, doc)) == negated:
                                    known = False
                                    break
                        else:
                            known = self._check(rule, index, candidates, truth, doc)
                        decided[rule] = known
                    if not known:
                        failed.append(index)
                if failed:
                    passed[failed] = False
        matched = candidates[passed]
        if not matched.size:
            return []
        matched = _distinct(matched)
        return self._results(doc, matched, found, packed)

    def _check(
        self,
        rule: int,
        index: int,
        candidates: _Ints,
        truth: npt.NDArray[np.bool_],
        doc: _Doc,
    ) -> bool:
        """Run the checks of ``rule`` (candidate ``index``), which passes everything else.

        The rule has a check beside other literals in a clause (a check OR'ed with words), so
        it is decided again from its literals in ``truth`` (candidate ``index``'s rows), with
        its failed checks made false.
        """
        tables = self._tables
        counts = doc.counts
        sizes = tables.literal_count[candidates[:index]]
        base = int(np.add.reduce(sizes)) if sizes.size else 0
        failed = False
        for offset, check, negated in tables.checks[rule]:
            if bool(check(counts, doc)) == negated:
                truth[base + offset] = False
                failed = True
        if not failed:
            return True
        bounds = tables.clause_bounds[rule]
        flags = truth[base : base + bounds[-1][1]].tolist()
        return all(any(flags[a:b]) for a, b in bounds)

    def _results(self, doc: _Doc, matched: _Ints, found: _Ints, packed: _Ints) -> list[Match]:
        """Score the matched rules, keep those reaching their ``min_score``, make matches."""
        tables = self._tables
        options = self._options
        # Score of every pattern in each scope (title, body, either), indexed by score key:
        # zero for patterns not found and for the padding key. One gather by the rules'
        # precomputed keys then reads every term score of every matched rule. The thread's
        # table is all zeros between articles: only the found patterns' entries are set,
        # and reset once read.
        table = self._scratch.scores
        # The largest packed count bounds the body count, and the title count when it is
        # below the body's bit (the usual case: no pattern 4,096 times in a field).
        largest = int(np.maximum.reduce(packed)) if packed.size else 0
        title = packed & _TITLE_MASK
        in_title = options.title_weight * _one_plus_log(
            title, largest if largest < _BODY_ONE else int(np.maximum.reduce(title))
        )
        in_body = options.body_weight * _one_plus_log(packed >> _SHIFT, largest >> _SHIFT)
        rows = table.reshape(-1, 3)
        try:
            rows[found] = np.concatenate((in_title, in_body, in_title + in_body)).reshape(3, -1).T
            values = table[tables.score_keys[matched]]
            rules: list[int] = matched.tolist()
            wide: list[tuple[int, float]] = []
            if tables.any_wide and tables.wide[matched].any():
                wide = [
                    (i, self._score_wide(rule, table))
                    for i, rule in enumerate(rules)
                    if tables.wide[rule]
                ]
        finally:
            rows[found] = 0.0
        # A running sum along each row adds the terms in rule order, as a Python loop would.
        totals = np.add.accumulate(values, axis=1)[:, -1]
        scores = _round4(totals)
        for i, total in wide:
            scores[i] = round(total, 4)
        if tables.any_min_score:
            keep = (np.array(scores) >= tables.min_score[matched]).tolist()
            rules = list(compress(rules, keep))
            scores = list(compress(scores, keep))
        # One small tuple per match from numbers made just now: this runs a hundred times
        # per article in the benchmark, so nothing here reaches into per-rule objects. Which
        # terms were found is worked out from the document's counts when they are read.
        fields = zip(rules, scores, repeat(None), repeat(_Found(self, doc)))
        return list(map(tuple.__new__, repeat(Match), fields))

    def _found_terms(self, rule: int, counts: dict[int, int]) -> tuple[str, ...]:
        """Return the terms (as written) of ``rule`` that score in a document's ``counts``.

        A term is found when its score is not zero (a zero weight leaves out its field), as
        the score table has it.
        """
        options = self._options
        bits = 0
        for i, score_key in enumerate(self._rules[rule].score_keys):
            packed = counts.get(score_key // 3, 0)
            scope = score_key % 3
            title = packed & _TITLE_MASK if scope != 1 else 0
            body = packed >> _SHIFT if scope != 0 else 0
            if (title or body) and _term_score(title, body, options) != 0.0:
                bits |= 1 << i
        key = (rule, bits)
        terms = self._terms.get(key)
        if terms is None:
            if len(self._terms) >= _TERMS_MEMO:
                self._terms.clear()
            texts = self._rules[rule].score_texts
            found = (text for i, text in enumerate(texts) if bits >> i & 1)
            terms = self._terms[key] = tuple(dict.fromkeys(found))
        return terms

    def _score_wide(self, rule: int, table: npt.NDArray[np.float64]) -> float:
        """Return the total score of a rule with many score keys."""
        total = 0.0
        for key in self._rules[rule].score_keys:
            total += float(table[key])
        return total

    def match_many(self, articles: Iterable[Article]) -> list[Match]:
        """Return the matches of every article, in article order then rule id order."""
        return [match for article in articles for match in self.match(article)]


def _window(source: str, start: int, first_end: int, size: int) -> tuple[str, int, int, int]:
    """Return the snippet text around ``source[start:first_end]``, its bounds and offset shift."""
    begin = max(0, start - size // 3)
    if begin:
        space = source.find(" ", begin, start)
        begin = space + 1 if space >= 0 else begin
    end = min(len(source), begin + size)
    if end < len(source):
        space = source.rfind(" ", max(first_end, begin), end)
        end = space if space > 0 else end
    lead = "…" if begin else ""
    trail = "…" if end < len(source) else ""
    window = lead + source[begin:end].replace("\n", " ") + trail
    return window, begin, end, len(lead) - begin


def _snippet(
    doc: _Doc, patterns: tuple[tuple[int, ...], tuple[int, ...]], size: int
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Return a window of the body (or the title) around the first matched term, highlighted.

    ``patterns`` are the rule's highlight patterns that may occur in the title and in the
    body. Each pattern's positions are ascending, so the first occurrence is the least of
    the lists' heads and the walk through a list stops at the window's last possible token.
    Windows and character offsets are shared by every rule matching the document.
    """
    sides: tuple[tuple[TextField, tuple[int, ...]], ...] = (
        ("body", patterns[1]),
        ("title", patterns[0]),
    )
    for field, wanted in sides:
        if field == "body" and not doc.article.body:
            continue
        lists = [found for found in (doc.spots(field, pattern) for pattern in wanted) if found]
        if not lists:
            continue
        first = min(map(itemgetter(0), lists))
        # Every token takes at least two characters with its separator, so only occurrences
        # this close to the first one can fall inside the window: look up just their offsets.
        after = (first[0] + size // 2 + 2, -1)
        nearby: set[tuple[int, int]] = set()
        for found in lists:
            nearby.update(found[: bisect_left(found, after)])
        window, begin, end, shift = doc.window(field, first, size)
        spans = doc.char_spans(field)
        highlights: list[tuple[int, int]] = []
        for occurrence in sorted(nearby):
            span = spans.get(occurrence)
            if span is None:
                text = doc.text(field)
                span = (text.span(occurrence[0])[0], text.span(occurrence[1])[1])
                spans[occurrence] = span
            if span[0] >= begin and span[1] <= end:
                highlights.append((span[0] + shift, span[1] + shift))
        return window, tuple(highlights)
    title = doc.article.title
    return title[:size], ()
