"""Data-subject rights over the whole lake and the exports: erasure, finality, receipts.

An erase request (``op = 'erase'`` in bronze.customers, from the landing zone or from
``crmlake erase``) removes the account's personal data from every table the catalog says
holds it (each entry's ``erase`` rule), from the quarantine's raw text and from every
audience export on disk, then deletes at once the files that held it. Erasure is final:
the request stays in bronze (it holds no personal data), and any later upsert of that
account is erased again on arrival and counted as refused. Each erasure leaves a receipt
in ``gold.erasure_log``: request id, time, tables, files removed, rows removed, exports
amended; no personal data.

Shared by organize (its first step) and the ``crmlake erase`` command. A subject-access
request (``crmlake subject-access``) writes everything held about a person as JSON and CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.config import Conf
from crmlake.decide.export import PLATFORM_FORMATS, amend_exports, platform_hashes
from crmlake.lake import Lake
from crmlake.log import get_logger
from crmlake.people import ACCOUNT, e164_phone, normalised_email, sha256_hex, with_session_person_id

log = get_logger("privacy")
ERASURE_LOG = "gold.erasure_log"


def erasures_due(profile_changes: DataFrame, receipts: DataFrame) -> DataFrame:
    """Return the erase requests to apply now, one row per account.

    Takes bronze customers (account_id, op, updated_time, ingested_at) and the request ids
    already receipted (``request_id``). An account is due when its first erase request has
    no receipt yet, or when upserts of it are still in bronze (a stale system re-sent it).
    Columns: account_id, requested_at (its first erase request's time), upserts (rows
    still in bronze), refused_upserts (those that arrived after the request), request_id.
    """
    requests = (
        profile_changes.where("op = 'erase'")
        .groupBy("account_id")
        .agg(F.min("updated_time").alias("requested_at"), F.min("ingested_at").alias("_request_ingested_at"))
    )
    upserts = profile_changes.where("op = 'upsert'").join(requests, "account_id").groupBy("account_id").agg(
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
    return with_id.join(unreceipted.unionByName(with_id.where("upserts > 0").select("account_id")).distinct(), "account_id", "left_semi")


@dataclass(frozen=True)
class Subject:
    """What identifies one account's person across the lake and the exports (small: one account)."""

    account_ids: tuple
    emails: tuple           # normalised (trimmed, lower case)
    email_hashes: tuple
    phone_hashes: tuple
    cookies: tuple          # anonymous ids linked to the account with tracking consent
    person_ids: tuple
    platform_hashes: tuple  # its email and phone hashed the way each ad platform's upload file has them

    def placeholders(self) -> dict:
        """Return the SQL lists the catalog's ``erase_where`` predicates are written over."""
        needles = [f'"{a.lower()}"' for a in self.account_ids] + list(self.emails)
        return {
            "accounts": _sql_list(self.account_ids),
            "email_hashes": _sql_list(self.email_hashes),
            "phone_hashes": _sql_list(self.phone_hashes),
            "identifiers": _sql_list((*self.account_ids, *self.email_hashes, *self.phone_hashes, *self.cookies)),
            "needles": _sql_list(needles),
        }


def _sql_list(values) -> str:
    """Render values as a SQL list body; an empty list matches nothing (``NULL``)."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"


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
    cookies = (
        _values(lake.read("silver.identity_links").where(F.col("account_id") == account_id), "anonymous_id")
        if lake.exists("silver.identity_links") else ()
    )
    persons = (
        _values(lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & (F.col("identifier") == account_id)), "person_id")
        if lake.exists("silver.identity_map") else ()
    )
    platform = {value for i in range(len(uploaded)) for value in held[f"_platform_{i}"]}
    return Subject((account_id,), tuple(sorted(held["email"])), tuple(sorted(held["email_hash"])), tuple(sorted(held["phone_hash"])), cookies, persons,
                   tuple(sorted(platform)))


def erase_subject(lake: Lake, subject: Subject, exports_root: str, request: str) -> dict:
    """Erase ``subject`` from every table the catalog says holds it and from every export;
    return what was touched: tables, rows removed per table, files removed, exports amended."""
    values = subject.placeholders()
    rows, files = {}, []
    for spec in lake.catalog.tables.values():
        if not spec.erase:
            continue
        blank = spec.personal if spec.erase == "blank" else ()
        result = lake.erase(spec.name, spec.erase_where.format(**values), blank=blank)
        if result.rows:
            rows[spec.name] = result.rows
            files += [f"{spec.name.replace('.', '/')}/{path}" for path in result.files_removed]
    amended = amend_exports(exports_root, subject.person_ids, subject.email_hashes, subject.phone_hashes, subject.platform_hashes, request)
    return {"tables": sorted(rows), "rows_removed": rows, "files_removed": sorted(files), "exports_amended": amended}


def apply_erasures(lake: Lake, conf: Conf, profile_changes: DataFrame | None = None) -> dict:
    """Apply every erase request due (see :func:`erasures_due`) in ``profile_changes`` (default:
    bronze.customers as it is now; organize passes the snapshot it pinned) and write one
    receipt each to gold.erasure_log; return the number of accounts erased and of upserts refused."""
    spark = lake.spark
    if profile_changes is None:
        if not lake.exists("bronze.customers"):
            return {"erased_accounts": 0, "refused_upserts": 0}
        profile_changes = lake.read("bronze.customers")
    receipts = lake.read_or_empty(ERASURE_LOG)
    # Safe to collect: one row per erase request due now (rare).
    due = erasures_due(profile_changes, receipts).collect()
    region = str(conf.get("organize.identity.default_phone_region", "TW"))
    rows = []
    for request in due:
        subject = subject_of(lake, request["account_id"], region)
        touched = erase_subject(lake, subject, conf.exports_root, request["request_id"])
        reason = "refused_upsert" if request["refused_upserts"] else "request"
        log.info("erasure %s (%s): rows %s, %d files removed, exports amended %s", request["request_id"], reason,
                 touched["rows_removed"], len(touched["files_removed"]), touched["exports_amended"])
        rows.append((request["request_id"], reason, request["requested_at"], dt.datetime.now(dt.timezone.utc), touched["tables"],
                     touched["rows_removed"], touched["files_removed"], touched["exports_amended"], int(request["refused_upserts"])))
    if rows:
        lake.append(ERASURE_LOG, spark.createDataFrame(rows, lake.catalog.spec(ERASURE_LOG).ddl))
    return {"erased_accounts": len(due), "refused_upserts": sum(int(r["refused_upserts"]) for r in due)}



def accounts_with_email(lake: Lake, email: str) -> list[str]:
    """Return the accounts whose profile (any version in bronze) holds ``email``, matched as
    the contract says: trimmed and case-insensitively."""
    wanted = normalised_email(F.lit(email))
    # Safe to collect: the accounts of one address.
    return sorted(r["account_id"] for r in lake.read("bronze.customers").where(normalised_email(F.col("email")) == wanted).select("account_id").distinct().collect())


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
def _subject_frames(lake: Lake, accounts: list[str], email: str) -> dict:
    read = lake.read_or_empty
    persons_of = read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & F.col("identifier").isin(accounts))
    persons = persons_of.select("person_id").distinct()
    by_account = F.col("account_id").isin(accounts)
    frames = {
        "profile": read("silver.customers").where(by_account),
        "history": read("silver.customer_history").where(by_account),
        "person": read("silver.customer_360").join(persons, "person_id", "left_semi"),
        "orders": read("silver.order_lines").where(by_account | (normalised_email(F.col("guest_email")) == normalised_email(F.lit(email)))),
        "sessions": with_session_person_id(read("silver.sessions"), read("silver.identity_map")).join(persons, "person_id", "left_semi"),
        "service_contacts": read("bronze.interactions").where(by_account),
        "scores_and_segments": read("gold.customer_scores").join(persons, "person_id", "left_semi"),
        "uplift_scores": read("gold.audience_uplift").join(persons, "person_id", "left_semi"),
        "audiences": read("gold.contact_history").join(persons, "person_id", "left_semi"),
    }
    return frames


def subject_access(lake: Lake, email: str, out_dir: str) -> dict:
    """Write everything held about the person with ``email`` under ``out_dir``: one JSON and
    one CSV file per dataset (profile, history, person, orders, sessions, service contacts,
    scores and segments, uplift scores, audiences) and ``index.json``; return the rows per dataset.

    A person's rows are few: each dataset is collected on the driver.
    """
    accounts = accounts_with_email(lake, email)
    if not accounts:
        return {}
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, frame in _subject_frames(lake, accounts, email).items():
        rows = [r.asDict(recursive=True) for r in frame.collect()]
        with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, default=str)
        with open(os.path.join(out_dir, f"{name}.csv"), "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(frame.columns)
            writer.writerows([[row[c] for c in frame.columns] for row in rows])
        counts[name] = len(rows)
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf-8") as fh:
        json.dump({"accounts": accounts, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": counts}, fh, indent=2)
    return counts
