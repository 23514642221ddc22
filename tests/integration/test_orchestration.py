"""Orchestration through the Driver: dependency order, parallelism, failure isolation, retries,
commit conflicts between real processes, and sharded runs covering a catalog exactly once."""

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import Driver
from coolie_core.runlog import read_records

ROOT = Path(__file__).parents[2]

SOURCES = textwrap.dedent(
    """
    import os, threading
    from pathlib import Path
    import polars as pl

    BARRIER = threading.Barrier(2, timeout=30)

    def rows(n=3, offset=0):
        return pl.DataFrame({"id": list(range(offset, offset + n)), "v": ["x"] * n})

    def base():
        return rows()

    def branch():
        # Both branches must be inside their source at the same time, or this times out.
        BARRIER.wait()
        return rows()

    def broken():
        raise ValueError("this source is broken")

    def flaky():
        counter = Path(os.environ["FLAKY_COUNTER"])
        calls = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(calls + 1))
        if calls < 2:
            raise ConnectionError(f"connection reset (call {calls + 1})")
        return rows()
    """
)


def make_catalog(tmp_path: Path, dataflows: list[dict[str, Any]], **defaults: Any) -> LoadedCatalog:
    (tmp_path / "sources.py").write_text(SOURCES)
    doc = {
        "defaults": {"max_workers": 4, **defaults},
        "connections": {
            "lake": {"kind": "delta", "path": "lake"},
            "code": {"kind": "python", "path": "sources.py"},
        },
        "dataflows": dataflows,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_catalog(path)


def py_flow(name: str, function: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"format": "python", "connection": "code", "function": function},
        "destination": {"connection": "lake", "table": name},
        **extra,
    }


def test_diamond_and_chain_run_in_order_with_parallel_branches(tmp_path: Path) -> None:
    """root -> (left, right) -> join -> tail: upstreams finish before downstreams start, and the
    independent branches overlap in time (their sources meet at a barrier)."""
    loaded = make_catalog(
        tmp_path,
        [
            py_flow("root", "base"),
            py_flow("left", "branch", depends_on=["root"]),
            py_flow("right", "branch", depends_on=["root"]),
            py_flow("join", "base", depends_on=["left", "right"]),
            py_flow("tail", "base", depends_on=["join"]),
        ],
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run()
    assert result.ok, [r.error for r in result.results]
    assert result.succeeded == 5

    def interval(name: str) -> tuple[dt.datetime, dt.datetime]:
        item = result.result(name)
        assert item.started_at is not None
        return item.started_at, item.started_at + dt.timedelta(seconds=item.duration_s)

    for name in ("left", "right", "join", "tail"):
        for up in loaded.lineage.upstream[name]:
            assert interval(up)[1] <= interval(name)[0], f"{up} must finish before {name} starts"
    left, right = interval("left"), interval("right")
    assert left[0] < right[1], "independent branches must overlap"
    assert right[0] < left[1], "independent branches must overlap"


def test_failure_skips_exactly_its_descendants(tmp_path: Path) -> None:
    """A failing dataflow fails itself, skips its descendants, and leaves other branches alone."""
    loaded = make_catalog(
        tmp_path,
        [
            py_flow("root", "base"),
            py_flow("bad", "broken", depends_on=["root"]),
            py_flow("after_bad", "base", depends_on=["bad"]),
            py_flow("after_after", "base", depends_on=["after_bad"]),
            py_flow("good", "base", depends_on=["root"]),
            py_flow("lonely", "base"),
        ],
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run()
    status = {r.dataflow: r.status for r in result.results}
    assert status == {
        "root": "succeeded",
        "bad": "failed",
        "after_bad": "skipped",
        "after_after": "skipped",
        "good": "succeeded",
        "lonely": "succeeded",
    }
    assert "this source is broken" in (result.result("bad").error or "")
    assert result.result("after_after").reason == "upstream bad failed"
    assert not (tmp_path / "lake" / "after_bad").exists()
    records = read_records(tmp_path / "state" / "runs")
    assert {r["dataflow"]: r["status"] for r in records} == status


def test_flaky_source_is_retried_with_exponential_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source failing twice with a connection error succeeds on the third attempt; the waits
    double; every attempt is in the run record."""
    monkeypatch.setenv("FLAKY_COUNTER", str(tmp_path / "calls"))
    loaded = make_catalog(
        tmp_path,
        [py_flow("flaky_flow", "flaky", retry={"count": 3, "delay": 2, "backoff": "exponential"})],
    )
    waits: list[float] = []
    with Driver(loaded, state_dir=tmp_path / "state", sleep=waits.append) as driver:
        result = driver.run()
    item = result.result("flaky_flow")
    assert item.status == "succeeded", item.error
    assert item.attempts == 3
    assert waits == [2.0, 4.0]
    assert pl.read_delta(str(tmp_path / "lake" / "flaky_flow")).height == 3
    (record,) = read_records(tmp_path / "state" / "runs")
    assert record["attempts"] == 3
    assert len(record["retries"]) == 2
    assert "connection reset" in record["retries"][0]


def test_data_errors_are_not_retried(tmp_path: Path) -> None:
    """A cast error is permanent: one attempt, no sleep, even with retries configured."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_text("id,n\n1,2\n2,abc\n")
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "typed",
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "*.csv",
                    "options": {"infer_schema": False},
                },
                "transforms": [{"kind": "cast", "columns": {"n": "int64"}}],
                "destination": {"connection": "lake", "table": "typed"},
                "retry": {"count": 5, "delay": 1},
            }
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    waits: list[float] = []
    with Driver(
        load_catalog(tmp_path / "catalog.yaml"), state_dir=tmp_path / "state", sleep=waits.append
    ) as driver:
        item = driver.run().result("typed")
    assert item.status == "failed"
    assert item.attempts == 1
    assert waits == []
    assert "abc" in (item.error or "")
    assert not (tmp_path / "lake" / "typed").exists()


def _conflict_catalog(folder: Path, lake: Path, table: str, source_file: str) -> Path:
    folder.mkdir(parents=True)
    doc = {
        "connections": {
            "raw": {"kind": "files", "path": str(folder)},
            "lake": {"kind": "delta", "path": str(lake)},
        },
        "dataflows": [
            {
                "name": "writer",
                "source": {"format": "csv", "connection": "raw", "path": source_file},
                "destination": {"connection": "lake", "table": table, "load": "merge", "merge_keys": ["id"]},
                "retry": {"count": 3, "delay": 0.1},
                "system_columns": False,
            }
        ],
    }
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_commit_conflict_between_two_processes_is_retried(tmp_path: Path) -> None:
    """Two processes merge into one table. Process A takes its snapshot, B commits, then A commits:
    A's merge conflicts (a real delta-rs CommitFailedError), is retried, and both writes land."""
    lake = tmp_path / "lake"
    (tmp_path / "seed").mkdir()
    pl.DataFrame({"id": [0], "v": ["seed"]}).write_delta(str(lake / "shared"))
    cat_a = _conflict_catalog(tmp_path / "a", lake, "shared", "a.csv")
    cat_b = _conflict_catalog(tmp_path / "b", lake, "shared", "b.csv")
    (tmp_path / "a" / "a.csv").write_text("id,v\n1,a\n2,a\n")
    (tmp_path / "b" / "b.csv").write_text("id,v\n3,b\n4,b\n")
    release = tmp_path / "release"
    env = {**os.environ, "COOLIE_PAUSE": f"delta_commit:writer:{release}"}
    cmd = [sys.executable, "-m", "coolie_core.cli", "run", "--json"]
    a = subprocess.Popen(
        [*cmd, str(cat_a)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not Path(str(release) + ".waiting").exists():
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "process A never reached its commit"
            time.sleep(0.05)
        b = subprocess.run([*cmd, str(cat_b)], capture_output=True, text=True, timeout=120, check=False)
        assert b.returncode == 0, b.stdout + b.stderr
        release.touch()
        out, err = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, out + err
    record = json.loads(out.splitlines()[-1])
    assert record["attempts"] == 2
    assert "CommitFailedError" in record["retries"][0] or "conflict" in record["retries"][0]
    table = pl.read_delta(str(lake / "shared")).sort("id")
    assert table["id"].to_list() == [0, 1, 2, 3, 4]
    assert DeltaTable(str(lake / "shared")).version() == 2


@pytest.mark.e2e
def test_sharded_cli_runs_cover_the_demo_exactly_once(tmp_path: Path) -> None:
    """Three workers (`--job-num 3`, indexes 0..2), stage by stage, run every demo dataflow once."""
    data = tmp_path / "data"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "demo" / "generate.py"),
            "--out",
            str(data),
            "--rows",
            "200",
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "COOLIE_DEMO_DATA": str(data)}
    ran: list[str] = []
    for stage in ("bronze", "silver", "gold"):
        for index in range(3):
            proc = subprocess.run(
                [
                    sys.executable, "-m", "coolie_core.cli", "run", str(ROOT / "examples" / "demo" / "catalog.yaml"),
                    "--stage", stage, "--job-num", "3", "--job-index", str(index),
                    "--state-dir", str(tmp_path / f"state{index}"), "--json",
                ],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
            assert all(r["status"] == "succeeded" for r in records), records
            ran += [r["dataflow"] for r in records]
    demo = load_catalog(ROOT / "examples" / "demo" / "catalog.yaml")
    assert sorted(ran) == sorted(f.name for f in demo.catalog.dataflows)
