"""A simulated retailer as Spark DataFrames: the plan, the calendar and the products its parts share.

Everything is computed in Spark from hashed draws (:mod:`crmlake.generate.draws`), so it
scales to tens of millions of events on a cluster and the same seed always gives the
same records. The world is simulated in three parts:

* :mod:`crmlake.generate.members`: persons with their planted truth, their accounts (who
  is who) and later profile changes;
* :mod:`crmlake.generate.behaviour`: visits, their clicks and orders;
* :mod:`crmlake.generate.touchpoints`: campaign sends and responses, service contacts, and how
  our own contacts move each person (for uplift).

This module holds what they share: the :class:`Plan` (persons, days, seed), the business
calendar (weekends lift visits and orders by 25%; hours follow a day curve peaking in the
evening; every 7th day is a campaign day), the product categories with their list prices,
the days on which each person is a live member, and the person behind an account id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

CATEGORIES = ["books", "electronics", "fashion", "home", "beauty", "sports", "toys", "grocery"]
CATEGORY_PRICE = {"books": 380, "electronics": 4200, "fashion": 1200, "home": 900, "beauty": 650, "sports": 1500, "toys": 700, "grocery": 250}
HOURS = list(range(24))
HOUR_WEIGHTS = [1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2, 2.2, 2.4, 2.6, 3, 2.6, 2.4, 2.4, 2.6, 2.8, 3.2, 3.8, 4.2, 4.0, 3.0, 1.8]
CAMPAIGN_EVERY_DAYS = 7


@dataclass(frozen=True)
class Plan:
    """What to simulate: persons, days ending on ``end``, the seed."""

    customers: int
    days: int
    end: dt.date
    seed: int
    timezone: str = "Asia/Taipei"

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)


def day_date(plan: Plan, day: Column) -> Column:
    """Column: the date of ``day`` (0 = the plan's first day)."""
    return F.date_add(F.lit(plan.start), day.cast("int"))


def local_time(plan: Plan, date: Column, seconds: Column) -> Column:
    """Return the instant ``seconds`` after local midnight of ``date``.

    The generator builds its frames with the session time zone set to ``plan.timezone``
    (see :func:`crmlake.generate.landing.write_landing`), so a date cast to a timestamp is
    local midnight in the business time zone.
    """
    return F.timestamp_seconds(F.unix_timestamp(date.cast("timestamp")) + seconds)


def member_days(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per person and day on which the person is a live member, with the person's latent
    rates and last day (``alive_until``: a lapsing member's rates fade before it,
    :func:`crmlake.generate.members.activity_fade`)."""
    first = F.greatest(F.col("signup_day"), F.lit(0))
    last = F.least(F.col("alive_until"), F.lit(plan.days - 1))
    return people.where(first <= last).select(
        "person_no", "accounts", "second_signup_day", "household", "daily_purchase_rate", "daily_visit_rate", "favourite_category", "alive_until",
        F.explode(F.sequence(first, last)).alias("day"),
    )


def list_price(category: Column) -> Column:
    """Column: the list price of ``category`` (500 for a category without one)."""
    expr = None
    for name, price in CATEGORY_PRICE.items():
        expr = F.when(category == name, F.lit(price)) if expr is None else expr.when(category == name, F.lit(price))
    return expr.otherwise(F.lit(500))


def person_no_of_account(account: Column) -> Column:
    """Column: the simulated person holding ``account`` (ids are "A" and person_no * 2 + k, k = 0 or 1)."""
    return F.floor(account.substr(2, 20).cast("long") / 2)
