"""Validate records against the contract in Spark and type them.

:func:`with_validation` takes the records of one source (``record_json`` plus a
pre-parse ``error``) and returns them with ``reason`` (null for a good record), the typed
contract fields, ``extra_fields`` (unknown fields, kept so that drift is visible) and
``record_key`` (what makes two records the same record).

Types are checked twice, so that no cast can turn a bad value into an accepted NULL
whatever ``spark.sql.ansi.enabled`` says: the text must have the contract's form (a
pattern), and its ``try_cast`` to the bronze type must succeed and keep the value. That
catches dates that do not exist (``2026-02-30``), hours past 23, integers that overflow and
money with more digits than ``decimal(18,2)`` keeps.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StringType, StructField, StructType

from crmlake.acquire.contract import ALWAYS, BOOL, INT, MONEY, ON_UPSERT, TIMESTAMP, Field, Source

# ISO-8601 with an offset or Z; a timestamp without one is a bad record. Each pattern ends in
# \z, the very end of the value: Java's "$" also matches before a final line terminator
# (\n, \r, U+0085, U+2028, U+2029), which would let "12.00<U+2028>" pass as money.
ISO_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)\z"
MONEY_PATTERN = r"^-?\d{1,16}(\.\d{1,4})?\z"
INT_PATTERN = r"^-?\d{1,18}\z"
# A JSON string, escapes included, in double quotes or in the single quotes Spark's parser
# also accepts (possessive: Java matches it in loops, not by recursion).
JSON_STRING = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|\'[^\'\\]*+(?:\\.[^\'\\]*+)*+\''
MONEY_TYPE = "decimal(18,2)"
EXACT_TYPE = "decimal(38,18)"  # wide enough to tell whether MONEY_TYPE kept every digit
BAD_TYPE_REASON = {TIMESTAMP: "bad_timestamp", MONEY: "bad_money", INT: "wrong_type"}
MAX_ID_LENGTH = 128


def _value(field: Field) -> Column:
    """The field's raw text (null when absent or blank), from the column the first projection made."""
    return F.col(f"_v_{field.name}")


def _typed_column(field: Field) -> Column:
    """The field as its bronze type, from the column the second projection made (converted once:
    the checks and the typed output both read it)."""
    return F.col(f"_t_{field.name}")


def _field_problem(field: Field, source: Source) -> Column:
    """Return a reason code when ``field`` is wrong in this record, else null."""
    value = _value(field)
    checks: list[tuple[Column, str]] = []
    required = F.lit(field.required == ALWAYS)
    if field.required == ON_UPSERT:
        required = F.col("_v_op") == "upsert"
    checks.append((required & value.isNull(), f"missing_field:{field.name}"))
    if field.kind == TIMESTAMP:
        checks.append((value.isNotNull() & ~value.rlike(ISO_WITH_OFFSET), f"bad_timestamp:{field.name}"))
    elif field.kind == MONEY:
        checks.append((value.isNotNull() & ~value.rlike(MONEY_PATTERN), f"bad_money:{field.name}"))
    elif field.kind == INT:
        checks.append((value.isNotNull() & ~value.rlike(INT_PATTERN), f"wrong_type:{field.name}"))
    if field.kind in BAD_TYPE_REASON:
        checks.append((value.isNotNull() & ~_cast_keeps_value(field), f"{BAD_TYPE_REASON[field.kind]}:{field.name}"))
    if field.kind == BOOL:
        checks.append((value.isNotNull() & ~F.lower(value).isin("true", "false"), f"wrong_type:{field.name}"))
    if field.values:
        checks.append((value.isNotNull() & ~value.isin(*field.values), f"bad_enum:{field.name}"))
    if field.identifier:
        checks.append((F.length(value) > MAX_ID_LENGTH, f"id_too_long:{field.name}"))
    if source.name == "orders" and field.name == "quantity":
        checks.append((value.rlike(INT_PATTERN) & (value.cast("long") <= 0), "bad_value:quantity"))
    expr = F.lit(None).cast("string")
    for condition, reason in reversed(checks):
        expr = F.when(condition, F.lit(reason)).otherwise(expr)
    return expr


def _goes_on_after_its_object(text: Column) -> Column:
    """True where ``text``, a JSON object by Spark's parser, holds more after that object closes.

    Spark's parser reads a line's first value and ignores the rest, so ``{...} {...}`` would
    give the first event and lose the second unseen. A line holds its object alone when it
    ends (JSON whitespace aside) with the ``}`` that closes it. Only a line with another ``}``
    before its last (a nested object, a brace inside a string) needs its brackets outside
    strings walked to find where the object closes. Nearly every line ends in its only ``}``
    with no blank after it, told by one scan of its bytes for the first ``}``; only the others
    are trimmed of blanks (a trim with a set of characters maps every character of the line:
    run on every line, it and the scans by character took a third of validation's time).
    """
    line = F.rtrim(text, F.lit(" \t\r\n"))
    brackets = F.regexp_replace(F.regexp_replace(line, JSON_STRING, ""), r"[^\[\]{}]", "")
    # Walked from the second bracket with the first one open: a bracket met at depth 0 comes after the object.
    walk = F.aggregate(
        F.split(F.substring(brackets, 2, 1 << 30), ""),
        F.struct(F.lit(1).alias("depth"), F.lit(False).alias("after")),
        lambda acc, c: F.struct(
            (acc["depth"] + F.when(c.isin("{", "["), 1).when(c.isin("}", "]"), -1).otherwise(0)).alias("depth"),
            (acc["after"] | ((acc["depth"] == 0) & (c != ""))).alias("after"),
        ),
        lambda acc: acc["after"],
    )
    # The bytes before the first ``}`` (the whole line when it holds none) are all but the last.
    only_closing = F.octet_length(F.substring_index(text, "}", 1)) == F.octet_length(text) - 1
    return F.when(only_closing, False).when(~line.endswith("}"), True).when(F.instr(line, "}") < F.length(line), walk).otherwise(False)


def _typed_value(field: Field) -> Column:
    """The field as its bronze type; NULL (never an error) where the text does not convert."""
    value = _value(field)
    if field.kind == TIMESTAMP:
        # ISO-8601 allows hh:mm without seconds; Spark's cast needs them. A text of the checked
        # form has them when its 17th character is a colon: inserted by position, not by a
        # regular expression (a search per value).
        with_seconds = F.when(F.substring(value, 17, 1) == ":", value).otherwise(F.concat(F.substring(value, 1, 16), F.lit(":00"), F.substring(value, 17, 64)))
        return with_seconds.try_cast("timestamp")
    if field.kind == MONEY:
        return value.try_cast(MONEY_TYPE)
    if field.kind == INT:
        return value.try_cast("int")
    if field.kind == BOOL:
        return F.lower(value) == "true"
    return value


def _cast_keeps_value(field: Field) -> Column:
    """True when the field's text converts to its bronze type without loss (money: every digit kept)."""
    typed = _typed_column(field)
    if field.kind == MONEY:
        return F.coalesce(typed.cast(EXACT_TYPE) == _value(field).try_cast(EXACT_TYPE), F.lit(False))
    return typed.isNotNull()


def with_validation(records: DataFrame, source: Source) -> DataFrame:
    """Parse and check ``records`` (columns ``record_json``, ``raw_text``, ``error``) against ``source``.

    Returns the lineage columns (all but record_json and error), ``raw_text`` (bad records
    only), ``reason`` (null = good), the typed fields, ``extra_fields`` and ``record_key``.
    """
    # Every field is read as text (a JSON true or 12 arrives as "true" or "12") into a struct,
    # whose fields are reached by position: cheap, unlike a map lookup per field and check.
    as_text = StructType([StructField(f.name, StringType()) for f in source.fields])
    known = F.array(*[F.lit(f.name) for f in source.fields])
    parsed = records.select(
        *records.columns,
        F.from_json("record_json", as_text).alias("_record"),
        F.json_object_keys("record_json").alias("_keys"),  # null unless a valid JSON object
    )
    fields = parsed.select(
        *records.columns,
        F.array_except("_keys", known).alias("_unknown"),
        F.col("_keys").isNull().alias("_unparsable"),
        *[F.when(F.trim(F.col("_record")[f.name]) != "", F.col("_record")[f.name]).alias(f"_v_{f.name}") for f in source.fields],
    )
    typed = fields.select("*", *[_typed_value(f).alias(f"_t_{f.name}") for f in source.fields])
    reason = F.coalesce(
        F.col("error"),
        F.when(F.col("_unparsable"), F.lit("unparsable_json")),
        *([F.when(_goes_on_after_its_object(F.col("record_json")), F.lit("json_trailing_content"))] if source.format == "json" else []),
        *[_field_problem(f, source) for f in source.fields],
    )
    key_parts = [F.coalesce(_value(source.field(k)), F.lit("")) for k in source.key] or [F.col("record_json")]
    extra = F.when(
        F.size("_unknown") > 0,
        F.map_filter(F.from_json("record_json", MapType(StringType(), StringType())), lambda k, v: F.array_contains("_unknown", k)),
    )
    lineage = [c for c in records.columns if c not in ("raw_text", "record_json", "error")]
    checked = typed.withColumn("reason", reason)
    return checked.select(
        *lineage,
        # The raw line is kept for the quarantine only: good records do not carry it twice.
        F.when(F.col("reason").isNotNull(), F.col("raw_text")).alias("raw_text"),
        "reason",
        *[_typed_column(f).alias(f.name) for f in source.fields],
        extra.alias("extra_fields"),
        F.sha2(F.concat_ws("\u0001", *key_parts), 256).alias("record_key"),
    )
