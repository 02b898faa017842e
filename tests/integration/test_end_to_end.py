"""All four stages over tiny generated data, with the checks a data engineer would make."""

import csv
import datetime as dt
import glob
import hashlib
import json
import os

import pytest
from mlflow import MlflowClient

from crmlake.acquire import job as acquire
from crmlake.analyze import job as analyze
from crmlake.decide import job as decide
from crmlake.generate.landing import write_landing
from crmlake.organize import job as organize

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    root = tmp_path_factory.mktemp("e2e")
    conf = load_conf(
        "conf/local.yaml",
        overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                   f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts"],
        environ={},
    )
    truth = write_landing(spark, conf.landing_root, customers=300, days=45, end=END, seed=3, timezone="Asia/Taipei")
    first = acquire.run(spark, conf, END)
    organize.run(spark, conf, END)
    analyzed = analyze.run(spark, conf, END)
    decided = decide.run(spark, conf, END)
    return {"conf": conf, "lake": Lake(spark, conf), "truth": truth, "acquire": first, "analyze": analyzed, "decide": decided, "root": root}


def test_every_file_balances_and_every_planted_defect_is_quarantined(pipeline):
    lake, truth = pipeline["lake"], pipeline["truth"]
    log = lake.read("bronze.ingest_log").collect()
    for row in log:
        assert row["records_read"] == row["accepted"] + row["quarantined"] + row["duplicates"], row["path"]
    assert sum(1 for r in log if r["status"] == "duplicate_file") == truth["defects"]["orders_redelivered_files"]
    quarantine = lake.read("bronze.quarantine").collect()
    by_source = {}
    for row in quarantine:
        assert row["reason"] and row["source_file"] and row["source_line"] > 0
        by_source[row["source"]] = by_source.get(row["source"], 0) + 1
    assert by_source == {
        "clickstream": truth["defects"]["clickstream_bad_lines"],
        "orders": truth["defects"]["orders_bad_lines"],
        "customers": truth["defects"]["customers_bad_lines"],
    }
    clicks = lake.read("bronze.clickstream")
    assert clicks.count() == clicks.select("event_id").distinct().count()
    assert sum(r["duplicates"] for r in log if r["source"] == "clickstream") == truth["defects"]["clickstream_duplicate_events"]


def test_rerunning_acquire_for_the_same_date_adds_nothing(spark, pipeline):
    lake = pipeline["lake"]
    before = {t: lake.version(t) for t in ("bronze.clickstream", "bronze.orders", "bronze.quarantine")}
    again = acquire.run(spark, pipeline["conf"], END)
    assert all(r["files_new"] == 0 and r["accepted"] == 0 for r in again.values())
    assert {t: lake.version(t) for t in before} == before


def test_exported_audience_has_consent_and_a_true_manifest(pipeline):
    lake = pipeline["lake"]
    (folder,) = pipeline["decide"]["exports"]
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    data = os.path.join(folder, "audience.csv")
    with open(data, newline="") as fh:
        members = list(csv.DictReader(fh))
    assert manifest["row_count"] == len(members) > 0
    assert manifest["sha256"] == hashlib.sha256(open(data, "rb").read()).hexdigest()
    assert manifest["models"]["propensity"]["name"] == "crmlake-propensity"
    consent = {r["account_id"]: r["marketing_consent"] for r in lake.read("silver.customers").collect()}
    assert all(consent[m["account_id"]] is True for m in members)
    scores = [float(m["propensity_score"]) for m in members]
    assert scores == sorted(scores, reverse=True)


def test_models_are_registered_with_a_champion_and_beat_chance(pipeline):
    conf = pipeline["conf"]
    client = MlflowClient(tracking_uri=conf.get("mlflow.tracking_uri"), registry_uri=conf.get("mlflow.tracking_uri"))
    for name in ("crmlake-propensity", "crmlake-segmentation"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert pipeline["analyze"]["propensity"]["auc_holdout"] > 0.6


def test_erased_email_is_nowhere_under_the_lake_or_exports(pipeline):
    email = pipeline["truth"]["erased"]["email"].encode()
    account = pipeline["truth"]["erased"]["account_id"]
    lake = pipeline["lake"]
    (profile,) = [r for r in lake.read("silver.customers").collect() if r["account_id"] == account]
    assert profile["erased"] and profile["email"] is None
    for base in ("lake", "exports"):
        for path in glob.glob(str(pipeline["root"] / base / "**" / "*"), recursive=True):
            if os.path.isfile(path):
                assert email not in open(path, "rb").read(), path


def test_backfill_over_two_dates_changes_nothing_and_records_every_run(spark, pipeline):
    from crmlake.runs import run_stage

    lake, conf = pipeline["lake"], pipeline["conf"]
    before = {t: sorted(map(tuple, lake.read(t).drop("ingested_at").collect())) for t in ("silver.order_lines", "bronze.clickstream")}
    for day in (END - dt.timedelta(days=1), END):
        for stage in ("acquire", "organize"):
            run_stage(spark, conf, stage, day)
    after = {t: sorted(map(tuple, lake.read(t).drop("ingested_at").collect())) for t in before}
    assert after == before
    runs = lake.read("gold.job_runs").collect()
    assert sorted((r["job"], str(r["run_date"])) for r in runs) == [
        ("acquire", "2026-11-20"), ("acquire", "2026-11-21"), ("organize", "2026-11-20"), ("organize", "2026-11-21"),
    ]
    assert all(r["outcome"] == "succeeded" and r["conf_hash"] == conf.fingerprint() and r["ended_at"] >= r["started_at"] for r in runs)


def test_analyze_before_any_purchase_window_is_skipped_not_failed(spark, pipeline):
    summary = analyze.run(spark, pipeline["conf"], dt.date(2026, 9, 1))
    assert "training needs buyers and non-buyers" in summary["skipped"]
    assert decide.run(spark, pipeline["conf"], dt.date(2026, 9, 1))["exports"] == []


@pytest.mark.parametrize("notebook", ["segments.ipynb", "propensity_diagnostics.ipynb"])
def test_notebook_runs_on_the_lake(pipeline, notebook, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    conf = pipeline["conf"]
    for key, value in (("PATHS__LAKE", conf.lake_root), ("MLFLOW__TRACKING_URI", conf.get("mlflow.tracking_uri")), ("SPARK__MASTER", "local[1]")):
        monkeypatch.setenv(f"CRMLAKE__{key}", value)
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "notebooks")
    book = nbformat.read(os.path.join(folder, notebook), as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("scores of 2026-11-21" in o.get("text", "") for o in outputs)
