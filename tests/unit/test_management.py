"""The monthly management report on a few hand-made gold rows, answers worked out by hand: the
section builders, the report's files, the page's copy, and a failing section isolated."""

import csv
import datetime as dt
import os
from decimal import Decimal

from crmlake.analyze import acquisition, engagement, management, profit, retention, service
from crmlake.analyze.management import write_management_report
from crmlake.analyze.management_customers import (
    acquisition_section, churn_risk_section, cohort_retention_section, profit_section, tier_transitions_section,
)
from crmlake.analyze.management_sections import (
    Section, campaign_roi_section, engagement_by_campaign, engagement_section, service_by_channel, service_section,
)
from crmlake.analyze.writers import PARETO
from crmlake.contacts import CAMPAIGN_RESULT_DEFINITIONS
from crmlake.decide.job import CAMPAIGN_RESULTS
from crmlake.config_analyze import Service
from crmlake.serve import catalog_page
from crmlake.summaries import MANAGEMENT_JSON, read_summary

RUN_DATE = dt.date(2026, 11, 3)
RULES = Service(target_hours=48, target_hours_by_channel={"phone": 24}, repeat_complaints=2, complaint_window_days=30,
                high_value_tiers=["most_valuable"])
KPIS = ("service_date date, channel string, type string, opened bigint, closed bigint, backlog bigint, median_hours_to_close double, "
        "p95_hours_to_close double, past_target_share double, mean_satisfaction double")
COMPLAINERS = ("person_id string, value_tier string, complaints bigint, open_complaints bigint, last_complaint_at timestamp, "
               "complaint_channels array<string>, mean_satisfaction double, list_date date")
ENGAGEMENT = ("campaign_id string, send_date date, sent bigint, delivered bigint, opened bigint, clicked bigint, unsubscribed bigint, "
              "bounced bigint, complained bigint, conversions bigint, revenue decimal(18,2)")


def day(d: int, month: int = 11) -> dt.date:
    return dt.date(2026, month, d)


def kpis(spark):
    return spark.createDataFrame([
        (day(31, 10), "phone", "complaint", 9, 9, 9, 99.0, 99.0, 1.0, 1.0),   # last month: left out
        (day(1), "phone", "complaint", 2, 1, 1, 10.0, 10.0, 0.0, 2.0),
        (day(2), "phone", "inquiry", 1, 3, 0, 30.0, 40.0, 0.6667, None),      # 2 of 3 past phone's 24 h
        (day(3), "phone", "complaint", 0, 0, 2, None, None, None, None),       # the run date: its backlog counts
        (day(3), "email", "inquiry", 1, 2, 1, 50.0, 60.0, 0.5, 4.0),
        (day(4), "email", "inquiry", 5, 5, 5, 1.0, 1.0, 0.0, 5.0),            # after the run date: left out
    ], KPIS)


def complainers(spark):
    return spark.createDataFrame([
        ("P1", "most_valuable", 2, 0, dt.datetime(2026, 11, 2, 9), ["phone"], 2.0, RUN_DATE),
        ("P2", "most_valuable", 3, 1, dt.datetime(2026, 11, 3, 9), ["email", "phone"], None, RUN_DATE),
        ("P3", "most_valuable", 2, 2, dt.datetime(2026, 11, 1, 9), ["chat"], None, day(2)),   # listed another day
    ], COMPLAINERS)


def campaign_rows(spark):
    return spark.createDataFrame([
        ("c-20261101", day(1), 10, 8, 4, 2, 0, 2, 0, 1, Decimal("50.00")),
        ("c-20261101", day(2), 2, 2, 2, 1, 1, 0, 0, 1, Decimal("30.00")),    # a late first event: the same campaign
        ("c-20261103", day(3), 4, 0, 0, 0, 0, 4, 0, 0, Decimal("0.00")),     # nothing delivered: no open rate
        ("c-20261025", day(25, 10), 50, 50, 50, 50, 0, 0, 0, 9, Decimal("900.00")),   # last month
    ], ENGAGEMENT)


def test_service_by_channel_sums_the_month_to_date_and_weights_daily_figures_by_contacts_closed(spark):
    rows = [r.asDict() for r in service_by_channel(kpis(spark), RUN_DATE, RULES).collect()]
    # phone: median (1 x 10 + 3 x 30) / 4 = 25.0; past target (1 x 0 + 3 x 0.6667) / 4 = 0.5 (2 of 4 contacts).
    assert rows == [
        {"channel": "email", "opened": 1, "closed": 2, "backlog": 1, "median_hours_to_close": 50.0, "past_target_share": 0.5, "target_hours": 48.0},
        {"channel": "phone", "opened": 3, "closed": 4, "backlog": 2, "median_hours_to_close": 25.0, "past_target_share": 0.5, "target_hours": 24.0},
    ]


def test_engagement_by_campaign_sums_its_send_dates_and_recomputes_each_rate(spark):
    rows = {r["campaign_id"]: r.asDict() for r in engagement_by_campaign(campaign_rows(spark), RUN_DATE).collect()}
    assert sorted(rows) == ["c-20261101", "c-20261103"]
    first = rows["c-20261101"]
    # 12 sent, 10 delivered, 6 opened, 3 clicked, 1 unsubscribed, 2 bounced.
    assert first == {"campaign_id": "c-20261101", "sent": 12, "delivered": 10, "delivery_rate": 0.8333, "open_rate": 0.6, "click_rate": 0.3,
                     "unsubscribe_rate": 0.1, "bounce_rate": 0.1667, "complaint_rate": 0.0, "conversions": 2, "revenue": Decimal("80.00")}
    assert (rows["c-20261103"]["open_rate"], rows["c-20261103"]["bounce_rate"]) == (None, 1.0)


def test_service_section_counts_the_run_dates_complainers_lists_them_and_quotes_the_definitions(spark, conf):
    tables = {service.SERVICE_KPIS: kpis(spark), service.REPEAT_COMPLAINERS: complainers(spark)}
    conf = conf.model_copy(update={"analyze": conf.analyze.model_copy(update={"service": RULES})})
    section = service_section(tables.__getitem__, conf, RUN_DATE)
    assert section.rows == (("email", 1, 2, 1, 50.0, 0.5, 48.0), ("phone", 3, 4, 2, 25.0, 0.5, 24.0))
    assert section.headline.startswith("2 high-value repeat complainers on 2026-11-03; 3 contacts open at its end; 50% of the 6 contacts closed")
    assert [r[0] for r in section.persons] == ["P2", "P1"] and section.persons_header[0] == "person_id"   # open complaints first
    for figure in ("backlog", "median_hours_to_close", "past_target_share", "repeat_complainers"):
        assert service.DEFINITIONS[figure] in section.definition
    assert section.chart.startswith(b"\x89PNG")


def test_engagement_section_names_the_most_clicked_campaign_and_quotes_the_definitions(spark, conf):
    section = engagement_section({engagement.CAMPAIGN_ENGAGEMENT: campaign_rows(spark)}.__getitem__, conf, RUN_DATE)
    assert [r[0] for r in section.rows] == ["c-20261101", "c-20261103"]
    assert "the most clicked: c-20261101 (30.0% of delivered recipients clicked)" in section.headline
    assert all(engagement.DEFINITIONS[c] in section.definition for c in ("open_rate", "click_rate", "bounce_rate"))


def test_campaign_roi_sums_the_months_complete_windows_and_recomputes_roi_over_the_dates_with_a_control(spark, conf):
    rows = spark.createDataFrame([
        ("A", "email", day(1), True, 100, 20, 300.0, 50.0),
        ("A", "email", day(2), True, 50, 10, 100.0, 25.0),
        ("A", "email", day(3), False, 90, 9, 900.0, 45.0),      # window still open: left out
        ("A", "email", day(31, 10), True, 9, 9, 9.0, 9.0),      # last month: left out
        ("B", "sms", day(1), True, 10, 0, None, 10.0),          # no control group: no ROI
        ("C", "ads", day(1), True, 40, 10, 40.0, 20.0),
        ("C", "ads", day(2), True, 20, 0, None, 10.0),           # its cost is not in the ROI: nothing measured against it
    ], "audience string, channel string, contact_date date, window_complete boolean, contacted bigint, control bigint, "
       "incremental_revenue double, cost double")
    section = campaign_roi_section({CAMPAIGN_RESULTS: rows}.__getitem__, conf, RUN_DATE)
    # A: (400 - 75) / 75 = 4.3333; C: (40 - 20) / 20 = 1.0.
    assert section.rows == (("A", "email", 2, 150, 30, 400.0, 75.0, 4.3333), ("C", "ads", 2, 60, 10, 40.0, 30.0, 1.0),
                            ("B", "sms", 1, 10, 0, None, 10.0, None))
    assert section.headline == "3 audiences with a complete window this month brought 440.00 of incremental revenue; the best ROI: A (4.33)."
    assert "analyze runs before decide" in section.definition and all(CAMPAIGN_RESULT_DEFINITIONS[c] in section.definition for c in ("roi", "cost"))


def test_campaign_roi_before_any_decide_run_is_an_empty_section(conf):
    from crmlake.lake.errors import TableNotFoundError

    def read(table):
        raise TableNotFoundError(table)

    section = campaign_roi_section(read, conf, RUN_DATE)
    assert section.rows == () and section.headline == "No decide run has recorded campaign results yet." and section.chart.startswith(b"\x89PNG")


def test_cohort_retention_shows_the_last_twelve_cohorts_before_the_run_month(spark, conf):
    rows = spark.createDataFrame([
        (day(1, 10), 0, 10, 10, 1.0, Decimal("1.00")), (day(1, 10), 1, 10, 3, 0.3, Decimal("1.00")),
        (day(1, 9), 0, 20, 20, 1.0, Decimal("1.00")), (day(1, 9), 1, 20, 5, 0.25, Decimal("1.00")), (day(1, 9), 2, 20, 2, 0.1, Decimal("1.00")),
        (day(1, 11), 0, 5, 5, 1.0, Decimal("1.00")),                         # the run date's month: no month after yet
        (dt.date(2025, 10, 1), 1, 99, 9, 0.0909, Decimal("1.00")),           # 13 months before: left out
    ], "cohort_month date, months_since int, cohort_persons bigint, retained_persons bigint, retained_share double, revenue decimal(18,2)")
    section = cohort_retention_section({retention.COHORT_RETENTION: rows}.__getitem__, conf, RUN_DATE)
    assert section.rows == (("2026-10-01", 10, 0.3, None, None, None), ("2026-09-01", 20, 0.25, 0.1, None, None))
    assert section.headline == "30.0% of the 10 persons who first bought in 2026-10 bought again the month after."
    assert retention.DEFINITIONS["cohort_retention"] in section.definition and section.chart.startswith(b"\x89PNG")


CHURN = ("person_id string, value_tier string, segment string, main_reason string, churn_risk_decile int, p_alive double, p_alive_change double, "
         "days_since_last_purchase int, usual_interval_days double, score_date date, churn_ranking string, previous_score_date date")


def test_churn_risk_counts_the_persons_at_risk_by_tier_and_reason_and_lists_the_valuable_ones(spark, conf):
    def person(pid, tier, reason, decile, score_date=RUN_DATE):
        return (pid, tier, "s", reason, decile, 1 - decile / 10, -0.1, 90, 30.0, score_date, "p_alive", day(2))

    rows = spark.createDataFrame([
        person("P1", "most_valuable", "overdue", 10), person("P2", "most_valuable", "recent_complaint", 9), person("P3", "maintain", "overdue", 10),
        person("P4", "most_growth_potential", "overdue", 8), person("P7", "most_valuable", "overdue", 7),
        person("P5", "most_valuable", None, 10),                  # no sign of leaving: not at risk
        person("P6", "most_valuable", "overdue", 10, day(2)),     # scored another day
    ], CHURN)
    conf = conf.model_copy(update={"analyze": conf.analyze.model_copy(update={"service": RULES.model_copy(update={"high_value_tiers": ["most_valuable", "most_growth_potential"]})})})
    section = churn_risk_section({retention.CHURN_RISK: rows}.__getitem__, conf, RUN_DATE)
    assert section.rows == (("maintain", "overdue", 1), ("most_growth_potential", "overdue", 1), ("most_valuable", "overdue", 2),
                            ("most_valuable", "recent_complaint", 1))
    assert [r[0] for r in section.persons] == ["P1", "P2", "P4", "P7"] and section.persons_header[:4] == ("person_id", "value_tier", "segment", "main_reason")
    assert section.headline == "5 persons scored on 2026-11-03 show a sign of leaving; 4 of them in the tiers most_valuable, most_growth_potential."
    assert retention.DEFINITIONS["churn_risk"] in section.definition and "not here" in section.definition


def test_tier_transitions_sum_the_segments_per_pair_of_tiers(spark, conf):
    rows = spark.createDataFrame([
        (day(2), "champions", "most_valuable", 3, 30.0, RUN_DATE, "at_risk", "maintain"),
        (day(2), "loyal", "most_valuable", 2, 20.0, RUN_DATE, "champions", "maintain"),
        (day(2), "x", "maintain", 10, 100.0, RUN_DATE, "x", "maintain"),
        (day(2), "x", "maintain", 1, 500.0, RUN_DATE, "y", "most_valuable"),
        (day(1), "x", "maintain", 7, 7.0, day(2), "x", "most_valuable"),     # the previous score date's moves
    ], "from_score_date date, from_segment string, from_value_tier string, persons bigint, revenue double, score_date date, "
       "to_segment string, to_value_tier string")
    section = tier_transitions_section({retention.TIER_TRANSITIONS: rows}.__getitem__, conf, RUN_DATE)
    assert section.rows == (("maintain", "maintain", 10, 100.0), ("most_valuable", "maintain", 5, 50.0), ("maintain", "most_valuable", 1, 500.0))
    assert section.headline == "6 of the 16 persons scored on 2026-11-02 and 2026-11-03 changed value tier."
    assert retention.DEFINITIONS["tier_transitions"] in section.definition


def test_profit_counts_persons_profit_and_losses_by_revenue_tier_and_profit_tier(spark, conf):
    rows = spark.createDataFrame([
        ("P1", RUN_DATE, "most_valuable", "most_valuable", 100.0, 40.0), ("P2", RUN_DATE, "most_valuable", "most_valuable", 200.0, 60.0),
        ("P3", RUN_DATE, "most_valuable", "maintain", 150.0, -10.0), ("P4", RUN_DATE, "maintain", "maintain", 0.0, -5.0),
        ("P5", day(2), "maintain", "maintain", 9.0, -9.0),     # another score date
    ], "person_id string, score_date date, value_tier string, profit_tier string, revenue double, profit double")
    curve = spark.createDataFrame([(RUN_DATE, 0.5, 0.8), (RUN_DATE, 1.0, 1.0)], "score_date date, top_share double, value_share double")
    section = profit_section({profit.CUSTOMER_PROFITABILITY: rows, PARETO: curve, profit.PROFIT_PARETO: curve}.__getitem__, conf, RUN_DATE)
    assert section.rows == (("maintain", "maintain", 1, 0.0, -5.0, 1, -5.0), ("most_valuable", "maintain", 1, 150.0, -10.0, 1, -10.0),
                            ("most_valuable", "most_valuable", 2, 300.0, 100.0, 0, 0.0))
    assert section.headline == "85.00 of profit from 4 persons on 2026-11-03; 2 of them made a loss (-15.00)."
    assert all(profit.DEFINITIONS[c] in section.definition for c in ("revenue", "profit", "profit_tier")) and section.chart.startswith(b"\x89PNG")


SOURCES = ("acquisition_month date, source string, new_customers bigint, buyers_in_window bigint, value decimal(18,2), value_per_customer double, "
           "window_complete boolean, min_days_observed int, value_days int")
REFERRALS = "acquisition_month date, referrers bigint, members_referred bigint, referred_buyers bigint"


def test_acquisition_shows_the_latest_month_whose_windows_are_all_complete_and_its_referrals(spark, conf):
    sources = spark.createDataFrame([
        (day(1, 6), "google", 9, 9, Decimal("900.00"), 100.0, True, 90, 90),        # complete, but an earlier month
        (day(1, 7), "google", 5, 2, Decimal("100.00"), 20.0, True, 90, 90), (day(1, 7), "direct", 8, 1, Decimal("10.00"), 1.25, True, 90, 90),
        (day(1, 7), "(no visit)", 8, 0, Decimal("0.00"), 0.0, True, 90, 90),
        (day(1, 8), "google", 6, 1, Decimal("30.00"), 5.0, True, 90, 90),           # August: one source complete ...
        (day(1, 8), "direct", 3, 0, Decimal("0.00"), 0.0, False, 65, 90),           # ... the other not: not every window is over
        (day(1), "google", 2, 0, Decimal("0.00"), 0.0, False, 1, 90),
        (day(1, 12), "google", 7, 7, Decimal("70.00"), 10.0, True, 90, 90),         # after the run month (a later run's, kept by a backfill)
    ], SOURCES)
    referrals = spark.createDataFrame([(day(1, 7), 2, 3, 1), (day(1, 8), 9, 9, 9), (day(1), 1, 1, 0)], REFERRALS)
    section = acquisition_section({acquisition.ACQUISITION_SOURCES: sources, acquisition.REFERRALS: referrals}.__getitem__, conf, RUN_DATE)
    assert section.rows == ((day(1, 7), "(no visit)", 8, 0, Decimal("0.00"), 0.0, True, 90), (day(1, 7), "direct", 8, 1, Decimal("10.00"), 1.25, True, 90),
                            (day(1, 7), "google", 5, 2, Decimal("100.00"), 20.0, True, 90))
    # 110.00 over 21 new customers: 5.24 each.
    assert section.headline == ("21 new customers acquired in 2026-07 from 3 sources, worth 5.24 each in their first 90 days; "
                                "3 of them referred by 2 persons, 1 of those bought.")
    assert section.title == "Acquisition, 2026-07"
    assert "acquired in 2026-07, the latest acquisition month whose 90-day value windows are all complete by 2026-11-03" in section.definition
    assert "to date" not in section.headline and "windows not over" not in section.definition
    assert all(acquisition.DEFINITIONS[c] in section.definition for c in ("new_customer", "first_touch_source", "value", "members_referred"))


def test_acquisition_on_a_lake_without_a_complete_month_shows_the_latest_and_says_its_values_are_to_date(spark, conf):
    sources = spark.createDataFrame([
        (day(1, 10), "google", 4, 1, Decimal("40.00"), 10.0, False, 34, 90),
        (day(1), "direct", 3, 0, Decimal("0.00"), 0.0, False, 1, 90), (day(1), "google", 1, 1, Decimal("25.00"), 25.0, False, 3, 90),
    ], SOURCES)
    referrals = spark.createDataFrame([(day(1, 10), 2, 2, 1)], REFERRALS)   # none referred in November
    section = acquisition_section({acquisition.ACQUISITION_SOURCES: sources, acquisition.REFERRALS: referrals}.__getitem__, conf, RUN_DATE)
    assert section.rows == ((day(1), "direct", 3, 0, Decimal("0.00"), 0.0, False, 1), (day(1), "google", 1, 1, Decimal("25.00"), 25.0, False, 3))
    # 25.00 over 4 new customers: 6.25 each so far; the least observed, acquired on the run date, has had 1 day.
    assert section.headline == ("4 new customers acquired in 2026-11 from 2 sources, worth 6.25 each to date (values to date: their 90-day windows "
                                "are not over, the least observed has had 1 of the 90 days); 0 of them referred by 0 persons, 0 of those bought.")
    assert section.title == "Acquisition, 2026-11"
    assert ("acquired in 2026-11, the latest acquisition month the lake holds: no month has its 90-day value windows complete by 2026-11-03 yet, "
            "so its values are to date and its windows not over") in section.definition


def test_every_new_section_is_built_from_empty_tables(spark, lake, conf):
    # Tables of the declared columns, no rows yet (a first day): each section says so, with a chart.
    empty = {t: spark.createDataFrame([], lake.catalog.spec(t).ddl) for t in (
        CAMPAIGN_RESULTS, retention.COHORT_RETENTION, retention.CHURN_RISK, retention.TIER_TRANSITIONS, profit.CUSTOMER_PROFITABILITY,
        PARETO, profit.PROFIT_PARETO, acquisition.ACQUISITION_SOURCES, acquisition.REFERRALS)}
    for build in (campaign_roi_section, cohort_retention_section, churn_risk_section, tier_transitions_section, profit_section, acquisition_section):
        section = build(empty.__getitem__, conf, RUN_DATE)
        assert section.rows == () and section.chart.startswith(b"\x89PNG"), build.__name__


def test_a_section_whose_table_the_lake_lacks_fails_alone(lake, conf, monkeypatch):
    monkeypatch.setattr(management, "SECTIONS", (cohort_retention_section, lambda read, conf, run_date: hand_section("calls")))
    failures = {}
    facts = management.write_monthly_report(lake, conf, RUN_DATE, os.path.join(conf.exports_root, "reports"), failures)
    assert list(failures) == ["monthly_report.cohort_retention_section"] and facts["sections"] == ["calls"]


def hand_section(key: str, persons=None) -> Section:
    from crmlake import charts

    return Section(key=key, title=f"{key} title", definition=f"what {key} means", headline=f"{key} in one line", header=("name", "count", "open_share"),
                   rows=(("a", 1200, 0.25), ("b", None, 0.5)), chart=charts.png(charts.bar_chart([("a", 1)], "t", "x")),
                   persons=persons, persons_header=("person_id", "note") if persons else ())


def test_the_report_writes_a_page_with_every_chart_inline_and_each_sections_csv_and_png(tmp_path):
    persons = (("P1", "=cmd"),)   # a typed note a spreadsheet would run: quoted
    (tmp_path / "2026-10_calls_persons.csv").write_text("person_id\nP0\n")   # last month's list of persons: replaced
    written = write_management_report([hand_section("calls", persons), hand_section("other")], RUN_DATE, str(tmp_path), {"broken": "ValueError: no"})
    names = sorted(os.path.basename(f) for f in written)
    assert names == ["2026-11.html", "2026-11_calls.csv", "2026-11_calls.png", "2026-11_calls_persons.csv", "2026-11_other.csv", "2026-11_other.png"]
    page = (tmp_path / "2026-11.html").read_text()
    assert page.count("src='data:image/png;base64,") == 2 and "month to date" in page and "1,200" in page and "25.0%" in page
    assert "broken: ValueError: no" in page
    with open(tmp_path / "2026-11_calls.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["name", "count", "open_share"], ["a", "1200", "0.25"], ["b", "", "0.5"]]
    assert (tmp_path / "2026-11_calls.png").read_bytes() == hand_section("calls").chart
    assert (tmp_path / "2026-11_calls_persons.csv").read_text().splitlines() == ["person_id,note", "P1,'=cmd"]
    assert not (tmp_path / "2026-10_calls_persons.csv").exists()


def test_a_failing_section_is_listed_and_the_others_are_still_written_and_shown_on_the_page(lake, conf, monkeypatch):
    def broken_section(read, conf, run_date):
        raise RuntimeError("gold table unreadable")

    monkeypatch.setattr(management, "SECTIONS", (broken_section, lambda read, conf, run_date: hand_section("calls")))
    failures = {}
    facts = management.write_monthly_report(lake, conf, RUN_DATE, os.path.join(conf.exports_root, "reports"), failures)
    assert failures == {"monthly_report.broken_section": "RuntimeError: gold table unreadable"} and facts["sections"] == ["calls"]
    summary = read_summary(conf.exports_root, MANAGEMENT_JSON)
    assert summary["report"] == "monthly/2026-11.html" and summary["sections"][0]["rows"] == [["a", "1,200", "25.0%"], ["b", "–", "50.0%"]]
    page = catalog_page(conf.exports_root)
    assert 'id="monthly-calls"' in page and 'src="/reports/monthly/2026-11_calls.png"' in page and 'href="/reports/monthly/2026-11.html"' in page
    assert "gold table unreadable" in page
