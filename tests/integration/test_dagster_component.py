"""``CoolieComponent`` loaded the way ``dg`` loads it (a defs folder with ``defs.yaml``), in process.

Real catalogs and Delta tables in ``tmp_path``, a real Dagster instance; the ``dg`` CLI itself is
exercised in ``tests/e2e/test_dagster_dg.py``.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster.components import build_defs_for_component
from dagster.components.testing import create_defs_folder_sandbox

from coolie_core.errors import CatalogError
from coolie_dagster import CoolieComponent
from coolie_dagster.component import STARTER_CATALOG
from coolie_dagster.resources import CoolieResource

# Dagster's own YAML loader still calls pydantic's deprecated parse_obj_as.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")


def _catalog(folder: Path) -> dict[str, Any]:
    """Two stages: customers from CSV (bronze) -> a silver copy; data in ``folder/data``."""
    raw = folder / "data" / "raw" / "customers"
    raw.mkdir(parents=True)
    pl.DataFrame(
        {"id": [1, 2, 3], "name": ["a", "b", "c"], "updated_at": ["2024-01-01", "2024-01-02", "2024-01-03"]}
    ).write_csv(raw / "part-1.csv")
    return {
        "version": 1,
        "stages": {"bronze": {"schedule": "0 * * * *"}, "silver": {}},
        "connections": {
            "raw": {"kind": "files", "path": "data/raw"},
            "lake": {"kind": "delta", "path": "data/lake"},
        },
        "dataflows": [
            {
                "name": "customers_bronze",
                "stage": "bronze",
                "description": "customers landed",
                "source": {"format": "csv", "connection": "raw", "path": "customers/*.csv"},
                "destination": {"connection": "lake", "table": "bronze/customers", "load": "append"},
                "watermark_columns": ["updated_at"],
                "checks": [{"kind": "unique", "columns": ["id"]}],
            },
            {
                "name": "customers_silver",
                "stage": "silver",
                "source": {"format": "delta", "connection": "lake", "table": "bronze/customers"},
                "destination": {"connection": "lake", "table": "silver/customers", "load": "overwrite"},
            },
        ],
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_scaffold_writes_defs_yaml_and_a_starter_catalog_that_loads() -> None:
    """The scaffolder writes ``defs.yaml`` (type + catalog) and a valid starter catalog whose
    dataflow becomes an asset of the loaded component."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=CoolieComponent, defs_path="lake")
        assert yaml.safe_load((path / "defs.yaml").read_text()) == {
            "type": "coolie_dagster.component.CoolieComponent",
            "attributes": {"catalog": "catalog.yaml"},
        }
        assert (path / "catalog.yaml").read_text() == STARTER_CATALOG
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, CoolieComponent)
            assert defs.resolve_asset_graph().get_all_asset_keys() >= {dg.AssetKey(["bronze", "customers"])}


def test_translation_renames_every_reference_consistently(tmp_path: Path) -> None:
    """key_prefix, group, owners, tags and a description template apply to every dataflow's asset;
    dependencies, checks and the schedule's selection use the translated keys."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "lake"
        path.mkdir()
        (path / "catalog.yaml").write_text(yaml.safe_dump(_catalog(path)))
        (path / "defs.yaml").write_text(
            yaml.safe_dump(
                {
                    "type": "coolie_dagster.CoolieComponent",
                    "attributes": {
                        "catalog": "catalog.yaml",
                        "translation": {
                            "key_prefix": ["lake"],
                            "group_name": "lake_{{ dataflow.stage }}",
                            "owners": ["team:platform"],
                            "tags": {"domain": "crm"},
                            "description": "{{ dataflow.name }}: {{ spec.description }}",
                        },
                    },
                }
            )
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            graph = defs.resolve_asset_graph()
            bronze = graph.get(dg.AssetKey(["lake", "bronze", "customers"]))
            silver = graph.get(dg.AssetKey(["lake", "silver", "customers"]))
            assert bronze.group_name == "lake_bronze"
            assert silver.group_name == "lake_silver"
            assert bronze.owners == ["team:platform"]
            assert bronze.tags["domain"] == "crm"
            assert bronze.description == "customers_bronze: customers landed"
            assert silver.parent_keys == {bronze.key}
            assert {k.asset_key for k in graph.asset_check_keys} == {bronze.key, silver.key}
            assert dg.AssetCheckKey(bronze.key, "unique_id") in graph.asset_check_keys
            (schedule,) = defs.schedules or []
            assert isinstance(schedule, dg.ScheduleDefinition)
            job = defs.resolve_job_def(schedule.job_name)
            assert job.asset_layer.selected_asset_keys == {bronze.key}
            assert dg.AssetKey(["bronze", "customers"]) not in graph.get_all_asset_keys()


class AuditedComponent(CoolieComponent):
    """A subclass overriding both hooks, as a user would."""

    def get_asset_spec(self, flow: Any, *, loaded: Any) -> dg.AssetSpec:
        return super().get_asset_spec(flow, loaded=loaded).merge_attributes(tags={"audited": "yes"})

    def execute(
        self, context: dg.AssetExecutionContext, coolie: CoolieResource, *, dataflow: str
    ) -> Iterator[Any]:
        context.log.info(f"audit: {dataflow} starts")
        for event in super().execute(context, coolie, dataflow=dataflow):
            if isinstance(event, dg.MaterializeResult):
                event = dg.MaterializeResult(metadata={**(event.metadata or {}), "audit/ok": True})
            yield event


def test_subclass_overrides_get_asset_spec_and_execute(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Overridden hooks shape the spec and wrap the real load, which writes the Delta table."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(_catalog(tmp_path)))
    defs = build_defs_for_component(AuditedComponent(catalog=str(catalog), state_dir=str(tmp_path / "state")))
    key = dg.AssetKey(["bronze", "customers"])
    assert defs.resolve_asset_graph().get(key).tags["audited"] == "yes"
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[key]
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization is not None
    assert event.materialization.metadata["audit/ok"] == dg.MetadataValue.bool(True)
    table = pl.read_delta(str(tmp_path / "data" / "lake" / "bronze" / "customers"))
    assert sorted(table["id"].to_list()) == [1, 2, 3]
    assert (tmp_path / "state").is_dir()


def test_invalid_catalog_fails_the_load_with_its_file_and_line(tmp_path: Path) -> None:
    """A bad value in the catalog stops the component with the catalog's own file:line."""
    doc = _catalog(tmp_path)
    doc["dataflows"][1]["destination"]["load"] = "upsert"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = next(i for i, text in enumerate(catalog.read_text().splitlines(), start=1) if "upsert" in text)
    with pytest.raises(CatalogError) as caught:
        build_defs_for_component(CoolieComponent(catalog=str(catalog)))
    assert f"{catalog}:{line}: customers_silver.destination.load" in str(caught.value)
