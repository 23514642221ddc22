"""A Dagster run tagged with a partition that is not a key of the asset is refused unloaded.

Dagster maps an unknown time-window key to some window without complaint (``2024-03-15`` on
monthly partitions ran April); the asset checks its run's partition tags before it reads.
"""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_dagster.definitions import build_definitions


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _flow(name: str, partitions: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"format": "parquet", "connection": "raw", "path": "events/*.parquet"},
        "destination": {"connection": "lake", "table": name, "load": "replace_window"},
        "partitions": partitions,
        "system_columns": False,
    }


@pytest.fixture
def defs(tmp_path: Path) -> dg.Definitions:
    raw = tmp_path / "raw" / "events"
    raw.mkdir(parents=True)
    days = _days(dt.date(2024, 1, 1), dt.date(2024, 7, 1))
    pl.DataFrame({"id": list(range(len(days))), "day": days}).write_parquet(raw / "part-0.parquet")
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            _flow("monthly", {"column": "day", "every": "month", "start": "2024-01-01", "end": "2024-07-01"}),
            _flow("by_id", {"column": "id", "every": "integer", "step": 50, "start": 0, "end": 182}),
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return build_definitions(path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _run(
    defs: dg.Definitions, flow: str, instance: dg.DagsterInstance, tags: dict[str, str]
) -> dg.ExecuteInProcessResult:
    asset = next(
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name == f"coolie__{flow}"
    )
    resources = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    return dg.materialize([asset], instance=instance, resources=resources, tags=tags, raise_on_error=False)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    assert data is not None
    assert data.user_failure_data is not None
    return str(data.user_failure_data.description)


@pytest.mark.parametrize(
    ("tags", "bad"),
    [
        ({"dagster/partition": "2024-03-15"}, "'2024-03-15' (dagster/partition)"),
        ({"dagster/partition": "2024-07-01"}, "'2024-07-01' (dagster/partition)"),
        (
            {
                "dagster/asset_partition_range_start": "2024-02-01",
                "dagster/asset_partition_range_end": "2024-05-15",
            },
            "'2024-05-15' (dagster/asset_partition_range_end)",
        ),
    ],
    ids=["mid-month", "after-end", "range-end"],
)
def test_unknown_time_window_key_is_refused_before_any_write(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict[str, str], bad: str
) -> None:
    """A key that is not a monthly partition fails the run naming the key and the valid range;
    the table keeps its version and rows."""
    assert _run(defs, "monthly", instance, {"dagster/partition": "2024-04-01"}).success
    table = tmp_path / "lake" / "monthly"
    before = pl.read_delta(str(table)).sort("id")
    result = _run(defs, "monthly", instance, tags)
    assert not result.success
    message = _failure(result)
    assert bad in message
    assert "dataflow monthly" in message
    assert "2024-01-01 to 2024-06-01" in message
    assert DeltaTable(str(table)).version() == 0
    assert pl.read_delta(str(table)).sort("id").equals(before)


def test_unknown_static_key_is_refused_listing_the_keys(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """Integer (static) partitions: an unknown key is refused with the valid keys; no table is made."""
    result = _run(defs, "by_id", instance, {"dagster/partition": "0-49"})
    assert not result.success
    message = _failure(result)
    assert "'0-49'" in message
    assert "0-50, 50-100, 100-150, 150-182" in message
    assert not (tmp_path / "lake" / "by_id").exists()


def test_inverted_range_is_refused(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A range whose start is after its end loads nothing."""
    tags = {
        "dagster/asset_partition_range_start": "2024-05-01",
        "dagster/asset_partition_range_end": "2024-02-01",
    }
    result = _run(defs, "monthly", instance, tags)
    assert not result.success
    assert "inverted" in _failure(result)
    assert not (tmp_path / "lake" / "monthly").exists()


def test_valid_keys_still_load(tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """A known key and a known range load their windows (the check refuses only unknown keys)."""
    assert _run(defs, "by_id", instance, {"dagster/partition": "150-182"}).success
    assert pl.read_delta(str(tmp_path / "lake" / "by_id"))["id"].to_list() == list(range(150, 182))
    tags = {
        "dagster/asset_partition_range_start": "2024-02-01",
        "dagster/asset_partition_range_end": "2024-03-01",
    }
    assert _run(defs, "monthly", instance, tags).success
    days = pl.read_delta(str(tmp_path / "lake" / "monthly"))["day"].sort().to_list()
    assert days == _days(dt.date(2024, 2, 1), dt.date(2024, 4, 1))


def test_stage_job_run_with_unknown_key_is_refused(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """The same refusal through the stage's partitioned job (as a schedule, sensor or the UI
    launches it): execute_in_process with the partition tag, nothing written."""
    job = defs.resolve_job_def("default__month")
    result = job.execute_in_process(
        instance=instance, tags={"dagster/partition": "2024-03-15"}, raise_on_error=False
    )
    assert not result.success
    assert "'2024-03-15' (dagster/partition) is not a partition" in _failure(result)
    assert not (tmp_path / "lake" / "monthly").exists()
    assert job.execute_in_process(instance=instance, tags={"dagster/partition": "2024-03-01"}).success
    assert DeltaTable(str(tmp_path / "lake" / "monthly")).version() == 0
