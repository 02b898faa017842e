"""DataFrame transforms the lake's write modes are made of; both engines and the stages use them."""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType


def latest_per_key(df: DataFrame, keys: Sequence[str], order_by: str, tie_breaker: str | None = None) -> DataFrame:
    """Keep one row per ``keys``: the one with the greatest ``order_by`` (then ``tie_breaker``).

    Takes any frame holding the key and ordering columns; returns the same columns.
    Rows whose ``order_by`` is null lose to any row that has one.
    """
    ordering = [F.col(order_by).desc_nulls_last()]
    if tie_breaker:
        ordering.append(F.col(tie_breaker).desc_nulls_last())
    window = Window.partitionBy(*keys).orderBy(*ordering)
    return df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def with_delete_flag(df: DataFrame, delete_when: str | None) -> DataFrame:
    """Return ``df`` with ``_delete`` (``delete_when`` is true) for a merge.

    Columns whose name starts with ``_`` are the predicate's helpers: they are dropped here,
    so they are never written to the table.
    """
    flag = F.expr(f"coalesce(({delete_when}), false)") if delete_when else F.lit(False)
    flagged = df.withColumn("_delete", flag)
    return flagged.drop(*[c for c in df.columns if c.startswith("_")])


def balanced_for_write(df: DataFrame, partition_by: Sequence[str]) -> DataFrame:
    """Return ``df`` laid out for a write partitioned by ``partition_by`` (``df`` itself when
    there are no partition columns).

    Spark's REBALANCE hint shuffles the rows by the partition columns and lets adaptive query
    execution size the write's tasks: a partition value bigger than
    ``spark.sql.adaptive.advisoryPartitionSizeInBytes`` is split over several tasks (each
    writes its own file), small ones share a task, one file each. So a big day is written by
    every core and a small day still gets one file. A plain repartition by the partition
    columns would give each value one task, however big.
    """
    return df.hint("rebalance", *partition_by) if partition_by else df


def nullable_schema(schema: StructType) -> StructType:
    """Return ``schema`` with every field, array element and map value nullable.

    Delta enforces ``nullable = false`` as a constraint; tables here accept nulls and
    leave required-field checks to acquire's validation, so a write never fails on it.
    """

    def relax(node):
        if isinstance(node, dict):
            node = {k: relax(v) for k, v in node.items()}
            for flag in ("nullable", "containsNull", "valueContainsNull"):
                if flag in node:
                    node[flag] = True
        elif isinstance(node, list):
            node = [relax(v) for v in node]
        return node

    return StructType.fromJson(relax(schema.jsonValue()))


def conform_to_schema(df: DataFrame, schema: StructType, table: str, keep: Sequence[str] = ()) -> DataFrame:
    """Select and cast ``df``'s columns to a table's ``schema``; absent columns become null.

    Columns named in ``keep`` (a write's own helper columns) are passed through after them.

    Raises ``SchemaMismatchError`` naming the table and columns the table does not have.
    """
    from crmlake.lake.errors import SchemaMismatchError

    extra = [c for c in df.columns if c not in schema.fieldNames() and c not in keep]
    if extra:
        raise SchemaMismatchError(
            f"table {table}: the data has columns the table does not: {', '.join(extra)} "
            "(rebuild the table with a full refresh to change its schema)"
        )
    return df.select(
        *[
            (F.col(f.name) if f.name in df.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ],
        *keep,
    )


def checkpointed(frame: DataFrame, **figures: Column) -> tuple[DataFrame, dict]:
    """Checkpoint ``frame`` (reliably: the session's checkpoint directory) and return it with
    ``figures`` (name -> aggregate), observed while it is written: no second pass to count."""
    observed = Observation("checkpointed")
    frame = frame.observe(observed, *[aggregate.alias(name) for name, aggregate in figures.items()]).checkpoint()
    return frame, observed.get


def counted(frame: DataFrame) -> tuple[DataFrame, int]:
    """Checkpoint ``frame`` and return it with its row count, observed while it is written."""
    frame, figures = checkpointed(frame, rows=F.count(F.lit(1)))
    return frame, int(figures["rows"])


def maybe_broadcast(frame: DataFrame, small: bool) -> DataFrame:
    """Return ``frame`` marked to be sent whole to every task of a join when ``small``, else as it is."""
    return F.broadcast(frame) if small else frame


def hash_column(name: str) -> str:
    """Return the name of the column :func:`hash_keyed` adds for ``name``: ``_<name>_hash``."""
    return f"_{name}_hash"


def hash_keyed(frame: DataFrame, name: str) -> tuple[DataFrame, list[str]]:
    """Return ``frame`` with ``_<name>_hash`` (the 64-bit hash of its string column ``name``) and
    the keys to partition windows by ``name`` with: that hash, then ``name`` (the same groups).

    A window sorts its rows by its keys, comparing the first 8 bytes of the first key before the
    rest. Values of one kind share those bytes (every ``email_sha256:...`` node), so a sort by
    the string alone compares most rows whole; by the hash it compares 8 bytes that differ (a
    window over 2M identity nodes took 30% less time). The hash is a column, not an expression
    in each window, so that windows over the same keys share one sort.
    """
    hashed = hash_column(name)
    return frame.withColumn(hashed, F.xxhash64(name)), [hashed, name]
