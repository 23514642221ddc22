"""The Polars engine (the embedded default): read, transform and write in this process.

* :mod:`~coolie_core.engines.polars.engine`: :class:`PolarsEngine`, the :class:`~coolie_core.engines.base.Engine`.
* :mod:`~coolie_core.engines.polars.read`: source -> transforms -> window / watermark filters.
* :mod:`~coolie_core.engines.polars.transform` (with :mod:`~coolie_core.engines.polars.casts` and
  :mod:`~coolie_core.engines.polars.filters`): the catalog's transforms as polars expressions.
* :mod:`~coolie_core.engines.polars.write` (with :mod:`~coolie_core.engines.polars.scd2`): a
  collected frame into its destination.
* :mod:`~coolie_core.engines.polars.stream`, :mod:`~coolie_core.engines.polars.stream_rewrite`:
  a whole batch from the source to its Delta table without collecting it.
"""

from coolie_core.engines.polars.engine import PolarsEngine

__all__ = ["PolarsEngine"]
