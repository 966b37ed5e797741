"""Match articles against many watch rules at once (a Lucene-Monitor-style presearcher).

How :class:`Matcher` works:

1. Every text leaf of every rule becomes a pattern over analysed tokens: ``" pipelin "`` (a
   stem), ``" pakistan stream "`` (a phrase), ``" explor"`` (a prefix, no trailing space).
   All patterns go into one Aho-Corasick automaton (pyahocorasick). An article is analysed
   once; its title and body become space-padded token strings, scanned once each, so the
   space padding gives whole-token matches without boundary checks.
2. Each rule is indexed under a minimal anchor set of patterns, at least one of which must
   occur in any article the rule matches (OR: union of the branches; AND: the branch with
   the rarest anchors; NOT and metadata: none). Rules with no anchor (only metadata, such as
   ``tier:official``) are run for every article.
3. The candidates found through the anchors are verified with a predicate compiled from the
   rule's tree at build time; positions are only computed for proximity clauses.

The cost per article therefore grows with the patterns the article contains, not with the
number of rules. :func:`evaluate` is the brute-force reference used by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import ahocorasick

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

__all__ = ["MatchOptions", "Matcher", "brute_force_match", "evaluate", "score_leaves"]

# Term counts are packed into one int per pattern: title count in the low bits, body count
# above them, so a field-scoped test is a single AND with a mask.
_SHIFT: Final = 20
_TITLE_MASK: Final = (1 << _SHIFT) - 1
_BODY_MASK: Final = ~_TITLE_MASK
_BODY_ONE: Final = 1 << _SHIFT
_STEMS: Final = 0
_FORMS: Final = 1


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """Scoring and snippet settings.

    Attributes:
        title_weight: weight of a term occurrence in the title.
        body_weight: weight of a term occurrence in the body.
        snippet_chars: target length of a snippet in characters.
    """

    title_weight: float = 2.0
    body_weight: float = 1.0
    snippet_chars: int = 200


# --- positions (shared by the brute-force evaluator and the compiled predicates) ----------


def _occurrences(text: AnalysedText, leaf: Leaf) -> list[tuple[int, int]]:
    """Return ``(first, last)`` token positions of every occurrence of ``leaf`` in ``text``."""
    if isinstance(leaf, Prefix):
        return [(i, i) for i, form in enumerate(text.forms) if form.startswith(leaf.prefix)]
    tokens = text.forms if leaf.exact else text.stems
    if isinstance(leaf, Term):
        return [(i, i) for i, token in enumerate(tokens) if token == leaf.token]
    if leaf.slop == 0:
        size = len(leaf.tokens)
        first = leaf.tokens[0]
        return [
            (i, i + size - 1)
            for i, token in enumerate(tokens)
            if token == first and tokens[i : i + size] == leaf.tokens
        ]
    return _sloppy(tokens, leaf.tokens, leaf.slop)


def _sloppy(tokens: Sequence[str], wanted: tuple[str, ...], slop: int) -> list[tuple[int, int]]:
    """Return windows where every token of ``wanted`` occurs within ``slop`` words, any order.

    Repeated words must occur as many times as they are repeated in ``wanted``.
    """
    need: dict[str, int] = {}
    for token in wanted:
        need[token] = need.get(token, 0) + 1
    positions = [i for i, token in enumerate(tokens) if token in need]
    found: list[tuple[int, int]] = []
    for a, start in enumerate(positions):
        have: dict[str, int] = {}
        missing = len(wanted)
        for pos in positions[a:]:
            if pos - start > slop:
                break
            token = tokens[pos]
            if have.get(token, 0) < need[token]:
                have[token] = have.get(token, 0) + 1
                missing -= 1
                if missing == 0:
                    found.append((start, pos))
                    break
    return found


def _near(
    text: AnalysedText, left: tuple[Leaf, ...], right: tuple[Leaf, ...], distance: int
) -> bool:
    lefts = [span for leaf in left for span in _occurrences(text, leaf)]
    if not lefts:
        return False
    rights = [span for leaf in right for span in _occurrences(text, leaf)]
    return any(
        max(r_first - l_last, l_first - r_last) <= distance
        for l_first, l_last in lefts
        for r_first, r_last in rights
    )


def _field_texts(
    field: TextField | None, title: AnalysedText, body: AnalysedText
) -> tuple[AnalysedText, ...]:
    if field == "title":
        return (title,)
    if field == "body":
        return (body,)
    return (title, body)


def _near_fields(node: Near) -> tuple[TextField, ...]:
    """Return the text fields a NEAR clause may match in (both sides must share one)."""
    fields: set[TextField] = {"title", "body"}
    for leaf in node.left + node.right:
        if leaf.field is not None:
            fields &= {leaf.field}
    return tuple(f for f in ("title", "body") if f in fields)


class _Doc:
    """One article prepared for matching: analysed fields, pattern counts, lazy metadata."""

    __slots__ = ("_meta", "article", "body", "counts", "title")

    def __init__(self, article: Article, counts: dict[int, int]) -> None:
        self.article = article
        self.title = analyse(article.title)
        self.body = analyse(article.body)
        self.counts = counts
        self._meta: dict[str, frozenset[str]] = {}

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
        return any(
            _near(doc.text(field), node.left, node.right, node.distance)
            for field in _near_fields(node)
        )
    return any(_occurrences(text, node) for text in _field_texts(node.field, doc.title, doc.body))


def evaluate(query: Query, article: Article) -> bool:
    """Return whether ``article`` matches ``query``, checking every clause directly.

    This is the reference semantics: no presearch, no compiled predicates. It is slow
    (every leaf scans the tokens) and meant for tests and one-off checks.
    """
    return _evaluate(query.root, _Doc(article, {}))


def score_leaves(
    leaves: Iterable[tuple[int, int]], options: MatchOptions = MatchOptions()
) -> float:
    """Return the relevance score for ``(title_count, body_count)`` pairs of matched terms.

    Each term contributes ``weight * (1 + ln(tf))`` per field it occurs in, so repeated
    mentions count with diminishing returns and a title mention counts double by default.
    """
    total = 0.0
    for title_count, body_count in leaves:
        if title_count:
            total += options.title_weight * (1.0 + math.log(title_count))
        if body_count:
            total += options.body_weight * (1.0 + math.log(body_count))
    return round(total, 4)


def brute_force_match(
    rules: Iterable[RuleSpec], article: Article, options: MatchOptions = MatchOptions()
) -> list[str]:
    """Return the ids of ``rules`` that match ``article`` by :func:`evaluate`, sorted.

    ``min_score`` is applied with scores computed from token scans, independently of the
    presearcher's counts. Used by tests to check :class:`Matcher` against the reference.
    """
    doc = _Doc(article, {})
    matched: list[str] = []
    for rule in rules:
        query = parse_query(rule.query)
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
        if score_leaves(counts.values(), options) >= rule.min_score:
            matched.append(rule.id)
    return sorted(matched)


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

_Predicate = Callable[[_Doc], bool]


@dataclass(frozen=True, slots=True)
class _Rule:
    spec: RuleSpec
    query: Query
    predicate: _Predicate
    # (pattern id, field mask, text as written) for every positive leaf: scoring and "why".
    scored: tuple[tuple[int, int, str], ...]


class _Patterns:
    """Assigns ids to distinct patterns: ``(space, key)`` where space is stems or forms."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str], int] = {}
        self.keys: list[tuple[int, str]] = []

    def get(self, space: int, key: str) -> int:
        found = self.ids.get((space, key))
        if found is None:
            found = len(self.keys)
            self.ids[(space, key)] = found
            self.keys.append((space, key))
        return found

    def leaf(self, leaf: Leaf) -> int:
        if isinstance(leaf, Prefix):
            return self.get(_FORMS, " " + leaf.prefix)
        space = _FORMS if leaf.exact else _STEMS
        if isinstance(leaf, Term):
            return self.get(space, f" {leaf.token} ")
        return self.get(space, " " + " ".join(leaf.tokens) + " ")

    def words(self, leaf: Phrase) -> list[int]:
        space = _FORMS if leaf.exact else _STEMS
        return [self.get(space, f" {token} ") for token in leaf.tokens]


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
        self.weight = weight

    def predicate(self, node: Node) -> _Predicate:
        if isinstance(node, And):
            parts = tuple(self.predicate(child) for child in node.children)
            return lambda doc: all(part(doc) for part in parts)
        if isinstance(node, Or):
            parts = tuple(self.predicate(child) for child in node.children)
            return lambda doc: any(part(doc) for part in parts)
        if isinstance(node, Not):
            inner = self.predicate(node.child)
            return lambda doc: not inner(doc)
        if isinstance(node, Meta):
            meta = node
            return lambda doc: _meta_matches(meta, doc.meta(meta.field))
        if isinstance(node, Near):
            return self._near(node)
        if isinstance(node, Phrase) and node.slop:
            return self._sloppy(node)
        pattern = self.patterns.leaf(node)
        mask = _mask(node.field)
        return lambda doc: bool(doc.counts.get(pattern, 0) & mask)

    def _near(self, node: Near) -> _Predicate:
        fields = _near_fields(node)
        left_ids = [self.patterns.leaf(leaf) for leaf in node.left]
        right_ids = [self.patterns.leaf(leaf) for leaf in node.right]
        left, right, distance = node.left, node.right, node.distance

        def near(doc: _Doc) -> bool:
            counts = doc.counts
            if not any(counts.get(i) for i in left_ids) or not any(
                counts.get(i) for i in right_ids
            ):
                return False
            return any(_near(doc.text(field), left, right, distance) for field in fields)

        return near

    def _sloppy(self, node: Phrase) -> _Predicate:
        word_ids = self.patterns.words(node)
        mask = _mask(node.field)
        leaf = node

        def sloppy(doc: _Doc) -> bool:
            counts = doc.counts
            if not all(counts.get(i, 0) & mask for i in word_ids):
                return False
            return any(
                _occurrences(text, leaf) for text in _field_texts(leaf.field, doc.title, doc.body)
            )

        return sloppy

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
            return frozenset({min(words, key=lambda i: self.weight(self.patterns.keys[i]))})
        return frozenset({self.patterns.leaf(node)})

    def _cost(self, anchors: frozenset[int]) -> tuple[float, int]:
        keys = self.patterns.keys
        return (sum(self.weight(keys[i]) for i in anchors), len(anchors))

    def scored(self, node: Node) -> tuple[tuple[int, int, str], ...]:
        out: dict[tuple[int, int], str] = {}
        for leaf in iter_leaves(node, positive_only=True):
            if isinstance(leaf, Meta):
                continue
            mask = _mask(leaf.field)
            if isinstance(leaf, Phrase) and leaf.slop:
                for i in self.patterns.words(leaf):
                    out.setdefault((i, mask), leaf.text)
            else:
                out.setdefault((self.patterns.leaf(leaf), mask), leaf.text)
        return tuple((i, mask, text) for (i, mask), text in out.items())


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


class Matcher:
    """All enabled rules compiled into one presearch index. Immutable once built."""

    def __init__(
        self,
        rules: list[_Rule],
        automaton: ahocorasick.Automaton | None,
        index: dict[int, tuple[int, ...]],
        always: tuple[int, ...],
        uses_forms: bool,
        options: MatchOptions,
    ) -> None:
        self._rules = rules
        self._automaton = automaton
        self._index = index
        self._always = always
        self._uses_forms = uses_forms
        self._options = options

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
            predicate = compiler.predicate(query.root)
            compiled.append(_Rule(spec, query, predicate, compiler.scored(query.root)))
            anchors.append(compiler.anchors(query.root))

        index: dict[int, list[int]] = {}
        always: list[int] = []
        for position, anchor in enumerate(anchors):
            if anchor is None:
                always.append(position)
                continue
            for pattern in anchor:
                index.setdefault(pattern, []).append(position)

        automaton: ahocorasick.Automaton | None = None
        if patterns.keys:
            by_key: dict[str, tuple[list[int], list[int]]] = {}
            for pattern, (space, key) in enumerate(patterns.keys):
                by_key.setdefault(key, ([], []))[space].append(pattern)
            automaton = ahocorasick.Automaton()
            for key, (stems, forms) in by_key.items():
                automaton.add_word(key, (tuple(stems), tuple(forms)))
            automaton.make_automaton()
        uses_forms = any(space == _FORMS for space, _ in patterns.keys)
        return cls(
            compiled,
            automaton,
            {pattern: tuple(rules) for pattern, rules in index.items()},
            tuple(always),
            uses_forms,
            options,
        )

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def always_run(self) -> int:
        """Number of rules without anchors, verified for every article."""
        return len(self._always)

    def _scan(self, doc: _Doc) -> None:
        automaton = self._automaton
        if automaton is None:
            return
        counts = doc.counts
        sections = [(doc.title.stems, 1, _STEMS), (doc.body.stems, _BODY_ONE, _STEMS)]
        if self._uses_forms:
            sections += [(doc.title.forms, 1, _FORMS), (doc.body.forms, _BODY_ONE, _FORMS)]
        for tokens, one, space in sections:
            if not tokens:
                continue
            for _end, found in automaton.iter(" " + " ".join(tokens) + " "):
                for pattern in found[space]:
                    counts[pattern] = counts.get(pattern, 0) + one

    def candidates(self, article: Article) -> list[str]:
        """Return the ids of the rules the presearch selects for ``article`` (for benchmarks)."""
        doc = _Doc(article, {})
        self._scan(doc)
        return [self._rules[i].spec.id for i in self._candidate_positions(doc)]

    def _candidate_positions(self, doc: _Doc) -> list[int]:
        index = self._index
        found: set[int] = set(self._always)
        for pattern in doc.counts:
            rules = index.get(pattern)
            if rules is not None:
                found.update(rules)
        return sorted(found)

    def match(self, article: Article) -> list[Match]:
        """Return the rules ``article`` matches, sorted by rule id, with score and snippet.

        Args:
            article: the article; ``title`` and ``body`` are plain text.

        Returns:
            One :class:`Match` per matching rule whose score reaches its ``min_score``.
        """
        doc = _Doc(article, {})
        self._scan(doc)
        counts = doc.counts
        options = self._options
        matches: list[Match] = []
        for position in self._candidate_positions(doc):
            rule = self._rules[position]
            if not rule.predicate(doc):
                continue
            pairs: list[tuple[int, int]] = []
            terms: dict[str, None] = {}
            for pattern, mask, text in rule.scored:
                count = counts.get(pattern, 0) & mask
                if count:
                    pairs.append((count & _TITLE_MASK, count >> _SHIFT))
                    terms.setdefault(text, None)
            score = score_leaves(pairs, options)
            if score < rule.spec.min_score:
                continue
            snippet, highlights = _snippet(doc, rule.query, options.snippet_chars)
            matches.append(
                Match(
                    rule_id=rule.spec.id,
                    article_id=article.id,
                    score=score,
                    terms=tuple(terms),
                    snippet=snippet,
                    highlights=highlights,
                )
            )
        return matches

    def match_many(self, articles: Iterable[Article]) -> list[Match]:
        """Return the matches of every article, in article order then rule id order."""
        return [match for article in articles for match in self.match(article)]


def _snippet(doc: _Doc, query: Query, size: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Return a window of the body (or the title) around the first matched term, highlighted."""
    leaves = [
        leaf for leaf in iter_leaves(query.root, positive_only=True) if not isinstance(leaf, Meta)
    ]
    fields: tuple[TextField, ...] = ("body", "title")
    for field in fields:
        if field == "body" and not doc.article.body:
            continue
        text = doc.text(field)
        spans = sorted(
            {
                (text.spans[first][0], text.spans[last][1])
                for leaf in leaves
                if leaf.field in (None, field)
                for first, last in _occurrences(text, leaf)
            }
        )
        if not spans:
            continue
        source = text.text
        start = spans[0][0]
        begin = max(0, start - size // 3)
        if begin:
            space = source.find(" ", begin, start)
            begin = space + 1 if space >= 0 else begin
        end = min(len(source), begin + size)
        if end < len(source):
            space = source.rfind(" ", max(spans[0][1], begin), end)
            end = space if space > 0 else end
        lead = "…" if begin else ""
        trail = "…" if end < len(source) else ""
        shift = len(lead) - begin
        window = lead + source[begin:end].replace("\n", " ") + trail
        marks = tuple((a + shift, b + shift) for a, b in spans if a >= begin and b <= end)
        return window, marks
    title = doc.article.title
    return title[:size], ()
