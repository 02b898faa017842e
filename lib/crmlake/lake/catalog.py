"""The table catalog: one declaration per table (``crmlake/catalog.yaml``, package data).

Each entry says what a table is: its layer (the part of its name before the dot), columns
and their Spark types, partitioning, merge keys, which columns hold personal data, and its
``subject`` rule: how a data subject's rows are found and what an erasure does to them, or
why the table holds no one's rows. Every table has one (a missing rule fails the load). The
lake checks every write against the catalog, erasure, subject access and maintenance walk
it, statistics skip its personal columns, and the README's table list is generated from it.
A new table is one entry in ``catalog.yaml``, covered by erasure and subject access as it is.

How long each layer keeps history is configuration (``lake.retention_days``), not a
declaration: an environment may keep bronze longer than another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Mapping

import yaml
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.lake.errors import LakeError, SchemaMismatchError

LAYERS = ("bronze", "silver", "gold")
# What a column may hold of a data subject (catalog.yaml's header says what each means).
SUBJECT_KINDS = ("account", "person", "cookie", "email", "identifier", "text")
ERASE_ACTIONS = ("delete", "blank")   # drop a subject's rows, or null their personal columns
ENTRY_KEYS = {"description", "columns", "partition_by", "keys", "personal", "subject"}
# Column names that hold personal data wherever they appear: a declared table with such a
# column must list it as personal (tests/unit/test_catalog.py walks every entry).
PERSONAL_NAME = re.compile(r"(^|_)(email|phone|name|raw_text|identifier)(_sha256)?$")


class UndeclaredTableError(LakeError):
    """A write to a table that the catalog does not declare."""


@dataclass(frozen=True)
class TableSpec:
    """One table's declaration: columns (name -> Spark type), partitioning, merge keys,
    personal columns, and its subject rule: how a data subject's rows are found (which
    columns hold which of the subject's identifiers, and a fixed condition) with what an
    erasure does to them (``delete``: drop them; ``blank``: null their personal columns), or
    why the table holds no one's rows (``subject_none``)."""

    name: str
    description: str
    columns: Mapping[str, str]
    partition_by: tuple = ()
    keys: tuple = ()
    personal: tuple = ()
    erase: str | None = None            # one of ERASE_ACTIONS; None when the table holds no one's rows
    subject_match: Mapping[str, str] = field(default_factory=dict)   # column -> one of SUBJECT_KINDS
    subject_where: str | None = None    # a fixed SQL condition over the table's columns (never values)
    subject_none: str | None = None     # why the table holds no one's rows (an aggregate, a log of files)

    @property
    def layer(self) -> str:
        """The table's layer: bronze, silver or gold."""
        return self.name.split(".", 1)[0]

    @property
    def holds_subjects(self) -> bool:
        """True when the table may hold a data subject's rows (erasure and subject access walk it)."""
        return bool(self.subject_match)

    @property
    def ddl(self) -> str:
        """The declared columns as a Spark DDL schema string (for an empty frame or new rows)."""
        return ", ".join(f"`{c}` {t}" for c, t in self.columns.items())

    @property
    def stats_columns(self) -> tuple:
        """The columns Delta keeps file statistics for: every column but the personal ones."""
        return tuple(c for c in self.columns if c not in self.personal)

    def padded(self, df: DataFrame) -> DataFrame:
        """Return ``df`` with every declared column it lacks added as a typed null (a row that
        fills only some fields, such as an erase request)."""
        return df.select(*[F.col(c) if c in df.columns else F.lit(None).cast(t).alias(c) for c, t in self.columns.items()])

    def conform(self, df: DataFrame) -> DataFrame:
        """Return ``df`` with exactly the declared columns, cast to the declared types, then
        its ``_``-prefixed helper columns (a merge's delete flag).

        Raises ``SchemaMismatchError`` naming the table and the columns missing or undeclared.
        """
        data = [c for c in df.columns if not c.startswith("_")]
        undeclared = [c for c in data if c not in self.columns]
        missing = [c for c in self.columns if c not in data]
        if undeclared or missing:
            raise SchemaMismatchError(
                f"table {self.name}: columns differ from lib/crmlake/catalog.yaml"
                + (f"; not declared: {', '.join(undeclared)}" if undeclared else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        # One call into the JVM for the whole projection, not three per column (a write per table per run).
        casts = [f"CAST(`{c}` AS {t}) AS `{c}`" for c, t in self.columns.items()]
        return df.selectExpr(*casts, *[f"`{c}`" for c in df.columns if c.startswith("_")])


@dataclass(frozen=True)
class Catalog:
    """Every declared table by name."""

    tables: Mapping[str, TableSpec] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, entries: Mapping[str, Mapping]) -> "Catalog":
        """Build a catalog from ``{name: {description, columns, partition_by, keys, personal, subject}}``;
        raise LakeError naming the table when an entry is malformed, its subject rule included."""
        tables = {}
        for name, entry in entries.items():
            layer = name.split(".", 1)[0]
            if layer not in LAYERS or "." not in name:
                raise LakeError(f"catalog: table {name!r} must be named <layer>.<table> with layer one of {', '.join(LAYERS)}")
            stray = sorted(set(entry) - ENTRY_KEYS)
            if stray:
                raise LakeError(f"catalog: table {name}: unknown key {', '.join(stray)}; an entry holds {', '.join(sorted(ENTRY_KEYS))}")
            columns = dict(entry["columns"])
            spec = TableSpec(
                name,
                str(entry.get("description", "")),
                columns,
                tuple(entry.get("partition_by", ())),
                tuple(entry.get("keys", ())),
                tuple(entry.get("personal", ())),
                *_subject_rule(name, entry.get("subject")),
            )
            unknown = [c for c in (*spec.partition_by, *spec.keys, *spec.personal, *spec.subject_match) if c not in columns]
            if unknown:
                raise LakeError(f"catalog: table {name}: {', '.join(unknown)} named but not among its columns")
            if spec.personal and not spec.holds_subjects:
                raise LakeError(f"catalog: table {name} holds personal columns ({', '.join(spec.personal)}) but its subject rule says it holds no one's rows")
            if spec.erase == "blank" and not spec.personal:
                raise LakeError(f"catalog: table {name}: erase: blank nulls the table's personal columns, and it lists none")
            tables[name] = spec
        return cls(tables)

    def with_tables(self, entries: Mapping[str, Mapping]) -> "Catalog":
        """Return this catalog with ``entries`` added (a bench's or a test's own tables)."""
        return Catalog({**self.tables, **Catalog.from_dict(entries).tables})

    def spec(self, table: str) -> TableSpec:
        """Return the declaration of ``table``; raise ``UndeclaredTableError`` when there is none."""
        try:
            return self.tables[table]
        except KeyError:
            raise UndeclaredTableError(
                f"table {table} is not declared in lib/crmlake/catalog.yaml: add an entry (columns, partitioning, keys, personal columns)"
            ) from None

    def subject_tables(self) -> list[TableSpec]:
        """Return the tables that may hold a data subject's rows, in catalog order: those erasure
        and subject access walk."""
        return [t for t in self.tables.values() if t.holds_subjects]


SUBJECT_RULE = "subject: {match: {<column>: <kind>, ...}, erase: delete|blank} (and where: <condition>, if need be), or subject: {none: <why it holds no one's rows>}"


def _subject_rule(table: str, rule) -> tuple:
    """Return (erase, match, where, none) of a table's ``subject`` entry; raise LakeError naming
    the table when there is none or it is malformed."""
    if not isinstance(rule, Mapping) or not rule:
        raise LakeError(f"catalog: table {table} has no subject rule: say how a data subject's rows are found, or why it holds none: {SUBJECT_RULE}")
    if "none" in rule:
        why = rule["none"]
        if set(rule) != {"none"} or not isinstance(why, str) or not why.strip():
            raise LakeError(f"catalog: table {table}: a table holding no one's rows says why, and only that: subject: {{none: <why>}}")
        return None, {}, None, why.strip()
    match, where = rule.get("match"), rule.get("where")
    if set(rule) - {"match", "where", "erase"} or not isinstance(match, Mapping) or not match or rule.get("erase") not in ERASE_ACTIONS or not isinstance(where, (str, type(None))):
        raise LakeError(f"catalog: table {table}: subject rule {dict(rule)!r} is not of the form {SUBJECT_RULE}")
    kinds = sorted(set(match.values()) - set(SUBJECT_KINDS))
    if kinds:
        raise LakeError(f"catalog: table {table}: subject match kind {', '.join(kinds)} unknown; expected one of {', '.join(SUBJECT_KINDS)}")
    return rule["erase"], dict(match), where, None


def readme_table_list(catalog: Catalog) -> str:
    """Return the README's table list (Markdown) for ``catalog``: table, description,
    partitioning, keys, personal columns, and the subject rule (which columns find a data
    subject's rows, and what an erasure does to them; or why the table holds none)."""
    lines = ["| table | what it holds | partitioned by | keys | personal columns | a data subject's rows: found by; an erasure |", "|---|---|---|---|---|---|"]
    for spec in catalog.tables.values():
        if spec.holds_subjects:
            where = f" where `{spec.subject_where}`" if spec.subject_where else ""
            subject = ", ".join(f"{column} ({kind})" for column, kind in spec.subject_match.items()) + f"{where}; {spec.erase}"
        else:
            subject = f"none: {spec.subject_none}"
        lines.append(
            f"| `{spec.name}` | {spec.description} | {', '.join(spec.partition_by) or '—'} | {', '.join(spec.keys) or '—'} | {', '.join(spec.personal) or '—'} | {subject} |"
        )
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Return the library's catalog (``lib/crmlake/catalog.yaml``)."""
    text = resources.files("crmlake").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return Catalog.from_dict(yaml.safe_load(text)["tables"])


if __name__ == "__main__":  # python -m crmlake.lake.catalog: the README's table list
    print(readme_table_list(load_catalog()), end="")
