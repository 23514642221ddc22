"""``partition_by`` Delta destinations written by Spark tasks (Hive-style partition folders, the
partition values in the add actions) for every load, committed once: the same tables (rows,
schema, partition columns) as the Polars engine, and tables either engine can keep writing."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from polars.testing import assert_frame_equal

from coolie_core.catalog import load_catalog
from coolie_core.columns import SYSTEM_COLUMNS
from coolie_core.driver import Driver
from coolie_core.watermarks import read_delta_watermark

pytestmark = pytest.mark.spark

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
FLOWS = ("appended", "snapshot", "by_day", "current", "history")


def _rows(ids: list[int], *, version: int, op: str = "U") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ids,
            # A partition value with characters a folder name escapes (":", "/", " ").
            "name": [f"n {i % 5}:v/{version}" for i in ids],
            "amount": [float(i * version) for i in ids],
            "op": [op] * len(ids),
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 20) for i in ids],
            "at": [T0 + dt.timedelta(hours=version * 1000 + i % 13) for i in ids],
        }
    )


def _first(raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    _rows(list(range(120)), version=1).write_parquet(raw / "a.parquet")


def _second(raw: Path) -> None:
    """Updates (a key's name changes: its row moves to another partition), the latest of two
    updates, new keys, change-feed deletes."""
    updates = _rows(list(range(0, 120, 6)), version=2)
    again = _rows(list(range(0, 120, 12)), version=3)
    new = _rows(list(range(120, 140)), version=2)
    deletes = _rows([5, 17, 29, 999], version=2, op="D")
    pl.concat([updates, again, new, deletes]).write_parquet(raw / "b.parquet")


def _document(root: Path, engine: str) -> dict[str, Any]:
    source = {"format": "parquet", "connection": "raw", "path": "*.parquet"}
    lake = {"connection": "lake"}
    flows: list[dict[str, Any]] = [
        {
            "name": "appended",
            "destination": {**lake, "table": "appended", "load": "append", "partition_by": ["day"]},
            "watermark_columns": ["at"],
        },
        {
            "name": "snapshot",
            "destination": {**lake, "table": "snapshot", "load": "overwrite", "partition_by": ["op", "day"]},
        },
        {
            "name": "by_day",
            "destination": {**lake, "table": "by_day", "load": "replace_window", "partition_by": ["day"]},
            "partitions": {"column": "day", "every": "week", "start": "2024-01-01"},
        },
        {
            "name": "current",
            "destination": {
                **lake, "table": "current", "load": "merge", "merge_keys": ["id"], "partition_by": ["name"],
                "cdc": {"column": "op", "delete": ["D"]},
            },
            "watermark_columns": ["at"],
        },
        {
            "name": "history",
            "transforms": [{"kind": "select", "columns": ["id", "name", "day", "at"]}],
            "destination": {
                **lake, "table": "history", "load": "scd2", "merge_keys": ["id"], "partition_by": ["day"],
                "scd2": {"track": ["name"]},
            },
            "watermark_columns": ["at"],
        },
    ]  # fmt: skip
    for flow in flows:
        flow["source"] = source
    return {
        "defaults": {"engine": engine},
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": flows,
    }


def _run(root: Path, engine: str, flows: tuple[str, ...] = FLOWS) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document(root, engine), sort_keys=False), encoding="utf-8")
    with Driver(load_catalog(path)) as driver:
        result = driver.run(dataflows=list(flows))
    assert result.ok, [(r.dataflow, r.error) for r in result.results if r.error]


def _table(path: Path) -> pl.DataFrame:
    return pl.read_delta(str(path)).drop(SYSTEM_COLUMNS, strict=False).sort(pl.all())


def _assert_same(spark_table: Path, polars_table: Path, *, by_tasks: bool = True) -> None:
    """Same rows, schema, partition columns and watermark; every file of the last commit's
    table written by Spark tasks into Hive-style partition folders (``by_tasks``)."""
    expected, actual = _table(polars_table), _table(spark_table)
    assert actual.schema == expected.schema, spark_table
    assert_frame_equal(actual, expected, check_exact=True)
    left, right = DeltaTable(str(polars_table)), DeltaTable(str(spark_table))
    assert right.metadata().partition_columns == left.metadata().partition_columns
    assert right.metadata().partition_columns
    name = spark_table.name
    got, want = (
        read_delta_watermark(spark_table, dataflow=name),
        read_delta_watermark(polars_table, dataflow=name),
    )
    assert (got.value, got.batch) == (want.value, want.batch), name
    if by_tasks:
        columns = right.metadata().partition_columns
        for uri in right.file_uris():
            parts = Path(uri).relative_to(spark_table).parts
            assert parts[0].startswith("spark-"), (name, uri)  # written by Spark tasks, not the driver
            assert [p.split("=")[0] for p in parts[1:-1]] == columns, (name, uri)  # col=value folders


def test_every_load_on_a_partitioned_table_is_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    spark_arrow_max_rows(0)
    for step in (_first, _second):
        for engine in ("polars", "spark"):
            step(tmp_path / engine / "raw")
            _run(tmp_path / engine, engine)
        for name in FLOWS:
            _assert_same(tmp_path / "spark" / "lake" / name, tmp_path / "polars" / "lake" / name)
    lake = tmp_path / "spark" / "lake"
    # One commit per batch: the merge removed the files of the changed keys and added new ones.
    current = DeltaTable(str(lake / "current"))
    assert current.version() == 1
    assert current.history(limit=1)[0]["coolie.batch"] == "2"
    merged = pl.read_delta(str(lake / "current"))
    assert merged.filter(pl.col("id").is_in([5, 17, 29, 999])).height == 0
    assert merged.filter(pl.col("id") == 12)["name"].item() == "n 2:v/3"  # moved partition, latest update
    assert DeltaTable(str(lake / "snapshot")).version() == 1  # the overwrite replaced every file
    history = pl.read_delta(str(lake / "history"))
    assert history.filter(pl.col("is_current")).group_by("id").len()["len"].max() == 1


def test_a_partitioned_table_is_written_on_by_either_engine(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """Polars creates the tables and Spark tasks continue them (append, merge), and the other way
    round: the same tables as two runs on polars."""
    spark_arrow_max_rows(0)
    flows = ("appended", "current")
    for first, second in (("polars", "spark"), ("spark", "polars"), ("polars", "polars")):
        root = tmp_path / f"{first}-{second}"
        _first(root / "raw")
        _run(root, first, flows)
        _second(root / "raw")
        _run(root, second, flows)
    for name in flows:
        expected = tmp_path / "polars-polars" / "lake" / name
        for mixed in ("polars-spark", "spark-polars"):
            _assert_same(tmp_path / mixed / "lake" / name, expected, by_tasks=False)
        # Spark tasks wrote the second batch into the polars-made table, Hive-style.
        table = tmp_path / "polars-spark" / "lake" / name
        log = sorted((table / "_delta_log").glob("*.json"))[-1].read_text(encoding="utf-8")
        last = [json.loads(line) for line in log.splitlines()]
        adds = [a["add"] for a in last if "add" in a]
        assert adds, name
        assert all(a["path"].startswith("spark-") and a["partitionValues"] for a in adds), name


def test_partition_values_are_written_as_delta_rs_writes_them(tmp_path: Path, spark: Any) -> None:
    """Every supported partition type (nulls, an empty string, escaped characters, microseconds): the same add
    actions' partition values and the same rows as delta-rs' own partitioned write."""
    from coolie_core.engines.spark.append import append_with_spark
    from coolie_core.engines.spark.convert import to_spark
    from coolie_core.io.delta import CommitInfo

    frame = pl.DataFrame(
        {
            "v": [1, 2, 3, 4],
            "s": ["a b", "x/y:z=%", None, ""],
            "i": pl.Series([1, None, -3, 3], dtype=pl.Int32),
            "b": [True, None, False, True],
            "d": [dt.date(2024, 1, 1), None, dt.date(1999, 12, 31), dt.date(2024, 1, 1)],
            "ts": [T0, None, T0 + dt.timedelta(microseconds=123456), T0 + dt.timedelta(hours=13, seconds=5)],
        }
    )
    columns = ["s", "i", "b", "d", "ts"]
    write_deltalake(str(tmp_path / "rs"), frame, partition_by=columns)
    result = append_with_spark(
        to_spark(spark, frame), tmp_path / "spark", schema=frame.schema, rows=4,
        info=CommitInfo(dataflow="types", run_id="r"), partition_by=columns,
    )  # fmt: skip
    assert result.rows_written == 4

    def values(table: Path) -> list[str]:
        log = sorted((table / "_delta_log").glob("*.json"))[-1].read_text(encoding="utf-8")
        adds = [json.loads(line)["add"] for line in log.splitlines() if '"add"' in line]
        return sorted(json.dumps(a["partitionValues"], sort_keys=True) for a in adds)

    assert values(tmp_path / "spark") == values(tmp_path / "rs")
    assert DeltaTable(str(tmp_path / "spark")).metadata().partition_columns == columns
    assert_frame_equal(_table(tmp_path / "spark"), _table(tmp_path / "rs"), check_exact=True)


def test_window_runs_and_new_columns_on_partitioned_tables_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """A window run replaces its window of a partitioned table, and ``schema_drift: evolve`` adds
    a new column in the data's commit (the files a merge keeps are linked into their partition
    folders and added again): on Spark tasks, the same tables as on polars."""
    from coolie_core.windows import windows_covering

    spark_arrow_max_rows(0)
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        _first(root / "raw")
        document = _document(root, engine)
        flows = [f for f in document["dataflows"] if f["name"] in ("by_day", "current")]
        for flow in flows:
            flow["destination"]["schema_drift"] = "evolve"
        document["dataflows"] = flows
        (root / "catalog.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        loaded = load_catalog(root / "catalog.yaml")
        with Driver(loaded) as driver:
            assert driver.run().ok
        (root / "raw" / "a.parquet").unlink()  # the source gains a column
        changed = _rows(list(range(0, 120, 6)) + list(range(120, 130)), version=2)
        changed.with_columns(pl.format("r{}", pl.col("id") % 3).alias("region")).write_parquet(
            root / "raw" / "b.parquet"
        )
        flow = loaded.catalog.dataflow("by_day")
        assert flow.partitions is not None
        (week, *_) = windows_covering(
            flow.partitions, lo=dt.date(2024, 1, 8), hi_inclusive=dt.date(2024, 1, 8)
        )
        with Driver(loaded) as driver:
            windowed = driver.run_one(flow, window=week)
            assert windowed.status == "succeeded", windowed.error
            merged = driver.run(dataflows=["current"])
            assert merged.ok, [(r.dataflow, r.error) for r in merged.results if r.error]
    for name in ("by_day", "current"):
        spark_table, polars_table = tmp_path / "spark" / "lake" / name, tmp_path / "polars" / "lake" / name
        assert "region" in pl.read_delta(str(spark_table)).columns
        _assert_same(spark_table, polars_table)
        assert DeltaTable(str(spark_table)).version() == 1, name  # the new column and the files: one commit


def test_partition_columns_that_differ_from_the_table_s(tmp_path: Path, spark: Any) -> None:
    """An append whose ``partition_by`` is not the table's fails naming both, nothing written (as
    delta-rs' own append: its transaction API alone would commit the files with the wrong layout);
    an overwrite changes the table's partition columns (as on polars); an uncommitted load's
    partition folders are removed."""
    from coolie_core.engines.spark.append import append_with_spark
    from coolie_core.engines.spark.convert import to_spark
    from coolie_core.engines.spark.write import overwrite_with_spark
    from coolie_core.errors import WriteError
    from coolie_core.io.delta import CommitInfo

    frame = _rows(list(range(10)), version=1)
    table = tmp_path / "table"
    write_deltalake(str(table), frame)
    info = CommitInfo(dataflow="flow", run_id="r")
    with pytest.raises(WriteError, match=r"partition_by \['day'\] does not match the partition columns \[\]"):
        append_with_spark(
            to_spark(spark, frame), table, schema=frame.schema, rows=10, info=info, partition_by=["day"]
        )
    assert DeltaTable(str(table)).version() == 0
    assert not list(table.glob("spark-*"))  # the tasks' files were removed
    overwrite_with_spark(
        to_spark(spark, frame), table, schema=frame.schema, rows=10, info=info, partition_by=["day"]
    )
    assert DeltaTable(str(table)).metadata().partition_columns == ["day"]
    assert_frame_equal(_table(table), frame.sort(pl.all()), check_exact=True)
    # Files the tasks wrote into partition folders are removed when the load does not commit.
    with pytest.raises(WriteError, match="expected 11; nothing committed"):
        append_with_spark(
            to_spark(spark, frame), table, schema=frame.schema, rows=11, info=info, partition_by=["day"]
        )
    assert DeltaTable(str(table)).version() == 1
    assert len(list(table.glob("spark-*"))) == 1  # the overwrite's folder only
