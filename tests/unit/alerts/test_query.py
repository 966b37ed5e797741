"""The query parser: every operator, the tree it builds, and positioned errors."""

from __future__ import annotations

import pytest

from alerts.exceptions import InvalidRuleError
from alerts.query import (
    And,
    Meta,
    Near,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    explain,
    parse_query,
    query_terms,
)


def test_implicit_and_and_explicit_and_are_the_same() -> None:
    assert parse_query("oil LNG").root == parse_query("oil AND LNG").root
    assert parse_query("oil LNG").root == And((Term("oil", "oil"), Term("LNG", "lng")))


def test_or_binds_looser_than_and() -> None:
    root = parse_query("a b OR c").root
    assert root == Or((And((Term("a", "a"), Term("b", "b"))), Term("c", "c")))


def test_parentheses_group() -> None:
    root = parse_query("(crude OR LNG) AND pipeline").root
    assert root == And(
        (Or((Term("crude", "crude"), Term("LNG", "lng"))), Term("pipeline", "pipelin"))
    )


@pytest.mark.parametrize("text", ["oil -cricket", "oil NOT cricket", "oil AND NOT cricket"])
def test_negation_forms(text: str) -> None:
    assert parse_query(text).root == And((Term("oil", "oil"), Not(Term("cricket", "cricket"))))


def test_lower_case_operators_are_words() -> None:
    assert parse_query("oil or gas").root == And(
        (Term("oil", "oil"), Term("or", "or"), Term("gas", "gas"))
    )


def test_phrase_and_sloppy_phrase() -> None:
    assert parse_query('"Pakistan Stream"').root == Phrase(
        '"Pakistan Stream"', ("pakistan", "stream")
    )
    assert parse_query('"Pakistan Russia"~10').root == Phrase(
        '"Pakistan Russia"~10', ("pakistan", "russia"), slop=10
    )


def test_sloppy_phrase_window_is_at_least_its_length() -> None:
    root = parse_query('"a b c"~1').root
    assert isinstance(root, Phrase)
    assert root.slop == 2


def test_quoted_single_word_is_a_stemmed_term() -> None:
    assert parse_query('"pipelines"').root == Term('"pipelines"', "pipelin")


def test_hyphenated_word_is_a_phrase() -> None:
    assert parse_query("CASA-1000").root == Phrase("CASA-1000", ("casa", "1000"))


def test_near() -> None:
    root = parse_query('Pakistan NEAR/5 (oil OR "crude oil")').root
    assert root == Near(
        (Term("Pakistan", "pakistan"),),
        (Term("oil", "oil"), Phrase('"crude oil"', ("crude", "oil"))),
        5,
    )


def test_prefix() -> None:
    assert parse_query("Pipelin*").root == Prefix("Pipelin*", "pipelin")


def test_exact_form() -> None:
    assert parse_query("=Pipelines").root == Term("=Pipelines", "pipelines", exact=True)
    assert parse_query('="oil fields"').root == Phrase(
        '="oil fields"', ("oil", "fields"), exact=True
    )


def test_text_field_scopes_apply_inside_groups() -> None:
    root = parse_query('title:(agreement OR "Pakistan Stream") body:gas').root
    assert root == And(
        (
            Or(
                (
                    Term("agreement", "agreement", field="title"),
                    Phrase('"Pakistan Stream"', ("pakistan", "stream"), field="title"),
                )
            ),
            Term("gas", "gas", field="body"),
        )
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier:official", Meta("tier", "official")),
        ("country:PK", Meta("country", "pk")),
        ("lang:ru", Meta("lang", "ru")),
        ("domain:gov.pk", Meta("domain", "gov.pk")),
        ('source:"Dawn News"', Meta("source", "dawn news")),
        ("entity:project:pakistan-stream", Meta("entity", "project:pakistan-stream")),
        ("tag:lng", Meta("tag", "lng")),
        ("source:tass*", Meta("source", "tass", prefix=True)),
    ],
)
def test_metadata_fields(text: str, expected: Meta) -> None:
    assert parse_query(text).root == expected


def test_metadata_group() -> None:
    assert parse_query("country:(PK OR RU)").root == Or(
        (Meta("country", "pk"), Meta("country", "ru"))
    )


def test_field_names_are_case_insensitive() -> None:
    assert parse_query("TITLE:oil").root == Term("oil", "oil", field="title")


def test_query_terms_lists_positive_terms_as_written() -> None:
    query = parse_query('Pakistan (oil OR "crude oil") -cricket country:PK pipelin*')
    assert query_terms(query) == ("Pakistan", "oil", '"crude oil"', "pipelin*")


def test_explain_draws_a_tree() -> None:
    text = explain(parse_query("Pakistan (oil OR LNG) -cricket"))
    assert text.splitlines() == [
        "ALL of",
        "├── word 'Pakistan' (stem 'pakistan') in title or body",
        "├── ANY of",
        "│   ├── word 'oil' (stem 'oil') in title or body",
        "│   └── word 'LNG' (stem 'lng') in title or body",
        "└── NOT",
        "    └── word 'cricket' (stem 'cricket') in title or body",
    ]


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "a word"),
        ("(oil", 4, "')'"),
        ("oil)", 3, "an operator or the end"),
        ('oil "gas', 4, 'a closing "'),
        ("oil AND", 7, "a word"),
        ("oil OR OR gas", 7, "a word"),
        ("title:", 6, "a value right after the colon"),
        ("title: oil", 7, "a value right after the colon"),
        ("site:dawn.com", 0, "one of title"),
        ("oil NEAR gas", 4, "NEAR/N"),
        ("oil NEAR/500 gas", 9, "at most 100"),
        ('"oil gas"~', 10, "a number of words"),
        ("a NEAR/3 b NEAR/3 c", 11, "AND between two NEAR clauses"),
        ("(a b) NEAR/3 c", 0, "a word, a phrase, a prefix"),
        ("pi*", 0, "at least 3 letters"),
        ("pi*pe", 2, "letters"),
        ("oil-gas*", 0, "one word before"),
        ("=pipe*", 1, "a word"),
        ("tier:foo", 5, "one of official"),
        ("country:PAK", 8, "ISO 3166-1"),
        ("()", 1, "a word"),
        ("oil ---", 6, "letters or digits"),
        ("-cricket", 0, "a positive word"),
        ("NOT (oil OR gas)", 0, "a positive word"),
        ("=", 0, "letters or digits"),
    ],
)
def test_errors_name_the_position_and_what_was_expected(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(InvalidRuleError) as info:
        parse_query(text)
    assert info.value.position == position
    assert expected in info.value.expected
    assert info.value.query == text
    assert info.value.caret().splitlines()[-1] == " " * position + "^"


def test_ast_is_immutable_and_hashable() -> None:
    query = parse_query("oil gas")
    assert hash(query) == hash(parse_query("oil gas"))
    with pytest.raises(AttributeError):
        query.text = "x"  # type: ignore[misc]
