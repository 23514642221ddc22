"""``cast {ts: datetime}`` without a format on Spark: the same ISO-8601 texts as on Polars give the
same instants, the same other texts fail (naming column and value) or are quarantined alike."""

import json
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.engines import engine_by_name
from coolie_core.errors import DataError

pytestmark = pytest.mark.spark

GOOD = [
    "2024-03-01T10:00:00Z",
    "2024-03-01T10:00:00+02:00",
    "2024-03-01T10:00:00.123456789+0200",
    "2024-03-01 10:00:00",
    "2024-03-01T10:00:00.5",
    "2024-03-01 10:00",
    "2024-03-01T10:00-05:00",
    "2024-03-01",
]
# Spark's own cast takes the first three; neither engine may.
BAD = ["2024", "2024-3-1", " 2024-03-01T10:00:00", "2024-02-30 10:00:00", "01/03/2024 10:00"]


def _csv(path: Path, values: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,ts", *(f'{i},"{v}"' for i, v in enumerate(values, start=1)), f"{len(values) + 1},"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedCatalog:
    root = tmp_path_factory.mktemp("casts")
    _csv(root / "raw" / "good.csv", GOOD)
    _csv(root / "raw" / "mixed.csv", [*GOOD[:2], *BAD])
    cast = {"kind": "cast", "columns": {"ts": "datetime"}}

    def flow(name: str, file: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "source": {"format": "csv", "connection": "raw", "path": file},
            "transforms": [cast],
            "destination": {"connection": "lake", "table": name, "load": "append"},
            **extra,
        }

    document = {
        "connections": {
            "raw": {"kind": "files", "path": str(root / "raw")},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": [
            flow("good", "good.csv"),
            flow("strict", "mixed.csv"),
            flow("quarantined", "mixed.csv", quarantine={"max_rejected": "100%"}),
        ],
    }
    (root / "catalog.json").write_text(json.dumps(document), encoding="utf-8")
    return load_catalog(root / "catalog.json")


@pytest.mark.parametrize("name", ["good", "quarantined"])
def test_spark_parses_and_rejects_what_polars_does(loaded: LoadedCatalog, spark: Any, name: str) -> None:
    flow = loaded.catalog.dataflow(name)
    expected = engine_by_name("polars").read_frame(loaded.catalog, flow)
    actual = engine_by_name("spark").read_frame(loaded.catalog, flow)
    assert expected.get_column("ts").null_count() == (1 if name == "good" else 1 + len(BAD))
    assert_frame_equal(actual, expected, check_exact=True)


def test_a_failed_datetime_cast_names_column_and_value_on_spark(loaded: LoadedCatalog, spark: Any) -> None:
    flow = loaded.catalog.dataflow("strict")
    with pytest.raises(DataError, match=r"strict\.transforms\[0\] \(cast\): column ts: cannot cast 2024 to"):
        engine_by_name("spark").read_frame(loaded.catalog, flow)
