"""Read one dataflow's rows: source -> transforms -> window / watermark filters -> a DataFrame.

Filters are applied to the transformed LazyFrame; polars pushes them down into the scan
wherever the plan allows (parquet/Delta statistics, untouched columns).

Accounting (``accounting=True``, the driver's incremental batches): every source row of the batch
comes back, the ones not to load marked in :data:`~coolie_core.transforms.DROPPED` with the
reason — ``filter`` / ``dedup`` (a declared transform removed it), ``late`` (at or below the
watermark in data new since the last batch), ``no_watermark`` (no value in any watermark
column; with quarantine such rows are rejected by the rule ``watermark`` instead). The batch is
the rows newer than the watermark (the filter still reaches the scan's statistics) plus, read
separately, the rows of the data added since the last batch that are not: new or changed files
of a file source, files added to a Delta source since the version the last batch read.
"""

import glob
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import polars as pl

from coolie_core.errors import DataError
from coolie_core.filters import watermark_expr, window_expr
from coolie_core.io.sources import SqlBound, is_empty_file, read_source
from coolie_core.landing import LandingFile, scan_landing
from coolie_core.locations import source_storage
from coolie_core.models import Catalog, Dataflow, DeltaSource, FileSource, SqlSource
from coolie_core.quarantine import with_quarantine_columns
from coolie_core.storage import ObjectInfo, StorageLocation, delta_table, library_options
from coolie_core.transforms import DROPPED, REJECT_RULE, add_rejection, alive, apply_transforms
from coolie_core.watermarks import Watermark
from coolie_core.windows import Window

__all__ = [
    "DATA_ERRORS",
    "NewData",
    "as_data_error",
    "collect",
    "new_data",
    "read_frame",
    "scan_frame",
    "scan_left_out",
    "split_marked",
    "sql_bounds",
    "tally_counts",
]


@dataclass(frozen=True, slots=True)
class NewData:
    """The part of a source added since the last batch (see :func:`new_data`)."""

    files: tuple[str, ...] = ()
    """New or changed files of a file source (absolute paths)."""
    delta_files: tuple[str, ...] = ()
    """Data files added to a Delta source since the version the last batch read."""
    delta_partitioned: bool = False
    landing: tuple[LandingFile, ...] = ()
    """``incremental: files``: read exactly these files (see :mod:`coolie_core.landing`)."""

    def __bool__(self) -> bool:
        return bool(self.files or self.delta_files)


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


def split_marked(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rows to load (marker dropped) and how many were marked, per reason."""
    if DROPPED not in frame.columns:
        return frame, {}
    if frame.get_column(DROPPED).null_count() == frame.height:
        return frame.drop(DROPPED), {}  # nothing marked: no filter, which would copy every column
    tally = {
        str(reason): int(n) for reason, n in frame.get_column(DROPPED).drop_nulls().value_counts().iter_rows()
    }
    return frame.filter(pl.col(DROPPED).is_null()).drop(DROPPED), tally


def tally_counts(tally: dict[str, int]) -> dict[str, Any]:
    """The run record's counts of :func:`split_marked`'s reasons."""
    return {
        "rows_filtered": tally.get("filter", 0) + tally.get("dedup", 0),
        "rows_late": tally.get("late", 0),
        "rows_without_watermark": tally.get("no_watermark", 0),
    }


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


def new_data(catalog: Catalog, flow: Dataflow, *, listed_after: int | None, source: str | None) -> NewData:
    """What a source holds that the last batch did not read.

    Args:
        listed_after: when the last batch listed a file source (ns since the epoch): files
            modified since are new.
        source: the last batch's source fingerprint (``delta:<version>`` for a Delta source).
    """
    location = source_storage(catalog, flow)
    if isinstance(flow.source, FileSource) and location is not None and listed_after is not None:
        return NewData(
            files=tuple(
                info.uri
                for info in location.glob()
                if _modified_since(info, listed_after)
                and not is_empty_file(info, flow.source, location=location)  # a header at most
            )
        )
    if (
        isinstance(flow.source, DeltaSource)
        and location is not None
        and source
        and source.startswith("delta:")
    ):
        return _delta_added(location, since=int(source.split(":", 1)[1]))
    return NewData()


def _modified_since(info: ObjectInfo, listed_after: int) -> bool:
    """Whether a file was (re)written at or after ``listed_after`` (ns since the epoch)."""
    if info.modified_ns is not None:
        return info.modified_ns >= listed_after
    # Object stores keep whole seconds: a file from the second of the last listing counts as
    # listed then (else every file written just before a listing would be new twice).
    return int(info.last_modified.timestamp()) > listed_after // 1_000_000_000


def _commit_text(commit: StorageLocation) -> str | None:
    if commit.is_local:
        return commit.path.read_text(encoding="utf-8") if commit.path.is_file() else None
    try:
        return commit.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def _delta_added(location: StorageLocation, *, since: int) -> NewData:
    """The data files committed to a Delta table after version ``since`` and still in it.

    Read from the commit files of those versions (a few small JSON files), not from two
    snapshots of the table. When a commit file is gone (log retention), the snapshots decide.
    """
    log = location.join("_delta_log")
    added: dict[str, bool] = {}  # path -> partitioned
    removed: set[str] = set()
    version = since + 1
    while (text := _commit_text(log.join(f"{version:020d}.json"))) is not None:
        for line in text.splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added[action["add"]["path"]] = bool(action["add"].get("partitionValues"))
            elif "remove" in action:
                removed.add(action["remove"]["path"])
        version += 1
    if version == since + 1 and log.join("*.json").glob():
        latest = delta_table(location)
        if latest.version() > since:  # the commits after ``since`` are no longer in the log
            before = set(delta_table(location, version=since).file_uris())
            files = tuple(uri for uri in latest.file_uris() if uri not in before)
            return NewData(delta_files=files, delta_partitioned=bool(latest.metadata().partition_columns))
    paths = [p for p in added if p not in removed]
    files = tuple(p if "://" in p else location.join(urllib.parse.unquote(p)).uri for p in paths)
    return NewData(delta_files=files, delta_partitioned=any(added[p] for p in paths))


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
        from coolie_core.transforms import sql_expr

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

    ``deferred_casts``: see :func:`coolie_core.transforms.apply_transforms`.
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
