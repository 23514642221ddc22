"""Value rules both engines apply alike: typed bounds, look-back, accepted datetime text, masking.

A window or watermark bound is normalised to the type of the column it is compared with: a UTC
datetime bound against a ``Date`` column compares as the calendar date in the partition timezone
(a window boundary is local midnight there), against a naive ``Datetime`` as naive UTC. Never a
TypeError. The Polars engine's filters (:mod:`coolie_core.engines.polars.filters`) and the Spark
engine's (:mod:`coolie_core.engines.spark.transform`) both type their bounds here.

>>> import polars as pl
>>> coerce_bound(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), pl.Date(), where="example")
datetime.date(2024, 3, 1)
"""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from coolie_core.errors import DataError
from coolie_core.models import LookbackSpec

__all__ = ["ISO_DATETIME", "REDACTED", "coerce_bound", "minus_lookback"]

ISO_DATETIME = (
    r"^(\d{4}-\d{2}-\d{2})"  # date
    r"(?:[T ](\d{2}:\d{2})(:\d{2})?(\.\d{1,9})?"  # time: hours and minutes, optional seconds and fraction
    r"(Z|[+-]\d{2}:?\d{2})?)?$"  # offset, only after a time
)
"""The datetime texts a ``datetime`` cast accepts without a format (both engines)."""

REDACTED = "***"
"""What the ``mask`` transform's ``redact`` method writes in place of a value (nulls stay null)."""


def coerce_bound(value: Any, dtype: pl.DataType, *, where: str, timezone: str = "UTC") -> Any:
    """Convert a window or watermark bound to the type of the column it is compared with.

    ``timezone`` is the calendar a datetime bound is turned into a date in (the partitions').
    """
    if dtype == pl.Null():
        return value  # an empty result without types: the comparison matches nothing
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if dtype == pl.Date():
            return aware.astimezone(ZoneInfo(timezone)).date()
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                return aware.astimezone(dt.UTC).replace(tzinfo=None)
            return aware
    elif isinstance(value, dt.date):
        if dtype == pl.Date():
            return value
        if isinstance(dtype, pl.Datetime):
            midnight = dt.datetime(value.year, value.month, value.day)
            return midnight if dtype.time_zone is None else midnight.replace(tzinfo=dt.UTC)
    elif dtype.is_numeric() or dtype == pl.String():
        return value
    raise DataError(f"{where}: cannot compare a column of type {dtype} with {type(value).__name__} {value!r}")


def minus_lookback(value: Any, lookback: LookbackSpec | None) -> Any:
    """A watermark value moved back by the dataflow's ``lookback`` (rows that late are read again)."""
    if lookback is None:
        return value
    if lookback.amount is not None:
        return value - lookback.amount
    delta = lookback.as_timedelta()
    if isinstance(value, dt.datetime):
        return value - delta
    if isinstance(value, dt.date):
        return value - dt.timedelta(days=max(1, delta.days))
    raise DataError(f"lookback in time units needs a date/datetime watermark, not {type(value).__name__}")
