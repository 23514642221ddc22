"""``coolie run`` as a separate process: the demo end to end, crash safety under SIGKILL, exit codes.

Crash tests kill the process at a named fault point (``COOLIE_FAULT``), rerun without the fault
and compare the destination with what one clean run over the same source files produces in a
separate root: same rows (order-insensitive, coolie's system columns aside), no duplicates, and a
stored watermark equal to the max committed value.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.watermarks import SqliteWatermarkStore, read_delta_watermark

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"


def coolie(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter (no inherited fault injection, no bytecode written)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")}
    environ.update(PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def data_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows without coolie's system columns, in a canonical order."""
    frame = frame.select(sorted(c for c in frame.columns if not c.startswith("_coolie_")))
    return frame.sort(frame.columns)


# --------------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    done = subprocess.run(
        [sys.executable, str(DEMO / "generate.py"), "--out", str(out), "--rows", "300"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_demo_runs_then_a_second_run_writes_nothing(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coolie run`` on the generated demo succeeds and lists every dataflow; running it again
    exits 0, skips everything and leaves every Delta table at its version."""
    env = {"COOLIE_DEMO_DATA": str(demo_data)}
    monkeypatch.setenv("COOLIE_DEMO_DATA", str(demo_data))
    loaded = load_catalog(DEMO / "catalog.yaml")
    names = [f.name for f in loaded.catalog.dataflows]
    tables = {f.name: demo_data / "lake" / f.destination.table for f in loaded.catalog.dataflows}
    state = ["--state-dir", str(tmp_path / "state")]

    first = coolie("run", str(DEMO / "catalog.yaml"), *state, env=env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    for name in names:
        assert name in first.stdout
    assert "9 succeeded, 0 skipped, 0 failed" in first.stdout
    versions = {name: DeltaTable(str(path)).version() for name, path in tables.items()}
    assert all(v == 0 for v in versions.values()), versions
    assert pl.read_delta(str(tables["orders_bronze"])).height > 300  # inserts plus updates/deletes

    second = coolie("run", str(DEMO / "catalog.yaml"), *state, "--json", env=env)

    assert second.returncode == 0, second.stdout + second.stderr
    records = [json.loads(line) for line in second.stdout.splitlines()]
    assert sorted(r["dataflow"] for r in records) == sorted(names)
    assert {r["status"] for r in records} == {"skipped"}
    assert {name: DeltaTable(str(path)).version() for name, path in tables.items()} == versions


# --------------------------------------------------------------------------- crash safety

CAST_TS = {"kind": "cast", "columns": {"ts": "datetime"}, "formats": {"ts": "%Y-%m-%dT%H:%M:%S"}}


def crash_catalog() -> dict[str, Any]:
    """Three incremental dataflows: Delta append, Delta merge, parquet-folder append."""
    return {
        "connections": {
            "raw": {"kind": "files", "path": "raw"},
            "lake": {"kind": "delta", "path": "lake"},
            "out": {"kind": "files", "path": "out"},
        },
        "dataflows": [
            {
                "name": "events",
                "source": {"format": "jsonl", "connection": "raw", "path": "events/*.jsonl"},
                "transforms": [CAST_TS],
                "destination": {"connection": "lake", "table": "events", "load": "append"},
                "watermark_columns": ["ts"],
            },
            {
                "name": "customers",
                "source": {"format": "jsonl", "connection": "raw", "path": "customers/*.jsonl"},
                "transforms": [CAST_TS],
                "destination": {
                    "connection": "lake",
                    "table": "customers",
                    "load": "merge",
                    "merge_keys": ["id"],
                },
                "watermark_columns": ["ts"],
            },
            {
                "name": "export",
                "source": {"format": "jsonl", "connection": "raw", "path": "events/*.jsonl"},
                "transforms": [CAST_TS],
                "destination": {
                    "connection": "out",
                    "table": "export",
                    "format": "parquet",
                    "load": "append",
                },
                "watermark_columns": ["ts"],
            },
        ],
    }


def ts(day: int) -> str:
    return f"2024-01-{day:02d}T12:00:00"


# Source files arriving over time: the first before the first run, the second before the run that
# is killed, the third (in some cases) between the kill and the rerun.
FILES: dict[str, list[list[dict[str, Any]]]] = {
    "events": [
        [{"id": i, "v": f"e{i}", "ts": ts(i)} for i in (1, 2, 3)],
        [{"id": i, "v": f"e{i}", "ts": ts(i)} for i in (4, 5, 6)],
        [{"id": i, "v": f"e{i}", "ts": ts(i)} for i in (7, 8)],
    ],
    "customers": [
        [
            {"id": 1, "v": "a", "ts": ts(1)},
            {"id": 2, "v": "b", "ts": ts(1)},
            {"id": 3, "v": "c", "ts": ts(1)},
        ],
        [
            {"id": 2, "v": "b2", "ts": ts(2)},
            {"id": 4, "v": "d", "ts": ts(2)},
            {"id": 2, "v": "b3", "ts": ts(3)},
        ],
        [{"id": 1, "v": "a4", "ts": ts(4)}, {"id": 5, "v": "e", "ts": ts(4)}],
    ],
}
FILES["export"] = FILES["events"]
SOURCE_FOLDER = {"events": "events", "customers": "customers", "export": "events"}


def make_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(crash_catalog(), sort_keys=False), encoding="utf-8")
    return path


def add_file(root: Path, dataflow: str, index: int) -> None:
    folder = root / "raw" / SOURCE_FOLDER[dataflow]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{index}.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in FILES[dataflow][index])


def destination_rows(root: Path, dataflow: str) -> pl.DataFrame:
    if dataflow == "export":
        files = sorted((root / "out" / "export").glob("part-*.parquet"))
        return data_rows(pl.read_parquet(files))
    return data_rows(pl.read_delta(str(root / "lake" / dataflow)))


def stored_watermark(root: Path, dataflow: str) -> Any:
    if dataflow == "export":
        return SqliteWatermarkStore(root / "state" / "watermarks.sqlite").read(dataflow).value
    return read_delta_watermark(root / "lake" / dataflow, dataflow=dataflow).value


def committed_version(root: Path, dataflow: str) -> int | None:
    """Delta version, or for the parquet folder the committed batch."""
    if dataflow == "export":
        return SqliteWatermarkStore(root / "state" / "watermarks.sqlite").read(dataflow).batch
    return DeltaTable(str(root / "lake" / dataflow)).version()


@pytest.mark.parametrize(
    ("dataflow", "point", "more_rows"),
    [
        ("events", "after_read", False),
        ("events", "before_commit", True),
        ("events", "after_commit", True),
        ("customers", "before_commit", False),
        ("customers", "delta_commit", True),
        ("customers", "after_commit", True),
        ("export", "after_files", True),
        ("export", "after_commit", False),
    ],
)
def test_kill_at_fault_point_then_rerun_equals_one_clean_run(
    tmp_path: Path, dataflow: str, point: str, more_rows: bool
) -> None:
    """SIGKILL at a fault point leaves either the whole batch or nothing; the rerun (after more
    source rows arrived, in some cases) yields the table one clean run produces: no lost or
    duplicated row, and a watermark equal to the max committed value."""
    root = tmp_path / "crashed"
    catalog = make_root(root)
    state = ["--state-dir", str(root / "state")]
    run = ("run", str(catalog), "--dataflow", dataflow, *state)
    add_file(root, dataflow, 0)
    first = coolie(*run)
    assert first.returncode == 0, first.stdout + first.stderr
    before = committed_version(root, dataflow)
    add_file(root, dataflow, 1)

    killed = coolie(*run, env={"COOLIE_FAULT": f"{point}:{dataflow}"})

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    after_kill = committed_version(root, dataflow)
    if point == "after_commit":
        assert after_kill == before + 1  # the batch committed before the kill
    else:
        assert after_kill == before  # nothing of the batch is committed
    if more_rows:
        add_file(root, dataflow, 2)

    rerun = coolie(*run)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    reference = tmp_path / "reference"
    shutil.copytree(root / "raw", reference / "raw")
    with Driver(load_catalog(make_root(reference)), state_dir=reference / "state") as driver:
        clean = driver.run(dataflows=[dataflow]).result(dataflow)
    assert clean.status == "succeeded", clean.error

    got = destination_rows(root, dataflow)
    assert got.equals(destination_rows(reference, dataflow)), got
    assert got["id"].is_unique().all(), "no duplicated row"
    assert stored_watermark(root, dataflow) == {"ts": got["ts"].max()}


def test_parquet_overwrite_killed_after_files_recovers(tmp_path: Path) -> None:
    """An overwrite into a parquet folder killed after writing its files (before committing the
    batch) is redone by the rerun: the folder holds exactly the rows of the source once."""
    root = tmp_path / "crashed"
    document = crash_catalog()
    document["dataflows"] = [
        {
            "name": "snapshot",
            "source": {"format": "jsonl", "connection": "raw", "path": "events/*.jsonl"},
            "destination": {
                "connection": "out",
                "table": "snapshot",
                "format": "parquet",
                "load": "overwrite",
            },
        }
    ]
    root.mkdir()
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    run = ("run", str(catalog), "--state-dir", str(root / "state"))
    add_file(root, "events", 0)
    assert coolie(*run).returncode == 0
    add_file(root, "events", 1)

    killed = coolie(*run, env={"COOLIE_FAULT": "after_files:snapshot"})
    assert killed.returncode == -signal.SIGKILL
    rerun = coolie(*run)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    files = sorted((root / "out" / "snapshot").glob("part-*.parquet"))
    rows = data_rows(pl.read_parquet(files))
    assert rows["id"].to_list() == [1, 2, 3, 4, 5, 6]
    assert SqliteWatermarkStore(root / "state" / "watermarks.sqlite").read("snapshot").batch == 2


# --------------------------------------------------------------------------- exit codes


def test_invalid_catalog_exits_2_without_traceback(tmp_path: Path) -> None:
    """A catalog with errors fails before running: exit 2, every problem named, no traceback, and
    nothing written."""
    document = crash_catalog()
    document["dataflows"][1]["destination"].pop("merge_keys")
    document["dataflows"][0]["destinaton"] = document["dataflows"][0].pop("destination")
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    result = coolie("run", str(path), "--state-dir", str(tmp_path / "state"))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "customers.destination.merge_keys" in result.stderr
    assert "events.destinaton" in result.stderr
    assert not (tmp_path / "lake").exists()


def test_failing_dataflow_exits_1(tmp_path: Path) -> None:
    """A run in which a dataflow fails (a bad cast) exits 1 and reports the error; the other
    dataflows still run."""
    root = tmp_path
    catalog = make_root(root)
    add_file(root, "customers", 0)
    (root / "raw" / "events").mkdir(parents=True)
    (root / "raw" / "events" / "0.jsonl").write_text(
        json.dumps({"id": 1, "v": "x", "ts": "not a time"}) + "\n"
    )

    result = coolie("run", str(catalog), "--state-dir", str(root / "state"), "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    records = {r["dataflow"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["events"]["status"] == "failed"
    assert "not a time" in records["events"]["error"]
    assert records["customers"]["status"] == "succeeded"
    assert not (root / "lake" / "events").exists()
