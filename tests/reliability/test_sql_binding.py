"""Watermark and window values reach SQL sources as bound parameters, never formatted into the
statement text.

A real SQLite database is the source. SQLAlchemy's ``before_cursor_execute`` event records every
statement and its parameters exactly as they go to the DBAPI driver (instrumentation, not a
mock: the statements run for real).
"""

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sqlalchemy import event
from sqlalchemy.engine import Engine

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import Driver
from coolie_core.windows import plan_windows

HOSTILE = "m'; DROP TABLE events; --"
"""A string watermark value that would end the statement if it were ever formatted into SQL."""


@dataclass
class Executed:
    """Statements and parameters the DBAPI cursor received, in order."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def record(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self.calls.append((statement, parameters))

    def selects(self) -> list[tuple[str, Any]]:
        return [(s, p) for s, p in self.calls if "FROM events" in s]


@pytest.fixture
def executed() -> Iterator[Executed]:
    """Record every statement any SQLAlchemy engine in this process executes during the test."""
    recorder = Executed()
    event.listen(Engine, "before_cursor_execute", recorder.record)
    try:
        yield recorder
    finally:
        event.remove(Engine, "before_cursor_execute", recorder.record)


def _database(path: Path, rows: list[tuple[int, int, str]]) -> None:
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE IF NOT EXISTS events (id INTEGER, n INTEGER, code TEXT, "we""ird" INTEGER)')
        db.executemany(
            'INSERT INTO events (id, n, code, "we""ird") VALUES (?, ?, ?, ?)', [(*r, r[0]) for r in rows]
        )


def _catalog(tmp_path: Path, **flow: Any) -> LoadedCatalog:
    doc = {
        "connections": {
            "db": {"kind": "sql", "url": "sqlite:///source.sqlite"},
            "lake": {"kind": "delta", "path": "lake"},
        },
        "dataflows": [
            {
                "name": "events",
                "source": {"format": "sql", "connection": "db", "table": "events"},
                "destination": {"connection": "lake", "table": "events"},
                "system_columns": False,
                **flow,
            }
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    return load_catalog(tmp_path / "catalog.yaml")


def test_integer_watermark_is_a_bound_parameter(tmp_path: Path, executed: Executed) -> None:
    """The stored watermark filters in the database, as a parameter; the SQL text never holds it."""
    _database(tmp_path / "source.sqlite", [(1_000_001, 1, "a"), (1_000_002, 2, "b")])
    loaded = _catalog(tmp_path, watermark_columns=["id"])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run().result("events")
        _database(tmp_path / "source.sqlite", [(1_000_003, 3, "c")])
        second = driver.run().result("events")
    assert (first.status, first.rows_written) == ("succeeded", 2), first.error
    assert (second.status, second.rows_read) == ("succeeded", 1), second.error
    (unbounded, _), (bounded, parameters) = executed.selects()
    assert "WHERE" not in unbounded
    assert bounded == 'SELECT * FROM events WHERE "id" > ?'
    assert list(parameters) == [1_000_002]
    assert all("1000002" not in statement for statement, _ in executed.calls)


def test_integer_window_bounds_are_bound_parameters(tmp_path: Path, executed: Executed) -> None:
    """Each window of integer partitions reads ``lo <= n < hi`` with both bounds as parameters."""
    _database(tmp_path / "source.sqlite", [(i, 7_770_000 + i * 400, "x") for i in range(6)])
    loaded = _catalog(
        tmp_path,
        partitions={"column": "n", "every": "integer", "step": 1_000, "start": 7_770_000, "end": 7_773_000},
        destination={"connection": "lake", "table": "events", "load": "replace_window"},
    )
    flow = loaded.catalog.dataflow("events")
    assert flow.partitions is not None
    windows = plan_windows(flow.partitions)
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        results = [driver.run_one(flow, window=w) for w in windows]
    assert [r.rows_written for r in results] == [3, 2, 1], [r.error for r in results]
    selects = executed.selects()
    assert [s for s, _ in selects] == ['SELECT * FROM events WHERE "n" >= ? AND "n" < ?'] * 3
    assert [list(p) for _, p in selects] == [[w.lo, w.hi] for w in windows]
    for statement, _ in executed.calls:
        assert not any(str(bound) in statement for w in windows for bound in (w.lo, w.hi)), statement


def test_column_names_are_quoted_by_the_dialect(tmp_path: Path, executed: Executed) -> None:
    """A watermark column whose name holds a double quote is quoted, not spliced in raw."""
    _database(tmp_path / "source.sqlite", [(1, 1, "a"), (2, 2, "b")])
    loaded = _catalog(tmp_path, watermark_columns=['we"ird'])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run().result("events")
        _database(tmp_path / "source.sqlite", [(3, 3, "c")])
        second = driver.run().result("events")
    assert (first.rows_written, second.rows_read) == (2, 1), (first.error, second.error)
    assert executed.selects()[-1] == ('SELECT * FROM events WHERE "we""ird" > ?', (2,))


def test_hostile_string_watermark_round_trips_without_harm(tmp_path: Path, executed: Executed) -> None:
    """A string watermark holding SQL is stored, read back and compared as data: the source
    table survives, no statement ever contains it, and only newer rows load next time."""
    source = tmp_path / "source.sqlite"
    _database(source, [(1, 1, "a"), (2, 2, HOSTILE)])
    loaded = _catalog(tmp_path, watermark_columns=["code"])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run().result("events")
        unchanged = driver.run().result("events")
        _database(source, [(3, 3, "b"), (4, 4, "n, after the hostile value")])
        third = driver.run().result("events")
    assert first.status == "succeeded", first.error
    assert first.watermark_after == {"code": HOSTILE}
    assert unchanged.watermark_before == {"code": HOSTILE}
    assert (unchanged.status, unchanged.rows_written) == ("skipped", 0)
    assert (third.rows_read, third.watermark_after) == (1, {"code": "n, after the hostile value"}), (
        third.error
    )
    loaded_rows = pl.read_delta(str(tmp_path / "lake" / "events")).sort("id")
    assert loaded_rows["code"].to_list() == ["a", HOSTILE, "n, after the hostile value"]
    with sqlite3.connect(source) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (4,)
    assert executed.selects()
    assert all("DROP" not in statement for statement, _ in executed.calls)
