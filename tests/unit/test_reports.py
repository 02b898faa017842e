"""The daily sales and member reports on hand-built rows, answers worked out by hand."""

import csv
import datetime as dt
import re
from decimal import Decimal

import pytest

from crmlake.analyze.reports import daily_figures, compare_figures, daily_sales, member_report, top_sellers, write_daily_sales, write_member_report

D = dt.date(2026, 11, 21)
LINES = "order_id string, line_no int, order_date date, person_id string, channel string, category string, product_id string, status string, line_amount decimal(18,2)"


def ago(days: int) -> dt.date:
    return D - dt.timedelta(days=days)


@pytest.fixture
def sales(spark):
    lines = spark.createDataFrame(
        [
            ("O1", 1, ago(10), "P1", "web", "shoes", "S1", "completed", Decimal("100")),
            ("O2", 1, ago(7), "P1", "web", "shoes", "S1", "completed", Decimal("120")),
            ("O3", 1, ago(7), "P1", "web", "shoes", "S2", "cancelled", Decimal("300")),   # not a sale
            ("O4", 1, ago(3), "P3", "app", "bags", "B1", "completed", Decimal("40")),
            ("O5", 1, D, "P1", "web", "shoes", "S1", "completed", Decimal("200")),        # returning
            ("O6", 1, D, "P2", "app", "bags", "B1", "completed", Decimal("50")),          # new: first order
            ("O6", 2, D, "P2", "app", "shoes", "S2", "completed", Decimal("30")),
            ("O7", 1, D, None, "web", "hats", "H1", "completed", Decimal("70")),           # guest
        ],
        LINES,
    )
    accounts = spark.createDataFrame(
        [("A1", dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.timezone.utc), False),   # 01:00 on D in Taipei
         ("A2", dt.datetime(2026, 11, 19, 1, 0, tzinfo=dt.timezone.utc), False),
         ("A3", dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), True)],
        "account_id string, signup_time timestamp, erased boolean",
    )
    return lines, accounts


def test_daily_figures_split_new_returning_and_guest_orders_by_business_date(sales):
    lines, accounts = sales
    days = {r["order_date"]: r.asDict() for r in daily_figures(lines, accounts, D, 8, "Asia/Taipei").collect()}
    assert sorted(days) == [ago(k) for k in range(7, -1, -1)]   # a row for every day, sales or not
    assert days[D] == {"order_date": D, "revenue": 350.0, "orders": 3, "average_order_value": 116.67, "new_customer_orders": 1,
                       "returning_customer_orders": 1, "guest_orders": 1, "first_purchases": 1, "new_members": 1}
    assert days[ago(7)]["revenue"] == 120.0 and days[ago(7)]["orders"] == 1 and days[ago(2)]["new_members"] == 1
    assert days[ago(1)]["orders"] == 0 and days[ago(1)]["average_order_value"] is None


def test_a_figure_outside_its_trailing_range_is_unusual(sales):
    lines, accounts = sales
    days = [r.asDict() for r in daily_figures(lines, accounts, D, 8, "Asia/Taipei").collect()]
    figures = {f["figure"]: f for f in compare_figures(days, D, trailing_weeks=1)}
    revenue = figures["revenue"]
    # Trailing week D-7..D-1: 120, 0, 0, 0, 40, 0, 0.
    assert (revenue["same_weekday_last_week"], revenue["trailing_average"], revenue["trailing_low"], revenue["trailing_high"]) == (120.0, round(160 / 7, 2), 0.0, 120.0)
    # Average order value over the days with orders only: 120 and 40; 116.67 is inside.
    assert (figures["average_order_value"]["trailing_average"], figures["average_order_value"]["unusual"]) == (80.0, False)
    # New (D-3) and returning (D-7) orders and first purchases (D-3) each had a day of 1 in the week; guests never.
    assert {name for name, f in figures.items() if f["unusual"]} == {"revenue", "orders", "guest_orders"}


def test_top_sellers_rank_the_days_revenue(sales):
    lines, _ = sales
    top = [tuple(r) for r in top_sellers(lines, D, "category", 2).collect()]
    assert top == [("shoes", 230.0, 2, round(230 / 350, 4)), ("hats", 70.0, 1, 0.2)]


def test_the_daily_page_is_one_file_with_inline_charts_and_its_figures_as_csv(sales, tmp_path):
    lines, accounts = sales
    report = daily_sales(lines, accounts, D, "Asia/Taipei", trend_days=8, trailing_weeks=1, top_n=3)
    page, figures_csv, trend_csv, top_csv = write_daily_sales(report, str(tmp_path), "TWD")
    text = open(page, encoding="utf-8").read()
    assert re.findall(r"<img [^>]*src='([^']{0,22})", text) == ["data:image/png;base64,"]
    unusual = re.search(r"<ul class='unusual-list'>(.*?)</ul>", text).group(1)
    assert "Revenue: 350.00, above its range of the last 1 weeks (0.00 – 120.00)" in unusual and "Average order value" not in unusual
    rows = {r["figure"]: r for r in csv.DictReader(open(figures_csv, encoding="utf-8"))}
    assert rows["revenue"]["value"] == "350.0" and rows["revenue"]["unusual"] == "True"
    assert len(list(csv.DictReader(open(trend_csv, encoding="utf-8")))) == 8
    assert [r["name"] for r in csv.DictReader(open(top_csv, encoding="utf-8")) if r["kind"] == "product"] == ["S1", "H1", "B1"]


def test_member_report_states_one_active_definition_and_never_shows_not_declared_for_inferred(spark, tmp_path):
    people = spark.createDataFrame(
        [
            ("P1", True, "f", 1990, "student", False, False, True, "shoes", "app", "mid"),    # student past student age: stale
            ("P2", True, None, None, None, None, True, None, None, "web", None),             # nothing declared, nothing bought
            ("P3", True, "m", 1980, "engineer", False, False, False, "bags", None, "high"),
            ("P4", False, "f", 1970, "teacher", False, True, False, "hats", "app", "low"),    # not active (its stale profile counts nowhere)
        ],
        "person_id string, active_90d boolean, gender string, birth_year int, occupation string, implausible_birth_year boolean, "
        "stale_profile boolean, stale_occupation boolean, preferred_category string, preferred_device string, price_band string",
    )
    accounts = spark.createDataFrame([("A1", False), ("A2", False), ("A3", False), ("A4", False), ("A5", True)], "account_id string, erased boolean")
    report = member_report(people, accounts, D)
    assert (report["registrations"], report["live_registrations"], report["persons"], report["active_members"]) == (5, 4, 4, 3)
    assert report["declared"]["occupation"] == {"declared": 2, "stale": 1, "values": [("(not declared)", 1), ("engineer", 1), ("student", 1)]}
    assert report["declared"]["gender"]["stale"] == 0   # P2's stale profile declared no gender
    assert report["inferred"]["preferred category"] == {"inferred": 2, "values": [("bags", 1), ("shoes", 1)]}
    page, distributions = write_member_report(report, str(tmp_path))
    text = open(page, encoding="utf-8").read()
    assert text.count("An <b>active member</b> is") == 1 and '<p class="figure">3 active members</p>' in text
    inferred_rows = [r for r in csv.DictReader(open(distributions, encoding="utf-8")) if r["kind"] == "inferred"]
    assert inferred_rows and not any(r["value"] == "(not declared)" for r in inferred_rows)
