"""Source files at the edges: empty files in a glob, batches of only empty files, files that cannot
be read. Real files, real Delta tables, the real driver."""

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import DataflowResult, Driver


def _catalog(tmp_path: Path, fmt: str, **flow: Any) -> dict[str, Any]:
    return {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
        },
        "dataflows": [
            {
                "name": "events",
                "source": {"format": fmt, "connection": "raw", "path": f"*.{fmt}"},
                "destination": {"connection": "lake", "table": "events", "load": "append"},
                **flow,
            }
        ],
    }


def _run(loaded: LoadedCatalog, tmp_path: Path) -> DataflowResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        (result,) = driver.run().results
    return result


def _write(tmp_path: Path, files: dict[str, str | bytes]) -> None:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for name, content in files.items():
        path = raw / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _loaded(tmp_path: Path) -> pl.DataFrame:
    frame = pl.read_delta(str(tmp_path / "lake" / "events"))
    return frame.select(c for c in frame.columns if not c.startswith("_coolie_")).sort("id")


# Empty files sort first ("a..."), so they are the first file a reader sees.
EMPTY_AMONG_FULL = {
    "csv-0-bytes": ("csv", {"a.csv": "", "b.csv": "id,v\n1,x\n2,y\n"}),
    "csv-header-only": ("csv", {"a.csv": "id,v\n", "b.csv": "id,v\n1,x\n2,y\n"}),
    "csv-blank-lines": ("csv", {"a.csv": "\n\n", "b.csv": "id,v\n1,x\n2,y\n"}),
    "jsonl-0-bytes": ("jsonl", {"a.jsonl": "", "b.jsonl": '{"id":1,"v":"x"}\n{"id":2,"v":"y"}\n'}),
    "jsonl-blank-lines": ("jsonl", {"a.jsonl": "\n \n", "b.jsonl": '{"id":1,"v":"x"}\n{"id":2,"v":"y"}\n'}),
    "json-0-bytes": (
        "json",
        {"a.json": "", "b.json": json.dumps([{"id": 1, "v": "x"}, {"id": 2, "v": "y"}])},
    ),
    "json-empty-array": (
        "json",
        {"a.json": "[]", "b.json": json.dumps([{"id": 1, "v": "x"}, {"id": 2, "v": "y"}])},
    ),
}


@pytest.mark.parametrize(("fmt", "files"), EMPTY_AMONG_FULL.values(), ids=EMPTY_AMONG_FULL.keys())
def test_an_empty_file_in_a_glob_contributes_zero_rows(
    tmp_path: Path, write_catalog: Any, fmt: str, files: dict[str, str]
) -> None:
    """The batch loads the other files' rows, typed from them (a header-only CSV must not turn
    the ids into text)."""
    _write(tmp_path, files)
    result = _run(write_catalog(_catalog(tmp_path, fmt)), tmp_path)
    assert (result.status, result.rows_read, result.rows_written) == ("succeeded", 2, 2), result.error
    frame = _loaded(tmp_path)
    assert frame.schema["id"] == pl.Int64
    assert frame.rows() == [(1, "x"), (2, "y")]


ALL_EMPTY = {
    "csv": ("csv", {"a.csv": "", "b.csv": "id,v\n"}),
    "jsonl": ("jsonl", {"a.jsonl": "", "b.jsonl": "\n"}),
    "json": ("json", {"a.json": "[]", "b.json": ""}),
}


@pytest.mark.parametrize(("fmt", "files"), ALL_EMPTY.values(), ids=ALL_EMPTY.keys())
def test_a_batch_of_only_empty_files_is_skipped(
    tmp_path: Path, write_catalog: Any, fmt: str, files: dict[str, str]
) -> None:
    _write(tmp_path, files)
    loaded = write_catalog(_catalog(tmp_path, fmt, transforms=[{"kind": "cast", "columns": {"id": "int64"}}]))
    result = _run(loaded, tmp_path)
    assert result.status == "skipped", result.error
    assert result.rows_read == 0
    assert result.reason is not None
    assert "all 2 source file(s) are empty" in result.reason
    assert str(tmp_path / "raw" / f"a.{fmt}") in result.reason
    assert not (tmp_path / "lake" / "events").exists()


def test_parquet_files_with_zero_rows(tmp_path: Path, write_catalog: Any) -> None:
    """A zero-row parquet file among others adds nothing; a batch of only such files is skipped."""
    raw = tmp_path / "raw"
    raw.mkdir()
    schema = {"id": pl.Int64, "v": pl.String}
    pl.DataFrame(schema=schema).write_parquet(raw / "a.parquet")
    loaded = write_catalog(_catalog(tmp_path, "parquet"))

    first = _run(loaded, tmp_path)
    assert (first.status, first.rows_read) == ("skipped", 0), first.error
    assert not (tmp_path / "lake" / "events").exists()

    pl.DataFrame({"id": [1, 2], "v": ["x", "y"]}, schema=schema).write_parquet(raw / "b.parquet")
    second = _run(loaded, tmp_path)
    assert (second.status, second.rows_written) == ("succeeded", 2), second.error
    assert _loaded(tmp_path).rows() == [(1, "x"), (2, "y")]


def test_an_empty_new_file_in_an_incremental_landing_zone(tmp_path: Path, write_catalog: Any) -> None:
    """After a first batch, a new empty file (and a new header-only one) next to a new full file:
    the full file's rows load, nothing fails, nothing is counted late."""
    _write(tmp_path, {"1.csv": "id,v,ts\n1,x,2024-01-01T00:00:00Z\n"})
    loaded = write_catalog(
        _catalog(
            tmp_path,
            "csv",
            transforms=[{"kind": "cast", "columns": {"ts": "datetime"}}],
            watermark_columns=["ts"],
        )
    )
    assert _run(loaded, tmp_path).status == "succeeded"
    _write(tmp_path, {"2.csv": "", "3.csv": "id,v,ts\n", "4.csv": "id,v,ts\n2,y,2024-01-02T00:00:00+00:00\n"})

    result = _run(loaded, tmp_path)

    assert (result.status, result.rows_written, result.rows_late) == ("succeeded", 1, 0), result.error
    assert _loaded(tmp_path)["id"].to_list() == [1, 2]
    _write(tmp_path, {"5.csv": ""})
    assert _run(loaded, tmp_path).status == "skipped"  # only an empty file is new
    assert DeltaTable(str(tmp_path / "lake" / "events")).version() == 1


BROKEN = {
    # A parquet file cut short (no footer), a CSV row with too many fields, a JSON line cut off.
    "parquet-corrupt": ("parquet", "b.parquet", b"PAR1 this is not a parquet file"),
    "csv-bad-row": ("csv", "b.csv", "id,v\n3,z\n4,w,oops,extra\n"),
    "jsonl-bad-line": ("jsonl", "b.jsonl", '{"id": 3, "v": "z"}\n{"id": 4, "v":\n'),
    "json-bad": ("json", "b.json", '[{"id": 3, "v": "z"},'),
}


@pytest.mark.parametrize(("fmt", "name", "content"), BROKEN.values(), ids=BROKEN.keys())
def test_a_file_that_cannot_be_read_is_named(
    tmp_path: Path, write_catalog: Any, fmt: str, name: str, content: str | bytes
) -> None:
    """The run fails naming the dataflow and the file's path; nothing is written."""
    raw = tmp_path / "raw"
    raw.mkdir()
    good = pl.DataFrame({"id": [1, 2], "v": ["x", "y"]})
    if fmt == "parquet":
        good.write_parquet(raw / "a.parquet")
    elif fmt == "csv":
        good.write_csv(raw / "a.csv")
    elif fmt == "jsonl":
        good.write_ndjson(raw / "a.jsonl")
    else:
        good.write_json(raw / "a.json")
    _write(tmp_path, {name: content})

    result = _run(write_catalog(_catalog(tmp_path, fmt)), tmp_path)

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("dataflow events: cannot read source file")
    assert str(raw / name) in result.error
    assert str(raw / f"a.{fmt}") not in result.error
    assert result.transient is False  # the file stays broken: no retry
    assert not (tmp_path / "lake" / "events").exists()
