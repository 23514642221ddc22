"""SCD2 loads on Spark tasks, copy-on-write, in ONE delta-rs commit.

The rules are :mod:`coolie_core.engines.polars.scd2`'s (versions, chains within a batch, corrections at the
same instant, late rows ignored). Spark computes the batch's versions against the current
versions of its keys; the files holding a current version that closes or is corrected are
rewritten (that version closed or replaced, every other row as it was), the new versions go to
new files, and one commit removes and adds them against the version read.
"""

from collections.abc import Sequence
from functools import reduce
from pathlib import Path

import polars as pl
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # pyspark's own convention
from pyspark.sql.window import Window as SparkWindow

from coolie_core.columns import LOADED_AT, scd2_tracked
from coolie_core.engines.spark.convert import ORDER
from coolie_core.engines.spark.files import (
    _FILE,
    TableFiles,
    files_holding,
    new_folder,
    read_files,
    typed,
    write_files,
)
from coolie_core.engines.spark.write import _io_errors, _schema_for, commit_files, commit_load, partitioning
from coolie_core.errors import DataError
from coolie_core.io.delta import CommitInfo, WriteResult, batch_snapshot, delta_table_exists, note_written
from coolie_core.models import DestinationSpec

__all__ = ["scd2_with_spark"]

_CUR = "__cur"


def _changed(columns: list[str], suffix: str) -> Column:
    """Some tracked column differs (null-safe) from its ``suffix`` twin."""
    if not columns:
        return F.lit(False)
    return reduce(lambda a, b: a | b, [~F.col(c).eqNullSafe(F.col(c + suffix)) for c in columns])


def scd2_with_spark(
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    destination: DestinationSpec,
    info: CommitInfo,
    order_columns: list[str],
    evolve: bool = False,
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Apply ``sdf`` (with :data:`ORDER`) as a batch of changes to the SCD2 table at ``path``."""
    where = f"dataflow {info.dataflow}"
    spec = destination.scd2
    keys = destination.merge_keys
    effective = spec.effective_column or (order_columns[0] if order_columns else LOADED_AT)
    if effective not in schema:
        raise DataError(f"{where}: scd2 effective column {effective} is not in the data")
    tracked = scd2_tracked(schema.names(), destination, effective)
    vf, vt, cur = spec.valid_from, spec.valid_to, spec.is_current
    by_key = SparkWindow.partitionBy(*keys).orderBy(F.col(vf).asc_nulls_first())

    # One row per (key, timestamp): the later input row wins; then drop no-op versions.
    batch = sdf.withColumn(vf, F.col(effective))
    latest = SparkWindow.partitionBy(*keys, vf).orderBy(F.col(ORDER).desc())
    batch = (
        batch.withColumn("__rn", F.row_number().over(latest)).filter(F.col("__rn") == 1).drop("__rn", ORDER)
    )
    batch = batch.withColumns({c + "__prev": F.lag(c).over(by_key) for c in [*tracked, vf]})
    batch = batch.filter(F.col(vf + "__prev").isNull() | _changed(tracked, "__prev"))
    batch = batch.drop(*[c + "__prev" for c in [*tracked, vf]])
    columns = [*batch.columns, vt, cur]
    out_schema = pl.Schema({**schema, vf: schema[effective], vt: schema[effective], cur: pl.Boolean()})
    out_schema = pl.Schema({c: out_schema[c] for c in columns})

    table = batch_snapshot(path, info) if delta_table_exists(path) else None
    partition_by = partitioning(table, partition_by, load="scd2", where=where, path=path)
    delta_schema = _schema_for(table, out_schema, where=where, path=path, evolve=evolve)
    if table is None:
        out = batch.withColumn(vt, F.lead(vf).over(by_key)).withColumn(cur, F.col(vt).isNull())
        with _io_errors(where, path), new_folder(path) as folder:
            adds, written = write_files(
                out, folder, path, delta_schema, where=where, partition_by=partition_by
            )
            note_written(info, written)
            version = commit_files(
                path, None, adds, schema=delta_schema, info=info, partition_by=partition_by
            )
        return WriteResult(written, version)

    spark = sdf.sparkSession
    files = TableFiles.of(table, path)
    stored = set(table.schema().to_arrow().names)
    batch_keys = batch.select(*keys).distinct()
    current = batch.limit(0)  # a table without files has no current versions
    if files.paths:
        existing = read_files(spark, files, sorted(files.paths), delta_schema)
        current = existing.filter(F.col(cur)).join(batch_keys, keys, "left_semi")
    current = current.select(
        *keys,
        *[(F.col(c) if c in stored else F.lit(None)).alias(c + _CUR) for c in tracked],
        F.col(vf).alias(vf + _CUR),
    )
    joined = batch.join(current, keys, "left")
    has_current = F.col(vf + _CUR).isNotNull()
    joined = joined.filter(~has_current | (F.col(vf) >= F.col(vf + _CUR)))  # late rows are ignored
    first = F.row_number().over(by_key) == 1
    same_as_current = has_current & ~_changed(tracked, _CUR)
    joined = joined.withColumn("__first", first).filter(~(F.col("__first") & same_as_current)).drop("__first")
    joined = joined.withColumn("__first", first)
    joined = joined.withColumn(vt, F.lead(vf).over(by_key)).withColumn(cur, F.col(vt).isNull()).persist()
    try:
        written = joined.count()
        if written == 0:  # nothing changes: no commit (as the Polars engine)
            return WriteResult(0, None)
        # Current versions that close (a newer first version) or are corrected (same instant).
        changes = joined.filter(F.col("__first") & has_current).select(
            *keys, F.col(vf).alias("__close_at"), (F.col(vf) == F.col(vf + _CUR)).alias("__fix")
        )
        new_rows = joined.select(*columns)
        with _io_errors(where, path), new_folder(path) as folder:
            out, removes = new_rows, []
            if files.paths:
                holding = existing.filter(F.col(cur)).join(changes.select(*keys), keys, "left_semi")
                touched = files_holding(holding, files)
                if touched:
                    rows = read_files(spark, files, touched, delta_schema).drop(_FILE)
                    rows = rows.join(changes, keys, "left")
                    hit = F.col(cur) & F.col("__fix").isNotNull()
                    rows = rows.filter(~(hit & F.col("__fix"))).withColumns(
                        {
                            vt: F.when(hit, F.col("__close_at")).otherwise(F.col(vt)),
                            cur: F.when(hit, F.lit(False)).otherwise(F.col(cur)),
                        }
                    )
                    out = typed(rows, delta_schema).unionByName(typed(new_rows, delta_schema))
                    removes = touched
            write_files(out, folder, path, delta_schema, where=where, partition_by=partition_by)
            note_written(info, written)
            version = commit_load(
                path, table, removes, folder=folder, schema=delta_schema, info=info, partition_by=partition_by
            )
        return WriteResult(written, version)
    finally:
        joined.unpersist()
