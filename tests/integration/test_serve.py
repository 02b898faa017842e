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
            assert section.locator("h2").inner_text() == title
            assert section.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0, key
            assert section.locator("tbody tr").count() >= 1 and section.locator("p.definition").inner_text()
            assert page.locator(f"nav a[href='#monthly-{key}']").count() == 1
            section.screenshot(path=str(tmp_path / f"page_{key}.png"))
        page.locator("section#monthly-service a.monthly-report").click()
        page.wait_for_load_state()
        assert page.locator("section.management").count() == len(MANAGEMENT_SECTIONS) and "month to date" in page.title()
        for key, title in MANAGEMENT_SECTIONS.items():
            section = page.locator(f"section#{key}.management")
            assert section.locator("h2").inner_text() == title
            assert section.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0, key
        page.screenshot(path=str(tmp_path / "monthly.png"), full_page=True)
        browser.close()
    print("screenshots:", tmp_path)


def served_csv(url: str) -> list[dict]:
    import csv
    import io

    with urllib.request.urlopen(url) as reply:
        return list(csv.DictReader(io.StringIO(reply.read().decode("utf-8"))))


def test_the_monthly_reports_csv_files_equal_the_gold_tables(pipeline, lake_page):
    # Each section's CSV, downloaded from the page, against pandas over its gold table: the month of DAY to DAY.
    lake, month = pipeline["lake"], f"{DAY:%Y-%m}"
    folder = f"{lake_page}/reports/monthly/{month}"

    kpis = lake.read("gold.service_kpis").toPandas()
    kpis = kpis[(kpis["service_date"] >= DAY.replace(day=1)) & (kpis["service_date"] <= DAY)]
    targets = pipeline["conf"].analyze.service.target_of
    expected = {}
    for channel, rows in kpis.groupby("channel"):
        rated = rows[rows["median_hours_to_close"].notna()]
        expected[channel] = (int(rows["opened"].sum()), int(rows["closed"].sum()), int(rows.loc[rows["service_date"] == DAY, "backlog"].sum()),
                             round(float((rated["median_hours_to_close"] * rated["closed"]).sum() / rated["closed"].sum()), 2),
                             round(float((rated["past_target_share"] * rated["closed"]).sum() / rated["closed"].sum()), 4), float(targets(channel)))
    service_rows = served_csv(f"{folder}_service.csv")
    assert expected and sorted(r["channel"] for r in service_rows) == sorted(expected)
    for r in service_rows:
        got = (int(r["opened"]), int(r["closed"]), int(r["backlog"]), float(r["median_hours_to_close"]), float(r["past_target_share"]), float(r["target_hours"]))
        assert got == pytest.approx(expected[r["channel"]], abs=1e-4), r["channel"]
    slowest = max(expected, key=lambda c: expected[c][3])
    assert service_rows[0]["channel"] == slowest   # the slowest channel first

    listed = lake.read("gold.repeat_complainers").where(f"list_date = DATE'{DAY}'").toPandas()
    assert sorted(r["person_id"] for r in served_csv(f"{folder}_service_persons.csv")) == sorted(listed["person_id"])

    sends = lake.read("gold.campaign_engagement").toPandas()
    sends = sends[(sends["send_date"] >= DAY.replace(day=1)) & (sends["send_date"] <= DAY)].groupby("campaign_id").sum(numeric_only=True)
    campaigns = {r["campaign_id"]: r for r in served_csv(f"{folder}_campaign_engagement.csv")}
    assert len(sends) and sorted(campaigns) == sorted(sends.index)
    for campaign, want in sends.iterrows():
        got = campaigns[campaign]
        assert (int(got["sent"]), int(got["delivered"]), int(got["conversions"])) == (want["sent"], want["delivered"], want["conversions"])
        assert float(got["open_rate"]) == pytest.approx(want["opened"] / want["delivered"], abs=1e-4)
        assert float(got["click_rate"]) == pytest.approx(want["clicked"] / want["delivered"], abs=1e-4)
        assert float(got["bounce_rate"]) == pytest.approx(want["bounced"] / want["sent"], abs=1e-4)
