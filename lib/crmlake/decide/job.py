"""The decide stage: the audiences defined in conf, from the run date's scores, exported."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crmlake.config import Conf
from crmlake.decide.audiences import Audience, select_audience
from crmlake.decide.export import publish_audience
from crmlake.lake import Lake
from crmlake.log import get_logger, timed

log = get_logger("decide")


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Export every audience of ``decide.audiences`` for ``run_date``; return the export folders."""
    lake = Lake(spark, conf)
    scores = lake.read("gold.customer_scores").where(F.col("score_date") == F.lit(run_date)).cache() if lake.exists("gold.customer_scores") else None
    # One row: the models that scored this date.
    models = scores.select("propensity_model", "segment_model").limit(1).collect() if scores is not None else []
    if not models:
        log.warning("decide skipped: no scores for %s (analyze skipped or has not run)", run_date)
        return {"exports": [], "skipped": f"no scores for {run_date}"}
    exports = []
    for entry in conf.get("decide.audiences") or []:
        audience = Audience.from_conf(entry)
        with timed(log, f"audience {audience.name} for {run_date}") as facts:
            members = select_audience(scores, audience)
            model_refs = models[0].asDict()
            folder = publish_audience(
                members,
                conf.exports_root,
                audience.name,
                run_date,
                {
                    "description": audience.description,
                    "rule": audience.rule,
                    "channel": audience.channel,
                    "models": {
                        kind: {"name": ref.split("/")[0], "version": ref.split("/")[1]}
                        for kind, ref in (("propensity", model_refs.get("propensity_model")), ("segmentation", model_refs.get("segment_model")))
                        if ref
                    },
                },
            )
            facts["folder"] = folder
            exports.append(folder)
    scores.unpersist()
    return {"exports": exports}
