"""Value tiers, the loyalty ladder and the Pareto curve on tiny data, answers by hand."""

from crmlake.analyze.value import ValueRules, pareto_curve, with_loyalty_level, with_value_tier

RULES = ValueRules(most_valuable_top_share=0.25, growth_ratio=1.5, growth_min_value=500, margin=0.3, cost_to_serve=60, repeat_min_orders=2, advocate_min_referred_buyers=1)


def test_value_tiers_first_match_wins(spark):
    persons = spark.createDataFrame(
        [("TOP", 9000.0, 100.0), ("B", 1000.0, 1200.0), ("C", 800.0, 600.0), ("GROW", 300.0, 900.0), ("POOR", 50.0, 100.0), ("NEVER", None, None)],
        "person_id string, current_value double, predicted_value double",
    )
    tiers = {r["person_id"]: r["value_tier"] for r in with_value_tier(persons, RULES).collect()}
    # 5 buyers, top 25%: only TOP (percent_rank 0); GROW: 900 >= 1.5 x 300 and >= 500;
    # POOR: 100 x 0.3 = 30 < 60; NEVER: 0 < 60; B and C keep their value.
    assert tiers == {"TOP": "most_valuable", "B": "maintain", "C": "maintain", "GROW": "most_growth_potential", "POOR": "not_worth_developing", "NEVER": "not_worth_developing"}


def test_loyalty_ladder_highest_rung_reached(spark):
    persons = spark.createDataFrame(
        [("P", 0, 0, 0), ("U", 3, 1, 2), ("S", 1, 0, 0), ("R", 2, 0, 0), ("A", 1, 0, 1)],
        "person_id string, orders int, open_complaints int, referred_buyers int",
    )
    levels = {r["person_id"]: r["loyalty_level"] for r in with_loyalty_level(persons, RULES).collect()}
    assert levels == {"P": "prospect", "U": "unsatisfied", "S": "satisfied", "R": "repeat_buyer", "A": "advocate"}


def test_pareto_curve_shares(spark):
    # Revenue 60, 20, 10, 5, 5 (total 100) and a non-buyer.
    persons = spark.createDataFrame([(v,) for v in (60.0, 20.0, 10.0, 5.0, 5.0, 0.0)], "revenue double")
    curve = [(r["top_share"], r["value_share"]) for r in pareto_curve(persons, "revenue", points=5).collect()]
    assert curve == [(0.2, 0.6), (0.4, 0.8), (0.6, 0.9), (0.8, 0.95), (1.0, 1.0)]
