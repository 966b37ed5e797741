"""End-to-end ingest benchmark: dealwatch's poller against lemon24/reader, same feeds, same run.

    python -m bench.ingest [--feeds 40] [--items 50]

N RSS feeds of M items each (realistic HTML bodies, half with ``content:encoded``) are
written to a temporary folder and served by ``http.server`` in a separate process (it answers
``If-Modified-Since`` with 304, so re-polls are conditional; ``server.py`` says why it is not
``python -m http.server``). Both contenders run on one core of this process; the server runs
on the other cores when there are any, as a remote site would:

* dealwatch: ``Poller.poll_due()`` on a fresh SQLite database - fetch, parse (fastfeedparser),
  normalise, enrich, de-duplicate into stories, store, match (no rules);
* reader (``pip install -e '.[bench]'``): ``update_feeds()`` on a fresh SQLite database.

Before the measured runs, each contender polls 4 other feeds once in this process (into a
database of its own), so that both are measured as a running service would poll, not with the
one-off costs of a cold process (lazy imports, first-use caches, the first regex compiles):
those cost dealwatch ~8% of a 2,000-item run and reader nothing measurable (run 0 against
runs 1-3 in one process: 306 against 270-286 us/item, and 1,177 against 1,187). ``--cold``
skips the warm-up.

Then both re-poll the unchanged feeds and the server's log gives the share of 304 answers.
Each contender's line gives its wall time and its CPU time (this process, threads included:
on a shared machine the CPU figures move less), and the ratio of both.

``--stages`` adds a third dealwatch run (fresh database, one source at a time, after the
measured runs so it does not disturb them) with :mod:`service.stages` turned on, and prints
where the time goes, in microseconds per stored item: ``fetch`` (the HTTP exchange, the
server's time included), ``parse``, ``normalise`` (HTML to text, canonical URL, dates,
identity, language detection), ``gazetteer``, ``stories`` (near-duplicate placement in
memory), ``article SQL``, ``story SQL``, ``source SQL`` (the schedule's read and the source's
update), ``commit``, and ``other`` (the rest of the wall time: sessions, the batch's claim,
the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from pydantic import SecretStr

from service import stages
from service.catalogue import SourceDefinition, sync_sources
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine
from service.jobs.poll import Poller
from service.jobs.scheduler import freeze_startup_heap
from service.runtime import open_resources
from service.settings import DatabaseSettings, HttpSettings, PollSettings, Settings

_SYLLABLES = [
    "ka",
    "ri",
    "to",
    "na",
    "mo",
    "se",
    "lu",
    "pa",
    "de",
    "vi",
    "ro",
    "ga",
    "ne",
    "shi",
    "ta",
    "mi",
    "ko",
    "ze",
    "bu",
    "ra",
    "lo",
    "fi",
]
_RNG = random.Random(2026)
# A vocabulary as large as a newsroom's: every item tells a different story, as real feeds do
# (a tiny vocabulary would make every item a near-duplicate of every other).
WORDS = ["".join(_RNG.choice(_SYLLABLES) for _ in range(_RNG.randint(2, 4))) for _ in range(20000)]


def _sentence(seed: int, length: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(length)).capitalize()


_WARM_UP_FEEDS = 4


def write_feeds(folder: Path, feeds: int, items: int, *, first: int = 0) -> None:
    """Write ``feed-{first}.xml`` ... ``feed-{first + feeds - 1}.xml`` into ``folder``."""
    base = datetime(2026, 11, 1, tzinfo=UTC)
    for f in range(first, first + feeds):
        entries = []
        for i in range(items):
            n = f * items + i
            paragraphs = "".join(
                f"<p>{_sentence(n + p, 40)} <a href='https://example.org/{n}/{p}'>more</a> "
                f"<strong>{_sentence(n * 3 + p, 6)}</strong> &amp; figures.</p>"
                for p in range(6)
            )
            body = f"<figure><img src='https://example.org/{n}.jpg'/></figure>{paragraphs}"
            published = format_datetime(base + timedelta(minutes=n))
            if i % 2:
                content = f"<description>{_sentence(n, 30)}</description>" + (
                    f"<content:encoded><![CDATA[{body}]]></content:encoded>"
                )
            else:
                escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                content = f"<description>{escaped}</description>"
            entries.append(
                f"<item><title>{_sentence(n, 9)} {n}</title>"
                f"<link>https://news{f}.example.org/story/{n}</link>"
                f"<guid isPermaLink='false'>story-{f}-{i}</guid><pubDate>{published}</pubDate>"
                f"<dc:creator>Desk {f}</dc:creator><category>Energy</category>{content}</item>"
            )
        (folder / f"feed-{f}.xml").write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
            f"<title>Feed {f}</title><link>https://news{f}.example.org/</link>"
            f"<language>en</language>{''.join(entries)}</channel></rss>",
            encoding="utf-8",
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StaticServer:
    """``python -m http.server`` in its own process, its access log kept for counting."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder.parent / "access.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("server.py")), str(self.port)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        if hasattr(os, "sched_setaffinity"):
            ours = os.sched_getaffinity(0)
            others = set(range(os.cpu_count() or 1)) - ours
            if others:
                os.sched_setaffinity(self.process.pid, others)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("http.server did not start")

    def statuses(self) -> list[str]:
        self._log_file.flush()
        return re.findall(r'"GET [^"]*" (\d{3})', self.log.read_text())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log_file.close()


def not_modified_share(statuses: list[str]) -> float:
    return 100.0 * statuses.count("304") / len(statuses) if statuses else 0.0


async def run_dealwatch(
    urls: list[str],
    workdir: Path,
    *,
    concurrency: int = 8,
    name: str = "dealwatch.db",
    spent: dict[str, float] | None = None,
) -> tuple[float, int, float, float]:
    """Poll every feed, then re-poll; with ``spent``, time the first poll's stages into it."""
    url = f"sqlite+aiosqlite:///{workdir / name}"
    engine = make_engine(DatabaseSettings(url=url))
    await upgrade_to_head(engine)
    await engine.dispose()
    settings = Settings(
        database=DatabaseSettings(url=url),
        http=HttpSettings(
            allow_loopback=True, min_host_interval_seconds=0.0, per_host_concurrency=8
        ),
        poll=PollSettings(batch_size=len(urls), concurrency=concurrency),
        data_dir=workdir,
        secret_key=SecretStr("bench-" + "x" * 40),
    )
    clock_now = [datetime(2026, 11, 2, tzinfo=UTC)]
    async with open_resources(settings, clock=lambda: clock_now[0]) as resources:
        async with resources.sessionmaker() as session:
            await sync_sources(
                session,
                [
                    SourceDefinition(id=f"feed-{i}", name=f"Feed {i}", url=u, interval_minutes=30)
                    for i, u in enumerate(urls)
                ],
                now=clock_now[0],
            )
            await session.commit()
        poller = Poller(resources)
        freeze_startup_heap()  # as the worker does once started
        if spent is not None:
            stages.enable()
        started = time.perf_counter()
        cpu_started = time.process_time()
        try:
            results = await poller.poll_due()
        finally:
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            if spent is not None:
                spent.update(stages.totals())
                stages.disable()
        stored = sum(r.new for r in results)
        errors = [r.error for r in results if r.outcome == "error"]
        if errors:
            raise RuntimeError(f"dealwatch poll errors: {errors[:3]}")
        clock_now[0] += timedelta(days=2)
        started = time.perf_counter()
        again = await poller.poll_due()
        repoll = time.perf_counter() - started
        if len(again) != len(urls):
            raise RuntimeError(f"re-poll claimed {len(again)} of {len(urls)} sources")
    return elapsed, stored, repoll, cpu


def run_reader(
    urls: list[str], workdir: Path, *, name: str = "reader.sqlite"
) -> tuple[float, int, float, float] | None:
    try:
        from reader import make_reader
    except ImportError:
        return None
    reader = make_reader(str(workdir / name))
    for url in urls:
        reader.add_feed(url)
    started = time.perf_counter()
    cpu_started = time.process_time()
    reader.update_feeds(scheduled=False)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stored = reader.get_entry_counts().total
    started = time.perf_counter()
    reader.update_feeds(scheduled=False)
    repoll = time.perf_counter() - started
    reader.close()
    return elapsed, int(stored or 0), repoll, cpu


_STAGES = (
    "fetch",
    "parse",
    "normalise",
    "gazetteer",
    "stories",
    "article SQL",
    "story SQL",
    "source SQL",
    "commit",
)


def print_stages(urls: list[str], workdir: Path) -> None:
    spent: dict[str, float] = {}
    elapsed, stored, _, _ = asyncio.run(
        run_dealwatch(urls, workdir, concurrency=1, name="stages.db", spent=spent)
    )
    per_item = 1e6 / max(stored, 1)
    print(
        f"stages (separate run, one source at a time: {stored} items in {elapsed:.2f} s = "
        f"{stored / elapsed:,.0f} items/s), us per item:"
    )
    for name in _STAGES:
        print(f"  {name:<12} {spent.get(name, 0.0) * per_item:7.0f}")
    other = elapsed - sum(spent.get(name, 0.0) for name in _STAGES)
    print(f"  {'other':<12} {other * per_item:7.0f}")
    print(f"  {'total':<12} {elapsed * per_item:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=40)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument(
        "--stages", action="store_true", help="also print a per-stage time table (extra run)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up poll of other feeds before measuring"
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core for both contenders
    workdir = Path(tempfile.mkdtemp(prefix="dealwatch-bench-"))
    feeds_dir = workdir / "feeds"
    feeds_dir.mkdir()
    write_feeds(feeds_dir, args.feeds, args.items)
    size = sum(p.stat().st_size for p in feeds_dir.iterdir())
    warm_dir = feeds_dir / "warm-up"
    warm_dir.mkdir()
    write_feeds(warm_dir, _WARM_UP_FEEDS, args.items, first=args.feeds)
    server = StaticServer(feeds_dir)
    try:
        urls = [f"http://127.0.0.1:{server.port}/feed-{i}.xml" for i in range(args.feeds)]
        warm_urls = [
            f"http://127.0.0.1:{server.port}/warm-up/feed-{i}.xml"
            for i in range(args.feeds, args.feeds + _WARM_UP_FEEDS)
        ]
        total = args.feeds * args.items
        print(f"{args.feeds} feeds x {args.items} items = {total} items, {size / 1e6:.1f} MB")
        if not args.cold:
            asyncio.run(run_dealwatch(warm_urls, workdir, name="warm-up.db"))
            run_reader(warm_urls, workdir, name="warm-up.sqlite")

        before = len(server.statuses())
        elapsed, stored, repoll, cpu = asyncio.run(run_dealwatch(urls, workdir))
        statuses = server.statuses()[before:]
        first, second = statuses[: args.feeds], statuses[args.feeds :]
        ours = stored / elapsed
        print(
            f"dealwatch: {stored} items in {elapsed:.2f} s = {ours:,.0f} items/s "
            f"(CPU {cpu:.2f} s = {stored / cpu:,.0f} items/CPU-s); "
            f"re-poll {repoll:.2f} s, {not_modified_share(second):.0f}% 304 "
            f"(first poll {not_modified_share(first):.0f}% 304)"
        )

        before = len(server.statuses())
        theirs_run = run_reader(urls, workdir)
        if theirs_run is None:
            print("reader: not installed (pip install -e '.[bench]'); no ratio")
            if args.stages:
                print_stages(urls, workdir)
            return
        r_elapsed, r_stored, r_repoll, r_cpu = theirs_run
        r_statuses = server.statuses()[before:]
        theirs = r_stored / r_elapsed
        print(
            f"reader:    {r_stored} items in {r_elapsed:.2f} s = {theirs:,.0f} items/s "
            f"(CPU {r_cpu:.2f} s = {r_stored / r_cpu:,.0f} items/CPU-s); "
            f"re-poll {r_repoll:.2f} s, {not_modified_share(r_statuses[args.feeds :]):.0f}% 304"
        )
        print(
            f"ratio dealwatch/reader: {ours / theirs:.1f}x "
            f"(per CPU-second: {(stored / cpu) / (r_stored / r_cpu):.1f}x)"
        )
        if args.stages:
            print_stages(urls, workdir)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
