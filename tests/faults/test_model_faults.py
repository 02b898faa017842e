"""Model faults: a model that cannot train does not stop analyze's scores, and a registration
killed (SIGKILL, a real process) before its version is judged is completed by the rerun.

The registration cases run ``model_writer.py`` (a tiny propensity model registered and judged
by the library functions analyze uses) in its own process, with an MLflow SQLite store in the
test's temporary directory.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import signal
import subprocess

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.generate.landing import write_landing
from crmlake.lake import Lake
from crmlake.runs import run_stage
from crmlake.serve import catalog_page
from processes import run_armed
from model_writer import MODEL_NAME

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)
WRITER = os.path.join(os.path.dirname(__file__), "model_writer.py")


def write_model(root, inputs_fingerprint: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    """Run model_writer.py on the MLflow store under ``root``, with ``crash_at`` armed if given;
    return the finished process (its stdout: the facts as JSON)."""
    return run_armed([WRITER, str(root), inputs_fingerprint], crash_at=crash_at)


def registry(root) -> tuple[list[str], str | None, dict]:
    """Return (every version of the model, the champion's version or None, each version's decision tag)."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_model_versions(f"name = '{MODEL_NAME}'")
    try:
        champion = str(client.get_model_version_by_alias(MODEL_NAME, tracking.CHAMPION).version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic error for a missing alias
        champion = None
    return sorted(str(v.version) for v in found), champion, {str(v.version): v.tags.get(tracking.DECISION_TAG) for v in found}


def test_killed_after_registering_the_first_version_the_rerun_makes_it_champion(tmp_path):
    killed = write_model(tmp_path, "day-1", crash_at="analyze.registered")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert registry(tmp_path) == (["1"], None, {"1": None})   # registered, never judged: no champion
    rerun = write_model(tmp_path, "day-1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    facts = json.loads(rerun.stdout.splitlines()[-1])
    assert facts["reused"] is True and facts["version"] == "1" and facts["champion_moved"] is True
    assert registry(tmp_path) == (["1"], "1", {"1": facts["champion_decision"]})   # the same version, no second one
    assert facts["champion_decision"].startswith("no champion yet")


def test_killed_after_moving_the_alias_the_rerun_records_the_decision(tmp_path):
    killed = write_model(tmp_path, "day-1", crash_at="analyze.promoted")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert registry(tmp_path) == (["1"], "1", {"1": None})
    rerun = write_model(tmp_path, "day-1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    facts = json.loads(rerun.stdout.splitlines()[-1])
    assert facts["version"] == "1" and facts["champion_moved"] is False
    assert registry(tmp_path) == (["1"], "1", {"1": "version 1 is champion already"})


def test_a_challenger_left_unjudged_is_judged_against_the_champion_by_the_rerun(tmp_path):
    assert write_model(tmp_path, "day-1").returncode == 0
    killed = write_model(tmp_path, "day-2", crash_at="analyze.registered")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rerun = write_model(tmp_path, "day-2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    facts = json.loads(rerun.stdout.splitlines()[-1])
    # The same data: the challenger scores what the champion does, short of the margin.
    assert facts["version"] == "2" and facts["champion_moved"] is False
    assert facts["champion_decision"].startswith("champion v1 kept: challenger v2")
    versions, champion, decisions = registry(tmp_path)
    assert versions == ["1", "2"] and champion == "1" and decisions["2"] == facts["champion_decision"]


@pytest.fixture
def first_weeks(spark, conf, model_overrides):
    """A retailer's first weeks: 60 customers x 20 days acquired and organized for END; returns the conf."""
    conf = conf.with_overrides(model_overrides)
    write_landing(spark, conf.landing_root, customers=60, days=20, end=END, seed=3, timezone="Asia/Taipei")
    for stage in ("acquire", "organize"):
        run_stage(spark, conf, stage, END)
    return conf


def test_a_model_without_data_is_listed_and_every_person_is_still_scored(spark, first_weeks):
    conf, lake = first_weeks, Lake(spark, first_weeks)
    summary = run_stage(spark, conf, "analyze", END)
    # No order before the label window's cutoff: no person x category pair to learn from; too
    # few repeat buyers for lifetime value. Propensity learns (members then, buyers after).
    assert set(summary["failed"]) == {"next_best_category", "lifetime_value"}
    # Lifetime value not fitted today: neither of its forecasts is judged nor served (recency ranks churn risk).
    judged = summary["lifetime_value"]
    assert (judged["churn_ranking"], judged["value_forecast"]) == ({}, {})
    assert judged["served"] == {"churn_ranking": "recency", "value_forecast": "last_horizon_repeats"}
    assert summary["failed"]["next_best_category"] == summary["next_best_category"]["failed"]
    assert summary["propensity"]["champion_moved"] is True
    persons = {r["person_id"] for r in lake.read("silver.customer_360").select("person_id").collect()}
    scores = lake.read("gold.customer_scores").where(F.col("score_date") == F.lit(END)).collect()
    assert sorted(r["person_id"] for r in scores) == sorted(persons)
    for column in ("r_score", "f_score", "m_score", "rfm_cell", "value_tier", "loyalty_level"):
        assert all(r[column] is not None for r in scores), column
    # Propensity by its champion; the failed models' columns null (they have no champion to fall back on).
    assert {r["propensity_model"] for r in scores} == {f"crmlake-propensity/{summary['propensity']['version']}"}
    assert all(r["propensity_score"] is not None and r["propensity_decile"] is not None for r in scores)
    assert all(r["top_category"] is None and r["category_model"] is None and r["p_alive"] is None for r in scores)
    (record,) = lake.read("gold.job_runs").where("job = 'analyze'").collect()
    assert record["outcome"] == "partial" and json.loads(record["counts"])["failed"] == summary["failed"]
    assert "next_best_category: " in record["reason"] and "lifetime_value: " in record["reason"]
    page = catalog_page(conf.exports_root)   # the page shows it too
    assert '<tr class="run partial"><td>analyze</td>' in page and html.escape(summary["failed"]["next_best_category"]) in page
    # decide publishes from the scores that were written (an audience's rule over propensity).
    decided = run_stage(spark, conf, "decide", END)
    assert decided["exports"] and decided["failed"] == {}
