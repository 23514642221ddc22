"""No-op incremental runs and watermark lookups: ``python -m benchmarks.noop {setup,run,lookup} ...``.

* ``setup WORK N [--source delta]`` — N dataflows, each appending its own small source (a parquet
  file, or with ``--source delta`` a Delta table: the ``incr_delta`` case) to its own Delta table
  by watermark; runs them once (the first load) and reports that run's time.
* ``run WORK [--touch]`` — runs the same catalog again with nothing new: every dataflow is
  skipped ("source unchanged": same file names, sizes and mtimes, or the same Delta source
  version). ``--touch`` (parquet sources) first bumps every source file's mtime: a touched file is
  a changed file, so every dataflow reads it, finds its rows all at or below the watermark and
  records a batch without rows ("nothing to load: N late", a rowless commit carrying the new
  source fingerprint), so the next run skips it again by fingerprint.
* ``run WORK --append`` (Delta sources) — one new row lands in every source table first: each
  dataflow loads a one-row next batch (the fixed cost of a real incremental run).
* ``lookup WORK COMMITS`` — ``read_delta_watermark`` on a table whose log holds COMMITS batches of
  one dataflow (built once), averaged over repeated lookups: the cost must not grow with the log.
"""

import argparse
import datetime as dt
import json
import os
import time
from collections import Counter
from pathlib import Path

import polars as pl

from benchmarks.measure import emit

RUN_ID = "20250101T000000-noop0000"


def _catalog(work: Path, n: int, *, source: str) -> dict[str, object]:
    def spec(i: int) -> dict[str, str]:
        if source == "delta":
            return {"format": "delta", "connection": "raw_lake", "table": f"s{i}"}
        return {"format": "parquet", "connection": "raw", "path": f"f{i}.parquet"}

    return {
        "version": 1,
        "defaults": {"max_workers": 4},
        "connections": {
            "raw": {"kind": "files", "path": str(work / "raw")},
            "raw_lake": {"kind": "delta", "path": str(work / "raw_lake")},
            "lake": {"kind": "delta", "path": str(work / "lake")},
        },
        "dataflows": [
            {
                "name": f"f{i}",
                "source": spec(i),
                "destination": {"connection": "lake", "table": f"t{i}", "load": "append"},
                "watermark_columns": ["updated_at"],
            }
            for i in range(n)
        ],
    }


def _run(work: Path) -> dict[str, object]:
    from coolie_core.catalog import load_catalog
    from coolie_core.driver import Driver

    t0, c0 = time.perf_counter(), time.process_time()
    with Driver(load_catalog(work / "catalog.json"), state_dir=work / "state") as driver:
        result = driver.run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not result.ok:
        failed = next(r for r in result.results if r.status == "failed")
        raise SystemExit(f"dataflow {failed.dataflow} failed: {failed.error}")
    reasons = Counter((r.status, (r.reason or "").split(" since ")[0]) for r in result.results)
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "dataflows": result.total,
        "outcomes": {
            f"{status}: {reason}" if reason else status: n for (status, reason), n in reasons.items()
        },
    }


def setup(work: Path, n: int, *, source: str = "parquet") -> dict[str, object]:
    """Write the sources and the catalog, then run the first load."""
    (work / "raw").mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        frame = pl.DataFrame(
            {
                "id": list(range(10)),
                "updated_at": [start + dt.timedelta(minutes=i + k) for k in range(10)],
                "value": [float(i * k) for k in range(10)],
            }
        )
        if source == "delta":
            frame.write_delta(work / "raw_lake" / f"s{i}")
        else:
            frame.write_parquet(work / "raw" / f"f{i}.parquet")
    (work / "catalog.json").write_text(json.dumps(_catalog(work, n, source=source)), encoding="utf-8")
    import coolie_core.driver  # noqa: F401 - before the clock

    return _run(work)


def noop(work: Path, *, touch: bool, append: bool = False) -> dict[str, object]:
    """Run again with nothing new (optionally after touching every source file), or with
    ``append`` after one new row landed in every Delta source (a one-row next batch each)."""
    if touch:
        now = time.time()
        for file in (work / "raw").glob("*.parquet"):
            os.utime(file, (now, now))
    if append:
        later = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        for table in sorted((work / "raw_lake").iterdir()):
            row = pl.DataFrame({"id": [10], "updated_at": [later], "value": [1.0]})
            row.write_delta(table, mode="append")
    import coolie_core.driver  # noqa: F401 - before the clock

    return _run(work)


def _long_log(path: Path, commits: int) -> None:
    """A Delta table holding ``commits`` incremental batches of one dataflow, as coolie writes them."""
    from deltalake import write_deltalake

    from coolie_core.io.delta import CommitInfo

    marker = path.parent / f".{path.name}.complete"
    if marker.exists():
        return
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for batch in range(1, commits + 1):
        stamp = start + dt.timedelta(minutes=batch)
        info = CommitInfo(dataflow="long", run_id=RUN_ID, batch=batch, watermark={"updated_at": stamp})
        frame = pl.DataFrame({"id": [batch], "updated_at": [stamp]})
        write_deltalake(str(path), frame.to_arrow(), mode="append", commit_properties=info.properties())
    marker.touch()


def lookup(work: Path, commits: int, *, repeat: int = 20) -> dict[str, object]:
    """Mean time of one watermark lookup on a table of ``commits`` batches."""
    from coolie_core.watermarks import read_delta_watermark

    path = work / f"long_{commits}"
    _long_log(path, commits)
    state = read_delta_watermark(path, dataflow="long")
    assert state.batch == commits, state
    t0 = time.perf_counter()
    for _ in range(repeat):
        read_delta_watermark(path, dataflow="long")
    return {"seconds": (time.perf_counter() - t0) / repeat, "commits": commits, "batch": state.batch}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup")
    p_setup.add_argument("work", type=Path)
    p_setup.add_argument("n", type=int)
    p_setup.add_argument("--source", choices=("parquet", "delta"), default="parquet")
    p_run = sub.add_parser("run")
    p_run.add_argument("work", type=Path)
    p_run.add_argument("--touch", action="store_true")
    p_run.add_argument("--append", action="store_true", help="one new row in every Delta source first")
    p_lookup = sub.add_parser("lookup")
    p_lookup.add_argument("work", type=Path)
    p_lookup.add_argument("commits", type=int)
    args = parser.parse_args(argv)
    if args.command == "setup":
        emit(setup(args.work, args.n, source=args.source))
    elif args.command == "run":
        emit(noop(args.work, touch=args.touch, append=args.append))
    else:
        emit(lookup(args.work, args.commits))


if __name__ == "__main__":
    main()
