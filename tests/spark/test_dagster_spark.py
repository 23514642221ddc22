"""A Spark dataflow materialised through Dagster with ``dagster_pyspark``'s resource."""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_dagster.definitions import build_definitions
from coolie_dagster.resources import SPARK_RESOURCE_KEY, build_spark_resource

pytestmark = pytest.mark.spark


def _catalog(tmp_path: Path, engine: str) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    pl.DataFrame({"id": [1, 2, 3], "day": ["2024-01-01", "2024-01-02", "2024-02-01"]}).write_parquet(
        raw / "a.parquet"
    )
    document = {
        "defaults": {"engine": engine},
        "connections": {
            "raw": {"kind": "files", "path": str(raw)},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
        },
        "dataflows": [
            {
                "name": "events",
                "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                "transforms": [{"kind": "cast", "columns": {"day": "date"}}],
                "destination": {"connection": "lake", "table": "events", "load": "append"},
            },
            {
                "name": "monthly",
                "source": {"format": "delta", "connection": "lake", "table": "events"},
                "destination": {"connection": "lake", "table": "monthly", "load": "replace_window"},
                "partitions": {"column": "day", "every": "month", "start": "2024-01-01", "end": "2024-03-01"},
            },
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_polars_catalogs_get_no_spark_resource(tmp_path: Path) -> None:
    assert SPARK_RESOURCE_KEY not in (build_definitions(_catalog(tmp_path, "polars")).resources or {})


def test_spark_dataflows_run_on_the_pyspark_resource_session(tmp_path: Path, spark: Any) -> None:
    defs = build_definitions(_catalog(tmp_path, "spark"), state_dir=tmp_path / "state")
    resources = dict(defs.resources or {})
    pyspark = resources[SPARK_RESOURCE_KEY]
    assert pyspark.spark_config["spark.sql.session.timeZone"] == "UTC"
    # A runtime setting only the resource carries: proof that the op's session came through it.
    before = spark.conf.get("spark.sql.shuffle.partitions")
    resources[SPARK_RESOURCE_KEY] = build_spark_resource({"spark.sql.shuffle.partitions": "3"})
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(assets, instance=instance, resources=resources, selection=["events"])
            assert result.success
            monthly = dg.materialize(
                assets,
                instance=instance,
                resources=resources,
                selection=["monthly"],
                partition_key="2024-01-01",
            )
            assert monthly.success
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert pl.read_delta(str(tmp_path / "lake" / "events")).sort("id")["id"].to_list() == [1, 2, 3]
    window = pl.read_delta(str(tmp_path / "lake" / "monthly"))
    assert sorted(window["id"].to_list()) == [1, 2]
