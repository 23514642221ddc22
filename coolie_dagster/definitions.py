"""The code location: ``build_definitions(catalog_path)`` and the ``defs`` that ``workspace.yaml`` loads.

``defs`` is built from ``$COOLIE_CATALOG``, else the demo catalog of this repository.
"""

import os
from pathlib import Path

import dagster as dg

from coolie_core.errors import CatalogError
from coolie_dagster.location import SOURCES_GROUP, build_location, build_source_specs
from coolie_dagster.translator import CoolieTranslator

__all__ = ["CATALOG_ENV", "DEMO_CATALOG", "SOURCES_GROUP", "build_definitions", "build_source_specs", "defs"]

CATALOG_ENV = "COOLIE_CATALOG"
STATE_DIR_ENV = "COOLIE_STATE_DIR"
"""Where coolie keeps run records and non-Delta watermarks (default ``.coolie`` beside the catalog)."""
"""Environment variable naming the catalog file or folder ``defs`` is built from."""
DEMO_CATALOG = Path(__file__).resolve().parent.parent / "examples" / "demo" / "catalog.yaml"


def build_definitions(
    catalog_path: str | os.PathLike[str],
    *,
    translator: CoolieTranslator | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> dg.Definitions:
    """Dagster definitions for a coolie catalog.

    Assets (one op per dataflow), external source assets, one job per stage (split by partitions
    definition), schedules, sensors (file arrival, failure alerts, one declarative-automation
    sensor per automated stage), asset checks, and the ``coolie`` resource.

    Args:
        catalog_path: catalog file or folder.
        translator: customises asset specs (see :class:`~coolie_dagster.translator.CoolieTranslator`).
        state_dir: coolie's run records and non-Delta watermarks (default ``.coolie`` beside the
            catalog).

    >>> defs = build_definitions("examples/demo/catalog.yaml")
    >>> sorted(job.name for job in defs.jobs)
    ['bronze', 'gold', 'gold__month', 'silver']
    """
    return build_location(catalog_path, translator=translator, state_dir=state_dir)


try:
    defs = build_definitions(
        os.environ.get(CATALOG_ENV) or DEMO_CATALOG, state_dir=os.environ.get(STATE_DIR_ENV) or None
    )
except CatalogError as error:
    # Dagster shows a location's load error as message + traceback: drop coolie's internal frames
    # (and the chained context) so the UI leads with the catalog's file:line problems.
    raise error.with_traceback(None) from None
