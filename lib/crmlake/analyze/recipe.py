"""One model recipe: every model analyze serves (propensity, segmentation, next best category,
each audience's uplift) is trained, judged, registered and promoted by :func:`train_and_judge`,
told what differs by a :class:`ModelSpec` (:mod:`crmlake.analyze.specs` declares them).

1. A version registered from the same inputs and conf (its fingerprint) is reused: nothing is
   fitted; one whose run was killed before judging it is judged now (:func:`crmlake.tracking.resume`).
2. Every candidate pipeline is fitted on the training persons and measured on the held-out
   persons (never trained on); the best by the spec's metric wins.
3. The winner is measured against the spec's naive baseline on the same holdout. A winner that
   does not beat it is not served: the baseline's pipeline is registered in its place, and this
   is said in the version's and the run's ``served`` tag, the run's ``served_reason`` tag, the
   summary (``served``, ``served_reason``) and a warning in the log.
4. The registered pipeline takes the ``champion`` alias when it beats the champion on the
   holdout by the spec's margin (:func:`crmlake.tracking.register_and_judge`: crash points
   ``analyze.registered`` and ``analyze.promoted``); a baseline needs no margin over a model
   champion. Persons are scored by the champion, whatever today's challenger did.

Preprocessing is a stage of each pipeline, so a registered version takes the raw feature
columns. A model that cannot learn from the data raises :class:`NotTrainable` before step 2, and
each model's step is isolated from the others' (:func:`isolated_model`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze.features import in_holdout
from crmlake.config import Conf
from crmlake.isolation import isolated
from crmlake.log import get_logger

log = get_logger("analyze")


class NotTrainable(RuntimeError):
    """The data up to the run date cannot train a model (for example: no buyers yet)."""


def isolated_model(name: str, run_date: dt.date, failures: dict):
    """Isolate one model's step (:func:`crmlake.isolation.isolated`): a model that cannot learn
    from the data (:class:`NotTrainable`: too little history, one class, no pairs) or whose
    step raises is listed in ``failures`` under ``name``, and the stage goes on without it:
    its scores come from its champion, or are null. No version is registered before a model
    is fitted, so the next run simply tries it again."""
    return isolated(name, failures, log, f"{name} for {run_date}", expected=(NotTrainable,))


@dataclass(frozen=True)
class Baseline:
    """The naive ranking a model must beat on the holdout to be served, and what is served in
    its place when it does not."""

    description: str                                        # said in the logs, the summary and MLflow
    pipeline: Callable[[], Pipeline]                        # untrained; fitted on the training persons when served
    measure: Callable[[DataFrame], dict] | None = None      # its metrics on a holdout; None: the spec's metrics of its fitted pipeline


@dataclass(frozen=True)
class ModelSpec:
    """What makes one model: its registered name, the raw columns its pipeline takes, the
    candidate estimators, how a fitted pipeline is measured on the holdout (``metrics``, of
    which ``judged_by`` decides: higher is better), the margin a challenger must beat the
    champion by, the columns it serves, and its naive baseline."""

    name: str                                               # the runs' name: <name>-<run date>
    registered_name: str
    features: tuple[str, ...]
    candidates: Callable[[], dict[str, Pipeline]]           # untrained pipelines by name, the preferred first (it wins a tie)
    metrics: Callable[[PipelineModel, DataFrame], dict]     # a fitted pipeline on a holdout -> metrics (non-numbers are details)
    judged_by: str
    margin: float
    scores: Callable[[PipelineModel, DataFrame], DataFrame]  # persons -> persons with the served columns
    baseline: Baseline | None = None
    metric_name: str = "{}"                                 # how a holdout metric is named in MLflow and the summary
    details: Callable[["Trial"], dict] | None = None        # logs what else the run keeps (in the active run); returns summary facts


@dataclass(frozen=True)
class Trial:
    """What one training found on the holdout: every candidate's metrics, the winner (fitted),
    the baseline's metrics (None without one) and what is registered (tracking.MODEL or BASELINE)."""

    candidates: dict[str, dict]
    winner: str
    model: PipelineModel
    baseline: dict | None
    served: str


def split_holdout(frame: DataFrame, share: float) -> tuple[DataFrame, DataFrame]:
    """Return (the rows of persons outside the holdout, the rows of the held-out persons):
    the stable hash of :func:`~crmlake.analyze.features.in_holdout`, the same on every run."""
    flagged = frame.withColumn("_holdout", in_holdout(F.col("person_id"), share))
    return flagged.where(~F.col("_holdout")).drop("_holdout"), flagged.where("_holdout").drop("_holdout")


def numbers(metrics: dict) -> dict[str, float]:
    """Return the metrics that are numbers (curves, tables and missing values left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_and_judge(conf: Conf, spec: ModelSpec, train: DataFrame, holdout: DataFrame, run_date: dt.date, inputs_fingerprint: str,
                    params: dict, tags: dict | None = None) -> dict:
    """Train ``spec``'s model on ``train``, judge it on ``holdout`` against its baseline and the
    champion, register what is served and move the champion alias (see the module's steps).

    Takes the training and held-out rows (with ``label`` and whatever the spec's metrics read),
    the fingerprint of what the model is trained from, and the params and tags to log. Returns
    version, candidate, served, served_reason, the winner's holdout metrics (``metric_name``)
    and the baseline's (``baseline_`` + that), the spec's details, champion_moved and
    champion_decision; or, when a version was trained from ``inputs_fingerprint`` already, the
    facts of :func:`crmlake.tracking.resume`.
    """
    import mlflow

    def score_of(model: PipelineModel) -> float:
        return spec.metrics(model, holdout)[spec.judged_by]

    today: dict[str, float] = {}   # the baseline's score on this holdout, measured once

    def baseline_score() -> float:
        if "score" not in today:
            baseline = spec.baseline
            measured = baseline.measure(holdout) if baseline.measure is not None else spec.metrics(baseline.pipeline().fit(train), holdout)
            today["score"] = measured[spec.judged_by]
        return today["score"]

    judged_against = baseline_score if spec.baseline is not None else None
    tracking.configure(conf)   # the registry is read before any run starts
    reused = tracking.resume(spec.registered_name, inputs_fingerprint, score_of, spec.margin, judged_against)
    if reused:
        return reused
    train, holdout = train.cache(), holdout.cache()
    with tracking.tracked_run(conf, f"{spec.name}-{run_date}", {"stage": "analyze", "run_date": str(run_date), **(tags or {})}):
        fitted = {name: pipeline.fit(train) for name, pipeline in spec.candidates().items()}
        measured = {name: spec.metrics(model, holdout) for name, model in fitted.items()}
        winner = max(measured, key=lambda name: measured[name][spec.judged_by])
        trial = _against_baseline(spec, train, holdout, measured, winner, fitted[winner])
        winning, against = measured[winner], trial.baseline
        if against is not None:
            today["score"] = against[spec.judged_by]
        if trial.served == tracking.BASELINE:
            reason = (f"challenger {winner} {spec.judged_by} {winning[spec.judged_by]:.4f} does not beat the baseline ({spec.baseline.description}) "
                      f"{against[spec.judged_by]:.4f} on the holdout: not served, the baseline is registered in its place")
            log.warning("%s for %s: %s", spec.name, run_date, reason)
        elif against is not None:
            reason = f"challenger {winner} {spec.judged_by} {winning[spec.judged_by]:.4f} beats the baseline ({spec.baseline.description}) {against[spec.judged_by]:.4f}"
        else:
            reason = "no naive baseline: the challenger is registered"
        holdout_metrics = {spec.metric_name.format(k): v for k, v in numbers(winning).items()}
        holdout_metrics.update({"baseline_" + spec.metric_name.format(k): v for k, v in numbers(against or {}).items()})
        if len(fitted) > 1:
            mlflow.log_metrics({f"{name}.{k}": v for name, m in measured.items() for k, v in numbers(m).items()})
        mlflow.log_metrics(holdout_metrics)
        mlflow.log_params({**params, "features": ",".join(spec.features), "candidates": ",".join(fitted), "winner": winner,
                           "baseline": spec.baseline.description if spec.baseline is not None else "none"})
        mlflow.set_tags({tracking.SERVED_TAG: trial.served, "served_reason": reason})
        facts = spec.details(trial) if spec.details is not None else {}
        sample = train.select(*spec.features).limit(5)
        version, moved, decision = tracking.register_and_judge(
            trial.model, spec.registered_name, sample.toPandas(), spec.scores(trial.model, sample).drop(*spec.features).toPandas(), inputs_fingerprint,
            (against if trial.served == tracking.BASELINE else winning)[spec.judged_by], score_of, spec.margin, trial.served, judged_against,
        )
    train.unpersist()
    holdout.unpersist()
    return {"version": version, "candidate": winner, "served": trial.served, "served_reason": reason, **{k: round(v, 4) for k, v in holdout_metrics.items()},
            **facts, "champion_moved": moved, "champion_decision": decision}


def _against_baseline(spec: ModelSpec, train: DataFrame, holdout: DataFrame, measured: dict, winner: str, model: PipelineModel) -> Trial:
    """Measure the spec's baseline on ``holdout``; return the trial, serving the baseline's
    pipeline (fitted on ``train``) when the winner does not beat it."""
    if spec.baseline is None:
        return Trial(measured, winner, model, None, tracking.MODEL)
    fitted = None if spec.baseline.measure is not None else spec.baseline.pipeline().fit(train)
    against = spec.baseline.measure(holdout) if fitted is None else spec.metrics(fitted, holdout)
    if measured[winner][spec.judged_by] > against[spec.judged_by]:
        return Trial(measured, winner, model, against, tracking.MODEL)
    return Trial(measured, winner, fitted or spec.baseline.pipeline().fit(train), against, tracking.BASELINE)
