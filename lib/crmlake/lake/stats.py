"""Per-file Delta statistics read from a Parquet footer (numRecords, minValues, maxValues, nullCount).

Statistics are kept only for a table's ``delta.dataSkippingStatsColumns`` (from the table
catalog: every column but the personal ones), and min/max only for numbers, dates and
timestamps; other string columns get a null count but no min/max. So personal data
(emails, names, their hashes) never lands in the Delta log, where an erase could not reach it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from typing import Collection

import pyarrow as pa
import pyarrow.parquet as pq


def _stat_value(value, arrow_type: pa.DataType, upper: bool):
    if isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        # Delta stats are in milliseconds: round the max up so skipping never drops a row.
        micros = value.microsecond % 1000
        value = value - dt.timedelta(microseconds=micros)
        if upper and micros:
            value += dt.timedelta(milliseconds=1)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if not value.is_nan() else None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        return value
    return None


def _wants_min_max(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_date(arrow_type)
        or pa.types.is_timestamp(arrow_type)
    )


STATS_COLUMNS = "delta.dataSkippingStatsColumns"


def parquet_file_stats(path: str, columns: Collection[str] | None = None) -> tuple[int, str]:
    """Read a Parquet file's footer; return (row count, Delta stats JSON string) with
    statistics for ``columns`` only (all top-level columns when None)."""
    meta = pq.read_metadata(path)
    arrow_schema = meta.schema.to_arrow_schema()
    mins: dict = {}
    maxs: dict = {}
    nulls: dict = {}
    top_level = {name: i for i, name in enumerate(arrow_schema.names)}
    for col_index in range(meta.num_columns):
        column_path = meta.schema.column(col_index).path
        if column_path not in top_level or (columns is not None and column_path not in columns):
            continue  # nested leaves and columns outside the table's stats columns: no stats
        arrow_type = arrow_schema.field(column_path).type
        col_min = col_max = None
        null_count = 0
        complete = True
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(col_index).statistics
            if stats is None:
                complete = False
                continue
            if stats.has_null_count:
                null_count += stats.null_count
            else:
                complete = False
            if stats.has_min_max and _wants_min_max(arrow_type):
                col_min = stats.min if col_min is None else min(col_min, stats.min)
                col_max = stats.max if col_max is None else max(col_max, stats.max)
        if complete:
            nulls[column_path] = null_count
        low, high = _stat_value(col_min, arrow_type, False), _stat_value(col_max, arrow_type, True)
        if low is not None and high is not None:
            mins[column_path], maxs[column_path] = low, high
    stats_json = json.dumps(
        {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        separators=(",", ":"),
    )
    return meta.num_rows, stats_json
