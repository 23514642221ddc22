"""One throughput case, run in a fresh interpreter: ``python -m benchmarks.throughput CASE IMPL DATA WORK``.

Cases (inputs from :mod:`benchmarks.data`):

* ``parquet_append`` / ``csv_append`` / ``jsonl_append`` — every order into a new Delta table
  (csv and jsonl typed: read as text, parsed with explicit formats);
* ``overwrite`` — every order (parquet) replacing a Delta table of all the orders;
* ``merge`` — 10% changed rows merged on ``id`` into a Delta table of all the orders;
* ``replace_window`` — June 2024 replaced in a Delta table of the whole year;
* ``incr_first`` — an incremental (watermark ``updated_at``) first batch: every order of a
  folder of parquet files into a new table;
* ``incr_next`` — the next batch after a new file of 10% new orders landed in that folder.

Implementations:

* ``coolie`` — a catalog with that one dataflow, run by :class:`coolie_core.driver.Driver`;
* ``coolie_nosys`` — the same with ``system_columns: false`` (into a table without them);
* ``baseline`` — the strongest plain polars + deltalake script: a streaming ``LazyFrame.sink_delta``
  (``mode="merge"`` for merge, an overwrite with a ``predicate`` for replace_window); incremental
  batches read the previous watermark from the last commit's metadata, find the new one in one
  streaming pass over ``updated_at`` and put it in the commit (exactly once needs it there);
* ``baseline_sys`` — the same script writing coolie's two system columns as constants.

Setup (copying the target table, running the first batch before ``incr_next``, in a child
process so its memory is not counted) happens before the clock starts. Prints
``{"seconds": ..., "cpu_s": ..., "rows": ..., "peak_rss_mb": ...}``.
"""

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.data import JUNE
from benchmarks.measure import emit

CASES = (
    "parquet_append",
    "csv_append",
    "jsonl_append",
    "overwrite",
    "merge",
    "replace_window",
    "incr_first",
    "incr_next",
)
IMPLS = ("coolie", "coolie_nosys", "baseline", "baseline_sys")
RUN_ID = "20250101T000000-bench000"
FIRST_RUN_ID = "20241231T000000-bench000"

_SOURCES = {
    "parquet_append": ("parquet", "orders.parquet"),
    "csv_append": ("csv", "orders.csv"),
    "jsonl_append": ("jsonl", "orders.jsonl"),
    "overwrite": ("parquet", "orders.parquet"),
    "merge": ("parquet", "changes.parquet"),
    "replace_window": ("parquet", "june.parquet"),
    "incr_first": ("parquet", "incr/*.parquet"),
    "incr_next": ("parquet", "incr/*.parquet"),
}
_FORMATS = {
    "order_ts": "%Y-%m-%dT%H:%M:%S%.f%z",
    "updated_at": "%Y-%m-%dT%H:%M:%S%.f%z",
    "order_date": "%Y-%m-%d",
}
"""The text forms of :mod:`benchmarks.data`'s csv (jsonl writes ``+00:00``: ``%z`` reads both)."""
_TYPES = {
    "id": ("int64", pl.Int64),
    "customer_id": ("int64", pl.Int64),
    "order_ts": ("datetime", pl.Datetime("us", "UTC")),
    "order_date": ("date", pl.Date),
    "updated_at": ("datetime", pl.Datetime("us", "UTC")),
    "qty": ("int32", pl.Int32),
    "amount": ("float64", pl.Float64),
}
_WATERMARK_KEY = "bench.watermark"


def _with_sys(impl: str) -> bool:
    return impl in ("coolie", "baseline_sys")


def _incremental(case: str) -> bool:
    return case.startswith("incr_")


def _target(case: str, impl: str, data: Path, work: Path) -> Path:
    """The destination table, pre-filled (copied) for overwrite, merge and replace_window."""
    table = work / "lake" / "t"
    if table.exists():
        shutil.rmtree(table)
    table.parent.mkdir(parents=True, exist_ok=True)
    if case in ("overwrite", "merge", "replace_window"):
        shutil.copytree(data / ("base_sys" if _with_sys(impl) else "base"), table)
    return table


def _incr_source(case: str, data: Path, work: Path, *, stage: str) -> None:
    """The incremental source folder: the first file; for ``stage == "next"`` the new one too
    (copied, so its modification time is after the first batch's listing)."""
    folder = work / "src" / "incr"
    if stage == "first":
        shutil.rmtree(work / "src", ignore_errors=True)
        shutil.rmtree(work / "state", ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "part-1.parquet").hardlink_to(data / "orders.parquet")
    else:
        time.sleep(0.01)
        shutil.copyfile(data / "next.parquet", folder / "part-2.parquet")


def _catalog(case: str, data: Path, work: Path, *, system_columns: bool) -> dict[str, Any]:
    fmt, path = _SOURCES[case]
    source: dict[str, Any] = {"format": fmt, "connection": "src", "path": path}
    flow: dict[str, Any] = {
        "name": "bench",
        "system_columns": system_columns,
        "source": source,
        "destination": {"connection": "lake", "table": "t", "load": "append"},
    }
    if fmt == "csv":
        source["options"] = {"infer_schema": False}
        flow["transforms"] = [
            {"kind": "cast", "columns": {c: t for c, (t, _) in _TYPES.items()}, "formats": _FORMATS}
        ]
    if fmt == "jsonl":  # numbers are typed in JSON; the timestamps are text with a known form
        dates = {c: _TYPES[c][0] for c in _FORMATS}
        flow["transforms"] = [{"kind": "cast", "columns": dates, "formats": _FORMATS}]
    if case == "overwrite":
        flow["destination"]["load"] = "overwrite"
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
    if _incremental(case):
        flow["watermark_columns"] = ["updated_at"]
    src = work / "src" if _incremental(case) else data
    return {
        "version": 1,
        "defaults": {"max_workers": 1},
        "connections": {
            "src": {"kind": "files", "path": str(src)},
            "lake": {"kind": "delta", "path": str(work / "lake")},
        },
        "dataflows": [flow],
    }


def run_coolie(
    case: str, data: Path, work: Path, *, system_columns: bool = True, run_id: str = RUN_ID
) -> int:
    """Run the case's dataflow through the Driver; rows written."""
    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver

    path = work / "catalog.json"
    path.write_text(json.dumps(_catalog(case, data, work, system_columns=system_columns)), encoding="utf-8")
    with Driver(load_catalog(path), state_dir=work / "state", run_id=run_id) as driver:
        result = driver.run().result("bench")
    if result.status != "succeeded":
        raise SystemExit(f"coolie run {result.status}: {result.error or result.reason}")
    return result.rows_written


def _parse_text(lf: pl.LazyFrame, columns: dict[str, tuple[str, Any]]) -> pl.LazyFrame:
    exprs = []
    for name, (_, dtype) in columns.items():
        col = pl.col(name)
        if name in _FORMATS and dtype == pl.Date:
            exprs.append(col.str.to_date(_FORMATS[name]))
        elif name in _FORMATS:
            exprs.append(col.str.to_datetime(_FORMATS[name], time_unit="us").dt.convert_time_zone("UTC"))
        else:
            exprs.append(col.cast(dtype))
    return lf.with_columns(exprs)


def _scan(case: str, data: Path, work: Path) -> pl.LazyFrame:
    fmt, path = _SOURCES[case]
    if fmt == "csv":
        return _parse_text(pl.scan_csv(data / path, infer_schema=False), _TYPES)
    if fmt == "jsonl":
        schema = {
            "id": pl.Int64, "customer_id": pl.Int64, "order_ts": pl.String, "order_date": pl.String,
            "updated_at": pl.String, "qty": pl.Int64, "amount": pl.Float64, "status": pl.String,
            "country": pl.String, "sku": pl.String,
        }  # fmt: skip
        lf = pl.scan_ndjson(data / path, schema=schema)
        return _parse_text(lf, {c: _TYPES[c] for c in (*_FORMATS, "qty")})
    if _incremental(case):
        return pl.scan_parquet(work / "src" / path)
    return pl.scan_parquet(data / path)


def _last_watermark(table: Path) -> dt.datetime | None:
    """The watermark the last batch put in its commit (what a careful script stores)."""
    from deltalake import DeltaTable

    if not (table / "_delta_log").exists():
        return None
    for commit in DeltaTable(str(table)).history(limit=20):
        if _WATERMARK_KEY in commit:
            return dt.datetime.fromisoformat(commit[_WATERMARK_KEY])
    return None


def run_baseline(case: str, impl: str, data: Path, work: Path, table: Path) -> int:
    """The plain script: polars' streaming sink into deltalake; rows written."""
    from deltalake import CommitProperties

    lf = _scan(case, data, work)
    if impl == "baseline_sys":
        lf = lf.with_columns(
            pl.lit(dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("_coolie_loaded_at"),
            pl.lit(RUN_ID, dtype=pl.String).alias("_coolie_run_id"),
        )
    if case == "merge":
        merger = lf.sink_delta(
            table,
            mode="merge",
            delta_merge_options={"predicate": "t.id = s.id", "source_alias": "s", "target_alias": "t"},
        )
        assert merger is not None
        metrics = merger.when_matched_update_all().when_not_matched_insert_all().execute()
        return int(metrics["num_source_rows"])
    if case == "replace_window":
        lo, hi = JUNE
        predicate = f"order_date >= '{lo.isoformat()}' AND order_date < '{hi.isoformat()}'"
        lf.sink_delta(table, mode="overwrite", delta_write_options={"predicate": predicate})
    elif _incremental(case):
        previous = _last_watermark(table)
        if previous is not None:
            lf = lf.filter(pl.col("updated_at") > previous)
        # The new watermark goes into the same commit as the rows: one pass over the column.
        newest = lf.select(pl.col("updated_at").max()).collect(engine="streaming").item()
        if newest is None:
            return 0
        lf = lf.filter(pl.col("updated_at") <= newest)
        props = CommitProperties(custom_metadata={_WATERMARK_KEY: newest.isoformat()})
        lf.sink_delta(table, mode="append", delta_write_options={"commit_properties": props})
    else:
        lf.sink_delta(table, mode="overwrite" if case == "overwrite" else "append")
    from deltalake import DeltaTable

    metrics = DeltaTable(str(table)).history(limit=1)[0].get("operationMetrics", {})
    return int(metrics.get("num_added_rows", 0))


def _run(case: str, impl: str, data: Path, work: Path, table: Path, *, run_id: str = RUN_ID) -> int:
    if impl.startswith("coolie"):
        return run_coolie(case, data, work, system_columns=_with_sys(impl), run_id=run_id)
    return run_baseline(case, impl, data, work, table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=CASES)
    parser.add_argument("impl", choices=IMPLS)
    parser.add_argument("data", type=Path, help="folder made by benchmarks.data.prepare")
    parser.add_argument("work", type=Path, help="scratch folder for the destination")
    parser.add_argument("--first-batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.first_batch:  # incr_next's setup, in its own process
        table = _target("incr_first", args.impl, args.data, args.work)
        _incr_source(args.case, args.data, args.work, stage="first")
        _run("incr_first", args.impl, args.data, args.work, table, run_id=FIRST_RUN_ID)
        return
    if args.case == "incr_next":
        argv_setup = [sys.executable, "-m", "benchmarks.throughput", *map(str, (args.case, args.impl))]
        subprocess.run([*argv_setup, str(args.data), str(args.work), "--first-batch"], check=True)
        table = args.work / "lake" / "t"
        _incr_source(args.case, args.data, args.work, stage="next")
    else:
        table = _target(args.case, args.impl, args.data, args.work)
        if args.case == "incr_first":
            _incr_source(args.case, args.data, args.work, stage="first")
    # Imports happen before the clock starts, the same for every implementation: polars and
    # deltalake (coolie imports deltalake lazily, on its first table access) and coolie's driver.
    import deltalake  # noqa: F401

    if args.impl.startswith("coolie"):
        import coolie_core.driver  # noqa: F401
    t0, c0 = time.perf_counter(), time.process_time()
    rows = _run(args.case, args.impl, args.data, args.work, table)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    emit({"case": args.case, "impl": args.impl, "seconds": seconds, "cpu_s": cpu, "rows": rows})


if __name__ == "__main__":
    main()
