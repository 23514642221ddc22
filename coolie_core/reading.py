"""Read one dataflow's rows: source -> transforms -> window / watermark filters -> a DataFrame.

Filters are applied to the transformed LazyFrame; polars pushes them down into the scan
wherever the plan allows (parquet/Delta statistics, untouched columns).
"""

from typing import Any

import polars as pl

from coolie_core.errors import DataError
from coolie_core.filters import watermark_expr, window_expr
from coolie_core.io.sources import SqlBound, read_source
from coolie_core.models import Catalog, Dataflow, SqlSource
from coolie_core.quarantine import with_quarantine_columns
from coolie_core.transforms import apply_transforms
from coolie_core.watermarks import Watermark
from coolie_core.windows import Window

__all__ = ["DATA_ERRORS", "as_data_error", "collect", "read_frame", "scan_frame", "sql_bounds"]


DATA_ERRORS = (
    pl.exceptions.InvalidOperationError,
    pl.exceptions.ComputeError,
    pl.exceptions.SchemaError,
    pl.exceptions.ColumnNotFoundError,
    pl.exceptions.SQLInterfaceError,
)
"""Polars errors that mean bad data or a bad transform (not a failing machine)."""


def as_data_error(exc: Exception, *, dataflow: str) -> DataError:
    """A :class:`DataError` for one of :data:`DATA_ERRORS`: its first paragraph names the column
    and the offending values (polars' hints follow it and are dropped)."""
    detail = str(exc).strip().split("\n\n", 1)[0]
    return DataError(f"dataflow {dataflow}: {type(exc).__name__}: {detail}")


def collect(lf: pl.LazyFrame, *, dataflow: str) -> pl.DataFrame:
    """Collect with the streaming engine; data errors (bad casts...) become :class:`DataError`."""
    try:
        return lf.collect(engine="streaming")
    except DATA_ERRORS as exc:
        raise as_data_error(exc, dataflow=dataflow) from exc


def read_frame(
    catalog: Catalog, flow: Dataflow, *, window: Window | None = None, watermark: Watermark | None = None
) -> pl.DataFrame:
    """The rows a run of ``flow`` loads: inside ``window`` and newer than ``watermark``."""
    return collect(scan_frame(catalog, flow, window=window, watermark=watermark), dataflow=flow.name)


def scan_frame(
    catalog: Catalog, flow: Dataflow, *, window: Window | None = None, watermark: Watermark | None = None
) -> pl.LazyFrame:
    """:func:`read_frame`'s rows as a LazyFrame, not yet read (for streaming them to a writer)."""
    lf = read_source(
        catalog,
        flow,
        sql_bounds=sql_bounds(flow, watermark, window),
        context={"watermark": watermark, "window": window},
    )
    if flow.quarantine is not None:
        lf = with_quarantine_columns(lf)
    lf = apply_transforms(lf, flow.transforms, dataflow=flow.name)
    schema = lf.collect_schema()
    if window is not None:
        if flow.partitions is None:
            raise DataError(f"dataflow {flow.name}: a window needs partitions in the catalog")
        lf = lf.filter(
            window_expr(
                flow.partitions.column,
                window.lo,
                window.hi,
                schema,
                where=flow.name,
                timezone=flow.partitions.timezone,
            )
        )
    if watermark:
        expr = watermark_expr(watermark, flow.lookback, schema, where=flow.name)
        if expr is not None:
            lf = lf.filter(expr)
    return lf


def _outputs(transform: Any) -> list[str]:
    columns = getattr(transform, "columns", {})
    if transform.kind == "rename":
        return list(columns.values())
    return list(columns)


def sql_bounds(flow: Dataflow, watermark: Watermark | None, window: Window | None) -> list[SqlBound]:
    """Bounds a SQL source applies in the database.

    Only numeric watermarks and integer windows are pushed down: dates stored as text (SQLite)
    would compare as strings. The same filters run again on the typed data, so pushdown only
    ever narrows what is transferred, never what is loaded.
    """
    if not isinstance(flow.source, SqlSource):
        return []
    produced = {c for t in flow.transforms if t.kind in ("rename", "derive", "cast") for c in _outputs(t)}
    bounds = []
    if watermark and len(watermark) == 1 and flow.lookback is None:
        column, value = next(iter(watermark.items()))
        if column not in produced and isinstance(value, int | float) and not isinstance(value, bool):
            bounds.append(SqlBound(column, ">", value))
    partitions = flow.partitions
    if (
        window is not None
        and partitions is not None
        and partitions.column not in produced
        and isinstance(window.lo, int)
    ):
        bounds += [SqlBound(partitions.column, ">=", window.lo), SqlBound(partitions.column, "<", window.hi)]
    return bounds
