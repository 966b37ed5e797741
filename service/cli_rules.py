"""``dealwatch rules …`` and ``dealwatch match``: check, batch-match and backtest watch rules.

The lead's ``service/cli.py`` mounts these::

    app.add_typer(rules_app, name="rules")
    app.command("match")(match_command)
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from alerts.exceptions import InvalidRuleError
from alerts.matching import Matcher
from alerts.query import Node, Query, describe, parse_query
from alerts.rulefile import parse_rules_toml
from alerts.types import Article, Match, RuleSpec

rules_app = typer.Typer(
    help="Check, test and backtest watch rules (the query language is in docs/rules.md).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

console = Console()
err_console = Console(stderr=True)

_DURATION = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


# --- rules check --------------------------------------------------------------------------


def _tree(query: Query) -> Tree:
    def add(parent: Tree, node: Node) -> None:
        label, children = describe(node)
        branch = parent.add(Text(label))
        for child in children:
            add(branch, child)

    label, children = describe(query.root)
    tree = Tree(Text(label))
    for child in children:
        add(tree, child)
    return tree


def print_rule_error(exc: InvalidRuleError) -> None:
    """Print ``exc`` to stderr: the message, the query with a caret, what was expected."""
    err_console.print(Text(f"error: {exc.message}", style="bold red"))
    if exc.query:
        for line in exc.caret().splitlines():
            err_console.print(Text("  " + line), highlight=False)
    if exc.expected:
        err_console.print(Text(f"expected: {exc.expected}"))


@rules_app.command("check")
def check(
    query: Annotated[str, typer.Argument(help="The query to check; quote it for the shell.")],
) -> None:
    """Parse a query and print its tree, or the error with a caret under its position.

    Exit code 2 when the query is invalid.

    Examples:
      [bold]dealwatch rules check 'Pakistan Russia (oil OR LNG) -cricket'[/bold]
      [bold]dealwatch rules check '"Pakistan Stream" OR pipelin* NEAR/5 Karachi'[/bold]
    """
    try:
        parsed = parse_query(query)
    except InvalidRuleError as exc:
        print_rule_error(exc)
        raise typer.Exit(2) from exc
    console.print(_tree(parsed))


# --- match --------------------------------------------------------------------------------


def _strings(value: Any, name: str, number: int) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"line {number}: {name} must be a list of strings")
    return frozenset(value)


def _published(value: Any, number: int) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"line {number}: published must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"line {number}: published {value!r} is not ISO 8601") from exc
    # A time without an offset is taken as UTC, the only zone dealwatch stores.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def read_articles(lines: Iterable[str]) -> Iterator[Article]:
    """Yield an :class:`Article` per JSONL line (blank lines are skipped).

    Each line is an object with ``id``, ``title``, ``body`` and optionally ``source``,
    ``lang``, ``tier``, ``published``, ``url``, ``domain``, ``countries``, ``entities`` and
    ``tags``.

    Raises:
        ValueError: a line is not a JSON object or a field has the wrong type; the message
            names the line number.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        raw_id = data.get("id")
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if not isinstance(raw_id, str) or not raw_id:
            raise ValueError(f"line {number}: id is required (a string or an integer)")
        texts: dict[str, str] = {}
        for key in ("title", "body", "source", "lang", "tier", "url", "domain"):
            value = data.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"line {number}: {key} must be a string")
            texts[key] = value
        yield Article(
            id=raw_id,
            title=texts["title"],
            body=texts["body"],
            url=texts["url"],
            source=texts["source"],
            domain=texts["domain"],
            tier=texts["tier"] or "news",
            lang=texts["lang"],
            countries=frozenset(
                c.upper() for c in _strings(data.get("countries"), "countries", number)
            ),
            entities=_strings(data.get("entities"), "entities", number),
            tags=_strings(data.get("tags"), "tags", number),
            published=_published(data.get("published"), number),
        )


def match_line(match: Match) -> str:
    """Return the JSON line written for one match."""
    return json.dumps(
        {
            "article_id": match.article_id,
            "rule_id": match.rule_id,
            "score": match.score,
            "snippet": match.snippet,
        },
        ensure_ascii=False,
    )


def _rules_from_file(path: Path) -> list[RuleSpec]:
    return [rule.spec() for rule in parse_rules_toml(path.read_text("utf-8")) if rule.enabled]


async def _rules_from_database() -> list[RuleSpec]:
    from service.runtime import open_resources
    from service.settings import load_settings
    from service.storage.backtest import list_enabled_rule_specs

    async with open_resources(load_settings()) as resources, resources.sessionmaker() as session:
        return await list_enabled_rule_specs(session)


def _write_matches(matcher: Matcher, source: TextIO, sink: TextIO) -> tuple[int, int]:
    articles = matches = 0
    for article in read_articles(source):
        articles += 1
        for match in matcher.match(article):
            matches += 1
            sink.write(match_line(match) + "\n")
    return articles, matches


def match_command(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="JSONL articles: id, title, body; optional source, lang, tier, published.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="A rules TOML file (config/rules.toml format); default: the database's "
            "enabled rules.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help="Where to write the matches as JSONL; default: standard output."
        ),
    ] = None,
) -> None:
    """Match a JSONL file of articles against watch rules; print one JSON line per match.

    Output lines: {"article_id", "rule_id", "score", "snippet"}. Exit code 2: bad rule or line.

    Examples:
      [bold]dealwatch match --input articles.jsonl --rules config/rules.toml[/bold]
      [bold]dealwatch match --input articles.jsonl --output matches.jsonl[/bold]  (database rules)
    """
    try:
        specs = (
            _rules_from_file(rules) if rules is not None else asyncio.run(_rules_from_database())
        )
        matcher = Matcher.build(specs)
    except InvalidRuleError as exc:
        print_rule_error(exc)
        raise typer.Exit(2) from exc
    if not specs:
        err_console.print("no enabled rules: nothing can match")
    try:
        with input.open(encoding="utf-8") as source:
            if output is None:
                articles, matches = _write_matches(matcher, source, sys.stdout)
            else:
                with output.open("w", encoding="utf-8") as sink:
                    articles, matches = _write_matches(matcher, source, sink)
    except ValueError as exc:
        err_console.print(Text(f"error: {input}: {exc}", style="bold red"))
        raise typer.Exit(2) from exc
    err_console.print(f"{articles} articles, {len(specs)} rules, {matches} matches")


# --- rules backtest -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayCount:
    """Backtest result for one UTC day of publication."""

    day: date
    articles: int
    matches: int
    best_title: str = ""
    best_score: float = 0.0


def parse_since(value: str, now: datetime) -> datetime:
    """Return the start of a backtest window: ``30d``, ``12h``, ``2w`` or an ISO date.

    Raises:
        typer.BadParameter: the value is neither.
    """
    duration = _DURATION.fullmatch(value.strip())
    if duration:
        amount, unit = duration.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter("use 30d, 12h, 2w or an ISO date such as 2026-11-01") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def tally(results: Iterable[tuple[Article, list[Match]]]) -> list[DayCount]:
    """Count articles and matches per UTC publication day, keeping the best match's title."""
    days: dict[date, DayCount] = {}
    for article, matches in results:
        if article.published is None:
            continue
        day = article.published.astimezone(UTC).date()
        current = days.get(day, DayCount(day, 0, 0))
        best_title, best_score = current.best_title, current.best_score
        for match in matches:
            if not best_title or match.score > best_score:
                best_title, best_score = article.title, match.score
        days[day] = DayCount(
            day, current.articles + 1, current.matches + len(matches), best_title, best_score
        )
    return [days[day] for day in sorted(days)]


async def run_backtest(spec: RuleSpec, since: str) -> tuple[datetime, list[DayCount]]:
    """Run ``spec`` over the stored articles published since ``since``; count per day.

    ``spec.query`` is an inline draft, or empty to use the stored rule ``spec.id``.

    Raises:
        LookupError: no stored rule has that id (and no draft query was given).
        InvalidRuleError: the query does not parse.
    """
    from service.runtime import open_resources
    from service.settings import load_settings
    from service.storage.backtest import get_rule_spec, list_articles_since

    async with open_resources(load_settings()) as resources, resources.sessionmaker() as session:
        if not spec.query:
            stored = await get_rule_spec(session, spec.id)
            if stored is None:
                raise LookupError(spec.id)
            spec = stored
        matcher = Matcher.build([spec])
        start = parse_since(since, resources.clock())
        results: list[tuple[Article, list[Match]]] = []
        after_id = 0
        while True:
            page = await list_articles_since(session, start, after_id=after_id)
            if not page:
                break
            results.extend((article, matcher.match(article)) for article in page)
            after_id = int(page[-1].id)
        return start, tally(results)


@rules_app.command("backtest")
def backtest(
    rule_id: Annotated[str, typer.Argument(help="A stored rule's id, or a label for --query.")],
    since: Annotated[
        str, typer.Option("--since", help="How far back: 30d, 12h, 2w or an ISO date.")
    ] = "30d",
    query: Annotated[
        str | None,
        typer.Option("--query", help="Try this draft query instead of the stored rule."),
    ] = None,
) -> None:
    """Run a stored or draft rule over stored articles and print matches per day.

    Examples:
      [bold]dealwatch rules backtest pk-ru-energy --since 30d[/bold]
      [bold]dealwatch rules backtest draft --since 2w --query 'Pakistan LNG -cricket'[/bold]
    """
    try:
        start, days = asyncio.run(run_backtest(RuleSpec(id=rule_id, query=query or ""), since))
    except InvalidRuleError as exc:
        print_rule_error(exc)
        raise typer.Exit(2) from exc
    except LookupError as exc:
        err_console.print(f"no stored rule {rule_id!r}; pass --query to try a draft")
        raise typer.Exit(1) from exc
    table = Table(
        "day (UTC)",
        "articles",
        "matches",
        "best match",
        title=f"{rule_id} since {start:%Y-%m-%d %H:%M} UTC",
    )
    for day in days:
        table.add_row(str(day.day), str(day.articles), str(day.matches), day.best_title[:70])
    total_articles = sum(day.articles for day in days)
    total_matches = sum(day.matches for day in days)
    table.add_section()
    table.add_row("total", str(total_articles), str(total_matches), "")
    console.print(table)
