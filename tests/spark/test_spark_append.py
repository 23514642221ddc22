"""Large appends on Spark: tasks write Parquet into the table, the driver makes ONE delta-rs commit
(data + watermark); a failure between the files and the commit leaves nothing visible, and the
retry loads every row exactly once."""

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import Driver
from coolie_core.faults import FAULT_ENV
from coolie_core.watermarks import read_delta_watermark

pytestmark = pytest.mark.spark

UTC = dt.UTC


def _batch(raw: Path, name: str, ids: range) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "id": list(ids),
            "amount": [i * 0.5 for i in ids],
            "at": [dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i) for i in ids],
        }
    ).write_parquet(raw / name)


@pytest.fixture
def loaded(tmp_path: Path, write_catalog: Any) -> LoadedCatalog:
    return write_catalog(
        {
            "defaults": {"engine": "spark"},
            "connections": {
                "raw": {"kind": "files", "path": str(tmp_path / "raw")},
                "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            },
            "dataflows": [
                {
                    "name": "events",
                    "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                    "transforms": [{"kind": "derive", "columns": {"cents": "CAST(amount * 100 AS BIGINT)"}}],
                    "destination": {"connection": "lake", "table": "events", "load": "append"},
                    "watermark_columns": ["at"],
                    "retry": {"count": 1, "delay": 0, "jitter": 0},
                }
            ],
        }
    )


def test_spark_tasks_write_and_one_commit_adds_the_files(
    tmp_path: Path,
    loaded: LoadedCatalog,
    spark: Any,
    spark_arrow_max_rows: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spark_arrow_max_rows(0)
    table = tmp_path / "lake" / "events"
    _batch(tmp_path / "raw", "a.parquet", range(500))
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run()
    assert first.ok, first.results[0].error
    assert DeltaTable(str(table)).version() == 0  # the table is created by the one commit

    # Second batch into the existing table; the first attempt fails after writing its files.
    _batch(tmp_path / "raw", "b.parquet", range(500, 1300))
    monkeypatch.setenv(FAULT_ENV, "oserror:after_files:events")
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        second = driver.run()
    result = second.result("events")
    assert result.status == "succeeded", result.error
    assert result.attempts == 2
    assert (result.rows_read, result.rows_written) == (800, 800)

    rows = pl.read_delta(str(table))
    assert rows.height == 1300
    assert rows["id"].n_unique() == 1300
    assert rows.schema["cents"] == pl.Int64
    assert rows.schema["at"] == pl.Datetime("us", "UTC")
    assert rows.filter(pl.col("id") == 7)["cents"].item() == 350
    assert rows["_coolie_run_id"].unique().len() == 2
    dt_table = DeltaTable(str(table))
    assert dt_table.version() == 1  # one commit per batch; the failed attempt committed nothing
    # Exactly the committed files are in the table folder: the failed attempt's files are gone.
    on_disk = sorted(p.relative_to(table).as_posix() for p in table.glob("spark-*/*.parquet"))
    assert sorted(Path(u).relative_to(table).as_posix() for u in dt_table.file_uris()) == on_disk
    state = read_delta_watermark(table, dataflow="events")
    assert state.batch == 2
    assert state.value == {"at": dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=1299)}
    commit = dt_table.history(limit=1)[0]
    assert commit["coolie.dataflow"] == "events"
    assert commit["coolie.batch"] == "2"


def test_schema_drift_is_checked_before_spark_writes(
    tmp_path: Path, loaded: LoadedCatalog, spark: Any, spark_arrow_max_rows: Any, write_catalog: Any
) -> None:
    spark_arrow_max_rows(0)
    _batch(tmp_path / "raw", "a.parquet", range(10))
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        assert driver.run().ok
    document = loaded.catalog.model_dump(mode="json", exclude_none=True)
    document["dataflows"][0]["transforms"][0]["columns"]["extra"] = "id * 2"
    changed = write_catalog(document)
    _batch(tmp_path / "raw", "b.parquet", range(10, 20))
    with Driver(changed, state_dir=tmp_path / "state") as driver:
        result = driver.run().result("events")
    assert result.status == "failed"
    assert "extra" in (result.error or "")
    table = tmp_path / "lake" / "events"
    assert DeltaTable(str(table)).version() == 0
    assert len(list(table.glob("spark-*"))) == 1


def test_append_without_watermark_is_written_by_spark_tasks(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any, write_catalog: Any
) -> None:
    spark_arrow_max_rows(0)
    _batch(tmp_path / "raw", "a.parquet", range(25))
    loaded = write_catalog(
        {
            "defaults": {"engine": "spark"},
            "connections": {
                "raw": {"kind": "files", "path": str(tmp_path / "raw")},
                "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            },
            "dataflows": [
                {
                    "name": "plain",
                    "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                    "destination": {"connection": "lake", "table": "plain", "load": "append"},
                    "system_columns": False,
                }
            ],
        }
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run().result("plain")
    assert result.status == "succeeded", result.error
    table = tmp_path / "lake" / "plain"
    assert list(table.glob("spark-*/*.parquet"))
    rows = pl.read_delta(str(table))
    assert rows.columns == ["id", "amount", "at"]
    assert sorted(rows["id"].to_list()) == list(range(25))
