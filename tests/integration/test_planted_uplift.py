"""Uplift on generated data with planted persuadables: the uplift ranking against the propensity ranking.

No landing zone and no stage runs (they take minutes here): the simulated world's frames are
turned into what the lake would hold of it (members, order lines, sessions with person ids),
an audience of every member is contacted on three dates with half of it held out, the
responses the generator plants are added to the orders, and analyze's own uplift step
(:func:`crmlake.analyze.job.audience_uplift`) learns from the contact history, logs to MLflow,
registers, and scores into gold.audience_uplift.
"""

import datetime as dt
import functools
import glob
import os

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from crmlake.acquire.contract import SOURCES
from crmlake.acquire.job import discover
from crmlake.acquire.reader import FileToRead, read_records
from crmlake.acquire.validate import with_validation
from crmlake.analyze import job as analyze
from crmlake.analyze.features import customer_behaviour, in_holdout
from crmlake.analyze.specs import uplift_model_name
from crmlake.config import load_conf
from crmlake.decide.audiences import in_control_group
from crmlake.generate import behaviour, members, touchpoints, world
from crmlake.generate.landing import _session_time_zone, write_campaign_responses
from crmlake.lake import Lake

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)
TZ = "Asia/Taipei"
ATTRIBUTION_DAYS = 14
AUDIENCE = "everyone"


def observed(spark, plan: world.Plan) -> dict:
    """What the lake would hold of the simulated world (persons are the simulation's own):
    members (person_id, signup_time), order lines as organize keeps them, consented sessions
    with person_id; and the planted truth per person (person_id, account_id,
    daily_purchase_rate, response_type to a contact on the last day). Materialised in the
    plan's time zone, as the generator builds it."""
    with _session_time_zone(spark, plan.timezone):
        people = members.persons(spark, plan).localCheckpoint()
        visits = behaviour.sessions(spark, people, plan).localCheckpoint()
        accounts = members.accounts(people, plan).select("account_id", F.col("person").alias("person_id"), "signup_time").localCheckpoint()
        owner = accounts.select("account_id", "person_id")
        lines = behaviour.order_lines(visits, plan).where(F.col("updated_time") == F.col("order_time"))  # first versions; status changes left out
        frames = {
            "members": accounts.groupBy("person_id").agg(F.min("signup_time").alias("signup_time")).localCheckpoint(),
            "order_lines": lines.join(owner, "account_id").select(
                "person_id", "order_id", "status", F.to_date(F.from_utc_timestamp("order_time", plan.timezone)).alias("order_date"),
                (F.col("quantity") * F.col("unit_price") - F.col("discount")).alias("line_amount"),
            ).localCheckpoint(),
            "sessions": visits.where("tracking_consent AND account IS NOT NULL").join(owner.withColumnRenamed("account_id", "account"), "account").select(
                "person_id", F.to_date(F.from_utc_timestamp("session_start", plan.timezone)).alias("session_date"), "product_views",
                F.col("carted").cast("int").alias("adds_to_cart"),
            ).localCheckpoint(),
            # As a contact at the end would find them.
            "truth": touchpoints.response_types(people, visits, people.select("person_no", F.lit(plan.days - 1).alias("day"))).join(people, "person_no").select(
                F.col("person").alias("person_id"), "response_type", "daily_purchase_rate", F.format_string("A%08d", F.col("person_no") * 2).alias("account_id"),
            ).localCheckpoint(),
        }
        frames.update(people=people, visits=visits)
    return frames


def experiment(spark, tmp_path, customers: int, days: int, seed: int) -> dict:
    """Contact every member on three dates (half held out by decide's control hash), plant the
    responses, run analyze's uplift step for END; return conf, lake, truth and the step's facts.

    The contacts' ``score`` (the propensity ranking, the baseline) is each person's planted
    purchase rate: the ranking a perfect propensity model would give.
    """
    conf = load_conf(overrides=[
        f"paths.lake={tmp_path}/lake", f"paths.exports={tmp_path}/exports", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"mlflow.artifact_root={tmp_path}/mlartifacts", "analyze.uplift.contact_dates=3", "analyze.uplift.min_group_persons=50",
        "analyze.uplift.max_iter=20", f"campaigns.attribution_days={ATTRIBUTION_DAYS}", "analyze.propensity.holdout_share=0.5",
        f"campaigns.audiences=[{{name: {AUDIENCE}, rule: 'true', channel: email, control_share: 0.5}}]", "lake.engine=rs",
    ], environ={})
    lake = Lake(spark, conf)
    plan = world.Plan(customers, days, END, seed, TZ)
    frames = observed(spark, plan)
    audience = conf.campaigns.audiences[0]
    contact_dates = [END - dt.timedelta(days=ATTRIBUTION_DAYS + 7 * k) for k in range(3)]

    contacts = None
    for day in contact_dates:
        signed_up = frames["members"].where(F.to_date(F.from_utc_timestamp("signup_time", TZ)) <= F.lit(day))
        rows = signed_up.join(frames["truth"], "person_id").select(
            F.lit(day).alias("contact_date"), F.lit(AUDIENCE).alias("audience"), F.lit("email").alias("channel"), F.lit(1).alias("priority"),
            "person_id", "account_id", F.when(in_control_group(F.col("person_id"), audience), "control").otherwise("treatment").alias("group"),
            F.col("daily_purchase_rate").alias("score"),
        )
        contacts = rows if contacts is None else contacts.unionByName(rows)
    lake.overwrite("gold.contact_history", contacts, partition_by=["contact_date"])
    with _session_time_zone(spark, TZ):
        responses = touchpoints.campaign_responses(frames["people"], frames["visits"], lake.read("gold.contact_history"), plan).join(
            frames["truth"].select("account_id", "person_id"), "account_id"
        ).select("person_id", "order_id", "status", F.to_date(F.from_utc_timestamp("order_time", TZ)).alias("order_date"),
                 (F.col("quantity") * F.col("unit_price") - F.col("discount")).alias("line_amount")).localCheckpoint()
    orders = frames["order_lines"].unionByName(responses)

    @functools.cache
    def behaviour_as_of(day):
        return customer_behaviour(frames["members"], orders, frames["sessions"], day, TZ).localCheckpoint()

    persons = behaviour_as_of(END)
    failed: dict = {}
    facts = analyze.audience_uplift(lake, conf, behaviour_as_of, orders, persons, END, {"run_date": str(END)}, str(tmp_path / "reports"), failed)
    assert failed == {}
    return {"conf": conf, "lake": lake, "truth": frames["truth"], "facts": facts, "responses": responses.count(),
            "rerun": lambda: analyze.audience_uplift(lake, conf, behaviour_as_of, orders, persons, END, {"run_date": str(END)}, str(tmp_path / "reports"), {})}


def test_the_uplift_ranking_finds_the_planted_persuadables_that_the_propensity_ranking_misses(spark, tmp_path):
    run = experiment(spark, tmp_path, customers=2000, days=50, seed=11)
    facts, lake, conf = run["facts"], run["lake"], run["conf"]
    assert run["responses"] > 0 and facts[AUDIENCE]["champion_moved"], facts

    # MLflow holds the holdout Qini of both rankings; the uplift ranking's is higher.
    client = MlflowClient(conf.mlflow.tracking_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("crmlake").experiment_id], f"attributes.run_name = 'uplift-{AUDIENCE}-{END}'")
    metrics = logged.data.metrics
    assert metrics["qini"] == pytest.approx(facts[AUDIENCE]["qini"], abs=1e-4)
    assert metrics["qini"] > metrics["baseline_qini"] + 0.02, metrics
    assert metrics["uplift_top_decile"] > metrics["baseline_uplift_top_decile"], metrics
    assert len(client.get_metric_history(logged.info.run_id, "uplift_by_decile")) >= 8

    # Today's persons as the champion scores them, the held-out ones (never trained on): random
    # targeting would put about their share of planted persuadables in a top tenth; the uplift
    # ranking puts more than two standard deviations above it there, the propensity ranking (the
    # planted purchase rate) puts the sure things there.
    scored = lake.read("gold.audience_uplift").where(F.col("score_date") == F.lit(END)).join(run["truth"], "person_id")
    held_out = scored.where(in_holdout(F.col("person_id"), conf.analyze.propensity.holdout_share)).toPandas()
    share, top = (held_out["response_type"] == "persuadable").mean(), len(held_out) // 10

    def top_share(column):
        return (held_out.nlargest(top, column)["response_type"] == "persuadable").mean()

    assert 0.1 < share < 0.5 and top >= 30
    assert top_share("uplift") > share + 2 * (share * (1 - share) / top) ** 0.5, (share, top_share("uplift"))
    assert top_share("uplift") > top_share("daily_purchase_rate") + 0.25, (top_share("uplift"), top_share("daily_purchase_rate"))

    # The same contacts, orders and conf again: nothing fitted or registered, the champion scores as before.
    again = run["rerun"]()
    assert again[AUDIENCE]["reused"] and again[AUDIENCE]["version"] == facts[AUDIENCE]["version"] == again[AUDIENCE]["champion"]
    assert [str(v.version) for v in client.search_model_versions(f"name = '{uplift_model_name(conf, AUDIENCE)}'")] == ["1"]


def test_campaign_responses_land_as_contract_orders_files_of_contacted_persuadables(spark, tmp_path):
    landing = tmp_path / "landing"
    (landing / "_truth").mkdir(parents=True)
    (landing / "_truth" / "summary.json").write_text(f'{{"seed": 11, "customers": 150, "start": "{END - dt.timedelta(days=34)}", "end": "{END}"}}')
    plan = world.Plan(150, 35, END, 11, TZ)
    day = END - dt.timedelta(days=10)
    with _session_time_zone(spark, TZ):
        people = members.persons(spark, plan)
        types = touchpoints.response_types(people, behaviour.sessions(spark, people, plan), people.select("person_no", F.lit((day - plan.start).days).alias("day"))).toPandas()
    persuadable = types[types["response_type"] == "persuadable"]["person_no"].tolist()
    sure = types[types["response_type"] == "sure_thing"]["person_no"].tolist()
    assert len(persuadable) >= 20 and sure
    rows = [(f"A{n * 2:08d}", day, "treatment") for n in persuadable] + [(f"A{n * 2:08d}", day, "control") for n in sure + persuadable[:5]]
    summary = write_campaign_responses(spark, str(landing), spark.createDataFrame(rows, "account_id string, contact_date date, group string"), TZ)
    # Most contacted persuadables respond (touchpoints.RESPONSE_RATE); control persons and sure things do not.
    assert 0.5 * len(persuadable) < summary["responses"] < 0.9 * len(persuadable), summary
    assert summary["contacts"]["persuadable/treatment"] == len(persuadable) and summary["contacts"]["sure_thing/control"] == len(sure)

    files = discover(str(landing), "orders", END + dt.timedelta(days=30))   # what acquire lists: the orders source's dt folders
    assert files and all(day < f.dt <= day + dt.timedelta(days=touchpoints.RESPONSE_DAYS) for f in files)
    records = read_records(spark, [FileToRead(f.path, sha256="-") for f in files], "csv", 1 << 20)
    validated = with_validation(records, SOURCES["orders"])
    assert validated.where("reason IS NOT NULL").count() == 0 and validated.count() == summary["responses"]
    assert {r["account_id"] for r in validated.select("account_id").collect()} <= {f"A{n * 2:08d}" for n in persuadable}
    assert not glob.glob(os.path.join(landing, "**", "_SUCCESS"), recursive=True)
    truth = glob.glob(os.path.join(landing, "_truth", "response_types", "*.csv"))
    assert truth and open(truth[0]).readline().strip() == "person,contact_date,group,response_type"
