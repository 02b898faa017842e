"""Analyze's pure transforms: per-customer behaviour as of a date, RFM scores, labels.

Behaviour is what customers did, never what they declared: declared demographics go
stale, purchases and visits do not.

Point in time: a model trained on features "as of the cutoff" must see the lake as it
stood at the end of that day, or it learns from the future. ``silver.order_lines`` keeps
only each line's latest status (a line returned after the cutoff is already "returned"
there), so :func:`order_lines_as_of` rebuilds the lines from ``bronze.orders``, which
keeps every status change, taking for each line its latest version updated by the end of
the day; :func:`members_as_of` takes the profiles valid then from ``silver.customer_history``
(SCD type 2); :func:`sessions_known_as_of` gives a person the anonymous visits of the
cookies they had logged in on by then, not of those the identity map gave them since.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.ranking import with_quantile_buckets
from crmlake.business_days import business_date, end_of_day
from crmlake.config_schema import Business
from crmlake.orders import latest_order_lines
from crmlake.people import ACCOUNT, with_person_id

FEATURE_COLUMNS = (
    "recency_days", "frequency", "monetary", "tenure_days", "sessions_30d", "product_views_30d", "adds_to_cart_30d", "active_days_30d",
)
# The visit features (the ``_30d`` columns) count the sessions of the 30 days up to and including the date.
SESSION_DAYS = 30
# How a person answers our campaign emails (:func:`with_email_engagement`); propensity learns from them too.
ENGAGEMENT_COLUMNS = ("emails_delivered_30d", "email_open_rate_30d", "email_click_rate_30d")
PROPENSITY_FEATURES = FEATURE_COLUMNS + ENGAGEMENT_COLUMNS


def order_lines_as_of(orders: DataFrame, as_of: dt.date, business: Business) -> DataFrame:
    """Return the order lines as they stood at the end of business day ``as_of`` (in ``business.timezone``).

    Takes bronze.orders (every version of every line, ``updated_time`` when its status
    changed). Each line keeps its latest version updated by then, so a line completed
    before and returned after ``as_of`` is still completed; columns as silver.order_lines
    (money in ``business.currency``).
    """
    return latest_order_lines(orders.where(F.col("updated_time") < F.lit(end_of_day(as_of, business.timezone))), business)


def members_as_of(history: DataFrame, identity_map: DataFrame, as_of: dt.date, timezone: str) -> DataFrame:
    """Return (person_id, signup_time): the persons with a member profile at the end of ``as_of``.

    Takes silver.customer_history (account_id, op, valid_from, valid_to, signup_time) and
    silver.identity_map. A person counts when one of their accounts had an ``upsert``
    version valid then and had signed up; signup_time is their earliest account's.
    """
    end = F.lit(end_of_day(as_of, timezone))
    valid = history.where(
        (F.col("op") == "upsert") & (F.col("valid_from") < end) & (F.col("valid_to").isNull() | (F.col("valid_to") >= end)) & (F.col("signup_time") < end)
    )
    owned = with_person_id(valid.select("account_id", "signup_time"), identity_map, (ACCOUNT, F.col("account_id")))
    return owned.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(F.min("signup_time").alias("signup_time"))


def in_session_window(session_date: Column, as_of: dt.date) -> Column:
    """Column: True for a ``session_date`` the visit features of ``as_of`` count (the
    SESSION_DAYS days up to and including it).

    Filter silver.sessions with it as it is read: the table is partitioned by session_date,
    so only those days' files are opened, not the whole clickstream history.
    """
    return session_date.between(F.lit(as_of - dt.timedelta(days=SESSION_DAYS - 1)), F.lit(as_of))


def cookie_first_logins(sessions: DataFrame) -> DataFrame:
    """Return ``(anonymous_id, first_login_date)``: each cookie's first session date with an
    account logged in, from silver sessions (anonymous_id, account_id, session_date; a session
    holds an account only with tracking consent): when its visits became a person's."""
    return sessions.where(F.col("account_id").isNotNull()).groupBy("anonymous_id").agg(F.min("session_date").alias("first_login_date"))


def sessions_known_as_of(sessions: DataFrame, first_logins: DataFrame, as_of: dt.date) -> DataFrame:
    """Return ``sessions`` (silver sessions) with ``anonymous_id`` blank where the cookie had not
    been logged into by the end of ``as_of`` (``first_logins``: :func:`cookie_first_logins`).

    The identity map is today's: it gives a cookie to the person who logged in on it, whenever
    that was. Features as of a past date (a cutoff, a backfill's date) must not give a person
    the anonymous visits of a cookie they first logged in on later: that login is the future,
    and logging in goes with buying. A logged-in session keeps its account, so its person.
    """
    known = first_logins.where(F.col("first_login_date") <= F.lit(as_of)).select("anonymous_id", F.lit(True).alias("_known"))
    return sessions.join(known, "anonymous_id", "left").withColumn("anonymous_id", F.when(F.col("_known"), F.col("anonymous_id"))).drop("_known")


def _in_hashed_share(person_id: Column, salt: str, share: float) -> Column:
    """Column: True for about ``share`` of persons, the same persons on every run (a hash of the
    person and ``salt``, in steps of 1/10,000)."""
    return F.pmod(F.xxhash64(person_id, F.lit(salt)), F.lit(10_000)) < F.lit(int(round(share * 10_000)))


def in_holdout(person_id: Column, share: float) -> Column:
    """Column: True for the ``share`` of persons held out of every model's training.

    A hash of the person, not a random draw: the same persons are held out on every run, so
    a champion trained on an earlier day never saw the persons it is judged on.
    """
    return _in_hashed_share(person_id, "holdout", share)


def training_sample(train: DataFrame, persons: int, max_persons: int) -> tuple[DataFrame, float]:
    """Return the rows of ``train`` (rows carrying ``person_id``, of ``persons`` persons) of
    about ``max_persons`` of them, and the share of persons kept (1.0: all, ``train`` itself).

    A model's fit grows with the rows it sees while its quality levels off long before a
    million persons: training is bounded, scoring still covers every person. The persons
    are chosen by a hash of the person (another than the holdout's): the same on every run.
    """
    share = min(1.0, max_persons / persons) if persons else 1.0
    if share >= 1.0:
        return train, 1.0
    return train.where(_in_hashed_share(F.col("person_id"), "training", share)), share


def customer_behaviour(people: DataFrame, order_lines: DataFrame, sessions: DataFrame, as_of: dt.date, timezone: str) -> DataFrame:
    """Return one row per person with behaviour up to and including ``as_of``.

    Takes members (person_id, signup_time: :func:`members_as_of`, or silver.customer_360),
    and order lines and sessions carrying ``person_id``. Columns: person_id, the
    FEATURE_COLUMNS, last_purchase_date. Persons who signed up after ``as_of`` are left out.
    Only completed order lines count as purchases; recency for a customer who never
    bought is the tenure plus one day.
    """
    as_of_lit = F.lit(as_of)
    purchases = (
        order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & (F.col("order_date") <= as_of_lit))
        .groupBy("person_id")
        .agg(
            F.countDistinct("order_id").alias("frequency"),
            F.sum("line_amount").cast("double").alias("monetary"),
            F.max("order_date").alias("last_purchase_date"),
        )
    )
    recent = (
        sessions.where(F.col("person_id").isNotNull() & in_session_window(F.col("session_date"), as_of))
        .groupBy("person_id")
        .agg(
            F.count(F.lit(1)).alias("sessions_30d"),
            F.sum("product_views").alias("product_views_30d"),
            F.sum("adds_to_cart").alias("adds_to_cart_30d"),
            F.countDistinct("session_date").alias("active_days_30d"),
        )
    )
    members = people.where(business_date("signup_time", timezone) <= as_of_lit).select(
        "person_id", F.datediff(as_of_lit, business_date("signup_time", timezone)).alias("tenure_days")
    )
    joined = members.join(purchases, "person_id", "left").join(recent, "person_id", "left")
    return joined.select(
        "person_id",
        F.coalesce(F.datediff(as_of_lit, "last_purchase_date"), F.col("tenure_days") + 1).alias("recency_days"),
        F.coalesce("frequency", F.lit(0)).cast("long").alias("frequency"),
        F.coalesce("monetary", F.lit(0.0)).alias("monetary"),
        "tenure_days",
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in ("sessions_30d", "product_views_30d", "adds_to_cart_30d", "active_days_30d")],
        "last_purchase_date",
    )


def with_email_engagement(behaviour: DataFrame, campaign_events: DataFrame, as_of: dt.date, timezone: str) -> DataFrame:
    """Add ENGAGEMENT_COLUMNS to one row per person: how they answered the campaign emails sent
    to them in the SESSION_DAYS up to and including ``as_of``, as known at its end.

    Takes persons (person_id, ...) and bronze.campaign_events carrying ``person_id``. A campaign
    counts for a person once, on the date of their first event of it (its send, as in
    :mod:`crmlake.analyze.engagement`), when one of their accounts had it delivered;
    ``emails_delivered_30d`` counts those campaigns, ``email_open_rate_30d`` and
    ``email_click_rate_30d`` are the shares of them the person opened and clicked by the end of
    ``as_of`` (0 when none was delivered). Point in time: events after ``as_of`` are unknown.
    """
    def had(event: str) -> Column:
        return F.max((F.col("event") == event).cast("int"))

    per_campaign = (
        campaign_events.where(F.col("person_id").isNotNull() & (F.col("event_time") < F.lit(end_of_day(as_of, timezone))))
        .groupBy("person_id", "campaign_id")
        .agg(business_date(F.min("event_time"), timezone).alias("send_date"), had("delivered").alias("delivered"),
             had("opened").alias("opened"), had("clicked").alias("clicked"))
        .where(in_session_window(F.col("send_date"), as_of) & (F.col("delivered") == 1))
    )
    per_person = per_campaign.groupBy("person_id").agg(
        F.count(F.lit(1)).alias("emails_delivered_30d"), F.avg("opened").alias("email_open_rate_30d"), F.avg("clicked").alias("email_click_rate_30d"),
    )
    return behaviour.join(per_person, "person_id", "left").select(
        *behaviour.columns,
        F.coalesce("emails_delivered_30d", F.lit(0)).cast("long").alias("emails_delivered_30d"),
        *[F.coalesce(F.round(c, 4), F.lit(0.0)).alias(c) for c in ("email_open_rate_30d", "email_click_rate_30d")],
    )


def with_rfm_scores(behaviour: DataFrame, quantiles: int, accuracy: int) -> DataFrame:
    """Add r_score, f_score, m_score (1 = worst .. ``quantiles`` = best) and rfm_cell ("555").

    Takes one row per person (or company) with recency_days, frequency and monetary. Scores
    rank buyers only (frequency > 0); one who never bought gets 0 for all three. A score is
    the buyer's quantile bucket (:func:`crmlake.analyze.ranking.with_quantile_buckets`,
    percentile_approx ``accuracy``): 1 + floor(quantiles x the share of buyers strictly
    worse), recency worse when longer. Tied buyers share a score (the lowest their ranks
    reach): with many one-order buyers, all of them get f_score 1 and the scores above
    are fewer.
    """
    buyers = F.col("frequency") > 0
    scored = with_quantile_buckets(
        behaviour,
        {
            "r_score": F.when(buyers, -F.col("recency_days")),
            "f_score": F.when(buyers, F.col("frequency")),
            "m_score": F.when(buyers, F.col("monetary")),
        },
        quantiles,
        accuracy,
    )
    for name in ("r_score", "f_score", "m_score"):
        scored = scored.withColumn(name, F.coalesce(F.col(name), F.lit(0)))
    return scored.withColumn("rfm_cell", F.concat_ws("", "r_score", "f_score", "m_score"))


def with_purchase_label(behaviour: DataFrame, order_lines: DataFrame, cutoff: dt.date, label_days: int) -> DataFrame:
    """Add ``label`` (1.0 when the account completed an order in the ``label_days`` after ``cutoff``)."""
    horizon = cutoff + dt.timedelta(days=label_days)
    buyers = (
        order_lines.where(
            (F.col("status") == "completed") & (F.col("order_date") > F.lit(cutoff)) & (F.col("order_date") <= F.lit(horizon))
        )
        .select("person_id")
        .distinct()
        .withColumn("label", F.lit(1.0))
    )
    return behaviour.join(buyers, "person_id", "left").withColumn("label", F.coalesce("label", F.lit(0.0)))


def with_deciles(scored: DataFrame, score_col: str, decile_col: str, accuracy: int) -> DataFrame:
    """Add ``decile_col``: 10 for the highest tenth of ``score_col`` .. 1 for the lowest.

    The decile is 1 + floor(10 x the share of rows with a strictly lower score), from
    percentile_approx cut points of ``accuracy``
    (:func:`crmlake.analyze.ranking.with_quantile_buckets`): tied scores share a decile, the
    lowest their ranks reach; a null score gets a null decile.
    """
    return with_quantile_buckets(scored, {decile_col: F.col(score_col)}, 10, accuracy)
