"""The benchmark entry point runs end to end in quick mode (tiny sizes), so the scripts don't rot.

No timing is asserted: only that every section ran, measured the same work on both sides and
printed its table.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())

    cases = {row["case"] for row in results["throughput"]}
    assert cases == {
        "parquet_append",
        "csv_append",
        "jsonl_append",
        "overwrite",
        "merge",
        "replace_window",
        "incr_first",
        "incr_next",
    }
    for row in results["throughput"]:
        # coolie and the baselines (sink_delta, with and without the system columns) wrote the same rows.
        assert row["coolie"]["rows"] == row["baseline"]["rows"] == row["baseline_sys"]["rows"] > 0, row
        assert row["coolie"]["cpu_s"] > 0, row
        assert row["baseline_sys"]["rss_mb"] > 0, row
    assert set(results["imports"]) == {
        "polars, deltalake",
        "coolie_core.driver",
        "coolie_core.driver, deltalake",
        "coolie_core.cli",
    }
    assert results["memory"]["coolie"]["rss_mb"] > 0
    noop = results["noop"]
    assert noop["unchanged_outcomes"] == {"skipped: source unchanged": noop["n"]}
    # A touched file is a changed file: its rows, all at or below the watermark, are counted late.
    assert noop["touched_outcomes"] == {"skipped: nothing to load: 10 late": noop["n"]}
    # Delta sources (incr_delta): unchanged versions skip; one new row each is one loaded batch each.
    assert noop["delta_unchanged_outcomes"] == {"skipped: source unchanged": noop["n"]}
    assert noop["delta_next_outcomes"] == {"succeeded": noop["n"]}
    (dagster,) = results["dagster"]
    assert (
        dagster["coolie"]["assets"]
        == dagster["bare"]["assets"]
        == dagster["bare_ops"]["assets"]
        > dagster["n"]
    )

    table = run.stdout
    for heading in (
        "parquet -> Delta append",
        "incremental, next batch",
        "Import footprint",
        "No-op incremental run",
        "incr_delta",
        "dagster definitions validate",
        "within budget",
    ):
        assert heading in table
