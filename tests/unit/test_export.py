"""Audience exports: platform upload files (the documented headers, hashes of values normalised
by hand), the versioned layout (one atomic swap per publish and amendment, no unpublished copy
left), erasure amendments (empty audiences too), CSV cells a spreadsheet cannot run, slug names."""

import csv
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmlake.analyze.reports import write_member_report
from crmlake.config import ConfigError, load_conf
from crmlake.csv_cells import safe_cell, safe_frame, safe_rows, safe_table
from crmlake.exports import VERSIONS, amend_exports, amend_person_lists, export_rows, platform_rows, publish_audience, remove_unpublished
from crmlake.files import file_sha256
from crmlake.serve import published_exports, resolve_download

DAY = dt.date(2026, 11, 21)
PERSONS = "person_id string, email string, phone string, propensity_score double, propensity_decile int, segment string, rfm_cell string, top_category string"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def persons(spark):
    return spark.createDataFrame(
        [
            ("P1", "  John.Doe+news@GMail.com ", "0912-345-678", 0.9, 10, "champions", "555", "books"),
            ("P2", "Ann.Lee@Example.COM", None, 0.7, 8, "new", "511", "toys"),
            ("P3", None, "not a phone", 0.6, 7, "new", "411", None),   # nothing a platform could match
        ],
        PERSONS,
    )


def test_google_customer_match_removes_gmail_dots_and_keeps_the_e164_plus(persons):
    rows = {tuple(r) for r in platform_rows(persons, "TW", "google_customer_match").collect()}
    # By hand: trimmed, lower-cased, dots before @gmail.com removed (the +tag stays); E.164 with "+".
    assert rows == {(sha("johndoe+news@gmail.com"), sha("+886912345678")), (sha("ann.lee@example.com"), None)}


def test_meta_custom_audience_keeps_dots_and_drops_the_plus_of_the_phone(persons):
    rows = platform_rows(persons, "TW", "meta_custom_audience")
    assert rows.columns == ["EMAIL", "PHONE"]
    assert {tuple(r) for r in rows.collect()} == {(sha("john.doe+news@gmail.com"), sha("886912345678")), (sha("ann.lee@example.com"), None)}


def test_the_published_upload_file_has_the_documented_header_and_the_manifest_names_it(persons, tmp_path):
    treatment = persons.where("person_id = 'P1'")
    folder = publish_audience(export_rows(treatment, "TW", False), str(tmp_path), "win_back", DAY, {},
                              ("google_customer_match", platform_rows(treatment, "TW", "google_customer_match")))
    with open(os.path.join(folder, "google_customer_match.csv"), newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == [["Email", "Phone"], [sha("johndoe+news@gmail.com"), sha("+886912345678")]]
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["platform_format"] == "google_customer_match"
    assert manifest["files"]["google_customer_match.csv"]["sha256"] == hashlib.sha256(open(os.path.join(folder, "google_customer_match.csv"), "rb").read()).hexdigest()


def test_an_unknown_platform_format_or_one_on_a_non_ads_audience_is_a_config_error():
    with pytest.raises(ConfigError, match="'campaigns.audiences.0.platform_format' = 'tiktok'"):
        load_conf(overrides=["campaigns.audiences=[{name: a, rule: 'true', channel: ads, platform_format: tiktok}]"], environ={})
    with pytest.raises(ConfigError, match="platform_format is for an ads audience"):
        load_conf(overrides=["campaigns.audiences=[{name: a, rule: 'true', channel: email, platform_format: meta_custom_audience}]"], environ={})


def test_an_empty_audience_is_published_with_headers_only(persons, tmp_path):
    nobody = persons.where("false")
    folder = publish_audience(export_rows(nobody, "TW", False), str(tmp_path), "win_back", DAY, {},
                              ("meta_custom_audience", platform_rows(nobody, "TW", "meta_custom_audience")))
    with open(os.path.join(folder, "meta_custom_audience.csv"), newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == [["EMAIL", "PHONE"]]
    assert json.load(open(os.path.join(folder, "manifest.json")))["row_count"] == 0


# --- the versioned layout -------------------------------------------------------------------

NEUTRAL = "person_id string, email_sha256 string, phone_sha256 string, score double, decile int, segment string, reason_codes string"


def neutral_rows(spark, *person_ids):
    return spark.createDataFrame([(p, f"e-{p}", None, 0.5, 5, "new", "r") for p in person_ids], NEUTRAL)


def versions_of(exports, audience="win_back"):
    return sorted(os.listdir(os.path.join(exports, audience, VERSIONS)))


def assert_checksums_hold(folder):
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(os.path.join(folder, name)), name


def test_a_published_date_is_a_link_to_its_one_version_and_a_republish_replaces_it(spark, tmp_path):
    exports = str(tmp_path)
    folder = publish_audience(neutral_rows(spark, "P1", "P2"), exports, "win_back", DAY, {})
    first = os.path.realpath(folder)
    assert os.path.islink(folder) and os.path.dirname(first) == os.path.join(os.path.realpath(exports), "win_back", VERSIONS)
    assert publish_audience(neutral_rows(spark, "P3"), exports, "win_back", DAY, {}) == folder
    assert not os.path.exists(first)   # the previous version is removed after the swap
    assert versions_of(exports) == [os.path.basename(os.path.realpath(folder))]
    assert sorted(os.listdir(os.path.join(exports, "win_back"))) == [VERSIONS, DAY.isoformat()]
    assert pq.read_table(os.path.join(folder, "audience.parquet")).column("person_id").to_pylist() == ["P3"]
    assert_checksums_hold(folder)
    (shown,) = published_exports(exports)
    assert (shown["folder"], shown["row_count"]) == (f"win_back/{DAY}", 1)
    # The page serves the files through the link (so a swap while serving reads old or new) and not the versions.
    assert resolve_download(exports, f"/files/win_back/{DAY}/audience.csv.gz") == os.path.join(exports, "win_back", DAY.isoformat(), "audience.csv.gz")
    assert resolve_download(exports, f"/files/win_back/{VERSIONS}/audience.csv.gz") is None


def test_a_folder_of_the_layout_before_versions_is_moved_aside_and_replaced(spark, tmp_path):
    exports = str(tmp_path)
    old = tmp_path / "win_back" / DAY.isoformat()
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"audience": "win_back", "date": DAY.isoformat(), "row_count": 1, "files": {}}))
    (old / "audience.parquet").write_text("the old layout's file")
    folder = publish_audience(neutral_rows(spark, "P1"), exports, "win_back", DAY, {})
    assert os.path.islink(folder) and len(versions_of(exports)) == 1
    assert pq.read_table(os.path.join(folder, "audience.parquet")).column("person_id").to_pylist() == ["P1"]


def test_remove_unpublished_deletes_every_hidden_leftover_and_keeps_the_published_versions(spark, tmp_path):
    exports = str(tmp_path)
    folder = publish_audience(neutral_rows(spark, "P1"), exports, "win_back", DAY, {})
    audience_dir = tmp_path / "win_back"
    shutil.copytree(os.path.realpath(folder), audience_dir / VERSIONS / f"{DAY}.killed")          # a version never swapped in
    shutil.copytree(os.path.realpath(folder), audience_dir / f".{DAY}.0123abcd")                 # the old layout's staging
    shutil.copytree(os.path.realpath(folder), audience_dir / ".retired.0123abcd")                # the old layout's retired copy
    os.symlink(f"{VERSIONS}/{DAY}.killed", audience_dir / f".{DAY}.link.0123abcd")               # a link never renamed
    (tmp_path / "summaries").mkdir()
    (tmp_path / "summaries" / ".campaign_results.json.0123").write_text("{}")                     # not an audience's: left alone
    removed = remove_unpublished(exports)
    assert sorted(removed) == sorted([
        os.path.join("win_back", VERSIONS, f"{DAY}.killed"), os.path.join("win_back", f".{DAY}.0123abcd"),
        os.path.join("win_back", ".retired.0123abcd"), os.path.join("win_back", f".{DAY}.link.0123abcd"),
    ])
    assert sorted(os.listdir(audience_dir)) == [VERSIONS, DAY.isoformat()]
    assert versions_of(exports) == [os.path.basename(os.path.realpath(folder))]
    assert os.path.exists(tmp_path / "summaries" / ".campaign_results.json.0123")
    assert remove_unpublished(exports) == []


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "Big Audience", ""])
def test_publish_refuses_an_audience_name_that_is_not_a_slug(spark, tmp_path, name):
    with pytest.raises(ValueError, match="not a slug"):
        publish_audience(neutral_rows(spark, "P1"), str(tmp_path / "exports"), name, DAY, {})
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "exports")


# --- erasure amendments ---------------------------------------------------------------------

def test_an_amendment_over_an_empty_audience_leaves_it_published(spark, tmp_path):
    exports = str(tmp_path)
    folder = publish_audience(neutral_rows(spark).where("false"), exports, "win_back", DAY, {})
    assert amend_exports(exports, ["P1"], ["e-P1"], [], ["e-P1"], "req-1") == []
    assert json.load(open(os.path.join(folder, "manifest.json")))["row_count"] == 0
    assert [m["folder"] for m in published_exports(exports)] == [f"win_back/{DAY}"]


def test_an_amendment_removes_the_subject_in_a_new_version_and_no_copy_is_left(spark, tmp_path):
    exports = str(tmp_path)
    folder = publish_audience(neutral_rows(spark, "P1", "P2"), exports, "win_back", DAY, {})
    before = os.path.realpath(folder)
    assert amend_exports(exports, ["P2"], [], [], [], "req-1") == [os.path.join("win_back", DAY.isoformat())]
    assert not os.path.exists(before) and versions_of(exports) == [os.path.basename(os.path.realpath(folder))]
    assert pq.read_table(os.path.join(folder, "audience.parquet")).column("person_id").to_pylist() == ["P1"]
    assert "P2" not in gzip.open(os.path.join(folder, "audience.csv.gz"), "rt").read()
    assert json.load(open(os.path.join(folder, "manifest.json")))["row_count"] == 1
    assert_checksums_hold(folder)
    # The same request again (a run killed before it recorded the step): nothing to remove, and
    # the folder is still named for the receipt; another request names none.
    assert amend_exports(exports, ["P2"], [], [], [], "req-1") == [os.path.join("win_back", DAY.isoformat())]
    assert amend_exports(exports, ["P2"], [], [], [], "req-2") == []
    assert len(json.load(open(os.path.join(folder, "manifest.json")))["amendments"]) == 1


def test_an_amendment_removes_unpublished_copies_of_the_subject_when_no_published_export_holds_them(spark, tmp_path):
    exports = str(tmp_path)
    folder = publish_audience(neutral_rows(spark, "P1", "P2"), exports, "win_back", DAY, {})
    shutil.copytree(os.path.realpath(folder), tmp_path / "holding_p2")
    publish_audience(neutral_rows(spark, "P1"), exports, "win_back", DAY, {})
    # What an amendment killed after its swap leaves: the version before it, holding the subject.
    killed = tmp_path / "win_back" / VERSIONS / f"{DAY}.killed"
    shutil.move(tmp_path / "holding_p2", killed)
    assert amend_exports(exports, ["P2"], [], [], [], "req-1") == []
    assert not killed.exists() and versions_of(exports) == [os.path.basename(os.path.realpath(folder))]



def test_an_erasure_removes_the_subject_from_every_reports_list_of_persons_and_nothing_else(tmp_path):
    monthly = tmp_path / "reports" / "monthly"
    monthly.mkdir(parents=True)
    listed = [["person_id", "value_tier", "note"], ["P1", "most_valuable", "'=SUM(A1)"], ["P2", "maintain", "it's, \"quoted\""], ["P3", "maintain", ""]]
    for name in ("2026-11_service_persons.csv", "2026-11_churn_persons.csv"):
        with open(monthly / name, "w", newline="") as fh:
            csv.writer(fh).writerows(listed)
    (monthly / "2026-11_service.csv").write_text("channel,opened\nP2,1\n")   # a section's figures, no list of persons
    (tmp_path / "P2.csv").write_text("person_id\nP2\n")                      # outside the reports: not a report's list

    assert amend_person_lists(str(tmp_path), {"P2"}) == [os.path.join("reports", "monthly", n) for n in ("2026-11_churn_persons.csv", "2026-11_service_persons.csv")]
    for name in ("2026-11_service_persons.csv", "2026-11_churn_persons.csv"):
        with open(monthly / name, newline="") as fh:
            assert list(csv.reader(fh)) == [listed[0], listed[1], listed[3]]   # every other cell as it was
    assert (monthly / "2026-11_service.csv").read_text() == "channel,opened\nP2,1\n"
    assert not [n for n in os.listdir(monthly) if n.startswith(".")]   # no staged copy left behind
    assert amend_person_lists(str(tmp_path), {"P2"}) == []   # done: nothing left to remove

# --- CSV cells a spreadsheet cannot run -----------------------------------------------------

@pytest.mark.parametrize(
    "cell, written",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("@SUM(1)", "'@SUM(1)"),
        ("+1+1", "'+1+1"),
        ("-1+2", "'-1+2"),              # starts like a number, but is a formula
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        # Plain numbers stay as they are: a spreadsheet reads them as numbers, never as formulas,
        # and a quote would turn every negative amount into text (OWASP would quote them too).
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("-1.5e-3", "-1.5e-3"),
        ("o'brien@example.com", "o'brien@example.com"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
        (-12.5, -12.5),
        (3, 3),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell, written):
    assert safe_cell(cell) == written


def test_spark_and_python_neutralise_the_same_cells(spark):
    cells = ["=1", "+3", "-12.5", "-1+2", "@x", "\t1", "\r1", "-1\n", "-1\r", "-1\u2028", "1e5", ".5", "+", "'=x", " =1", "", None, "plain"]
    frame = spark.createDataFrame([(c, i) for i, c in enumerate(cells)], "cell string, n int")
    written = safe_frame(frame).orderBy("n").collect()
    assert [r["cell"] for r in written] == [safe_cell(c) for c in cells]
    assert [r["n"] for r in written] == list(range(len(cells)))   # not a string column: unchanged


def test_safe_rows_and_safe_table_change_text_cells_only():
    assert safe_rows([["=1", -1, None, "-1"]]) == [["'=1", -1, None, "-1"]]
    table = safe_table(pa.table({"cell": ["=1", "x", None], "amount": [-1.0, 2.0, None]}))
    assert table.column("cell").to_pylist() == ["'=1", "x", None]
    assert table.column("amount").to_pylist() == [-1.0, 2.0, None]


def test_a_formula_in_a_published_audience_reads_back_quoted_from_its_csv_files_only(persons, tmp_path):
    hostile = persons.where("person_id = 'P2'").selectExpr("person_id", "email", "phone", "propensity_score", "propensity_decile",
                                                          """'=HYPERLINK("http://x")' AS segment""", "rfm_cell", "'-12.5' AS top_category")
    folder = publish_audience(export_rows(hostile, "TW", False), str(tmp_path), "win_back", DAY, {})
    with gzip.open(os.path.join(folder, "audience.csv.gz"), "rt", newline="") as fh:
        (row,) = csv.DictReader(fh)
    assert (row["segment"], row["top_category"]) == ('\'=HYPERLINK("http://x")', "-12.5")
    assert pq.read_table(os.path.join(folder, "audience.parquet")).column("segment").to_pylist() == ['=HYPERLINK("http://x")']


def test_an_amended_audience_csv_stays_quoted(spark, tmp_path):
    rows = spark.createDataFrame([("P1", "e1", None, 0.5, 5, "=1+1", "r"), ("P2", "e2", None, 0.5, 5, "new", "r")], NEUTRAL)
    folder = publish_audience(rows, str(tmp_path), "win_back", DAY, {})
    amend_exports(str(tmp_path), ["P2"], [], [], [], "req-1")
    with gzip.open(os.path.join(folder, "audience.csv.gz"), "rt", newline="") as fh:
        assert [r["segment"] for r in csv.DictReader(fh)] == ["'=1+1"]


def test_the_member_report_csv_quotes_a_declared_formula(tmp_path):
    report = {
        "month": "2026-11", "as_of": DAY, "active_members": 2, "active_definition": "a member who bought", "registrations": 2,
        "live_registrations": 2, "persons": 2,
        "declared": {"occupation": {"declared": 2, "stale": 0, "values": [('=HYPERLINK("http://x")', 1), ("nurse", 1)]}},
        "inferred": {},
    }
    _, distributions = write_member_report(report, str(tmp_path))
    with open(distributions, newline="", encoding="utf-8") as fh:
        assert [r["value"] for r in csv.DictReader(fh)] == ['\'=HYPERLINK("http://x")', "nurse"]


def test_an_earlier_person_is_the_subject_s_on_the_days_their_account_held_it():
    from crmlake.exports import persons_held

    earlier = [("P1", None, "2026-11-21"), ("P2", "2026-11-10", "2026-11-15")]
    assert persons_held(["Q"], earlier, "2026-11-20", "2026-11-20") == {"Q", "P1"}      # the day before the split
    assert persons_held(["Q"], earlier, "2026-11-21", "2026-11-21") == {"Q"}            # the day it left: scored after
    assert persons_held(["Q"], earlier, "2026-11-10", "2026-11-10") == {"Q", "P1", "P2"}
    assert persons_held(["Q"], earlier, "2026-11-09", "2026-11-09") == {"Q", "P1"}      # before it joined P2
    assert persons_held([], earlier, "2026-12-01", "2026-12-31") == set()              # a month after both
    assert persons_held([], earlier, "2026-11-01", "2026-11-30") == {"P1", "P2"}
