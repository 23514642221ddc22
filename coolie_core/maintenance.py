"""Table maintenance: compact small files (optimize) and delete unreferenced ones (vacuum).

Covers the Delta destinations and the quarantine tables of the catalog's dataflows. Each Delta
table is maintained once per call, keyed by its resolved path, however many catalog entries
point at it; tables are maintained in parallel. Vacuum only removes files no longer referenced
by a table version inside the retention period: time travel to older versions stops working past
it. The Delta default retention is 168 hours (7 days); coolie lets you go lower (it then disables
delta-rs's safety check on purpose), so choose it knowingly.

A dry run changes nothing and reports, per table, the files a real run would compact and those
it would vacuum. Compaction rewrites, per partition, the files smaller than the target size when
there are at least two of them (delta-rs' rule; the target is the table's
``delta.targetFileSize`` or :data:`DEFAULT_TARGET_SIZE`, passed explicitly so both agree).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from coolie_core.catalog import LoadedCatalog
from coolie_core.executor import execute
from coolie_core.locations import destination_storage
from coolie_core.models import RetrySpec
from coolie_core.quarantine import quarantine_location
from coolie_core.retry import call_with_retry
from coolie_core.storage import StorageLocation, as_location, delta_table, delta_table_exists

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["DEFAULT_TARGET_SIZE", "MaintenanceResult", "run_maintenance"]

DEFAULT_RETENTION_HOURS = 168
DEFAULT_TARGET_SIZE = 100 * 1024 * 1024
"""Bytes a compacted file aims at when the table sets no ``delta.targetFileSize`` (delta-rs' default)."""


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    """What maintenance did to one table (or, in a dry run, would do)."""

    table: str
    dataflows: tuple[str, ...]
    status: Literal["succeeded", "skipped", "failed"]
    files_compacted: int = 0
    """Small files rewritten by optimize (in a dry run: that a real run would rewrite)."""
    files_added: int = 0
    """Files optimize wrote in their place."""
    files_vacuumed: int = 0
    """Unreferenced files deleted (or that would be, in a dry run)."""
    version_before: int | None = None
    version_after: int | None = None
    error: str | None = None
    reason: str | None = None
    role: Literal["destination", "quarantine"] = "destination"
    """Whether the table is a dataflow's destination or its quarantine table."""


def _target_size(table: "DeltaTable") -> int:
    configured = table.metadata().configuration.get("delta.targetFileSize")
    try:
        return int(configured) if configured else DEFAULT_TARGET_SIZE
    except ValueError:
        return DEFAULT_TARGET_SIZE


def _files_to_compact(table: "DeltaTable", *, target_size: int) -> int:
    """The files optimize would rewrite: per partition, the small ones when there are two or more."""
    actions = table.get_add_actions(flatten=True)  # an Arrow table, one row per live file
    sizes = actions.column("size_bytes").to_pylist()
    partitions = [actions.column(c).to_pylist() for c in actions.column_names if c.startswith("partition.")]
    small = Counter(
        tuple(str(values[i]) for values in partitions)
        for i, size in enumerate(sizes)
        if int(size) < target_size
    )
    return sum(count for count in small.values() if count >= 2)


def _maintain_one(
    path: StorageLocation,
    flows: tuple[str, ...],
    *,
    role: Literal["destination", "quarantine"],
    optimize: bool,
    vacuum: bool,
    retention_hours: int,
    dry_run: bool,
) -> MaintenanceResult:
    if not delta_table_exists(path):
        return MaintenanceResult(str(path), flows, "skipped", reason="table does not exist yet", role=role)
    table = delta_table(path)
    before = table.version()
    target = _target_size(table)
    compacted = added = 0
    if optimize and dry_run:
        compacted = _files_to_compact(table, target_size=target)
    elif optimize:
        metrics: dict[str, Any] = call_with_retry(
            lambda: delta_table(path).optimize.compact(target_size=target),
            spec=RetrySpec(count=3, delay=0.5),
        )
        compacted = int(metrics.get("numFilesRemoved", 0))
        added = int(metrics.get("numFilesAdded", 0))
    vacuumed = 0
    if vacuum:
        removed = delta_table(path).vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=retention_hours >= DEFAULT_RETENTION_HOURS,
            # "full" also removes files no commit ever listed (batches killed before their commit);
            # delta-rs' default "lite" mode keeps them forever.
            full=True,
        )
        vacuumed = len(removed)
    return MaintenanceResult(
        str(path), flows, "succeeded", compacted, added, vacuumed, before, delta_table(path).version(),
        role=role,
    )  # fmt: skip


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
    """Optimize and/or vacuum the catalog's Delta destinations and quarantine tables (all, or
    those of ``dataflows``).

    Raises:
        ValueError: ``retention_hours`` is negative.
    """
    if retention_hours < 0:
        raise ValueError("retention_hours must be >= 0")
    catalog = loaded.catalog
    tables: dict[StorageLocation, list[str]] = {}
    roles: dict[StorageLocation, Literal["destination", "quarantine"]] = {}
    for flow in catalog.dataflows:
        if dataflows and flow.name not in dataflows:
            continue
        if flow.destination.format == "delta":
            path = destination_storage(catalog, flow)
            tables.setdefault(path, []).append(flow.name)
            roles[path] = "destination"
        if flow.quarantine is not None:
            path = as_location(quarantine_location(catalog, flow))
            tables.setdefault(path, []).append(flow.name)
            roles.setdefault(path, "quarantine")
    keys = {str(path): (path, tuple(sorted(names))) for path, names in tables.items()}

    def task(key: str) -> MaintenanceResult:
        path, names = keys[key]
        return _maintain_one(
            path, names, role=roles[path], optimize=optimize, vacuum=vacuum,
            retention_hours=retention_hours, dry_run=dry_run,
        )  # fmt: skip

    outcome = execute(sorted(keys), upstream={}, task=task, max_workers=max_workers)
    results = []
    for key in sorted(keys):
        record = outcome.records[key]
        if record.result is not None:
            results.append(record.result)
        else:
            results.append(
                MaintenanceResult(
                    key,
                    keys[key][1],
                    "failed",
                    error=f"{type(record.error).__name__}: {record.error}",
                    role=roles[keys[key][0]],
                )
            )
    return results
