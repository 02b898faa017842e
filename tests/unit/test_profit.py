"""Each person's profit and the value tiers on profit, on a few hand-made rows, answers worked out by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.analyze.profit import (
    FIGURES, customer_profitability, person_marketing_contacts, person_sales, person_service_contacts, with_profit_tier,
)
from crmlake.config_analyze import Profit, Value

RULES = Profit(category_margin={"books": 0.3, "electronics": 0.1}, default_margin=0.5, return_cost=100, service_contact_cost=20)
COST_PER_CONTACT = {"email": 0.5, "sms": 1.5, "ads": 6.0}
RUN_DATE = dt.date(2026, 11, 30)
HORIZON = 30   # the window: Nov 1 to Nov 30
BEFORE = dt.date(2026, 10, 31)   # the day before the window
LINES = "person_id string, order_date date, category string, quantity int, unit_price decimal(18,2), discount decimal(18,2), line_amount decimal(18,2), status string"


def line(person, day, category, quantity, unit_price, discount=0, status="completed"):
    """One order line as order_lines_as_of gives it (line_amount = quantity x unit_price - discount)."""
    price, off = Decimal(unit_price), Decimal(discount)
    when = day if isinstance(day, dt.date) else dt.date(2026, 11, day)
    return (person, when, category, quantity, price, off, quantity * price - off, status)


def profitability(spark) -> dict:
    lines = spark.createDataFrame([
        line("A", 3, "books", 2, 100, discount=20),          # 180 of revenue; cost of goods 200 x 0.7 = 140: margin 40
        line("A", 5, "garden", 1, 300),                      # no margin listed: the default 0.5, margin 150
        line("A", 7, "electronics", 1, 1000, status="returned"),   # no revenue, one return to handle
        line("A", BEFORE, "books", 1, 999),                  # before the window
        line("A", 9, "books", 1, 999, status="cancelled"),   # neither revenue nor a return
        line("B", 30, "electronics", 1, 1000, discount=200),  # 800 of revenue; cost of goods 900: margin -100
        line(None, 4, "books", 1, 500),                      # a guest's: nobody's
    ], LINES)
    contacts = spark.createDataFrame(
        [("B", dt.date(2026, 11, 2)), ("B", RUN_DATE), ("B", BEFORE), (None, dt.date(2026, 11, 2))], "person_id string, opened_date date")
    history = spark.createDataFrame([
        (dt.date(2026, 11, 1), "email", "AB1", "OLD", "treatment"),   # the account's person today: B
        (dt.date(2026, 11, 8), "email", "AB1", "OLD", "treatment"),
        (dt.date(2026, 11, 15), "ads", "AB2", "B", "treatment"),
        (dt.date(2026, 11, 15), "ads", "AA1", "A", "control"),        # not contacted
        (BEFORE, "sms", "AB1", "B", "treatment"),                     # before the window
    ], "contact_date date, channel string, account_id string, person_id string, group string")
    identity_map = spark.createDataFrame([("account_id", "AB1", "B"), ("account_id", "AB2", "B"), ("account_id", "AA1", "A")],
                                         "identifier_type string, identifier string, person_id string")
    persons = spark.createDataFrame([("A",), ("B",), ("C",)], "person_id string")
    table = customer_profitability(
        persons, person_sales(lines, RUN_DATE, HORIZON, RULES), person_service_contacts(contacts, RUN_DATE, HORIZON),
        person_marketing_contacts(history, identity_map, RUN_DATE, HORIZON, COST_PER_CONTACT), RULES,
    )
    return {r["person_id"]: tuple(r[c] for c in FIGURES) for r in table.collect()}


def test_profit_is_gross_margin_less_return_service_and_marketing_costs(spark):
    # revenue, gross margin, discounts, returned lines, return costs, service contacts, service costs, marketing contacts, marketing costs, profit
    assert profitability(spark) == {
        "A": (480.0, 190.0, 20.0, 1, 100.0, 0, 0.0, 0, 0.0, 90.0),
        "B": (800.0, -100.0, 200.0, 0, 0.0, 2, 40.0, 3, 7.0, -147.0),   # two emails at 0.5 and one ads contact at 6
        "C": (0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0, 0.0),
    }


def test_profit_tiers_are_the_value_tiers_on_profit(spark):
    rules = Value(most_valuable_top_share=0.25, growth_ratio=1.5, growth_min_value=500, margin=0.3, cost_to_serve=60)
    persons = spark.createDataFrame([
        ("WHALE", 10000.0, -500.0, 20000.0),   # the most revenue at a loss: predicted profit 20000 x -0.05 = -1000
        ("GEM", 2000.0, 1000.0, 2000.0),       # the most profit: the only one of 3 profitable persons in the top 25%
        ("GROW", 1000.0, 300.0, 4000.0),       # predicted profit 1200 >= 1.5 x 300 and >= 500
        ("STEADY", 1000.0, 150.0, 1000.0),     # predicted profit 150: not below 60 (no margin on a profit; x 0.3 would be)
        ("IDLE", 0.0, -20.0, None),            # no revenue: no predicted profit
    ], "person_id string, revenue double, profit double, predicted_value double")
    tiered = {r["person_id"]: (r["predicted_profit"], r["profit_tier"]) for r in with_profit_tier(persons, rules, 10_000).collect()}
    assert tiered == {
        "WHALE": (-1000.0, "not_worth_developing"), "GEM": (1000.0, "most_valuable"), "GROW": (1200.0, "most_growth_potential"),
        "STEADY": (150.0, "maintain"), "IDLE": (None, "not_worth_developing"),
    }
