"""Platform upload files: the documented headers, and hashes of values normalised by hand."""

import csv
import datetime as dt
import hashlib
import json
import os

import pytest

from crmlake.config import ConfigError
from crmlake.decide.audiences import Audience
from crmlake.decide.export import export_rows, platform_rows, publish_audience

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
    with pytest.raises(ConfigError, match="platform_format 'tiktok'"):
        Audience.from_conf({"name": "a", "rule": "true", "channel": "ads", "platform_format": "tiktok"})
    with pytest.raises(ConfigError, match="ads audience"):
        Audience.from_conf({"name": "a", "rule": "true", "channel": "email", "platform_format": "meta_custom_audience"})


def test_an_empty_audience_is_published_with_headers_only(persons, tmp_path):
    nobody = persons.where("false")
    folder = publish_audience(export_rows(nobody, "TW", False), str(tmp_path), "win_back", DAY, {},
                              ("meta_custom_audience", platform_rows(nobody, "TW", "meta_custom_audience")))
    with open(os.path.join(folder, "meta_custom_audience.csv"), newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == [["EMAIL", "PHONE"]]
    assert json.load(open(os.path.join(folder, "manifest.json")))["row_count"] == 0
