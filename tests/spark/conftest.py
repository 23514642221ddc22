"""One SparkSession (``local[2]``) for the whole pytest session: starting one takes 8-13 s."""

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from coolie_core.engines import spark_engine, use_spark_session
from coolie_core.engines.spark import spark_config

TEST_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The session every Spark test (and coolie's Spark engine) uses."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in {**spark_config("local[2]"), **TEST_CONFIG}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    use_spark_session(session)
    yield session
    session.stop()


@pytest.fixture
def spark_arrow_max_rows(spark: Any) -> Iterator[Any]:
    """Set the Spark engine's Arrow threshold for one test (0: every append is written by Spark)."""
    engine = spark_engine()
    before = engine.arrow_max_rows

    def set_to(rows: int) -> None:
        engine.arrow_max_rows = rows

    yield set_to
    engine.arrow_max_rows = before
