"""Value tiers, the loyalty ladder and the Pareto curve on tiny data, answers by hand."""

from crmlake.analyze.value import pareto_curve, with_loyalty_level, with_value_tier
from crmlake.config_analyze import Loyalty, Value

ACCURACY = 10_000   # percentile_approx's: exact on a few rows
TIERS = Value(most_valuable_top_share=0.25, growth_ratio=1.5, growth_min_value=500, margin=0.3, cost_to_serve=60)
LADDER = Loyalty(repeat_min_orders=2, advocate_min_referred_buyers=1, satisfied_min_rating=4, satisfaction_recent_days=90)


def test_value_tiers_first_match_wins(spark):
    persons = spark.createDataFrame(
        [("TOP", 9000.0, 100.0), ("B", 1000.0, 1200.0), ("C", 800.0, 600.0), ("GROW", 300.0, 900.0), ("POOR", 50.0, 100.0), ("NEVER", None, None)],
        "person_id string, current_value double, predicted_value double",
    )
    tiers = {r["person_id"]: r["value_tier"] for r in with_value_tier(persons, TIERS, ACCURACY).collect()}
    # 5 buyers, top 25%: only TOP (percent_rank 0; B's is 1/4); GROW: 900 >= 1.5 x 300 and >= 500;
    # POOR: 100 x 0.3 = 30 < 60; NEVER: 0 < 60; B and C keep their value.
    assert tiers == {"TOP": "most_valuable", "B": "maintain", "C": "maintain", "GROW": "most_growth_potential", "POOR": "not_worth_developing", "NEVER": "not_worth_developing"}


def test_tied_buyers_at_the_top_share_boundary_are_most_valuable_together(spark):
    # 10 buyers, top 20%: percent rank below 0.2, i.e. fewer than 1.8 buyers worth more. 900
    # has none ahead, each 800 has one (ties share a rank): all three are in; 700 has three.
    persons = spark.createDataFrame(
        [(f"P{v}{suffix}", float(v), 0.0) for v, suffix in ((900, ""), (800, "a"), (800, "b"), (700, ""), (600, ""), (500, ""), (400, ""), (300, ""), (200, ""), (100, ""))],
        "person_id string, current_value double, predicted_value double",
    )
    rules = TIERS.model_copy(update={"most_valuable_top_share": 0.2})
    top = {r["person_id"] for r in with_value_tier(persons, rules, ACCURACY).where("value_tier = 'most_valuable'").collect()}
    assert top == {"P900", "P800a", "P800b"}


def test_loyalty_ladder_highest_rung_reached(spark):
    persons = spark.createDataFrame(
        [("P", 0, 0, 0, None), ("U", 3, 1, 2, None), ("S", 1, 0, 0, None), ("R", 2, 0, 0, None), ("A", 1, 0, 1, None)],
        "person_id string, orders int, open_complaints int, referred_buyers int, recent_satisfaction int",
    )
    levels = {r["person_id"]: r["loyalty_level"] for r in with_loyalty_level(persons, LADDER).collect()}
    assert levels == {"P": "prospect", "U": "unsatisfied", "S": "satisfied", "R": "repeat_buyer", "A": "advocate"}


def test_satisfied_rung_takes_a_recent_rating_of_4_or_5_or_none_and_no_open_complaint(spark):
    persons = spark.createDataFrame(
        [("RATED_5", 1, 0, 0, 5), ("RATED_4", 1, 0, 0, 4), ("RATED_3", 1, 0, 0, 3), ("NOT_RATED", 1, 0, 0, None),
         ("RATED_5_OPEN_COMPLAINT", 1, 1, 0, 5), ("REPEAT_RATED_2", 3, 0, 0, 2), ("ADVOCATE_RATED_1", 1, 0, 2, 1), ("PROSPECT_RATED_5", 0, 0, 0, 5)],
        "person_id string, orders int, open_complaints int, referred_buyers int, recent_satisfaction int",
    )
    levels = {r["person_id"]: r["loyalty_level"] for r in with_loyalty_level(persons, LADDER).collect()}
    # A low latest rating keeps a repeat buyer or a referrer off every rung above unsatisfied; no rating is judged by complaints alone.
    assert levels == {"RATED_5": "satisfied", "RATED_4": "satisfied", "RATED_3": "unsatisfied", "NOT_RATED": "satisfied",
                      "RATED_5_OPEN_COMPLAINT": "unsatisfied", "REPEAT_RATED_2": "unsatisfied", "ADVOCATE_RATED_1": "unsatisfied",
                      "PROSPECT_RATED_5": "prospect"}


def test_pareto_curve_shares(spark):
    # Revenue 60, 20, 10, 5, 5 (total 100) and a non-buyer.
    persons = spark.createDataFrame([(v,) for v in (60.0, 20.0, 10.0, 5.0, 5.0, 0.0)], "revenue double")
    curve = [(r["top_share"], r["value_share"]) for r in pareto_curve(persons, "revenue", 2, ACCURACY, points=5).collect()]
    assert curve == [(0.2, 0.6), (0.4, 0.8), (0.6, 0.9), (0.8, 0.95), (1.0, 1.0)]


def test_pareto_curve_equals_the_exact_running_share_of_sorted_values(spark):
    # 300 customers with many ties, cut into 4 value ranges summed apart: the curve must be the
    # one of a plain sort and running sum, done here in Python.
    values = [float((i * 37) % 23 + 1) for i in range(300)]
    persons = spark.createDataFrame([(v,) for v in values] + [(0.0,), (None,)], "revenue double")
    points, ranked = 10, sorted(values, reverse=True)
    total, expected = sum(ranked), []
    for point in range(1, points + 1):
        last = point * len(ranked) // points   # ranks r with ceil(r x points / n) <= point
        expected.append((round(point / points, 4), round(sum(ranked[:last]) / total, 6)))
    curve = [(r["top_share"], r["value_share"]) for r in pareto_curve(persons, "revenue", 4, ACCURACY, points=points).collect()]
    assert curve == expected
