"""The embedded default engine: polars, lazily, in this process (see :mod:`coolie_core.reading`)."""

import polars as pl

from coolie_core.engines.base import DistributedRows
from coolie_core.models import Catalog, Dataflow
from coolie_core.reading import NewData, read_frame
from coolie_core.watermarks import Watermark
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
        """The rows a run of ``flow`` loads (:func:`coolie_core.reading.read_frame`)."""
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
