"""Retention and churn on a few hand-made rows, answers worked out by hand: cohorts, each churn
reason, the change of P(alive) since the previous scoring, and tier transitions between two score dates."""

import datetime as dt
from decimal import Decimal

from pyspark.sql import functions as F

from crmlake.analyze.retention import (
    P_ALIVE, RECENCY, churn_risk, cohort_retention, complainers, previous_score_date, purchase_rhythm, tier_transitions, visit_trend,
)
from crmlake.config_analyze import Retention

RULES = Retention(churn_days=21, overdue_factor=2.0, complaint_days=30, visit_window_days=7, visit_drop_share=0.5, min_earlier_visits=2)
RUN_DATE = dt.date(2026, 11, 21)
BEFORE = dt.date(2026, 11, 14)
LINES = "person_id string, order_id string, status string, order_date date, line_amount decimal(18,2)"
SCORES = "person_id string, p_alive double, value_tier string, segment string, marketing_consent boolean, current_value double, score_date date"
CONTACTS = "person_id string, type string, opened_date date, closed_time timestamp"
SESSIONS = "person_id string, session_date date"


def day(month: int, d: int) -> dt.date:
    return dt.date(2026, month, d)


def lines(spark, rows):
    return spark.createDataFrame([(p, f"O{i}", status, when, Decimal(amount)) for i, (p, status, when, amount) in enumerate(rows)], LINES)


def test_cohorts_count_each_first_purchase_months_buyers_and_revenue_in_every_month_since(spark):
    rows = [
        ("P1", "completed", day(9, 3), "100.00"), ("P1", "completed", day(9, 20), "50.00"), ("P1", "completed", day(11, 2), "30.00"),
        ("P2", "completed", day(9, 28), "200.00"),
        ("P3", "returned", day(9, 5), "999.00"), ("P3", "completed", day(10, 7), "70.00"), ("P3", "completed", day(10, 8), "5.00"),
        ("P4", "completed", day(11, 22), "80.00"),   # after the run date
        (None, "completed", day(9, 1), "40.00"),     # no person
    ]
    table = {(str(r["cohort_month"]), r["months_since"]): (r["cohort_persons"], r["retained_persons"], r["retained_share"], r["revenue"])
             for r in cohort_retention(lines(spark, rows), RUN_DATE).collect()}
    assert table == {
        ("2026-09-01", 0): (2, 2, 1.0, Decimal("350.00")),
        ("2026-09-01", 1): (2, 0, 0.0, Decimal("0.00")),    # nobody of September's cohort bought in October
        ("2026-09-01", 2): (2, 1, 0.5, Decimal("30.00")),
        ("2026-10-01", 0): (1, 1, 1.0, Decimal("75.00")),   # P3: its returned September line is no purchase
        ("2026-10-01", 1): (1, 0, 0.0, Decimal("0.00")),
    }


def scored(spark, rows, when):
    return spark.createDataFrame([(*r, when) for r in rows], SCORES)


def risk_of(spark, today, previous, purchases, contacts=(), visits=(), ranking=RECENCY) -> dict:
    frame = churn_risk(
        scored(spark, today, RUN_DATE), scored(spark, previous, BEFORE), purchase_rhythm(lines(spark, purchases), RUN_DATE),
        visit_trend(spark.createDataFrame(list(visits), SESSIONS), RUN_DATE, RULES.visit_window_days),
        complainers(spark.createDataFrame(list(contacts), CONTACTS), RUN_DATE, RULES.complaint_days), RULES, ranking, 10000)
    return {r["person_id"]: r.asDict() for r in frame.collect()}


def test_each_churn_reason_as_defined_first_match_wins(spark):
    today = [(p, 0.9, "maintain", "new", p != "P1", 10.0) for p in ("P1", "P2", "P3", "P4", "P5", "P6")]
    previous = [("P1", 0.95, "maintain", "new", True, 0.0), ("P2", 0.5, "maintain", "new", False, 0.0)]
    purchases = [
        ("P1", "completed", day(11, 1), "10.00"), ("P1", "completed", day(11, 2), "10.00"),   # overdue too, but withdrew consent first
        ("P2", "completed", day(11, 15), "10.00"),                                              # complained (still open)
        ("P3", "completed", day(10, 1), "10.00"), ("P3", "completed", day(10, 11), "10.00"),  # 10-day interval, 41 days since: overdue
        ("P4", "completed", day(10, 21), "10.00"), ("P4", "completed", day(11, 10), "10.00"), # 20-day interval, 11 days since: on time
        ("P5", "completed", day(11, 20), "10.00"),
    ]
    contacts = [("P2", "complaint", day(9, 1), None), ("P3", "complaint", day(10, 1), dt.datetime(2026, 10, 2)),   # closed, 51 days ago
                ("P4", "inquiry", day(11, 20), None)]
    # P4: 3 visits in the 7 days before the last 7, 1 in the last 7 (< 0.5 x 3); P5: 2 then, 1 now (not fewer than half).
    visits = [("P4", day(11, 8)), ("P4", day(11, 9)), ("P4", day(11, 14)), ("P4", day(11, 15)), ("P4", day(11, 7)),
              ("P5", day(11, 10)), ("P5", day(11, 11)), ("P5", day(11, 20))]
    risk = risk_of(spark, today, previous, purchases, contacts, visits)
    assert {p: r["main_reason"] for p, r in risk.items()} == {
        "P1": "withdrew_consent", "P2": "recent_complaint", "P3": "overdue", "P4": "fewer_visits", "P5": None, "P6": None}
    assert (risk["P3"]["days_since_last_purchase"], risk["P3"]["usual_interval_days"]) == (41, 10.0)
    assert (risk["P5"]["days_since_last_purchase"], risk["P5"]["usual_interval_days"]) == (1, None)
    # The change since the previous scoring: null for persons not scored then.
    assert {p: (r["p_alive_change"], r["previous_score_date"]) for p, r in risk.items() if p in ("P1", "P2", "P3")} == {
        "P1": (-0.05, BEFORE), "P2": (0.4, BEFORE), "P3": (None, None)}


def test_the_churn_risk_decile_ranks_buyers_by_the_ranking_served(spark):
    # P1 bought 30 days ago and is sure to be alive, P2 yesterday and likely gone; P3 never bought.
    today = [("P1", 0.99, "maintain", "new", True, 1.0), ("P2", 0.2, "maintain", "new", True, 1.0), ("P3", None, "maintain", "new", True, None)]
    purchases = [("P1", "completed", day(10, 22), "10.00"), ("P2", "completed", day(11, 20), "10.00")]
    by_recency = risk_of(spark, today, [], purchases, ranking=RECENCY)
    by_p_alive = risk_of(spark, today, [], purchases, ranking=P_ALIVE)
    assert {p: r["churn_risk_decile"] for p, r in by_recency.items()} == {"P1": 6, "P2": 1, "P3": None}
    assert {p: r["churn_risk_decile"] for p, r in by_p_alive.items()} == {"P1": 1, "P2": 6, "P3": None}
    assert {r["churn_ranking"] for r in by_p_alive.values()} == {P_ALIVE}


def test_tier_transitions_count_persons_and_revenue_from_the_previous_score_date_to_this_one(spark):
    previous = [("P1", 0.9, "most_valuable", "champions", True, 0.0), ("P2", 0.9, "most_valuable", "champions", True, 0.0),
                ("P3", 0.9, "maintain", "new", True, 0.0), ("P9", 0.9, "maintain", "new", True, 0.0)]   # P9: not scored today
    today = [("P1", 0.9, "most_valuable", "champions", True, 500.0), ("P2", 0.5, "maintain", "hibernating", True, 20.0),
             ("P3", 0.9, "most_valuable", "champions", True, 300.0), ("P4", 0.9, "maintain", "new", True, 10.0)]   # P4: new today
    scores = scored(spark, previous, BEFORE).unionByName(scored(spark, today, RUN_DATE))
    assert previous_score_date(scores, RUN_DATE) == BEFORE and previous_score_date(scores, BEFORE) is None
    moves = tier_transitions(scores.where(F.col("score_date") == RUN_DATE), scores.where(F.col("score_date") == BEFORE)).collect()
    assert {(r["from_value_tier"], r["to_value_tier"], r["from_segment"], r["to_segment"]): (r["persons"], r["revenue"], r["from_score_date"], r["score_date"])
            for r in moves} == {
        ("most_valuable", "most_valuable", "champions", "champions"): (1, 500.0, BEFORE, RUN_DATE),
        ("most_valuable", "maintain", "champions", "hibernating"): (1, 20.0, BEFORE, RUN_DATE),
        ("maintain", "most_valuable", "new", "champions"): (1, 300.0, BEFORE, RUN_DATE),
    }
    # No earlier score date: no transitions (and no failure).
    assert tier_transitions(scored(spark, today, RUN_DATE), scored(spark, [], BEFORE)).count() == 0
