"""Errors of the lake layer; each message names the table and what is wrong."""


class LakeError(RuntimeError):
    """Base class for lake failures."""


class TableNotFoundError(LakeError):
    """The table has no Delta log at its location."""


class SchemaMismatchError(LakeError):
    """Data written to a table does not fit its schema."""


class EngineUnavailableError(LakeError):
    """The configured Delta engine cannot run here (for example: delta-spark jars missing)."""


class PredicateError(LakeError):
    """A write's rows do not satisfy the predicate they are meant to replace."""
