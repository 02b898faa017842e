"""What analyze writes besides the models: the next best categories and the company scores
(gold tables, by each model's champion), the Pareto curve and its chart, the reports' pages,
and the segment and value-tier summaries of the marketers' page.

Each writer replaces its ``run_date``'s partition or files only, so a rerun of a date leaves
the other dates as they were.
"""

from __future__ import annotations

import datetime as dt
import os

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake import charts, tracking
from crmlake.analyze import categories, models, reports
from crmlake.analyze.companies import company_members, company_scores
from crmlake.analyze.value import pareto_curve, revenue_share_by
from crmlake.config import Conf
from crmlake.lake import Lake
from crmlake.people import ACCOUNT, with_person_id
from crmlake.summaries import SEGMENTS_JSON, VALUE_TIERS_JSON, write_summary

NEXT_BEST_CATEGORY = "gold.next_best_category"
COMPANY_SCORES = "gold.company_scores"
COMPANIES = "silver.companies"
PARETO = "gold.pareto"


def model_column(registered_name: str, version: str | None) -> Column:
    """Return the ``<registered_name>/<version>`` that made a score, or null when no version did."""
    return F.lit(f"{registered_name}/{version}" if version is not None else None).cast("string")


def next_best_categories(lake: Lake, conf: Conf, behaviour: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Rank every person's categories with the champion, write their ``top_n`` best to
    gold.next_best_category for ``run_date``; return (person_id, top_category,
    top_category_score, category_model) and the facts. Without a champion yet, the date's
    partition is emptied and the frame returned is empty."""
    c = conf.analyze.next_best_category
    model, version = tracking.champion(c.model_name)
    if model is None:
        table = lake.spark.createDataFrame([], lake.catalog.spec(NEXT_BEST_CATEGORY).ddl)
    else:
        ranked = categories.with_category_rank(models.with_category_score(model, categories.person_categories(behaviour, order_lines, run_date)), "score")
        table = ranked.where(F.col("rank") <= c.top_n).select(
            "person_id", "category", "score", F.col("rank").cast("int").alias("rank"),
            model_column(c.model_name, version).alias("category_model"), F.lit(run_date).alias("score_date"),
        )
    rows = lake.overwrite_where(NEXT_BEST_CATEGORY, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    top = lake.read(NEXT_BEST_CATEGORY).where(f"score_date = DATE'{run_date}' AND rank = 1").select(
        "person_id", F.col("category").alias("top_category"), F.col("score").alias("top_category_score"), "category_model"
    )
    return top, {"champion": version, "rows": rows}


def write_reports(lake: Lake, conf: Conf, order_lines: DataFrame, people: DataFrame, run_date: dt.date, report_dir: str) -> list[str]:
    """Write the daily sales page and the month's member page; log them to MLflow; return the pages."""
    import mlflow

    r = conf.analyze.reports
    accounts = lake.read("silver.customers")
    sales = reports.daily_sales(order_lines, accounts, run_date, conf.business.timezone, r.trend_days, r.trailing_weeks, r.top_n)
    members = reports.member_report(people, accounts, run_date)
    files = reports.write_daily_sales(sales, os.path.join(report_dir, "daily_sales"), conf.business.currency)
    files += reports.write_member_report(members, os.path.join(report_dir, "members"))
    figures = {f["figure"]: f["value"] for f in sales["figures"] if f["value"] is not None}
    with tracking.tracked_run(conf, f"reports-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        mlflow.log_metrics({**{k: float(v) for k, v in figures.items()}, "unusual_figures": len(sales["unusual"]), "active_members": members["active_members"]})
        for path in files:
            mlflow.log_artifact(path, artifact_path="reports")
    return [f for f in files if f.endswith(".html")]


def pareto(lake: Lake, conf: Conf, report_dir: str, persons: DataFrame, run_date: dt.date,
           value_col: str = "monetary", measure: str = "revenue", table: str = PARETO) -> dict:
    """Write the Pareto curve of ``value_col`` (the ``measure`` it is: revenue, profit) to
    ``table`` for ``run_date`` and its chart (``<reports>/<table's name>_<date>.png``); return
    the headline share (``<measure>_share_of_top_20pct``).

    Takes ``persons`` as read from a table: the curve's running sum reads it more than once.
    """
    ranking = conf.analyze.ranking
    curve = pareto_curve(persons, value_col, ranking.pareto_ranges, ranking.quantile_accuracy).withColumn("score_date", F.lit(run_date))
    lake.overwrite_where(table, curve, f"score_date = DATE'{run_date}'", partition_by=["score_date"])
    # Safe to collect: 100 points.
    points = [(r["top_share"], r["value_share"]) for r in lake.read(table).where(f"score_date = DATE'{run_date}'").orderBy("top_share").collect()]
    if not points:
        return {}
    curve_line = ([0] + [x for x, _ in points], [0] + [y for _, y in points])
    chart = charts.line_chart({measure: curve_line}, f"Pareto curve, {run_date}", "share of customers (best first)", f"share of {measure}",
                              reference=((0, 0), (1, 1), "equal shares"))
    charts.save(chart, os.path.join(report_dir, f"{table.split('.')[-1]}_{run_date}.png"))
    top20 = max((y for x, y in points if x <= 0.2), default=0.0)
    return {f"{measure}_share_of_top_20pct": top20}


def write_profiles(exports_root: str, scores: DataFrame, run_date: dt.date) -> None:
    """Write the segment and value-tier summaries of ``run_date``'s scores for the marketers' page."""
    for name, group in ((SEGMENTS_JSON, "segment"), (VALUE_TIERS_JSON, "value_tier")):
        # Safe to collect: one row per segment or tier.
        rows = [r.asDict() for r in revenue_share_by(scores, group).collect()]
        write_summary(exports_root, name, {"score_date": run_date.isoformat(), "rows": rows})


def score_companies(lake: Lake, conf: Conf, order_lines: DataFrame, identity_map: DataFrame, scores: DataFrame, run_date: dt.date,
                    forecast_served: bool) -> int:
    """Write gold.company_scores for ``run_date`` (partition score_date) from silver.companies and
    the persons' scores; return the companies scored. ``forecast_served``: the persons'
    predicted values are the lifetime-value model's (summed per company); otherwise a
    company's predicted value is its own current value, as a person's is."""
    companies = lake.read(COMPANIES)
    members = with_person_id(company_members(companies), identity_map, (ACCOUNT, F.col("account_id")))
    table = company_scores(
        companies, order_lines, members, scores.select("person_id", "predicted_value") if forecast_served else None, run_date,
        conf.analyze.lifetime_value.horizon_days,
        conf.analyze.rfm_quantiles, conf.analyze.value, conf.analyze.ranking.quantile_accuracy,
    ).withColumn("score_date", F.lit(run_date))
    return lake.overwrite_where(COMPANY_SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
