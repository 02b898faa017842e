"""The service desk's figures and the campaigns' engagement, against an independent pandas
computation over the generated pipeline's landing files, and the generator's planted
effects recovered (the slow channel is the slowest, ratings and engagement differ as planted).

The pandas side reads only the landing files (and, for the complainers, who is whom and each
person's value tier from the lake): the contracts' rules, applied by hand. The pipeline fixture
(tests/conftest.py) already runs analyze on its lake, so these tests add no stage run.
"""

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
from pyspark.sql import functions as F

from conftest import END
from landing_frames import END_OF_RUN, TIMEZONE, completed_lines, erased_accounts, identity_lookup, instants, landing_csv, landing_of, local_dates
from crmlake.analyze.engagement import campaign_engagement
from crmlake.analyze.service import contacts_as_of, repeat_complainers, service_kpis
from crmlake.generate import members, touchpoints, world
from crmlake.decide.results import campaign_results
from crmlake.people import ACCOUNT, with_order_person_id, with_person_id

ROUNDED = pytest.approx   # Spark rounds half up, Python half to even: compare the rounded figures within their last digit


def landing_contacts(root) -> pd.DataFrame:
    """The service contacts as they stood at the run date's end: latest version of each, none of the erased accounts'."""
    raw = landing_csv(landing_of(root), "interactions").drop_duplicates()
    raw = raw[~raw["account_id"].isin(erased_accounts(root))]
    raw = raw.assign(opened_time=instants(raw["opened_time"]), closed_time=instants(raw["closed_time"]),
                     satisfaction=pd.to_numeric(raw["satisfaction"].replace("", None)))
    latest = raw.assign(_as_of=raw["closed_time"].fillna(raw["opened_time"])).sort_values("_as_of").groupby("interaction_id").tail(1)
    known = latest[latest["opened_time"] < END_OF_RUN].copy()
    closed = known["closed_time"] < END_OF_RUN
    known.loc[~closed, ["closed_time", "satisfaction"]] = [pd.NaT, None]
    known["opened_date"] = local_dates(known["opened_time"])
    known["closed_date"] = local_dates(known["closed_time"]).where(closed, None)
    known["hours"] = (known["closed_time"] - known["opened_time"]).dt.total_seconds() / 3600
    return known


def expected_service_kpis(contacts: pd.DataFrame, rules) -> dict:
    keys = ["service_date", "channel", "type"]
    opened = contacts.groupby(["opened_date", "channel", "type"]).size().rename("opened")
    opened.index.names = keys
    done = contacts[contacts["closed_date"].notna()].assign(past=lambda d: d["hours"] > d["channel"].map(rules.target_of))
    closed = done.groupby(["closed_date", "channel", "type"]).agg(
        closed=("hours", "size"), median=("hours", lambda h: h.quantile(0.5)), p95=("hours", lambda h: h.quantile(0.95)),
        past=("past", "mean"), satisfaction=("satisfaction", "mean"))
    closed.index.names = keys
    open_days = [(d, c["channel"], c["type"]) for _, c in contacts.iterrows()
                 for d in pd.date_range(c["opened_date"], (c["closed_date"] - dt.timedelta(days=1)) if c["closed_date"] else END).date]
    backlog = pd.DataFrame(open_days, columns=keys).groupby(keys).size().rename("backlog")
    table = pd.concat([opened, closed, backlog], axis=1)
    return {(str(d), ch, ty): r for (d, ch, ty), r in table.iterrows()}


def test_service_kpis_equal_a_pandas_computation_over_the_landing_files(pipeline):
    conf, lake = pipeline["conf"], pipeline["lake"]
    expected = expected_service_kpis(landing_contacts(pipeline["root"]), conf.analyze.service)
    actual = {(str(r["service_date"]), r["channel"], r["type"]): r for r in lake.read("gold.service_kpis").collect()}
    assert expected and sorted(actual) == sorted(expected)
    for key, want in expected.items():
        got = actual[key]
        assert (got["opened"], got["closed"], got["backlog"]) == tuple(int(0 if pd.isna(want[c]) else want[c]) for c in ("opened", "closed", "backlog")), key
        for column, figure, digits in (("median_hours_to_close", "median", 2), ("p95_hours_to_close", "p95", 2), ("past_target_share", "past", 4),
                                       ("mean_satisfaction", "satisfaction", 2)):
            if pd.isna(want[figure]):
                assert got[column] is None, (key, column)
            else:
                assert got[column] == ROUNDED(float(want[figure]), abs=10 ** -digits), (key, column)


def expected_complainers(pipeline, rules) -> dict:
    """person_id -> (value_tier, complaints, open_complaints) by pandas, for ``rules``."""
    lake = pipeline["lake"]
    contacts = landing_contacts(pipeline["root"])
    since = END - dt.timedelta(days=rules.complaint_window_days - 1)
    complaints = contacts[(contacts["type"] == "complaint") & (contacts["opened_date"] >= since)]
    person_of = {r["identifier"]: r["person_id"] for r in lake.read("silver.identity_map").where(F.col("identifier_type") == "account_id").collect()}
    tiers = {r["person_id"]: r["value_tier"] for r in lake.read("gold.customer_scores").where(F.col("score_date") == END).collect()}
    per_person = complaints.assign(person_id=complaints["account_id"].map(person_of)).dropna(subset=["person_id"]).groupby("person_id").agg(
        complaints=("interaction_id", "size"), open_complaints=("closed_time", lambda t: int(t.isna().sum())))
    return {p: (tiers[p], int(r["complaints"]), r["open_complaints"]) for p, r in per_person.iterrows()
            if r["complaints"] >= rules.repeat_complaints and tiers.get(p) in rules.high_value_tiers}


def test_repeat_complainers_equal_a_pandas_computation_over_the_landing_files(pipeline):
    listed = pipeline["lake"].read("gold.repeat_complainers").where(F.col("list_date") == END).collect()
    expected = expected_complainers(pipeline, pipeline["conf"].analyze.service)
    assert {r["person_id"]: (r["value_tier"], r["complaints"], r["open_complaints"]) for r in listed} == expected


def test_repeat_complainers_by_looser_rules_equal_pandas_too(spark, pipeline):
    # The shipped rules list few of the pipeline's 300 persons: one complaint of any tier lists many.
    lake = pipeline["lake"]
    rules = pipeline["conf"].analyze.service.model_copy(update={
        "repeat_complaints": 1, "high_value_tiers": ["most_valuable", "most_growth_potential", "maintain", "not_worth_developing"]})
    contacts = with_person_id(contacts_as_of(lake.read("bronze.interactions"), END, TIMEZONE), lake.read("silver.identity_map"), (ACCOUNT, F.col("account_id")))
    listed = repeat_complainers(contacts, lake.read("gold.customer_scores").where(F.col("score_date") == END), END, rules).collect()
    expected = expected_complainers(pipeline, rules)
    assert expected and {r["person_id"]: (r["value_tier"], r["complaints"], r["open_complaints"]) for r in listed} == expected


def test_campaign_engagement_equals_a_pandas_computation_over_the_landing_files(pipeline):
    lake, root, email_cost = pipeline["lake"], pipeline["root"], pipeline["conf"].campaigns.cost_per_contact.email
    events = landing_csv(landing_of(root), "campaign_events").drop_duplicates()
    events = events[~events["account_id"].isin(erased_accounts(root))]
    events = events.assign(event_time=instants(events["event_time"]))
    events = events[events["event_time"] < END_OF_RUN]
    events["send_date"] = local_dates(events.groupby(["campaign_id", "account_id"])["event_time"].transform("min"))
    expected = {}
    for (campaign, send_date), sends in events.groupby(["campaign_id", "send_date"]):
        n = {e: sends.loc[sends["event"] == e, "account_id"].nunique() for e in ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")}
        converted = sends[sends["event"] == "converted"]
        revenue, cost = sum((Decimal(v) for v in converted["revenue"]), Decimal("0.00")), n["sent"] * Decimal(str(email_cost))
        expected[(campaign, str(send_date))] = {**n, "conversions": len(converted), "revenue": revenue, "cost": cost,
                                                "open_rate": n["opened"] / n["delivered"], "click_rate": n["clicked"] / n["delivered"],
                                                "bounce_rate": n["bounced"] / n["sent"], "unsubscribe_rate": n["unsubscribed"] / n["delivered"],
                                                "return_on_cost": float(revenue / cost)}
    actual = {(r["campaign_id"], str(r["send_date"])): r.asDict() for r in lake.read("gold.campaign_engagement").collect()}
    assert expected and sorted(actual) == sorted(expected)
    for key, want in expected.items():
        got = actual[key]
        for column, value in want.items():
            assert got[column] == (ROUNDED(value, abs=1e-4) if column.endswith("_rate") else ROUNDED(value, abs=0.01) if column == "return_on_cost" else value), (key, column)


PLANTED = world.Plan(customers=3000, days=63, end=END, seed=11, timezone=TIMEZONE)


@pytest.fixture(scope="module")
def planted_people(spark):
    """The simulation's persons of a plan ten times the pipeline's: its frames stand for the lake (no files, no stage)."""
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", TIMEZONE)   # as write_landing builds its frames
    people = members.persons(spark, PLANTED).cache()
    yield people
    people.unpersist()
    spark.conf.set("spark.sql.session.timeZone", previous)


def test_the_planted_slow_channel_is_the_slowest_and_ratings_differ_by_channel_as_planted(spark, planted_people, conf):
    contacts = touchpoints.interactions(planted_people, PLANTED).withColumn("satisfaction", F.col("satisfaction").cast("int")).withColumn(
        "ingested_at", F.current_timestamp())
    kpis = service_kpis(contacts_as_of(contacts, END, TIMEZONE), END, conf.analyze.service)
    per_channel = {r["channel"]: r for r in kpis.groupBy("channel").agg(
        (F.sum(F.col("median_hours_to_close") * F.col("closed")) / F.sum("closed")).alias("hours"),
        (F.sum(F.col("mean_satisfaction") * F.col("closed")) / F.sum(F.when(F.col("mean_satisfaction").isNotNull(), F.col("closed")))).alias("satisfaction"),
    ).collect()}
    assert max(per_channel, key=lambda c: per_channel[c]["hours"]) == touchpoints.SLOW_CHANNEL
    by_rating = sorted(per_channel, key=lambda c: per_channel[c]["satisfaction"])
    lowest, highest = (c for c, shift in sorted(touchpoints.CHANNEL_SATISFACTION.items(), key=lambda kv: kv[1]))
    assert (by_rating[0], by_rating[-1]) == (lowest, highest), per_channel


def appeal(campaign_id: str) -> float:
    """The appeal the generator planted in a campaign of PLANTED."""
    day = (dt.datetime.strptime(campaign_id, "c-%Y%m%d").date() - PLANTED.start).days
    return touchpoints.CAMPAIGN_APPEAL[day // world.CAMPAIGN_EVERY_DAYS % len(touchpoints.CAMPAIGN_APPEAL)]


def test_the_planted_campaign_appeal_orders_the_campaigns_open_and_click_rates(spark, planted_people, conf):
    events = touchpoints.campaign_events(planted_people, PLANTED).withColumn("revenue", F.col("revenue").cast("decimal(18,2)"))
    table = campaign_engagement(events, END, TIMEZONE, conf.campaigns.cost_per_contact.email).collect()

    # Sends whose responses are all in (opens come up to 30 hours after a send).
    sends = [r for r in table if r["send_date"] < END - dt.timedelta(days=1)]
    assert {appeal(r["campaign_id"]) for r in sends} == set(touchpoints.CAMPAIGN_APPEAL)
    for rate in ("open_rate", "click_rate"):
        ordered = sorted(sends, key=lambda r: r[rate])
        # Every campaign of a lower appeal engages less than every campaign of a higher one.
        assert [appeal(r["campaign_id"]) for r in ordered] == sorted(appeal(r["campaign_id"]) for r in sends), rate


def test_campaign_roi_equals_a_pandas_computation_over_the_contact_history_and_the_landing_orders(spark, pipeline):
    # The pipeline's contacts are of the run date, whose window holds no order yet: measured as if
    # made 20 days before it, their window is complete and holds the landing's orders.
    conf, lake = pipeline["conf"], pipeline["lake"]
    then, days, costs = END - dt.timedelta(days=20), conf.campaigns.attribution_days, conf.campaigns.cost_per_contact.model_dump()
    contacts = lake.read("gold.contact_history").where(F.col("contact_date") == END).withColumn("contact_date", F.lit(then))
    orders = with_order_person_id(lake.read("silver.order_lines").where(F.col("status") == "completed"), lake.read("silver.identity_map"))
    actual = {r["audience"]: r for r in campaign_results(contacts, orders, END, days, costs).collect()}

    history = pd.DataFrame([r.asDict() for r in contacts.select("audience", "channel", "person_id", "group").distinct().collect()])
    lines = completed_lines(pipeline["root"], identity_lookup(lake))
    in_window = lines[(lines["order_date"] > then) & (lines["order_date"] <= then + dt.timedelta(days=days))]
    revenue = in_window.groupby("person_id")["line_amount"].sum().map(float)
    expected = {}
    for (audience, channel), persons in history.groupby(["audience", "channel"]):
        per_group = {g: persons.loc[persons["group"] == g, "person_id"].map(revenue).fillna(0.0) for g in ("treatment", "control")}
        contacted, cost = len(per_group["treatment"]), len(per_group["treatment"]) * costs[channel]
        incremental = (per_group["treatment"].mean() - per_group["control"].mean()) * contacted if len(per_group["control"]) else None
        expected[audience] = (channel, contacted, cost, incremental, None if incremental is None else (incremental - cost) / cost)
    assert sorted(actual) == sorted(expected) and any(e[3] for e in expected.values())   # some revenue to measure
    for audience, (channel, contacted, cost, incremental, roi) in expected.items():
        got = actual[audience]
        assert (got["channel"], got["contacted"], got["cost"]) == (channel, contacted, ROUNDED(cost, abs=0.01)), audience
        if incremental is None:
            assert (got["incremental_revenue"], got["roi"]) == (None, None), audience
        else:
            assert (got["incremental_revenue"], got["roi"]) == (ROUNDED(incremental, abs=0.01), ROUNDED(roi, abs=1e-4)), audience


def test_the_planted_unappealing_campaigns_earn_the_least_for_their_cost(spark, planted_people, conf):
    # Every send costs the same (email); the campaigns planted unappealing convert fewest of
    # their recipients, so they return least per unit spent.
    events = touchpoints.campaign_events(planted_people, PLANTED).withColumn("revenue", F.col("revenue").cast("decimal(18,2)"))
    sends = [r for r in campaign_engagement(events, END, TIMEZONE, conf.campaigns.cost_per_contact.email).collect()
             if r["send_date"] < END - dt.timedelta(days=1)]   # responses all in
    by_appeal = {}
    for r in sends:
        revenue, cost = by_appeal.get(appeal(r["campaign_id"]), (0, 0))
        by_appeal[appeal(r["campaign_id"])] = (revenue + r["revenue"], cost + r["cost"])
    return_on_cost = {a: float(revenue / cost) for a, (revenue, cost) in by_appeal.items()}
    assert set(return_on_cost) == set(touchpoints.CAMPAIGN_APPEAL)
    assert min(return_on_cost, key=return_on_cost.get) == min(touchpoints.CAMPAIGN_APPEAL), return_on_cost
    # Each of its campaigns alone returns less than any campaign of a higher appeal.
    lowest = [r["return_on_cost"] for r in sends if appeal(r["campaign_id"]) == min(touchpoints.CAMPAIGN_APPEAL)]
    assert max(lowest) < min(r["return_on_cost"] for r in sends if appeal(r["campaign_id"]) > min(touchpoints.CAMPAIGN_APPEAL)), sends
