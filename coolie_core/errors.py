"""One hierarchy for every error coolie raises on purpose.

A user error (bad catalog, bad argument, bad data) says what was wrong, where, and what to do;
the CLI prints it without a traceback and exits 2 (catalog/arguments) or 1 (a failed run).
"""

from dataclasses import dataclass

__all__ = [
    "CatalogError",
    "CatalogIssue",
    "CoolieError",
    "DataError",
    "SourceError",
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


class SourceError(CoolieError):
    """A source could not be read (missing file, unreachable database...)."""


class WriteError(CoolieError):
    """A destination could not be written."""


class WatermarkError(CoolieError):
    """A stored watermark is missing where required, corrupt, or would regress."""


class TransientError(CoolieError):
    """A failure worth retrying (I/O blip, commit conflict, dropped connection)."""
