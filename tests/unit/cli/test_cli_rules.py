"""``dealwatch rules check`` and ``dealwatch match --rules`` driven through Typer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alerts.types import Article, Match
from service.cli_rules import match_command, parse_since, read_articles, rules_app, tally

RULES = """
[[rule]]
id = "pk-ru"
query = "Pakistan Russia (oil OR LNG) -cricket"

[[rule]]
id = "pipes"
query = "pipeline*"

[[rule]]
id = "off"
query = "oil"
enabled = false
"""

ARTICLES = [
    {
        "id": "1",
        "title": "Pakistan and Russia sign LNG deal",
        "body": "Islamabad and Moscow agreed on LNG supplies through new pipelines.",
        "source": "dawn",
        "lang": "en",
        "tier": "news",
        "published": "2026-11-20T08:00:00Z",
    },
    {"id": 2, "title": "Pakistan beat Russia at cricket", "body": "An oil-stained pitch."},
    {"id": "3", "title": "Weather", "body": ""},
]


@pytest.fixture
def app() -> typer.Typer:
    cli = typer.Typer()
    cli.add_typer(rules_app, name="rules")
    cli.command("match")(match_command)
    return cli


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    articles = tmp_path / "articles.jsonl"
    articles.write_text("\n".join(json.dumps(a) for a in ARTICLES) + "\n\n", encoding="utf-8")
    return rules, articles


def test_check_prints_the_tree(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["rules", "check", "Pakistan (oil OR LNG) -cricket"])
    assert result.exit_code == 0, result.output
    assert "ALL of" in result.output
    assert "word 'LNG' (stem 'lng') in title or body" in result.output
    assert "NOT" in result.output


def test_check_shows_a_caret_and_exits_2(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["rules", "check", "Pakistan (oil OR LNG"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert "error: missing ')'" in lines
    index = lines.index("  Pakistan (oil OR LNG")
    assert lines[index + 1] == "  " + " " * 20 + "^"
    assert "expected: ')'" in lines


@pytest.mark.parametrize("command", [["rules", "check", "--help"], ["match", "--help"]])
def test_help_has_an_example(app: typer.Typer, command: list[str]) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "dealwatch " in result.output


def test_rules_backtest_help_has_an_example(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["rules", "backtest", "--help"])
    assert result.exit_code == 0
    assert "dealwatch rules backtest pk-ru-energy --since 30d" in result.output


def test_match_writes_jsonl_to_a_file(app: typer.Typer, tmp_path: Path) -> None:
    rules, articles = _files(tmp_path)
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["match", "--input", str(articles), "--rules", str(rules), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    assert [(line["article_id"], line["rule_id"]) for line in lines] == [
        ("1", "pipes"),
        ("1", "pk-ru"),
    ]
    assert set(lines[0]) == {"article_id", "rule_id", "score", "snippet"}
    assert lines[1]["score"] > lines[0]["score"]
    assert "LNG" in lines[1]["snippet"]


def test_match_writes_to_stdout_without_output(app: typer.Typer, tmp_path: Path) -> None:
    rules, articles = _files(tmp_path)
    result = CliRunner().invoke(app, ["match", "--input", str(articles), "--rules", str(rules)])
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [m["rule_id"] for m in found] == ["pipes", "pk-ru"]


def test_match_refuses_a_bad_rule(app: typer.Typer, tmp_path: Path) -> None:
    _, articles = _files(tmp_path)
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rule]]\nid = "bad"\nquery = "oil AND"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["match", "--input", str(articles), "--rules", str(rules)])
    assert result.exit_code == 2
    assert "rule bad: the query ends too early" in result.output


def test_match_refuses_a_bad_line(app: typer.Typer, tmp_path: Path) -> None:
    rules, _ = _files(tmp_path)
    articles = tmp_path / "bad.jsonl"
    articles.write_text('{"id": "1", "title": "x"}\n{"title": "no id"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["match", "--input", str(articles), "--rules", str(rules)])
    assert result.exit_code == 2
    assert "line 2: id is required" in result.output


def test_read_articles_maps_fields() -> None:
    (article,) = read_articles(
        [
            json.dumps(
                {
                    "id": 7,
                    "title": "T",
                    "body": "B",
                    "tier": "official",
                    "published": "2026-11-20T10:00:00+05:00",
                    "countries": ["pk"],
                }
            )
        ]
    )
    assert article == Article(
        id="7",
        title="T",
        body="B",
        tier="official",
        countries=frozenset({"PK"}),
        published=datetime(2026, 11, 20, 5, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1]", "expected a JSON object"),
        ("{", "not JSON"),
        ('{"id": "1", "title": 3}', "title must be a string"),
        ('{"id": "1", "countries": "PK"}', "countries must be a list"),
        ('{"id": "1", "published": "yesterday"}', "not ISO 8601"),
    ],
)
def test_read_articles_names_the_bad_line(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(read_articles(["", line]))


def test_parse_since() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_since("30d", now) == datetime(2026, 10, 28, 12, 0, tzinfo=UTC)
    assert parse_since("12h", now) == datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    assert parse_since("2w", now) == datetime(2026, 11, 13, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_since("last month", now)


def test_tally_counts_per_day_and_keeps_the_best_title() -> None:
    def article(number: int, day: int) -> Article:
        return Article(
            id=str(number), title=f"t{number}", published=datetime(2026, 11, day, tzinfo=UTC)
        )

    def match(number: int, score: float) -> Match:
        return Match(rule_id="r", article_id=str(number), score=score)

    days = tally(
        [
            (article(1, 20), [match(1, 1.0)]),
            (article(2, 20), [match(2, 3.0)]),
            (article(3, 21), []),
            (Article(id="4", title="undated"), [match(4, 9.0)]),
        ]
    )
    assert [(d.day.day, d.articles, d.matches, d.best_title) for d in days] == [
        (20, 2, 2, "t2"),
        (21, 1, 0, ""),
    ]
