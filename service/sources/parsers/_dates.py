"""Lenient date parsing for scraped pages and JSON APIs."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime

_ORDINAL = re.compile(r"(\d{1,2})(?:st|nd|rd|th)\b", re.IGNORECASE)
_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y%m%dT%H%M%SZ",
    "%Y%m%d%H%M%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%d %B %Y",
    "%d %b %Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%d %B, %Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%A, %B %d, %Y",
    "%A, %d %B %Y",
    "%d %B %Y %H:%M",
    "%B %d, %Y %H:%M",
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_date_text(text: str, date_format: str | None = None) -> datetime | None:
    """Parse a human or machine date; naive results are taken as UTC.

    Args:
        text: the date as shown on the page or in the API.
        date_format: a ``strptime`` format to try first (source option ``date_format``).

    Returns:
        A timezone-aware datetime, or ``None`` when nothing fits.
    """
    cleaned = " ".join(_ORDINAL.sub(r"\1", text).split()).strip(" |·-")
    if not cleaned:
        return None
    if date_format:
        try:
            return _utc(datetime.strptime(cleaned, date_format))  # noqa: DTZ007 - _utc adds UTC
        except ValueError:
            pass
    try:
        return _utc(datetime.fromisoformat(cleaned.replace("Z", "+00:00")))
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return _utc(datetime.strptime(cleaned, fmt))  # noqa: DTZ007 - _utc adds UTC
        except ValueError:
            continue
    try:
        return _utc(email.utils.parsedate_to_datetime(cleaned))
    except (TypeError, ValueError, IndexError):
        return None
