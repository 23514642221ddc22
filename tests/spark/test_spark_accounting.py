"""The Spark engine accounts for every row as the Polars engine does: the same rows read, written,
quarantined, filtered, late and without a watermark value, batch after batch — also when Spark
tasks write the append themselves."""

from pathlib import Path
from typing import Any

import pytest

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver

pytestmark = pytest.mark.spark

COUNTS = (
    "rows_read",
    "rows_written",
    "rows_rejected",
    "rows_filtered",
    "rows_late",
    "rows_without_watermark",
)


def _write(root: Path, name: str, text: str) -> None:
    path = root / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _catalog(root: Path, engine: str) -> Path:
    import yaml

    def flow(name: str, **spec: Any) -> dict[str, Any]:
        return {"name": name, "engine": engine, **spec}

    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": [
            flow(
                "filtered",
                source={"format": "csv", "connection": "raw", "path": "f/*.csv"},
                transforms=[{"kind": "filter", "condition": "amount > 0"}],
                destination={"connection": "lake", "table": "filtered", "load": "append"},
                watermark_columns=["id"],
            ),
            flow(
                "merged",
                source={"format": "csv", "connection": "raw", "path": "m/*.csv"},
                transforms=[{"kind": "dedup", "keys": ["id"], "order_by": ["version"]}],
                destination={"connection": "lake", "table": "merged", "load": "merge", "merge_keys": ["id"]},
                watermark_columns=["version"],
            ),
            flow(
                "guarded",
                source={
                    "format": "csv",
                    "connection": "raw",
                    "path": "q/*.csv",
                    "options": {"infer_schema": False},
                },
                transforms=[{"kind": "cast", "columns": {"id": "int64", "ts": "date", "amount": "float64"}}],
                destination={"connection": "lake", "table": "guarded", "load": "append"},
                watermark_columns=["ts"],
                quarantine={"max_rejected": 10, "rules": [{"kind": "not_null", "columns": ["amount"]}]},
            ),
            flow(
                "events",
                source={"format": "csv", "connection": "raw", "path": "e/*.csv"},
                transforms=[
                    {"kind": "cast", "columns": {"ts": "date"}},
                    {"kind": "filter", "condition": "id <> 9"},
                ],
                destination={"connection": "lake", "table": "events", "load": "append"},
                watermark_columns=["ts"],
            ),
        ],
    }
    path = root / "catalog.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _batch(root: Path, n: int) -> None:
    if n == 1:
        _write(root, "f/1.csv", "id,amount\n1,5\n2,-1\n3,7\n")
        _write(root, "m/1.csv", "id,version,v\n1,1,a\n1,2,b\n2,1,c\n")
        _write(root, "q/1.csv", "id,ts,amount\n1,2024-01-01,1\n2,oops,2\n3,2024-01-02,\n4,,4\n")
        _write(root, "e/1.csv", "id,ts\n1,2024-01-01\n2,\n3,2024-01-03\n9,2024-01-02\n")
    else:
        _write(root, "f/2.csv", "id,amount\n2,9\n4,-3\n5,1\n")
        _write(root, "m/2.csv", "id,version,v\n2,2,d\n2,3,e\n3,1,f\n")
        _write(root, "q/2.csv", "id,ts,amount\n5,2024-01-05,5\n6,,6\n7,2023-12-31,7\n8,nope,8\n")
        _write(root, "e/2.csv", "id,ts\n4,2024-01-04\n5,\n6,2024-01-02\n")


def test_spark_reports_the_same_accounting_as_polars(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    spark_arrow_max_rows(0)  # Spark tasks write every plain append (the marked rows stay out)
    seen: dict[str, list[dict[str, tuple[int, ...]]]] = {}
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        loaded = load_catalog(_catalog(root, engine))
        seen[engine] = []
        for n in (1, 2):
            _batch(root, n)
            with Driver(loaded) as driver:
                result = driver.run()
            batch = {}
            for item in result.results:
                assert item.status != "failed", (engine, item.error)
                counts = tuple(getattr(item, k) for k in COUNTS)
                assert counts[0] == sum(counts[1:]), (engine, item)
                batch[item.dataflow] = counts
            seen[engine].append(batch)
    assert seen["spark"] == seen["polars"]
    assert list((tmp_path / "spark" / "lake" / "filtered").glob("spark-*/*.parquet"))  # tasks wrote it
    assert seen["polars"][1]["filtered"] == (3, 1, 0, 1, 1, 0)
    assert seen["polars"][1]["events"] == (3, 1, 0, 0, 1, 1)
