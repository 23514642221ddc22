"""The demo catalog on Polars and on Spark (``local[2]``) into separate roots: same tables, same
watermarks, same run records — over a first load, an incremental second batch (merge updates and
deletes, SCD2 changes, new payments) and a replay of daily_revenue windows."""

import datetime as dt
import importlib.util
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.columns import SYSTEM_COLUMNS
from coolie_core.driver import Driver
from coolie_core.locations import destination_location
from coolie_core.watermarks import read_delta_watermark

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
ROWS = 1500


def _generate(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("coolie_demo_generate", DEMO / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(out, rows=ROWS, seed=7)


def _root(base: Path, data: Path, engine: str) -> Path:
    """A copy of the demo (catalog, python source, raw data) whose default engine is ``engine``."""
    root = base / engine
    root.mkdir()
    document = yaml.safe_load((DEMO / "catalog.yaml").read_text(encoding="utf-8"))
    document["defaults"]["engine"] = engine
    (root / "catalog.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    shutil.copy(DEMO / "calendar_source.py", root)
    shutil.copytree(data, root / "data")
    return root


def _second_batch(data: Path) -> None:
    """New and changed rows for every incremental source (the same for both roots)."""
    customers = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 9001],
            "name": ["Customer 1", "Customer 2 Renamed", "Customer 3", "Customer 9001"],
            "email": ["customer1@example.com", "c2@example.org", None, "c9001@example.com"],
            "country": ["DE", "FR", "NL", "SE"],
            "segment": ["enterprise", "smb", "consumer", "smb"],
            "updated_at": [
                "2024-08-02 08:00:00",
                "2024-08-03 09:30:00",
                "2024-08-03 09:30:00",
                "2024-08-04 00:00:00",
            ],
        }
    )
    customers.write_csv(data / "raw" / "customers" / "customers-2024-08.csv")
    events = []
    for order_id in range(1, 21):  # updates of old orders
        events.append(
            {
                "order_id": order_id,
                "status": "shipped",
                "op": "U",
                "ts": f"2024-08-01T0{order_id % 10}:00:00Z",
            }
        )
    for order_id in range(21, 26):  # deletes
        events.append({"order_id": order_id, "status": "cancelled", "op": "D", "ts": "2024-08-01T12:00:00Z"})
    lines = [
        json.dumps(
            {
                "order_id": e["order_id"], "customer_id": 1 + e["order_id"] % 50, "product_id": 1 + e["order_id"] % 7,
                "order_ts": "2024-06-15T10:00:00Z", "status": e["status"], "qty": 2, "unit_price": 10.25,
                "op": e["op"], "updated_at": e["ts"],
            }
        )
        for e in events
    ]  # fmt: skip
    for order_id in range(ROWS + 1, ROWS + 11):  # new orders
        lines.append(
            json.dumps(
                {
                    "order_id": order_id, "customer_id": 9001, "product_id": 3, "order_ts": "2024-06-30T23:00:00Z",
                    "status": "placed", "qty": 1, "unit_price": 99.99, "op": "I", "updated_at": "2024-08-02T00:00:00Z",
                }
            )
        )  # fmt: skip
    (data / "raw" / "orders" / "orders-2024-08.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with sqlite3.connect(data / "erp.sqlite") as conn:
        (top,) = conn.execute("SELECT max(payment_id) FROM payments").fetchone()
        conn.executemany(
            "INSERT INTO payments VALUES (?, ?, ?, ?, ?)",
            [(top + i, ROWS + i, 99.99, "card", f"2024-07-02T0{i}:00:00") for i in range(1, 6)],
        )
    conn.close()


def _table(path: Path) -> pl.DataFrame:
    frame = pl.read_delta(str(path)).drop(SYSTEM_COLUMNS, strict=False)
    return frame.sort(pl.all())


def _records(root: Path) -> Counter[tuple[Any, ...]]:
    records = [
        json.loads(line)
        for f in sorted((root / ".coolie" / "runs").glob("*.jsonl"))
        for line in f.read_text(encoding="utf-8").splitlines()
    ]
    return Counter(
        (r["dataflow"], r.get("kind", "run"), r["status"], r.get("rows_read"), r["rows_written"])
        for r in records
    )


def _assert_same(polars_root: LoadedCatalog, spark_root: LoadedCatalog) -> None:
    for flow in polars_root.catalog.dataflows:
        left = destination_location(polars_root.catalog, flow)
        right = destination_location(spark_root.catalog, spark_root.catalog.dataflow(flow.name))
        expected, actual = _table(left), _table(right)
        assert expected.height > 0, flow.name
        assert actual.schema == expected.schema, flow.name
        assert_frame_equal(actual, expected, check_exact=True)
        # Watermark and batch count (the source fingerprints name each root's own files).
        got, want = (
            read_delta_watermark(right, dataflow=flow.name),
            read_delta_watermark(left, dataflow=flow.name),
        )
        assert (got.value, got.batch) == (want.value, want.batch), flow.name


def test_demo_catalog_gives_identical_tables_on_polars_and_spark(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    _generate(tmp_path / "data")
    roots = {engine: _root(tmp_path, tmp_path / "data", engine) for engine in ("polars", "spark")}
    loaded = {engine: load_catalog(root / "catalog.yaml") for engine, root in roots.items()}

    # First load: Spark tasks write every bronze append (threshold 0); the rest goes through Arrow.
    spark_arrow_max_rows(0)
    for engine in ("polars", "spark"):
        with Driver(loaded[engine]) as driver:
            result = driver.run()
        assert result.ok, [(r.dataflow, r.error) for r in result.results if r.error]
        assert result.succeeded == len(loaded[engine].catalog.dataflows)
    _assert_same(loaded["polars"], loaded["spark"])
    assert list((roots["spark"] / "data" / "lake" / "bronze" / "orders").glob("spark-*/*.parquet"))
    assert not list((roots["polars"] / "data" / "lake" / "bronze" / "orders").glob("spark-*"))

    # Incremental batch: every append now comes back through Arrow.
    spark_arrow_max_rows(1_000_000)
    for engine in ("polars", "spark"):
        _second_batch(roots[engine] / "data")
        with Driver(loaded[engine]) as driver:
            result = driver.run()
        assert result.ok, [(r.dataflow, r.error) for r in result.results if r.error]
        assert result.result("orders_silver").rows_read == 35
        assert result.result("dim_date").status == "skipped"
    _assert_same(loaded["polars"], loaded["spark"])

    # Replay two months of daily_revenue on both.
    for engine in ("polars", "spark"):
        with Driver(loaded[engine]) as driver:
            (replayed,) = driver.run_replay(
                ["daily_revenue"], start=dt.date(2024, 3, 1), end=dt.date(2024, 5, 1)
            )
        assert replayed.status == "succeeded", replayed.error
        assert replayed.committed == 2
    _assert_same(loaded["polars"], loaded["spark"])

    assert _records(roots["spark"]) == _records(roots["polars"])
