"""Assemble a catalog's code location: assets, source assets, checks, jobs, schedules, sensors, resources.

Both entry points use it: ``build_definitions`` (``workspace.yaml``) and
:class:`~coolie_dagster.component.CoolieComponent` (``dg``). This module builds nothing at import.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_dagster.assets import ExecuteFn, build_coolie_assets
from coolie_dagster.automation import build_automation_sensors
from coolie_dagster.jobs import build_stage_jobs
from coolie_dagster.resources import SPARK_RESOURCE_KEY, CoolieResource, build_spark_resource, uses_spark
from coolie_dagster.schedules import build_schedules
from coolie_dagster.sensors import build_sensors
from coolie_dagster.translator import CoolieTranslator

__all__ = ["SOURCES_GROUP", "build_location", "build_source_specs"]

SOURCES_GROUP = "sources"
"""Asset group of the external sources (raw files, databases, code) no dataflow produces."""


def build_source_specs(
    loaded: LoadedCatalog, assets: list[dg.AssetsDefinition], *, translator: CoolieTranslator
) -> list[dg.AssetSpec]:
    """External assets for every dependency no coolie asset produces (raw sources, disabled flows)."""
    produced = {key for a in assets for key in a.keys}
    readers: dict[dg.AssetKey, list[str]] = {}
    for asset in assets:
        for spec in asset.specs:
            for dep in spec.deps:
                if dep.asset_key not in produced:
                    readers.setdefault(dep.asset_key, []).append(str(spec.metadata.get("coolie/dataflow")))
    catalog = loaded.catalog
    disabled = {translator.get_asset_key(f): f.name for f in catalog.dataflows if not f.enabled}
    specs = []
    for key, names in sorted(readers.items(), key=lambda item: item[0].to_user_string()):
        if key in disabled:
            description = (
                f"Produced by the disabled dataflow {disabled[key]}; read by {', '.join(sorted(names))}."
            )
            kinds = {"coolie"}
        else:
            source = catalog.dataflow(names[0]).source
            description = f"External {source.format} source (connection {source.connection}); read by {', '.join(sorted(names))}."
            kinds = {source.format}
        specs.append(dg.AssetSpec(key=key, description=description, group_name=SOURCES_GROUP, kinds=kinds))
    return specs


def _spark_resources(loaded: LoadedCatalog) -> dict[str, Any]:
    """The pyspark resource, only for catalogs with Spark dataflows (pyspark stays unimported)."""
    return {SPARK_RESOURCE_KEY: build_spark_resource()} if uses_spark(loaded) else {}


def build_location(
    catalog_path: str | os.PathLike[str],
    *,
    translator: CoolieTranslator | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    alert_dir: str | os.PathLike[str] | None = None,
    webhook_url: str | None = None,
    execute: ExecuteFn | None = None,
) -> dg.Definitions:
    """Dagster definitions for a coolie catalog (see ``build_definitions`` for what they hold).

    Args:
        catalog_path: catalog file or folder.
        translator: customises asset specs.
        state_dir: coolie's run records and non-Delta watermarks (default ``.coolie`` beside the
            catalog).
        alert_dir: folder of the failure sensor's ``alerts.jsonl`` (else ``$COOLIE_ALERT_DIR``).
        webhook_url: failure alert webhook (else ``$COOLIE_ALERT_WEBHOOK``).
        execute: replaces the body of every dataflow op (see :data:`~coolie_dagster.assets.ExecuteFn`).

    Raises:
        coolie_core.errors.CatalogError: the catalog is invalid (every issue with file:line).
    """
    translator = translator or CoolieTranslator()
    resource = CoolieResource(
        catalog_path=str(Path(catalog_path).resolve()),
        state_dir=None if state_dir is None else str(Path(state_dir).resolve()),
    )
    loaded = resource.load_catalog()
    assets = build_coolie_assets(loaded, translator=translator, execute=execute)
    keys = {str(spec.metadata["coolie/dataflow"]): spec.key for a in assets for spec in a.specs}
    return dg.Definitions(
        assets=[*assets, *build_source_specs(loaded, assets, translator=translator)],
        jobs=build_stage_jobs(loaded, assets),
        schedules=build_schedules(loaded, translator=translator),
        sensors=[
            *build_sensors(
                loaded,
                translator=translator,
                alert_dir=None if alert_dir is None else str(alert_dir),
                webhook_url=webhook_url,
            ),
            *build_automation_sensors(loaded, keys),
        ],
        resources={"coolie": resource, **_spark_resources(loaded)},
    )
