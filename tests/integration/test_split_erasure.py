"""Erasing an account that new evidence split off from the person it was part of: the rows
scored for that person before the split go with it, those scored after stay with the part
that kept the person's id, and subject access for the account returns the former.

A landing zone written by hand, acquired and organized by the real stages. On day 1 Ann's
two accounts A1 and A2 share her email, name and birth year: one person P. Scores are
written for P as analyze would after each day's organize. On day 2 A2's profile changes to
another name, email and birth year (the account was someone else's all along): organize
splits it off into a person Q of its own, and A1 keeps P. Without a record that A2 was P's
until day 2, erasing A2 finds only Q, and P's day-1 scores, computed from A2's data too, stay.
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import json
import os

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from crmlake.acquire import job as acquire
from crmlake.analyze.reports import write_report_csv
from crmlake.config import load_conf
from crmlake.exports import export_rows, publish_audience
from crmlake.lake import Lake
from crmlake.organize import job as organize
from crmlake.people import ACCOUNT
from crmlake.privacy import apply_erasures, request_erasure
from crmlake.subjects import subject_access
from crmlake.summaries import PERSON_LIST_SUFFIX, REPORTS_DIR
from hand_landing import access_rows, deliver
from landing_frames import identity_lookup

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("split_erasure")]
DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
SCORED = ("gold.customer_scores", "gold.audience_uplift")


def _iso(day: dt.date, hour: int = 0) -> str:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def profile(account_id: str, day: dt.date, name: str, email: str, birth_year: int) -> dict:
    return {"account_id": account_id, "op": "upsert", "updated_time": _iso(day, 8), "signup_time": _iso(DAY_1), "email": email, "name": name,
            "birth_year": birth_year, "marketing_consent": True, "account_type": "consumer"}


def score(lake: Lake, persons: list[str], day: dt.date) -> None:
    """Write score and uplift rows of ``persons`` for ``day``, as analyze would (other columns empty)."""
    for table in SCORED:
        rows = lake.spark.createDataFrame([(p, day) for p in persons], "person_id string, score_date date")
        lake.append(table, lake.catalog.spec(table).padded(rows), partition_by=["score_date"])


def publish(spark, conf, persons: list[str], day: dt.date) -> None:
    """Publish the audience ``split`` of ``day`` listing ``persons`` (each an email of no account's, no phone: found by person alone), as decide would."""
    rows = spark.createDataFrame([(p, f"{p.lower()}@example.net", None, 0.5, 5, "new", "455", "books") for p in persons],
                               "person_id string, email string, phone string, propensity_score double, propensity_decile int, segment string, rfm_cell string, top_category string")
    publish_audience(export_rows(rows, conf.business.default_phone_region, False), conf.exports_root, "split", day, {})


def person_lists(conf, persons: list[str]) -> dict:
    """Write a report's person lists of November (the split's month) and December listing ``persons``; return month -> path."""
    folder = os.path.join(conf.exports_root, REPORTS_DIR, "monthly")
    os.makedirs(folder, exist_ok=True)
    return {month: write_report_csv(os.path.join(folder, f"{month}_callers{PERSON_LIST_SUFFIX}"), ["person_id"], [[p] for p in persons])
            for month in ("2026-11", "2026-12")}


def listed(path: str) -> list[str]:
    return sorted(r["person_id"] for r in csv.DictReader(open(path, newline="", encoding="utf-8")))


def persons_of(lake: Lake) -> dict:
    return identity_lookup(lake).get(ACCOUNT, {})


def rows_of(lake: Lake, table: str) -> list:
    return sorted((r["person_id"], r["score_date"]) for r in lake.read(table).collect())


def history(lake: Lake) -> list:
    return sorted(tuple(r) for r in lake.read_or_empty("silver.account_persons").select("account_id", "person_id", "from_date", "to_date").collect())


@pytest.fixture(scope="module")
def split(spark, tmp_path_factory):
    """Day 1 organized and scored; day 2 splits A2 off, organized (then again, and fully
    refreshed) and scored; subject access for each account; A2 erased and organized again."""
    root = tmp_path_factory.mktemp("split_erasure")
    conf = load_conf("conf/local.yaml", overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                                   f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/mlartifacts"], environ={})
    lake, landing, seen = Lake(spark, conf), conf.landing_root, {}
    deliver(landing, "customers", DAY_1, [profile("A1", DAY_1, "Ann Lee", "ann@example.com", 1980), profile("A2", DAY_1, "Ann Lee", "ann@example.com", 1980)])
    acquire.run(spark, conf, DAY_1)
    organize.run(spark, conf, DAY_1)
    seen["day_1"] = persons_of(lake)
    score(lake, sorted(set(seen["day_1"].values())), DAY_1)
    deliver(landing, "customers", DAY_2, [profile("A2", DAY_2, "Bea Moss", "bea@example.org", 1992)])
    acquire.run(spark, conf, DAY_2)
    seen["day_2_facts"] = organize.run(spark, conf, DAY_2)
    seen["day_2"], seen["history"] = persons_of(lake), history(lake)
    organize.run(spark, conf, DAY_2)   # a rerun with nothing new
    seen["history_rerun"] = history(lake)
    organize.run(spark, conf.with_overrides(["organize.full_refresh=true"]), DAY_2)
    seen["history_refreshed"], seen["refreshed"] = history(lake), persons_of(lake)
    score(lake, sorted(set(seen["day_2"].values())), DAY_2)
    for account in ("A1", "A2"):
        subject_access(lake, str(root / f"access_{account}"), account=account)
    seen["access"] = {account: str(root / f"access_{account}") for account in ("A1", "A2")}
    # Published before the erasure: an audience of day 1 and one of day 2 (both P's, and another
    # person's), and the person lists of the split's month and of the next.
    for day in (DAY_1, DAY_2):
        publish(spark, conf, [seen["day_2"]["A1"], "P-SOMEONE-ELSE"], day)
    seen["lists"] = person_lists(conf, [seen["day_2"]["A1"], "P-SOMEONE-ELSE"])
    seen["conf"] = conf
    request_erasure(lake, ["A2"], dt.datetime.now(dt.timezone.utc))
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    organize.run(spark, conf, DAY_2)
    seen["lake"] = lake
    return seen


def p_and_q(split) -> tuple[str, str]:
    return split["day_2"]["A1"], split["day_2"]["A2"]


def test_new_evidence_splits_the_second_account_off_and_the_first_keeps_the_person(split):
    assert split["day_1"]["A1"] == split["day_1"]["A2"]
    p, q = p_and_q(split)
    assert split["day_2_facts"]["identity_grown"] and p == split["day_1"]["A1"] and q != p


def test_organize_records_the_person_the_account_left_once_through_reruns_and_a_full_refresh(split):
    p, _ = p_and_q(split)
    assert split["history"] == [("A2", p, None, DAY_2)]
    assert split["history_rerun"] == split["history_refreshed"] == split["history"]
    assert split["refreshed"] == split["day_2"]


def test_erasing_the_account_split_off_takes_the_person_s_rows_scored_before_the_split_and_its_own(split):
    lake, (p, _) = split["lake"], p_and_q(split)
    for table in SCORED:
        assert rows_of(lake, table) == [(p, DAY_2)], table   # after the split: Ann's alone


def test_erasing_the_account_split_off_leaves_the_other_account_s_data(split):
    lake, (p, _) = split["lake"], p_and_q(split)
    assert persons_of(lake) == {"A1": p}
    assert [(r["account_id"], r["erased"], r["email"]) for r in lake.read("silver.customers").where(F.col("account_id") == "A1").collect()] == [("A1", False, "ann@example.com")]
    assert [(r["person_id"], r["account_ids"]) for r in lake.read("silver.customer_360").collect()] == [(p, ["A1"])]
    assert history(lake) == []


def test_subject_access_for_the_account_split_off_returns_the_person_s_rows_before_the_split_and_nothing_of_the_other(split):
    p, q = p_and_q(split)
    folder = split["access"]["A2"]
    for table in SCORED:
        assert sorted((r["person_id"], r["score_date"]) for r in access_rows(folder, table)) == sorted([(p, DAY_1.isoformat()), (q, DAY_2.isoformat())]), table
    index = json.load(open(os.path.join(folder, "index.json")))
    assert index["accounts"] == ["A2"] and index["earlier_persons"] == [{"person_id": p, "from_date": None, "to_date": DAY_2.isoformat()}]
    # No row returned names the other account (its profile, pairs or person's 360 row).
    assert [path for path in glob.glob(os.path.join(folder, "*.json")) if '"A1"' in open(path).read()] == []


def test_subject_access_for_the_account_that_kept_the_person_returns_its_rows_and_none_of_the_new_person_s(split):
    p, _ = p_and_q(split)
    rows = sorted((r["person_id"], r["score_date"]) for r in access_rows(split["access"]["A1"], "gold.customer_scores"))
    assert rows == [(p, DAY_1.isoformat()), (p, DAY_2.isoformat())]


def test_erasing_the_account_split_off_amends_the_audience_files_and_person_lists_of_the_days_it_was_part_of_the_person(split):
    p, _ = p_and_q(split)
    exports = split["conf"].exports_root
    published = {day: pq.read_table(os.path.join(exports, "split", day.isoformat(), "audience.parquet")).column("person_id").to_pylist() for day in (DAY_1, DAY_2)}
    # Day 1's file was decided while A2 was part of P: P's row held A2's data and goes; day 2's is Ann's alone and stays.
    assert published == {DAY_1: ["P-SOMEONE-ELSE"], DAY_2: [p, "P-SOMEONE-ELSE"]}
    manifest = json.load(open(os.path.join(exports, "split", DAY_1.isoformat(), "manifest.json")))
    assert manifest["row_count"] == 1 and [a["rows_removed"] for a in manifest["amendments"]] == [1]
    assert "amendments" not in json.load(open(os.path.join(exports, "split", DAY_2.isoformat(), "manifest.json")))
    # A list of the split's month may have been written before it: P goes (more than A2's, never less); December's keeps P.
    assert {month: listed(path) for month, path in split["lists"].items()} == {"2026-11": ["P-SOMEONE-ELSE"], "2026-12": sorted([p, "P-SOMEONE-ELSE"])}
