"""Audience files marketers download, published and amended in one atomic step each, with a manifest.

``<exports>/<audience>/<date>`` holds ``audience.csv.gz``, ``audience.parquet``, a score
histogram (``score_histogram.png``) and ``manifest.json`` (definition, counts at every
policy step, models, checksums). It is a symbolic link to one complete version of that
export, ``<exports>/<audience>/.versions/<date>.<uuid>/``: a version is written whole in its
hidden folder, then a new link is renamed over the published one (one ``rename(2)``, atomic),
so a reader following ``<audience>/<date>`` sees the previous version or the new one, never
half of one and never none. The previous version is removed once the link is swapped. A
process killed before the swap leaves the published version as it was; killed after, the new
one. Either way it may leave an unpublished version (possibly holding a person since
erased): :func:`remove_unpublished` deletes every hidden folder of an audience that no
published link names, first thing in every publish and amendment. A real folder in place of
the link (the layout before versions) is moved among the versions when its date is next
published or amended.

The neutral files key contacts by the SHA-256 of the trimmed, lower-cased email and of the
E.164 phone. An audience whose conf names a ``platform_format`` also gets the upload file
that platform documents (:data:`PLATFORM_FORMATS`), with its column names and its own
normalisation before hashing. Raw email and phone are written only for an audience whose
conf allows it on an internal channel. Text cells of the CSV files are neutralised against
spreadsheet formulas (:mod:`crmlake.csv_cells`); the Parquet file keeps the values as they are.

An erasure amends the exports already published (:func:`amend_exports`): each export that
holds the person is rewritten without them as a new version, swapped in the same way, and its
manifest records the amendment (request, time, rows removed) with the new checksums. The
reports' lists of persons to act on (``<exports>/reports/**/*_persons.csv``) are rewritten
without them too (:func:`amend_person_lists`). A person an account of theirs has left (split
off by new evidence) goes from the exports' files by person of the days the account was part
of it, and from the lists of those months (:func:`persons_held`).
Audience names are slugs (:data:`crmlake.config_schema.AUDIENCE_NAME_PATTERN`), so every
export lies in a visible folder directly under the exports root.

The exports root is a local or mounted folder: the swap above is a symbolic link renamed on
its disk, which HDFS and object stores do not offer, so the configuration refuses any other
root (``paths.exports``, :class:`crmlake.config_schema.Paths`: exit 2) and a ``file:`` URI
is read as the folder it names. Files are listed, read, written and checksummed through
:mod:`crmlake.files`, the stages' one file-system layer; the links, renames and removals of
the swap are the local disk's own (``os``).
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import glob
import json
import os
import re
import shutil
import uuid
from typing import Collection

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake import files
from crmlake.config_schema import AUDIENCE_NAME_PATTERN, NOT_AUDIENCES
from crmlake.csv_cells import safe_frame, safe_table
from crmlake.faults import crash_point
from crmlake.log import get_logger
from crmlake.people import e164_phone, normalised_email, sha256_hex
from crmlake.summaries import PERSON_LIST_SUFFIX, REPORTS_DIR

DATA_FILES = ("audience.csv.gz", "audience.parquet")
CHART = "score_histogram.png"
MANIFEST = "manifest.json"
VERSIONS = ".versions"   # <exports>/<audience>/.versions/<date>.<uuid>/: the folders the published links name

log = get_logger("exports")

# The customer-list upload files of the ad platforms, as their public documentation describes them
# (looked up 2026-11):
# * google_customer_match: Google Ads, "Format your customer data file"
#   (https://support.google.com/google-ads/answer/7659867) and its template: a UTF-8 CSV with the
#   English headers "Email" and "Phone"; for hashed data, lower-case and trim the email and format
#   the phone as E.164 ("+" and country code) before SHA-256. Google's normalisation for hashed
#   emails (Google Ads API and Campaign Manager 360 "Enhanced conversions" guides) also removes
#   every "." before "@gmail.com" / "@googlemail.com"; a "+tag" is not removed (not documented).
# * meta_custom_audience: Meta Marketing API, "Custom Audiences" / "Hashing and normalizing data"
#   (https://developers.facebook.com/docs/marketing-api/custom-audience-api): schema keys EMAIL and
#   PHONE; email trimmed and lower-cased; phone digits only with the country code, no "+", no symbols
#   or leading zeros ("447123456", not "+447123456"), then SHA-256 as lower-case hex.
PLATFORM_FORMATS = {
    "google_customer_match": {"file": "google_customer_match.csv", "columns": ("Email", "Phone")},
    "meta_custom_audience": {"file": "meta_custom_audience.csv", "columns": ("EMAIL", "PHONE")},
}
PLATFORM_FILES = tuple(f["file"] for f in PLATFORM_FORMATS.values())


def export_rows(selected: DataFrame, default_phone_region: str, raw_contact: bool) -> DataFrame:
    """Return the rows of an audience file from the policy's treatment group.

    Takes persons with email, phone, propensity_score, propensity_decile, segment, rfm_cell,
    top_category. Columns: person_id, email_sha256, phone_sha256, score, decile, segment,
    top_category (the person's next best category: one file drives personalised messages),
    reason_codes (why this person is here), company_id when the persons stand for companies,
    and email and phone only when ``raw_contact``.
    """
    reasons = F.concat_ws(
        "|",
        F.concat(F.lit("propensity_decile_"), F.col("propensity_decile").cast("string")),
        F.concat(F.lit("segment_"), F.col("segment")),
        F.concat(F.lit("rfm_"), F.col("rfm_cell")),
    )
    columns = [
        "person_id",
        sha256_hex(normalised_email(F.col("email"))).alias("email_sha256"),
        sha256_hex(e164_phone(F.col("phone"), default_phone_region)).alias("phone_sha256"),
        F.round("propensity_score", 6).alias("score"),
        F.col("propensity_decile").alias("decile"),
        "segment",
        "top_category",
        reasons.alias("reason_codes"),
    ]
    if "company_id" in selected.columns:   # an audience of companies: the company each contact stands for
        columns.append("company_id")
    if raw_contact:
        columns += ["email", "phone"]
    return selected.select(*columns)


def google_email(email: Column) -> Column:
    """Return the email as Google normalises it before hashing: trimmed, lower-cased, and for
    gmail.com / googlemail.com addresses without the dots of the part before the ``@``."""
    cleaned = normalised_email(email)
    local, domain = F.substring_index(cleaned, "@", 1), F.substring_index(cleaned, "@", -1)
    gmail = domain.isin("gmail.com", "googlemail.com") & cleaned.contains("@")
    return F.when(gmail, F.concat(F.regexp_replace(local, r"\.", ""), F.lit("@"), domain)).otherwise(cleaned)


def platform_rows(selected: DataFrame, default_phone_region: str, platform_format: str) -> DataFrame:
    """Return the upload rows of ``platform_format`` (a key of :data:`PLATFORM_FORMATS`).

    Takes persons with email and phone. Columns: the platform's documented headers for email
    and phone, each the lower-case hex SHA-256 of the value normalised the platform's way;
    persons with neither are left out (the platform could not match them).
    """
    email_column, phone_column = PLATFORM_FORMATS[platform_format]["columns"]
    email, phone = platform_hashes(default_phone_region, platform_format)
    rows = selected.select(email.alias(email_column), phone.alias(phone_column))
    return rows.where(F.col(email_column).isNotNull() | F.col(phone_column).isNotNull())


def platform_hashes(default_phone_region: str, platform_format: str) -> tuple[Column, Column]:
    """Return the columns ``(email hash, phone hash)`` that ``platform_format`` uploads of the
    ``email`` and ``phone`` columns: lower-case hex SHA-256 of each, normalised the platform's way."""
    e164 = e164_phone(F.col("phone"), default_phone_region)
    if platform_format == "google_customer_match":
        email, phone = google_email(F.col("email")), e164
    else:
        email, phone = normalised_email(F.col("email")), F.regexp_replace(e164, r"^\+", "")
    return sha256_hex(email), sha256_hex(phone)


def _single_file(df: DataFrame, folder: str, name: str, fmt: str) -> str:
    """Write ``df`` as one file ``name`` in ``folder`` with Spark; return its path.

    A CSV file is for people: its text cells are neutralised against formulas
    (:func:`crmlake.csv_cells.safe_frame`), written as they are (Spark trims leading and
    trailing blanks by default, which would turn ``" =1"`` into a formula) and quoted the
    RFC 4180 way (a ``"`` doubled, not escaped with a backslash as Spark does by default).
    """
    spark_out = os.path.join(folder, f"_spark_{fmt}")
    if fmt == "csv":
        writer = safe_frame(df).coalesce(1).write
        (writer.option("header", True).option("escape", '"')
         .option("ignoreLeadingWhiteSpace", False).option("ignoreTrailingWhiteSpace", False)
         .option("compression", "gzip" if name.endswith(".gz") else "none").csv(files.spark_uri(spark_out)))
    else:
        df.coalesce(1).write.parquet(files.spark_uri(spark_out))
    (part,) = [f.location for f in files.list_folder(spark_out) if f.name.startswith("part-") and not f.name.endswith(".crc")]
    target = os.path.join(folder, name)
    os.replace(part, target)
    shutil.rmtree(spark_out)
    return target


def _score_histogram(scores: list[float], path: str, title: str) -> None:
    from crmlake import charts

    charts.save(charts.histogram(scores, title, "propensity score", "persons"), path)


def publish_audience(rows: DataFrame, exports_root: str, audience: str, run_date: dt.date, manifest: dict,
                     platform: tuple[str, DataFrame] | None = None) -> str:
    """Publish an audience's files and manifest for ``run_date``; return the published folder
    ``<exports_root>/<audience>/<date>`` (a link to the version just written).

    Takes the export rows (see :func:`export_rows`) and optionally ``(platform_format, rows)``
    from :func:`platform_rows`. The manifest gets audience, date, row_count, files with their
    sha256, platform_format (or null), created_at on top of ``manifest``. A previous export of
    that date is replaced in one atomic step. Raises ValueError when ``audience`` is not a slug
    (:data:`AUDIENCE_NAME_PATTERN`): it names a folder, which must stay inside ``exports_root``.
    """
    if not re.fullmatch(AUDIENCE_NAME_PATTERN, audience):
        raise ValueError(f"audience name {audience!r} is not a slug matching {AUDIENCE_NAME_PATTERN}: it would not be a folder of its own under {exports_root}")
    remove_unpublished(exports_root)
    final = os.path.join(exports_root, audience, run_date.isoformat())
    version = _new_version(final)
    rows = rows.cache()
    paths = [_single_file(rows, version, DATA_FILES[0], "csv"), _single_file(rows, version, DATA_FILES[1], "parquet")]
    if platform is not None:
        paths.append(_single_file(platform[1], version, PLATFORM_FORMATS[platform[0]]["file"], "csv"))
    # Safe to collect: one score per exported person, bounded by the audience's limit.
    scores = [r["score"] for r in rows.select("score").collect()]
    rows.unpersist()
    _score_histogram(scores, os.path.join(version, CHART), f"{audience} {run_date}: {len(scores):,} persons")
    document = {
        "audience": audience,
        "date": run_date.isoformat(),
        "row_count": len(scores),
        "files": {os.path.basename(p): _file_entry(p) for p in paths},
        "chart": CHART,
        "platform_format": platform[0] if platform is not None else None,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **manifest,
    }
    _put_in_place(final, version, document, "publish")
    return final


def is_published(exports_root: str, audience: str, run_date: dt.date) -> bool:
    """Return True when ``audience`` has a published export for ``run_date`` (its folder with a manifest)."""
    return bool(re.fullmatch(AUDIENCE_NAME_PATTERN, audience)) and files.info(
        os.path.join(exports_root, audience, run_date.isoformat(), MANIFEST)) is not None


def _new_version(final: str) -> str:
    """Create and return an empty hidden version folder for the published folder ``final``."""
    version = os.path.join(os.path.dirname(final), VERSIONS, f"{os.path.basename(final)}.{uuid.uuid4().hex}")
    os.makedirs(version)
    return version


def _put_in_place(final: str, version: str, manifest: dict, step: str) -> None:
    """Write ``manifest`` into the complete folder ``version``, show it at ``final`` (one
    rename), then remove the version shown before; ``step`` (publish or amend) names the
    crash points between."""
    files.write_text(os.path.join(version, MANIFEST), json.dumps(manifest, indent=2, default=str))
    crash_point(f"export.{step}.staged")
    previous = _swap(final, version)
    crash_point(f"export.{step}.swapped")
    _remove(previous)


def _swap(final: str, version: str) -> str | None:
    """Make ``final`` a link to the complete folder ``version`` in one rename; return the version
    it showed before (None when it is new), which the caller removes."""
    audience_dir, day = os.path.split(final)
    # Relative, so that the exports stay whole when their root is moved or copied.
    link = os.path.join(audience_dir, f".{day}.link.{uuid.uuid4().hex}")
    os.symlink(os.path.relpath(version, audience_dir), link)
    previous = None
    if os.path.islink(final):
        previous = os.path.join(audience_dir, os.readlink(final))
    elif os.path.isdir(final):
        # A folder of the layout before versions. rename(2) cannot put a link in place of a
        # folder, so it is moved among the versions first: once per date, that date is missing
        # between these two renames (killed there, the next start removes it as unpublished).
        previous = os.path.join(audience_dir, VERSIONS, f"{day}.{uuid.uuid4().hex}")
        os.replace(final, previous)
    os.replace(link, final)
    return previous


def _remove(path: str | None) -> None:
    """Remove the folder, file or link at ``path`` (nothing when None or gone already)."""
    if path is None or not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def _audience_folders(exports_root: str) -> list[str]:
    """Return the folder of every audience under ``exports_root`` (every visible folder but the
    reports' and the summaries')."""
    if not files.is_dir(exports_root):
        return []
    return [f.location for f in files.list_folder(exports_root) if f.is_dir and not f.name.startswith(".") and f.name not in NOT_AUDIENCES]


def remove_unpublished(exports_root: str) -> list[str]:
    """Delete every hidden entry of every audience folder under ``exports_root`` that no
    published ``<audience>/<date>`` link names; return the removed paths relative to the root.

    These are the leftovers of publishes and amendments killed midway (a version written but
    never swapped in, or swapped out but not yet removed, a link not yet renamed, the staging
    and ``.retired.*`` folders of the layout before versions), and they may hold persons since
    erased. Only one writer at a time may call it: a running writer's new version is unpublished
    too.
    """
    removed = []
    for audience_dir in _audience_folders(exports_root):
        entries = sorted(os.listdir(audience_dir))
        published = {
            os.path.realpath(os.path.join(audience_dir, name)) for name in entries
            if not name.startswith(".") and os.path.islink(os.path.join(audience_dir, name))
        }
        leftovers = [os.path.join(audience_dir, name) for name in entries if name.startswith(".") and name != VERSIONS]
        versions = os.path.join(audience_dir, VERSIONS)
        if os.path.isdir(versions):
            leftovers += [
                os.path.join(versions, name) for name in sorted(os.listdir(versions))
                if os.path.realpath(os.path.join(versions, name)) not in published
            ]
        for path in leftovers:
            _remove(path)
            removed.append(os.path.relpath(path, exports_root))
    if removed:
        log.info("removed %d unpublished export folders under %s (left by a killed publish or amendment): %s", len(removed), exports_root, removed)
    return removed


def _file_entry(path: str) -> dict:
    return {"sha256": files.file_sha256(path), "bytes": files.info(path).size}


def _without_subject(table: pa.Table, columns: dict) -> tuple[pa.Table, int]:
    """Return ``table`` without the rows whose value in any of ``columns`` (name -> values) is
    listed, and how many rows went."""
    # Typed: an untyped empty array (an empty audience) has the null type, which pc.or_ refuses.
    held = pa.array([False] * table.num_rows, pa.bool_())
    for name, values in columns.items():
        if name in table.column_names:
            held = pc.or_(held, pc.fill_null(pc.is_in(table[name], pa.array(list(values), pa.string())), False))
    return table.filter(pc.invert(held)), pc.sum(pc.cast(held, pa.int64())).as_py() or 0


def _published_folders(exports_root: str) -> list[str]:
    """Return every published ``<exports_root>/<audience>/<date>`` (one with a manifest)."""
    return [
        published.location
        for audience_dir in _audience_folders(exports_root) for published in files.list_folder(audience_dir)
        if not published.name.startswith(".") and files.info(os.path.join(published.location, MANIFEST)) is not None
    ]


def persons_held(person_ids: Collection[str], earlier_persons: Collection[tuple], first_day: str, last_day: str) -> set[str]:
    """Return the subject's persons for rows computed from ``first_day`` to ``last_day`` (ISO
    dates): ``person_ids`` (theirs now), and each of ``earlier_persons`` ((person_id, from_date
    or None, to_date), ISO: a person an account of theirs left on to_date) held on one of
    those days, whose rows then were computed from the subject's data too."""
    return {*person_ids, *(person for person, joined, left in earlier_persons if (joined is None or joined <= last_day) and first_day < left)}


def amend_exports(exports_root: str, person_ids: Collection[str], email_hashes: Collection[str], phone_hashes: Collection[str],
                  platform_hashes: Collection[str], request_id: str, earlier_persons: Collection[tuple] = ()) -> list[str]:
    """Rewrite every published export holding one of ``person_ids`` or contact hashes without
    those rows; return the folders amended for ``request_id`` (now, or by a run of the same
    request that was killed before it could say so), relative to ``exports_root``. An export
    of a date when an account of the subject's was part of another person (``earlier_persons``:
    :func:`persons_held`) loses that person's rows too; its platform upload files, which hold
    contacts and no person, lose the subject's own contacts only (that person's row there is
    another account's contact, whose platform hashes are not recorded).

    First removes every unpublished version (:func:`remove_unpublished`), so that no copy of the
    person survives outside the published folders. The neutral files are matched on person_id
    and the neutral hashes; a platform upload file (which has no person_id) on
    ``platform_hashes``, the subject's contacts hashed each platform's way. Each amended export
    is a new version swapped in atomically; its manifest gets the new row_count and checksums and
    an ``amendments`` entry (reason erasure, request_id, at, rows_removed). Export files are
    bounded by their audience's limit, so they are read on the driver.
    """
    remove_unpublished(exports_root)
    amended = []
    for final in _published_folders(exports_root):
        document = json.loads(files.read_text(os.path.join(final, MANIFEST)))
        kept, removed = _without_subject(
            pq.read_table(os.path.join(final, DATA_FILES[1])),
            {"person_id": persons_held(person_ids, earlier_persons, document["date"], document["date"]), "email_sha256": email_hashes, "phone_sha256": phone_hashes},
        )
        uploads = {}
        for name in PLATFORM_FILES:
            if files.info(os.path.join(final, name)) is not None:
                rows = pa_csv.read_csv(os.path.join(final, name), convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
                rows = rows.cast(pa.schema([(c, pa.string()) for c in rows.column_names]))  # a column of empty fields reads as null type
                uploads[name], gone = _without_subject(rows, {c: platform_hashes for c in rows.column_names})
                removed += gone
        if not removed:
            # Amended already by this request (a run killed before it recorded the step): the
            # receipt still names the folder.
            if any(a.get("request_id") == request_id for a in document.get("amendments", [])):
                amended.append(os.path.relpath(final, exports_root))
            continue
        version = _new_version(final)
        # The link's target, not the link: the version is a folder of its own.
        shutil.copytree(os.path.realpath(final), version, dirs_exist_ok=True)
        csv_path, parquet_path = (os.path.join(version, name) for name in DATA_FILES)
        pq.write_table(kept, parquet_path)
        with pa.CompressedOutputStream(csv_path, "gzip") as out:
            pa_csv.write_csv(safe_table(kept), out)
        for name, rows in uploads.items():
            pa_csv.write_csv(safe_table(rows), os.path.join(version, name))
        _score_histogram(kept["score"].to_pylist(), os.path.join(version, CHART), f"{document['audience']} {document['date']}: {kept.num_rows:,} persons")
        document["row_count"] = kept.num_rows
        document["files"] = {name: _file_entry(os.path.join(version, name)) for name in (*DATA_FILES, *uploads)}
        document.setdefault("amendments", []).append(
            {"reason": "erasure", "request_id": request_id, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows_removed": removed}
        )
        _put_in_place(final, version, document, "amend")
        amended.append(os.path.relpath(final, exports_root))
    return amended


def _month_days(name: str) -> tuple[str, str]:
    """The first and last day (ISO) of the month a report's file ``name`` starts with
    (``YYYY-MM_``); any day when it names none."""
    month = re.match(r"(\d{4})-(0[1-9]|1[0-2])_", name)
    if not month:
        return "0000-01-01", "9999-12-31"
    year, number = int(month[1]), int(month[2])
    return dt.date(year, number, 1).isoformat(), dt.date(year, number, calendar.monthrange(year, number)[1]).isoformat()


def amend_person_lists(exports_root: str, person_ids: Collection[str], earlier_persons: Collection[tuple] = ()) -> list[str]:
    """Rewrite every report's list of persons (``<exports_root>/reports/**/*_persons.csv``, a
    ``person_id`` column) that holds one of ``person_ids`` without those rows, written aside and
    renamed into place; return the lists amended, relative to ``exports_root``. The other cells
    are written back as they were read (already neutralised against spreadsheet formulas). A
    list of a month (named ``YYYY-MM_...``) on one of whose days an account of the subject's was
    part of another person (``earlier_persons``: :func:`persons_held`) loses that person's rows
    too, whichever day of the month it was written: more than the subject's, never less (the
    month's next report lists the person again); a list without a month, on any day."""
    amended = []
    for path in sorted(glob.glob(os.path.join(exports_root, REPORTS_DIR, "**", f"*{PERSON_LIST_SUFFIX}"), recursive=True)):
        with open(path, newline="", encoding="utf-8") as fh:
            header, *rows = list(csv.reader(fh))
        persons = persons_held(person_ids, earlier_persons, *_month_days(os.path.basename(path)))
        column = header.index("person_id") if "person_id" in header else None
        kept = [row for row in rows if column is None or row[column] not in persons]
        if len(kept) == len(rows):
            continue
        staged = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}")
        with open(staged, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([header, *kept])
        os.replace(staged, path)
        amended.append(os.path.relpath(path, exports_root))
    return amended
