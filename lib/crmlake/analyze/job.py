"""The analyze stage: value, loyalty, lifetime value, segments and propensity per person, and reports.

* Propensity is trained point in time: features as of ``cutoff = date - label_days`` from
  the lake as it stood then (order lines rebuilt from bronze's status history, profiles from
  ``silver.customer_history``: :mod:`crmlake.analyze.features`), label = a completed order
  in the ``label_days`` after the cutoff (the most recent complete label window; orders that
  follow our contacts included: campaign outcomes are labels). A stable hash of the person
  holds the same persons out on every run. Logistic regression and gradient-boosted trees
  compete on that holdout; the winner is registered, and the alias ``champion`` moves to it
  only when it beats the current champion on the same holdout by ``champion_margin`` (the
  reason is logged as the run's ``champion_decision`` tag).
* Segments: KMeans with k chosen by silhouette over ``k_range``, named from centroids; the
  champion moves by the same rule (silhouette on today's persons, ``champion_margin``).
* Persons are scored by each model's ``champion``, not by today's challenger; the versions
  used are columns of the scores.
* A model version carries a fingerprint of its inputs (run date, input tables' Delta
  versions) and conf section: a rerun of a date with unchanged data and conf fits,
  registers and moves nothing.
* Lifetime value: BG/NBD + Gamma-Gamma (:mod:`crmlake.analyze.clv`).
* Value tiers and the loyalty ladder (:mod:`crmlake.analyze.value`); the Pareto curve.

Every person scored lands in ``gold.customer_scores`` (partition ``score_date``: a rerun of
a date replaces that date only). Reports are written every run, models permitting or not.
"""

from __future__ import annotations

import datetime as dt
import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import categories, clv, models, reports
from crmlake.analyze.companies import company_members, company_scores
from crmlake.analyze.features import (
    FEATURE_COLUMNS, customer_behaviour, in_holdout, members_as_of, order_lines_as_of, with_deciles, with_purchase_label, with_rfm_scores,
)
from crmlake.analyze.value import ValueRules, pareto_curve, revenue_share_by, with_loyalty_level, with_value_tier
from crmlake.config import Conf
from crmlake.lake import Lake
from crmlake.log import get_logger, timed
from crmlake.people import ACCOUNT, with_order_person_id, with_person_id, with_session_person_id
from crmlake.summaries import REPORTS_DIR, SEGMENTS_JSON, VALUE_TIERS_JSON, write_summary

log = get_logger("analyze")
SCORES = "gold.customer_scores"
NEXT_BEST_CATEGORY = "gold.next_best_category"
COMPANY_SCORES = "gold.company_scores"
COMPANIES = "silver.companies"
PARETO = "gold.pareto"


INPUT_TABLES = ("bronze.orders", "silver.customer_history", "silver.identity_map", "silver.sessions", "silver.customer_360")


class NotTrainable(RuntimeError):
    """The data up to the run date cannot train a model (for example: no buyers yet)."""


def reused_version(registered_name: str, inputs_fingerprint: str) -> dict | None:
    """Return the facts of a rerun when a version of ``registered_name`` was already trained
    from ``inputs_fingerprint`` (same data, same conf): nothing is fitted, registered or moved."""
    version = tracking.version_with_fingerprint(registered_name, inputs_fingerprint)
    if version is None:
        return None
    reason = f"version {version} was trained from the same inputs and conf ({inputs_fingerprint}): nothing registered, champion unchanged"
    log.info("%s: %s", registered_name, reason)
    return {"version": version, "reused": True, "champion_moved": False, "champion_decision": reason}


def train_propensity(conf: Conf, labelled: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Fit the candidates on persons outside the holdout, pick the winner on the held-out persons,
    register it, and move ``champion`` to it only if it beats the champion there.

    Takes members with point-in-time features as of ``run_date - label_days`` and ``label``
    (a purchase in the label window up to ``run_date``: the most recent complete one). The
    holdout is a stable hash of the person (:func:`in_holdout`), so no model ever trained on
    it. Returns version, candidate, metrics, champion_moved and champion_decision; or, when
    a version was trained from ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    p = conf.get("analyze.propensity")
    reused = reused_version(p["model_name"], inputs_fingerprint)
    if reused:
        return reused
    counts = labelled.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")).first()
    positives, rows = int(counts["positives"] or 0), int(counts["rows"])
    cutoff = run_date - dt.timedelta(days=int(p["label_days"]))
    if positives == 0 or positives == rows:
        raise NotTrainable(f"propensity for {run_date}: {positives} of {rows} members bought between {cutoff} and {run_date}; training needs buyers and non-buyers")
    split = labelled.withColumn("_holdout", in_holdout(F.col("person_id"), float(p["holdout_share"])))
    train, holdout = split.where(~F.col("_holdout")).drop("_holdout").cache(), split.where("_holdout").drop("_holdout").cache()
    candidates = models.propensity_candidates(int(p["max_iter"]), int(p.get("trees", 40)), int(p.get("tree_depth", 4)), int(p["seed"]))
    with tracking.tracked_run(conf, f"propensity-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        results = {}
        for name, pipeline in candidates.items():
            fitted = pipeline.fit(train)
            results[name] = (fitted, *models.propensity_metrics(fitted, holdout))
            mlflow.log_metrics({f"{name}.{k}": v for k, v in results[name][1].items()})
        winner = max(results, key=lambda n: results[n][1]["auc"])
        model, metrics, calibration = results[winner]
        mlflow.log_params({"cutoff": str(cutoff), "label_days": p["label_days"], "features": ",".join(FEATURE_COLUMNS),
                           "holdout_share": p["holdout_share"], "holdout": "hash of person_id", "candidates": ",".join(candidates), "winner": winner})
        mlflow.log_metrics({**{f"{k}_holdout": v for k, v in metrics.items()}, "rows": float(rows), "base_rate": positives / rows})
        mlflow.log_dict({"calibration": calibration}, "calibration.json")
        sample = train.select(*FEATURE_COLUMNS).limit(5)
        version = tracking.log_spark_model(
            model, "model", p["model_name"], sample.toPandas(), models.with_propensity_score(model, sample).select("propensity_score").toPandas(),
            inputs_fingerprint,
        )
        champion_auc = None
        if tracking.champion_version(p["model_name"]) is not None:
            champion_auc = models.propensity_metrics(tracking.load_champion(p["model_name"])[0], holdout)[0]["auc"]
        moved, reason = tracking.promote_if_better(p["model_name"], version, metrics["auc"], champion_auc, float(p.get("champion_margin", 0.005)))
        mlflow.set_tag("champion_decision", reason)
    train.unpersist()
    holdout.unpersist()
    return {"version": version, "candidate": winner, "metrics": metrics, "champion_moved": moved, "champion_decision": reason}


def named_segments(model, frame: DataFrame, columns: list[str]) -> tuple[DataFrame, list[dict], dict]:
    """Assign segments with a fitted segmentation and name them from their profile.

    Takes the model, persons with the log features, and the columns to keep. Returns (the
    persons with segment_id and segment name, the per-segment profile, the overall means).
    """
    assigned = model.transform(frame).select(*columns, F.col("segment").alias("segment_id"))
    measures = ("recency_days", "frequency", "monetary", "tenure_days", "sessions_30d")
    # Safe to collect: one row per segment, and one overall row.
    profile = [r.asDict() for r in assigned.groupBy("segment_id").agg(F.count(F.lit(1)).alias("persons"), *[F.avg(c).alias(c) for c in measures]).collect()]
    overall = assigned.agg(*[F.avg(c).alias(c) for c in measures]).first().asDict()
    names = models.name_segments([{**r, "segment": r["segment_id"]} for r in profile], overall)
    for row in profile:
        row["segment"] = names[row["segment_id"]]
    mapping = F.create_map(*[x for sid, name in names.items() for x in (F.lit(sid), F.lit(name))])
    return assigned.withColumn("segment", mapping[F.col("segment_id")]), profile, overall


def train_segments(conf: Conf, frame: DataFrame, run_date: dt.date, report_dir: str, inputs_fingerprint: str) -> dict:
    """Choose k by silhouette, log and register the segmentation; move ``champion`` to it only
    when its silhouette on today's persons beats the champion's by ``champion_margin``.

    Takes persons with the log features (:func:`models.with_log_features`). Returns version,
    k, silhouette, segments, champion_moved and champion_decision; or, when a version was
    trained from ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    s = conf.get("analyze.segmentation")
    reused = reused_version(s["model_name"], inputs_fingerprint)
    if reused:
        return reused
    low, high = (int(v) for v in s.get("k_range", [s.get("k", 5), s.get("k", 5)]))
    with tracking.tracked_run(conf, f"segmentation-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model, k, silhouettes = models.choose_segmentation(frame, list(range(low, high + 1)), int(s["seed"]))
        _, profile, overall = named_segments(model, frame, frame.columns)
        mlflow.log_params({"k_range": f"{low}-{high}", "k": k, "features": ",".join(models.SEGMENT_FEATURES)})
        for candidate_k, score in silhouettes.items():
            mlflow.log_metric("silhouette", score, step=candidate_k)
        mlflow.log_metric("silhouette_best", silhouettes[k])
        mlflow.log_dict({"segments": profile, "overall": overall}, "segment_profile.json")
        chart = _silhouette_chart(silhouettes, os.path.join(report_dir, "segments_silhouette.png"))
        mlflow.log_artifact(chart)
        inputs = [f"log_{c}" for c in models.SEGMENT_FEATURES]
        sample = frame.select(*inputs).limit(5)
        version = tracking.log_spark_model(model, "model", s["model_name"], sample.toPandas(), model.transform(sample).select("segment").toPandas(), inputs_fingerprint)
        champion_silhouette = None
        if tracking.champion_version(s["model_name"]) is not None:
            champion_silhouette = models.silhouette(tracking.load_champion(s["model_name"])[0], frame)
        moved, reason = tracking.promote_if_better(s["model_name"], version, silhouettes[k], champion_silhouette, float(s.get("champion_margin", 0.01)))
        mlflow.set_tag("champion_decision", reason)
    return {"version": version, "k": k, "silhouette": round(silhouettes[k], 4), "segments": sorted(r["segment"] for r in profile),
            "champion_moved": moved, "champion_decision": reason}


def train_next_best_category(conf: Conf, pairs: DataFrame, bought: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Fit the next-best-category model on persons outside the holdout, measure its top-1 and
    top-3 hit rates on the held-out persons against the most-popular-category ranking,
    register it, and move ``champion`` to it when its top-3 hit rate beats the champion's by
    ``champion_margin``.

    Takes labelled person × category pairs as of the cutoff (:func:`categories.person_categories`)
    and the categories each person bought in the label window. Returns version, metrics,
    champion_moved and champion_decision; or, when a version was trained from
    ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    c = conf.get("analyze.next_best_category")
    reused = reused_version(c["model_name"], inputs_fingerprint)
    if reused:
        return reused
    counts = pairs.agg(F.count(F.lit(1)).alias("pairs"), F.sum("label").alias("bought")).first()  # one aggregate row
    if not counts["bought"] or counts["bought"] == counts["pairs"]:
        raise NotTrainable(f"next best category for {run_date}: {int(counts['bought'] or 0)} of {counts['pairs']} person x category pairs "
                           "bought in the label window; training needs both (too little history before the cutoff)")
    split = pairs.withColumn("_holdout", in_holdout(F.col("person_id"), float(conf.get("analyze.propensity.holdout_share"))))
    train, holdout = split.where(~F.col("_holdout")).drop("_holdout").cache(), split.where("_holdout").drop("_holdout").cache()

    def hit_rates_of(model) -> dict:
        return categories.hit_rates(categories.with_category_rank(models.with_category_score(model, holdout), "score"), bought)

    with tracking.tracked_run(conf, f"next-best-category-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model = models.category_pipeline(int(c.get("max_iter", 50))).fit(train)
        metrics = hit_rates_of(model)
        baseline = categories.hit_rates(categories.with_category_rank(holdout, "category_popularity"), bought)
        mlflow.log_params({"label_days": conf.get("analyze.propensity.label_days"), "features": ",".join(categories.CATEGORY_FEATURES), "holdout": "hash of person_id",
                           "baseline": "most popular categories first"})
        mlflow.log_metrics({**{f"hit_rate_{k}": v for k, v in metrics.items()}, **{f"baseline_hit_rate_{k}": v for k, v in baseline.items()}})
        sample = train.select(*categories.CATEGORY_FEATURES).limit(5)
        version = tracking.log_spark_model(
            model, "model", c["model_name"], sample.toPandas(), models.with_category_score(model, sample).select("score").toPandas(), inputs_fingerprint
        )
        champion_top_3 = None
        if tracking.champion_version(c["model_name"]) is not None:
            champion_top_3 = hit_rates_of(tracking.load_champion(c["model_name"])[0])["top_3"]
        moved, reason = tracking.promote_if_better(c["model_name"], version, metrics["top_3"], champion_top_3, float(c.get("champion_margin", 0.005)))
        mlflow.set_tag("champion_decision", reason)
    train.unpersist()
    holdout.unpersist()
    return {"version": version, "hit_rates": {k: round(v, 4) for k, v in metrics.items()}, "baseline_hit_rates": {k: round(v, 4) for k, v in baseline.items()},
            "champion_moved": moved, "champion_decision": reason}


def next_best_categories(lake: Lake, conf: Conf, behaviour: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Rank every person's categories with the champion, write their ``top_n`` best to
    gold.next_best_category for ``run_date``; return (person_id, top_category,
    top_category_score) and the facts."""
    c = conf.get("analyze.next_best_category")
    model, version = tracking.load_champion(c["model_name"])
    ranked = categories.with_category_rank(models.with_category_score(model, categories.person_categories(behaviour, order_lines, run_date)), "score")
    table = ranked.where(F.col("rank") <= int(c.get("top_n", 3))).select(
        "person_id", "category", "score", F.col("rank").cast("int").alias("rank"),
        F.lit(f"{c['model_name']}/{version}").alias("category_model"), F.lit(run_date).alias("score_date"),
    )
    rows = lake.overwrite_where(NEXT_BEST_CATEGORY, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    top = lake.read(NEXT_BEST_CATEGORY).where(f"score_date = DATE'{run_date}' AND rank = 1").select(
        "person_id", F.col("category").alias("top_category"), F.col("score").alias("top_category_score"), "category_model"
    )
    return top, {"champion": version, "rows": rows}


def _silhouette_chart(silhouettes: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(list(silhouettes), list(silhouettes.values()), marker="o")
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette")
    ax.set_title("Segmentation: silhouette by k")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def lifetime_value(conf: Conf, spark: SparkSession, people: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Fit BG/NBD and Gamma-Gamma as of ``run_date``, log them; return (people with value columns, facts)."""
    import mlflow

    c = conf.get("analyze.lifetime_value") or {}
    unit_days, horizon = float(c.get("time_unit_days", 7)), int(c.get("horizon_days", 90))
    stats = clv.purchase_statistics(order_lines, run_date, unit_days).cache()
    repeat_buyers = stats.where("frequency > 0").count()
    if repeat_buyers < int(c.get("min_repeat_buyers", 20)):
        log.warning("lifetime value skipped for %s: %d repeat buyers", run_date, repeat_buyers)
        stats.unpersist()
        unknown = [F.lit(None).cast("double").alias(c) for c in clv.value_columns(horizon)]
        return people.select("*", *unknown), {"skipped": f"{repeat_buyers} repeat buyers"}
    model = clv.fit_lifetime_value(stats, unit_days)
    at_bounds = clv.parameters_at_bounds(model.params())
    if at_bounds:
        log.warning("lifetime value for %s: %s stopped at the search bounds %s; the purchase history does not follow BG/NBD + Gamma-Gamma well",
                    run_date, ", ".join(at_bounds), clv.PARAMETER_BOUNDS)
    with tracking.tracked_run(conf, f"lifetime-value-{run_date}", {"stage": "analyze", "run_date": str(run_date), "parameters_at_bounds": ",".join(at_bounds) or "none"}):
        mlflow.log_params({"time_unit_days": unit_days, "horizon_days": horizon, "model": "BG/NBD + Gamma-Gamma (Fader, Hardie & Lee 2005)"})
        mlflow.log_metrics({**model.params(), "log_likelihood_bgnbd": model.log_likelihood_bgnbd, "log_likelihood_spend": model.log_likelihood_spend, "repeat_buyers": repeat_buyers})
    # Materialised while the statistics the predictions were keyed on are still cached.
    valued = clv.with_lifetime_value(spark, people, stats, model, horizon).localCheckpoint()
    stats.unpersist()
    return valued, {**{k: round(v, 4) for k, v in model.params().items()}, "time_unit_days": unit_days, "parameters_at_bounds": at_bounds}


def write_reports(lake: Lake, conf: Conf, order_lines: DataFrame, people: DataFrame, run_date: dt.date, report_dir: str) -> list[str]:
    """Write the daily sales page and the month's member page; log them to MLflow; return the pages."""
    import mlflow

    r = conf.get("analyze.reports") or {}
    accounts = lake.read("silver.customers")
    sales = reports.daily_sales(order_lines, accounts, run_date, conf.get("business.timezone"),
                                int(r.get("trend_days", 56)), int(r.get("trailing_weeks", 4)), int(r.get("top_n", 5)))
    members = reports.member_report(people, accounts, run_date)
    files = reports.write_daily_sales(sales, os.path.join(report_dir, "daily_sales"), str(conf.get("business.currency", "")))
    files += reports.write_member_report(members, os.path.join(report_dir, "members"))
    figures = {f["figure"]: f["value"] for f in sales["figures"] if f["value"] is not None}
    with tracking.tracked_run(conf, f"reports-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        mlflow.log_metrics({**{k: float(v) for k, v in figures.items()}, "unusual_figures": len(sales["unusual"]), "active_members": members["active_members"]})
        for path in files:
            mlflow.log_artifact(path, artifact_path="reports")
    return [f for f in files if f.endswith(".html")]


def pareto(lake: Lake, report_dir: str, persons: DataFrame, run_date: dt.date) -> dict:
    """Write gold.pareto for ``run_date`` and its chart; return the headline shares."""
    curve = pareto_curve(persons, "monetary").withColumn("score_date", F.lit(run_date))
    lake.overwrite_where(PARETO, curve, f"score_date = DATE'{run_date}'", partition_by=["score_date"])
    # Safe to collect: 100 points.
    points = [(r["top_share"], r["value_share"]) for r in lake.read(PARETO).where(f"score_date = DATE'{run_date}'").orderBy("top_share").collect()]
    if not points:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot([0] + [x for x, _ in points], [0] + [y for _, y in points])
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("share of customers (best first)")
    ax.set_ylabel("share of revenue")
    ax.set_title(f"Pareto curve, {run_date}")
    fig.tight_layout()
    os.makedirs(report_dir, exist_ok=True)
    fig.savefig(os.path.join(report_dir, f"pareto_{run_date}.png"))
    plt.close(fig)
    top20 = max((y for x, y in points if x <= 0.2), default=0.0)
    return {"revenue_share_of_top_20pct": top20}


def inputs_of(lake: Lake, run_date: dt.date) -> dict:
    """Return what today's models are trained from: the run date and each input table's Delta version."""
    return {"run_date": str(run_date), **{table: lake.version(table) for table in INPUT_TABLES}}


def write_profiles(exports_root: str, scores: DataFrame, run_date: dt.date) -> None:
    """Write the segment and value-tier summaries of ``run_date``'s scores for the marketers' page."""
    for name, group in ((SEGMENTS_JSON, "segment"), (VALUE_TIERS_JSON, "value_tier")):
        # Safe to collect: one row per segment or tier.
        rows = [r.asDict() for r in revenue_share_by(scores, group).collect()]
        write_summary(exports_root, name, {"score_date": run_date.isoformat(), "rows": rows})


def score_companies(lake: Lake, conf: Conf, order_lines: DataFrame, identity_map: DataFrame, scores: DataFrame, run_date: dt.date) -> int:
    """Write gold.company_scores for ``run_date`` (partition score_date) from silver.companies and
    the persons' scores; return the companies scored."""
    rules = ValueRules.from_conf(conf.get("analyze.value"), conf.get("analyze.loyalty"))
    companies = lake.read(COMPANIES)
    members = with_person_id(company_members(companies), identity_map, (ACCOUNT, F.col("account_id")))
    horizon = int((conf.get("analyze.lifetime_value") or {}).get("horizon_days", 90))
    table = company_scores(
        companies, order_lines, members, scores.select("person_id", "predicted_value"), run_date, horizon, int(conf.get("analyze.rfm_quantiles", 5)), rules
    ).withColumn("score_date", F.lit(run_date))
    return lake.overwrite_where(COMPANY_SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Train (or, on a rerun with the same inputs and conf, reuse) the models, score every person
    for ``run_date`` with each model's champion, and write the reports; return versions and metrics."""
    lake = Lake(spark, conf)
    tz = conf.get("business.timezone")
    report_dir = os.path.join(conf.exports_root, REPORTS_DIR)
    p, s = conf.get("analyze.propensity"), conf.get("analyze.segmentation")
    people = lake.read("silver.customer_360").cache()
    identity_map = lake.read("silver.identity_map")
    history, bronze_orders = lake.read("silver.customer_history"), lake.read("bronze.orders")
    # Everything as it stood at the end of run_date (a backfill of an old date sees that day's lake).
    order_lines = with_order_person_id(order_lines_as_of(bronze_orders, run_date, tz), identity_map).cache()
    sessions = with_session_person_id(lake.read("silver.sessions"), identity_map).cache()
    inputs = inputs_of(lake, run_date)

    def members(as_of: dt.date) -> DataFrame:
        # Profiles valid then, of persons still live now (an erased person is never scored nor learnt from).
        return members_as_of(history, identity_map, as_of, tz).join(people.select("person_id"), "person_id", "left_semi")

    facts: dict = {}
    if lake.read("silver.sessions").isEmpty():  # every source is optional: say what the features lack
        facts["missing_inputs"] = ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]
        log.warning("analyze for %s: %s", run_date, facts["missing_inputs"][0])
    try:
        with timed(log, f"reports for {run_date}") as f:
            f["reports"] = write_reports(lake, conf, order_lines, people, run_date, report_dir)
        facts["reports"] = f["reports"]
        with timed(log, f"train propensity for {run_date}") as f:
            cutoff = run_date - dt.timedelta(days=int(p["label_days"]))
            lines_then = with_order_person_id(order_lines_as_of(bronze_orders, cutoff, tz), identity_map)
            behaviour_then = customer_behaviour(members(cutoff), lines_then, sessions, cutoff, tz).cache()
            labelled = with_purchase_label(behaviour_then, order_lines, cutoff, int(p["label_days"]))
            trained = train_propensity(conf, labelled, run_date, tracking.fingerprint(inputs, {"propensity": p, "timezone": tz}))
            f.update({k: v for k, v in trained.items() if k in ("version", "candidate", "champion_moved", "reused")})
            if "metrics" in trained:
                f["auc_holdout"] = round(trained["metrics"]["auc"], 4)
        facts["propensity"] = {**dict(f), "champion_decision": trained["champion_decision"]}
        with timed(log, f"train next best category for {run_date}") as f:
            # The propensity's label window: features as of its cutoff, the categories bought after it.
            c = conf.get("analyze.next_best_category")
            bought = categories.categories_bought(order_lines, cutoff, int(p["label_days"]))
            pairs = categories.with_category_label(categories.person_categories(behaviour_then, lines_then, cutoff), bought)
            settings = {"next_best_category": c, "label_days": p["label_days"], "holdout_share": p["holdout_share"], "timezone": tz}
            f.update(train_next_best_category(conf, pairs, bought, run_date, tracking.fingerprint(inputs, settings)))
        facts["next_best_category"] = dict(f)
    except NotTrainable as reason:
        # Early dates of a backfill: nothing to learn from yet. Not a failure of the job.
        log.warning("analyze skipped: %s", reason)
        for cached in (people, order_lines, sessions, behaviour_then):
            cached.unpersist()
        return {**facts, "skipped": str(reason)}
    behaviour = customer_behaviour(members(run_date), order_lines, sessions, run_date, tz)
    frame = models.with_log_features(behaviour).cache()
    with timed(log, f"train segments for {run_date}") as f:
        f.update(train_segments(conf, frame, run_date, report_dir, tracking.fingerprint(inputs, {"segmentation": s, "timezone": tz})))
    facts["segmentation"] = dict(f)
    with timed(log, f"lifetime value for {run_date}") as f:
        horizon = int((conf.get("analyze.lifetime_value") or {}).get("horizon_days", 90))
        valued, f_clv = lifetime_value(conf, spark, people.select("person_id"), order_lines, run_date)
        f.update(f_clv)
    facts["lifetime_value"] = dict(f)
    with timed(log, f"score persons for {run_date}") as f:
        propensity_model, propensity_version = tracking.load_champion(p["model_name"])
        segment_model, segment_version = tracking.load_champion(s["model_name"])
        f.update(propensity_champion=propensity_version, segmentation_champion=segment_version)
        segmented = named_segments(segment_model, frame, behaviour.columns)[0]
        top_categories, f["next_best_category"] = next_best_categories(lake, conf, behaviour, order_lines, run_date)
        rules = ValueRules.from_conf(conf.get("analyze.value"), conf.get("analyze.loyalty"))
        recent = order_lines.where(
            (F.col("status") == "completed") & (F.col("order_date") > F.lit(run_date - dt.timedelta(days=horizon))) & (F.col("order_date") <= F.lit(run_date))
        ).groupBy("person_id").agg(F.sum("line_amount").cast("double").alias("current_value"))
        scored = models.with_propensity_score(propensity_model, segmented)
        scored = with_deciles(scored, "propensity_score", "propensity_decile")
        scored = with_rfm_scores(scored, int(conf.get("analyze.rfm_quantiles", 5)))
        table = (
            scored.join(valued, "person_id", "left")
            .join(top_categories, "person_id", "left")
            .join(recent, "person_id", "left")
            .withColumn("predicted_value", F.col(f"expected_value_{horizon}d"))
            .join(people.select("person_id", "marketing_consent", "orders", "open_complaints", "referred_buyers"), "person_id", "left")
            .transform(lambda df: with_value_tier(df, rules))
            .transform(lambda df: with_loyalty_level(df, rules))
            # The versions that made these scores: each model's champion, whatever today's challenger did.
            .withColumn("propensity_model", F.lit(f"{p['model_name']}/{propensity_version}"))
            .withColumn("segment_model", F.lit(f"{s['model_name']}/{segment_version}"))
            .withColumn("score_date", F.lit(run_date))
        )
        f["persons_scored"] = lake.overwrite_where(SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
        scores = lake.read(SCORES).where(f"score_date = DATE'{run_date}'")
        # Safe to collect: a handful of tiers and rungs.
        f["value_tiers"] = {r["value_tier"]: r["count"] for r in scores.groupBy("value_tier").count().collect()}
        f["loyalty_ladder"] = {r["loyalty_level"]: r["count"] for r in scores.groupBy("loyalty_level").count().collect()}
        f.update(pareto(lake, report_dir, scores, run_date))
        write_profiles(conf.exports_root, scores, run_date)
    facts["scores"] = dict(f)
    if lake.exists(COMPANIES):
        with timed(log, f"company scores for {run_date}") as f:
            f["companies_scored"] = score_companies(lake, conf, order_lines, identity_map, lake.read(SCORES).where(f"score_date = DATE'{run_date}'"), run_date)
        facts["companies"] = dict(f)
    for cached in (people, order_lines, sessions, behaviour_then, frame):
        cached.unpersist()
    return facts
