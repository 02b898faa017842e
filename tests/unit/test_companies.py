"""B2B: companies from business accounts, their scores, and one contact per company; answers by hand."""

import datetime as dt
from decimal import Decimal

import pytest

from crmlake.analyze.companies import company_scores
from crmlake.config import ConfigError, load_conf
from crmlake.decide.audiences import company_contacts
from crmlake.organize.companies import companies

RUN = dt.date(2026, 11, 21)
T = lambda days: dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone.utc) + dt.timedelta(days=days)  # noqa: E731


def test_a_company_is_its_live_business_accounts_with_their_first_and_last_orders(spark):
    accounts = spark.createDataFrame(
        [
            ("A1", False, "business", "C1"), ("A2", False, "business", "C1"),
            ("A3", True, "business", None),       # erased: its company_id is blanked
            ("A4", False, "consumer", "C2"),      # a consumer account does not make a company
            ("A5", False, "business", "C2"),      # a company without orders yet
            ("A6", False, "business", None),
        ],
        "account_id string, erased boolean, account_type string, company_id string",
    )
    lines = spark.createDataFrame(
        [("O1", "A1", T(-30), "completed", Decimal("100")), ("O2", "A2", T(-3), "completed", Decimal("50")),
         ("O3", "A1", T(-1), "cancelled", Decimal("70")), ("O4", "A3", T(-2), "completed", Decimal("999")),
         ("O5", "A4", T(-2), "completed", Decimal("10"))],
        "order_id string, account_id string, order_time timestamp, status string, line_amount decimal(18,2)",
    )
    rows = {r["company_id"]: r.asDict() for r in companies(accounts, lines).collect()}
    assert rows == {
        "C1": {"company_id": "C1", "account_ids": ["A1", "A2"], "accounts": 2, "buyers": 2, "orders": 2, "revenue": Decimal("150.00"),
               "first_order_at": T(-30).replace(tzinfo=None), "last_order_at": T(-3).replace(tzinfo=None), "last_buyer_account_id": "A2"},
        "C2": {"company_id": "C2", "account_ids": ["A5"], "accounts": 1, "buyers": 0, "orders": 0, "revenue": Decimal("0.00"),
               "first_order_at": None, "last_order_at": None, "last_buyer_account_id": None},
    }


def test_companies_are_valued_as_one_customer_each(spark):
    firms = spark.createDataFrame(
        [("C1", 2, 2, "A2"), ("C2", 2, 1, "A3"), ("C3", 1, 0, None)],
        "company_id string, accounts int, buyers long, last_buyer_account_id string",
    ).selectExpr("*", "CAST(NULL AS TIMESTAMP) AS first_order_at", "CAST(NULL AS TIMESTAMP) AS last_order_at")
    lines = spark.createDataFrame(
        [("O1", "A1", RUN - dt.timedelta(days=10), "completed", Decimal("300")), ("O2", "A2", RUN - dt.timedelta(days=200), "completed", Decimal("100")),
         ("O3", "A3", RUN - dt.timedelta(days=5), "completed", Decimal("50")), ("O9", "A3", RUN + dt.timedelta(days=1), "completed", Decimal("999"))],
        "order_id string, account_id string, order_date date, status string, line_amount decimal(18,2)",
    )
    members = spark.createDataFrame(
        [("C1", "A1", "P1"), ("C1", "A2", "P2"), ("C2", "A3", "P3"), ("C2", "A4", "P3"), ("C3", "A5", "P5")],
        "company_id string, account_id string, person_id string",
    )
    values = spark.createDataFrame([("P1", 1000.0), ("P2", 500.0), ("P3", 100.0), ("P5", 0.0)], "person_id string, predicted_value double")
    scored = company_scores(firms, lines, members, values, RUN, 90, 2, load_conf(environ={}).analyze.value, 10_000)
    rows = {r["company_id"]: (r["recency_days"], r["frequency"], r["monetary"], r["current_value"], r["predicted_value"], r["rfm_cell"], r["value_tier"])
            for r in scored.collect()}
    assert rows == {
        # 300 in the last 90 days (100 before); P3 holds two accounts of C2 and counts once; C3 never bought.
        "C1": (10, 2, 400.0, 300.0, 1500.0, "122", "most_valuable"),
        "C2": (5, 1, 50.0, 50.0, 100.0, "211", "not_worth_developing"),   # 100 x 0.3 margin < 60 cost to serve
        "C3": (None, 0, 0.0, 0.0, 0.0, "000", "not_worth_developing"),
    }
    # Where the model's forecast is not served, a company's own recent revenue repeats (not its
    # persons' summed over their other accounts too): no company grows on the baseline.
    baseline = company_scores(firms, lines, members, None, RUN, 90, 2, load_conf(environ={}).analyze.value, 10_000)
    assert {r["company_id"]: (r["current_value"], r["predicted_value"]) for r in baseline.collect()} == {
        "C1": (300.0, 300.0), "C2": (50.0, 50.0), "C3": (0.0, 0.0)}


def test_each_company_is_contacted_once_through_its_most_recent_buyer(spark):
    scores = spark.createDataFrame(
        [("C1", "A2", 400.0), ("C2", "A3", 50.0), ("C3", None, 0.0), ("C4", "A9", 20.0)],   # P2 is C4's last buyer too
        "company_id string, last_buyer_account_id string, monetary double",
    ).selectExpr("*", "2 AS accounts", "1 AS buyers", "5 AS recency_days", "1L AS frequency", "0.0 AS current_value", "0.0 AS predicted_value",
                 "1 AS r_score", "1 AS f_score", "1 AS m_score", "'111' AS rfm_cell", "'maintain' AS value_tier")
    identity_map = spark.createDataFrame(
        [("account_id", "A2", "P2"), ("account_id", "A3", "P3"), ("account_id", "A9", "P2")], "identifier_type string, identifier string, person_id string"
    )
    contacts = {(r["person_id"], r["company_id"], r["company_monetary"]) for r in company_contacts(scores, identity_map).collect()}
    assert contacts == {("P2", "C1", 400.0), ("P3", "C2", 50.0)}


def test_an_unknown_audience_target_is_a_config_error():
    with pytest.raises(ConfigError, match="'campaigns.audiences.0.target' = 'teams'"):
        load_conf(overrides=["campaigns.audiences=[{name: a, rule: 'true', channel: email, target: teams}]"], environ={})
