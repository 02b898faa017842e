"""The monthly management report's sections (:mod:`crmlake.analyze.management`): the
:class:`Section` shape and one builder per question, ``(read, conf, run_date) -> Section``.

Each builder reads gold tables through ``read`` (a table's name -> its rows), groups them in
Spark, and collects only small aggregates (one row per channel, campaign, tier, source, cohort
or audience) and, for a section that lists persons to act on, a bounded list of them. Each
quotes its figures' definitions from the ``DEFINITIONS`` of the module that computes them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake import charts
from crmlake.analyze import acquisition, engagement, profit, retention, service
from crmlake.analyze.writers import PARETO
from crmlake.config import Conf
from crmlake.config_analyze import Service
from crmlake.contacts import CAMPAIGN_RESULT_DEFINITIONS, CAMPAIGN_RESULTS
from crmlake.lake.errors import TableNotFoundError

@dataclass(frozen=True)
class Section:
    """One question of the monthly report: ``key`` names its files and its anchor on the page;
    ``definition`` says what every figure means (quoted from the analysing module);
    ``headline`` is the answer in one sentence; ``header`` and ``rows`` are its table (a
    bounded number of rows, as in its CSV); ``chart`` is a PNG (:func:`crmlake.charts.png`);
    ``persons`` (optional) is the list of persons to act on, its columns ``persons_header``,
    written as its own CSV."""

    key: str
    title: str
    definition: str
    headline: str
    header: tuple[str, ...]
    rows: tuple[tuple, ...]
    chart: bytes
    persons: tuple[tuple, ...] | None = None
    persons_header: tuple[str, ...] = ()


Read = Callable[[str], DataFrame]   # a gold table's name -> its rows (Lake.read)

def label(column: str) -> str:
    """Return a column's heading: ``past_target_share`` -> ``Past target share``."""
    return column.replace("_", " ").capitalize()


def month_to_date(date_column: str, run_date: dt.date) -> Column:
    """Column: ``date_column`` falls between the first day of ``run_date``'s month and ``run_date``."""
    return F.col(date_column).between(F.lit(run_date.replace(day=1)), F.lit(run_date))


def _closed_weighted(column: str, digits: int) -> Column:
    # A daily figure of the contacts closed that date, over several dates: weighted by those contacts.
    weights = F.when(F.col(column).isNotNull(), F.col("closed"))
    return F.round(F.sum(F.col(column) * F.col("closed")) / F.sum(weights), digits).alias(column)


def service_by_channel(kpis: DataFrame, run_date: dt.date, rules: Service) -> DataFrame:
    """Return one row per channel of gold.service_kpis over ``run_date``'s month to date:
    channel, opened, closed (summed over the dates), backlog (at the end of ``run_date``),
    median_hours_to_close (the daily medians weighted by the contacts closed), past_target_share
    (of the contacts closed), target_hours (``rules``: ``analyze.service``);
    the slowest channel first."""
    month = kpis.where(month_to_date("service_date", run_date))
    return month.groupBy("channel").agg(
        F.sum("opened").cast("bigint").alias("opened"), F.sum("closed").cast("bigint").alias("closed"),
        F.sum(F.when(F.col("service_date") == F.lit(run_date), F.col("backlog")).otherwise(0)).cast("bigint").alias("backlog"),
        _closed_weighted("median_hours_to_close", 2), _closed_weighted("past_target_share", 4),
    ).withColumn("target_hours", service.target_hours(F.col("channel"), rules).cast("double")).orderBy(
        F.desc_nulls_last("median_hours_to_close"), "channel")


def service_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the service desk's section for ``run_date``'s month to date: per channel, the
    contacts opened and closed, the backlog, the hours to close and the share past target
    (:func:`service_by_channel`), the count of high-value repeat complainers listed on
    ``run_date`` and their list (gold.repeat_complainers)."""
    d = service.DEFINITIONS
    # Safe to collect: one row per channel.
    channels = service_by_channel(read(service.SERVICE_KPIS), run_date, conf.analyze.service).collect()
    complainers = read(service.REPEAT_COMPLAINERS).where(F.col("list_date") == F.lit(run_date)).select(
        "person_id", "value_tier", "complaints", "open_complaints", "last_complaint_at",
        F.array_join("complaint_channels", " ").alias("complaint_channels"), "mean_satisfaction", "list_date",
    ).orderBy(F.desc("open_complaints"), F.desc("complaints"), "person_id")
    # Safe to collect: a call list (high-value persons who complained repeatedly), as small as an audience file.
    listed = [tuple(r) for r in complainers.collect()]
    closed = sum(r["closed"] for r in channels)
    past = sum(r["past_target_share"] * r["closed"] for r in channels if r["past_target_share"] is not None)
    header = ("channel", "opened", "closed", "backlog", "median_hours_to_close", "past_target_share", "target_hours")
    chart = charts.bar_chart([(r["channel"], r["median_hours_to_close"] or 0.0) for r in channels],
                             f"Median hours to close by channel, {run_date.replace(day=1)} to {run_date}", "hours (daily medians, weighted by contacts closed)")
    return Section(
        key="service",
        title="Service desk",
        definition=(
            f"Per channel, over the dates of the month to {run_date}: opened and closed summed over the dates; backlog at the end of {run_date}; "
            "the hours to close and the share past target weighted by the contacts closed each date. Per date: "
            + " ".join(f"{label(c)}: {d[c]}" for c in ("opened", "closed", "backlog", "median_hours_to_close", "past_target_share", "repeat_complainers"))
        ),
        headline=(f"{len(listed):,} high-value repeat complainers on {run_date}; {sum(r['backlog'] for r in channels):,} contacts open at its end; "
                  f"{past / closed if closed else 0:.0%} of the {closed:,} contacts closed this month took longer than their target."),
        header=header,
        rows=tuple(tuple(r[c] for c in header) for r in channels),
        chart=charts.png(chart),
        persons=tuple(listed),
        persons_header=tuple(complainers.columns),
    )


ENGAGEMENT_RATES = ("delivery_rate", "open_rate", "click_rate", "unsubscribe_rate", "bounce_rate", "complaint_rate")


def engagement_by_campaign(engagement_rows: DataFrame, run_date: dt.date) -> DataFrame:
    """Return one row per campaign of gold.campaign_engagement with a send date in ``run_date``'s
    month to date: campaign_id, sent, delivered, the rates (each recomputed from the counts
    summed over the campaign's send dates: a recipient belongs to one), conversions, revenue;
    by campaign."""
    month = engagement_rows.where(month_to_date("send_date", run_date))
    summed = month.groupBy("campaign_id").agg(
        *[F.sum(c).cast("bigint").alias(c) for c in (*engagement.RECIPIENT_EVENTS, "conversions")],
        F.sum("revenue").cast("decimal(18,2)").alias("revenue"),
    )
    rates = [F.round(F.when(F.col(engagement.RATES[r][1]) > 0, F.col(engagement.RATES[r][0]) / F.col(engagement.RATES[r][1])), 4).alias(r)
             for r in ENGAGEMENT_RATES]
    return summed.select("campaign_id", "sent", "delivered", *rates, "conversions", "revenue").orderBy("campaign_id")


def _rates_chart(campaigns: list, title: str) -> bytes:
    """Open and click rates per campaign as paired horizontal bars, the first campaign on top."""
    fig, ax = charts.figure(7, 0.45 * max(3, len(campaigns)) + 1.2)
    positions = list(range(len(campaigns)))[::-1]
    for offset, rate, colour in ((0.2, "open_rate", charts.BLUE), (-0.2, "click_rate", charts.ORANGE)):
        ax.barh([p + offset for p in positions], [r[rate] or 0.0 for r in campaigns], height=0.4, color=colour, label=rate.replace("_", " "))
    ax.set_yticks(positions, [r["campaign_id"] for r in campaigns])
    ax.set_xlabel("share of delivered recipients")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return charts.png(fig)


def engagement_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the campaign engagement section for ``run_date``'s month to date: per campaign,
    its recipients, rates, conversions and revenue (:func:`engagement_by_campaign`)."""
    d = engagement.DEFINITIONS
    header = ("campaign_id", "sent", "delivered", *ENGAGEMENT_RATES, "conversions", "revenue")
    # Safe to collect: one row per campaign sent this month.
    campaigns = engagement_by_campaign(read(engagement.CAMPAIGN_ENGAGEMENT), run_date).collect()
    best = max((r for r in campaigns if r["click_rate"] is not None), key=lambda r: r["click_rate"], default=None)
    return Section(
        key="campaign_engagement",
        title="Campaign engagement",
        definition=(
            f"Per campaign, its sends of the month to {run_date} together: counts summed over its send dates (a recipient belongs to one), "
            "each rate recomputed from the sums. " + " ".join(f"{label(c)}: {d[c]}" for c in header[1:] if c in d)
        ),
        headline=(f"{len(campaigns)} campaigns sent this month; the most clicked: {best['campaign_id']} ({best['click_rate']:.1%} of delivered recipients clicked)."
                  if best else "No campaign was delivered this month."),
        header=header,
        rows=tuple(tuple(r[c] for c in header) for r in campaigns),
        chart=_rates_chart(campaigns, f"Open and click rates per campaign, {run_date.replace(day=1)} to {run_date}"),
    )



def _months_before(run_date: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` before ``run_date``'s."""
    index = run_date.year * 12 + run_date.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def roi_by_audience(rows: DataFrame, run_date: dt.date) -> DataFrame:
    """Return one row per audience and channel of gold.campaign_results over the contact dates of
    ``run_date``'s month to date whose window is complete: contacted, control, incremental_revenue
    and cost summed over those dates, and roi recomputed from the sums of the dates with a control
    group; the best ROI first."""
    done = rows.where(month_to_date("contact_date", run_date) & F.col("window_complete"))
    measured = F.col("incremental_revenue").isNotNull()
    summed = done.groupBy("audience", "channel").agg(
        F.countDistinct("contact_date").alias("contact_dates"),
        F.sum("contacted").cast("bigint").alias("contacted"), F.sum("control").cast("bigint").alias("control"),
        F.round(F.sum("incremental_revenue"), 2).alias("incremental_revenue"), F.round(F.sum("cost"), 2).alias("cost"),
        F.sum(F.when(measured, F.col("cost"))).alias("_measured_cost"),
    )
    roi = F.when(F.col("_measured_cost") > 0, F.round((F.col("incremental_revenue") - F.col("_measured_cost")) / F.col("_measured_cost"), 4))
    return summed.withColumn("roi", roi).drop("_measured_cost").orderBy(F.desc_nulls_last("roi"), "audience")


def campaign_roi_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the campaign ROI section: per audience, its contact dates of ``run_date``'s month whose
    attribution window is complete (:func:`roi_by_audience`), as the last decide run recorded them;
    before any decide run (analyze runs first on a lake's first day), an empty section saying so."""
    d = CAMPAIGN_RESULT_DEFINITIONS
    header = ("audience", "channel", "contact_dates", "contacted", "control", "incremental_revenue", "cost", "roi")
    try:
        recorded = read(CAMPAIGN_RESULTS)
    except TableNotFoundError:   # no decide run yet: nothing recorded, which is no failure
        recorded = None
    # Safe to collect: one row per audience and channel.
    audiences = roi_by_audience(recorded, run_date).collect() if recorded is not None else []
    rated = [r for r in audiences if r["roi"] is not None]
    gained = sum(r["incremental_revenue"] or 0.0 for r in audiences)
    return Section(
        key="campaign_roi",
        title="Campaign ROI",
        definition=(
            f"Per audience, its contact dates of the month to {run_date} whose attribution window is complete, as recorded by the last decide run "
            "(analyze runs before decide: contacts the decide run of the run date measures are not in it yet); counts, incremental revenue and cost "
            "summed over the dates, ROI recomputed from the sums of the dates with a control group. "
            + " ".join(f"{label(c)}: {d[c]}" for c in ("contacted", "window_complete", "incremental_revenue", "cost", "roi"))
        ),
        headline=("No decide run has recorded campaign results yet." if recorded is None else
                  f"{len(audiences)} audiences with a complete window this month brought {gained:,.2f} of incremental revenue; the best ROI: "
                  f"{rated[0]['audience']} ({rated[0]['roi']:.2f})." if rated else
                  f"{len(audiences)} audiences with a complete window this month; none with a control group and a cost to give an ROI."),
        header=header,
        rows=tuple(tuple(r[c] for c in header) for r in audiences),
        chart=charts.png(charts.bar_chart([(r["audience"], r["roi"]) for r in rated],
                                          f"ROI per audience, contacts {run_date.replace(day=1)} to {run_date}", "ROI (0 breaks even, -1 earned nothing)")),
    )


COHORT_MONTHS = (1, 2, 3, 6)   # the months since a cohort's first shown in the table
COHORTS_CHARTED = 6


def cohort_retention_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the cohort retention section: the cohorts of the 12 months before ``run_date``'s, their
    persons and the share retained 1, 2, 3 and 6 months after (gold.cohort_retention as the last
    analyze run rebuilt it); charted for the latest cohorts."""
    since = _months_before(run_date, 12)
    # Safe to collect: at most 12 cohorts x 13 months since.
    cells = read(retention.COHORT_RETENTION).where(
        F.col("cohort_month").between(F.lit(since), F.lit(_months_before(run_date, 1))) & (F.col("months_since") <= 12)
    ).select("cohort_month", "months_since", "cohort_persons", "retained_share").orderBy("cohort_month", "months_since").collect()
    cohorts: dict = {}
    for c in cells:
        cohorts.setdefault(c["cohort_month"], {"persons": c["cohort_persons"], "shares": {}})["shares"][c["months_since"]] = c["retained_share"]
    header = ("cohort_month", "cohort_persons", *(f"month_{m}_share" for m in COHORT_MONTHS))
    rows = tuple((str(month), v["persons"], *(v["shares"].get(m) for m in COHORT_MONTHS)) for month, v in sorted(cohorts.items(), reverse=True))
    lines = {f"{month:%Y-%m}": (sorted(v["shares"]), [v["shares"][m] for m in sorted(v["shares"])]) for month, v in sorted(cohorts.items())[-COHORTS_CHARTED:]}
    latest = next((r for r in rows if r[2] is not None), None)
    return Section(
        key="cohort_retention",
        title="Cohort retention",
        definition=(f"The cohorts of the 12 months before {run_date:%Y-%m}, as of {run_date} (a month not over counts to the run date). "
                    f"{label('cohort_retention')}: {retention.DEFINITIONS['cohort_retention']}"),
        headline=(f"{latest[2]:.1%} of the {latest[1]:,} persons who first bought in {latest[0][:7]} bought again the month after."
                  if latest else "No cohort has a month after its first yet."),
        header=header,
        rows=rows,
        chart=charts.png(charts.line_chart(lines, f"Retained share by months since the first purchase, cohorts to {run_date:%Y-%m}",
                                           "months since the first purchase", "share of the cohort buying", markers=True, size=(7, 4))),
    )


def _stacked_chart(rows: list, title: str, xlabel: str) -> bytes:
    """Horizontal bars per row[0], stacked by row[1], of row[2]; the first label on top."""
    bars = list(dict.fromkeys(r[0] for r in rows))
    stacks = sorted({r[1] for r in rows})
    fig, ax = charts.figure(7, 0.45 * max(3, len(bars)) + 1.2)
    left = [0.0] * len(bars)
    positions = list(range(len(bars)))[::-1]
    for i, stack in enumerate(stacks):
        values = [sum(r[2] for r in rows if r[0] == b and r[1] == stack) for b in bars]
        ax.barh(positions, values, left=left, color=charts.COLOURS[i % len(charts.COLOURS)], label=stack)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(positions, bars)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if stacks:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return charts.png(fig)


PERSONS_MOST = 10_000   # the most persons a section's list carries (the most at risk first)


def churn_risk_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the churn risk section: the persons scored on ``run_date`` at risk (a main reason
    holds) per value tier and main reason, and the list of those in the high-value tiers
    (``analyze.service.high_value_tiers``), the most at risk first."""
    d = retention.DEFINITIONS
    risk = read(retention.CHURN_RISK).where((F.col("score_date") == F.lit(run_date)) & F.col("main_reason").isNotNull())
    # Safe to collect: one row per value tier and reason.
    groups = risk.groupBy("value_tier", "main_reason").agg(F.count("*").alias("persons")).orderBy("value_tier", "main_reason").collect()
    tiers = conf.analyze.service.high_value_tiers
    valuable = risk.where(F.col("value_tier").isin(tiers)).select(
        "person_id", "value_tier", "segment", "main_reason", "churn_risk_decile", "p_alive", "p_alive_change", "days_since_last_purchase",
        "usual_interval_days", "score_date").orderBy(F.desc_nulls_last("churn_risk_decile"), "p_alive", "person_id")
    # Safe to collect: a call list, at most PERSONS_MOST persons.
    listed = [tuple(r) for r in valuable.limit(PERSONS_MOST).collect()]
    at_risk = sum(r["persons"] for r in groups)
    valuable_n = sum(r["persons"] for r in groups if r["value_tier"] in tiers)
    return Section(
        key="churn_risk",
        title="Churn risk",
        definition=(f"The persons scored on {run_date} who show a sign of leaving (a main reason holds), per value tier and main reason; listed: "
                    f"those of the tiers {', '.join(tiers)}, the highest churn-risk decile first (at most {PERSONS_MOST:,}). "
                    f"{label('churn_risk')}: {d['churn_risk']} The churn ranking's AUCs against the recency baseline ({d['churn_ranking'].rstrip('.')}) are in "
                    "the analyze stage's summary and MLflow, not here."),
        headline=f"{at_risk:,} persons scored on {run_date} show a sign of leaving; {valuable_n:,} of them in the tiers {', '.join(tiers)}.",
        header=("value_tier", "main_reason", "persons"),
        rows=tuple(tuple(r) for r in groups),
        chart=_stacked_chart([tuple(r) for r in groups], f"Persons at risk by value tier and main reason, {run_date}", "persons"),
        persons=tuple(listed),
        persons_header=tuple(valuable.columns),
    )


def tier_transitions_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the tier transitions section: the persons scored on ``run_date`` and the previous
    score date per (from, to) value tier, segments together (gold.tier_transitions)."""
    moves = read(retention.TIER_TRANSITIONS).where(F.col("score_date") == F.lit(run_date)).groupBy(
        "from_score_date", "from_value_tier", "to_value_tier").agg(
        F.sum("persons").cast("bigint").alias("persons"), F.round(F.sum("revenue"), 2).alias("revenue")).orderBy(F.desc("persons"), "from_value_tier")
    # Safe to collect: one row per pair of value tiers.
    rows = moves.collect()
    moved = [r for r in rows if r["from_value_tier"] != r["to_value_tier"]]
    since = rows[0]["from_score_date"] if rows else None
    header = ("from_value_tier", "to_value_tier", "persons", "revenue")
    return Section(
        key="tier_transitions",
        title="Value tier transitions",
        definition=f"From the previous score date ({since or 'none'}) to {run_date}, segments together. {label('tier_transitions')}: "
                   f"{retention.DEFINITIONS['tier_transitions']}",
        headline=(f"{sum(r['persons'] for r in moved):,} of the {sum(r['persons'] for r in rows):,} persons scored on {since} and {run_date} changed value tier."
                  if rows else f"No earlier score date before {run_date}: no transitions yet."),
        header=header,
        rows=tuple(tuple(r[c] for c in header) for r in rows),
        chart=charts.png(charts.bar_chart([(f"{r['from_value_tier']} → {r['to_value_tier']}", r["persons"]) for r in moved],
                                          f"Persons changing value tier, {since} to {run_date}", "persons")),
    )


def profit_by_tier(rows: DataFrame, run_date: dt.date) -> DataFrame:
    """Return one row per (value tier on revenue, profit tier) of gold.customer_profitability on
    ``run_date``: persons, revenue, profit and the loss-making persons (profit below 0) and their loss."""
    loss = F.col("profit") < 0
    return rows.where(F.col("score_date") == F.lit(run_date)).groupBy("value_tier", "profit_tier").agg(
        F.count("*").alias("persons"), F.round(F.sum("revenue"), 2).alias("revenue"), F.round(F.sum("profit"), 2).alias("profit"),
        F.count(F.when(loss, 1)).alias("loss_making"), F.round(F.coalesce(F.sum(F.when(loss, F.col("profit"))), F.lit(0.0)), 2).alias("loss"),
    ).orderBy("value_tier", "profit_tier")


def profit_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the profit section for ``run_date``: persons, revenue and profit by value tier on
    revenue vs on profit, the loss-making persons (:func:`profit_by_tier`), and the Pareto curve
    on profit (gold.profit_pareto) beside the one on revenue (gold.pareto)."""
    d = profit.DEFINITIONS
    header = ("value_tier", "profit_tier", "persons", "revenue", "profit", "loss_making", "loss")
    # Safe to collect: one row per pair of tiers.
    rows = profit_by_tier(read(profit.CUSTOMER_PROFITABILITY), run_date).collect()
    # Safe to collect: a Pareto curve has at most 100 points per score date.
    curves = {name: read(table).where(F.col("score_date") == F.lit(run_date)).select("top_share", "value_share").orderBy("top_share").collect()
              for name, table in (("revenue", PARETO), ("profit", profit.PROFIT_PARETO))}
    lines = {f"share of {name}": ([0.0] + [p["top_share"] for p in c], [0.0] + [p["value_share"] for p in c]) for name, c in curves.items() if c}
    total, losers = sum(r["profit"] or 0.0 for r in rows), sum(r["loss_making"] for r in rows)
    return Section(
        key="profit",
        title="Customer profitability",
        definition=(f"The persons scored on {run_date}, per value tier on revenue and on profit; loss-making: a profit below 0. "
                    + " ".join(f"{label(c)}: {d[c]}." for c in ("revenue", "profit", "profit_tier"))
                    + " The chart: the share of revenue (gold.pareto) and of profit (gold.profit_pareto, the persons with a positive profit) "
                    "brought by the top share of customers."),
        headline=f"{total:,.2f} of profit from {sum(r['persons'] for r in rows):,} persons on {run_date}; {losers:,} of them made a loss "
                 f"({sum(r['loss'] for r in rows):,.2f}).",
        header=header,
        rows=tuple(tuple(r[c] for c in header) for r in rows),
        chart=charts.png(charts.line_chart(lines, f"Share of revenue and profit by share of top customers, {run_date}", "share of top customers",
                                           "share of the total", reference=((0, 0), (1, 1), "equal shares"), size=(6, 4))),
    )


SOURCES_MOST = 12


def acquisition_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the acquisition section for ``run_date``'s acquisition month: per first-touch source
    (the most new customers first, at most ``SOURCES_MOST``), the new customers, buyers and value
    to date (gold.acquisition_sources), and the month's referrals (gold.referrals)."""
    d = acquisition.DEFINITIONS
    month = run_date.replace(day=1)
    header = ("source", "new_customers", "buyers_in_window", "value", "value_per_customer", "window_complete", "min_days_observed")
    # Safe to collect: the month's sources, at most SOURCES_MOST.
    sources = read(acquisition.ACQUISITION_SOURCES).where(F.col("acquisition_month") == F.lit(month)).orderBy(
        F.desc("new_customers"), "source").limit(SOURCES_MOST).collect()
    # Safe to collect: one row per acquisition month.
    referred = read(acquisition.REFERRALS).where(F.col("acquisition_month") == F.lit(month)).collect()
    r = referred[0] if referred else {"members_referred": 0, "referred_buyers": 0, "referrers": 0}
    chart = _sources_chart(sources, f"By first-touch source, acquired {month} to {run_date}")
    return Section(
        key="acquisition",
        title="Acquisition",
        definition=(f"The new customers acquired {month} to {run_date}, per first-touch source (the {SOURCES_MOST} with the most); value to date. "
                    + " ".join(f"{label(c)}: {d[c]}" for c in ("new_customer", "first_touch_source", "value", "window_complete", "members_referred", "referred_buyers"))),
        headline=(f"{sum(s['new_customers'] for s in sources):,} new customers this month from {len(sources)} sources; {r['members_referred']:,} of them "
                  f"referred by {r['referrers']:,} persons, {r['referred_buyers']:,} of those bought."),
        header=header,
        rows=tuple(tuple(s[c] for c in header) for s in sources),
        chart=chart,
    )


def _sources_chart(sources: list, title: str) -> bytes:
    """Two panels side by side, a bar per source (the first on top): value per new customer, and new customers."""
    fig, (left, right) = charts.pyplot().subplots(1, 2, figsize=(10, 0.4 * max(3, len(sources)) + 1.4), sharey=True)
    labels = [s["source"] for s in sources][::-1]
    left.barh(labels, [s["value_per_customer"] or 0.0 for s in sources][::-1], color=charts.BLUE)
    days = f"first {sources[0]['value_days']} days, to date" if sources else "to date"
    left.set_title(f"Value per new customer ({days})")
    right.barh(labels, [s["new_customers"] for s in sources][::-1], color=charts.ORANGE)
    right.set_title("New customers")
    fig.suptitle(title)
    return charts.png(fig)
