"""Landing zones in Dagster: the file-arrival sensor launches them (again while a backlog waits)
and the materialisation metadata names the files loaded. A real Dagster instance, real assets."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_dagster.definitions import build_definitions

CLOCK = 1_700_000_000


def write_catalog(tmp_path: Path) -> Path:
    document = {
        "connections": {
            "raw": {"kind": "files", "path": "raw"},
            "lake": {"kind": "delta", "path": "lake"},
        },
        "dataflows": [
            {
                "name": "landing",
                "stage": "bronze",
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "drop/*.csv",
                    "incremental": "files",
                    "max_files_per_run": 2,
                },
                "destination": {"connection": "lake", "table": "events", "load": "append"},
            }
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def drop(tmp_path: Path, n: int) -> None:
    path = tmp_path / "raw" / "drop" / f"f{n}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"id,v\n{n},r{n}\n")
    os.utime(path, (CLOCK + n, CLOCK + n))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_sensor_launches_until_the_backlog_is_loaded_and_metadata_names_files(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(write_catalog(tmp_path))
    sensor = next(s for s in defs.sensors or [] if s.name == "coolie_file_arrival")
    asset = next(
        a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and "landing" in a.node_def.name
    )
    resources = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    for n in range(3):
        drop(tmp_path, n)
    cursor: str | None = None

    def tick() -> list[dg.RunRequest]:
        nonlocal cursor
        result = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        )
        cursor = result.cursor
        return list(result.run_requests or [])

    def materialize() -> dict[str, Any]:
        result = dg.materialize([asset], instance=instance, resources=resources)
        (event,) = result.get_asset_materialization_events()
        assert event.materialization is not None
        return {k: v.value for k, v in event.materialization.metadata.items()}

    first = tick()
    assert len(first) == 1
    assert first[0].asset_selection == [asset.key]
    metadata = materialize()
    assert metadata["coolie/files_loaded"] == 2
    assert metadata["coolie/files_first"] == ["drop/f0.csv", "drop/f1.csv"]
    assert metadata["coolie/files_pending"] == 1

    # No file changed, but one waits: the sensor launches the dataflow again (another run key).
    second = tick()
    assert len(second) == 1
    assert second[0].run_key != first[0].run_key
    assert tick()[0].run_key == second[0].run_key, "the same backlog is the same run key"
    assert materialize()["coolie/files_first"] == ["drop/f2.csv"]
    assert tick() == []

    # A file the sensor saw is loaded by the run it launched.
    drop(tmp_path, 3)
    assert len(tick()) == 1
    assert materialize()["coolie/files_first"] == ["drop/f3.csv"]
    assert tick() == []
    ids = pl.read_delta(str(tmp_path / "lake" / "events")).get_column("id").sort().to_list()
    assert ids == [0, 1, 2, 3]


def test_metadata_names_the_quarantined_unreadable_files(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    path = write_catalog(tmp_path)
    document = yaml.safe_load(path.read_text())
    (spec,) = document["dataflows"]
    spec["source"]["on_bad_file"] = "quarantine"
    spec["quarantine"] = {"max_rejected": 0, "rules": [{"kind": "not_null", "columns": ["id"]}]}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    defs = build_definitions(path)
    asset = next(
        a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and "landing" in a.node_def.name
    )
    resources = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    drop(tmp_path, 0)
    broken = tmp_path / "raw" / "drop" / "f1.csv"
    broken.write_text("id,v\n1,2,3,4\n")
    os.utime(broken, (CLOCK + 1, CLOCK + 1))
    result = dg.materialize([asset], instance=instance, resources=resources)
    (event,) = result.get_asset_materialization_events()
    assert event.materialization is not None
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["coolie/files_loaded"] == 1
    assert metadata["coolie/files_rejected"] == 1
    assert metadata["coolie/files_rejected_first"] == ["drop/f1.csv"]
