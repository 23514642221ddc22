"""What an engine does for the driver: read a dataflow's rows (source -> transforms -> filters).

The driver owns everything else — watermark maxima, system columns, commit metadata and the
Delta write — so a dataflow means the same on every engine. An engine hands its rows over as a
polars DataFrame; an engine that can write a large append itself (Spark: tasks write Parquet
files, the driver makes one Delta commit) may hand over a :class:`DistributedRows` instead.
"""

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

from coolie_core.io.delta import CommitInfo, WriteResult
from coolie_core.models import Catalog, Dataflow
from coolie_core.watermarks import Watermark

if TYPE_CHECKING:
    from coolie_core.reading import NewData
from coolie_core.windows import Window

__all__ = ["DistributedRows", "Engine"]


@runtime_checkable
class DistributedRows(Protocol):
    """Rows an engine keeps where they are (on Spark) until its tasks write them.

    Only used for plain appends to a Delta table: the rows never pass through the driver.
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

    def append_delta(
        self,
        path: Path,
        *,
        info: CommitInfo,
        like: pl.DataFrame,
        system_columns: tuple[dt.datetime, str] | None,
    ) -> WriteResult:
        """Append the rows (plus the system columns ``(loaded_at, run_id)``) to the Delta table at
        ``path`` in one commit carrying ``info``, with the columns and types of ``like`` (the
        :meth:`empty` stand-in after the driver's schema steps)."""
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
        plain append to a Delta table distributed. ``accounting``/``new``: the batch's rows not
        to load come back marked (see :mod:`coolie_core.reading`)."""
        ...
