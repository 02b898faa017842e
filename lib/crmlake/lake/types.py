"""Small value types shared by the lake's engines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteId:
    """An idempotent write's identity: Delta's transaction identifier (appId, version).

    A table remembers the highest version committed per app id; a write whose version is
    not higher commits nothing. Jobs use ``WriteId.for_run(job, date)`` so that rerunning
    a date is a no-op.
    """

    app_id: str
    version: int

    @classmethod
    def for_run(cls, job: str, run_date, attempt: int = 0) -> "WriteId":
        """Return the id of ``job``'s write for ``run_date`` (version = yyyymmdd * 100 + attempt)."""
        return cls(job, int(run_date.strftime("%Y%m%d")) * 100 + attempt)

    def __str__(self) -> str:
        return f"{self.app_id}@{self.version}"


@dataclass(frozen=True)
class WriteResult:
    """What a write did: committed or not, the table version after it, rows and files, and
    for a delete or blank the rows its predicate matched (removed or blanked)."""

    committed: bool
    version: int | None
    rows_written: int
    files_added: int
    files_removed: int
    rows_matched: int = 0

    @classmethod
    def skipped(cls) -> "WriteResult":
        """The result of a replayed idempotent write: nothing committed."""
        return cls(False, None, 0, 0, 0)


@dataclass(frozen=True)
class ErasureResult:
    """What an erase did to one table: rows removed (or blanked) and the data files deleted from disk."""

    table: str
    rows: int
    files_removed: tuple = ()
