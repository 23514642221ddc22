"""``coolie validate`` / ``replay`` / ``maintain`` / ``plan --windows`` as a user runs them
(real subprocesses): what the code location needs is checked up front, bad arguments exit 2
before anything is written, and the reports say what a run does."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def coolie(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("H13_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def write_catalog(tmp_path: Path, dataflows: list[dict[str, Any]], **top: Any) -> Path:
    doc = {
        **top,
        "connections": {
            "raw": {"kind": "files", "path": "raw"},
            "lake": {"kind": "delta", "path": "lake"},
            **top.pop("connections", {}),
        },
        "dataflows": dataflows,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def csv_flow(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"format": "csv", "connection": "raw", "path": "x/*.csv"},
        "destination": {"connection": "lake", "table": name, "load": "append"},
        **extra,
    }


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


# --------------------------------------------------------------------------- validate


def test_unknown_stage_timezone_is_a_located_error(tmp_path: Path) -> None:
    """A stage timezone the code location would refuse fails validate at its line, exit 2."""
    path = write_catalog(
        tmp_path,
        [csv_flow("orders", stage="bronze")],
        stages={"bronze": {"schedule": "0 * * * *", "timezone": "Mars/Olympus"}},
    )
    result = coolie("validate", str(path))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert (
        f"{path}:{line_of(path, 'timezone: Mars')}: stages.bronze.timezone: unknown timezone 'Mars/Olympus'"
        in result.stderr
    )


def test_partial_first_month_without_end_is_refused_at_its_line(tmp_path: Path) -> None:
    """A monthly spec starting mid-month without an end cannot be Dagster partitions: validate
    says so at the partitions block and names the fixes (an end, or an aligned start)."""
    partitions = {"column": "d", "every": "month", "start": "2024-01-15"}
    path = write_catalog(tmp_path, [csv_flow("orders", partitions=partitions)])
    result = coolie("validate", str(path))
    assert result.returncode == 2
    where = f"{path}:{line_of(path, 'column: d')}: orders.partitions.end: required"
    assert where in result.stderr
    assert "add partitions.end, or start on a boundary (e.g. 2024-02-01)" in result.stderr
    partitions["end"] = "2024-04-01"
    path = write_catalog(tmp_path, [csv_flow("orders", partitions=partitions)])
    assert coolie("validate", str(path)).returncode == 0


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_carry_file_and_line(tmp_path: Path, constant: str) -> None:
    """Python's json accepts NaN/Infinity; coolie refuses them at their line (not inside strings)."""
    path = tmp_path / "catalog.json"
    path.write_text(
        '{\n  "connections": {"raw": {"kind": "files", "path": "NaN Infinity"}},\n'
        f'  "defaults": {{\n    "retry": {{"delay": {constant}}}\n  }},\n  "dataflows": []\n}}\n'
    )
    result = coolie("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:4: <catalog>: invalid JSON: {constant} is not a JSON number" in result.stderr


def test_check_env_names_unset_references_never_values(tmp_path: Path) -> None:
    """--check-env lists each unset ${VAR} of the connections (file, line, field), exit 2; set
    values (secrets) are never printed; a default makes a reference optional."""
    path = write_catalog(
        tmp_path,
        [],
        connections={
            "erp": {"kind": "sql", "url": "postgresql://etl:${H13_PW}@${H13_HOST}/erp"},
            "files": {"kind": "files", "path": "${H13_ROOT:-.}/raw"},
        },
    )
    secret = "s3cr3t-h0st-value"
    result = coolie("validate", "--check-env", str(path), env={"H13_HOST": secret})
    assert result.returncode == 2
    assert (
        f"{path}:{line_of(path, 'url:')}: connections.erp.url: environment variable H13_PW is not set"
        in result.stderr
    )
    assert "1 of 3 references unset" in result.stderr
    assert "H13_HOST" not in result.stderr
    assert secret not in result.stdout + result.stderr
    ok = coolie("validate", "--check-env", str(path), env={"H13_HOST": secret, "H13_PW": "pw!"})
    assert ok.returncode == 0, ok.stderr
    assert "all 3 references set" in ok.stdout
    assert secret not in ok.stdout + ok.stderr
    assert coolie("validate", str(path)).returncode == 0, "without --check-env the environment is not checked"


# --------------------------------------------------------------------------- replay


@pytest.fixture
def replay_catalog(tmp_path: Path) -> Path:
    (tmp_path / "raw" / "x").mkdir(parents=True)
    (tmp_path / "raw" / "x" / "a.csv").write_text("id,d\n1,2024-01-05\n2,2024-02-07\n3,2024-03-09\n")
    partitioned = csv_flow(
        "parted",
        transforms=[{"kind": "cast", "columns": {"d": "date"}}],
        partitions={"column": "d", "every": "month", "start": "2024-01-01", "end": "2024-04-01"},
    )
    partitioned["destination"]["load"] = "replace_window"
    return write_catalog(tmp_path, [partitioned, csv_flow("plain")])


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-03-01", "2024-02-01"),
        ("2024-02-01", "2024-02-01"),
        ("2024-03-01T10:00+02:00", "2024-03-01T08:00Z"),
    ],
)
def test_replay_start_not_before_end_exits_2_writing_nothing(
    replay_catalog: Path, start: str, end: str
) -> None:
    """An empty or inverted range is a usage error, not a replay that 'succeeds' with 0 chunks."""
    result = coolie("replay", str(replay_catalog), "-d", "parted", "--start", start, "--end", end)
    assert result.returncode == 2, result.stdout
    assert "is not before --end" in result.stderr
    assert "[start, end)" in result.stderr
    assert not (replay_catalog.parent / "lake").exists()


def test_replay_of_a_dataflow_without_partitions_exits_2_before_any_write(replay_catalog: Path) -> None:
    """Replaying an unpartitioned dataflow says why, exit 2, and the other dataflow named in the
    same command does not run either."""
    for args in (["-d", "plain"], ["-d", "parted", "-d", "plain"], ["-d", "plain", "--dry-run"]):
        result = coolie("replay", str(replay_catalog), *args)
        assert result.returncode == 2, result.stdout
        assert "plain.partitions: replay needs partitions" in result.stderr
        assert not (replay_catalog.parent / "lake").exists()
    done = coolie("replay", str(replay_catalog), "-d", "parted", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chunks_committed"] == 3


# --------------------------------------------------------------------------- plan --windows


def test_plan_windows_prints_first_and_last_windows_and_the_count(tmp_path: Path) -> None:
    """A long plan prints its first and last five windows and how many there are; a short one
    prints them all."""
    daily = csv_flow(
        "daily", partitions={"column": "d", "every": "day", "start": "2024-01-01", "end": "2025-01-01"}
    )
    monthly = csv_flow(
        "monthly", partitions={"column": "d", "every": "month", "start": "2024-01-15", "end": "2024-04-01"}
    )
    path = write_catalog(tmp_path, [daily, monthly, csv_flow("plain")])
    result = coolie("plan", str(path), "--windows")
    assert result.returncode == 0, result.stderr
    first = [f"2024-01-0{d}" for d in range(1, 6)]
    last = [f"2024-12-{d}" for d in range(27, 32)]
    assert f"daily: 366 windows: {', '.join(first)}, ... (356 more) ..., {', '.join(last)}" in result.stdout
    assert "2024-06-15" not in result.stdout
    assert "monthly: 3 windows: 2024-01-15, 2024-02-01, 2024-03-01" in result.stdout
    assert "plain:" not in result.stdout


# --------------------------------------------------------------------------- maintain


def test_maintain_covers_quarantine_tables_and_dry_run_lists_what_it_would_do(tmp_path: Path) -> None:
    """Three runs leave three small files in the destination and in the quarantine table. A dry
    run lists both tables with the files a real run compacts and vacuums, and changes nothing; the
    real run then does exactly that to both."""
    raw = tmp_path / "raw" / "x"
    raw.mkdir(parents=True)
    flow = csv_flow(
        "orders",
        transforms=[{"kind": "cast", "columns": {"amount": "float64"}}],
        watermark_columns=["id"],
        quarantine={"max_rejected": "50%"},
    )
    path = write_catalog(tmp_path, [flow])
    for n in range(3):
        (raw / f"{n}.csv").write_text(f"id,amount\n{2 * n + 1},1.5\n{2 * n + 2},oops\n")
        run = coolie("run", str(path), "--json")
        assert run.returncode == 0, run.stdout + run.stderr
    tables = {
        "destination": tmp_path / "lake" / "orders",
        "quarantine": tmp_path / "lake" / "_quarantine" / "orders",
    }
    versions = {role: DeltaTable(str(p)).version() for role, p in tables.items()}
    rows = {role: sorted(map(str, pl.read_delta(str(p)).rows())) for role, p in tables.items()}
    assert len(rows["destination"]) == len(rows["quarantine"]) == 3
    assert all(len(DeltaTable(str(p)).file_uris()) == 3 for p in tables.values())

    dry = coolie("maintain", str(path), "--dry-run", "--retention-hours", "0", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = {r["role"]: r for r in map(json.loads, dry.stdout.splitlines())}
    assert {role: r["table"] for role, r in planned.items()} == {role: str(p) for role, p in tables.items()}
    assert all(r["files_compacted"] == 3 and r["dry_run"] for r in planned.values())
    assert {role: DeltaTable(str(p)).version() for role, p in tables.items()} == versions

    table = coolie("maintain", str(path), "--dry-run")
    assert "dry run: nothing changed" in table.stdout
    assert "files to compact" in table.stdout
    assert "quarantine" in table.stdout

    real = coolie("maintain", str(path), "--retention-hours", "0", "--json")
    assert real.returncode == 0, real.stderr
    done = {r["role"]: r for r in map(json.loads, real.stdout.splitlines())}
    for role, p in tables.items():
        assert done[role]["files_compacted"] == planned[role]["files_compacted"]
        assert done[role]["files_vacuumed"] >= planned[role]["files_vacuumed"]
        assert len(DeltaTable(str(p)).file_uris()) == 1
        assert DeltaTable(str(p)).version() > versions[role]
        assert sorted(map(str, pl.read_delta(str(p)).rows())) == rows[role]
    again = coolie("maintain", str(path), "--dry-run", "--retention-hours", "0", "--json")
    assert all(json.loads(r)["files_compacted"] == 0 for r in again.stdout.splitlines())
    assert all(json.loads(r)["files_vacuumed"] == 3 for r in again.stdout.splitlines())
