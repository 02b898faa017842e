"""Erasure and subject access on hand-built rows: which requests are due, finality, exports
amended, and the catalog deciding which tables both cover."""

import datetime as dt
import gzip
import hashlib
import json
import os

import pyarrow.parquet as pq

from crmlake.exports import amend_exports, publish_audience
from crmlake.files import file_sha256
from crmlake.lake import Lake, load_catalog
from crmlake.privacy import ErasurePlan, apply_erasures, erase_subject, erasures_due, request_erasure
from crmlake.subjects import subject_access, subject_of
from hand_landing import access_rows, write

T0 = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)
CHANGES = "account_id string, op string, updated_time timestamp, ingested_at timestamp"


def at(days):
    return T0 + dt.timedelta(days=days)


def receipt_id(account_id: str) -> str:
    """The request id of ``account_id``'s erase at T0, worked out by hand (time in UTC, microseconds)."""
    return hashlib.sha256(f"{account_id}|2026-11-21T09:00:00.000000Z".encode()).hexdigest()[:32]


def test_an_erase_is_due_until_receipted_and_again_when_a_stale_upsert_arrives(spark):
    changes = spark.createDataFrame(
        [
            ("A1", "upsert", at(-9), at(-9)), ("A1", "erase", T0, at(0)),     # new request: due, nothing refused
            ("A2", "upsert", at(-9), at(-9)), ("A2", "erase", T0, at(0)),     # receipted, yet its upsert is still there
            ("A3", "erase", T0, at(0)),                                        # receipted, nothing left: not due
            ("A4", "erase", T0, at(0)), ("A4", "upsert", at(-20), at(2)),     # receipted; a stale re-send arrived later
            ("A5", "upsert", at(-9), at(-9)),                                  # never asked
        ],
        CHANGES,
    )
    receipts = spark.createDataFrame([(receipt_id(a),) for a in ("A2", "A3", "A4")], "request_id string")
    due = {r["account_id"]: (r["upserts"], r["refused_upserts"], r["request_id"]) for r in erasures_due(changes, receipts).collect()}
    assert due == {"A1": (1, 0, receipt_id("A1")), "A2": (1, 0, receipt_id("A2")), "A4": (1, 1, receipt_id("A4"))}


def test_amended_export_drops_the_person_and_records_the_amendment(spark, tmp_path):
    rows = spark.createDataFrame(
        [("P1", "e1", "p1", 0.9, 10, "s", "r"), ("P2", "e2", None, 0.8, 9, "s", "r"), ("P3", "e3", "p3", 0.7, 8, "s", "r")],
        "person_id string, email_sha256 string, phone_sha256 string, score double, decile int, segment string, reason_codes string",
    )
    folder = publish_audience(rows, str(tmp_path), "likely_buyers", dt.date(2026, 11, 20), {"definition": "test"})
    # P2 by person id, P3 by phone hash; P1 stays.
    amended = amend_exports(str(tmp_path), ["P2"], ["no-such-hash"], ["p3"], [], "req-1")
    assert amended == [os.path.join("likely_buyers", "2026-11-20")]
    assert pq.read_table(os.path.join(folder, "audience.parquet")).column("person_id").to_pylist() == ["P1"]
    csv_text = gzip.open(os.path.join(folder, "audience.csv.gz"), "rt").read()
    assert "P1" in csv_text and "P2" not in csv_text and "p3" not in csv_text
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["row_count"] == 1 and manifest["definition"] == "test"
    (amendment,) = manifest["amendments"]
    assert (amendment["reason"], amendment["request_id"], amendment["rows_removed"]) == ("erasure", "req-1", 2)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(os.path.join(folder, name))
    assert amend_exports(str(tmp_path), ["P2"], [], [], [], "req-2") == []   # nothing left to remove: untouched


def test_an_amended_platform_upload_file_drops_the_person_by_the_platforms_hash(spark, tmp_path):
    from crmlake.exports import platform_rows

    people = spark.createDataFrame([("P1", "Ann.Lee@Gmail.com", "0912 345 678"), ("P2", "bob@example.com", None)],
                                   "person_id string, email string, phone string")
    neutral = spark.createDataFrame([("P1", "x1", "y1", 0.9, 10, "s", "r"), ("P2", "x2", None, 0.8, 9, "s", "r")],
                                    "person_id string, email_sha256 string, phone_sha256 string, score double, decile int, segment string, reason_codes string")
    upload = platform_rows(people, "TW", "google_customer_match")
    folder = publish_audience(neutral, str(tmp_path), "win_back", dt.date(2026, 11, 20), {}, ("google_customer_match", upload))
    # Google's hash of P1's address: lower case, and the dots of a gmail local part removed (worked out by hand).
    google_hash = hashlib.sha256(b"annlee@gmail.com").hexdigest()
    assert google_hash in open(os.path.join(folder, "google_customer_match.csv")).read()
    amended = amend_exports(str(tmp_path), ["P1"], [], [], [google_hash], "req-3")
    assert amended == [os.path.join("win_back", "2026-11-20")]
    upload_text = open(os.path.join(folder, "google_customer_match.csv")).read()
    assert google_hash not in upload_text and hashlib.sha256(b"bob@example.com").hexdigest() in upload_text
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["amendments"][0]["rows_removed"] == 2   # one neutral row, one upload row
    assert manifest["files"]["google_customer_match.csv"]["sha256"] == file_sha256(os.path.join(folder, "google_customer_match.csv"))


def test_the_subject_of_an_account_holds_every_version_of_its_contacts_hashed_as_each_upload_has_them(spark, lake):
    from crmlake.exports import PLATFORM_FORMATS, platform_rows

    def table(name, rows, ddl):
        declared = spark.createDataFrame([], lake.catalog.spec(name).ddl)
        lake.overwrite(name, declared.unionByName(spark.createDataFrame(rows, ddl), allowMissingColumns=True))

    versions = [("A1", "upsert", " Old.Name@Gmail.com ", "0912345678"), ("A1", "upsert", "new@example.com", None)]
    table("bronze.customers", [*versions, ("A1", "erase", None, None), ("A2", "upsert", "other@example.com", "0987654321")],
          "account_id string, op string, email string, phone string")
    table("silver.identity_links", [("c1", "A1"), ("c2", "A2")], "anonymous_id string, account_id string")
    table("silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P2"), ("anonymous_id", "c1", "P1")],
          "identifier_type string, identifier string, person_id string")

    subject = subject_of(lake, "A1", "TW")

    def sha(text):
        return hashlib.sha256(text.encode()).hexdigest()

    assert subject.account_ids == ("A1",) and subject.cookies == ("c1",) and subject.person_ids == ("P1",)
    assert subject.emails == ("new@example.com", "old.name@gmail.com")
    assert subject.email_hashes == tuple(sorted(map(sha, subject.emails))) and subject.phone_hashes == (sha("+886912345678"),)
    # What the platform upload files of both versions hold, as decide writes them (gmail's dots dropped for Google).
    own = spark.createDataFrame([v[2:] for v in versions], "email string, phone string")
    uploaded = {value for f in PLATFORM_FORMATS for row in platform_rows(own, "TW", f).collect() for value in row if value}
    assert set(subject.platform_hashes) == uploaded and sha("oldname@gmail.com") in uploaded and sha("886912345678") in uploaded


def test_a_raw_line_is_the_subject_s_when_it_holds_their_account_or_own_cookie_in_json_or_csv_or_their_whole_email_in_any_case(spark):
    from crmlake.lake import load_catalog
    from crmlake.subjects import Subject, subject_condition

    hostile = 'o\'b"r\\n台 %_'   # a quote, a double quote, a backslash, non-ASCII, SQL wildcards
    subject = Subject((hostile,), ("ann@example.com", "o'b+r%_@[x].com"), (), (), ("c-ann", "c/ann", "c<ann>&1", "c<ann>&1台"), (), (), shared_cookies=("home",))
    go_escaped = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}   # Go's encoding/json writes these so
    csv_field = '"' + hostile.replace('"', '""') + '"'
    lines = {
        json.dumps({"account_id": hostile, "op": "upsert"}): True,                     # JSON, escaped as json.dumps writes it
        json.dumps({"account_id": hostile}, ensure_ascii=False): True,                 # JSON, non-ASCII as it is
        json.dumps({"account_id": hostile}).replace("\\u53f0", "\\u53F0"): True,      # JSON, escaped in upper-case hex
        json.dumps({"account_id": hostile.upper()}, ensure_ascii=False): False,        # another account, its id differing in case alone
        '{"anonymous_id": "C-ANN", "event_time": "yesterday"}': False,                 # another person's cookie, differing in case alone
        f"O1,1,2026-11-21T10:00:00Z,{csv_field},,web": True,                           # a CSV field, quoted as RFC 4180 says
        '{"email": " ANN@Example.com ", "op": "upsert"}': True,                        # the email, any case
        "write to ann@example.com.": True,                                             # a sentence's full stop after it
        '{"email": "joann@example.com"}': False,                                       # another mailbox ending like hers
        '{"email": "ann@example.com.tw"}': False,                                      # another domain beginning like hers
        f"O2,1,2026-11-21T10:00:00Z,{hostile[:3]}x,,web": False,                       # another account sharing a prefix
        json.dumps({"account_id": "o'b"}): False,
        json.dumps({"account_id": hostile}, ensure_ascii=False).replace("'", "\\u0027"): True,   # Gson's default: the apostrophe escaped
        json.dumps({"account_id": "o'b"}).replace("'", "\\u0027"): False,
        json.dumps({"anonymous_id": "c<ann>&1"}).translate(str.maketrans(go_escaped)): True,     # a cookie as Go writes it
        json.dumps({"anonymous_id": "c<ann>&12"}).translate(str.maketrans(go_escaped)): False,
        '{"anonymous_id": "c-ann", "event_time": "yesterday"}': True,                  # a logged-out click of her own cookie alone
        '{"anonymous_id": "home", "event_time": "yesterday"}': False,                  # a computer another live person uses too
        '{"anonymous_id": "c-ann2"}': False,
        '{"anonymous_id": "c\\/ann"}': True,                                           # a slash escaped, as PHP writes it
        # PHP with JSON_HEX_TAG: the tags in upper-case hex beside its non-ASCII in lower case
        json.dumps({"account_id": hostile + "<b>"}).replace("<", "\\u003C").replace(">", "\\u003E"): False,   # another account, longer
        json.dumps({"anonymous_id": "c<ann>&1台"}).replace("<", "\\u003C").replace(">", "\\u003E"): True,
        json.dumps({"anonymous_id": "c<ann>&1台"}).replace("&", "\\u0026"): True,          # PHP with JSON_HEX_AMP alone
        '{"anonymous_id": "\\u0063-\\u0061nn"}': True,                                     # plain letters escaped: valid JSON for "c-ann"
        '{"anonymous_id": "\\u0043-ann"}': False,                                          # "C-ann": another visitor's
        '{"anonymous_id": "c-ann\\"}': False,                                              # a quote escaped after it: a longer string
        '{"email": "O\'B+R%_@[X].COM"}': True,                                         # an address of signs regular expressions use
        '{"email": "o\'bbr%_@[x].com"}': False,
    }
    quarantine = spark.createDataFrame([(line,) for line in lines], "raw_text string")
    found = quarantine.crossJoin(subject.frame(spark)).where(subject_condition(load_catalog().spec("bronze.quarantine"))).select("raw_text")
    assert sorted(r["raw_text"] for r in found.collect()) == sorted(line for line, held in lines.items() if held)


def two_members(lake):
    """Ann (account A1, person P1, her own cookie c1) and Bo (A2, P2), known to the lake."""
    write(lake, "bronze.customers", [("A1", "upsert", "ann@example.com"), ("A2", "upsert", "bo@example.com")], "account_id string, op string, email string")
    write(lake, "silver.customers", [("A1", False, "ann@example.com"), ("A2", False, "bo@example.com")], "account_id string, erased boolean, email string")
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P2"), ("anonymous_id", "c1", "P1")],
          "identifier_type string, identifier string, person_id string")


def test_a_table_added_to_the_catalog_is_covered_by_subject_access_and_erasure(spark, conf, tmp_path):
    signups = {
        "description": "Newsletter sign-ups: a table no code of erasure or subject access names.",
        "personal": ["email"],
        "subject": {"match": {"account_id": "account"}, "erase": "delete"},
        "columns": {"account_id": "string", "email": "string", "signed_up_on": "date"},
    }
    lake = Lake(spark, conf, load_catalog().with_tables({"silver.newsletter_signups": signups}))
    two_members(lake)
    write(lake, "silver.newsletter_signups", [("A1", "ann@example.com", dt.date(2026, 11, 1)), ("A2", "bo@example.com", dt.date(2026, 11, 2))],
          "account_id string, email string, signed_up_on date")

    assert subject_access(lake, str(tmp_path / "access"), account="A1")["silver.newsletter_signups"] == 1
    assert access_rows(tmp_path / "access", "silver.newsletter_signups") == [{"account_id": "A1", "email": "ann@example.com", "signed_up_on": "2026-11-01"}]

    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    assert [r["account_id"] for r in lake.read("silver.newsletter_signups").collect()] == ["A2"]
    (receipt,) = lake.read("gold.erasure_log").collect()
    assert "silver.newsletter_signups" in receipt["tables"] and receipt["rows_removed"]["silver.newsletter_signups"] == 1


def test_subject_access_returns_the_subject_s_next_best_categories_and_campaign_events(lake, tmp_path):
    two_members(lake)
    write(lake, "gold.next_best_category", [("P1", "books", 1), ("P2", "toys", 1)], "person_id string, category string, rank int")
    write(lake, "bronze.campaign_events", [("c-20261120", "A1", "opened"), ("c-20261120", "A2", "clicked")], "campaign_id string, account_id string, event string")

    rows = subject_access(lake, str(tmp_path), account="A1")

    assert rows["gold.next_best_category"] == 1 and access_rows(tmp_path, "gold.next_best_category")[0]["category"] == "books"
    assert [(r["account_id"], r["event"]) for r in access_rows(tmp_path, "bronze.campaign_events")] == [("A1", "opened")]
    assert json.load(open(tmp_path / "index.json"))["tables_holding_no_one"]["silver.funnel"]


def test_subject_access_blanks_another_person_s_identifiers_and_leaves_their_logged_in_rows_out(lake, tmp_path):
    two_members(lake)
    # Ann and Bo compared as a candidate pair; Bo logged in once on Ann's computer; Ann browsed there logged out.
    write(lake, "silver.identity_pairs", [("A1", "A2", "no_link")], "account_a string, account_b string, decision string")
    write(lake, "silver.sessions", [("s1", "c1", None), ("s2", "c1", "A2"), ("s3", "c9", "A1")], "session_id string, anonymous_id string, account_id string")

    subject_access(lake, str(tmp_path), account="A1")

    assert [(r["account_a"], r["account_b"]) for r in access_rows(tmp_path, "silver.identity_pairs")] == [("A1", None)]
    # s1: logged out on her own cookie; s3: logged in as her on a computer not hers alone (its cookie blanked).
    assert sorted((r["session_id"], r["anonymous_id"], r["account_id"]) for r in access_rows(tmp_path, "silver.sessions")) == [("s1", "c1", None), ("s3", None, "A1")]


def test_an_erasure_keeps_a_computer_another_live_person_logs_in_on_and_takes_one_only_erased_accounts_shared(lake):
    # Ann (A1) logs in on her own cookie c1, on the household's computer "home" beside Bo (A2),
    # and on "old" beside Cy (A3), whose erasure is requested; the map attaches c1 to her alone.
    write(lake, "bronze.customers", [("A1", "upsert"), ("A2", "upsert"), ("A3", "upsert"), ("A3", "erase")], "account_id string, op string")
    write(lake, "silver.identity_links", [("c1", "A1"), ("home", "A1"), ("home", "A2"), ("old", "A1"), ("old", "A3")], "anonymous_id string, account_id string")
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P2"), ("account_id", "A3", "P3"), ("anonymous_id", "c1", "P1")],
          "identifier_type string, identifier string, person_id string")

    subject = subject_of(lake, "A1", "TW")

    assert (subject.cookies, subject.shared_cookies) == (("c1", "old"), ("home",))


def test_erasing_one_member_records_the_shared_computer_without_who_held_it_and_erasing_the_other_removes_it(lake, conf):
    write(lake, "bronze.customers", [("A1", "upsert"), ("A2", "upsert")], "account_id string, op string")
    write(lake, "silver.customers", [("A1", False), ("A2", False)], "account_id string, erased boolean")
    write(lake, "silver.identity_links", [("home", "A1"), ("home", "A2")], "anonymous_id string, account_id string")
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P2")], "identifier_type string, identifier string, person_id string")
    # A visit logged in by each, and one logged out on the computer: no one's.
    write(lake, "silver.sessions", [("s1", "home", "A1"), ("s2", "home", "A2"), ("s3", "home", None)], "session_id string, anonymous_id string, account_id string")

    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    assert [tuple(r) for r in lake.read("silver.shared_identifiers").collect()] == [("anonymous_id", "home")]
    assert [tuple(r) for r in lake.read("silver.identity_links").select("anonymous_id", "account_id").collect()] == [("home", "A2")]
    assert sorted(r["session_id"] for r in lake.read("silver.sessions").collect()) == ["s2", "s3"]

    request_erasure(lake, ["A2"], at(1))   # Bo, its last live holder: the computer is his now, and goes
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    assert [lake.read(t).count() for t in ("silver.shared_identifiers", "silver.identity_links", "silver.sessions")] == [0, 0, 0]


def split_off(lake):
    """Ann (A1) and her second account A2 were one person P1 from Nov 5 (A2 joined it) to Nov 15,
    when new evidence split A2 off into Q2; scores of P1 and Q2 on either side of those days."""
    two_members(lake)
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "Q2")], "identifier_type string, identifier string, person_id string")
    write(lake, "silver.account_persons", [("A2", "P1", dt.date(2026, 11, 5), dt.date(2026, 11, 15)), ("A2", "P0", None, dt.date(2026, 11, 5))],
          "account_id string, person_id string, from_date date, to_date date")
    scored = [("P1", dt.date(2026, 11, 1)), ("P1", dt.date(2026, 11, 5)), ("P1", dt.date(2026, 11, 14)), ("P1", dt.date(2026, 11, 15)),
              ("Q2", dt.date(2026, 11, 15)), ("P0", dt.date(2026, 11, 4)), ("P0", dt.date(2026, 11, 5))]
    for table in ("gold.customer_scores", "gold.audience_uplift"):
        write(lake, table, scored, "person_id string, score_date date")
    write(lake, "silver.customer_360", [("P1", ["A1"]), ("Q2", ["A2"])], "person_id string, account_ids array<string>")


def scores(lake, table="gold.customer_scores"):
    return sorted((r["person_id"], r["score_date"].isoformat()) for r in lake.read(table).collect())


def test_erasing_an_account_split_off_takes_the_rows_scored_for_the_persons_it_left_while_it_held_them(lake, conf):
    split_off(lake)
    request_erasure(lake, ["A2"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    # P1 from Nov 5 to Nov 14 and P0 before Nov 5 held A2's data; P1 before it joined and after it left is Ann's alone.
    kept = [("P1", "2026-11-01"), ("P1", "2026-11-15"), ("P0", "2026-11-05")]
    for table in ("gold.customer_scores", "gold.audience_uplift"):
        assert scores(lake, table) == sorted(kept), table
    assert [r["person_id"] for r in lake.read("silver.customer_360").collect()] == ["P1"]   # the current map's: Ann's row stays
    assert lake.read("silver.account_persons").count() == 0


def test_subject_access_of_an_account_split_off_returns_the_rows_of_the_persons_it_left_while_it_held_them(lake, tmp_path):
    split_off(lake)
    subject_access(lake, str(tmp_path / "bo"), account="A2")
    assert sorted((r["person_id"], r["score_date"]) for r in access_rows(tmp_path / "bo", "gold.customer_scores")) == [
        ("P0", "2026-11-04"), ("P1", "2026-11-05"), ("P1", "2026-11-14"), ("Q2", "2026-11-15")]
    assert json.load(open(tmp_path / "bo" / "index.json"))["earlier_persons"] == [
        {"person_id": "P0", "from_date": None, "to_date": "2026-11-05"}, {"person_id": "P1", "from_date": "2026-11-05", "to_date": "2026-11-15"}]
    # Ann's own request: her person's rows, none of the person A2 became.
    subject_access(lake, str(tmp_path / "ann"), account="A1")
    assert [r["person_id"] for r in access_rows(tmp_path / "ann", "gold.customer_scores")] == ["P1"] * 4


def test_a_resumed_erasure_s_plan_keeps_the_persons_left_and_their_dates(spark, lake, conf):

    split_off(lake)
    plan = ErasurePlan(conf.lake_root, "req-1")
    plan.subject = subject_of(lake, "A2", "TW")
    plan.save()
    resumed = ErasurePlan.load(conf.lake_root, "req-1").subject
    assert resumed == plan.subject and resumed.earlier_persons == (("P0", None, "2026-11-05"), ("P1", "2026-11-05", "2026-11-15"))
    assert resumed.frame(spark).first()["_subject_earlier"][1]["from_date"] == dt.date(2026, 11, 5)


def test_erasing_one_account_of_a_person_records_their_other_live_accounts_and_erasing_those_removes_them(lake, conf):
    # P1 holds A1 and A2, P2 holds B1. The erasure takes A1's consent and unsubscribes with it: A2
    # is recorded, for decide to keep P1 out of every audience (suppression reason "erased").
    write(lake, "bronze.customers", [("A1", "upsert"), ("A2", "upsert"), ("B1", "upsert")], "account_id string, op string")
    write(lake, "silver.customers", [("A1", False), ("A2", False), ("B1", False)], "account_id string, erased boolean")
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P1"), ("account_id", "B1", "P2")],
          "identifier_type string, identifier string, person_id string")

    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    assert [r["account_id"] for r in lake.read("silver.erased_partners").collect()] == ["A2"]

    request_erasure(lake, ["A2"], at(1))   # the last live account of P1 goes, and its record with it
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    assert lake.read("silver.erased_partners").count() == 0


def test_records_a_stale_system_re_sends_of_an_erased_account_are_erased_again_on_arrival_and_receipted_as_late(lake, conf):
    from crmlake.organize.job import STATE, Changes, erase_due_accounts

    two_members(lake)
    click = "event_id string, anonymous_id string, account_id string, event_date date, ingested_at timestamp"
    order = "order_id string, line_no int, account_id string, guest_email string, status string, ingested_at timestamp"
    event = "campaign_id string, account_id string, event string, event_date date, ingested_at timestamp"
    contact = "interaction_id string, account_id string, ingested_at timestamp"
    day = dt.date(2026, 11, 20)
    write(lake, "bronze.clickstream", [("e1", "c1", "A1", day, at(-1)), ("e2", "c2", "A2", day, at(-1))], click)
    write(lake, "bronze.orders", [("O1", 1, "A1", None, "completed", at(-1)), ("O2", 1, "A2", None, "completed", at(-1))], order)
    write(lake, "bronze.campaign_events", [("c-1", "A1", "opened", day, at(-1)), ("c-1", "A2", "opened", day, at(-1))], event)
    write(lake, "bronze.interactions", [("i1", "A1", at(-1))], contact)
    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    # Organize read everything so far: its state records the versions, as a complete run leaves it.
    lake.overwrite(STATE, Changes(lake, full_refresh=True).state(day))

    def late(table, rows, ddl):
        lake.append(table, lake.catalog.spec(table).padded(lake.spark.createDataFrame(rows, ddl)))

    # A stale system re-sends A1's records a day later: a click on a new computer, an order line
    # holding an email, a campaign event and a service contact; and an erased sale's status change
    # (nothing in it to blank: no late data), beside Bo's new click.
    late("bronze.clickstream", [("e3", "c-late", "A1", day, at(1)), ("e4", "c2", "A2", day, at(1))], click)
    late("bronze.orders", [("O3", 1, "A1", "ann@example.com", "completed", at(1)), ("O1", 1, "A1", None, "returned", at(1))], order)
    late("bronze.campaign_events", [("c-2", "A1", "clicked", day, at(1))], event)
    late("bronze.interactions", [("i2", "A1", at(1))], contact)

    facts = erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))

    clicks = lake.read("bronze.clickstream").collect()
    assert sorted(r["event_id"] for r in clicks) == ["e2", "e4"] and "c-late" not in {r["anonymous_id"] for r in clicks}
    assert [r["account_id"] for r in lake.read("bronze.campaign_events").collect()] == ["A2"]
    assert lake.read("bronze.interactions").count() == 0
    assert (facts["erased_accounts"], facts["late_records"], facts["refused_upserts"], facts["failed"]) == (1, 4, 0, {})
    # The sales stay, with no email left.
    assert sorted((r["order_id"], r["status"], r["guest_email"]) for r in lake.read("bronze.orders").collect()) == [
        ("O1", "completed", None), ("O1", "returned", None), ("O2", "completed", None), ("O3", "completed", None)]
    first, second = sorted(lake.read("gold.erasure_log").collect(), key=lambda r: r["erased_at"])
    assert (first["request_id"], first["reason"]) == (receipt_id("A1"), "request")
    assert (second["request_id"], second["reason"], second["refused_upserts"]) == (receipt_id("A1"), "late_record", 0)
    assert second["rows_removed"] == {"bronze.clickstream": 1, "bronze.orders": 1, "bronze.campaign_events": 1, "bronze.interactions": 1}

    # Idempotent: run again before the state moves on (the rewritten files come back as new) and after.
    assert erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))["erased_accounts"] == 0
    lake.overwrite(STATE, Changes(lake, full_refresh=True).state(day))
    assert erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))["erased_accounts"] == 0
    assert lake.read("gold.erasure_log").count() == 2


def test_an_erased_account_s_records_are_late_only_once_its_erasure_is_receipted(spark):
    changes = spark.createDataFrame([("A1", "erase", T0, at(0)), ("A2", "erase", T0, at(0)), ("A3", "upsert", T0, at(0))], CHANGES)
    receipts = spark.createDataFrame([(receipt_id("A1"),)], "request_id string")
    records = spark.createDataFrame([("A1", "bronze.orders"), ("A1", "bronze.clickstream"), ("A2", "bronze.clickstream"), ("A3", "bronze.clickstream"),
                                     (None, "bronze.clickstream")], "account_id string, table string")
    # A1 erased and re-sent twice: due again; A2's erasure not done yet (takes them anyway, in the
    # tables they are in even if a killed run's plan finished them); A3 was never asked.
    due = {r["account_id"]: (r["upserts"], r["records"], r["late_records"], r["late_tables"]) for r in erasures_due(changes, receipts, records).collect()}
    assert due == {"A1": (0, 2, 2, ["bronze.clickstream", "bronze.orders"]), "A2": (0, 1, 0, ["bronze.clickstream"])}
    assert {r["account_id"] for r in erasures_due(changes, receipts).collect()} == {"A2"}


def test_an_erasure_a_killed_run_left_unreceipted_does_again_the_finished_tables_new_records_arrived_in(lake, conf):
    from crmlake.organize.job import STATE, Changes, erase_due_accounts

    two_members(lake)
    click = "event_id string, anonymous_id string, account_id string, event_date date, ingested_at timestamp"
    day = dt.date(2026, 11, 20)
    write(lake, "bronze.clickstream", [("e1", "c1", "A1", day, at(-1)), ("e2", "c2", "A2", day, at(-1))], click)
    lake.overwrite(STATE, Changes(lake, full_refresh=True).state(day))
    request_erasure(lake, ["A1"], T0)
    # A run killed after erasing every table and before its receipt: its plan holds every table done.
    plan = ErasurePlan.load(conf.lake_root, receipt_id("A1"))
    plan.subject = subject_of(lake, "A1", "TW")
    plan.save()
    erase_subject(lake, plan, conf.exports_root, receipt_id("A1"))
    assert [r["event_id"] for r in lake.read("bronze.clickstream").collect()] == ["e2"]
    # Before the rerun, a stale system re-sends one of A1's clicks into the table the plan had finished.
    lake.append("bronze.clickstream", lake.catalog.spec("bronze.clickstream").padded(
        lake.spark.createDataFrame([("e1", "c1", "A1", day, at(1))], click)))

    facts = erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))

    assert [r["event_id"] for r in lake.read("bronze.clickstream").collect()] == ["e2"]
    assert (facts["erased_accounts"], facts["late_records"], facts["failed"]) == (1, 0, {})
    # One receipt, of the request, counting both passes over the table: nothing arrived after it.
    (receipt,) = lake.read("gold.erasure_log").collect()
    assert (receipt["request_id"], receipt["reason"]) == (receipt_id("A1"), "request")
    assert receipt["rows_removed"]["bronze.clickstream"] == 2 and len([f for f in receipt["files_removed"] if f.startswith("bronze/clickstream/")]) >= 2
    assert not os.path.exists(plan.path)


def test_an_erasure_done_again_that_failed_is_done_by_the_next_run_though_its_records_are_no_longer_new(lake, conf):
    from crmlake.organize.job import STATE, Changes, erase_due_accounts
    from crmlake.privacy import AGAIN_BECAUSE, RECEIPTS_BEFORE

    two_members(lake)
    click = "event_id string, anonymous_id string, account_id string, event_date date, ingested_at timestamp"
    day = dt.date(2026, 11, 20)
    write(lake, "bronze.clickstream", [("e1", "c1", "A1", day, at(-1)), ("e2", "c2", "A2", day, at(-1))], click)
    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    lake.append("bronze.clickstream", lake.catalog.spec("bronze.clickstream").padded(
        lake.spark.createDataFrame([("e3", "c1", "A1", day, at(1))], click)))
    # The run that found the late click planned its erasure again and failed (or was killed) before
    # its receipt; organize went on and recorded its state, so the click is no longer new.
    plan = ErasurePlan.load(conf.lake_root, receipt_id("A1"))
    plan.subject = subject_of(lake, "A1", "TW")
    plan.done.update({RECEIPTS_BEFORE: 1, AGAIN_BECAUSE: "late_record"})
    plan.save()
    lake.overwrite(STATE, Changes(lake, full_refresh=True).state(day))

    facts = erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))

    assert (facts["erased_accounts"], facts["failed"]) == (1, {})
    assert [r["event_id"] for r in lake.read("bronze.clickstream").collect()] == ["e2"]
    receipts = sorted(lake.read("gold.erasure_log").collect(), key=lambda r: r["erased_at"])
    assert [r["reason"] for r in receipts] == ["request", "late_record"] and receipts[1]["rows_removed"] == {"bronze.clickstream": 1}
    assert not os.path.exists(plan.path)
    # Receipted: nothing more is due.
    assert erase_due_accounts(lake, conf, Changes(lake, full_refresh=False))["erased_accounts"] == 0
