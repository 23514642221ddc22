"""Catalog rules that span objects: connection references and kinds, paths inside their
connection, declared stages, partitions the code location can list. Run after every document
validated on its own."""

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from coolie_core.errors import CatalogIssue
from coolie_core.locations import connection_location, join_location
from coolie_core.models import (
    Catalog,
    Dataflow,
    DeltaConnection,
    DeltaSource,
    FilesConnection,
    FileSource,
    PartitionSpec,
    PythonConnection,
    PythonSource,
    SqlConnection,
    SqlSource,
)
from coolie_core.storage import StorageLocation
from coolie_core.windows import irregular_windows, next_boundary, plan_windows

__all__ = ["LineOf", "check_automation", "check_partitions", "check_references"]


def _storage(conn: FilesConnection | DeltaConnection) -> StorageLocation:
    """The connection's folder or object-store prefix (paths inside it obey the same rules)."""
    return connection_location(conn)


class LineOf(Protocol):
    """The line a dataflow (or a field inside it, by key path) is declared on."""

    def __call__(self, name: str, path: Sequence[str | int] = ()) -> int | None: ...


_SOURCE_KINDS: dict[type, type[BaseModel]] = {
    FileSource: FilesConnection,
    DeltaSource: DeltaConnection,
    SqlSource: SqlConnection,
    PythonSource: PythonConnection,
}
_KIND_NAMES = {
    FilesConnection: "files",
    DeltaConnection: "delta",
    SqlConnection: "sql",
    PythonConnection: "python",
}


def check_references(catalog: Catalog, *, origins: dict[str, str], line_of: LineOf) -> list[CatalogIssue]:
    """Rules that span objects: references, connection kinds, path containment, stages."""
    issues: list[CatalogIssue] = []
    for flow in catalog.dataflows:

        def issue(field: str, message: str, flow: Dataflow = flow) -> None:
            issues.append(CatalogIssue(origins[flow.name], flow.name, field, message, line_of(flow.name)))

        if catalog.stages and flow.stage not in catalog.stages:
            issue(
                "stage",
                f"stage {flow.stage!r} is not declared in stages ({', '.join(sorted(catalog.stages))})",
            )

        source = flow.source
        conn = catalog.connections.get(source.connection)
        expected = _SOURCE_KINDS[type(source)]
        if conn is None:
            issue(
                "source.connection",
                f"unknown connection {source.connection!r}; declared: {', '.join(sorted(catalog.connections)) or 'none'}",
            )
        elif not isinstance(conn, expected):
            issue(
                "source.connection",
                f"format {source.format} needs a {_KIND_NAMES[expected]} connection, {source.connection!r} is {conn.kind}",
            )
        else:
            rel = (
                source.path
                if isinstance(source, FileSource)
                else source.table
                if isinstance(source, DeltaSource)
                else None
            )
            if rel is not None and isinstance(conn, FilesConnection | DeltaConnection):
                try:
                    join_location(_storage(conn), rel)
                except ValueError as exc:
                    issue("source.path" if isinstance(source, FileSource) else "source.table", str(exc))
            if isinstance(conn, PythonConnection) and conn.path is not None and not Path(conn.path).is_file():
                issue(
                    "source.connection",
                    f"python connection {source.connection!r} points to a missing file {conn.path}",
                )

        if isinstance(source, FileSource) and source.incremental and catalog.engine_for(flow) == "spark":
            issue(
                "source.incremental",
                "files: not on the spark engine (its readers scan the whole glob); use engine: polars",
            )

        dest = flow.destination
        dconn = catalog.connections.get(dest.connection)
        wanted = DeltaConnection if dest.format == "delta" else FilesConnection
        if dconn is None:
            issue(
                "destination.connection",
                f"unknown connection {dest.connection!r}; declared: {', '.join(sorted(catalog.connections)) or 'none'}",
            )
        elif not isinstance(dconn, wanted):
            issue(
                "destination.connection",
                f"format {dest.format} needs a {_KIND_NAMES[wanted]} connection, {dest.connection!r} is {dconn.kind}",
            )
        else:
            try:
                # ``a/..`` resolves to the connection folder itself: no table folder either.
                if join_location(_storage(dconn), dest.table) == join_location(_storage(dconn), ""):
                    issue("destination.table", "must name a table folder inside the connection")
            except ValueError as exc:
                issue("destination.table", str(exc))
            if flow.quarantine is not None and flow.quarantine.table is not None:
                try:
                    join_location(_storage(dconn), flow.quarantine.table)
                except ValueError as exc:
                    issue("quarantine.table", str(exc))
                if flow.quarantine.table.strip("/") == dest.table.strip("/"):
                    issue("quarantine.table", "must differ from destination.table")
    return issues


@functools.lru_cache(maxsize=256)
def _fixed_keys_problem(spec: PartitionSpec) -> tuple[str, str] | None:
    """(field, message) when the windows of a spec cannot be Dagster partitions, else None.

    Regular windows (one cron cadence from ``start``) become time-window partitions, computed by
    Dagster up to now. Irregular ones are a fixed list of keys made when the code location loads:
    they need an ``end``, and keys that stay unique (a DST fall-back repeats wall times).
    """
    reason = irregular_windows(spec)
    if reason is None:
        return None
    if spec.end is None:
        hint = ""
        if "start off" in reason:
            assert not isinstance(spec.start, int)
            aligned = next_boundary(spec.start, every=spec.every, step=spec.step, timezone=spec.timezone)
            local = aligned.astimezone(ZoneInfo(spec.timezone))
            shown = local.isoformat() if spec.every in ("hour", "minute") else local.date().isoformat()
            hint = f", or start on a boundary (e.g. {shown})"
        return (
            "end",
            f"required: with {reason} the windows are a fixed list, which the Dagster code location "
            f"makes when it loads; add partitions.end{hint}",
        )
    try:
        keys = [w.key for w in plan_windows(spec)]
    except (ValueError, OverflowError) as exc:
        return ("", str(exc))
    twice = sorted(k for k, n in Counter(keys).items() if n > 1)
    if twice:
        return (
            "",
            f"windows share the keys {twice[:3]} (a DST change in {spec.timezone}); "
            "use a step that divides the hour, or timezone UTC",
        )
    return None


def check_partitions(catalog: Catalog, *, origins: dict[str, str], line_of: LineOf) -> list[CatalogIssue]:
    """Partitions that ``coolie plan --windows`` lists but the Dagster code location could not.

    Every spec that passes loads in Dagster with keys equal to the planned windows' keys.
    """
    issues: list[CatalogIssue] = []
    for flow in catalog.dataflows:
        spec = flow.partitions
        if spec is None:
            continue
        problem = _fixed_keys_problem(spec.model_copy(update={"column": ""}))
        if problem is None:
            continue
        field, message = problem
        path = ["partitions", field] if field else ["partitions"]
        issues.append(
            CatalogIssue(origins[flow.name], flow.name, ".".join(path), message, line_of(flow.name, path))
        )
    return issues


def check_automation(catalog: Catalog, *, origins: dict[str, str], line_of: LineOf) -> list[CatalogIssue]:
    """``on_cron`` (the dataflow's own or inherited from its stage) needs a schedule to tick on."""
    issues: list[CatalogIssue] = []
    for flow in catalog.dataflows:
        stage = catalog.stages.get(flow.stage)
        rules = flow.automation or (stage.automation if stage else None)
        if not rules or "on_cron" not in rules or catalog.schedule_for(flow) is not None:
            continue
        inherited = "" if flow.automation else f" (from stage {flow.stage}'s automation)"
        issues.append(
            CatalogIssue(
                origins[flow.name],
                flow.name,
                "automation",
                f"on_cron{inherited} needs a schedule: set schedule on the dataflow or on stage "
                f"{flow.stage}, or drop on_cron",
                line_of(flow.name, ["automation"] if flow.automation else []),
            )
        )
    return issues
