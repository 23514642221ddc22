"""Table maintenance: compact small files (optimize) and delete unreferenced ones (vacuum).

Each Delta table is maintained once per call, keyed by its resolved path, however many catalog
entries point at it; tables are maintained in parallel. Vacuum only removes files no longer
referenced by a table version inside the retention period: time travel to older versions stops
working past it. The Delta default retention is 168 hours (7 days); coolie lets you go lower
(it then disables delta-rs's safety check on purpose), so choose it knowingly.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from coolie_core.catalog import LoadedCatalog
from coolie_core.executor import execute
from coolie_core.io.delta import delta_table_exists
from coolie_core.locations import destination_location
from coolie_core.models import RetrySpec
from coolie_core.retry import call_with_retry

__all__ = ["MaintenanceResult", "run_maintenance"]

DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    """What maintenance did to one table."""

    table: str
    dataflows: tuple[str, ...]
    status: Literal["succeeded", "skipped", "failed"]
    files_compacted: int = 0
    """Small files rewritten by optimize."""
    files_added: int = 0
    """Files optimize wrote in their place."""
    files_vacuumed: int = 0
    """Unreferenced files deleted (or that would be, in a dry run)."""
    version_before: int | None = None
    version_after: int | None = None
    error: str | None = None
    reason: str | None = None


def _maintain_one(
    path: Path, flows: tuple[str, ...], *, optimize: bool, vacuum: bool, retention_hours: int, dry_run: bool
) -> MaintenanceResult:
    from deltalake import DeltaTable

    if not delta_table_exists(path):
        return MaintenanceResult(str(path), flows, "skipped", reason="table does not exist yet")
    table = DeltaTable(str(path))
    before = table.version()
    compacted = added = 0
    if optimize and not dry_run:
        metrics: dict[str, Any] = call_with_retry(
            lambda: DeltaTable(str(path)).optimize.compact(), spec=RetrySpec(count=3, delay=0.5)
        )
        compacted = int(metrics.get("numFilesRemoved", 0))
        added = int(metrics.get("numFilesAdded", 0))
    vacuumed = 0
    if vacuum:
        removed = DeltaTable(str(path)).vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=retention_hours >= DEFAULT_RETENTION_HOURS,
        )
        vacuumed = len(removed)
    return MaintenanceResult(
        str(path), flows, "succeeded", compacted, added, vacuumed, before, DeltaTable(str(path)).version()
    )


def run_maintenance(
    loaded: LoadedCatalog,
    *,
    dataflows: Sequence[str] = (),
    optimize: bool = True,
    vacuum: bool = True,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    dry_run: bool = False,
    max_workers: int = 4,
) -> list[MaintenanceResult]:
    """Optimize and/or vacuum the catalog's Delta destinations (all, or those of ``dataflows``).

    Raises:
        ValueError: ``retention_hours`` is negative.
    """
    if retention_hours < 0:
        raise ValueError("retention_hours must be >= 0")
    catalog = loaded.catalog
    tables: dict[Path, list[str]] = {}
    for flow in catalog.dataflows:
        if flow.destination.format != "delta" or (dataflows and flow.name not in dataflows):
            continue
        tables.setdefault(destination_location(catalog, flow), []).append(flow.name)
    keys = {str(path): (path, tuple(sorted(names))) for path, names in tables.items()}

    def task(key: str) -> MaintenanceResult:
        path, names = keys[key]
        return _maintain_one(
            path, names, optimize=optimize, vacuum=vacuum, retention_hours=retention_hours, dry_run=dry_run
        )

    outcome = execute(sorted(keys), upstream={}, task=task, max_workers=max_workers)
    results = []
    for key in sorted(keys):
        record = outcome.records[key]
        if record.result is not None:
            results.append(record.result)
        else:
            results.append(
                MaintenanceResult(
                    key, keys[key][1], "failed", error=f"{type(record.error).__name__}: {record.error}"
                )
            )
    return results
