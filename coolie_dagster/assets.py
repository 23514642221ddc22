"""Catalog dataflows -> Dagster assets: one op per dataflow, executed by ``coolie_core``'s Driver.

One op per dataflow keeps failure and retries per dataflow (a Dagster retry re-runs the whole op).
Each op is named ``coolie__<dataflow>``: dataflow names are unique identifiers, so op names never
collide even when two destination keys sanitise to the same string.

* Unpartitioned: one incremental run by watermark (``Driver.run_one(flow)``).
* Partitioned: the windows of the run's partition (or partition range: backfills are
  ``single_run``) in calendar order, each replaced exactly (idempotent, watermark untouched).
* Runs tagged ``coolie/job_num`` + ``coolie/job_index`` materialise only that shard's dataflows;
  the others yield nothing (their specs are ``skippable``).
"""

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from coolie_core.catalog import LoadedCatalog
from coolie_core.driver import DataflowResult
from coolie_core.engines import use_spark_session
from coolie_core.locations import destination_storage
from coolie_core.models import Catalog, Dataflow, RetrySpec
from coolie_core.sharding import ShardSpec, assign_shard
from coolie_core.storage import delta_table, delta_table_exists, library_options
from coolie_core.windows import Window
from coolie_dagster.checks import evaluate_table_checks, table_check_specs
from coolie_dagster.metadata import PREVIEW_ROWS, files_metadata, partition_metadata, table_metadata
from coolie_dagster.metadata import preview_table as _preview
from coolie_dagster.partitions import (
    PartitionsError,
    build_partitions_def,
    check_run_partitions,
    windows_for_keys,
    windows_for_time_window,
)
from coolie_dagster.resources import SPARK_RESOURCE_KEY, CoolieResource
from coolie_dagster.tags import JOB_INDEX_TAG, JOB_NUM_TAG
from coolie_dagster.translator import CoolieTranslator

__all__ = [
    "DRIFT_CHECK",
    "JOB_INDEX_TAG",
    "JOB_NUM_TAG",
    "PREVIEW_ROWS",
    "ExecuteFn",
    "build_coolie_assets",
    "build_dataflow_asset",
    "materialize_dataflow",
    "op_name_for",
    "retry_policy_for",
    "shard_from_tags",
]

DRIFT_CHECK = "schema_drift"
"""Every dataflow asset reports its schema drift as this asset check (evaluated by the load)."""


def op_name_for(flow: Dataflow) -> str:
    """The op name of a dataflow's asset: unique because dataflow names are."""
    return f"coolie__{flow.name}"


def retry_policy_for(spec: RetrySpec) -> dg.RetryPolicy | None:
    """The Dagster retry policy of a catalog retry spec (None when it allows no retry).

    Dagster's exponential delays are ``delay * (2**n - 1)`` and its jitter is ``± delay``; it has
    no ``max_delay``. Only failures the op marks retryable (transient errors) are retried.

    >>> retry_policy_for(RetrySpec(count=2, delay=1.5, jitter=0.5))
    RetryPolicy(max_retries=2, delay=1.5, backoff=<Backoff.EXPONENTIAL: 'EXPONENTIAL'>, jitter=<Jitter.PLUS_MINUS: 'PLUS_MINUS'>)
    """
    if spec.count == 0:
        return None
    return dg.RetryPolicy(
        max_retries=spec.count,
        delay=spec.delay,
        backoff=dg.Backoff.EXPONENTIAL if spec.backoff == "exponential" else None,
        jitter=dg.Jitter.PLUS_MINUS if spec.jitter else None,
    )


def shard_from_tags(tags: Mapping[str, str]) -> ShardSpec | None:
    """The shard a run is tagged with, or None when it carries no shard tags.

    Raises:
        ValueError: only one of the tags, or values that are not a valid shard.
    """
    num, index = tags.get(JOB_NUM_TAG), tags.get(JOB_INDEX_TAG)
    if num is None and index is None:
        return None
    if num is None or index is None:
        raise ValueError(f"run tags {JOB_NUM_TAG} and {JOB_INDEX_TAG} go together; got only one")
    try:
        return ShardSpec(job_num=int(num), job_index=int(index))
    except ValueError as exc:
        raise ValueError(
            f"bad shard run tags {JOB_NUM_TAG}={num!r} {JOB_INDEX_TAG}={index!r}: {exc}"
        ) from exc


def build_dataflow_asset(
    flow: Dataflow,
    *,
    loaded: LoadedCatalog,
    translator: CoolieTranslator | None = None,
    execute: "ExecuteFn | None" = None,
) -> dg.AssetsDefinition:
    """The asset of one dataflow: spec from the translator, partitions, retry and backfill policy.

    ``execute`` replaces the op body (default :func:`materialize_dataflow`)."""
    spec = (translator or CoolieTranslator()).get_asset_spec(flow, loaded=loaded)
    partitions_def = build_partitions_def(flow.partitions, dataflow=flow.name)
    name = flow.name

    drift_check = dg.AssetCheckSpec(
        DRIFT_CHECK,
        asset=spec.key,
        description=(
            f"Columns of the loaded data against the table (policy {flow.destination.schema_drift}): "
            "fails on missing or retyped columns, and on new ones unless the policy is evolve or ignore."
        ),
    )

    run = execute or _default_execute
    spark = loaded.catalog.engine_for(flow) == "spark"

    # Resources come from required_resource_keys, not parameter annotations, and the return
    # annotation is plain ``object`` (a generator's supertype): Dagster evaluates an op
    # function's type hints several times per op, and a generic such as ``Iterator[Any]`` is
    # re-evaluated each time (a fifth of the build at thousands of dataflows, then a tenth).
    @dg.multi_asset(
        specs=[spec if spec.skippable else spec.replace_attributes(skippable=True)],
        # The catalog's table checks run in the same op, after the load (one op per dataflow:
        # a separate check op per dataflow doubled the location's build cost).
        check_specs=[drift_check, *table_check_specs(flow, key=spec.key)],
        # Subsettable so the checks' outputs are optional: a shard that skips the dataflow
        # yields neither the asset nor its checks, and checks can run without a load.
        can_subset=True,
        name=op_name_for(flow),
        partitions_def=partitions_def,
        retry_policy=retry_policy_for(loaded.catalog.retry_for(flow)),
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        required_resource_keys={"coolie", SPARK_RESOURCE_KEY} if spark else {"coolie"},
    )
    def _dataflow_asset(context: dg.AssetExecutionContext) -> object:
        if spark:
            # The pyspark resource starts (or finds) the process' session; coolie's engine uses it.
            use_spark_session(getattr(context.resources, SPARK_RESOURCE_KEY).spark_session)
        yield from run(context, context.resources.coolie, name)

    return _dataflow_asset


def build_coolie_assets(
    loaded: LoadedCatalog,
    *,
    translator: CoolieTranslator | None = None,
    execute: "ExecuteFn | None" = None,
) -> list[dg.AssetsDefinition]:
    """One asset per enabled dataflow, in dependency order (``execute``: see :data:`ExecuteFn`)."""
    translator = translator or CoolieTranslator()
    catalog = loaded.catalog
    return [
        build_dataflow_asset(catalog.dataflow(name), loaded=loaded, translator=translator, execute=execute)
        for name in loaded.order()
        if catalog.dataflow(name).enabled
    ]


# --------------------------------------------------------------------------- execution

AssetEvent = dg.MaterializeResult[None] | dg.AssetCheckResult
ExecuteFn = Callable[[dg.AssetExecutionContext, CoolieResource, str], Iterator[Any]]
"""The body of a dataflow's op: ``(context, coolie, dataflow name) -> events``; the default is
:func:`materialize_dataflow`. Wrap it to add work before or after a load."""


def materialize_dataflow(
    context: dg.AssetExecutionContext, coolie: CoolieResource, *, dataflow: str
) -> Iterator[AssetEvent]:
    """Run one dataflow for this op's run (its partitions or shard) and yield its Dagster events."""
    yield from _materialize(context, coolie, name=dataflow, partitions_def=context.assets_def.partitions_def)


def _default_execute(
    context: dg.AssetExecutionContext, coolie: CoolieResource, name: str
) -> Iterator[AssetEvent]:
    return materialize_dataflow(context, coolie, dataflow=name)


def _materialize(
    context: dg.AssetExecutionContext,
    coolie: CoolieResource,
    *,
    name: str,
    partitions_def: dg.PartitionsDefinition | None,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    try:
        shard = shard_from_tags(context.run.tags)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    catalog = coolie.load_catalog().catalog
    try:
        flow = catalog.dataflow(name)
    except KeyError:
        raise dg.Failure(
            description=f"dataflow {name} is no longer in {coolie.catalog_path}; reload the code location",
            allow_retries=False,
        ) from None
    if not context.selected_asset_keys:
        if DRIFT_CHECK in {k.name for k in context.selected_asset_check_keys}:
            context.log.info(f"{name}: its drift check is evaluated by a load, not on its own")
        yield from _table_checks(context, coolie, flow)
        return
    if shard is not None and (owner := assign_shard(flow, shard.job_num)) != shard.job_index:
        context.log.info(
            f"{name}: shard {owner} of {shard.job_num}, not this run's {shard.job_index}; skipped"
        )
        return
    windows = _windows(context, flow, partitions_def)
    if not windows:
        raise dg.Failure(
            description=f"dataflow {name}: no coolie window inside partitions {context.partition_keys}",
            allow_retries=False,
        )
    driver = coolie.get_driver(run_id=context.run.run_id)
    results: list[DataflowResult] = []
    for window in windows:
        result = driver.run_one(flow, window=window)
        results.append(result)
        context.log.info(
            f"{name}{'' if window is None else ' window ' + window.key}: {result.status}, "
            f"{result.rows_read} rows read, {result.rows_written} written"
            + (f", Delta version {result.delta_version}" if result.delta_version is not None else "")
            + (f" ({result.reason})" if result.reason else "")
        )
        if result.status == "failed":
            if result.schema_drift is not None:
                yield _drift_result(flow, [result])
            raise _failure(flow, result, done=results[:-1], attempt=context.retry_number)
    if partitions_def is not None:
        # One materialisation per partition, each with its own figures (not the range's totals).
        loads = [(w, r) for w, r in zip(windows, results, strict=True) if w is not None]
        key = next(iter(context.selected_asset_keys))
        by_key = partition_metadata(catalog, flow, loads, partition_keys=set(context.partition_keys))
        for partition_key, extra in by_key.items():
            context.add_asset_metadata(extra, asset_key=key, partition_key=partition_key)
    version = next((r.delta_version for r in reversed(results) if r.delta_version is not None), None)
    yield dg.MaterializeResult(
        metadata={
            **_metadata(catalog, flow, results, partitioned=partitions_def is not None),
            **table_metadata(catalog, flow, source=_source_key(context), version=version),
        }
    )
    yield _drift_result(flow, results)
    yield from _table_checks(context, coolie, flow)


def _table_checks(
    context: dg.AssetExecutionContext, coolie: CoolieResource, flow: Dataflow
) -> Iterator[dg.AssetCheckResult]:
    """The selected catalog checks of the dataflow, on its destination as it is now."""
    selected = [k for k in context.selected_asset_check_keys if k.name != DRIFT_CHECK]
    if not selected:
        return
    # The checks' own asset key: a check-only subset of the op holds no asset key.
    key, names = selected[0].asset_key, {k.name for k in selected}
    loaded = coolie.load_catalog()
    base = loaded.path if loaded.path.is_dir() else loaded.path.parent
    state_dir = Path(coolie.state_dir) if coolie.state_dir else base / ".coolie"
    path = destination_storage(loaded.catalog, flow)
    yield from evaluate_table_checks(flow, key=key, path=path, state_dir=state_dir, names=names)


def _source_key(context: dg.AssetExecutionContext) -> dg.AssetKey | None:
    """The asset the dataflow reads (``coolie/source_asset`` in its spec), for column lineage."""
    spec = context.assets_def.specs_by_key.get(next(iter(context.selected_asset_keys)))
    value = None if spec is None else spec.metadata.get("coolie/source_asset")
    text = getattr(value, "value", value)
    return dg.AssetKey.from_user_string(text) if isinstance(text, str) else None


def _drift_result(flow: Dataflow, results: list[DataflowResult]) -> dg.AssetCheckResult:
    """The schema drift check of a load: passed unless the drift failed it."""
    drifts = [r.schema_drift for r in results if r.schema_drift is not None]
    failed = any(r.status == "failed" for r in results if r.schema_drift is not None)
    metadata: dict[str, Any] = {"coolie/policy": flow.destination.schema_drift}
    for key in ("new", "missing"):
        columns = sorted({c for d in drifts for c in d[key]})
        if columns:
            metadata[f"coolie/{key}_columns"] = ", ".join(columns)
    retyped = {c: f"{old} -> {new}" for d in drifts for c, (old, new) in d["retyped"].items()}
    if retyped:
        metadata["coolie/retyped_columns"] = dg.MetadataValue.json(retyped)
    if not drifts:
        description = "no schema drift"
    elif failed:
        description = next(r.error for r in results if r.status == "failed") or "schema drift"
    else:
        description = "schema drift accepted by the policy"
    metadata["coolie/drift"] = description
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description,
    )


def _windows(
    context: dg.AssetExecutionContext, flow: Dataflow, partitions_def: dg.PartitionsDefinition | None
) -> list[Window | None]:
    if partitions_def is None:
        return [None]
    if flow.partitions is None:
        raise dg.Failure(
            description=f"dataflow {flow.name} has no partitions any more; reload the code location",
            allow_retries=False,
        )
    try:
        check_run_partitions(partitions_def, context.run.tags, dataflow=flow.name)
    except PartitionsError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # partition_time_window spans the whole range in a single-run backfill.
        return list(windows_for_time_window(flow.partitions, context.partition_time_window))
    return list(windows_for_keys(flow.partitions, context.partition_keys))


def _failure(
    flow: Dataflow, result: DataflowResult, *, done: list[DataflowResult], attempt: int
) -> dg.Failure:
    transient = result.transient
    metadata: dict[str, Any] = {
        "coolie/dataflow": flow.name,
        "coolie/error_type": result.error_type or "unknown",
        "coolie/transient": transient,
        "coolie/attempt": attempt + 1,
    }
    if result.window is not None:
        metadata["coolie/window"] = result.window
        metadata["coolie/windows_done"] = ", ".join(r.window or "" for r in done)
    error = result.error or "failed without an error message"
    description = error if f"dataflow {flow.name}" in error else f"dataflow {flow.name}: {error}"
    return dg.Failure(description=description, metadata=metadata, allow_retries=transient)


def _watermark_text(watermark: Mapping[str, Any] | None) -> str:
    if not watermark:
        return "none"
    return ", ".join(
        f"{column}={value.isoformat() if isinstance(value, dt.date) else value}"
        for column, value in sorted(watermark.items())
    )


def _metadata(
    catalog: Catalog, flow: Dataflow, results: list[DataflowResult], *, partitioned: bool
) -> dict[str, Any]:
    first, last = results[0], results[-1]
    rows_written = sum(r.rows_written for r in results)
    status = "succeeded" if any(r.status == "succeeded" for r in results) else "skipped"
    version = next((r.delta_version for r in reversed(results) if r.delta_version is not None), None)
    table = _read_destination(catalog, flow, version=version)
    metadata: dict[str, Any] = {
        "coolie/rows_read": sum(r.rows_read for r in results),
        "coolie/rows_written": rows_written,
        # The rest of the run's accounting: read = written + rejected + filtered + late + these.
        "coolie/rows_filtered": sum(r.rows_filtered for r in results),
        "coolie/rows_rejected": sum(r.rows_rejected for r in results),
        "coolie/rows_late": sum(r.rows_late for r in results),
        "coolie/rows_without_watermark": sum(r.rows_without_watermark for r in results),
        "coolie/status": status,
        "coolie/watermark_before": _watermark_text(first.watermark_before),
        "coolie/watermark_after": _watermark_text(last.watermark_after),
        "coolie/duration_s": round(sum(r.duration_s for r in results), 3),
    }
    # dagster/row_count is the row count of what is marked materialised: the whole table when
    # unpartitioned (rows_written says what this run added), the partition's rows when one
    # partition ran. A range run marks every partition with the same metadata, so a total would
    # be wrong for each of them: it reports rows per window instead.
    if not partitioned:
        metadata["dagster/row_count"] = rows_written if table is None else table[0]
    elif len(results) == 1:
        metadata["dagster/row_count"] = rows_written
    else:
        metadata["coolie/rows_by_window"] = dg.MetadataValue.json(
            {r.window or "": r.rows_written for r in results}
        )
    if partitioned:
        metadata["coolie/windows"] = ", ".join(r.window or "" for r in results)
    rejected = sum(r.rows_rejected for r in results)
    if flow.quarantine is not None:
        metadata["coolie/rows_rejected"] = rejected
        by_rule: dict[str, int] = {}
        for r in results:
            for rule, count in r.rejected_by_rule.items():
                by_rule[rule] = by_rule.get(rule, 0) + count
        if by_rule:
            metadata["coolie/rejected_by_rule"] = dg.MetadataValue.json(by_rule)
        table_path = next((r.quarantine_table for r in results if r.quarantine_table), None)
        if table_path is not None:
            metadata["coolie/quarantine_table"] = dg.MetadataValue.path(table_path)
    metadata.update(files_metadata(results))
    reasons = sorted({r.reason for r in results if r.reason})
    if reasons:
        metadata["coolie/reason"] = "; ".join(reasons)
    if table is not None:
        metadata["coolie/delta_version"] = table[1] if table[1] is not None else "n/a"
        metadata["coolie/preview"] = _preview(table[2])
    return metadata


def _read_destination(
    catalog: Catalog, flow: Dataflow, *, version: int | None
) -> tuple[int, int | None, pl.DataFrame] | None:
    """Row count, Delta version and first rows of the destination; None if it cannot be read."""
    path = destination_storage(catalog, flow)
    try:
        if flow.destination.format == "delta":
            if not delta_table_exists(path):
                return None
            table = delta_table(path, version=version)
            lazy = pl.scan_delta(table)
            current: int | None = table.version()
        else:
            files = [info.uri for info in path.join("part-*.parquet").glob()]
            if not files:
                return None
            lazy, current = pl.scan_parquet(files, storage_options=library_options(path)), None
        count = lazy.select(pl.len()).collect().item()
        return int(count), current, lazy.head(PREVIEW_ROWS).collect()
    except Exception:  # the preview is a courtesy: never fail a committed load over it
        return None
