"""Empty files in a glob on Spark: zero rows, as on Polars (the batch reads the other files)."""

import json
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from coolie_core.catalog import load_catalog
from coolie_core.engines import engine_by_name

pytestmark = pytest.mark.spark


@pytest.mark.parametrize(
    ("fmt", "files"),
    [
        ("csv", {"a.csv": "", "b.csv": "id,v\n", "c.csv": "id,v\n1,x\n2,y\n"}),
        ("jsonl", {"a.jsonl": "", "b.jsonl": "\n", "c.jsonl": '{"id":1,"v":"x"}\n{"id":2,"v":"y"}\n'}),
    ],
    ids=["csv", "jsonl"],
)
def test_spark_skips_empty_files_like_polars(
    tmp_path: Path, spark: Any, fmt: str, files: dict[str, str]
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, content in files.items():
        (raw / name).write_text(content, encoding="utf-8")
    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(raw)},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
        },
        "dataflows": [
            {
                "name": "events",
                "source": {"format": fmt, "connection": "raw", "path": f"*.{fmt}"},
                "destination": {"connection": "lake", "table": "events", "load": "append"},
            }
        ],
    }
    (tmp_path / "catalog.json").write_text(json.dumps(document), encoding="utf-8")
    catalog = load_catalog(tmp_path / "catalog.json").catalog
    flow = catalog.dataflow("events")
    expected = engine_by_name("polars").read_frame(catalog, flow)
    actual = engine_by_name("spark").read_frame(catalog, flow)
    assert expected.rows() == [(1, "x"), (2, "y")]
    assert_frame_equal(actual, expected, check_exact=True)
