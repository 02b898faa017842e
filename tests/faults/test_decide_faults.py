"""decide killed (SIGKILL, a real process) between its contact history and its files: the rerun
ends with the same gold.contact_history and the same published audiences as a run never killed.
And a rerun in which one audience fails keeps that audience's history beside its published file.

One tiny lake (300 customers x 14 days, acquired and organized once, with made-up scores) is
copied for the clean run and for each crash point; every run decides the same date.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crmlake.acquire import job as acquire
from crmlake.exports import DATA_FILES, MANIFEST
from crmlake.decide.job import CONTACT_HISTORY, audiences_of
from crmlake.generate.landing import write_landing
from crmlake.lake import Lake
from crmlake.people import ACCOUNT
from crmlake.organize import job as organize
from crmlake.runs import run_stage
from processes import run_armed
from decide_driver import conf_for

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)
DRIVER = os.path.join(os.path.dirname(__file__), "decide_driver.py")
# What a copy of the scored lake takes along: the landing zone is not read by decide, and each
# copy gets its own MLflow store (decide only logs campaign results to it).
NOT_COPIED = shutil.ignore_patterns("landing", "mlflow.db", "mlartifacts")


def hashed(person_id, salt: str, buckets: int):
    """Column: a stable bucket in [0, buckets) of the person, one per ``salt``."""
    return F.pmod(F.xxhash64(person_id, F.lit(salt)), F.lit(buckets))


def scores_of(lake: Lake, run_date: dt.date):
    """Return gold.customer_scores rows for every person of silver.customer_360 on ``run_date``.

    Made up from a stable hash of the person, not trained: decide reads scores, not how they
    were made, and analyze's models would take minutes of this test's time. The columns the
    default audiences read (propensity, frequency, r_score, monetary) spread over their ranges
    so that both audiences match and share persons; the rest are null.
    """
    person = F.col("person_id")
    propensity = hashed(person, "propensity", 1000) / 1000.0
    made_up = {
        "person_id": person,
        "propensity_score": propensity,
        "propensity_decile": (F.floor(propensity * 10) + 1).cast("int"),
        "frequency": hashed(person, "frequency", 4),
        "monetary": hashed(person, "monetary", 10_000) / 10.0,
        "r_score": (hashed(person, "recency", 5) + 1).cast("int"),
        "segment": F.lit("steady"),
        "rfm_cell": F.lit("333"),
        "top_category": F.lit("books"),
        "top_category_score": propensity,
        "propensity_model": F.lit("crmlake-propensity/1"),
        "segment_model": F.lit("crmlake-segmentation/1"),
        "category_model": F.lit("crmlake-next-best-category/1"),
        "score_date": F.lit(run_date),
    }
    spec = lake.catalog.spec("gold.customer_scores")
    return lake.read("silver.customer_360").select(*[made_up.get(c, F.lit(None)).cast(t).alias(c) for c, t in spec.columns.items()])


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory) -> str:
    """Return the root of a lake acquired and organized for END, with scores for END, not yet decided."""
    root = str(tmp_path_factory.mktemp("decide-faults"))
    conf = conf_for(root)
    write_landing(spark, conf.landing_root, customers=300, days=14, end=END, seed=3, timezone="Asia/Taipei")
    for stage in (acquire, organize):
        stage.run(spark, conf, END)
    lake = Lake(spark, conf)
    lake.overwrite("gold.customer_scores", scores_of(lake, END), partition_by=["score_date"])
    return root


def copy_of(scored: str, tmp_path, name: str) -> str:
    """Return a fresh copy of the scored lake and its exports under ``tmp_path/name``."""
    root = str(tmp_path / name)
    shutil.copytree(scored, root, ignore=NOT_COPIED)
    return root


def history_of(spark, root: str):
    """Return END's rows of gold.contact_history in the lake under ``root``."""
    return Lake(spark, conf_for(root)).read(CONTACT_HISTORY).where(F.col("contact_date") == F.lit(END))


def published(root: str) -> dict:
    """Return, per audience published for END under ``root``: its files, row count, policy counts
    and the person ids of its audience file, sorted."""
    conf = conf_for(root)
    found = {}
    for audience in audiences_of(conf):
        folder = os.path.join(conf.exports_root, audience.name, END.isoformat())
        if not os.path.isdir(folder):
            continue
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        persons = sorted(pq.read_table(os.path.join(folder, DATA_FILES[1]), columns=["person_id"]).column("person_id").to_pylist())
        found[audience.name] = {"files": sorted(os.listdir(folder)), "row_count": manifest["row_count"], "counts": manifest["counts"], "persons": persons}
    return found


@pytest.fixture(scope="module")
def clean(spark, scored, tmp_path_factory) -> str:
    """Return the root of a copy decided once, never killed."""
    root = copy_of(scored, tmp_path_factory.mktemp("clean"), "lake")
    run_stage(spark, conf_for(root), "decide", END)
    return root


def killed_at(point: str, root: str) -> None:
    """Run decide on ``root`` in its own process with ``point`` armed; assert it died of SIGKILL there."""
    done = run_armed([DRIVER, root, END.isoformat()], crash_at=point)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def test_a_clean_run_records_and_publishes_every_audience(spark, clean):
    # The reference the crash cases compare with must hold something to compare.
    history, files = history_of(spark, clean), published(clean)
    assert files and history.where("group = 'treatment'").count() == sum(a["row_count"] for a in files.values())
    for name, audience in files.items():
        recorded = sorted(r["person_id"] for r in history.where((F.col("audience") == name) & (F.col("group") == "treatment")).collect())
        assert recorded == audience["persons"]
    # Some persons are contacted by two audiences: a rerun that counted the date's own rows
    # toward the cap would drop them, so the crash cases below would see it.
    twice = history.where("group = 'treatment'").groupBy("person_id").count().where("count > 1")
    assert twice.count() > 0
    # One control group per person and date, and no audience served after it takes them.
    held_out = history.where("group = 'control'").select("person_id", F.col("priority").alias("held_out_at"))
    assert held_out.groupBy("person_id").count().where("count > 1").count() == 0
    assert history.join(held_out, "person_id").where("priority > held_out_at").count() == 0


def test_killed_after_the_history_the_rerun_publishes_what_was_recorded(spark, scored, clean, tmp_path):
    root = copy_of(scored, tmp_path, "lake")
    killed_at("decide.history_written", root)
    # Killed between the two: the contacts are recorded (they count toward the cap and the
    # results), no file is out yet.
    assertDataFrameEqual(history_of(spark, root), history_of(spark, clean))
    assert published(root) == {}
    run_stage(spark, conf_for(root), "decide", END)
    assertDataFrameEqual(history_of(spark, root), history_of(spark, clean))
    assert published(root) == published(clean)


def test_killed_after_the_first_audience_is_published_the_rerun_completes_the_rest(spark, scored, clean, tmp_path):
    root = copy_of(scored, tmp_path, "lake")
    killed_at("decide.published", root)
    first = audiences_of(conf_for(root))[0].name
    assert list(published(root)) == [first]
    run_stage(spark, conf_for(root), "decide", END)
    # The rerun reads the killed run's own rows in the history: they must not cap it out.
    assertDataFrameEqual(history_of(spark, root), history_of(spark, clean))
    assert published(root) == published(clean)


def failing(root: str, name: str) -> tuple[str, ...]:
    """Return conf overrides (for :func:`conf_for`) under which audience ``name`` cannot be selected
    (its rule names a column the scores do not have), the other audiences as they were."""
    entries = [a.model_dump() | ({"rule": "no_such_score >= 8"} if a.name == name else {}) for a in audiences_of(conf_for(root))]
    return (f"campaigns.audiences={json.dumps(entries)}",)


def test_a_rerun_with_a_failing_audience_keeps_its_history_beside_its_published_file(spark, scored, clean, tmp_path):
    root = copy_of(scored, tmp_path, "lake")
    run_stage(spark, conf_for(root), "decide", END)
    # Served first: the audiences after it hold out its control group and count its contacts.
    first = audiences_of(conf_for(root))[0].name
    summary = run_stage(spark, conf_for(root, failing(root, first)), "decide", END)
    assert list(summary["failed"]) == [f"audience {first}"]
    history, files = history_of(spark, root), published(root)
    # Its rows of the date are still there, and they are those of its file still published.
    kept = history.where(F.col("audience") == first)
    assert kept.where("group = 'control'").count() > 0
    assert sorted(r["person_id"] for r in kept.where("group = 'treatment'").collect()) == files[first]["persons"] != []
    # The others re-recorded once, as a run never failed records them, beside the same files.
    assert history.groupBy("audience", "person_id").count().where("count > 1").count() == 0
    assertDataFrameEqual(history, history_of(spark, clean))
    assert files == published(clean)


def test_a_person_whose_other_account_was_erased_is_in_no_audience_and_no_history(spark, scored, clean, tmp_path):
    # In the clean run this person is contacted (treatment) by at least one audience.
    contacted = history_of(spark, clean).where("group = 'treatment'").orderBy("audience", "person_id").first()["person_id"]
    root = copy_of(scored, tmp_path, "lake")
    lake = Lake(spark, conf_for(root))
    # An erasure records the person's live accounts (silver.erased_partners): the erased account's
    # consent and unsubscribes went with it, so the person must not be reached through these.
    accounts = lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & (F.col("person_id") == contacted))
    lake.overwrite("silver.erased_partners", accounts.select(F.col("identifier").alias("account_id")))
    assert lake.read("silver.erased_partners").count() >= 1

    run_stage(spark, conf_for(root), "decide", END)

    history, files = history_of(spark, root), published(root)
    assert history.where(F.col("person_id") == contacted).count() == 0   # neither contacted nor held out as a control
    assert files and all(contacted not in audience["persons"] for audience in files.values())
    # Everyone else is decided as before, give or take the places the person left (limits, caps).
    assert history.where("group = 'treatment'").count() > 0


def test_an_audience_recorded_by_a_killed_run_and_never_sent_keeps_no_history_when_the_rerun_fails_it(spark, scored, tmp_path):
    root = copy_of(scored, tmp_path, "lake")
    killed_at("decide.published", root)
    names = [a.name for a in audiences_of(conf_for(root))]
    later = names[1]
    assert list(published(root)) == [names[0]] and history_of(spark, root).where(F.col("audience") == later).count() > 0
    summary = run_stage(spark, conf_for(root, failing(root, later)), "decide", END)
    assert list(summary["failed"]) == [f"audience {later}"]
    # Recorded by the killed run, never published: no one was contacted, so no row stays.
    assert history_of(spark, root).where(F.col("audience") == later).count() == 0 and later not in published(root)
    assert names[0] in published(root)
