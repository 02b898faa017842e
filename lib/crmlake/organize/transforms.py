"""Organize's pure transforms: bronze frames in, silver frames out (tests feed them a few rows)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crmlake.business_days import business_date
from crmlake.lake import latest_per_key

# Personal fields of a profile: gone from every silver table once the account asks to be erased.
PERSONAL_FIELDS = ("email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band", "referred_by", "company_id")
PROFILE_FIELDS = ("signup_time", *PERSONAL_FIELDS, "marketing_consent", "marketing_consent_time", "account_type")
CONSENT_WITHDRAWING_EVENTS = ("unsubscribed", "complained")


def latest_profiles(profile_changes: DataFrame) -> DataFrame:
    """Return one row per account: its latest change. An ``erase`` as the latest change blanks
    every personal field and sets ``erased``; consent is then false."""
    latest = latest_per_key(profile_changes, ["account_id"], "updated_time", tie_breaker="ingested_at")
    erased = F.col("op") == "erase"
    return latest.select(
        "account_id",
        erased.alias("erased"),
        F.col("updated_time").alias("profile_updated_at"),
        *[F.when(erased, F.lit(None)).otherwise(F.col(c)).alias(c) for c in PROFILE_FIELDS if c != "marketing_consent"],
        F.when(erased, F.lit(False)).otherwise(F.coalesce("marketing_consent", F.lit(False))).alias("profile_marketing_consent"),
    )


def consent_choices(profile_changes: DataFrame, campaign_events: DataFrame) -> DataFrame:
    """Return the members' own marketing-consent choices: account_id, chosen_at, withdraws.

    Takes bronze customers (every change of the accounts, history included) and campaign
    events. A choice is a profile upsert that carries a ``marketing_consent_time`` (its
    ``marketing_consent``; a missing one withdraws), a profile upsert saying no without a
    time (a withdrawal at its ``updated_time``: "false" keeps a member out of every audience),
    or an unsubscribe or complaint (a withdrawal at its ``event_time``). A "yes" without a
    consent time says nothing about when the member chose, so it is no choice: a changed
    address or a stale re-send cannot give consent back.
    """
    # A profile's "no" without a time still says no (contract: false, never in an audience): a
    # withdrawal at the profile's time. Its "yes" without a time tells no choice of the member's.
    says_no = ~F.coalesce("marketing_consent", F.lit(False))
    in_profiles = profile_changes.where((F.col("op") == "upsert") & (F.col("marketing_consent_time").isNotNull() | says_no)).select(
        "account_id",
        F.coalesce("marketing_consent_time", "updated_time").alias("chosen_at"),
        says_no.alias("withdraws"),
    )
    by_events = campaign_events.where(F.col("event").isin(*CONSENT_WITHDRAWING_EVENTS)).select(
        "account_id", F.col("event_time").alias("chosen_at"), F.lit(True).alias("withdraws")
    )
    return in_profiles.unionByName(by_events).where(F.col("account_id").isNotNull() & F.col("chosen_at").isNotNull())


def with_consent_state(profiles: DataFrame, choices: DataFrame) -> DataFrame:
    """Add ``consent_withdrawn_at`` and ``marketing_consent`` to latest profiles.

    Takes :func:`latest_profiles` rows and :func:`consent_choices` rows. The member's latest
    own choice by ``chosen_at`` decides, whether it came in a profile, an unsubscribe or a
    complaint; when a withdrawal and an opt-in carry the same time the withdrawal wins (the
    safe error is not to contact). An account with no timed choice keeps its latest
    profile's consent (``profile_marketing_consent``: its starting state); an erased account
    never consents. ``consent_withdrawn_at`` is the time of the deciding choice when it is a
    withdrawal, else null.
    """
    # max of (chosen_at, withdraws): the latest choice, and on a tie True (a withdrawal) beats False.
    latest = choices.groupBy("account_id").agg(F.max(F.struct("chosen_at", "withdraws")).alias("_choice"))
    joined = profiles.join(latest, "account_id", "left")
    withdrawn = F.col("_choice.withdraws")
    return joined.select(
        *profiles.columns,
        F.when(withdrawn, F.col("_choice.chosen_at")).alias("consent_withdrawn_at"),
        (~F.col("erased") & F.coalesce(~withdrawn, F.col("profile_marketing_consent"))).alias("marketing_consent"),
    )


def sessionize(clicks: DataFrame, gap_minutes: int = 30) -> DataFrame:
    """Split each ``anonymous_id``'s events into sessions (a gap of more than ``gap_minutes`` ends one).

    Events with and without tracking consent never share a session: a cookie's consented
    and refused events are sessionized apart, so a refused event never reaches a person.
    Returns one row per session: session_id (from the visitor and the session's smallest
    event_id), anonymous_id, tracking_consent, account_id (the greatest of the session's
    consented events; set only on consented sessions), session_start, session_end, entry_page
    and exit_page (of its first and last events by event_time, then event_id), events, pages,
    product_views, adds_to_cart, checkouts, converted, device (its first event's), utm_campaign
    (the greatest), and where the visit came from, as its first event says: ``utm_source``
    (trimmed, lower case) and ``referrer_host`` (the referrer's host, lower case, without ``www.``).

    The events are sorted once: every column is a running aggregate over a visitor's events in
    time order (from the visitor's first event to the current one), read on the session's last
    event. A count is its running total there less the running total before the session's first
    event; a greatest value is the running greatest of (session number, value), the least event_id
    the running least of (-session number, event_id).
    """
    clicks = clicks.withColumn("tracking_consent", F.coalesce("tracking_consent", F.lit(False)))
    by_visitor = Window.partitionBy("anonymous_id", "tracking_consent").orderBy("event_time", "event_id")
    so_far = by_visitor.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    counted = {"events": F.lit(1)} | {
        name: F.when(F.col("event_type") == event_type, 1).otherwise(0)
        for name, event_type in (("pages", "page_view"), ("product_views", "product_view"), ("adds_to_cart", "add_to_cart"), ("checkouts", "checkout_start"), ("purchases", "purchase"))
    }
    gap = F.col("event_time").cast("long") - F.lag("event_time").over(by_visitor).cast("long")
    marked = clicks.withColumn("_starts", F.coalesce(gap > gap_minutes * 60, F.lit(True)))
    # The counts' flags are computed here, after the shuffle, rather than shuffled with the events.
    numbered = marked.select(
        "*",
        F.sum(F.col("_starts").cast("int")).over(so_far).alias("_session_no"),
        F.coalesce(F.lead("_starts").over(by_visitor), F.lit(True)).alias("_ends"),
        *[F.sum(one).over(so_far).alias(f"_{name}") for name, one in counted.items()],
    )
    # What a session takes from its first event, kept by every later event of the session: a
    # struct, so that a first event's null (a page, a device, a source) stays the session's.
    first_event = F.struct(
        F.col("event_time").alias("session_start"),
        F.col("page_url").alias("entry_page"),
        "device",
        F.nullif(F.lower(F.trim("utm_source")), F.lit("")).alias("utm_source"),
        F.regexp_replace(F.lower(F.try_parse_url("referrer_url", F.lit("HOST"))), r"^www\.", "").alias("referrer_host"),
        *[(F.col(f"_{name}") - one).alias(f"{name}_before") for name, one in counted.items()],
    )

    def in_session(value: Column) -> Column:
        # The current row's session number is the greatest so far, so the running greatest of
        # (session number, value) is the greatest value of the current session.
        return F.max(F.struct(F.col("_session_no"), value.alias("value"))).over(so_far)["value"]

    last_events = numbered.select(
        "*",
        F.last(F.when(F.col("_starts"), first_event), ignorenulls=True).over(so_far).alias("_first"),
        in_session(F.when(F.col("tracking_consent"), F.col("account_id"))).alias("_account_id"),
        in_session(F.col("utm_campaign")).alias("_utm_campaign"),
        # The least event_id of the current session: the least (-session number, event_id) so far.
        F.min(F.struct(-F.col("_session_no"), F.col("event_id").alias("event_id"))).over(so_far)["event_id"].alias("_least_event_id"),
    ).where(F.col("_ends"))
    count = {name: F.col(f"_{name}") - F.col(f"_first.{name}_before") for name in counted}
    return last_events.select(
        F.sha2(F.concat_ws(":", "anonymous_id", "_least_event_id"), 256).substr(1, 32).alias("session_id"),
        "anonymous_id", "tracking_consent", F.col("_account_id").alias("account_id"), "_first.session_start", F.col("event_time").alias("session_end"),
        "_first.entry_page", F.col("page_url").alias("exit_page"), *[count[name].alias(name) for name in ("events", "pages", "product_views", "adds_to_cart", "checkouts")],
        (count["purchases"] > 0).alias("converted"), "_first.device", F.col("_utm_campaign").alias("utm_campaign"), "_first.utm_source", "_first.referrer_host",
    )


def session_reach(gap_minutes: int) -> Column:
    """Return how far from a click a session it can join may end or start: the gap, and one
    second more (the gap is counted in whole seconds), as an interval column."""
    return F.expr(f"INTERVAL {gap_minutes * 60 + 1} SECONDS")


def session_spans(new_clicks: DataFrame, sessions: DataFrame, gap_minutes: int = 30) -> DataFrame:
    """Return the time spans whose clicks must be sessionized again once ``new_clicks`` arrive.

    Takes the new clicks and the sessions built before them (anonymous_id, tracking_consent,
    session_start, session_end). Returns anonymous_id, tracking_consent, span_start and
    span_end: for each visitor, consent and UTC day of new clicks, from the first to the last
    of them, widened to the whole of every older session within a gap of them (a late click
    can extend such a session or join two). An older session of the visitor and consent
    lies wholly inside a span or wholly outside (one visitor's sessions of one consent never
    overlap), so sessionizing the clicks inside the spans rebuilds whole sessions, and the
    sessions outside stay as they are.
    """
    reach = session_reach(gap_minutes)
    new_spans = new_clicks.withColumn("tracking_consent", F.coalesce("tracking_consent", F.lit(False))).groupBy(
        "anonymous_id", "tracking_consent", F.to_date("event_time").alias("day")
    ).agg(F.min("event_time").alias("first_new"), F.max("event_time").alias("last_new"))
    near = (
        (F.col("n.anonymous_id") == F.col("o.anonymous_id")) & (F.col("n.tracking_consent") == F.col("o.tracking_consent"))
        & (F.col("o.session_end") >= F.col("n.first_new") - reach) & (F.col("o.session_start") <= F.col("n.last_new") + reach)
    )
    return new_spans.alias("n").join(sessions.alias("o"), near, "left").groupBy("n.anonymous_id", "n.tracking_consent", "n.day").agg(
        F.least(F.min("n.first_new"), F.min("o.session_start")).alias("span_start"),
        F.greatest(F.max("n.last_new"), F.max("o.session_end")).alias("span_end"),
    ).drop("day")


def within_spans(rows: DataFrame, spans: DataFrame, start: str, end: str) -> DataFrame:
    """Return the ``rows`` (clicks or sessions: anonymous_id, tracking_consent, and the times
    ``start`` and ``end``) that lie inside one of ``spans`` (see :func:`session_spans`)."""
    inside = (
        (F.col("r.anonymous_id") == F.col("s.anonymous_id")) & (F.coalesce(F.col("r.tracking_consent"), F.lit(False)) == F.col("s.tracking_consent"))
        & (F.col(f"r.{start}") >= F.col("s.span_start")) & (F.col(f"r.{end}") <= F.col("s.span_end"))
    )
    return rows.alias("r").join(spans.alias("s"), inside, "left_semi")


def with_session_date(sessions: DataFrame, timezone: str) -> DataFrame:
    """Add ``session_date``: the business date (in ``timezone``) on which the session started."""
    return sessions.withColumn("session_date", business_date("session_start", timezone))
