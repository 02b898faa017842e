"""The business's calendar, shared by every stage: which business date an instant falls on and
when a business date ends, in ``business.timezone`` (the sessions' clock is UTC)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pyspark.sql import Column
from pyspark.sql import functions as F


def business_date(instant: Column | str, timezone: str) -> Column:
    """Column: the business date of ``instant`` (a UTC timestamp column or its name) in ``timezone``."""
    return F.to_date(F.from_utc_timestamp(instant, timezone))


def end_of_day(day: dt.date, timezone: str) -> dt.datetime:
    """Return the instant the business day ``day`` ends (next local midnight in ``timezone``)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=ZoneInfo(timezone))
