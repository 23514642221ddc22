"""A batch that stays on Spark (:class:`SparkRows`): the driver holds its metadata, tasks write it.

The engine (:mod:`coolie_core.engines.spark`) hands it to the driver as a
:class:`~coolie_core.engines.base.DistributedRows`. pyspark is imported by its methods only.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from coolie_core.columns import DROPPED, LOADED_AT, REJECT_RULE, RUN_ID
from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Dataflow
from coolie_core.quarantine import Rejects, split_rejects
from coolie_core.windows import Window

__all__ = ["SparkRows"]


class SparkRows:
    """A large batch that stays on Spark: its tasks write it when the driver commits.

    Read twice — once for the row count and the watermark maxima (one aggregation), once by the
    writing tasks, which keep only rows at or below those maxima, so rows that reach the source
    in between wait for the next batch. The files must then hold exactly the counted rows.
    """

    def __init__(
        self,
        sdf: Any,
        *,
        height: int,
        maxima: pl.DataFrame,
        schema: pl.Schema,
        dataflow: str,
        tally: dict[str, int] | None = None,
        flow: Dataflow | None = None,
        window: Window | None = None,
        left_out: pl.DataFrame | None = None,
    ) -> None:
        self._sdf = sdf
        self._left_out = left_out
        """Rows polars read that the watermark leaves out and no rule removed (to quarantine)."""
        self._rejected: int | None = None
        """Rows quarantined (None until :meth:`split_rejects`)."""
        self._flow = flow
        self._window = window
        """A window run's window: the rows replace exactly it."""
        self._height = height
        self._maxima = maxima
        self._schema = schema
        self._dataflow = dataflow
        self.tally = dict(tally or {})
        """Rows read but not to load, per reason (as :func:`coolie_core.batches.split_marked`)."""

    @property
    def height(self) -> int:
        """Number of rows read (the marked ones included)."""
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

    def split_rejects(
        self, flow: Dataflow, *, run_id: str, window: str | None
    ) -> tuple[pl.DataFrame, Rejects]:
        """Check the quarantine rules on Spark (:mod:`coolie_core.engines.spark.quarantine`): the
        good rows' stand-in and the rejects, whose rows stay on Spark until written."""
        from coolie_core.engines.spark.quarantine import mark_rejects, spark_rejects

        assert flow.quarantine is not None
        # The rules' columns are checked (same errors) and the stand-in loses the internal columns.
        good, _ = split_rejects(self.empty().drop(DROPPED, strict=False), flow, run_id=run_id, window=window)
        self._sdf = mark_rejects(self._sdf, flow.quarantine, dataflow=flow.name)
        extra = None
        if self._left_out is not None and self._left_out.height:
            extra = split_rejects(self._left_out, flow, run_id=run_id, window=window)[1]
        rejects = spark_rejects(
            self._capped(self._sdf), rows_read=self._height - sum(self.tally.values()), extra=extra,
            run_id=run_id, dataflow=flow.name, window=window,
        )  # fmt: skip
        self._rejected = rejects.count
        return good, rejects

    def _capped(self, sdf: Any) -> Any:
        """Rows at or below the watermark maxima counted: rows reaching the source later wait."""
        from pyspark.sql import functions as F

        from coolie_core.engines.spark.transform import spark_literal

        types = {f.name: f.dataType for f in sdf.schema.fields}
        caps = self._maxima.row(0, named=True) if self._maxima.width else {}
        for column, value in caps.items():
            if value is not None:
                sdf = sdf.filter(
                    F.col(column).isNull() | (F.col(column) <= spark_literal(value, types[column]))
                )
        return sdf

    def _loadable(self, system_columns: tuple[dt.datetime, str] | None) -> tuple[Any, int]:
        """The rows to write (marked and rejected rows left out, capped at the counted maxima,
        plus the system columns) and how many there are."""
        from pyspark.sql import functions as F

        from coolie_core.engines.spark.transform import spark_literal

        sdf = self._sdf
        if DROPPED in sdf.columns:  # marked rows are counted, never written
            sdf = sdf.filter(F.col(DROPPED).isNull())
        if self._rejected is not None:  # quarantined rows went to the quarantine table
            sdf = sdf.filter(F.col(REJECT_RULE).isNull())
        sdf = self._capped(sdf)
        if system_columns is not None:
            loaded_at, run_id = system_columns
            sdf = sdf.withColumns({LOADED_AT: spark_literal(loaded_at, None), RUN_ID: F.lit(run_id)})
        return sdf, self._height - sum(self.tally.values()) - (self._rejected or 0)

    def append_delta(
        self,
        path: Path,
        *,
        info: CommitInfo,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
        evolve: bool = False,
    ) -> WriteResult:
        """Spark tasks write Parquet into the table folder; one delta-rs commit adds the files (and,
        for the other loads of the dataflow, removes those it replaces; with ``evolve``, adds the
        new columns to the table's schema)."""
        from coolie_core.engines.spark.append import append_evolving_with_spark, append_with_spark

        sdf, rows = self._loadable(system_columns)
        if self._flow is not None and (self._window is not None or self._flow.destination.load != "append"):
            return self._write(sdf, path, info=info, like=like, rows=rows, evolve=evolve)
        append = append_evolving_with_spark if evolve else append_with_spark
        return append(
            sdf.select(*like.columns), path, schema=like.schema, rows=rows, info=info,
            partition_by=self._partition_by,
        )  # fmt: skip

    def write_folder(
        self,
        folder: Path,
        *,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
        batch: int,
        run_id: str,
    ) -> int:
        """Spark tasks write the rows as batch ``batch`` of a parquet-folder destination
        (:mod:`coolie_core.engines.spark.folder`), with the columns and types of ``like``; the
        rows written."""
        from coolie_core.engines.spark.folder import write_folder_with_spark

        assert self._flow is not None
        sdf, rows = self._loadable(system_columns)
        return write_folder_with_spark(
            sdf.select(*like.columns), folder, schema=like.schema, rows=rows, batch=batch, run_id=run_id,
            overwrite=self._flow.destination.load == "overwrite", where=f"dataflow {self._flow.name}",
        )  # fmt: skip

    @property
    def _partition_by(self) -> list[str]:
        """The destination's partition columns (the tasks write Hive-style partition folders)."""
        return list(self._flow.destination.partition_by or []) if self._flow is not None else []

    def _write(
        self, sdf: Any, path: Path, *, info: CommitInfo, like: pl.DataFrame, rows: int, evolve: bool
    ) -> WriteResult:
        """overwrite, replace_window, merge, scd2 on Spark tasks (:mod:`coolie_core.engines.spark.write`)."""
        from pyspark.sql import functions as F

        from coolie_core.engines.spark.convert import ORDER
        from coolie_core.engines.spark.merge import merge_with_spark
        from coolie_core.engines.spark.scd2 import scd2_with_spark
        from coolie_core.engines.spark.write import overwrite_with_spark, replace_window_with_spark
        from coolie_core.windows import windows_covering

        assert self._flow is not None
        flow, destination = self._flow, self._flow.destination
        ordered = sdf.select(*like.columns, ORDER)
        partition_by = self._partition_by
        if self._window is not None:  # a window run replaces exactly its window, whatever the load
            assert flow.partitions is not None
            return replace_window_with_spark(
                ordered.drop(ORDER), path, schema=like.schema, rows=rows, info=info,
                column=flow.partitions.column, windows=[(self._window.lo, self._window.hi)],
                timezone=flow.partitions.timezone, evolve=evolve, partition_by=partition_by,
            )  # fmt: skip
        if destination.load == "overwrite":
            return overwrite_with_spark(
                ordered.drop(ORDER), path, schema=like.schema, rows=rows, info=info, partition_by=partition_by
            )
        if destination.load == "replace_window":
            assert flow.partitions is not None
            column = flow.partitions.column
            lo, hi = sdf.agg(F.min(column), F.max(column)).collect()[0]  # the windows the batch spans
            covering = windows_covering(flow.partitions, lo=lo, hi_inclusive=hi)
            return replace_window_with_spark(
                ordered.drop(ORDER), path, schema=like.schema, rows=rows, info=info, column=column,
                windows=[(w.lo, w.hi) for w in covering], timezone=flow.partitions.timezone,
                evolve=evolve, partition_by=partition_by,
            )  # fmt: skip
        if destination.load == "merge":
            return merge_with_spark(
                ordered, path, schema=like.schema, keys=destination.merge_keys,
                order_columns=flow.watermark_columns, policy=destination.on_duplicate_keys,
                cdc=destination.cdc, info=info, evolve=evolve, partition_by=partition_by,
            )  # fmt: skip
        return scd2_with_spark(
            ordered, path, schema=like.schema, destination=destination, info=info,
            order_columns=flow.watermark_columns, evolve=evolve, partition_by=partition_by,
        )  # fmt: skip
