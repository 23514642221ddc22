"""overwrite, replace_window, merge (CDC, duplicate keys) and scd2 written by Spark tasks on the
cluster, committed in ONE delta-rs commit of removes + adds: the same tables, watermarks and run
records as the Polars engine over a first and an incremental batch."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from coolie_core.catalog import LoadedCatalog
from coolie_core.columns import SYSTEM_COLUMNS
from coolie_core.driver import Driver
from coolie_core.watermarks import read_delta_watermark
from tests.spark.parity import run_records, write_catalog

pytestmark = pytest.mark.spark

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _rows(ids: list[int], *, version: int, op: str = "U") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ids,
            "name": [f"n{i % 7}-v{version}" for i in ids],
            "amount": [float(i * version) for i in ids],
            "op": [op] * len(ids),
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 40) for i in ids],
            "at": [T0 + dt.timedelta(hours=version * 1000 + i % 13) for i in ids],
        }
    )


def _first(raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    rows = _rows(list(range(300)), version=1)
    rows.head(150).write_parquet(raw / "a1.parquet")
    rows.tail(150).write_parquet(raw / "a2.parquet")


def _second(raw: Path) -> None:
    """Updates of some keys (twice: the latest wins), new keys, deletes, an unchanged row."""
    updates = _rows(list(range(0, 300, 10)), version=2)
    again = _rows(list(range(0, 300, 20)), version=3)
    new = _rows(list(range(300, 340)), version=2)
    deletes = _rows([5, 15, 25, 999], version=2, op="D")
    pl.concat([updates, again, new, deletes]).write_parquet(raw / "b.parquet")


def _document(root: Path, engine: str) -> dict[str, Any]:
    source = {"format": "parquet", "connection": "raw", "path": "*.parquet"}
    flows: list[dict[str, Any]] = [
        {
            "name": "snapshot",
            "source": source,
            "destination": {"connection": "lake", "table": "snapshot", "load": "overwrite"},
        },
        {
            "name": "by_day",
            "source": source,
            "destination": {"connection": "lake", "table": "by_day", "load": "replace_window"},
            "partitions": {"column": "day", "every": "week", "start": "2024-01-01"},
        },
        {
            "name": "current",
            "source": source,
            "destination": {
                "connection": "lake",
                "table": "current",
                "load": "merge",
                "merge_keys": ["id"],
                "cdc": {"column": "op", "delete": ["D"]},
            },
            "watermark_columns": ["at"],
            "retry": {"count": 2, "delay": 0, "jitter": 0},
        },
        {
            "name": "history",
            "source": source,
            "transforms": [{"kind": "select", "columns": ["id", "name", "day", "at"]}],
            "destination": {
                "connection": "lake",
                "table": "history",
                "load": "scd2",
                "merge_keys": ["id"],
                "scd2": {"track": ["name"]},
            },
            "watermark_columns": ["at"],
        },
    ]
    return {
        "defaults": {"engine": engine},
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": flows,
    }


def _load(root: Path, engine: str) -> LoadedCatalog:
    return write_catalog(root, _document(root, engine))


def _table(path: Path) -> pl.DataFrame:
    return pl.read_delta(str(path)).drop(SYSTEM_COLUMNS, strict=False).sort(pl.all())


def _run_both(base: Path) -> dict[str, Path]:
    roots = {}
    for engine in ("polars", "spark"):
        root = base / engine
        loaded = _load(root, engine)
        with Driver(loaded) as driver:
            result = driver.run()
        assert result.ok, [(r.dataflow, r.error) for r in result.results if r.error]
        roots[engine] = root
    return roots


def _assert_same(roots: dict[str, Path]) -> None:
    for name in ("snapshot", "by_day", "current", "history"):
        left, right = roots["polars"] / "lake" / name, roots["spark"] / "lake" / name
        expected, actual = _table(left), _table(right)
        assert actual.schema == expected.schema, name
        assert_frame_equal(actual, expected, check_exact=True)
        got, want = read_delta_watermark(right, dataflow=name), read_delta_watermark(left, dataflow=name)
        assert (got.value, got.batch) == (want.value, want.batch), name
        # Every file of the Spark table was written by Spark tasks (never by the driver).
        uris = DeltaTable(str(right)).file_uris()
        assert uris, name
        assert all(Path(u).parent.name.startswith("spark-") for u in uris), (name, uris)
    assert run_records(roots["spark"]) == run_records(roots["polars"])


def test_every_load_is_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    spark_arrow_max_rows(0)
    for engine in ("polars", "spark"):
        _first(tmp_path / engine / "raw")
    roots = _run_both(tmp_path)
    _assert_same(roots)

    for engine in ("polars", "spark"):
        _second(tmp_path / engine / "raw")
    roots = _run_both(tmp_path)
    _assert_same(roots)

    # One commit per batch: removes of the rewritten files + adds, with the watermark.
    history = DeltaTable(str(roots["spark"] / "lake" / "current"))
    assert history.version() == 1
    last = history.history(limit=1)[0]
    assert last["coolie.batch"] == "2"
    merged = pl.read_delta(str(roots["spark"] / "lake" / "current"))
    assert merged.filter(pl.col("id").is_in([5, 15, 25, 999])).height == 0
    assert merged.filter(pl.col("id") == 20)["name"].item() == "n6-v3"  # the latest of two updates
    scd2 = pl.read_delta(str(roots["spark"] / "lake" / "history"))
    assert scd2.filter(pl.col("is_current")).group_by("id").len()["len"].max() == 1


def test_a_concurrent_commit_makes_the_distributed_merge_conflict_and_retry(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer rewrites a file the merge read while the merge holds its snapshot: the
    commit fails as a conflict (transient), the retry merges against the new version, exactly."""
    import threading

    from coolie_core.faults import PAUSE_ENV

    spark_arrow_max_rows(0)
    _first(tmp_path / "spark" / "raw")
    loaded = _load(tmp_path / "spark", "spark")
    with Driver(loaded) as driver:
        assert driver.run(dataflows=["current"]).ok
    _second(tmp_path / "spark" / "raw")
    table = tmp_path / "spark" / "lake" / "current"
    release = tmp_path / "release"
    monkeypatch.setenv(PAUSE_ENV, f"after_files:current:{release}")
    outcome: dict[str, Any] = {}

    def run() -> None:
        with Driver(loaded) as driver:
            outcome["result"] = driver.run(dataflows=["current"]).result("current")

    worker = threading.Thread(target=run)
    worker.start()
    waiting = Path(f"{release}.waiting")
    deadline = dt.datetime.now(UTC) + dt.timedelta(minutes=5)
    while not waiting.exists() and worker.is_alive() and dt.datetime.now(UTC) < deadline:
        worker.join(0.05)
    assert waiting.exists()
    monkeypatch.delenv(PAUSE_ENV)  # the retry must not pause again
    # The other writer: delta-rs deletes key 1 (rewriting the file holding it) meanwhile.
    DeltaTable(str(table)).delete("id = 1")
    release.touch()
    worker.join(600)
    result = outcome["result"]
    assert result.status == "succeeded", result.error
    assert result.attempts == 2
    assert "conflict" in result.retries[0]
    rows = pl.read_delta(str(table))
    assert rows["id"].n_unique() == rows.height
    expected_ids = set(range(340)) - {1, 5, 15, 25}
    assert set(rows["id"].to_list()) == expected_ids
    assert rows.filter(pl.col("id") == 20)["name"].item() == "n6-v3"
    # The first batch's folder and the retry's: the failed attempt's files were removed.
    assert len(list(table.glob("spark-*"))) == 2


def test_window_runs_are_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """A window run replaces exactly its window on Spark tasks (a merge's latest row per key,
    deletes left out, folded duplicates counted) — the same table and record as on polars."""
    from coolie_core.windows import windows_covering

    spark_arrow_max_rows(0)
    results = {}
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        _first(root / "raw")
        document = _document(root, engine)
        for flow in document["dataflows"]:
            if flow["name"] == "current":  # a merge that can also run by window
                flow["partitions"] = {"column": "day", "every": "week", "start": "2024-01-01"}
        loaded = write_catalog(root, document)
        with Driver(loaded) as driver:
            assert driver.run(dataflows=["by_day", "current"]).ok
        _second(root / "raw")
        runs = []
        for name in ("by_day", "current"):
            flow = loaded.catalog.dataflow(name)
            assert flow.partitions is not None
            (week, *_) = windows_covering(
                flow.partitions, lo=dt.date(2024, 1, 8), hi_inclusive=dt.date(2024, 1, 8)
            )
            with Driver(loaded) as driver:
                result = driver.run_one(flow, window=week)
            assert result.status == "succeeded", result.error
            runs.append((result.rows_read, result.rows_written, result.rows_filtered))
        results[engine] = runs
    assert results["spark"] == results["polars"]
    assert results["spark"][1][2] > 0  # the merge window folded duplicate keys
    for name in ("by_day", "current"):
        left, right = tmp_path / "polars" / "lake" / name, tmp_path / "spark" / "lake" / name
        assert_frame_equal(_table(right), _table(left), check_exact=True)
        last = DeltaTable(str(right))
        assert all(Path(u).parent.name.startswith("spark-") for u in last.file_uris())


def test_replay_chunks_are_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """Each replay chunk replaces its window on Spark tasks (merge: latest row per key, deletes
    left out), resumable by its app transaction — the same tables and chunks as on polars."""
    spark_arrow_max_rows(0)
    chunks = {}
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        _first(root / "raw")
        document = _document(root, engine)
        for flow in document["dataflows"]:
            if flow["name"] == "current":  # a merge that can also replay by window
                flow["partitions"] = {"column": "day", "every": "week", "start": "2024-01-01"}
        loaded = write_catalog(root, document)
        with Driver(loaded) as driver:
            assert driver.run(dataflows=["by_day", "current"]).ok
        _second(root / "raw")
        with Driver(loaded) as driver:
            replays = driver.run_replay(
                ["by_day", "current"], start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 22)
            )
        assert all(r.status == "succeeded" for r in replays), [r.error for r in replays]
        chunks[engine] = [(r.dataflow, c.window, c.status, c.rows) for r in replays for c in r.chunks]
    assert chunks["spark"] == chunks["polars"]
    assert len(chunks["spark"]) == 6
    for name in ("by_day", "current"):
        left, right = tmp_path / "polars" / "lake" / name, tmp_path / "spark" / "lake" / name
        assert_frame_equal(_table(right), _table(left), check_exact=True)
        table = DeltaTable(str(right))
        # Every chunk committed files its Spark tasks wrote (never the driver).
        assert all(Path(u).parent.name.startswith("spark-") for u in table.file_uris()), name
        assert table.history(limit=1)[0].get("coolie.window") is not None  # the last chunk's commit


def _bad(ids: list[int], *, version: int) -> pl.DataFrame:
    """Rows breaking each quarantine rule (null name, unknown op, negative amount, no watermark)."""
    rows = _rows(ids, version=version)
    return rows.with_columns(
        pl.when(pl.col("id") % 4 == 0).then(None).otherwise(pl.col("name")).alias("name"),
        pl.when(pl.col("id") % 4 == 1).then(pl.lit("X")).otherwise(pl.col("op")).alias("op"),
        pl.when(pl.col("id") % 4 == 2)
        .then(-pl.col("amount") - 1)
        .otherwise(pl.col("amount"))
        .alias("amount"),
        pl.when(pl.col("id") % 4 == 3).then(None).otherwise(pl.col("at")).alias("at"),
    )


def _quarantine_document(root: Path, engine: str) -> dict[str, Any]:
    rules = [
        {"kind": "not_null", "columns": ["name"]},
        {"kind": "accepted_values", "column": "op", "values": ["U", "D"]},
        {"kind": "expression", "name": "positive", "condition": "amount >= 0"},
    ]
    source = {"format": "parquet", "connection": "raw", "path": "*.parquet"}
    lake = {"connection": "lake"}
    flows: list[dict[str, Any]] = [
        {"name": "checked", "destination": {**lake, "table": "checked", "load": "append"}},
        {
            "name": "checked_current",
            "destination": {**lake, "table": "checked_current", "load": "merge", "merge_keys": ["id"]},
            "partitions": {"column": "day", "every": "week", "start": "2024-01-01"},
        },
    ]
    for flow in flows:
        flow.update(
            source=source, watermark_columns=["at"], quarantine={"rules": rules, "max_rejected": "50%"}
        )
    return {**_document(root, engine), "dataflows": flows}


def test_quarantine_is_written_by_spark_tasks_with_polars_parity(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """Rejected rows go to the quarantine table and good rows to the destination, each written by
    Spark tasks and committed once (quarantine first) — on a first and an incremental batch (whose
    rows without a watermark value are read by polars and quarantined in the same commit) and a
    window run: the same tables, quarantine tables and counts as on polars."""
    from coolie_core.windows import windows_covering

    spark_arrow_max_rows(0)
    counts: dict[str, list[tuple[Any, ...]]] = {}
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        (root / "raw").mkdir(parents=True)
        pl.concat([_rows(list(range(200)), version=1), _bad(list(range(200, 240)), version=1)]).write_parquet(
            root / "raw" / "a.parquet"
        )
        loaded = write_catalog(root, _quarantine_document(root, engine))
        runs = []
        with Driver(loaded) as driver:
            first = driver.run()
        assert first.ok, [(r.dataflow, r.error) for r in first.results if r.error]
        pl.concat(
            [_rows(list(range(0, 300, 7)), version=2), _bad(list(range(300, 320)), version=2)]
        ).write_parquet(root / "raw" / "b.parquet")
        with Driver(loaded) as driver:
            second = driver.run()
        assert second.ok, [(r.dataflow, r.error) for r in second.results if r.error]
        flow = loaded.catalog.dataflow("checked_current")
        assert flow.partitions is not None
        (week, *_) = windows_covering(
            flow.partitions, lo=dt.date(2024, 1, 8), hi_inclusive=dt.date(2024, 1, 8)
        )
        with Driver(loaded) as driver:
            by_window = driver.run_one(flow, window=week)
        assert by_window.status == "succeeded", by_window.error
        for result in [*first.results, *second.results, by_window]:
            runs.append(
                (result.dataflow, result.rows_read, result.rows_written, result.rows_rejected,
                 result.rows_without_watermark, json.dumps(result.rejected_by_rule, sort_keys=True))
            )  # fmt: skip
        counts[engine] = runs
    assert counts["spark"] == counts["polars"]
    assert all(run[3] > 0 for run in counts["spark"])  # every run quarantined rows
    for name in ("checked", "checked_current"):
        for folder in (Path("lake") / name, Path("lake") / "_quarantine" / name):
            left, right = tmp_path / "polars" / folder, tmp_path / "spark" / folder
            drop = [*SYSTEM_COLUMNS, "run_id", "quarantined_at"]
            want = pl.read_delta(str(left)).drop(drop, strict=False).sort(pl.all())
            have = pl.read_delta(str(right)).drop(drop, strict=False).sort(pl.all())
            assert have.schema == want.schema, folder
            assert_frame_equal(have, want, check_exact=True)
            # Every file of the Spark tables was written by Spark tasks (never the driver).
            uris = DeltaTable(str(right)).file_uris()
            assert uris, folder
            assert all(Path(u).parent.name.startswith("spark-") for u in uris), (folder, uris)
        quarantined = DeltaTable(str(tmp_path / "spark" / "lake" / "_quarantine" / name))
        assert len(quarantined.history()) == (3 if name == "checked_current" else 2)  # one commit per run


def test_schema_evolution_is_committed_with_the_spark_written_files(
    tmp_path: Path, spark: Any, spark_arrow_max_rows: Any
) -> None:
    """``schema_drift: evolve`` on Spark tasks: a batch with a new column is written by tasks and
    ONE commit adds its files and the column to the table's schema, for every load — the same
    tables (columns and their order included) and drift records as on polars."""
    spark_arrow_max_rows(0)
    for engine in ("polars", "spark"):
        root = tmp_path / engine
        document = _document(root, engine)
        flows = document["dataflows"]
        flows.append(
            {
                "name": "appended",
                "source": flows[0]["source"],
                "destination": {"connection": "lake", "table": "appended", "load": "append"},
                "watermark_columns": ["at"],
            }
        )
        for flow in flows:
            flow["destination"]["schema_drift"] = "evolve"
            flow.pop("transforms", None)  # the new column reaches every table
        (root / "raw").mkdir(parents=True)
        _rows(list(range(300)), version=1).write_parquet(root / "raw" / "a.parquet")
        loaded = write_catalog(root, document)
        with Driver(loaded) as driver:
            assert driver.run().ok
        (root / "raw" / "a.parquet").unlink()  # the source's schema changes: a new column
        changed = _rows(list(range(0, 300, 10)) + list(range(300, 330)), version=2)
        changed.with_columns(pl.format("r{}", pl.col("id") % 3).alias("region")).write_parquet(
            root / "raw" / "b.parquet"
        )
        with Driver(loaded) as driver:
            second = driver.run()
        assert second.ok, [(r.dataflow, r.error) for r in second.results if r.error]
        drifts = {r.dataflow: r.schema_drift for r in second.results}
        assert drifts["current"] == {"policy": "evolve", "new": ["region"], "missing": [], "retyped": {}}
        if engine == "polars":
            expected = drifts
    assert drifts == expected
    for name in ("snapshot", "by_day", "current", "history", "appended"):
        left, right = tmp_path / "polars" / "lake" / name, tmp_path / "spark" / "lake" / name
        want, have = pl.read_delta(str(left)), pl.read_delta(str(right))
        assert have.columns == want.columns, name
        assert "region" in have.columns, name
        drop = [c for c in SYSTEM_COLUMNS if c in want.columns]
        if name == "history":
            # Older rows read a new column as null — closed versions included (both engines).
            closed = have.filter(~pl.col("is_current"))
            assert closed.height == 30
            assert closed["region"].null_count() == closed.height
            assert have.filter(pl.col("is_current") & pl.col("region").is_null()).height == 300 - 30
        assert_frame_equal(have.drop(drop).sort(pl.all()), want.drop(drop).sort(pl.all()), check_exact=True)
        table = DeltaTable(str(right))
        assert table.version() == 1, name  # the new column and the batch's files: one commit
        assert all(Path(u).parent.name.startswith("spark-") for u in table.file_uris()), name
        assert (
            read_delta_watermark(right, dataflow=name).batch
            == read_delta_watermark(left, dataflow=name).batch
        )
