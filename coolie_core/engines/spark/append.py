"""Append a Spark DataFrame to a Delta table: Spark tasks write Parquet, delta-rs commits once.

Delta's Spark jars are not needed: the tasks write Parquet files into a fresh folder inside the
table (``spark-<uuid>/``), then the driver adds exactly those files in ONE delta-rs commit that
also carries coolie's commit metadata and application transaction (the watermark). Until that
commit the files are invisible to every reader; a crash leaves only unreferenced files, which
``coolie maintain`` (vacuum) removes. Before committing, the row counts in the files' footers must
add up to the rows read, or nothing is committed.
"""

import json
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # pyspark's own convention

from coolie_core.engines.spark.convert import delta_to_spark, spark_errors
from coolie_core.errors import TransientError, WriteError
from coolie_core.faults import fault_point
from coolie_core.io.delta import CommitInfo, WriteResult, _note_written, _wrap_errors, delta_table_exists

__all__ = ["append_with_spark"]


def _delta_schema(schema: pl.Schema) -> Any:
    """The Delta schema delta-rs gives a polars frame of ``schema`` (unsigned -> signed...)."""
    from deltalake import Schema

    return Schema.from_arrow(pa.schema(pl.DataFrame(schema=schema).to_arrow().schema))


def _fields(schema_json: str) -> list[tuple[str, str]]:
    return [(f["name"], json.dumps(f["type"], sort_keys=True)) for f in json.loads(schema_json)["fields"]]


def _add_actions(folder: Path, table: Path) -> tuple[list[Any], int]:
    """Add actions for the Parquet files in ``folder`` (with their row counts) and the total rows."""
    from deltalake.transaction import AddAction

    actions, total = [], 0
    for file in sorted(folder.glob("*.parquet")):
        rows = pq.read_metadata(file).num_rows
        if rows == 0:
            continue
        stat = file.stat()
        relative = file.relative_to(table).as_posix()
        actions.append(
            AddAction(
                path=quote(relative),
                size=stat.st_size,
                partition_values={},
                modification_time=stat.st_mtime_ns // 1_000_000,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
        )
        total += rows
    return actions, total


def append_with_spark(
    sdf: DataFrame, path: Path, *, schema: pl.Schema, rows: int, info: CommitInfo
) -> WriteResult:
    """Append ``sdf`` (``rows`` rows, typed as the polars ``schema``) to the Delta table at ``path``.

    Raises:
        WriteError: the data's schema does not match the table's, or the written files do not
            hold ``rows`` rows.
        TransientError: I/O error or commit conflict (retry the dataflow).
    """
    from deltalake import DeltaTable
    from deltalake.transaction import create_table_with_add_actions

    where = f"dataflow {info.dataflow}"
    data_schema = _delta_schema(schema)
    table = DeltaTable(str(path)) if delta_table_exists(path) else None
    if table is not None:
        target = table.schema()
        if sorted(_fields(target.to_json())) != sorted(_fields(data_schema.to_json())):
            raise WriteError(
                f"{where}: the data's schema does not match table {path}: "
                f"table {_fields(target.to_json())}, data {_fields(data_schema.to_json())}"
            )
        data_schema = target
    spark_types = delta_to_spark(data_schema.to_json())
    out = sdf.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_types.fields])
    folder = path / f"spark-{uuid.uuid4().hex}"
    committed = False
    try:
        with spark_errors(where):
            out.write.mode("errorifexists").parquet(str(folder))
        actions, written = _add_actions(folder, path)
        if written != rows:
            raise WriteError(
                f"{where}: Spark wrote {written} rows to {folder}, expected {rows}; nothing committed"
            )
        _note_written(info, rows)  # recorded with the batch: a retry after the commit reports it
        fault_point("after_files", info.dataflow)
        try:
            if table is None:
                create_table_with_add_actions(
                    str(path), data_schema, actions, mode="error", commit_properties=info.properties()
                )
            else:
                table.create_write_transaction(
                    actions, mode="append", schema=data_schema, commit_properties=info.properties()
                )
        except Exception as exc:
            wrapped = _wrap_errors(exc, dataflow=info.dataflow, table=path)
            if wrapped is exc:
                raise
            raise wrapped from exc
        committed = True
    except OSError as exc:
        raise TransientError(f"{where}: I/O error writing {path}: {exc}") from exc
    finally:
        if not committed:
            shutil.rmtree(folder, ignore_errors=True)
        else:  # Hadoop's checksum files and the job marker are not part of the table
            for extra in [*folder.glob(".*.crc"), folder / "_SUCCESS"]:
                extra.unlink(missing_ok=True)
    return WriteResult(rows, DeltaTable(str(path)).version())
