"""A household's computer one member logged into without tracking consent: it is shared, for
subject access and erasure alike, though the identity links and map never saw that login.

Rows written by hand as organize leaves them: Ann (A1, person P1) logs in with consent on the
household's computer ``home`` and browses there logged out; Bo (A2, P2) logs in on ``home``
only with tracking refused (his clicks carry his account, his visits none: a refused visit is
credited to no account). The identity links hold Ann's consented logins alone, so the map
attaches ``home`` to Ann's person, as it does ``laptop``, a computer only Ann ever used.
"""

import datetime as dt

from crmlake.privacy import apply_erasures, request_erasure
from crmlake.subjects import linked_cookies, subject_access, subject_of
from hand_landing import access_rows, write

T0 = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)
CLICKS = "event_id string, anonymous_id string, account_id string, tracking_consent boolean"
SESSIONS = "session_id string, anonymous_id string, account_id string, tracking_consent boolean"
ANN_CLICKS = [("e1", "home", "A1", True), ("e2", "home", None, True), ("e5", "laptop", "A1", True), ("e6", "laptop", None, True)]
BO_CLICKS = [("e3", "home", "A2", False), ("e4", "home", None, False)]   # his login, and a click before it, tracking refused
ANN_SESSIONS = [("s1", "home", "A1", True), ("s2", "home", None, True), ("s4", "laptop", "A1", True), ("s5", "laptop", None, True)]
BO_SESSIONS = [("s3", "home", None, False)]   # his refused visit: no account, as organize writes it


def household(lake):
    write(lake, "bronze.customers", [("A1", "upsert", "ann@example.com"), ("A2", "upsert", "bo@example.com")], "account_id string, op string, email string")
    write(lake, "silver.customers", [("A1", False, "ann@example.com"), ("A2", False, "bo@example.com")], "account_id string, erased boolean, email string")
    write(lake, "bronze.clickstream", ANN_CLICKS + BO_CLICKS, CLICKS)
    write(lake, "silver.sessions", ANN_SESSIONS + BO_SESSIONS, SESSIONS)
    write(lake, "silver.identity_links", [("home", "A1"), ("laptop", "A1")], "anonymous_id string, account_id string")   # consented logins only
    write(lake, "silver.identity_map", [("account_id", "A1", "P1"), ("account_id", "A2", "P2"), ("anonymous_id", "home", "P1"), ("anonymous_id", "laptop", "P1")],
          "identifier_type string, identifier string, person_id string")


def test_a_computer_another_person_logged_into_without_consent_is_shared_though_the_map_attaches_it(lake):
    household(lake)

    assert linked_cookies(lake, "A1", ("P1",)) == (("laptop",), ("home",))
    subject = subject_of(lake, "A1", "TW")
    assert (subject.cookies, subject.shared_cookies) == (("laptop",), ("home",))


def test_subject_access_returns_none_of_the_other_member_s_unconsented_rows_of_the_shared_computer(lake, tmp_path):
    household(lake)

    subject_access(lake, str(tmp_path), account="A1")

    # Ann's logged-in rows on the shared computer (its cookie blanked), all of her own laptop's;
    # none of Bo's, and not the logged-out ones on the shared computer (no one can tell whose).
    assert sorted((r["event_id"], r["anonymous_id"], r["account_id"]) for r in access_rows(tmp_path, "bronze.clickstream")) == [
        ("e1", None, "A1"), ("e5", "laptop", "A1"), ("e6", "laptop", None)]
    assert sorted((r["session_id"], r["anonymous_id"], r["account_id"]) for r in access_rows(tmp_path, "silver.sessions")) == [
        ("s1", None, "A1"), ("s4", "laptop", "A1"), ("s5", "laptop", None)]
    assert [(r["identifier_type"], r["identifier"]) for r in access_rows(tmp_path, "silver.identity_map") if r["identifier_type"] == "anonymous_id"] == [
        ("anonymous_id", "laptop")]


def test_erasing_the_consenting_member_keeps_the_other_s_unconsented_rows_of_the_shared_computer(lake, conf):
    household(lake)

    request_erasure(lake, ["A1"], T0)
    assert apply_erasures(lake, conf)["erased_accounts"] == 1

    # Bo's login, his click before it and his visit stay; so do Ann's logged-out ones there (not
    # hers alone to take); her laptop goes whole.
    assert sorted(r["event_id"] for r in lake.read("bronze.clickstream").collect()) == ["e2", "e3", "e4"]
    assert sorted(r["session_id"] for r in lake.read("silver.sessions").collect()) == ["s2", "s3"]


def test_erasing_the_consenting_member_records_the_computer_shared_with_the_unconsented_one(lake, conf):
    household(lake)

    request_erasure(lake, ["A1"], T0)
    apply_erasures(lake, conf)

    # So that no later consented login of Bo's gets the computer, and Ann's logged-out visits, attached to him.
    assert [tuple(r) for r in lake.read_or_empty("silver.shared_identifiers").collect()] == [("anonymous_id", "home")]


def test_a_computer_the_member_logged_into_only_without_consent_is_theirs_once_the_other_is_erased(lake):
    household(lake)
    subject = subject_of(lake, "A2", "TW")
    assert (subject.cookies, subject.shared_cookies) == ((), ("home",))   # Ann, live, logged in there

    write(lake, "bronze.customers", [("A1", "upsert", "ann@example.com"), ("A1", "erase", None), ("A2", "upsert", "bo@example.com")],
          "account_id string, op string, email string")
    subject = subject_of(lake, "A2", "TW")
    assert (subject.cookies, subject.shared_cookies) == (("home",), ())   # its last live holder: his to take
