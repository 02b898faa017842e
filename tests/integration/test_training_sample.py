"""Segmentation trained on a bounded sample of persons: the job's path when persons exceed ``analyze.training_max_persons``."""

from __future__ import annotations

import datetime as dt

import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import specs
from crmlake.analyze.features import training_sample
from crmlake.analyze.models import SEGMENT_FEATURES, named_segments, silhouette


def test_segments_are_fitted_on_a_bounded_sample_and_every_person_is_named(spark, conf, tmp_path):
    conf = conf.with_overrides(["analyze.training_max_persons=500", "analyze.segmentation.k_range=[3,3]"])
    # 2,000 persons, two kinds (light and heavy buyers), each measure spread by a hash of the person.
    spread = lambda c: (F.pmod(F.xxhash64("id", F.lit(c)), F.lit(100)) / 100.0)  # noqa: E731
    heavy = F.col("id") % 2 == 0
    persons = spark.range(2_000).select(
        F.format_string("P%d", "id").alias("person_id"),
        *[(F.when(heavy, 50.0).otherwise(1.0) * (1 + spread(c))).alias(c) for c in (*SEGMENT_FEATURES, "tenure_days") if c != "recency_days"],
        (F.when(heavy, 5.0).otherwise(200.0) * (1 + spread("recency"))).alias("recency_days"),
    )
    frame = persons.cache()   # as they are: the log scale is the pipeline's
    facts = specs.segmentation(conf, frame, dt.date(2026, 11, 21), str(tmp_path / "reports"), "fingerprint-1")
    assert facts["k"] == 3 and len(facts["segments"]) == 3
    client = MlflowClient(conf.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(conf.mlflow.experiment).experiment_id], "attributes.run_name = 'segmentation-2026-11-21'")
    assert run.data.params["training_max_persons"] == "500" and run.data.params["training_share"] == "0.25"
    # k was judged on the sampled persons, not on all: the logged silhouette is the model's on the
    # persons training_sample picks (about 500), and not its silhouette on all 2,000.
    model, _ = tracking.load_champion(conf.analyze.segmentation.model_name)
    sampled, _ = training_sample(frame, 2_000, 500)
    assert abs(sampled.count() - 500) < 100
    assert run.data.metrics["silhouette_best"] == pytest.approx(silhouette(model, sampled), abs=1e-9)
    assert run.data.metrics["silhouette_best"] != pytest.approx(silhouette(model, frame), abs=1e-9)
    # The champion scores everyone, sampled or not: every person gets one of the named segments.
    named = named_segments(model, frame, frame.columns)[0]
    assert named.count() == 2_000 and {r["segment"] for r in named.select("segment").distinct().collect()} == set(facts["segments"])
    frame.unpersist()
