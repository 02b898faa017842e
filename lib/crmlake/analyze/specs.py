"""The models analyze trains, each declared as a spec for the one recipe
(:func:`crmlake.analyze.recipe.train_and_judge`): what it learns from, when the data cannot
train it (:class:`~crmlake.analyze.recipe.NotTrainable`), its candidates, metric, margin and
naive baseline.

* Propensity: features as of the cutoff (PROPENSITY_FEATURES: behaviour and email
  engagement), label = a completed order in the ``label_days`` after it; logistic regression and gradient-boosted trees, judged by holdout AUC; baseline:
  recency alone (a logistic regression on ``recency_days``).
* Segmentation: KMeans for each k of ``k_range``, judged by silhouette on the persons it was
  fitted on (at most ``analyze.training_max_persons``); no naive baseline.
* Next best category: a logistic regression over person × category pairs, judged by the
  holdout top-3 hit rate; baseline: the most popular categories first, for everyone.
* Uplift, per audience: a T-learner on its contacted and control persons, judged by the
  holdout Qini coefficient; baseline: the propensity ranking when contacted (served as the
  average uplift for everyone, so decide orders the audience by the rest of its ``order_by``).

The holdout is a stable hash of the person (:func:`~crmlake.analyze.recipe.split_holdout`),
the same persons on every run: a champion trained on an earlier day never saw them.
"""

from __future__ import annotations

import datetime as dt
import os

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import charts
from crmlake.analyze import categories, models, uplift
from crmlake.analyze.features import FEATURE_COLUMNS, PROPENSITY_FEATURES, training_sample
from crmlake.analyze.recipe import Baseline, ModelSpec, NotTrainable, Trial, split_holdout, train_and_judge
from crmlake.config import Conf

SEGMENT_CANDIDATE = "k_{}"   # a segmentation candidate's name, by its k


def propensity(conf: Conf, labelled: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Train and judge the propensity model; return the recipe's facts (``auc_holdout``, ...).

    Takes members with point-in-time features as of ``run_date - label_days`` and ``label``.
    Raises NotTrainable when none or all of them bought in the label window.
    """
    import mlflow

    p = conf.analyze.propensity
    accuracy, max_persons = conf.analyze.ranking.quantile_accuracy, conf.analyze.training_max_persons
    counts = labelled.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")).first()   # one row
    positives, rows = int(counts["positives"] or 0), counts["rows"]
    cutoff = run_date - dt.timedelta(days=p.label_days)
    if positives == 0 or positives == rows:
        raise NotTrainable(f"propensity for {run_date}: {positives} of {rows} members bought between {cutoff} and {run_date}; training needs buyers and non-buyers")
    rest, holdout = split_holdout(labelled, p.holdout_share)
    train, share = training_sample(rest, round(rows * (1 - p.holdout_share)), max_persons)

    def metrics(model, frame: DataFrame) -> dict:
        measured, calibration = models.propensity_metrics(model, frame, accuracy)
        return {**measured, "calibration": calibration}

    def details(trial: Trial) -> dict:
        mlflow.log_dict({"calibration": trial.candidates[trial.winner]["calibration"]}, "calibration.json")
        return {}

    spec = ModelSpec(
        "propensity", p.model_name, PROPENSITY_FEATURES, lambda: models.propensity_candidates(p.max_iter, p.trees, p.tree_depth, p.seed),
        metrics, "auc", p.champion_margin, models.with_propensity_score,
        Baseline("recency alone: a logistic regression on recency_days", lambda: models.logistic_pipeline(("recency_days",), p.max_iter)),
        metric_name="{}_holdout", details=details,
    )
    params = {"cutoff": cutoff, "label_days": p.label_days, "holdout_share": p.holdout_share, "holdout": "hash of person_id", "rows": rows,
              "base_rate": round(positives / rows, 6), "training_max_persons": max_persons, "training_share": round(share, 4)}
    return train_and_judge(conf, spec, train, holdout, run_date, inputs_fingerprint, params)


def segmentation(conf: Conf, persons: DataFrame, run_date: dt.date, report_dir: str, inputs_fingerprint: str) -> dict:
    """Choose k by silhouette and judge the segmentation; return the recipe's facts with k and
    the segments' names, and draw the silhouette by k into ``report_dir``.

    Takes persons with SEGMENT_FEATURES and tenure_days as they are (the log scale is the
    pipeline's). Fits and silhouettes use at most ``analyze.training_max_persons`` of them.
    """
    import mlflow

    s = conf.analyze.segmentation
    max_persons = conf.analyze.training_max_persons
    trained_on, share = training_sample(persons, persons.count(), max_persons)
    low, high = s.k_range

    def details(trial: Trial) -> dict:
        _, profile, overall = models.named_segments(trial.model, persons, persons.columns)
        mlflow.log_dict({"segments": profile, "overall": overall}, "segment_profile.json")
        ks = [int(name.removeprefix(SEGMENT_CANDIDATE.format(""))) for name in trial.candidates]
        silhouettes = [m["silhouette"] for m in trial.candidates.values()]
        chart = charts.line_chart({"silhouette": (ks, silhouettes)}, "Segmentation: silhouette by k", "k", "silhouette", markers=True, size=(5, 3))
        mlflow.log_artifact(charts.save(chart, os.path.join(report_dir, "segments_silhouette.png")))
        return {"k": ks[list(trial.candidates).index(trial.winner)], "segments": sorted(r["segment"] for r in profile)}

    spec = ModelSpec(
        "segmentation", s.model_name, models.SEGMENT_FEATURES,
        lambda: {SEGMENT_CANDIDATE.format(k): models.segmentation_pipeline(k, s.seed) for k in range(low, high + 1)},
        lambda model, frame: {"silhouette": models.silhouette(model, frame)}, "silhouette", s.champion_margin, models.with_segment,
        metric_name="{}_best", details=details,
    )
    params = {"k_range": f"{low}-{high}", "training_max_persons": max_persons, "training_share": round(share, 4)}
    return train_and_judge(conf, spec, trained_on, trained_on, run_date, inputs_fingerprint, params)


def next_best_category(conf: Conf, pairs: DataFrame, bought: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Train and judge the next-best-category model; return the recipe's facts
    (``hit_rate_top_1``, ``hit_rate_top_3`` and the baseline's).

    Takes labelled person × category pairs as of the cutoff (:func:`categories.person_categories`)
    and the categories each person bought in the label window. Raises NotTrainable when no pair
    or every pair was bought.
    """
    c, p = conf.analyze.next_best_category, conf.analyze.propensity
    max_persons = conf.analyze.training_max_persons
    counts = pairs.agg(F.count(F.lit(1)).alias("pairs"), F.sum("label").alias("bought"), F.approx_count_distinct("person_id").alias("persons")).first()  # one row
    if not counts["bought"] or counts["bought"] == counts["pairs"]:
        raise NotTrainable(f"next best category for {run_date}: {int(counts['bought'] or 0)} of {counts['pairs']} person x category pairs "
                           "bought in the label window; training needs both (too little history before the cutoff)")
    rest, holdout = split_holdout(pairs, p.holdout_share)
    train, share = training_sample(rest, round(counts["persons"] * (1 - p.holdout_share)), max_persons)

    def hit_rates(model, frame: DataFrame) -> dict:
        return categories.hit_rates(categories.with_category_rank(models.with_category_score(model, frame), "score"), bought)

    spec = ModelSpec(
        "next-best-category", c.model_name, categories.CATEGORY_FEATURES,
        lambda: {"logistic_regression": models.logistic_pipeline(categories.CATEGORY_FEATURES, c.max_iter)}, hit_rates, "top_3",
        c.champion_margin, models.with_category_score, Baseline("most popular categories first", models.popularity_pipeline), metric_name="hit_rate_{}",
    )
    params = {"label_days": p.label_days, "holdout": "hash of person_id", "training_max_persons": max_persons, "training_share": round(share, 4)}
    return train_and_judge(conf, spec, train, holdout, run_date, inputs_fingerprint, params)


def uplift_model_name(conf: Conf, audience: str) -> str:
    """Return the registered name of ``audience``'s uplift model: ``<analyze.uplift.model_name>-<audience>``."""
    return f"{conf.analyze.uplift.model_name}-{audience}"


def uplift_of(conf: Conf, audience: str, examples: DataFrame, run_date: dt.date, report_dir: str, inputs_fingerprint: str) -> dict:
    """Train and judge ``audience``'s uplift model (registered as :func:`uplift_model_name`);
    return the recipe's facts (``qini``, ``baseline_qini``, ...), and draw both rankings' Qini
    curves into ``report_dir``.

    Takes the audience's labelled contacts (:func:`uplift.uplift_examples`). Raises
    NotTrainable when either group has fewer than ``min_group_persons`` persons, or none or
    all of a group converted.
    """
    import mlflow

    u = conf.analyze.uplift
    accuracy = conf.analyze.ranking.quantile_accuracy
    # Safe to collect: two rows, one per group.
    groups = {r["group"]: (r["persons"], int(r["converted"] or 0))
              for r in examples.groupBy("group").agg(F.countDistinct("person_id").alias("persons"), F.sum("label").alias("converted")).collect()}
    for group in ("treatment", "control"):
        persons, converted = groups.get(group, (0, 0))
        if persons < u.min_group_persons or converted in (0, persons):
            raise NotTrainable(f"uplift of {audience} for {run_date}: {persons} {group} persons, {converted} converted, in its contact dates with a "
                               f"complete attribution window; training needs at least {u.min_group_persons} (analyze.uplift.min_group_persons) and both outcomes")
    train, holdout = split_holdout(models.with_group_weights(examples), conf.analyze.propensity.holdout_share)

    def qini_of(ranked: DataFrame, score_col: str) -> dict:
        measured = uplift.qini(uplift.decile_outcomes(ranked, score_col, accuracy))
        return {**measured, "uplift_top_decile": measured["uplift_by_decile"][0]}

    def details(trial: Trial) -> dict:
        measured, baseline = trial.candidates[trial.winner], trial.baseline
        mlflow.log_metric("average_uplift_holdout", measured["curve"][-1])   # the campaign's effect on the held-out persons, whatever the ranking
        for ranking, result in (("uplift_by_decile", measured), ("baseline_uplift_by_decile", baseline)):
            for decile, value in enumerate(result["uplift_by_decile"], start=1):
                if value is not None:   # None: no contacted or no control person there
                    mlflow.log_metric(ranking, value, step=decile)
        mlflow.log_dict({"uplift": measured, "baseline_propensity": baseline}, "qini.json")
        chart = uplift.qini_chart({"uplift": measured, "propensity": baseline}, f"Qini, {audience}, {run_date}")
        mlflow.log_artifact(charts.save(chart, os.path.join(report_dir, f"qini_{audience}.png")))
        return {}

    spec = ModelSpec(
        f"uplift-{audience}", uplift_model_name(conf, audience), FEATURE_COLUMNS,
        lambda: {"t_learner": models.uplift_pipeline(u.max_iter)}, lambda model, frame: qini_of(models.with_uplift(model, frame), "uplift"), "qini",
        u.champion_margin, models.with_uplift,
        Baseline("propensity score when contacted; served as the average uplift for everyone", lambda: models.uplift_pipeline(u.max_iter, columns=()),
                 measure=lambda frame: qini_of(frame, "score")),
        details=details,
    )
    # Safe to collect: the audience's few contact dates.
    dates = sorted(str(r["contact_date"]) for r in examples.select("contact_date").distinct().collect())
    params = {"audience": audience, "contact_dates": ",".join(dates), "attribution_days": conf.campaigns.attribution_days,
              "learner": "T-learner: logistic regression on contacted, on control persons", "holdout": "hash of person_id",
              **{f"{group}_persons": persons for group, (persons, _) in groups.items()}}
    return train_and_judge(conf, spec, train, holdout, run_date, inputs_fingerprint, params, tags={"audience": audience})
