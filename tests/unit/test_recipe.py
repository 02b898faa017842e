"""The one model recipe (analyze.recipe) on a few hand-built persons, with a real MLflow store in
the test's folder: a model that does not beat its naive baseline on the holdout is not served."""

import datetime as dt

import pytest
from mlflow import MlflowClient

from crmlake import tracking
from crmlake.analyze import models
from crmlake.analyze.recipe import Baseline, ModelSpec, train_and_judge
from crmlake.config import load_conf

DAY = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    """One MLflow store (SQLite, its artifacts beside it) for the module: creating one takes
    seconds. Each test registers a model of its own name."""
    root = tmp_path_factory.mktemp("recipe")
    return load_conf(overrides=[f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/mlartifacts"], environ={})


@pytest.fixture
def persons(spark):
    """40 persons: those who last bought in the last 20 days buy again (label 1), the others do
    not; ``weekday`` (id mod 5) says nothing about it. Even ids train, odd ids are held out."""
    rows = [(f"P{i:02d}", float(i), float(i % 5), 1.0 if i <= 20 else 0.0) for i in range(1, 41)]
    frame = spark.createDataFrame(rows, "person_id string, recency_days double, weekday double, label double")
    return frame.where("CAST(substring(person_id, 2) AS INT) % 2 = 0"), frame.where("CAST(substring(person_id, 2) AS INT) % 2 = 1")


def spec(name: str, margin: float, baseline: Baseline | None, learns_from: str = "weekday") -> ModelSpec:
    """A propensity-like spec whose only candidate learns from ``learns_from``: by default
    ``weekday``, no better than chance."""
    return ModelSpec(
        name, name, ("recency_days", "weekday"), lambda: {f"{learns_from}_only": models.logistic_pipeline((learns_from,), 20)},
        lambda model, frame: models.propensity_metrics(model, frame, 100)[0], "auc", margin, models.with_propensity_score,
        baseline, metric_name="{}_holdout",
    )


RECENCY = Baseline("recency alone", lambda: models.logistic_pipeline(("recency_days",), 20))
WEEKDAY = Baseline("weekday alone", lambda: models.logistic_pipeline(("weekday",), 20))


def registry(conf, name: str) -> tuple[str, dict]:
    """Return (the champion's version, each version's served tag)."""
    client = MlflowClient(tracking_uri=conf.mlflow.tracking_uri, registry_uri=conf.mlflow.tracking_uri)
    served = {str(v.version): v.tags.get(tracking.SERVED_TAG) for v in client.search_model_versions(f"name = '{name}'")}
    return str(client.get_model_version_by_alias(name, tracking.CHAMPION).version), served


def test_a_model_that_loses_to_its_baseline_is_not_served_the_baseline_is(spark, conf, persons):
    train, holdout = persons
    facts = train_and_judge(conf, spec("loses-to-recency", 0.005, RECENCY), train, holdout, DAY, "fingerprint-1", {})
    # Recency separates the held-out buyers from the others entirely: the baseline's AUC is 1.
    assert facts["baseline_auc_holdout"] == 1.0 and facts["auc_holdout"] < 1.0
    assert facts["served"] == "baseline" and "does not beat the baseline (recency alone)" in facts["served_reason"]
    assert registry(conf, "loses-to-recency") == ("1", {"1": "baseline"})
    client = MlflowClient(conf.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(conf.mlflow.experiment).experiment_id], f"attributes.run_name = 'loses-to-recency-{DAY}'")
    assert run.data.tags["served"] == "baseline" and run.data.tags["served_reason"] == facts["served_reason"]
    # The champion is the baseline's pipeline: it takes the raw columns and ranks the recent buyer first.
    champion, _ = tracking.load_champion("loses-to-recency")
    scored = models.with_propensity_score(champion, spark.createDataFrame([("new", 2.0, 4.0), ("old", 39.0, 1.0)], "person_id string, recency_days double, weekday double"))
    score = {r["person_id"]: r["propensity_score"] for r in scored.collect()}
    assert score["new"] > 0.5 > score["old"]


def test_a_baseline_takes_the_alias_from_a_model_champion_that_does_not_beat_it_whatever_the_margin(conf, persons):
    train, holdout = persons
    first = train_and_judge(conf, spec("model-then-baseline", 1.0, None), train, holdout, DAY, "fingerprint-1", {})   # no baseline: the model is served
    assert first["served"] == "model" and first["champion_moved"] is True
    second = train_and_judge(conf, spec("model-then-baseline", 1.0, RECENCY), train, holdout, DAY, "fingerprint-2", {})
    assert second["served"] == "baseline" and second["champion_moved"] is True   # a model would have needed AUC + 1.0
    assert registry(conf, "model-then-baseline") == ("2", {"1": "model", "2": "baseline"})


def test_a_model_champion_that_no_longer_beats_its_baseline_keeps_no_margin_against_a_model_that_does(conf, persons):
    train, holdout = persons
    first = train_and_judge(conf, spec("stale-champion", 1.0, None), train, holdout, DAY, "fingerprint-1", {})   # no baseline: the weekday model is served
    assert first["served"] == "model" and first["champion_moved"] is True
    # The naive baseline scores what the champion scores on this holdout (it is the champion's very model): the
    # champion does not beat it, so it is no longer served, and the recency model that does beat it takes the
    # alias although it cannot beat the champion by the margin of 1.0.
    second = train_and_judge(conf, spec("stale-champion", 1.0, WEEKDAY, learns_from="recency_days"), train, holdout, DAY, "fingerprint-2", {})
    assert second["served"] == "model" and second["auc_holdout"] > second["baseline_auc_holdout"] == first["auc_holdout"]
    assert second["champion_moved"] is True
    assert registry(conf, "stale-champion") == ("2", {"1": "model", "2": "model"})
    # A champion that does beat its baseline keeps its margin: the same challenger again, now behind it by 0.
    third = train_and_judge(conf, spec("stale-champion", 1.0, WEEKDAY, learns_from="recency_days"), train, holdout, DAY, "fingerprint-3", {})
    assert third["champion_moved"] is False and registry(conf, "stale-champion")[0] == "2"
