"""Next best category on tiny data, answers by hand."""

import datetime as dt

from crmlake.analyze.categories import categories_bought, category_popularity, hit_rates, person_categories, with_category_rank

AS_OF = dt.date(2026, 11, 21)


def lines(spark):
    return spark.createDataFrame(
        [
            ("o1", "A", "books", dt.date(2026, 11, 1), "completed"),
            ("o2", "A", "books", dt.date(2026, 11, 11), "completed"),
            ("o2", "A", "toys", dt.date(2026, 11, 11), "completed"),
            ("o3", "B", "books", dt.date(2026, 11, 5), "completed"),
            ("o4", "B", "home", dt.date(2026, 11, 6), "returned"),     # not a purchase
            ("o5", "C", "home", dt.date(2026, 11, 25), "completed"),   # after as_of
        ],
        "order_id string, person_id string, category string, order_date date, status string",
    )


def test_popularity_is_the_share_of_buyers_who_bought_the_category(spark):
    popularity = {r["category"]: r["category_popularity"] for r in category_popularity(lines(spark), AS_OF).collect()}
    assert popularity == {"books": 1.0, "toys": 0.5}


def test_every_person_is_paired_with_every_category_and_their_history_in_it(spark):
    behaviour = spark.createDataFrame([("A", 2, 10), ("C", 0, 31)], "person_id string, frequency long, recency_days int")
    pairs = {(r["person_id"], r["category"]): r for r in person_categories(behaviour, lines(spark), AS_OF).collect()}
    assert set(pairs) == {("A", "books"), ("A", "toys"), ("C", "books"), ("C", "toys")}
    books, toys = pairs[("A", "books")], pairs[("A", "toys")]
    assert (books["category_orders"], books["category_share"], books["category_recency_days"]) == (2.0, 1.0, 10.0)
    assert (toys["category_orders"], toys["category_share"], toys["category_recency_days"]) == (1.0, 0.5, 10.0)
    never = pairs[("C", "books")]
    assert (never["category_orders"], never["category_share"], never["category_recency_days"]) == (0.0, 0.0, 32.0)   # recency + 1


def test_hit_rates_count_buyers_whose_best_ranked_categories_hold_one_they_bought(spark):
    scored = spark.createDataFrame(
        [
            ("A", "books", 0.9), ("A", "toys", 0.5), ("A", "home", 0.1), ("A", "sports", 0.05),
            ("B", "books", 0.8), ("B", "toys", 0.7), ("B", "home", 0.6), ("B", "sports", 0.5),
            ("C", "books", 0.3), ("C", "toys", 0.2), ("C", "home", 0.1), ("C", "sports", 0.0),
            ("D", "books", 0.9), ("D", "toys", 0.1), ("D", "home", 0.1), ("D", "sports", 0.1),   # bought nothing: not counted
        ],
        "person_id string, category string, score double",
    )
    bought = spark.createDataFrame([("A", "books"), ("B", "home"), ("C", "sports")], "person_id string, category string")
    ranked = with_category_rank(scored, "score")
    assert {(r["category"]) for r in ranked.where("person_id = 'D' AND rank = 1").collect()} == {"books"}
    # A hits at 1; B's home is third; C's sports is fourth.
    assert hit_rates(ranked, bought) == {"top_1": 1 / 3, "top_3": 2 / 3}


def test_categories_bought_are_the_completed_lines_inside_the_label_window(spark):
    bought = {(r["person_id"], r["category"]) for r in categories_bought(lines(spark), dt.date(2026, 11, 5), 20).collect()}
    assert bought == {("A", "books"), ("A", "toys"), ("C", "home")}
