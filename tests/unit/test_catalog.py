"""The table catalog: every table declared once, personal columns marked, writes checked,
statistics free of personal data."""

import glob
import json
import os
import re

import pytest

from crmlake.lake import Catalog, Lake, LakeError, SchemaMismatchError, UndeclaredTableError, load_catalog
from crmlake.lake.catalog import PERSONAL_NAME, readme_table_list

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def test_every_column_named_like_personal_data_is_declared_personal():
    catalog = load_catalog()
    unmarked = [
        f"{spec.name}.{column}" for spec in catalog.tables.values() for column in spec.columns
        if PERSONAL_NAME.search(column) and column not in spec.personal
    ]
    assert unmarked == []
    # The rule itself, on names written by hand.
    assert [bool(PERSONAL_NAME.search(c)) for c in ("email", "guest_email", "phone_sha256", "name", "raw_text", "identifier", "file_sha256", "segment")] == [
        True, True, True, True, True, True, False, False,
    ]


def test_every_table_says_how_a_subject_s_rows_are_found_or_why_it_holds_none():
    catalog = load_catalog()
    for spec in catalog.tables.values():
        if spec.holds_subjects:
            assert spec.erase in ("delete", "blank") and spec.subject_none is None, spec.name
        else:
            assert spec.subject_none and spec.erase is None and not spec.personal, spec.name
    # Erasure and subject access walk these: the two that subject access once left out among them.
    assert {"gold.next_best_category", "bronze.campaign_events"} <= {spec.name for spec in catalog.subject_tables()}


def test_a_table_without_a_subject_rule_fails_the_catalog_naming_it():
    signups = {"columns": {"account_id": "string", "email": "string"}, "personal": ["email"]}
    with pytest.raises(LakeError, match="table silver.newsletter_signups has no subject rule"):
        Catalog.from_dict({"silver.newsletter_signups": signups})
    with pytest.raises(LakeError, match="table silver.newsletter_signups: a table holding no one's rows says why"):
        Catalog.from_dict({"silver.newsletter_signups": {**signups, "personal": [], "subject": {"none": " "}}})
    with pytest.raises(LakeError, match="table silver.newsletter_signups holds personal columns \\(email\\) but its subject rule says it holds no one's rows"):
        Catalog.from_dict({"silver.newsletter_signups": {**signups, "subject": {"none": "sign-ups"}}})
    with pytest.raises(LakeError, match="table silver.newsletter_signups: subject match kind household unknown"):
        Catalog.from_dict({"silver.newsletter_signups": {**signups, "subject": {"match": {"account_id": "household"}, "erase": "delete"}}})
    with pytest.raises(LakeError, match="table silver.newsletter_signups: unknown key erase"):
        Catalog.from_dict({"silver.newsletter_signups": {**signups, "erase": "delete", "subject": {"match": {"account_id": "account"}, "erase": "delete"}}})


def test_writing_an_undeclared_table_fails_naming_it(spark, conf):
    lake = Lake(spark, conf)
    people = spark.createDataFrame([("A1", "ann@example.com")], "account_id string, email string")
    with pytest.raises(UndeclaredTableError, match="silver.newsletter_signups is not declared"):
        lake.append("silver.newsletter_signups", people)
    assert not os.path.exists(lake.path("silver.newsletter_signups"))


def test_a_column_the_catalog_does_not_list_fails_the_write(spark, conf):
    lake = Lake(spark, conf)
    state = spark.createDataFrame([("bronze.orders", None, None, None, "x@y")], "source string, version_read bigint, run_date date, updated_at timestamp, email string")
    with pytest.raises(SchemaMismatchError, match="silver.organize_state.*not declared: email"):
        lake.overwrite("silver.organize_state", state)


def test_rs_statistics_hold_no_personal_column(spark, conf):
    lake = Lake(spark, conf)
    rows = spark.createDataFrame(
        [("A1", "upsert", "Ann.Lee@Example.com", "0912345678", "Ann Lee", 1990), ("A2", "upsert", "bo@example.com", "0987654321", "Bo", 1985)],
        "account_id string, op string, email string, phone string, name string, birth_year int",
    )
    lake.append("bronze.customers", load_catalog().spec("bronze.customers").padded(rows))
    log_text = "".join(open(p).read() for p in glob.glob(os.path.join(lake.path("bronze.customers"), "_delta_log", "*.json")))
    for value in ("Ann.Lee@Example.com", "0912345678", "Ann Lee", "bo@example.com"):
        assert value not in log_text
    stats = [json.loads(json.loads(line)["add"]["stats"]) for line in log_text.splitlines() if '"add"' in line]
    personal = set(load_catalog().spec("bronze.customers").personal)
    for file_stats in stats:   # birth_year is personal: no min/max for it either
        assert personal.isdisjoint(file_stats["nullCount"]) and personal.isdisjoint(file_stats["minValues"])
    assert sum(s["nullCount"]["account_id"] for s in stats) == 0 and sum(s["numRecords"] for s in stats) == 2
    (metadata,) = [json.loads(line)["metaData"] for line in log_text.splitlines() if '"metaData"' in line]
    declared = metadata["configuration"]["delta.dataSkippingStatsColumns"].split(",")
    assert "account_id" in declared and personal.isdisjoint(declared)


def test_readme_table_list_is_the_catalog():
    text = open(README, encoding="utf-8").read()
    block = re.search(r"<!-- catalog:begin -->\n(.*?)<!-- catalog:end -->", text, re.S)
    assert block, "README.md has no catalog block"
    assert block.group(1) == readme_table_list(load_catalog()), "regenerate with: python -m crmlake.lake.catalog >> README block"


def test_a_table_never_written_reads_empty_with_its_declared_columns(spark, conf):
    lake = Lake(spark, conf)
    receipts = lake.read_or_empty("gold.erasure_log")
    assert receipts.count() == 0
    assert [(f.name, f.dataType.simpleString()) for f in receipts.schema] == list(load_catalog().spec("gold.erasure_log").columns.items())


def test_maintain_keeps_only_what_the_layer_s_retention_allows(spark, conf):
    lake = Lake(spark, conf.with_overrides(["lake.retention_days.silver=0"]))
    for source in ("bronze.orders", "bronze.customers"):
        lake.overwrite("silver.organize_state", spark.createDataFrame([(source, None, None, None)], load_catalog().spec("silver.organize_state").ddl).coalesce(1))
    table = lake.path("silver.organize_state")
    assert len(glob.glob(os.path.join(table, "*.parquet"))) == 2
    done = lake.maintain("silver.organize_state")
    assert done["files_deleted"] == 1 and lake.retention_hours("silver.organize_state") == 0
    assert [os.path.basename(p) for p in glob.glob(os.path.join(table, "*.parquet"))] == [os.path.basename(f["path"]) for f in lake.files("silver.organize_state")]
    assert [r["source"] for r in lake.read("silver.organize_state").collect()] == ["bronze.customers"]
