"""Every Delta load strategy on Spark tasks, committed by the driver in ONE delta-rs commit.

The driver only handles metadata — file lists, row counts, the few file paths a join finds —
never the rows. Tasks write new Parquet files into a fresh folder of the table
(``spark-<uuid>/``, Hive-style partition folders below it for a ``partition_by`` table:
:mod:`coolie_core.engines.spark.files`); one ``DeltaTable.create_write_transaction`` then
removes the files the load replaces and adds the new ones, with coolie's commit metadata
(watermark, app transaction).
Until that commit nothing is visible; an interrupted load leaves unreferenced files that
``coolie maintain`` (vacuum) removes.

* overwrite: the new files replace every file of the table (and its schema);
* replace_window: files holding rows inside the windows are removed; their rows outside the
  windows are rewritten beside the new rows;
* merge (copy-on-write, :mod:`coolie_core.engines.spark.merge`): the files holding a key of the batch (file statistics, then a join of
  the keys with each row's file) are rewritten without those keys; updated and inserted rows go
  to new files (a key that is a partition column prunes the candidate files by their partition
  values). The commit is made against the version read, so a concurrent commit that
  removed one of those files is a conflict (transient: the dataflow is retried);
* scd2: :mod:`coolie_core.engines.spark.scd2`;
* ``schema_drift: evolve``: the new columns join the table's schema in the same commit
  (:func:`commit_load`).

Duplicate keys and change-feed deletes follow the Polars engine (:mod:`coolie_core.engines.polars.write`).
"""

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import reduce
from pathlib import Path
from typing import Any

import polars as pl
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # pyspark's own convention

from coolie_core.engines.spark.files import (
    _FILE,
    TableFiles,
    _delta_schema,
    _fields,
    add_actions,
    files_holding,
    logged_values,
    new_folder,
    partition_folder,
    read_files,
    remove_actions,
    typed,
    write_files,
)
from coolie_core.errors import DataError, TransientError, WriteError
from coolie_core.faults import fault_point
from coolie_core.io.delta import (
    CommitInfo,
    WriteResult,
    batch_snapshot,
    delta_table_exists,
    note_written,
    wrap_delta_error,
)

__all__ = [
    "commit_actions",
    "commit_files",
    "commit_load",
    "overwrite_with_spark",
    "partitioning",
    "replace_window_with_spark",
]


def _schema_for(
    table: Any, schema: pl.Schema, *, where: str, path: Path, replace: bool = False, evolve: bool = False
) -> Any:
    """The Delta schema the new files get: the table's (the data must match it) unless ``replace``;
    ``evolve`` (``schema_drift: evolve``): the table's plus the data's new columns, at the end
    (after the partition columns, which move behind the others as delta-rs' schema merge does)."""
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
        partitions = set(table.metadata().partition_columns)
        merged["fields"] = [
            *[f for f in merged["fields"] if f["name"] not in partitions],
            *[f for f in merged["fields"] if f["name"] in partitions],
            *[{**f, "nullable": True} for f in new],
        ]
        return Schema.from_json(json.dumps(merged))
    if sorted(have) != sorted(got):
        raise WriteError(f"{where}: the data's schema does not match table {path}: table {have}, data {got}")
    return target


def partitioning(table: Any, partition_by: Sequence[str], *, load: str, where: str, path: Path) -> list[str]:
    """The partition columns a load writes, as delta-rs decides them: the destination's for a new
    table or an overwrite (which may change them), the table's for merge, replace_window and scd2;
    an append whose ``partition_by`` differs from the table's fails (nothing written).

    Raises:
        WriteError: an append's ``partition_by`` is not the table's.
    """
    wanted = list(partition_by)
    if table is None or load == "overwrite":
        return wanted
    current = list(table.metadata().partition_columns)
    if load == "append" and wanted != current:
        raise WriteError(
            f"{where}: destination.partition_by {wanted} does not match the partition columns "
            f"{current} of table {path}; nothing written (an overwrite can change them)"
        )
    return current


def _evolves(table: Any, delta_schema: Any) -> bool:
    """The commit adds columns to ``table``."""
    return table is not None and len(_fields(table.schema().to_json())) != len(
        _fields(delta_schema.to_json())
    )


def commit_load(
    path: Path,
    table: Any,
    removed: Sequence[str],
    *,
    folder: Path,
    schema: Any,
    info: CommitInfo,
    partition_by: Sequence[str] = (),
) -> int:
    """ONE commit of a load: the table files ``removed`` (log paths) out, the files in ``folder`` in.

    A load that adds columns (:func:`_evolves`) must change the table's schema in that commit;
    delta-rs does so only in an ``overwrite`` commit, which removes every file: the files the
    load keeps are hard-linked into ``folder`` (same bytes, no copy) and added again under
    their new names (in the folder of their partition values), so the data, its new columns and
    the schema change are one version.
    """
    files = TableFiles.of(table, path) if table is not None else None
    if files is None or not _evolves(table, schema):
        adds, _ = add_actions(folder, path, partition_by)
        removes = remove_actions(files, removed) if files is not None and removed else []
        return commit_files(
            path, table, [*removes, *adds], schema=schema, info=info, partition_by=partition_by
        )
    gone = set(removed)
    values = files.values() if files.partition_by else {}
    for relative, absolute in files.paths.items():
        if relative not in gone:
            home = folder / partition_folder(values[relative]) if values else folder
            home.mkdir(parents=True, exist_ok=True)
            link = home / f"kept-{uuid.uuid4().hex}.parquet"
            try:
                os.link(absolute, link)
            except OSError:  # a file system without hard links: copy
                shutil.copyfile(absolute, link)
    adds, _ = add_actions(folder, path, partition_by)
    return commit_files(
        path, table, adds, schema=schema, info=info, mode="overwrite", partition_by=partition_by
    )


def commit_files(
    path: Path,
    table: Any,
    actions: list[Any],
    *,
    schema: Any,
    info: CommitInfo,
    mode: str = "append",
    partition_by: Sequence[str] = (),
) -> int:
    """ONE commit of ``actions`` (against the snapshot ``table``; None creates the table); the version."""
    fault_point("after_files", info.dataflow)
    return commit_actions(
        path, table, actions, schema=schema, properties=info.properties(), dataflow=info.dataflow, mode=mode,
        partition_by=partition_by,
    )  # fmt: skip


def commit_actions(
    path: Path,
    table: Any,
    actions: list[Any],
    *,
    schema: Any,
    properties: Any,
    dataflow: str,
    mode: str,
    partition_by: Sequence[str] = (),
) -> int:
    """ONE commit of ``actions`` with ``properties`` (``table`` None creates the table, partitioned
    by ``partition_by``); the version. ``schema`` is the table's after the commit (a new column of
    ``schema_drift: evolve`` included)."""
    from deltalake import DeltaTable
    from deltalake.transaction import create_table_with_add_actions

    repartition = table is not None and list(partition_by) != list(table.metadata().partition_columns)
    if repartition and mode != "overwrite":  # delta-rs would add the files with the wrong layout
        raise WriteError(
            f"dataflow {dataflow}: partition columns {list(partition_by)} are not table {path}'s"
        )
    try:
        if repartition:  # only a new table's metadata changes partition columns (the batch was checked)
            create_table_with_add_actions(
                str(path), schema, actions, mode="overwrite", partition_by=list(partition_by) or None,
                commit_properties=properties,
            )  # fmt: skip
        elif table is None:
            create_table_with_add_actions(
                str(path), schema, actions, mode="error", partition_by=list(partition_by) or None,
                commit_properties=properties,
            )  # fmt: skip
        else:
            table.create_write_transaction(
                actions, mode=mode, schema=schema, partition_by=list(partition_by) or None,
                commit_properties=properties,
            )  # fmt: skip
    except Exception as exc:
        wrapped = wrap_delta_error(exc, dataflow=dataflow, table=path)
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
    sdf: DataFrame,
    path: Path,
    *,
    schema: pl.Schema,
    rows: int,
    info: CommitInfo,
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Replace the whole table (data and schema) with ``sdf`` (``rows`` rows) in one commit."""
    where = f"dataflow {info.dataflow}"
    table = batch_snapshot(path, info) if delta_table_exists(path) else None
    partition_by = partitioning(table, partition_by, load="overwrite", where=where, path=path)
    delta_schema = _schema_for(table, schema, where=where, path=path, replace=True)
    with _io_errors(where, path), new_folder(path) as folder:
        adds, written = write_files(sdf, folder, path, delta_schema, where=where, partition_by=partition_by)
        _check_rows(written, rows, folder, where)
        note_written(info, written)
        version = commit_files(
            path, table, adds, schema=delta_schema, info=info, mode="overwrite", partition_by=partition_by
        )
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
    partition_by: Sequence[str] = (),
) -> WriteResult:
    """Replace the rows inside ``windows`` with ``sdf``: files with rows inside are removed, their
    rows outside the windows rewritten, the new rows added — one commit."""
    where = f"dataflow {info.dataflow}"
    if column not in schema:
        raise DataError(f"{where}: partition column {column} is not in the data ({list(schema)})")
    table = batch_snapshot(path, info) if delta_table_exists(path) else None
    partition_by = partitioning(table, partition_by, load="replace_window", where=where, path=path)
    delta_schema = _schema_for(table, schema, where=where, path=path, evolve=evolve)
    with _io_errors(where, path), new_folder(path) as folder:
        out, removes = sdf, []
        if table is not None:
            files = TableFiles.of(table, path)
            if files.paths and column in files.partition_by:
                # A file's rows share its partition value: the log says which files the windows
                # hold, whole (none to read, none to rewrite).
                logged = logged_values(sdf.sparkSession, files, delta_schema)
                types = {f.name: f.dataType for f in logged.schema.fields}
                inside = in_windows(column, windows, types, where=where, timezone=timezone)
                removes = sorted(str(r[0]) for r in logged.filter(inside).select(_FILE).collect())
            elif files.paths:
                existing = read_files(sdf.sparkSession, files, sorted(files.paths), delta_schema)
                types = {f.name: f.dataType for f in existing.schema.fields}
                inside = in_windows(column, windows, types, where=where, timezone=timezone)
                touched = files_holding(existing.filter(inside), files)
                if touched:
                    kept = read_files(sdf.sparkSession, files, touched, delta_schema).filter(~inside)
                    out = typed(sdf, delta_schema).unionByName(kept.drop(_FILE))
                    removes = touched
        write_files(out, folder, path, delta_schema, where=where, partition_by=partition_by)
        note_written(info, rows)
        version = commit_load(
            path, table, removes, folder=folder, schema=delta_schema, info=info, partition_by=partition_by
        )
    return WriteResult(rows, version)
