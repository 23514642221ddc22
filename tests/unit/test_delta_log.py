"""The state of a dataflow read from its table's newest commit equals the state read by loading the
table (coolie_core.io.delta_log, issue 17), and any other newest commit falls back to the table."""

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from coolie_core.driver import Driver
from coolie_core.errors import TransientError
from coolie_core.io.delta import CommitInfo, batch_snapshot
from coolie_core.io.delta_log import newest_batch_commit, newest_version
from coolie_core.storage import StorageLocation
from coolie_core.watermarks import BATCH_KEY, DATAFLOW_KEY, app_id, read_delta_watermark


def _newest(path: Path, dataflow: str = "events") -> Any:
    return newest_batch_commit(
        StorageLocation.parse(str(path)),
        app=app_id(dataflow),
        dataflow_key=DATAFLOW_KEY,
        batch_key=BATCH_KEY,
        dataflow=dataflow,
    )


def _two_batches(tmp_path: Path, write_catalog: Any) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    loaded = write_catalog(
        {
            "connections": {
                "raw": {"kind": "files", "path": str(raw)},
                "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            },
            "dataflows": [
                {
                    "name": "events",
                    "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                    "destination": {"connection": "lake", "table": "events", "load": "append"},
                    "watermark_columns": ["ts"],
                }
            ],
        }
    )
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for batch in (1, 2):
        ts = [start + dt.timedelta(hours=batch * 10 + k) for k in range(3)]
        pl.DataFrame({"id": [batch * 10 + k for k in range(3)], "ts": ts}).write_parquet(
            raw / f"{batch}.parquet"
        )
        with Driver(loaded, state_dir=tmp_path / "state") as driver:
            assert driver.run().result("events").status == "succeeded"
    return tmp_path / "lake" / "events"


def test_newest_commit_answers_like_the_loaded_table(tmp_path: Path, write_catalog: Any) -> None:
    dest = _two_batches(tmp_path, write_catalog)
    newest = _newest(dest)
    table = DeltaTable(str(dest))
    assert newest is not None
    assert newest.transaction_version(app_id("events")) == table.transaction_version(app_id("events")) == 2
    expected = {k: v for k, v in table.history(limit=1)[0].items() if k != "version"}
    assert newest.history(limit=50) == [expected]
    assert _newest(dest, "other") is None  # another dataflow's question: the table decides


def test_state_is_the_same_either_way(tmp_path: Path, write_catalog: Any) -> None:
    """The fast read and the table's own read give the same state: a copy whose newest commit is
    another writer's (no coolie batch) is read by loading the table."""
    dest = _two_batches(tmp_path, write_catalog)
    fast = read_delta_watermark(dest, dataflow="events", require_watermark=True)

    copy = tmp_path / "copy"
    shutil.copytree(dest, copy)
    write_deltalake(str(copy), pl.read_delta(str(copy)).clear(), mode="append")
    assert _newest(copy) is None
    loaded = read_delta_watermark(copy, dataflow="events", require_watermark=True)

    assert fast.batch == 2
    assert fast.value == {"ts": dt.datetime(2024, 1, 1, 22, tzinfo=dt.UTC)}
    assert fast == loaded
    assert fast.accounts is not None
    assert fast.accounts["rows_written"] == 3


def test_missing_or_foreign_logs_fall_back(tmp_path: Path) -> None:
    assert _newest(tmp_path / "nothing") is None
    write_deltalake(str(tmp_path / "plain"), pl.DataFrame({"id": [1]}), mode="append")
    assert _newest(tmp_path / "plain") is None  # no coolie batch in it
    assert (
        newest_batch_commit(
            StorageLocation.parse("s3://bucket/t"),
            app="coolie:x",
            dataflow_key="k",
            batch_key="b",
            dataflow="x",
        )
        is None
    )


def test_newest_version_is_the_table_version(tmp_path: Path) -> None:
    """A Delta source's fingerprint: the version of the newest commit file, as the table loads it
    (after a checkpoint too); None where there is no log."""
    path = tmp_path / "t"
    location = StorageLocation.parse(str(path))
    assert newest_version(location) is None
    for k in range(3):
        write_deltalake(str(path), pl.DataFrame({"id": [k]}), mode="append")
    DeltaTable(str(path)).create_checkpoint()
    write_deltalake(str(path), pl.DataFrame({"id": [9]}), mode="overwrite")
    assert newest_version(location) == DeltaTable(str(path)).version() == 3


def test_a_snapshot_loaded_early_sees_a_batch_committed_meanwhile(tmp_path: Path) -> None:
    """The streamed loads load their table once (schema, then the snapshot they write against):
    just before the write it is brought up to date, so a batch another run committed after the
    load is a conflict, not a second copy of the batch."""
    path = tmp_path / "t"
    location = StorageLocation.parse(str(path))
    write_deltalake(str(path), pl.DataFrame({"id": [1]}), mode="append")
    early = DeltaTable(str(path))
    other_run = CommitInfo(dataflow="events", run_id="other", batch=1)
    write_deltalake(
        str(path), pl.DataFrame({"id": [2]}), mode="append", commit_properties=other_run.properties()
    )
    with pytest.raises(TransientError, match=r"batch 1 was committed .* by another run meanwhile"):
        batch_snapshot(location, CommitInfo(dataflow="events", run_id="this", batch=1), table=early)
    fresh = batch_snapshot(location, CommitInfo(dataflow="events", run_id="this", batch=2), table=early)
    assert fresh is early
    assert fresh.version() == 1
