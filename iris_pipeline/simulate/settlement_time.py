"""GB settlement time: settlement days (Europe/London) and their 46, 48 or 50 half-hour periods, in UTC."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
LONDON = ZoneInfo("Europe/London")
HALF_HOUR = dt.timedelta(minutes=30)
MINUTE = dt.timedelta(minutes=1)


def settlement_day_start(day: dt.date) -> dt.datetime:
    """UTC instant at which settlement day `day` (a Europe/London calendar day) begins."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=LONDON).astimezone(UTC)


def periods_in_day(day: dt.date) -> int:
    """48, or 46 on the spring-forward Sunday, or 50 on the fall-back Sunday."""
    return (settlement_day_start(day + dt.timedelta(days=1)) - settlement_day_start(day)) // HALF_HOUR


@lru_cache(maxsize=8192)
def settlement_period(instant_utc: dt.datetime) -> tuple[dt.date, int]:
    """(settlementDate, settlementPeriod) of an aware instant."""
    if instant_utc.tzinfo is None:
        raise ValueError("settlement_period needs an aware datetime")
    instant = instant_utc.astimezone(UTC)  # aware arithmetic in one zone would be wall-clock arithmetic
    day = instant.astimezone(LONDON).date()
    return day, (instant - settlement_day_start(day)) // HALF_HOUR + 1


def period_start(day: dt.date, period: int) -> dt.datetime:
    """UTC start of a settlement period, counted in UTC from the day's real start."""
    if not 1 <= period <= periods_in_day(day):
        raise ValueError(f"{day} has no settlement period {period}")
    return settlement_day_start(day) + (period - 1) * HALF_HOUR


def floor_time(t: dt.datetime, seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, UTC)
