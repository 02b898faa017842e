"""The marketers' page in a real headless Chromium (Debian's): over a hand-published export, and
over the shared pipeline's lake, where every section renders and screenshots are taken."""

import datetime as dt
import os
import threading
import urllib.error
import urllib.request

import pytest

from crmlake.exports import publish_audience
from crmlake.serve import serve
from crmlake.summaries import CAMPAIGN_RESULTS_JSON, write_summary

CHROMIUM = "/usr/bin/chromium"
DAY = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")   # read-only for its tests: published once
def catalog(spark, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("catalog")
    rows = spark.createDataFrame(
        [("P1", "a" * 64, None, 0.91, 10, "champions", "propensity_decile_10"), ("P2", "b" * 64, "c" * 64, 0.55, 6, "new", "propensity_decile_6")],
        "person_id string, email_sha256 string, phone_sha256 string, score double, decile int, segment string, reason_codes string",
    )
    exports = tmp_path / "exports"
    folder = publish_audience(rows, str(exports), "likely_buyers", DAY, {"definition": {"channel": "email", "rule": "propensity_decile >= 8"}, "counts": {"matched": 5, "control": 1}})
    write_summary(str(exports), CAMPAIGN_RESULTS_JSON, {"attribution_days": 14, "rows": []})
    (exports / "summaries" / "other.json").write_text("{}")   # in the folder, but not a summary the page serves
    (exports / "reports" / "daily_sales").mkdir(parents=True)
    (exports / "reports" / "daily_sales" / "2026-11-21.html").write_text("<p>sales</p>")
    (exports / "reports" / "daily_sales" / ".draft.html").write_text("<p>hidden</p>")
    (tmp_path / "secret").write_text("do not serve")
    server = serve(str(exports), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make browser installs it)")
def test_catalog_lists_the_export_and_a_download_returns_the_file(catalog, tmp_path):
    from playwright.sync_api import sync_playwright

    url, folder = catalog
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.goto(url)
        row = page.locator("tr.export[data-audience=likely_buyers]")
        assert row.count() == 1
        assert "2026-11-21" in row.inner_text() and row.locator("td.exported").inner_text() == "2"
        assert page.locator("img[alt='score histogram']").evaluate("img => img.naturalWidth") > 0
        with page.expect_download() as info:
            row.locator("a.download", has_text="audience.csv.gz").click()
        saved = tmp_path / "downloaded.csv.gz"
        info.value.save_as(saved)
        browser.close()
    assert saved.read_bytes() == open(os.path.join(folder, "audience.csv.gz"), "rb").read()


def test_summaries_and_report_pages_are_served(catalog):
    url, _ = catalog
    with urllib.request.urlopen(url + "/reports/daily_sales/2026-11-21.html") as reply:
        assert reply.read() == b"<p>sales</p>" and reply.headers["Content-Type"].startswith("text/html")
    with urllib.request.urlopen(url + "/summaries/campaign_results.json") as reply:
        assert b'"attribution_days": 14' in reply.read()


@pytest.mark.parametrize("path", [
    "/files/../../etc/passwd", "/files/likely_buyers/2026-11-21/..%2F..%2Fsecret", "/files/likely_buyers/.hidden/audience.csv.gz", "/etc/passwd",
    "/files/likely_buyers/2026-11-21/..%2F..%2F..%2Fsecret", "/summaries/..%2F..%2Fsecret", "/summaries/other.json", "/summaries/../../secret",
    "/reports/daily_sales/..%2F..%2F..%2Fsecret", "/reports/../../secret", "/reports/daily_sales/.draft.html", "/reports/%2E%2E/%2E%2E/secret",
    "/reports/daily_sales/2026-11-21.html/..%2F..%2F..%2F..%2Fsecret",
])
def test_nothing_outside_the_published_exports_is_served(catalog, path):
    url, _ = catalog
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + path)
    assert err.value.code == 404


@pytest.fixture
def lake_page(pipeline):
    server = serve(str(pipeline["root"] / "exports"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make browser installs it)")
def test_every_section_renders_from_the_lake_and_screenshots_are_taken(pipeline, lake_page, tmp_path):
    from playwright.sync_api import sync_playwright

    exports = pipeline["root"] / "exports"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True, viewport={"width": 1400, "height": 900})
        page.goto(lake_page)
        for audience in ("likely_buyers", "win_back"):
            assert page.locator(f"tr.export[data-audience={audience}]").count() >= 1
        assert page.locator("tr.result").count() >= 2   # one per audience and contact date
        lift_chart = page.locator("img[alt='campaign lift']")
        assert lift_chart.evaluate("img => img.complete && img.naturalWidth") > 0
        segments = page.locator("tr.segment")
        assert segments.count() == pipeline["analyze"]["segmentation"]["k"]
        tiers = page.locator("tr.value_tier td.share").all_inner_texts()
        assert tiers and abs(sum(float(t.rstrip("%")) for t in tiers) - 100) < 0.5   # shares of all revenue
        assert page.locator("li.report").count() >= 2
        # Persons: the pairs linked, by what they share, add up to the lake's linked pairs.
        linked = page.locator("tr.pairs td[data-decision='linked']").all_inner_texts()
        assert sum(int(t.replace(",", "")) for t in linked) == pipeline["lake"].read("silver.identity_pairs").where("decision = 'linked'").count() > 0
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        win_back = page.locator("tr.export[data-audience=win_back]").first
        folder = exports / "win_back" / win_back.locator("td").first.inner_text()
        with page.expect_download() as info:
            win_back.locator("a.download", has_text="google_customer_match.csv").click()
        info.value.save_as(tmp_path / "upload.csv")
        assert (tmp_path / "upload.csv").read_bytes() == (folder / "google_customer_match.csv").read_bytes()
        for kind in ("daily_sales", "members"):
            page.goto(lake_page)
            page.locator(f"li.report a[href^='/reports/{kind}/']").first.click()
            page.wait_for_load_state()
            charts = page.locator("img")
            assert charts.count() >= 1 and all(charts.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(charts.count()))
            page.screenshot(path=str(tmp_path / f"{kind}.png"), full_page=True)
        browser.close()
    print("screenshots:", tmp_path)


# Every section of the monthly report (crmlake.analyze.management.SECTIONS): key -> heading.
MANAGEMENT_SECTIONS = {
    "service": "Service desk", "campaign_engagement": "Campaign engagement", "campaign_roi": "Campaign ROI", "cohort_retention": "Cohort retention",
    "churn_risk": "Churn risk", "tier_transitions": "Value tier transitions", "profit": "Customer profitability", "acquisition": "Acquisition",
}


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make browser installs it)")
def test_the_management_sections_and_the_monthly_report_render_with_their_charts(pipeline, lake_page, tmp_path):
    from playwright.sync_api import sync_playwright

    assert not [piece for piece in pipeline["analyze"]["failed"] if piece.startswith("monthly_report")]
    assert pipeline["analyze"]["monthly_report"]["sections"] == list(MANAGEMENT_SECTIONS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(lake_page)
        for key, title in MANAGEMENT_SECTIONS.items():
            section = page.locator(f"section#monthly-{key}")
            assert section.locator("h2").inner_text().startswith(title)   # acquisition's title names the month it shows
            assert section.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0, key
            assert section.locator("tbody tr").count() >= 1 and section.locator("p.definition").inner_text()
            assert page.locator(f"nav a[href='#monthly-{key}']").count() == 1
            section.screenshot(path=str(tmp_path / f"page_{key}.png"))
        page.locator("section#monthly-service a.monthly-report").click()
        page.wait_for_load_state()
        assert page.locator("section.management").count() == len(MANAGEMENT_SECTIONS) and "month to date" in page.title()
        for key, title in MANAGEMENT_SECTIONS.items():
            section = page.locator(f"section#{key}.management")
            assert section.locator("h2").inner_text().startswith(title)
            assert section.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0, key
        page.screenshot(path=str(tmp_path / "monthly.png"), full_page=True)
        browser.close()
    print("screenshots:", tmp_path)


# The monthly report's CSV files, downloaded from the page, against pandas over the gold tables
# as the lake holds them: each section's rules applied by hand (crmlake.analyze.management_sections, management_customers).
MONTH_START = DAY.replace(day=1)


def served_csv(lake_page: str, name: str) -> tuple[list[str], list[dict]]:
    """The header and rows of the report's CSV ``<month of DAY>_<name>.csv``, downloaded from the page."""
    import csv
    import io

    with urllib.request.urlopen(f"{lake_page}/reports/monthly/{DAY:%Y-%m}_{name}.csv") as reply:
        lines = list(csv.reader(io.StringIO(reply.read().decode("utf-8"))))
    return lines[0], [dict(zip(lines[0], line)) for line in lines[1:]]


def gold(pipeline, table: str):
    return pipeline["lake"].read(table).toPandas()


def cell(value: str):
    """A CSV cell as a number, or None for an empty one."""
    return float(value) if value else None


def test_the_service_csv_and_its_complainers_equal_the_gold_tables(pipeline, lake_page):
    kpis = gold(pipeline, "gold.service_kpis")
    kpis = kpis[(kpis["service_date"] >= MONTH_START) & (kpis["service_date"] <= DAY)]
    targets = pipeline["conf"].analyze.service.target_of
    expected = {}
    for channel, rows in kpis.groupby("channel"):
        rated = rows[rows["median_hours_to_close"].notna()]
        expected[channel] = (int(rows["opened"].sum()), int(rows["closed"].sum()), int(rows.loc[rows["service_date"] == DAY, "backlog"].sum()),
                             round(float((rated["median_hours_to_close"] * rated["closed"]).sum() / rated["closed"].sum()), 2),
                             round(float((rated["past_target_share"] * rated["closed"]).sum() / rated["closed"].sum()), 4), float(targets(channel)))
    _, service_rows = served_csv(lake_page, "service")
    assert expected and sorted(r["channel"] for r in service_rows) == sorted(expected)
    for r in service_rows:
        got = (int(r["opened"]), int(r["closed"]), int(r["backlog"]), float(r["median_hours_to_close"]), float(r["past_target_share"]), float(r["target_hours"]))
        assert got == pytest.approx(expected[r["channel"]], abs=1e-4), r["channel"]
    slowest = max(expected, key=lambda c: expected[c][3])
    assert service_rows[0]["channel"] == slowest   # the slowest channel first

    listed = gold(pipeline, "gold.repeat_complainers")
    listed = listed[listed["list_date"] == DAY]
    assert sorted(r["person_id"] for r in served_csv(lake_page, "service_persons")[1]) == sorted(listed["person_id"])


def test_the_campaign_engagement_csv_equals_the_gold_table(pipeline, lake_page):
    sends = gold(pipeline, "gold.campaign_engagement")
    sends = sends[(sends["send_date"] >= MONTH_START) & (sends["send_date"] <= DAY)].groupby("campaign_id").sum(numeric_only=True)
    campaigns = {r["campaign_id"]: r for r in served_csv(lake_page, "campaign_engagement")[1]}
    assert len(sends) and sorted(campaigns) == sorted(sends.index)
    for campaign, want in sends.iterrows():
        got = campaigns[campaign]
        assert (int(got["sent"]), int(got["delivered"]), int(got["conversions"])) == (want["sent"], want["delivered"], want["conversions"])
        assert float(got["open_rate"]) == pytest.approx(want["opened"] / want["delivered"], abs=1e-4)
        assert float(got["click_rate"]) == pytest.approx(want["clicked"] / want["delivered"], abs=1e-4)
        assert float(got["bounce_rate"]) == pytest.approx(want["bounced"] / want["sent"], abs=1e-4)


def test_the_campaign_roi_csv_equals_the_recorded_results_whose_window_is_complete(pipeline, lake_page):
    results = gold(pipeline, "gold.campaign_results")
    done = results[(results["contact_date"] >= MONTH_START) & (results["contact_date"] <= DAY) & results["window_complete"]]
    header, rows = served_csv(lake_page, "campaign_roi")
    assert header == ["audience", "channel", "contact_dates", "contacted", "control", "incremental_revenue", "cost", "roi"]
    # The fixture's only decide run contacted on DAY, whose attribution window is not over: recorded, but none complete.
    assert len(results[results["contact_date"] == DAY]) and done.empty and rows == []


def test_the_cohort_retention_csv_equals_the_gold_table(pipeline, lake_page):
    cells = gold(pipeline, "gold.cohort_retention")
    since = dt.date(DAY.year - 1, DAY.month, 1)   # the cohorts of the 12 months before DAY's
    cells = cells[(cells["cohort_month"] >= since) & (cells["cohort_month"] < MONTH_START) & (cells["months_since"] <= 12)]
    expected = []
    for month, cohort in sorted(cells.groupby("cohort_month"), key=lambda c: c[0], reverse=True):
        shares = dict(zip(cohort["months_since"], cohort["retained_share"]))
        expected.append((str(month), int(cohort["cohort_persons"].max()), *(shares.get(m) for m in (1, 2, 3, 6))))
    header, rows = served_csv(lake_page, "cohort_retention")
    assert header == ["cohort_month", "cohort_persons", "month_1_share", "month_2_share", "month_3_share", "month_6_share"]
    got = [(r["cohort_month"], int(r["cohort_persons"]), *(cell(r[f"month_{m}_share"]) for m in (1, 2, 3, 6))) for r in rows]
    assert expected and [g[:2] for g in got] == [e[:2] for e in expected]
    for g, e in zip(got, expected):
        assert list(g[2:]) == pytest.approx(list(e[2:])), g[0]   # a share the cohort has no month for yet: none on both sides


def test_the_churn_risk_csv_and_its_persons_equal_the_gold_table(pipeline, lake_page):
    import pandas as pd

    risk = gold(pipeline, "gold.churn_risk")
    risk = risk[(risk["score_date"] == DAY) & risk["main_reason"].notna()]
    expected = sorted((tier, reason, len(rows)) for (tier, reason), rows in risk.groupby(["value_tier", "main_reason"]))
    header, rows = served_csv(lake_page, "churn_risk")
    assert header == ["value_tier", "main_reason", "persons"]
    assert expected and [(r["value_tier"], r["main_reason"], int(r["persons"])) for r in rows] == expected

    tiers = pipeline["conf"].analyze.service.high_value_tiers
    valuable = [r for r in risk.to_dict("records") if r["value_tier"] in tiers]
    # The highest churn-risk decile first (no decile last), then the lowest P(alive) (none first), then person_id.
    valuable.sort(key=lambda r: (pd.isna(r["churn_risk_decile"]), -(0 if pd.isna(r["churn_risk_decile"]) else r["churn_risk_decile"]),
                                 not pd.isna(r["p_alive"]), 0.0 if pd.isna(r["p_alive"]) else r["p_alive"], r["person_id"]))
    header, persons = served_csv(lake_page, "churn_risk_persons")
    assert header[:4] == ["person_id", "value_tier", "segment", "main_reason"]
    assert valuable and [(p["person_id"], p["value_tier"], p["main_reason"]) for p in persons] == [
        (r["person_id"], r["value_tier"], r["main_reason"]) for r in valuable]


def test_the_tier_transitions_csv_equals_the_gold_table(pipeline, lake_page):
    moves = gold(pipeline, "gold.tier_transitions")
    header, rows = served_csv(lake_page, "tier_transitions")
    assert header == ["from_value_tier", "to_value_tier", "persons", "revenue"]
    # The fixture scores on one date only: no earlier score date to move from, so gold holds no transitions for DAY.
    assert moves[moves["score_date"] == DAY].empty and rows == []


def test_the_profit_csv_equals_the_gold_table(pipeline, lake_page):
    scored = gold(pipeline, "gold.customer_profitability")
    scored = scored[scored["score_date"] == DAY]
    expected = []
    for (value_tier, profit_tier), rows in sorted(scored.groupby(["value_tier", "profit_tier"]), key=lambda g: g[0]):
        losses = rows.loc[rows["profit"] < 0, "profit"]
        expected.append((value_tier, profit_tier, len(rows), rows["revenue"].sum(), rows["profit"].sum(), len(losses), losses.sum()))
    header, rows = served_csv(lake_page, "profit")
    assert header == ["value_tier", "profit_tier", "persons", "revenue", "profit", "loss_making", "loss"]
    got = [(r["value_tier"], r["profit_tier"], int(r["persons"]), float(r["revenue"]), float(r["profit"]), int(r["loss_making"]), float(r["loss"]))
           for r in rows]
    assert expected and [g[:3] + g[5:6] for g in got] == [e[:3] + e[5:6] for e in expected]
    for g, e in zip(got, expected):   # amounts rounded to cents
        assert (g[3], g[4], g[6]) == pytest.approx((e[3], e[4], e[6]), abs=0.006), g[:2]
    assert sum(e[5] for e in expected) > 0   # the test lake has loss-making persons: the loss columns are checked on real losses


def test_the_acquisition_csv_shows_the_latest_month_with_complete_windows_else_the_latest_to_date(pipeline, lake_page):
    import json

    sources = gold(pipeline, "gold.acquisition_sources")
    sources = sources[sources["acquisition_month"] <= MONTH_START]
    complete = sources.groupby("acquisition_month")["window_complete"].all()   # every row's window over
    month = complete[complete].index.max() if complete.any() else complete.index.max()
    # On the fixture's 45-day lake no month is complete yet: the latest of its months is shown, to date.
    assert len(complete) >= 2 and not complete[month]
    shown = sources[sources["acquisition_month"] == month].sort_values(["new_customers", "source"], ascending=[False, True]).head(12)
    header, rows = served_csv(lake_page, "acquisition")
    assert header == ["acquisition_month", "source", "new_customers", "buyers_in_window", "value", "value_per_customer", "window_complete", "min_days_observed"]
    assert [(r["acquisition_month"], r["source"], int(r["new_customers"]), int(r["buyers_in_window"]), r["value"], float(r["value_per_customer"]),
             r["window_complete"], int(r["min_days_observed"])) for r in rows] == [
        (str(month), s["source"], s["new_customers"], s["buyers_in_window"], f"{s['value']:.2f}", s["value_per_customer"], str(s["window_complete"]),
         s["min_days_observed"]) for s in shown.to_dict("records")]
    referrals = gold(pipeline, "gold.referrals")
    referred = referrals[referrals["acquisition_month"] == month].to_dict("records") or [{"members_referred": 0, "referrers": 0, "referred_buyers": 0}]
    with urllib.request.urlopen(f"{lake_page}/summaries/management.json") as reply:
        (section,) = [s for s in json.loads(reply.read())["sections"] if s["key"] == "acquisition"]
    assert section["title"] == f"Acquisition, {month:%Y-%m}" and ("values to date" in section["headline"]) == (not complete[month])
    r = referred[0]
    assert section["headline"].endswith(f"{r['members_referred']:,} of them referred by {r['referrers']:,} persons, {r['referred_buyers']:,} of those bought.")
