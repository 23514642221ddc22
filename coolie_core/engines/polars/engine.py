"""The embedded default engine: polars, lazily, in this process.

Reads: :mod:`~coolie_core.engines.polars.read` (source -> transforms -> filters). Writes: a
whole batch streamed from the source to its Delta table when the load allows it
(:mod:`~coolie_core.engines.polars.stream`, :mod:`~coolie_core.engines.polars.stream_rewrite`),
else the collected frame (:mod:`~coolie_core.engines.polars.write`).
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl

from coolie_core.batches import NewData, StreamedBatch
from coolie_core.engines.base import DistributedRows
from coolie_core.engines.polars.read import read_frame
from coolie_core.engines.polars.stream import can_stream, stream_dataflow
from coolie_core.engines.polars.stream_rewrite import can_stream_rewrite, stream_rewrite
from coolie_core.engines.polars.write import write_frame
from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow, DestinationSpec
from coolie_core.storage import StorageLocation
from coolie_core.watermarks import StoredWatermark, Watermark
from coolie_core.windows import Window

__all__ = ["PolarsEngine"]


class PolarsEngine:
    """Reads with polars' streaming engine; stateless, so one instance serves every thread."""

    name = "polars"

    def read_frame(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        window: Window | None = None,
        watermark: Watermark | None = None,
    ) -> pl.DataFrame:
        """The rows a run of ``flow`` loads (:func:`coolie_core.engines.polars.read.read_frame`)."""
        return read_frame(catalog, flow, window=window, watermark=watermark)

    def read_batch(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        watermark: Watermark | None = None,
        accounting: bool = False,
        new: NewData | None = None,
    ) -> pl.DataFrame | DistributedRows:
        """Polars always hands a DataFrame over."""
        return read_frame(catalog, flow, watermark=watermark, accounting=accounting, new=new)

    def read_window(
        self, catalog: Catalog, flow: Dataflow, *, window: Window
    ) -> pl.DataFrame | DistributedRows:
        """The rows inside ``window``, as read (the driver prepares them)."""
        return read_frame(catalog, flow, window=window)

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
        """An append/overwrite to Delta goes from the source to the table batch by batch, in one
        commit, never collected whole (:func:`~coolie_core.engines.polars.stream.stream_dataflow`);
        so does a merge or replace_window from columnar files into an existing table
        (:func:`~coolie_core.engines.polars.stream_rewrite.stream_rewrite`). None: neither fits."""
        if can_stream(catalog, flow):
            streamer = stream_dataflow
        elif can_stream_rewrite(catalog, flow, dest=dest):
            streamer = stream_rewrite
        else:
            return None
        return streamer(
            catalog, flow, dest=dest, state=state, run_id=run_id, source=source, new=new, listed_at=listed_at
        )

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
        """Write the collected frame (:func:`~coolie_core.engines.polars.write.write_frame`); its
        system columns are in it already, so ``like`` and ``system_columns`` are not needed."""
        if not isinstance(rows, pl.DataFrame):
            raise TypeError(f"the polars engine writes DataFrames, not {type(rows).__name__}")
        return write_frame(
            rows, flow=flow, dest=dest, destination=destination, info=info, windows=windows, evolve=evolve
        )
