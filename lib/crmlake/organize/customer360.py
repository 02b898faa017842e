"""Per-person views: profile history (SCD type 2), the funnel, and the customer 360.

Self-declared fields are kept with their age and flagged when stale or implausible;
behaviour (what people bought, when and on which device they visit) is inferred beside
them, because declared demographics go stale and lie. Counts are of persons, not
accounts, and activity (30 and 90 days) is what makes a member count.

The behaviour comes from a person's whole history; an incremental run recomputes it only
for the persons :func:`persons_to_refresh` gives, from the rows holding their identifiers
(:func:`behaviour_from_history`), and :func:`customer_360` computes the rest for everyone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crmlake.business_days import business_date
from crmlake.config_schema import Customer360
from crmlake.lake import latest_per_key
from crmlake.lake.frames import maybe_broadcast
from crmlake.organize.transforms import PROFILE_FIELDS
from crmlake.people import (
    ACCOUNT, COOKIE, EMAIL, normalised_email, referrals, rows_holding, sha256_hex, with_order_person_id, with_person_id, with_session_person_id,
)

def customer_history(profile_changes: DataFrame) -> DataFrame:
    """Return every account's profile versions as SCD type 2 rows.

    Takes bronze customers (one row per change). Columns: account_id, op, valid_from,
    valid_to (null while current), is_current and the profile fields. Two deliveries of one
    change (same account and ``updated_time``) are one version.
    """
    versions = latest_per_key(profile_changes, ["account_id", "updated_time"], "ingested_at")
    by_account = Window.partitionBy("account_id").orderBy("updated_time")
    return versions.select(
        "account_id",
        "op",
        F.col("updated_time").alias("valid_from"),
        F.lead("updated_time").over(by_account).alias("valid_to"),
        F.lead("updated_time").over(by_account).isNull().alias("is_current"),
        *PROFILE_FIELDS,
    )


def funnel_by_day(sessions: DataFrame) -> DataFrame:
    """Return the session funnel per session_date, device and utm_campaign.

    Takes silver sessions. Columns: the three keys, then the sessions reaching each step
    (sessions, viewed_product, added_to_cart, started_checkout, purchased) and
    ``conversion_rate`` (purchased / sessions).
    """
    reached = lambda column: F.sum(F.when(F.col(column) > 0, 1).otherwise(0))  # noqa: E731
    return (
        sessions.groupBy("session_date", "device", F.coalesce("utm_campaign", F.lit("(none)")).alias("utm_campaign"))
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            reached("product_views").alias("viewed_product"),
            reached("adds_to_cart").alias("added_to_cart"),
            reached("checkouts").alias("started_checkout"),
            F.sum(F.col("converted").cast("int")).alias("purchased"),
        )
        .withColumn("conversion_rate", F.round(F.col("purchased") / F.col("sessions"), 4))
    )


def _favourite(df: DataFrame, value: str, weight) -> DataFrame:
    """Per person, the ``value`` with the greatest total ``weight`` (ties: the smaller value)."""
    totals = df.where(F.col(value).isNotNull()).groupBy("person_id", value).agg(F.sum(weight).alias("_weight"))
    best = Window.partitionBy("person_id").orderBy(F.col("_weight").desc(), value)
    return totals.withColumn("_rank", F.row_number().over(best)).where("_rank = 1").select("person_id", value)


def _declared(accounts: DataFrame, run_date: dt.date, rules: Customer360) -> DataFrame:
    """Per person: the primary account (latest profile change among live accounts), its declared
    attributes with their age and stale flags, and person-level consent."""
    live = accounts.where(~F.col("erased"))
    primary = Window.partitionBy("person_id").orderBy(F.col("profile_updated_at").desc(), "account_id")
    age = F.lit(run_date.year) - F.col("birth_year")
    declared = live.withColumn("_rank", F.row_number().over(primary)).where("_rank = 1").select(
        "person_id",
        F.col("account_id").alias("primary_account_id"),
        "email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band",
        F.col("profile_updated_at").alias("declared_at"),
        F.datediff(F.lit(run_date), F.to_date("profile_updated_at")).alias("declared_age_days"),
        ((F.col("occupation") == "student") & (age > rules.student_max_age)).alias("stale_occupation"),
        ((age < rules.min_plausible_age) | (age > rules.max_plausible_age)).alias("implausible_birth_year"),
        (F.datediff(F.lit(run_date), F.to_date("profile_updated_at")) > rules.stale_profile_days).alias("stale_profile"),
    )
    # Everyone must agree: one account of a person saying no (or withdrawing) is a no.
    consent = live.groupBy("person_id").agg(
        F.sort_array(F.collect_list("account_id")).alias("account_ids"),
        F.min("signup_time").alias("signup_time"),
        F.bool_and(F.coalesce("marketing_consent", F.lit(False))).alias("marketing_consent"),
        F.max("consent_withdrawn_at").alias("consent_withdrawn_at"),
    )
    flags = ("stale_occupation", "implausible_birth_year", "stale_profile")
    return declared.join(consent, "person_id").withColumn(
        "declared_stale", F.greatest(*[F.coalesce(F.col(f), F.lit(False)) for f in flags])
    )


def identifiers_touched(new_orders: DataFrame, new_clicks: DataFrame, new_interactions: DataFrame) -> DataFrame:
    """Return ``(identifier_type, identifier)``, once each: the identifiers through which a run's
    new bronze rows can change a person's behaviour.

    Takes the run's new bronze orders, clickstream and interactions. They are the account and
    the guest email's hash of order rows (a status change repeats the line's account and
    email), the cookie and account of clicks with tracking consent (only a consented session
    has a person, and the sessions a click rebuilds or removes are its cookie's and consent's),
    and the account of service contacts.
    """
    consented = new_clicks.where(F.col("tracking_consent"))
    pairs = [
        (new_orders, ACCOUNT, F.col("account_id")),
        (new_orders, EMAIL, sha256_hex(normalised_email(F.col("guest_email")))),
        (consented, COOKIE, F.col("anonymous_id")),
        (consented, ACCOUNT, F.col("account_id")),
        (new_interactions, ACCOUNT, F.col("account_id")),
    ]
    identifiers = [rows.select(F.lit(kind).alias("identifier_type"), column.alias("identifier")) for rows, kind, column in pairs]
    return reduce(DataFrame.unionByName, identifiers).where(F.col("identifier").isNotNull()).distinct()


def persons_to_refresh(
    identity_map: DataFrame, touched: DataFrame, live_persons: DataFrame, persons_before: DataFrame, previous_map: DataFrame | None = None
) -> DataFrame:
    """Return ``person_id``, once each: the persons whose behaviour columns a run may have
    changed, which an incremental run recomputes from their history (every other person's are
    kept from the customer 360 before the run).

    Takes the identity map after the run, ``touched`` (:func:`identifiers_touched`), the person
    ids holding a live account (``live_persons``) and those with a customer 360 row before the
    run (``persons_before``), and the identity map before the run (None when the run did not
    update it). A person is refreshed when it holds a touched identifier, when it has no row
    yet (new, or removed by an erasure), or when the map changed under it: both person ids of
    an identifier that moved, appeared or left. A person's behaviour follows only its
    identifiers and their rows, so every other person's is unchanged.
    """
    reached = touched.join(identity_map, ["identifier_type", "identifier"]).select("person_id")
    refreshed = reached.unionByName(live_persons.select("person_id").join(persons_before.select("person_id"), "person_id", "left_anti"))
    if previous_map is not None:
        before = previous_map.select("identifier_type", "identifier", F.col("person_id").alias("_before"))
        moved = identity_map.join(before, ["identifier_type", "identifier"], "full").where(~F.col("person_id").eqNullSafe(F.col("_before")))
        refreshed = refreshed.unionByName(moved.select("person_id")).unionByName(moved.select(F.col("_before").alias("person_id")))
    return refreshed.where(F.col("person_id").isNotNull()).distinct()


# The columns of silver.customer_360 computed from a person's history (order lines, sessions,
# service contacts): an incremental run recomputes them only for the persons it reached.
BEHAVIOUR = (
    "preferred_category", "preferred_device", "active_hour", "median_unit_price", "first_purchase_at", "last_purchase_at",
    "last_visit_at", "orders", "revenue", "returned_lines", "returned_amount", "sessions",
    "service_contacts", "open_complaints", "last_complaint_at", "mean_satisfaction",
)


def person_behaviour(order_lines: DataFrame, sessions: DataFrame, interactions: DataFrame, timezone: str) -> DataFrame:
    """Return one row per person with any order line, session or service contact: person_id and
    the :data:`BEHAVIOUR` columns (null where the person has no such history).

    Takes silver order lines and sessions and bronze interactions (latest version each),
    carrying ``person_id``; rows without one are ignored. ``active_hour`` is the favourite
    hour of session starts in ``timezone``; favourites break ties by the smaller value.
    """
    completed = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull())
    orders = order_lines.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.countDistinct(F.when(F.col("status") == "completed", F.col("order_id"))).alias("orders"),
        F.sum(F.when(F.col("status") == "completed", F.col("line_amount")).otherwise(0)).cast("decimal(18,2)").alias("revenue"),
        F.sum(F.when(F.col("status") == "returned", 1).otherwise(0)).alias("returned_lines"),
        F.sum(F.when(F.col("status") == "returned", F.col("line_amount")).otherwise(0)).cast("decimal(18,2)").alias("returned_amount"),
        F.min(F.when(F.col("status") == "completed", F.col("order_time"))).alias("first_purchase_at"),
        F.max(F.when(F.col("status") == "completed", F.col("order_time"))).alias("last_purchase_at"),
        F.percentile_approx(F.when(F.col("status") == "completed", F.col("unit_price").cast("double")), 0.5).alias("median_unit_price"),
    )
    # One pass over the sessions: the favourite device and hour are the most frequent (ties: the smaller value).
    visits = sessions.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.max("session_end").alias("last_visit_at"),
        F.count(F.lit(1)).alias("sessions"),
        F.mode("device", deterministic=True).alias("preferred_device"),
        F.mode(F.hour(F.from_utc_timestamp("session_start", timezone)), deterministic=True).alias("active_hour"),
    )
    service = interactions.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.count(F.lit(1)).alias("service_contacts"),
        F.sum(F.when((F.col("type") == "complaint") & F.col("closed_time").isNull(), 1).otherwise(0)).alias("open_complaints"),
        F.max(F.when(F.col("type") == "complaint", F.col("opened_time"))).alias("last_complaint_at"),
        F.round(F.avg("satisfaction"), 2).alias("mean_satisfaction"),
    )
    parts = [orders, visits, _favourite(completed, "category", F.col("line_amount")).withColumnRenamed("category", "preferred_category"), service]
    return reduce(lambda joined, part: joined.join(part, "person_id", "full"), parts).select("person_id", *BEHAVIOUR)


@dataclass(frozen=True)
class Refresh:
    """What an incremental run recomputes: the customer 360 before it (``before``), the persons
    to recompute (``persons``: :func:`persons_to_refresh`), their identifiers (``identifiers``:
    their rows of the identity map) and whether those are few enough to send to every task."""

    before: DataFrame
    persons: DataFrame
    identifiers: DataFrame
    broadcast: bool


def behaviour_from_history(
    order_lines: DataFrame, sessions: DataFrame, interactions: DataFrame, identity_map: DataFrame, timezone: str, refresh: Refresh | None = None
) -> DataFrame:
    """Return the behaviour of every person (:func:`person_behaviour`).

    Takes silver order lines and sessions, the latest interactions and the identity map that
    gives their rows a person. With no ``refresh`` it is computed from the whole history; with
    one, only for ``refresh.persons``, from the rows holding one of their identifiers (read
    through a broadcast of them when ``refresh.broadcast``: no shuffle of the rest of the
    history), and every other person of ``refresh.before`` keeps the behaviour it had.
    """
    if refresh is not None:
        held = refresh.identifiers
        order_lines = rows_holding(
            order_lines, held, (ACCOUNT, F.col("account_id")), (EMAIL, sha256_hex(normalised_email(F.col("guest_email")))), broadcast=refresh.broadcast
        )
        sessions = rows_holding(sessions, held, (ACCOUNT, F.col("account_id")), (COOKIE, F.col("anonymous_id")), broadcast=refresh.broadcast)
        interactions = rows_holding(interactions, held, (ACCOUNT, F.col("account_id")), broadcast=refresh.broadcast)
    behaviour = person_behaviour(
        with_order_person_id(order_lines, identity_map),
        with_session_person_id(sessions, identity_map),
        with_person_id(interactions, identity_map, (ACCOUNT, F.col("account_id"))),
        timezone,
    )
    if refresh is None:
        return behaviour
    persons = maybe_broadcast(refresh.persons.select("person_id"), refresh.broadcast)
    kept = refresh.before.join(persons, "person_id", "left_anti").select("person_id", *BEHAVIOUR)
    return behaviour.join(persons, "person_id", "left_semi").unionByName(kept)


def customer_360(accounts: DataFrame, behaviour: DataFrame, run_date: dt.date, timezone: str, rules: Customer360) -> DataFrame:
    """Return one row per person holding at least one live (not erased) account.

    Takes silver customers carrying ``person_id`` and the persons' behaviour
    (:func:`person_behaviour`, or rows of an earlier customer 360 for persons whose history did
    not change: the :data:`BEHAVIOUR` columns). Columns: identity (person_id, primary
    account, account_ids, accounts), declared attributes with ``declared_age_days`` and the
    stale flags, inferred attributes (preferred_category, preferred_device, active_hour,
    median_unit_price, price_band), activity (last purchase and visit, active_30d,
    active_90d), consent, orders, revenue, returns, service contacts and referrals. Everything
    but the behaviour (declared attributes, consent, referrals, the bands and flags that
    depend on ``run_date``, ``timezone`` or ``rules``) is computed here for every person.
    """
    declared = _declared(accounts, run_date, rules)
    referred = referrals(accounts, behaviour.where("orders > 0").select("person_id")).groupBy(F.col("referrer_person_id").alias("person_id")).agg(
        F.count(F.lit(1)).alias("members_referred"), F.count(F.when(F.col("bought"), 1)).alias("referred_buyers")
    )
    last_active = business_date(F.greatest("last_purchase_at", "last_visit_at"), timezone)
    price = F.col("median_unit_price")
    joined = declared.join(behaviour, "person_id", "left").join(referred, "person_id", "left")
    zero = lambda c: F.coalesce(F.col(c), F.lit(0)).alias(c)  # noqa: E731
    return joined.select(
        "person_id", "primary_account_id", "account_ids", F.size("account_ids").alias("accounts"), "signup_time",
        "email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band",
        "declared_at", "declared_age_days", "stale_occupation", "implausible_birth_year", "stale_profile", "declared_stale",
        "preferred_category", "preferred_device", "active_hour", "median_unit_price",
        F.when(price < rules.price_band_low_below, "low").when(price >= rules.price_band_high_from, "high")
        .when(price.isNotNull(), "mid").alias("price_band"),
        "first_purchase_at", "last_purchase_at", "last_visit_at",
        F.coalesce(F.datediff(F.lit(run_date), last_active) < 30, F.lit(False)).alias("active_30d"),
        F.coalesce(F.datediff(F.lit(run_date), last_active) < 90, F.lit(False)).alias("active_90d"),
        "marketing_consent", "consent_withdrawn_at",
        zero("orders"), F.coalesce("revenue", F.lit(0).cast("decimal(18,2)")).alias("revenue"), zero("returned_lines"),
        F.coalesce("returned_amount", F.lit(0).cast("decimal(18,2)")).alias("returned_amount"), zero("sessions"),
        zero("service_contacts"), zero("open_complaints"), "last_complaint_at", "mean_satisfaction",
        zero("members_referred"), zero("referred_buyers"),
    )
