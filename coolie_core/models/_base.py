"""Shared building blocks of the catalog models."""

import datetime as dt
import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
"""Dataflow, stage and connection names: lower-case letters, digits, underscores."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=128)]
ColumnName = Annotated[str, Field(min_length=1)]

LoadStrategy = Literal["append", "overwrite", "merge", "replace_window", "scd2"]

_DTYPE_RE = re.compile(
    r"^(string|int8|int16|int32|int64|uint8|uint16|uint32|uint64|float32|float64|boolean"
    r"|date|datetime|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)


def known_timezone(value: str) -> str:
    """``value`` if it names an IANA timezone the machine knows, else a ValueError saying so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {value!r} (use an IANA name like 'UTC' or 'Europe/Berlin')"
        ) from exc
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, populate_by_name=False
    )


class DurationSpec(_Model):
    """A length of time, e.g. ``{days: 3}`` or ``{hours: 1, minutes: 30}``."""

    weeks: int = Field(0, ge=0)
    days: int = Field(0, ge=0)
    hours: int = Field(0, ge=0)
    minutes: int = Field(0, ge=0)
    seconds: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.as_timedelta() == dt.timedelta(0):
            raise ValueError("a duration must be longer than zero, e.g. {days: 1}")
        return self

    def as_timedelta(self) -> dt.timedelta:
        try:
            return dt.timedelta(
                weeks=self.weeks,
                days=self.days,
                hours=self.hours,
                minutes=self.minutes,
                seconds=self.seconds,
            )
        except OverflowError:
            raise ValueError("a duration is out of range: at most 999999999 days") from None


class LookbackSpec(DurationSpec):
    """Re-read a trailing window before the stored watermark.

    Use time units for date/datetime watermarks and ``amount`` for numeric ones.
    """

    amount: int | None = Field(None, gt=0)
    """For integer watermarks: re-read rows with ``watermark - amount < column``."""

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        has_time = self.as_timedelta() > dt.timedelta(0)
        if has_time == (self.amount is not None):
            raise ValueError("give either time units ({days: 3}) or {amount: N}, not both/neither")
        return self


class RetrySpec(_Model):
    """How often and how patiently a dataflow is retried after a transient error.

    Only transient errors (I/O, Delta commit conflicts, dropped database connections) are
    retried; catalog, schema and cast errors fail at once.
    """

    count: int = Field(0, ge=0, le=100)
    """Retries after the first attempt (0 = no retry)."""
    delay: float = Field(1.0, ge=0, le=86400, allow_inf_nan=False)
    """Seconds before the first retry."""
    backoff: Literal["fixed", "exponential"] = "exponential"
    """``exponential`` doubles the delay after each attempt."""
    max_delay: float = Field(300.0, ge=0, le=86400, allow_inf_nan=False)
    """Upper bound on one delay, in seconds."""
    jitter: float = Field(0.0, ge=0, le=86400, allow_inf_nan=False)
    """Up to this many seconds of random delay added to each wait."""


class PartitionSpec(_Model):
    """Calendar (or integer) partitions of a dataflow: the chunks of replay and backfill.

    Chunks are left-closed, right-open ``[lo, hi)`` and aligned to the calendar: quarters start
    in Jan/Apr/Jul/Oct, weeks on Monday (ISO). A mid-period ``start`` gives a partial first chunk.
    """

    column: ColumnName
    """The source column the window filters on (date, datetime or integer)."""
    every: Literal["year", "quarter", "month", "week", "day", "hour", "minute", "integer"]
    """Chunk size. ``integer`` partitions an integer column in steps of ``step``."""
    step: int = Field(1, ge=1)
    """Multiples of ``every``: ``{every: minute, step: 15}``, ``{every: integer, step: 1000}``.
    Only for minute, hour, day and integer."""
    start: dt.datetime | dt.date | int
    """First boundary (inclusive). Dates mean midnight in ``timezone``."""
    end: dt.datetime | dt.date | int | None = None
    """Last boundary (exclusive); open-ended when omitted."""
    timezone: str = "UTC"
    """IANA timezone the calendar is aligned in."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return known_timezone(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        integer = self.every == "integer"
        if self.step != 1 and self.every not in ("minute", "hour", "day", "integer"):
            raise ValueError(f"step: only allowed with minute, hour, day or integer, not {self.every}")
        limits = {"minute": 1440, "hour": 24}
        if self.every in limits and self.step > limits[self.every]:
            raise ValueError(
                f"step: at most {limits[self.every]} for every: {self.every} (use a larger unit)"
            )
        for bound_name in ("start", "end"):
            bound = getattr(self, bound_name)
            if bound is None:
                continue
            if integer != (isinstance(bound, int) and not isinstance(bound, bool)):
                kind = "an integer" if integer else "a date or datetime"
                raise ValueError(f"{bound_name} must be {kind} for every: {self.every}")
        if self.end is not None and _as_comparable(self.end) <= _as_comparable(self.start):
            raise ValueError("end must be after start")
        return self


def _as_comparable(value: dt.datetime | dt.date | int) -> Any:
    if isinstance(value, dt.datetime):
        try:
            return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is out of range for a date") from None
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return value
