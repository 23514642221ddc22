"""Read one dataflow's rows: source -> transforms -> window / watermark filters -> a DataFrame.

Filters are applied to the transformed LazyFrame; polars pushes them down into the scan
wherever the plan allows (parquet/Delta statistics, untouched columns).

Accounting (``accounting=True``, the driver's incremental batches): every source row of the batch
comes back, the ones not to load marked in :data:`~coolie_core.columns.DROPPED` with the
reason — ``filter`` / ``dedup`` (a declared transform removed it), ``late`` (at or below the
watermark in data new since the last batch), ``no_watermark`` (no value in any watermark
column; with quarantine such rows are rejected by the rule ``watermark`` instead). The batch is
the rows newer than the watermark (the filter still reaches the scan's statistics) plus, read
separately, the rows of the data added since the last batch that are not: new or changed files
of a file source, files added to a Delta source since the version the last batch read
(:func:`coolie_core.batches.new_data`).
"""

import glob

import polars as pl

from coolie_core.batches import NewData, sql_bounds
from coolie_core.columns import DROPPED, REJECT_RULE
from coolie_core.engines.polars.filters import watermark_expr, window_expr
from coolie_core.engines.polars.transform import alive, apply_transforms
from coolie_core.errors import DataError
from coolie_core.expressions import sql_expr
from coolie_core.io.sources import read_source
from coolie_core.landing import scan_landing
from coolie_core.locations import source_storage
from coolie_core.models import Catalog, Dataflow, FileSource
from coolie_core.quarantine import add_rejection, with_quarantine_columns
from coolie_core.storage import library_options
from coolie_core.watermarks import Watermark
from coolie_core.windows import Window

__all__ = ["DATA_ERRORS", "as_data_error", "collect", "read_frame", "scan_frame", "scan_left_out"]


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
    catalog: Catalog,
    flow: Dataflow,
    *,
    window: Window | None = None,
    watermark: Watermark | None = None,
    accounting: bool = False,
    new: NewData | None = None,
) -> pl.DataFrame:
    """The rows a run of ``flow`` loads: inside ``window`` and newer than ``watermark``.

    ``accounting``: the batch's other rows too, marked (see the module docs); ``new``: the data
    added since the last batch.
    """
    lf = scan_frame(catalog, flow, window=window, watermark=watermark, accounting=accounting, new=new)
    return collect(lf, dataflow=flow.name)


def _transformed(
    lf: pl.LazyFrame, flow: Dataflow, *, accounting: bool, deferred_casts: bool = False
) -> pl.LazyFrame:
    if flow.quarantine is not None:
        lf = with_quarantine_columns(lf)
    if accounting:
        lf = lf.with_columns(pl.lit(None, dtype=pl.String).alias(DROPPED))
    return apply_transforms(lf, flow.transforms, dataflow=flow.name, deferred_casts=deferred_casts)


def _judge(lf: pl.LazyFrame, flow: Dataflow, *, late: bool) -> pl.LazyFrame:
    """Mark the living rows without a watermark value (and, ``late``, the others as late)."""
    schema = lf.collect_schema()
    columns = flow.watermark_columns
    if not columns or any(c not in schema for c in columns):
        return lf  # no watermark, or a missing column (reported with the watermark's maximum)
    living = alive(schema)
    missing = pl.all_horizontal(pl.col(c).is_null() for c in columns)
    if REJECT_RULE in schema:
        reason = pl.lit(f"no watermark value ({', '.join(columns)} null)")
        lf = lf.with_columns(add_rejection("watermark", reason, living & missing))
    else:
        lf = lf.with_columns(
            pl.when(living & missing).then(pl.lit("no_watermark")).otherwise(pl.col(DROPPED)).alias(DROPPED)
        )
    if late:
        lf = lf.with_columns(
            pl.when(alive(schema)).then(pl.lit("late")).otherwise(pl.col(DROPPED)).alias(DROPPED)
        )
    return lf


def _read_new(catalog: Catalog, flow: Dataflow, new: NewData) -> pl.LazyFrame:
    """The rows of the new data, as the source read gives them (source filter applied)."""
    source = flow.source
    if isinstance(source, FileSource):
        base = source_storage(
            catalog, flow.model_copy(update={"source": source.model_copy(update={"path": "."})})
        )
        assert base is not None
        frames = []
        for file in new.files:
            relative = glob.escape(file.removeprefix(base.uri).lstrip("/"))
            single = flow.model_copy(update={"source": source.model_copy(update={"path": relative})})
            frames.append(read_source(catalog, single))
        return pl.concat(frames, how="diagonal_relaxed")
    delta_location = source_storage(catalog, flow)
    assert delta_location is not None
    lf = pl.scan_parquet(
        list(new.delta_files),
        hive_partitioning=new.delta_partitioned,
        storage_options=library_options(delta_location),
    )
    if source.filter:
        lf = lf.filter(sql_expr(source.filter, where=f"{flow.name}.source.filter"))
    return lf


def scan_frame(
    catalog: Catalog,
    flow: Dataflow,
    *,
    window: Window | None = None,
    watermark: Watermark | None = None,
    accounting: bool = False,
    new: NewData | None = None,
    deferred_casts: bool = False,
) -> pl.LazyFrame:
    """:func:`read_frame`'s rows as a LazyFrame, not yet read (for streaming them to a writer).

    ``deferred_casts``: see :func:`coolie_core.engines.polars.transform.apply_transforms`.
    """
    if new is not None and new.landing:
        lf = scan_landing(catalog, flow, files=new.landing)
    else:
        lf = read_source(
            catalog,
            flow,
            sql_bounds=sql_bounds(flow, watermark, window),
            context={"watermark": watermark, "window": window},
        )
    lf = _transformed(lf, flow, accounting=accounting, deferred_casts=deferred_casts)
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
    expr = watermark_expr(watermark, flow.lookback, schema, where=flow.name) if watermark else None
    if expr is not None:
        lf = lf.filter(expr)
    if not accounting:
        return lf
    lf = _judge(lf, flow, late=False)
    extra = None if expr is None else scan_left_out(catalog, flow, watermark=watermark, new=new)
    return lf if extra is None else pl.concat([lf, extra], how="diagonal_relaxed")


def scan_left_out(
    catalog: Catalog, flow: Dataflow, *, watermark: Watermark | None, new: NewData | None
) -> pl.LazyFrame | None:
    """The rows of the new data that the watermark filter leaves out, marked: late, or without a
    watermark value (rejected by the rule ``watermark`` with quarantine). None: no such data.

    Never loaded, only counted or quarantined; the Spark engine uses it too.
    """
    if not watermark or not new:
        return None
    extra = _transformed(_read_new(catalog, flow, new), flow, accounting=True)
    schema = extra.collect_schema()
    if watermark_expr(watermark, flow.lookback, schema, where=flow.name) is None:
        return None
    # The rows not newer in any column (each column older or null): ``~expr.fill_null(False)``
    # in a form parquet statistics can prune, so the new files' row groups are not read again
    # to find no late row (issue 17: ~15 ms a pass on 500k new rows, twice per batch).
    newer = {c: watermark_expr({c: v}, flow.lookback, schema, where=flow.name) for c, v in watermark.items()}
    not_newer = pl.all_horizontal(~e | pl.col(c).is_null() for c, e in newer.items() if e is not None)
    return _judge(extra.filter(not_newer), flow, late=True)
