"""One asset job per stage (never one per dataflow: that is quadratic at load time).

Dagster 1.13 refuses an asset job whose assets have different partitions definitions ("Selected
assets must have the same partitions definitions"). A job mixing partitioned and unpartitioned
assets loads, but its unpartitioned runs fail on the partitioned op. So a stage becomes:

* ``<stage>``: its unpartitioned dataflows (incremental runs by watermark);
* ``<stage>__<every>``: its partitioned dataflows sharing one partitions definition (the
  definition's chunk size, e.g. ``gold__month``; ``gold__month_<hash>`` when a stage holds two
  different monthly definitions, so every name stays unique and stable).

Runs carry ``coolie/stage`` and ``dagster/max_runtime`` (see :func:`coolie_dagster.tags.run_limit_tags`).
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from coolie_core.catalog import LoadedCatalog
from coolie_core.models import Dataflow
from coolie_dagster.assets import op_name_for
from coolie_dagster.tags import MAX_RUNTIME_TAG, STAGE_TAG, run_limit_tags

__all__ = ["MAX_RUNTIME_TAG", "STAGE_TAG", "StageJob", "build_stage_jobs", "plan_stage_jobs"]


@dataclass(frozen=True)
class StageJob:
    """The dataflows one stage job materialises.

    Attributes:
        name: job name (``<stage>`` or ``<stage>__<every>[_<hash>]``).
        stage: the catalog stage.
        dataflows: dataflow names in dependency order.
        asset_keys: their asset keys, same order.
        partitions_def: shared partitions definition (None: unpartitioned job).
        tags: run tags of the job's runs.
    """

    name: str
    stage: str
    dataflows: tuple[str, ...]
    asset_keys: tuple[dg.AssetKey, ...]
    partitions_def: dg.PartitionsDefinition | None
    tags: Mapping[str, str]

    def to_job(self) -> UnresolvedAssetJobDefinition:
        """The Dagster asset job."""
        what = "partitioned " if self.partitions_def is not None else ""
        return dg.define_asset_job(
            name=self.name,
            selection=dg.AssetSelection.assets(*self.asset_keys),
            description=f"coolie stage {self.stage}: {what}dataflows {', '.join(self.dataflows)}",
            tags=dict(self.tags),
            run_tags=dict(self.tags),
        )


def _label(flow: Dataflow) -> str:
    spec = flow.partitions
    assert spec is not None
    return spec.every if spec.step == 1 else f"{spec.every}{spec.step}"


def _digest(flow: Dataflow) -> str:
    assert flow.partitions is not None
    identity = flow.partitions.model_dump_json(exclude={"column"})
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def plan_stage_jobs(loaded: LoadedCatalog, assets: Sequence[dg.AssetsDefinition]) -> list[StageJob]:
    """Group the built assets into stage jobs (see the module docs for the naming)."""
    catalog = loaded.catalog
    by_op = {a.node_def.name: a for a in assets}
    groups: dict[tuple[str, str | None], list[tuple[Dataflow, dg.AssetsDefinition]]] = {}
    for name in loaded.order():
        flow = catalog.dataflow(name)
        asset = by_op.get(op_name_for(flow))
        if asset is None:  # disabled, or left out by the caller
            continue
        group = None if asset.partitions_def is None else _digest(flow)
        groups.setdefault((flow.stage, group), []).append((flow, asset))
    labels: dict[tuple[str, str], set[str]] = {}
    for (stage, digest), members in groups.items():
        if digest is not None:
            labels.setdefault((stage, _label(members[0][0])), set()).add(digest)
    jobs = []
    for (stage, digest), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        first = members[0][0]
        name = stage
        if digest is not None:
            label = _label(first)
            name = f"{stage}__{label}" + (f"_{digest}" if len(labels[(stage, label)]) > 1 else "")
        stage_spec = catalog.stages.get(stage)
        tags = run_limit_tags(
            stage, stage_spec.timeout if stage_spec else None, [f.timeout for f, _ in members]
        )
        jobs.append(
            StageJob(
                name=name,
                stage=stage,
                dataflows=tuple(f.name for f, _ in members),
                asset_keys=tuple(a.key for _, a in members),
                partitions_def=members[0][1].partitions_def,
                tags=tags,
            )
        )
    return jobs


def build_stage_jobs(
    loaded: LoadedCatalog, assets: Sequence[dg.AssetsDefinition]
) -> list[UnresolvedAssetJobDefinition]:
    """The Dagster jobs of :func:`plan_stage_jobs`."""
    return [job.to_job() for job in plan_stage_jobs(loaded, assets)]
