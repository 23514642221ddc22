"""Merge and scd2 of 10 % changed rows on the Spark engine (Spark tasks write, the driver commits)
next to the Polars engine: rows/s and the driver's peak memory at several table sizes.

    python -m benchmarks.bench_spark --rows 5000000 20000000 [--master local[2]] [--work DIR]

Per size, seeded data: ``source.parquet`` (``rows`` orders) and ``changes.parquet`` (every tenth
id re-priced and newer). Per engine and case (``merge`` on ``id``; ``scd2`` tracking amount and
status), one child process loads ``source.parquet`` into a new table, then a fresh child — the
measured one — runs the incremental batch (the watermark picks exactly the changed rows). Every
Spark batch is written by Spark tasks (``COOLIE_SPARK_ARROW_MAX_ROWS=0``).

Reported per measured child: seconds of the run (session start excluded), changed rows/s, the
Python driver's peak RSS (``VmHWM``: where rows collected to the driver would land) and, for
Spark, the driver JVM's peak RSS (in ``local[N]`` the executors run in that JVM too, so it holds
the tasks' work; its heap is capped by ``spark.driver.memory``). Flat Python-driver RSS between
sizes is the point: the driver never holds the rows. No assertions — timings depend on the machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SEED = 20240601
ROOT = Path(__file__).resolve().parent.parent
CASES = ("merge", "scd2")


def _vmhwm_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a process (``VmHWM``), in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def write_data(folder: Path, rows: int) -> None:
    """The seeded source and change files (skipped when present)."""
    import numpy as np
    import polars as pl

    if (folder / "changes.parquet").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
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
    frame.write_parquet(folder / "source.parquet", row_group_size=500_000)
    frame.filter(pl.col("id") % 10 == 0).with_columns(
        (pl.col("amount") * 1.1).round(2).alias("amount"),
        pl.lit("paid").alias("status"),
        (pl.col("updated_at") + pl.duration(days=400)).alias("updated_at"),
    ).write_parquet(folder / "changes.parquet")


def write_catalog(case_dir: Path, engine: str, case: str) -> Path:
    """One dataflow reading ``raw/*.parquet`` into ``lake/<case>`` on ``engine``."""
    import yaml

    destination: dict[str, Any] = {"connection": "lake", "table": case, "load": case, "merge_keys": ["id"]}
    if case == "scd2":
        destination["scd2"] = {"track": ["amount", "status"], "effective_column": "updated_at"}
    document = {
        "defaults": {"engine": engine, "max_workers": 1, "retry": {"count": 0}},
        "connections": {
            "raw": {"kind": "files", "path": str(case_dir / "raw")},
            "lake": {"kind": "delta", "path": str(case_dir / "lake")},
        },
        "dataflows": [
            {
                "name": case,
                "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                "destination": destination,
                "watermark_columns": ["updated_at"],
            }
        ],
    }
    path = case_dir / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def child(catalog: Path, engine: str, master: str) -> dict[str, Any]:
    """Run the catalog once in this process; the figures as a dict."""
    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver

    jvm_pid = None
    if engine == "spark":
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        from coolie_core.engines import use_spark_session
        from coolie_core.engines.spark import spark_config

        conf = {
            **spark_config(master),
            "spark.ui.enabled": "false",
            "spark.driver.memory": "3g",
            "spark.sql.shuffle.partitions": "16",
        }
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        use_spark_session(session)
        jvm: Any = session.sparkContext._jvm
        jvm_pid = jvm.java.lang.ProcessHandle.current().pid()
    loaded = load_catalog(catalog)
    with Driver(loaded, state_dir=catalog.parent / "state") as driver:
        t0 = time.perf_counter()
        result = driver.run()
        seconds = time.perf_counter() - t0
    (flow,) = result.results
    if flow.status != "succeeded":
        raise SystemExit(f"{catalog}: {flow.status}: {flow.error}")
    report = {
        "seconds": seconds,
        "rows_read": flow.rows_read,
        "rows_written": flow.rows_written,
        "driver_rss_mb": _vmhwm_mb(),
        "jvm_rss_mb": _vmhwm_mb(jvm_pid) if jvm_pid else None,
    }
    return report


def _run_child(catalog: Path, engine: str, master: str) -> dict[str, Any]:
    env = {**os.environ, "COOLIE_SPARK_ARROW_MAX_ROWS": "0"}
    args = [sys.executable, "-m", "benchmarks.bench_spark", "--child", str(catalog), "--engine", engine]
    done = subprocess.run(
        [*args, "--master", master], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{catalog} ({engine}) failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--engines", nargs="+", default=["spark", "polars"])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", type=Path, default=Path("/tmp/coolie-bench-spark"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.engine, args.master)))
        return
    lines = []
    for rows in args.rows:
        data = args.work / f"data-{rows}"
        write_data(data, rows)
        for case in args.cases:
            for engine in args.engines:
                case_dir = args.work / f"{rows}-{case}-{engine}"
                if case_dir.exists():
                    subprocess.run(["rm", "-rf", str(case_dir)], check=True)
                (case_dir / "raw").mkdir(parents=True)
                os.link(data / "source.parquet", case_dir / "raw" / "source.parquet")
                catalog = write_catalog(case_dir, engine, case)
                _run_child(catalog, engine, args.master)  # the first load, not measured
                os.link(data / "changes.parquet", case_dir / "raw" / "changes.parquet")
                report = _run_child(catalog, engine, args.master)
                changed = report["rows_read"]
                line = {"rows": rows, "case": case, "engine": engine, **report}
                line["changed_rows_per_s"] = changed / report["seconds"]
                lines.append(line)
                print(json.dumps(line), file=sys.stderr, flush=True)
                subprocess.run(["rm", "-rf", str(case_dir)], check=True)
    print(
        "| table rows | case | engine | changed rows | seconds | changed rows/s | driver peak RSS | JVM peak RSS |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for line in lines:
        jvm = f"{line['jvm_rss_mb']:.0f} MiB" if line["jvm_rss_mb"] else "—"
        print(
            f"| {line['rows']:,} | {line['case']} | {line['engine']} | {line['rows_read']:,} | "
            f"{line['seconds']:.1f} | {line['changed_rows_per_s']:,.0f} | {line['driver_rss_mb']:.0f} MiB | {jvm} |"
        )


if __name__ == "__main__":
    main()
