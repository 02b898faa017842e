"""RFM and labels on tiny data, answers by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.analyze.features import customer_behaviour, with_purchase_label, with_rfm_scores

AS_OF = dt.date(2026, 11, 21)
UTC = dt.timezone.utc


def frames(spark):
    customers = spark.createDataFrame(
        [(a, dt.datetime(2026, 1, 1, tzinfo=UTC)) for a in ("A", "B", "C")] + [("LATE", dt.datetime(2026, 11, 22, tzinfo=UTC))],
        "person_id string, signup_time timestamp",
    )
    lines = spark.createDataFrame(
        [
            ("o1", "A", dt.date(2026, 11, 20), "completed", Decimal("100.00")),
            ("o2", "A", dt.date(2026, 11, 10), "completed", Decimal("50.00")),
            ("o3", "B", dt.date(2026, 10, 1), "completed", Decimal("500.00")),
            ("o4", "B", dt.date(2026, 11, 19), "returned", Decimal("999.00")),
            ("o5", "C", dt.date(2026, 11, 25), "completed", Decimal("10.00")),   # after as_of
        ],
        "order_id string, person_id string, order_date date, status string, line_amount decimal(18,2)",
    )
    sessions = spark.createDataFrame([("A", AS_OF)], "person_id string, session_date date").selectExpr(
        "person_id", "session_date", "2 as product_views", "1 as adds_to_cart"
    )
    return customers, lines, sessions


def test_behaviour_counts_completed_orders_up_to_the_date_and_skips_later_signups(spark):
    customers, lines, sessions = frames(spark)
    rows = {r["person_id"]: r for r in customer_behaviour(customers, lines, sessions, AS_OF, "UTC").collect()}
    assert set(rows) == {"A", "B", "C"}
    assert (rows["A"]["frequency"], rows["A"]["monetary"], rows["A"]["recency_days"], rows["A"]["sessions_30d"]) == (2, 150.0, 1, 1)
    assert (rows["B"]["frequency"], rows["B"]["monetary"], rows["B"]["recency_days"]) == (1, 500.0, 51)
    assert (rows["C"]["frequency"], rows["C"]["recency_days"]) == (0, rows["C"]["tenure_days"] + 1)


def test_rfm_scores_rank_buyers_and_give_non_buyers_zero(spark):
    customers, lines, sessions = frames(spark)
    scored = {r["person_id"]: r["rfm_cell"] for r in with_rfm_scores(customer_behaviour(customers, lines, sessions, AS_OF, "UTC"), 2).collect()}
    # Two buyers, two quantiles: A is more recent and more frequent, B spent more.
    assert scored == {"A": "221", "B": "112", "C": "000"}


def test_label_is_a_completed_purchase_inside_the_horizon(spark):
    customers, lines, sessions = frames(spark)
    cutoff = dt.date(2026, 11, 15)
    labels = {r["person_id"]: r["label"] for r in with_purchase_label(customer_behaviour(customers, lines, sessions, cutoff, "UTC"), lines, cutoff, 7).collect()}
    assert labels == {"A": 1.0, "B": 0.0, "C": 0.0}   # B's order in the window was returned; C's is after it
