"""One throughput case, run in a fresh interpreter: ``python -m benchmarks.throughput CASE IMPL DATA WORK``.

Cases (inputs from :mod:`benchmarks.data`):

* ``parquet_append`` / ``csv_append`` — every order into a new Delta table;
* ``merge`` — 10% changed rows merged on ``id`` into a Delta table of all the orders;
* ``replace_window`` — June 2024 replaced in a Delta table of the whole year.

Implementations:

* ``coolie`` — a catalog with that one dataflow, run by :class:`coolie_core.driver.Driver`;
* ``coolie_nosys`` — the same with ``system_columns: false`` (into a table without them);
* ``baseline`` — a plain polars + deltalake script doing the same write;
* ``baseline_sys`` — the same script plus coolie's two system columns written efficiently (constants);
* ``naive_sys`` — the same script plus the system columns built the naive way (a Python string
  per row), to show what such columns can cost.

Setup (copying the target table of merge / replace_window) happens before the clock starts.
Prints ``{"seconds": ..., "cpu_s": ..., "rows": ..., "peak_rss_mb": ...}``.
"""

import argparse
import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.data import JUNE, with_system_columns
from benchmarks.measure import emit

CASES = ("parquet_append", "csv_append", "merge", "replace_window")
IMPLS = ("coolie", "coolie_nosys", "baseline", "baseline_sys", "naive_sys")
RUN_ID = "20250101T000000-bench000"

_SOURCES = {
    "parquet_append": ("parquet", "orders.parquet"),
    "csv_append": ("csv", "orders.csv"),
    "merge": ("parquet", "changes.parquet"),
    "replace_window": ("parquet", "june.parquet"),
}


def _target(case: str, impl: str, data: Path, work: Path) -> Path:
    """The destination table, pre-filled (copied) for merge and replace_window."""
    table = work / "lake" / "t"
    if table.exists():
        shutil.rmtree(table)
    table.parent.mkdir(parents=True, exist_ok=True)
    if case in ("merge", "replace_window"):
        base = data / ("base" if impl in ("baseline", "coolie_nosys") else "base_sys")
        shutil.copytree(base, table)
    return table


def _catalog(case: str, data: Path, work: Path, *, system_columns: bool) -> dict[str, Any]:
    fmt, path = _SOURCES[case]
    flow: dict[str, Any] = {
        "name": "bench",
        "system_columns": system_columns,
        "source": {"format": fmt, "connection": "src", "path": path},
        "destination": {"connection": "lake", "table": "t", "load": "append"},
    }
    if case == "merge":
        flow["destination"] |= {"load": "merge", "merge_keys": ["id"]}
    if case == "replace_window":
        flow["destination"]["load"] = "replace_window"
        flow["partitions"] = {
            "column": "order_date",
            "every": "month",
            "start": "2024-01-01",
            "end": "2025-01-01",
        }
    return {
        "version": 1,
        "defaults": {"max_workers": 1},
        "connections": {
            "src": {"kind": "files", "path": str(data)},
            "lake": {"kind": "delta", "path": str(work / "lake")},
        },
        "dataflows": [flow],
    }


def run_coolie(case: str, data: Path, work: Path, *, system_columns: bool = True) -> int:
    """Run the case's dataflow through the Driver; rows written."""
    import json

    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver

    path = work / "catalog.json"
    path.write_text(json.dumps(_catalog(case, data, work, system_columns=system_columns)), encoding="utf-8")
    with Driver(load_catalog(path), state_dir=work / "state", run_id=RUN_ID) as driver:
        result = driver.run().result("bench")
    if result.status != "succeeded":
        raise SystemExit(f"coolie run {result.status}: {result.error or result.reason}")
    return result.rows_written


def _read(case: str, data: Path) -> pl.DataFrame:
    fmt, path = _SOURCES[case]
    return pl.read_csv(data / path) if fmt == "csv" else pl.read_parquet(data / path)


def _naive_system_columns(frame: pl.DataFrame) -> pl.DataFrame:
    stamp = dt.datetime.now(dt.UTC).isoformat()
    return frame.with_columns(
        pl.Series("_coolie_loaded_at", [stamp] * frame.height).str.to_datetime(time_zone="UTC"),
        pl.Series("_coolie_run_id", [RUN_ID for _ in range(frame.height)], dtype=pl.String),
    )


def run_baseline(case: str, impl: str, data: Path, table: Path) -> int:
    """The plain script: read with polars, write with deltalake; rows written."""
    from deltalake import DeltaTable, write_deltalake

    frame = _read(case, data)
    if impl == "baseline_sys":
        frame = with_system_columns(frame, loaded_at=dt.datetime.now(dt.UTC), run_id=RUN_ID)
    elif impl == "naive_sys":
        frame = _naive_system_columns(frame)
    if case == "merge":
        (
            DeltaTable(str(table))
            .merge(frame.to_arrow(), predicate="t.id = s.id", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    elif case == "replace_window":
        lo, hi = JUNE
        predicate = f"order_date >= '{lo.isoformat()}' AND order_date < '{hi.isoformat()}'"
        write_deltalake(str(table), frame.to_arrow(), mode="overwrite", predicate=predicate)
    else:
        write_deltalake(str(table), frame.to_arrow(), mode="append")
    return frame.height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=CASES)
    parser.add_argument("impl", choices=IMPLS)
    parser.add_argument("data", type=Path, help="folder made by benchmarks.data.prepare")
    parser.add_argument("work", type=Path, help="scratch folder for the destination")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    table = _target(args.case, args.impl, args.data, args.work)
    if args.impl.startswith("coolie"):
        import coolie_core.driver  # noqa: F401 - imported before the clock starts, like the baseline's
    else:
        import deltalake  # noqa: F401
    t0, c0 = time.perf_counter(), time.process_time()
    if args.impl.startswith("coolie"):
        rows = run_coolie(args.case, args.data, args.work, system_columns=args.impl == "coolie")
    else:
        rows = run_baseline(args.case, args.impl, args.data, table)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    emit({"case": args.case, "impl": args.impl, "seconds": seconds, "cpu_s": cpu, "rows": rows})


if __name__ == "__main__":
    main()
