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
    assert cases == {"parquet_append", "csv_append", "merge", "replace_window"}
    for row in results["throughput"]:
        # coolie and the baselines wrote the same rows.
        assert row["coolie"]["rows"] == row["baseline"]["rows"] == row["baseline_sys"]["rows"] > 0, row
    assert results["memory"]["coolie"]["rss_mb"] > 0
    noop = results["noop"]
    assert noop["unchanged_outcomes"] == {"skipped: source unchanged": noop["n"]}
    # A touched file is a changed file: its rows, all at or below the watermark, are counted late.
    assert noop["touched_outcomes"] == {"skipped: nothing to load: 10 late": noop["n"]}
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
        "No-op incremental run",
        "dagster definitions validate",
        "within budget",
    ):
        assert heading in table
