"""Incremental loads: watermarks, skipping, look-back and the failures that must write nothing.

Watermarks are checked where they are stored (the Delta commit log, the SQLite store), rows in
the destination table, and versions to prove that a skipped or failed run committed nothing.
"""

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import DataflowResult, Driver
from coolie_core.watermarks import SqliteWatermarkStore, read_delta_watermark

UTC = dt.UTC


# --------------------------------------------------------------------------- helpers


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


def ok(result: DataflowResult) -> DataflowResult:
    assert result.status == "succeeded", (result.status, result.reason, result.error)
    return result


def write_rows(path: Path, rows: list[dict[str, Any]], fmt: str = "parquet") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "csv":
        frame.write_csv(path)
    else:
        frame.write_ndjson(path)


def table(path: Path, sort: str = "id") -> pl.DataFrame:
    frame = pl.read_delta(str(path))
    return frame.select([c for c in frame.columns if not c.startswith("_coolie_")]).sort(sort)


def version(path: Path) -> int:
    return DeltaTable(str(path)).version()


CAST_TS = {"kind": "cast", "columns": {"ts": "datetime"}, "formats": {"ts": "%d/%m/%Y %H:%M"}}


def events_flow(fmt: str = "parquet", **extra: Any) -> dict[str, Any]:
    """Incremental append of ``raw/events/*.<fmt>`` with a day-first string timestamp."""
    return {
        "name": "events",
        "source": {"format": fmt, "connection": "raw", "path": f"events/*.{fmt}"},
        "transforms": [CAST_TS],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
        "watermark_columns": ["ts"],
        **extra,
    }


# --------------------------------------------------------------------------- watermarks


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_new_files_are_loaded_exactly_once_with_a_typed_watermark(
    tmp_path: Path, write_catalog: Any, fmt: str
) -> None:
    """Three runs with a file added before each load every row once; the watermark is the max of
    the *typed* timestamps (day-first strings: ``31/01`` sorts after ``01/02`` as text)."""
    raw = tmp_path / "raw" / "events"
    batches = [
        [{"id": 1, "ts": "31/01/2024 10:00"}, {"id": 2, "ts": "01/02/2024 08:00"}],
        [{"id": 3, "ts": "09/03/2024 00:00"}, {"id": 4, "ts": "10/02/2024 12:30"}],
        [{"id": 5, "ts": "02/04/2024 00:00"}, {"id": 6, "ts": "01/04/2024 23:59"}],
    ]
    expected_wm = [
        dt.datetime(2024, 2, 1, 8, 0, tzinfo=UTC),
        dt.datetime(2024, 3, 9, 0, 0, tzinfo=UTC),
        dt.datetime(2024, 4, 2, 0, 0, tzinfo=UTC),
    ]
    loaded = write_catalog(catalog(tmp_path, events_flow(fmt)))
    dest = tmp_path / "lake" / "events"

    for index, rows in enumerate(batches):
        write_rows(raw / f"batch-{index}.{fmt}", rows, fmt)
        result = ok(run_flow(loaded, tmp_path, "events"))

        assert result.rows_written == 2
        assert version(dest) == index
        loaded_ids = table(dest)["id"].to_list()
        assert loaded_ids == list(range(1, 2 * index + 3)), "each row exactly once"
        stored = read_delta_watermark(dest, dataflow="events")
        assert stored.batch == index + 1
        assert stored.value == {"ts": expected_wm[index]}
        assert result.watermark_after == {"ts": expected_wm[index]}
        assert table(dest)["ts"].max() == expected_wm[index]


def test_unchanged_source_and_no_new_rows_are_skipped_without_a_commit(
    tmp_path: Path, write_catalog: Any
) -> None:
    """Unchanged files are skipped by fingerprint; ``force`` reads again but loads no duplicate
    and commits nothing; new files holding only rows at or below the watermark are read, counted
    late and recorded in a commit without rows."""
    raw = tmp_path / "raw" / "events"
    write_rows(raw / "1.parquet", [{"id": 1, "ts": "01/01/2024 00:00"}, {"id": 2, "ts": "02/01/2024 00:00"}])
    loaded = write_catalog(catalog(tmp_path, events_flow()))
    dest = tmp_path / "lake" / "events"
    ok(run_flow(loaded, tmp_path, "events"))

    unchanged = run_flow(loaded, tmp_path, "events")
    assert (unchanged.status, unchanged.reason) == ("skipped", "source unchanged since batch 1")

    forced = run_flow(loaded, tmp_path, "events", force=True)
    assert (forced.status, forced.reason) == ("skipped", "no new rows")

    # A new file with a row equal to the watermark and an older one: nothing is newer.
    write_rows(raw / "2.parquet", [{"id": 3, "ts": "02/01/2024 00:00"}, {"id": 4, "ts": "01/01/2024 12:00"}])
    stale = run_flow(loaded, tmp_path, "events")
    # They are late: skipped by design, but counted, and the batch is recorded without rows so
    # that the next run neither reads nor reports them again.
    assert (stale.status, stale.reason, stale.rows_read, stale.rows_late) == (
        "skipped",
        "nothing to load: 2 late",
        2,
        2,
    )

    assert version(dest) == 1
    assert table(dest)["id"].to_list() == [1, 2]
    stored = read_delta_watermark(dest, dataflow="events")
    assert (stored.batch, stored.value) == (2, {"ts": dt.datetime(2024, 1, 2, tzinfo=UTC)})
    again = run_flow(loaded, tmp_path, "events")
    assert (again.status, again.reason, again.rows_late) == ("skipped", "source unchanged since batch 2", 0)


def test_sqlite_source_with_integer_watermark(tmp_path: Path, write_catalog: Any) -> None:
    """Rows inserted into a SQLite table between runs are loaded once, by an integer watermark."""
    db = tmp_path / "erp.sqlite"

    def insert(*ids: int) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS payments (payment_id INTEGER PRIMARY KEY, amount REAL, paid_at TEXT)"
            )
            conn.executemany(
                "INSERT INTO payments VALUES (?, ?, ?)",
                [(i, i * 1.5, f"2024-01-{i:02d}T10:00:00") for i in ids],
            )
        conn.close()

    insert(1, 2, 3)
    flow = {
        "name": "payments",
        "source": {"format": "sql", "connection": "erp", "table": "payments"},
        "transforms": [
            {"kind": "cast", "columns": {"paid_at": "datetime"}, "formats": {"paid_at": "%Y-%m-%dT%H:%M:%S"}}
        ],
        "destination": {"connection": "lake", "table": "payments", "load": "append"},
        "watermark_columns": ["payment_id"],
    }
    loaded = write_catalog(catalog(tmp_path, flow, erp={"kind": "sql", "url": f"sqlite:///{db}"}))
    dest = tmp_path / "lake" / "payments"

    first = ok(run_flow(loaded, tmp_path, "payments"))
    insert(4, 5)
    second = ok(run_flow(loaded, tmp_path, "payments"))
    third = run_flow(loaded, tmp_path, "payments")

    assert (first.rows_read, second.rows_read) == (3, 2)
    assert (third.status, third.reason) == ("skipped", "no new rows")
    assert version(dest) == 1
    assert table(dest, "payment_id")["payment_id"].to_list() == [1, 2, 3, 4, 5]
    assert read_delta_watermark(dest, dataflow="payments").value == {"payment_id": 5}
    assert table(dest, "payment_id")["paid_at"][-1] == dt.datetime(2024, 1, 5, 10, tzinfo=UTC)


def test_lookback_rereads_a_trailing_window_and_merge_keeps_it_idempotent(
    tmp_path: Path, write_catalog: Any
) -> None:
    """``lookback: {days: 1}`` re-reads rows up to a day before the stored watermark, so a
    late-arriving row inside that day is loaded; merging the re-read rows adds no duplicate and
    the watermark never moves backwards."""
    raw = tmp_path / "raw" / "events"
    write_rows(
        raw / "1.parquet",
        [{"id": 1, "v": "a", "ts": "01/01/2024 00:00"}, {"id": 2, "v": "b", "ts": "05/01/2024 10:00"}],
    )
    flow = events_flow(lookback={"days": 1})
    flow["destination"] = {"connection": "lake", "table": "events", "load": "merge", "merge_keys": ["id"]}
    loaded = write_catalog(catalog(tmp_path, flow))
    dest = tmp_path / "lake" / "events"
    ok(run_flow(loaded, tmp_path, "events"))

    write_rows(
        raw / "2.parquet",
        [
            {"id": 3, "v": "late", "ts": "05/01/2024 02:00"},  # older than the watermark, inside the day
            {"id": 4, "v": "too-late", "ts": "04/01/2024 09:00"},  # outside the look-back window
            {"id": 1, "v": "a2", "ts": "06/01/2024 00:00"},
        ],
    )
    second = ok(run_flow(loaded, tmp_path, "events"))

    # id 2 again, the late id 3, the update of id 1; id 4 is beyond the look-back: late, counted.
    assert (second.rows_read, second.rows_late, second.rows_written) == (4, 1, 3)
    assert table(dest).select("id", "v").to_dicts() == [
        {"id": 1, "v": "a2"},
        {"id": 2, "v": "b"},
        {"id": 3, "v": "late"},
    ]
    assert read_delta_watermark(dest, dataflow="events").value == {"ts": dt.datetime(2024, 1, 6, tzinfo=UTC)}

    before = table(dest)
    again = ok(run_flow(loaded, tmp_path, "events", force=True))
    assert again.rows_read == 3  # ids 1, 2 and 3 are within a day of the new watermark
    assert table(dest).equals(before)
    assert read_delta_watermark(dest, dataflow="events").value == {"ts": dt.datetime(2024, 1, 6, tzinfo=UTC)}


# --------------------------------------------------------------------------- failures write nothing


@pytest.mark.parametrize(
    "garbage",
    [
        "not json at all",
        "[1, 2]",
        '{"ts": {"type": "nonsense", "value": "1"}}',
        '{"ts": {"type": "datetime", "value": "yesterday"}}',
    ],
)
def test_corrupt_watermark_fails_naming_dataflow_and_table(
    tmp_path: Path, write_catalog: Any, garbage: str
) -> None:
    """A watermark in the Delta log that cannot be decoded fails the run with a WatermarkError
    naming the dataflow and the table; nothing is read into the table (no silent full reload)."""
    raw = tmp_path / "raw" / "events"
    write_rows(raw / "1.parquet", [{"id": 1, "ts": "01/01/2024 00:00"}])
    loaded = write_catalog(catalog(tmp_path, events_flow()))
    dest = tmp_path / "lake" / "events"
    ok(run_flow(loaded, tmp_path, "events"))
    # Another writer (or a bug) commits batch 2 with an unreadable watermark.
    empty = pl.read_delta(str(dest)).clear().to_arrow()
    write_deltalake(
        str(dest),
        empty,
        mode="append",
        commit_properties=CommitProperties(
            custom_metadata={"coolie.dataflow": "events", "coolie.batch": "2", "coolie.watermark": garbage},
            app_transactions=[Transaction("coolie:events", 2)],
        ),
    )
    write_rows(raw / "2.parquet", [{"id": 2, "ts": "02/01/2024 00:00"}])

    result = run_flow(loaded, tmp_path, "events")

    assert result.status == "failed"
    assert result.error_type == "WatermarkError"
    assert result.error is not None
    assert "dataflow events" in result.error
    assert str(dest) in result.error
    assert "corrupt" in result.error
    assert version(dest) == 1
    assert table(dest)["id"].to_list() == [1]


def test_watermark_whose_commit_is_missing_fails(tmp_path: Path, write_catalog: Any) -> None:
    """A batch recorded in the app transaction without a commit holding its watermark is an error
    naming the dataflow and the table, not a reload from scratch."""
    raw = tmp_path / "raw" / "events"
    write_rows(raw / "1.parquet", [{"id": 1, "ts": "01/01/2024 00:00"}])
    loaded = write_catalog(catalog(tmp_path, events_flow()))
    dest = tmp_path / "lake" / "events"
    ok(run_flow(loaded, tmp_path, "events"))
    write_deltalake(
        str(dest),
        pl.read_delta(str(dest)).clear().to_arrow(),
        mode="append",
        commit_properties=CommitProperties(app_transactions=[Transaction("coolie:events", 7)]),
    )
    write_rows(raw / "2.parquet", [{"id": 2, "ts": "02/01/2024 00:00"}])

    result = run_flow(loaded, tmp_path, "events")

    assert (result.status, result.error_type) == ("failed", "WatermarkError")
    assert result.error is not None
    assert "dataflow events" in result.error
    assert str(dest) in result.error
    assert "batch 7" in result.error
    assert version(dest) == 1


def test_corrupt_sqlite_watermark_fails_naming_the_store(tmp_path: Path, write_catalog: Any) -> None:
    """For a parquet destination a corrupt watermark in the SQLite store fails the run naming the
    dataflow and the store file; no file is written."""
    raw = tmp_path / "raw" / "events"
    write_rows(raw / "1.parquet", [{"id": 1, "ts": "01/01/2024 00:00"}])
    flow = events_flow()
    flow["destination"] = {"connection": "out", "table": "events", "format": "parquet", "load": "append"}
    loaded = write_catalog(catalog(tmp_path, flow, out={"kind": "files", "path": str(tmp_path / "out")}))
    ok(run_flow(loaded, tmp_path, "events"))
    store = tmp_path / "state" / "watermarks.sqlite"
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE watermarks SET watermark = '{broken' WHERE dataflow = 'events'")
    conn.close()
    write_rows(raw / "2.parquet", [{"id": 2, "ts": "02/01/2024 00:00"}])

    result = run_flow(loaded, tmp_path, "events")

    assert (result.status, result.error_type) == ("failed", "WatermarkError")
    assert result.error is not None
    assert "dataflow events" in result.error
    assert str(store) in result.error
    assert len(list((tmp_path / "out" / "events").glob("part-*.parquet"))) == 1
    assert SqliteWatermarkStore(store)._connect().execute("SELECT batch FROM watermarks").fetchone() == (1,)


@pytest.mark.parametrize(
    ("column", "bad"), [("qty", "abc"), ("ts", "31/13/2024 10:00")], ids=["int", "datetime"]
)
@pytest.mark.parametrize("existing", [False, True], ids=["new-table", "existing-table"])
def test_bad_cast_fails_naming_column_and_value(
    tmp_path: Path, write_catalog: Any, column: str, bad: str, existing: bool
) -> None:
    """A value that cannot be cast fails the dataflow with a DataError naming the dataflow, the
    column and the bad value; the table is not created, or not changed."""
    raw = tmp_path / "raw" / "events"
    flow = events_flow("csv", transforms=[CAST_TS, {"kind": "cast", "columns": {"qty": "int64"}}])
    loaded = write_catalog(catalog(tmp_path, flow))
    dest = tmp_path / "lake" / "events"
    raw.mkdir(parents=True)
    if existing:
        (raw / "1.csv").write_text("id,qty,ts\n1,5,01/01/2024 00:00\n", encoding="utf-8")
        ok(run_flow(loaded, tmp_path, "events"))
    good_ts, good_qty = "02/01/2024 00:00", "7"
    row = {"qty": good_qty, "ts": good_ts, column: bad}
    (raw / "2.csv").write_text(
        f"id,qty,ts\n2,{good_qty},{good_ts}\n3,{row['qty']},{row['ts']}\n", encoding="utf-8"
    )

    result = run_flow(loaded, tmp_path, "events")

    # CastError (a DataError) when coolie parses the text: a date, datetime or boolean.
    assert (result.status, result.error_type) == ("failed", "CastError" if column == "ts" else "DataError")
    assert result.error is not None
    assert "dataflow events" in result.error
    assert column in result.error
    assert bad in result.error
    if existing:
        assert version(dest) == 0
        assert table(dest)["id"].to_list() == [1]
        assert read_delta_watermark(dest, dataflow="events").batch == 1
    else:
        assert not dest.exists()
