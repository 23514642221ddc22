"""Every source format and load strategy against real files, SQLite databases and Delta tables.

Each test writes a catalog into ``tmp_path``, runs it with the :class:`Driver` and reads the
destination back (rows, Delta version, commit metadata), not just the returned result.
"""

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import Driver, RunResult
from coolie_core.watermarks import SqliteWatermarkStore, decode_watermark, read_delta_watermark
from coolie_core.windows import Window

UTC = dt.UTC


# --------------------------------------------------------------------------- helpers


def catalog(tmp_path: Path, *flows: dict[str, Any], **connections: dict[str, Any]) -> dict[str, Any]:
    """A catalog document with a ``raw`` files connection and a ``lake`` Delta connection."""
    return {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            **connections,
        },
        "dataflows": list(flows),
    }


def dataflow(name: str, *, source: dict[str, Any], load: str = "append", **fields: Any) -> dict[str, Any]:
    """A dataflow writing the Delta table ``lake/<name>``; ``destination`` entries are merged in."""
    destination = {"connection": "lake", "table": name, "load": load, **fields.pop("destination", {})}
    return {"name": name, "source": source, "destination": destination, **fields}


def files(path: str, fmt: str = "parquet", **extra: Any) -> dict[str, Any]:
    return {"format": fmt, "connection": "raw", "path": path, **extra}


def write_rows(path: Path, rows: list[dict[str, Any]], fmt: str = "parquet") -> None:
    """Write ``rows`` as a source file in ``fmt`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "csv":
        frame.write_csv(path)
    elif fmt == "jsonl":
        frame.write_ndjson(path)
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:  # pragma: no cover - a test typo
        raise ValueError(fmt)


def run(loaded: LoadedCatalog, tmp_path: Path, **kwargs: Any) -> RunResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        return driver.run(**kwargs)


def table(path: Path, *, sort: str | list[str] = "id") -> pl.DataFrame:
    """A Delta table's rows without coolie's system columns, sorted."""
    frame = pl.read_delta(str(path))
    return frame.select([c for c in frame.columns if not c.startswith("_coolie_")]).sort(sort)


def version(path: Path) -> int:
    return DeltaTable(str(path)).version()


def succeeded(result: RunResult) -> RunResult:
    """The result, after checking that every dataflow succeeded (shows errors when not)."""
    assert result.ok, [(r.dataflow, r.error) for r in result.results if r.status == "failed"]
    assert all(r.status == "succeeded" for r in result.results), [
        (r.dataflow, r.status, r.reason) for r in result.results
    ]
    return result


ROWS = [
    {"id": 1, "name": "ann", "amount": 1.5},
    {"id": 2, "name": "bob", "amount": 2.5},
    {"id": 3, "name": "cy", "amount": 3.5},
]


# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "json"])
def test_file_source_formats_land_as_one_delta_commit(tmp_path: Path, write_catalog: Any, fmt: str) -> None:
    """Parquet, CSV, JSON lines and JSON-array files are read and appended as Delta version 0."""
    write_rows(tmp_path / "raw" / f"rows.{fmt}", ROWS, fmt)
    loaded = write_catalog(catalog(tmp_path, dataflow("rows", source=files(f"*.{fmt}", fmt))))

    result = succeeded(run(loaded, tmp_path)).result("rows")

    dest = tmp_path / "lake" / "rows"
    assert (result.rows_read, result.rows_written, result.delta_version) == (3, 3, 0)
    assert version(dest) == 0
    assert table(dest).to_dicts() == ROWS


def test_csv_cast_with_formats_gives_typed_columns(tmp_path: Path, write_catalog: Any) -> None:
    """A cast transform turns CSV strings into UTC datetimes, dates, decimals and booleans,
    parsing dates with the declared strptime formats."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "orders.csv").write_text(
        "id,ts,day,price,paid\n1,31/01/2024 23:15,01.02.2024,12.50,yes\n2,01/02/2024 08:00,29.02.2024,3.10,false\n",
        encoding="utf-8",
    )
    transforms = [
        {
            "kind": "cast",
            "columns": {
                "id": "int32",
                "ts": "datetime",
                "day": "date",
                "price": "decimal(10,2)",
                "paid": "boolean",
            },
            "formats": {"ts": "%d/%m/%Y %H:%M", "day": "%d.%m.%Y"},
        }
    ]
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "orders",
                source=files("orders.csv", "csv", options={"infer_schema": False}),
                transforms=transforms,
            ),
        )
    )

    succeeded(run(loaded, tmp_path))

    frame = table(tmp_path / "lake" / "orders")
    assert frame.schema["id"] == pl.Int32()
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert frame.schema["day"] == pl.Date()
    assert frame.schema["price"] == pl.Decimal(10, 2)
    assert frame.schema["paid"] == pl.Boolean()
    assert frame["ts"].to_list() == [
        dt.datetime(2024, 1, 31, 23, 15, tzinfo=UTC),
        dt.datetime(2024, 2, 1, 8, 0, tzinfo=UTC),
    ]
    assert frame["day"].to_list() == [dt.date(2024, 2, 1), dt.date(2024, 2, 29)]
    assert [str(v) for v in frame["price"].to_list()] == ["12.50", "3.10"]
    assert frame["paid"].to_list() == [True, False]


def test_delta_source_reads_upstream_table_after_it_is_written(tmp_path: Path, write_catalog: Any) -> None:
    """A dataflow reading another's Delta destination runs after it in the same run and sees its
    rows (with the source filter applied)."""
    write_rows(tmp_path / "raw" / "rows.parquet", ROWS)
    loaded = write_catalog(
        catalog(
            tmp_path,
            # Declared downstream-first: the run must still order by lineage.
            dataflow(
                "big",
                source={"format": "delta", "connection": "lake", "table": "rows", "filter": "amount > 2"},
                transforms=[{"kind": "drop", "columns": ["_coolie_loaded_at", "_coolie_run_id"]}],
            ),
            dataflow("rows", source=files("rows.parquet")),
        )
    )

    result = succeeded(run(loaded, tmp_path))

    assert [r.dataflow for r in result.results] == ["rows", "big"]
    assert table(tmp_path / "lake" / "big").to_dicts() == ROWS[1:]
    assert version(tmp_path / "lake" / "big") == 0


@pytest.mark.parametrize(
    "source",
    [
        {"format": "sql", "connection": "erp", "table": "payments"},
        {"format": "sql", "connection": "erp", "query": "SELECT id, name, amount FROM payments"},
    ],
    ids=["table", "query"],
)
def test_sqlite_source_via_sql_connection(tmp_path: Path, write_catalog: Any, source: dict[str, Any]) -> None:
    """A ``kind: sql`` connection with a ``sqlite:///`` URL reads a table or a query."""
    db = tmp_path / "erp.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE payments (id INTEGER PRIMARY KEY, name TEXT, amount REAL)")
        conn.executemany("INSERT INTO payments VALUES (:id, :name, :amount)", ROWS)
    conn.close()
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow("payments", source=source),
            erp={"kind": "sql", "url": f"sqlite:///{db}"},
        )
    )

    succeeded(run(loaded, tmp_path))

    assert table(tmp_path / "lake" / "payments").to_dicts() == ROWS


PYTHON_SOURCE = """
import polars as pl

def make(watermark=None):
    with open(__file__ + ".calls", "a") as log:
        log.write(repr(watermark) + "\\n")
    return pl.DataFrame({"id": [1, 2, 3], "tag": [TAG] * 3})
"""


def test_python_source_function_gets_the_stored_watermark(tmp_path: Path, write_catalog: Any) -> None:
    """A function in a ``.py`` file is the source; it is offered the stored watermark."""
    code = tmp_path / "src.py"
    code.write_text(PYTHON_SOURCE.replace("TAG", "'first'"), encoding="utf-8")
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "generated",
                source={"format": "python", "connection": "code", "function": "make"},
                watermark_columns=["id"],
            ),
            code={"kind": "python", "path": str(code)},
        )
    )

    succeeded(run(loaded, tmp_path))
    second = run(loaded, tmp_path).result("generated")

    dest = tmp_path / "lake" / "generated"
    assert table(dest).to_dicts() == [{"id": i, "tag": "first"} for i in (1, 2, 3)]
    assert (second.status, second.reason) == ("skipped", "no new rows")
    assert version(dest) == 0
    assert code.with_name("src.py.calls").read_text().splitlines() == ["None", "{'id': 3}"]


def test_python_sources_of_two_catalogs_do_not_share_a_module(tmp_path: Path, write_catalog: Any) -> None:
    """Two catalogs whose python connections have the same name but different files each call
    their own file (a long-lived process may load several catalogs)."""
    tags = {}
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "src.py").write_text(PYTHON_SOURCE.replace("TAG", repr(name)), encoding="utf-8")
        document = catalog(
            folder,
            dataflow("generated", source={"format": "python", "connection": "code", "function": "make"}),
            code={"kind": "python", "path": str(folder / "src.py")},
        )
        loaded = write_catalog(document, name=f"{name}.yaml")
        succeeded(run(loaded, folder))
        tags[name] = table(folder / "lake" / "generated")["tag"].unique().to_list()

    assert tags == {"one": ["one"], "two": ["two"]}


def test_parallel_dataflows_share_one_fully_loaded_python_module(tmp_path: Path, write_catalog: Any) -> None:
    """Dataflows of one python connection that start together in parallel all find their function:
    none sees the module while another thread is still executing it."""
    code = tmp_path / "slow_src.py"
    # The import takes a moment, so the other workers ask for the module while it is loading.
    code.write_text(
        "import time\nimport polars as pl\ntime.sleep(0.3)\n\n"
        "def make():\n    return pl.DataFrame({'id': [1, 2]})\n",
        encoding="utf-8",
    )
    names = ["p1", "p2", "p3", "p4"]
    flows = [
        dataflow(n, source={"format": "python", "connection": "code", "function": "make"}) for n in names
    ]
    document = catalog(tmp_path, *flows, code={"kind": "python", "path": str(code)})
    document["defaults"] = {"max_workers": 4}
    loaded = write_catalog(document)

    succeeded(run(loaded, tmp_path))

    for name in names:
        assert table(tmp_path / "lake" / name)["id"].to_list() == [1, 2]


# --------------------------------------------------------------------------- append / overwrite


def test_append_adds_rows_in_one_commit_per_run(tmp_path: Path, write_catalog: Any) -> None:
    """``append`` adds the rows read to the table: version 0, then version 1, one commit each."""
    source = tmp_path / "raw" / "batch.parquet"
    write_rows(source, ROWS[:2])
    loaded = write_catalog(catalog(tmp_path, dataflow("events", source=files("batch.parquet"))))
    dest = tmp_path / "lake" / "events"

    first = succeeded(run(loaded, tmp_path)).result("events")
    write_rows(source, ROWS[2:])  # the export was replaced with the next batch
    second = succeeded(run(loaded, tmp_path)).result("events")

    assert (first.delta_version, second.delta_version) == (0, 1)
    assert version(dest) == 1
    assert table(dest).to_dicts() == ROWS
    history = DeltaTable(str(dest)).history()
    assert len(history) == 2
    assert [h["operationParameters"]["mode"] for h in history] == ["Append", "Append"]


def test_overwrite_replaces_the_table_in_one_commit(tmp_path: Path, write_catalog: Any) -> None:
    """``overwrite`` replaces rows and schema with what was read, in one commit."""
    source = tmp_path / "raw" / "products.parquet"
    write_rows(source, ROWS)
    loaded = write_catalog(
        catalog(tmp_path, dataflow("products", source=files("*.parquet"), load="overwrite"))
    )
    dest = tmp_path / "lake" / "products"
    succeeded(run(loaded, tmp_path))

    write_rows(source, [{"id": 7, "name": "zed", "amount": 9.0, "colour": "red"}])
    result = succeeded(run(loaded, tmp_path)).result("products")

    assert result.delta_version == 1
    assert version(dest) == 1
    assert table(dest).to_dicts() == [{"id": 7, "name": "zed", "amount": 9.0, "colour": "red"}]
    history = DeltaTable(str(dest)).history()
    assert len(history) == 2
    assert history[0]["operationParameters"]["mode"] == "Overwrite"


# --------------------------------------------------------------------------- merge


def t(day: int, hour: int = 0) -> str:
    return f"2024-01-{day:02d}T{hour:02d}:00:00"


MERGE_CAST = [{"kind": "cast", "columns": {"ts": "datetime"}, "formats": {"ts": "%Y-%m-%dT%H:%M:%S"}}]


def merge_flow(**destination: Any) -> dict[str, Any]:
    return dataflow(
        "customers",
        source=files("customers/*.jsonl", "jsonl"),
        load="merge",
        transforms=MERGE_CAST,
        watermark_columns=["ts"],
        destination={"merge_keys": ["id"], **destination},
    )


def test_merge_upserts_and_keeps_latest_of_duplicate_keys(tmp_path: Path, write_catalog: Any) -> None:
    """``merge`` updates matched keys and inserts new ones in one commit; several source rows of
    one key keep the latest by the watermark column, whatever their input order."""
    raw = tmp_path / "raw" / "customers"
    write_rows(
        raw / "1.jsonl",
        [
            {"id": 1, "name": "a-new", "ts": t(2)},
            {"id": 1, "name": "a-old", "ts": t(1)},  # duplicate key in the very first load
            {"id": 2, "name": "b", "ts": t(1)},
            {"id": 3, "name": "c", "ts": t(1)},
        ],
        "jsonl",
    )
    loaded = write_catalog(catalog(tmp_path, merge_flow()))
    dest = tmp_path / "lake" / "customers"
    succeeded(run(loaded, tmp_path))
    write_rows(
        raw / "2.jsonl",
        [
            {"id": 2, "name": "b-latest", "ts": t(5)},
            {"id": 2, "name": "b-earlier", "ts": t(4)},
            {"id": 4, "name": "d", "ts": t(3)},
        ],
        "jsonl",
    )

    result = succeeded(run(loaded, tmp_path)).result("customers")

    assert version(dest) == 1
    assert result.delta_version == 1
    assert DeltaTable(str(dest)).history()[0]["operation"] == "MERGE"
    assert table(dest).select("id", "name").to_dicts() == [
        {"id": 1, "name": "a-new"},
        {"id": 2, "name": "b-latest"},
        {"id": 3, "name": "c"},
        {"id": 4, "name": "d"},
    ]
    assert read_delta_watermark(dest, dataflow="customers").value == {
        "ts": dt.datetime(2024, 1, 5, tzinfo=UTC)
    }


@pytest.mark.parametrize("existing", [False, True], ids=["first-load", "existing-table"])
def test_merge_duplicate_keys_fail_loudly_when_asked(
    tmp_path: Path, write_catalog: Any, existing: bool
) -> None:
    """``on_duplicate_keys: fail`` fails the dataflow with a DataError naming it and the key;
    nothing is written."""
    raw = tmp_path / "raw" / "customers"
    loaded = write_catalog(catalog(tmp_path, merge_flow(on_duplicate_keys="fail")))
    dest = tmp_path / "lake" / "customers"
    if existing:
        write_rows(raw / "1.jsonl", [{"id": 1, "name": "a", "ts": t(1)}], "jsonl")
        succeeded(run(loaded, tmp_path))
    write_rows(
        raw / "2.jsonl", [{"id": 9, "name": "x", "ts": t(2)}, {"id": 9, "name": "y", "ts": t(3)}], "jsonl"
    )

    result = run(loaded, tmp_path).result("customers")

    assert result.status == "failed"
    assert result.error_type == "DataError"
    assert result.error is not None
    assert "dataflow customers" in result.error
    assert "merge key" in result.error
    assert "'id': 9" in result.error
    if existing:
        assert version(dest) == 0
        assert table(dest)["id"].to_list() == [1]
    else:
        assert not dest.exists()


def test_merge_cdc_deletes_in_the_same_commit(tmp_path: Path, write_catalog: Any) -> None:
    """With ``cdc``, rows flagged as deletes remove their key; updates and inserts apply in the
    same single commit; a key inserted and deleted within one batch never appears."""
    raw = tmp_path / "raw" / "customers"
    write_rows(
        raw / "1.jsonl",
        [
            {"id": 1, "name": "a", "op": "I", "ts": t(1)},
            {"id": 2, "name": "b", "op": "I", "ts": t(1)},
            {"id": 3, "name": "c", "op": "I", "ts": t(1)},
            {"id": 9, "name": "gone", "op": "D", "ts": t(1)},  # delete of an unknown key
        ],
        "jsonl",
    )
    loaded = write_catalog(catalog(tmp_path, merge_flow(cdc={"column": "op", "delete": ["D"]})))
    dest = tmp_path / "lake" / "customers"
    succeeded(run(loaded, tmp_path))
    assert table(dest)["id"].to_list() == [1, 2, 3]
    write_rows(
        raw / "2.jsonl",
        [
            {"id": 2, "name": "b", "op": "D", "ts": t(2)},
            {"id": 3, "name": "c2", "op": "U", "ts": t(2)},
            {"id": 4, "name": "d", "op": "I", "ts": t(2)},
            {"id": 5, "name": "e", "op": "I", "ts": t(2)},
            {"id": 5, "name": "e", "op": "D", "ts": t(3)},
        ],
        "jsonl",
    )

    succeeded(run(loaded, tmp_path))

    assert version(dest) == 1
    assert table(dest).select("id", "name", "op").to_dicts() == [
        {"id": 1, "name": "a", "op": "I"},
        {"id": 3, "name": "c2", "op": "U"},
        {"id": 4, "name": "d", "op": "I"},
    ]


# --------------------------------------------------------------------------- replace_window


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_replace_window_replaces_only_the_windows_of_the_data(
    tmp_path: Path, write_catalog: Any, kind: str
) -> None:
    """A plain ``replace_window`` run replaces the calendar windows covering the rows read, in one
    commit; rows of other windows are untouched."""

    def at(month: int, day: int) -> dt.date | dt.datetime:
        value = dt.date(2024, month, day)
        return value if kind == "date" else dt.datetime(2024, month, day, 12, tzinfo=UTC)

    source = tmp_path / "raw" / "sales.parquet"
    write_rows(
        source,
        [
            {"id": 1, "day": at(1, 5), "amount": 1},
            {"id": 2, "day": at(1, 31), "amount": 2},
            {"id": 3, "day": at(2, 1), "amount": 3},
            {"id": 4, "day": at(2, 29), "amount": 4},
            {"id": 5, "day": at(3, 1), "amount": 5},
        ],
    )
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "sales",
                source=files("sales.parquet"),
                load="replace_window",
                partitions={"column": "day", "every": "month", "start": "2024-01-01"},
            ),
        )
    )
    dest = tmp_path / "lake" / "sales"
    succeeded(run(loaded, tmp_path))

    write_rows(source, [{"id": 6, "day": at(2, 10), "amount": 60}])  # February, corrected
    result = succeeded(run(loaded, tmp_path)).result("sales")

    assert result.delta_version == 1
    assert version(dest) == 1
    assert len(DeltaTable(str(dest)).history()) == 2
    assert table(dest).select("id", "amount").to_dicts() == [
        {"id": 1, "amount": 1},
        {"id": 2, "amount": 2},
        {"id": 5, "amount": 5},
        {"id": 6, "amount": 60},
    ]


def berlin_sales(tmp_path: Path, write_catalog: Any) -> LoadedCatalog:
    """Monthly date partitions aligned in Europe/Berlin (a month starts at 23:00 UTC the day before)."""
    write_rows(
        tmp_path / "raw" / "sales.parquet",
        [
            {"id": 1, "day": dt.date(2024, 1, 15), "amount": 1},
            {"id": 2, "day": dt.date(2024, 1, 31), "amount": 2},
            {"id": 3, "day": dt.date(2024, 2, 1), "amount": 3},
            {"id": 4, "day": dt.date(2024, 2, 29), "amount": 4},
            {"id": 5, "day": dt.date(2024, 3, 1), "amount": 5},
        ],
    )
    partitions = {"column": "day", "every": "month", "start": "2024-01-01", "timezone": "Europe/Berlin"}
    return write_catalog(
        catalog(
            tmp_path,
            dataflow("sales", source=files("sales.parquet"), load="replace_window", partitions=partitions),
        )
    )


def test_replace_window_on_dates_uses_the_partition_timezone(tmp_path: Path, write_catalog: Any) -> None:
    """With partitions in a non-UTC timezone, a date column's windows are that calendar's months:
    replacing February touches exactly Feb 1 .. Feb 29, not Jan 31 .. Feb 28 (the UTC dates of
    the window's instants)."""
    loaded = berlin_sales(tmp_path, write_catalog)
    dest = tmp_path / "lake" / "sales"
    succeeded(run(loaded, tmp_path))

    write_rows(
        tmp_path / "raw" / "sales.parquet",
        [
            {"id": 6, "day": dt.date(2024, 2, 1), "amount": 30},
            {"id": 7, "day": dt.date(2024, 2, 29), "amount": 40},
        ],
    )
    succeeded(run(loaded, tmp_path))

    assert version(dest) == 1
    assert table(dest).select("id", "amount").to_dicts() == [
        {"id": 1, "amount": 1},
        {"id": 2, "amount": 2},
        {"id": 5, "amount": 5},
        {"id": 6, "amount": 30},
        {"id": 7, "amount": 40},
    ]


def test_window_run_on_dates_reads_the_local_calendar_window(tmp_path: Path, write_catalog: Any) -> None:
    """Running the February window of Europe/Berlin partitions reads the rows dated Feb 1 .. Feb 29
    and replaces exactly those."""
    loaded = berlin_sales(tmp_path, write_catalog)
    dest = tmp_path / "lake" / "sales"
    succeeded(run(loaded, tmp_path))
    berlin = ZoneInfo("Europe/Berlin")
    february = Window(
        dt.datetime(2024, 2, 1, tzinfo=berlin),
        dt.datetime(2024, 3, 1, tzinfo=berlin),
        every="month",
        timezone="Europe/Berlin",
    )

    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run_one(loaded.catalog.dataflow("sales"), window=february)

    assert result.status == "succeeded", result.error
    assert result.rows_read == 2
    assert result.window == "2024-02-01"
    assert version(dest) == 1
    assert table(dest)["id"].to_list() == [1, 2, 3, 4, 5]


def test_replace_window_run_of_one_window_is_idempotent(tmp_path: Path, write_catalog: Any) -> None:
    """Running one explicit window reads only ``lo <= column < hi`` and replaces that window in one
    commit; running it again gives the same table and leaves the watermark alone."""
    write_rows(
        tmp_path / "raw" / "sales.parquet",
        [{"id": i, "day": dt.date(2024, m, 15), "amount": i} for i, m in enumerate((1, 2, 2, 3), start=1)],
    )
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "sales",
                source=files("sales.parquet"),
                load="replace_window",
                partitions={"column": "day", "every": "month", "start": "2024-01-01"},
            ),
        )
    )
    dest = tmp_path / "lake" / "sales"
    february = Window(dt.datetime(2024, 2, 1, tzinfo=UTC), dt.datetime(2024, 3, 1, tzinfo=UTC), every="month")
    flow = loaded.catalog.dataflow("sales")

    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run_one(flow, window=february)
        once = table(dest)
        second = driver.run_one(flow, window=february)

    assert (first.status, first.rows_read, first.delta_version) == ("succeeded", 2, 0)
    assert (second.status, second.rows_read, second.delta_version) == ("succeeded", 2, 1)
    assert table(dest).equals(once)
    assert table(dest)["id"].to_list() == [2, 3]
    commit = DeltaTable(str(dest)).history()[0]
    assert commit["coolie.window"] == "2024-02-01"
    assert "coolie.batch" not in commit
    assert DeltaTable(str(dest)).transaction_version("coolie:sales") is None


# --------------------------------------------------------------------------- scd2


def scd2_state(dest: Path) -> pl.DataFrame:
    return table(dest, sort=["id", "valid_from"]).select("id", "name", "valid_from", "valid_to", "is_current")


def d(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, tzinfo=UTC)


def test_scd2_history_rules(tmp_path: Path, write_catalog: Any) -> None:
    """SCD2: a change closes the current version and opens a new one; an unchanged row makes no
    version (and no commit); a late row is ignored; a change at the current version's timestamp
    corrects it in place; same-timestamp duplicates keep the later input row. Never two current
    rows per key."""
    source = tmp_path / "raw" / "dim.parquet"
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "dim",
                source=files("dim.parquet"),
                load="scd2",
                destination={"merge_keys": ["id"], "scd2": {"effective_column": "ts"}},
            ),
        )
    )
    dest = tmp_path / "lake" / "dim"

    def load(rows: list[tuple[int, str, int]], status: str = "succeeded") -> None:
        write_rows(source, [{"id": i, "name": n, "ts": d(day)} for i, n, day in rows])
        result = run(loaded, tmp_path).result("dim")
        assert result.status == status, result.error
        current = pl.read_delta(str(dest)).group_by("id").agg(pl.col("is_current").sum().alias("n"))
        assert current["n"].to_list() == [1] * current.height, "one current row per key"

    def state() -> list[tuple[int, str, int, int | None, bool]]:
        rows = scd2_state(dest).iter_rows()
        return [(i, n, vf.day, None if vt is None else vt.day, cur) for i, n, vf, vt, cur in rows]

    load([(1, "a", 1), (2, "b", 1)])
    assert version(dest) == 0
    assert state() == [(1, "a", 1, None, True), (2, "b", 1, None, True)]

    load([(1, "a2", 2), (2, "b", 2), (3, "c", 2)])  # changed, unchanged, new
    assert version(dest) == 1
    assert state() == [
        (1, "a", 1, 2, False),
        (1, "a2", 2, None, True),
        (2, "b", 1, None, True),
        (3, "c", 2, None, True),
    ]

    load([(1, "late", 1), (2, "b-fixed", 1), (3, "c", 2)])  # late, correction, unchanged
    assert version(dest) == 2
    assert state() == [
        (1, "a", 1, 2, False),
        (1, "a2", 2, None, True),
        (2, "b-fixed", 1, None, True),
        (3, "c", 2, None, True),
    ]

    load([(1, "a2", 2), (2, "b-fixed", 1), (3, "c", 2)], status="skipped")  # nothing changed
    assert version(dest) == 2

    # A chain of two changes in one batch, and two rows of one key at the same instant.
    load([(1, "a3", 3), (1, "a4", 4), (3, "x", 3), (3, "y", 3)])
    assert version(dest) == 3
    assert state() == [
        (1, "a", 1, 2, False),
        (1, "a2", 2, 3, False),
        (1, "a3", 3, 4, False),
        (1, "a4", 4, None, True),
        (2, "b-fixed", 1, None, True),
        (3, "c", 2, 3, False),
        (3, "y", 3, None, True),
    ]


def test_scd2_first_load_builds_a_version_chain(tmp_path: Path, write_catalog: Any) -> None:
    """The first SCD2 load of several rows per key writes one chain of versions per key in one
    commit; a row equal to the version before it adds nothing. The effective column (here the
    defaulted watermark column) is not a tracked column: a new timestamp alone is no change."""
    write_rows(
        tmp_path / "raw" / "dim.parquet",
        [
            {"id": 1, "name": "b", "ts": d(3)},
            {"id": 1, "name": "a", "ts": d(1)},
            {"id": 1, "name": "a", "ts": d(2)},  # same as the version before: no new version
            {"id": 2, "name": "x", "ts": d(1)},
        ],
    )
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow(
                "dim",
                source=files("dim.parquet"),
                load="scd2",
                watermark_columns=["ts"],  # the effective column defaults to the watermark column
                destination={"merge_keys": ["id"]},
            ),
        )
    )

    succeeded(run(loaded, tmp_path))

    dest = tmp_path / "lake" / "dim"
    assert version(dest) == 0
    assert scd2_state(dest).rows() == [
        (1, "a", d(1), d(3), False),
        (1, "b", d(3), None, True),
        (2, "x", d(1), None, True),
    ]

    # Later timestamps, same values: not a change, so no new version and no commit.
    write_rows(
        tmp_path / "raw" / "dim.parquet",
        [{"id": 1, "name": "b", "ts": d(5)}, {"id": 2, "name": "x", "ts": d(5)}],
    )
    result = run(loaded, tmp_path).result("dim")
    assert (result.status, result.reason) == ("skipped", "no changes: 2 rows match the current versions")
    assert (result.rows_read, result.rows_written, result.rows_filtered) == (2, 0, 2)
    assert version(dest) == 0


# --------------------------------------------------------------------------- parquet destination


def parquet_catalog(tmp_path: Path, load: str) -> dict[str, Any]:
    extra = {"watermark_columns": ["id"]} if load == "append" else {}
    flow = {
        "name": "export",
        "source": files("in/*.parquet"),
        "destination": {"connection": "out", "table": "export", "format": "parquet", "load": load},
        **extra,
    }
    return catalog(tmp_path, flow, out={"kind": "files", "path": str(tmp_path / "out")})


def parquet_rows(folder: Path) -> list[dict[str, Any]]:
    frame = pl.read_parquet(sorted(folder.glob("part-*.parquet")))
    return frame.drop("_coolie_loaded_at", "_coolie_run_id").sort("id").to_dicts()


def test_parquet_folder_append_commits_batches_in_the_sqlite_store(
    tmp_path: Path, write_catalog: Any
) -> None:
    """A parquet-folder destination gets one file per batch; the batch and watermark are committed
    in the state dir's SQLite store."""
    raw = tmp_path / "raw" / "in"
    write_rows(raw / "1.parquet", ROWS[:2])
    loaded = write_catalog(parquet_catalog(tmp_path, "append"))
    folder = tmp_path / "out" / "export"
    store = SqliteWatermarkStore(tmp_path / "state" / "watermarks.sqlite")

    succeeded(run(loaded, tmp_path))
    assert store.read("export").batch == 1
    assert store.read("export").value == {"id": 2}
    write_rows(raw / "2.parquet", ROWS[2:])
    succeeded(run(loaded, tmp_path))

    assert sorted(p.name[:15] for p in folder.glob("part-*.parquet")) == [
        "part-0000000001",
        "part-0000000002",
    ]
    assert parquet_rows(folder) == ROWS
    stored = store.read("export")
    assert (stored.batch, stored.value) == (2, {"id": 3})


def test_parquet_folder_overwrite_keeps_only_the_latest_batch(tmp_path: Path, write_catalog: Any) -> None:
    """Overwrite into a parquet folder leaves only the new batch's file."""
    raw = tmp_path / "raw" / "in"
    write_rows(raw / "1.parquet", ROWS[:2])
    loaded = write_catalog(parquet_catalog(tmp_path, "overwrite"))
    folder = tmp_path / "out" / "export"
    succeeded(run(loaded, tmp_path))

    (raw / "1.parquet").unlink()
    write_rows(raw / "2.parquet", ROWS[2:])
    succeeded(run(loaded, tmp_path))

    assert [p.name[:15] for p in folder.glob("part-*.parquet")] == ["part-0000000002"]
    assert parquet_rows(folder) == ROWS[2:]
    assert SqliteWatermarkStore(tmp_path / "state" / "watermarks.sqlite").read("export").batch == 2


# --------------------------------------------------------------------------- commit metadata


def test_every_commit_carries_coolie_metadata_and_app_transaction(tmp_path: Path, write_catalog: Any) -> None:
    """Each incremental commit records dataflow, run id, batch and watermark in its metadata, and
    the application transaction ``coolie:<name>`` equals the batch."""
    raw = tmp_path / "raw" / "events"
    write_rows(raw / "1.parquet", ROWS[:2])
    loaded = write_catalog(
        catalog(tmp_path, dataflow("events", source=files("events/*.parquet"), watermark_columns=["id"]))
    )
    dest = tmp_path / "lake" / "events"

    run_ids = []
    for batch, rows in ((1, ROWS[:2]), (2, ROWS[2:])):
        if batch == 2:
            write_rows(raw / "2.parquet", rows)
        run_ids.append(succeeded(run(loaded, tmp_path)).run_id)
        assert DeltaTable(str(dest)).transaction_version("coolie:events") == batch

    history = DeltaTable(str(dest)).history()  # newest first
    assert [h["coolie.dataflow"] for h in history] == ["events", "events"]
    assert [h["coolie.run_id"] for h in history] == run_ids[::-1]
    assert [str(h["coolie.batch"]) for h in history] == ["2", "1"]
    watermarks = [decode_watermark(h["coolie.watermark"], dataflow="events", store="test") for h in history]
    assert watermarks == [{"id": 3}, {"id": 2}]
    stored = read_delta_watermark(dest, dataflow="events")
    assert (stored.batch, stored.value) == (2, {"id": 3})
    # The run ids stamped into the rows match the commits that wrote them.
    rows = pl.read_delta(str(dest)).sort("id")
    assert rows["_coolie_run_id"].to_list() == [run_ids[0], run_ids[0], run_ids[1]]


# --------------------------------------------------------------------------- transforms


def test_row_transforms(tmp_path: Path, write_catalog: Any) -> None:
    """rename, derive (SQL), filter, dedup, hash, mask (hash and redact), drop and select apply in
    order; hashes are hex SHA-256 and separate fields unambiguously."""
    write_rows(
        tmp_path / "raw" / "people.parquet",
        [
            {
                "id": 1,
                "first": "ann",
                "last": "lee",
                "email": "ann@x.io",
                "pin": "1234",
                "amount": 5,
                "junk": 0,
            },
            {
                "id": 1,
                "first": "ann",
                "last": "lee",
                "email": "ann@x.io",
                "pin": "1234",
                "amount": 9,
                "junk": 0,
            },
            {"id": 2, "first": "ab", "last": "c", "email": None, "pin": None, "amount": 3, "junk": 0},
            {"id": 3, "first": "a", "last": "bc", "email": "a@x.io", "pin": "0000", "amount": -1, "junk": 0},
            {"id": 4, "first": "a", "last": "bc", "email": "a@x.io", "pin": "0000", "amount": 4, "junk": 0},
        ],
    )
    transforms = [
        {"kind": "rename", "columns": {"first": "first_name"}},
        {"kind": "derive", "columns": {"full": "first_name || ' ' || last", "double": "amount * 2"}},
        {"kind": "filter", "condition": "amount > 0"},
        {"kind": "dedup", "keys": ["id"], "order_by": ["amount"]},
        {"kind": "hash", "column": "key", "of": ["first_name", "last"]},
        {"kind": "mask", "columns": ["email"], "method": "hash"},
        {"kind": "mask", "columns": ["pin"], "method": "redact"},
        {"kind": "drop", "columns": ["junk"]},
        {"kind": "select", "columns": ["id", "full", "double", "key", "email", "pin"]},
    ]
    loaded = write_catalog(
        catalog(tmp_path, dataflow("people", source=files("people.parquet"), transforms=transforms))
    )

    succeeded(run(loaded, tmp_path))

    frame = table(tmp_path / "lake" / "people")
    assert frame.columns == ["id", "full", "double", "key", "email", "pin"]
    assert frame.select("id", "full", "double", "pin").to_dicts() == [
        {"id": 1, "full": "ann lee", "double": 18, "pin": "***"},
        {"id": 2, "full": "ab c", "double": 6, "pin": None},
        {"id": 4, "full": "a bc", "double": 8, "pin": "***"},
    ]
    keys = frame["key"].to_list()
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)
    assert keys[1] != keys[2], "('ab', 'c') and ('a', 'bc') must not hash alike"
    assert frame["email"].to_list() == [
        hashlib.sha256(b"ann@x.io").hexdigest(),
        None,
        hashlib.sha256(b"a@x.io").hexdigest(),
    ]

    # Stable: a second, separate load of the same rows gives the same hashes.
    loaded_again = write_catalog(
        catalog(tmp_path, dataflow("people_again", source=files("people.parquet"), transforms=transforms)),
        name="again.yaml",
    )
    succeeded(run(loaded_again, tmp_path))
    assert table(tmp_path / "lake" / "people_again")["key"].to_list() == keys


def test_aggregate_transform(tmp_path: Path, write_catalog: Any) -> None:
    """``aggregate`` groups by its keys and computes SQL aggregates."""
    write_rows(
        tmp_path / "raw" / "sales.parquet",
        [
            {"region": "eu", "amount": 1},
            {"region": "us", "amount": 10},
            {"region": "eu", "amount": 2},
        ],
    )
    transforms = [
        {"kind": "aggregate", "by": ["region"], "columns": {"total": "sum(amount)", "n": "count(amount)"}}
    ]
    loaded = write_catalog(
        catalog(
            tmp_path,
            dataflow("totals", source=files("sales.parquet"), transforms=transforms, load="overwrite"),
        )
    )

    succeeded(run(loaded, tmp_path))

    assert table(tmp_path / "lake" / "totals", sort="region").to_dicts() == [
        {"region": "eu", "total": 3, "n": 2},
        {"region": "us", "total": 10, "n": 1},
    ]


@pytest.mark.parametrize("system_columns", [True, False])
def test_system_columns(tmp_path: Path, write_catalog: Any, system_columns: bool) -> None:
    """Rows carry ``_coolie_loaded_at`` (UTC timestamp) and ``_coolie_run_id`` unless
    ``system_columns: false``."""
    write_rows(tmp_path / "raw" / "rows.parquet", ROWS)
    loaded = write_catalog(
        catalog(tmp_path, dataflow("rows", source=files("rows.parquet"), system_columns=system_columns))
    )

    result = succeeded(run(loaded, tmp_path))

    frame = pl.read_delta(str(tmp_path / "lake" / "rows"))
    if not system_columns:
        assert frame.columns == ["id", "name", "amount"]
        return
    assert frame.schema["_coolie_loaded_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["_coolie_run_id"] == pl.String()
    assert frame["_coolie_run_id"].unique().to_list() == [result.run_id]
    loaded_at = frame["_coolie_loaded_at"].unique().to_list()
    assert len(loaded_at) == 1
    assert loaded_at[0].tzinfo is not None
