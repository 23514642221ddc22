"""The streamed merge / replace_window (parquet sources, coolie_core.engines.polars.stream_rewrite) give
exactly what the collected path gives (jsonl sources), and the streaming path's native cast
check fails like the collected one (issue 17)."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.driver import DataflowResult, Driver
from coolie_core.engines.polars.stream_rewrite import _checks, _reader
from coolie_core.errors import TransientError
from coolie_core.models import Dataflow
from coolie_core.watermarks import ACCOUNTS_KEY

UTC = dt.UTC
FIELDS = ("status", "rows_read", "rows_written", "rows_filtered", "rows_late", "rows_without_watermark")


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    frame.write_parquet(path) if fmt == "parquet" else frame.write_ndjson(path)


def _catalog(tmp_path: Path, flow: dict[str, Any]) -> dict[str, Any]:
    return {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
        },
        "dataflows": [flow],
    }


def _run(loaded: Any, tmp_path: Path) -> DataflowResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        return driver.run().results[0]


def _counts(result: DataflowResult) -> tuple[Any, ...]:
    return tuple(getattr(result, f) for f in FIELDS)


def _last_accounts(dest: Path) -> dict[str, int]:
    return dict(json.loads(DeltaTable(str(dest)).history(limit=1)[0][ACCOUNTS_KEY]))


def _merge_flow(fmt: str, **destination: Any) -> dict[str, Any]:
    return {
        "name": "customers",
        "source": {"format": fmt, "connection": "raw", "path": f"customers/*.{fmt}"},
        "transforms": [{"kind": "filter", "condition": "name <> 'skip'"}],
        "watermark_columns": ["ts"],
        "destination": {"connection": "lake", "table": "customers", "load": "merge", "merge_keys": ["id"]}
        | destination,
    }


def _at(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, tzinfo=UTC)


def _merge_scenario(tmp_path: Path, write_catalog: Any, fmt: str) -> tuple[DataflowResult, list[Any], Any]:
    raw = tmp_path / "raw" / "customers"
    loaded = write_catalog(_catalog(tmp_path, _merge_flow(fmt)))
    _write(raw / f"1.{fmt}", [{"id": i, "name": f"n{i}", "ts": _at(1)} for i in range(1, 4)], fmt)
    assert _run(loaded, tmp_path).status == "succeeded"
    _write(
        raw / f"2.{fmt}",
        [
            {"id": 2, "name": "b-latest", "ts": _at(5)},
            {"id": 4, "name": "d", "ts": _at(3)},
            {"id": 2, "name": "b-earlier", "ts": _at(4)},  # folded: the latest of key 2 wins
            {"id": 5, "name": "skip", "ts": _at(3)},  # filtered by the declared rule
            {"id": 6, "name": "no ts", "ts": None},  # without a watermark value
        ],
        fmt,
    )
    result = _run(loaded, tmp_path)
    dest = tmp_path / "lake" / "customers"
    rows = pl.read_delta(str(dest)).sort("id").select("id", "name").rows()
    return result, rows, _last_accounts(dest)


def test_streamed_merge_matches_the_collected_merge(tmp_path: Path, write_catalog: Any) -> None:
    """Folded duplicate keys, filtered rows and rows without a watermark are counted the same;
    the table and the commit's accounting are the same."""
    streamed = _merge_scenario(tmp_path / "parquet", write_catalog, "parquet")
    collected = _merge_scenario(tmp_path / "jsonl", write_catalog, "jsonl")

    assert streamed[1] == [(1, "n1"), (2, "b-latest"), (3, "n3"), (4, "d")]
    assert _counts(streamed[0]) == ("succeeded", 5, 2, 2, 0, 1)
    assert streamed[0].watermark_after == {"ts": _at(5)}
    assert (_counts(streamed[0]), streamed[1], streamed[2]) == (
        _counts(collected[0]),
        collected[1],
        collected[2],
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_duplicate_merge_keys_fail_when_asked_and_nothing_is_written(
    tmp_path: Path, write_catalog: Any, fmt: str
) -> None:
    raw = tmp_path / "raw" / "customers"
    loaded = write_catalog(_catalog(tmp_path, _merge_flow(fmt, on_duplicate_keys="fail")))
    _write(raw / f"1.{fmt}", [{"id": 1, "name": "a", "ts": _at(1)}], fmt)
    assert _run(loaded, tmp_path).status == "succeeded"
    _write(
        raw / f"2.{fmt}", [{"id": 9, "name": "x", "ts": _at(2)}, {"id": 9, "name": "y", "ts": _at(3)}], fmt
    )

    result = _run(loaded, tmp_path)

    assert (result.status, result.error_type) == ("failed", "DataError")
    assert "merge key" in (result.error or "")
    assert "'id': 9" in (result.error or "")
    assert DeltaTable(str(tmp_path / "lake" / "customers")).version() == 0


def _window_scenario(tmp_path: Path, write_catalog: Any, fmt: str) -> tuple[DataflowResult, list[Any], Any]:
    raw = tmp_path / "raw" / "sales"
    flow = {
        "name": "sales",
        "source": {"format": fmt, "connection": "raw", "path": f"sales/*.{fmt}"},
        "transforms": [
            {"kind": "cast", "columns": {"day": "date"}},  # jsonl holds dates as text
            {"kind": "filter", "condition": "amount >= 0"},
        ],
        "partitions": {"column": "day", "every": "month", "start": "2024-01-01"},
        "destination": {"connection": "lake", "table": "sales", "load": "replace_window"},
    }
    loaded = write_catalog(_catalog(tmp_path, flow))
    days = [dt.date(2024, m, 10) for m in (1, 2, 3)]
    _write(raw / f"a.{fmt}", [{"id": i, "day": d, "amount": 1} for i, d in enumerate(days)], fmt)
    assert _run(loaded, tmp_path).status == "succeeded"
    (raw / f"a.{fmt}").unlink()
    _write(
        raw / f"b.{fmt}",
        [
            {"id": 10, "day": dt.date(2024, 2, 3), "amount": 5},
            {"id": 11, "day": dt.date(2024, 3, 4), "amount": 6},
            {"id": 12, "day": dt.date(2024, 5, 5), "amount": -1},  # filtered: May is not replaced
        ],
        fmt,
    )
    result = _run(loaded, tmp_path)
    dest = tmp_path / "lake" / "sales"
    rows = pl.read_delta(str(dest)).sort("id").select("id", "day").rows()
    return result, rows, _last_accounts(dest)


def test_streamed_replace_window_matches_the_collected_one(tmp_path: Path, write_catalog: Any) -> None:
    streamed = _window_scenario(tmp_path / "parquet", write_catalog, "parquet")
    collected = _window_scenario(tmp_path / "jsonl", write_catalog, "jsonl")

    assert streamed[1] == [(0, dt.date(2024, 1, 10)), (10, dt.date(2024, 2, 3)), (11, dt.date(2024, 3, 4))]
    assert _counts(streamed[0]) == ("succeeded", 3, 2, 1, 0, 0)
    assert (_counts(streamed[0]), streamed[1], streamed[2]) == (
        _counts(collected[0]),
        collected[1],
        collected[2],
    )


def test_a_source_changed_between_the_passes_aborts_the_write(write_catalog: Any, tmp_path: Path) -> None:
    """The write pass streams another number of rows than the first pass counted: the stream
    fails before delta-rs may commit (TransientError: the retry reads the source again)."""
    flow = Dataflow.model_validate(_merge_flow("parquet"))
    failures: list[BaseException] = []
    rows = pl.LazyFrame({"id": [1, 2, 3]})
    reader = _reader(
        rows, check=lambda _: None, finish=lambda: None, expected=2, flow=flow, failures=failures
    )

    with pytest.raises(TransientError, match="changed while it was read"):
        reader.read_all()

    assert len(failures) == 1  # kept for the error delta-rs raises instead


def _window_flow() -> Dataflow:
    return Dataflow.model_validate(
        {
            "name": "sales",
            "source": {"format": "parquet", "connection": "raw", "path": "sales/*.parquet"},
            "partitions": {"column": "day", "every": "month", "start": "2024-01-01"},
            "destination": {"connection": "lake", "table": "sales", "load": "replace_window"},
        }
    )


@pytest.mark.parametrize(
    ("load", "rows"),
    [
        ("merge", {"id": [1, 2, 2]}),  # as many rows as counted, but a key twice: not what was checked
        ("replace_window", {"day": [dt.date(2024, 2, 1), dt.date(2024, 4, 1), dt.date(2024, 2, 2)]}),
    ],
)
def test_rows_other_than_the_first_pass_saw_abort_the_write(load: str, rows: dict[str, Any]) -> None:
    """A merge's keys must be the distinct ones counted; a replace_window's rows must lie in the
    windows the predicate replaces (else rows outside them would be added, not replaced)."""
    flow = Dataflow.model_validate(_merge_flow("parquet")) if load == "merge" else _window_flow()
    check, finish = _checks(flow, expected=3, low=dt.date(2024, 2, 1), high=dt.date(2024, 3, 31))
    failures: list[BaseException] = []
    reader = _reader(pl.LazyFrame(rows), check=check, finish=finish, expected=3, flow=flow, failures=failures)

    with pytest.raises(TransientError, match="changed while it was read"):
        reader.read_all()

    assert len(failures) == 1


def test_a_streamed_strict_cast_fails_naming_column_value_and_count(
    tmp_path: Path, write_catalog: Any
) -> None:
    """The streaming path's cast check (native markers, checked per batch) gives the collected
    path's message; nothing is written."""
    raw = tmp_path / "raw" / "days"
    raw.mkdir(parents=True)
    lines = [f"{i},2024-01-{1 + i % 28:02d}" for i in range(100)] + ["100,soon", "101,later"]
    (raw / "a.csv").write_text("id,day\n" + "\n".join(lines) + "\n", encoding="utf-8")
    flow = {
        "name": "days",
        "source": {
            "format": "csv",
            "connection": "raw",
            "path": "days/*.csv",
            "options": {"infer_schema": False},
        },
        "transforms": [{"kind": "cast", "columns": {"day": "date"}, "formats": {"day": "%Y-%m-%d"}}],
        "destination": {"connection": "lake", "table": "days", "load": "append"},
    }
    result = _run(write_catalog(_catalog(tmp_path, flow)), tmp_path)

    assert (result.status, result.error_type, result.transient) == ("failed", "CastError", False)
    assert result.error == (
        "dataflow days.transforms[0] (cast): column day: cannot cast 'soon' to date (format %Y-%m-%d)"
        " (1 more in the same batch)"
    )
    assert not (tmp_path / "lake" / "days").exists()


def test_late_rows_of_a_two_column_watermark_are_the_rows_newer_in_neither(
    tmp_path: Path, write_catalog: Any
) -> None:
    """A new file's row newer in one watermark column loads; older in both is late; null in
    both has no watermark value: each counted once (the late rows' filter, issue 17)."""
    raw = tmp_path / "raw" / "events"
    flow = {
        "name": "events",
        "source": {"format": "parquet", "connection": "raw", "path": "events/*.parquet"},
        "watermark_columns": ["a", "b"],
        "destination": {"connection": "lake", "table": "events", "load": "append"},
    }
    loaded = write_catalog(_catalog(tmp_path, flow))
    _write(raw / "1.parquet", [{"id": 1, "a": 10, "b": 10}], "parquet")
    assert _run(loaded, tmp_path).status == "succeeded"
    _write(
        raw / "2.parquet",
        [{"id": 2, "a": 5, "b": 20}, {"id": 3, "a": 5, "b": 5}, {"id": 4, "a": None, "b": None}],
        "parquet",
    )

    result = _run(loaded, tmp_path)

    assert _counts(result) == ("succeeded", 3, 1, 0, 1, 1)
    assert pl.read_delta(str(tmp_path / "lake" / "events")).sort("id")["id"].to_list() == [1, 2]
