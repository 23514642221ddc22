"""Catalog dataflow -> Dagster ``AssetSpec``: the one place to customise how coolie looks in Dagster.

Subclass :class:`CoolieTranslator` and override :meth:`CoolieTranslator.get_asset_spec` (call
``super()`` and ``.replace_attributes(...)`` / ``.merge_attributes(...)`` on the result) to change
keys, groups, owners, tags or metadata; pass it to ``build_definitions(translator=...)``.
"""

import hashlib
import re
from pathlib import PurePosixPath

import dagster as dg

from coolie_core.catalog import LoadedCatalog
from coolie_core.models import Dataflow, DeltaSource, FileSource, FreshnessCheck, PythonSource, SqlSource
from coolie_dagster.automation import automation_condition_of

__all__ = ["CoolieTranslator", "code_version_of", "freshness_policy_of"]


def code_version_of(loaded: LoadedCatalog, flow: Dataflow) -> str:
    """A hash of everything in the catalog that shapes the dataflow's output.

    Changing the dataflow (or a connection it uses) marks its asset as changed in the UI.
    """
    catalog = loaded.catalog
    # pydantic's JSON (fields in declaration order) is stable and far cheaper than json.dumps of
    # a dict dump, which mattered at thousands of dataflows.
    digest = hashlib.sha256(flow.model_dump_json().encode())
    for name in (flow.source.connection, flow.destination.connection):
        digest.update(b"\0" + catalog.connections[name].model_dump_json().encode())
    return digest.hexdigest()[:16]


def freshness_policy_of(flow: Dataflow) -> dg.FreshnessPolicy | None:
    """The asset's freshness policy from the dataflow's ``freshness`` checks (tightest ``max_lag``).

    Dagster evaluates freshness itself (it never blocks a run), so ``blocking`` does not apply here.
    """
    lags = [c.max_lag.as_timedelta() for c in flow.checks if isinstance(c, FreshnessCheck)]
    return dg.FreshnessPolicy.time_window(fail_window=min(lags)) if lags else None


def _table_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([p for p in PurePosixPath(table).parts if p not in ("/", ".")])


class CoolieTranslator:
    """Maps catalog dataflows onto Dagster assets. Override :meth:`get_asset_spec` to customise."""

    def get_asset_key(self, flow: Dataflow) -> dg.AssetKey:
        """The key of the asset a dataflow produces: its destination table path."""
        return _table_key(flow.destination.table)

    def get_source_key(self, flow: Dataflow) -> dg.AssetKey:
        """The key of a source no dataflow produces (shown as an external asset)."""
        source = flow.source
        if isinstance(source, FileSource):
            # The folder part before any wildcard names the source ("*.csv" is the connection itself).
            stem = PurePosixPath(source.path.split("*", 1)[0]).parts
            parts = [re.sub(r"[^A-Za-z0-9_]", "_", p) for p in stem if p not in ("/", ".")]
            return dg.AssetKey(["source", source.connection, *parts])
        if isinstance(source, DeltaSource):
            return dg.AssetKey(["source", source.connection, *_table_key(source.table).path])
        if isinstance(source, SqlSource):
            return dg.AssetKey(["source", source.connection, source.table or f"{flow.name}_query"])
        assert isinstance(source, PythonSource)
        return dg.AssetKey(["source", source.connection, source.function])

    def get_asset_spec(self, flow: Dataflow, *, loaded: LoadedCatalog) -> dg.AssetSpec:
        """The full spec of a dataflow's asset: key, deps, group, kinds, owners, metadata..."""
        catalog = loaded.catalog
        upstream = sorted(loaded.lineage.upstream.get(flow.name, frozenset()))
        deps = [self.get_asset_key(catalog.dataflow(name)) for name in upstream]
        producers = [name for name in upstream if name not in flow.depends_on]
        if producers:
            source_key = self.get_asset_key(catalog.dataflow(producers[0]))
        else:
            source_key = self.get_source_key(flow)
            deps.append(source_key)
        engine = catalog.engine_for(flow)
        metadata: dict[str, object] = {
            "coolie/dataflow": flow.name,
            "coolie/source": flow.source.model_dump_json(exclude_defaults=True),
            "coolie/load": flow.load,
            "coolie/destination": flow.destination.table,
            # What the column lineage of a load points at (the dataflow or external source read).
            "coolie/source_asset": source_key.to_user_string(),
        }
        if flow.watermark_columns:
            metadata["coolie/watermark_columns"] = ", ".join(flow.watermark_columns)
        if flow.destination.merge_keys:
            metadata["coolie/merge_keys"] = ", ".join(flow.destination.merge_keys)
        if flow.partitions is not None:
            metadata["coolie/partitions"] = flow.partitions.model_dump_json(exclude_defaults=True)
        schedule = catalog.schedule_for(flow)
        if schedule:
            metadata["coolie/schedule"] = schedule
        owners = flow.owners or catalog.defaults.owners
        return dg.AssetSpec(
            key=self.get_asset_key(flow),
            deps=deps,
            description=flow.description or f"coolie dataflow {flow.name} ({flow.load})",
            metadata=metadata,
            group_name=flow.stage,
            code_version=code_version_of(loaded, flow),
            owners=owners or None,
            tags={**flow.tags, "coolie/stage": flow.stage},
            kinds={engine, flow.destination.format, "coolie"},
            freshness_policy=freshness_policy_of(flow),
            automation_condition=automation_condition_of(loaded, flow),
            # A shard run leaves out the dataflows of other shards: their outputs are optional.
            skippable=True,
        )
