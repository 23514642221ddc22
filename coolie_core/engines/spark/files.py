"""The Parquet files of a Spark load: written by tasks, described to the Delta log, read back.

* :func:`write_files` — tasks write a frame into a fresh folder of the table; with partition
  columns, Hive-style (``<folder>/col=value/part-….parquet``), a partition per task;
* :func:`add_actions` — add actions for those files: row counts from the footers and, for a
  partitioned table, ``partitionValues`` read back from the folder names. Spark names a folder by
  the value's text and escapes it; the text is Delta's serialization of the value (written by
  :func:`_partition_text`, as delta-rs writes it: ``2024-01-31``, ``2024-01-31 10:00:00.000000``,
  ``42``, ``true``, null as None), so either engine can keep writing the same table;
* :class:`TableFiles`, :func:`read_files`, :func:`files_holding`, :func:`remove_actions` — the
  files of a table version, their rows (partition values joined back from the log), which files
  some rows come from, and their remove actions.
"""

import datetime as dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # pyspark's own convention
from pyspark.sql import types as T

from coolie_core.engines.spark.convert import arrow_for_spark, delta_to_spark, polars_dtype_of, spark_errors
from coolie_core.errors import WriteError

__all__ = [
    "TableFiles",
    "add_actions",
    "files_holding",
    "logged_values",
    "partitionable",
    "read_files",
    "remove_actions",
    "typed",
    "write_files",
]

_FILE = "__coolie_file"
_NULL = "__HIVE_DEFAULT_PARTITION__"
"""The folder name of a null partition value (Spark's and delta-rs')."""
_EMPTY = "__COOLIE_EMPTY_STRING__"
"""Stands for an empty string partition value while Spark writes (it would name the folder as a
null's); renamed to ``col=`` — delta-rs' folder of ``""`` — before the files are added."""
_TIMESTAMP = "yyyy-MM-dd HH:mm:ss.SSSSSS"
"""Delta's text of a timestamp partition value (UTC), as delta-rs writes it."""


def partitionable(dtype: pl.DataType) -> bool:
    """Whether Spark tasks write partition values of this type exactly as delta-rs does (else the
    rows go through the driver): strings, booleans, integers, dates and timestamps."""
    if dtype == pl.UInt64():  # a decimal on Spark
        return False
    return dtype.is_integer() or isinstance(dtype, pl.String | pl.Boolean | pl.Date | pl.Datetime)


def _partition_text(column: Column, dtype: T.DataType) -> Column | None:
    """Delta's text of a partition value, computed in the task (None: type not supported)."""
    if isinstance(dtype, T.StringType):
        return F.when(column == "", F.lit(_EMPTY)).otherwise(column)
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType | T.BooleanType | T.DateType):
        return column.cast("string")
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):  # the session's time zone is UTC
        return F.date_format(column, _TIMESTAMP)
    return None


def _value_text(value: Any) -> str | None:
    """Delta's text of a partition value read from the log (as :func:`_partition_text`)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def partition_folder(values: dict[str, str | None]) -> str:
    """The Hive-style folder of partition values (``col=value/…``, values escaped)."""
    return "/".join(f"{c}={_NULL if v is None else quote(v, safe='')}" for c, v in values.items())


def _delta_schema(schema: pl.Schema) -> Any:
    """The Delta schema delta-rs gives a polars frame of ``schema`` (unsigned -> signed...)."""
    from deltalake import Schema

    return Schema.from_arrow(pa.schema(pl.DataFrame(schema=schema).to_arrow().schema))


def _fields(schema_json: str) -> list[tuple[str, str]]:
    return [(f["name"], json.dumps(f["type"], sort_keys=True)) for f in json.loads(schema_json)["fields"]]


def _partition_values(file: Path, folder: Path, partition_by: Sequence[str]) -> dict[str, str | None]:
    """The partition values of a file from its folders under ``folder`` (``col=value``)."""
    found: dict[str, str | None] = {}
    for part in file.relative_to(folder).parts[:-1]:
        name, sep, text = part.partition("=")
        if sep:
            found[unquote(name)] = None if text == _NULL else unquote(text)
    if set(found) != set(partition_by):
        raise WriteError(f"file {file} is not in a folder of partition columns {list(partition_by)}")
    return {c: found[c] for c in partition_by}


def add_actions(folder: Path, table: Path, partition_by: Sequence[str] = ()) -> tuple[list[Any], int]:
    """Add actions for the Parquet files under ``folder`` (with their row counts and partition
    values) and the total rows."""
    from deltalake.transaction import AddAction

    actions, total = [], 0
    for file in sorted(folder.rglob("*.parquet")):
        rows = pq.read_metadata(file).num_rows
        if rows == 0:
            continue
        stat = file.stat()
        actions.append(
            AddAction(
                # delta-rs percent-encodes the path in the log itself: hand it the plain one.
                path=file.relative_to(table).as_posix(),
                size=stat.st_size,
                partition_values=_partition_values(file, folder, partition_by) if partition_by else {},
                modification_time=stat.st_mtime_ns // 1_000_000,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
        )
        total += rows
    return actions, total


@dataclass(frozen=True)
class TableFiles:
    """The files of one table version: relative (log) path -> absolute path, the stats (with the
    typed ``partition.<col>`` values) and the table's partition columns."""

    paths: dict[str, str]
    stats: pl.DataFrame
    partition_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, table: Any, root: Path) -> "TableFiles":
        stats = pl.DataFrame(table.get_add_actions(flatten=True))
        paths = (
            {p: os.path.normpath(root / unquote(p)) for p in stats["path"].to_list()} if stats.height else {}
        )
        return cls(paths=paths, stats=stats, partition_by=tuple(table.metadata().partition_columns))

    @cached_property
    def _by_path(self) -> dict[str, str]:
        return {v: k for k, v in self.paths.items()}

    def relative(self, file_paths: Sequence[str]) -> list[str]:
        """Log paths of the files Spark reports (``_metadata.file_path`` URIs)."""
        return sorted({self.relative_of(p) for p in file_paths})

    def relative_of(self, uri: str) -> str:
        """The log path of the file Spark reports as ``uri``."""
        return self._by_path[os.path.normpath(unquote(urlparse(uri).path))]

    def values(self) -> dict[str, dict[str, str | None]]:
        """The partition values (Delta's text) of every file, by log path."""
        columns = [f"partition.{c}" for c in self.partition_by]
        return {
            row["path"]: {c: _value_text(row[f"partition.{c}"]) for c in self.partition_by}
            for row in self.stats.select("path", *columns).iter_rows(named=True)
        }


def typed(sdf: DataFrame, delta_schema: Any) -> DataFrame:
    """The columns of ``delta_schema``, in its order and types."""
    struct = delta_to_spark(delta_schema.to_json())
    return sdf.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in struct.fields])


def write_files(
    out: DataFrame,
    folder: Path,
    table_path: Path,
    delta_schema: Any,
    *,
    where: str,
    partition_by: Sequence[str] = (),
) -> tuple[list[Any], int]:
    """Tasks write ``out`` (cast to ``delta_schema``) as Parquet into ``folder``, Hive-style by
    ``partition_by``; the add actions and rows."""
    data = typed(out, delta_schema)
    writer = data.write
    if partition_by:
        types = {f.name: f.dataType for f in data.schema.fields}
        texts = {c: _partition_text(F.col(c), types[c]) for c in partition_by}
        unsupported = [c for c, text in texts.items() if text is None]
        if unsupported:
            raise WriteError(f"{where}: Spark tasks cannot write partition column(s) {unsupported}")
        # One task per partition value: a file per partition, not one per task and partition.
        data = data.withColumns({c: text for c, text in texts.items() if text is not None})
        writer = data.repartition(*partition_by).write.partitionBy(*partition_by)
    with spark_errors(where):
        writer.mode("errorifexists").parquet(str(folder))
    if partition_by:  # readers (polars) take partition values from the folder names too
        for parent, names, _ in os.walk(folder, topdown=False):
            for name in names:
                column, _, text = name.partition("=")
                if text == _EMPTY:
                    os.rename(os.path.join(parent, name), os.path.join(parent, f"{column}="))
    return add_actions(folder, table_path, partition_by)


def remove_actions(files: TableFiles, relative: Sequence[str]) -> list[Any]:
    """Remove actions for the table files ``relative`` (log paths, percent-encoded: delta-rs wants
    them plain and encodes them again; an unknown path would be removed silently)."""
    from deltalake.transaction import RemoveAction

    sizes = dict(zip(files.stats["path"].to_list(), files.stats["size_bytes"].to_list(), strict=True))
    now = int(time.time() * 1000)
    values = files.values() if files.partition_by else {}
    return [
        RemoveAction(
            path=unquote(r), data_change=True, deletion_timestamp=now, size=sizes[r],
            partition_values=values.get(r),
        )
        for r in relative
    ]  # fmt: skip


def _normal_uri(column: Column) -> Column:
    """Spark spells one local file ``file:/x`` or ``file:///x``: compare one spelling."""
    return F.regexp_replace(column, r"^file:/+", "file:///")


def read_files(spark: Any, files: TableFiles, relative: Sequence[str], delta_schema: Any) -> DataFrame:
    """The rows of some table files, with the file each row is in (:data:`_FILE`) and, for a
    partitioned table, the partition values from the log (the files do not hold them)."""
    struct = delta_to_spark(delta_schema.to_json())
    parts = [f for f in struct.fields if f.name in files.partition_by]
    data = T.StructType([f for f in struct.fields if f.name not in files.partition_by])
    sdf: DataFrame = spark.read.schema(data).parquet(*[files.paths[r] for r in relative])
    if not parts:
        return sdf.withColumn(_FILE, F.col("_metadata.file_path"))
    # The values of each file, matched on the URI Spark reports for it: a small broadcast table.
    uris = {files.relative_of(uri): uri for uri in sdf.inputFiles()}
    logged = files.stats.filter(pl.col("path").is_in(list(uris)))
    values = pl.DataFrame(
        {
            _FILE: [uris[p] for p in logged["path"].to_list()],
            **{f.name: logged[f"partition.{f.name}"].cast(polars_dtype_of(f.dataType)) for f in parts},
        }
    )
    mapping = spark.createDataFrame(arrow_for_spark(values.to_arrow())).withColumn(
        _FILE, _normal_uri(F.col(_FILE))
    )
    joined = sdf.withColumn(_FILE, _normal_uri(F.col("_metadata.file_path"))).join(
        F.broadcast(mapping), on=_FILE, how="inner"
    )
    return joined.select(*[F.col(f.name).cast(f.dataType) for f in struct.fields], _FILE)


def logged_values(spark: Any, files: TableFiles, delta_schema: Any) -> DataFrame:
    """One row per table file: its log path (:data:`_FILE`) and partition values, typed — from
    the log alone (no data file is read)."""
    struct = delta_to_spark(delta_schema.to_json())
    parts = [f for f in struct.fields if f.name in files.partition_by]
    values = pl.DataFrame(
        {
            _FILE: files.stats["path"],
            **{f.name: files.stats[f"partition.{f.name}"].cast(polars_dtype_of(f.dataType)) for f in parts},
        }
    )
    frame: DataFrame = spark.createDataFrame(arrow_for_spark(values.to_arrow()))
    return frame.select(_FILE, *[F.col(f.name).cast(f.dataType) for f in parts])


def files_holding(rows: DataFrame, files: TableFiles) -> list[str]:
    """Log paths of the files ``rows`` (read with :func:`read_files`) come from (a small list)."""
    found = [r[0] for r in rows.select(_FILE).distinct().collect()]
    return files.relative(found)


@contextmanager
def new_folder(path: Path) -> Iterator[Path]:
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
            for extra in [*folder.rglob(".*.crc"), folder / "_SUCCESS"]:
                extra.unlink(missing_ok=True)
