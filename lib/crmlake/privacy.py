"""Data-subject rights over the whole lake and the exports: erasure, finality, receipts.

An erase request (``op = 'erase'`` in bronze.customers, from the landing zone or from
``crmlake erase``) removes the account's personal data from every table the catalog says
holds it (each entry's ``erase`` and ``subject`` rules), from the quarantine's raw text,
from every audience export on disk and from what killed runs left behind (staging files,
checkpoints), then deletes at once the files that held it. Erasure is final: the request
stays in bronze (it holds no personal data), and any later upsert of that account is erased
again on arrival and counted as refused.

An erasure is a durable workflow, so that a process killed at any step is finished by the
next run from where it stopped, never receipted early:

1. **plan**: the subject's identifiers (accounts, emails, their hashes, every ad platform's
   hashes, cookies, persons) are looked up while the tables still hold them and written to
   ``<lake>/_erasures/<request_id>.json`` before anything is deleted;
2. **apply**: table by table, then the exports; each step is idempotent and recorded in the
   plan when done, so a resumed run skips it;
3. **receipt**: one row in ``gold.erasure_log`` (request id, time, tables, files removed,
   rows removed, exports amended; no personal data), written last;
4. the plan, the only other place holding the subject's values, is deleted.

No value of the subject is ever written into SQL text: each table's rows are found by
comparing its columns with a one-row frame of the subject's values (:meth:`Subject.frame`).

Shared by organize (its first step) and the ``crmlake erase`` command. A subject-access
request (``crmlake subject-access``) writes everything held about a person as JSON and CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import glob
import json
import os
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.config import Conf
from crmlake.csv_cells import safe_rows
from crmlake.exports import PLATFORM_FORMATS, amend_exports, platform_hashes
from crmlake.faults import crash_point
from crmlake.files import local_path
from crmlake.isolation import isolated
from crmlake.lake import Lake, TableSpec
from crmlake.log import get_logger
from crmlake.people import ACCOUNT, COOKIE, e164_phone, normalised_email, sha256_hex, with_order_person_id, with_session_person_id

log = get_logger("privacy")
ERASURE_LOG = "gold.erasure_log"
PLANS_FOLDER = "_erasures"


def erasures_due(profile_changes: DataFrame, receipts: DataFrame) -> DataFrame:
    """Return the erase requests to apply now, one row per account.

    Takes bronze customers (account_id, op, updated_time, ingested_at) and the request ids
    already receipted (``request_id``). An account is due when its first erase request has
    no receipt yet, or when upserts of it are still in bronze (a stale system re-sent it).
    Columns: account_id, requested_at (its first erase request's time), upserts (rows
    still in bronze), refused_upserts (those that arrived after the request), request_id.
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
    with_id = requests.join(upserts, "account_id", "left").select(
        "account_id",
        "requested_at",
        F.coalesce("upserts", F.lit(0)).cast("long").alias("upserts"),
        F.coalesce("refused_upserts", F.lit(0)).cast("long").alias("refused_upserts"),
        F.sha2(F.concat_ws("|", "account_id", F.date_format(F.col("requested_at"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")), 256).substr(1, 32).alias("request_id"),
    )
    unreceipted = with_id.join(receipts.select("request_id").distinct(), "request_id", "left_anti").select("account_id")
    return with_id.join(unreceipted.unionByName(with_id.where(F.col("upserts") > 0).select("account_id")).distinct(), "account_id", "left_semi")


@dataclass(frozen=True)
class Subject:
    """What identifies one account's person across the lake and the exports (small: one account)."""

    account_ids: tuple
    emails: tuple           # normalised (trimmed, lower case)
    email_hashes: tuple
    phone_hashes: tuple
    cookies: tuple          # anonymous ids linked to the account with tracking consent, of its person alone
    person_ids: tuple
    platform_hashes: tuple  # its email and phone hashed the way each ad platform's upload file has them

    def frame(self, spark) -> DataFrame:
        """Return the subject as one row of arrays, the data the catalog's ``subject`` rules
        compare a table's columns with (:func:`subject_condition`): ``_subject_accounts``,
        ``_subject_emails``, ``_subject_identifiers`` (accounts, email and phone hashes,
        cookies) and ``_subject_needles`` (account ids as a JSON line quotes them, escaped or
        not, and emails, lower case, as they appear in a raw record's text)."""
        # An account id as a JSON line holds it (quoted, escaped), and the emails as they are.
        needles = [json.dumps(a, ensure_ascii=ascii_only).lower() for a in self.account_ids for ascii_only in (True, False)] + list(self.emails)
        identifiers = [*self.account_ids, *self.email_hashes, *self.phone_hashes, *self.cookies]
        return spark.createDataFrame(
            [(list(self.account_ids), list(self.emails), identifiers, needles)],
            "_subject_accounts array<string>, _subject_emails array<string>, _subject_identifiers array<string>, _subject_needles array<string>",
        )


def subject_condition(spec: TableSpec) -> Column:
    """Return the condition selecting the subject's rows of ``spec``'s table, over its columns
    and those of :meth:`Subject.frame`: a row matching any of the ``subject.match`` columns
    (each by what it holds), and the fixed ``subject.where`` condition when there is one."""
    accounts, identifiers = F.col("_subject_accounts"), F.col("_subject_identifiers")

    def holds(column: str, kind: str) -> Column:
        value = F.col(column)
        if kind == "account":
            is_array = spec.columns[column].lower().startswith("array")
            return F.arrays_overlap(value, accounts) if is_array else F.array_contains(accounts, value)
        if kind == "email":
            return F.array_contains(F.col("_subject_emails"), normalised_email(value))
        if kind == "identifier":
            return F.array_contains(identifiers, value)
        # text: a JSON line mentions the subject, or a CSV line holds one of its accounts as a field
        fields = F.transform(F.split(value, ","), lambda field: F.regexp_replace(F.regexp_replace(F.trim(field), '^"|"$', ""), '""', '"'))
        return F.exists(F.col("_subject_needles"), lambda needle: F.lower(value).contains(needle)) | F.arrays_overlap(fields, accounts)

    condition = reduce(lambda a, b: a | b, [F.coalesce(holds(c, k), F.lit(False)) for c, k in spec.subject_match.items()])
    return condition & F.expr(spec.subject_where) if spec.subject_where else condition


def _values(df: DataFrame, column: str) -> tuple:
    # Safe to collect: the distinct identifiers of one account.
    return tuple(sorted(r[0] for r in df.select(column).where(F.col(column).isNotNull()).distinct().collect()))


def subject_of(lake: Lake, account_id: str, default_phone_region: str) -> Subject:
    """Return the identifiers of ``account_id``: its emails and phones (as held in bronze, any
    version) with their hashes, the cookies linked to it, the persons the identity map gives it."""
    profiles = lake.read("bronze.customers").where((F.col("account_id") == account_id) & (F.col("op") == "upsert"))
    uploaded = [hashed for platform_format in PLATFORM_FORMATS for hashed in platform_hashes(default_phone_region, platform_format)]
    # One scan of bronze.customers for every value (each platform hashes its own normalisation).
    # Safe to collect: one row, the distinct values of one account.
    held = profiles.agg(
        *[F.collect_set(column).alias(name) for name, column in (
            ("email", normalised_email(F.col("email"))),
            ("email_hash", sha256_hex(normalised_email(F.col("email")))),
            ("phone_hash", sha256_hex(e164_phone(F.col("phone"), default_phone_region))),
        )],
        *[F.collect_set(column).alias(f"_platform_{i}") for i, column in enumerate(uploaded)],
    ).first()
    persons = (
        _values(lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & (F.col("identifier") == account_id)), "person_id")
        if lake.exists("silver.identity_map") else ()
    )
    # The account's cookies that are its person's alone: a computer shared with a household
    # member is not the subject's (the rows logged in on it are, by account).
    cookies = (
        _values(
            lake.read("silver.identity_links").where(F.col("account_id") == account_id).join(
                lake.read("silver.identity_map").where((F.col("identifier_type") == COOKIE) & F.col("person_id").isin(*persons))
                .select(F.col("identifier").alias("anonymous_id")), "anonymous_id", "left_semi"),
            "anonymous_id",
        )
        if lake.exists("silver.identity_links") and lake.exists("silver.identity_map") else ()
    )
    platform = {value for i in range(len(uploaded)) for value in held[f"_platform_{i}"]}
    return Subject((account_id,), tuple(sorted(held["email"])), tuple(sorted(held["email_hash"])), tuple(sorted(held["phone_hash"])), cookies, persons,
                   tuple(sorted(platform)))


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
        self.done: dict = {}   # step ("table:<name>" or "exports") -> what it removed

    @classmethod
    def load(cls, lake_root: str, request_id: str) -> "ErasurePlan":
        """Return the plan of ``request_id`` as last saved, or an empty one (no subject yet)."""
        plan = cls(lake_root, request_id)
        if os.path.exists(plan.path):
            with open(plan.path, encoding="utf-8") as fh:
                state = json.load(fh)
            plan.subject = Subject(**{k: tuple(v) for k, v in state["subject"].items()})
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


def remove_receipted_plans(lake: Lake, receipts: DataFrame) -> int:
    """Delete the plans whose erasure already has a receipt (a run killed between the receipt
    and the plan's removal); return how many."""
    folder = plans_folder(lake.conf.lake_root)
    pending = [name[: -len(".json")] for name in os.listdir(folder) if name.endswith(".json")] if os.path.isdir(folder) else []
    if not pending:
        return 0
    # Safe to collect: among the few plans on disk, those receipted.
    receipted = [r["request_id"] for r in receipts.where(F.col("request_id").isin(pending)).select("request_id").distinct().collect()]
    for request_id in receipted:
        ErasurePlan(lake.conf.lake_root, request_id).remove()
    return len(receipted)


def erase_subject(lake: Lake, plan: ErasurePlan, exports_root: str, request_id: str) -> dict:
    """Apply ``plan``'s erasure to every table whose catalog entry has a ``subject`` rule, the
    leftovers of killed runs and every export, skipping the steps the plan records as done;
    return what was touched: tables, rows removed per table, files removed, exports amended."""
    subject = plan.subject
    frame = subject.frame(lake.spark).cache()
    for spec in lake.catalog.tables.values():
        step = f"table:{spec.name}"
        if not spec.erase or step in plan.done:
            continue
        blank = spec.personal if spec.erase == "blank" else ()
        result = lake.erase(spec.name, frame, subject_condition(spec), blank=blank)
        plan.step(step, {"rows": result.rows, "files": [f"{spec.name.replace('.', '/')}/{path}" for path in result.files_removed]})
        crash_point("erase.table_erased")
    frame.unpersist()
    if "leftovers" not in plan.done:
        plan.step("leftovers", lake.remove_leftovers())
    if "exports" not in plan.done:
        amended = amend_exports(exports_root, subject.person_ids, subject.email_hashes, subject.phone_hashes, subject.platform_hashes, request_id)
        plan.step("exports", amended)
        crash_point("erase.exports_amended")
    tables = {step.split(":", 1)[1]: done for step, done in plan.done.items() if step.startswith("table:") and done["rows"]}
    return {
        "tables": sorted(tables),
        "rows_removed": {name: done["rows"] for name, done in tables.items()},
        "files_removed": sorted(path for done in tables.values() for path in done["files"]),
        "exports_amended": plan.done["exports"],
    }


def apply_erasures(lake: Lake, conf: Conf, profile_changes: DataFrame | None = None) -> dict:
    """Apply every erase request due (see :func:`erasures_due`) in ``profile_changes`` (default:
    bronze.customers as it is now; organize passes the snapshot it pinned), resuming any
    erasure a killed run left half done from its plan, and write one receipt each to
    gold.erasure_log; return the number of accounts erased, of upserts refused, and the
    erasures that failed (``failed``: ``erasure <request id>`` -> why): each is isolated, so
    the others are applied, and it stays due, so the next run resumes it from its plan."""
    receipts = lake.read_or_empty(ERASURE_LOG)
    remove_receipted_plans(lake, receipts)
    if profile_changes is None:
        if not lake.exists("bronze.customers"):
            return {"erased_accounts": 0, "refused_upserts": 0, "failed": {}}
        profile_changes = lake.read("bronze.customers")
    # Safe to collect: one row per erase request due now (rare).
    due = erasures_due(profile_changes, receipts).collect()
    region = conf.get("organize.identity.default_phone_region", "TW")
    done, failed = [], {}
    for request in due:
        with isolated(f"erasure {request['request_id']}", failed, log):
            _apply_erasure(lake, conf, request, region)
            done.append(request)
    return {"erased_accounts": len(done), "refused_upserts": sum(int(r["refused_upserts"]) for r in done), "failed": failed}


def _apply_erasure(lake: Lake, conf: Conf, request, region: str) -> None:
    """Apply one erasure due (a row of :func:`erasures_due`) from its plan, made first if need
    be, then write its receipt and delete the plan."""
    request_id = request["request_id"]
    plan = ErasurePlan.load(conf.lake_root, request_id)
    if plan.subject is None:   # first attempt: look the subject up while the tables still hold it
        plan.subject = subject_of(lake, request["account_id"], region)
        plan.save()
        crash_point("erase.planned")
    touched = erase_subject(lake, plan, conf.exports_root, request_id)
    reason = "refused_upsert" if request["refused_upserts"] else "request"
    log.info("erasure %s (%s): rows %s, %d files removed, exports amended %s", request_id, reason,
             touched["rows_removed"], len(touched["files_removed"]), touched["exports_amended"])
    receipt = (request_id, reason, request["requested_at"], dt.datetime.now(dt.timezone.utc), touched["tables"],
               touched["rows_removed"], touched["files_removed"], touched["exports_amended"], int(request["refused_upserts"]))
    lake.append(ERASURE_LOG, lake.spark.createDataFrame([receipt], lake.catalog.spec(ERASURE_LOG).ddl))
    crash_point("erase.receipted")
    plan.remove()


class SharedMailboxError(ValueError):
    """An email held by the accounts of several persons (a family mailbox) names no one subject."""


def accounts_with_email(lake: Lake, email: str) -> list[str]:
    """Return the accounts whose profile (any version in bronze) holds ``email``, matched as
    the contract says: trimmed and case-insensitively."""
    wanted = normalised_email(F.lit(email))
    # Safe to collect: the accounts of one address.
    return sorted(r["account_id"] for r in lake.read("bronze.customers").where(normalised_email(F.col("email")) == wanted).select("account_id").distinct().collect())


def persons_of_accounts(lake: Lake, accounts: list[str]) -> dict:
    """Return ``{person_id: [account_id, ...]}``: the persons the identity map gives ``accounts``
    (an account it does not know is a person of its own, keyed by the account)."""
    known = {}
    if lake.exists("silver.identity_map"):
        # Safe to collect: the rows of a few accounts.
        rows = lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & F.col("identifier").isin(*accounts)).collect()
        known = {r["identifier"]: r["person_id"] for r in rows}
    persons: dict = {}
    for account in accounts:
        persons.setdefault(known.get(account, account), []).append(account)
    return persons


def one_subject(lake: Lake, email: str) -> list[str]:
    """Return the accounts holding ``email`` when they are one person's; raise
    SharedMailboxError when they are several persons' (a family mailbox): a request concerns
    one person, who is then named by account."""
    accounts = accounts_with_email(lake, email)
    persons = persons_of_accounts(lake, accounts)
    if len(persons) > 1:
        raise SharedMailboxError(
            f"the email {email!r} is held by the accounts of {len(persons)} persons (a shared mailbox): "
            "name the requester by --account ACCOUNT_ID; nothing was done"
        )
    return accounts


def request_erasure(lake: Lake, account_ids: list[str], requested_at: dt.datetime) -> None:
    """Record an erase request per account in bronze.customers, as if the landing zone had
    delivered it, so that it is final: later upserts of these accounts are refused."""
    spark = lake.spark
    requests = spark.createDataFrame(
        [(a, "erase", requested_at, "crmlake erase", 0, requested_at) for a in account_ids],
        "account_id string, op string, updated_time timestamp, source_file string, source_line bigint, ingested_at timestamp",
    ).withColumn("record_key", F.sha2(F.concat_ws("|", "account_id", "op", F.col("updated_time").cast("string")), 256))
    lake.append("bronze.customers", lake.catalog.spec("bronze.customers").padded(requests))


# What a subject-access request returns, by file name: the table and how the subject's rows are found.
def _subject_frames(lake: Lake, accounts: list[str], persons: list[str]) -> dict:
    read = lake.read_or_empty
    identity_map = read("silver.identity_map")
    of_person = lambda frame: frame.where(F.col("person_id").isin(*persons))  # noqa: E731
    by_account = F.col("account_id").isin(accounts)
    return {
        "profile": read("silver.customers").where(by_account),
        "history": read("silver.customer_history").where(by_account),
        "person": of_person(read("silver.customer_360")),
        # A guest checkout is the person's when its email is theirs alone (the map attaches it).
        "orders": with_order_person_id(read("silver.order_lines"), identity_map).where(by_account | F.col("person_id").isin(*persons)).drop("person_id"),
        "sessions": of_person(with_session_person_id(read("silver.sessions"), identity_map)),
        "service_contacts": read("bronze.interactions").where(by_account),
        "scores_and_segments": of_person(read("gold.customer_scores")),
        "uplift_scores": of_person(read("gold.audience_uplift")),
        # By account, as erasure finds them: a person id that outlived a split holds the other part's contacts too.
        "audiences": read("gold.contact_history").where(by_account),
    }


def subject_access(lake: Lake, out_dir: str, email: str | None = None, account: str | None = None) -> dict:
    """Write everything held about one person under ``out_dir``: one JSON and one CSV file per
    dataset (profile, history, person, orders, sessions, service contacts, scores and
    segments, uplift scores, audiences) and ``index.json``; return the rows per dataset
    (empty when no account is found).

    The person is named by ``account`` (their person's every account is included) or by
    ``email`` when the accounts holding it are one person's; an email several persons hold
    raises SharedMailboxError (:func:`one_subject`): a household member's data is never
    returned. A person's rows are few: each dataset is collected on the driver.
    """
    named = [account] if account else one_subject(lake, email)
    if not named or (account and not lake.read_or_empty("silver.customers").where(F.col("account_id") == account).limit(1).count()):
        return {}
    persons = sorted(persons_of_accounts(lake, named))
    accounts = sorted({*named, *_accounts_of_persons(lake, persons)})
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, frame in _subject_frames(lake, accounts, persons).items():
        rows = [r.asDict(recursive=True) for r in frame.collect()]
        with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, default=str)
        with open(os.path.join(out_dir, f"{name}.csv"), "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(frame.columns)
            writer.writerows(safe_rows([row[c] for c in frame.columns] for row in rows))
        counts[name] = len(rows)
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf-8") as fh:
        json.dump({"accounts": accounts, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": counts}, fh, indent=2)
    return counts


def _accounts_of_persons(lake: Lake, persons: list[str]) -> list[str]:
    if not lake.exists("silver.identity_map"):
        return []
    # Safe to collect: one person's accounts.
    rows = lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & F.col("person_id").isin(*persons)).select("identifier").collect()
    return [r["identifier"] for r in rows]
