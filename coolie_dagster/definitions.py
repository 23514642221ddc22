"""The code location: ``build_definitions(catalog_path)`` and the ``defs`` that ``workspace.yaml`` loads.

``defs`` is built from ``$COOLIE_CATALOG``, else the demo catalog of this repository.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_dagster.assets import build_coolie_assets
from coolie_dagster.checks import build_asset_checks
from coolie_dagster.jobs import build_stage_jobs
from coolie_dagster.resources import SPARK_RESOURCE_KEY, CoolieResource, build_spark_resource, uses_spark
from coolie_dagster.schedules import build_schedules
from coolie_dagster.sensors import build_sensors
from coolie_dagster.translator import CoolieTranslator

__all__ = ["CATALOG_ENV", "DEMO_CATALOG", "SOURCES_GROUP", "build_definitions", "build_source_specs", "defs"]

CATALOG_ENV = "COOLIE_CATALOG"
STATE_DIR_ENV = "COOLIE_STATE_DIR"
"""Where coolie keeps run records and non-Delta watermarks (default ``.coolie`` beside the catalog)."""
"""Environment variable naming the catalog file or folder ``defs`` is built from."""
DEMO_CATALOG = Path(__file__).resolve().parent.parent / "examples" / "demo" / "catalog.yaml"
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


def build_definitions(
    catalog_path: str | os.PathLike[str],
    *,
    translator: CoolieTranslator | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> dg.Definitions:
    """Dagster definitions for a coolie catalog.

    Assets (one op per dataflow), external source assets, one job per stage (split by partitions
    definition), schedules, sensors, asset checks, and the ``coolie`` resource.

    Args:
        catalog_path: catalog file or folder.
        translator: customises asset specs (see :class:`~coolie_dagster.translator.CoolieTranslator`).
        state_dir: coolie's run records and non-Delta watermarks (default ``.coolie`` beside the
            catalog).

    >>> defs = build_definitions("examples/demo/catalog.yaml")
    >>> sorted(job.name for job in defs.jobs)
    ['bronze', 'gold', 'gold__month', 'silver']
    """
    translator = translator or CoolieTranslator()
    resource = CoolieResource(
        catalog_path=str(Path(catalog_path).resolve()),
        state_dir=None if state_dir is None else str(Path(state_dir).resolve()),
    )
    loaded = resource.load_catalog()
    assets = build_coolie_assets(loaded, translator=translator)
    return dg.Definitions(
        assets=[*assets, *build_source_specs(loaded, assets, translator=translator)],
        asset_checks=build_asset_checks(loaded, translator=translator, state_dir=resource.state_dir),
        jobs=build_stage_jobs(loaded, assets),
        schedules=build_schedules(loaded, translator=translator),
        sensors=build_sensors(loaded, translator=translator),
        resources={"coolie": resource, **_spark_resources(loaded)},
    )


defs = build_definitions(
    os.environ.get(CATALOG_ENV) or DEMO_CATALOG, state_dir=os.environ.get(STATE_DIR_ENV) or None
)
