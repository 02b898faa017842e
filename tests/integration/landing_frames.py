"""The generated pipeline's landing files read by hand with pandas, the landing-zone contract's
rules applied by hand (../shared/contract.md): the independent side of the integration tests
that check a gold table's figures against the landing zone. Nothing here calls crmlake; who is
whom is the lake's identity map (:func:`identity_lookup`), which the identity tests check.
"""

import datetime as dt
import glob
import gzip
import hashlib
import json
import os
import re
from decimal import Decimal

import pandas as pd

from conftest import END

TIMEZONE = "Asia/Taipei"   # the pipeline fixture's business time zone (conf/local.yaml)
END_OF_RUN = pd.Timestamp(END + dt.timedelta(days=1), tz=TIMEZONE)   # the run date's end: later events have not happened
OFFSET = re.compile(r"(?:Z|[+-]\d\d:\d\d)$")   # a timestamp without one is a bad record
MONEY = re.compile(r"-?\d+(?:\.\d+)?")
STATUSES = ("completed", "cancelled", "returned")


def landing_of(root) -> str:
    """The landing zone of a generated pipeline's ``root`` (the fixture's folder)."""
    return os.path.join(root, "landing")


def landing_csv(landing, source: str) -> pd.DataFrame:
    """Every row of every file of a CSV source of the zone ``landing``, as text (a field a short row lacks: empty)."""
    files = sorted(glob.glob(os.path.join(landing, source, "dt=*", "*")))
    return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True).fillna("")


def landing_json(landing, source: str) -> list[dict]:
    """Every well-formed record of a JSON-lines source of the zone ``landing`` (a line that is not
    UTF-8 or not JSON is a bad record)."""
    records = []
    for path in sorted(glob.glob(os.path.join(landing, source, "dt=*", "*"))):
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            for raw in fh:
                try:
                    records.append(json.loads(raw.decode("utf-8")))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
    return records


def erased_accounts(root) -> set:
    """The accounts an erase request named (their records are gone from the lake)."""
    return {r["account_id"] for r in landing_json(landing_of(root), "customers") if isinstance(r, dict) and r.get("op") == "erase"}


def instants(column: pd.Series) -> pd.Series:
    """ISO-8601 text with an offset -> UTC instants (empty: NaT)."""
    return pd.to_datetime(column.replace("", None), utc=True, format="ISO8601")


def local_dates(column: pd.Series) -> pd.Series:
    """Instants -> their business dates (TIMEZONE)."""
    return column.dt.tz_convert(TIMEZONE).dt.date


def identity_lookup(lake) -> dict:
    """identifier_type -> {identifier: person_id}, from the lake's silver.identity_map."""
    found: dict = {}
    for r in lake.read("silver.identity_map").collect():
        found.setdefault(r["identifier_type"], {})[r["identifier"]] = r["person_id"]
    return found


def email_key(email: str) -> str | None:
    """The identity map's key of an email: SHA-256 of it trimmed and in lower case (None: no email)."""
    email = email.strip().lower()
    return hashlib.sha256(email.encode()).hexdigest() if email else None


def landing_order_lines(root, people: dict, as_of: pd.Timestamp = END_OF_RUN) -> pd.DataFrame:
    """The order lines as they stood at ``as_of``: of each valid line (a positive whole quantity,
    money prices, a known status, timestamps with an offset) not of an erased account, the
    latest version updated before it; every status. Adds order_time and updated_time
    (instants), order_date, line_amount (Decimal: quantity x unit_price - discount) and
    person_id (by account, else a guest's email; null when neither leads to a person)
    through ``people`` (:func:`identity_lookup`)."""
    raw = landing_csv(landing_of(root), "orders").drop_duplicates()
    valid = (raw["quantity"].str.fullmatch(r"[1-9]\d*") & raw["unit_price"].str.fullmatch(MONEY) & raw["discount"].replace("", "0").str.fullmatch(MONEY)
             & raw["status"].isin(STATUSES) & raw["order_time"].str.contains(OFFSET) & raw["updated_time"].str.contains(OFFSET))
    lines = raw[valid & ~raw["account_id"].isin(erased_accounts(root))]
    lines = lines.assign(updated_time=instants(lines["updated_time"]))
    lines = lines[lines["updated_time"] < as_of].sort_values("updated_time").groupby(["order_id", "line_no"]).tail(1).copy()
    lines["order_time"] = instants(lines["order_time"])
    lines["order_date"] = local_dates(lines["order_time"])
    lines["line_amount"] = [int(q) * Decimal(p) - Decimal(d or "0") for q, p, d in zip(lines["quantity"], lines["unit_price"], lines["discount"])]
    by_email = lines["guest_email"].map(email_key).map(people.get("email_sha256", {}))
    lines["person_id"] = lines["account_id"].map(people.get("account_id", {})).fillna(by_email)
    return lines


def completed_lines(root, people: dict, as_of: pd.Timestamp = END_OF_RUN) -> pd.DataFrame:
    """:func:`landing_order_lines` that are completed and reach a person: the purchases."""
    lines = landing_order_lines(root, people, as_of)
    return lines[(lines["status"] == "completed") & lines["person_id"].notna()]
