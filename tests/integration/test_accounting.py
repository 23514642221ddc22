"""Every source row accounted for: loaded, quarantined, filtered by a declared rule, late, or without
a usable watermark value; and run records that tell what the run did.

Real CSV/parquet sources, real Delta tables and quarantine tables, read back after each run.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import CommitProperties, Transaction, write_deltalake

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import DataflowResult, Driver
from coolie_core.runlog import read_records
from coolie_dagster.definitions import build_definitions

ACCOUNTS = ("rows_written", "rows_rejected", "rows_filtered", "rows_late", "rows_without_watermark")


def catalog(tmp_path: Path, *flows: dict[str, Any], **connections: dict[str, Any]) -> dict[str, Any]:
    return {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            **connections,
        },
        "dataflows": list(flows),
    }


def run_flow(loaded: LoadedCatalog, tmp_path: Path, name: str, *, force: bool = False) -> DataflowResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        return driver.run(dataflows=[name], force=force).result(name)


def write_csv(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def lake(tmp_path: Path, table: str) -> pl.DataFrame:
    frame = pl.read_delta(str(tmp_path / "lake" / table))
    return frame.select(c for c in frame.columns if not c.startswith("_coolie_"))


def quarantined(tmp_path: Path, table: str) -> pl.DataFrame:
    path = tmp_path / "lake" / "_quarantine" / table
    if not path.exists():
        return pl.DataFrame(schema={"raw_row": pl.String, "rule": pl.String})
    return pl.read_delta(str(path))


def reconciles(result: DataflowResult) -> None:
    """rows read = written + quarantined + filtered + late + without watermark, in the record too."""
    assert result.rows_read == sum(getattr(result, k) for k in ACCOUNTS), result
    record = result.to_record()
    assert record["rows_read"] == sum(record[k] for k in ACCOUNTS), record


# --------------------------------------------------------------------------- item 5


def test_a_recorded_delta_batch_without_a_watermark_is_corrupt(tmp_path: Path, write_catalog: Any) -> None:
    """A commit with coolie's app transaction but no coolie.watermark fails the run naming the
    dataflow and the table, instead of reloading everything (which duplicated every row)."""
    write_csv(tmp_path, "a.csv", "id,ts\n1,2024-01-01\n")
    flow = {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow))
    assert run_flow(loaded, tmp_path, "events").status == "succeeded"
    dest = tmp_path / "lake" / "events"
    write_deltalake(
        str(dest),
        pl.read_delta(str(dest)).clear().to_arrow(),
        mode="append",
        commit_properties=CommitProperties(
            custom_metadata={"coolie.dataflow": "events", "coolie.batch": "2"},
            app_transactions=[Transaction("coolie:events", 2)],
        ),
    )
    write_csv(tmp_path, "b.csv", "id,ts\n2,2024-01-02\n")

    result = run_flow(loaded, tmp_path, "events")

    assert (result.status, result.error_type) == ("failed", "WatermarkError")
    assert result.error is not None
    assert "dataflow events" in result.error
    assert str(dest) in result.error
    assert "without a watermark" in result.error
    assert lake(tmp_path, "events")["id"].to_list() == [1]


def test_a_null_watermark_in_the_sqlite_store_is_corrupt(tmp_path: Path, write_catalog: Any) -> None:
    write_csv(tmp_path, "a.csv", "id,ts\n1,2024-01-01\n")
    flow = {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "out", "table": "events", "format": "parquet", "load": "append"},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow, out={"kind": "files", "path": str(tmp_path / "out")}))
    assert run_flow(loaded, tmp_path, "events").status == "succeeded"
    store = tmp_path / "state" / "watermarks.sqlite"
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE watermarks SET watermark = NULL WHERE dataflow = 'events'")
    conn.close()
    write_csv(tmp_path, "b.csv", "id,ts\n2,2024-01-02\n")

    result = run_flow(loaded, tmp_path, "events")

    assert (result.status, result.error_type) == ("failed", "WatermarkError")
    assert result.error is not None
    assert "dataflow events" in result.error
    assert str(store) in result.error
    assert len(list((tmp_path / "out" / "events").glob("part-*.parquet"))) == 1


def test_a_batch_without_watermark_is_fine_for_a_dataflow_without_watermark_columns(
    tmp_path: Path, write_catalog: Any
) -> None:
    write_csv(tmp_path, "a.csv", "id\n1\n")
    flow = {
        "name": "plain",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "destination": {"connection": "lake", "table": "plain", "load": "overwrite"},
    }
    loaded = write_catalog(catalog(tmp_path, flow))
    assert run_flow(loaded, tmp_path, "plain").status == "succeeded"
    write_csv(tmp_path, "b.csv", "id\n2\n")
    assert run_flow(loaded, tmp_path, "plain").status == "succeeded"
    assert sorted(lake(tmp_path, "plain")["id"].to_list()) == [1, 2]


# --------------------------------------------------------------------------- item 2


def test_a_failed_cast_is_quarantined_even_when_a_later_filter_would_drop_it(
    tmp_path: Path, write_catalog: Any
) -> None:
    """The cast of ``ERR`` fails: the row is quarantined, although ``temp IS NOT NULL`` would drop
    it (the failed cast leaves it null); the blank temp is filtered by the declared filter."""
    write_csv(tmp_path, "a.csv", "id,temp\n1,20.5\n2,ERR\n3,\n")
    flow = {
        "name": "temps",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv", "options": {"infer_schema": False}},
        "transforms": [
            {"kind": "cast", "columns": {"temp": "float64"}},
            {"kind": "filter", "condition": "temp IS NOT NULL"},
        ],
        "destination": {"connection": "lake", "table": "temps", "load": "append"},
        "quarantine": {"max_rejected": 5},
    }
    loaded = write_catalog(catalog(tmp_path, flow))

    result = run_flow(loaded, tmp_path, "temps")

    assert result.status == "succeeded", result.error
    assert lake(tmp_path, "temps")["id"].to_list() == ["1"]
    bad = quarantined(tmp_path, "temps")
    assert [json.loads(r) for r in bad["raw_row"]] == [{"id": "2", "temp": "ERR"}]
    assert bad["rule"].to_list() == ["cast"]
    assert (result.rows_read, result.rows_written, result.rows_rejected, result.rows_filtered) == (3, 1, 1, 1)
    reconciles(result)


@pytest.mark.parametrize("transform", ["dedup", "select"])
def test_a_failed_cast_survives_dedup_and_select(tmp_path: Path, write_catalog: Any, transform: str) -> None:
    """Row 2's ``day`` is no date: whatever comes after the cast, it reaches the quarantine table."""
    write_csv(tmp_path, "a.csv", "id,day,n\n1,2024-01-01,1\n1,bad,2\n2,2024-01-02,3\n")
    later = {
        "dedup": {"kind": "dedup", "keys": ["id"], "order_by": ["n"]},
        "select": {"kind": "select", "columns": ["id", "n"]},
    }[transform]
    flow = {
        "name": "days",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [{"kind": "cast", "columns": {"day": "date"}}, later],
        "destination": {"connection": "lake", "table": "days", "load": "append"},
        "quarantine": {"max_rejected": 5},
    }
    loaded = write_catalog(catalog(tmp_path, flow))

    result = run_flow(loaded, tmp_path, "days")

    assert result.status == "succeeded", result.error
    bad = quarantined(tmp_path, "days")
    assert [json.loads(r)["day"] for r in bad["raw_row"]] == ["bad"]
    assert result.rows_rejected == 1
    loaded_ids = sorted(lake(tmp_path, "days")["id"].to_list())
    assert loaded_ids == [1, 2]  # dedup judges the good rows only
    reconciles(result)


# --------------------------------------------------------------------------- the identity


def _append_with_filter() -> dict[str, Any]:
    return {
        "name": "filtered",
        "source": {"format": "csv", "connection": "raw", "path": "f/*.csv"},
        "transforms": [{"kind": "filter", "condition": "amount > 0"}],
        "destination": {"connection": "lake", "table": "filtered", "load": "append"},
        "watermark_columns": ["id"],
    }


def _merge_with_dedup() -> dict[str, Any]:
    return {
        "name": "merged",
        "source": {"format": "csv", "connection": "raw", "path": "m/*.csv"},
        "transforms": [{"kind": "dedup", "keys": ["id"], "order_by": ["version"]}],
        "destination": {"connection": "lake", "table": "merged", "load": "merge", "merge_keys": ["id"]},
        "watermark_columns": ["version"],
    }


def _quarantined_with_watermark() -> dict[str, Any]:
    return {
        "name": "guarded",
        "source": {
            "format": "csv",
            "connection": "raw",
            "path": "q/*.csv",
            "options": {"infer_schema": False},
        },
        "transforms": [{"kind": "cast", "columns": {"id": "int64", "ts": "date", "amount": "float64"}}],
        "destination": {"connection": "lake", "table": "guarded", "load": "append"},
        "watermark_columns": ["ts"],
        "quarantine": {"max_rejected": 10, "rules": [{"kind": "not_null", "columns": ["amount"]}]},
    }


def _watermark_without_quarantine() -> dict[str, Any]:
    return {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "e/*.csv"},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "out", "table": "events", "format": "parquet", "load": "append"},
        "watermark_columns": ["ts"],
    }


def test_every_run_reconciles_across_representative_dataflows(tmp_path: Path, write_catalog: Any) -> None:
    """rows read = written + quarantined + filtered + late + without watermark, batch after batch,
    and the numbers are what the tables hold: nothing lost, nothing counted twice."""
    write_csv(tmp_path, "f/1.csv", "id,amount\n1,5\n2,-1\n3,7\n")
    write_csv(tmp_path, "m/1.csv", "id,version,v\n1,1,a\n1,2,b\n2,1,c\n")
    write_csv(tmp_path, "q/1.csv", "id,ts,amount\n1,2024-01-01,1\n2,oops,2\n3,2024-01-02,\n4,,4\n")
    write_csv(tmp_path, "e/1.csv", "id,ts\n1,2024-01-01\n2,\n3,2024-01-03\n")
    flows = [
        _append_with_filter(),
        _merge_with_dedup(),
        _quarantined_with_watermark(),
        _watermark_without_quarantine(),
    ]
    loaded = write_catalog(catalog(tmp_path, *flows, out={"kind": "files", "path": str(tmp_path / "out")}))

    def run_all() -> dict[str, DataflowResult]:
        with Driver(loaded, state_dir=tmp_path / "state") as driver:
            result = driver.run()
        for item in result.results:
            assert item.status != "failed", item.error
            reconciles(item)
        return {r.dataflow: r for r in result.results}

    first = run_all()
    counts = {name: tuple(getattr(r, k) for k in ("rows_read", *ACCOUNTS)) for name, r in first.items()}
    assert counts == {
        "filtered": (3, 2, 0, 1, 0, 0),
        "merged": (3, 2, 0, 1, 0, 0),  # the older version of id 1: removed by the declared dedup
        # oops: failed cast (ts); id 3: null amount (rule); id 4: no ts (rule "watermark")
        "guarded": (4, 1, 3, 0, 0, 0),
        "events": (3, 2, 0, 0, 0, 1),
    }
    assert first["guarded"].rejected_by_rule == {"cast": 1, "not_null": 1, "watermark": 1}

    # Second batch: new files with newer rows, late rows and rows without a watermark value.
    write_csv(tmp_path, "f/2.csv", "id,amount\n2,9\n4,-3\n5,1\n")  # id 2: at the watermark (3): late
    write_csv(tmp_path, "m/2.csv", "id,version,v\n2,2,d\n2,3,e\n3,1,f\n")  # 3,1: at the watermark
    write_csv(tmp_path, "q/2.csv", "id,ts,amount\n5,2024-01-05,5\n6,,6\n7,2023-12-31,7\n8,nope,8\n")
    write_csv(tmp_path, "e/2.csv", "id,ts\n4,2024-01-04\n5,\n6,2024-01-02\n")
    second = run_all()
    counts = {name: tuple(getattr(r, k) for k in ("rows_read", *ACCOUNTS)) for name, r in second.items()}
    assert counts == {
        "filtered": (3, 1, 0, 1, 1, 0),
        "merged": (3, 1, 0, 1, 1, 0),
        "guarded": (4, 1, 2, 0, 1, 0),
        "events": (3, 1, 0, 0, 1, 1),
    }

    # Third run, nothing new; then forced: old rows are neither read, reported nor quarantined again.
    for result in run_all().values():
        assert (result.status, result.rows_read) == ("skipped", 0), result
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        forced = driver.run(force=True)
    for result in forced.results:
        assert (result.status, result.rows_read, result.rows_rejected) == ("skipped", 0, 0), result

    assert sorted(lake(tmp_path, "filtered")["id"].to_list()) == [1, 3, 5]
    assert sorted(lake(tmp_path, "merged").select("id", "v").rows()) == [(1, "b"), (2, "e")]
    assert sorted(lake(tmp_path, "guarded")["id"].to_list()) == [1, 5]
    bad = quarantined(tmp_path, "guarded")
    assert sorted(json.loads(r)["id"] for r in bad["raw_row"]) == ["2", "3", "4", "6", "8"]
    events = pl.read_parquet(tmp_path / "out" / "events" / "*.parquet")
    assert sorted(events["id"].to_list()) == [1, 3, 4]


# --------------------------------------------------------------------------- late rows from Delta


def test_late_rows_added_to_a_delta_source_are_counted(tmp_path: Path, write_catalog: Any) -> None:
    """Files added to a Delta source since the version the last batch read: their rows at or
    below the watermark are late — not loaded (by design) but counted, once."""
    source = tmp_path / "lake" / "bronze"
    write_deltalake(str(source), pl.DataFrame({"id": [1, 2], "ts": [10, 20]}).to_arrow(), mode="append")
    flow = {
        "name": "silver",
        "source": {"format": "delta", "connection": "lake", "table": "bronze"},
        "destination": {"connection": "lake", "table": "silver", "load": "append"},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow))
    assert run_flow(loaded, tmp_path, "silver").rows_written == 2
    late = pl.DataFrame(
        {"id": [3, 4, 5, 6], "ts": [30, 20, 5, None]}, schema={"id": pl.Int64, "ts": pl.Int64}
    )
    write_deltalake(str(source), late.to_arrow(), mode="append")

    result = run_flow(loaded, tmp_path, "silver")

    assert result.status == "succeeded", result.error
    assert (result.rows_read, result.rows_written, result.rows_late, result.rows_without_watermark) == (
        4,
        1,
        2,
        1,
    )
    reconciles(result)
    assert sorted(lake(tmp_path, "silver")["id"].to_list()) == [1, 2, 3]
    write_deltalake(str(source), pl.DataFrame({"id": [7], "ts": [40]}).to_arrow(), mode="append")
    third = run_flow(loaded, tmp_path, "silver")
    assert (third.rows_read, third.rows_written, third.rows_late, third.rows_without_watermark) == (
        1,
        1,
        0,
        0,
    )


# --------------------------------------------------------------------------- retries report the truth


@pytest.mark.parametrize("destination", ["delta-append", "delta-merge", "parquet"])
def test_a_retry_that_finds_its_batch_committed_reports_it(
    tmp_path: Path, write_catalog: Any, monkeypatch: pytest.MonkeyPatch, destination: str
) -> None:
    """An I/O error right after the commit: the retry finds the batch committed and reports it
    as succeeded with that batch's rows (not skipped with 0), without loading it twice."""
    write_csv(tmp_path, "a.csv", "id,ts,amount\n1,2024-01-01,5\n2,2024-01-02,-1\n3,,1\n")
    target = {
        "delta-append": {"connection": "lake", "table": "events", "load": "append"},
        "delta-merge": {"connection": "lake", "table": "events", "load": "merge", "merge_keys": ["id"]},
        "parquet": {"connection": "out", "table": "events", "format": "parquet", "load": "append"},
    }[destination]
    name = "retried_" + destination.replace("-", "_")  # an oserror fault fires once per process and name
    flow = {
        "name": name,
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [
            {"kind": "cast", "columns": {"ts": "date"}},
            {"kind": "filter", "condition": "amount > 0"},
        ],
        "destination": target,
        "watermark_columns": ["ts"],
        "retry": {"count": 1, "delay": 0},
    }
    loaded = write_catalog(catalog(tmp_path, flow, out={"kind": "files", "path": str(tmp_path / "out")}))
    monkeypatch.setenv("COOLIE_FAULT", f"oserror:after_commit:{name}")

    result = run_flow(loaded, tmp_path, name)

    assert (result.status, result.attempts) == ("succeeded", 2), result
    assert (result.rows_read, result.rows_written, result.rows_filtered, result.rows_without_watermark) == (
        3,
        1,
        1,
        1,
    )
    reconciles(result)
    if destination == "parquet":
        assert pl.read_parquet(tmp_path / "out" / "events" / "*.parquet")["id"].to_list() == [1]
    else:
        assert lake(tmp_path, "events")["id"].to_list() == [1]


def test_a_re_executed_step_of_the_same_run_reports_the_committed_batch(
    tmp_path: Path, write_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster re-executes a failed step in a new process with the same run id: that attempt
    reports the batch the failed one committed; a later run of the same id reports skipped."""
    write_csv(tmp_path, "a.csv", "id,ts\n1,2024-01-01\n2,2024-01-02\n")
    flow = {
        "name": "reexecuted",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow))
    monkeypatch.setenv("COOLIE_FAULT", "oserror:after_commit:reexecuted")
    with Driver(loaded, state_dir=tmp_path / "state", run_id="run-1", retries=False) as driver:
        assert driver.run().result("reexecuted").status == "failed"
    monkeypatch.delenv("COOLIE_FAULT")

    with Driver(loaded, state_dir=tmp_path / "state", run_id="run-1", retries=False) as driver:
        again = driver.run().result("reexecuted")
        assert (again.status, again.rows_read, again.rows_written) == ("succeeded", 2, 2)
        assert driver.run().result("reexecuted").status == "skipped"  # this driver already reported it
    assert lake(tmp_path, "events")["id"].to_list() == [1, 2]
    records = [r for r in read_records(tmp_path / "state" / "runs") if r["dataflow"] == "reexecuted"]
    assert [r["status"] for r in records] == ["failed", "succeeded", "skipped"]


# --------------------------------------------------------------------------- reported everywhere


def _late_and_unwatermarked(tmp_path: Path, write_catalog: Any) -> LoadedCatalog:
    """A second batch of events: 1 newer row, 1 late, 1 without a watermark value, 1 filtered."""
    write_csv(tmp_path, "a.csv", "id,ts\n1,2024-01-05\n")
    flow = {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [
            {"kind": "cast", "columns": {"ts": "date"}},
            {"kind": "filter", "condition": "id <> 9"},
        ],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow))
    assert run_flow(loaded, tmp_path, "events").status == "succeeded"
    write_csv(tmp_path, "b.csv", "id,ts\n2,2024-01-06\n3,2024-01-01\n4,\n9,2024-01-07\n")
    return loaded


@pytest.mark.e2e
def test_the_cli_reports_the_accounting_in_json_and_in_the_summary(
    tmp_path: Path, write_catalog: Any
) -> None:
    loaded = _late_and_unwatermarked(tmp_path, write_catalog)
    base = [
        sys.executable,
        "-m",
        "coolie_core.cli",
        "run",
        str(loaded.path),
        "--state-dir",
        str(tmp_path / "state"),
    ]

    shown = subprocess.run([*base, "--json"], capture_output=True, text=True, check=True)

    (record,) = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    assert {k: record[k] for k in ("rows_read", *ACCOUNTS)} == {
        "rows_read": 4,
        "rows_written": 1,
        "rows_rejected": 0,
        "rows_filtered": 1,
        "rows_late": 1,
        "rows_without_watermark": 1,
    }
    write_csv(tmp_path, "c.csv", "id,ts\n5,2024-01-08\n6,2024-01-02\n")
    summary = subprocess.run(
        base, capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "250"}
    )
    assert "1 late rows (at or below the watermark) not loaded" in summary.stdout


def test_dagster_metadata_carries_the_accounting(tmp_path: Path, write_catalog: Any) -> None:
    loaded = _late_and_unwatermarked(tmp_path, write_catalog)
    defs = build_definitions(loaded.path, state_dir=tmp_path / "state")
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, instance=instance, resources=dict(defs.resources or {}))
    [materialization] = result.asset_materializations_for_node("coolie__events")
    metadata = {k: v.value for k, v in materialization.metadata.items() if k.startswith("coolie/rows_")}
    assert metadata == {
        "coolie/rows_read": 4,
        "coolie/rows_written": 1,
        "coolie/rows_rejected": 0,
        "coolie/rows_filtered": 1,
        "coolie/rows_late": 1,
        "coolie/rows_without_watermark": 1,
    }


# --------------------------------------------------------------------------- batches that load nothing


def test_a_first_batch_of_only_rejected_rows_quarantines_them_once(
    tmp_path: Path, write_catalog: Any
) -> None:
    write_csv(tmp_path, "a.csv", "id,ts\n1,bad\n2,\n")
    flow = {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv", "options": {"infer_schema": False}},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
        "watermark_columns": ["ts"],
        "quarantine": {"max_rejected": 5},
    }
    loaded = write_catalog(catalog(tmp_path, flow))

    first = run_flow(loaded, tmp_path, "events")

    assert (first.status, first.rows_read, first.rows_rejected) == ("skipped", 2, 2), first
    assert first.reason == "nothing to load: 2 quarantined"
    assert first.rejected_by_rule == {"cast": 1, "watermark": 1}
    reconciles(first)
    # No watermark to record: no commit, so the next run reads the rows again, but the
    # quarantine table holds them once.
    assert not (tmp_path / "lake" / "events").exists()
    second = run_flow(loaded, tmp_path, "events")
    assert (second.status, second.rows_rejected) == ("skipped", 2)
    assert quarantined(tmp_path, "events").height == 2


def test_rows_without_a_watermark_value_are_counted_not_loaded(tmp_path: Path, write_catalog: Any) -> None:
    write_csv(tmp_path, "a.csv", "id,ts\n1,\n2,2024-01-02\n")
    flow = {
        "name": "events",
        "source": {"format": "csv", "connection": "raw", "path": "*.csv"},
        "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
        "destination": {"connection": "lake", "table": "events", "load": "merge", "merge_keys": ["id"]},
        "watermark_columns": ["ts"],
    }
    loaded = write_catalog(catalog(tmp_path, flow))

    result = run_flow(loaded, tmp_path, "events")

    assert (result.status, result.rows_read, result.rows_written, result.rows_without_watermark) == (
        "succeeded",
        2,
        1,
        1,
    )
    assert lake(tmp_path, "events")["id"].to_list() == [2]
    write_csv(tmp_path, "b.csv", "id,ts\n3,\n")
    later = run_flow(loaded, tmp_path, "events")
    assert (later.status, later.reason, later.rows_without_watermark) == (
        "skipped",
        "nothing to load: 1 without a watermark value",
        1,
    )
    assert run_flow(loaded, tmp_path, "events").reason == "source unchanged since batch 2"
