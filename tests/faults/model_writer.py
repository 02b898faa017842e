"""Train, register and judge a tiny propensity model the way analyze does, in a process of its own
(the fault suite kills it at a crash point).

Usage: model_writer.py ROOT FINGERPRINT

ROOT holds the MLflow store (SQLite) and its artifacts. FINGERPRINT stands for what the model
is trained from: a run that finds a version registered from it fits nothing
(:func:`crmlake.tracking.resume`). The crash point is chosen by the environment,
``CRMLAKE_CRASH_AT`` (:mod:`crmlake.faults`). Prints the facts of the run as JSON.
"""

from __future__ import annotations

import json
import sys

from crmlake.config import Conf, load_conf

MODEL_NAME = "crmlake-propensity"
MARGIN = 0.005


def conf_for(root: str) -> Conf:
    """Return a conf whose MLflow store and artifacts live under ``root``, with one local core."""
    return load_conf(overrides=[f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/mlartifacts",
                                "spark.master=local[1]", "spark.conf.spark.sql.shuffle.partitions=1"], environ={})


def main(root: str, inputs_fingerprint: str) -> dict:
    """Register and judge a propensity model trained from ``inputs_fingerprint``, or finish a
    registration a killed run left; return the facts (version, champion_moved, ...)."""
    from pyspark.sql import functions as F

    from crmlake import tracking
    from crmlake.analyze import models
    from crmlake.analyze.features import PROPENSITY_FEATURES
    from crmlake.session import build_session

    conf = conf_for(root)
    spark = build_session(conf, "model-fault")
    # 400 persons: features spread by a hash of the person, buyers the half with more orders.
    persons = spark.range(400).select(*[(F.pmod(F.xxhash64("id", F.lit(c)), F.lit(100)) / 10.0).alias(c) for c in PROPENSITY_FEATURES])
    labelled = persons.withColumn("label", (F.col("frequency") + F.rand(7) * 3 > 6.5).cast("double"))
    train, holdout = labelled.limit(300).cache(), labelled.exceptAll(labelled.limit(300)).cache()

    def auc_of(model) -> float:
        return models.propensity_metrics(model, holdout, 100)[0]["auc"]

    tracking.configure(conf)   # as analyze does: the registry is read before any run starts
    facts = tracking.resume(MODEL_NAME, inputs_fingerprint, auc_of, MARGIN)
    if facts is None:
        model = models.propensity_candidates(max_iter=10)["logistic_regression"].fit(train)
        sample = train.select(*PROPENSITY_FEATURES).limit(5)
        with tracking.tracked_run(conf, f"propensity-{inputs_fingerprint}"):
            version, moved, reason = tracking.register_and_judge(
                model, MODEL_NAME, sample.toPandas(), models.with_propensity_score(model, sample).select("propensity_score").toPandas(),
                inputs_fingerprint, auc_of(model), auc_of, MARGIN,
            )
        facts = {"version": version, "champion_moved": moved, "champion_decision": reason}
    spark.stop()
    return facts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
