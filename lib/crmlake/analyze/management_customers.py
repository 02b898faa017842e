"""The monthly management report's sections about the customer base (:mod:`crmlake.analyze.management`):
cohort retention, churn risk, value tier moves, profit and acquisition, one builder per
question, ``(read, conf, run_date) -> Section``, as :mod:`crmlake.analyze.management_sections`
says every builder works (Spark groups, the builder collects small aggregates and bounded lists).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import charts
from crmlake.analyze import acquisition, profit, retention
from crmlake.analyze.management_sections import Read, Section, label, months_before
from crmlake.analyze.writers import PARETO
from crmlake.config import Conf

COHORT_MONTHS = (1, 2, 3, 6)   # the months since a cohort's first shown in the table
COHORTS_CHARTED = 6


def cohort_retention_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the cohort retention section: the cohorts of the 12 months before ``run_date``'s, their
    persons and the share retained 1, 2, 3 and 6 months after (gold.cohort_retention as the last
    analyze run rebuilt it); charted for the latest cohorts."""
    since = months_before(run_date, 12)
    # Safe to collect: at most 12 cohorts x 13 months since.
    cells = read(retention.COHORT_RETENTION).where(
        F.col("cohort_month").between(F.lit(since), F.lit(months_before(run_date, 1))) & (F.col("months_since") <= 12)
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


def reported_acquisition_month(sources: DataFrame, run_date: dt.date) -> DataFrame:
    """Return the acquisition month the report shows, as one row of gold.acquisition_sources'
    months up to ``run_date``'s (no row when it holds none): the latest month in which every
    row's value window is complete, else (a lake too young for one) the latest month.

    Columns: acquisition_month, window_complete (every row's), value_days, min_days_observed
    (of the month's least observed customer), and the month's new_customers, value and sources
    (all of them, not only those the section lists)."""
    months = sources.where(F.col("acquisition_month") <= F.lit(run_date.replace(day=1))).groupBy("acquisition_month").agg(
        F.bool_and("window_complete").alias("window_complete"), F.max("value_days").alias("value_days"),
        F.min("min_days_observed").alias("min_days_observed"), F.sum("new_customers").cast("bigint").alias("new_customers"),
        F.sum("value").cast("decimal(18,2)").alias("value"), F.count("*").alias("sources"),
    )
    return months.orderBy(F.desc("window_complete"), F.desc("acquisition_month")).limit(1)


def acquisition_section(read: Read, conf: Conf, run_date: dt.date) -> Section:
    """Return the acquisition section for the month :func:`reported_acquisition_month` picks: per
    first-touch source (the most new customers first, at most ``SOURCES_MOST``), the new customers,
    buyers and value in their value window (gold.acquisition_sources), and the month's referrals
    (gold.referrals); values to date, and said so, when no month's windows are complete yet."""
    d = acquisition.DEFINITIONS
    header = ("acquisition_month", "source", "new_customers", "buyers_in_window", "value", "value_per_customer", "window_complete", "min_days_observed")
    all_sources = read(acquisition.ACQUISITION_SOURCES)
    quoted = " ".join(f"{label(c)}: {d[c]}" for c in ("new_customer", "first_touch_source", "value", "window_complete", "members_referred", "referred_buyers"))
    # Safe to collect: one row.
    picked = reported_acquisition_month(all_sources, run_date).first()
    if picked is None:
        return Section(key="acquisition", title="Acquisition", definition=f"No acquisition month up to {run_date:%Y-%m} yet. {quoted}",
                       headline=f"No new customer acquired by {run_date} yet.", header=header, rows=(), chart=_sources_chart([], "By first-touch source", "to date"))
    month, days = picked["acquisition_month"], picked["value_days"]
    # Safe to collect: the month's sources, at most SOURCES_MOST.
    sources = all_sources.where(F.col("acquisition_month") == F.lit(month)).orderBy(F.desc("new_customers"), "source").limit(SOURCES_MOST).collect()
    # Safe to collect: one row per acquisition month.
    referred = read(acquisition.REFERRALS).where(F.col("acquisition_month") == F.lit(month)).collect()
    r = referred[0] if referred else {"members_referred": 0, "referred_buyers": 0, "referrers": 0}
    customers, each = picked["new_customers"], picked["value"] / picked["new_customers"]
    if picked["window_complete"]:
        which = f"the latest acquisition month whose {days}-day value windows are all complete by {run_date}"
        worth, window = f"worth {each:,.2f} each in their first {days} days", f"first {days} days"
    else:
        which = (f"the latest acquisition month the lake holds: no month has its {days}-day value windows complete by {run_date} yet, "
                 "so its values are to date and its windows not over")
        worth = (f"worth {each:,.2f} each to date (values to date: their {days}-day windows are not over, the least observed has had "
                 f"{picked['min_days_observed']} of the {days} days)")
        window = f"first {days} days, to date"
    return Section(
        key="acquisition",
        title=f"Acquisition, {month:%Y-%m}",
        definition=f"The new customers acquired in {month:%Y-%m}, {which}; per first-touch source (the {SOURCES_MOST} with the most); the month's referrals. {quoted}",
        headline=(f"{customers:,} new customers acquired in {month:%Y-%m} from {picked['sources']} sources, {worth}; {r['members_referred']:,} of them "
                  f"referred by {r['referrers']:,} persons, {r['referred_buyers']:,} of those bought."),
        header=header,
        rows=tuple(tuple(s[c] for c in header) for s in sources),
        chart=_sources_chart(sources, f"By first-touch source, acquired in {month:%Y-%m}", window),
    )


def _sources_chart(sources: list, title: str, value_window: str) -> bytes:
    """Two panels side by side, a bar per source (the first on top): value per new customer (in ``value_window``), and new customers."""
    fig, (left, right) = charts.figure(10, 0.4 * max(3, len(sources)) + 1.4, columns=2, share_y=True)
    labels = [s["source"] for s in sources][::-1]
    left.barh(labels, [s["value_per_customer"] or 0.0 for s in sources][::-1], color=charts.BLUE)
    left.set_title(f"Value per new customer ({value_window})")
    right.barh(labels, [s["new_customers"] for s in sources][::-1], color=charts.ORANGE)
    right.set_title("New customers")
    fig.suptitle(title)
    return charts.png(fig)
