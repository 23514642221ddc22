"""What an engine does for the driver: read a dataflow's rows (source -> transforms -> filters)
and write them (:meth:`Engine.write`), or move a whole batch itself (:meth:`Engine.stream`).

The driver owns everything else — watermark maxima, quarantine accounting, system columns,
schema drift, commit metadata, the folder-state commit of a parquet folder — so a dataflow means
the same on every engine, and the driver never knows which engine wrote. An engine hands its rows
over as a polars DataFrame; an engine that can write rows itself (Spark: tasks write the Parquet
files of any load, the driver's process makes one delta-rs commit) may hand over a
:class:`DistributedRows` instead, and the rows never reach the driver. Every Delta commit goes
through delta-rs (:mod:`coolie_core.io.delta`) on both engines.
"""

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl

from coolie_core.batches import NewData, StreamedBatch
from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow, DestinationSpec
from coolie_core.quarantine import Rejects
from coolie_core.storage import StorageLocation
from coolie_core.watermarks import StoredWatermark, Watermark
from coolie_core.windows import Window

__all__ = ["DistributedRows", "Engine"]


@runtime_checkable
class DistributedRows(Protocol):
    """Rows an engine keeps where they are (on Spark) until its tasks write them.

    Handed over for a Delta destination, whatever its load (append, overwrite, replace_window,
    merge, scd2) and for window runs and replay chunks (which replace their window). The driver
    sees only metadata: the row count, the watermark maxima, a schema stand-in (:meth:`empty`)
    and the tally of rows not to load; :meth:`append_delta` has the engine's tasks write the
    files and the driver's process make the one commit.
    """

    @property
    def height(self) -> int:
        """Number of rows."""
        ...

    def empty(self) -> pl.DataFrame:
        """No rows, the columns and types the Polars engine would give them: a stand-in for the
        driver's schema steps (system columns, schema drift)."""
        ...

    def maxima(self, columns: list[str]) -> pl.DataFrame:
        """One row: the maximum of each of ``columns`` that exists (a missing one is left out)."""
        ...

    def split_rejects(
        self, flow: Dataflow, *, run_id: str, window: str | None
    ) -> tuple[pl.DataFrame, Rejects]:
        """Check ``flow``'s quarantine rules where the rows are: the good rows' :meth:`empty`
        stand-in (internal columns dropped) and the rejects (their rows written by
        :meth:`Rejects.append_to`); the rejected rows are left out of :meth:`append_delta`."""
        ...

    def append_delta(
        self,
        path: Path,
        *,
        info: CommitInfo,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
        evolve: bool = False,
    ) -> WriteResult:
        """Load the rows (plus the system columns ``(loaded_at, run_id)``) into the Delta table at
        ``path`` with the dataflow's load (a window's rows replace that window) in one commit
        carrying ``info``, with the columns and types of ``like`` (the :meth:`empty` stand-in
        after the driver's schema steps; ``evolve``: its new columns are added to the table's
        schema in that commit)."""
        ...


class Engine(Protocol):
    """Reads and writes dataflows. Implementations: :mod:`coolie_core.engines.polars` and
    :mod:`coolie_core.engines.spark`."""

    name: str

    def read_frame(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        window: Window | None = None,
        watermark: Watermark | None = None,
    ) -> pl.DataFrame:
        """The rows a run of ``flow`` loads: inside ``window`` and newer than ``watermark``."""
        ...

    def read_batch(
        self,
        catalog: Catalog,
        flow: Dataflow,
        *,
        watermark: Watermark | None = None,
        accounting: bool = False,
        new: NewData | None = None,
    ) -> pl.DataFrame | DistributedRows:
        """Like :meth:`read_frame` for an incremental run (no window); the engine may keep a large
        batch for a Delta table distributed. ``accounting``/``new``: the batch's rows not to
        load come back marked (see :mod:`coolie_core.engines.polars.read`)."""
        ...

    def read_window(
        self, catalog: Catalog, flow: Dataflow, *, window: Window
    ) -> pl.DataFrame | DistributedRows:
        """The rows of a window run or replay chunk. A DataFrame is the rows read (the driver
        prepares them: :func:`coolie_core.replay.prepare_window_rows`); a
        :class:`DistributedRows` is already prepared (its ``tally`` counts the folded rows)."""
        ...

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
        """Read, transform and commit an incremental (windowless, not landing) batch in one pass
        when the engine can (the Polars engine: plain loads to Delta without quarantine, never
        holding the rows whole); None: the driver reads the batch and asks :meth:`write`."""
        ...

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
        """Write a batch's prepared rows to ``dest`` with ``destination``'s load (a window run's is
        replace_window), in one commit carrying ``info`` for Delta.

        Args:
            rows: a DataFrame (system columns added, schema reconciled: written as it is) or the
                engine's own :class:`DistributedRows` (written by the engine, with ``like``'s
                columns and types plus ``system_columns``).
            like: the columns and types to write (the DataFrame itself, or the distributed
                rows' :meth:`DistributedRows.empty` stand-in after the driver's schema steps).
            system_columns: ``(loaded_at, run_id)`` when the dataflow asks for them.
            windows: the ``[lo, hi)`` windows a window run replaces; none: the windows the rows cover.
            evolve: add the rows' new columns to the table's schema in that commit.

        Returns:
            Rows written and the Delta version; a parquet folder's version is None (the driver
            records the batch in the folder's state store after the write).
        """
        ...
