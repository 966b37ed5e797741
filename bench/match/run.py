"""Matching benchmark: presearching matcher against a per-rule regex baseline, side by side.

Usage::

    python -m bench.match            # 100, 1k, 10k and 100k rules over 5,000 articles
    python -m bench.match --quick    # 100, 1k and 10k rules over 1,000 articles
    python -m bench.match --profile both   # also selective watch rules (see corpus.py)

Articles (~400 words) and rules come from :mod:`bench.match.corpus`. Times are CPU time of
this process (``time.process_time``), so other load on the machine disturbs them less; the
figures that matter are the ratios printed in the same run. Targets (issue 4): at 10,000 rules
at most 0.5 ms per article, at least 300x the baseline, candidates at most 4x true matches.
They are set on the default "broad" rule profile, the reference's deliberately broad workload
(an article matches ~1% of all rules); ``--profile selective`` or ``both`` adds a table for
rules that each watch something specific (:mod:`bench.match.corpus`), labelled as such.

"full match" is ``Matcher.match``: every matching rule with its score, found terms and what
its snippet is cut from (a match cuts its snippet text when it is first read, as storing,
rendering or printing it does). "snippets read" also reads every match's snippet, which
real rule sets, matching a few rules per article, do for each match they store.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence

from alerts.matching import Matcher, estimate_frequencies
from alerts.types import Article
from bench.match.baseline import RegexBaseline
from bench.match.corpus import PROFILES, make_articles, make_rules


def calibrate(articles: Sequence[Article]) -> float:
    """Return MB/s of the reference's normalise step (lower, translate, split, join)."""
    table = {ord(c): " " for c in ".,;:!?()[]\"'-"}
    texts = [a.title + " " + a.body for a in articles[:1000]]
    size = sum(len(t) for t in texts)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for text in texts:
            " ".join(text.lower().translate(table).split())
        best = min(best, time.process_time() - start)
    return size / best / 1e6


def _per_article(work: Callable[[Article], object], articles: Sequence[Article]) -> float:
    """Return CPU seconds per article for ``work`` over ``articles``."""
    gc.collect()
    start = time.process_time()
    for article in articles:
        work(article)
    return (time.process_time() - start) / len(articles)


def max_articles(size: int, available: int) -> int:
    """Return how many articles to time at ``size`` rules: all, except 1,000 at 100k rules.

    At 100,000 rules a full pass over 5,000 articles alone would take minutes; 1,000
    articles give the same per-article figure within noise and keep the run short.
    """
    return available if size < 100_000 else min(available, 1_000)


def run(
    sizes: Sequence[int], count: int, baseline_budget: float, profiles: Sequence[str] = ("broad",)
) -> None:
    """Print one table per rule profile, one row per rule count."""
    corpus = make_articles(count + 300)
    sample, articles = corpus.articles[:300], corpus.articles[300:]
    frequencies = estimate_frequencies(sample)
    words = statistics.mean(len((a.title + " " + a.body).split()) for a in articles)
    print(f"{len(articles)} articles, {words:.0f} words each on average; CPU time, one core")
    print(
        f"machine: {calibrate(articles):.0f} MB/s on the reference normalisation loop "
        "(matching-performance.md measured ~80 MB/s on its VM; scale absolute times by that)"
    )
    for profile in profiles:
        print(f"\nrule profile: {profile}")
        _table(profile, sizes, articles, frequencies, corpus.tails, baseline_budget)


def _table(
    profile: str,
    sizes: Sequence[int],
    articles: Sequence[Article],
    frequencies: dict[str, float],
    tails: list[str],
    baseline_budget: float,
) -> None:
    """Print the table of one rule profile: one row per rule count."""
    print(
        "| rules | build s | full match µs/art [n] | art/s | snippets read µs/art [n/5] "
        "| matches/art "
        "| candidates/art | cand/match | always-run | regex µs/art [n] | speed-up |"
    )
    print("| ---: " * 11 + "|")
    for size in sizes:
        rules = make_rules(size, tails, profile=profile)
        start = time.process_time()
        matcher = Matcher.build(rules, frequencies=frequencies)
        build = time.process_time() - start

        def with_snippets(article: Article, matcher: Matcher = matcher) -> None:
            for match in matcher.match(article):
                _ = match.snippet

        measured = articles[: max_articles(size, len(articles))]
        matches = sum(len(matcher.match(a)) for a in articles[:200])
        candidates = sum(len(matcher.candidates(a)) for a in articles[:200])
        full = _per_article(matcher.match, measured)
        read = _per_article(with_snippets, measured[: max(200, len(measured) // 5)])

        baseline = RegexBaseline(rules)
        probe = _per_article(baseline.match, articles[:2])
        sample_size = max(2, min(len(articles), int(baseline_budget / max(probe, 1e-9))))
        regex = _per_article(baseline.match, articles[:sample_size])

        per_match = candidates / matches if matches else float("nan")
        print(
            f"| {size:,} | {build:.2f} | {full * 1e6:,.0f} [{len(measured)}] | {1 / full:,.0f} "
            f"| {read * 1e6:,.0f} "
            f"| {matches / 200:.1f} | {candidates / 200:.1f} | {per_match:.2f} "
            f"| {matcher.always_run} | {regex * 1e6:,.0f} [{sample_size}] | {regex / full:,.0f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Matcher vs per-rule regex benchmark.")
    parser.add_argument("--quick", action="store_true", help="Fewer articles, up to 10k rules.")
    parser.add_argument("--articles", type=int, help="Articles to match (default 5,000).")
    parser.add_argument("--sizes", type=int, nargs="+", help="Rule counts to measure.")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=4.0,
        help="CPU budget for the regex baseline per rule count (it is sampled).",
    )
    parser.add_argument(
        "--profile",
        choices=[*PROFILES, "both"],
        default="broad",
        help="Rule workload: the reference's broad one (default), selective, or both.",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([100, 1_000, 10_000] if args.quick else [100, 1_000, 10_000, 100_000])
    count = args.articles or (1_000 if args.quick else 5_000)
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    run(sizes, count, args.baseline_seconds, profiles)


if __name__ == "__main__":
    main()
