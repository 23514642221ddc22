"""Row filters for incremental reads (watermark) and windows, as polars expressions.

Bounds are typed to the column by :func:`coolie_core.values.coerce_bound` (the Spark engine's
filters use the same rule), so a comparison never raises a TypeError.
"""

from typing import Any

import polars as pl

from coolie_core.errors import DataError
from coolie_core.models import LookbackSpec
from coolie_core.values import coerce_bound, minus_lookback
from coolie_core.watermarks import Watermark

__all__ = ["watermark_expr", "window_expr"]


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
        bound = coerce_bound(minus_lookback(value, lookback), schema[column], where=where)
        parts.append(pl.col(column) > bound)
    if not parts:
        return None
    return pl.any_horizontal(parts)
