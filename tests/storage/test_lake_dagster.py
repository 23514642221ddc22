"""Dagster on an object-store lake: the demo's downstream report reads coolie's table on S3/Azure
through ``DeltaLakePolarsIOManager`` rooted at the same URI (report.py-style reads)."""

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from tests.storage.test_lake_features import Store, store  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def load_report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coolie_demo_report_s3", ROOT / "examples/demo/report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# dagster-deltalake calls pydantic's deprecated .dict() and logging's deprecated .warn().
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_report_reads_coolies_table_on_the_object_store(
    store: Store,  # noqa: F811 - the fixture
    tmp_path: Path,
    instance: dg.DagsterInstance,
) -> None:
    store.put("raw/orders/1.csv", b"order_id,status,amount\n1,placed,10.5\n2,shipped,4.5\n3,placed,1.0\n")
    document = {
        "connections": {
            "raw": {"kind": "files", "path": f"{store.root}/raw"},
            "lake": {"kind": "delta", "path": f"{store.root}/lake"},
        },
        "dataflows": [
            {
                "name": "orders_silver",
                "source": {"format": "csv", "connection": "raw", "path": "orders/*.csv"},
                "destination": {
                    "connection": "lake",
                    "table": "silver/orders",
                    "load": "merge",
                    "merge_keys": ["order_id"],
                },
            }
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    loaded = load_catalog(tmp_path / "catalog.yaml")
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        assert driver.run().ok
    report = load_report_module()
    lake_root = loaded.catalog.connections["lake"].path  # type: ignore[union-attr]
    assert lake_root == f"{store.root}/lake"
    defs = dg.Definitions.merge(
        dg.Definitions(assets=[dg.AssetSpec(report.ORDERS)]), report.build_report_definitions(lake_root)
    )
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[report.report.key])
    assert result.success
    written = pl.read_delta(f"{store.root}/lake/reports/orders_by_status")
    assert written.select("status", "orders", "revenue").rows() == [("placed", 2, 11.5), ("shipped", 1, 4.5)]


def test_file_arrival_sensor_lists_the_bucket(
    store: Store,  # noqa: F811 - the fixture
    tmp_path: Path,
    instance: dg.DagsterInstance,
) -> None:
    from coolie_dagster.sensors import build_file_arrival_sensor

    document = {
        "connections": {
            "raw": {"kind": "files", "path": f"{store.root}/raw"},
            "lake": {"kind": "delta", "path": f"{store.root}/lake"},
        },
        "dataflows": [
            {
                "name": name,
                "source": {"format": "csv", "connection": "raw", "path": f"{name}/*.csv"},
                "destination": {"connection": "lake", "table": name, "load": "append"},
            }
            for name in ("orders", "customers")
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    loaded = load_catalog(tmp_path / "catalog.yaml")
    sensor = build_file_arrival_sensor(loaded)
    assert sensor is not None
    store.put("raw/orders/1.csv", b"id\n1\n")
    cursor: str | None = None

    def evaluate() -> list[set[str]]:
        nonlocal cursor
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
        cursor = result.cursor
        return [{k.to_user_string() for k in r.asset_selection or []} for r in result.run_requests or []]

    assert evaluate() == [{"orders"}]
    assert evaluate() == []
    store.put("raw/customers/c.csv", b"id\n7\n")
    assert evaluate() == [{"customers"}]
    assert evaluate() == []
    store.put("raw/orders/1.csv", b"id\n1\n2\n")  # rewritten: a new ETag
    assert evaluate() == [{"orders"}]
    assert evaluate() == []
