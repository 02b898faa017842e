"""The reports a manager reads: how yesterday went, every run, and who our members are each month.

Figures are aggregated in Spark and only small results reach the driver (one row per day of
the trend, a few top sellers, one row per attribute value). Pages are single HTML files with
their charts inlined as base64 PNG, so a page can be mailed as it is, each beside its figures
as CSV, under ``<paths.exports>/reports/``: ``daily_sales/<date>.html`` and
``members/<YYYY-MM>.html`` (rewritten each run of the month: month to date, final on its
last day).

Daily sales compare every figure with the same weekday a week before and with the average of
the trailing weeks, and list as *unusual* a figure outside the range (lowest to highest) of
those trailing days. The member report has one definition of an active member
(:data:`ACTIVE_MEMBER`) and keeps registrations, persons and active members apart.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import os

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import charts, files
from crmlake.business_days import business_date
from crmlake.csv_cells import safe_rows

AGE_BANDS = ((0, 18, "under 18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 65, "55-64"), (65, 200, "65+"))
# The figures of a day, in the order the page shows them, with their labels.
DAILY_FIGURES = {
    "revenue": "Revenue",
    "orders": "Orders",
    "average_order_value": "Average order value",
    "new_customer_orders": "Orders from new customers",
    "returning_customer_orders": "Orders from returning customers",
    "guest_orders": "Guest orders",
    "first_purchases": "First purchases (persons)",
    "new_members": "New registrations",
}
ACTIVE_MEMBER = "a person (all their registrations together) with a visit or a completed purchase in the last 90 days"


def daily_figures(order_lines: DataFrame, accounts: DataFrame, run_date: dt.date, days: int, timezone: str) -> DataFrame:
    """Return one row per business date of the ``days`` days ending on ``run_date`` (zeros on a day without sales).

    Takes order lines with person_id, order_id, order_date, status, line_amount (all history:
    a customer is *new* on the date of their first completed order) and silver.customers
    (signup_time). Columns: order_date and the :data:`DAILY_FIGURES` (average_order_value is
    null on a day without orders).
    """
    start = run_date - dt.timedelta(days=days - 1)
    completed = order_lines.where(F.col("status") == "completed")
    firsts = completed.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(F.min("order_date").alias("first_order_date"))
    in_range = completed.where(F.col("order_date").between(F.lit(start), F.lit(run_date))).join(firsts, "person_id", "left")
    kind = F.when(F.col("person_id").isNull(), "guest").when(F.col("first_order_date") == F.col("order_date"), "new").otherwise("returning")
    orders = in_range.groupBy("order_date", "order_id").agg(
        F.sum("line_amount").cast("double").alias("amount"), F.first(kind).alias("customer"), F.first("person_id").alias("person_id")
    )
    per_day = orders.groupBy("order_date").agg(
        F.round(F.sum("amount"), 2).alias("revenue"),
        F.count(F.lit(1)).alias("orders"),
        *[F.sum(F.when(F.col("customer") == k, 1).otherwise(0)).alias(f"{name}") for k, name in
          (("new", "new_customer_orders"), ("returning", "returning_customer_orders"), ("guest", "guest_orders"))],
        F.countDistinct(F.when(F.col("customer") == "new", F.col("person_id"))).alias("first_purchases"),
    )
    signup_date = business_date("signup_time", timezone)
    signups = accounts.where(signup_date.between(F.lit(start), F.lit(run_date))).groupBy(signup_date.alias("order_date")).agg(
        F.count(F.lit(1)).alias("new_members")
    )
    spine = order_lines.sparkSession.range(1).select(F.explode(F.sequence(F.lit(start), F.lit(run_date))).alias("order_date"))
    counts = [c for c in DAILY_FIGURES if c not in ("revenue", "average_order_value")]
    joined = spine.join(per_day, "order_date", "left").join(signups, "order_date", "left")
    return joined.select(
        "order_date",
        F.coalesce("revenue", F.lit(0.0)).alias("revenue"),
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in counts],
        F.round(F.when(F.col("orders") > 0, F.col("revenue") / F.col("orders")), 2).alias("average_order_value"),
    ).select("order_date", *DAILY_FIGURES)


def top_sellers(order_lines: DataFrame, run_date: dt.date, column: str, n: int) -> DataFrame:
    """Return the ``n`` best ``column`` values (category, product_id) of ``run_date`` by revenue.

    Columns: name, revenue, orders, revenue_share (of the day's revenue).
    """
    day = order_lines.where((F.col("status") == "completed") & (F.col("order_date") == F.lit(run_date)))
    per_value = day.groupBy(F.coalesce(F.col(column), F.lit("(unknown)")).alias("name")).agg(
        F.sum("line_amount").cast("double").alias("revenue"), F.countDistinct("order_id").alias("orders")
    )
    total = day.agg(F.sum("line_amount").cast("double").alias("_total"))
    return (
        per_value.crossJoin(total)
        .select("name", F.round("revenue", 2).alias("revenue"), "orders", F.round(F.col("revenue") / F.col("_total"), 4).alias("revenue_share"))
        .orderBy(F.desc("revenue"), "name")
        .limit(n)
    )


def compare_figures(days: list[dict], run_date: dt.date, trailing_weeks: int) -> list[dict]:
    """Return, per figure of :data:`DAILY_FIGURES`, the run date's value beside its comparisons.

    Takes the rows of :func:`daily_figures` (as dicts). Each result has figure, label, value,
    same_weekday_last_week, trailing_average, trailing_low, trailing_high (over the
    ``trailing_weeks`` x 7 days before the run date) and unusual (the value is outside
    [trailing_low, trailing_high]).
    """
    by_date = {d["order_date"]: d for d in days}
    trailing = [by_date[run_date - dt.timedelta(days=k)] for k in range(1, trailing_weeks * 7 + 1) if run_date - dt.timedelta(days=k) in by_date]
    today, week_before = by_date.get(run_date, {}), by_date.get(run_date - dt.timedelta(days=7), {})
    compared = []
    for figure, label in DAILY_FIGURES.items():
        history = [d[figure] for d in trailing if d[figure] is not None]
        value = today.get(figure)
        low, high = (min(history), max(history)) if history else (None, None)
        compared.append({
            "figure": figure,
            "label": label,
            "value": value,
            "same_weekday_last_week": week_before.get(figure),
            "trailing_average": round(sum(history) / len(history), 2) if history else None,
            "trailing_low": low,
            "trailing_high": high,
            "unusual": value is not None and low is not None and not low <= value <= high,
        })
    return compared


def daily_sales(order_lines: DataFrame, accounts: DataFrame, run_date: dt.date, timezone: str,
                trend_days: int = 56, trailing_weeks: int = 4, top_n: int = 5) -> dict:
    """Return how ``run_date`` went: figures with comparisons, the daily trend, top sellers, channels.

    Takes order lines with person_id (see :func:`daily_figures`) and silver.customers.
    Returns date, figures (:func:`compare_figures`), unusual (the figures outside their
    trailing range), trend (one dict per day), top_categories, top_products, by_channel.
    """
    # Safe to collect: one row per day of the trend, a few top sellers, a handful of channels.
    days = max(trend_days, trailing_weeks * 7 + 1)
    trend = [r.asDict() for r in daily_figures(order_lines, accounts, run_date, days, timezone).orderBy("order_date").collect()]
    figures = compare_figures(trend, run_date, trailing_weeks)
    day = order_lines.where((F.col("status") == "completed") & (F.col("order_date") == F.lit(run_date)))
    by_channel = day.groupBy("channel").agg(F.countDistinct("order_id").alias("orders"), F.round(F.sum("line_amount").cast("double"), 2).alias("revenue"))
    return {
        "date": run_date.isoformat(),
        "trailing_weeks": trailing_weeks,
        "figures": figures,
        "unusual": [f for f in figures if f["unusual"]],
        "trend": trend[-trend_days:],
        "top_categories": [r.asDict() for r in top_sellers(order_lines, run_date, "category", top_n).collect()],
        "top_products": [r.asDict() for r in top_sellers(order_lines, run_date, "product_id", top_n).collect()],
        "by_channel": [r.asDict() for r in by_channel.orderBy(F.desc("revenue")).collect()],
    }


def _distributions(frame: DataFrame, attributes: dict, missing: dict) -> dict[str, list[tuple[str, int]]]:
    """Persons per value of each of ``attributes`` (name -> column), in one pass over ``frame``;
    an attribute's nulls are labelled ``missing[name]``, or left out when that is None. Each
    list is most persons first, then by value (nulls first)."""
    pairs = frame.select(F.explode(F.array(*[
        F.struct(F.lit(name).alias("attribute"), column.cast("string").alias("value")) for name, column in attributes.items()
    ])).alias("pair")).select("pair.*")
    found: dict = {name: [] for name in attributes}
    # Safe to collect: one row per attribute value.
    for r in pairs.groupBy("attribute", "value").count().collect():
        if r["value"] is not None or missing[r["attribute"]] is not None:
            found[r["attribute"]].append((r["value"], r["count"]))
    return {name: [(value if value is not None else missing[name], count)
                   for value, count in sorted(rows, key=lambda vc: (-vc[1], vc[0] is not None, vc[0] or ""))]
            for name, rows in found.items()}


def member_report(people: DataFrame, accounts: DataFrame, run_date: dt.date) -> dict:
    """Return who our members are: registrations, persons and active members (:data:`ACTIVE_MEMBER`);
    among the active, each declared attribute with how many declared it and how many of those
    declarations are stale, and each inferred attribute over the members it could be inferred for.

    Takes silver.customer_360 and silver.customers.
    """
    age = F.lit(run_date.year) - F.col("birth_year")
    band = F.lit(None).cast("string")
    for low, high, label in reversed(AGE_BANDS):
        band = F.when((age >= low) & (age < high), label).otherwise(band)
    band = F.when(F.col("implausible_birth_year"), "(implausible)").otherwise(band)
    stale_profile = F.coalesce(F.col("stale_profile"), F.lit(False))
    # Which declarations of an attribute are no longer believable.
    declared = {
        "gender": (F.col("gender"), stale_profile),
        "age band": (band, stale_profile | F.coalesce(F.col("implausible_birth_year"), F.lit(False))),
        "occupation": (F.col("occupation"), stale_profile | F.coalesce(F.col("stale_occupation"), F.lit(False))),
    }
    inferred = {"preferred category": F.col("preferred_category"), "preferred device": F.col("preferred_device"), "price band": F.col("price_band")}
    active = F.coalesce(F.col("active_90d"), F.lit(False))
    # Safe to collect: single-row aggregates.
    totals = people.agg(
        F.count(F.lit(1)).alias("persons"), F.sum(active.cast("int")).alias("active"),
        *[F.count(F.when(active, value)).alias(f"declared {name}") for name, (value, _) in declared.items()],
        *[F.sum(F.when(active & value.isNotNull() & stale, 1).otherwise(0)).alias(f"stale {name}") for name, (value, stale) in declared.items()],
        *[F.count(F.when(active, value)).alias(f"inferred {name}") for name, value in inferred.items()],
    ).first()
    registrations = accounts.agg(F.count(F.lit(1)).alias("all"), F.sum(F.when(~F.col("erased"), 1).otherwise(0)).alias("live")).first()
    values = _distributions(people.where(active), {**{name: value for name, (value, _) in declared.items()}, **inferred},
                            {**{name: "(not declared)" for name in declared}, **{name: None for name in inferred}})
    report = {
        "month": run_date.strftime("%Y-%m"),
        "as_of": run_date.isoformat(),
        "active_definition": ACTIVE_MEMBER,
        "registrations": registrations["all"],
        "live_registrations": registrations["live"] or 0,
        "persons": totals["persons"],
        "active_members": totals["active"] or 0,
        "declared": {name: {"declared": totals[f"declared {name}"], "stale": totals[f"stale {name}"], "values": values[name]} for name in declared},
        "inferred": {name: {"inferred": totals[f"inferred {name}"], "values": values[name]} for name in inferred},
    }
    return report


def _trend_chart(trend: list[dict], run_date: str, currency: str) -> str:
    """Daily revenue (the run date highlighted) over orders by kind of customer, as a ``data:`` URI."""
    dates = [d["order_date"] for d in trend]
    fig, (top, bottom) = charts.figure(8, 5, rows=2, share_x=True)
    top.bar(dates, [d["revenue"] for d in trend], color=[charts.ORANGE if str(d) == run_date else charts.BLUE for d in dates])
    top.set_ylabel(f"revenue ({currency})")
    top.set_title(f"Daily sales, {len(trend) // 7} weeks to {run_date}")
    below = [0] * len(trend)
    for kind, color, label in (("new_customer_orders", charts.GREEN, "new customers"), ("returning_customer_orders", charts.BLUE, "returning customers"),
                               ("guest_orders", charts.GREY, "guests")):
        values = [d[kind] for d in trend]
        bottom.bar(dates, values, bottom=below, color=color, label=label)
        below = [b + v for b, v in zip(below, values)]
    bottom.set_ylabel("orders")
    bottom.legend(loc="upper left")
    fig.autofmt_xdate()
    return charts.data_uri(fig)


def report_page_html(title: str, body: str) -> str:
    """Return a whole report page (the reports' one style) titled ``title`` around the HTML ``body``."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;margin:2em;max-width:62em}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #eee}"
        "td.num,th.num{text-align:right}.figure{font-size:1.6em;font-weight:bold}.unusual{color:#b3261e;font-weight:bold}"
        ".definition{background:#f4f6f8;padding:.6em 1em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _number(value, money: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if money or isinstance(value, float) else f"{value:,}"


def _change(value, base) -> str:
    return f"{value / base - 1:+.0%}" if value is not None and base else "–"


def write_report_csv(path: str, header: list[str], rows: list[list]) -> str:
    """Write ``header`` and ``rows`` as the CSV file ``path``, text cells neutralised against
    spreadsheet formulas; return ``path``."""
    # Values people typed (a declared occupation, a product name) are opened in spreadsheets:
    # neutralise those a spreadsheet would run as a formula.
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(safe_rows(rows))
    return files.write_text(path, text.getvalue())


def write_daily_sales(report: dict, folder: str, currency: str) -> list[str]:
    """Write the daily sales page (charts inline) and its figures as CSV into ``folder``; return
    the files written: ``<date>.html``, ``<date>.csv`` (figures and comparisons),
    ``<date>_trend.csv`` (one row per day) and ``<date>_top.csv`` (top categories and products)."""
    files.make_folder(folder)
    day, weeks = report["date"], report["trailing_weeks"]
    by_name = {f["figure"]: f for f in report["figures"]}
    rows = "".join(
        f"<tr class='{'unusual' if f['unusual'] else ''}' data-figure='{f['figure']}'><td>{html.escape(f['label'])}</td>"
        f"<td class='num'>{_number(f['value'])}</td><td class='num'>{_number(f['same_weekday_last_week'])}</td>"
        f"<td class='num'>{_change(f['value'], f['same_weekday_last_week'])}</td><td class='num'>{_number(f['trailing_average'])}</td>"
        f"<td class='num'>{_change(f['value'], f['trailing_average'])}</td>"
        f"<td class='num'>{_number(f['trailing_low'])} – {_number(f['trailing_high'])}</td></tr>"
        for f in report["figures"]
    )
    unusual = "".join(
        f"<li>{html.escape(f['label'])}: {_number(f['value'])}, {'above' if f['value'] > f['trailing_high'] else 'below'} "
        f"its range of the last {weeks} weeks ({_number(f['trailing_low'])} – {_number(f['trailing_high'])})</li>"
        for f in report["unusual"]
    ) or f"<li>Nothing: every figure is within its range of the last {weeks} weeks.</li>"

    def top_table(items: list[dict], what: str) -> str:
        body = "".join(
            f"<tr><td>{html.escape(str(i['name']))}</td><td class='num'>{_number(i['revenue'], True)}</td><td class='num'>{i['orders']:,}</td>"
            f"<td class='num'>{i['revenue_share']:.0%}</td></tr>" for i in items
        ) or "<tr><td colspan='4'>No sales.</td></tr>"
        return f"<table class='top'><tr><th>{what}</th><th class='num'>Revenue</th><th class='num'>Orders</th><th class='num'>Share</th></tr>{body}</table>"

    channels = "".join(f"<tr><td>{html.escape(str(c['channel']))}</td><td class='num'>{c['orders']:,}</td><td class='num'>{_number(c['revenue'], True)}</td></tr>" for c in report["by_channel"])
    revenue = by_name["revenue"]
    body = (
        f'<p class="figure">Revenue {_number(revenue["value"], True)} {html.escape(currency)} · {_number(by_name["orders"]["value"])} orders</p>'
        f"<p>{_change(revenue['value'], revenue['same_weekday_last_week'])} against the same weekday last week, "
        f"{_change(revenue['value'], revenue['trailing_average'])} against the average day of the last {weeks} weeks.</p>"
        f"<h2>Unusual today</h2><ul class='unusual-list'>{unusual}</ul>"
        f"<h2>Figures</h2><table class='figures'><tr><th>Figure</th><th class='num'>{day}</th><th class='num'>Same weekday last week</th><th class='num'>Change</th>"
        f"<th class='num'>Average day, last {weeks} weeks</th><th class='num'>Change</th><th class='num'>Range, last {weeks} weeks</th></tr>{rows}</table>"
        f"<h2>Trend</h2><img alt='daily trend' src='{_trend_chart(report['trend'], day, currency)}'>"
        f"<h2>Top categories</h2>{top_table(report['top_categories'], 'Category')}"
        f"<h2>Top products</h2>{top_table(report['top_products'], 'Product')}"
        f"<h2>By channel</h2><table><tr><th>Channel</th><th class='num'>Orders</th><th class='num'>Revenue</th></tr>{channels}</table>"
        f"<p><small>A new customer's order is their first completed order; guests order without an account. Figures as CSV: "
        f"<a href='{day}.csv'>{day}.csv</a>, <a href='{day}_trend.csv'>{day}_trend.csv</a>, <a href='{day}_top.csv'>{day}_top.csv</a>.</small></p>"
    )
    page = files.write_text(os.path.join(folder, f"{day}.html"), report_page_html(f"Sales of {day}", body))
    columns = ["figure", "value", "same_weekday_last_week", "trailing_average", "trailing_low", "trailing_high", "unusual"]
    return [
        page,
        write_report_csv(os.path.join(folder, f"{day}.csv"), columns, [[f[c] for c in columns] for f in report["figures"]]),
        write_report_csv(os.path.join(folder, f"{day}_trend.csv"), ["order_date", *DAILY_FIGURES], [[d["order_date"], *[d[c] for c in DAILY_FIGURES]] for d in report["trend"]]),
        write_report_csv(os.path.join(folder, f"{day}_top.csv"), ["kind", "name", "revenue", "orders", "revenue_share"],
                   [[kind, i["name"], i["revenue"], i["orders"], i["revenue_share"]] for kind in ("category", "product") for i in report[f"top_{'categories' if kind == 'category' else 'products'}"]]),
    ]


def write_member_report(report: dict, folder: str) -> list[str]:
    """Write the monthly member page (charts inline) and its distributions as CSV into ``folder``;
    return the files written: ``<month>.html`` and ``<month>.csv``."""
    files.make_folder(folder)
    month, active = report["month"], report["active_members"]
    sections, rows = [], []
    for name, entry in report["declared"].items():
        share = entry["declared"] / active if active else 0.0
        stale = entry["stale"] / entry["declared"] if entry["declared"] else 0.0
        sections.append(
            f"<section class='declared'><h3>{html.escape(name.capitalize())} <small>(declared)</small></h3>"
            f"<p>Declared by {entry['declared']:,} of {active:,} active members ({share:.0%}); {stale:.0%} of those declarations are stale or implausible.</p>"
            f"<img alt='{html.escape(name)}' src='{charts.data_uri(charts.bar_chart(entry['values'], f'{name} (declared), active members', 'persons'))}'></section>"
        )
        rows += [["declared", name, value, persons] for value, persons in entry["values"]]
    for name, entry in report["inferred"].items():
        sections.append(
            f"<section class='inferred'><h3>{html.escape(name.capitalize())} <small>(inferred from behaviour)</small></h3>"
            f"<p>Inferred for {entry['inferred']:,} of {active:,} active members"
            + ("; the others have not bought or visited enough to tell.</p>" if entry["inferred"] < active else ".</p>")
            + f"<img alt='{html.escape(name)}' src='{charts.data_uri(charts.bar_chart(entry['values'], f'{name} (inferred), active members', 'persons'))}'></section>"
        )
        rows += [["inferred", name, value, persons] for value, persons in entry["values"]]
    body = (
        f'<p class="figure">{active:,} active members</p>'
        f"<p class='definition'>An <b>active member</b> is {html.escape(report['active_definition'])}. Every figure below is about active members.</p>"
        f"<table class='counts'><tr><th>Registrations</th><td class='num'>{report['registrations']:,}</td><td>accounts ever opened ({report['live_registrations']:,} not erased)</td></tr>"
        f"<tr><th>Persons</th><td class='num'>{report['persons']:,}</td><td>live registrations of one person (same email or phone) counted once</td></tr>"
        f"<tr><th>Active members</th><td class='num'>{active:,}</td><td>persons active as defined above</td></tr></table>"
        "<p>Declared attributes are what members said, often long ago; inferred ones come from what they do. Prefer the inferred ones.</p>"
        + "".join(sections)
        + f"<p><small>Distributions as CSV: <a href='{month}.csv'>{month}.csv</a>.</small></p>"
    )
    page = files.write_text(os.path.join(folder, f"{month}.html"), report_page_html(f"Members, {month} (as of {report['as_of']})", body))
    return [page, write_report_csv(os.path.join(folder, f"{month}.csv"), ["kind", "attribute", "value", "persons"], rows)]
