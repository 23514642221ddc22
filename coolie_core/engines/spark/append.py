"""Append a Spark DataFrame to a Delta table: Spark tasks write Parquet, delta-rs commits once.

Delta's Spark jars are not needed: the tasks write Parquet files into a fresh folder inside the
table (``spark-<uuid>/``, Hive-style partition folders below it for a ``partition_by`` table),
then the driver adds exactly those files in ONE delta-rs commit that also carries coolie's commit
metadata and application transaction (the watermark). Until that commit the files are invisible
to every reader; a crash leaves only unreferenced files, which ``coolie maintain`` (vacuum)
removes. Before committing, the row counts in the files' footers must add up to the rows read,
or nothing is committed.
"""

from collections.abc import Sequence
from pathlib import Path

import polars as pl
from pyspark.sql import DataFrame

from coolie_core.engines.spark.files import new_folder, write_files
from coolie_core.engines.spark.write import (
    _check_rows,
    _io_errors,
    _schema_for,
    commit_files,
    commit_load,
    partitioning,
)
from coolie_core.io.delta import CommitInfo, WriteResult, batch_snapshot, delta_table_exists, note_written

__all__ = ["append_evolving_with_spark", "append_with_spark"]


def append_with_spark(
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    rows: int,
    info: CommitInfo,
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Append ``sdf`` (``rows`` rows, typed as the polars ``schema``) to the Delta table at ``path``.

    Raises:
        WriteError: the data's schema does not match the table's, or the written files do not
            hold ``rows`` rows.
        TransientError: I/O error or commit conflict (retry the dataflow).
    """
    where = f"dataflow {info.dataflow}"
    table = batch_snapshot(path, info) if delta_table_exists(path) else None
    partition_by = partitioning(table, partition_by, load="append", where=where, path=path)
    delta_schema = _schema_for(table, schema, where=where, path=path)
    with _io_errors(where, path), new_folder(path) as folder:
        adds, written = write_files(sdf, folder, path, delta_schema, where=where, partition_by=partition_by)
        _check_rows(written, rows, folder, where)
        note_written(info, written)  # recorded with the batch: a retry after the commit reports it
        version = commit_files(path, table, adds, schema=delta_schema, info=info, partition_by=partition_by)
    return WriteResult(written, version)


def append_evolving_with_spark(
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    rows: int,
    info: CommitInfo,
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Append ``sdf`` with new columns (``schema_drift: evolve``): the schema change and the
    files in one commit (:func:`~coolie_core.engines.spark.write.commit_load`)."""
    where = f"dataflow {info.dataflow}"
    table = batch_snapshot(path, info) if delta_table_exists(path) else None
    partition_by = partitioning(table, partition_by, load="append", where=where, path=path)
    delta_schema = _schema_for(table, schema, where=where, path=path, evolve=True)
    with _io_errors(where, path), new_folder(path) as folder:
        _, written = write_files(sdf, folder, path, delta_schema, where=where, partition_by=partition_by)
        _check_rows(written, rows, folder, where)
        note_written(info, written)
        version = commit_load(
            path, table, [], folder=folder, schema=delta_schema, info=info, partition_by=partition_by
        )
    return WriteResult(written, version)
