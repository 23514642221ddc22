"""Load a catalog from one YAML/JSON file or a folder of them, and validate all of it.

This is the only module that parses catalog files. Every problem found is collected, each with
its file, line, dataflow and field, and raised together as one :class:`CatalogError` before
anything is read or written.

>>> from coolie_core.catalog import load_catalog
>>> catalog = load_catalog("examples/demo/catalog.yaml")  # doctest: +SKIP
"""

import gc
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from coolie_core.catalog_rules import check_automation, check_partitions, check_references
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

__all__ = ["CATALOG_SUFFIXES", "LoadedCatalog", "check_env", "load_catalog", "read_document"]

CATALOG_SUFFIXES = (".yaml", ".yml", ".json")
_TOP_LEVEL = {"version", "defaults", "stages", "connections", "dataflows"}
_CONNECTION_ADAPTER: TypeAdapter[Connection] = TypeAdapter(Connection)
_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(Name)

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a catalog document may have (a real one needs < 10)."""
MAX_NODES = 1_000_000
"""Most values a document may hold once YAML aliases are expanded (stops "billion laughs")."""


# libyaml's C parser when available (large catalogs parse ~10x faster), else pure Python.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StringDatesLoader(_SafeLoader):  # type: ignore[valid-type,misc]  # chosen at import time
    """SafeLoader that keeps timestamps as strings, so YAML and JSON parse the same way.

    It also refuses a key given twice in one mapping (YAML would silently keep the last).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag on a value it cannot hold (``!!float abc``, ``!!bool maybe``) makes
        # PyYAML's constructors raise ValueError, KeyError...; report it as a YAML error at its line.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError):
            kind = str(node.tag).removeprefix("tag:yaml.org,2002:")
            value = f"{node.value!r} " if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{value}is not a valid {kind}", node.start_mark
            ) from None


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # Python refuses to convert integers longer than 4300 digits (and YAML's base-60 integers
    # grow without bound): report them at their line instead of raising a bare ValueError.
    if len(str(node.value)) > 4000:
        raise yaml.constructor.ConstructorError(
            None, None, "integer is too long (more than 4000 characters)", node.start_mark
        )
    value: int = yaml.SafeLoader.construct_yaml_int(loader, node)
    return value


_StringDatesLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


_StringDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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


@dataclass
class _Document:
    file: str
    data: Any
    text: str | None
    """YAML text, composed into a node tree only when an error needs a line number."""
    _node: yaml.Node | None = None

    @property
    def node(self) -> yaml.Node | None:
        if self._node is None and self.text is not None:
            self._node = yaml.compose(self.text, Loader=_StringDatesLoader)
        return self._node


class _ParseProblem(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _check_yaml_shape(text: str) -> None:
    """Refuse YAML nested deeper than :data:`MAX_DEPTH` or larger than :data:`MAX_NODES` once
    aliases are expanded, and aliases to their own enclosing node (cyclic data).

    Works on the parser's event stream, before anything is composed: libyaml's composer
    recurses per level (a deep enough document crashes the interpreter) and a constructed
    alias bomb would explode in whatever walks the data next.
    """
    anchors: list[str | None] = []
    counts: list[int] = []
    sizes: dict[str, int] = {}
    total = 0
    for event in yaml.parse(text, Loader=_StringDatesLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.CollectionStartEvent):
            if len(counts) >= MAX_DEPTH:
                raise _ParseProblem(f"nested deeper than {MAX_DEPTH} levels", line)
            anchors.append(event.anchor)
            counts.append(1)
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = anchors.pop(), counts.pop()
            if anchor is not None:
                sizes[anchor] = size
            if counts:
                counts[-1] += size
        elif isinstance(event, yaml.NodeEvent):  # a scalar or an alias
            size = 1
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in anchors:
                    raise _ParseProblem(f"alias *{event.anchor} refers to a node that contains it", line)
                size = sizes.get(str(event.anchor), 1)
            elif event.anchor is not None:
                sizes[event.anchor] = 1
            total += size
            if counts:
                counts[-1] += size
        if total > MAX_NODES:
            raise _ParseProblem(
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)", line
            )


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _ParseProblem(f"invalid JSON: duplicate key {key!r}")
        result[key] = value
    return result


def _json_constant(name: str) -> Any:
    raise _ParseProblem(f"invalid JSON: {name} is not a JSON number")


# A JSON string, or one of the constants Python's json module accepts beyond the standard.
_JSON_STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


def _json_constant_line(text: str) -> int | None:
    """Line of the first NaN/Infinity outside a string (the json module's hook gets no position)."""
    for match in _JSON_STRING_OR_CONSTANT.finditer(text):
        if match.group(1) is not None:
            return text.count("\n", 0, match.start()) + 1
    return None


def _too_deep(data: Any) -> bool:
    """Whether ``data`` nests lists/dicts deeper than :data:`MAX_DEPTH` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _load_text(text: str, *, is_json: bool) -> Any:
    """Parse a document's text; every problem is a :class:`_ParseProblem` with its line."""
    if is_json:
        try:
            data = json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant)
        except json.JSONDecodeError as exc:
            raise _ParseProblem(f"invalid JSON: {exc.msg}", exc.lineno) from None
        except _ParseProblem as exc:
            if exc.line is not None or "not a JSON number" not in exc.message:
                raise
            raise _ParseProblem(exc.message, _json_constant_line(text)) from None
        except RecursionError:
            raise _ParseProblem(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:  # e.g. an integer too long to convert
            raise _ParseProblem(f"invalid JSON: {exc}") from None
        if _too_deep(data):
            raise _ParseProblem(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
        return data
    try:
        _check_yaml_shape(text)
        return yaml.load(text, Loader=_StringDatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if "nesting" in problem or "depth" in problem:
            # libyaml >= 0.2.5 (PyYAML 6.0.2+ wheels) stops deep documents itself, before our own
            # event walk sees the depth: say the same thing whichever PyYAML is installed.
            problem = f"nested deeper than {MAX_DEPTH} levels"
        raise _ParseProblem(f"invalid YAML: {problem}", line) from None
    except _ParseProblem as exc:
        raise _ParseProblem(f"invalid YAML: {exc.message}", exc.line) from None


def read_document(path: Path) -> Any:
    """Parse one catalog file (YAML or JSON) into plain Python data, dates kept as strings.

    Raises:
        CatalogError: the file cannot be read or parsed (with its line when known).
    """
    text = path.read_text(encoding="utf-8")
    try:
        with _collector_paused():
            return _load_text(text, is_json=path.suffix == ".json")
    except _ParseProblem as exc:
        raise CatalogError([CatalogIssue(str(path), None, "", exc.message, exc.line)]) from None


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


def _parse(file: Path, label: str, issues: list[CatalogIssue]) -> _Document | None:
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
        data = _load_text(text, is_json=is_json)
    except _ParseProblem as exc:
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
    return _Document(label, data, yaml_text)


def _line_of(node: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """Line (1-based) of the value at ``path`` inside a composed YAML node tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _field_path(raw: Any, loc: Sequence[str | int]) -> list[str | int]:
    """Map a pydantic error location onto keys that exist in the raw data.

    Discriminated unions insert their tag (``csv``, ``merge``...) into the location; those
    elements are not keys of the document and are dropped.
    """
    path: list[str | int] = []
    node = raw
    for key in loc:
        if isinstance(node, dict) and key in node:
            node = node[key]
            path.append(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
            path.append(key)
        elif isinstance(node, dict | list):
            # A missing field, or a union tag: keep a string key only if it is not a tag.
            if isinstance(key, str) and not _is_union_tag(node, key):
                path.append(key)
                node = None
        else:
            break
    return path


def _is_union_tag(node: dict[str, Any] | list[Any], key: str) -> bool:
    if not isinstance(node, dict):
        return False
    # A tuple, not a set: hostile values of kind/format may be unhashable lists or mappings.
    return key in (node.get("kind"), node.get("format")) or key.startswith(("function-", "union["))


def _render(path: Sequence[str | int]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


def _pydantic_issues(
    exc: ValidationError,
    *,
    doc: _Document,
    raw: Any,
    base_path: Sequence[str | int],
    dataflow: str | None,
    prefix: str = "",
) -> list[CatalogIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path = _field_path(raw, error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        # Model validators phrase messages as "field: reason"; move the field into the path.
        head, sep, rest = message.partition(": ")
        if sep and head.replace("_", "").replace(".", "").isalnum() and head.islower() and " " not in head:
            path = [*path, *head.split(".")]
            message = rest
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see `coolie schema`)"
        elif error["type"] == "missing":
            message = "required field is missing"
        field = _render([prefix, *path] if prefix else path)
        issues.append(
            CatalogIssue(doc.file, dataflow, field, message, _line_of(doc.node, [*base_path, *path]))
        )
    return issues


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
    doc: _Document, dataflow: str | None, field: str, where: Sequence[str | int], exc: ArithmeticError
) -> CatalogIssue:
    """A validator overflowed (a date or duration beyond what Python can represent)."""
    return CatalogIssue(
        doc.file, dataflow, field, f"a value is out of range ({exc})", _line_of(doc.node, where)
    )


class _FlowLines:
    """Where each dataflow starts; the line is looked up only when a problem is reported."""

    def __init__(self) -> None:
        self.places: dict[str, tuple[_Document, list[str | int]]] = {}

    def get(self, name: str, path: Sequence[str | int] = ()) -> int | None:
        place = self.places.get(name)
        return None if place is None else _line_of(place[0].node, [*place[1], *path])


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a catalog is parsed and validated.

    A catalog becomes a tree of plain values and models (no reference cycles to find), built
    from hundreds of thousands of objects: the collector's full passes over that growing heap
    were half of the parse time at thousands of dataflows. Reference counting still frees
    everything dropped meanwhile; the previous state is restored, so a caller that paused the
    collector itself keeps it paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_catalog(path: str | Path) -> LoadedCatalog:
    """Load and validate a catalog file or folder.

    Relative connection paths resolve against the folder of the file that declares them.

    Raises:
        CatalogError: with every problem found (file, line, dataflow, field, message).
    """
    with _collector_paused():
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
                        _line_of(doc.node, [key]),
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
                    _line_of(doc.node, ["version"]),
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
                        _line_of(doc.node, ["defaults"]),
                    )
                )
            else:
                defaults_file = doc.file
                try:
                    defaults = CatalogDefaults.model_validate(data["defaults"])
                except ValidationError as exc:
                    issues += _pydantic_issues(
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
                        _line_of(doc.node, [section]),
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
                    issues.append(CatalogIssue(doc.file, None, field, message, _line_of(doc.node, where)))
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
                            _line_of(doc.node, where),
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
                    issues += _pydantic_issues(
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
                            _line_of(doc.node, [*where, key]),
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
                    _line_of(doc.node, ["dataflows"]),
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
                issues += _pydantic_issues(exc, doc=doc, raw=raw, base_path=base, dataflow=label)
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
                        _line_of(doc.node, [*base, "name"]),
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
                    _line_of(doc.node, where)
                    if doc.text is not None
                    else text.count("\n", 0, max(text.find(match.group(0)), 0)) + 1
                )
                issues.append(
                    CatalogIssue(
                        doc.file, None, _render(where), f"environment variable {name} is not set", line
                    )
                )
    return issues, total
