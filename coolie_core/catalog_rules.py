"""Catalog rules that span objects: connection references and kinds, paths inside their
connection, declared stages. Run after every document validated on its own."""

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from coolie_core.errors import CatalogIssue
from coolie_core.locations import resolve_within
from coolie_core.models import (
    Catalog,
    Dataflow,
    DeltaConnection,
    DeltaSource,
    FilesConnection,
    FileSource,
    PythonConnection,
    PythonSource,
    SqlConnection,
    SqlSource,
)

__all__ = ["check_references"]


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


def check_references(
    catalog: Catalog, *, origins: dict[str, str], line_of: Callable[[str], int | None]
) -> list[CatalogIssue]:
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
                    resolve_within(conn.path, rel)
                except ValueError as exc:
                    issue("source.path" if isinstance(source, FileSource) else "source.table", str(exc))
            if isinstance(conn, PythonConnection) and conn.path is not None and not Path(conn.path).is_file():
                issue(
                    "source.connection",
                    f"python connection {source.connection!r} points to a missing file {conn.path}",
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
                if resolve_within(dconn.path, dest.table) == resolve_within(dconn.path, ""):
                    issue("destination.table", "must name a table folder inside the connection")
            except ValueError as exc:
                issue("destination.table", str(exc))
            if flow.quarantine is not None and flow.quarantine.table is not None:
                try:
                    resolve_within(dconn.path, flow.quarantine.table)
                except ValueError as exc:
                    issue("quarantine.table", str(exc))
                if flow.quarantine.table.strip("/") == dest.table.strip("/"):
                    issue("quarantine.table", "must differ from destination.table")
    return issues
