"""Materialisation metadata beyond a run's totals: per-partition figures and Dagster's conventions.

* **Per partition.** A range run (single-run backfill) loads its windows one after another; Dagster
  records one materialisation per partition, and :func:`partition_metadata` gives each its own
  ``dagster/row_count``, rows read/written, status, Delta version and preview (the run's totals
  stay in the shared metadata under the same keys only where no partition overrides them).
* **Conventions.** ``dagster/uri`` (the destination's location), ``dagster/table_name``
  (``<connection>.<table path with dots>``), ``dagster/column_schema`` (the written table's
  columns) and ``dagster/column_lineage`` (see :mod:`coolie_dagster.lineage`).
"""

from typing import Any

import dagster as dg
import polars as pl

from coolie_core.driver import DataflowResult
from coolie_core.engines.polars.filters import window_expr
from coolie_core.locations import destination_storage
from coolie_core.models import Catalog, Dataflow
from coolie_core.storage import delta_table, delta_table_exists, library_options
from coolie_core.windows import Window
from coolie_dagster.lineage import column_lineage

__all__ = [
    "PREVIEW_ROWS",
    "column_schema",
    "files_metadata",
    "partition_metadata",
    "preview_table",
    "table_metadata",
]

PREVIEW_ROWS = 5


def files_metadata(results: list[DataflowResult]) -> dict[str, Any]:
    """``incremental: files``: the files a run loaded (count, first names) and those still waiting."""
    summaries = [r.files for r in results if r.files is not None]
    if not summaries:
        return {}
    names = [name for s in summaries for name in s["names"]]
    metadata: dict[str, Any] = {
        "coolie/files_loaded": sum(int(s["loaded"]) for s in summaries),
        "coolie/files_pending": int(summaries[-1]["pending"]),
        "coolie/files_first": dg.MetadataValue.json(names[:10]),
    }
    rejected = [name for s in summaries for name in s.get("rejected_names", [])]
    if rejected:  # on_bad_file: quarantine
        metadata["coolie/files_rejected"] = sum(int(s["rejected"]) for s in summaries)
        metadata["coolie/files_rejected_first"] = dg.MetadataValue.json(rejected[:10])
    if any(s["changed_ignored"] for s in summaries):
        metadata["coolie/files_changed_ignored"] = max(int(s["changed_ignored"]) for s in summaries)
    return metadata


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def column_schema(schema: pl.Schema) -> dg.TableSchema:
    """Dagster's table schema of a Polars schema (types as Polars names them)."""
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()])


def preview_table(frame: pl.DataFrame) -> dg.MetadataValue:
    """The first rows of a frame as a Dagster table (cells that are not JSON scalars as text)."""
    records = [dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in frame.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=column_schema(frame.schema))


def table_metadata(
    catalog: Catalog, flow: Dataflow, *, source: dg.AssetKey | None, version: int | None
) -> dict[str, Any]:
    """``dagster/uri``, ``dagster/table_name`` and, when the table can be read,
    ``dagster/column_schema`` and ``dagster/column_lineage`` (onto ``source``)."""
    location = destination_storage(catalog, flow)
    uri = location.path.as_uri() if location.is_local else location.uri
    name = ".".join([flow.destination.connection, *(p for p in flow.destination.table.split("/") if p)])
    metadata: dict[str, Any] = {"dagster/uri": uri, "dagster/table_name": name}
    try:
        lazy = _open(catalog, flow, version=version)
        schema = None if lazy is None else lazy.collect_schema()
    except Exception:  # metadata is a courtesy: never fail a committed load over it
        schema = None
    if schema is not None:
        metadata["dagster/column_schema"] = column_schema(schema)
        if source is not None:
            metadata["dagster/column_lineage"] = column_lineage(flow, list(schema.names()), source=source)
    return metadata


def _open(catalog: Catalog, flow: Dataflow, *, version: int | None) -> pl.LazyFrame | None:
    path = destination_storage(catalog, flow)
    if flow.destination.format == "delta":
        if not delta_table_exists(path):
            return None
        return pl.scan_delta(delta_table(path, version=version))
    files = [info.uri for info in path.join("part-*.parquet").glob()]
    return pl.scan_parquet(files, storage_options=library_options(path)) if files else None


def _window_preview(lazy: pl.LazyFrame, flow: Dataflow, window: Window) -> dg.MetadataValue | None:
    spec = flow.partitions
    assert spec is not None
    try:
        schema = lazy.collect_schema()
        where = f"dataflow {flow.name}"
        rows = lazy.filter(
            window_expr(spec.column, window.lo, window.hi, schema, where=where, timezone=spec.timezone)
        )
        return preview_table(rows.head(PREVIEW_ROWS).collect())
    except Exception:  # the preview is a courtesy: never fail a committed load over it
        return None


def partition_metadata(
    catalog: Catalog,
    flow: Dataflow,
    loads: list[tuple[Window, DataflowResult]],
    *,
    partition_keys: set[str],
) -> dict[str, dict[str, Any]]:
    """Each partition's own metadata, by partition key, from the load of its window.

    ``dagster/row_count`` is what the window's load wrote, which is the partition's row count:
    a partition load replaces exactly its window. A window whose load found nothing to write
    still records a materialisation (row count 0, status ``skipped``): the partition is up to date.
    """
    version = next((r.delta_version for _, r in reversed(loads) if r.delta_version is not None), None)
    try:
        lazy = _open(catalog, flow, version=version)
    except Exception:  # unreadable table: figures without previews
        lazy = None
    out: dict[str, dict[str, Any]] = {}
    for window, result in loads:
        if window.key not in partition_keys:
            continue
        metadata: dict[str, Any] = {
            "dagster/row_count": result.rows_written,
            "coolie/rows_read": result.rows_read,
            "coolie/rows_written": result.rows_written,
            "coolie/status": result.status,
            "coolie/window": window.key,
            "coolie/duration_s": round(result.duration_s, 3),
        }
        if result.delta_version is not None:
            metadata["coolie/delta_version"] = result.delta_version
        if flow.quarantine is not None:
            metadata["coolie/rows_rejected"] = result.rows_rejected
        if result.reason:
            metadata["coolie/reason"] = result.reason
        preview = None if lazy is None else _window_preview(lazy, flow, window)
        if preview is not None:
            metadata["coolie/preview"] = preview
        out[window.key] = metadata
    return out
