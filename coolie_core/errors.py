"""One hierarchy for every error coolie raises on purpose.

A user error (bad catalog, bad argument, bad data) says what was wrong, where, and what to do;
the CLI prints it without a traceback and exits 2 (catalog/arguments) or 1 (a failed run).
"""

from dataclasses import dataclass

__all__ = [
    "CastError",
    "CatalogError",
    "CatalogIssue",
    "CoolieError",
    "DataError",
    "PermanentSourceError",
    "SourceError",
    "StorageAccessError",
    "StorageConfigError",
    "StorageConflictError",
    "StorageError",
    "StorageUnavailableError",
    "TransientError",
    "WatermarkError",
    "WriteError",
]


class CoolieError(Exception):
    """Base class of all errors coolie raises deliberately."""


@dataclass(frozen=True, slots=True)
class CatalogIssue:
    """One problem found in a catalog, with its location.

    Attributes:
        file: the catalog file the problem is in (as given or found in a folder).
        dataflow: the dataflow's name, or None for catalog-level problems.
        field: dotted path of the field inside the dataflow (or the document), e.g.
            ``destination.merge_keys``.
        message: what is wrong and, where it helps, what to do.
        line: 1-based line in the file when known.
    """

    file: str
    dataflow: str | None
    field: str
    message: str
    line: int | None = None

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        subject = ".".join(p for p in (self.dataflow, self.field) if p)
        return f"{where}: {subject or '<catalog>'}: {self.message}"


class CatalogError(CoolieError):
    """The catalog is invalid. Carries every problem found, not just the first."""

    def __init__(self, issues: list[CatalogIssue]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        head = f"invalid catalog: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *("  " + i.render() for i in self.issues)]))


class DataError(CoolieError):
    """Source data breaks a declared rule (a cast fails, duplicate merge keys...).

    Permanent: retrying does not help.
    """


class CastError(DataError):
    """A value of a column does not convert under a strict ``cast`` (the message names both)."""

    def __init__(self, message: str) -> None:
        # polars re-raises an error of an expression's python function as ``type(exc)(message +
        # a dump of the plan)``: keep the message a user reads.
        super().__init__(message.split("\n\nThis error occurred", 1)[0])


class SourceError(CoolieError):
    """A source could not be read (missing file, unreachable database...)."""


class PermanentSourceError(SourceError):
    """Raised by a python source function for a failure retrying cannot fix (bad credentials,
    an unknown resource, HTTP 4xx): the run fails at once. Any other exception a python source
    raises is retried per the dataflow's ``retry`` spec."""


class WriteError(CoolieError):
    """A destination could not be written."""


class WatermarkError(CoolieError):
    """A stored watermark is missing where required, corrupt, or would regress."""


class TransientError(CoolieError):
    """A failure worth retrying (I/O blip, commit conflict, dropped connection)."""


class StorageError(CoolieError):
    """An object store (S3, Azure, GCS) or local folder refused an operation.

    The message names the URI and the store's error code, never a credential.
    """


class StorageConfigError(StorageError, ValueError):
    """A storage URI or its options are unusable: unknown scheme, unknown option, unset variable.

    Permanent: the catalog or environment must change. A ``ValueError`` too, like every other
    unusable catalog path.
    """


class StorageAccessError(StorageError):
    """The store answered but refused: missing bucket/container, rejected credentials, access
    denied, no credentials found. Permanent."""


class StorageConflictError(StorageError, TransientError):
    """A conditional write lost: the object already exists (another writer got there first).

    Transient: a rerun reads the new state and tries again.
    """


class StorageUnavailableError(StorageError, TransientError):
    """The store could not be reached or failed on its side (connection, timeout, HTTP 5xx)."""
