"""Digest schedules: when a subscription is due, which period a digest covers, catch-up.

Pure functions over ``zoneinfo``: no clock reads, every instant is passed in and returned as
timezone-aware UTC. Local rules follow the delivery standards (EM-37): a local send time that
does not exist (spring-forward gap) moves forward to the first valid instant after the gap; a
local time that happens twice (fall-back) uses its first occurrence only, so the repeated hour
fires once. The period key (local date, ISO week, UTC hour) is what makes a digest unique per
subscription (EM-36); it is derived from the local calendar, never from the fire instant.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Cadence = Literal["immediate", "hourly", "daily", "weekly"]
CADENCES: tuple[Cadence, ...] = ("immediate", "hourly", "daily", "weekly")

_HOUR = timedelta(hours=1)
# Far more than any DST shift or zone rule change; bounds the date scans below.
_SCAN_DAYS = 9


def zone(tz: str) -> ZoneInfo:
    """Return the IANA zone named ``tz``.

    Raises:
        ValueError: the name is not a known IANA zone.
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def _require_utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Return the UTC instant at which local wall time ``day`` ``at`` happens in ``tz``.

    A wall time inside a spring-forward gap moves to the end of the gap (the first valid
    instant after it); a wall time inside the fall-back repeat resolves to its first
    occurrence (``fold=0``).
    """
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Nonexistent wall time: fold=0 applies the offset from before the gap, fold=1 the one
    # after, so the transition instant lies between the two; find it by bisection.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)


def _check(cadence: Cadence, weekday: int | None) -> None:
    if cadence not in CADENCES:
        raise ValueError(f"unknown cadence: {cadence!r}")
    if cadence == "weekly" and (weekday is None or not 0 <= weekday <= 6):
        raise ValueError("weekly cadence needs a weekday from 0 (Monday) to 6 (Sunday)")
    if cadence == "immediate":
        raise ValueError("immediate cadence has no schedule: each match is sent on its own")


def _candidates(
    cadence: Cadence, send_time: time, weekday: int | None, tz: ZoneInfo, around: datetime
) -> tuple[datetime, ...]:
    """Return the due instants of the local days around ``around``, ascending."""
    return _candidates_on(cadence, send_time, weekday, tz, around.astimezone(tz).date())


# Subscribers share zones and send times, and planning asks for the same local days over and
# over (twice per subscription): each distinct schedule and day is computed once.
@functools.lru_cache(maxsize=4096)
def _candidates_on(
    cadence: Cadence, send_time: time, weekday: int | None, tz: ZoneInfo, centre: date
) -> tuple[datetime, ...]:
    days = (centre + timedelta(days=offset) for offset in range(-_SCAN_DAYS, _SCAN_DAYS + 1))
    return tuple(
        local_instant(day, send_time, tz)
        for day in days
        if cadence == "daily" or day.weekday() == weekday
    )


def next_due(
    *, cadence: Cadence, send_time: time, weekday: int | None, tz: str, after: datetime
) -> datetime:
    """Return the first due instant strictly after ``after`` (UTC, timezone-aware).

    Args:
        cadence: ``hourly``, ``daily`` or ``weekly`` (``immediate`` has no schedule).
        send_time: local wall time of the send; for ``hourly`` only its minute is used, on
            the UTC hour (every zone's offset is not a whole number of hours).
        weekday: 0 = Monday … 6 = Sunday, required for ``weekly``.
        tz: IANA zone name of the subscriber.
        after: timezone-aware instant; the result is strictly later.

    Raises:
        ValueError: unknown cadence or zone, immediate cadence, or a missing weekday.
    """
    _check(cadence, weekday)
    after = _require_utc("after", after)
    if cadence == "hourly":
        candidate = after.replace(minute=send_time.minute, second=0, microsecond=0)
        return candidate if candidate > after else candidate + _HOUR
    for candidate in _candidates(cadence, send_time, weekday, zone(tz), after):
        if candidate > after:
            return candidate
    raise AssertionError("a due instant always exists within the scanned days")


def previous_due(
    *, cadence: Cadence, send_time: time, weekday: int | None, tz: str, before: datetime
) -> datetime:
    """Return the last due instant strictly before ``before`` (UTC, timezone-aware).

    Arguments are those of :func:`next_due`.
    """
    _check(cadence, weekday)
    before = _require_utc("before", before)
    if cadence == "hourly":
        candidate = before.replace(minute=send_time.minute, second=0, microsecond=0)
        return candidate if candidate < before else candidate - _HOUR
    for candidate in reversed(_candidates(cadence, send_time, weekday, zone(tz), before)):
        if candidate < before:
            return candidate
    raise AssertionError("a due instant always exists within the scanned days")


def period_key(*, cadence: Cadence, due: datetime, tz: str) -> str:
    """Return the key that names the period a digest due at ``due`` belongs to.

    ``daily`` → the subscriber's local date (``2026-11-01``), ``weekly`` → the local ISO week
    (``2026-W45``), ``hourly`` → the UTC hour (``2026-11-01T05Z``). Because the key is the local
    calendar period, a repeated or skipped wall-clock hour cannot produce two keys for one day.

    Raises:
        ValueError: ``immediate`` (the caller keys each match itself) or an unknown zone.
    """
    due = _require_utc("due", due)
    if cadence == "hourly":
        return due.strftime("%Y-%m-%dT%HZ")
    local = due.astimezone(zone(tz)).date()
    if cadence == "daily":
        return local.isoformat()
    if cadence == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    raise ValueError(f"cadence {cadence!r} has no period key; the caller chooses one per match")


def window_for(
    *, cadence: Cadence, send_time: time, weekday: int | None, tz: str, due: datetime
) -> tuple[datetime, datetime]:
    """Return the half-open ``[start, end)`` a digest due at ``due`` covers.

    ``end`` is ``due`` and ``start`` the previous due instant, so consecutive windows tile
    time without gaps or overlaps (a daily window is 23 or 25 hours on DST days).
    """
    due = _require_utc("due", due)
    start = previous_due(cadence=cadence, send_time=send_time, weekday=weekday, tz=tz, before=due)
    return start, due


@dataclass(frozen=True, slots=True)
class DuePeriod:
    """The one digest to build now for a subscription, after catch-up.

    Attributes:
        due: the latest due instant not after ``now``; the digest is named after it.
        period_key: :func:`period_key` of ``due``.
        window_start: start of the covered span (inclusive, UTC).
        window_end: end of the covered span (exclusive, UTC); equals ``due``.
        missed: scheduled periods folded into this digest (1 when on time).
        next_due: the following due instant, strictly after ``now``.
    """

    due: datetime
    period_key: str
    window_start: datetime
    window_end: datetime
    missed: int
    next_due: datetime


def due_period(
    *,
    cadence: Cadence,
    send_time: time,
    weekday: int | None,
    tz: str,
    next_due_at: datetime,
    covered_until: datetime | None,
    now: datetime,
    max_window: timedelta | None = None,
) -> DuePeriod | None:
    """Apply the catch-up policy: return the single digest due at ``now``, or ``None``.

    After downtime several periods may have passed. Instead of sending one digest per missed
    period (a burst) or dropping them, one digest is built: it is named after the latest
    missed period and covers everything since the end of the last digest sent
    (``covered_until``), so nothing is lost and nothing is sent twice. ``max_window`` bounds
    how far back that digest reaches after a very long outage.

    Args:
        cadence: ``hourly``, ``daily`` or ``weekly``.
        send_time: local send time (see :func:`next_due`).
        weekday: required for ``weekly``.
        tz: IANA zone name.
        next_due_at: the stored next due instant of the subscription.
        covered_until: ``window_end`` of the last digest built, or ``None`` for the first one.
        now: the current instant (timezone-aware).
        max_window: optional cap on the window length.

    Returns:
        ``None`` when ``now`` is before ``next_due_at``, else the period to build.
    """
    now = _require_utc("now", now)
    next_due_at = _require_utc("next_due_at", next_due_at)
    if now < next_due_at:
        return None

    def after(instant: datetime) -> datetime:
        return next_due(cadence=cadence, send_time=send_time, weekday=weekday, tz=tz, after=instant)

    latest = next_due_at
    missed = 1
    following = after(latest)
    while following <= now:
        latest = following
        missed += 1
        following = after(latest)
    if covered_until is not None:
        start = _require_utc("covered_until", covered_until)
    else:
        start, _ = window_for(
            cadence=cadence, send_time=send_time, weekday=weekday, tz=tz, due=next_due_at
        )
    if max_window is not None and latest - start > max_window:
        start = latest - max_window
    return DuePeriod(
        due=latest,
        period_key=period_key(cadence=cadence, due=latest, tz=tz),
        window_start=start,
        window_end=latest,
        missed=missed,
        next_due=following,
    )
