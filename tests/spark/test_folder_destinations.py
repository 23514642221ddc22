"""Parquet-folder destinations (``format: parquet``) on Spark: tasks write the batch's files, the
driver only names them and commits the folder's state — the same rows, types, watermarks and run
records as the Polars engine over a first and an incremental batch; a killed batch's files are
removed by the next run."""

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from coolie_core.catalog import LoadedCatalog
from coolie_core.columns import SYSTEM_COLUMNS
from coolie_core.driver import Driver
from coolie_core.io.parquet import STAGING_PREFIX
from tests.spark.parity import run_records, write_catalog

pytestmark = pytest.mark.spark

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FLOWS = ("appended", "snapshot", "unsigned")


def _rows(ids: list[int], *, version: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ids,
            "name": [f"n{i % 7}-v{version}" for i in ids],
            "amount": [float(i * version) for i in ids],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 40) for i in ids],
            "at": [T0 + dt.timedelta(hours=version * 1000 + i % 13) for i in ids],
        }
    )


def _document(root: Path, engine: str) -> dict[str, Any]:
    source = {"format": "parquet", "connection": "raw", "path": "*.parquet"}
    out = {"connection": "out", "format": "parquet"}
    flows: list[dict[str, Any]] = [
        {
            "name": "appended", "source": source, "watermark_columns": ["at"],
            "destination": {**out, "table": "appended", "load": "append"},
        },
        {
            # A decimal column: Spark tasks write it with the precision and scale polars writes.
            "name": "snapshot", "source": source, "transforms": [{"kind": "cast", "columns": {"amount": "decimal(12,3)"}}],
            "destination": {**out, "table": "snapshot", "load": "overwrite"},
        },
        {
            # UInt32 is not a type Spark writes: this one comes back to the driver, written by polars.
            "name": "unsigned", "source": source, "watermark_columns": ["at"],
            "transforms": [{"kind": "cast", "columns": {"id": "uint32"}}],
            "destination": {**out, "table": "unsigned", "load": "append"},
        },
    ]  # fmt: skip
    return {
        "defaults": {"engine": engine},
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "out": {"kind": "files", "path": str(root / "out")},
        },
        "dataflows": flows,
    }


def _load(root: Path, engine: str) -> LoadedCatalog:
    return write_catalog(root, _document(root, engine))


def _folder(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path / "part-*.parquet").drop(SYSTEM_COLUMNS, strict=False).sort(pl.all())


def _run(root: Path, engine: str) -> LoadedCatalog:
    loaded = _load(root, engine)
    with Driver(loaded) as driver:
        result = driver.run()
    assert result.ok, [(r.dataflow, r.error) for r in result.results if r.error]
    return loaded


def _assert_same(base: Path, *, records: bool = True) -> None:
    states = {}
    for engine in ("polars", "spark"):
        loaded = _load(base / engine, engine)
        with Driver(loaded) as driver:
            states[engine] = {f.name: driver.read_state(f) for f in loaded.catalog.dataflows}
    for name in FLOWS:
        expected, actual = _folder(base / "polars" / "out" / name), _folder(base / "spark" / "out" / name)
        assert actual.schema == expected.schema, name
        with_system = [
            pl.scan_parquet(base / e / "out" / name / "part-*.parquet").collect_schema() for e in states
        ]
        assert with_system[0] == with_system[1], name  # the system columns' types too
        assert_frame_equal(actual, expected, check_exact=True)
        got, want = states["spark"][name], states["polars"][name]
        assert (got.value, got.batch) == (want.value, want.batch), name
        assert not list((base / "spark" / "out" / name).glob(f"{STAGING_PREFIX}*")), name
    if records:  # a killed run's records differ (the rerun skips what it had committed)
        assert run_records(base / "spark") == run_records(base / "polars")


def test_parquet_folders_are_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    spark_arrow_max_rows(0)
    batches = [_rows(list(range(300)), version=1), _rows(list(range(200, 400)), version=2)]
    for number, batch in enumerate(batches, start=1):
        for engine in ("polars", "spark"):
            raw = tmp_path / engine / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            # Two files per batch: Spark's tasks write several files, polars one.
            batch.head(150).write_parquet(raw / f"b{number}-1.parquet")
            batch.tail(-150).write_parquet(raw / f"b{number}-2.parquet")
            _run(tmp_path / engine, engine)
        _assert_same(tmp_path)
        # Spark tasks wrote the files of the batch (more than the one file the driver writes);
        # the unsigned column's batch came back to the driver: one file.
        appended = sorted(
            p.name for p in (tmp_path / "spark" / "out" / "appended").glob(f"part-{number:010d}-*")
        )
        assert len(appended) > 1, appended
        assert [
            p.name.rsplit("-", 1)[1]
            for p in (tmp_path / "spark" / "out" / "unsigned").glob(f"part-{number:010d}-*")
        ] == ["0.parquet"]
        snapshot = list((tmp_path / "spark" / "out" / "snapshot").glob("part-*.parquet"))
        assert len(snapshot) > 1, snapshot  # written by the tasks
        assert {p.name[:15] for p in snapshot} == {f"part-{number:010d}"}  # overwrite kept only its batch


def test_a_killed_batch_of_spark_files_is_removed_before_the_next_run(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    spark_arrow_max_rows(0)
    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    _rows(list(range(100)), version=1).write_parquet(raw / "a.parquet")
    _run(tmp_path, "spark")
    folder = tmp_path / "out" / "appended"
    committed = _folder(folder)
    # What a run killed after its tasks wrote and before it committed leaves: a staging folder
    # and files named for the next batch.
    (folder / f"{STAGING_PREFIX}dead").mkdir()
    (folder / f"{STAGING_PREFIX}dead" / "part-00000-x.parquet").write_bytes(b"partial")
    _rows(list(range(5)), version=9).write_parquet(folder / "part-0000000002-killedrun-0.parquet")
    _run(tmp_path, "spark")  # nothing new: the folder is cleaned, its rows unchanged
    assert not list(folder.glob(f"{STAGING_PREFIX}*"))
    assert_frame_equal(_folder(folder), committed, check_exact=True)
    _rows(list(range(100, 150)), version=2).write_parquet(raw / "b.parquet")
    _run(tmp_path, "spark")
    assert _folder(folder).height == 150


def test_sigkill_after_the_spark_tasks_wrote_a_batch_then_the_rerun_is_exact(
    tmp_path: Path, spark_master: str, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """`coolie run` killed after Spark wrote and named batch 2's files, before the folder's state
    recorded it: the rerun removes them and loads batch 2 once (the Polars engine's folder)."""
    spark_arrow_max_rows(0)
    batches = [_rows(list(range(300)), version=1), _rows(list(range(200, 400)), version=2)]
    for engine in ("polars", "spark"):
        (tmp_path / engine / "raw").mkdir(parents=True)
        batches[0].write_parquet(tmp_path / engine / "raw" / "b1.parquet")
        _run(tmp_path / engine, engine)
        batches[1].write_parquet(tmp_path / engine / "raw" / "b2.parquet")
    _run(tmp_path / "polars", "polars")
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")},
        "COOLIE_SPARK_MASTER": spark_master,
        "COOLIE_SPARK_ARROW_MAX_ROWS": "0",
        "PYSPARK_SUBMIT_ARGS": "--conf spark.cores.max=2 --conf spark.executor.memory=1g "
        "--conf spark.ui.enabled=false pyspark-shell",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "COOLIE_FAULT": "after_files:appended",
    }
    catalog = tmp_path / "spark" / "catalog.yaml"
    killed = subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", "run", str(catalog)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    folder = tmp_path / "spark" / "out" / "appended"
    assert list(folder.glob("part-0000000002-*")), "the kill came before the files were written"
    _run(tmp_path / "spark", "spark")
    _assert_same(tmp_path, records=False)
    assert len({p.name.split("-")[2] for p in folder.glob("part-0000000002-*")}) == 1  # one run's files
