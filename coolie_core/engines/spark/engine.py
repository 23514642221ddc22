"""The Spark engine (``engine: spark``): read, transform and filter in Spark, commit with delta-rs.

Semantics are the Polars engine's (same catalog, same tables):

* sources are read with the schema polars infers, and results are cast to the schema polars would
  produce — a table gets the same columns and types from either engine;
* the driver keeps the shared steps (watermark maximum, system columns, schema drift, quarantine
  threshold, commit metadata): a batch, window run or replay chunk of more than
  ``arrow_max_rows`` rows for a Delta table stays on Spark whatever its load — Spark tasks write
  the Parquet files (Hive-style partition folders for ``partition_by``:
  :mod:`coolie_core.engines.spark.files`; and rewrite the files a merge, scd2 or replace_window
  changes) and the driver commits removes + adds in ONE delta-rs commit
  (:mod:`coolie_core.engines.spark.write`, :mod:`coolie_core.engines.spark.scd2`), holding only
  metadata. Quarantine rules run in Spark and tasks write the rejects
  (:mod:`coolie_core.engines.spark.quarantine`); ``schema_drift: evolve`` adds the new columns in
  the data's commit (:func:`coolie_core.engines.spark.write.commit_load`). A parquet-folder
  destination's batch is written by tasks too, and the driver names its files
  (:mod:`coolie_core.engines.spark.folder`). Smaller batches, partition columns whose values tasks
  cannot write as delta-rs does (:func:`coolie_core.engines.spark.files.partitionable`) and
  parquet-folder columns of types Spark cannot write as polars does come back through Arrow as a
  polars DataFrame and are written by the Polars engine's writer, with the same guarantees.

The session: the one handed over with :meth:`SparkEngine.use_session` (Dagster's pyspark resource
does this), else the process' active session, else a new one from :func:`spark_config`
(``$COOLIE_SPARK_MASTER``, default ``local[2]``). The settings coolie relies on — UTC session
time zone, ANSI (strict) casts, case-sensitive names, microsecond Parquet timestamps — are applied
to whichever session is used.

Where the Spark engine reuses the Polars engine's path on purpose: SQL, python and plain-JSON
sources are read on the driver by polars (:mod:`coolie_core.engines.spark.read`); the new data's
rows a watermark leaves out (late, without a watermark value: only counted or quarantined) are read
by polars (:func:`coolie_core.engines.polars.read.scan_left_out`); the result's types are the ones
polars' transforms give (:func:`_polars_schema`); and :meth:`SparkEngine.write` writes a collected
DataFrame with the Polars engine's writer (:func:`coolie_core.engines.polars.write.write_frame`:
the same delta-rs commits and parquet-folder files). It never streams a batch
(:meth:`SparkEngine.stream` is None).

pyspark is imported only when a Spark dataflow runs.
"""

import datetime as dt
import os
import threading
from collections.abc import Sequence
from typing import Any

import polars as pl

from coolie_core.batches import NewData, StreamedBatch, split_marked, sql_bounds
from coolie_core.columns import DROPPED, REJECT_RULE
from coolie_core.engines.base import DistributedRows
from coolie_core.engines.polars.read import collect, scan_left_out
from coolie_core.engines.polars.transform import apply_transforms
from coolie_core.engines.polars.write import write_frame
from coolie_core.engines.spark.rows import SparkRows
from coolie_core.errors import DataError
from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow, DestinationSpec
from coolie_core.quarantine import with_quarantine_columns
from coolie_core.storage import StorageLocation
from coolie_core.storage.spark import local_for_spark
from coolie_core.watermarks import StoredWatermark, Watermark
from coolie_core.windows import Window

__all__ = ["ARROW_MAX_ROWS_ENV", "MASTER_ENV", "SparkEngine", "SparkRows", "spark_config"]

MASTER_ENV = "COOLIE_SPARK_MASTER"
"""Spark master URL of the session coolie starts (default ``local[2]``)."""
ARROW_MAX_ROWS_ENV = "COOLIE_SPARK_ARROW_MAX_ROWS"
"""Appends larger than this many rows are written by Spark tasks (default 1,000,000)."""

_ROWS = "__coolie_rows"
_REASONS = ("filter", "dedup", "late", "no_watermark")

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


def _judge(sdf: Any, flow: Dataflow) -> Any:
    """Mark the living rows without a watermark value (as the Polars engine's reading does)."""
    from functools import reduce

    from pyspark.sql import functions as F

    from coolie_core.engines.spark.transform import _rejection

    columns = flow.watermark_columns
    if not columns or any(c not in sdf.columns for c in columns):
        return sdf
    living = reduce(
        lambda a, b: a & b, [F.col(c).isNull() for c in (DROPPED, REJECT_RULE) if c in sdf.columns]
    )
    missing = reduce(lambda a, b: a & b, [F.col(c).isNull() for c in columns])
    if REJECT_RULE in sdf.columns:
        reason = F.lit(f"no watermark value ({', '.join(columns)} null)")
        return sdf.withColumns(_rejection("watermark", reason, living & missing))
    return sdf.withColumn(DROPPED, F.when(living & missing, F.lit("no_watermark")).otherwise(F.col(DROPPED)))


def _on_tasks(target: pl.Schema, flow: Dataflow) -> bool:
    """Whether Spark tasks can write rows of ``target`` to the destination: for a Delta table, the
    partition columns' values are written exactly as delta-rs writes them
    (:func:`coolie_core.engines.spark.files.partitionable`); for a parquet folder, every column
    with the type polars would write (:func:`coolie_core.engines.spark.folder.folder_writable`)."""
    from coolie_core.engines.spark.files import partitionable

    if flow.destination.format == "parquet":
        from coolie_core.engines.spark.folder import folder_writable

        return folder_writable(target)
    return all(c in target and partitionable(target[c]) for c in flow.destination.partition_by)


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
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        window: Window | None,
        watermark: Watermark | None,
        accounting: bool = False,
    ) -> tuple[Any, pl.Schema | None, int | None]:
        """The Spark DataFrame of the rows to load (lazy, with ORDER), their polars schema and an
        upper bound of their count when known without reading (the source's rows)."""
        from coolie_core.engines.spark.read import read_spark_source
        from coolie_core.engines.spark.transform import (
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
        if (
            accounting
        ):  # rows removed by a declared rule are marked, not dropped (coolie_core.engines.polars.read)
            from pyspark.sql import functions as F

            sdf = sdf.withColumn(DROPPED, F.lit(None).cast("string"))
            source_schema = pl.Schema({**source_schema, DROPPED: pl.String()})
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
        if accounting:
            sdf = _judge(sdf, flow)
        return sdf, target, source.rows  # transforms and filters never add rows

    def read_frame(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        window: Window | None = None,
        watermark: Watermark | None = None,
        accounting: bool = False,
    ) -> pl.DataFrame:
        """The rows a run of ``flow`` loads, computed by Spark, in input order, as polars types
        (``accounting``: with the marked rows, see :meth:`read_batch`)."""
        from coolie_core.engines.spark.convert import to_polars

        sdf, target, _ = self._plan(catalog, flow, window=window, watermark=watermark, accounting=accounting)
        # Input order matters downstream (latest row per key, SCD2 ties): to_polars restores it.
        return to_polars(sdf, target, where=f"dataflow {flow.name}")

    def read_window(
        self, catalog: Catalog, flow: Dataflow, *, window: Window
    ) -> pl.DataFrame | DistributedRows:
        """The rows of a window run, ready to replace the window (a merge's latest row per key
        without the change feed's deletes, as :func:`coolie_core.replay.prepare_window_rows`).

        More than ``arrow_max_rows`` rows for a Delta table stay on Spark
        (:class:`SparkRows`, whose ``tally`` counts the folded duplicates); else the rows read
        come back as polars, to be prepared by the driver.
        """
        from pyspark.sql import functions as F

        from coolie_core.engines.spark.convert import ORDER, conform, to_polars
        from coolie_core.engines.spark.merge import dedup_keys

        destination = flow.destination
        if destination.format != "delta":
            return self.read_frame(catalog, flow, window=window)
        sdf, target, at_most = self._plan(catalog, flow, window=window, watermark=None)
        where = f"dataflow {flow.name}"
        if (
            target is None
            or not _on_tasks(target, flow)
            or (at_most is not None and at_most <= self.arrow_max_rows)
        ):
            return to_polars(sdf, target, where=where)
        present = [c for c in flow.watermark_columns if c in target]
        stats = to_polars(
            sdf.drop(ORDER).agg(F.count(F.lit(1)).alias(_ROWS), *[F.max(c).alias(c) for c in present]),
            None,
            where=where,
        )
        height = int(stats[_ROWS][0])
        if height <= self.arrow_max_rows:
            return to_polars(sdf, target, where=where)
        maxima = conform(stats.select(present), pl.Schema({c: target[c] for c in present}), where=where)
        tally: dict[str, int] = {}
        if flow.load == "merge":
            sdf = dedup_keys(sdf, destination.merge_keys, present, policy="latest", dataflow=flow.name)
            if destination.cdc is not None:
                deleted = F.col(destination.cdc.column).cast("string").isin(destination.cdc.delete)
                sdf = sdf.filter(F.coalesce(~deleted, F.lit(False)))
            folded = height - sdf.count()
            tally = {"dedup": folded} if folded else {}
        return SparkRows(
            sdf, height=height, maxima=maxima, schema=target, dataflow=flow.name, tally=tally, flow=flow,
            window=window,
        )  # fmt: skip

    def read_batch(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        watermark: Watermark | None = None,
        accounting: bool = False,
        new: NewData | None = None,
    ) -> pl.DataFrame | DistributedRows:
        """The rows of an incremental run. A batch of more than ``arrow_max_rows`` rows stays on
        Spark (:class:`SparkRows`), whatever its load, quarantine or drift policy, for a Delta
        table or a parquet folder (unless tasks cannot write its types: :func:`_on_tasks`); the
        rest comes back as polars.

        ``accounting``/``new``: as :func:`coolie_core.engines.polars.read.read_frame` — the rows a declared
        rule removes are marked; the new data's rows the watermark leaves out (late, without a
        watermark value) are read by polars (never loaded, only counted or quarantined).
        """
        from pyspark.sql import functions as F

        from coolie_core.engines.spark.convert import ORDER, conform, to_polars

        left_out = scan_left_out(catalog, flow, watermark=watermark, new=new) if accounting else None
        extra = None if left_out is None else collect(left_out, dataflow=flow.name)

        def with_extra(frame: pl.DataFrame) -> pl.DataFrame:
            return frame if extra is None else pl.concat([frame, extra], how="diagonal_relaxed")

        sdf, target, at_most = self._plan(
            catalog, flow, window=None, watermark=watermark, accounting=accounting
        )
        where = f"dataflow {flow.name}"
        if (
            target is None
            or not _on_tasks(target, flow)
            or (at_most is not None and at_most <= self.arrow_max_rows)
        ):
            return with_extra(to_polars(sdf, target, where=where))  # small for sure: no need to count first
        ordered, sdf = sdf, sdf.drop(ORDER)  # input order matters to merge and scd2 (latest row)
        present = [c for c in flow.watermark_columns if c in target]
        marked = [
            F.sum(F.when(F.col(DROPPED) == r, 1).otherwise(0)).alias(f"__coolie_{r}")
            for r in _REASONS
            if DROPPED in sdf.columns
        ]
        stats = to_polars(
            sdf.agg(F.count(F.lit(1)).alias(_ROWS), *[F.max(c).alias(c) for c in present], *marked),
            None,
            where=where,
        )
        height = int(stats[_ROWS][0])
        if height <= self.arrow_max_rows:
            return with_extra(to_polars(ordered, target, where=where))
        maxima = conform(stats.select(present), pl.Schema({c: target[c] for c in present}), where=where)
        tally = {r: int(stats[f"__coolie_{r}"][0] or 0) for r in _REASONS if f"__coolie_{r}" in stats.columns}
        if extra is not None:  # counted here, never written
            for reason, n in split_marked(extra)[1].items():
                tally[reason] = tally.get(reason, 0) + n
            height += extra.height
        return SparkRows(
            ordered, height=height, maxima=maxima, schema=target, dataflow=flow.name, tally=tally, flow=flow,
            left_out=None if extra is None else split_marked(extra)[0],
        )  # fmt: skip

    def stream(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        dest: StorageLocation,
        state: StoredWatermark,
        run_id: str,
        source: str | None,
        new: NewData,
        listed_at: int,
    ) -> StreamedBatch | None:
        """Never: a Spark batch is read (:meth:`read_batch`), then written (:meth:`write`)."""
        return None

    def write(
        self,
        rows: pl.DataFrame | DistributedRows,
        *,
        flow: Dataflow,
        dest: StorageLocation,
        destination: DestinationSpec,
        info: CommitInfo,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
        windows: Sequence[tuple[Any, Any]] = (),
        evolve: bool = False,
    ) -> WriteResult:
        """Rows kept on Spark (:class:`SparkRows`): its tasks write the Parquet files of the load
        (a window run's rows replace that window; a batch finds the windows it covers itself) and
        this process makes the one delta-rs commit. A collected DataFrame (small reads,
        parquet-folder destinations) is written as the Polars engine writes it
        (:func:`coolie_core.engines.polars.write.write_frame`)."""
        if isinstance(rows, pl.DataFrame):
            return write_frame(
                rows, flow=flow, dest=dest, destination=destination, info=info, windows=windows, evolve=evolve
            )
        folder = local_for_spark(dest, dataflow=flow.name, role="destination")
        if flow.destination.format == "parquet":  # tasks write the files, the driver names them
            assert isinstance(rows, SparkRows)
            assert info.batch is not None  # a parquet folder takes incremental batches only
            written = rows.write_folder(
                folder, like=like, system_columns=system_columns, batch=info.batch, run_id=info.run_id
            )
            return WriteResult(written, None)
        return rows.append_delta(folder, info=info, like=like, system_columns=system_columns, evolve=evolve)
