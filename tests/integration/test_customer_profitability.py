"""Each person's profit against an independent pandas computation over the generated pipeline's
landing files, the profit Pareto figure of the stage's summary, and the planted bargain hunters
recovered (high in revenue, low in profit).

The pandas side reads the landing files (orders, service contacts) and, for who is whom, the
identity map and the run date's scored persons from the lake; margins and unit costs are the
conf's. The pipeline fixture (tests/conftest.py) already runs analyze on its lake, so these
tests add no stage run.
"""

import datetime as dt
import json
import os

import pandas as pd
import pytest
from pyspark.sql import functions as F

from conftest import END
from crmlake.analyze.profit import FIGURES, person_marketing_contacts
from crmlake.generate.behaviour import bargain_hunter
from landing_frames import identity_lookup, landing_order_lines
from test_service_and_campaigns import landing_contacts

MONEY = pytest.approx   # Spark sums decimals then doubles, pandas floats: equal to the cent


def in_window(dates: pd.Series, horizon_days: int) -> pd.Series:
    return (dates > END - dt.timedelta(days=horizon_days)) & (dates <= END)


def expected_profitability(pipeline) -> dict:
    """person_id -> FIGURES by pandas, for every person scored on the run date."""
    conf, lake, root = pipeline["conf"], pipeline["lake"], pipeline["root"]
    rules, horizon = conf.analyze.profit, conf.analyze.lifetime_value.horizon_days
    people = identity_lookup(lake)
    lines = landing_order_lines(root, people)
    lines = lines[in_window(lines["order_date"], horizon)]
    done = lines[lines["status"] == "completed"].copy()
    done["list_price"] = done["quantity"].astype(int) * done["unit_price"].astype(float)
    done["discount"] = done["discount"].replace("", "0").astype(float)
    done["revenue"] = done["line_amount"].astype(float)
    done["gross_margin"] = done["revenue"] - done["list_price"] * (1 - done["category"].map(lambda c: rules.category_margin.get(c, rules.default_margin)))
    sales = done.groupby("person_id")[["revenue", "gross_margin", "discount"]].sum()
    returned = lines[lines["status"] == "returned"].groupby("person_id").size()
    contacts = landing_contacts(root)
    contacts = contacts[in_window(contacts["opened_date"], horizon)]
    service = contacts["account_id"].map(people["account_id"]).dropna().value_counts()
    # The marketing figures are the table's own (their own test: test_marketing_contacts_of_the_contact_history_equal_pandas):
    # they are the contact history's when analyze last ran, none at the fixture's first run, decide's once a test reruns analyze.
    marketing = {r["person_id"]: (r["marketing_contacts"], r["marketing_costs"])
                 for r in lake.read("gold.customer_profitability").where(F.col("score_date") == END).collect()}
    expected = {}
    for r in lake.read("gold.customer_scores").where(F.col("score_date") == END).select("person_id").collect():
        p = r["person_id"]
        revenue, margin, discounts = (float(sales.loc[p, c]) if p in sales.index else 0.0 for c in ("revenue", "gross_margin", "discount"))
        n_returned, n_service = int(returned.get(p, 0)), int(service.get(p, 0))
        n_marketing, marketing_costs = marketing.get(p, (0, 0.0))
        profit = margin - n_returned * rules.return_cost - n_service * rules.service_contact_cost - marketing_costs
        expected[p] = (revenue, margin, discounts, n_returned, n_returned * rules.return_cost, n_service, n_service * rules.service_contact_cost,
                       n_marketing, marketing_costs, profit)
    return expected


@pytest.fixture(scope="module")
def profitability(pipeline) -> dict:
    """The run date's gold.customer_profitability rows by person."""
    return {r["person_id"]: r.asDict() for r in pipeline["lake"].read("gold.customer_profitability").where(F.col("score_date") == END).collect()}


def test_customer_profitability_equals_a_pandas_computation_over_the_landing_files(pipeline, profitability):
    expected = expected_profitability(pipeline)
    assert sorted(profitability) == sorted(expected)
    assert sum(1 for figures in expected.values() if figures[3]) and sum(1 for figures in expected.values() if figures[5])   # returns and service contacts counted
    for person, want in expected.items():
        got = tuple(profitability[person][c] for c in FIGURES)
        assert got == tuple(MONEY(v, abs=0.011) if isinstance(v, float) else v for v in want), person


def test_revenue_is_the_scores_current_value(pipeline, profitability):
    scores = pipeline["lake"].read("gold.customer_scores").where(F.col("score_date") == END).select("person_id", "current_value").collect()
    assert {r["person_id"]: MONEY(r["current_value"] or 0.0, abs=0.011) for r in scores} == {p: r["revenue"] for p, r in profitability.items()}


def test_the_profit_pareto_gives_the_share_of_profit_of_the_top_fifth_of_profitable_customers(pipeline, profitability):
    # From the table, not the fixture's summary: a test may rerun analyze on the pipeline's lake (its contacts then cost).
    profits = sorted((r["profit"] for r in profitability.values() if r["profit"] > 0), reverse=True)
    top = profits[: len(profits) * 20 // 100]
    (point,) = pipeline["lake"].read("gold.profit_pareto").where((F.col("score_date") == END) & (F.col("top_share") == 0.2)).collect()
    assert point["value_share"] == pytest.approx(sum(top) / sum(profits), abs=1e-6)


def test_marketing_contacts_of_the_contact_history_equal_pandas(pipeline):
    # Decide has contacted since analyze ran: today's contact history, costed as analyze would the next day.
    conf, lake = pipeline["conf"], pipeline["lake"]
    horizon, costs = conf.analyze.lifetime_value.horizon_days, conf.campaigns.cost_per_contact.model_dump()
    history = lake.read("gold.contact_history").toPandas()
    treated = history[(history["group"] == "treatment") & in_window(history["contact_date"], horizon)]
    treated = treated.assign(person_id=treated["account_id"].map(identity_lookup(lake)["account_id"]), cost=treated["channel"].map(costs)).dropna(subset=["person_id"])
    expected = {p: (len(g), MONEY(g["cost"].sum(), abs=1e-9)) for p, g in treated.groupby("person_id")}
    actual = person_marketing_contacts(lake.read("gold.contact_history"), lake.read("silver.identity_map"), END, horizon, costs).collect()
    assert expected and {r["person_id"]: (r["marketing_contacts"], r["marketing_costs"]) for r in actual} == expected


def test_the_planted_bargain_hunters_rank_far_lower_by_profit_than_by_revenue(pipeline, profitability):
    lake = pipeline["lake"]
    with open(os.path.join(pipeline["root"], "landing", "_truth", "summary.json"), encoding="utf-8") as fh:
        seed = json.load(fh)["seed"]
    accounts = lake.read("silver.identity_map").where(F.col("identifier_type") == "account_id")
    hunters = {r["person_id"] for r in accounts.where(bargain_hunter(seed, F.col("identifier"))).select("person_id").distinct().collect()}
    buyers = pd.DataFrame([r for r in profitability.values() if r["revenue"] > 0]).set_index("person_id")
    drop = buyers["revenue"].rank(pct=True) - buyers["profit"].rank(pct=True)   # how far a buyer falls from their revenue rank to their profit rank
    planted = buyers.index.isin(hunters)
    assert planted.sum() >= 5
    # Everyone else rises as the hunters fall (the drops sum to 0): the hunters' mean fall is large, the others' a small rise.
    assert drop[planted].mean() > 0.2 > drop[~planted].mean()
    profit_rate = buyers["profit"] / buyers["revenue"]
    assert profit_rate[planted].median() < profit_rate[~planted].quantile(0.25)
