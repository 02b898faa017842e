"""Acquire against a landing zone holding every class of bad record the contract names."""

import bz2
import datetime as dt
import gzip
import json
import os
import shutil

import pytest

from crmlake.acquire import job as acquire

pytestmark = pytest.mark.integration
RUN_DATE = dt.date(2026, 11, 21)
CLICK = {
    "event_id": "e1", "event_time": "2026-11-20T10:00:00.000+08:00", "received_time": "2026-11-20T02:00:01Z",
    "event_type": "page_view", "anonymous_id": "ck1", "tracking_consent": True, "page_url": "/", "device": "app",
}
ORDER_HEADER = "order_id,line_no,order_time,account_id,guest_email,channel,store_id,product_id,category,quantity,unit_price,discount,currency,status,updated_time"
T = "2026-11-20T10:00:00+08:00"


def put(landing, source, day, name, data: bytes):
    folder = os.path.join(landing, source, f"dt={day}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(data)
    return os.path.join(folder, name)


def jl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


@pytest.fixture(scope="module")
def acquired(spark, tmp_path_factory):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    root = tmp_path_factory.mktemp("fuzz")
    landing = str(root / "landing")
    conf = load_conf("conf/local.yaml", overrides=[f"paths.landing={landing}", f"paths.lake={root}/lake", "acquire.max_line_bytes=2048"], environ={})
    clicks = jl(
        CLICK,                                                             # 1 good
        b'{"event_id": "e2", "event_time": ',                             # 2 unparsable
        {k: v for k, v in CLICK.items() if k != "device"} | {"event_id": "e3"},   # 3 missing field
        CLICK | {"event_id": "e4", "tracking_consent": "yes"},            # 4 wrong type
        CLICK | {"event_id": "e5", "event_type": "hover"},                # 5 unknown enum
        CLICK | {"event_id": "e6", "event_time": "2026-11-20T10:00:00"},  # 6 no offset
        b'{"event_id": "e7", "page_url": "/caf\xe9"}',                    # 7 invalid UTF-8 (Latin-1 byte)
        CLICK | {"event_id": "e8", "page_url": "/" + "x" * 3000},         # 8 oversize
        CLICK | {"event_id": "e9", "new_field": "drift"},                 # 9 good, unknown field kept
        CLICK | {"received_time": "2026-11-20T02:00:09Z"},                # 10 same event_id as 1: duplicate
        CLICK | {"event_id": "e13", "event_time": "2026-02-30T10:00:00+08:00"},  # 11 a date that does not exist
        CLICK | {"event_id": "e14", "received_time": "2026-11-20T24:00:01Z"},    # 12 an hour that does not exist
    )
    first = put(landing, "clickstream", "2026-11-20", "events-1.jsonl", clicks)
    whole = gzip.compress(jl(*[CLICK | {"event_id": f"g{i}"} for i in range(200)]))
    put(landing, "clickstream", "2026-11-20", "events-2.jsonl.gz", whole[: len(whole) // 2])
    put(landing, "clickstream", "2026-11-20", "empty.jsonl", b"")
    # Lines of Unicode whitespace only are data lines (bad records); of ASCII whitespace only, blank.
    put(landing, "clickstream", "2026-11-20", "spaces.jsonl", jl(
        CLICK | {"event_id": "s1"}, "\u2028".encode(), "\u00a0".encode(), b"\x0b", b"\r", CLICK | {"event_id": "s2"}))
    put(landing, "clickstream", "2026-11-20", "events-3.jsonl.bz2", bz2.compress(jl(CLICK | {"event_id": "b1"})) + bz2.compress(jl(CLICK | {"event_id": "b2"})))
    put(landing, "clickstream", "2026-11-20", "events-4.jsonl.zst", b"\x28\xb5\x2f\xfd zstd frame")
    shutil.copyfile(first, os.path.join(os.path.dirname(put(landing, "clickstream", "2026-11-21", "keep.jsonl", jl(CLICK | {"event_id": "e11"}))), "events-1-again.jsonl"))
    put(landing, "clickstream", "2026-11-22", "future.jsonl", jl(CLICK | {"event_id": "e12"}))   # after the run date
    orders = "\r\n".join([
        ORDER_HEADER,
        f"O1,1,{T},A1,,web,,p1,books,1,100.00,0.00,TWD,completed,{T}",
        f"O2,1,{T},A1,,web,,p1,books,1",                                        # 3: wrong field count
        f"O3,1,{T},A1,,web,,p1,books,1,12.3.4,0.00,TWD,completed,{T}",          # 4: bad money
        f"O4,1,{T},A1,,web,,p1,books,-2,100.00,0.00,TWD,completed,{T}",         # 5: bad quantity
        f'O5,1,{T},A1,,web,,"p,5","home\nand garden",1,100.00,0.00,TWD,completed,{T}',  # 6-7: quoted comma and newline
        f"O6,99999999999,{T},A1,,web,,p1,books,1,100.00,0.00,TWD,completed,{T}",  # 8: line_no overflows an int
        f"O7,1,{T},A1,,web,,p1,books,1,100.005,0.00,TWD,completed,{T}",        # 9: money with more digits than kept
        f"O8,1,{T},A1,,web,,p1,books,1,12345678901234567.00,0.00,TWD,completed,{T}",  # 10: money that overflows
    ]) + "\r\n"
    put(landing, "orders", "2026-11-20", "orders.csv", orders.encode())
    upsert = {"account_id": "A1", "op": "upsert", "updated_time": T, "signup_time": T, "marketing_consent": True, "account_type": "consumer"}
    put(landing, "customers", "2026-11-20", "c.jsonl", jl(upsert, {k: v for k, v in upsert.items() if k != "signup_time"} | {"account_id": "A2"}, upsert | {"account_id": "A3", "gender": "q"}))
    put(landing, "interactions", "2026-11-20", "i.csv", f"interaction_id,account_id,channel,type,opened_time,closed_time,satisfaction,agent_id\r\nI1,A1,chat,inquiry,{T},,7,ag1\r\n".encode())
    put(landing, "campaign_events", "2026-11-20", "e.csv", f"campaign_id,account_id,event,event_time,revenue\r\nc1,A1,viewed,{T},\r\nc1,A1,converted,{T},99.50\r\n".encode())
    results = acquire.run(spark, conf, RUN_DATE)
    return {"lake": Lake(spark, conf), "results": results}


def test_each_bad_line_is_quarantined_with_its_reason(acquired):
    found = {(os.path.basename(r["source_file"]), r["source_line"]): r["reason"] for r in acquired["lake"].read("bronze.quarantine").collect()}
    assert found == {
        ("events-1.jsonl", 2): "unparsable_json",
        ("events-1.jsonl", 3): "missing_field:device",
        ("events-1.jsonl", 4): "wrong_type:tracking_consent",
        ("events-1.jsonl", 5): "bad_enum:event_type",
        ("events-1.jsonl", 6): "bad_timestamp:event_time",
        ("events-1.jsonl", 7): "invalid_utf8",
        ("events-1.jsonl", 8): "oversize_line",
        ("events-1.jsonl", 11): "bad_timestamp:event_time",
        ("events-1.jsonl", 12): "bad_timestamp:received_time",
        ("events-2.jsonl.gz", 0): "unreadable_file: EOFError: Compressed file ended before the end-of-stream marker was reached",
        ("spaces.jsonl", 2): "unparsable_json",
        ("spaces.jsonl", 3): "unparsable_json",
        ("events-4.jsonl.zst", 0): "unreadable_file: unsupported_compression: events-4.jsonl.zst is .zst-compressed; send it uncompressed or .gz or .bz2",
        ("orders.csv", 3): "csv_field_count: expected 15, found 10",
        ("orders.csv", 4): "bad_money:unit_price",
        ("orders.csv", 5): "bad_value:quantity",
        ("orders.csv", 8): "wrong_type:line_no",
        ("orders.csv", 9): "bad_money:unit_price",
        ("orders.csv", 10): "bad_money:unit_price",
        ("c.jsonl", 2): "missing_field:signup_time",
        ("c.jsonl", 3): "bad_enum:gender",
        ("i.csv", 2): "bad_enum:satisfaction",
        ("e.csv", 2): "bad_enum:event",
    }


def test_every_file_balances_and_redelivery_and_empty_files_are_logged(acquired):
    log = {os.path.basename(r["path"]): r for r in acquired["lake"].read("bronze.ingest_log").collect()}
    assert {name: row["status"] for name, row in log.items() if row["status"] != "ingested"} == {
        "events-2.jsonl.gz": "unreadable", "events-4.jsonl.zst": "unreadable", "events-1-again.jsonl": "duplicate_file"}
    first = log["events-1.jsonl"]
    assert (first["data_lines"], first["records_read"], first["accepted"], first["quarantined"], first["duplicates"]) == (12, 12, 2, 9, 1)
    orders = log["orders.csv"]  # 10 lines: a header, and a record spanning two lines
    assert (orders["data_lines"], orders["records_read"], orders["accepted"], orders["quarantined"]) == (9, 8, 2, 6)
    assert (log["empty.jsonl"]["status"], log["empty.jsonl"]["records_read"]) == ("ingested", 0)
    spaces = log["spaces.jsonl"]  # 6 lines: the \x0b and \r ones blank
    assert (spaces["data_lines"], spaces["records_read"], spaces["accepted"], spaces["quarantined"]) == (4, 4, 2, 2)
    packed = log["events-3.jsonl.bz2"]  # two bzip2 streams, counted decompressed
    assert (packed["status"], packed["data_lines"], packed["records_read"], packed["accepted"]) == ("ingested", 2, 2, 2)
    assert (log["events-4.jsonl.zst"]["data_lines"], log["events-4.jsonl.zst"]["quarantined"]) == (None, 1)
    assert "future.jsonl" not in log


def test_good_records_land_typed_with_drift_kept(acquired):
    lake = acquired["lake"]
    clicks = {r["event_id"]: r for r in lake.read("bronze.clickstream").collect()}
    assert sorted(clicks) == ["b1", "b2", "e1", "e11", "e9", "s1", "s2"]
    assert clicks["e9"]["extra_fields"] == {"new_field": "drift"}
    assert clicks["e1"]["received_time"] == dt.datetime(2026, 11, 20, 2, 0, 1)  # the first delivery wins
    orders = {r["order_id"]: r for r in lake.read("bronze.orders").collect()}
    assert sorted(orders) == ["O1", "O5"]
    assert (orders["O5"]["product_id"], orders["O5"]["category"]) == ("p,5", "home\nand garden")
    assert acquired["results"]["campaign_events"]["accepted"] == 1


def test_a_file_that_changes_after_its_checksum_does_not_balance_and_only_it_is_left_out(spark, conf):
    from crmlake.acquire.contract import SOURCES
    from crmlake.lake import Lake

    lake = Lake(spark, conf)
    steady = put(conf.landing_root, "clickstream", "2026-11-20", "steady.jsonl", jl(CLICK))
    growing = put(conf.landing_root, "clickstream", "2026-11-20", "growing.jsonl", jl(CLICK | {"event_id": "x1"}))
    files = acquire.read_file_facts(spark, acquire.discover(conf.landing_root, "clickstream", RUN_DATE), "json")
    with open(growing, "ab") as fh:  # the producer was still writing it
        fh.write(jl(CLICK | {"event_id": "x2"}))
    totals, outcomes = acquire.ingest_files(spark, lake, conf, SOURCES["clickstream"], files)
    assert totals["balance_failed"] == [growing]
    assert {os.path.basename(f.path): status for f, status, _ in outcomes} == {"steady.jsonl": "ingested", "growing.jsonl": "balance_failed"}
    assert [r["event_id"] for r in lake.read("bronze.clickstream").collect()] == ["e1"]  # only the steady file landed
    assert os.path.abspath(steady) in {f.path for f in files}


def test_file_balance_names_what_does_not_add_up():
    counts = {"accepted": 2, "quarantined": 1, "duplicates": 0, "lines": 3, "unreadable": 0}
    assert acquire.file_balance(3, counts) is None
    assert acquire.file_balance(4, counts) == "4 data lines seen, but 2 accepted + 1 quarantined + 0 duplicate records span 3"
    assert acquire.file_balance(2, None) == "2 data lines seen, but no record span 0"
    assert acquire.file_balance(0, None) is None  # an empty file
    assert acquire.file_balance(None, {**counts, "unreadable": 1}) is None  # quarantined whole



def test_a_rerun_recognises_every_logged_file_by_its_listing_and_reads_none(spark, acquired):
    lake = acquired["lake"]
    logged = lake.read("bronze.ingest_log").count()
    conf = lake.conf
    again = acquire.run(spark, conf, RUN_DATE)
    # path, size and modification time round-trip through the Delta table exactly: no file is read again
    assert all(again[s]["files_new"] == 0 and again[s]["files_skipped"] == again[s]["files_found"] for s in ("clickstream", "orders", "customers"))
    assert lake.read("bronze.ingest_log").count() == logged
