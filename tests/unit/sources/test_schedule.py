from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.sources.schedule import SchedulePolicy, next_poll_at

NOW = datetime(2024, 6, 14, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
NO_JITTER = SchedulePolicy(jitter_fraction=0.0)


def delay(**overrides: object) -> timedelta:
    arguments: dict[str, object] = {
        "now": NOW,
        "interval": HOUR,
        "outcome": "ok",
        "consecutive_failures": 0,
        "retry_after": None,
        "max_age": None,
        "ttl_minutes": None,
        "recent_item_times": [],
        "jitter_seed": "source-1",
        "policy": NO_JITTER,
    }
    arguments.update(overrides)
    return next_poll_at(**arguments) - NOW  # type: ignore[arg-type]


def test_plain_interval() -> None:
    assert delay() == HOUR


def test_jitter_is_bounded_deterministic_and_spreads_sources() -> None:
    policy = SchedulePolicy(jitter_fraction=0.1)
    delays = {delay(policy=policy, jitter_seed=f"source-{i}") for i in range(20)}
    assert all(timedelta(minutes=54) <= d <= timedelta(minutes=66) for d in delays)
    assert len(delays) > 10
    assert delay(policy=policy, jitter_seed="x") == delay(policy=policy, jitter_seed="x")


def test_exponential_backoff_is_capped() -> None:
    assert delay(outcome="error", consecutive_failures=1) == HOUR
    assert delay(outcome="error", consecutive_failures=2) == 2 * HOUR
    assert delay(outcome="error", consecutive_failures=3) == 4 * HOUR
    assert delay(outcome="error", consecutive_failures=30) == timedelta(hours=12)


def test_retry_after_pushes_later_but_is_capped() -> None:
    assert delay(outcome="error", consecutive_failures=1, retry_after=7200.0) == 2 * HOUR
    assert delay(retry_after=30.0) == HOUR
    assert delay(retry_after=10 * 86400.0) == timedelta(hours=24)


def test_max_age_and_ttl_push_later_only() -> None:
    assert delay(max_age=3 * 3600) == 3 * HOUR
    assert delay(max_age=60) == HOUR
    assert delay(ttl_minutes=120) == 2 * HOUR
    assert delay(ttl_minutes=100000) == timedelta(hours=24)


def test_adaptive_interval_follows_publishing_rate_within_bounds() -> None:
    every_10_min = [NOW - timedelta(minutes=10 * i) for i in range(1, 10)]
    assert delay(recent_item_times=every_10_min) == timedelta(minutes=5)
    every_2_hours = [NOW - timedelta(hours=2 * i) for i in range(6)]
    assert delay(recent_item_times=every_2_hours) == HOUR
    weekly = [NOW - timedelta(days=7 * i) for i in range(1, 5)]
    assert delay(recent_item_times=weekly) == timedelta(hours=6)
    assert delay(recent_item_times=every_10_min[:2]) == HOUR
