"""Time and the windows limits are counted in (UTC only)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def minute_key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M")


def month_key(at: datetime | date) -> str:
    return at.strftime("%Y-%m")


def day_key(at: datetime | date) -> str:
    return at.strftime("%Y-%m-%d")


def seconds_to_next_minute(at: datetime) -> int:
    """Whole seconds until the next minute window opens; at least 1."""
    return max(1, 60 - at.second)


def seconds_to_next_month(at: datetime) -> int:
    days = calendar.monthrange(at.year, at.month)[1]
    start_of_month = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = start_of_month + timedelta(days=days)
    return max(1, int((next_month - at).total_seconds()))


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of a `YYYY-MM` month."""
    year, mon = (int(part) for part in month.split("-"))
    return date(year, mon, 1), date(year, mon, calendar.monthrange(year, mon)[1])


def month_span(month: str) -> tuple[datetime, datetime]:
    """The first instant of a `YYYY-MM` month and the first instant after it, in UTC: `[start, end)`."""
    first, last = month_bounds(month)
    start = datetime(first.year, first.month, 1, tzinfo=UTC)
    return start, start + timedelta(days=last.day)


def previous_month(at: datetime) -> str:
    """The `YYYY-MM` of the month before the one `at` is in."""
    return month_key(at.replace(day=1) - timedelta(days=1))


def epoch_seconds(at: datetime) -> int:
    return int(at.timestamp())
