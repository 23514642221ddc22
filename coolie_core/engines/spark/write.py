"""Every Delta load strategy on Spark tasks, committed by the driver in ONE delta-rs commit.

The driver only handles metadata — file lists, row counts, the few file paths a join finds —
never the rows. Tasks write new Parquet files into a fresh folder of the table
(``spark-<uuid>/``); one ``DeltaTable.create_write_transaction`` then removes the files the load
replaces and adds the new ones, with coolie's commit metadata (watermark, app transaction).
Until that commit nothing is visible; an interrupted load leaves unreferenced files that
``coolie maintain`` (vacuum) removes.

* overwrite: the new files replace every file of the table (and its schema);
* replace_window: files holding rows inside the windows are removed; their rows outside the
  windows are rewritten beside the new rows;
* merge (copy-on-write): the files holding a key of the batch (file statistics, then a join of
  the keys with each row's file) are rewritten without those keys; updated and inserted rows go
  to new files. The commit is made against the version read, so a concurrent commit that
  removed one of those files is a conflict (transient: the dataflow is retried);
* scd2: :mod:`coolie_core.engines.spark.scd2`;
* ``schema_drift: evolve``: the new columns join the table's schema in the same commit
  (:func:`commit_load`).

Duplicate keys and change-feed deletes follow the Polars engine (:mod:`coolie_core.io.delta`).
"""

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # pyspark's own convention
from pyspark.sql.window import Window as SparkWindow

from coolie_core.engines.spark.append import _add_actions, _delta_schema, _fields
from coolie_core.engines.spark.convert import ORDER, delta_to_spark, spark_errors
from coolie_core.errors import DataError, TransientError, WriteError
from coolie_core.faults import fault_point
from coolie_core.io.delta import (
    CommitInfo,
    WriteResult,
    _note_written,
    _snapshot,
    _wrap_errors,
    delta_table_exists,
)
from coolie_core.models import CdcSpec

__all__ = [
    "TableFiles",
    "append_evolving_with_spark",
    "commit_actions",
    "commit_files",
    "commit_load",
    "dedup_keys",
    "merge_with_spark",
    "overwrite_with_spark",
    "replace_window_with_spark",
]

_FILE = "__coolie_file"


@dataclass(frozen=True)
class TableFiles:
    """The files of one table version: relative (log) path -> absolute path, plus the stats."""

    paths: dict[str, str]
    stats: pl.DataFrame

    @classmethod
    def of(cls, table: Any, root: Path) -> "TableFiles":
        stats = pl.DataFrame(table.get_add_actions(flatten=True))
        paths = (
            {p: os.path.normpath(root / unquote(p)) for p in stats["path"].to_list()} if stats.height else {}
        )
        return cls(paths=paths, stats=stats)

    def relative(self, file_paths: Sequence[str]) -> list[str]:
        """Log paths of the files Spark reports (``_metadata.file_path`` URIs)."""
        back = {v: k for k, v in self.paths.items()}
        return sorted({back[os.path.normpath(unquote(urlparse(p).path))] for p in file_paths})


def _schema_for(
    table: Any, schema: pl.Schema, *, where: str, path: Path, replace: bool = False, evolve: bool = False
) -> Any:
    """The Delta schema the new files get: the table's (the data must match it) unless ``replace``;
    ``evolve`` (``schema_drift: evolve``): the table's plus the data's new columns, at the end."""
    from deltalake import Schema

    data = _delta_schema(schema)
    if table is None or replace:
        return data
    target = table.schema()
    have, got = _fields(target.to_json()), _fields(data.to_json())
    if evolve and set(have) < set(got):
        merged = json.loads(target.to_json())
        known = {name for name, _ in have}
        new = [f for f in json.loads(data.to_json())["fields"] if f["name"] not in known]
        merged["fields"] += [{**f, "nullable": True} for f in new]
        return Schema.from_json(json.dumps(merged))
    if sorted(have) != sorted(got):
        raise WriteError(f"{where}: the data's schema does not match table {path}: table {have}, data {got}")
    return target


def _evolves(table: Any, delta_schema: Any) -> bool:
    """The commit adds columns to ``table``."""
    return table is not None and len(_fields(table.schema().to_json())) != len(
        _fields(delta_schema.to_json())
    )


def commit_load(
    path: Path, table: Any, removed: Sequence[str], *, folder: Path, schema: Any, info: CommitInfo
) -> int:
    """ONE commit of a load: the table files ``removed`` (log paths) out, the files in ``folder`` in.

    A load that adds columns (:func:`_evolves`) must change the table's schema in that commit;
    delta-rs does so only in an ``overwrite`` commit, which removes every file: the files the
    load keeps are hard-linked into ``folder`` (same bytes, no copy) and added again under
    their new names, so the data, its new columns and the schema change are one version.
    """
    files = TableFiles.of(table, path) if table is not None else None
    if files is None or not _evolves(table, schema):
        adds, _ = _add_actions(folder, path)
        removes = remove_actions(files, removed) if files is not None and removed else []
        return commit_files(path, table, [*removes, *adds], schema=schema, info=info)
    gone = set(removed)
    for relative, absolute in files.paths.items():
        if relative not in gone:
            link = folder / f"kept-{uuid.uuid4().hex}.parquet"
            try:
                os.link(absolute, link)
            except OSError:  # a file system without hard links: copy
                shutil.copyfile(absolute, link)
    adds, _ = _add_actions(folder, path)
    return commit_files(path, table, adds, schema=schema, info=info, mode="overwrite")


def read_files(spark: Any, files: TableFiles, relative: Sequence[str], delta_schema: Any) -> DataFrame:
    """The rows of some table files, with the file each row is in (:data:`_FILE`)."""
    struct = delta_to_spark(delta_schema.to_json())
    sdf: DataFrame = spark.read.schema(struct).parquet(*[files.paths[r] for r in relative])
    return sdf.withColumn(_FILE, F.col("_metadata.file_path"))


def files_holding(rows: DataFrame, files: TableFiles) -> list[str]:
    """Log paths of the files ``rows`` (read with :func:`read_files`) come from (a small list)."""
    found = [r[0] for r in rows.select(_FILE).distinct().collect()]
    return files.relative(found)


@contextmanager
def _new_folder(path: Path) -> Iterator[Path]:
    """A fresh folder in the table for this load's files, removed unless the load commits."""
    folder = path / f"spark-{uuid.uuid4().hex}"
    done = {"committed": False}
    try:
        yield folder
        done["committed"] = True
    finally:
        if not done["committed"]:
            shutil.rmtree(folder, ignore_errors=True)
        else:  # Hadoop's checksum files and the job marker are not part of the table
            for extra in [*folder.glob(".*.crc"), folder / "_SUCCESS"]:
                extra.unlink(missing_ok=True)


def typed(sdf: DataFrame, delta_schema: Any) -> DataFrame:
    """The columns of ``delta_schema``, in its order and types."""
    struct = delta_to_spark(delta_schema.to_json())
    return sdf.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in struct.fields])


def write_files(
    out: DataFrame, folder: Path, table_path: Path, delta_schema: Any, *, where: str
) -> tuple[list[Any], int]:
    """Tasks write ``out`` (cast to ``delta_schema``) as Parquet into ``folder``; add actions, rows."""
    with spark_errors(where):
        typed(out, delta_schema).write.mode("errorifexists").parquet(str(folder))
    return _add_actions(folder, table_path)


def remove_actions(files: TableFiles, relative: Sequence[str]) -> list[Any]:
    """Remove actions for the table files ``relative`` (log paths)."""
    from deltalake.transaction import RemoveAction

    sizes = dict(zip(files.stats["path"].to_list(), files.stats["size_bytes"].to_list(), strict=True))
    now = int(time.time() * 1000)
    return [RemoveAction(path=r, data_change=True, deletion_timestamp=now, size=sizes[r]) for r in relative]


def commit_files(
    path: Path, table: Any, actions: list[Any], *, schema: Any, info: CommitInfo, mode: str = "append"
) -> int:
    """ONE commit of ``actions`` (against the snapshot ``table``; None creates the table); the version."""
    fault_point("after_files", info.dataflow)
    return commit_actions(
        path, table, actions, schema=schema, properties=info.properties(), dataflow=info.dataflow, mode=mode
    )


def commit_actions(
    path: Path, table: Any, actions: list[Any], *, schema: Any, properties: Any, dataflow: str, mode: str
) -> int:
    """ONE commit of ``actions`` with ``properties`` (``table`` None creates the table); the version.
    ``schema`` is the table's after the commit (a new column of ``schema_drift: evolve`` included)."""
    from deltalake import DeltaTable
    from deltalake.transaction import create_table_with_add_actions

    try:
        if table is None:
            create_table_with_add_actions(
                str(path), schema, actions, mode="error", commit_properties=properties
            )
        else:
            table.create_write_transaction(actions, mode=mode, schema=schema, commit_properties=properties)
    except Exception as exc:
        wrapped = _wrap_errors(exc, dataflow=dataflow, table=path)
        if wrapped is exc:
            raise
        raise wrapped from exc
    version: int = DeltaTable(str(path)).version()
    return version


@contextmanager
def _io_errors(where: str, path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise TransientError(f"{where}: I/O error writing {path}: {exc}") from exc


def overwrite_with_spark(
    sdf: DataFrame, path: Path, *, schema: pl.Schema, rows: int, info: CommitInfo
) -> WriteResult:
    """Replace the whole table (data and schema) with ``sdf`` (``rows`` rows) in one commit."""
    where = f"dataflow {info.dataflow}"
    table = _snapshot(path, info) if delta_table_exists(path) else None
    delta_schema = _schema_for(table, schema, where=where, path=path, replace=True)
    with _io_errors(where, path), _new_folder(path) as folder:
        adds, written = write_files(sdf, folder, path, delta_schema, where=where)
        _check_rows(written, rows, folder, where)
        _note_written(info, written)
        version = commit_files(path, table, adds, schema=delta_schema, info=info, mode="overwrite")
    return WriteResult(written, version)


def append_evolving_with_spark(
    sdf: DataFrame, path: Path, *, schema: pl.Schema, rows: int, info: CommitInfo
) -> WriteResult:
    """Append ``sdf`` with new columns (``schema_drift: evolve``): the schema change and the
    files in one commit (:func:`commit_load`)."""
    where = f"dataflow {info.dataflow}"
    table = _snapshot(path, info) if delta_table_exists(path) else None
    delta_schema = _schema_for(table, schema, where=where, path=path, evolve=True)
    with _io_errors(where, path), _new_folder(path) as folder:
        _, written = write_files(sdf, folder, path, delta_schema, where=where)
        _check_rows(written, rows, folder, where)
        _note_written(info, written)
        version = commit_load(path, table, [], folder=folder, schema=delta_schema, info=info)
    return WriteResult(written, version)


def _check_rows(written: int, rows: int, folder: Path, where: str) -> None:
    if written != rows:
        raise WriteError(
            f"{where}: Spark wrote {written} rows to {folder}, expected {rows}; nothing committed"
        )


def in_windows(
    column: str, windows: Sequence[tuple[Any, Any]], types: dict[str, Any], *, where: str, timezone: str
) -> Column:
    """True for rows inside any ``[lo, hi)`` window (false, never null, for a null ``column``)."""
    from coolie_core.engines.spark.transform import _bound

    parts = [
        (F.col(column) >= _bound(column, lo, types, where=where, timezone=timezone))
        & (F.col(column) < _bound(column, hi, types, where=where, timezone=timezone))
        for lo, hi in windows
    ]
    inside = reduce(lambda a, b: a | b, parts) if parts else F.lit(False)
    return F.coalesce(inside, F.lit(False))


def replace_window_with_spark(
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    rows: int,
    info: CommitInfo,
    column: str,
    windows: Sequence[tuple[Any, Any]],
    timezone: str,
    evolve: bool = False,
) -> WriteResult:
    """Replace the rows inside ``windows`` with ``sdf``: files with rows inside are removed, their
    rows outside the windows rewritten, the new rows added — one commit."""
    where = f"dataflow {info.dataflow}"
    if column not in schema:
        raise DataError(f"{where}: partition column {column} is not in the data ({list(schema)})")
    table = _snapshot(path, info) if delta_table_exists(path) else None
    delta_schema = _schema_for(table, schema, where=where, path=path, evolve=evolve)
    with _io_errors(where, path), _new_folder(path) as folder:
        out, removes = sdf, []
        if table is not None:
            files = TableFiles.of(table, path)
            if files.paths:
                existing = read_files(sdf.sparkSession, files, sorted(files.paths), delta_schema)
                types = {f.name: f.dataType for f in existing.schema.fields}
                inside = in_windows(column, windows, types, where=where, timezone=timezone)
                touched = files_holding(existing.filter(inside), files)
                if touched:
                    kept = read_files(sdf.sparkSession, files, touched, delta_schema).filter(~inside)
                    out = typed(sdf, delta_schema).unionByName(kept.drop(_FILE))
                    removes = touched
        write_files(out, folder, path, delta_schema, where=where)
        _note_written(info, rows)
        version = commit_load(path, table, removes, folder=folder, schema=delta_schema, info=info)
    return WriteResult(rows, version)


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
    """Files whose min/max statistics of every key can overlap the batch's key range."""
    stats = files.stats
    keep = []
    for index, relative in enumerate(stats["path"].to_list()):
        inside = True
        for key, (lo, hi) in bounds.items():
            low, high = f"min.{key}", f"max.{key}"
            if lo is None or low not in stats.columns or high not in stats.columns:
                continue
            fmin, fmax = stats[low][index], stats[high][index]
            if isinstance(fmin, str | bytes) or isinstance(fmax, str | bytes):
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
        table = _snapshot(path, info) if delta_table_exists(path) else None
        delta_schema = _schema_for(
            table, pl.Schema({c: schema[c] for c in cols}), where=where, path=path, evolve=evolve
        )
        with _io_errors(where, path), _new_folder(path) as folder:
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
            write_files(out, folder, path, delta_schema, where=where)
            _note_written(info, written)
            # Even a batch that changes nothing commits: its watermark and batch number.
            version = commit_load(path, table, removes, folder=folder, schema=delta_schema, info=info)
        return WriteResult(written, version)
    finally:
        data.unpersist()
