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
