"""The reports a manager reads: yesterday's sales every run, and who our members are each month.

Figures are aggregated in Spark (small results are collected); pages are plain HTML with
PNG charts under ``<paths.exports>/reports/``: ``daily_sales/<date>.html`` and
``members/<YYYY-MM>.html`` (rewritten each run of the month: month to date, final on its
last day). Member figures count *active* persons (a visit or purchase in 90 days), not
registrations, and show declared attributes beside the share that is stale.
"""

from __future__ import annotations

import datetime as dt
import html
import os

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

AGE_BANDS = ((0, 18, "under 18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 65, "55-64"), (65, 200, "65+"))


def daily_sales(order_lines: DataFrame, run_date: dt.date) -> dict:
    """Return the sales of ``run_date`` and of the same weekday a week before.

    Takes order lines with person_id, order_id, order_date, channel, status, line_amount.
    Returns revenue, orders, average_order_value, new/returning/guest orders, by_channel
    (list of dicts) and revenue_week_before.
    """
    completed = order_lines.where(F.col("status") == "completed")
    firsts = completed.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(F.min("order_date").alias("first_order_date"))
    day = completed.where(F.col("order_date") == F.lit(run_date)).join(firsts, "person_id", "left")
    kind = F.when(F.col("person_id").isNull(), "guest").when(F.col("first_order_date") == F.col("order_date"), "new").otherwise("returning")
    orders = day.groupBy("order_id", "channel").agg(F.sum("line_amount").cast("double").alias("amount"), F.first(kind).alias("customer"))
    # Safe to collect: a handful of channels and customer kinds.
    by_channel = [r.asDict() for r in orders.groupBy("channel").agg(F.count(F.lit(1)).alias("orders"), F.round(F.sum("amount"), 2).alias("revenue")).orderBy(F.desc("revenue")).collect()]
    by_kind = {r["customer"]: r["orders"] for r in orders.groupBy("customer").agg(F.count(F.lit(1)).alias("orders")).collect()}
    week_before = completed.where(F.col("order_date") == F.lit(run_date - dt.timedelta(days=7))).agg(F.sum("line_amount").cast("double")).first()[0]
    revenue = sum(c["revenue"] for c in by_channel)
    count = sum(c["orders"] for c in by_channel)
    return {
        "date": run_date.isoformat(),
        "revenue": round(revenue, 2),
        "orders": count,
        "average_order_value": round(revenue / count, 2) if count else 0.0,
        "new_customer_orders": by_kind.get("new", 0),
        "returning_customer_orders": by_kind.get("returning", 0),
        "guest_orders": by_kind.get("guest", 0),
        "revenue_week_before": round(week_before or 0.0, 2),
        "by_channel": by_channel,
    }


def _distribution(frame: DataFrame, column) -> list[tuple[str, int]]:
    # Safe to collect: one row per attribute value.
    rows = frame.groupBy(column.alias("value")).count().orderBy(F.desc("count")).collect()
    return [(str(r["value"]) if r["value"] is not None else "(not declared)", r["count"]) for r in rows]


def member_report(people: DataFrame, accounts: DataFrame, run_date: dt.date) -> dict:
    """Return who our members are: registrations vs persons vs active persons, and among
    the active, declared attributes (with the share flagged stale) and inferred ones.

    Takes silver.customer_360 and silver.customers.
    """
    age = F.lit(run_date.year) - F.col("birth_year")
    band = F.lit(None).cast("string")
    for low, high, label in reversed(AGE_BANDS):
        band = F.when((age >= low) & (age < high), label).otherwise(band)
    band = F.when(F.col("implausible_birth_year"), "(implausible)").otherwise(band)
    active = people.where("active_90d").cache()
    # Safe to collect: single-row aggregates.
    totals = people.agg(
        F.count(F.lit(1)).alias("persons"), F.sum(F.col("active_30d").cast("int")).alias("active_30d"),
        F.sum(F.col("active_90d").cast("int")).alias("active_90d"),
    ).first()
    stale = active.agg(
        F.avg(F.col("declared_stale").cast("double")).alias("stale"), F.avg(F.col("stale_occupation").cast("double")).alias("stale_occupation")
    ).first()
    report = {
        "month": run_date.strftime("%Y-%m"),
        "as_of": run_date.isoformat(),
        "registrations": accounts.count(),
        "live_registrations": accounts.where("NOT erased").count(),
        "persons": totals["persons"],
        "active_30d": totals["active_30d"] or 0,
        "active_90d": totals["active_90d"] or 0,
        "stale_declared_share": round(stale["stale"] or 0.0, 4),
        "stale_occupation_share": round(stale["stale_occupation"] or 0.0, 4),
        "declared": {
            "gender": _distribution(active, F.col("gender")),
            "age band": _distribution(active, band),
            "occupation": _distribution(active, F.col("occupation")),
        },
        "inferred": {
            "preferred category": _distribution(active, F.col("preferred_category")),
            "preferred device": _distribution(active, F.col("preferred_device")),
            "price band": _distribution(active, F.col("price_band")),
        },
    }
    active.unpersist()
    return report


def _bar_chart(path: str, items: list[tuple[str, float]], title: str, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [i[0] for i in items][:12], [i[1] for i in items][:12]
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(3, len(labels)) + 1), dpi=100)
    ax.barh(labels[::-1], values[::-1], color="#3b6ea5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return os.path.basename(path)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}td,th{padding:.3em .8em;text-align:left}"
        ".figure{font-size:1.6em;font-weight:bold}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def write_daily_sales(report: dict, folder: str, currency: str) -> list[str]:
    """Write the daily sales page and its chart into ``folder``; return the files written."""
    os.makedirs(folder, exist_ok=True)
    day = report["date"]
    chart = _bar_chart(os.path.join(folder, f"{day}_by_channel.png"), [(c["channel"], c["revenue"]) for c in report["by_channel"]], f"Revenue by channel, {day}", currency)
    change = (report["revenue"] / report["revenue_week_before"] - 1) if report["revenue_week_before"] else None
    rows = "".join(f"<tr><td>{html.escape(str(c['channel']))}</td><td>{c['orders']:,}</td><td>{c['revenue']:,.2f}</td></tr>" for c in report["by_channel"])
    body = (
        f'<p class="figure">Revenue {report["revenue"]:,.2f} {html.escape(currency)}</p>'
        f"<p>{report['orders']:,} orders · average order value {report['average_order_value']:,.2f} · "
        + (f"{change:+.1%} against the same weekday last week" if change is not None else "no sales the same weekday last week")
        + f"</p><p>Orders from new customers {report['new_customer_orders']:,}, returning {report['returning_customer_orders']:,}, guests {report['guest_orders']:,}.</p>"
        f"<table><tr><th>Channel</th><th>Orders</th><th>Revenue</th></tr>{rows}</table><img alt='revenue by channel' src='{chart}'>"
    )
    page = os.path.join(folder, f"{day}.html")
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(_page(f"Sales of {day}", body))
    return [page, os.path.join(folder, chart)]


def write_member_report(report: dict, folder: str) -> list[str]:
    """Write the monthly member page and its charts into ``folder``; return the files written."""
    os.makedirs(folder, exist_ok=True)
    month = report["month"]
    files, sections = [], []
    for kind in ("declared", "inferred"):
        for name, items in report[kind].items():
            chart = _bar_chart(os.path.join(folder, f"{month}_{kind}_{name.replace(' ', '_')}.png"), items, f"{name} ({kind}), active members", "persons")
            files.append(os.path.join(folder, chart))
            sections.append(f"<h3>{html.escape(name.capitalize())} <small>({kind})</small></h3><img alt='{html.escape(name)}' src='{chart}'>")
    body = (
        f'<p class="figure">{report["active_90d"]:,} active members</p>'
        f"<p>Active in 30 days: {report['active_30d']:,}; persons: {report['persons']:,}; registrations: {report['registrations']:,} "
        f"({report['live_registrations']:,} not erased). One person may hold several registrations; only activity makes a member count.</p>"
        f"<p>Declared attributes are what members said, often long ago: {report['stale_declared_share']:.1%} of active members have a stale or "
        f"implausible declaration ({report['stale_occupation_share']:.1%} still declared as students past student age). Prefer the inferred ones.</p>"
        + "".join(sections)
    )
    page = os.path.join(folder, f"{month}.html")
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(_page(f"Members, {month} (as of {report['as_of']})", body))
    return [page, *files]
