"""The watch-rule query language: parser, immutable AST and explanations.

Grammar (``AND``, ``OR``, ``NOT`` and ``NEAR/N`` are operators only in upper case)::

    query   := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*          # juxtaposition is AND
    unary   := ("NOT" | "-") unary | near
    near    := primary ["NEAR/" N primary]
    primary := FIELD ":" primary | "(" or_expr ")" | ["="] '"' words '"' ["~" N]
             | ["="] word | word "*"

Text leaves are analysed with :mod:`alerts.analysis`: a word matches by stem (``pipeline``
finds ``pipelines``), ``=word`` matches the folded surface form only, ``word*`` matches
tokens whose folded form starts with ``word`` (at least three characters), a quoted phrase
matches consecutive stems and ``"a b"~N`` matches its words in any order within N words.
A plain word that analyses into several tokens (``CASA-1000``) is a phrase.

Text fields are ``title`` and ``body`` (no field means either). Metadata fields (``source``,
``domain``, ``tier``, ``lang``, ``country``, ``entity``, ``tag``) compare the article's
attribute with the value, case-insensitively; ``domain:gov.pk`` also matches subdomains and a
trailing ``*`` makes a metadata value a prefix.

Queries must contain a positive condition: ``-cricket`` alone is refused, because a rule that
matches everything except one word is almost always a mistake and cannot be presearched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from alerts.analysis import analyse
from alerts.exceptions import InvalidRuleError
from alerts.types import TIERS

__all__ = [
    "META_FIELDS",
    "TEXT_FIELDS",
    "And",
    "Leaf",
    "Meta",
    "Near",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "Query",
    "Term",
    "TextField",
    "explain",
    "is_positive",
    "iter_leaves",
    "parse_query",
    "query_terms",
]

TextField: TypeAlias = Literal["title", "body"]
TEXT_FIELDS: Final[tuple[TextField, ...]] = ("title", "body")
META_FIELDS: Final = ("source", "domain", "tier", "lang", "country", "entity", "tag")
MAX_DISTANCE: Final = 100
MIN_PREFIX: Final = 3


@dataclass(frozen=True, slots=True)
class Term:
    """One word. ``token`` is its stem, or its folded form when ``exact``."""

    text: str
    token: str
    field: TextField | None = None
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Phrase:
    """Several words. ``slop == 0``: consecutive and in order; else any order within ``slop``."""

    text: str
    tokens: tuple[str, ...]
    field: TextField | None = None
    exact: bool = False
    slop: int = 0


@dataclass(frozen=True, slots=True)
class Prefix:
    """Any token whose folded form starts with ``prefix``."""

    text: str
    prefix: str
    field: TextField | None = None


@dataclass(frozen=True, slots=True)
class Meta:
    """A metadata condition on an article attribute (``country:PK``, ``tier:official``)."""

    field: str
    value: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Near:
    """Some occurrence of a ``left`` leaf within ``distance`` words of a ``right`` leaf."""

    left: tuple[Term | Phrase | Prefix, ...]
    right: tuple[Term | Phrase | Prefix, ...]
    distance: int


@dataclass(frozen=True, slots=True)
class And:
    """All children match."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not match."""

    child: Node


Leaf: TypeAlias = Term | Phrase | Prefix
Node: TypeAlias = Term | Phrase | Prefix | Meta | Near | And | Or | Not


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: the source text and the root of its tree."""

    text: str
    root: Node


# --- lexer -------------------------------------------------------------------------------

_Kind = Literal["(", ")", "AND", "OR", "NOT", "NEAR", "-", "=", "FIELD", "WORD", "PHRASE", "END"]


@dataclass(frozen=True, slots=True)
class _Lexeme:
    kind: _Kind
    value: str
    pos: int
    number: int = 0


_STOP_CHARS: Final = frozenset(' \t\r\n()"')
_NEAR_RE: Final = re.compile(r"NEAR/(\d+)")
_FIELD_RE: Final = re.compile(r"([A-Za-z]+):")
_STARTS_UNARY: Final = frozenset({"(", "NOT", "-", "=", "FIELD", "WORD", "PHRASE"})
_EXPECT_OPERAND: Final = "a word, a quoted phrase, a field or '('"


def _error(text: str, pos: int, message: str, expected: str) -> InvalidRuleError:
    return InvalidRuleError(message, query=text, position=pos, expected=expected)


def _read_number(text: str, start: int) -> tuple[int, int]:
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    if end == start:
        raise _error(text, start, "a distance is missing", "a number of words")
    value = int(text[start:end])
    if value > MAX_DISTANCE:
        raise _error(text, start, f"distance {value} is too large", f"at most {MAX_DISTANCE}")
    return value, end


def _lex(text: str) -> Iterator[_Lexeme]:
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            yield _Lexeme(ch, ch, i)  # type: ignore[arg-type]
            i += 1
        elif ch == '"':
            close = text.find('"', i + 1)
            if close < 0:
                raise _error(text, i, "unterminated phrase", 'a closing "')
            slop = -1
            end = close + 1
            if end < n and text[end] == "~":
                slop, end = _read_number(text, end + 1)
            yield _Lexeme("PHRASE", text[i + 1 : close], i, slop)
            i = end
        elif ch in "-=" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] != ")":
            yield _Lexeme(ch, ch, i)  # type: ignore[arg-type]
            i += 1
        else:
            end = i
            while end < n and text[end] not in _STOP_CHARS:
                end += 1
            word = text[i:end]
            field = _FIELD_RE.match(word)
            if field:
                name = field.group(1).lower()
                if name not in TEXT_FIELDS and name not in META_FIELDS:
                    raise _error(
                        text,
                        i,
                        f"unknown field {field.group(1)!r}",
                        "one of " + ", ".join(TEXT_FIELDS + META_FIELDS),
                    )
                yield _Lexeme("FIELD", name, i)
                i += field.end()
                continue
            if word in ("AND", "OR", "NOT"):
                yield _Lexeme(word, word, i)  # type: ignore[arg-type]
            elif word.startswith("NEAR"):
                near = _NEAR_RE.fullmatch(word)
                if near is None:
                    raise _error(
                        text, i, "NEAR needs a distance", "NEAR/N (write 'near' to search the word)"
                    )
                distance = int(near.group(1))
                if distance > MAX_DISTANCE:
                    raise _error(
                        text, i + 5, f"distance {distance} is too large", f"at most {MAX_DISTANCE}"
                    )
                yield _Lexeme("NEAR", word, i, distance)
            else:
                yield _Lexeme("WORD", word, i)
            i = end
    yield _Lexeme("END", "", n)


# --- parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lexemes = list(_lex(text))
        self.index = 0

    @property
    def current(self) -> _Lexeme:
        return self.lexemes[self.index]

    def kind(self) -> _Kind:
        # A method, not a property: the kind changes as the parser advances, and type
        # checkers would otherwise narrow it across calls.
        return self.lexemes[self.index].kind

    def advance(self) -> _Lexeme:
        lexeme = self.lexemes[self.index]
        self.index += 1
        return lexeme

    def fail(self, message: str, expected: str, pos: int | None = None) -> InvalidRuleError:
        return _error(self.text, self.current.pos if pos is None else pos, message, expected)

    def parse(self) -> Node:
        if self.kind() == "END":
            raise self.fail("the query is empty", _EXPECT_OPERAND)
        node = self.or_expr(None)
        if self.kind() == ")":
            raise self.fail("unbalanced ')'", "an operator or the end of the query")
        if self.kind() != "END":
            raise self.fail(f"unexpected {self.current.value!r}", "an operator")
        return node

    def or_expr(self, field: str | None) -> Node:
        children = [self.and_expr(field)]
        while self.kind() == "OR":
            self.advance()
            children.append(self.and_expr(field))
        return _combine(Or, children)

    def and_expr(self, field: str | None) -> Node:
        children = [self.unary(field)]
        while True:
            if self.kind() == "AND":
                self.advance()
            elif self.kind() not in _STARTS_UNARY:
                break
            children.append(self.unary(field))
        return _combine(And, children)

    def unary(self, field: str | None) -> Node:
        if self.kind() in ("NOT", "-"):
            self.advance()
            return Not(self.unary(field))
        return self.near(field)

    def near(self, field: str | None) -> Node:
        start = self.current.pos
        left = self.primary(field)
        if self.kind() != "NEAR":
            return left
        operator = self.advance()
        right_pos = self.current.pos
        right = self.primary(field)
        if self.kind() == "NEAR":
            raise self.fail(
                "NEAR cannot be chained", "AND between two NEAR clauses, or parentheses"
            )
        return Near(
            self.near_operand(left, start),
            self.near_operand(right, right_pos),
            operator.number,
        )

    def near_operand(self, node: Node, pos: int) -> tuple[Leaf, ...]:
        if isinstance(node, Term | Prefix) or (isinstance(node, Phrase) and node.slop == 0):
            return (node,)
        if isinstance(node, Or) and all(
            isinstance(c, Term | Prefix) or (isinstance(c, Phrase) and c.slop == 0)
            for c in node.children
        ):
            return tuple(c for c in node.children if isinstance(c, Term | Phrase | Prefix))
        raise self.fail(
            "NEAR works on words, phrases and prefixes",
            "a word, a phrase, a prefix or an OR group of them",
            pos,
        )

    def primary(self, field: str | None) -> Node:
        lexeme = self.current
        if lexeme.kind == "FIELD":
            self.advance()
            if (
                self.kind() in ("END", ")")
                or self.current.pos != lexeme.pos + len(lexeme.value) + 1
            ):
                raise self.fail(f"nothing after {lexeme.value}:", "a value right after the colon")
            return self.primary(lexeme.value)
        if lexeme.kind == "(":
            self.advance()
            if self.kind() == ")":
                raise self.fail("empty parentheses", _EXPECT_OPERAND)
            node = self.or_expr(field)
            if self.kind() != ")":
                raise self.fail("missing ')'", "')'")
            self.advance()
            return node
        if field in META_FIELDS:
            return self.meta(field, lexeme)
        text_field: TextField | None = "title" if field == "title" else None
        if field == "body":
            text_field = "body"
        if lexeme.kind == "=":
            self.advance()
            if self.kind() not in ("WORD", "PHRASE"):
                raise self.fail("'=' must precede a word or a phrase", "a word or a phrase")
            target = self.advance()
            if target.value.endswith("*"):
                raise self.fail("'=' and '*' cannot be combined", "a word", target.pos)
            return self.text_leaf(target, text_field, exact=True)
        if lexeme.kind in ("WORD", "PHRASE"):
            self.advance()
            return self.text_leaf(lexeme, text_field, exact=False)
        if lexeme.kind == "END":
            raise self.fail("the query ends too early", _EXPECT_OPERAND)
        raise self.fail(f"unexpected {lexeme.value!r}", _EXPECT_OPERAND)

    def text_leaf(self, lexeme: _Lexeme, field: TextField | None, *, exact: bool) -> Leaf:
        raw = lexeme.value
        if lexeme.kind == "WORD" and "*" in raw:
            return self.prefix(lexeme, field)
        analysed = analyse(raw)
        tokens = analysed.forms if exact else analysed.stems
        shown = f'"{raw}"' if lexeme.kind == "PHRASE" else raw
        if exact:
            shown = "=" + shown
        if not tokens:
            what = "phrase" if lexeme.kind == "PHRASE" else "word"
            raise _error(
                self.text, lexeme.pos, f"no searchable {what} in {raw!r}", "letters or digits"
            )
        if len(tokens) == 1:
            return Term(shown, tokens[0], field, exact)
        slop = max(lexeme.number, 0)
        if slop:
            shown = f"{shown}~{slop}"
            slop = max(slop, len(tokens) - 1)
        return Phrase(shown, tokens, field, exact, slop)

    def prefix(self, lexeme: _Lexeme, field: TextField | None) -> Prefix:
        raw = lexeme.value
        star = raw.index("*")
        if star != len(raw) - 1:
            raise _error(self.text, lexeme.pos + star, "'*' is only allowed at the end", "letters")
        forms = analyse(raw[:-1]).forms
        if len(forms) != 1:
            raise _error(self.text, lexeme.pos, "a prefix must be one word", "one word before '*'")
        if len(forms[0]) < MIN_PREFIX:
            raise _error(
                self.text,
                lexeme.pos,
                "prefix too short",
                f"at least {MIN_PREFIX} letters before '*'",
            )
        return Prefix(raw, forms[0], field)

    def meta(self, field: str, lexeme: _Lexeme) -> Meta:
        if lexeme.kind not in ("WORD", "PHRASE"):
            raise self.fail(f"{field}: needs a value", f"a {field} value")
        self.advance()
        value = lexeme.value.strip().casefold()
        prefix = lexeme.kind == "WORD" and value.endswith("*")
        if prefix:
            value = value[:-1]
        if not value:
            raise _error(self.text, lexeme.pos, f"empty {field} value", f"a {field} value")
        if field == "tier" and not prefix and value not in TIERS:
            raise _error(
                self.text, lexeme.pos, f"unknown tier {value!r}", "one of " + ", ".join(TIERS)
            )
        if field == "country" and not prefix and not re.fullmatch("[a-z]{2}", value):
            raise _error(
                self.text,
                lexeme.pos,
                f"bad country {value!r}",
                "an ISO 3166-1 alpha-2 code like PK",
            )
        return Meta(field, value, prefix)


def _combine(kind: type[And] | type[Or], children: list[Node]) -> Node:
    if len(children) == 1:
        return children[0]
    flat: list[Node] = []
    for child in children:
        if isinstance(child, kind):
            flat.extend(child.children)
        else:
            flat.append(child)
    return kind(tuple(flat))


def is_positive(node: Node) -> bool:
    """Return whether ``node`` can only match when something is present in the article.

    ``-cricket`` is not positive; ``oil -cricket`` and ``tier:official`` are.
    """
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(is_positive(child) for child in node.children)
    if isinstance(node, Or):
        return all(is_positive(child) for child in node.children)
    return True


def parse_query(text: str) -> Query:
    """Parse a watch-rule query.

    Args:
        text: the query, for example ``Pakistan Russia (oil OR LNG) -cricket``.

    Returns:
        The immutable parsed query.

    Raises:
        InvalidRuleError: the query is malformed or has no positive condition; ``position``
            and ``expected`` say where and what was expected.
    """
    root = _Parser(text).parse()
    if not is_positive(root):
        raise InvalidRuleError(
            "the query only excludes: add at least one word, phrase or field to look for",
            query=text,
            position=0,
            expected="a positive word, phrase or field condition",
        )
    return Query(text, root)


# --- inspection --------------------------------------------------------------------------


def iter_leaves(node: Node, *, positive_only: bool = False) -> Iterator[Leaf | Meta]:
    """Yield the leaves (text terms and metadata conditions) of ``node`` in order.

    Args:
        node: any node.
        positive_only: skip leaves under a NOT.
    """
    if isinstance(node, Not):
        if not positive_only:
            yield from iter_leaves(node.child)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from iter_leaves(child, positive_only=positive_only)
    elif isinstance(node, Near):
        yield from node.left
        yield from node.right
    else:
        yield node


def query_terms(query: Query) -> tuple[str, ...]:
    """Return the distinct positive text terms of ``query`` as written, in order."""
    seen: dict[str, None] = {}
    for leaf in iter_leaves(query.root, positive_only=True):
        if not isinstance(leaf, Meta):
            seen.setdefault(leaf.text, None)
    return tuple(seen)


def describe(node: Node) -> tuple[str, tuple[Node, ...]]:
    """Return a one-line label for ``node`` and its children (used to draw trees)."""
    if isinstance(node, And):
        return "ALL of", node.children
    if isinstance(node, Or):
        return "ANY of", node.children
    if isinstance(node, Not):
        return "NOT", (node.child,)
    if isinstance(node, Near):
        return f"NEAR within {node.distance} words", (_or(node.left), _or(node.right))
    if isinstance(node, Meta):
        how = "starts with" if node.prefix else "="
        suffix = " (or a subdomain)" if node.field == "domain" and not node.prefix else ""
        return f"{node.field} {how} {node.value!r}{suffix}", ()
    scope = f" in {node.field}" if node.field else " in title or body"
    if isinstance(node, Prefix):
        return f"prefix {node.prefix!r}*{scope}", ()
    mode = "exact form" if node.exact else "stem"
    if isinstance(node, Term):
        return f"word {node.text!r} ({mode} {node.token!r}){scope}", ()
    order = "in order" if node.slop == 0 else f"any order within {node.slop} words"
    shown = " ".join(node.tokens)
    return f"phrase {node.text!r} ({mode}s {shown!r}, {order}){scope}", ()


def _or(leaves: tuple[Leaf, ...]) -> Node:
    return leaves[0] if len(leaves) == 1 else Or(leaves)


def explain(query: Query) -> str:
    """Return a readable tree of ``query``, one node per line, for ``dealwatch rules check``."""
    lines: list[str] = []

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        label, children = describe(node)
        lines.append(label if top else f"{prefix}{'└── ' if last else '├── '}{label}")
        inner = "" if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(children):
            walk(child, inner, i == len(children) - 1, False)

    walk(query.root, "", True, True)
    return "\n".join(lines)
