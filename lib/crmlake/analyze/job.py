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
  registers and moves nothing, except judging a version whose run was killed between
  registering and judging it (:func:`crmlake.tracking.resume`).
* Uplift, per audience of ``decide.audiences`` (:mod:`crmlake.analyze.uplift`): once contact
  dates of the audience have a complete attribution window, a T-learner on its contacted vs
  control persons, judged by its holdout Qini against the propensity ranking, registered as
  ``<analyze.uplift.model_name>-<audience>`` under the same champion rule; its champion
  scores every person into ``gold.audience_uplift`` (decide orders by it on request).
* Lifetime value: BG/NBD + Gamma-Gamma (:mod:`crmlake.analyze.clv`).
* Value tiers and the loyalty ladder (:mod:`crmlake.analyze.value`); the Pareto curve.

Every person scored lands in ``gold.customer_scores`` (partition ``score_date``: a rerun of
a date replaces that date only). Reports are written every run, models permitting or not.

Each model is an isolated piece (:func:`isolated_model`): one that cannot train (too little
history, one class, no pairs, an error in its fit) is logged and listed with its reason in
the summary's ``failed``, and the stage goes on. RFM, value tiers and the loyalty
ladder are written for every person whatever the models did; a failed model's columns come
from its existing champion, or are null. The next run tries the failed model again.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import os

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import categories, clv, models, reports, uplift
from crmlake.analyze.companies import company_members, company_scores
from crmlake.analyze.features import (
    FEATURE_COLUMNS, customer_behaviour, in_holdout, in_session_window, members_as_of, order_lines_as_of, training_sample, with_deciles,
    with_purchase_label, with_rfm_scores,
)
from crmlake.analyze.value import ValueRules, pareto_curve, revenue_share_by, with_loyalty_level, with_value_tier
from crmlake.config import Conf
from crmlake.lake import Lake
from crmlake.isolation import isolated
from crmlake.log import get_logger, timed
from crmlake.people import ACCOUNT, with_order_person_id, with_person_id, with_session_person_id
from crmlake.summaries import REPORTS_DIR, SEGMENTS_JSON, VALUE_TIERS_JSON, write_summary

log = get_logger("analyze")
SCORES = "gold.customer_scores"
NEXT_BEST_CATEGORY = "gold.next_best_category"
COMPANY_SCORES = "gold.company_scores"
COMPANIES = "silver.companies"
PARETO = "gold.pareto"
UPLIFT = "gold.audience_uplift"
CONTACT_HISTORY = "gold.contact_history"


INPUT_TABLES = ("bronze.orders", "silver.customer_history", "silver.identity_map", "silver.sessions", "silver.customer_360")


def training_max_persons(conf: Conf) -> int:
    """Return how many persons at most a model trains on (``analyze.training_max_persons``:
    :func:`crmlake.analyze.features.training_sample`)."""
    return int(conf.get("analyze.training_max_persons"))


def quantile_accuracy(conf: Conf) -> int:
    """Return the percentile_approx accuracy of every decile, score and share among persons
    (``analyze.ranking.quantile_accuracy``: :mod:`crmlake.analyze.ranking`)."""
    return int(conf.get("analyze.ranking.quantile_accuracy"))


class NotTrainable(RuntimeError):
    """The data up to the run date cannot train a model (for example: no buyers yet)."""


def isolated_model(name: str, run_date: dt.date, failures: dict):
    """Isolate one model's step (:func:`crmlake.isolation.isolated`): a model that cannot learn
    from the data (:class:`NotTrainable`: too little history, one class, no pairs) or whose
    step raises is listed in ``failures`` under ``name``, and the stage goes on without it:
    its scores come from its champion, or are null. No version is registered before a model
    is fitted, so the next run simply tries it again."""
    return isolated(name, failures, log, f"{name} for {run_date}", expected=(NotTrainable,))


def model_column(registered_name: str, version: str | None) -> Column:
    """Return the ``<registered_name>/<version>`` that made a score, or null when no version did."""
    return F.lit(f"{registered_name}/{version}" if version is not None else None).cast("string")


def train_propensity(conf: Conf, labelled: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Fit the candidates on persons outside the holdout, pick the winner on the held-out persons,
    register it, and move ``champion`` to it only if it beats the champion there.

    Takes members with point-in-time features as of ``run_date - label_days`` and ``label``
    (a purchase in the label window up to ``run_date``: the most recent complete one). The
    holdout is a stable hash of the person (:func:`in_holdout`), so no model ever trained on
    it; the candidates train on at most ``analyze.training_max_persons`` of the others.
    Returns version, candidate, metrics, champion_moved and champion_decision; or, when a
    version was trained from ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    p = conf.get("analyze.propensity")
    margin = float(p.get("champion_margin", 0.005))
    split = labelled.withColumn("_holdout", in_holdout(F.col("person_id"), float(p["holdout_share"])))
    holdout = split.where("_holdout").drop("_holdout")

    def auc_of(model) -> float:
        return models.propensity_metrics(model, holdout, quantile_accuracy(conf))[0]["auc"]

    reused = tracking.resume(p["model_name"], inputs_fingerprint, auc_of, margin)
    if reused:
        return reused
    counts = labelled.agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")).first()
    positives, rows = int(counts["positives"] or 0), int(counts["rows"])
    cutoff = run_date - dt.timedelta(days=int(p["label_days"]))
    if positives == 0 or positives == rows:
        raise NotTrainable(f"propensity for {run_date}: {positives} of {rows} members bought between {cutoff} and {run_date}; training needs buyers and non-buyers")
    train, share = training_sample(split.where(~F.col("_holdout")).drop("_holdout"), round(rows * (1 - float(p["holdout_share"]))), training_max_persons(conf))
    train, holdout = train.cache(), holdout.cache()
    candidates = models.propensity_candidates(int(p["max_iter"]), int(p.get("trees", 40)), int(p.get("tree_depth", 4)), int(p["seed"]))
    with tracking.tracked_run(conf, f"propensity-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        results = {}
        for name, pipeline in candidates.items():
            fitted = pipeline.fit(train)
            results[name] = (fitted, *models.propensity_metrics(fitted, holdout, quantile_accuracy(conf)))
            mlflow.log_metrics({f"{name}.{k}": v for k, v in results[name][1].items()})
        winner = max(results, key=lambda n: results[n][1]["auc"])
        model, metrics, calibration = results[winner]
        mlflow.log_params({"cutoff": str(cutoff), "label_days": p["label_days"], "features": ",".join(FEATURE_COLUMNS),
                           "holdout_share": p["holdout_share"], "holdout": "hash of person_id", "candidates": ",".join(candidates), "winner": winner,
                           "training_max_persons": training_max_persons(conf), "training_share": round(share, 4)})
        mlflow.log_metrics({**{f"{k}_holdout": v for k, v in metrics.items()}, "rows": float(rows), "base_rate": positives / rows})
        mlflow.log_dict({"calibration": calibration}, "calibration.json")
        sample = train.select(*FEATURE_COLUMNS).limit(5)
        version, moved, reason = tracking.register_and_judge(
            model, p["model_name"], sample.toPandas(), models.with_propensity_score(model, sample).select("propensity_score").toPandas(),
            inputs_fingerprint, metrics["auc"], auc_of, margin,
        )
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
    when its silhouette on today's persons beats the champion's by ``champion_margin``. Fits and
    silhouettes are computed on at most ``analyze.training_max_persons`` of them.

    Takes persons with the log features (:func:`models.with_log_features`). Returns version,
    k, silhouette, segments, champion_moved and champion_decision; or, when a version was
    trained from ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    s = conf.get("analyze.segmentation")
    trained_on, share = training_sample(frame, frame.count(), training_max_persons(conf))

    def silhouette_of(model) -> float:
        return models.silhouette(model, trained_on)

    reused = tracking.resume(s["model_name"], inputs_fingerprint, silhouette_of, float(s.get("champion_margin", 0.01)))
    if reused:
        return reused
    low, high = (int(v) for v in s.get("k_range", [s.get("k", 5), s.get("k", 5)]))
    with tracking.tracked_run(conf, f"segmentation-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model, k, silhouettes = models.choose_segmentation(trained_on, list(range(low, high + 1)), int(s["seed"]))
        _, profile, overall = named_segments(model, frame, frame.columns)
        mlflow.log_params({"k_range": f"{low}-{high}", "k": k, "features": ",".join(models.SEGMENT_FEATURES),
                           "training_max_persons": training_max_persons(conf), "training_share": round(share, 4)})
        for candidate_k, score in silhouettes.items():
            mlflow.log_metric("silhouette", score, step=candidate_k)
        mlflow.log_metric("silhouette_best", silhouettes[k])
        mlflow.log_dict({"segments": profile, "overall": overall}, "segment_profile.json")
        chart = _silhouette_chart(silhouettes, os.path.join(report_dir, "segments_silhouette.png"))
        mlflow.log_artifact(chart)
        inputs = [f"log_{c}" for c in models.SEGMENT_FEATURES]
        sample = frame.select(*inputs).limit(5)
        version, moved, reason = tracking.register_and_judge(
            model, s["model_name"], sample.toPandas(), model.transform(sample).select("segment").toPandas(), inputs_fingerprint, silhouettes[k],
            silhouette_of, float(s.get("champion_margin", 0.01)),
        )
    return {"version": version, "k": k, "silhouette": round(silhouettes[k], 4), "segments": sorted(r["segment"] for r in profile),
            "champion_moved": moved, "champion_decision": reason}


def train_next_best_category(conf: Conf, pairs: DataFrame, bought: DataFrame, run_date: dt.date, inputs_fingerprint: str) -> dict:
    """Fit the next-best-category model on persons outside the holdout, measure its top-1 and
    top-3 hit rates on the held-out persons against the most-popular-category ranking (it
    trains on at most ``analyze.training_max_persons`` of the persons outside the holdout),
    register it, and move ``champion`` to it when its top-3 hit rate beats the champion's by
    ``champion_margin``.

    Takes labelled person × category pairs as of the cutoff (:func:`categories.person_categories`)
    and the categories each person bought in the label window. Returns version, metrics,
    champion_moved and champion_decision; or, when a version was trained from
    ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    c = conf.get("analyze.next_best_category")
    margin = float(c.get("champion_margin", 0.005))
    holdout_share = float(conf.get("analyze.propensity.holdout_share"))
    split = pairs.withColumn("_holdout", in_holdout(F.col("person_id"), holdout_share))
    holdout = split.where("_holdout").drop("_holdout")

    def hit_rates_of(model) -> dict:
        return categories.hit_rates(categories.with_category_rank(models.with_category_score(model, holdout), "score"), bought)

    def top_3_of(model) -> float:
        return hit_rates_of(model)["top_3"]

    reused = tracking.resume(c["model_name"], inputs_fingerprint, top_3_of, margin)
    if reused:
        return reused
    counts = pairs.agg(F.count(F.lit(1)).alias("pairs"), F.sum("label").alias("bought"), F.approx_count_distinct("person_id").alias("persons")).first()  # one row
    if not counts["bought"] or counts["bought"] == counts["pairs"]:
        raise NotTrainable(f"next best category for {run_date}: {int(counts['bought'] or 0)} of {counts['pairs']} person x category pairs "
                           "bought in the label window; training needs both (too little history before the cutoff)")
    train, share = training_sample(split.where(~F.col("_holdout")).drop("_holdout"), round(counts["persons"] * (1 - holdout_share)), training_max_persons(conf))
    train, holdout = train.cache(), holdout.cache()

    with tracking.tracked_run(conf, f"next-best-category-{run_date}", {"stage": "analyze", "run_date": str(run_date)}):
        model = models.category_pipeline(int(c.get("max_iter", 50))).fit(train)
        metrics = hit_rates_of(model)
        baseline = categories.hit_rates(categories.with_category_rank(holdout, "category_popularity"), bought)
        mlflow.log_params({"label_days": conf.get("analyze.propensity.label_days"), "features": ",".join(categories.CATEGORY_FEATURES), "holdout": "hash of person_id",
                           "baseline": "most popular categories first", "training_max_persons": training_max_persons(conf), "training_share": round(share, 4)})
        mlflow.log_metrics({**{f"hit_rate_{k}": v for k, v in metrics.items()}, **{f"baseline_hit_rate_{k}": v for k, v in baseline.items()}})
        sample = train.select(*categories.CATEGORY_FEATURES).limit(5)
        version, moved, reason = tracking.register_and_judge(
            model, c["model_name"], sample.toPandas(), models.with_category_score(model, sample).select("score").toPandas(), inputs_fingerprint,
            metrics["top_3"], top_3_of, margin,
        )
    train.unpersist()
    holdout.unpersist()
    return {"version": version, "hit_rates": {k: round(v, 4) for k, v in metrics.items()}, "baseline_hit_rates": {k: round(v, 4) for k, v in baseline.items()},
            "champion_moved": moved, "champion_decision": reason}


def next_best_categories(lake: Lake, conf: Conf, behaviour: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Rank every person's categories with the champion, write their ``top_n`` best to
    gold.next_best_category for ``run_date``; return (person_id, top_category,
    top_category_score, category_model) and the facts. Without a champion yet, the date's
    partition is emptied and the frame returned is empty."""
    c = conf.get("analyze.next_best_category")
    model, version = tracking.champion(c["model_name"])
    if model is None:
        table = lake.spark.createDataFrame([], lake.catalog.spec(NEXT_BEST_CATEGORY).ddl)
    else:
        ranked = categories.with_category_rank(models.with_category_score(model, categories.person_categories(behaviour, order_lines, run_date)), "score")
        table = ranked.where(F.col("rank") <= int(c.get("top_n", 3))).select(
            "person_id", "category", "score", F.col("rank").cast("int").alias("rank"),
            model_column(c["model_name"], version).alias("category_model"), F.lit(run_date).alias("score_date"),
        )
    rows = lake.overwrite_where(NEXT_BEST_CATEGORY, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    top = lake.read(NEXT_BEST_CATEGORY).where(f"score_date = DATE'{run_date}' AND rank = 1").select(
        "person_id", F.col("category").alias("top_category"), F.col("score").alias("top_category_score"), "category_model"
    )
    return top, {"champion": version, "rows": rows}


def uplift_model_name(conf: Conf, audience: str) -> str:
    """Return the registered name of ``audience``'s uplift model: ``<analyze.uplift.model_name>-<audience>``."""
    return f"{conf.get('analyze.uplift.model_name')}-{audience}"


def train_uplift(conf: Conf, audience: str, examples: DataFrame, run_date: dt.date, report_dir: str, inputs_fingerprint: str) -> dict:
    """Fit ``audience``'s uplift model (a T-learner) on persons outside the holdout; measure on
    the held-out persons its Qini coefficient and uplift by decile against the propensity
    ranking (the propensity score each person had when contacted); log both to MLflow,
    register it as :func:`uplift_model_name`, and move ``champion`` to it when its Qini beats
    the champion's by ``champion_margin``.

    Takes the audience's labelled contacts (:func:`uplift.uplift_examples`). Raises
    NotTrainable when either group has fewer than ``min_group_persons`` persons, or none or
    all of a group converted. Returns version, metrics (``qini``, ``baseline_qini``, ...),
    champion_moved and champion_decision; or, when a version was trained from
    ``inputs_fingerprint`` already, that version and ``reused``.
    """
    import mlflow

    u = conf.get("analyze.uplift")
    name = uplift_model_name(conf, audience)
    split = models.with_group_weights(examples).withColumn("_holdout", in_holdout(F.col("person_id"), float(conf.get("analyze.propensity.holdout_share"))))
    holdout = split.where("_holdout").drop("_holdout")

    def qini_of(model) -> dict:
        return uplift.qini(uplift.decile_outcomes(models.with_uplift(model, holdout), "uplift", quantile_accuracy(conf)))

    def qini_coefficient_of(model) -> float:
        return qini_of(model)["qini"]

    reused = tracking.resume(name, inputs_fingerprint, qini_coefficient_of, float(u["champion_margin"]))
    if reused:
        return reused
    # Safe to collect: two rows, one per group.
    groups = {r["group"]: (int(r["persons"]), int(r["converted"] or 0))
              for r in examples.groupBy("group").agg(F.countDistinct("person_id").alias("persons"), F.sum("label").alias("converted")).collect()}
    minimum = int(u["min_group_persons"])
    for group in ("treatment", "control"):
        persons, converted = groups.get(group, (0, 0))
        if persons < minimum or converted in (0, persons):
            raise NotTrainable(f"uplift of {audience} for {run_date}: {persons} {group} persons, {converted} converted, in its contact dates with a "
                               f"complete attribution window; training needs at least {minimum} (analyze.uplift.min_group_persons) and both outcomes")
    train, holdout = split.where(~F.col("_holdout")).drop("_holdout").cache(), holdout.cache()
    with tracking.tracked_run(conf, f"uplift-{audience}-{run_date}", {"stage": "analyze", "run_date": str(run_date), "audience": audience}):
        model = models.uplift_pipeline(int(u["max_iter"])).fit(train)
        measured, baseline = qini_of(model), uplift.qini(uplift.decile_outcomes(holdout, "score", quantile_accuracy(conf)))
        # Safe to collect: the audience's few contact dates.
        dates = sorted(str(r["contact_date"]) for r in examples.select("contact_date").distinct().collect())
        mlflow.log_params({"audience": audience, "contact_dates": ",".join(dates), "attribution_days": conf.get("decide.attribution_days"),
                           "features": ",".join(FEATURE_COLUMNS), "learner": "T-learner: logistic regression on contacted, on control persons",
                           "holdout": "hash of person_id", "baseline": "propensity score when contacted"})
        top_deciles = {"uplift_top_decile": measured["uplift_by_decile"][0], "baseline_uplift_top_decile": baseline["uplift_by_decile"][0]}
        mlflow.log_metrics({"qini": measured["qini"], "baseline_qini": baseline["qini"], "average_uplift_holdout": measured["curve"][-1],
                            **{k: v for k, v in top_deciles.items() if v is not None},   # None: no contacted or no control person there
                            **{f"{group}_persons": float(persons) for group, (persons, _) in groups.items()}})
        for ranking, result in (("uplift_by_decile", measured), ("baseline_uplift_by_decile", baseline)):
            for decile, value in enumerate(result["uplift_by_decile"], start=1):
                if value is not None:
                    mlflow.log_metric(ranking, value, step=decile)
        mlflow.log_dict({"uplift": measured, "baseline_propensity": baseline}, "qini.json")
        os.makedirs(report_dir, exist_ok=True)
        mlflow.log_artifact(uplift.qini_chart({"uplift": measured["curve"], "propensity": baseline["curve"]},
                                              os.path.join(report_dir, f"qini_{audience}.png"), f"Qini, {audience}, {run_date}"))
        sample = train.select(*FEATURE_COLUMNS).limit(5)
        version, moved, reason = tracking.register_and_judge(
            model, name, sample.toPandas(), models.with_uplift(model, sample).select("uplift").toPandas(), inputs_fingerprint, measured["qini"],
            qini_coefficient_of, float(u["champion_margin"]),
        )
    train.unpersist()
    holdout.unpersist()
    return {"version": version, "qini": round(measured["qini"], 4), "baseline_qini": round(baseline["qini"], 4),
            "champion_moved": moved, "champion_decision": reason}


def audience_uplift(lake: Lake, conf: Conf, behaviour_as_of, order_lines: DataFrame, persons: DataFrame, run_date: dt.date, inputs: dict,
                    report_dir: str, failures: dict) -> dict:
    """Train every audience's uplift model from its learnable contacts (or say why not), score
    ``persons`` with each audience's champion into gold.audience_uplift for ``run_date``; return
    the facts per audience.

    Takes ``behaviour_as_of`` (a date -> persons with FEATURE_COLUMNS as of its end), order
    lines with person_id as of the run date, today's persons with FEATURE_COLUMNS, and the
    stage's ``failures``, where an audience whose model cannot train is added as
    ``uplift.<audience>`` (:func:`isolated_model`). An audience without a champion yet has no
    rows; decide then orders it by the rest of its ``order_by``.
    """
    tracking.configure(conf)   # the registry is read before any run starts
    u = conf.get("analyze.uplift")
    days = int(conf.get("decide.attribution_days"))
    audiences = [entry["name"] for entry in conf.get("decide.audiences") or []]
    settings = {"uplift": u, "attribution_days": days, "holdout_share": conf.get("analyze.propensity.holdout_share"), "timezone": conf.get("business.timezone")}
    reason = f"no contact date with a complete {days}-day attribution window (decide.attribution_days) up to {run_date}"
    facts: dict = {audience: {"skipped": reason} for audience in audiences}
    learnable, digests = None, {}
    if lake.exists(CONTACT_HISTORY):
        learnable = uplift.learnable_contacts(lake.read(CONTACT_HISTORY), run_date, days, int(u["contact_dates"])).where(F.col("audience").isin(audiences)).cache()
        # One row per audience: the contacts its model would learn from (with the input tables'
        # versions in ``inputs``, what its fingerprint is made of). Safe to collect.
        digests = {r["audience"]: {"contacts": r["contacts"], "digest": r["digest"], "dates": sorted(str(d) for d in r["dates"])} for r in learnable.groupBy("audience").agg(
            F.count(F.lit(1)).alias("contacts"), F.sum(F.pmod(F.xxhash64("contact_date", "person_id", "group"), F.lit(2**31))).alias("digest"),
            F.collect_set("contact_date").alias("dates")).collect()}
    fingerprints = {a: tracking.fingerprint({**inputs, "contacts": digests[a]}, {**settings, "audience": a}) for a in digests}
    to_train = []
    for audience in fingerprints:
        name = uplift_model_name(conf, audience)
        found = tracking.version_with_fingerprint(name, fingerprints[audience])
        if found is None or found.awaiting_judgement:   # a version awaiting judgement is judged on its holdout, in train_uplift
            to_train.append(audience)
        else:
            facts[audience] = tracking.reused(name, found, fingerprints[audience])
    if to_train:
        # Features as of each contact date the models learn from: the point-in-time builder, once a date.
        dates = sorted({dt.date.fromisoformat(day) for audience in to_train for day in digests[audience]["dates"]})
        behaviour = functools.reduce(DataFrame.unionByName, [behaviour_as_of(day).withColumn("contact_date", F.lit(day)) for day in dates])
        examples = uplift.uplift_examples(learnable.where(F.col("audience").isin(to_train)), order_lines.where(F.col("status") == "completed"), days, behaviour).cache()
        for audience in to_train:
            with isolated_model(f"uplift.{audience}", run_date, failures) as f:
                f.update(train_uplift(conf, audience, examples.where(F.col("audience") == audience), run_date, report_dir, fingerprints[audience]))
            facts[audience] = dict(f)
        examples.unpersist()
    if learnable is not None:
        learnable.unpersist()
    scored = []
    for audience in audiences:
        name = uplift_model_name(conf, audience)
        model, version = tracking.champion(name)
        if model is None:
            continue
        facts[audience]["champion"] = version
        scored.append(models.with_uplift(model, persons.select("person_id", *FEATURE_COLUMNS)).select(
            "person_id", F.lit(audience).alias("audience"), "p_contacted", "p_control", "uplift", F.lit(f"{name}/{version}").alias("uplift_model"),
        ))
    if scored or lake.exists(UPLIFT):
        table = functools.reduce(DataFrame.unionByName, scored).withColumn("score_date", F.lit(run_date)) if scored else lake.spark.createDataFrame([], lake.catalog.spec(UPLIFT).ddl)
        facts["persons_scored"] = lake.overwrite_where(UPLIFT, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    return facts


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


def without_lifetime_value(people: DataFrame, horizon_days: int) -> DataFrame:
    """Return ``people`` with the lifetime-value columns null: their value when the model is not fitted."""
    return people.select("*", *[F.lit(None).cast("double").alias(c) for c in clv.value_columns(horizon_days)])


def lifetime_value(conf: Conf, spark: SparkSession, people: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Fit BG/NBD and Gamma-Gamma as of ``run_date``, log them; return (people with value columns, facts).

    Raises NotTrainable when fewer than ``min_repeat_buyers`` persons bought twice.
    """
    import mlflow

    c = conf.get("analyze.lifetime_value") or {}
    unit_days, horizon = float(c.get("time_unit_days", 7)), int(c.get("horizon_days", 90))
    stats = clv.purchase_statistics(order_lines, run_date, unit_days).cache()
    repeat_buyers = stats.where("frequency > 0").count()
    if repeat_buyers < int(c.get("min_repeat_buyers", 20)):
        stats.unpersist()
        raise NotTrainable(f"lifetime value for {run_date}: {repeat_buyers} repeat buyers; fitting needs {c.get('min_repeat_buyers', 20)} "
                           "(analyze.lifetime_value.min_repeat_buyers)")
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


def pareto(lake: Lake, conf: Conf, report_dir: str, persons: DataFrame, run_date: dt.date) -> dict:
    """Write gold.pareto for ``run_date`` and its chart; return the headline shares.

    Takes ``persons`` as read from a table: the curve's running sum reads it more than once.
    """
    ranges = int(conf.get("analyze.ranking.pareto_ranges"))
    curve = pareto_curve(persons, "monetary", ranges, quantile_accuracy(conf)).withColumn("score_date", F.lit(run_date))
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
        companies, order_lines, members, scores.select("person_id", "predicted_value"), run_date, horizon, int(conf.get("analyze.rfm_quantiles")), rules,
        quantile_accuracy(conf),
    ).withColumn("score_date", F.lit(run_date))
    return lake.overwrite_where(COMPANY_SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Train (or, on a rerun with the same inputs and conf, reuse) the models, score every person
    for ``run_date`` with each model's champion, and write the reports; return the stage's
    summary: each model's versions and metrics, the scores' counts, and ``failed``
    (model -> why it did not train today; empty on a good day).

    A model that fails does not fail the stage: when the scores are written, the run succeeded
    (``gold.job_runs`` records it so, its counts listing ``failed``), and decide
    publishes from them. The stage fails only when what every score needs fails: reading the
    lake, the reports, or writing the scores.
    """
    lake = Lake(spark, conf)
    tz = conf.get("business.timezone")
    report_dir = os.path.join(conf.exports_root, REPORTS_DIR)
    p, s = conf.get("analyze.propensity"), conf.get("analyze.segmentation")
    people = lake.read("silver.customer_360").cache()
    identity_map = lake.read("silver.identity_map")
    history, bronze_orders = lake.read("silver.customer_history"), lake.read("bronze.orders")
    inputs = inputs_of(lake, run_date)

    def members(as_of: dt.date) -> DataFrame:
        # Profiles valid then, of persons still live now (an erased person is never scored nor learnt from).
        return members_as_of(history, identity_map, as_of, tz).join(people.select("person_id"), "person_id", "left_semi")

    def lines_as_of(as_of: dt.date) -> DataFrame:
        return with_order_person_id(order_lines_as_of(bronze_orders, as_of, tz), identity_map)

    def sessions_as_of(as_of: dt.date) -> DataFrame:
        # Only the days the visit features count, filtered at the read: silver.sessions is
        # partitioned by session_date, so the rest of the clickstream's history is never opened.
        return with_session_person_id(lake.read("silver.sessions").where(in_session_window(F.col("session_date"), as_of)), identity_map)

    def behaviour_as_of(as_of: dt.date, lines: DataFrame | None = None) -> DataFrame:
        # Point in time: the members and their order lines as they stood at the end of as_of.
        return customer_behaviour(members(as_of), lines if lines is not None else lines_as_of(as_of), sessions_as_of(as_of), as_of, tz)

    # Everything as it stood at the end of run_date (a backfill of an old date sees that day's lake).
    order_lines = lines_as_of(run_date).cache()

    facts: dict = {}
    failures: dict = {}   # model -> why it did not train today (isolated_model)
    if lake.read("silver.sessions").isEmpty():  # every source is optional: say what the features lack
        facts["missing_inputs"] = ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]
        log.warning("analyze for %s: %s", run_date, facts["missing_inputs"][0])
    with timed(log, f"reports for {run_date}") as f:
        f["reports"] = write_reports(lake, conf, order_lines, people, run_date, report_dir)
    facts["reports"] = f["reports"]
    # Propensity's and next best category's point in time: features as of the cutoff, labels after it.
    cutoff = run_date - dt.timedelta(days=int(p["label_days"]))
    lines_then = lines_as_of(cutoff)
    behaviour_then = behaviour_as_of(cutoff, lines_then).cache()
    with isolated_model("propensity", run_date, failures) as f:
        labelled = with_purchase_label(behaviour_then, order_lines, cutoff, int(p["label_days"]))
        trained = train_propensity(conf, labelled, run_date, tracking.fingerprint(inputs, {"propensity": p, "timezone": tz, "training_max_persons": training_max_persons(conf)}))
        f.update({k: v for k, v in trained.items() if k in ("version", "candidate", "champion_moved", "reused", "champion_decision")})
        if "metrics" in trained:
            f["auc_holdout"] = round(trained["metrics"]["auc"], 4)
    facts["propensity"] = dict(f)
    with isolated_model("next_best_category", run_date, failures) as f:
        c = conf.get("analyze.next_best_category")
        bought = categories.categories_bought(order_lines, cutoff, int(p["label_days"]))
        pairs = categories.with_category_label(categories.person_categories(behaviour_then, lines_then, cutoff), bought)
        settings = {"next_best_category": c, "label_days": p["label_days"], "holdout_share": p["holdout_share"], "timezone": tz,
                    "training_max_persons": training_max_persons(conf)}
        f.update(train_next_best_category(conf, pairs, bought, run_date, tracking.fingerprint(inputs, settings)))
    facts["next_best_category"] = dict(f)
    behaviour = behaviour_as_of(run_date, order_lines)
    frame = models.with_log_features(behaviour).cache()
    with isolated_model("segmentation", run_date, failures) as f:
        f.update(train_segments(conf, frame, run_date, report_dir, tracking.fingerprint(inputs, {"segmentation": s, "timezone": tz, "training_max_persons": training_max_persons(conf)})))
    facts["segmentation"] = dict(f)
    horizon = int((conf.get("analyze.lifetime_value") or {}).get("horizon_days", 90))
    valued = without_lifetime_value(people.select("person_id"), horizon)
    with isolated_model("lifetime_value", run_date, failures) as f:
        valued, f_clv = lifetime_value(conf, spark, people.select("person_id"), order_lines, run_date)
        f.update(f_clv)
    facts["lifetime_value"] = dict(f)
    with timed(log, f"score persons for {run_date}") as f:
        # Each model's champion, whatever today's challenger did; a model without one yet leaves its columns null.
        propensity_model, propensity_version = tracking.champion(p["model_name"])
        segment_model, segment_version = tracking.champion(s["model_name"])
        f.update(propensity_champion=propensity_version, segmentation_champion=segment_version)
        if segment_model is not None:
            segmented = named_segments(segment_model, frame, behaviour.columns)[0]
        else:
            segmented = behaviour.select("*", F.lit(None).cast("int").alias("segment_id"), F.lit(None).cast("string").alias("segment"))
        if propensity_model is not None:
            propensity = models.with_propensity_score(propensity_model, segmented)
        else:
            propensity = segmented.withColumn("propensity_score", F.lit(None).cast("double"))
        # Cached: the deciles and the RFM scores each aggregate it before its rows are written.
        propensity = propensity.cache()
        top_categories, f["next_best_category"] = next_best_categories(lake, conf, behaviour, order_lines, run_date)
        rules = ValueRules.from_conf(conf.get("analyze.value"), conf.get("analyze.loyalty"))
        recent = order_lines.where(
            (F.col("status") == "completed") & (F.col("order_date") > F.lit(run_date - dt.timedelta(days=horizon))) & (F.col("order_date") <= F.lit(run_date))
        ).groupBy("person_id").agg(F.sum("line_amount").cast("double").alias("current_value"))
        scored = with_rfm_scores(
            with_deciles(propensity, "propensity_score", "propensity_decile", quantile_accuracy(conf)), int(conf.get("analyze.rfm_quantiles")), quantile_accuracy(conf)
        )
        table = (
            scored.join(valued, "person_id", "left")
            .join(top_categories, "person_id", "left")
            .join(recent, "person_id", "left")
            .withColumn("predicted_value", F.col(f"expected_value_{horizon}d"))
            .join(people.select("person_id", "marketing_consent", "orders", "open_complaints", "referred_buyers"), "person_id", "left")
            .transform(lambda df: with_value_tier(df, rules, quantile_accuracy(conf)))
            .transform(lambda df: with_loyalty_level(df, rules))
            .withColumn("propensity_model", model_column(p["model_name"], propensity_version))
            .withColumn("segment_model", model_column(s["model_name"], segment_version))
            .withColumn("score_date", F.lit(run_date))
        )
        f["persons_scored"] = lake.overwrite_where(SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
        scores = lake.read(SCORES).where(f"score_date = DATE'{run_date}'")
        # Safe to collect: a handful of tiers times rungs, counted in one pass.
        tiers, rungs = collections.Counter(), collections.Counter()
        for r in scores.groupBy("value_tier", "loyalty_level").count().collect():
            tiers[r["value_tier"]] += r["count"]
            rungs[r["loyalty_level"]] += r["count"]
        f["value_tiers"], f["loyalty_ladder"] = dict(tiers), dict(rungs)
        f.update(pareto(lake, conf, report_dir, scores, run_date))
        write_profiles(conf.exports_root, scores, run_date)
    facts["scores"] = dict(f)
    with isolated_model("uplift", run_date, failures) as f:
        f.update(audience_uplift(lake, conf, behaviour_as_of, order_lines, frame, run_date, inputs, report_dir, failures))
    facts["uplift"] = dict(f)
    if lake.exists(COMPANIES):
        with timed(log, f"company scores for {run_date}") as f:
            f["companies_scored"] = score_companies(lake, conf, order_lines, identity_map, lake.read(SCORES).where(f"score_date = DATE'{run_date}'"), run_date)
        facts["companies"] = dict(f)
    for cached in (people, order_lines, behaviour_then, frame, propensity):
        cached.unpersist()
    if failures:
        log.warning("analyze for %s: scores written without %s", run_date, "; ".join(f"{name} ({reason})" for name, reason in failures.items()))
    return {**facts, "failed": failures}
