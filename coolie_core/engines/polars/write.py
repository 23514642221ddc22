"""The Polars engine's writes: a collected frame into its destination, with the dataflow's load.

A Delta destination gets one delta-rs commit per batch through the shared commit layer
(:mod:`coolie_core.io.delta`): append, overwrite, replace_window (a predicate overwrite of the
windows replaced), merge (duplicate keys: ``on_duplicate_keys``; change-feed deletes) or scd2
(:mod:`coolie_core.engines.polars.scd2`). A parquet-folder destination gets one file per batch
(:mod:`coolie_core.io.parquet`); the driver records the batch in the folder's state store after it.

The Spark engine writes the frames it collects (small reads, parquet-folder destinations) here too.
"""

import os
from collections.abc import Sequence
from typing import Any

import polars as pl

from coolie_core.engines.polars.scd2 import write_scd2
from coolie_core.engines.polars.transform import cdc_deleted, latest_per_key
from coolie_core.errors import DataError, TransientError, WriteError
from coolie_core.faults import fault_point
from coolie_core.io.delta import (
    CommitInfo,
    WriteResult,
    batch_snapshot,
    merge_into,
    note_written,
    version_after,
    window_predicate,
    wrap_delta_error,
)
from coolie_core.io.parquet import write_parquet_folder
from coolie_core.models import Dataflow, DestinationSpec
from coolie_core.storage import StorageLocation, as_location, delta_table_exists, table_options
from coolie_core.windows import windows_covering

__all__ = ["covering_windows", "write_delta", "write_frame"]


def write_frame(
    frame: pl.DataFrame,
    *,
    flow: Dataflow,
    dest: StorageLocation,
    destination: DestinationSpec,
    info: CommitInfo,
    windows: Sequence[tuple[Any, Any]] = (),
    evolve: bool = False,
) -> WriteResult:
    """Write one batch's prepared rows (system columns added, schema reconciled) to ``dest``.

    Args:
        frame: the rows to write.
        flow: the dataflow.
        dest: its destination.
        destination: the load to apply (a window run's is ``replace_window``).
        info: the commit's metadata; a parquet folder's batch is ``info.batch``.
        windows: the ``[lo, hi)`` windows a replace_window load replaces; none: the windows
            covering the rows.
        evolve: add the frame's new columns to the Delta table (schema drift ``evolve``).

    Returns:
        The rows written and the Delta version (None for a parquet folder, recorded by the
        driver in its state store once the file is written).
    """
    if flow.destination.format != "delta":
        assert info.batch is not None  # window runs need a Delta destination (replay.check_window_run)
        rows = write_parquet_folder(
            dest, frame, destination=flow.destination, batch=info.batch, run_id=info.run_id
        )
        return WriteResult(rows, None)
    column = None
    bounds = list(windows)
    if destination.load == "replace_window":
        assert flow.partitions is not None
        column = flow.partitions.column
        if not bounds:
            bounds = covering_windows(flow, frame)
    return write_delta(
        dest,
        frame,
        destination=destination,
        info=info,
        order_columns=flow.watermark_columns,
        window_column=column,
        windows=bounds,
        window_timezone=flow.partitions.timezone if flow.partitions is not None else "UTC",
        evolve_schema=evolve,
    )


def covering_windows(flow: Dataflow, frame: pl.DataFrame) -> list[tuple[Any, Any]]:
    """The ``[lo, hi)`` partition windows covering the rows of ``frame``."""
    assert flow.partitions is not None
    column = flow.partitions.column
    lo, hi = frame.select(pl.col(column).min().alias("lo"), pl.col(column).max().alias("hi")).row(0)
    windows = windows_covering(flow.partitions, lo=lo, hi_inclusive=hi)
    return [(w.lo, w.hi) for w in windows]


def _dedup_keys(
    frame: pl.DataFrame, keys: list[str], order: list[str], *, policy: str, dataflow: str
) -> pl.DataFrame:
    duplicated = frame.select(pl.struct(keys).is_duplicated().any()).item()
    if not duplicated:
        return frame
    if policy == "fail":
        sample = frame.filter(pl.struct(keys).is_duplicated()).select(keys).head(3).to_dicts()
        raise DataError(
            f"dataflow {dataflow}: the source holds several rows for the same merge key, e.g. {sample}; "
            "set destination.on_duplicate_keys: latest or deduplicate in a transform"
        )
    return latest_per_key(frame.lazy(), keys, order).collect()


def write_delta(
    where: "StorageLocation | str | os.PathLike[str]",
    frame: pl.DataFrame,
    *,
    destination: DestinationSpec,
    info: CommitInfo,
    order_columns: list[str],
    window_column: str | None = None,
    windows: Sequence[tuple[Any, Any]] = (),
    window_timezone: str = "UTC",
    evolve_schema: bool = False,
) -> WriteResult:
    """Write ``frame`` with the destination's load strategy in one commit.

    Args:
        where: the table's location (a local folder or an object-store URI).
        frame: rows to write (already transformed, with system columns).
        destination: the dataflow's destination spec.
        info: commit metadata (watermark, batch, window).
        order_columns: "latest" order for duplicate merge keys (watermark columns).
        window_column: replace_window's column.
        windows: replace_window's ``[lo, hi)`` bounds to replace.
        window_timezone: the partitions' timezone (date columns compare with local dates).
        evolve_schema: add the frame's new columns to the table (schema drift policy ``evolve``).
    """
    from deltalake import write_deltalake

    path = as_location(where)
    load = destination.load
    partition_by = destination.partition_by or None
    exists = delta_table_exists(path)
    # Write against the snapshot the batch was checked on: a run of the same dataflow committing
    # meanwhile makes this commit conflict instead of landing the batch twice.
    snapshot = batch_snapshot(path, info) if exists else None
    target: Any = path.uri if snapshot is None else snapshot
    # A table object carries its store; a new table needs the location's options.
    options = table_options(path) if snapshot is None else {}

    def append(data: pl.DataFrame) -> WriteResult:
        """Append (creating the table on first write) in one commit."""
        note_written(info, data.height)
        write_deltalake(
            target,
            data,  # polars' Arrow stream: no pyarrow import (~40 MB, BENCHMARKS.md issue 17)
            mode="append",
            partition_by=partition_by,
            schema_mode="merge" if evolve_schema else None,
            commit_properties=info.properties(),
            **options,
        )
        return WriteResult(data.height, version_after(path, snapshot))

    try:
        if load == "scd2":
            return write_scd2(
                path,
                frame,
                destination=destination,
                info=info,
                order_columns=order_columns,
                evolve_schema=evolve_schema,
                snapshot=snapshot,
            )
        if load == "append" or (load == "merge" and not exists):
            data = frame
            if load == "merge":
                data = _dedup_keys(
                    frame,
                    destination.merge_keys,
                    order_columns,
                    policy=destination.on_duplicate_keys,
                    dataflow=info.dataflow,
                )
                if destination.cdc is not None:
                    data = data.filter(~cdc_deleted(destination.cdc))
            return append(data)
        if load == "overwrite":
            note_written(info, frame.height)
            write_deltalake(
                target,
                frame,
                mode="overwrite",
                schema_mode="overwrite",
                partition_by=partition_by,
                commit_properties=info.properties(),
                **options,
            )
            return WriteResult(frame.height, version_after(path, snapshot))
        if load == "replace_window":
            assert window_column is not None
            dtype = frame.schema.get(window_column)
            if dtype is None:
                raise DataError(
                    f"dataflow {info.dataflow}: partition column {window_column} is not in the data ({frame.columns})"
                )
            if not exists:
                return append(frame)
            predicate = window_predicate(window_column, windows, dtype, timezone=window_timezone)
            note_written(info, frame.height)
            write_deltalake(
                target,
                frame,
                mode="overwrite",
                predicate=predicate,
                schema_mode="merge" if evolve_schema else None,
                commit_properties=info.properties(),
                **options,
            )
            return WriteResult(frame.height, version_after(path, snapshot))
        # merge into an existing table
        keys = destination.merge_keys
        data = _dedup_keys(
            frame, keys, order_columns, policy=destination.on_duplicate_keys, dataflow=info.dataflow
        )
        table = target
        note_written(info, data.height)
        fault_point("delta_commit", info.dataflow)
        metrics = merge_into(table, data, destination=destination, info=info, evolve=evolve_schema)
        table.update_incremental()
        return WriteResult(data.height, table.version(), metrics)
    except (DataError, WriteError, TransientError):
        raise
    except Exception as exc:
        wrapped = wrap_delta_error(exc, dataflow=info.dataflow, table=path)
        if wrapped is exc:
            raise
        raise wrapped from exc
