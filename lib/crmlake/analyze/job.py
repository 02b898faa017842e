"""The analyze stage: RFM, a purchase-propensity model and behavioural segments, tracked in MLflow.

Propensity is trained on a time split: features as of ``cutoff = date - label_days``,
label = a completed order in the ``label_days`` after the cutoff; then every person is
scored on features as of the run date. Both models are logged with their signature and
registered; the scores land in ``gold.customer_scores`` (partition ``score_date``, so a
rerun of a date replaces that date only).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import models
from crmlake.analyze.features import FEATURE_COLUMNS, customer_behaviour, with_deciles, with_purchase_label, with_rfm_scores
from crmlake.config import Conf
from crmlake.lake import Lake
from crmlake.log import get_logger, timed
from crmlake.people import with_order_person_id, with_session_person_id

log = get_logger("analyze")
SCORES = "gold.customer_scores"


class NotTrainable(RuntimeError):
    """The data up to the run date cannot train a model (for example: no buyers yet)."""


def train_propensity(conf: Conf, people, order_lines, sessions, run_date: dt.date, tz: str):
    """Fit, evaluate, log and register the propensity model; return (model, version, auc)."""
    import mlflow

    p = conf.get("analyze.propensity")
    cutoff = run_date - dt.timedelta(days=int(p["label_days"]))
    labelled = with_purchase_label(customer_behaviour(people, order_lines, sessions, cutoff, tz), order_lines, cutoff, int(p["label_days"]))
    counts = labelled.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")).first()
    positives, rows = int(counts["positives"] or 0), int(counts["rows"])
    if positives == 0 or positives == rows:
        raise NotTrainable(f"propensity for {run_date}: {positives} of {rows} members bought between {cutoff} and {run_date}; training needs buyers and non-buyers")
    train, holdout = labelled.randomSplit([1 - float(p["holdout_share"]), float(p["holdout_share"])], seed=int(p["seed"]))
    train = train.cache()
    with tracking.tracked_run(conf, f"propensity-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model = models.propensity_pipeline(int(p["max_iter"])).fit(train)
        auc = models.area_under_roc(model, holdout)
        mlflow.log_params({"cutoff": str(cutoff), "label_days": p["label_days"], "features": ",".join(FEATURE_COLUMNS), "holdout_share": p["holdout_share"], "max_iter": p["max_iter"]})
        mlflow.log_metrics({"auc_holdout": auc, "rows": float(rows), "base_rate": positives / rows})
        sample = train.select(*FEATURE_COLUMNS).limit(5)
        version = tracking.log_spark_model(
            model, "model", p["model_name"], sample.toPandas(), models.with_propensity_score(model, sample).select("propensity_score").toPandas()
        )
    train.unpersist()
    tracking.ensure_champion(p["model_name"], version)
    return model, version, auc


def train_segments(conf: Conf, behaviour, run_date: dt.date):
    """Fit, log and register the KMeans segmentation; return (model, version, silhouette)."""
    import mlflow

    s = conf.get("analyze.segmentation")
    frame = models.with_log_features(behaviour).cache()
    with tracking.tracked_run(conf, f"segmentation-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model = models.segmentation_pipeline(int(s["k"]), int(s["seed"])).fit(frame)
        score = models.silhouette(model, frame)
        mlflow.log_params({"k": s["k"], "features": ",".join(models.SEGMENT_FEATURES)})
        mlflow.log_metric("silhouette", score)
        inputs = [f"log_{c}" for c in models.SEGMENT_FEATURES]
        sample = frame.select(*inputs).limit(5)
        version = tracking.log_spark_model(model, "model", s["model_name"], sample.toPandas(), model.transform(sample).select("segment").toPandas())
    frame.unpersist()
    tracking.ensure_champion(s["model_name"], version)
    return model, version, score


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Score every member for ``run_date``; return model versions and metrics."""
    lake = Lake(spark, conf)
    tz = conf.get("business.timezone")
    people = lake.read("silver.customer_360")
    identity_map = lake.read("silver.identity_map")
    order_lines = with_order_person_id(lake.read("silver.order_lines"), identity_map).cache()
    sessions = with_session_person_id(lake.read("silver.sessions"), identity_map).cache()
    facts: dict = {}
    try:
        with timed(log, f"train propensity for {run_date}") as f:
            propensity, propensity_version, auc = train_propensity(conf, people, order_lines, sessions, run_date, tz)
            f.update(version=propensity_version, auc_holdout=round(auc, 4))
    except NotTrainable as reason:
        # Early dates of a backfill: nothing to learn from yet. Not a failure of the job.
        log.warning("analyze skipped: %s", reason)
        order_lines.unpersist()
        sessions.unpersist()
        return {"skipped": str(reason)}
    facts["propensity"] = dict(f)
    behaviour = customer_behaviour(people, order_lines, sessions, run_date, tz).cache()
    with timed(log, f"train segments for {run_date}") as f:
        segmentation, segmentation_version, score = train_segments(conf, behaviour, run_date)
        f.update(version=segmentation_version, silhouette=round(score, 4))
    facts["segmentation"] = dict(f)
    with timed(log, f"score members for {run_date}") as f:
        scored = models.with_propensity_score(propensity, behaviour)
        scored = with_deciles(scored, "propensity_score", "propensity_decile")
        scored = with_rfm_scores(scored, int(conf.get("analyze.rfm_quantiles", 5)))
        segments = segmentation.transform(models.with_log_features(behaviour)).select("person_id", "segment")
        p, s = conf.get("analyze.propensity"), conf.get("analyze.segmentation")
        table = (
            scored.join(segments, "person_id", "left")
            .join(people.select("person_id", "marketing_consent"), "person_id", "left")
            .withColumn("propensity_model", F.lit(f"{p['model_name']}/{propensity_version}"))
            .withColumn("segment_model", F.lit(f"{s['model_name']}/{segmentation_version}"))
            .withColumn("score_date", F.lit(run_date))
        )
        f["members_scored"] = lake.overwrite_where(SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    facts["scores"] = dict(f)
    order_lines.unpersist()
    sessions.unpersist()
    behaviour.unpersist()
    return facts
