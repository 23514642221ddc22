"""The SQLite batch store of parquet-folder destinations, opened by many dataflows at once."""

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coolie_core.watermarks import SqliteWatermarkStore


def test_a_new_store_opened_by_many_dataflows_at_once_is_created_once(tmp_path: Path) -> None:
    """Parallel first batches of parquet-folder dataflows share one new store: its table must be
    made once, not once per thread ("duplicate column name" from a second ALTER TABLE)."""
    for attempt in range(20):
        path = tmp_path / f"store-{attempt}.sqlite"
        start = threading.Barrier(8)

        def commit(n: int, path: Path = path, start: threading.Barrier = start) -> None:
            store = SqliteWatermarkStore(path)  # a Driver per process; threads share none of it
            start.wait()
            store.commit(f"flow{n}", batch=1, watermark=None, run_id="r")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(commit, range(8)))
        store = SqliteWatermarkStore(path)
        assert [store.read(f"flow{n}").batch for n in range(8)] == [1] * 8


def test_a_store_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE watermarks (dataflow TEXT PRIMARY KEY, batch INTEGER NOT NULL,"
            " watermark TEXT, source TEXT, updated_at TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO watermarks VALUES ('old', 3, NULL, 'fp', '2024-01-01T00:00:00+00:00')")
    store = SqliteWatermarkStore(path)
    assert (store.read("old").batch, store.read("old").source) == (3, "fp")
    store.commit("old", batch=4, watermark=None, run_id="r", files="f")
    assert (store.read("old").batch, store.read("old").run_id) == (4, "r")
