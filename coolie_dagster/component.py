"""``CoolieComponent``: a coolie catalog as a ``dg`` component, declared in ``defs.yaml``.

.. code-block:: yaml

    type: coolie_dagster.CoolieComponent
    attributes:
      catalog: catalog.yaml            # file or folder, relative to this defs.yaml's folder
      translation:                     # optional, templated per dataflow ({{ dataflow.* }})
        key_prefix: [lake]
        group_name: "lake_{{ dataflow.stage }}"
        owners: [team:data]
        tags: {domain: sales}
        description: "{{ dataflow.description }} (coolie {{ dataflow.name }})"
      state_dir: "{{ env.COOLIE_STATE_DIR }}"   # optional: run records, non-Delta watermarks
      alert_dir: "{{ env.COOLIE_ALERT_DIR }}"   # optional: failure alerts (alerts.jsonl)
      alert_webhook_url: "{{ env.COOLIE_ALERT_WEBHOOK }}"

It builds what ``build_definitions`` builds (assets, source assets, checks, stage jobs, schedules,
sensors, the ``coolie`` resource). ``dg check yaml`` checks the attributes against the component's
schema; ``dg check defs`` loads the catalog and reports its problems with the catalog's own
file:line. Subclass and override :meth:`CoolieComponent.get_asset_spec` or
:meth:`CoolieComponent.execute` to customise specs or wrap each dataflow's load.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
import yaml
from dagster.components import Component, ComponentLoadContext, Resolvable, Resolver
from dagster.components.resolved.context import ResolutionContext
from dagster.components.resolved.core_models import AssetAttributesModel
from dagster.components.scaffold.scaffold import Scaffolder, ScaffoldRequest, scaffold_with
from dagster.components.utils import TranslatorResolvingInfo

from coolie_core.catalog import LoadedCatalog
from coolie_core.models import Dataflow
from coolie_dagster.assets import materialize_dataflow
from coolie_dagster.location import build_location
from coolie_dagster.resources import CoolieResource
from coolie_dagster.translator import CoolieTranslator

__all__ = ["STARTER_CATALOG", "CoolieComponent", "CoolieComponentScaffolder"]

TranslationFn = Callable[[dg.AssetSpec, Dataflow], dg.AssetSpec]
"""Applies ``translation`` to a dataflow's spec (templates see ``dataflow`` and ``spec``)."""


def _resolve_translation(context: ResolutionContext, model: Any) -> TranslationFn | None:
    if model is None:
        return None
    # Templates stay unrendered until each dataflow is known (they refer to {{ dataflow.* }}).
    info = TranslatorResolvingInfo(
        asset_attributes=model, resolution_context=context, model_key="translation"
    )
    return lambda spec, flow: info.get_asset_spec(spec, {"dataflow": flow, "spec": spec})


STARTER_CATALOG = """\
# A coolie catalog (see the coolie README): raw CSV files -> a Delta table, incrementally.
# Paths are relative to this file; put CSV files with columns id,name,updated_at in data/raw/customers/.
version: 1

stages:
  bronze:
    schedule: "0 * * * *"
    default_status: stopped

connections:
  raw: {kind: files, path: data/raw}
  lake: {kind: delta, path: data/lake}

dataflows:
  - name: customers_bronze
    stage: bronze
    description: Customers from CSV files, appended incrementally.
    source: {format: csv, connection: raw, path: "customers/*.csv"}
    destination: {connection: lake, table: bronze/customers, load: append}
    watermark_columns: [updated_at]
"""
"""What ``dg scaffold defs coolie_dagster.CoolieComponent NAME`` writes as ``catalog.yaml``."""


class CoolieComponentScaffolder(Scaffolder[Any]):
    """Writes ``defs.yaml`` pointing at ``catalog.yaml`` and a starter catalog beside it."""

    def scaffold(self, request: ScaffoldRequest[Any]) -> None:
        """Scaffold the component folder (the starter catalog is never overwritten)."""
        target = Path(request.target_path)
        target.mkdir(parents=True, exist_ok=True)
        (target / "defs.yaml").write_text(
            yaml.safe_dump(
                {"type": request.type_name, "attributes": {"catalog": "catalog.yaml"}}, sort_keys=False
            ),
            encoding="utf-8",
        )
        catalog = target / "catalog.yaml"
        if not catalog.exists():
            catalog.write_text(STARTER_CATALOG, encoding="utf-8")


class _ComponentTranslator(CoolieTranslator):
    """Delegates specs to the component (so subclasses' ``get_asset_spec`` applies everywhere)."""

    def __init__(self, component: "CoolieComponent") -> None:
        self._component = component
        self._keys: dict[str, dg.AssetKey] = {}

    def get_asset_key(self, flow: Dataflow) -> dg.AssetKey:
        # Dependencies, checks, schedules and sensors must use the translated key too.
        key = self._keys.get(flow.name)
        if key is None:
            base = dg.AssetSpec(key=super().get_asset_key(flow))
            key = self._keys[flow.name] = self._component.translate(base, flow).key
        return key

    def get_asset_spec(self, flow: Dataflow, *, loaded: LoadedCatalog) -> dg.AssetSpec:
        return self._component.get_asset_spec(flow, loaded=loaded)

    def default_spec(self, flow: Dataflow, *, loaded: LoadedCatalog) -> dg.AssetSpec:
        """coolie's own spec, before ``translation``: its key is the untranslated one."""
        spec = super().get_asset_spec(flow, loaded=loaded)
        return spec.replace_attributes(key=super().get_asset_key(flow))


@scaffold_with(CoolieComponentScaffolder)
@dataclass
class CoolieComponent(Component, Resolvable):
    """Every dataflow of a coolie catalog as Dagster assets, with stage jobs, schedules, sensors
    and checks.

    Scaffold one with ``dg scaffold defs coolie_dagster.CoolieComponent NAME``.
    """

    catalog: str
    """The catalog file or folder, relative to the folder of this ``defs.yaml``."""
    translation: Annotated[
        TranslationFn | None,
        Resolver(
            _resolve_translation,
            model_field_type=AssetAttributesModel | None,
            inject_before_resolve=False,
            description=(
                "Asset attributes applied to every dataflow's asset (key_prefix, group_name, owners, "
                "tags, description, ...); templates see {{ dataflow }} (the catalog dataflow) and "
                "{{ spec }} (coolie's spec)."
            ),
        ),
    ] = None
    state_dir: str | None = None
    """coolie's run records and non-Delta watermarks (relative to this folder; default ``.coolie``
    beside the catalog)."""
    alert_dir: str | None = None
    """Folder of the failure sensor's ``alerts.jsonl`` (default ``$COOLIE_ALERT_DIR``)."""
    alert_webhook_url: str | None = None
    """Webhook the failure sensor POSTs to (default ``$COOLIE_ALERT_WEBHOOK``); write
    ``{{ env.VAR }}`` rather than a literal URL with a token."""

    def translate(self, spec: dg.AssetSpec, flow: Dataflow) -> dg.AssetSpec:
        """``spec`` with ``translation`` applied (unchanged without one)."""
        return spec if self.translation is None else self.translation(spec, flow)

    def get_asset_spec(self, flow: Dataflow, *, loaded: LoadedCatalog) -> dg.AssetSpec:
        """The spec of a dataflow's asset: coolie's, then ``translation``. Override to customise
        (call ``super()`` and ``replace_attributes``/``merge_attributes``); keep the key from
        ``super()`` so dependencies stay consistent."""
        spec = self._translator().default_spec(flow, loaded=loaded)
        return self.translate(spec, flow)

    def execute(
        self, context: dg.AssetExecutionContext, coolie: CoolieResource, *, dataflow: str
    ) -> Iterator[Any]:
        """The body of a dataflow's op; override to wrap coolie's load (yield from ``super()``)."""
        yield from materialize_dataflow(context, coolie, dataflow=dataflow)

    def _translator(self) -> _ComponentTranslator:
        cached = self.__dict__.get("_coolie_translator")
        if cached is None:
            cached = self.__dict__["_coolie_translator"] = _ComponentTranslator(self)
        return cached

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        """Load the catalog (raising its located errors) and build the location."""
        base = Path(context.path)
        folder = base if base.is_dir() else base.parent

        def local(path: str | None) -> Path | None:
            return None if not path else folder / Path(path).expanduser()

        catalog = local(self.catalog)
        assert catalog is not None

        def run(context: dg.AssetExecutionContext, coolie: CoolieResource, name: str) -> Iterator[Any]:
            return self.execute(context, coolie, dataflow=name)

        return build_location(
            catalog,
            translator=self._translator(),
            state_dir=local(self.state_dir),
            alert_dir=local(self.alert_dir),
            webhook_url=self.alert_webhook_url or None,
            execute=run,
        )
