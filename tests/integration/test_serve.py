"""The audience catalog in a real headless Chromium (Debian's), over a real published export."""

import datetime as dt
import os
import threading
import urllib.error
import urllib.request

import pytest

from crmlake.decide.export import publish_audience
from crmlake.serve import serve

CHROMIUM = "/usr/bin/chromium"
DAY = dt.date(2026, 11, 21)


@pytest.fixture
def catalog(spark, tmp_path):
    rows = spark.createDataFrame(
        [("P1", "a" * 64, None, 0.91, 10, "champions", "propensity_decile_10"), ("P2", "b" * 64, "c" * 64, 0.55, 6, "new", "propensity_decile_6")],
        "person_id string, email_sha256 string, phone_sha256 string, score double, decile int, segment string, reason_codes string",
    )
    folder = publish_audience(rows, str(tmp_path / "exports"), "likely_buyers", DAY, {"definition": {"channel": "email", "rule": "propensity_decile >= 8"}, "counts": {"matched": 5, "control": 1}})
    server = serve(str(tmp_path / "exports"), "127.0.0.1", 0)
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


@pytest.mark.parametrize("path", ["/files/../../etc/passwd", "/files/likely_buyers/2026-11-21/..%2F..%2Fsecret", "/files/likely_buyers/.hidden/audience.csv.gz", "/etc/passwd"])
def test_nothing_outside_the_published_exports_is_served(catalog, path):
    url, folder = catalog
    (open(os.path.join(os.path.dirname(os.path.dirname(folder)), "secret"), "w")).write("do not serve")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + path)
    assert err.value.code == 404
