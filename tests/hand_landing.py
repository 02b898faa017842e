"""Landing files written by hand, for the tests that plant a case record by record (a shared
computer, a split, a mailbox one member leaves): one contract JSON-lines file per source and
day; tables written by hand as the stages would leave them; and the rows a subject access
wrote for a table, which those cases read back."""

from __future__ import annotations

import datetime as dt
import json
import os


def deliver(landing: str, source: str, day: dt.date, rows: list[dict]) -> None:
    """Write ``rows`` as ``<landing>/<source>/dt=<day>/<source>-1.jsonl`` (one JSON object a line)."""
    folder = os.path.join(landing, source, f"dt={day.isoformat()}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{source}-1.jsonl"), "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


def access_rows(folder: str, table: str) -> list:
    """The rows ``crmlake access`` wrote for ``table`` in ``folder`` (its ``<table>.json``)."""
    with open(os.path.join(folder, f"{table}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def write(lake, name: str, rows: list, ddl: str) -> None:
    """Write ``rows`` (of ``ddl``'s columns) to the lake's table ``name``, every other declared column null."""
    declared = lake.spark.createDataFrame([], lake.catalog.spec(name).ddl)
    lake.overwrite(name, declared.unionByName(lake.spark.createDataFrame(rows, ddl), allowMissingColumns=True))
