"""Data checks declared on a dataflow (Dagster asset checks)."""

from typing import Annotated, Literal

from pydantic import Field

from coolie_core.models._base import ColumnName, DurationSpec, _Model


class _CheckBase(_Model):
    blocking: bool = False
    """A failing blocking check fails the materialisation (and skips downstream)."""


class RowCountCheck(_CheckBase):
    """The table holds at least ``min`` rows."""

    kind: Literal["row_count"]
    min: int = Field(1, ge=0)


class NotNullCheck(_CheckBase):
    """These columns hold no nulls."""

    kind: Literal["not_null"]
    columns: list[ColumnName] = Field(min_length=1)


class UniqueCheck(_CheckBase):
    """These columns together are unique."""

    kind: Literal["unique"]
    columns: list[ColumnName] = Field(min_length=1)


class AcceptedValuesCheck(_CheckBase):
    """A column only holds the listed values (nulls allowed)."""

    kind: Literal["accepted_values"]
    column: ColumnName
    values: list[str | int | float | bool] = Field(min_length=1)


class FreshnessCheck(_CheckBase):
    """The table was written within ``max_lag``."""

    kind: Literal["freshness"]
    max_lag: DurationSpec


CheckSpec = Annotated[
    RowCountCheck | NotNullCheck | UniqueCheck | AcceptedValuesCheck | FreshnessCheck,
    Field(discriminator="kind"),
]
