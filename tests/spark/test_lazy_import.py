"""Polars users never pay for Spark: coolie (engine, driver, CLI, Dagster location of a polars
catalog) imports without pyspark, and the Spark engine is created only on first use."""

import subprocess
import sys

SCRIPT = """
import sys
import coolie_core.cli, coolie_core.driver, coolie_core.engines, coolie_core.engines.spark
from coolie_dagster.definitions import defs  # the demo catalog: polars only
from coolie_core.engines import engine_by_name
assert engine_by_name("polars").name == "polars"
assert "pyspark" not in sys.modules, sorted(m for m in sys.modules if m.startswith("pyspark"))
import coolie_core.engines as engines
assert engines._SPARK is None
"""


def test_importing_coolie_does_not_import_pyspark() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
