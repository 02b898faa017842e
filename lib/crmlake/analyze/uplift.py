"""Uplift: whom a contact moves, learnt from each audience's contacted and control persons.

Propensity ranks persons by how likely they are to buy, and so puts first the persons who
buy anyway. A contact is worth making to the persons who buy *because* of it. Every
audience holds a control group back (a stable hash of person and audience), so its past
contacts are an experiment to learn that from:

* the contacts of the audience's ``contact_dates`` most recent contact dates whose
  attribution window is complete (:func:`learnable_contacts`);
* per contact, the person's features as of the contact date (the propensity's
  point-in-time builder) and the label: converted in the attribution window, the campaign
  results' definition (:func:`crmlake.contacts.contact_outcomes`), in
  :func:`uplift_examples`;
* a T-learner (:func:`crmlake.analyze.models.uplift_pipeline`): P(convert | contacted)
  fitted on the contacted persons, P(convert | not contacted) on the control persons;
  estimated uplift = their difference.

It is judged on held-out persons (the same stable hash as every model) by the Qini curve
and coefficient and the uplift by decile (:func:`decile_outcomes`, :func:`qini`), against
its baseline: the same persons ranked by the propensity score they had when they were
contacted (``gold.contact_history.score``).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crmlake import charts
from crmlake.analyze.features import FEATURE_COLUMNS
from crmlake.analyze.ranking import with_quantile_buckets
from crmlake.contacts import contact_outcomes

DECILES = 10


def learnable_contacts(contacts: DataFrame, run_date: dt.date, attribution_days: int, contact_dates: int) -> DataFrame:
    """Return the contacts an uplift model may learn from on ``run_date``.

    Takes gold.contact_history rows. Keeps, per audience, its ``contact_dates`` most recent
    contact dates whose attribution window is complete (contact_date + attribution_days <=
    run_date, as ``gold.campaign_results.window_complete``); same columns.
    """
    complete = contacts.where(F.date_add("contact_date", attribution_days) <= F.lit(run_date))
    latest_first = Window.partitionBy("audience").orderBy(F.col("contact_date").desc())
    dates = complete.select("audience", "contact_date").distinct().withColumn("_n", F.row_number().over(latest_first))
    return complete.join(dates.where(F.col("_n") <= contact_dates).drop("_n"), ["audience", "contact_date"], "left_semi")


def uplift_examples(contacts: DataFrame, orders: DataFrame, attribution_days: int, behaviour: DataFrame) -> DataFrame:
    """Return one labelled row per contact: audience, contact_date, person_id, group, score
    (the propensity score when contacted), label (1.0 when the person converted in the
    attribution window) and FEATURE_COLUMNS as of the contact date.

    Takes contact rows (:func:`learnable_contacts`), completed order lines with person_id,
    order_date and line_amount, and behaviour with ``contact_date`` (the date its features
    are as of) and FEATURE_COLUMNS. A contact whose person has no behaviour that day (no
    longer a member, erased) is left out.
    """
    outcomes = contact_outcomes(contacts, orders, attribution_days, carry=("score",))
    return outcomes.join(behaviour.select("person_id", "contact_date", *FEATURE_COLUMNS), ["person_id", "contact_date"]).select(
        "audience", "contact_date", "person_id", "group", "score", F.col("converted").cast("double").alias("label"), *FEATURE_COLUMNS,
    )


def decile_outcomes(scored: DataFrame, score_col: str, accuracy: int) -> list[dict]:
    """Rank contacts by ``score_col`` (highest first) into ten deciles and count, per decile,
    the contacted and control persons and how many of each converted.

    Takes rows with group (treatment or control), label and ``score_col``. A contact's
    decile is 1 + floor(10 x the share of contacts with a strictly higher score), a null
    score ranking last, from percentile_approx cut points of ``accuracy``
    (:func:`crmlake.analyze.ranking.with_quantile_buckets`): distinct scores make deciles of
    equal size (within one); tied scores share the decile ranked first, so a tie block
    spanning deciles leaves the ones after it smaller or empty (an empty decile counts 0).
    Returns ten dicts (decile 1 = the highest scores): decile, contacted,
    contacted_converted, control, control_converted.
    """
    descending = F.coalesce(-F.col(score_col).cast("double"), F.lit(float("inf")))
    ranked = with_quantile_buckets(scored, {"decile": descending}, DECILES, accuracy)
    treated, converted = F.col("group") == "treatment", F.col("label") > 0
    counts = ranked.groupBy("decile").agg(
        F.sum(treated.cast("long")).alias("contacted"),
        F.sum((treated & converted).cast("long")).alias("contacted_converted"),
        F.sum((~treated).cast("long")).alias("control"),
        F.sum((~treated & converted).cast("long")).alias("control_converted"),
    )
    # Safe to collect: ten rows.
    found = {r["decile"]: r.asDict() for r in counts.collect()}
    empty = {"contacted": 0, "contacted_converted": 0, "control": 0, "control_converted": 0}
    return [{**empty, **found.get(d, {}), "decile": d} for d in range(1, DECILES + 1)]


def qini(deciles: list[dict]) -> dict:
    """Return the Qini curve and coefficient and the uplift by decile of one ranking.

    Takes :func:`decile_outcomes`. ``curve[k]`` is the conversions a contact added among the
    persons of the best k deciles (k = 0..10), as a share of all contacted persons:
    ``(Yt(k) - Yc(k) * Nt(k) / Nc(k)) / Nt`` with Nt(k), Yt(k) the contacted persons there
    and those who converted, Nc(k), Yc(k) the same for control (no control person there:
    0); ``curve[10]`` is the campaign's average effect. ``shares[k]`` is where that point
    stands: the share of all persons (contacted and control) in the best k deciles, not k/10,
    since tied scores share a decile (:func:`decile_outcomes`). ``qini`` is the area between
    the curve and the line of random targeting, (0, 0) to (1, curve[10]), by trapezoids over
    those shares: above 0 when the ranking puts first the persons a contact moves, below when
    it puts them last, and 0 for a ranking that ties everyone (no score, one score for all),
    which ranks no one before anyone. ``uplift_by_decile``: the decile's conversion rate of
    contacted minus control persons (None when it lacks either).
    """
    contacted_total = sum(d["contacted"] for d in deciles)
    persons_total = contacted_total + sum(d["control"] for d in deciles)
    curve, shares, nt, yt, nc, yc = [0.0], [0.0], 0, 0, 0, 0
    for d in deciles:
        nt, yt, nc, yc = nt + d["contacted"], yt + d["contacted_converted"], nc + d["control"], yc + d["control_converted"]
        gained = yt - yc * nt / nc if nc else 0.0
        curve.append(gained / contacted_total if contacted_total else 0.0)
        shares.append((nt + nc) / persons_total if persons_total else 1.0)
    area = sum((curve[k - 1] + curve[k]) / 2 * (shares[k] - shares[k - 1]) for k in range(1, len(curve)))
    by_decile = [
        d["contacted_converted"] / d["contacted"] - d["control_converted"] / d["control"] if d["contacted"] and d["control"] else None
        for d in deciles
    ]
    return {"qini": area - curve[-1] / 2, "curve": curve, "shares": shares, "uplift_by_decile": by_decile}


def qini_chart(rankings: dict[str, dict], title: str):
    """Return the figure of Qini curves (name -> :func:`qini` of a ranking: its curve at its
    shares) beside random targeting (to the first curve's end: the campaign's average effect)."""
    last = next(iter(rankings.values()))["curve"][-1] if rankings else 0.0
    return charts.line_chart({name: (measured["shares"], measured["curve"]) for name, measured in rankings.items()}, title,
                             "share of persons, best ranked first", "conversions added / contacted",
                             reference=((0, 0), (1, last), "random"), markers=True)
