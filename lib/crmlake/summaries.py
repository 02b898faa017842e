"""Small summaries the stages leave for the marketers' page, so that ``crmlake serve`` reads files, not tables.

Under ``<paths.exports>/summaries/``: ``campaign_results.json`` and its chart
``campaign_results.png`` (decide: one row per audience and contact date),
``segments.json`` and ``value_tiers.json`` (analyze: one row per segment, per tier),
``job_runs.json`` (every stage's latest run: date, outcome, what it left undone),
``identity.json`` (organize: account pairs linked and kept apart by what they share, and
the quality against a labelled sample when one is configured), ``management.json`` (analyze:
the monthly management report's sections as the page shows them). Each is
a handful of rows, replaced whole every run (written aside, then renamed into place), so the
page never reads half a file and never needs Spark.
"""

from __future__ import annotations

import json
import os
import uuid

REPORTS_DIR = "reports"     # the analyze stage's report pages: <exports>/reports/<kind>/<page>
PERSON_LIST_SUFFIX = "_persons.csv"   # a report's list of persons to act on (a person_id column): erasure amends it
SUMMARY_DIR = "summaries"
CAMPAIGN_RESULTS_JSON = "campaign_results.json"
CAMPAIGN_RESULTS_PNG = "campaign_results.png"
SEGMENTS_JSON = "segments.json"
VALUE_TIERS_JSON = "value_tiers.json"
JOB_RUNS_JSON = "job_runs.json"
IDENTITY_JSON = "identity.json"
MANAGEMENT_JSON = "management.json"
SUMMARY_FILES = (CAMPAIGN_RESULTS_JSON, CAMPAIGN_RESULTS_PNG, SEGMENTS_JSON, VALUE_TIERS_JSON, JOB_RUNS_JSON, IDENTITY_JSON, MANAGEMENT_JSON)


def summary_path(exports_root: str, name: str) -> str:
    """Return where the summary ``name`` (one of :data:`SUMMARY_FILES`) lives."""
    return os.path.join(exports_root, SUMMARY_DIR, name)


def staging_path(exports_root: str, name: str) -> str:
    """Return a hidden path beside summary ``name`` to write it to before :func:`publish_summary`."""
    os.makedirs(os.path.join(exports_root, SUMMARY_DIR), exist_ok=True)
    return os.path.join(exports_root, SUMMARY_DIR, f".{name}.{uuid.uuid4().hex}")


def publish_summary(staged: str, exports_root: str, name: str) -> str:
    """Rename the staged file into place as summary ``name``; return its path."""
    final = summary_path(exports_root, name)
    os.replace(staged, final)
    return final


def write_summary(exports_root: str, name: str, document: dict) -> str:
    """Write ``document`` as the JSON summary ``name`` (dates and decimals as strings); return its path."""
    staged = staging_path(exports_root, name)
    with open(staged, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=1, default=str)
    return publish_summary(staged, exports_root, name)


def read_summary(exports_root: str, name: str) -> dict | None:
    """Return the JSON summary ``name``, or None when no run has written it yet."""
    try:
        with open(summary_path(exports_root, name), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
