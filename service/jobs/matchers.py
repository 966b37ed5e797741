"""The compiled matcher of the enabled rules, rebuilt only when a rule changes."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import InvalidRuleError, RuleSpec
from alerts.matching import Matcher
from service.db.models import WatchRule

log = logging.getLogger(__name__)


class MatcherCache:
    """Holds one ``Matcher`` per process; a cheap (id, version) read detects rule changes."""

    def __init__(self) -> None:
        self._fingerprint: tuple[tuple[str, int], ...] | None = None
        self._matcher: Matcher | None = None
        self._lock = asyncio.Lock()

    async def get(self, session: AsyncSession) -> Matcher:
        enabled = WatchRule.enabled.is_(True)
        fingerprint = tuple(
            (row.id, row.version)
            for row in await session.execute(
                select(WatchRule.id, WatchRule.version).where(enabled).order_by(WatchRule.id)
            )
        )
        async with self._lock:
            if self._matcher is None or fingerprint != self._fingerprint:
                # Only a change reads the rules themselves (every poll of every source asks).
                rows = (
                    (await session.execute(select(WatchRule).where(enabled).order_by(WatchRule.id)))
                    .scalars()
                    .all()
                )
                fingerprint = tuple((rule.id, rule.version) for rule in rows)
                # Compiling thousands of rules takes seconds of CPU: keep the event loop free.
                self._matcher = await asyncio.to_thread(
                    build_matcher,
                    [
                        RuleSpec(
                            id=rule.id,
                            query=rule.query,
                            name=rule.name,
                            min_score=rule.min_score,
                            tags=frozenset(rule.tags),
                        )
                        for rule in rows
                    ],
                )
                self._fingerprint = fingerprint
            return self._matcher


def build_matcher(specs: list[RuleSpec]) -> Matcher:
    """Compile the rules, leaving out (and logging) any rule whose stored query is invalid.

    Queries are validated when written, so this only happens after a grammar change; one bad
    rule must not stop every other rule from matching.
    """
    remaining = list(specs)
    while True:
        try:
            return Matcher.build(remaining)
        except InvalidRuleError as exc:
            if exc.rule_id is None:
                raise
            log.error("rule %s skipped: %s", exc.rule_id, exc.message)
            remaining = [spec for spec in remaining if spec.id != exc.rule_id]
