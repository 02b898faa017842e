"""Contract checks on hand-built records."""

import json
from decimal import Decimal

from crmlake.acquire.contract import SOURCES
from crmlake.acquire.validate import with_validation

GOOD_CLICK = {
    "event_id": "e1", "event_time": "2026-11-21T13:45:12.345+08:00", "received_time": "2026-11-21T05:45:13Z",
    "event_type": "page_view", "anonymous_id": "ck1", "tracking_consent": True, "page_url": "/", "device": "app",
    "price": "1299.00",
}


def validated(spark, rows):
    """Validate records given as dicts (JSON-encoded here) or raw text; return them by line number."""
    texts = [json.dumps(r) if isinstance(r, dict) else r for r in rows]
    frame = spark.createDataFrame([(n, 1, t, t, None) for n, t in enumerate(texts, 1)], "source_line long, line_count int, raw_text string, record_json string, error string")
    return {r["source_line"]: r for r in with_validation(frame, SOURCES["clickstream"]).orderBy("source_line").collect()}


def reason_of(spark, record):
    return next(iter(validated(spark, [record]).values()))["reason"]


def test_good_record_is_typed_in_utc(spark):
    row = next(iter(validated(spark, [GOOD_CLICK]).values()))
    assert row["reason"] is None
    assert row["event_time"].isoformat() == "2026-11-21T05:45:12.345000"  # session time zone is UTC
    assert row["price"] == Decimal("1299.00")
    assert row["tracking_consent"] is True
    assert row["raw_text"] is None and row["extra_fields"] is None  # a good record carries no copy of its line


def test_each_contract_violation_has_its_reason(spark):
    assert reason_of(spark, {**GOOD_CLICK, "event_time": "2026-11-21T13:45:12"}) == "bad_timestamp:event_time"
    assert reason_of(spark, {**GOOD_CLICK, "device": "watch"}) == "bad_enum:device"
    assert reason_of(spark, {k: v for k, v in GOOD_CLICK.items() if k != "anonymous_id"}) == "missing_field:anonymous_id"
    assert reason_of(spark, {**GOOD_CLICK, "tracking_consent": "maybe"}) == "wrong_type:tracking_consent"
    assert reason_of(spark, {**GOOD_CLICK, "price": "12,99"}) == "bad_money:price"
    assert reason_of(spark, {**GOOD_CLICK, "event_id": "x" * 129}) == "id_too_long:event_id"
    assert reason_of(spark, '{"event_id": "e1", "oops"') == "unparsable_json"
    assert reason_of(spark, '["not", "an", "object"]') == "unparsable_json"


def test_a_line_going_on_after_its_object_is_quarantined_and_braces_inside_its_strings_are_not(spark):
    # Spark's parser reads the first object and ignores the rest: the second event would be lost unseen.
    good, second = json.dumps(GOOD_CLICK), json.dumps({**GOOD_CLICK, "event_id": "e2"})
    nested = json.dumps({**GOOD_CLICK, "page_url": '/p?q={"a":[1,{"b":"}"}]}\\"}'})   # braces, quotes and a backslash in a string
    rows = validated(spark, [f"{good} {second}", f"{good}{second}", f"{good}x", f"{good},", f"{good}}}", f"{good}]",
                             f"{good} \t ", nested, f"{nested} {second}", good[:-1] + ', "extra": {"k": {"j": "v"}}}',
                             f"{good}\r", good[:-1] + ", 'extra': '{x}'}"])   # a CR left by CR CR LF; single quotes, which Spark's parser takes
    assert [rows[n]["reason"] for n in range(1, 13)] == ["json_trailing_content"] * 6 + [None, None, "json_trailing_content", None, None, None]
    assert rows[8]["page_url"] == '/p?q={"a":[1,{"b":"}"}]}\\"}' and rows[10]["extra_fields"] == {"extra": '{"k":{"j":"v"}}'}
    assert rows[12]["extra_fields"] == {"extra": "{x}"}
    assert rows[1]["raw_text"] == f"{good} {second}"   # kept whole in the quarantine


def test_unknown_fields_are_kept_and_duplicates_share_a_key(spark):
    rows = validated(spark, [{**GOOD_CLICK, "new_field": "v"}, {**GOOD_CLICK, "page_url": "/other"}])
    first, second = rows[1], rows[2]
    assert first["extra_fields"] == {"new_field": "v"}
    assert first["record_key"] == second["record_key"]  # same event_id: the same event


def test_values_a_cast_would_silently_null_are_quarantined(spark):
    # Each has the right form, so only the conversion can tell; with ANSI off a plain cast gives NULL.
    assert reason_of(spark, {**GOOD_CLICK, "event_time": "2026-02-30T10:00:00+08:00"}) == "bad_timestamp:event_time"
    assert reason_of(spark, {**GOOD_CLICK, "received_time": "2026-11-21T24:30:00Z"}) == "bad_timestamp:received_time"
    assert reason_of(spark, {**GOOD_CLICK, "price": "1299.005"}) == "bad_money:price"       # decimal(18,2) would round it
    assert reason_of(spark, {**GOOD_CLICK, "price": "99999999999999999"}) == "bad_money:price"  # 17 digits: overflow


def test_a_value_ending_in_a_line_terminator_is_not_well_formed(spark):
    # Java's "$" matches before a final line terminator; the patterns end at the value's very end.
    for end in ("\n", "\u2028", "\u0085"):
        assert reason_of(spark, {**GOOD_CLICK, "price": "12.00" + end}) == "bad_money:price"
        assert reason_of(spark, {**GOOD_CLICK, "event_time": "2026-11-21T13:45:12Z" + end}) == "bad_timestamp:event_time"


def test_overflowing_integer_is_quarantined(spark):
    line = {"order_id": "o1", "line_no": "2147483648", "order_time": "2026-11-21T10:00:00Z", "channel": "web", "product_id": "p1",
            "quantity": "1", "unit_price": "10.00", "status": "completed", "updated_time": "2026-11-21T10:00:00Z"}
    frame = spark.createDataFrame([(1, 1, json.dumps(line), json.dumps(line), None)], "source_line long, line_count int, raw_text string, record_json string, error string")
    assert with_validation(frame, SOURCES["orders"]).first()["reason"] == "wrong_type:line_no"


def test_timestamp_without_seconds_is_read_not_nulled(spark):
    forms = {"2026-11-21T13:45+08:00": "2026-11-21T05:45:00", "2026-11-21 13:45Z": "2026-11-21T13:45:00",
             "2026-11-21T13:45-0130": "2026-11-21T15:15:00", "2026-11-21T13:45:07.5+08": "2026-11-21T05:45:07.500000"}
    rows = validated(spark, [{**GOOD_CLICK, "event_time": text} for text in forms]).values()
    assert [(r["reason"], r["event_time"].isoformat()) for r in rows] == [(None, utc) for utc in forms.values()]
