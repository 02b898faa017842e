"""The monthly management report's sections (:mod:`crmlake.analyze.management`): the
:class:`Section` shape, what every builder shares, and the builders of the service desk's and
the campaigns' questions; those about the customer base (retention, churn, tier moves, profit,
acquisition) are :mod:`crmlake.analyze.management_customers`. A builder is
``(read, conf, run_date) -> Section``.

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
from crmlake.analyze import engagement, service
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


def months_before(run_date: dt.date, months: int) -> dt.date:
    """Return the first day of the month ``months`` before ``run_date``'s."""
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
