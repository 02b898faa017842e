"""The one file-system layer (crmlake.files) and the landing zone through it: a relative path,
an absolute path and a ``file:`` URI name the same files and reach the same code."""

import datetime as dt
import hashlib
import os

import pytest

from crmlake import files
from crmlake.acquire import job as acquire
from crmlake.acquire.contract import SOURCES
from crmlake.cli import exit_code_of
from crmlake.config import ConfigError, load_conf
from crmlake.lake import Lake

DAY = dt.date(2026, 11, 21)
# One good campaign event and one with a bad time: a bronze row and a quarantined one.
EVENTS_CSV = "campaign_id,account_id,event,event_time,revenue\r\nc1,A6,unsubscribed,2026-11-20T10:00:00Z,\r\nc1,A7,clicked,not a time,\r\n"


def test_a_relative_path_and_a_file_uri_are_the_absolute_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = [files.location("landing"), files.location((tmp_path / "landing").as_uri()), files.location(f"{tmp_path}/landing/")]
    assert named == [str(tmp_path / "landing")] * 3


def test_a_remote_location_keeps_its_uri_and_joins_with_slashes():
    root = files.location("s3a://crm-bucket/landing/")
    assert root == "s3a://crm-bucket/landing"
    assert files.join(root, "orders", "dt=2026-11-21") == "s3a://crm-bucket/landing/orders/dt=2026-11-21"
    assert files.path_part("hdfs://namenode:8020/crm/landing/a b%.json") == "/crm/landing/a b%.json"
    assert files.spark_uri(root) == root and files.spark_uri("/crm/landing") == "file:///crm/landing"


def test_a_file_system_that_cannot_be_opened_is_an_error_naming_it():
    with pytest.raises(OSError, match="nosuchfs://host: cannot open this file system here"):
        files.info("nosuchfs://host/landing")


def test_a_folder_lists_its_entries_by_name_with_the_size_and_time_the_disk_keeps(tmp_path):
    (tmp_path / "b.json").write_bytes(b"12345")
    (tmp_path / "a").mkdir()
    listed = files.list_folder(tmp_path.as_uri())
    assert [(e.name, e.location, e.is_dir) for e in listed] == [("a", str(tmp_path / "a"), True), ("b.json", str(tmp_path / "b.json"), False)]
    assert (listed[1].size, listed[1].modified_ns) == (5, os.stat(tmp_path / "b.json").st_mtime_ns)


def test_listing_a_folder_that_is_not_there_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        files.list_folder(str(tmp_path / "nope"))


def test_a_written_file_gets_its_folders_and_reads_back_with_its_checksum(tmp_path):
    target = files.join(str(tmp_path), "reports", "daily", "2026-11-21.csv")
    files.write_text(target, "día,1\n")
    assert files.read_text(target) == "día,1\n"
    assert files.file_sha256(target) == hashlib.sha256("día,1\n".encode()).hexdigest()


def test_a_landing_zone_that_is_not_there_fails_acquire_with_exit_2_naming_it(spark, conf, capsys):
    missing = conf.with_overrides([f"paths.landing={conf.lake_root}/no-landing"])
    with pytest.raises(ConfigError, match="no-landing: the landing zone is not there"):
        acquire.discover(missing.landing_root, "orders", DAY)
    assert exit_code_of(lambda: acquire.run(spark, missing, DAY)) == 2
    assert f"paths.landing={conf.lake_root}/no-landing" in capsys.readouterr().err


def test_a_source_never_delivered_is_no_error(conf, tmp_path):
    (tmp_path / "landing").mkdir()
    assert acquire.discover(str(tmp_path / "landing"), "orders", DAY) == []


def test_a_landing_zone_named_by_a_file_uri_or_a_relative_path_acquires_the_same_records(spark, conf, tmp_path, monkeypatch):
    folder = tmp_path / "landing" / "campaign_events" / "dt=2026-11-20"
    folder.mkdir(parents=True)
    (folder / "events.csv").write_text(EVENTS_CSV)
    monkeypatch.chdir(tmp_path)
    acquired = {}
    for name, landing in (("file-uri", (tmp_path / "landing").as_uri()), ("relative", "landing")):
        run_conf = conf.with_overrides([f"paths.landing={landing}", f"paths.lake={tmp_path}/lake-{name}"])
        lake = Lake(spark, run_conf)
        facts = acquire.acquire_source(spark, lake, run_conf, SOURCES["campaign_events"], DAY, acquire.IngestLog(frozenset(), frozenset()))
        tables = {t: sorted(map(tuple, lake.read(t).drop("ingested_at", "run_date").collect())) for t in ("bronze.campaign_events", "bronze.quarantine")}
        logged = [r["path"] for r in lake.read(acquire.INGEST_LOG).select("path").collect()]
        acquired[name] = (facts, tables, logged)
    assert acquired["file-uri"] == acquired["relative"]
    facts, tables, logged = acquired["relative"]
    assert (facts["accepted"], facts["quarantined"]) == (1, 1)
    assert logged == [str(folder / "events.csv")]   # the file's absolute path, however the zone was named
    assert [row[-3:] for row in tables["bronze.campaign_events"]] == [(str(folder / "events.csv"), 2, dt.date(2026, 11, 20))]


def test_an_exports_root_on_another_file_system_is_refused_at_conf_load_naming_it():
    with pytest.raises(ConfigError, match="'paths.exports' = 'hdfs:///crm/exports'.*local or mounted folder"):
        load_conf(None, ["paths.exports=hdfs:///crm/exports"], environ={})


def test_an_exports_root_given_as_a_file_uri_is_the_local_folder(tmp_path):
    assert load_conf(None, [f"paths.exports={(tmp_path / 'exports').as_uri()}"], environ={}).exports_root == str(tmp_path / "exports")
