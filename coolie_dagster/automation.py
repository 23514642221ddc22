"""Declarative automation from the catalog: ``automation:`` -> the assets' ``AutomationCondition``.

A dataflow's ``automation`` (else its stage's) lists rules combined with OR:

=============  ===================================================================
``on_cron``    ``AutomationCondition.on_cron(schedule, stage timezone)``
``eager``      ``AutomationCondition.eager()``
``on_missing`` ``AutomationCondition.on_missing()``
=============  ===================================================================

Conditions only request runs while a sensor evaluates them: each stage with automated dataflows
gets ``<stage>_automation_sensor`` (an ``AutomationConditionSensorDefinition`` over them) whose
runs carry the stage's run tags, so per-stage run limits and timeouts hold for them too. It
starts ``running`` or ``stopped`` as the stage's ``default_status`` says.
"""

import functools
import operator
from collections import defaultdict
from typing import Any

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_core.models import Catalog, Dataflow
from coolie_core.models.automation import AutomationRule, DefaultStatus
from coolie_dagster.tags import run_limit_tags

__all__ = [
    "automation_condition_of",
    "automation_sensor_name",
    "build_automation_sensors",
    "sensor_status",
]


def sensor_status(status: DefaultStatus) -> dg.DefaultSensorStatus:
    """Dagster's sensor status for a catalog ``default_status``."""
    return dg.DefaultSensorStatus.RUNNING if status == "running" else dg.DefaultSensorStatus.STOPPED


def automation_sensor_name(stage: str) -> str:
    """The automation sensor of a stage: ``<stage>_automation_sensor``."""
    return f"{stage}_automation_sensor"


@functools.lru_cache(maxsize=256)
def _condition(
    rules: tuple[AutomationRule, ...], cron: str | None, timezone: str
) -> dg.AutomationCondition[Any]:
    """One condition object per distinct rule set: conditions are immutable and catalogs repeat a
    few over thousands of dataflows."""
    parts: list[dg.AutomationCondition[Any]] = []
    for rule in rules:
        if rule == "on_cron":
            assert cron is not None
            parts.append(dg.AutomationCondition.on_cron(cron, timezone))
        elif rule == "eager":
            parts.append(dg.AutomationCondition.eager())
        else:
            parts.append(dg.AutomationCondition.on_missing())
    # ``|`` builds Dagster's OR condition: any rule that holds requests the run.
    return functools.reduce(operator.or_, parts)


def automation_condition_of(loaded: LoadedCatalog, flow: Dataflow) -> dg.AutomationCondition[Any] | None:
    """The automation condition of a dataflow's asset; None when neither it nor its stage has rules.

    ``on_cron`` without a schedule never gets here: the catalog's validation refuses it, located
    (``coolie_core.catalog_rules.check_automation``).
    """
    catalog = loaded.catalog
    stage = catalog.stages.get(flow.stage)
    rules = flow.automation or (stage.automation if stage else None)
    if not rules:
        return None
    return _condition(tuple(rules), catalog.schedule_for(flow), stage.timezone if stage else "UTC")


def _automated(catalog: Catalog, flow: Dataflow) -> bool:
    stage = catalog.stages.get(flow.stage)
    return bool(flow.automation or (stage.automation if stage else None))


def build_automation_sensors(
    loaded: LoadedCatalog, keys: dict[str, dg.AssetKey]
) -> list[dg.AutomationConditionSensorDefinition]:
    """One automation sensor per stage with automated, enabled dataflows.

    Args:
        loaded: the catalog.
        keys: asset key of each built dataflow asset, by dataflow name.
    """
    catalog = loaded.catalog
    by_stage: dict[str, list[Dataflow]] = defaultdict(list)
    for flow in catalog.dataflows:
        if flow.enabled and flow.name in keys and _automated(catalog, flow):
            by_stage[flow.stage].append(flow)
    sensors = []
    for stage_name, flows in sorted(by_stage.items()):
        stage = catalog.stages.get(stage_name)
        tags = run_limit_tags(stage_name, stage.timeout if stage else None, [f.timeout for f in flows])
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                automation_sensor_name(stage_name),
                target=dg.AssetSelection.assets(*(keys[f.name] for f in flows)),
                default_status=sensor_status(stage.default_status if stage else "stopped"),
                run_tags=tags,
                description=(
                    f"coolie stage {stage_name}: requests runs of its {len(flows)} automated "
                    "dataflow(s) when their catalog automation conditions are met"
                ),
            )
        )
    return sensors
