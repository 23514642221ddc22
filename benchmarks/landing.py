"""Landing-zone bookkeeping at scale (issue 18): ``python -m benchmarks.landing [--files N] [--runs R]``.

Writes ``N`` small CSV files (default 100,000) into a landing folder, loads them with an
``incremental: files`` dataflow in ``R`` runs (``max_files_per_run: N / R``), then drops 10 new
files and loads those. Per run it prints the planning time (listing the folder, reading the
ledger, picking the files: :func:`coolie_core.landing.plan_landing`), the whole run's time, the
size of the ledger in the commit metadata (``coolie.files``) and of the commit file itself. With
checkpoints the commit stays the same size however many files were loaded before. CPU seconds
(``*_cpu_s``, this process; polars' and delta-rs' threads included) are printed beside wall
seconds: on a shared machine they are the steadier figure.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from deltalake import DeltaTable

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.landing import landing_state, plan_landing
from coolie_core.watermarks import FILES_KEY

CLOCK = 1_700_000_000


def write_files(folder: Path, start: int, count: int) -> None:
    """``count`` two-row CSV files named by number, modification times in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        path = folder / f"f{n:07d}.csv"
        path.write_text(f"id,v\n{2 * n},a\n{2 * n + 1},b\n")
        os.utime(path, (CLOCK + n, CLOCK + n))


def catalog(root: Path, per_run: int) -> Path:
    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": [
            {
                "name": "landing",
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "drop/*.csv",
                    "incremental": "files",
                    "max_files_per_run": per_run,
                },
                "destination": {"connection": "lake", "table": "events", "load": "append"},
            }
        ],
    }
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def measure_run(path: Path) -> dict[str, Any]:
    """Plan (timed alone) and run the dataflow once; what the commit carries."""
    loaded = load_catalog(path)
    flow = loaded.catalog.dataflow("landing")
    t0, c0 = time.perf_counter(), time.process_time()
    state, dest = landing_state(loaded.catalog, flow, state_dir=path.parent / ".coolie")
    batch = plan_landing(loaded.catalog, flow, state=state, dest=dest)
    planning, planning_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    with Driver(loaded) as driver:
        result = driver.run(dataflows=["landing"]).result("landing")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.status == "succeeded", result
    table = DeltaTable(str(path.parent / "lake" / "events"))
    commit = path.parent / "lake" / "events" / "_delta_log" / f"{table.version():020d}.json"
    ledger = str(table.history(limit=1)[0][FILES_KEY])
    return {
        "files": len(batch.files),
        "loaded_total": json.loads(ledger)["total"],
        "planning_s": round(planning, 3),
        "planning_cpu_s": round(planning_cpu, 3),
        "run_s": round(seconds, 3),
        "run_cpu_s": round(cpu, 3),
        "ledger_bytes": len(ledger),
        "commit_bytes": commit.stat().st_size,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--new", type=int, default=10, help="files dropped after the backlog is loaded")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_files(root / "raw" / "drop", 0, args.files)
        print(f"# wrote {args.files} files in {time.perf_counter() - t0:.1f}s", flush=True)
        path = catalog(root, max(1, args.files // args.runs))
        figures = []
        for number in range(1, args.runs + 1):
            figures.append({"run": number, **measure_run(path)})
            print(json.dumps(figures[-1]), flush=True)
        write_files(root / "raw" / "drop", args.files, args.new)
        figures.append({"run": args.runs + 1, **measure_run(path)})
        print(json.dumps(figures[-1]), flush=True)
    return figures


if __name__ == "__main__":
    main()
