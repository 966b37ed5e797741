"""The rules TOML format."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.exceptions import InvalidRuleError
from alerts.matching import Matcher
from alerts.rulefile import RuleDefinition, dump_rules_toml, parse_rules_toml
from alerts.types import RuleSpec

GOOD = """
[[rule]]
id = "pk-ru-energy"
name = "Pakistan–Russia energy"
description = "Energy between Pakistan and Russia."
query = '''
Pakistan Russia
(oil OR LNG)
'''
tags = ["pakistan", "russia"]
min_score = 2
enabled = false

[[rule]]
id = "oil"
query = "oil"
"""


def test_parse_reads_every_field_and_defaults() -> None:
    first, second = parse_rules_toml(GOOD)
    assert first == RuleDefinition(
        id="pk-ru-energy",
        name="Pakistan–Russia energy",
        description="Energy between Pakistan and Russia.",
        query="Pakistan Russia\n(oil OR LNG)\n",
        tags=("pakistan", "russia"),
        min_score=2.0,
        enabled=False,
    )
    assert second == RuleDefinition(id="oil", name="oil", query="oil")
    assert first.spec() == RuleSpec(
        id="pk-ru-energy",
        query="Pakistan Russia\n(oil OR LNG)\n",
        name="Pakistan–Russia energy",
        min_score=2.0,
        tags=frozenset({"pakistan", "russia"}),
    )


def test_dump_round_trips() -> None:
    rules = [
        *parse_rules_toml(GOOD),
        RuleDefinition(id="odd", query='a "b c"\tOR\nd', name="quote \" and ''' and \x7f"),
    ]
    assert parse_rules_toml(dump_rules_toml(rules)) == rules


@pytest.mark.parametrize(
    ("text", "rule_id", "message"),
    [
        ('[[rule]]\nid = "Bad Id"\nquery = "oil"', None, "slug"),
        ('[[rule]]\nid = "oil\\n"\nquery = "oil"', None, "slug"),
        ('[[rule]]\nquery = "oil"', None, "slug"),
        ('[[rule]]\nid = "a"\n', "a", "query is required"),
        ('[[rule]]\nid = "a"\nquery = "oil"\ncolour = "red"', "a", "unknown keys: colour"),
        ('[[rule]]\nid = "a"\nquery = "oil"\ntags = "x"', "a", "tags"),
        ('[[rule]]\nid = "a"\nquery = "oil"\nmin_score = -1', "a", "min_score"),
        ('[[rule]]\nid = "a"\nquery = "oil"\nmin_score = true', "a", "min_score"),
        ('[[rule]]\nid = "a"\nquery = "oil"\nenabled = "yes"', "a", "enabled"),
        ('[[rule]]\nid = "a"\nquery = "oil"\n[[rule]]\nid = "a"\nquery = "gas"', "a", "twice"),
        ("rule = 3", None, "array of tables"),
        ("[[rules]]\nid = 'a'", None, "unknown top-level keys: rules"),
        ("[[rule]\n", None, "not valid TOML"),
    ],
)
def test_invalid_files_are_refused(text: str, rule_id: str | None, message: str) -> None:
    with pytest.raises(InvalidRuleError) as info:
        parse_rules_toml(text)
    assert info.value.rule_id == rule_id
    assert message in str(info.value)


def test_bad_query_names_the_rule_and_the_position() -> None:
    with pytest.raises(InvalidRuleError) as info:
        parse_rules_toml('[[rule]]\nid = "broken"\nquery = "oil AND (gas"')
    assert info.value.rule_id == "broken"
    assert info.value.position == 12
    assert info.value.expected == "')'"


def test_default_rules_file_loads_and_compiles() -> None:
    path = Path(__file__).resolve().parents[3] / "config" / "rules.toml"
    rules = parse_rules_toml(path.read_text("utf-8"))
    assert {rule.id for rule in rules} == {
        "pk-ru-energy",
        "oil-gas",
        "pipelines-connectivity",
        "power-nuclear",
        "sanctions-payments",
        "official-energy",
    }
    assert all(rule.description and rule.tags for rule in rules)
    matcher = Matcher.build(rule.spec() for rule in rules)
    assert len(matcher) == 6
    assert matcher.always_run == 0
