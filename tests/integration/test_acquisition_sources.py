"""New customers by first-touch source and their early value, and referrals, against an independent
pandas computation over the generated pipeline's landing files; and the generator's planted
acquisition sources recovered (the best source brings the highest 90-day value).

The pandas side reads the landing files and, for who is whom, silver.identity_map: the
contract's rules and the acquisition definitions, applied by hand (visits are sessionized here
too). The pipeline fixture (tests/conftest.py) already runs analyze on its lake, so these tests
add no stage run.
"""

import datetime as dt
import hashlib
import re
from decimal import Decimal
from urllib.parse import urlsplit

import pandas as pd
import pytest
from pyspark.sql import functions as F

from conftest import END
from crmlake.analyze.acquisition import NO_VISIT, acquisition_sources, acquisitions, new_customers, with_early_value, with_first_touch
from crmlake.business_days import business_date
from crmlake.config import load_conf
from crmlake.generate import behaviour, members, world
from crmlake.orders import latest_order_lines
from crmlake.organize.transforms import sessionize
from landing_frames import OFFSET, TIMEZONE, erased_accounts, identity_lookup, instants, landing_json, landing_of, landing_order_lines, local_dates

VALUE_DAYS = 90
DEVICES = {"desktop", "mobile", "tablet", "app"}


def host(url) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        name = urlsplit(url).hostname
    except ValueError:
        return None
    return re.sub(r"^www\.", "", name) if name else None


def landing_profiles(root) -> tuple[pd.DataFrame, set]:
    """The latest valid upsert of every account not erased, and the erased accounts."""
    records = landing_json(landing_of(root), "customers")
    erased = erased_accounts(root)
    upserts = pd.DataFrame([r for r in records if r.get("op") == "upsert" and isinstance(r.get("marketing_consent"), bool) and r["account_id"] not in erased])
    upserts = upserts.assign(updated_time=instants(upserts["updated_time"]), signup_time=instants(upserts["signup_time"]))
    return upserts.sort_values("updated_time").groupby("account_id").tail(1), erased


def landing_sessions(root, erased: set, person: dict) -> pd.DataFrame:
    """The clicks sessionized by hand (a cookie's consented and refused events apart, a new visit
    after more than 30 minutes), with each visit's start, source and person."""
    wanted = ("event_id", "event_time", "anonymous_id", "device")
    records = [r for r in landing_json(landing_of(root), "clickstream")
               if all(r.get(k) is not None for k in wanted) and OFFSET.search(r["event_time"]) and r["device"] in DEVICES]
    optional = ["account_id", "tracking_consent", "utm_source", "referrer_url"]   # a field no record carries is absent
    clicks = pd.DataFrame(records).reindex(columns=[*wanted, *optional]).drop_duplicates(subset=["event_id"])
    clicks = clicks[~clicks["account_id"].isin(erased)].copy()
    clicks["event_time"] = instants(clicks["event_time"])
    clicks["consent"] = clicks["tracking_consent"].fillna(False).astype(bool)
    clicks = clicks.sort_values(["anonymous_id", "consent", "event_time", "event_id"])
    seconds = clicks["event_time"].astype("int64") // 10**9
    visitor = ["anonymous_id", "consent"]
    gap = seconds - seconds.groupby([clicks[c] for c in visitor]).shift()
    clicks["visit"] = (gap.isna() | (gap > 30 * 60)).astype(int).groupby([clicks[c] for c in visitor]).cumsum()
    grouped = clicks.groupby([*visitor, "visit"])
    # The entry event (the visit's first row) gives the source: its utm_source, else its referrer's host.
    visits = grouped.head(1).rename(columns={"event_time": "session_start"})[[*visitor, "visit", "session_start", "utm_source", "referrer_url"]]
    visits = visits.join(grouped.agg(first_event=("event_id", "min"), account=("account_id", lambda a: a.dropna().max())), on=[*visitor, "visit"])
    utm = visits["utm_source"].str.strip().str.lower().replace("", None)
    visits["source"] = utm.fillna(visits["referrer_url"].map(host)).fillna("direct")
    visits["session_id"] = [hashlib.sha256(f"{c}:{e}".encode()).hexdigest()[:32] for c, e in zip(visits["anonymous_id"], visits["first_event"])]
    by_account = visits["account"].where(visits["consent"]).map(person["account_id"])
    visits["person_id"] = by_account.fillna(visits["anonymous_id"].where(visits["consent"]).map(person["anonymous_id"]))
    return visits


def expected_tables(pipeline) -> tuple[dict, dict]:
    """gold.acquisition_sources and gold.referrals by pandas: {(month, source): figures}, {month: figures}."""
    root, lake = pipeline["root"], pipeline["lake"]
    person = identity_lookup(lake)
    profiles, erased = landing_profiles(root)
    profiles["person_id"] = profiles["account_id"].map(person["account_id"])
    lines, visits = landing_order_lines(root, person), landing_sessions(root, erased, person)
    since = min(local_dates(visits["session_start"]).min(), lines["order_date"].min())
    completed = lines[(lines["status"] == "completed") & lines["person_id"].notna()]
    people = profiles.dropna(subset=["person_id"]).groupby("person_id")["signup_time"].min().to_frame()
    people["first_order"] = completed.groupby("person_id")["order_time"].min()
    people["acquired_at"] = people[["signup_time", "first_order"]].min(axis=1)
    people["acquisition_date"] = local_dates(people["acquired_at"])
    people = people[(people["acquisition_date"] >= since) & (people["acquisition_date"] <= END)]
    seen = visits.dropna(subset=["person_id"]).join(people["acquired_at"], on="person_id", how="inner")
    first = seen[seen["session_start"] <= seen["acquired_at"]].sort_values(["session_start", "session_id"]).groupby("person_id").head(1)
    people["source"] = first.set_index("person_id")["source"].reindex(people.index).fillna(NO_VISIT)
    people["month"] = [d.replace(day=1) for d in people["acquisition_date"]]
    days_seen = [min(VALUE_DAYS, (END - d).days + 1) for d in people["acquisition_date"]]
    windows = completed.join(people["acquisition_date"], on="person_id", how="inner")
    in_window = windows[(windows["order_date"] >= windows["acquisition_date"])
                        & (windows["order_date"] <= [min(d + dt.timedelta(days=VALUE_DAYS - 1), END) for d in windows["acquisition_date"]])]
    people["value"] = in_window.groupby("person_id")["line_amount"].sum().reindex(people.index).fillna(Decimal("0"))
    people["bought"] = people.index.isin(in_window["person_id"])
    people["days_seen"] = days_seen
    sources = {}
    for (month, source), group in people.groupby(["month", "source"]):
        value = sum(group["value"], Decimal("0"))
        sources[(month, source)] = {"new_customers": len(group), "buyers_in_window": int(group["bought"].sum()), "value": value,
                                    "value_per_customer": float(value / len(group)), "min_days_observed": min(group["days_seen"]),
                                    "window_complete": min(group["days_seen"]) == VALUE_DAYS}
    referrer_of = profiles.dropna(subset=["referred_by"]).assign(referrer=lambda p: p["referred_by"].map(profiles.set_index("account_id")["person_id"]))
    pairs = referrer_of.dropna(subset=["referrer", "person_id"])
    pairs = pairs[pairs["referrer"] != pairs["person_id"]][["referrer", "person_id"]].drop_duplicates().join(people["month"], on="person_id", how="inner")
    buyers = set(completed["person_id"])
    referrals = {month: {"referrers": group["referrer"].nunique(), "members_referred": group["person_id"].nunique(),
                         "referred_buyers": group.loc[group["person_id"].isin(buyers), "person_id"].nunique()}
                 for month, group in pairs.groupby("month")}
    return sources, referrals


@pytest.fixture(scope="module")
def expected(pipeline):
    return expected_tables(pipeline)


def test_acquisition_sources_equal_a_pandas_computation_over_the_landing_files(pipeline, expected):
    sources, _ = expected
    actual = {(r["acquisition_month"], r["source"]): r.asDict() for r in pipeline["lake"].read("gold.acquisition_sources").collect()}
    assert len(sources) > 2 and sorted(actual) == sorted(sources)
    for key, want in sources.items():
        got = actual[key]
        assert got["value_days"] == VALUE_DAYS
        for column, value in want.items():
            assert got[column] == (pytest.approx(value, abs=0.01) if column == "value_per_customer" else value), (key, column)
    # The pipeline's visits carry the planted sources (generate.members.ACQUISITION_SOURCES).
    assert {source for _, source in sources} >= set(members.ACQUISITION_SOURCES)


def test_referrals_equal_a_pandas_computation_over_the_landing_files(pipeline, expected):
    _, referrals = expected
    actual = {r["acquisition_month"]: {k: v for k, v in r.asDict().items() if k != "acquisition_month"} for r in pipeline["lake"].read("gold.referrals").collect()}
    assert referrals and actual == referrals


PLANTED = world.Plan(customers=3000, days=63, end=END, seed=11, timezone=TIMEZONE)


def test_the_best_planted_source_brings_the_highest_90_day_value(spark):
    """A plan ten times the pipeline's, as frames (no files, no stage): visits reach a person
    through a consented login or the cookie the generator names after their first account."""
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", TIMEZONE)   # as write_landing builds its frames
    try:
        people = members.persons(spark, PLANTED)
        visits = behaviour.sessions(spark, people, PLANTED).localCheckpoint()

        def person_of(account):
            return F.format_string("P%07d", world.person_no_of_account(account))

        versions = behaviour.order_lines(visits, PLANTED).withColumn("order_date", business_date("order_time", TIMEZONE)).withColumn("ingested_at", F.current_timestamp())
        lines = latest_order_lines(versions, load_conf(environ={}).business).withColumn("person_id", F.when(F.col("account_id").isNotNull(), person_of(F.col("account_id"))))
        signups = members.accounts(people, PLANTED).groupBy(F.col("person").alias("person_id")).agg(F.min("signup_time").alias("signup_time"))
        own_cookie = F.regexp_extract("anonymous_id", r"^ck-A(\d+)-0$", 1)
        visitor = F.when(F.col("account_id").isNotNull(), person_of(F.col("account_id"))).when(own_cookie != "", person_of(F.concat(F.lit("A"), own_cookie)))
        sessions = sessionize(behaviour.clicks(visits, PLANTED)).withColumn("person_id", F.when(F.col("tracking_consent"), visitor))
        customers = with_first_touch(new_customers(acquisitions(signups, lines, TIMEZONE), PLANTED.start, END), sessions)
        table = acquisition_sources(with_early_value(customers, lines, END, VALUE_DAYS), VALUE_DAYS)
        per_source = {r["source"]: float(r["value"]) / r["new_customers"] for r in table.groupBy("source").agg(F.sum("value").alias("value"), F.sum("new_customers").alias("new_customers")).collect()}
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    best = max(members.ACQUISITION_SOURCES, key=lambda source: members.ACQUISITION_SOURCES[source].purchase_lift)
    assert set(per_source) >= set(members.ACQUISITION_SOURCES)
    assert max(per_source, key=per_source.get) == best, per_source
