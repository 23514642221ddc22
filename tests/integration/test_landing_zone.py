"""Landing zones (``source.incremental: files``): every new file loaded once, whole.

Real Delta tables and parquet folders in tmp_path, real files with controlled modification
times; the loaded-file ledger is checked where it is committed (Delta commit metadata, the
batch store) and versions prove that idle or failed runs committed nothing.
"""

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core import faults, landing
from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import DataflowResult, Driver
from coolie_core.errors import CatalogError
from coolie_core.planning import plan_dataflows
from coolie_core.watermarks import FILES_KEY

CLOCK = 1_700_000_000
"""Modification times are set explicitly (seconds since the epoch): arrival order is exact."""


# --------------------------------------------------------------------------- helpers


def write_catalog(tmp_path: Path, *flows: dict[str, Any]) -> LoadedCatalog:
    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            "out": {"kind": "files", "path": str(tmp_path / "out")},
        },
        "dataflows": list(flows),
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_catalog(path)


def flow(load: str = "append", *, fmt: str = "csv", **source: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "landing",
        "source": {
            "format": fmt,
            "connection": "raw",
            "path": f"drop/*.{fmt}",
            "incremental": "files",
            **source,
        },
        "transforms": [{"kind": "cast", "columns": {"id": "int64", "ts": "datetime"}}],
        "destination": {"connection": "lake", "table": "events", "load": load},
    }
    if load in ("merge", "scd2"):
        spec["destination"]["merge_keys"] = ["id"]
    if load == "scd2":
        spec["destination"]["scd2"] = {"effective_column": "ts"}
    return spec


def drop(tmp_path: Path, name: str, rows: list[dict[str, Any]], *, at: int, fmt: str = "csv") -> Path:
    """Write a file into the landing folder with modification time ``CLOCK + at``."""
    path = tmp_path / "raw" / "drop" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows, schema={"id": pl.Int64, "ts": pl.String, "v": pl.String})
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "jsonl":
        frame.write_ndjson(path)
    elif fmt == "json":
        frame.write_json(path)
    else:
        frame.write_parquet(path)
    os.utime(path, (CLOCK + at, CLOCK + at))
    return path


def rows(ids: range | list[int], ts: str, tag: str = "r") -> list[dict[str, Any]]:
    return [{"id": i, "ts": ts, "v": f"{tag}{i}"} for i in ids]


def run(loaded: LoadedCatalog, tmp_path: Path, name: str = "landing") -> DataflowResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        return driver.run(dataflows=[name]).result(name)


def ok(result: DataflowResult) -> DataflowResult:
    assert result.status == "succeeded", (result.status, result.reason, result.error)
    return result


def table(tmp_path: Path, name: str = "events") -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / name))


def version(tmp_path: Path, name: str = "events") -> int:
    return DeltaTable(str(tmp_path / "lake" / name)).version()


def ledger_texts(tmp_path: Path, name: str = "events") -> list[str]:
    """The ``coolie.files`` metadata of every commit, oldest first."""
    history = DeltaTable(str(tmp_path / "lake" / name)).history()
    return [str(c[FILES_KEY]) for c in reversed(history) if FILES_KEY in c]


# --------------------------------------------------------------------------- exactly once


@pytest.mark.parametrize("load", ["append", "merge", "scd2"])
def test_three_drops_load_every_row_once_whatever_their_timestamps(tmp_path: Path, load: str) -> None:
    loaded = write_catalog(tmp_path, flow(load))
    drop(tmp_path, "day1.csv", rows(range(5), "2024-03-01T10:00:00"), at=0)
    first = ok(run(loaded, tmp_path))
    assert first.files is not None
    assert first.files["loaded"] == 1
    assert first.files["names"] == ["drop/day1.csv"]
    drop(tmp_path, "day2.csv", rows(range(5, 9), "2024-03-02T10:00:00"), at=10)
    ok(run(loaded, tmp_path))
    # The third drop's rows are older than everything loaded: a watermark would skip them all.
    drop(tmp_path, "late.csv", rows(range(9, 22), "2023-12-31T23:00:00"), at=20)
    third = ok(run(loaded, tmp_path))
    assert (third.rows_read, third.rows_written, third.rows_late) == (13, 13, 0)

    ids = table(tmp_path).get_column("id").sort().to_list()
    assert ids == list(range(22)), "every row exactly once"
    before = version(tmp_path)
    idle = run(loaded, tmp_path)
    assert idle.status == "skipped"
    assert idle.reason == "no new files"
    assert version(tmp_path) == before, "an idle rerun commits nothing"


def test_the_ledger_is_in_the_data_commit(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow())
    drop(tmp_path, "a.csv", rows(range(2), "2024-01-01"), at=0)
    drop(tmp_path, "b.csv", rows(range(2, 3), "2024-01-01"), at=1)
    ok(run(loaded, tmp_path))
    history = DeltaTable(str(tmp_path / "lake" / "events")).history(limit=1)[0]
    record = json.loads(history[FILES_KEY])
    assert history["coolie.batch"] == "1"
    assert history["operation"] == "WRITE"
    assert [key for key, _ in record["since"]] == ["drop/a.csv", "drop/b.csv"]


def test_a_failed_batch_records_no_file(tmp_path: Path) -> None:
    """A cast failure fails the batch: nothing committed, the files are read again next run."""
    loaded = write_catalog(tmp_path, flow())
    drop(tmp_path, "a.csv", rows(range(2), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    bad = drop(tmp_path, "b.csv", rows(range(2, 4), "not a date"), at=5)
    failed = run(loaded, tmp_path)
    assert failed.status == "failed"
    assert "cannot cast" in (failed.error or "")
    assert version(tmp_path) == 0
    bad.unlink()
    drop(tmp_path, "b.csv", rows(range(2, 4), "2024-01-02"), at=6)
    ok(run(loaded, tmp_path))
    assert table(tmp_path).height == 4


# --------------------------------------------------------------------------- changed and deleted files


def test_a_changed_file_fails_by_default_naming_it(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow())
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "a.csv", rows(range(4), "2024-01-01"), at=50)
    drop(tmp_path, "b.csv", rows(range(10, 12), "2024-01-01"), at=51)
    failed = run(loaded, tmp_path)
    assert failed.status == "failed"
    assert "drop/a.csv" in (failed.error or "")
    assert "on_changed_file" in (failed.error or "")
    assert version(tmp_path) == 0, "nothing written"
    assert table(tmp_path).height == 3, "not even b.csv"


def test_on_changed_file_reload_loads_the_new_version_whole(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow("merge", on_changed_file="reload"))
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01", "old"), at=0)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "a.csv", rows(range(4), "2024-01-01", "new"), at=50)
    result = ok(run(loaded, tmp_path))
    assert result.files is not None
    assert result.files["reloaded"] == 1
    assert sorted(table(tmp_path).get_column("v").to_list()) == ["new0", "new1", "new2", "new3"]
    assert run(loaded, tmp_path).status == "skipped", "the new version is recorded"


def test_on_changed_file_ignore_reports_and_records_it(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow(on_changed_file="ignore"))
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "a.csv", rows(range(4), "2024-01-01"), at=50)
    skipped = run(loaded, tmp_path)
    assert skipped.status == "skipped"
    assert "1 changed file(s) ignored" in (skipped.reason or "")
    assert version(tmp_path) == 0
    drop(tmp_path, "b.csv", rows(range(10, 12), "2024-01-01"), at=60)
    result = ok(run(loaded, tmp_path))
    assert result.files is not None
    assert result.files["changed_ignored"] == 1
    assert sorted(table(tmp_path).get_column("id").to_list()) == [0, 1, 2, 10, 11]
    idle = run(loaded, tmp_path)
    assert idle.reason == "no new files", "recorded with the batch"


def test_deleted_files_are_ignored_and_empty_files_wait(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow())
    first = drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    empty = tmp_path / "raw" / "drop" / "b.csv"
    empty.write_text("")
    result = ok(run(loaded, tmp_path))
    assert result.files is not None
    assert result.files["empty"] == 1
    first.unlink()
    idle = run(loaded, tmp_path)
    assert idle.status == "skipped"
    assert "1 empty file(s)" in (idle.reason or "")
    drop(tmp_path, "b.csv", rows(range(3, 5), "2024-01-01"), at=9)
    ok(run(loaded, tmp_path))
    assert sorted(table(tmp_path).get_column("id").to_list()) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- backlog


def test_max_files_per_run_loads_a_backlog_in_arrival_order(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow(max_files_per_run=2, file_columns=True))
    # Names in reverse order of arrival: the modification time decides, then the path.
    for n, name in enumerate(["e.csv", "d.csv", "c.csv", "b.csv", "a.csv"]):
        drop(tmp_path, name, rows([n], "2024-01-01"), at=n if name != "a.csv" else 3)
    seen = []
    for expected_pending in (3, 1, 0):
        result = ok(run(loaded, tmp_path))
        assert result.files is not None
        assert result.files["pending"] == expected_pending
        seen.append(result.files["names"])
    assert seen == [["drop/e.csv", "drop/d.csv"], ["drop/c.csv", "drop/a.csv"], ["drop/b.csv"]]
    assert run(loaded, tmp_path).status == "skipped"
    loaded_rows = table(tmp_path).sort("id")
    assert loaded_rows.get_column("id").to_list() == [0, 1, 2, 3, 4]
    assert loaded_rows.get_column(landing.FILE_COLUMN).str.ends_with("e.csv").to_list()[0]
    modified = loaded_rows.get_column(landing.MODIFIED_COLUMN).to_list()[0]
    assert int(modified.timestamp()) == CLOCK


def test_plan_shows_pending_files(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, flow(max_files_per_run=1))
    for n in range(3):
        drop(tmp_path, f"f{n}.csv", rows([n], "2024-01-01"), at=n)
    describe = plan_dataflows(loaded, dataflows=["landing"])[0].describe(loaded)
    assert describe["pending_files"] == 3
    ok(run(loaded, tmp_path))
    assert plan_dataflows(loaded, dataflows=["landing"])[0].describe(loaded)["pending_files"] == 2


# --------------------------------------------------------------------------- bad rows and bad files


def test_a_bad_row_is_quarantined_once(tmp_path: Path) -> None:
    spec = flow()
    spec["quarantine"] = {"max_rejected": 5, "rules": [{"kind": "not_null", "columns": ["id"]}]}
    loaded = write_catalog(tmp_path, spec)
    drop(
        tmp_path, "a.csv", [*rows(range(3), "2024-01-01"), {"id": None, "ts": "2024-01-01", "v": "bad"}], at=0
    )
    first = ok(run(loaded, tmp_path))
    assert (first.rows_read, first.rows_written, first.rows_rejected) == (4, 3, 1)
    assert run(loaded, tmp_path).status == "skipped"
    drop(tmp_path, "b.csv", rows(range(3, 5), "2024-01-02"), at=5)
    ok(run(loaded, tmp_path))
    assert pl.read_delta(str(tmp_path / "lake" / "_quarantine" / "events")).height == 1
    assert table(tmp_path).height == 5


def test_a_file_whose_rows_are_all_filtered_is_recorded(tmp_path: Path) -> None:
    spec = flow()
    spec["transforms"].append({"kind": "filter", "condition": "id < 100"})
    loaded = write_catalog(tmp_path, spec)
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "b.csv", rows(range(100, 103), "2024-01-01"), at=5)
    result = run(loaded, tmp_path)
    assert result.status == "skipped"
    assert result.rows_filtered == 3
    assert result.delta_version == 1
    assert run(loaded, tmp_path).reason == "no new files", "the filtered file is not read again"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_a_corrupt_file_fails_the_batch_naming_it(tmp_path: Path, fmt: str) -> None:
    loaded = write_catalog(tmp_path, flow(fmt=fmt))
    drop(tmp_path, "a." + fmt, rows(range(3), "2024-01-01"), at=0, fmt=fmt)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "b." + fmt, rows(range(3, 5), "2024-01-01"), at=5, fmt=fmt)
    broken = tmp_path / "raw" / "drop" / f"c.{fmt}"
    broken.write_bytes(
        {"csv": b"id,ts,v\n1,2,3,4,5\n", "parquet": b"PAR1 not really"}.get(fmt, b'{"id": 1, "ts')
    )
    os.utime(broken, (CLOCK + 6, CLOCK + 6))
    failed = run(loaded, tmp_path)
    assert failed.status == "failed", failed
    assert f"c.{fmt}" in (failed.error or ""), failed.error
    assert version(tmp_path) == 0, "nothing written"
    assert table(tmp_path).height == 3, "not even b is written"


# --------------------------------------------------------------------------- parquet-folder destinations


def test_parquet_folder_destination_keeps_the_ledger_with_its_batches(tmp_path: Path) -> None:
    spec = flow()
    spec["destination"] = {"connection": "out", "table": "events", "format": "parquet", "load": "append"}
    loaded = write_catalog(tmp_path, spec)
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    drop(tmp_path, "b.csv", rows(range(3, 5), "2023-01-01"), at=5)
    ok(run(loaded, tmp_path))
    assert run(loaded, tmp_path).status == "skipped"
    ids = pl.read_parquet(str(tmp_path / "out" / "events" / "*.parquet")).get_column("id").sort().to_list()
    assert ids == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- scale: checkpoints


def test_checkpoints_keep_commit_metadata_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landing, "CHECKPOINT_EVERY", 4)
    loaded = write_catalog(tmp_path, flow())
    clock = 0
    for batch in range(6):
        for n in range(3):
            drop(tmp_path, f"b{batch}-{n}.csv", rows([batch * 10 + n], "2024-01-01"), at=clock)
            clock += 1
        ok(run(loaded, tmp_path))
    records = [json.loads(text) for text in ledger_texts(tmp_path)]
    assert max(len(r["since"]) for r in records) <= 4
    assert [r["total"] for r in records] == [3, 6, 9, 12, 15, 18]
    assert sum(1 for r in records if r["since"] == []) >= 2, "checkpoints were written"
    kept = list((tmp_path / "lake" / "events" / "_coolie" / "files").iterdir())
    assert 1 <= len(kept) <= 2, f"superseded checkpoints are removed: {kept}"
    assert run(loaded, tmp_path).status == "skipped"
    assert table(tmp_path).height == 18
    # Vacuum (full: files no version references) keeps the checkpoints: they are not table data.
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        driver.run_maintenance(retention_hours=0)
    assert run(loaded, tmp_path).reason == "no new files"


def test_a_missing_checkpoint_fails_instead_of_reloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "CHECKPOINT_EVERY", 1)
    loaded = write_catalog(tmp_path, flow())
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    drop(tmp_path, "b.csv", rows(range(3, 4), "2024-01-01"), at=1)
    ok(run(loaded, tmp_path))
    for file in (tmp_path / "lake" / "events" / "_coolie" / "files").iterdir():
        file.unlink()
    landing._checkpoint_entries.cache_clear()
    failed = run(loaded, tmp_path)
    assert failed.status == "failed"
    assert "checkpoint" in (failed.error or "")
    assert "landing" in (failed.error or "")
    assert version(tmp_path) == 0


def test_switching_a_loaded_dataflow_to_files_mode_is_refused(tmp_path: Path) -> None:
    spec = flow()
    del spec["source"]["incremental"]
    loaded = write_catalog(tmp_path, spec)
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    ok(run(loaded, tmp_path))
    failed = run(write_catalog(tmp_path, flow()), tmp_path)
    assert failed.status == "failed"
    assert "no loaded files" in (failed.error or "")
    assert version(tmp_path) == 0


# --------------------------------------------------------------------------- catalog errors


def test_misuse_is_a_located_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "x.db").touch()
    text = """\
version: 1
connections:
  raw: {kind: files, path: raw}
  lake: {kind: delta, path: lake}
  db: {kind: sql, url: "sqlite:///x.db"}
dataflows:
  - name: from_sql
    source: {format: sql, connection: db, table: t, incremental: files}
    destination: {connection: lake, table: a, load: append}
  - name: with_watermark
    source: {format: csv, connection: raw, path: "*.csv", incremental: files}
    destination: {connection: lake, table: b, load: append}
    watermark_columns: [ts]
  - name: no_mode
    source: {format: csv, connection: raw, path: "*.csv", max_files_per_run: 3}
    destination: {connection: lake, table: c, load: append}
  - name: overwriting
    source: {format: csv, connection: raw, path: "*.csv", incremental: files}
    destination: {connection: lake, table: d, load: overwrite}
"""
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    expected = [
        ("catalog.yaml:8: from_sql.source.incremental", "only file sources"),
        ("catalog.yaml:13: with_watermark.watermark_columns", "not with source.incremental: files"),
        ("catalog.yaml:15: no_mode.source.max_files_per_run", "needs incremental: files"),
        ("catalog.yaml:18: overwriting.source.incremental", "not with load overwrite"),
    ]
    for where, what in expected:
        line = next((line for line in message.splitlines() if where in line), None)
        assert what in (line or ""), (where, message)

    # Cross-object rules (the engine comes from the dataflow or the catalog's defaults).
    spark = (
        text.split("dataflows:")[0]
        + """\
defaults: {engine: spark}
dataflows:
  - name: on_spark
    source: {format: csv, connection: raw, path: "*.csv", incremental: files}
    destination: {connection: lake, table: e, load: append}
"""
    )
    path.write_text(spark)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert "catalog.yaml:8: on_spark.source.incremental: files: not on the spark engine" in str(info.value)


@pytest.mark.slow
def test_ten_thousand_files_over_ten_runs_keep_commits_flat(tmp_path: Path) -> None:
    """Commit size (and the ledger in it) does not grow with the history; planning time is
    printed (``-s``), not asserted (see benchmarks/landing.py and BENCHMARKS.md)."""
    folder = tmp_path / "raw" / "drop"
    folder.mkdir(parents=True)
    for n in range(10_000):
        path = folder / f"f{n:05d}.csv"
        path.write_text(f"id,ts,v\n{n},2024-01-01,r{n}\n")
        os.utime(path, (CLOCK + n, CLOCK + n))
    loaded = write_catalog(tmp_path, flow(max_files_per_run=1_000))
    spec = loaded.catalog.dataflow("landing")
    ledgers, commits = [], []
    for number in range(1, 11):
        t0 = time.perf_counter()
        state, dest = landing.landing_state(loaded.catalog, spec, state_dir=tmp_path / "state")
        picked = landing.plan_landing(loaded.catalog, spec, state=state, dest=dest)
        planning = time.perf_counter() - t0
        result = ok(run(loaded, tmp_path))
        assert result.files is not None
        assert result.files["loaded"] == 1_000 == len(picked.files)
        ledger = ledger_texts(tmp_path)[-1]
        commit = tmp_path / "lake" / "events" / "_delta_log" / f"{version(tmp_path):020d}.json"
        ledgers.append(len(ledger))
        commits.append(commit.stat().st_size)
        print(f"run {number}: planning {planning:.3f}s, ledger {len(ledger)} B, commit {commits[-1]} B")
        assert json.loads(ledger)["total"] == 1_000 * number
    assert max(ledgers) <= 2 * min(ledgers), ledgers
    assert max(commits[1:]) <= min(commits[1:]) + 64, f"commit size grows with history: {commits}"
    assert run(loaded, tmp_path).status == "skipped"
    assert table(tmp_path).height == 10_000


def test_a_retried_quarantined_batch_keeps_to_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejects of a batch are committed before its rows and not written again on a retry: a file
    arriving between the failed attempt and the retry must wait for the next batch, so that its
    bad rows are quarantined, not lost."""
    spec = flow()
    spec["quarantine"] = {"max_rejected": 5, "rules": [{"kind": "not_null", "columns": ["id"]}]}
    spec["retry"] = {"count": 0}
    loaded = write_catalog(tmp_path, spec)
    bad = {"id": None, "ts": "2024-01-01", "v": "bad"}
    drop(tmp_path, "a.csv", [*rows(range(3), "2024-01-01"), bad], at=0)
    monkeypatch.setenv("COOLIE_FAULT", "oserror:after_quarantine:landing:1")
    assert run(loaded, tmp_path).status == "failed"  # rejects of batch 1 committed, rows not
    monkeypatch.delenv("COOLIE_FAULT")
    drop(tmp_path, "b.csv", [*rows(range(3, 5), "2024-01-02"), bad], at=5)
    retry = ok(run(loaded, tmp_path))
    assert retry.files is not None
    assert retry.files["names"] == ["drop/a.csv"]
    assert retry.files["pending"] == 1
    ok(run(loaded, tmp_path))
    assert pl.read_delta(str(tmp_path / "lake" / "_quarantine" / "events")).height == 2
    assert sorted(table(tmp_path).get_column("id").to_list()) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- on_bad_file: quarantine

CORRUPT = {
    "csv": b"id,ts,v\n1,2,3,4,5\n",
    "parquet": b"PAR1 not really",
    "json": b'[{"id": 1, "ts',
    "jsonl": b'{"id": 1, "ts": "2024-01-01", "v": "x"}\n{"id": 2, "ts',
}


def quarantined(tmp_path: Path) -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / "_quarantine" / "events"))


def bad_file_flow(**source: Any) -> dict[str, Any]:
    spec = flow(on_bad_file="quarantine", **source)
    spec["quarantine"] = {"max_rejected": 0, "rules": [{"kind": "not_null", "columns": ["id"]}]}
    return spec


def corrupt(tmp_path: Path, name: str, fmt: str, *, at: int) -> Path:
    path = tmp_path / "raw" / "drop" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CORRUPT[fmt])
    os.utime(path, (CLOCK + at, CLOCK + at))
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "jsonl"])
def test_on_bad_file_quarantine_loads_the_others_and_records_the_bad_one_once(
    tmp_path: Path, fmt: str
) -> None:
    loaded = write_catalog(tmp_path, bad_file_flow(fmt=fmt))
    drop(tmp_path, f"a.{fmt}", rows(range(3), "2024-01-01"), at=0, fmt=fmt)
    broken = corrupt(tmp_path, f"b.{fmt}", fmt, at=1)
    drop(tmp_path, f"c.{fmt}", rows(range(3, 5), "2024-01-01"), at=2, fmt=fmt)
    first = ok(run(loaded, tmp_path))
    assert (first.rows_read, first.rows_written, first.rows_rejected) == (5, 5, 0)
    assert first.files is not None
    assert (first.files["loaded"], first.files["rejected"]) == (2, 1)
    assert first.files["rejected_names"] == [f"drop/b.{fmt}"]
    assert sorted(table(tmp_path).get_column("id").to_list()) == [0, 1, 2, 3, 4]
    bad = quarantined(tmp_path).row(0, named=True)
    assert quarantined(tmp_path).height == 1
    assert bad["rule"] == "bad_file"
    assert str(broken) in bad["reason"], bad["reason"]
    assert "Error" in bad["reason"], bad["reason"]
    assert json.loads(bad["raw_row"])["file"] == str(broken)

    # Handled: an idle rerun neither retries nor quarantines it again.
    idle = run(loaded, tmp_path)
    assert (idle.status, idle.reason) == ("skipped", "no new files")
    assert version(tmp_path) == 0
    assert quarantined(tmp_path).height == 1

    # Fixed (rewritten): tried again as a new file, whatever on_changed_file says (default fail).
    drop(tmp_path, f"b.{fmt}", rows(range(5, 7), "2024-01-02"), at=9, fmt=fmt)
    fixed = ok(run(loaded, tmp_path))
    assert fixed.files is not None
    assert fixed.files["names"] == [f"drop/b.{fmt}"]
    assert sorted(table(tmp_path).get_column("id").to_list()) == list(range(7))
    assert quarantined(tmp_path).height == 1
    assert run(loaded, tmp_path).reason == "no new files"


def test_a_batch_of_only_bad_files_is_recorded_and_a_first_one_waits(tmp_path: Path) -> None:
    loaded = write_catalog(tmp_path, bad_file_flow())
    corrupt(tmp_path, "a.csv", "csv", at=0)
    first = run(loaded, tmp_path)
    assert first.status == "skipped", first
    assert "quarantined with the first batch" in (first.reason or ""), first
    assert not (tmp_path / "lake" / "events" / "_delta_log").exists(), "no table"
    assert not (tmp_path / "lake" / "_quarantine").exists(), "no quarantine row"
    drop(tmp_path, "b.csv", rows(range(3), "2024-01-01"), at=1)
    second = ok(run(loaded, tmp_path))
    assert second.files is not None
    assert second.files["rejected_names"] == ["drop/a.csv"]
    corrupt(tmp_path, "c.csv", "csv", at=2)
    third = run(loaded, tmp_path)
    assert third.status == "skipped", third
    assert third.reason == "1 unreadable file(s) (drop/c.csv) quarantined, no other file"
    assert version(tmp_path) == 1, "the ledger committed without rows"
    assert sorted(quarantined(tmp_path).get_column("raw_row").to_list()) == sorted(
        json.dumps({"file": str(tmp_path / "raw" / "drop" / n), "version": v})
        for n, v in (
            ("a.csv", quarantined_version(tmp_path, "a.csv")),
            ("c.csv", quarantined_version(tmp_path, "c.csv")),
        )
    )
    assert run(loaded, tmp_path).reason == "no new files"


def quarantined_version(tmp_path: Path, name: str) -> str:
    stat = (tmp_path / "raw" / "drop" / name).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def test_a_bad_file_is_quarantined_once_across_a_failed_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bad file's row rides the batch's quarantine commit; the retry after a failure between
    that commit and the data commit neither repeats it nor loses the good files."""
    spec = bad_file_flow()
    spec["retry"] = {"count": 0}
    loaded = write_catalog(tmp_path, spec)
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    corrupt(tmp_path, "b.csv", "csv", at=1)
    monkeypatch.setattr(faults, "_raised", Counter())  # the fault's count is per process
    monkeypatch.setenv("COOLIE_FAULT", "oserror:after_quarantine:landing:1")
    assert run(loaded, tmp_path).status == "failed"
    monkeypatch.delenv("COOLIE_FAULT")
    assert quarantined(tmp_path).height == 1
    retry = ok(run(loaded, tmp_path))
    assert retry.files is not None
    assert retry.files["rejected"] == 1
    assert quarantined(tmp_path).height == 1
    assert sorted(table(tmp_path).get_column("id").to_list()) == [0, 1, 2]
    assert run(loaded, tmp_path).reason == "no new files"


def test_a_bad_file_fails_the_batch_by_default_even_with_quarantine(tmp_path: Path) -> None:
    spec = bad_file_flow()
    del spec["source"]["on_bad_file"]
    loaded = write_catalog(tmp_path, spec)
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    corrupt(tmp_path, "b.csv", "csv", at=1)
    failed = run(loaded, tmp_path)
    assert failed.status == "failed", failed
    assert "b.csv" in (failed.error or ""), failed
    assert not (tmp_path / "lake" / "events" / "_delta_log").exists()
    assert not (tmp_path / "lake" / "_quarantine").exists()


def test_on_bad_file_quarantine_needs_a_quarantine_block(tmp_path: Path) -> None:
    text = """\
version: 1
connections:
  raw: {kind: files, path: raw}
  lake: {kind: delta, path: lake}
dataflows:
  - name: no_table
    source: {format: csv, connection: raw, path: "*.csv", incremental: files,
             on_bad_file: quarantine}
    destination: {connection: lake, table: a, load: append}
  - name: no_mode
    source: {format: csv, connection: raw, path: "*.csv", on_bad_file: quarantine}
    destination: {connection: lake, table: b, load: append}
"""
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    expected = [
        ("catalog.yaml:", "no_table.source.on_bad_file", "needs the dataflow's quarantine block"),
        ("catalog.yaml:11: ", "no_mode.source.on_bad_file", "needs incremental: files"),
    ]
    for where, field, what in expected:
        line = next((line for line in message.splitlines() if field in line), None)
        assert line is not None, (field, message)
        assert where in line, (field, message)
        assert what in line, (field, message)


@pytest.mark.e2e
def test_the_cli_names_the_quarantined_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_catalog(tmp_path, bad_file_flow())
    drop(tmp_path, "a.csv", rows(range(3), "2024-01-01"), at=0)
    corrupt(tmp_path, "b.csv", "csv", at=1)
    cmd = [sys.executable, "-m", "coolie_core.cli", "run", str(tmp_path / "catalog.yaml")]
    cmd += ["--state-dir", str(tmp_path / "state")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 unreadable files quarantined (drop/b.csv)" in " ".join(done.stdout.split()), done.stdout
