"""Stream a dataflow's rows into its Delta table, never holding them in memory whole.

For the polars engine's plain loads (``append`` / ``overwrite`` to Delta, no window, no
quarantine) the engine takes the run over with :func:`stream_dataflow`: the transformed LazyFrame
is executed by polars' streaming engine batch by batch and delta-rs writes the batches as they
come, in one commit, so peak memory stays bounded whatever the input size (see BENCHMARKS.md).

What the general path learns from the whole frame is found without it:

* rows: counted while the batches pass; a source with no rows makes no commit;
* the new watermark (it goes into the commit, so it is needed before the write): one streaming
  pass over the watermark columns only (``len`` and ``max``); the write then keeps only rows at
  or below those maxima, so rows that land in the source between the two passes wait for the
  next batch instead of being loaded twice;
* schema drift: the LazyFrame's schema against the table's, with the same policy as the driver.

Everything else is the general path's: commit metadata, application transaction, snapshot
check, fault points and error messages.
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from coolie_core.batches import NewData, StreamedBatch, tally_counts
from coolie_core.columns import DROPPED, add_system_columns
from coolie_core.drift import reconcile_schema, table_schema
from coolie_core.engines.polars.casts import BAD_CAST, raise_bad_casts
from coolie_core.engines.polars.read import DATA_ERRORS, as_data_error, collect, scan_frame
from coolie_core.faults import fault_point
from coolie_core.io.delta import CommitInfo, commit_empty, delta_table_exists, write_delta_batches
from coolie_core.models import Catalog, Dataflow
from coolie_core.storage import StorageLocation, delta_table
from coolie_core.watermarks import StoredWatermark, Watermark, max_watermark

__all__ = ["can_stream", "new_maxima", "stream_dataflow"]

_ROWS = "__coolie_rows"


def can_stream(catalog: Catalog, flow: Dataflow) -> bool:
    """Whether an incremental (windowless) run of ``flow`` can take :func:`stream_dataflow`."""
    return (
        catalog.engine_for(flow) == "polars"
        and flow.destination.format == "delta"
        and flow.destination.load in ("append", "overwrite")
        and flow.quarantine is None
    )


_REASONS = ("filter", "dedup", "late", "no_watermark")
_KEEP_COLUMNS = ("cast", "rename", "derive", "filter")
"""Transforms that keep every column (and row) they get: markers of deferred casts pass them."""
_BATCH_ROWS = 16_384
"""Smaller batches are joined up to this many rows before delta-rs gets them: polars' own batches
can be tiny (jsonl: ~2,300 rows) and each costs a fixed ~1.5 ms on its way to the writer (issue 17:
+25% CPU on a jsonl append). Larger ones (csv: ~22,000 rows, parquet: ~125,000) pass as they are.
Joining up to 65,536 rows cost no less CPU and up to 30% more peak memory (csv, 1M rows)."""


def new_maxima(
    lf: pl.LazyFrame, flow: Dataflow, previous: Watermark | None, *, extra: Sequence[pl.Expr] = ()
) -> tuple[int, Watermark | None, pl.LazyFrame, dict[str, int], dict[str, Any]]:
    """Rows, new watermark and marked rows per reason of ``lf`` in one pass over the watermark
    columns and the marks; ``lf`` capped at the new watermark; the values of the ``extra``
    aggregates (by name) computed in the same pass."""
    columns = flow.watermark_columns
    schema = lf.collect_schema()
    present = [c for c in columns if c in schema]
    marked = [(pl.col(DROPPED) == r).sum().alias(f"__coolie_{r}") for r in _REASONS if DROPPED in schema]
    stats = collect(
        lf.select(pl.len().alias(_ROWS), *(pl.col(c).max() for c in present), *marked, *extra),
        dataflow=flow.name,
    )
    rows = int(stats[_ROWS][0])
    tally = {r: int(stats[f"__coolie_{r}"][0]) for r in _REASONS if f"__coolie_{r}" in stats.columns}
    values = {e.meta.output_name(): stats[e.meta.output_name()][0] for e in extra}
    if rows == 0:
        return 0, previous, lf, tally, values
    maxima = stats.select(present)
    watermark = max_watermark(maxima, columns, previous, dataflow=flow.name)  # names missing columns
    caps = [
        pl.col(c).is_null() | (pl.col(c) <= pl.lit(maxima[c][0], dtype=maxima.schema[c]))
        for c in present
        if maxima[c][0] is not None
    ]
    return rows, watermark, lf.filter(pl.all_horizontal(caps)) if caps else lf, tally, values


def _batches(lf: pl.LazyFrame, tally: dict[str, int]) -> Iterator[pl.DataFrame]:
    """The rows to load, polars' streaming batches with small ones joined up to
    :data:`_BATCH_ROWS` (empty ones skipped); ``tally`` counts every row seen (``""``) and the
    marked ones per reason. Deferred casts are checked on every batch (all rows, marked or not);
    the marker columns are dropped once per batch handed on (~1,000 batches per 1M jsonl rows)."""
    pending: list[pl.DataFrame] = []
    held = 0
    columns = lf.collect_schema().names()
    markers = [c for c in columns if c.startswith(BAD_CAST)]
    internal = [*markers, DROPPED] if DROPPED in columns else markers

    def joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=True)
        return frame.drop(internal) if internal else frame

    # In the source's order: unordered batches read cheaper alone but cost the whole write ~10 %
    # more CPU (5M parquet rows, 8 interleaved pairs; BENCHMARKS.md, issue 17 item 13).
    for frame in lf.collect_batches(engine="streaming", maintain_order=True, lazy=True):
        raise_bad_casts(frame, markers)
        tally[""] = tally.get("", 0) + frame.height
        if DROPPED in columns and (marks := frame.get_column(DROPPED)).null_count() != frame.height:
            for reason, n in marks.drop_nulls().value_counts().iter_rows():
                tally[str(reason)] = tally.get(str(reason), 0) + int(n)
            frame = frame.filter(pl.col(DROPPED).is_null())
        if not frame.height:
            continue
        if not pending and frame.height >= _BATCH_ROWS:
            yield joined([frame])  # large enough: passed on as it is, no copy
            continue
        pending.append(frame)
        held += frame.height
        if held >= _BATCH_ROWS:
            yield joined(pending)
            pending, held = [], 0
    if pending:
        yield joined(pending)


def stream_dataflow(
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
    """Read, transform and write one incremental batch of ``flow`` as a stream (see module docs).

    Args:
        catalog: the loaded catalog.
        flow: a dataflow :func:`can_stream` accepts.
        dest: its destination table folder.
        state: the stored batch and watermark.
        run_id: stamped on the rows and the commit.
        source: the source fingerprint, recorded in the commit.
        new: the source's data added since the last batch (late rows, see :mod:`coolie_core.engines.polars.read`).
        listed_at: when the source was listed (recorded in the commit).

    Raises:
        DataError: bad data or transform (named), SchemaDriftError: columns do not fit the table,
            WriteError / TransientError: as :func:`coolie_core.engines.polars.write.write_delta`.
    """
    previous = state.value if flow.watermark_columns else None
    # Strict parses checked natively, in _batches (every row passes there: no watermark filter
    # to leave rows out, no transform that drops or aggregates columns).
    deferred = not flow.watermark_columns and all(t.kind in _KEEP_COLUMNS for t in flow.transforms)
    lf = scan_frame(catalog, flow, watermark=previous, accounting=True, new=new, deferred_casts=deferred)
    rows_read, watermark, counted = -1, previous, dict[str, int]()
    if flow.watermark_columns:
        rows_read, watermark, lf, counted, _ = new_maxima(lf, flow, previous)
        if rows_read == 0:
            return StreamedBatch(0, 0, previous, None)
    if flow.system_columns:
        lf = add_system_columns(lf, loaded_at=dt.datetime.now(dt.UTC), run_id=run_id)
    markers = [c for c in lf.collect_schema().names() if c.startswith(BAD_CAST)]
    # Loaded once: its schema now, and the snapshot the batch is written against (brought up to
    # date from the log's newer commits just before the write).
    table = delta_table(dest) if delta_table_exists(dest) else None
    empty, drift = reconcile_schema(
        pl.DataFrame(schema=lf.drop(DROPPED, *markers).collect_schema()),
        table_schema(dest, format="delta", table=table),
        policy=flow.destination.schema_drift,
        dataflow=flow.name,
        location=dest,
        format="delta",
        replace=flow.destination.load == "overwrite",
    )
    if [*empty.columns, DROPPED, *markers] != lf.collect_schema().names():
        lf = lf.select(*empty.columns, DROPPED, *markers)

    failures: list[BaseException] = []
    tally: dict[str, int] = {}
    tables = _batches(lf, tally)
    try:
        first = next(tables, None)
    except DATA_ERRORS as exc:
        raise as_data_error(exc, dataflow=flow.name) from exc
    fault_point("after_read", flow.name)
    # Commit-time accounting: the rows written come from the commit's own metrics.
    accounts = {"rows_read": rows_read, **tally_counts(counted)} if rows_read >= 0 else {}
    info = CommitInfo(
        dataflow=flow.name, run_id=run_id, batch=state.batch + 1, watermark=watermark, source=source,
        listed_at=listed_at, accounts=accounts,
    )  # fmt: skip
    if first is None:
        seen = tally.pop("", 0)
        read = max(rows_read, seen)
        version = None
        recordable = watermark is not None or not flow.watermark_columns
        if read and recordable and flow.destination.load != "overwrite" and table is not None:
            # All rows filtered, late or without a watermark: record the batch without rows.
            accounts.update({"rows_read": read, **tally_counts(tally)})
            version = commit_empty(dest, info=info, table=table)
        return StreamedBatch(read, 0, watermark if version is not None else previous, version, drift, tally)
    # Arrow through arro3 (delta-rs' own Arrow library), zero-copy from polars: importing
    # pyarrow would add ~40 MB to every run (BENCHMARKS.md, issue 17).
    from arro3.core import RecordBatchReader, Table

    polars_schema = first.schema
    schema = Table.from_arrow(first).schema
    written = 0

    def record_batches() -> Iterator[Any]:
        nonlocal written
        try:
            frame: pl.DataFrame | None = first
            while frame is not None:
                if frame.schema != polars_schema:
                    frame = frame.cast(polars_schema)
                written += frame.height
                yield from Table.from_arrow(frame).to_batches()
                frame = next(tables, None)
        except BaseException as exc:  # delta-rs sees only "the stream failed": keep the cause
            failures.append(exc)
            raise

    fault_point("before_commit", flow.name)
    # On disk an empty folder counts as existing (it is not ours to remove); stores have none.
    created = not (dest.path.exists() if dest.is_local else dest.exists())
    try:
        version = write_delta_batches(
            dest,
            RecordBatchReader.from_batches(schema, record_batches()),
            destination=flow.destination,
            info=info,
            evolve_schema=drift.evolve,
            table=table,
        )
    except Exception as exc:
        if created and not dest.join("_delta_log").exists():
            # A first write that failed mid-stream leaves its data files and no table: remove them.
            dest.delete_prefix()
        cause = failures[0] if failures else None
        if isinstance(cause, DATA_ERRORS):
            raise as_data_error(cause, dataflow=flow.name) from cause
        if isinstance(cause, Exception):
            raise cause from exc
        raise
    fault_point("after_commit", flow.name)
    seen = tally.pop("", 0)
    return StreamedBatch(max(rows_read, seen), written, watermark, version, drift, tally)
