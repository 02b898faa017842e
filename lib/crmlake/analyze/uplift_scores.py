"""Uplift per audience of ``campaigns.audiences``: each audience's model trained from its learnable
contacts by the recipe (:func:`crmlake.analyze.specs.uplift_of`), and every person scored by each
audience's champion into ``gold.audience_uplift`` (decide orders by it on request).

An audience's model learns once contact dates of the audience have a complete attribution
window (:func:`crmlake.analyze.uplift.learnable_contacts`). Its fingerprint is the input tables'
versions with a digest of those contacts, so a rerun with the same contacts and conf fits nothing,
and the features as of each contact date are built only for the audiences that train.
"""

from __future__ import annotations

import datetime as dt
import functools

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import models, specs, uplift
from crmlake.analyze.features import FEATURE_COLUMNS
from crmlake.analyze.recipe import isolated_model
from crmlake.config import Conf
from crmlake.lake import Lake

UPLIFT = "gold.audience_uplift"
CONTACT_HISTORY = "gold.contact_history"


def audience_uplift(lake: Lake, conf: Conf, behaviour_as_of, order_lines: DataFrame, persons: DataFrame, run_date: dt.date, inputs: dict,
                    report_dir: str, failures: dict) -> dict:
    """Train every audience's uplift model from its learnable contacts (or say why not), score
    ``persons`` with each audience's champion into gold.audience_uplift for ``run_date``; return
    the facts per audience.

    Takes ``behaviour_as_of`` (a date -> persons with FEATURE_COLUMNS as of its end), order
    lines with person_id as of the run date, today's persons with FEATURE_COLUMNS, and the
    stage's ``failures``, where an audience whose model cannot train is added as
    ``uplift.<audience>`` (:func:`~crmlake.analyze.recipe.isolated_model`). An audience without
    a champion yet has no rows, and one whose champion serves the baseline has the same uplift
    for every person: either way decide orders it by the rest of its ``order_by``.
    """
    tracking.configure(conf)   # the registry is read before any run starts
    u = conf.analyze.uplift
    days = conf.campaigns.attribution_days
    audiences = [audience.name for audience in conf.campaigns.audiences]
    settings = {"uplift": u.model_dump(mode="json"), "attribution_days": days, "holdout_share": conf.analyze.propensity.holdout_share,
                "timezone": conf.business.timezone}
    reason = f"no contact date with a complete {days}-day attribution window (campaigns.attribution_days) up to {run_date}"
    facts: dict = {audience: {"skipped": reason} for audience in audiences}
    learnable, digests = None, {}
    if lake.exists(CONTACT_HISTORY):
        learnable = uplift.learnable_contacts(lake.read(CONTACT_HISTORY), run_date, days, u.contact_dates).where(F.col("audience").isin(audiences)).cache()
        # One row per audience: the contacts its model would learn from (with the input tables'
        # versions in ``inputs``, what its fingerprint is made of). Safe to collect.
        digests = {r["audience"]: {"contacts": r["contacts"], "digest": r["digest"], "dates": sorted(str(d) for d in r["dates"])} for r in learnable.groupBy("audience").agg(
            F.count(F.lit(1)).alias("contacts"), F.sum(F.pmod(F.xxhash64("contact_date", "person_id", "group"), F.lit(2**31))).alias("digest"),
            F.collect_set("contact_date").alias("dates")).collect()}
    fingerprints = {a: tracking.fingerprint({**inputs, "contacts": digests[a]}, {**settings, "audience": a}) for a in digests}
    to_train = []
    for audience in fingerprints:
        name = specs.uplift_model_name(conf, audience)
        found = tracking.version_with_fingerprint(name, fingerprints[audience])
        if found is None or found.awaiting_judgement:   # a version awaiting judgement is judged on its holdout, by the recipe
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
                f.update(specs.uplift_of(conf, audience, examples.where(F.col("audience") == audience), run_date, report_dir, fingerprints[audience]))
            facts[audience] = dict(f)
        examples.unpersist()
    if learnable is not None:
        learnable.unpersist()
    scored = []
    for audience in audiences:
        name = specs.uplift_model_name(conf, audience)
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
