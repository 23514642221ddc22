"""Types and errors between polars, Arrow, Delta and Spark (imports pyspark: Spark engine only).

The Polars engine's types are the contract: the Spark engine reads sources with the schema polars
infers, and casts its results to the schema polars would produce, so a table written by either
engine has the same columns and types.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import DataType, StructField, StructType

from coolie_core.errors import DataError, SourceError, TransientError

__all__ = [
    "ORDER",
    "arrow_for_spark",
    "conform",
    "delta_to_spark",
    "polars_dtype_of",
    "spark_errors",
    "spark_schema",
    "to_polars",
    "to_spark",
]

ORDER = "__coolie_order"
"""Hidden column carrying the input order (file, block, row) through the Spark plan: the dedup
transform and merges break ties by it, like the Polars engine breaks them by row position."""

_SIGNED = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.decimal128(20, 0),
}


def _signed(dtype: Any) -> Any:
    """Spark has no unsigned integers: the next wider signed type holds every value."""
    if dtype in _SIGNED:
        return _SIGNED[dtype]
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _signed(f.type), f.nullable) for f in dtype])
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return pa.list_(_signed(dtype.value_type))
    if pa.types.is_string_view(dtype):
        return pa.string()
    return dtype


def arrow_for_spark(table: Any) -> Any:
    """An Arrow table Spark can ingest (unsigned integers widened, views made plain)."""
    schema = pa.schema([pa.field(f.name, _signed(f.type), f.nullable) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


def spark_schema(schema: pl.Schema) -> StructType:
    """The Spark schema of a polars schema (unsigned integers widened)."""
    empty = arrow_for_spark(pl.DataFrame(schema=schema).to_arrow())
    result: StructType = from_arrow_schema(empty.schema)
    return result


def polars_dtype_of(dtype: DataType) -> pl.DataType:
    """The polars type of a Spark column type (for typing window and watermark bounds)."""
    arrow = to_arrow_schema(StructType([StructField("c", dtype)]), timezone="UTC")
    # Table.from_batches, not Schema.empty_table (which imports pandas: ~0.4 s per process).
    return pl.DataFrame(pa.Table.from_batches([], schema=arrow)).schema["c"]


def delta_to_spark(delta_schema_json: str) -> StructType:
    """Delta stores Spark's own JSON schema: read it back as a StructType."""
    result: StructType = StructType.fromJson(json.loads(delta_schema_json))
    return result


def to_spark(spark: SparkSession, frame: pl.DataFrame) -> DataFrame:
    """A polars DataFrame as a Spark DataFrame (through Arrow)."""
    return spark.createDataFrame(arrow_for_spark(frame.to_arrow()))


def to_polars(sdf: DataFrame, schema: pl.Schema | None, *, where: str) -> pl.DataFrame:
    """Collect through Arrow, cast to ``schema`` (the Polars engine's types) when given.

    Rows carrying :data:`ORDER` come back in input order (sorted by polars on the driver: far
    cheaper than a distributed sort), without that column.
    """
    with spark_errors(where):
        table = sdf.toArrow()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if ORDER in frame.columns:
        order = frame.schema[ORDER]
        keys = (
            [pl.col(ORDER).struct.field(f.name) for f in order.fields]
            if isinstance(order, pl.Struct)
            else [pl.col(ORDER)]
        )
        frame = frame.sort(keys, nulls_last=False, maintain_order=True).drop(ORDER)
    return conform(frame, schema, where=where)


def conform(frame: pl.DataFrame, schema: pl.Schema | None, *, where: str) -> pl.DataFrame:
    """``frame`` with the column order and types of ``schema`` (unchanged without one)."""
    if schema is None or set(frame.columns) != set(schema.names()):
        return frame
    try:
        return frame.select(schema.names()).cast(schema, strict=True)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{where}: {str(exc).strip().split(chr(10) * 2, 1)[0]}") from exc


def _java_chain(exc: Any) -> list[tuple[str, str]]:
    """(class name, first message line) of a Java exception and its causes."""
    chain: list[tuple[str, str]] = []
    java = getattr(exc, "java_exception", None)
    while java is not None and len(chain) < 8:
        name = str(java.getClass().getName())
        message = str(java.getMessage() or "").strip().split("\n", 1)[0]
        chain.append((name, message))
        java = java.getCause()
    return chain


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n", 1)[0].split("\n== ", 1)[0].strip()


@contextmanager
def spark_errors(where: str) -> Iterator[None]:
    """Turn Spark's errors into coolie's: bad data/SQL -> DataError, lost files -> SourceError,
    other I/O -> TransientError. Messages start with ``where`` (e.g. ``dataflow orders``)."""
    from py4j.protocol import Py4JError, Py4JJavaError  # type: ignore[import-untyped]

    try:
        yield
    except AnalysisException as exc:
        raise DataError(f"{where}: {_first_paragraph(str(exc))}") from exc
    except Py4JJavaError as exc:
        chain = _java_chain(exc)
        names = " ".join(name for name, _ in chain)
        detail = "; caused by ".join(m for _, m in chain if m) or str(exc).split("\n", 1)[0]
        if "FileNotFoundException" in names:
            raise SourceError(f"{where}: a source file vanished while reading: {detail}") from exc
        parse = any(k in names for k in ("NumberFormat", "DateTime", "Parse", "Malformed", "Arithmetic"))
        if "IOException" in names and not parse:
            raise TransientError(f"{where}: I/O error: {detail}") from exc
        raise DataError(f"{where}: {detail}") from exc
    except PySparkException as exc:
        raise DataError(f"{where}: {_first_paragraph(str(exc))}") from exc
    except Py4JError as exc:  # the JVM went away
        raise TransientError(f"{where}: Spark is unreachable: {exc}") from exc
