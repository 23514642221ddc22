"""The Spark engine (``engine: spark``): read, transform and filter in Spark, commit with delta-rs.

Semantics are the Polars engine's (same catalog, same tables):

* sources are read with the schema polars infers, and results are cast to the schema polars would
  produce — a table gets the same columns and types from either engine;
* the driver keeps the shared steps (watermark maximum, system columns, commit metadata, the
  write): results come back through Arrow as a polars DataFrame, except a large plain append to a
  Delta table (more than ``arrow_max_rows`` rows), which Spark tasks write as Parquet files that
  the driver commits in ONE delta-rs commit (:mod:`coolie_core.engines.spark_delta`). merge,
  replace_window, scd2 and overwrite always go through Arrow -> delta-rs, with the same atomic
  single-commit guarantees as the Polars engine.

The session: the one handed over with :meth:`SparkEngine.use_session` (Dagster's pyspark resource
does this), else the process' active session, else a new one from :func:`spark_config`
(``$COOLIE_SPARK_MASTER``, default ``local[2]``). The settings coolie relies on — UTC session
time zone, ANSI (strict) casts, case-sensitive names, microsecond Parquet timestamps — are applied
to whichever session is used.

pyspark is imported only when a Spark dataflow runs.
"""

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

import polars as pl

from coolie_core.engines.base import DistributedRows
from coolie_core.errors import DataError
from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow
from coolie_core.quarantine import with_quarantine_columns
from coolie_core.reading import sql_bounds
from coolie_core.transforms import LOADED_AT, RUN_ID, apply_transforms
from coolie_core.watermarks import Watermark
from coolie_core.windows import Window

__all__ = ["ARROW_MAX_ROWS_ENV", "MASTER_ENV", "SparkEngine", "SparkRows", "spark_config"]

MASTER_ENV = "COOLIE_SPARK_MASTER"
"""Spark master URL of the session coolie starts (default ``local[2]``)."""
ARROW_MAX_ROWS_ENV = "COOLIE_SPARK_ARROW_MAX_ROWS"
"""Appends larger than this many rows are written by Spark tasks (default 1,000,000)."""

_ROWS = "__coolie_rows"

REQUIRED_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.caseSensitive": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
"""Runtime settings the engine's semantics rely on (applied to any session it uses)."""


def spark_config(master: str | None = None) -> dict[str, str]:
    """The configuration of a session coolie starts: master, required settings, quiet console.

    >>> spark_config("local[1]")["spark.master"]
    'local[1]'
    """
    return {
        "spark.master": master or os.environ.get(MASTER_ENV) or "local[2]",
        "spark.app.name": "coolie",
        "spark.ui.showConsoleProgress": "false",
        **REQUIRED_CONFIG,
    }


def _polars_schema(schema: pl.Schema, flow: Dataflow) -> pl.Schema | None:
    """The schema the Polars engine gives the transformed rows (None when polars cannot type the
    plan, e.g. a Spark-only SQL function: then Spark's own types stand)."""
    try:
        return apply_transforms(
            pl.LazyFrame(schema=schema), flow.transforms, dataflow=flow.name
        ).collect_schema()
    except Exception:  # any failure to type the plan in polars: Spark decides
        return None


class SparkRows:
    """A large append that stays on Spark: its tasks write it when the driver commits.

    Read twice — once for the row count and the watermark maxima (one aggregation), once by the
    writing tasks, which keep only rows at or below those maxima, so rows that reach the source
    in between wait for the next batch. The files must then hold exactly the counted rows.
    """

    def __init__(
        self, sdf: Any, *, height: int, maxima: pl.DataFrame, schema: pl.Schema, dataflow: str
    ) -> None:
        self._sdf = sdf
        self._height = height
        self._maxima = maxima
        self._schema = schema
        self._dataflow = dataflow

    @property
    def height(self) -> int:
        """Number of rows."""
        return self._height

    def empty(self) -> pl.DataFrame:
        """No rows, the Polars engine's columns and types."""
        return pl.DataFrame(schema=self._schema)

    def maxima(self, columns: list[str]) -> pl.DataFrame:
        """One row: the max of each of ``columns`` present (computed with the row count)."""
        present = [c for c in columns if c in self._maxima.columns]
        if not present:  # one row, so that the driver reports the missing columns
            return pl.DataFrame({"rows": [self._height]})
        return self._maxima.select(present)

    def append_delta(
        self,
        path: Path,
        *,
        info: CommitInfo,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
    ) -> WriteResult:
        """Spark tasks write Parquet into the table folder; one delta-rs commit adds the files."""
        from pyspark.sql import functions as F

        from coolie_core.engines.spark_delta import append_with_spark
        from coolie_core.engines.spark_transforms import spark_literal

        sdf = self._sdf
        types = {f.name: f.dataType for f in sdf.schema.fields}
        caps = self._maxima.row(0, named=True) if self._maxima.width else {}
        for column, value in caps.items():
            if value is not None:
                sdf = sdf.filter(
                    F.col(column).isNull() | (F.col(column) <= spark_literal(value, types[column]))
                )
        if system_columns is not None:
            loaded_at, run_id = system_columns
            sdf = sdf.withColumns({LOADED_AT: spark_literal(loaded_at, None), RUN_ID: F.lit(run_id)})
        return append_with_spark(
            sdf.select(*like.columns), path, schema=like.schema, rows=self._height, info=info
        )


class SparkEngine:
    """Reads dataflows with Spark. One per process (see :func:`coolie_core.engines.spark_engine`).

    Args:
        session: a SparkSession to use (default: the active one, else a new one).
        arrow_max_rows: appends above this many rows stay on Spark and are written by its tasks
            (default ``$COOLIE_SPARK_ARROW_MAX_ROWS`` or 1,000,000).
    """

    name = "spark"

    def __init__(self, session: Any = None, *, arrow_max_rows: int | None = None) -> None:
        self._session = session
        self._configured = False
        self._lock = threading.Lock()
        env = os.environ.get(ARROW_MAX_ROWS_ENV)
        self.arrow_max_rows = arrow_max_rows if arrow_max_rows is not None else int(env or 1_000_000)

    def use_session(self, session: Any) -> None:
        """Use ``session`` from now on (its settings are adjusted on first use)."""
        with self._lock:
            self._session = session
            self._configured = False

    @property
    def session(self) -> Any:
        """The SparkSession, started on first use with the settings coolie relies on."""
        with self._lock:
            if self._session is None:
                from pyspark.sql import SparkSession

                active = SparkSession.getActiveSession()
                if active is None:
                    builder = SparkSession.builder
                    for key, value in spark_config().items():
                        builder = builder.config(key, value)
                    active = builder.getOrCreate()
                self._session = active
                self._configured = False
            if not self._configured:
                for key, value in REQUIRED_CONFIG.items():
                    self._session.conf.set(key, value)
                self._configured = True
            return self._session

    def _plan(
        self, catalog: Catalog, flow: Dataflow, *, window: Window | None, watermark: Watermark | None
    ) -> tuple[Any, pl.Schema | None, int | None]:
        """The Spark DataFrame of the rows to load (lazy, with ORDER), their polars schema and an
        upper bound of their count when known without reading (the source's rows)."""
        from coolie_core.engines.spark_sources import read_spark_source
        from coolie_core.engines.spark_transforms import (
            apply_spark_transforms,
            spark_watermark_filter,
            spark_window_filter,
            with_spark_quarantine_columns,
        )

        spark = self.session
        source = read_spark_source(
            spark,
            catalog,
            flow,
            sql_bounds=sql_bounds(flow, watermark, window),
            context={"watermark": watermark, "window": window},
        )
        sdf, source_schema = source.frame, source.schema
        if flow.quarantine is not None:  # the raw row and reject columns, as the Polars engine adds them
            sdf = with_spark_quarantine_columns(sdf)
            source_schema = with_quarantine_columns(pl.LazyFrame(schema=source_schema)).collect_schema()
        target = _polars_schema(source_schema, flow)
        sdf = apply_spark_transforms(sdf, flow.transforms, dataflow=flow.name)
        if window is not None:
            if flow.partitions is None:
                raise DataError(f"dataflow {flow.name}: a window needs partitions in the catalog")
            sdf = spark_window_filter(
                sdf,
                flow.partitions.column,
                window.lo,
                window.hi,
                where=flow.name,
                timezone=flow.partitions.timezone,
            )
        if watermark:
            sdf = spark_watermark_filter(sdf, watermark, flow.lookback, where=flow.name)
        return sdf, target, source.rows  # transforms and filters never add rows

    def read_frame(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        window: Window | None = None,
        watermark: Watermark | None = None,
    ) -> pl.DataFrame:
        """The rows a run of ``flow`` loads, computed by Spark, in input order, as polars types."""
        from coolie_core.engines.spark_types import to_polars

        sdf, target, _ = self._plan(catalog, flow, window=window, watermark=watermark)
        # Input order matters downstream (latest row per key, SCD2 ties): to_polars restores it.
        return to_polars(sdf, target, where=f"dataflow {flow.name}")

    def read_batch(
        self, catalog: Catalog, flow: Dataflow, *, watermark: Watermark | None = None
    ) -> pl.DataFrame | DistributedRows:
        """The rows of an incremental run. A plain append to an unpartitioned Delta table of more
        than ``arrow_max_rows`` rows stays on Spark (:class:`SparkRows`); the rest comes back as
        polars."""
        from pyspark.sql import functions as F

        from coolie_core.engines.spark_types import ORDER, conform, to_polars

        destination = flow.destination
        if (
            destination.format != "delta"
            or destination.load != "append"
            or destination.partition_by
            or destination.schema_drift == "evolve"
            or flow.quarantine is not None
        ):
            return self.read_frame(catalog, flow, watermark=watermark)
        sdf, target, at_most = self._plan(catalog, flow, window=None, watermark=watermark)
        where = f"dataflow {flow.name}"
        if target is None or (at_most is not None and at_most <= self.arrow_max_rows):
            return to_polars(sdf, target, where=where)  # small for sure: no need to count first
        sdf = sdf.drop(ORDER)
        present = [c for c in flow.watermark_columns if c in target]
        stats = to_polars(
            sdf.agg(F.count(F.lit(1)).alias(_ROWS), *[F.max(c).alias(c) for c in present]), None, where=where
        )
        height = int(stats[_ROWS][0])
        if height <= self.arrow_max_rows:
            return to_polars(sdf, target, where=where)
        maxima = conform(stats.drop(_ROWS), pl.Schema({c: target[c] for c in present}), where=where)
        return SparkRows(sdf, height=height, maxima=maxima, schema=target, dataflow=flow.name)
