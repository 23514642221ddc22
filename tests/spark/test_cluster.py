"""The Spark tests run on a real standalone cluster: tasks execute in the worker's executor JVM."""

import os
from typing import Any

import pytest

pytestmark = pytest.mark.spark


def test_tasks_run_in_an_executor_process_of_the_cluster(spark: Any, spark_master: str) -> None:
    if not spark_master.startswith("spark://"):
        pytest.skip(f"tests run on {spark_master}")
    assert spark.sparkContext.master == spark_master
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()  # driver + executors
    assert executors >= 2
    # Python workers of the executor are children of another JVM: their parent is not this process.
    pids = spark.sparkContext.parallelize(range(4), 2).map(lambda _: os.getppid()).distinct().collect()
    assert os.getpid() not in pids
