"""Decide which dataflows a run takes and in which order, without reading or writing data."""

from collections.abc import Sequence
from dataclasses import dataclass

from coolie_core.catalog import LoadedCatalog
from coolie_core.errors import CatalogError, CatalogIssue, CoolieError
from coolie_core.locations import destination_storage, source_storage
from coolie_core.models import Dataflow, FileSource, SqlSource
from coolie_core.sharding import ShardSpec, assign_shard, select_shard

__all__ = ["PlannedDataflow", "plan_dataflows"]


@dataclass(frozen=True, slots=True)
class PlannedDataflow:
    """One dataflow a run would execute, in dependency order."""

    dataflow: Dataflow
    position: int
    upstream: tuple[str, ...]
    """Upstream dataflows that run in the same run."""
    shard: int | None
    """Shard index when the run is sharded."""
    cross_shard_upstream: tuple[str, ...]
    """Upstream dataflows assigned to another shard: they are not waited for in this run."""

    @property
    def name(self) -> str:
        return self.dataflow.name

    def describe(self, loaded: LoadedCatalog) -> dict[str, object]:
        """A JSON-friendly summary (what ``coolie plan --json`` prints)."""
        flow = self.dataflow
        catalog = loaded.catalog
        source = flow.source
        src = source_storage(catalog, flow)
        if src is not None:
            source_text = src.uri
        elif isinstance(source, SqlSource):
            source_text = f"sql:{source.connection}:{source.table or 'query'}"
        else:
            source_text = f"python:{source.connection}.{getattr(source, 'function', '')}"
        return {
            "position": self.position,
            "dataflow": flow.name,
            "stage": flow.stage,
            "engine": catalog.engine_for(flow),
            "load": flow.load,
            "source_format": source.format,
            "source": source_text,
            "destination": destination_storage(catalog, flow).uri,
            "incremental": bool(flow.watermark_columns),
            "partitioned": flow.partitions is not None,
            "schedule": catalog.schedule_for(flow),
            "upstream": list(self.upstream),
            "shard": self.shard,
            "cross_shard_upstream": list(self.cross_shard_upstream),
            **_pending(loaded, flow),
        }


def _pending(loaded: LoadedCatalog, flow: Dataflow) -> dict[str, object]:
    """``incremental: files``: the files waiting to load (reads the destination's ledger)."""
    if not (isinstance(flow.source, FileSource) and flow.source.incremental == "files"):
        return {}
    from coolie_core.landing import pending_files  # polars: only when a landing zone is planned

    base = loaded.path if loaded.path.is_dir() else loaded.path.parent
    try:
        return {"pending_files": pending_files(loaded.catalog, flow, state_dir=base / ".coolie")}
    except CoolieError as exc:  # shown, not raised: plan lists every dataflow
        return {"pending_files": None, "pending_error": str(exc)}


def plan_dataflows(
    loaded: LoadedCatalog,
    *,
    stage: str | None = None,
    dataflows: Sequence[str] = (),
    shard: ShardSpec | None = None,
) -> list[PlannedDataflow]:
    """Select enabled dataflows by stage, name and shard, in dependency order.

    Raises:
        CatalogError: an unknown stage or dataflow name was asked for.
    """
    catalog = loaded.catalog
    known = {f.name for f in catalog.dataflows}
    unknown = [n for n in dataflows if n not in known]
    problems = [CatalogIssue(str(loaded.path), n, "", "no such dataflow in the catalog") for n in unknown]
    stages = {f.stage for f in catalog.dataflows}
    if stage is not None and stage not in stages:
        problems.append(
            CatalogIssue(
                str(loaded.path),
                None,
                "stage",
                f"no dataflow has stage {stage!r}; stages: {', '.join(sorted(stages))}",
            )
        )
    if problems:
        raise CatalogError(problems)

    selected = [
        f
        for f in catalog.dataflows
        if f.enabled and (stage is None or f.stage == stage) and (not dataflows or f.name in dataflows)
    ]
    in_shard = {f.name for f in select_shard(selected, shard)}
    in_run = {f.name for f in selected}
    order = loaded.order([f.name for f in selected if f.name in in_shard])
    result = []
    for position, name in enumerate(order):
        flow = catalog.dataflow(name)
        ups = loaded.lineage.upstream.get(name, frozenset())
        result.append(
            PlannedDataflow(
                dataflow=flow,
                position=position,
                upstream=tuple(sorted(u for u in ups if u in in_shard)),
                shard=assign_shard(flow, shard.job_num) if shard else None,
                cross_shard_upstream=tuple(sorted(u for u in ups if u in in_run and u not in in_shard)),
            )
        )
    return result
