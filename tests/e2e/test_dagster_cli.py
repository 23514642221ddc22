"""The code location as Dagster's own CLI and instance loader see it (real subprocesses)."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME holding the repository's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _env(dagster_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COOLIE_CATALOG"}
    return {**env, "DAGSTER_HOME": str(dagster_home), **extra}


def test_definitions_validate_loads_the_workspace(dagster_home: Path) -> None:
    """`dagster definitions validate -w workspace.yaml` loads the demo code location cleanly."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=_env(dagster_home), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful for code location coolie" in result.stdout + result.stderr


def test_definitions_validate_reports_a_broken_catalog(dagster_home: Path, tmp_path: Path) -> None:
    """With COOLIE_CATALOG pointing at an invalid catalog the validation fails and says why."""
    bad = tmp_path / "catalog.yaml"
    bad.write_text("dataflows:\n  - name: Bad-Name\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=_env(dagster_home, COOLIE_CATALOG=str(bad)),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "invalid catalog" in result.stdout + result.stderr


def test_instance_config_queues_runs_per_shard(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster.yaml loads: SQLite storage under DAGSTER_HOME and a run queue allowing one run per
    coolie/job_index value at a time."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert {"key": "coolie/job_index", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            queue.tag_concurrency_limits
        )
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        instance.add_run(dg.DagsterRun(job_name="probe", run_id="probe-run"))
    assert (dagster_home / "history" / "runs.db").is_file()


def test_asset_materialize_cli_runs_a_partition_in_a_subprocess(dagster_home: Path, tmp_path: Path) -> None:
    """`dagster asset materialize --partition` on the workspace module (multiprocess executor: the
    resource is rebuilt and the catalog reloaded in the step process) replaces that month."""
    raw = tmp_path / "raw"
    raw.mkdir()
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(91)]
    pl.DataFrame({"id": range(len(days)), "day": days}).write_parquet(raw / "events.parquet")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "connections": {
                    "raw": {"kind": "files", "path": "raw"},
                    "lake": {"kind": "delta", "path": "lake"},
                },
                "dataflows": [
                    {
                        "name": "events",
                        "source": {"format": "parquet", "connection": "raw", "path": "events.parquet"},
                        "destination": {
                            "connection": "lake",
                            "table": "silver/events",
                            "load": "replace_window",
                        },
                        "partitions": {
                            "column": "day",
                            "every": "month",
                            "start": "2024-01-01",
                            "end": "2024-04-01",
                        },
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "coolie_dagster.definitions",
            "--select", "silver/events", "--partition", "2024-02-01",
        ],
        cwd=ROOT, env=_env(dagster_home, COOLIE_CATALOG=str(catalog)),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = pl.read_delta(str(tmp_path / "lake" / "silver" / "events"))
    assert sorted(table["day"].to_list()) == days[31:60]
    assert table["_coolie_run_id"].n_unique() == 1
