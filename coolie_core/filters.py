"""Row filters for incremental reads (watermark) and windows, typed to the column.

Bounds are normalised to the column's type before comparing: a UTC datetime bound against a
``Date`` column compares as the calendar date in the partition timezone (a window boundary is local
midnight there), against a naive ``Datetime`` as naive UTC. Never a TypeError.
"""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from coolie_core.errors import DataError
from coolie_core.models import LookbackSpec
from coolie_core.watermarks import Watermark

__all__ = ["coerce_bound", "watermark_expr", "window_expr"]


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


def window_expr(
    column: str, lo: Any, hi: Any, schema: pl.Schema, *, where: str, timezone: str = "UTC"
) -> pl.Expr:
    """``lo <= column < hi`` with bounds typed to the column (dates in the partition ``timezone``)."""
    if column not in schema:
        raise DataError(f"{where}: partition column {column} not found; available: {list(schema.names())}")
    dtype = schema[column]
    expr: pl.Expr = (pl.col(column) >= coerce_bound(lo, dtype, where=where, timezone=timezone)) & (
        pl.col(column) < coerce_bound(hi, dtype, where=where, timezone=timezone)
    )
    return expr


def _minus_lookback(value: Any, lookback: LookbackSpec | None) -> Any:
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


def watermark_expr(
    watermark: Watermark, lookback: LookbackSpec | None, schema: pl.Schema, *, where: str
) -> pl.Expr | None:
    """Rows newer than the watermark in any of its columns (``>``, after look-back)."""
    parts = []
    for column, value in watermark.items():
        if column not in schema:
            raise DataError(
                f"{where}: watermark column {column} not found; available: {list(schema.names())}"
            )
        bound = coerce_bound(_minus_lookback(value, lookback), schema[column], where=where)
        parts.append(pl.col(column) > bound)
    if not parts:
        return None
    return pl.any_horizontal(parts)
