"""Stream a merge or replace_window batch into an existing Delta table (issue 17).

The general path collects the batch before writing it; delta-rs' merge and predicate overwrite
take an Arrow stream too, so a polars batch read from columnar files (parquet, Delta: a pass
over a few columns is cheap) goes from the source to the writer batch by batch instead:

* one streaming pass first over the columns the write must know about before it starts: row
  count, marked rows per reason, watermark maxima, the merge keys' distinct count (duplicates:
  ``on_duplicate_keys``) or the partition column's range (the windows replaced);
* the write pass then streams the rows to load, capped at the watermark maxima, and checks
  them against the first pass (count, distinct keys, range): a source that changed in between
  aborts the write before its commit (a :class:`TransientError`: the retry reads it again).

Commit metadata, accounting, application transaction, snapshot check, fault points and error
messages are the general path's (:func:`coolie_core.engines.polars.write.write_delta`).
"""

from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from coolie_core.batches import NewData, StreamedBatch, tally_counts
from coolie_core.columns import DROPPED, add_system_columns
from coolie_core.drift import reconcile_schema, table_schema
from coolie_core.engines.polars.read import DATA_ERRORS, as_data_error, scan_frame
from coolie_core.engines.polars.stream import new_maxima
from coolie_core.engines.polars.transform import latest_per_key
from coolie_core.errors import DataError, TransientError, WriteError
from coolie_core.faults import fault_point
from coolie_core.io.delta import (
    CommitInfo,
    batch_snapshot,
    commit_empty,
    delta_table_exists,
    merge_into,
    note_written,
    version_after,
    window_predicate,
    wrap_delta_error,
)
from coolie_core.models import Catalog, Dataflow
from coolie_core.storage import StorageLocation, delta_table
from coolie_core.watermarks import StoredWatermark
from coolie_core.windows import windows_covering

__all__ = ["can_stream_rewrite", "stream_rewrite"]

_KEYS = "__coolie_keys"
_LOADABLE = "__coolie_loadable"
_LO, _HI = "__coolie_lo", "__coolie_hi"


def can_stream_rewrite(catalog: Catalog, flow: Dataflow, *, dest: StorageLocation) -> bool:
    """Whether a windowless run of ``flow`` can take :func:`stream_rewrite`: a polars merge or
    replace_window into an existing Delta table, from parquet or Delta, without quarantine."""
    load = flow.destination.load
    return (
        load in ("merge", "replace_window")
        and catalog.engine_for(flow) == "polars"
        and flow.destination.format == "delta"
        and flow.quarantine is None
        and flow.source.format in ("parquet", "delta")
        and (load != "replace_window" or flow.partitions is not None)
        and delta_table_exists(dest)
    )


def _source_changed(flow: Dataflow, what: str) -> TransientError:
    return TransientError(
        f"dataflow {flow.name}: the source changed while it was read ({what}); nothing was committed"
    )


def stream_rewrite(
    catalog: Catalog,
    flow: Dataflow,
    *,
    dest: StorageLocation,
    state: StoredWatermark,
    run_id: str,
    source: str | None,
    new: NewData | None = None,
    listed_at: int | None = None,
) -> StreamedBatch:
    """Read, transform and merge (or replace windows with) one batch of ``flow`` as a stream.

    Same arguments and result as :func:`coolie_core.engines.polars.stream.stream_dataflow`; rows a merge
    folds (duplicate keys, ``on_duplicate_keys: latest``) are in the tally as ``"merged"``.

    Raises:
        DataError: bad data or transform, duplicate merge keys under ``on_duplicate_keys: fail``;
            SchemaDriftError, WriteError, TransientError: as :func:`coolie_core.engines.polars.write.write_delta`.
    """
    import datetime as dt

    destination = flow.destination
    merge = destination.load == "merge"
    previous = state.value if flow.watermark_columns else None
    lf = scan_frame(catalog, flow, watermark=previous, accounting=True, new=new)
    schema = lf.collect_schema()
    keep = pl.col(DROPPED).is_null() if DROPPED in schema else pl.lit(True)
    keys = destination.merge_keys
    column = flow.partitions.column if flow.partitions is not None else ""
    if merge:
        extra = [pl.struct(keys).filter(keep).n_unique().alias(_KEYS)]
    else:
        if column not in schema:
            raise DataError(
                f"dataflow {flow.name}: partition column {column} is not in the data ({schema.names()})"
            )
        extra = [pl.col(column).filter(keep).min().alias(_LO), pl.col(column).filter(keep).max().alias(_HI)]
    extra.append((keep.sum() if DROPPED in schema else pl.len()).alias(_LOADABLE))
    rows_read, watermark, lf, tally, stats = new_maxima(lf, flow, previous, extra=extra)
    if rows_read == 0:
        return StreamedBatch(0, 0, previous, None)
    loadable = int(stats[_LOADABLE])
    accounts: dict[str, int] = {"rows_read": rows_read, "rows_rejected": 0, **tally_counts(tally)}
    info = CommitInfo(
        dataflow=flow.name, run_id=run_id, batch=state.batch + 1, watermark=watermark, source=source,
        listed_at=listed_at, accounts=accounts,
    )  # fmt: skip
    fault_point("after_read", flow.name)
    if loadable == 0:
        # All rows filtered, late or without a watermark: record the batch without rows.
        version = None
        if watermark is not None or not flow.watermark_columns:
            version = commit_empty(dest, info=info)
        return StreamedBatch(
            rows_read, 0, watermark if version is not None else previous, version, None, tally
        )

    rows = lf.filter(keep).drop(DROPPED) if DROPPED in schema else lf
    to_write = loadable
    if merge and int(stats[_KEYS]) < loadable:
        if destination.on_duplicate_keys == "fail":
            sample = rows.filter(pl.struct(keys).is_duplicated()).select(keys).head(3).collect().to_dicts()
            raise DataError(
                f"dataflow {flow.name}: the source holds several rows for the same merge key, e.g. {sample}; "
                "set destination.on_duplicate_keys: latest or deduplicate in a transform"
            )
        rows = latest_per_key(rows, keys, flow.watermark_columns)
        to_write = int(stats[_KEYS])
    if flow.system_columns:
        rows = add_system_columns(rows, loaded_at=dt.datetime.now(dt.UTC), run_id=run_id)
    table = delta_table(dest)  # loaded once: its schema now, the snapshot written against below
    empty, drift = reconcile_schema(
        pl.DataFrame(schema=rows.collect_schema()),
        table_schema(dest, format="delta", table=table),
        policy=destination.schema_drift,
        dataflow=flow.name,
        location=dest,
        format="delta",
    )
    if empty.columns != rows.collect_schema().names():
        rows = rows.select(empty.columns)
    if to_write < loadable:
        tally["merged"] = loadable - to_write

    # The rows streamed are checked against the first pass before delta-rs may commit.
    check, finish = _checks(flow, expected=to_write, low=stats.get(_LO), high=stats.get(_HI))
    fault_point("before_commit", flow.name)
    failures: list[BaseException] = []
    reader = _reader(rows, check=check, finish=finish, expected=to_write, flow=flow, failures=failures)
    note_written(info, to_write)
    try:
        snapshot = batch_snapshot(dest, info, table=table)
        if merge:
            version = _merge(snapshot, reader, flow=flow, info=info, evolve=drift.evolve)
        else:
            dtype = empty.schema[column]
            windows = windows_covering(flow.partitions, lo=stats[_LO], hi_inclusive=stats[_HI])  # type: ignore[arg-type]
            timezone = flow.partitions.timezone  # type: ignore[union-attr]
            predicate = window_predicate(column, [(w.lo, w.hi) for w in windows], dtype, timezone=timezone)
            from deltalake import write_deltalake

            write_deltalake(
                snapshot,
                reader,
                mode="overwrite",
                predicate=predicate,
                schema_mode="merge" if drift.evolve else None,
                commit_properties=info.properties(),
            )
            version = version_after(dest, snapshot)
    except (DataError, WriteError, TransientError):
        raise
    except Exception as exc:
        cause = failures[0] if failures else None
        if isinstance(cause, DATA_ERRORS):
            raise as_data_error(cause, dataflow=flow.name) from cause
        if isinstance(cause, Exception):
            raise cause from exc
        wrapped = wrap_delta_error(exc, dataflow=flow.name, table=dest)
        if wrapped is exc:
            raise
        raise wrapped from exc
    fault_point("after_commit", flow.name)
    return StreamedBatch(rows_read, to_write, watermark, version, drift, tally)


def _checks(
    flow: Dataflow, *, expected: int, low: Any = None, high: Any = None
) -> tuple[Callable[[pl.DataFrame], None], Callable[[], None]]:
    """What :func:`_reader` checks on every batch and at the end: a merge's keys are distinct
    (``expected`` of them), a replace_window's rows within ``[low, high]`` (the first pass's
    range: the windows replaced)."""
    if flow.destination.load == "merge":
        keys = flow.destination.merge_keys
        seen: list[pl.DataFrame] = []

        def check(frame: pl.DataFrame) -> None:
            seen.append(frame.select(keys))

        def finish() -> None:
            if pl.concat(seen).n_unique() != expected:
                raise _source_changed(flow, "merge keys")

        return check, finish
    assert flow.partitions is not None
    column = flow.partitions.column

    def in_range(frame: pl.DataFrame) -> None:
        lo, hi = frame.select(pl.col(column).min().alias(_LO), pl.col(column).max().alias(_HI)).row(0)
        if lo is not None and (lo < low or hi > high):
            raise _source_changed(flow, f"{column} outside {low}..{high}")

    return in_range, lambda: None


def _reader(
    rows: pl.LazyFrame,
    *,
    check: Callable[[pl.DataFrame], None],
    finish: Callable[[], None],
    expected: int,
    flow: Dataflow,
    failures: list[BaseException],
) -> Any:
    """An Arrow stream (arro3: no pyarrow import) of ``rows``, checked batch by batch; a
    failure inside it is kept in ``failures`` (delta-rs only reports that the stream failed)."""
    from arro3.core import RecordBatchReader, Table

    polars_schema = rows.collect_schema()
    schema = Table.from_arrow(pl.DataFrame(schema=polars_schema)).schema

    def batches() -> Iterator[Any]:
        written = 0
        try:
            for frame in rows.collect_batches(engine="streaming", maintain_order=False, lazy=True):
                if not frame.height:
                    continue
                if frame.schema != polars_schema:
                    frame = frame.cast(polars_schema)
                check(frame)
                written += frame.height
                yield from Table.from_arrow(frame).to_batches()
            if written != expected:
                raise _source_changed(flow, f"{written} rows to load, {expected} counted")
            finish()
        except BaseException as exc:
            failures.append(exc)
            raise

    return RecordBatchReader.from_batches(schema, batches())


def _merge(snapshot: Any, reader: Any, *, flow: Dataflow, info: CommitInfo, evolve: bool) -> int:
    """delta-rs' merge of ``reader`` into ``snapshot`` (the general path's clauses); the version."""
    fault_point("delta_commit", flow.name)
    merge_into(snapshot, reader, destination=flow.destination, info=info, evolve=evolve)
    snapshot.update_incremental()
    return int(snapshot.version())
