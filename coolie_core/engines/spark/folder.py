"""A parquet-folder destination (``format: parquet``: append or overwrite) written by Spark tasks.

The tasks write the batch's rows into a staging folder inside the destination
(``_coolie_staging-<uuid>/``: readers of the folder's ``part-*.parquet`` never see it); the driver
then checks the row counts in the footers and moves each file to ``part-<batch>-<run id>-<n>.parquet``,
the names the Polars engine gives a batch (:mod:`coolie_core.io.parquet`), so the folder's
rules hold whichever engine wrote it: a batch counts once the driver commits it in the folder's
state, and the files of a batch that never committed (a kill between the moves and that commit)
are removed before the next write, with any staging folder a killed run left
(:func:`~coolie_core.io.parquet.discard_uncommitted`). overwrite then removes the older
batches' files, as on Polars. Only the file names and counts reach the driver.

Types: the rows are cast to the polars schema the Polars engine would write (through the Delta
type mapping both engines share); a schema with a type Spark cannot write as polars does
(unsigned integers, nanosecond timestamps, nested types: :func:`folder_writable`) is written by
the driver instead.
"""

import shutil
import uuid
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq  # type: ignore[import-untyped]  # pyarrow ships no type information
from pyspark.sql import DataFrame

from coolie_core.engines.spark.convert import spark_errors
from coolie_core.engines.spark.files import _delta_schema, typed
from coolie_core.errors import TransientError, WriteError
from coolie_core.io.parquet import STAGING_PREFIX

__all__ = ["folder_writable", "write_folder_with_spark"]

_FLAT = (pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.Float32, pl.Float64, pl.String, pl.Date)


def folder_writable(schema: pl.Schema) -> bool:
    """Whether Spark tasks write every column of ``schema`` with the type polars would write."""

    def fits(dtype: pl.DataType) -> bool:
        if isinstance(dtype, pl.Datetime):
            return dtype.time_unit == "us"
        return isinstance(dtype, pl.Decimal) or any(dtype == flat for flat in _FLAT)

    return all(fits(dtype) for dtype in schema.values())


def write_folder_with_spark(
    sdf: DataFrame,
    folder: Path,
    *,
    schema: pl.Schema,
    rows: int,
    batch: int,
    run_id: str,
    overwrite: bool,
    where: str,
) -> int:
    """Tasks write ``sdf`` (``rows`` rows, cast to ``schema``) as batch ``batch`` of the parquet
    folder; with ``overwrite`` the other batches' files are removed afterwards. Returns the rows
    written.

    Raises:
        WriteError: the files do not hold ``rows`` rows (nothing is named into the folder).
        TransientError: an I/O error (retry the dataflow: the batch is not committed).
    """
    data = typed(sdf, _delta_schema(schema))
    staging = folder / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with spark_errors(where):
            data.write.mode("errorifexists").parquet(str(staging))
        files = sorted(staging.glob("part-*.parquet"))
        written = int(sum(pq.read_metadata(file).num_rows for file in files))
        if written != rows:
            raise WriteError(
                f"{where}: Spark wrote {written} rows to {staging}, expected {rows}; nothing written"
            )
        names = []
        for n, file in enumerate(files):
            target = folder / f"part-{batch:010d}-{run_id}-{n}.parquet"
            file.replace(target)
            names.append(target.name)
        if overwrite:
            for old in folder.glob("part-*.parquet"):
                if old.name not in names:
                    old.unlink(missing_ok=True)
    except OSError as exc:
        raise TransientError(f"{where}: I/O error writing parquet files in {folder}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
