"""The service desk's figures on a few hand-made contacts, answers worked out by hand."""

import datetime as dt

from crmlake.analyze.service import contacts_as_of, recent_satisfaction, repeat_complainers, service_kpis
from crmlake.config_analyze import Service

RULES = Service(target_hours=48, target_hours_by_channel={"phone": 24}, repeat_complaints=2, complaint_window_days=30,
                high_value_tiers=["most_valuable", "most_growth_potential"])
SCHEMA = "interaction_id string, account_id string, channel string, type string, opened_time timestamp, closed_time timestamp, satisfaction int, ingested_at timestamp"
RUN_DATE = dt.date(2026, 11, 3)


def at(day: int, hour: float = 0) -> dt.datetime:
    """An instant of November 2026 (the tests' session clock and business time zone are both UTC)."""
    return dt.datetime(2026, 11, day) + dt.timedelta(hours=hour)


def contacts(spark, rows, run_date=RUN_DATE):
    return contacts_as_of(spark.createDataFrame([(*r, at(9)) if len(r) == 7 else r for r in rows], SCHEMA), run_date, "UTC")


def kpis(spark, rows) -> dict:
    return {(str(r["service_date"]), r["channel"], r["type"]): {k: v for k, v in r.asDict().items() if k not in ("service_date", "channel", "type")}
            for r in service_kpis(contacts(spark, rows), RUN_DATE, RULES).collect()}


def figures(opened, closed, backlog, median=None, p95=None, past=None, satisfaction=None) -> dict:
    return {"opened": opened, "closed": closed, "backlog": backlog, "median_hours_to_close": median, "p95_hours_to_close": p95,
            "past_target_share": past, "mean_satisfaction": satisfaction}


def test_service_kpis_count_opened_closed_and_the_backlog_at_each_days_end(spark):
    rows = [
        ("I1", "A1", "phone", "complaint", at(1, 10), at(1, 20), 2),   # closed the day it opened, in 10 h
        ("I2", "A2", "phone", "complaint", at(1, 12), at(3, 12), 4),   # open at the end of the 1st and 2nd, 48 h: past phone's 24
        ("I3", "A3", "phone", "complaint", at(2, 9), None, None),      # still open
        ("I4", "A4", "email", "inquiry", at(2), at(4), 5),             # closed after the run date: open on it, its rating not given yet
        ("I5", "A5", "phone", "complaint", at(4), None, None),         # opened after the run date: not there yet
    ]
    assert kpis(spark, rows) == {
        ("2026-11-01", "phone", "complaint"): figures(2, 1, 1, 10.0, 10.0, 0.0, 2.0),
        ("2026-11-02", "phone", "complaint"): figures(1, 0, 2),
        ("2026-11-03", "phone", "complaint"): figures(0, 1, 1, 48.0, 48.0, 1.0, 4.0),
        ("2026-11-02", "email", "inquiry"): figures(1, 0, 1),
        ("2026-11-03", "email", "inquiry"): figures(0, 0, 1),
    }


def test_hours_to_close_percentiles_interpolate_and_the_share_past_target_uses_the_channels_own(spark):
    # Five email contacts closed on the 1st after 1, 2, 3, 4 and 50 hours (email's target: the default 48).
    rows = [(f"E{h}", "A1", "email", "technical", at(1, 23 - h), at(1, 23), None) for h in (1, 2, 3, 4)]
    rows.append(("E50", "A1", "email", "technical", at(1, 23) - dt.timedelta(hours=50), at(1, 23), None))   # opened on Oct 30
    today = kpis(spark, rows)[("2026-11-01", "email", "technical")]
    # p95: rank 0.95 x 4 = 3.8 between 4 h and 50 h: 4 + 0.8 x 46 = 40.8.
    assert today == figures(4, 5, 0, 3.0, 40.8, 0.2)


def test_contacts_as_of_keeps_the_latest_version_and_leaves_what_happened_later_out(spark):
    rows = [("I1", "A1", "chat", "inquiry", at(1), None, None, at(1, 1)), ("I1", "A1", "chat", "inquiry", at(1), at(2, 6), 5, at(2, 7))]
    today = contacts(spark, rows).collect()
    assert [(r["closed_time"], r["satisfaction"], r["closed_date"], r["hours_to_close"]) for r in today] == [(at(2, 6), 5, dt.date(2026, 11, 2), 30.0)]
    before = contacts(spark, rows, dt.date(2026, 11, 1)).collect()
    assert [(r["closed_time"], r["satisfaction"], r["closed_date"]) for r in before] == [(None, None, None)]


def test_recent_satisfaction_is_the_latest_rating_of_the_window(spark):
    frame = spark.createDataFrame([
        ("P1", at(1), 5, dt.date(2026, 11, 1)), ("P1", at(3), 2, dt.date(2026, 11, 3)),   # the latest counts, not the best
        ("P2", at(1) - dt.timedelta(days=40), 5, dt.date(2026, 9, 22)),                   # 42 days before the run date: too old
        ("P3", at(2), None, dt.date(2026, 11, 2)),                                         # closed, never rated
    ], "person_id string, closed_time timestamp, satisfaction int, closed_date date")
    assert {r["person_id"]: r["recent_satisfaction"] for r in recent_satisfaction(frame, RUN_DATE, 30).collect()} == {"P1": 2}


def test_repeat_complainers_are_high_value_persons_with_enough_complaints_in_the_window(spark):
    rows = [
        ("C1", "P1", "complaint", at(1), at(2), 2, dt.date(2026, 11, 1), "chat"), ("C2", "P1", "complaint", at(2), at(2, 5), None, dt.date(2026, 11, 2), "phone"),
        ("C3", "P2", "complaint", at(1), None, None, dt.date(2026, 11, 1), "email"), ("C4", "P2", "complaint", at(2), None, None, dt.date(2026, 11, 2), "email"),
        ("C5", "P3", "complaint", at(1), at(1, 5), 1, dt.date(2026, 11, 1), "email"),
        ("C6", "P3", "complaint", at(1) - dt.timedelta(days=31), at(1), 1, dt.date(2026, 10, 1), "email"),   # outside the 30 days
        ("C7", "P4", "complaint", at(1), None, None, dt.date(2026, 11, 1), "store"), ("C8", "P4", "inquiry", at(2), None, None, dt.date(2026, 11, 2), "store"),
        ("C9", "P5", "complaint", at(1), None, None, dt.date(2026, 11, 1), "store"), ("C10", "P5", "complaint", at(3), None, None, dt.date(2026, 11, 3), "chat"),
    ]
    person_contacts = spark.createDataFrame(rows, "interaction_id string, person_id string, type string, opened_time timestamp, closed_time timestamp, "
                                                  "satisfaction int, opened_date date, channel string")
    scores = spark.createDataFrame([("P1", "most_valuable"), ("P2", "most_growth_potential"), ("P3", "most_valuable"), ("P4", "most_valuable"), ("P5", "maintain")],
                                   "person_id string, value_tier string")
    listed = {r["person_id"]: r.asDict() for r in repeat_complainers(person_contacts, scores, RUN_DATE, RULES).collect()}
    # P3 has one complaint in the window, P4 one complaint and an inquiry, P5 is not of a high-value tier.
    assert sorted(listed) == ["P1", "P2"]
    assert {k: listed["P1"][k] for k in ("value_tier", "complaints", "open_complaints", "last_complaint_at", "complaint_channels", "mean_satisfaction", "list_date")} == {
        "value_tier": "most_valuable", "complaints": 2, "open_complaints": 0, "last_complaint_at": at(2), "complaint_channels": ["chat", "phone"],
        "mean_satisfaction": 2.0, "list_date": RUN_DATE}
    assert (listed["P2"]["open_complaints"], listed["P2"]["complaint_channels"], listed["P2"]["mean_satisfaction"]) == (2, ["email"], None)
