"""The Dagster code location against real Delta tables and an ephemeral Dagster instance.

Catalogs are written to ``tmp_path`` as YAML with small parquet and python sources; every
materialisation runs coolie's Driver for real.
"""

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.models import PartitionSpec
from coolie_core.sharding import assign_shard
from coolie_core.windows import plan_windows
from coolie_dagster.assets import JOB_INDEX_TAG, JOB_NUM_TAG, op_name_for
from coolie_dagster.definitions import DEMO_CATALOG, SOURCES_GROUP, build_definitions
from coolie_dagster.partitions import PartitionsError, build_partitions_def, windows_for_keys
from coolie_dagster.resources import CoolieResource
from coolie_dagster.translator import CoolieTranslator, code_version_of

UTC = dt.UTC
REPO = Path(__file__).resolve().parents[2]

FLAKY_SOURCE = '''
"""Python sources for the tests: one that fails twice, one with data that cannot be cast."""
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent


def _count(name: str) -> int:
    counter = HERE / f"{name}.calls"
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    return calls


def flaky() -> pl.DataFrame:
    if _count("flaky") <= 2:
        raise ConnectionError("the source dropped the connection")
    return pl.DataFrame({"id": [1, 2, 3]})


def bad_cast() -> pl.DataFrame:
    _count("bad_cast")
    return pl.DataFrame({"id": ["1", "two"]})
'''


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _partitioned(name: str, every: str, *, start: str, end: str, stage: str = "silver") -> dict[str, Any]:
    return {
        "name": name,
        "stage": stage,
        "source": {"format": "parquet", "connection": "raw", "path": "events/*.parquet"},
        "destination": {"connection": "lake", "table": f"silver/{name}", "load": "replace_window"},
        "partitions": {"column": "day", "every": every, "start": start, "end": end},
        "system_columns": False,
    }


def _write_catalog(tmp_path: Path) -> Path:
    """events (parquet) -> bronze; monthly/weekly/quarterly windows of it; python sources."""
    raw = tmp_path / "raw" / "events"
    raw.mkdir(parents=True)
    days = _days(dt.date(2024, 1, 1), dt.date(2024, 7, 1))
    pl.DataFrame(
        {"id": list(range(len(days))), "day": days, "amount": [i % 7 for i in range(len(days))]}
    ).write_parquet(raw / "part-0.parquet")
    (tmp_path / "sources.py").write_text(FLAKY_SOURCE)
    python_flow: dict[str, Any] = {"destination": {"connection": "lake", "load": "append"}, "stage": "bronze"}
    doc = {
        "defaults": {"retry": {"count": 2, "delay": 0, "backoff": "exponential"}},
        "stages": {"bronze": {"timeout": 600}, "silver": {}},
        "connections": {
            "raw": {"kind": "files", "path": "raw"},
            "lake": {"kind": "delta", "path": "lake"},
            "code": {"kind": "python", "path": "sources.py"},
        },
        "dataflows": [
            {
                "name": "events_bronze",
                "stage": "bronze",
                "source": {"format": "parquet", "connection": "raw", "path": "events/*.parquet"},
                "destination": {"connection": "lake", "table": "bronze/events", "load": "append"},
                "watermark_columns": ["id"],
                "owners": ["team:data"],
            },
            _partitioned("events_monthly", "month", start="2024-01-01", end="2024-07-01"),
            _partitioned("events_weekly", "week", start="2024-01-01", end="2024-03-04"),
            _partitioned("events_quarterly", "quarter", start="2024-01-01", end="2025-01-01"),
            {
                **_partitioned("events_hourly", "hour", start="2024-03-09", end="2024-03-12"),
                "partitions": {
                    "column": "day",
                    "every": "hour",
                    "start": "2024-03-09",
                    "end": "2024-03-12",
                    "timezone": "America/New_York",
                },
            },
            {
                **_partitioned("events_by_id", "integer", start="", end=""),
                "partitions": {"column": "id", "every": "integer", "step": 50, "start": 0, "end": 182},
            },
            {
                "name": "events_agg",
                "stage": "silver",
                "source": {"format": "delta", "connection": "lake", "table": "bronze/events"},
                "transforms": [{"kind": "aggregate", "by": ["amount"], "columns": {"n": "count(id)"}}],
                "destination": {"connection": "lake", "table": "silver/events_agg", "load": "overwrite"},
            },
            {
                **python_flow,
                "name": "flaky",
                "source": {"format": "python", "connection": "code", "function": "flaky"},
                "destination": {**python_flow["destination"], "table": "bronze/flaky"},
            },
            {
                **python_flow,
                "name": "bad_cast",
                "source": {"format": "python", "connection": "code", "function": "bad_cast"},
                "transforms": [{"kind": "cast", "columns": {"id": "int64"}}],
                "destination": {**python_flow["destination"], "table": "bronze/bad_cast"},
            },
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return _write_catalog(tmp_path)


@pytest.fixture
def defs(catalog_path: Path) -> dg.Definitions:
    return build_definitions(catalog_path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _asset(defs: dg.Definitions, flow: str) -> dg.AssetsDefinition:
    return next(
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name == f"coolie__{flow}"
    )


def _materialize(
    defs: dg.Definitions, flow: str, instance: dg.DagsterInstance, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    resources = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    return dg.materialize([_asset(defs, flow)], instance=instance, resources=resources, **kwargs)


def _materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (event,) = result.get_asset_materialization_events()
    materialization = event.materialization
    assert materialization is not None
    return materialization


def _table(tmp_path: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / table)).sort("id")


# --------------------------------------------------------------------------- catalog -> assets

DEMO_EXPECTED = [
    # dataflow, asset key, deps, group, kinds
    (
        "customers_bronze",
        "bronze/customers",
        {"source/raw/customers"},
        "bronze",
        {"polars", "delta", "coolie"},
    ),
    ("orders_bronze", "bronze/orders", {"source/raw/orders"}, "bronze", {"polars", "delta", "coolie"}),
    ("products_bronze", "bronze/products", {"source/raw/products"}, "bronze", {"polars", "delta", "coolie"}),
    ("payments_bronze", "bronze/payments", {"source/erp/payments"}, "bronze", {"polars", "delta", "coolie"}),
    ("customers_silver", "silver/customers", {"bronze/customers"}, "silver", {"polars", "delta", "coolie"}),
    ("orders_silver", "silver/orders", {"bronze/orders"}, "silver", {"polars", "delta", "coolie"}),
    ("daily_revenue", "gold/daily_revenue", {"silver/orders"}, "gold", {"polars", "delta", "coolie"}),
    ("customer_value", "gold/customer_value", {"silver/orders"}, "gold", {"polars", "delta", "coolie"}),
    ("dim_date", "gold/dim_date", {"source/code/date_dimension"}, "gold", {"polars", "delta", "coolie"}),
]
SMALL_EXPECTED = [
    ("events_bronze", "bronze/events", {"source/raw/events"}, "bronze", {"polars", "delta", "coolie"}),
    (
        "events_monthly",
        "silver/events_monthly",
        {"source/raw/events"},
        "silver",
        {"polars", "delta", "coolie"},
    ),
    ("events_agg", "silver/events_agg", {"bronze/events"}, "silver", {"polars", "delta", "coolie"}),
    ("flaky", "bronze/flaky", {"source/code/flaky"}, "bronze", {"polars", "delta", "coolie"}),
]


def _check_assets(path: Path, expected: list[tuple[str, str, set[str], str, set[str]]]) -> None:
    defs = build_definitions(path)
    loaded = load_catalog(path)
    graph = defs.resolve_asset_graph()
    for flow, key, deps, group, kinds in expected:
        asset_key = dg.AssetKey.from_user_string(key)
        spec = next(s for s in _asset(defs, flow).specs)
        assert spec.key == asset_key
        assert {d.asset_key.to_user_string() for d in spec.deps} == deps
        assert spec.group_name == group
        assert spec.kinds == kinds
        assert spec.code_version == code_version_of(loaded, loaded.catalog.dataflow(flow))
        # Lineage: the asset's parents are the upstream dataflows' keys (or the raw source).
        assert {p.to_user_string() for p in graph.get(asset_key).parent_keys} == deps
    op_names = [a.node_def.name for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    assert len(op_names) == len(set(op_names)) == len(loaded.catalog.dataflows)
    assert set(op_names) == {op_name_for(f) for f in loaded.catalog.dataflows}
    # Every dependency nobody produces is an external (non-materialisable) source asset.
    produced = {dg.AssetKey.from_user_string(k) for _, k, *_ in expected}
    for _, _, deps, _, _ in expected:
        for dep in map(dg.AssetKey.from_user_string, deps):
            node = graph.get(dep)
            assert node.is_materializable == (dep in produced or dep.path[0] != "source")
            if dep.path[0] == "source":
                assert node.group_name == SOURCES_GROUP
    dg.Definitions.validate_loadable(defs)


def test_demo_catalog_assets_match_lineage() -> None:
    """Demo: each dataflow is one asset keyed by its destination, depending on its upstream
    dataflows (or an external source asset), grouped by stage, with kinds and code version."""
    _check_assets(DEMO_CATALOG, DEMO_EXPECTED)


def test_small_catalog_assets_match_lineage(catalog_path: Path) -> None:
    """The same mapping holds for a catalog written in the test."""
    _check_assets(catalog_path, SMALL_EXPECTED)


def test_stage_jobs_split_by_partitions_definition(defs: dg.Definitions) -> None:
    """One job per stage and partitions definition, never per dataflow; runs carry the stage tag
    and the stage timeout as dagster/max_runtime."""
    jobs = {job.name: defs.resolve_job_def(job.name) for job in defs.jobs or []}
    assert set(jobs) == {
        "bronze", "silver", "silver__month", "silver__week", "silver__quarter", "silver__hour", "silver__integer50",
    }  # fmt: skip
    assert jobs["bronze"].partitions_def is None
    assert jobs["silver__month"].partitions_def == build_partitions_def(
        PartitionSpec(column="x", every="month", start=dt.date(2024, 1, 1), end=dt.date(2024, 7, 1))
    )
    assert {k.to_user_string() for k in jobs["silver"].asset_layer.executable_asset_keys} == {
        "silver/events_agg"
    }
    assert jobs["bronze"].run_tags == {"coolie/stage": "bronze", "dagster/max_runtime": "600"}
    assert jobs["silver"].run_tags == {"coolie/stage": "silver"}


# --------------------------------------------------------------------------- partitions

PLAN_CASES = [
    ("events_monthly", "month", 6),
    ("events_weekly", "week", 9),
    ("events_quarterly", "quarter", 4),
    ("events_hourly", "hour", 71),  # 3 days in New York across the spring-forward gap
]


def test_partition_keys_equal_coolie_plan_windows(catalog_path: Path, defs: dg.Definitions) -> None:
    """Monthly, weekly, quarterly and hourly assets have exactly the windows ``coolie plan
    --json --windows`` prints (and ``plan_windows`` computes) as partition keys."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "coolie"), "plan", str(catalog_path), "--json", "--windows"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    printed = {row["dataflow"]: row["windows"] for row in json.loads(out.stdout)}
    loaded = load_catalog(catalog_path)
    for flow, every, count in PLAN_CASES:
        partitions_def = _asset(defs, flow).partitions_def
        assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition), flow
        keys = partitions_def.get_partition_keys()
        spec = loaded.catalog.dataflow(flow).partitions
        assert spec is not None
        assert spec.every == every
        assert keys == [w.key for w in plan_windows(spec)] == printed[flow]
        assert len(keys) == count


KEY_CASES = [
    # spec fields, expected Dagster definition type
    ({"every": "year", "start": "2020-01-01", "end": "2024-01-01"}, dg.TimeWindowPartitionsDefinition),
    ({"every": "month", "start": "2024-01-01", "timezone": "Europe/Berlin"}, dg.MonthlyPartitionsDefinition),
    ({"every": "week", "start": "2024-01-01", "end": "2024-12-30"}, dg.WeeklyPartitionsDefinition),
    ({"every": "day", "start": "2024-03-01", "end": "2024-04-01", "timezone": "Europe/Berlin"}, dg.DailyPartitionsDefinition),
    ({"every": "hour", "start": "2024-11-02", "end": "2024-11-04", "timezone": "America/New_York"}, dg.HourlyPartitionsDefinition),
    ({"every": "hour", "step": 6, "start": "2024-03-09", "end": "2024-03-12", "timezone": "Europe/Berlin"}, dg.TimeWindowPartitionsDefinition),
    ({"every": "minute", "step": 15, "start": "2024-03-09", "end": "2024-03-11", "timezone": "America/New_York"}, dg.TimeWindowPartitionsDefinition),
    ({"every": "minute", "step": 120, "start": "2024-01-01", "end": "2024-01-03"}, dg.TimeWindowPartitionsDefinition),
    ({"every": "month", "start": "2024-01-15", "end": "2024-04-10"}, dg.StaticPartitionsDefinition),
    ({"every": "week", "start": "2024-01-03", "end": "2024-02-01"}, dg.StaticPartitionsDefinition),
    ({"every": "day", "step": 7, "start": "2024-01-01", "end": "2024-03-01"}, dg.StaticPartitionsDefinition),
    ({"every": "minute", "step": 45, "start": "2024-01-01", "end": "2024-01-02"}, dg.StaticPartitionsDefinition),
    ({"every": "integer", "step": 1000, "start": 0, "end": 4500}, dg.StaticPartitionsDefinition),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "kind"), KEY_CASES, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_partition_keys_are_window_keys(fields: dict[str, Any], kind: type) -> None:
    """Every cadence maps to Dagster partitions whose keys are exactly the planned window keys,
    calendar-aligned ones as time windows, the rest as a static list; each key maps back to
    its window."""
    spec = PartitionSpec.model_validate({"column": "ts", **fields})
    now = dt.datetime(2025, 1, 15, 12, tzinfo=UTC)  # after every end; bounds the open-ended case
    partitions_def = build_partitions_def(spec)
    assert type(partitions_def) is kind
    keys = partitions_def.get_partition_keys(current_time=now) if partitions_def else []
    windows = plan_windows(spec, now=now)
    assert keys == [w.key for w in windows]
    assert windows_for_keys(spec, reversed(keys[:3])) == windows[:3]


def test_minute_steps_across_fall_back_follow_core_rule() -> None:
    """Across a fall-back night the repeated quarter-hours are windows twice (first and second
    occurrence), as coolie_core's windows module documents and Dagster computes."""
    spec = PartitionSpec.model_validate(
        {"column": "ts", "every": "minute", "step": 15, "start": "2024-11-03T00:00",
         "end": "2024-11-03T03:00", "timezone": "America/New_York"}
    )  # fmt: skip
    partitions_def = build_partitions_def(spec)
    assert partitions_def is not None
    keys = partitions_def.get_partition_keys()
    assert {"2024-11-03-01:15", "2024-11-03-01:15-0500"} <= set(keys)
    assert [w.key for w in plan_windows(spec)] == keys


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"every": "integer", "step": 10, "start": 0}, "integer partitions"),
        ({"every": "month", "start": "2024-01-15"}, r".*\(a partial first chunk\)"),
        ({"every": "day", "step": 2, "start": "2024-01-01"}, "every: day with step 2"),
    ],
)
def test_static_partitions_without_end_are_refused(fields: dict[str, Any], message: str) -> None:
    """Partitions that need a fixed key list but have no end fail with an error naming the dataflow."""
    spec = PartitionSpec.model_validate({"column": "ts", **fields})
    with pytest.raises(
        PartitionsError, match=rf"^dataflow my_flow: partitions: {message}.*add partitions\.end"
    ):
        build_partitions_def(spec, dataflow="my_flow")


# --------------------------------------------------------------------------- materialisation


def test_partition_materialised_twice_leaves_same_table(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A partition run replaces exactly its window: running it twice leaves the same rows, only
    that month's, with one new Delta version per run."""
    first = _materialize(defs, "events_monthly", instance, partition_key="2024-02-01")
    assert first.success
    once = _table(tmp_path, "silver/events_monthly")
    second = _materialize(defs, "events_monthly", instance, partition_key="2024-02-01")
    assert second.success
    twice = _table(tmp_path, "silver/events_monthly")
    assert twice.equals(once)
    assert twice["day"].to_list() == _days(dt.date(2024, 2, 1), dt.date(2024, 3, 1))
    assert DeltaTable(str(tmp_path / "lake" / "silver" / "events_monthly")).version() == 1
    metadata = _materialization(second).metadata
    assert metadata["coolie/windows"].value == "2024-02-01"
    assert metadata["dagster/row_count"].value == 29
    assert metadata["coolie/delta_version"].value == 1


def test_range_run_processes_chunks_in_calendar_order(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A 3-partition range runs as one run (single_run backfill) that commits the three monthly
    windows oldest first, and marks all three partitions materialised."""
    job = defs.resolve_job_def("silver__month")
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-02-01",
            "dagster/asset_partition_range_end": "2024-04-01",
        },
    )
    assert result.success
    history = DeltaTable(str(tmp_path / "lake" / "silver" / "events_monthly")).history()
    windows = [c["coolie.window"] for c in reversed(history) if "coolie.window" in c]
    assert windows == ["2024-02-01", "2024-03-01", "2024-04-01"]
    assert _table(tmp_path, "silver/events_monthly")["day"].to_list() == _days(
        dt.date(2024, 2, 1), dt.date(2024, 5, 1)
    )
    key = dg.AssetKey(["silver", "events_monthly"])
    assert instance.get_materialized_partitions(key) == {"2024-02-01", "2024-03-01", "2024-04-01"}


def test_static_range_run_processes_integer_chunks_in_order(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """Integer partitions are static keys; a range over them replaces each chunk in key order."""
    job = defs.resolve_job_def("silver__integer50")
    assert job.partitions_def == dg.StaticPartitionsDefinition(["0-50", "50-100", "100-150", "150-182"])
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "50-100",
            "dagster/asset_partition_range_end": "150-182",
        },
    )
    assert result.success
    history = DeltaTable(str(tmp_path / "lake" / "silver" / "events_by_id")).history()
    assert [c["coolie.window"] for c in reversed(history)] == ["50-100", "100-150", "150-182"]
    assert _table(tmp_path, "silver/events_by_id")["id"].to_list() == list(range(50, 182))
    events = result.get_asset_materialization_events()
    assert sorted(str(e.partition) for e in events) == ["100-150", "150-182", "50-100"]
    # One materialisation per partition, each with its own figures and preview.
    by_partition = {str(e.partition): e.materialization.metadata for e in events if e.materialization}
    for partition, rows, lo in (("50-100", 50, 50), ("100-150", 50, 100), ("150-182", 32, 150)):
        metadata = by_partition[partition]
        assert metadata["dagster/row_count"].value == rows
        assert metadata["coolie/rows_written"].value == rows
        assert metadata["coolie/rows_read"].value == rows
        assert metadata["coolie/window"].value == partition
        preview = metadata["coolie/preview"].value
        assert isinstance(preview, dg.TableMetadataValue)
        assert [r.data["id"] for r in preview.records] == list(range(lo, lo + 5))
        assert metadata["coolie/rows_by_window"].value == {"50-100": 50, "100-150": 50, "150-182": 32}
    key = dg.AssetKey(["silver", "events_by_id"])
    for partition, rows in (("50-100", 50), ("150-182", 32)):  # as the instance stores them
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        stored = records[0].asset_materialization
        assert stored is not None
        assert stored.metadata["dagster/row_count"].value == rows


def test_unpartitioned_metadata_and_skipped_rerun(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """An incremental run reports rows, watermark before/after, Delta version and a preview; a rerun
    with an unchanged source still materialises (downstream may run) with status skipped."""
    result = _materialize(defs, "events_bronze", instance)
    metadata = _materialization(result).metadata
    assert metadata["dagster/row_count"].value == 182
    assert metadata["coolie/rows_read"].value == 182
    assert metadata["coolie/status"].value == "succeeded"
    assert metadata["coolie/watermark_before"].value == "none"
    assert metadata["coolie/watermark_after"].value == "id=181"
    assert metadata["coolie/delta_version"].value == 0
    preview = metadata["coolie/preview"].value
    assert isinstance(preview, dg.TableMetadataValue)
    assert len(preview.records) == 5
    assert {c.name for c in preview.schema.columns} >= {"id", "day", "amount", "_coolie_run_id"}
    assert _table(tmp_path, "bronze/events")["_coolie_run_id"].unique().to_list() == [result.run_id]

    # Dagster's metadata conventions: where the table is, its name and its columns.
    assert metadata["dagster/uri"].value == (tmp_path / "lake" / "bronze" / "events").as_uri()
    assert metadata["dagster/table_name"].value == "lake.bronze.events"
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [c.name for c in schema.columns][:3] == ["id", "day", "amount"]
    lineage = metadata["dagster/column_lineage"].value
    assert isinstance(lineage, dg.TableColumnLineage)
    raw = dg.AssetKey(["source", "raw", "events"])
    assert lineage.deps_by_column["amount"] == [dg.TableColumnDep(raw, "amount")]
    assert "_coolie_run_id" not in lineage.deps_by_column

    again = _materialization(_materialize(defs, "events_bronze", instance)).metadata
    assert again["coolie/status"].value == "skipped"
    assert again["coolie/rows_written"].value == 0
    assert again["dagster/row_count"].value == 182
    assert again["coolie/watermark_before"].value == again["coolie/watermark_after"].value == "id=181"
    assert DeltaTable(str(tmp_path / "lake" / "bronze" / "events")).version() == 0


def test_column_lineage_follows_the_transforms(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """An aggregate's output columns map onto the upstream dataflow's columns they are computed
    from (``n: count(id)`` -> id; the ``by`` column passes through)."""
    assert _materialize(defs, "events_bronze", instance).success
    metadata = _materialization(_materialize(defs, "events_agg", instance)).metadata
    lineage = metadata["dagster/column_lineage"].value
    assert isinstance(lineage, dg.TableColumnLineage)
    upstream = dg.AssetKey(["bronze", "events"])
    assert lineage.deps_by_column == {
        "amount": [dg.TableColumnDep(upstream, "amount")],
        "n": [dg.TableColumnDep(upstream, "id")],
    }
    assert metadata["dagster/table_name"].value == "lake.silver.events_agg"


def _step_events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_retry_policy_retries_a_flaky_source(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A source failing twice with ConnectionError is retried by Dagster (count 2 from the catalog)
    and the third attempt loads it; coolie's own retry loop is off, so it ran exactly 3 times."""
    assert _asset(defs, "flaky").op.retry_policy == dg.RetryPolicy(
        max_retries=2, delay=0, backoff=dg.Backoff.EXPONENTIAL
    )
    result = _materialize(defs, "flaky", instance)
    assert result.success
    assert (tmp_path / "flaky.calls").read_text() == "3"
    assert len(_step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 2
    assert _table(tmp_path, "bronze/flaky")["id"].to_list() == [1, 2, 3]


def test_data_error_is_not_retried(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A value that cannot be cast fails at once: no retry, the failure names the dataflow."""
    result = _materialize(defs, "bad_cast", instance, raise_on_error=False)
    assert not result.success
    assert (tmp_path / "bad_cast.calls").read_text() == "1"
    assert not _step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    (failure,) = _step_events(result, dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data is not None
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None
    assert user_failure.description is not None
    assert user_failure.description.startswith("dataflow bad_cast: InvalidOperationError")
    assert user_failure.metadata["coolie/error_type"].value == "DataError"
    assert not (tmp_path / "lake" / "bronze" / "bad_cast").exists()


def test_shard_tags_limit_a_hand_started_run(
    tmp_path: Path, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """A stage run started with coolie/job_num and coolie/job_index materialises exactly the
    dataflows assign_shard gives that shard; the others yield nothing and write nothing."""
    loaded: LoadedCatalog = load_catalog(tmp_path / "catalog.yaml")
    bronze = [f for f in loaded.catalog.dataflows if f.stage == "bronze" and f.name != "bad_cast"]
    shards = {f.name: assign_shard(f, 2) for f in bronze}
    assert set(shards.values()) == {0, 1}  # the test needs both shards populated
    index = shards["events_bronze"]
    job = defs.resolve_job_def("bronze")
    selection = [CoolieTranslator().get_asset_key(f) for f in bronze]
    result = job.execute_in_process(
        instance=instance, tags={JOB_NUM_TAG: "2", JOB_INDEX_TAG: str(index)}, asset_selection=selection
    )
    assert result.success
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    expected = {k for k, f in zip(selection, bronze, strict=True) if shards[f.name] == index}
    assert done == expected
    for key, flow in zip(selection, bronze, strict=True):
        assert (tmp_path / "lake" / "/".join(key.path)).exists() == (shards[flow.name] == index)


def test_resource_loads_catalog_once_per_process(catalog_path: Path) -> None:
    """Two resources on one path share the loaded catalog; editing the file reloads it."""
    first = CoolieResource(catalog_path=str(catalog_path)).load_catalog()
    assert CoolieResource(catalog_path=str(catalog_path)).load_catalog() is first
    catalog_path.write_text(catalog_path.read_text() + "\n# edited\n")
    assert CoolieResource(catalog_path=str(catalog_path)).load_catalog() is not first


def test_catalog_checks_run_in_the_dataflow_op(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Table checks are check specs of the dataflow's own op: a load evaluates them on what it
    wrote; a failing blocking check stops the downstream dataflow; selecting only the checks
    evaluates them without loading."""
    raw = tmp_path / "raw" / "orders"
    raw.mkdir(parents=True)
    pl.DataFrame({"id": [1, 1, 2]}).write_csv(raw / "1.csv")
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "orders",
                "source": {"format": "csv", "connection": "raw", "path": "orders/*.csv"},
                "destination": {"connection": "lake", "table": "bronze/orders", "load": "append"},
                "checks": [
                    {"kind": "unique", "columns": ["id"], "blocking": True},
                    {"kind": "row_count", "min": 1},
                ],
            },
            {
                "name": "orders_copy",
                "source": {"format": "delta", "connection": "lake", "table": "bronze/orders"},
                "destination": {"connection": "lake", "table": "silver/orders", "load": "overwrite"},
            },
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    defs = build_definitions(path)
    assert not list(defs.asset_checks or [])  # no separate check ops
    orders = dg.AssetKey(["bronze", "orders"])
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {n: e.passed for n, e in evaluations.items()} == {
        "schema_drift": True,
        "unique_id": False,
        "row_count": True,
    }
    assert evaluations["unique_id"].metadata["duplicate_keys"] == dg.MetadataValue.int(1)
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {orders}
    assert not (tmp_path / "lake" / "silver" / "orders").exists()

    checks_only = _materialize(
        defs, "orders", instance, selection=dg.AssetSelection.checks(dg.AssetCheckKey(orders, "row_count"))
    )
    assert [(e.check_name, e.passed) for e in checks_only.get_asset_check_evaluations()] == [
        ("row_count", True)
    ]
    assert not checks_only.get_asset_materialization_events()
