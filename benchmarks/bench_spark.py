"""Polars vs Spark engine throughput: parquet -> Delta append and merge, through coolie's Driver.

    python benchmarks/bench_spark.py --rows 1000000 [--master local[2]] [--work DIR]

Seeded data (the same bytes for a given ``--rows``): ``source.parquet`` with ``rows`` orders and
``changes.parquet`` with the same ids, every tenth re-priced. Cases, per engine:

* ``append`` — ``source.parquet`` into a new Delta table;
* ``merge``  — ``changes.parquet`` merged on ``id`` into a copy of that table (all keys match).

Engines: ``polars``; ``spark/arrow`` (results collected through Arrow, written by delta-rs — what
Spark does for outputs up to ``COOLIE_SPARK_ARROW_MAX_ROWS`` and for every merge); ``spark/tasks``
(appends written as Parquet by Spark tasks, one delta-rs commit). The Spark session is started
(and warmed up on a small run) before the clock; its start time is printed separately. Prints a
table; no assertions — timings depend on the machine.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.engines import spark_engine, use_spark_session
from coolie_core.engines.spark import spark_config

SEED = 20240601
ENGINES = ("polars", "spark/arrow", "spark/tasks")


def write_data(folder: Path, rows: int) -> None:
    """The seeded source and change files."""
    rng = np.random.default_rng(SEED)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    frame = pl.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "customer_id": rng.integers(1, max(2, rows // 20), rows),
            "qty": rng.integers(1, 20, rows).astype(np.int32),
            "amount": np.round(rng.gamma(2.0, 40.0, rows), 2),
            "status": rng.choice(["placed", "paid", "shipped", "returned"], rows),
            "sku": rng.integers(0, 50_000, rows).astype(str),
            "updated_at": start
            + np.sort(rng.integers(0, 366 * 86_400 * 10**6, rows)).astype("timedelta64[us]"),
        }
    ).with_columns(pl.col("updated_at").dt.replace_time_zone("UTC"))
    frame.write_parquet(folder / "source.parquet")
    changed = (pl.col("id") % 10) == 0
    frame.with_columns(
        pl.when(changed).then(pl.col("amount") * 1.1).otherwise(pl.col("amount")).round(2).alias("amount"),
        pl.when(changed).then(pl.lit("paid")).otherwise(pl.col("status")).alias("status"),
    ).write_parquet(folder / "changes.parquet")


def catalog(work: Path, data: Path, engine: str) -> Path:
    """A catalog with the two dataflows on ``engine``."""
    lake = work / engine.replace("/", "_")
    flows = [
        {
            "name": "append",
            "source": {"format": "parquet", "connection": "src", "path": "source.parquet"},
            "destination": {"connection": "lake", "table": "append", "load": "append"},
        },
        {
            "name": "merge",
            "source": {"format": "parquet", "connection": "src", "path": "changes.parquet"},
            "destination": {"connection": "lake", "table": "merge", "load": "merge", "merge_keys": ["id"]},
        },
    ]
    document = {
        "defaults": {"engine": engine.split("/")[0], "max_workers": 1, "retry": {"count": 0}},
        "connections": {
            "src": {"kind": "files", "path": str(data)},
            "lake": {"kind": "delta", "path": str(lake)},
        },
        "dataflows": flows,
    }
    path = work / f"{engine.replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def run_case(path: Path, name: str) -> tuple[int, float]:
    """Run one dataflow; (rows written, seconds)."""
    loaded = load_catalog(path)
    with Driver(loaded, state_dir=path.parent / "state") as driver:
        t0 = time.perf_counter()
        result = driver.run_one(loaded.catalog.dataflow(name), force=True)
        seconds = time.perf_counter() - t0
    if result.status != "succeeded":
        raise SystemExit(f"{path.name} {name}: {result.status}: {result.error}")
    return result.rows_written, seconds


def start_spark(master: str) -> float:
    """Start the session coolie's Spark engine uses; seconds it took."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    builder = SparkSession.builder
    for key, value in {**spark_config(master), "spark.ui.enabled": "false"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    use_spark_session(session)
    return time.perf_counter() - t0


def warm_up(work: Path) -> None:
    """One small run of each case, so JIT and first-job costs stay out of the figures."""
    folder = work / "warmup"
    folder.mkdir()
    write_data(folder, 1000)
    path = catalog(folder, folder, "spark")
    run_case(path, "append")
    shutil.copytree(folder / "spark" / "append", folder / "spark" / "merge")
    run_case(path, "merge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--master", default=os.environ.get("COOLIE_SPARK_MASTER", "local[2]"))
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coolie-bench-spark-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        data.mkdir(exist_ok=True)
        write_data(data, args.rows)
        startup = start_spark(args.master)
        warm_up(work)
        engine = spark_engine()
        rows: list[dict[str, Any]] = []
        for name in ENGINES:
            engine.arrow_max_rows = 0 if name == "spark/tasks" else args.rows
            path = catalog(work, data, name)
            lake = path.parent / name.replace("/", "_")
            written, seconds = run_case(path, "append")
            rows.append({"engine": name, "case": "append", "rows": written, "seconds": seconds})
            if name == "spark/tasks":
                continue  # merges always go through Arrow: the same as spark/arrow
            shutil.copytree(lake / "append", lake / "merge")
            written, seconds = run_case(path, "merge")
            rows.append({"engine": name, "case": "merge", "rows": written, "seconds": seconds})
    print(f"{args.rows:,} rows, Spark master {args.master} (session start {startup:.1f} s, not counted)")
    print(f"{'engine':<12} {'case':<7} {'rows':>10} {'seconds':>8} {'rows/s':>12}")
    for row in rows:
        rate = row["rows"] / row["seconds"] if row["seconds"] else float("inf")
        print(
            f"{row['engine']:<12} {row['case']:<7} {row['rows']:>10,} {row['seconds']:>8.2f} {rate:>12,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
