"""A strict cast never judges rows an earlier filter removed, also now that casts before any
filter skip that guard (issue 17): the filtered row's bad value neither fails the run nor is cast."""

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from coolie_core.driver import Driver


@pytest.mark.parametrize("first", ["filter", "cast"])
def test_cast_after_a_filter_ignores_the_removed_rows(tmp_path: Path, write_catalog: Any, first: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("id,day\n1,2024-01-01\n2,not a date\n3,2024-01-03\n", encoding="utf-8")
    cast = {"kind": "cast", "columns": {"day": "date"}}
    drop_bad = {"kind": "filter", "condition": "id <> '2'"}
    loaded = write_catalog(
        {
            "connections": {
                "raw": {"kind": "files", "path": str(raw)},
                "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            },
            "dataflows": [
                {
                    "name": "days",
                    "source": {
                        "format": "csv",
                        "connection": "raw",
                        "path": "*.csv",
                        "options": {"infer_schema": False},
                    },
                    "transforms": [drop_bad, cast] if first == "filter" else [cast, drop_bad],
                    "destination": {"connection": "lake", "table": "days", "load": "append"},
                }
            ],
        }
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run().result("days")
    if first == "cast":  # the cast sees the bad value first: a strict cast fails, naming it
        assert result.status == "failed"
        assert "cannot cast 'not a date' to date" in (result.error or "")
        return
    assert result.status == "succeeded", result.error
    assert (result.rows_read, result.rows_written, result.rows_filtered) == (3, 2, 1)
    table = pl.read_delta(str(tmp_path / "lake" / "days")).sort("id")
    assert table["day"].cast(pl.String).to_list() == ["2024-01-01", "2024-01-03"]
