"""The bare-Dagster baseline: one plain ``AssetSpec`` per dataflow of a catalog, no coolie.

Same asset keys, deps, groups and partitions as coolie's assets, written the way a hand-made
Dagster project would (one partitions definition object per cadence). ``defs`` is built from
``$BENCH_CATALOG`` so ``dagster definitions validate -m benchmarks.bare_dagster`` loads it.

With ``executable=True`` (``$BENCH_EXECUTABLE=1``) every spec instead becomes what a Dagster
project that runs N assets itself pays for: one ``@multi_asset`` op per asset (a no-op body) and
one ``@multi_asset_check`` op per asset with its catalog checks. With ``inline_checks`` too
(``$BENCH_EXECUTABLE=checks``) the checks, plus one for coolie's schema-drift check, are
``check_specs`` of the asset's op instead: one op per asset with the same asset checks as
coolie's location, the baseline coolie's build cost is held to (coolie's shape without coolie).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

CATALOG_ENV = "BENCH_CATALOG"
EXECUTABLE_ENV = "BENCH_EXECUTABLE"


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey([p for p in table.split("/") if p])


def _partitions(spec: dict[str, Any], cache: dict[str, dg.PartitionsDefinition]) -> dg.PartitionsDefinition:
    every = spec["every"]
    if every not in cache:
        kind = {"month": dg.MonthlyPartitionsDefinition, "day": dg.DailyPartitionsDefinition}[every]
        cache[every] = kind(start_date=spec["start"], end_date=spec["end"], end_offset=0)
    return cache[every]


def _executable(spec: dg.AssetSpec, name: str, checks: int, *, inline_checks: bool = False) -> list[Any]:
    check_specs = [dg.AssetCheckSpec(f"check_{i}", asset=spec.key) for i in range(checks)]
    if inline_checks:
        # The checks are check_specs of the asset's own op: one op per asset, nothing more.
        @dg.multi_asset(specs=[spec], check_specs=check_specs, can_subset=True, name=name)
        def materialize_and_check(context: dg.AssetExecutionContext):  # type: ignore[no-untyped-def]  # several outputs: no None annotation
            context.log.info("nothing to do")

        return [materialize_and_check]

    @dg.multi_asset(specs=[spec], name=name)
    def materialize(context: dg.AssetExecutionContext) -> None:
        context.log.info("nothing to do")

    if not check_specs:
        return [materialize]

    @dg.multi_asset_check(specs=check_specs, name=f"{name}__checks")
    def run_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        for key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(asset_key=spec.key, check_name=key.name, passed=True)

    return [materialize, run_checks]


def build_bare_definitions(
    path: str | os.PathLike[str], *, executable: bool = False, inline_checks: bool = False
) -> dg.Definitions:
    """Plain AssetSpecs for every dataflow of the (generated) catalog at ``path``; with
    ``executable``, one asset op and one check op per dataflow instead; with ``inline_checks`` as
    well, one asset op per dataflow whose checks are its ``check_specs`` (no check op)."""
    document = yaml.load(Path(path).read_text("utf-8"), Loader=yaml.CSafeLoader)
    cache: dict[str, dg.PartitionsDefinition] = {}
    specs: list[Any] = []
    for flow in document["dataflows"]:
        source = flow["source"]
        dep = (
            _key(source["table"])
            if source["format"] == "delta"
            else dg.AssetKey(["source", source["connection"], source["path"].split("/")[0]])
        )
        partitions = flow.get("partitions")
        specs.append(
            dg.AssetSpec(
                key=_key(flow["destination"]["table"]),
                deps=[dep],
                group_name=flow["stage"],
                partitions_def=None if partitions is None else _partitions(partitions, cache),
            )
        )
        if executable:
            specs[-1:] = _executable(
                specs[-1],
                f"op_{flow['name']}",
                # coolie's assets carry one more check each (schema drift): the same checks here.
                len(flow.get("checks", [])) + (1 if inline_checks else 0),
                inline_checks=inline_checks,
            )
    assets = [a for a in specs if not isinstance(a, dg.AssetChecksDefinition)]
    checks = [a for a in specs if isinstance(a, dg.AssetChecksDefinition)]
    return dg.Definitions(assets=assets, asset_checks=checks or None)


defs = (
    build_bare_definitions(
        os.environ[CATALOG_ENV],
        executable=os.environ.get(EXECUTABLE_ENV) in ("1", "checks"),
        inline_checks=os.environ.get(EXECUTABLE_ENV) == "checks",
    )
    if os.environ.get(CATALOG_ENV)
    else dg.Definitions()
)
