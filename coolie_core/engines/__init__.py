"""Engines that read and write dataflows, behind :class:`~coolie_core.engines.base.Engine`: polars
(embedded default, :mod:`~coolie_core.engines.polars`) and Spark (``engine: spark``,
:mod:`~coolie_core.engines.spark`).

``engine_for(catalog, flow)`` picks the dataflow's engine (its ``engine``, else the catalog's
``defaults.engine``). The Spark engine is created once per process, on first use: importing
coolie never imports pyspark, and a catalog without Spark dataflows never starts a JVM.

>>> engine_by_name("polars").name
'polars'
"""

import threading
from typing import TYPE_CHECKING, Any

from coolie_core.engines.base import DistributedRows, Engine
from coolie_core.engines.polars import PolarsEngine
from coolie_core.models import Catalog, Dataflow

if TYPE_CHECKING:
    from coolie_core.engines.spark import SparkEngine

__all__ = ["DistributedRows", "Engine", "engine_by_name", "engine_for", "spark_engine", "use_spark_session"]

_POLARS = PolarsEngine()
_SPARK: "SparkEngine | None" = None
_LOCK = threading.Lock()


def spark_engine() -> "SparkEngine":
    """The process' Spark engine (created on first use; its session starts on first read)."""
    global _SPARK
    with _LOCK:
        if _SPARK is None:
            from coolie_core.engines.spark import SparkEngine

            _SPARK = SparkEngine()
        return _SPARK


def use_spark_session(session: Any) -> None:
    """Make the Spark engine use ``session`` (e.g. the one a Dagster pyspark resource started)."""
    spark_engine().use_session(session)


def engine_by_name(name: str) -> Engine:
    """The engine called ``name`` (``polars`` or ``spark``)."""
    if name == "polars":
        return _POLARS
    if name == "spark":
        return spark_engine()
    raise ValueError(f"unknown engine {name!r}; expected polars or spark")


def engine_for(catalog: Catalog, flow: Dataflow) -> Engine:
    """The engine that runs ``flow``: its own ``engine``, else the catalog default."""
    return engine_by_name(catalog.engine_for(flow))
