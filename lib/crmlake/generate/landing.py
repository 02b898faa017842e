"""Write the simulated world as a landing zone that follows ../shared/contract.md, defects included.

Spark writes every source, one file per ``dt`` folder (clickstream gzip-compressed),
timestamps with the business time zone's offset, money as decimal strings. Planted
defects, counted in ``_truth/summary.json``: clickstream events delivered twice, a late
clickstream delivery (events two days after their date), malformed JSON, a timestamp
without offset, an unknown enum, a missing required field, invalid UTF-8, CSV rows with
the wrong field count or a bad quantity, a file re-delivered under another name, order
lines whose status changes in a later file, persons with two accounts, an erase
request, unsubscribes (one member moves after unsubscribing). Records dated after ``end`` have not happened yet and are not written.

Who is who goes to ``_truth/identity.csv`` (account_id, person, causes): every account
written to the customers source, its true person and the planted causes that make one
person look like two or two persons look like one (:func:`members.identity_truth`), counted
per cause in ``summary.json``. Acquire reads only the sources' ``dt=`` folders, so
``_truth/`` is never taken for data.

:func:`write_campaign_responses` later adds the orders that contacts (decide's contact
history) caused, by the planted campaign effects of :mod:`crmlake.generate.world`.
"""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import json
import os
import shutil
from contextlib import contextmanager

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.generate import behaviour, members, touchpoints, world
from crmlake.generate.draws import uniform
from crmlake.log import get_logger, timed
from crmlake.people import MERGING_CAUSES, SPLITTING_CAUSES

log = get_logger("generate")
SOURCES = ("clickstream", "orders", "customers", "interactions", "campaign_events")
ISO = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
ORDER_COLUMNS = ["order_id", "line_no", "order_time", "account_id", "guest_email", "channel", "store_id", "product_id", "category", "quantity", "unit_price", "discount", "currency", "status", "updated_time"]


class LandingExistsError(RuntimeError):
    """The landing directory already holds source files."""


@contextmanager
def _session_time_zone(spark: SparkSession, timezone: str):
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", timezone)
    try:
        yield
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)


def _formatted(df: DataFrame, time_columns: list, dt_from: str, end: dt.date, money: tuple = (), floor: dt.date | None = None) -> DataFrame:
    """Format timestamps as ISO-8601 with offset and money as decimal strings; add ``dt``."""
    day = F.to_date(F.date_format(dt_from, "yyyy-MM-dd"))
    if floor:
        day = F.greatest(day, F.lit(floor))
    out = df.withColumn("dt", day).where(F.col("dt") <= F.lit(end))
    for c in time_columns:
        out = out.withColumn(c, F.date_format(c, ISO))
    for c in money:
        out = out.withColumn(c, F.when(F.col(c).isNotNull(), F.format_string("%.2f", F.col(c).cast("double"))))
    return out


def _write(df: DataFrame, landing: str, source: str, fmt: str, sort_by: list, mode: str = "errorifexists") -> None:
    writer = df.repartition("dt").sortWithinPartitions(*sort_by).write.mode(mode).partitionBy("dt")
    path = "file://" + os.path.join(landing, source)
    if fmt == "json":
        writer.option("compression", "gzip" if source == "clickstream" else "none").json(path)
    else:
        writer.option("header", True).option("escape", '"').csv(path)


def _first_file(landing: str, source: str, day: dt.date | None = None) -> str:
    pattern = os.path.join(landing, source, f"dt={day.isoformat()}" if day else "dt=*", "part-*")
    return sorted(glob.glob(pattern))[0]


def _append_lines(path: str, lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    with open(path, "ab") as fh:
        fh.write(gzip.compress(data, mtime=0) if path.endswith(".gz") else data)  # a gzip member may follow another


def _drop_writer_files(landing: str) -> None:
    """Remove Spark's ``_SUCCESS`` markers and Hadoop's ``.crc`` sidecars: not part of the contract,
    and a sidecar would no longer match a file that defects are appended to."""
    for pattern in ("**/.*.crc", "**/_SUCCESS"):
        for path in glob.glob(os.path.join(landing, pattern), recursive=True):
            os.remove(path)


def _plant_bad_lines(landing: str, start: dt.date) -> dict:
    click = _first_file(landing, "clickstream", start)
    with gzip.open(click, "rt", encoding="utf-8") as fh:
        good = json.loads(fh.readline())
    bad_clicks = [
        b'{"event_id": "bad-1", "event_time": "2026-01-01T00:00:00+08:00", "oops"',
        json.dumps({**good, "event_id": "bad-2", "event_time": good["event_time"][:19]}).encode(),
        json.dumps({**good, "event_id": "bad-3", "device": "smartwatch"}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "anonymous_id"} | {"event_id": "bad-4"}).encode(),
        b'{"event_id": "bad-5", "page_url": "/\xff\xfe"}',
    ]
    _append_lines(click, bad_clicks)
    bad_orders = [
        b"O-bad,1,2026-01-01T00:00:00+08:00,too,few,fields",
        b"O-bad,2,2026-01-01T00:00:00+08:00,A00000001,,web,,p,books,-3,10.00,0.00,TWD,completed,2026-01-01T00:00:00+08:00",
    ]
    _append_lines(_first_file(landing, "orders", start), bad_orders)
    with open(_first_file(landing, "customers", start), encoding="utf-8") as fh:
        profile = json.loads(fh.readline())
    bad_profile = {**profile, "account_id": "A-bad", "marketing_consent": "maybe"}
    _append_lines(_first_file(landing, "customers", start), [json.dumps(bad_profile).encode()])
    return {"clickstream_bad_lines": len(bad_clicks), "orders_bad_lines": len(bad_orders), "customers_bad_lines": 1}


def _write_single_csv(df: DataFrame, path: str, sort_by: list) -> None:
    """Write ``df`` as one CSV file with a header at ``path`` (Spark writes a folder: its one part is moved)."""
    folder = path + ".parts"
    df.coalesce(1).sortWithinPartitions(*sort_by).write.option("header", True).csv("file://" + folder)
    (part,) = glob.glob(os.path.join(folder, "part-*"))
    os.replace(part, path)
    shutil.rmtree(folder)


def _cause_counts(identity: DataFrame) -> dict:
    """Return {cause: {"accounts": n, "groups": n}} for every cause :func:`members.identity_truth` plants, 0 when absent."""
    tags = identity.select(F.explode(F.split("causes", ";")).alias("tag"))
    counted = tags.groupBy(F.substring_index("tag", ":", 1).alias("cause")).agg(F.count("*").alias("accounts"), F.countDistinct("tag").alias("groups"))
    found = {r["cause"]: {"accounts": r["accounts"], "groups": r["groups"]} for r in counted.collect()}  # safe: one row per cause
    return {cause: found.get(cause, {"accounts": 0, "groups": 0}) for cause in (*SPLITTING_CAUSES, *MERGING_CAUSES)}


def write_landing(spark: SparkSession, landing: str, customers: int, days: int, end: dt.date, seed: int, timezone: str, force: bool = False) -> dict:
    """Simulate and write a landing zone under ``landing``; return the summary of what was planted.

    Raises LandingExistsError if source folders already exist and ``force`` is False.
    """
    present = [s for s in SOURCES if os.path.isdir(os.path.join(landing, s))]
    if present and not force:
        raise LandingExistsError(f"{landing} already holds {', '.join(present)}; pass --force to replace it")
    for source in [*present, "_truth"]:
        shutil.rmtree(os.path.join(landing, source), ignore_errors=True)
    plan = world.Plan(customers, days, end, seed, timezone)
    defects: dict = {}
    with _session_time_zone(spark, timezone), timed(log, f"generate {customers} persons x {days} days to {landing}") as facts:
        people = members.persons(spark, plan).cache()
        visits = behaviour.sessions(spark, people, plan).cache()

        clicks = behaviour.clicks(visits, plan)
        duplicated = clicks.where(uniform(seed, "duplicate", "event_id") < 0.002)
        # A collector's batch for one day arrives two days late.
        late_day = F.to_date(F.date_format("event_time", "yyyy-MM-dd")) == F.lit(plan.end - dt.timedelta(days=4))
        late = late_day & (uniform(seed, "late", "event_id") < 0.02)
        click_rows = _formatted(clicks.withColumn("_late", late).unionByName(duplicated.withColumn("_late", F.lit(False))), ["event_time", "received_time"], "event_time", end)
        click_rows = click_rows.withColumn("dt", F.when(F.col("_late"), F.date_add("dt", 2)).otherwise(F.col("dt"))).drop("_late")
        _write(click_rows, landing, "clickstream", "json", ["event_time", "event_id"])
        defects["clickstream_duplicate_events"] = _formatted(duplicated, [], "event_time", end).count()
        defects["clickstream_late_events"] = _formatted(clicks.where(late), [], "event_time", end).count()

        lines = _formatted(behaviour.order_lines(visits, plan), ["order_time", "updated_time"], "updated_time", end, money=("unit_price", "discount"))
        _write(lines.select(*ORDER_COLUMNS, "dt"), landing, "orders", "csv", ["updated_time", "order_id", "line_no"])

        accounts = members.accounts(people, plan).cache()
        upserts = accounts.withColumn("op", F.lit("upsert")).withColumn("updated_time", F.col("signup_time"))
        changes = members.profile_changes(accounts, plan).unionByName(members.phone_changes(accounts)).withColumn("op", F.lit("upsert"))
        campaign_events = touchpoints.campaign_events(people, plan).cache()
        moved = members.moved_after_unsubscribing(accounts, campaign_events, plan).withColumn("op", F.lit("upsert")).cache()
        erased = accounts.where(F.col("signup_time") < F.lit(plan.start).cast("timestamp")).orderBy(uniform(seed, "erase", "account_id")).limit(1)
        erase = erased.select("account_id", F.lit("erase").alias("op"), F.lit(f"{end} 09:00:00").cast("timestamp").alias("updated_time"))
        profile_columns = ["account_id", "op", "updated_time", "signup_time", "email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band", "marketing_consent", "marketing_consent_time", "referred_by", "account_type", "company_id"]
        profiles = upserts.select(*profile_columns).unionByName(changes.select(*profile_columns)).unionByName(moved.select(*profile_columns)).unionByName(erase, allowMissingColumns=True)
        _write(_formatted(profiles, ["updated_time", "signup_time", "marketing_consent_time"], "updated_time", end, floor=plan.start), landing, "customers", "json", ["updated_time", "account_id"])

        _write(_formatted(touchpoints.interactions(people, plan), ["opened_time", "closed_time"], "opened_time", end), landing, "interactions", "csv", ["opened_time", "interaction_id"])
        _write(_formatted(campaign_events, ["event_time"], "event_time", end, money=("revenue",)), landing, "campaign_events", "csv", ["event_time", "account_id", "event"])

        _drop_writer_files(landing)
        defects.update(_plant_bad_lines(landing, plan.start))
        resent = _first_file(landing, "orders", plan.start + dt.timedelta(days=1))
        shutil.copyfile(resent, os.path.join(os.path.dirname(resent), "orders-resent.csv"))
        defects["orders_redelivered_files"] = 1

        erased_row = erased.select("account_id", F.lower(F.trim("email")).alias("email")).first()
        moved_row = moved.select("account_id").first()
        truth_dir = os.path.join(landing, "_truth")
        truth = people.join(accounts.groupBy("person").agg(F.concat_ws(";", F.sort_array(F.collect_list("account_id"))).alias("account_ids")), "person", "left").select(
            "person", "account_ids", "daily_purchase_rate", "daily_lapse_hazard", (F.col("alive_until") > days - 1).alias("alive_at_end"),
            world.day_date(plan, members.lapse_day(plan)).alias("lapse_date"), "occupation", "birth_year", "favourite_category", "acquisition_source",
        )
        truth.coalesce(1).write.option("header", True).csv("file://" + os.path.join(truth_dir, "persons"))
        identity = members.identity_truth(accounts, visits).cache()
        _write_single_csv(identity, os.path.join(truth_dir, "identity.csv"), sort_by=["account_id"])
        identity_counts = _cause_counts(identity)
        identity.unpersist()
        summary = {
            "seed": seed,
            "customers": customers,
            "accounts": accounts.count(),
            "start": plan.start.isoformat(),
            "end": end.isoformat(),
            "sessions": visits.count(),
            "defects": defects,
            "erased": {"account_id": erased_row["account_id"], "email": erased_row["email"]},
            "moved_after_unsubscribing": moved_row["account_id"] if moved_row else None,
            "persons_with_several_accounts": people.where("accounts > 1").count(),
            "identity": {
                "causes": identity_counts,
                "recycled_phone_changed": accounts.where(F.col("phone_changed_time").isNotNull()).count(),
            },
            "truth": "persons/part-*.csv: latent daily purchase rate and lapse hazard per person; lapse_date, the last day of a member "
            f"whose activity has begun to fade by the end (lapsed, or lapsing within {members.FADE_DAYS} days after it: over the "
            f"{members.FADE_DAYS} days up to it their visit rate falls linearly to {members.VISIT_FADE_FLOOR:.0%} of itself and their "
            f"purchase rate to {members.PURCHASE_FADE_FLOOR:.0%}), null for the others; declared income_band "
            "and occupation are independent of behaviour (a baseline that should not predict); favourite_category holds "
            "60% of the person's visits and order lines; acquisition_source (members joining in the window) names the source of their "
            "signup visit (generate.members.ACQUISITION_SOURCES: its purchase lift). identity.csv: each account's true person and the planted causes "
            "(cause:group tags; identity.causes counts the accounts and groups carrying each).",
        }
        with open(os.path.join(truth_dir, "summary.json"), "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        for cached in (people, visits, accounts, campaign_events, moved):
            cached.unpersist()
        facts.update(sessions=summary["sessions"], accounts=summary["accounts"])
    return summary


def write_campaign_responses(spark: SparkSession, landing: str, contacts: DataFrame, timezone: str) -> dict:
    """Write the orders our contacts caused into the generated landing zone ``landing``; return
    the contacts by planted response type and group, and the responses written.

    Takes contact rows (account_id, contact_date, group), e.g. gold.contact_history. The
    simulated persons and visits are rebuilt from ``<landing>/_truth/summary.json`` (seed,
    customers, start, end): contacted persuadables buy (:func:`touchpoints.campaign_responses`),
    sure things and control persons buy as they would anyway. The orders land as new files
    in the ``orders`` source's ``dt`` folders (a later delivery, which acquire takes like
    any new file), following the contract; orders after the zone's end are not written.
    Each contact's response type goes to ``_truth/response_types/``.
    """
    with open(os.path.join(landing, "_truth", "summary.json"), encoding="utf-8") as fh:
        truth = json.load(fh)
    start, end = dt.date.fromisoformat(truth["start"]), dt.date.fromisoformat(truth["end"])
    plan = world.Plan(int(truth["customers"]), (end - start).days + 1, end, int(truth["seed"]), timezone)
    with _session_time_zone(spark, timezone), timed(log, f"campaign responses to {landing}") as facts:
        people = members.persons(spark, plan).cache()
        visits = behaviour.sessions(spark, people, plan).cache()
        contacted = contacts.select(
            world.person_no_of_account(F.col("account_id")).alias("person_no"), F.datediff("contact_date", F.lit(plan.start)).alias("day"), "group"
        ).distinct()
        types = touchpoints.response_types(people, visits, contacted.select("person_no", "day").distinct()).join(contacted, ["person_no", "day"]).cache()
        responses = touchpoints.campaign_responses(people, visits, contacts, plan).cache()
        lines = _formatted(responses, ["order_time", "updated_time"], "updated_time", end, money=("unit_price", "discount"))
        _write(lines.select(*ORDER_COLUMNS, "dt"), landing, "orders", "csv", ["updated_time", "order_id", "line_no"], mode="append")
        planted = types.select(F.format_string("P%07d", "person_no").alias("person"), F.date_add(F.lit(plan.start), F.col("day")).alias("contact_date"), "group", "response_type")
        planted.coalesce(1).write.mode("overwrite").option("header", True).csv("file://" + os.path.join(landing, "_truth", "response_types"))
        _drop_writer_files(landing)
        # Safe to collect: a few types and groups.
        summary = {
            "contacts": {f"{r['response_type']}/{r['group']}": r["count"] for r in types.groupBy("response_type", "group").count().collect()},
            "responses": responses.count(),
        }
        facts.update(responses=summary["responses"])
        for cached in (people, visits, types, responses):
            cached.unpersist()
    return summary
