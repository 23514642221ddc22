"""The Spark engine (``engine: spark``), one module per concern.

* :mod:`~coolie_core.engines.spark.engine` — :class:`SparkEngine` (session, planning, reads and
  writes for the driver) and :func:`spark_config`;
* :mod:`~coolie_core.engines.spark.read` — sources as Spark DataFrames;
* :mod:`~coolie_core.engines.spark.transform` — the catalog's transforms and filters in Spark SQL;
* :mod:`~coolie_core.engines.spark.rows` — :class:`SparkRows`, a batch kept on the executors;
* :mod:`~coolie_core.engines.spark.write`, :mod:`~coolie_core.engines.spark.append`,
  :mod:`~coolie_core.engines.spark.merge`, :mod:`~coolie_core.engines.spark.scd2` — tasks
  write the Parquet files of every load, the driver commits removes + adds with delta-rs;
* :mod:`~coolie_core.engines.spark.files` — those files: Hive-style partition folders, add and
  remove actions, table files read back with their partition values;
* :mod:`~coolie_core.engines.spark.quarantine` — quarantine rules and rejects in tasks;
* :mod:`~coolie_core.engines.spark.convert` — types and conversion to polars.

Importing this package never imports pyspark (only a Spark dataflow's run does).
"""

from coolie_core.engines.spark.engine import ARROW_MAX_ROWS_ENV, MASTER_ENV, SparkEngine, spark_config
from coolie_core.engines.spark.rows import SparkRows

__all__ = ["ARROW_MAX_ROWS_ENV", "MASTER_ENV", "SparkEngine", "SparkRows", "spark_config"]
