"""Data-subject rights over the whole lake and the exports: erasure, finality, receipts.

An erase request (``op = 'erase'`` in bronze.customers, from the landing zone or from
``crmlake erase``) removes the account's data from every table the catalog says may hold a
data subject's rows (each entry's ``subject`` rule), the quarantine's raw text included,
from every audience export on disk and every report's list of persons to act on, and from
what killed runs left behind (staging files, checkpoints), then deletes at once the files that held it. Erasure is final: the request
stays in bronze (it holds no personal data), and any later upsert of that account is erased
again on arrival and counted as refused; so are its records a stale system re-sends to the
other bronze sources (clicks, order lines, service contacts, campaign events), found by their
account id among the new rows organize reads and counted as late (:func:`records_of_accounts`).

An erasure is a durable workflow, so that a process killed at any step is finished by the
next run from where it stopped, never receipted early:

1. **plan**: the subject's identifiers (accounts, emails, their hashes, every ad platform's
   hashes, cookies, persons, the persons their account left with the dates it held them, and
   the cookies they share) are looked up while the tables still hold them and written to ``<lake>/_erasures/<request_id>.json`` before anything is deleted;
2. **apply**: the shared cookies recorded, then table by table, then the exports and the
   reports' lists of persons; each step
   is idempotent and recorded in the plan when done, so a resumed run skips it;
3. **receipt**: one row in ``gold.erasure_log`` (request id, time, tables, files removed,
   rows removed, exports amended; no personal data), written last;
4. the plan, the only other place holding the subject's values, is deleted.

No value of the subject is ever written into SQL text: each table's rows are found by
comparing its columns with a one-row frame of the subject's values
(:meth:`crmlake.subjects.Subject.frame`).

A computer the subject shared with another person's live account (a household's: one cookie
both log in on) keeps its rows: the visits logged in there are each account's, those logged
out no one's. Its cookie is recorded first in ``silver.shared_identifiers`` (the cookie alone:
never who held it), because the erased account's links go: without the record, the next
rebuild of the persons would see the other member as its only holder, attach the cookie to
them and credit them with the subject's logged-out visits. Organize leaves a recorded cookie
out of the identity map, grown or rebuilt, full refresh included. The record goes when the
last live holder is erased: the cookie is then theirs (:func:`crmlake.subjects.linked_cookies`).

Shared by organize (its first step) and the ``crmlake erase`` command. Which tables an
erasure touches and how is the catalog's: every table whose ``subject`` rule says how a
subject's rows are found (:mod:`crmlake.subjects`, which also answers subject-access
requests), each deleted or blanked as the rule says.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import json
import os
from functools import partial, reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.config import Conf
from crmlake.exports import amend_exports, amend_person_lists
from crmlake.faults import crash_point
from crmlake.files import local_path
from crmlake.isolation import isolated
from crmlake.lake import Lake, TableSpec
from crmlake.log import get_logger
from crmlake.people import ACCOUNT, COOKIE
from crmlake.subjects import Subject, logged_into_by_others, subject_condition, subject_of

log = get_logger("privacy")
ERASURE_LOG = "gold.erasure_log"
SHARED_IDENTIFIERS = "silver.shared_identifiers"
ERASED_PARTNERS = "silver.erased_partners"
PLANS_FOLDER = "_erasures"
# A plan's record of how many receipts its request had when it was made, and why an erasure done again was due.
RECEIPTS_BEFORE, AGAIN_BECAUSE = "receipts_before", "again_because"


def erasures_due(profile_changes: DataFrame, receipts: DataFrame, records: DataFrame | None = None, pending: tuple = ()) -> DataFrame:
    """Return the erase requests to apply now, one row per account.

    Takes bronze customers (account_id, op, updated_time, ingested_at), the receipts
    (``request_id``, one row each), optionally ``records`` (account_id, table: one row per record
    newly arrived in the other bronze sources, :func:`records_of_accounts` of the run's new
    rows) and ``pending``, the request ids of the plans on disk (:func:`remove_receipted_plans`).

    An account is due when its first erase request has no receipt yet, when upserts of it
    are still in bronze, when its erasure was receipted and records of it arrived since (a
    stale system re-sent them), or when its request has a plan pending (an erasure done again
    that failed or was killed before its receipt).

    Columns: account_id, requested_at (its first erase request's time), upserts (rows still
    in bronze), refused_upserts (those that arrived after the request), request_id, receipts
    (how many it has), records (its ``records``, whatever the receipt), late_tables (the
    tables they are in), late_records (its ``records`` when its erasure was receipted already;
    0 otherwise: an erasure not yet done takes them, and one resumed after a kill does those
    tables again, finished or not: :func:`_apply_erasure`).
    """
    requests = (
        profile_changes.where(F.col("op") == "erase")
        .groupBy("account_id")
        .agg(F.min("updated_time").alias("requested_at"), F.min("ingested_at").alias("_request_ingested_at"))
    )
    upserts = profile_changes.where(F.col("op") == "upsert").join(requests, "account_id").groupBy("account_id").agg(
        F.count(F.lit(1)).alias("upserts"),
        F.sum(F.when(F.col("ingested_at") > F.col("_request_ingested_at"), 1).otherwise(0)).alias("refused_upserts"),
    )
    with_counts = requests.join(upserts, "account_id", "left")
    if records is None:
        with_counts = with_counts.withColumn("_records", F.lit(None).cast("long")).withColumn("_tables", F.lit(None).cast("array<string>"))
    else:
        found = records.join(requests.select("account_id"), "account_id", "left_semi").groupBy("account_id").agg(
            F.count(F.lit(1)).alias("_records"), F.array_sort(F.collect_set("table")).alias("_tables"))
        with_counts = with_counts.join(found, "account_id", "left")
    with_id = with_counts.select(
        "account_id",
        "requested_at",
        F.coalesce("upserts", F.lit(0)).cast("long").alias("upserts"),
        F.coalesce("refused_upserts", F.lit(0)).cast("long").alias("refused_upserts"),
        F.sha2(F.concat_ws("|", "account_id", F.date_format(F.col("requested_at"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")), 256).substr(1, 32).alias("request_id"),
        "_records",
        "_tables",
    )
    receipted = receipts.groupBy("request_id").agg(F.count(F.lit(1)).alias("receipts")).withColumn("_receipted", F.lit(True))
    return (
        with_id.join(receipted, "request_id", "left")
        .withColumn("receipts", F.coalesce("receipts", F.lit(0)).cast("long"))
        .withColumn("records", F.coalesce("_records", F.lit(0)).cast("long"))
        .withColumn("late_tables", F.coalesce("_tables", F.array().cast("array<string>")))
        .withColumn("late_records", F.when(F.col("_receipted"), F.col("records")).otherwise(F.lit(0)).cast("long"))
        .where(F.col("_receipted").isNull() | (F.col("upserts") > 0) | (F.col("late_records") > 0) | F.col("request_id").isin(*pending))
        .select("account_id", "requested_at", "upserts", "refused_upserts", "request_id", "receipts", "records", "late_tables", "late_records")
    )


def records_of_accounts(lake: Lake, rows: dict[str, DataFrame]) -> DataFrame:
    """Return the account ids held by ``rows`` (table name -> some of its rows: organize passes
    the run's new rows of the bronze sources other than bronze.customers), one row (columns
    ``account_id`` and ``table``) per record an erasure of that account would change, as each table's
    ``subject`` rule says: the values of its columns matched by ``account`` (an array's each),
    on the rows meeting its ``where``, and for a ``blank`` rule only those holding something
    to blank (an erased account's sale stays, blanked: its status changes are no late data).
    Only those columns are read: the account ids alone, never the rows' history."""
    found = []
    for table, frame in rows.items():
        spec = lake.catalog.spec(table)
        erasable = _erasable(spec)
        for column, kind in spec.subject_match.items():
            if kind != "account":
                continue
            value = F.explode(F.col(column)) if spec.columns[column].lower().startswith("array") else F.col(column)
            found.append(frame.where(erasable).select(value.alias("account_id"), F.lit(table).alias("table")).where(F.col("account_id").isNotNull()))
    return reduce(DataFrame.unionByName, found) if found else lake.spark.createDataFrame([], "account_id string, table string")


def plans_folder(lake_root: str) -> str:
    """Return the local folder of the erasures' plans, ``<lake>/_erasures`` (the lake root is
    a local or mounted path, as for the lake's lease)."""
    return os.path.join(local_path(lake_root) or lake_root, PLANS_FOLDER)


class ErasurePlan:
    """One erasure's durable state, ``<lake>/_erasures/<request_id>.json``: the subject's
    identifiers (looked up before anything is deleted) and the steps already done with what
    each removed. Written whole to a temporary file and renamed over the last state, so a
    kill leaves the previous state or the next, never half a file. It holds personal data,
    and is deleted as soon as the erasure's receipt is written."""

    def __init__(self, lake_root: str, request_id: str):
        self.path = os.path.join(plans_folder(lake_root), f"{request_id}.json")
        self.subject: Subject | None = None
        self.done: dict = {}   # step ("table:<name>", "rewritten:<name>", "earlier:<name>", "exports", ...) -> what it removed

    @classmethod
    def load(cls, lake_root: str, request_id: str) -> "ErasurePlan":
        """Return the plan of ``request_id`` as last saved, or an empty one (no subject yet)."""
        plan = cls(lake_root, request_id)
        if os.path.exists(plan.path):
            with open(plan.path, encoding="utf-8") as fh:
                state = json.load(fh)
            # JSON gives lists: the earlier persons' (person, from, to) are tuples again, as subject_of made them.
            plan.subject = Subject(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) for k, v in state["subject"].items()})
            plan.done = state["done"]
        return plan

    def save(self) -> None:
        """Write the plan's state durably (temporary file, fsync, rename)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump({"subject": dataclasses.asdict(self.subject), "done": self.done}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, self.path)

    def step(self, name: str, outcome) -> None:
        """Record step ``name`` as done with ``outcome`` (durably)."""
        self.done[name] = outcome
        self.save()

    def redo(self, tables) -> None:
        """Mark the erasure of ``tables`` to be done again, keeping what it removed so far
        (``earlier:<table>``, added to the next pass's by :func:`erase_subject`)."""
        for table in tables:
            if f"table:{table}" in self.done:
                before = self.done.pop(f"table:{table}")
                self.done.pop(f"rewritten:{table}", None)
                kept = self.done.get(f"earlier:{table}", {"rows": 0, "files": []})
                self.done[f"earlier:{table}"] = {"rows": kept["rows"] + before["rows"], "files": kept["files"] + before["files"]}
        self.save()

    def remove(self) -> None:
        """Delete the plan, and any temporary copy a save killed midway left (the erasure is receipted)."""
        for path in [self.path, *glob.glob(f"{glob.escape(self.path)}.*.tmp")]:
            if os.path.exists(path):
                os.remove(path)


def pending_accounts_with_email(lake_root: str, email: str) -> list[str]:
    """Return the accounts of the erasures left half done (a plan on disk) whose subject held
    ``email`` (trimmed, any case): their tables may no longer hold it, their plan does."""
    folder, wanted = plans_folder(lake_root), email.strip().lower()
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json")) if os.path.isdir(folder) else []
    plans = [ErasurePlan.load(lake_root, name[: -len(".json")]).subject for name in names]
    return sorted({a for subject in plans if wanted in subject.emails for a in subject.account_ids})


def remove_receipted_plans(lake: Lake, receipts: DataFrame) -> tuple:
    """Delete the plans whose erasure was receipted since they were made (a run killed between
    the receipt and the plan's removal); return the request ids of the plans left, pending."""
    folder = plans_folder(lake.conf.lake_root)
    on_disk = [name[: -len(".json")] for name in os.listdir(folder) if name.endswith(".json")] if os.path.isdir(folder) else []
    if not on_disk:
        return ()
    # Safe to collect: the receipts of the few plans on disk.
    counts = {r["request_id"]: r["n"] for r in receipts.where(F.col("request_id").isin(on_disk)).groupBy("request_id").agg(F.count(F.lit(1)).alias("n")).collect()}
    pending = []
    for request_id in on_disk:
        plan = ErasurePlan.load(lake.conf.lake_root, request_id)
        if counts.get(request_id, 0) > plan.done.get(RECEIPTS_BEFORE, 0):
            plan.remove()
        else:
            pending.append(request_id)
    return tuple(pending)


def _erasable(spec: TableSpec) -> Column:
    """Return the condition a row of ``spec``'s table must meet, whoever's it is, for an erasure
    to change it: the rule's fixed ``where``, and for a ``blank`` rule something to blank."""
    condition = F.expr(spec.subject_where) if spec.subject_where else F.lit(True)
    if spec.erase == "blank":
        condition = condition & reduce(lambda a, b: a | b, [F.col(c).isNotNull() for c in spec.personal])
    return condition


def _erased_rows(spec: TableSpec) -> Column:
    """Return the condition selecting the rows an erasure changes in ``spec``'s table: the
    subject's rows (:func:`~crmlake.subjects.subject_condition`), and for a ``blank`` rule
    only those holding something to blank (the others stay as they are, uncounted)."""
    condition = subject_condition(spec)
    if spec.erase == "blank":
        condition = condition & _erasable(spec)
    return condition


def record_shared_cookies(lake: Lake, subject: Subject) -> int:
    """Record in silver.shared_identifiers the cookies ``subject`` shares (:attr:`Subject.shared_cookies`)
    that another person's live account (no erase request) logged in on, with tracking consent
    or not (:func:`~crmlake.subjects.logged_into_by_others`); return how many. A cookie whose
    other holders were erased meanwhile is not recorded: it is no one's to keep apart."""
    if not subject.shared_cookies:
        return 0
    still = logged_into_by_others(lake, subject.shared_cookies, subject.account_ids, subject.person_ids)
    if still:
        shared = lake.spark.createDataFrame([(COOKIE, cookie) for cookie in still], "identifier_type string, identifier string")
        lake.merge(SHARED_IDENTIFIERS, shared, keys=["identifier_type", "identifier"], order_by="identifier")
    return len(still)


def record_erased_partners(lake: Lake, subject: Subject) -> int:
    """Record in silver.erased_partners the other live accounts of ``subject``'s persons (the
    identity map holds them whether or not the subject's own rows are gone yet); return how
    many. Decide keeps their person out of every audience: the erasure takes the erased
    account's consent and unsubscribes with it, and its "no" must still hold for the person."""
    if not subject.person_ids or not lake.exists("silver.identity_map"):
        return 0
    persons = lake.spark.createDataFrame([(p,) for p in subject.person_ids], "person_id string")
    partners = (
        lake.read("silver.identity_map").where(F.col("identifier_type") == ACCOUNT).join(persons, "person_id", "left_semi")
        .where(~F.col("identifier").isin(*subject.account_ids)).select(F.col("identifier").alias("account_id")).distinct().cache()
    )
    # Safe to count: the accounts of one person.
    recorded = partners.count()
    if recorded:
        lake.merge(ERASED_PARTNERS, partners, keys=["account_id"], order_by="account_id")
    partners.unpersist()
    return recorded


def erase_subject(lake: Lake, plan: ErasurePlan, exports_root: str, request_id: str) -> dict:
    """Apply ``plan``'s erasure to every table whose catalog entry has a ``subject`` rule (each
    deleted or blanked as it says), the leftovers of killed runs and every export, skipping
    the steps the plan records as done; return what was touched: tables, rows removed per
    table, files removed, exports amended."""
    subject = plan.subject
    # First, while its links are still there to find it by: kept apart, whatever else is done or killed.
    if "shared_cookies" not in plan.done:
        plan.step("shared_cookies", record_shared_cookies(lake, subject))
    if "erased_partners" not in plan.done:
        plan.step("erased_partners", record_erased_partners(lake, subject))
    frame = subject.frame(lake.spark).cache()
    for spec in lake.catalog.subject_tables():
        step = f"table:{spec.name}"
        if step in plan.done:
            continue
        blank = spec.personal if spec.erase == "blank" else ()
        # Recorded once committed: a run killed before the table's vacuum matches nothing there again.
        rewritten = f"rewritten:{spec.name}"
        result = lake.erase(spec.name, frame, _erased_rows(spec), blank=blank, committed=partial(plan.step, rewritten))
        rows = result.rows or plan.done.get(rewritten, 0)
        earlier = plan.done.get(f"earlier:{spec.name}", {"rows": 0, "files": []})   # a pass before a kill (ErasurePlan.redo)
        files = earlier["files"] + [f"{spec.name.replace('.', '/')}/{path}" for path in result.files_removed]
        plan.step(step, {"rows": earlier["rows"] + rows, "files": files})
        crash_point("erase.table_erased")
    frame.unpersist()
    if "leftovers" not in plan.done:
        plan.step("leftovers", lake.remove_leftovers())
    if "exports" not in plan.done:
        amended = amend_exports(exports_root, subject.person_ids, subject.email_hashes, subject.phone_hashes, subject.platform_hashes, request_id,
                                subject.earlier_persons)
        plan.step("exports", amended)
        crash_point("erase.exports_amended")
    if "person_lists" not in plan.done:
        plan.step("person_lists", amend_person_lists(exports_root, subject.person_ids, subject.earlier_persons))
    tables = {step.split(":", 1)[1]: done for step, done in plan.done.items() if step.startswith("table:") and done["rows"]}
    return {
        "tables": sorted(tables),
        "rows_removed": {name: done["rows"] for name, done in tables.items()},
        "files_removed": sorted(path for done in tables.values() for path in done["files"]),
        "exports_amended": plan.done["exports"] + plan.done["person_lists"],
    }


def apply_erasures(lake: Lake, conf: Conf, profile_changes: DataFrame | None = None, new_rows: dict[str, DataFrame] | None = None) -> dict:
    """Apply every erase request due (see :func:`erasures_due`) in ``profile_changes`` (default:
    bronze.customers as it is now; organize passes the snapshot it pinned), resuming any
    erasure a killed run left half done from its plan, and write one receipt each to
    gold.erasure_log.

    ``new_rows`` (table name -> rows newly arrived in it; organize passes the run's new rows
    of the other bronze sources) makes an account erased earlier due again when they hold
    records of it (:func:`records_of_accounts`): its erasure is done again from a fresh plan,
    and its receipt's reason says ``late_record``. Returns the number of accounts erased, of
    upserts refused, of late records found, and the erasures that failed (``failed``:
    ``erasure <request id>`` -> why): each is isolated, so the others are applied, and it
    stays due, so the next run resumes it from its plan (a plan on disk is due whatever
    the receipts: an erasure done again keeps its own until its own receipt)."""
    receipts = lake.read_or_empty(ERASURE_LOG)
    pending = remove_receipted_plans(lake, receipts)
    if profile_changes is None:
        if not lake.exists("bronze.customers"):
            return {"erased_accounts": 0, "refused_upserts": 0, "late_records": 0, "failed": {}}
        profile_changes = lake.read("bronze.customers")
    records = records_of_accounts(lake, new_rows) if new_rows else None
    # Safe to collect: one row per erase request due now (rare).
    due = erasures_due(profile_changes, receipts, records, pending).collect()
    region = conf.business.default_phone_region
    done, failed = [], {}
    for request in due:
        with isolated(f"erasure {request['request_id']}", failed, log):
            _apply_erasure(lake, conf, request, region)
            done.append(request)
    return {"erased_accounts": len(done), "refused_upserts": sum(int(r["refused_upserts"]) for r in done),
            "late_records": sum(int(r["late_records"]) for r in done), "failed": failed}


def _apply_erasure(lake: Lake, conf: Conf, request, region: str) -> None:
    """Apply one erasure due (a row of :func:`erasures_due`) from its plan, made first if need
    be, then write its receipt and delete the plan. A plan a killed run left is resumed, the
    tables the request's new records arrived in (``late_tables``) done again though it
    finished them (:meth:`ErasurePlan.redo`). The receipt's reason is ``request``, or
    what made an erasure done before due again: ``refused_upsert``, ``late_record`` (both,
    comma-separated, when both)."""
    request_id = request["request_id"]
    plan = ErasurePlan.load(conf.lake_root, request_id)
    if plan.subject is not None:   # resumed: records that arrived since in a table it finished are taken too
        plan.redo(request["late_tables"])
    else:   # first attempt: look the subject up while the tables still hold it
        plan.subject = subject_of(lake, request["account_id"], region)
        plan.done[RECEIPTS_BEFORE] = int(request["receipts"])
        plan.done[AGAIN_BECAUSE] = ",".join(r for r, n in (("refused_upsert", request["refused_upserts"]), ("late_record", request["late_records"])) if n)
        plan.save()
        crash_point("erase.planned")
    touched = erase_subject(lake, plan, conf.exports_root, request_id)
    reason = plan.done.get(AGAIN_BECAUSE) or "request"
    log.info("erasure %s (%s): rows %s, %d files removed, exports amended %s", request_id, reason,
             touched["rows_removed"], len(touched["files_removed"]), touched["exports_amended"])
    receipt = (request_id, reason, request["requested_at"], dt.datetime.now(dt.timezone.utc), touched["tables"],
               touched["rows_removed"], touched["files_removed"], touched["exports_amended"], int(request["refused_upserts"]))
    lake.append(ERASURE_LOG, lake.spark.createDataFrame([receipt], lake.catalog.spec(ERASURE_LOG).ddl))
    crash_point("erase.receipted")
    plan.remove()


def request_erasure(lake: Lake, account_ids: list[str], requested_at: dt.datetime) -> None:
    """Record an erase request per account in bronze.customers, as if the landing zone had
    delivered it, so that it is final: later upserts of these accounts are refused."""
    spark = lake.spark
    requests = spark.createDataFrame(
        [(a, "erase", requested_at, "crmlake erase", 0, requested_at) for a in account_ids],
        "account_id string, op string, updated_time timestamp, source_file string, source_line bigint, ingested_at timestamp",
    ).withColumn("record_key", F.sha2(F.concat_ws("|", "account_id", "op", F.col("updated_time").cast("string")), 256))
    lake.append("bronze.customers", lake.catalog.spec("bronze.customers").padded(requests))
