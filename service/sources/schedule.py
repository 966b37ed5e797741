"""When to poll a source next (pure: time and observations in, a datetime out).

The delay is the configured interval, adapted to the source's observed publishing rate when
there are enough recent items, or an exponential backoff after failures; it is jittered
(deterministically per source, so that sources configured alike spread out instead of firing
together) and then pushed later, never earlier, by ``Retry-After``, ``Cache-Control: max-age``
and the RSS ``ttl``, each capped so a hostile header cannot silence a source for months.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Outcome", "SchedulePolicy", "next_poll_at"]

Outcome = Literal["ok", "not_modified", "error"]


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """Bounds of the schedule; built once from settings.

    Attributes:
        min_interval: the adaptive interval never goes below this.
        max_interval: the adaptive interval never goes above this.
        max_backoff: cap of the error backoff.
        max_push: cap of any delay a server asks for (Retry-After, max-age, ttl).
        jitter_fraction: the delay varies by up to this fraction either way.
        min_samples: recent items needed before the publishing rate is trusted.
    """

    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=6)
    max_backoff: timedelta = timedelta(hours=12)
    max_push: timedelta = timedelta(hours=24)
    jitter_fraction: float = 0.1
    min_samples: int = 3


def _adaptive(
    interval: timedelta,
    recent_item_times: Sequence[datetime],
    now: datetime,
    policy: SchedulePolicy,
) -> timedelta:
    if len(recent_item_times) < policy.min_samples:
        return interval
    times = sorted(recent_item_times)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The silence since the newest item is a gap too: a source that stopped publishing
    # slows down instead of being polled at its old rate forever.
    gaps.append(max(now - times[-1], timedelta(0)))
    typical = timedelta(seconds=statistics.median(gap.total_seconds() for gap in gaps))
    # Polling at half the typical gap catches most items within one gap of publication.
    return min(max(typical / 2, policy.min_interval), policy.max_interval)


def next_poll_at(
    *,
    now: datetime,
    interval: timedelta,
    outcome: Outcome,
    consecutive_failures: int,
    retry_after: float | None,
    max_age: int | None,
    ttl_minutes: int | None,
    recent_item_times: Sequence[datetime],
    jitter_seed: str | int,
    policy: SchedulePolicy | None = None,
) -> datetime:
    """Return when the source should be polled next.

    Args:
        now: the current time (timezone-aware).
        interval: the source's configured polling interval.
        outcome: how this poll went.
        consecutive_failures: failures in a row, this one included when ``outcome`` is error.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
        max_age: ``Cache-Control: max-age`` seconds of the response, if any.
        ttl_minutes: the feed's ``<ttl>``, if any.
        recent_item_times: publication times of the source's recent items.
        jitter_seed: a stable value per source (its id), so the jitter is reproducible.
        policy: bounds; the defaults when ``None``.
    """
    rules = policy or SchedulePolicy()
    if outcome == "error":
        exponent = min(max(consecutive_failures - 1, 0), 16)
        delay = min(interval * (1 << exponent), max(rules.max_backoff, interval))
    else:
        delay = _adaptive(interval, recent_item_times, now, rules)
    rng = random.Random(f"{jitter_seed}:{now.isoformat()}")
    delay *= 1 + rng.uniform(-rules.jitter_fraction, rules.jitter_fraction)
    pushes = [timedelta(seconds=retry_after)] if retry_after is not None else []
    if outcome != "error":
        if max_age is not None:
            pushes.append(timedelta(seconds=max_age))
        if ttl_minutes is not None:
            pushes.append(timedelta(minutes=ttl_minutes))
    for push in pushes:
        delay = max(delay, min(push, rules.max_push))
    return now + delay
