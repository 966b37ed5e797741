from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.schedule import (
    due_period,
    local_instant,
    next_due,
    period_key,
    previous_due,
    window_for,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def daily(tz: str, at: time, after: datetime) -> datetime:
    return next_due(cadence="daily", send_time=at, weekday=None, tz=tz, after=after)


@pytest.mark.parametrize(
    ("tz", "at", "after", "expected"),
    [
        # Spring forward: 02:30 does not exist, the first valid instant after it is 03:00 EDT.
        ("America/New_York", time(2, 30), utc(2025, 3, 8, 12), utc(2025, 3, 9, 7)),
        # Fall back: 01:30 happens twice, only the first (EDT) occurrence counts.
        ("America/New_York", time(1, 30), utc(2025, 11, 1, 12), utc(2025, 11, 2, 5, 30)),
        ("America/New_York", time(1, 30), utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),
        ("America/New_York", time(8, 0), utc(2026, 11, 1, 12, 59), utc(2026, 11, 1, 13)),
        ("Europe/Berlin", time(8, 0), utc(2025, 3, 29, 12), utc(2025, 3, 30, 6)),
        # 02:30 on the Berlin spring-forward day does not exist: 03:00 CEST is 01:00Z.
        ("Europe/Berlin", time(2, 30), utc(2025, 3, 29, 12), utc(2025, 3, 30, 1)),
        ("Europe/Berlin", time(2, 30), utc(2025, 10, 25, 12), utc(2025, 10, 26, 0, 30)),
        ("Asia/Kolkata", time(8, 0), utc(2025, 3, 29, 12), utc(2025, 3, 30, 2, 30)),
        ("Asia/Karachi", time(9, 0), utc(2026, 3, 29, 3), utc(2026, 3, 29, 4)),
        ("Asia/Karachi", time(9, 0), utc(2026, 3, 29, 4), utc(2026, 3, 30, 4)),
    ],
)
def test_daily_next_due_handles_gaps_and_repeats(
    tz: str, at: time, after: datetime, expected: datetime
) -> None:
    assert daily(tz, at, after) == expected


def test_repeated_fall_back_hour_fires_once() -> None:
    first = daily("America/New_York", time(1, 30), utc(2026, 10, 31, 12))
    second = daily("America/New_York", time(1, 30), first)
    assert first == utc(2026, 11, 1, 5, 30)
    # Not 06:30Z (the second 01:30), but the next day's 01:30 EST.
    assert second == utc(2026, 11, 2, 6, 30)
    assert period_key(cadence="daily", due=first, tz="America/New_York") == "2026-11-01"
    assert period_key(cadence="daily", due=second, tz="America/New_York") == "2026-11-02"


def test_weekly_follows_local_time_across_dst() -> None:
    dues = []
    after = utc(2025, 3, 20)
    for _ in range(3):
        after = next_due(
            cadence="weekly", send_time=time(8, 0), weekday=0, tz="Europe/London", after=after
        )
        dues.append(after)
    assert dues == [utc(2025, 3, 24, 8), utc(2025, 3, 31, 7), utc(2025, 4, 7, 7)]
    keys = [period_key(cadence="weekly", due=d, tz="Europe/London") for d in dues]
    assert keys == ["2025-W13", "2025-W14", "2025-W15"]


def test_weekly_key_uses_local_iso_week() -> None:
    # Monday 02:00 in Karachi is Sunday 21:00Z: the key is the local week (45), not the UTC one.
    due = next_due(
        cadence="weekly",
        send_time=time(2, 0),
        weekday=0,
        tz="Asia/Karachi",
        after=utc(2026, 11, 1),
    )
    assert due == utc(2026, 11, 1, 21)
    assert due.isocalendar().week == 44
    assert period_key(cadence="weekly", due=due, tz="Asia/Karachi") == "2026-W45"


def test_hourly_uses_utc_hours() -> None:
    due = next_due(
        cadence="hourly",
        send_time=time(0, 15),
        weekday=None,
        tz="Asia/Kolkata",
        after=utc(2026, 11, 1, 5, 15),
    )
    assert due == utc(2026, 11, 1, 6, 15)
    assert period_key(cadence="hourly", due=due, tz="Asia/Kolkata") == "2026-11-01T06Z"
    assert window_for(cadence="hourly", send_time=time(0, 15), weekday=None, tz="UTC", due=due) == (
        utc(2026, 11, 1, 5, 15),
        due,
    )


def test_daily_windows_are_23_and_25_hours_on_dst_days() -> None:
    tz = "Europe/Berlin"
    spring = daily(tz, time(8, 0), utc(2026, 3, 29))
    autumn = daily(tz, time(8, 0), utc(2026, 10, 25))
    start, end = window_for(cadence="daily", send_time=time(8, 0), weekday=None, tz=tz, due=spring)
    assert end - start == timedelta(hours=23)
    start, end = window_for(cadence="daily", send_time=time(8, 0), weekday=None, tz=tz, due=autumn)
    assert end - start == timedelta(hours=25)


def test_immediate_and_invalid_input_are_refused() -> None:
    with pytest.raises(ValueError, match="immediate"):
        next_due(
            cadence="immediate", send_time=time(8), weekday=None, tz="UTC", after=utc(2026, 1, 1)
        )
    with pytest.raises(ValueError, match="immediate"):
        period_key(cadence="immediate", due=utc(2026, 1, 1), tz="UTC")
    with pytest.raises(ValueError, match="weekday"):
        next_due(cadence="weekly", send_time=time(8), weekday=None, tz="UTC", after=utc(2026, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        daily("Mars/Olympus_Mons", time(8), utc(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        daily("UTC", time(8), datetime(2026, 1, 1))  # noqa: DTZ001


def test_local_instant_gap_moves_to_end_of_gap() -> None:
    tz = ZoneInfo("America/New_York")
    assert local_instant(date(2026, 3, 8), time(2, 0), tz) == utc(2026, 3, 8, 7)
    assert local_instant(date(2026, 3, 8), time(2, 59), tz) == utc(2026, 3, 8, 7)
    assert local_instant(date(2026, 3, 8), time(3, 0), tz) == utc(2026, 3, 8, 7)


ZONES = ["America/New_York", "Europe/Berlin", "Asia/Karachi", "Australia/Lord_Howe"]


@settings(max_examples=200, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)),  # noqa: DTZ001
)
def test_daily_schedule_gives_one_due_per_local_day(
    tz: str, hour: int, minute: int, start: datetime
) -> None:
    after = start.replace(tzinfo=UTC)
    at = time(hour, minute)
    previous_key: date | None = None
    for _ in range(10):
        due = daily(tz, at, after)
        assert due > after
        assert previous_due(cadence="daily", send_time=at, weekday=None, tz=tz, before=due) <= after
        key = date.fromisoformat(period_key(cadence="daily", due=due, tz=tz))
        if previous_key is not None:
            assert key == previous_key + timedelta(days=1)
        previous_key = key
        after = due


def test_due_period_on_time() -> None:
    due = daily("Asia/Karachi", time(9), utc(2026, 11, 1))
    period = due_period(
        cadence="daily",
        send_time=time(9),
        weekday=None,
        tz="Asia/Karachi",
        next_due_at=due,
        covered_until=utc(2026, 10, 31, 4),
        now=due + timedelta(seconds=3),
    )
    assert period is not None
    assert (period.due, period.period_key, period.missed) == (due, "2026-11-01", 1)
    assert (period.window_start, period.window_end) == (utc(2026, 10, 31, 4), due)
    assert period.next_due == utc(2026, 11, 2, 4)


def test_due_period_not_yet_due() -> None:
    assert (
        due_period(
            cadence="daily",
            send_time=time(9),
            weekday=None,
            tz="UTC",
            next_due_at=utc(2026, 11, 1, 9),
            covered_until=None,
            now=utc(2026, 11, 1, 8, 59),
        )
        is None
    )


def test_catch_up_sends_one_digest_for_missed_periods() -> None:
    # Down from 31 Oct to 3 Nov 15:00Z: three 09:00 Berlin digests were missed.
    period = due_period(
        cadence="daily",
        send_time=time(9),
        weekday=None,
        tz="Europe/Berlin",
        next_due_at=utc(2026, 11, 1, 8),
        covered_until=utc(2026, 10, 31, 8),
        now=utc(2026, 11, 3, 15),
    )
    assert period is not None
    assert period.missed == 3
    assert period.period_key == "2026-11-03"
    assert (period.window_start, period.window_end) == (utc(2026, 10, 31, 8), utc(2026, 11, 3, 8))
    assert period.next_due == utc(2026, 11, 4, 8)


def test_catch_up_window_is_capped() -> None:
    period = due_period(
        cadence="hourly",
        send_time=time(0, 0),
        weekday=None,
        tz="UTC",
        next_due_at=utc(2026, 1, 1),
        covered_until=None,
        now=utc(2026, 3, 1, 0, 30),
        max_window=timedelta(days=1),
    )
    assert period is not None
    assert period.window_end == utc(2026, 3, 1)
    assert period.window_start == utc(2026, 2, 28)
    assert period.period_key == "2026-03-01T00Z"
    assert period.next_due == utc(2026, 3, 1, 1)
