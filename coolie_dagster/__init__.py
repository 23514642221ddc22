"""coolie as a Dagster code location: catalog dataflows become assets, jobs, schedules and sensors.

>>> from coolie_dagster import build_definitions  # doctest: +SKIP
>>> defs = build_definitions("catalog.yaml")  # doctest: +SKIP

``build_definitions`` is imported on first use: its module also builds the ``defs`` that
``workspace.yaml`` loads, which importing this package should not trigger.
"""

from typing import TYPE_CHECKING, Any

from coolie_dagster.assets import build_coolie_assets, build_dataflow_asset, retry_policy_for
from coolie_dagster.component import CoolieComponent
from coolie_dagster.jobs import StageJob, build_stage_jobs, plan_stage_jobs
from coolie_dagster.partitions import build_partitions_def, windows_for_keys, windows_for_time_window
from coolie_dagster.resources import CoolieResource
from coolie_dagster.translator import CoolieTranslator

if TYPE_CHECKING:
    from coolie_dagster.definitions import build_definitions

__all__ = [
    "CoolieComponent",
    "CoolieResource",
    "CoolieTranslator",
    "StageJob",
    "build_coolie_assets",
    "build_dataflow_asset",
    "build_definitions",
    "build_partitions_def",
    "build_stage_jobs",
    "plan_stage_jobs",
    "retry_policy_for",
    "windows_for_keys",
    "windows_for_time_window",
]


def __getattr__(name: str) -> Any:
    if name == "build_definitions":
        from coolie_dagster.definitions import build_definitions

        return build_definitions
    raise AttributeError(f"module 'coolie_dagster' has no attribute {name!r}")
