"""What an engine does for the driver: read a dataflow's rows (source -> transforms -> filters).

The driver owns everything else — watermark maxima, quarantine accounting, system columns,
schema drift, commit metadata — so a dataflow means the same on every engine. An engine hands
its rows over as a polars DataFrame, which the driver writes with delta-rs; an engine that can
write rows itself (Spark: tasks write the Parquet files of any load, the driver makes one
delta-rs commit) may hand over a :class:`DistributedRows` instead, and the rows never reach the
driver.
"""

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow
from coolie_core.quarantine import Rejects
from coolie_core.watermarks import Watermark

if TYPE_CHECKING:
    from coolie_core.reading import NewData
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
    """Reads dataflows. Implementations: :mod:`coolie_core.engines.polars` and
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
        new: "NewData | None" = None,
    ) -> pl.DataFrame | DistributedRows:
        """Like :meth:`read_frame` for an incremental run (no window); the engine may keep a large
        batch for a Delta table distributed. ``accounting``/``new``: the batch's rows not to
        load come back marked (see :mod:`coolie_core.reading`)."""
        ...

    def read_window(
        self, catalog: Catalog, flow: Dataflow, *, window: Window
    ) -> pl.DataFrame | DistributedRows:
        """The rows of a window run or replay chunk. A DataFrame is the rows read (the driver
        prepares them: :func:`coolie_core.replay.prepare_window_rows`); a
        :class:`DistributedRows` is already prepared (its ``tally`` counts the folded rows)."""
        ...
