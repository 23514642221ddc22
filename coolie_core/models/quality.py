"""Row rules and quarantine: bad source rows go aside instead of failing (or polluting) the load."""

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from coolie_core.models._base import ColumnName, Name, _Model


class NotNullRule(_Model):
    """These columns must hold a value."""

    kind: Literal["not_null"]
    columns: list[ColumnName] = Field(min_length=1)


class AcceptedValuesRule(_Model):
    """A column only holds the listed values (a null is accepted: combine with not_null)."""

    kind: Literal["accepted_values"]
    column: ColumnName
    values: list[str | int | float | bool] = Field(min_length=1)


class ExpressionRule(_Model):
    """A SQL predicate every good row satisfies, e.g. ``amount >= 0`` (null counts as false)."""

    kind: Literal["expression"]
    name: Name
    """Names the rule in the quarantine table."""
    condition: str = Field(min_length=1)


QuarantineRule = Annotated[NotNullRule | AcceptedValuesRule | ExpressionRule, Field(discriminator="kind")]

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class QuarantineSpec(_Model):
    """Route rows that break a rule to a quarantine Delta table instead of loading them.

    Rows whose ``cast`` transform fails are quarantined too (instead of failing the run). The
    quarantine table holds the run id, dataflow, rule, reason and the raw source row as JSON.
    """

    rules: list[QuarantineRule] = Field(default_factory=list)
    """Checked on the transformed rows, before they are written."""
    max_rejected: int | str
    """Most rejected rows a run may have before it fails (nothing is then loaded): a count such as
    ``0`` or ``100``, or a share of the rows read such as ``"2%"``."""
    table: str | None = None
    """Quarantine table folder relative to the destination's connection (default
    ``_quarantine/<destination table>``)."""

    @field_validator("max_rejected")
    @classmethod
    def _threshold(cls, value: int | str) -> int | str:
        if isinstance(value, bool):
            raise ValueError("max_rejected: a count (e.g. 10) or a percentage (e.g. '2%')")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("max_rejected: a count must be 0 or more")
            return value
        match = _PERCENT.match(value)
        if match is None or float(match.group(1)) > 100:
            raise ValueError(f"max_rejected: expected a count or a percentage like '2%', got {value!r}")
        return value.strip()

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [r.name for r in self.rules if isinstance(r, ExpressionRule)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rules: expression rule names must be unique, repeated: {duplicates}")
        return self

    def limit(self, rows_read: int) -> int:
        """The most rows that may be rejected out of ``rows_read``.

        >>> QuarantineSpec(max_rejected="10%").limit(25)
        2
        >>> QuarantineSpec(max_rejected=3).limit(25)
        3
        """
        if isinstance(self.max_rejected, int):
            return self.max_rejected
        match = _PERCENT.match(self.max_rejected)
        assert match is not None  # validated
        return int(rows_read * float(match.group(1)) / 100)


SchemaDrift = Literal["evolve", "fail", "ignore"]
