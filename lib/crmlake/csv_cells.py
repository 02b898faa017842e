"""CSV cells a spreadsheet cannot run: the one rule against formula injection, for Spark and Python.

A marketer opens crmlake's CSV files (audiences, platform uploads, reports, subject access) in
a spreadsheet, which takes a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula, and
one starting with a tab or a carriage return as well once those are trimmed. A value a person
typed themselves (an occupation ``=HYPERLINK("http://x", "click")``) would then run on the
marketer's machine. As OWASP's "CSV Injection" page recommends, such a text cell is written
with a leading single quote, which spreadsheets show as text and do not evaluate.

One exception: a cell that is a plain number (``-12.5``, ``+3``, ``1e-4``) stays as it is.
A spreadsheet reads it as that number, never as a formula, and quoting it would turn every
negative amount into text. ``-1+2`` is not a plain number and is quoted.

Only text cells change: numbers, dates and nulls are written as they are. Parquet files are
data for programs, not spreadsheets, and are not neutralised. The rule is defined once
(:data:`FORMULA_START`, :data:`PLAIN_NUMBER`) in regular expressions that Java (Spark) and
Python read alike; :func:`safe_column` / :func:`safe_frame` apply it in Spark,
:func:`safe_cell` / :func:`safe_rows` / :func:`safe_table` in Python.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

# A cell a spreadsheet may evaluate starts with one of these (OWASP's list).
FORMULA_START = r"^[=+\-@\t\r]"
# A plain decimal number, optionally signed, with an optional exponent. It is matched from the
# cell's start and compared with the whole cell (rather than anchored with "$", which Java lets
# match before a final line break of any kind and Python only before a final "\n"), so both
# engines decide alike.
PLAIN_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
QUOTE = "'"

_FORMULA_START = re.compile(FORMULA_START)
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER)


def safe_cell(value: Any) -> Any:
    """Return ``value`` with a leading ``'`` if it is text a spreadsheet would take as a formula,
    else ``value`` unchanged (numbers, None and every other non-text value too)."""
    if not isinstance(value, str) or not _FORMULA_START.match(value):
        return value
    number = _PLAIN_NUMBER.match(value)
    if number and number.group(0) == value:
        return value
    return QUOTE + value


def safe_rows(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Return ``rows`` (for :func:`csv.writer`'s ``writerows``) with every cell passed through :func:`safe_cell`."""
    return [[safe_cell(value) for value in row] for row in rows]


def safe_table(table: pa.Table) -> pa.Table:
    """Return the Arrow ``table`` with :func:`safe_cell` applied to each of its string columns
    (for :func:`pyarrow.csv.write_csv`; the table is small enough to pass through Python)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            cells = [safe_cell(value) for value in table.column(index).to_pylist()]
            table = table.set_column(index, field, pa.array(cells, field.type))
    return table


def safe_column(column: Column) -> Column:
    """Return the string ``column`` with :func:`safe_cell`'s rule applied in Spark."""
    formula = column.rlike(FORMULA_START) & (F.regexp_extract(column, PLAIN_NUMBER, 0) != column)
    return F.when(formula, F.concat(F.lit(QUOTE), column)).otherwise(column)


def safe_frame(df: DataFrame) -> DataFrame:
    """Return ``df`` with :func:`safe_column` applied to its string columns (others unchanged), to
    write it as CSV."""
    return df.select(
        *(safe_column(F.col(f.name)).alias(f.name) if isinstance(f.dataType, StringType) else F.col(f.name) for f in df.schema.fields)
    )
