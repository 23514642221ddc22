"""Read a dataflow's source as a Spark DataFrame with the schema the Polars engine would see.

* parquet, csv, jsonl files and Delta tables are read by Spark tasks. Delta tables are read from
  the Parquet files their log lists (partition values joined back from the log); tables with
  deletion vectors or column mapping go through polars/delta-rs on the driver instead.
* SQL, python and plain-JSON sources are read on the driver exactly as the Polars engine reads
  them (its :func:`~coolie_core.engines.polars.read.collect`; SQL filters in the database; a JSON
  array cannot be split) and handed over through Arrow.

Every row carries the hidden :data:`ORDER` column: (file index, block start, row id) for files
read by Spark — the file order of the source glob or the Delta log — and the row position for
sources read on the driver.
"""

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # pyspark's own convention

from coolie_core.engines.polars.read import collect
from coolie_core.engines.spark.convert import ORDER, arrow_for_spark, spark_errors, spark_schema, to_spark
from coolie_core.errors import SourceError, TransientError
from coolie_core.io.source_files import source_files
from coolie_core.io.sources import SqlBound, read_source
from coolie_core.locations import source_storage
from coolie_core.models import Catalog, Dataflow, DeltaSource, FileSource
from coolie_core.storage.spark import local_for_spark

__all__ = ["SparkSource", "read_spark_source"]


@dataclass(frozen=True)
class SparkSource:
    """A source as read by Spark."""

    frame: DataFrame
    """The rows, with :data:`ORDER`."""
    schema: pl.Schema
    """The polars schema of the rows (what the Polars engine reads)."""
    rows: int | None
    """The row count when known without reading the data (Parquet footers, Delta log)."""


_FILE = "__coolie_file"
_FILE_INDEX = "__coolie_file_index"

# Polars reader options -> Spark reader options. Options that only steer polars' schema inference
# (the schema is inferred by polars and handed to Spark) or its performance are accepted as is.
_CSV_OPTIONS = {
    "separator": "sep",
    "has_header": "header",
    "quote_char": "quote",
    "comment_prefix": "comment",
    "null_values": "nullValue",
    "encoding": "encoding",
    "eol_char": "lineSep",
}
_POLARS_ONLY = {
    "csv": {"schema", "schema_overrides", "infer_schema", "infer_schema_length", "try_parse_dates",
            "low_memory", "rechunk", "cache", "glob", "raise_if_empty"},
    "jsonl": {"schema", "schema_overrides", "infer_schema_length", "low_memory", "rechunk", "glob"},
    "parquet": {"parallel", "use_statistics", "low_memory", "rechunk", "cache", "glob"},
}  # fmt: skip


def _spark_options(source: FileSource, *, dataflow: str) -> dict[str, str]:
    """Spark reader options with the Polars engine's parsing rules (strict, RFC 4180 csv)."""
    options: dict[str, str] = {"mode": "FAILFAST"}
    if source.format == "csv":
        # Polars: a header by default, quoted fields may span lines, "" escapes a quote, an empty
        # unquoted field is null but a quoted "" is an empty string.
        options |= {"header": "true", "quote": '"', "escape": '"', "multiLine": "true", "nullValue": "\x01"}
    for key, value in source.options.items():
        if key in _POLARS_ONLY.get(source.format, set()):
            continue
        spark_key = _CSV_OPTIONS.get(key) if source.format == "csv" else None
        if spark_key is None or (key == "null_values" and not isinstance(value, str)):
            raise SourceError(
                f"dataflow {dataflow}: source.options.{key} is not supported by the Spark engine"
            )
        if key == "encoding":
            if str(value).lower() not in ("utf8", "utf-8"):
                raise SourceError(f"dataflow {dataflow}: the Spark engine reads utf8 files only, not {value}")
            value = "UTF-8"
        if key == "quote_char" and value is None:
            value = "\x00"
        options[spark_key] = str(value).lower() if isinstance(value, bool) else str(value)
    return options


def _polars_schema(source: FileSource, files: list[str]) -> pl.Schema:
    """The schema the Polars engine infers for the files (same options, same sample)."""
    options = dict(source.options)
    if source.format == "parquet":
        return pl.scan_parquet(files, **options).collect_schema()
    if source.format == "csv":
        return pl.scan_csv(files, **options).collect_schema()
    return pl.scan_ndjson(files, **options).collect_schema()


def _normal_uri(uri: str) -> str:
    """Spark spells one local file ``file:/x`` or ``file:///x``: compare one spelling."""
    return "file:///" + uri[len("file:") :].lstrip("/") if uri.startswith("file:") else uri


def _normal_uri_col(column: Column) -> Column:
    return F.regexp_replace(column, r"^file:/+", "file:///")


def _with_file_order(
    spark: SparkSession,
    sdf: DataFrame,
    paths: Sequence[str],
    *,
    dataflow: str,
    extra: Mapping[str, list[Any]] | None = None,
    extra_schema: Any = None,
) -> DataFrame:
    """Add :data:`ORDER` (file index, block start, row id) and ``extra`` per-file columns.

    Files are matched on the URIs Spark reports for them (``inputFiles``): every file must match.
    """
    index = {os.path.abspath(p): i for i, p in enumerate(paths)}
    uris: list[str | None] = [None] * len(paths)
    for uri in sdf.inputFiles():
        position = index.get(unquote(urlparse(uri).path))
        if position is None:
            raise SourceError(f"dataflow {dataflow}: Spark reads {uri}, which is not a source file")
        uris[position] = _normal_uri(uri)
    if any(u is None for u in uris):
        missing = [p for p, u in zip(paths, uris, strict=True) if u is None]
        raise SourceError(f"dataflow {dataflow}: Spark does not see source file(s) {missing[:3]}")
    columns: dict[str, Any] = {
        _FILE: pa.array(uris, pa.string()),
        _FILE_INDEX: pa.array(range(len(uris)), pa.int32()),
    }
    fields = [pa.field(_FILE, pa.string()), pa.field(_FILE_INDEX, pa.int32())]
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values, extra_schema.field(name).type)
        fields.append(extra_schema.field(name))
    files = spark.createDataFrame(arrow_for_spark(pa.table(columns, schema=pa.schema(fields))))
    with_file = sdf.withColumn(_FILE, _normal_uri_col(F.col("_metadata.file_path"))).withColumn(
        "__coolie_block", F.col("_metadata.file_block_start")
    )
    joined = with_file.join(F.broadcast(files), on=_FILE, how="inner")
    order = F.struct(
        F.col(_FILE_INDEX).alias("file"),
        F.col("__coolie_block").alias("block"),
        F.monotonically_increasing_id().alias("row"),
    )
    return joined.select(*sdf.columns, *(extra or {}), order.alias(ORDER))


def _read_files(spark: SparkSession, source: FileSource, files: list[str], *, dataflow: str) -> SparkSource:
    schema = _polars_schema(source, files)
    reader = spark.read.schema(spark_schema(schema)).options(**_spark_options(source, dataflow=dataflow))
    if source.format == "parquet":
        sdf = reader.parquet(*files)
    elif source.format == "csv":
        sdf = reader.csv(files)
    else:
        sdf = reader.json(files)
    rows = None
    if source.format == "parquet" and not source.options:  # footers only: no data is read
        rows = int(pl.scan_parquet(files).select(pl.len()).collect().item())
    return SparkSource(_with_file_order(spark, sdf, files, dataflow=dataflow), schema, rows)


def _spark_readable(table: Any) -> bool:
    """Whether Spark may read the table's Parquet files as they are (no deletion vectors, no
    column mapping: then the files hold exactly the table's rows under the table's names)."""
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    mapping = (table.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
    return not ({"deletionVectors", "columnMapping"} & features) and mapping in (None, "none")


def _read_delta(spark: SparkSession, location: Path, *, dataflow: str) -> SparkSource:
    from deltalake import DeltaTable

    table = DeltaTable(str(location))
    schema = pl.scan_delta(table).collect_schema()
    if not _spark_readable(table):
        frame = pl.scan_delta(table).collect().with_row_index(ORDER)
        return SparkSource(to_spark(spark, frame), schema, frame.height)
    partition_columns = list(table.metadata().partition_columns)
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = [str(location / unquote(p)) for p in actions.column("path").to_pylist()]
    data_schema = pl.Schema({k: v for k, v in schema.items() if k not in partition_columns})
    if not paths:
        empty = spark.createDataFrame([], spark_schema(schema))
        return SparkSource(empty.withColumn(ORDER, F.lit(0).cast("long")), schema, 0)
    sdf = spark.read.schema(spark_schema(data_schema)).parquet(*paths)
    arrow_schema = pa.schema(
        [pa.field(c, arrow_for_spark(pl.DataFrame(schema={c: schema[c]}).to_arrow()).schema.field(c).type)
         for c in partition_columns]
    )  # fmt: skip
    extra = {
        c: actions.column(f"partition.{c}").cast(arrow_schema.field(c).type).to_pylist()
        for c in partition_columns
    }
    sdf = _with_file_order(spark, sdf, paths, dataflow=dataflow, extra=extra, extra_schema=arrow_schema)
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else [None]
    rows = None if any(c is None for c in counts) else sum(counts)
    return SparkSource(sdf.select(*schema.names(), ORDER), schema, rows)


def read_spark_source(
    spark: SparkSession,
    catalog: Catalog,
    flow: Dataflow,
    *,
    sql_bounds: list[SqlBound],
    context: Mapping[str, Any],
) -> SparkSource:
    """The source as a Spark DataFrame (with :data:`ORDER`), the polars schema of its columns and,
    when known without reading the data, its row count.

    Raises:
        SourceError: the source cannot be read (no files, unsupported option, missing table).
    """
    source = flow.source
    where = f"dataflow {flow.name}"
    if isinstance(source, FileSource) and source.format != "json":
        storage = source_storage(catalog, flow)
        assert storage is not None
        local_for_spark(storage, dataflow=flow.name, role="source")  # a clear error for a bucket
        files = source_files(source, storage, dataflow=flow.name)  # empty files hold no rows
        reader: Callable[[], SparkSource] = partial(_read_files, spark, source, files, dataflow=flow.name)
    elif isinstance(source, DeltaSource):
        storage = source_storage(catalog, flow)
        assert storage is not None
        location = local_for_spark(storage, dataflow=flow.name, role="source")
        if not (location / "_delta_log").is_dir():
            raise SourceError(
                f"dataflow {flow.name}: source Delta table {location} does not exist (has its producer run?)"
            )
        reader = partial(_read_delta, spark, location, dataflow=flow.name)
    else:
        # Read on the driver exactly as the Polars engine does (source filter included).
        frame = collect(
            read_source(catalog, flow, sql_bounds=sql_bounds, context=context), dataflow=flow.name
        )
        with spark_errors(where):
            return SparkSource(to_spark(spark, frame.with_row_index(ORDER)), frame.schema, frame.height)
    try:
        with spark_errors(where):
            read = reader()
        if source.filter:
            with spark_errors(f"{flow.name}.source.filter"):
                read = replace(read, frame=read.frame.filter(F.expr(source.filter)))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise SourceError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    return read
