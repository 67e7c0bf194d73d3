"""Budget periods: which day or month it is in a time zone, and when it ends."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def current(period: str, tz: ZoneInfo, now_s: float) -> tuple[str, float, float]:
    """(the period's key, its start, its end) for the instant ``now_s`` (Unix times).

    Keys are local calendar dates (``2026-11-24``) or months (``2026-11``); the end is the
    next local midnight or first of the month, so a period is 23 or 25 hours long on the
    days clocks change.
    """
    local = datetime.fromtimestamp(now_s, tz)
    if period == "day":
        start = local.date()
        next_start = start + timedelta(days=1)
        key = start.isoformat()
    else:
        start = date(local.year, local.month, 1)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        next_start = date(year, month, 1)
        key = f"{local.year:04d}-{local.month:02d}"
    return (key, datetime.combine(start, time(), tz).timestamp(),
            datetime.combine(next_start, time(), tz).timestamp())
