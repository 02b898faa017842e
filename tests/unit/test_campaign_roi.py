"""Each audience's incremental revenue, cost and ROI from its control group, on a few hand-made contacts, answers by hand."""

import datetime as dt
from decimal import Decimal

import pytest

from crmlake.contacts import CAMPAIGN_RESULT_DEFINITIONS as DEFINITIONS
from crmlake.decide.results import campaign_results

DAY = dt.date(2026, 11, 1)
COSTS = {"email": 2.0, "sms": 5.0, "ads": 20.0}


def test_roi_is_the_incremental_revenue_over_the_control_less_the_channel_cost_per_unit_of_cost(spark):
    contacts = spark.createDataFrame(
        [(DAY, "mail", "email", f"T{i}", "treatment") for i in range(10)] + [(DAY, "mail", "email", f"C{i}", "control") for i in range(5)]
        + [(DAY, "banner", "ads", f"T{i}", "treatment") for i in range(10)] + [(DAY, "banner", "ads", f"C{i}", "control") for i in range(5)]
        + [(DAY, "accounts", "email", "T0", "treatment")],   # no control group
        "contact_date date, audience string, channel string, person_id string, group string",
    )
    orders = spark.createDataFrame(
        [("T0", dt.date(2026, 11, 3), Decimal("300.00")), ("T1", dt.date(2026, 11, 5), Decimal("200.00")),
         ("C0", dt.date(2026, 11, 4), Decimal("100.00")),
         ("T2", dt.date(2026, 11, 30), Decimal("999.00"))],   # after the 14 days
        "person_id string, order_date date, line_amount decimal(18,2)",
    )
    rows = {r["audience"]: r for r in campaign_results(contacts, orders, dt.date(2026, 11, 21), 14, COSTS).collect()}
    # Both audiences: 500 from 10 contacted (50 each), 100 from 5 controls (20 each): (50 - 20) x 10 = 300 incremental.
    mail, banner = rows["mail"], rows["banner"]
    assert (mail["channel"], mail["incremental_revenue"], mail["cost"], mail["roi"]) == ("email", 300.0, 20.0, pytest.approx((300 - 20) / 20))
    assert (banner["channel"], banner["incremental_revenue"], banner["cost"], banner["roi"]) == ("ads", 300.0, 200.0, pytest.approx((300 - 200) / 200))
    accounts = rows["accounts"]
    assert (accounts["cost"], accounts["incremental_revenue"], accounts["roi"]) == (2.0, None, None)   # nothing to compare with


def test_a_contact_that_adds_nothing_loses_its_whole_cost(spark):
    contacts = spark.createDataFrame([(DAY, "mail", "sms", "T0", "treatment"), (DAY, "mail", "sms", "C0", "control")],
                                     "contact_date date, audience string, channel string, person_id string, group string")
    orders = spark.createDataFrame([("T0", dt.date(2026, 11, 3), Decimal("40.00")), ("C0", dt.date(2026, 11, 3), Decimal("40.00"))],
                                   "person_id string, order_date date, line_amount decimal(18,2)")
    (row,) = campaign_results(contacts, orders, dt.date(2026, 11, 21), 14, COSTS).collect()
    assert (row["incremental_revenue"], row["cost"], row["roi"]) == (0.0, 5.0, -1.0)


def test_every_column_is_defined_once_in_definitions(spark):
    contacts = spark.createDataFrame([(DAY, "mail", "sms", "T0", "treatment")], "contact_date date, audience string, channel string, person_id string, group string")
    orders = spark.createDataFrame([], "person_id string, order_date date, line_amount decimal(18,2)")
    columns = set(campaign_results(contacts, orders, DAY, 14, COSTS).columns) - {"audience", "contact_date"}
    # A control figure is defined with its contacted one, the interval with the lift.
    assert columns - {"control", "control_converted", "conversion_control", "lift_ci_low", "lift_ci_high", "revenue_per_control"} == set(DEFINITIONS)
