"""merge on Spark tasks, copy-on-write, in ONE delta-rs commit (:mod:`coolie_core.engines.spark.write`).

The files that can hold a key of the batch (file statistics; a key that is a partition column:
the files' partition values) are joined with the batch's keys; the files holding one are
rewritten without those keys, updated and inserted rows go to new files. Duplicate keys and
change-feed deletes follow the Polars engine (:mod:`coolie_core.engines.polars.write`).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # pyspark's own convention
from pyspark.sql.window import Window as SparkWindow

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
from coolie_core.engines.spark.write import _io_errors, _schema_for, commit_load, partitioning
from coolie_core.errors import DataError
from coolie_core.io.delta import CommitInfo, WriteResult, batch_snapshot, delta_table_exists, note_written
from coolie_core.models import CdcSpec

__all__ = ["dedup_keys", "merge_with_spark"]


def dedup_keys(sdf: DataFrame, keys: list[str], order: list[str], *, policy: str, dataflow: str) -> DataFrame:
    """One row per key as the Polars engine keeps it: the last by ``order`` (nulls first), ties by
    input order (:data:`ORDER`); ``policy == "fail"`` raises on a duplicate key instead."""
    if policy == "fail":
        sample = sdf.groupBy(*keys).count().filter(F.col("count") > 1).select(*keys).limit(3).collect()
        if sample:
            raise DataError(
                f"dataflow {dataflow}: the source holds several rows for the same merge key, e.g. "
                f"{[row.asDict() for row in sample]}; set destination.on_duplicate_keys: latest or "
                "deduplicate in a transform"
            )
        return sdf
    ordering = [*[F.col(c).desc_nulls_last() for c in order], F.col(ORDER).desc()]
    rank = F.row_number().over(SparkWindow.partitionBy(*keys).orderBy(*ordering))
    return sdf.withColumn("__coolie_rank", rank).filter(F.col("__coolie_rank") == 1).drop("__coolie_rank")


def _stat_candidates(files: TableFiles, bounds: dict[str, tuple[Any, Any]]) -> list[str]:
    """Files whose min/max statistics of every key can overlap the batch's key range (a key that
    is a partition column: the file's partition value, exact)."""
    stats = files.stats
    keep = []
    for index, relative in enumerate(stats["path"].to_list()):
        inside = True
        for key, (lo, hi) in bounds.items():
            low, high = f"min.{key}", f"max.{key}"
            if key in files.partition_by:
                low = high = f"partition.{key}"
            if lo is None or low not in stats.columns or high not in stats.columns:
                continue
            fmin, fmax = stats[low][index], stats[high][index]
            if low != high and (isinstance(fmin, str | bytes) or isinstance(fmax, str | bytes)):
                continue  # string statistics may be truncated: only the join is exact
            try:
                if fmin is not None and fmax is not None and (fmax < lo or fmin > hi):
                    inside = False
            except TypeError:  # not comparable in Python: let the join decide
                pass
        if inside:
            keep.append(relative)
    return keep


def merge_with_spark(
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    keys: list[str],
    order_columns: list[str],
    policy: str,
    cdc: CdcSpec | None,
    info: CommitInfo,
    evolve: bool = False,
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Copy-on-write merge of ``sdf`` (with :data:`ORDER`) on ``keys`` in one commit."""
    where = f"dataflow {info.dataflow}"
    data = dedup_keys(sdf, keys, order_columns, policy=policy, dataflow=info.dataflow).drop(ORDER)
    # A change-feed row deletes, upserts, or (null flag) does nothing — as delta-rs' merge clauses.
    deleted = F.col(cdc.column).cast("string").isin(cdc.delete) if cdc is not None else F.lit(False)
    data = data.withColumn("__coolie_del", deleted).persist()
    try:
        aggregates = [F.count(F.lit(1)), F.sum(F.when(~F.col("__coolie_del"), 1).otherwise(0))]
        if len(keys) <= 4:
            aggregates += [f(F.col(k)) for k in keys for f in (F.min, F.max)]
        summary = data.agg(*aggregates).collect()[0]
        total, upserts = int(summary[0]), int(summary[1] or 0)
        bounds = {k: (summary[2 + 2 * i], summary[3 + 2 * i]) for i, k in enumerate(keys) if len(keys) <= 4}
        cols = [c for c in data.columns if c != "__coolie_del"]
        upserted = data.filter(F.coalesce(~F.col("__coolie_del"), F.lit(False))).select(*cols)
        table = batch_snapshot(path, info) if delta_table_exists(path) else None
        partition_by = partitioning(table, partition_by, load="merge", where=where, path=path)
        delta_schema = _schema_for(
            table, pl.Schema({c: schema[c] for c in cols}), where=where, path=path, evolve=evolve
        )
        with _io_errors(where, path), new_folder(path) as folder:
            out, removes = upserted, []
            written = upserts
            if table is not None:
                written = total
                files = TableFiles.of(table, path)
                candidates = _stat_candidates(files, bounds) if files.paths else []
                if candidates:
                    touching = data.filter(F.col("__coolie_del").isNotNull()).select(*keys)
                    existing = read_files(sdf.sparkSession, files, candidates, delta_schema)
                    touched = files_holding(existing.join(touching, keys, "left_semi"), files)
                    if touched:
                        kept = read_files(sdf.sparkSession, files, touched, delta_schema).drop(_FILE)
                        kept = kept.join(touching, keys, "left_anti")
                        out = typed(kept, delta_schema).unionByName(typed(upserted, delta_schema))
                        removes = touched
            write_files(out, folder, path, delta_schema, where=where, partition_by=partition_by)
            note_written(info, written)
            # Even a batch that changes nothing commits: its watermark and batch number.
            version = commit_load(
                path, table, removes, folder=folder, schema=delta_schema, info=info, partition_by=partition_by
            )
        return WriteResult(written, version)
    finally:
        data.unpersist()
