"""``dealwatch match`` with database rules and ``dealwatch rules backtest`` on a real database."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alerts.rulefile import RuleDefinition
from service.catalogue import SourceDefinition, sync_rules, sync_sources
from service.cli_rules import match_command, rules_app
from service.db.models import Article
from service.runtime import Resources
from service.settings import Settings
from service.storage.backtest import get_rule_spec, list_articles_since, list_enabled_rule_specs

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = [
    RuleDefinition(id="lng", name="LNG", description="", query="LNG OR СПГ", tags=("lng",)),
    RuleDefinition(id="off", name="Off", description="", query="oil", enabled=False),
]
STORED = [
    # (title, text, days ago)
    ("Pakistan buys Russian LNG", "The LNG cargo arrived in Karachi.", 1),
    ("Россия поставит СПГ в Пакистан", "Поставки СПГ начнутся весной.", 1),
    ("Cricket: Pakistan win", "Oil on the pitch.", 2),
    ("Qatar LNG deal signed", "A long-term LNG contract.", 3),
    ("Old LNG news", "Too old for the window.", 40),
]


def _article(source_id: str, number: int, title: str, text: str, days: int) -> Article:
    published = NOW - timedelta(days=days)
    return Article(
        source_id=source_id,
        identity=f"item-{number}",
        url=f"https://www.dawn.com/news/{number}",
        canonical_url=f"https://dawn.com/news/{number}",
        title=title,
        summary="",
        text=text,
        published_at=published,
        fetched_at=published,
        language="en",
        content_hash=hashlib.sha256(title.encode()).hexdigest(),
        countries=["PK"],
        entities=[],
    )


@pytest.fixture
async def stored(resources: Resources) -> Resources:
    async with resources.sessionmaker() as session:
        await sync_sources(
            session,
            [
                SourceDefinition.model_validate(
                    {
                        "id": "dawn",
                        "name": "Dawn",
                        "url": "https://www.dawn.com/feeds/home",
                        "tier": "news",
                    }
                )
            ],
            now=NOW,
        )
        await sync_rules(session, RULES, now=NOW)
        session.add_all(
            _article("dawn", number, title, text, days)
            for number, (title, text, days) in enumerate(STORED)
        )
        await session.commit()
    return resources


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALWATCH_DATABASE__URL", settings.database.url)
    monkeypatch.setenv("DEALWATCH_DATA_DIR", str(settings.data_dir))


def _rows(output: str) -> dict[str, list[str]]:
    """Return the backtest table's cells by first column."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def app() -> typer.Typer:
    cli = typer.Typer()
    cli.add_typer(rules_app, name="rules")
    cli.command("match")(match_command)
    return cli


async def test_list_articles_since_pages_by_id(stored: Resources) -> None:
    async with stored.sessionmaker() as session:
        first = await list_articles_since(session, NOW - timedelta(days=30), limit=2)
        rest = await list_articles_since(
            session, NOW - timedelta(days=30), after_id=int(first[-1].id), limit=10
        )
        rules = await list_enabled_rule_specs(session)
        off = await get_rule_spec(session, "off")
        missing = await get_rule_spec(session, "nope")
    titles = [a.title for a in first + rest]
    assert titles == [title for title, _text, days in STORED if days <= 30]
    article = first[0]
    assert (article.source, article.domain, article.tier, article.lang) == (
        "dawn",
        "www.dawn.com",
        "news",
        "en",
    )
    assert article.body == "The LNG cargo arrived in Karachi."
    assert article.countries == frozenset({"PK"})
    assert article.published is not None
    assert article.published.tzinfo is not None
    assert [rule.id for rule in rules] == ["lng"]
    assert off is not None
    assert off.query == "oil"
    assert missing is None


async def test_match_without_rules_uses_the_database(
    stored: Resources, cli_env: None, app: typer.Typer, tmp_path: Path
) -> None:
    articles = tmp_path / "in.jsonl"
    articles.write_text(
        "\n".join(
            json.dumps(line)
            for line in (
                {"id": "x1", "title": "LNG tender", "body": "Pakistan LNG Limited"},
                {"id": "x2", "title": "Oil", "body": "crude oil only"},
            )
        ),
        encoding="utf-8",
    )
    output = tmp_path / "out.jsonl"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["match", "--input", str(articles), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    assert [(line["article_id"], line["rule_id"]) for line in lines] == [("x1", "lng")]


async def test_backtest_a_stored_rule(stored: Resources, cli_env: None, app: typer.Typer) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["rules", "backtest", "lng", "--since", "30d"]
    )
    assert result.exit_code == 0, result.output
    one_day_ago = str((NOW - timedelta(days=1)).date())
    three_days_ago = str((NOW - timedelta(days=3)).date())
    rows = _rows(result.output)
    assert rows[one_day_ago][:2] == ["2", "2"]  # articles, matches that day
    assert rows[three_days_ago][:2] == ["1", "1"]
    assert rows["total"][:2] == ["4", "3"]


async def test_backtest_a_draft_query(stored: Resources, cli_env: None, app: typer.Typer) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["rules", "backtest", "draft", "--since", "60d", "--query", "cricket OR =old"],
    )
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert rows["total"][:2] == ["5", "2"]


async def test_backtest_errors(stored: Resources, cli_env: None, app: typer.Typer) -> None:
    runner = CliRunner()
    missing = await asyncio.to_thread(runner.invoke, app, ["rules", "backtest", "nope"])
    assert missing.exit_code == 1
    assert "no stored rule 'nope'" in missing.output
    bad = await asyncio.to_thread(
        runner.invoke, app, ["rules", "backtest", "draft", "--query", "(oil"]
    )
    assert bad.exit_code == 2
    assert "missing ')'" in bad.output
    since = await asyncio.to_thread(
        runner.invoke, app, ["rules", "backtest", "lng", "--since", "lately"]
    )
    assert since.exit_code == 2
