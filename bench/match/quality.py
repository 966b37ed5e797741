"""Precision and recall of watch rules on the hand-labelled article set.

Usage::

    python -m bench.match.quality [--rules config/rules.toml]
        [--data tests/data/labelled/articles.jsonl] [--errors]

Each line of the data file is a matcher input line (``id``, ``title``, ``body``, ``source``,
``lang``, ``tier``, ``published``) plus ``labels``: the rule ids a careful reader says should
match. Labelling guide used for the set (a few hundred energy and non-energy headlines with
leads, in English, Russian and Urdu, including tricky negatives):

* ``pk-ru-energy``: energy, trade or connectivity between Pakistan and Russia, both involved.
* ``oil-gas``: oil and gas industry or market news (crude, products, natural gas, LNG,
  refining, upstream, OPEC), including payments and sanctions on that trade.
* ``pipelines-connectivity``: energy pipelines, railways, ports, transit corridors (INSTC,
  CPEC, TAPI, CASA-1000). Not water mains, train accidents or "pipeline of talent".
* ``power-nuclear``: electricity generation, grids, tariffs, nuclear power (not weapons).
* ``sanctions-payments``: sanctions, price caps and payment currencies affecting energy trade.
* ``official-energy``: an official-tier source on energy.

The ``tuning`` split was written and labelled first and the rules were tuned on it (a few
labels that contradicted this guide were corrected after review); the ``holdout`` split was
written after the rules were frozen, so its figures are the honest estimate.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alerts.matching import Matcher
from alerts.rulefile import parse_rules_toml
from service.cli_rules import read_articles

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RULES = ROOT / "config" / "rules.toml"
DEFAULT_DATA = ROOT / "tests" / "data" / "labelled" / "articles.jsonl"


@dataclass(frozen=True, slots=True)
class Quality:
    """Confusion counts of one rule over the labelled set."""

    rule_id: str
    true_positives: int
    false_positives: int
    false_negatives: int
    missed: tuple[str, ...]
    wrong: tuple[str, ...]

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        relevant = self.true_positives + self.false_negatives
        return self.true_positives / relevant if relevant else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def measure(
    rules_path: Path = DEFAULT_RULES, data_path: Path = DEFAULT_DATA, split: str | None = None
) -> list[Quality]:
    """Match every labelled article and compare with its labels, rule by rule.

    Args:
        rules_path: the rules file.
        data_path: the labelled JSONL.
        split: only lines whose ``split`` is this (``tuning`` or ``holdout``); None for all.
    """
    rules = [rule for rule in parse_rules_toml(rules_path.read_text("utf-8")) if rule.enabled]
    matcher = Matcher.build(rule.spec() for rule in rules)
    lines = [
        line
        for line in data_path.read_text("utf-8").splitlines()
        if split is None or json.loads(line).get("split") == split
    ]
    labels = {str(json.loads(line)["id"]): set(json.loads(line)["labels"]) for line in lines}
    titles: dict[str, str] = {}
    found: dict[str, set[str]] = {}
    for article in read_articles(lines):
        titles[article.id] = article.title
        found[article.id] = {match.rule_id for match in matcher.match(article)}
    results: list[Quality] = []
    for rule in rules:
        tp = fp = fn = 0
        missed: list[str] = []
        wrong: list[str] = []
        for article_id, expected in labels.items():
            hit = rule.id in found[article_id]
            wanted = rule.id in expected
            if hit and wanted:
                tp += 1
            elif hit:
                fp += 1
                wrong.append(f"{article_id}: {titles[article_id]}")
            elif wanted:
                fn += 1
                missed.append(f"{article_id}: {titles[article_id]}")
        results.append(Quality(rule.id, tp, fp, fn, tuple(missed), tuple(wrong)))
    return results


def table(results: Iterable[Quality]) -> str:
    """Return a Markdown table of the results."""
    rows = [
        "| rule | relevant | matched | TP | FP | FN | precision | recall | F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for q in results:
        rows.append(
            f"| {q.rule_id} | {q.true_positives + q.false_negatives} "
            f"| {q.true_positives + q.false_positives} | {q.true_positives} "
            f"| {q.false_positives} | {q.false_negatives} | {q.precision:.2f} "
            f"| {q.recall:.2f} | {q.f1:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--errors", action="store_true", help="List misses and false hits.")
    args = parser.parse_args(argv)
    for split in (None, "tuning", "holdout"):
        results = measure(args.rules, args.data, split)
        count = sum(q.true_positives + q.false_positives for q in results[:0]) or sum(
            1
            for line in args.data.read_text("utf-8").splitlines()
            if split is None or json.loads(line).get("split") == split
        )
        print(f"\n{split or 'all'}: {count} labelled articles, rules from {args.rules}")
        print(table(results))
    if args.errors:
        for q in results:
            for line in q.missed:
                print(f"MISSED {q.rule_id:24} {line}")
            for line in q.wrong:
                print(f"WRONG  {q.rule_id:24} {line}")


if __name__ == "__main__":
    main()
