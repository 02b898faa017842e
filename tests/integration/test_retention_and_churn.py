"""Retention and churn on the generated pipeline: the cohorts and the churn ranking's recency
baseline against an independent pandas computation over the landing files, the planted churners
(members who lapsed before the end: ``_truth/persons``) ranked at higher churn risk than the others,
and the "valuable customers at risk" audience as its rule says.

The pandas side reads the landing files (and who is whom from the lake's identity map): the
contract's rules, applied by hand. The pipeline fixture (tests/conftest.py) already runs analyze
on its lake, so these tests add no stage run.
"""

import datetime as dt
import csv
import glob
import gzip
import hashlib
import json
import os
from decimal import Decimal

import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import functions as F

from conftest import END
from test_service_and_campaigns import END_OF_RUN, TIMEZONE, erased_accounts, instants, local_dates

VALUABLE = ("most_valuable", "most_growth_potential")


def persons_of(lake) -> dict:
    """identifier -> person_id for accounts and hashed emails (silver.identity_map)."""
    return {r["identifier"]: r["person_id"] for r in lake.read("silver.identity_map").where(F.col("identifier_type").isin("account_id", "email_sha256")).collect()}


def landing_lines(root, person_of: dict, as_of: pd.Timestamp) -> pd.DataFrame:
    """The order lines as they stood at ``as_of`` (latest version updated before it), with their person."""
    files = sorted(glob.glob(os.path.join(root, "landing", "orders", "dt=*", "*")))
    raw = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False, on_bad_lines="skip") for f in files], ignore_index=True).drop_duplicates()
    raw = raw[raw["quantity"].str.fullmatch(r"[1-9][0-9]*") & ~raw["account_id"].isin(erased_accounts(root))]
    raw = raw.assign(order_time=instants(raw["order_time"]), updated_time=instants(raw["updated_time"]))
    known = raw[raw["updated_time"] < as_of].sort_values("updated_time").groupby(["order_id", "line_no"]).tail(1).copy()
    guest = known["guest_email"].str.strip().str.lower().map(lambda e: hashlib.sha256(e.encode()).hexdigest() if e else None)
    known["person_id"] = known["account_id"].map(person_of).fillna(guest.map(person_of))
    known["order_date"] = local_dates(known["order_time"])
    known["amount"] = [int(q) * Decimal(p) - Decimal(d or "0") for q, p, d in zip(known["quantity"], known["unit_price"], known["discount"])]
    return known[(known["status"] == "completed") & known["person_id"].notna()]


def test_cohort_retention_equals_a_pandas_computation_over_the_landing_files(pipeline):
    lines = landing_lines(pipeline["root"], persons_of(pipeline["lake"]), END_OF_RUN)
    lines = lines.assign(month=[d.replace(day=1) for d in lines["order_date"]])
    lines["cohort"] = lines.groupby("person_id")["month"].transform("min")
    lines["since"] = [(m.year - c.year) * 12 + m.month - c.month for m, c in zip(lines["month"], lines["cohort"])]
    sizes = lines.groupby("cohort")["person_id"].nunique()
    expected = {}
    for cohort, persons in sizes.items():
        for since in range((END.year - cohort.year) * 12 + END.month - cohort.month + 1):
            that = lines[(lines["cohort"] == cohort) & (lines["since"] == since)]
            expected[(cohort, since)] = (persons, that["person_id"].nunique(), round(that["person_id"].nunique() / persons, 4), sum(that["amount"], Decimal("0.00")))
    actual = {(r["cohort_month"], r["months_since"]): (r["cohort_persons"], r["retained_persons"], r["retained_share"], r["revenue"])
              for r in pipeline["lake"].read("gold.cohort_retention").collect()}
    assert len(expected) >= 3 and actual == expected


def test_the_churn_rankings_recency_auc_equals_pandas_and_both_aucs_are_in_mlflow(pipeline):
    conf, lake, root = pipeline["conf"], pipeline["lake"], pipeline["root"]
    judged = pipeline["analyze"]["retention"]["churn_ranking"]
    cutoff = END - dt.timedelta(days=conf.analyze.retention.churn_days)
    person_of = persons_of(lake)
    then = landing_lines(root, person_of, pd.Timestamp(cutoff + dt.timedelta(days=1), tz=TIMEZONE))
    last = then[then["order_date"] <= cutoff].groupby("person_id")["order_date"].max()
    now = landing_lines(root, person_of, END_OF_RUN)
    bought_after = set(now.loc[(now["order_date"] > cutoff) & (now["order_date"] <= END), "person_id"])
    days_since = {p: (cutoff - d).days for p, d in last.items()}
    churned = [days_since[p] for p in days_since if p not in bought_after]
    stayed = [days_since[p] for p in days_since if p in bought_after]
    # The recency baseline's AUC: the chance a churned buyer's last purchase is older than a staying one's (ties count half).
    auc = sum((c > s) + 0.5 * (c == s) for c in churned for s in stayed) / (len(churned) * len(stayed))
    assert (judged["cutoff"], judged["buyers"], judged["churned"]) == (str(cutoff), len(days_since), len(churned))
    assert judged["auc_recency"] == round(auc, 4) and 0 <= judged["auc_p_alive"] <= 1
    assert judged["served"] == ("p_alive" if judged["auc_p_alive"] > judged["auc_recency"] else "recency")
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
    person_of = persons_of(lake)
    lapsed = {person_of.get(a) for accounts in truth.loc[truth["alive_at_end"] == "false", "account_ids"].fillna("") for a in accounts.split(";")}
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
