"""Destinations: where and how a dataflow writes (load strategies)."""

from typing import Literal, Self

from pydantic import Field, model_validator

from coolie_core.models._base import ColumnName, LoadStrategy, Name, _Model
from coolie_core.models.quality import SchemaDrift


class CdcSpec(_Model):
    """A change feed column on a merge: rows whose ``column`` is in ``delete`` remove the key."""

    column: ColumnName
    delete: list[str] = Field(default_factory=lambda: ["D"], min_length=1)


class ScdSpec(_Model):
    """Column names of an SCD2 history table."""

    valid_from: ColumnName = "valid_from"
    valid_to: ColumnName = "valid_to"
    is_current: ColumnName = "is_current"
    effective_column: ColumnName | None = None
    """Source column holding when a change happened (valid_from). Defaults to the first
    watermark column, else the load time."""
    track: list[ColumnName] = Field(default_factory=list)
    """Columns whose change makes a new version (all non-key columns when empty)."""


class DestinationSpec(_Model):
    """Where and how a dataflow writes."""

    connection: Name
    table: str
    """Table folder relative to the connection, e.g. ``silver/orders``."""
    format: Literal["delta", "parquet"] = "delta"
    """``parquet`` (a folder of files) supports append and overwrite only."""
    load: LoadStrategy = "append"
    """append | overwrite | merge | replace_window | scd2."""
    merge_keys: list[ColumnName] = Field(default_factory=list)
    """Business key for merge and scd2."""
    on_duplicate_keys: Literal["latest", "fail"] = "latest"
    """merge/scd2 with several source rows per key: keep the latest (by the watermark columns,
    else input order) or fail loudly."""
    cdc: CdcSpec | None = None
    """merge only: delete target rows flagged by the change feed."""
    scd2: ScdSpec = Field(default_factory=ScdSpec)
    """scd2 only: history column names."""
    partition_by: list[ColumnName] = Field(default_factory=list)
    """Physical Delta partition columns."""
    schema_drift: SchemaDrift = "fail"
    """When the data brings columns the table lacks: ``fail`` (default), ``evolve`` (add them to
    the table) or ``ignore`` (drop them). Missing or retyped columns always fail. ``overwrite``
    replaces the table, schema included: its drift is reported, not enforced."""

    @model_validator(mode="after")
    def _load_rules(self) -> Self:
        keyed = self.load in ("merge", "scd2")
        if keyed and not self.merge_keys:
            raise ValueError(f"merge_keys: required for load {self.load}")
        if not keyed and self.merge_keys:
            raise ValueError(f"merge_keys: only used by merge and scd2, not load {self.load}")
        if self.cdc is not None and self.load != "merge":
            raise ValueError("cdc: only valid with load merge")
        if self.format == "parquet" and self.load not in ("append", "overwrite"):
            raise ValueError(
                f"format: load {self.load} needs format delta (parquet supports append and overwrite)"
            )
        return self
