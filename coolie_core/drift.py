"""Schema drift: compare the rows about to be written with the destination table's schema.

Per dataflow (``destination.schema_drift``):

* ``fail`` (default): new columns fail the dataflow, naming them;
* ``evolve``: new columns are added to the table (older rows read them as null);
* ``ignore``: new columns are dropped before writing.

``overwrite`` replaces the table, schema included: its drift is reported, never enforced.
Otherwise, columns the table has but the data lacks, and columns whose type changed, fail with the
list of them: silently writing nulls or re-typing a column loses data. Types are compared as Delta
stores them (e.g. ``uint32`` is written as ``int``), so equivalent types never count as drift.
"""

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from coolie_core.errors import DataError
from coolie_core.models import SchemaDrift
from coolie_core.storage import StorageLocation, as_location, delta_table, delta_table_exists, library_options

if TYPE_CHECKING:
    from arro3.core.types import ArrowSchemaExportable

__all__ = ["SchemaChange", "SchemaDriftError", "reconcile_schema", "table_schema"]


class SchemaDriftError(DataError):
    """The data's columns do not fit the destination table under the dataflow's drift policy."""

    def __init__(self, message: str, change: "SchemaChange") -> None:
        super().__init__(message)
        self.change = change


@dataclass(frozen=True)
class SchemaChange:
    """How the written data's columns differed from the table's (empty: no drift)."""

    policy: SchemaDrift
    new: list[str] = field(default_factory=list)
    """Columns in the data, not in the table."""
    missing: list[str] = field(default_factory=list)
    """Columns in the table, not in the data."""
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Column -> (table type, data type)."""

    @property
    def drifted(self) -> bool:
        return bool(self.new or self.missing or self.retyped)

    @property
    def ok(self) -> bool:
        """The write may go ahead under the policy."""
        return not self.missing and not self.retyped and not (self.new and self.policy == "fail")

    @property
    def evolve(self) -> bool:
        """The write must add columns to the table."""
        return bool(self.new) and self.policy == "evolve"

    def describe(self) -> str:
        parts = []
        if self.new:
            action = {"evolve": "added to the table", "ignore": "ignored", "fail": "not in the table"}
            parts.append(f"new column(s) {self.new} {action[self.policy]}")
        if self.missing:
            parts.append(f"column(s) {self.missing} missing from the data")
        if self.retyped:
            changes = ", ".join(f"{c}: {old} -> {new}" for c, (old, new) in self.retyped.items())
            parts.append(f"retyped column(s) {changes}")
        return "; ".join(parts) if parts else "no schema drift"

    def to_record(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "new": self.new,
            "missing": self.missing,
            "retyped": {c: list(types) for c, types in self.retyped.items()},
        }


def table_schema(
    path: "StorageLocation | str | os.PathLike[str]", *, format: str, table: Any = None
) -> pl.Schema | None:
    """The schema of the destination as polars sees it, or None when it does not exist yet.

    ``table``: the Delta table already loaded from ``path`` (not loaded again)."""
    location = as_location(path)
    if format == "delta":
        if table is None:
            if not delta_table_exists(location):
                return None
            table = delta_table(location)
        return _polars_schema(table.schema().to_arrow())
    files = location.join("part-*.parquet").glob()
    if not files:
        return None
    return pl.scan_parquet(files[-1].uri, storage_options=library_options(location)).collect_schema()


def _as_stored(schema: pl.Schema, *, format: str) -> pl.Schema:
    """The schema the data gets once written (Delta has no unsigned or 16-bit-float types...)."""
    if format != "delta":
        return schema
    from arro3.core import Table
    from deltalake import Schema

    return _polars_schema(Schema.from_arrow(Table.from_arrow(pl.DataFrame(schema=schema)).schema).to_arrow())


def _polars_schema(arrow: "ArrowSchemaExportable") -> pl.Schema:
    """An Arrow schema as polars reads it, through arro3 (delta-rs' Arrow library): pyarrow would
    add ~40 MB and ~0.2 s to every process, ``Schema.empty_table`` a pandas import (~0.4 s)."""
    from arro3.core import Table

    return pl.DataFrame(Table.from_batches([], schema=arrow)).schema


def reconcile_schema(
    frame: pl.DataFrame,
    table: pl.Schema | None,
    *,
    policy: SchemaDrift,
    dataflow: str,
    location: "StorageLocation | str | os.PathLike[str]",
    format: str = "delta",
    ignore_missing: tuple[str, ...] = (),
    replace: bool = False,
) -> tuple[pl.DataFrame, SchemaChange]:
    """Apply the drift policy: the frame to write (new columns dropped under ``ignore``).

    ``ignore_missing`` are table columns the writer adds itself (SCD2 history columns).
    ``replace``: the write replaces the whole table (``overwrite``): drift is only reported.

    Raises:
        SchemaDriftError: missing or retyped columns, or new ones under ``fail``.
    """
    if table is None:
        return frame, SchemaChange(policy)
    stored = _as_stored(frame.schema, format=format)
    new = [c for c in frame.columns if c not in table]
    missing = [c for c in table.names() if c not in frame.schema and c not in ignore_missing]
    retyped = {
        c: (str(table[c]), str(dtype))
        for c, dtype in stored.items()
        if c in table and dtype != table[c] and dtype != pl.Null()
    }
    change = SchemaChange(policy, new=new, missing=missing, retyped=retyped)
    if replace:
        return frame, change
    if not change.ok:
        raise SchemaDriftError(
            f"dataflow {dataflow}: schema drift against {location} (policy {policy}): {change.describe()}"
            + ("; set destination.schema_drift: evolve or ignore to accept new columns" if new else ""),
            change,
        )
    if new and policy == "ignore":
        frame = frame.drop(new)
    return frame, change
