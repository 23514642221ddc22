"""Declarative transforms, applied in order."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from coolie_core.models._base import _DTYPE_RE, ColumnName, _Model


class CastTransform(_Model):
    """Cast columns to types; a value that cannot be cast fails the run naming column and value."""

    kind: Literal["cast"]
    columns: dict[ColumnName, str]
    """Column -> type: string, int8..int64, uint8..uint64, float32, float64, boolean, date,
    datetime (UTC), decimal(p,s)."""
    formats: dict[ColumnName, str] = Field(default_factory=dict)
    """strptime formats for string -> date/datetime, e.g. ``{order_ts: "%d/%m/%Y %H:%M"}``."""

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {c: t for c, t in value.items() if not _DTYPE_RE.match(t.strip())}
        if bad:
            raise ValueError(f"unknown type(s) {bad}; see the catalog reference for the type names")
        return value


class RenameTransform(_Model):
    """Rename columns: ``{old: new}``."""

    kind: Literal["rename"]
    columns: dict[ColumnName, ColumnName]


class DeriveTransform(_Model):
    """Add or replace columns computed by SQL expressions: ``{total: "price * qty"}``."""

    kind: Literal["derive"]
    columns: dict[ColumnName, str]


class FilterTransform(_Model):
    """Keep the rows for which a SQL predicate is true."""

    kind: Literal["filter"]
    condition: str


class DedupTransform(_Model):
    """Keep one row per key: the latest by ``order_by`` (last in input order when omitted)."""

    kind: Literal["dedup"]
    keys: list[ColumnName] = Field(min_length=1)
    order_by: list[ColumnName] = Field(default_factory=list)


class SelectTransform(_Model):
    """Keep only these columns, in this order."""

    kind: Literal["select"]
    columns: list[ColumnName] = Field(min_length=1)


class DropTransform(_Model):
    """Drop these columns."""

    kind: Literal["drop"]
    columns: list[ColumnName] = Field(min_length=1)


class HashTransform(_Model):
    """Add a column holding a stable hex SHA-256 of other columns (e.g. a surrogate key)."""

    kind: Literal["hash"]
    column: ColumnName
    of: list[ColumnName] = Field(min_length=1)


class MaskTransform(_Model):
    """Mask sensitive columns: ``hash`` (SHA-256 hex) or ``redact`` (a fixed string)."""

    kind: Literal["mask"]
    columns: list[ColumnName] = Field(min_length=1)
    method: Literal["hash", "redact"] = "hash"


class AggregateTransform(_Model):
    """Group rows and compute SQL aggregates: ``{by: [day], columns: {revenue: "sum(amount)"}}``."""

    kind: Literal["aggregate"]
    by: list[ColumnName] = Field(min_length=1)
    columns: dict[ColumnName, str] = Field(min_length=1)
    """Output column -> SQL aggregate expression (sum, count, min, max, avg...)."""


Transform = Annotated[
    AggregateTransform
    | CastTransform
    | RenameTransform
    | DeriveTransform
    | FilterTransform
    | DedupTransform
    | SelectTransform
    | DropTransform
    | HashTransform
    | MaskTransform,
    Field(discriminator="kind"),
]
