"""Load a catalog from one YAML/JSON file or a folder of them, and validate all of it.

This is the only module that parses catalog files. Every problem found is collected, each with
its file, line, dataflow and field, and raised together as one :class:`CatalogError` before
anything is read or written.

>>> from coolie_core.catalog import load_catalog
>>> catalog = load_catalog("examples/demo/catalog.yaml")  # doctest: +SKIP
"""

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from coolie_core.catalog_rules import check_automation, check_partitions, check_references
from coolie_core.catalog_text import (
    MAX_DEPTH,
    MAX_NODES,
    Document,
    ParseProblem,
    collector_paused,
    line_of,
    load_text,
    pydantic_issues,
    read_document,
    render_field,
)
from coolie_core.errors import CatalogError, CatalogIssue
from coolie_core.lineage import Lineage, build_lineage
from coolie_core.locations import check_path_text, expand_env
from coolie_core.models import (
    Catalog,
    CatalogDefaults,
    Connection,
    Dataflow,
    DeltaConnection,
    FilesConnection,
    PythonConnection,
    SqlConnection,
    StageSpec,
)
from coolie_core.models._base import Name
from coolie_core.storage import StorageLocation, is_uri

__all__ = [
    "CATALOG_SUFFIXES",
    "MAX_DEPTH",
    "MAX_NODES",
    "LoadedCatalog",
    "check_env",
    "load_catalog",
    "read_document",
]

CATALOG_SUFFIXES = (".yaml", ".yml", ".json")
_TOP_LEVEL = {"version", "defaults", "stages", "connections", "dataflows"}
_CONNECTION_ADAPTER: TypeAdapter[Connection] = TypeAdapter(Connection)
_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(Name)


@dataclass(frozen=True)
class LoadedCatalog:
    """A validated catalog with its lineage and where each dataflow was declared."""

    catalog: Catalog
    lineage: Lineage
    origins: dict[str, str]
    """Dataflow name -> file it was declared in."""
    path: Path
    """The file or folder the catalog was loaded from."""

    def order(self, names: Sequence[str] | None = None) -> list[str]:
        return self.lineage.order(names)


def _catalog_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in CATALOG_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        return files
    return [path]


def _parse(file: Path, label: str, issues: list[CatalogIssue]) -> Document | None:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        issues.append(CatalogIssue(label, None, "", f"cannot read the file: {exc.strerror or exc}"))
        return None
    except UnicodeDecodeError as exc:
        issues.append(CatalogIssue(label, None, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
        return None
    is_json = file.suffix == ".json"
    try:
        data = load_text(text, is_json=is_json)
    except ParseProblem as exc:
        issues.append(CatalogIssue(label, None, "", exc.message, exc.line))
        return None
    yaml_text = None if is_json else text
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.append(
            CatalogIssue(
                label, None, "", "a catalog document must be a mapping with connections and dataflows"
            )
        )
        return None
    return Document(label, data, yaml_text)


def _resolve_folder(raw_path: str, catalog_dir: Path) -> Path:
    """Expand env references and make the path absolute.

    Raises:
        KeyError: a referenced variable is unset.
        ValueError: the result is not a usable path (NUL, unencodable, symlink loop).
    """
    text = expand_env(raw_path)
    check_path_text(text)
    expanded = Path(text)
    if expanded.is_absolute():
        return expanded
    try:
        return (catalog_dir / expanded).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ValueError(f"cannot resolve path {text!r}: {exc}") from None


def _out_of_range(
    doc: Document, dataflow: str | None, field: str, where: Sequence[str | int], exc: ArithmeticError
) -> CatalogIssue:
    """A validator overflowed (a date or duration beyond what Python can represent)."""
    return CatalogIssue(
        doc.file, dataflow, field, f"a value is out of range ({exc})", line_of(doc.node, where)
    )


class _FlowLines:
    """Where each dataflow starts; the line is looked up only when a problem is reported."""

    def __init__(self) -> None:
        self.places: dict[str, tuple[Document, list[str | int]]] = {}

    def get(self, name: str, path: Sequence[str | int] = ()) -> int | None:
        place = self.places.get(name)
        return None if place is None else line_of(place[0].node, [*place[1], *path])


def load_catalog(path: str | Path) -> LoadedCatalog:
    """Load and validate a catalog file or folder.

    Relative connection paths resolve against the folder of the file that declares them.

    Raises:
        CatalogError: with every problem found (file, line, dataflow, field, message).
    """
    with collector_paused():
        return _load_catalog(Path(path))


def _load_catalog(root: Path) -> LoadedCatalog:
    issues: list[CatalogIssue] = []
    if not root.exists():
        raise CatalogError([CatalogIssue(str(root), None, "", "no such file or folder")])
    files = _catalog_files(root)
    if not files:
        raise CatalogError(
            [
                CatalogIssue(
                    str(root), None, "", f"no catalog files ({', '.join(CATALOG_SUFFIXES)}) in this folder"
                )
            ]
        )

    documents = [d for f in files if (d := _parse(f, str(f), issues)) is not None]

    defaults: CatalogDefaults | None = None
    defaults_file: str | None = None
    stages: dict[str, StageSpec] = {}
    connections: dict[str, Any] = {}
    connection_files: dict[str, str] = {}
    dataflows: list[Dataflow] = []
    origins: dict[str, str] = {}
    flow_lines = _FlowLines()

    for doc in documents:
        data = doc.data
        doc_dir = Path(doc.file).resolve().parent
        for key in data:
            if key not in _TOP_LEVEL:
                issues.append(
                    CatalogIssue(
                        doc.file,
                        None,
                        str(key),
                        f"unknown top-level field; expected one of {sorted(_TOP_LEVEL)}",
                        line_of(doc.node, [key]),
                    )
                )
        version = data.get("version", 1)
        if isinstance(version, bool) or version != 1:
            issues.append(
                CatalogIssue(
                    doc.file,
                    None,
                    "version",
                    "only catalog version 1 is supported",
                    line_of(doc.node, ["version"]),
                )
            )
        if "defaults" in data:
            if defaults_file is not None:
                issues.append(
                    CatalogIssue(
                        doc.file,
                        None,
                        "defaults",
                        f"defaults are already set in {defaults_file}; set them once",
                        line_of(doc.node, ["defaults"]),
                    )
                )
            else:
                defaults_file = doc.file
                try:
                    defaults = CatalogDefaults.model_validate(data["defaults"])
                except ValidationError as exc:
                    issues += pydantic_issues(
                        exc,
                        doc=doc,
                        raw=data["defaults"],
                        base_path=["defaults"],
                        dataflow=None,
                        prefix="defaults",
                    )
                except ArithmeticError as exc:
                    issues.append(_out_of_range(doc, None, "defaults", ["defaults"], exc))

        for section in ("stages", "connections"):
            value = data.get(section, {})
            if value is None:
                continue
            if not isinstance(value, dict):
                issues.append(
                    CatalogIssue(
                        doc.file,
                        None,
                        section,
                        "must be a mapping of name -> settings",
                        line_of(doc.node, [section]),
                    )
                )
                continue
            for name, spec in value.items():
                where = [section, name]
                field = f"{section}.{name}"
                try:
                    _NAME_ADAPTER.validate_python(name)
                except ValidationError as exc:
                    message = f"invalid name {name!r}: {exc.errors()[0]['msg']}"
                    issues.append(CatalogIssue(doc.file, None, field, message, line_of(doc.node, where)))
                    continue
                seen = stages if section == "stages" else connections
                if name in seen:
                    first = (
                        connection_files.get(name, "another file")
                        if section == "connections"
                        else "another file"
                    )
                    issues.append(
                        CatalogIssue(
                            doc.file,
                            None,
                            field,
                            f"declared twice (also in {first})",
                            line_of(doc.node, where),
                        )
                    )
                    continue
                try:
                    if section == "stages":
                        stages[name] = StageSpec.model_validate(spec if spec is not None else {})
                    else:
                        conn = _CONNECTION_ADAPTER.validate_python(spec)
                        connections[name] = _resolve_connection(conn, doc_dir)
                        connection_files[name] = doc.file
                except ValidationError as exc:
                    issues += pydantic_issues(
                        exc, doc=doc, raw=spec, base_path=where, dataflow=None, prefix=field
                    )
                except ArithmeticError as exc:
                    issues.append(_out_of_range(doc, None, field, where, exc))
                except (KeyError, ValueError) as exc:
                    # An unset environment variable, or a path no file system accepts.
                    key = "url" if isinstance(spec, dict) and spec.get("kind") == "sql" else "path"
                    issues.append(
                        CatalogIssue(
                            doc.file,
                            None,
                            f"{field}.{key}",
                            str(exc.args[0]) if isinstance(exc, KeyError) else str(exc),
                            line_of(doc.node, [*where, key]),
                        )
                    )

        raw_flows = data.get("dataflows", [])
        if raw_flows is None:
            raw_flows = []
        if not isinstance(raw_flows, list):
            issues.append(
                CatalogIssue(
                    doc.file,
                    None,
                    "dataflows",
                    "must be a list of dataflows",
                    line_of(doc.node, ["dataflows"]),
                )
            )
            continue
        for index, raw in enumerate(raw_flows):
            base: list[str | int] = ["dataflows", index]
            label = (
                raw.get("name")
                if isinstance(raw, dict) and isinstance(raw.get("name"), str)
                else f"dataflows[{index}]"
            )
            try:
                flow = Dataflow.model_validate(raw)
            except ValidationError as exc:
                issues += pydantic_issues(exc, doc=doc, raw=raw, base_path=base, dataflow=label)
                continue
            except ArithmeticError as exc:
                issues.append(_out_of_range(doc, label, "", base, exc))
                continue
            if flow.name in origins:
                issues.append(
                    CatalogIssue(
                        doc.file,
                        flow.name,
                        "name",
                        f"dataflow name is used twice (also in {origins[flow.name]})",
                        line_of(doc.node, [*base, "name"]),
                    )
                )
                continue
            origins[flow.name] = doc.file
            flow_lines.places[flow.name] = (doc, base)
            dataflows.append(flow)

    if issues:
        raise CatalogError(issues)

    catalog = Catalog(
        defaults=defaults or CatalogDefaults(),
        stages=stages,
        connections=connections,
        dataflows=dataflows,
    )
    issues += check_references(catalog, origins=origins, line_of=flow_lines.get)
    issues += check_partitions(catalog, origins=origins, line_of=flow_lines.get)
    issues += check_automation(catalog, origins=origins, line_of=flow_lines.get)
    if issues:
        raise CatalogError(issues)
    lineage, problems = build_lineage(catalog)
    issues += [
        CatalogIssue(origins[p.dataflow], p.dataflow, p.field, p.message, flow_lines.get(p.dataflow))
        for p in problems
    ]
    if issues:
        raise CatalogError(issues)
    return LoadedCatalog(catalog=catalog, lineage=lineage, origins=origins, path=root)


def _resolve_connection(conn: BaseModel, doc_dir: Path) -> Any:
    """Make folder paths absolute (env references expanded); SQL URLs stay unexpanded (secrets)."""
    if isinstance(conn, FilesConnection | DeltaConnection):
        text = expand_env(conn.path)
        # An object-store prefix stays a URI (normalised); a bad scheme or a URI typo such as
        # ``s3:/raw`` is refused here, located, instead of becoming a local folder.
        location = StorageLocation.parse(text, base_dir=doc_dir)
        if is_uri(text):
            return conn.model_copy(update={"path": location.uri})
        return conn.model_copy(update={"path": str(_resolve_folder(conn.path, doc_dir))})
    if isinstance(conn, PythonConnection) and conn.path is not None:
        return conn.model_copy(update={"path": str(_resolve_folder(conn.path, doc_dir))})
    if isinstance(conn, SqlConnection) and conn.url.startswith("sqlite:///"):
        # A SQLite file holds no secret: resolve it like any other catalog path.
        file = conn.url.removeprefix("sqlite:///")
        if file and file != ":memory:":
            return conn.model_copy(update={"url": "sqlite:///" + str(_resolve_folder(file, doc_dir))})
    return conn


# The reference syntax expand_env understands: ${NAME} or ${NAME:-default}.
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def _strings(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    """Every string inside nested mappings and lists, with its key path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, [*path, str(key)])
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, [*path, index])


def check_env(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> tuple[list[CatalogIssue], int]:
    """The ``${VAR}`` references in the catalog's connections whose variable is unset.

    A reference with a default (``${VAR:-x}``) is never missing. Only names are reported, never
    values (connection URLs hold secrets).

    Returns:
        One issue per missing reference (file, line, connection field), and how many
        references the connections hold in all.
    """
    env = os.environ if environ is None else environ
    issues: list[CatalogIssue] = []
    total = 0
    root = Path(path)
    for file in _catalog_files(root):
        found: list[CatalogIssue] = []
        doc = _parse(file, str(file), found)
        if doc is None or not isinstance(doc.data.get("connections"), dict):
            continue
        text = file.read_text(encoding="utf-8")
        for where, value in _strings(doc.data["connections"], ["connections"]):
            for match in _ENV_REFERENCE.finditer(value):
                total += 1
                name, default = match.group(1), match.group(2)
                if default is not None or name in env:
                    continue
                line = (
                    line_of(doc.node, where)
                    if doc.text is not None
                    else text.count("\n", 0, max(text.find(match.group(0)), 0)) + 1
                )
                issues.append(
                    CatalogIssue(
                        doc.file, None, render_field(where), f"environment variable {name} is not set", line
                    )
                )
    return issues, total
