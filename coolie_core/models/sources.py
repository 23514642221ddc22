"""Sources: what a dataflow reads, by format."""

import re
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from coolie_core.models._base import Name, _Model


class FileSource(_Model):
    """Files under a ``files`` connection."""

    format: Literal["parquet", "csv", "json", "jsonl"]
    connection: Name
    path: str
    """File or glob relative to the connection, e.g. ``orders/*.csv``. ``..`` may not escape it."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Reader options: csv ``separator``, ``has_header``, ``encoding``, ``null_values``..."""
    filter: str | None = None
    """SQL predicate applied while reading, e.g. ``amount > 0``."""
    incremental: Literal["files"] | None = None
    """``files``: a landing zone; each run loads the files not loaded before, whole, whatever
    timestamps their rows hold (see ``coolie_core.landing``)."""
    max_files_per_run: int | None = Field(None, ge=1)
    """``incremental: files``: load at most this many files per run, oldest first (the rest later)."""
    on_changed_file: Literal["reload", "ignore", "fail"] = "fail"
    """``incremental: files``: a loaded file rewritten with another size, mtime or ETag: load it
    again whole (``reload``), leave it and report it (``ignore``) or fail the run (``fail``)."""
    on_bad_file: Literal["fail", "quarantine"] = "fail"
    """``incremental: files``: a file that cannot be read as ``format`` (corrupt parquet, a CSV row
    that does not parse, truncated JSON) fails the batch naming it (``fail``), or is left out whole,
    recorded in the quarantine table as one ``bad_file`` row and not tried again until it changes
    (``quarantine``: needs the dataflow's ``quarantine`` block)."""
    file_columns: bool = False
    """``incremental: files``: add ``_coolie_source_file`` and ``_coolie_file_modified_at`` to each row."""

    @model_validator(mode="after")
    def _landing_options(self) -> Self:
        if self.incremental is None:
            # A default value is harmless (a dumped catalog spells every default out).
            defaults = {
                "max_files_per_run": None,
                "on_changed_file": "fail",
                "on_bad_file": "fail",
                "file_columns": False,
            }
            given = [f for f, default in defaults.items() if getattr(self, f) != default]
            if given:
                raise ValueError(f"{given[0]}: needs incremental: files")
        return self


class DeltaSource(_Model):
    """A Delta table under a ``delta`` connection (often another dataflow's destination)."""

    format: Literal["delta"]
    connection: Name
    table: str
    """Table folder relative to the connection, e.g. ``silver/orders``."""
    filter: str | None = None
    """SQL predicate applied while reading."""


class SqlSource(_Model):
    """A table or query in a ``sql`` connection. Watermarks and windows are bound parameters."""

    format: Literal["sql"]
    connection: Name
    table: str | None = None
    """Table name (optionally schema-qualified)."""
    query: str | None = None
    """A SELECT; coolie wraps it to push watermark/window filters down."""
    filter: str | None = None
    """SQL predicate applied by the database."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if self.table is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", self.table
        ):
            raise ValueError(f"table must be a plain (schema.)name, got {self.table!r}")
        return self


class PythonSource(_Model):
    """A function in a ``python`` connection that returns a polars (Lazy)DataFrame or Arrow table.

    It is called with keyword arguments ``watermark`` (dict or None) and ``window`` (tuple or None)
    when its signature accepts them.
    """

    format: Literal["python"]
    connection: Name
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    """Function name inside the connection's module."""
    filter: str | None = None
    """SQL predicate applied to what the function returns."""


SourceSpec = Annotated[FileSource | DeltaSource | SqlSource | PythonSource, Field(discriminator="format")]
