"""Retention and churn on the generated pipeline: the cohorts and the churn ranking's recency
baseline against an independent pandas computation over the landing files, the planted churners
(members who lapsed before the end: ``_truth/persons``) ranked at higher churn risk than the others,
and the "valuable customers at risk" audience as its rule says.

The pandas side reads the landing files (and who is whom from the lake's identity map): the
contract's rules, applied by hand. The pipeline fixture (tests/conftest.py) already runs analyze
on its lake; it scores one date, so the tier transitions and each person's change since the
last scoring are checked on a copy of its lake scored again RESCORED_AFTER later (``rescored``:
one more analyze run, no new data).
"""

import datetime as dt
import csv
import glob
import gzip
import json
import os
from decimal import Decimal

import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from conftest import END, pipeline_copy
from crmlake.analyze import job as analyze
from crmlake.lake import Lake
from landing_frames import TIMEZONE, completed_lines, identity_lookup

VALUABLE = ("most_valuable", "most_growth_potential")
RESCORED_AFTER = dt.timedelta(days=14)


def test_cohort_retention_equals_a_pandas_computation_over_the_landing_files(pipeline):
    lines = completed_lines(pipeline["root"], identity_lookup(pipeline["lake"]))
    lines = lines.assign(month=[d.replace(day=1) for d in lines["order_date"]])
    lines["cohort"] = lines.groupby("person_id")["month"].transform("min")
    lines["since"] = [(m.year - c.year) * 12 + m.month - c.month for m, c in zip(lines["month"], lines["cohort"])]
    sizes = lines.groupby("cohort")["person_id"].nunique()
    expected = {}
    for cohort, persons in sizes.items():
        for since in range((END.year - cohort.year) * 12 + END.month - cohort.month + 1):
            that = lines[(lines["cohort"] == cohort) & (lines["since"] == since)]
            expected[(cohort, since)] = (persons, that["person_id"].nunique(), round(that["person_id"].nunique() / persons, 4), sum(that["line_amount"], Decimal("0.00")))
    actual = {(r["cohort_month"], r["months_since"]): (r["cohort_persons"], r["retained_persons"], r["retained_share"], r["revenue"])
              for r in pipeline["lake"].read("gold.cohort_retention").collect()}
    assert len(expected) >= 3 and actual == expected


def test_the_churn_rankings_recency_auc_equals_pandas_and_both_aucs_are_in_mlflow(pipeline):
    conf, lake, root = pipeline["conf"], pipeline["lake"], pipeline["root"]
    judged = pipeline["analyze"]["lifetime_value"]["churn_ranking"]
    cutoff = END - dt.timedelta(days=conf.analyze.retention.churn_days)
    people = identity_lookup(lake)
    then = completed_lines(root, people, pd.Timestamp(cutoff + dt.timedelta(days=1), tz=TIMEZONE))
    last = then[then["order_date"] <= cutoff].groupby("person_id")["order_date"].max()
    now = completed_lines(root, people)
    bought_after = set(now.loc[(now["order_date"] > cutoff) & (now["order_date"] <= END), "person_id"])
    days_since = {p: (cutoff - d).days for p, d in last.items()}
    churned = [days_since[p] for p in days_since if p not in bought_after]
    stayed = [days_since[p] for p in days_since if p in bought_after]
    # The recency baseline's AUC: the chance a churned buyer's last purchase is older than a staying one's (ties count half).
    auc = sum((c > s) + 0.5 * (c == s) for c in churned for s in stayed) / (len(churned) * len(stayed))
    assert (judged["cutoff"], judged["buyers"], judged["churned"]) == (str(cutoff), len(days_since), len(churned))
    assert judged["auc_recency"] == round(auc, 4) and 0 <= judged["auc_p_alive"] <= 1
    assert judged["served"] == ("p_alive" if judged["auc_p_alive"] > judged["auc_recency"] else "recency")
    # P(alive) is served only when it won: on this sample recency wins, and no one's P(alive) is served.
    assert pipeline["analyze"]["lifetime_value"]["served"]["churn_ranking"] == judged["served"] == "recency"
    assert pipeline["lake"].read("gold.customer_scores").where(F.col("p_alive").isNotNull()).count() == 0
    client = MlflowClient(tracking_uri=conf.mlflow.tracking_uri)
    # The fixture's run is the first of that name (a test may rerun analyze on the pipeline's lake, which it has changed since).
    run = client.search_runs([client.get_experiment_by_name(conf.mlflow.experiment).experiment_id], f"tags.mlflow.runName = 'churn-ranking-{END}'",
                             order_by=["attributes.start_time ASC"])[0]
    assert abs(run.data.metrics["auc_recency"] - auc) < 1e-9 and round(run.data.metrics["auc_p_alive"], 4) == judged["auc_p_alive"]


def test_the_planted_churners_rank_at_higher_churn_risk_and_every_scored_person_has_a_row(pipeline):
    lake, root = pipeline["lake"], pipeline["root"]
    risk = {r["person_id"]: r for r in lake.read("gold.churn_risk").where(F.col("score_date") == END).collect()}
    scores = {r["person_id"]: r for r in lake.read("gold.customer_scores").where(F.col("score_date") == END).collect()}
    assert sorted(risk) == sorted(scores)
    assert all(risk[p]["p_alive"] == s["p_alive"] and risk[p]["value_tier"] == s["value_tier"] for p, s in scores.items())
    # One score date in this lake: no previous scoring, no change, no transition (and no failure).
    assert all(r["previous_score_date"] is None and r["p_alive_change"] is None for r in risk.values())
    assert lake.read("gold.tier_transitions").count() == 0 and pipeline["analyze"]["retention"]["previous_score_date"] is None
    truth = pd.concat([pd.read_csv(f, dtype=str) for f in glob.glob(os.path.join(root, "landing", "_truth", "persons", "*.csv"))])
    account_person = identity_lookup(lake)["account_id"]
    lapsed = {account_person.get(a) for accounts in truth.loc[truth["alive_at_end"] == "false", "account_ids"].fillna("") for a in accounts.split(";")}
    ranked = {p: r["churn_risk_decile"] for p, r in risk.items() if r["churn_risk_decile"] is not None}
    churners, others = [d for p, d in ranked.items() if p in lapsed], [d for p, d in ranked.items() if p not in lapsed]
    assert len(churners) >= 3, "the generator plants members who lapse before the end"
    # The chance a planted churner ranks above another buyer (ties count half): well above chance.
    auc = sum((c > o) + 0.5 * (c == o) for c in churners for o in others) / (len(churners) * len(others))
    assert auc > 0.7, (auc, churners)


def test_the_valuable_at_risk_audience_takes_the_valuable_persons_its_rule_names(pipeline):
    conf, lake = pipeline["conf"], pipeline["lake"]
    scores = lake.read("gold.customer_scores").where(F.col("score_date") == END).toPandas()
    named = scores[scores["value_tier"].isin(VALUABLE) & ((scores["p_alive"] < 0.5) | (scores["r_score"] <= 2))]
    folder = os.path.join(conf.exports_root, "valuable_at_risk", str(END))
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    with gzip.open(os.path.join(folder, "audience.csv.gz"), "rt", newline="") as fh:
        members = {m["person_id"] for m in csv.DictReader(fh)}
    assert len(named) > 0 and manifest["counts"]["matched"] == len(named)
    assert members <= set(named["person_id"][named["marketing_consent"].fillna(False)])


@pytest.fixture(scope="module")
def rescored(spark, pipeline, tmp_path_factory) -> dict:
    """A copy of the pipeline's lake (its own MLflow store) scored again RESCORED_AFTER after END,
    with no new data: its lake, its analyze summary and the second score date."""
    conf = pipeline_copy(pipeline, tmp_path_factory.mktemp("rescored"))
    day = END + RESCORED_AFTER
    return {"lake": Lake(spark, conf), "summary": analyze.run(spark, conf, day), "day": day, "horizon": conf.analyze.lifetime_value.horizon_days}


def test_a_second_scoring_counts_each_persons_tier_and_segment_move_and_their_recent_revenue(pipeline, rescored):
    lake, day = rescored["lake"], rescored["day"]
    # No new data in two weeks: the uplift models have no conversions to learn from (isolated, listed); nothing else fails.
    assert all(piece.startswith("uplift.") for piece in rescored["summary"]["failed"]), rescored["summary"]["failed"]
    assert rescored["summary"]["retention"]["previous_score_date"] == str(END)
    scores = lake.read("gold.customer_scores").where(F.col("score_date").isin(END, day)).toPandas()
    before, now = (scores[scores["score_date"] == d].set_index("person_id") for d in (END, day))
    # Their recent revenue, from the landing files: completed lines of the horizon_days up to the second date.
    lines = completed_lines(pipeline["root"], identity_lookup(pipeline["lake"]))
    recent = lines[(lines["order_date"] > day - dt.timedelta(days=rescored["horizon"])) & (lines["order_date"] <= day)]
    revenue = recent.groupby("person_id")["line_amount"].sum().map(float)
    both = now[["value_tier", "segment"]].join(before[["value_tier", "segment"]], rsuffix="_before", how="inner")
    both["revenue"] = revenue.reindex(both.index).fillna(0.0)
    expected = {tuple(None if pd.isna(k) else k for k in key): (len(g), round(g["revenue"].sum(), 2))
                for key, g in both.groupby(["value_tier_before", "value_tier", "segment_before", "segment"], dropna=False)}
    moved = lake.read("gold.tier_transitions").where(F.col("score_date") == day).collect()
    assert all(r["from_score_date"] == END for r in moved)
    actual = {(r["from_value_tier"], r["to_value_tier"], r["from_segment"], r["to_segment"]): (r["persons"], r["revenue"]) for r in moved}
    assert sorted(actual) == sorted(expected) and sum(p for p, _ in expected.values()) == len(both) > 0
    for key, (persons, money) in expected.items():
        assert actual[key] == (persons, pytest.approx(money, abs=0.011)), key
    # Tiers rest on current values on both dates (the lake, 45 days old, is too young to judge the
    # 90-day value forecast on: the last 90 days' revenue repeats), and two weeks without a
    # purchase leave every purchase inside the 90 days: no one changed tier (moves: tests/unit/test_retention.py).
    assert rescored["summary"]["lifetime_value"]["served"]["value_forecast"] == "last_horizon_repeats"
    assert all(key[0] == key[1] for key in expected) and len({key[0] for key in expected}) >= 2


def test_a_second_scoring_gives_each_persons_purchase_rhythm_as_pandas_does_and_no_p_alive_change_where_none_is_served(pipeline, rescored):
    lake, day = rescored["lake"], rescored["day"]
    now = lake.read("gold.customer_scores").where(F.col("score_date") == day).toPandas().set_index("person_id")
    risk = lake.read("gold.churn_risk").where(F.col("score_date") == day).toPandas().set_index("person_id")
    assert sorted(risk.index) == sorted(now.index)
    scored_before = {r["person_id"] for r in lake.read("gold.customer_scores").where(F.col("score_date") == END).select("person_id").collect()}
    assert all((row["previous_score_date"] == END) == (person in scored_before) for person, row in risk.iterrows())
    # P(alive) is served on neither date (recency won the churn ranking's judgement each time): no
    # change is given (its arithmetic where it is served: tests/unit/test_retention.py).
    assert [rescored["summary"]["lifetime_value"]["served"]["churn_ranking"], pipeline["analyze"]["lifetime_value"]["served"]["churn_ranking"]] == ["recency"] * 2
    assert risk["p_alive_change"].isna().all() and now["p_alive"].isna().all() and len(risk) > 0
    # Days since the last purchase and the usual interval between purchase days, from the landing files.
    lines = completed_lines(pipeline["root"], identity_lookup(pipeline["lake"]))
    days = lines[lines["order_date"] <= day].groupby("person_id")["order_date"].agg(["min", "max", "nunique"])
    buyers = risk.dropna(subset=["days_since_last_purchase"])
    assert sorted(buyers.index) == sorted(set(days.index) & set(risk.index)) and len(buyers) > 0
    for person, row in buyers.iterrows():
        first, last, purchase_days = days.loc[person]
        assert row["days_since_last_purchase"] == (day - last).days, person
        interval = (last - first).days / (purchase_days - 1) if purchase_days > 1 else None
        assert (pd.isna(row["usual_interval_days"]) if interval is None else row["usual_interval_days"] == pytest.approx(interval, abs=0.051)), person


HIGH_RISK_DECILE = 8   # a churn-risk decile from this one up (the riskiest 30% of buyers) is a sign of leaving


def test_buyers_whose_activity_fades_show_a_sign_of_leaving_far_more_often_than_those_who_never_lapse(pipeline):
    lake, root = pipeline["lake"], pipeline["root"]
    truth = pd.concat([pd.read_csv(f, dtype=str) for f in glob.glob(os.path.join(root, "landing", "_truth", "persons", "*.csv"))])
    account_person = identity_lookup(lake)["account_id"]

    def persons(rows: pd.DataFrame) -> set:
        return {account_person[a] for accounts in rows["account_ids"].dropna() for a in accounts.split(";") if a in account_person}

    # The truth's lapse_date is set for the members whose activity has begun to fade by the run
    # date: those who lapsed, and those "about to churn", who lapse within the fade's days after it.
    lapse_date = pd.to_datetime(truth["lapse_date"]).dt.date
    fading, about_to_churn = persons(truth[lapse_date.notna()]), persons(truth[lapse_date > END])
    never = persons(truth[truth["daily_lapse_hazard"].astype(float) == 0]) - fading
    # The buyers: the persons churn_risk ranks (a non-buyer who stopped visiting before the
    # visit windows leaves no sign for any rule to read).
    risk = lake.read("gold.churn_risk").where((F.col("score_date") == END) & F.col("churn_risk_decile").isNotNull()).toPandas()
    showing = set(risk.loc[risk["main_reason"].isin(["fewer_visits", "overdue"]) | (risk["churn_risk_decile"] >= HIGH_RISK_DECILE), "person_id"])
    buyers = set(risk["person_id"])

    def share_showing(group: set) -> float:
        return len(group & showing) / len(group & buyers)

    assert len(about_to_churn & buyers) > 0 and len(fading & buyers) >= 5 and len(never & buyers) > 0
    assert share_showing(fading) > 2 * share_showing(never), (share_showing(fading), share_showing(about_to_churn), share_showing(never))
