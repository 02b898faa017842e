"""How the ``rs`` engine's data files reach a Delta table: staging, then one delta-rs commit.

Spark writes a write's Parquet files into ``<table>/_staging/<write id>/``
(:func:`stage_files`); the driver moves them into the table's partition directories,
reads each footer for Delta statistics (:func:`add_actions`) and commits every add and
remove action in one Delta transaction (:func:`commit`), retried against concurrent
writers. Until that commit the moved files are strays that no reader sees (readers go
through the snapshot, never a listing) and that ``vacuum`` removes later. The engine's
operations (:mod:`crmlake.lake.rs`) are built from these steps.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Mapping, Sequence

from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from crmlake.files import local_path
from crmlake.lake.errors import LakeError
from crmlake.lake.frames import balanced_for_write, nullable_schema
from crmlake.lake.stats import parquet_file_stats
from crmlake.lake.types import WriteId
from crmlake.lease import fence

STAGING = "_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def local_table_path(location: str) -> str:
    """Return the local path of the table at ``location``; raise LakeError naming it when it is
    on another file system (the rs engine writes to local disk only)."""
    path = local_path(location)
    if path is None:
        raise LakeError(f"table {location}: the rs engine writes to local disk only; use lake.engine=spark for {urllib.parse.urlparse(location).scheme}://")
    return path


def file_uri(path: str) -> str:
    """Return the ``file://`` URI Spark reads and writes ``path`` by."""
    # Hadoop parses a path string without percent-decoding: pass the path as it is on disk.
    return "file://" + path


def partition_text(value) -> str | None:
    """Render a typed partition value the way the Delta log stores it (a string, or null)."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@dataclass
class StagedFile:
    """A data file moved into the table, not yet committed."""

    relative_path: str  # inside the table, as written in the Delta log (URI-encoded)
    absolute_path: str
    partition_values: dict


def stage_files(df: DataFrame, location: str, partition_by: Sequence[str], target_file_rows: int) -> list[StagedFile]:
    """Write ``df`` as Parquet under the table's staging area and move the files in place.

    A partition value is written by as many tasks as its size calls for (see
    :func:`balanced_for_write`), each file holding at most ``target_file_rows`` rows.
    """
    root = local_table_path(location)
    staging = os.path.join(root, STAGING, uuid.uuid4().hex)
    writer = balanced_for_write(df, partition_by).write.mode("overwrite").option("maxRecordsPerFile", target_file_rows)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(file_uri(staging))
    staged: list[StagedFile] = []
    for dirpath, _, filenames in os.walk(staging):
        for filename in filenames:
            if not filename.endswith(".parquet"):
                continue
            rel_dir = os.path.relpath(dirpath, staging)
            parts = [] if rel_dir == "." else rel_dir.split(os.sep)
            values = {}
            for part in parts:
                key, _, raw = part.partition("=")
                value = urllib.parse.unquote(raw)
                values[urllib.parse.unquote(key)] = None if value == HIVE_NULL else value
            target_dir = os.path.join(root, *parts)
            os.makedirs(target_dir, exist_ok=True)
            target = os.path.join(target_dir, filename)
            os.replace(os.path.join(dirpath, filename), target)
            rel = "/".join(parts + [filename])
            staged.append(StagedFile(urllib.parse.quote(rel, safe="/="), target, values))
    shutil.rmtree(staging, ignore_errors=True)
    return staged


def add_actions(staged: list[StagedFile], stats_columns: set | None) -> tuple[list[AddAction], int]:
    """Return the add actions of the staged files that hold rows, and their rows. A file
    without rows (Spark writes one for an empty DataFrame) is deleted: the schema is in the
    log, and a day that changes nothing adds no file."""
    actions, rows = [], 0
    now_ms = int(time.time() * 1000)
    for f in staged:
        num_rows, stats = parquet_file_stats(f.absolute_path, stats_columns)
        if not num_rows:
            os.remove(f.absolute_path)
            continue
        rows += num_rows
        actions.append(
            AddAction(f.relative_path, os.path.getsize(f.absolute_path), f.partition_values, now_ms, True, stats)
        )
    return actions, rows


def remove_actions(files: list[dict]) -> list[RemoveAction]:
    """Return the remove actions of ``files`` (as listed by the engine's ``files``)."""
    now_ms = int(time.time() * 1000)
    return [RemoveAction(f["path"], True, now_ms, f["size_bytes"], f["partition_values"]) for f in files]


def commit_properties(operation: str, txn: WriteId | None) -> CommitProperties:
    """Return a commit's properties: the operation and write id in its metadata, and the write
    id as an app transaction so that a rerun of the same write commits nothing."""
    return CommitProperties(
        custom_metadata={"crmlake.operation": operation, **({"crmlake.txn": str(txn)} if txn else {})},
        max_commit_retries=50,
        app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
    )


def commit(
    location: str,
    schema: StructType,
    actions: list,
    mode: str,
    partition_by: Sequence[str],
    txn: WriteId | None,
    operation: str,
    properties: Mapping[str, str] | None = None,
) -> int:
    """Commit ``actions`` to the table at ``location`` in one transaction (creating the table,
    partitioned by ``partition_by`` with table ``properties``, when there is none yet); return
    the version committed. Commits nothing once this process lost the lake's lease (:func:`~crmlake.lease.fence`)."""
    fence(location)
    properties_of_commit = commit_properties(operation, txn)
    delta_schema = DeltaSchema.from_json(nullable_schema(schema).json())
    root = local_table_path(location)
    if not DeltaTable.is_deltatable(root):
        try:
            create_table_with_add_actions(
                root,
                delta_schema,
                [a for a in actions if isinstance(a, AddAction)],
                mode="error",
                partition_by=list(partition_by) or None,
                configuration=properties,
                commit_properties=properties_of_commit,
            )
            return DeltaTable(root).version()
        except Exception:
            if not DeltaTable.is_deltatable(root):
                raise
            # Another writer created the table first: commit against it below.
    table = DeltaTable(root)
    table.create_write_transaction(
        actions,
        mode,
        delta_schema,
        partition_by=table.metadata().partition_columns or None,
        commit_properties=properties_of_commit,
    )
    return DeltaTable(root).version()
