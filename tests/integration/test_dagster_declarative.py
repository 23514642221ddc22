"""Declarative automation from the catalog, evaluated over ticks on a real Dagster instance.

The assets are coolie's own (``build_definitions``) over real CSV files and Delta tables in
``tmp_path``; conditions are evaluated by Dagster's ``evaluate_automation_conditions``.
"""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.errors import CatalogError
from coolie_dagster.definitions import build_definitions
from coolie_dagster.tags import STAGE_TAG

BRONZE = dg.AssetKey(["bronze", "orders"])
SILVER = dg.AssetKey(["silver", "orders"])
GOLD = dg.AssetKey(["gold", "orders"])
BACKUP = dg.AssetKey(["gold", "orders_backup"])


def _flow(name: str, stage: str, source: dict[str, Any], table: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stage": stage,
        "source": source,
        "destination": {"connection": "lake", "table": table, "load": "overwrite"},
        **extra,
    }


def _catalog(tmp_path: Path, *, gold_cron: str = "0 3 * * *", **gold_flow: Any) -> Path:
    """bronze (no automation) -> silver (stage: eager) -> gold (its own rules)."""
    raw = tmp_path / "raw" / "orders"
    raw.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": [1, 2, 3], "amount": [10, 20, 30]}).write_csv(raw / "part-1.csv")
    delta = {"format": "delta", "connection": "lake"}
    doc = {
        "version": 1,
        "stages": {
            "bronze": {},
            "silver": {"automation": "eager", "default_status": "running", "timeout": 600},
            "gold": {"schedule": gold_cron},
        },
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            _flow("orders_bronze", "bronze", {"format": "csv", "connection": "raw", "path": "orders/*.csv"}, "bronze/orders"),
            _flow("orders_silver", "silver", {**delta, "table": "bronze/orders"}, "silver/orders"),
            _flow("orders_gold", "gold", {**delta, "table": "silver/orders"}, "gold/orders", **gold_flow),
            _flow(
                "orders_backup", "gold", {**delta, "table": "silver/orders"}, "gold/orders_backup",
                automation=["eager", "on_missing"],
            ),
        ],
    }  # fmt: skip
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, *keys: dg.AssetKey) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=list(keys)).success


def _requested(result: Any) -> set[dg.AssetKey]:
    return {r.key for r in result.results if r.true_subset.size > 0}


def test_conditions_follow_the_catalog_and_sensors_ship_per_stage(tmp_path: Path) -> None:
    """Stage ``eager`` sets the condition on its dataflows; a dataflow's rules override; none where
    the catalog says nothing; each automated stage has a sensor with its status and run tags."""
    defs = build_definitions(_catalog(tmp_path, automation="on_cron"))
    graph = defs.resolve_asset_graph()
    assert graph.get(BRONZE).automation_condition is None
    assert graph.get(SILVER).automation_condition == dg.AutomationCondition.eager()
    assert graph.get(GOLD).automation_condition == dg.AutomationCondition.on_cron("0 3 * * *", "UTC")
    assert graph.get(BACKUP).automation_condition == (
        dg.AutomationCondition.eager() | dg.AutomationCondition.on_missing()
    )
    sensors = {s.name: s for s in defs.sensors or []}
    silver, gold = sensors["silver_automation_sensor"], sensors["gold_automation_sensor"]
    assert "bronze_automation_sensor" not in sensors
    assert isinstance(silver, dg.AutomationConditionSensorDefinition)
    assert silver.default_status == dg.DefaultSensorStatus.RUNNING
    assert gold.default_status == dg.DefaultSensorStatus.STOPPED
    assert silver.run_tags == {STAGE_TAG: "silver", "dagster/max_runtime": "600"}
    assert silver.asset_selection.resolve(graph) == {SILVER}
    assert gold.asset_selection.resolve(graph) == {GOLD, BACKUP}
    dg.Definitions.validate_loadable(defs)


def test_upstream_materialisation_requests_the_eager_downstream(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Tick 1: bronze never ran, silver (eager) waits; bronze loads for real; tick 2 requests
    silver; once silver ran, tick 3 requests nothing."""
    defs = build_definitions(_catalog(tmp_path))
    silver_only = dg.AssetSelection.assets(SILVER)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=silver_only)
    assert _requested(first) == set()
    _materialize(defs, instance, BRONZE)
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=silver_only, cursor=first.cursor
    )
    assert _requested(second) == {SILVER}
    _materialize(defs, instance, SILVER)
    third = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=silver_only, cursor=second.cursor
    )
    assert _requested(third) == set()
    assert pl.read_delta(str(tmp_path / "lake" / "silver" / "orders")).height == 3


def test_on_cron_requests_on_its_tick_only(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """gold (on_cron) with its dependency updated after the cron tick: not requested before the
    tick, requested on the first evaluation after it, not again until the next tick."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    tick = now - dt.timedelta(minutes=2)
    cron = f"{tick.minute} {tick.hour} * * *"
    defs = build_definitions(_catalog(tmp_path, gold_cron=cron, automation="on_cron"))
    gold_only = dg.AssetSelection.assets(GOLD)
    before = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=gold_only,
        evaluation_time=tick - dt.timedelta(minutes=1),
    )
    assert _requested(before) == set()
    _materialize(defs, instance, BRONZE, SILVER)  # after the tick: the dependency is fresh
    on_tick = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=gold_only,
        cursor=before.cursor,
        evaluation_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
    )
    assert _requested(on_tick) == {GOLD}
    later = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=gold_only,
        cursor=on_tick.cursor,
        evaluation_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
    )
    assert _requested(later) == set()


def test_on_cron_without_a_schedule_is_a_located_catalog_error(tmp_path: Path) -> None:
    """``on_cron`` on a dataflow with no schedule (its own or its stage's) names file, dataflow
    and field; a repeated rule is refused by the catalog loader with its line."""
    path = _catalog(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["stages"]["silver"]["automation"] = ["eager", "on_cron"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    # Refused by the catalog's validation (located at the dataflow), so the code location says
    # the same as `coolie validate`.
    located = r"catalog\.yaml:\d+: orders_silver\.automation: on_cron \(from stage silver's automation\) needs a schedule"
    with pytest.raises(CatalogError, match=located):
        load_catalog(path)
    with pytest.raises(CatalogError, match=located):
        build_definitions(path)

    doc["stages"]["silver"]["automation"] = "eager"
    doc["dataflows"][1]["automation"] = ["eager", "eager"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(
        CatalogError, match=r"catalog\.yaml:\d+: orders_silver\.automation: .*listed twice: eager"
    ):
        load_catalog(path)
