"""Catalog documents as text: safe YAML/JSON parsing, and where in a file a field is.

Parsing refuses what could hurt the process (documents nested deeper than :data:`MAX_DEPTH`,
alias bombs past :data:`MAX_NODES`, cyclic aliases, JSON's NaN/Infinity and duplicate keys) and
keeps dates as strings, so YAML and JSON parse the same way. Every problem carries its line:
:func:`line_of` finds a field in the composed YAML node tree (built only when an error needs it),
and :func:`pydantic_issues` turns a model's validation errors into located
:class:`~coolie_core.errors.CatalogIssue` s. :mod:`coolie_core.catalog` loads and validates.
"""

import gc
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from coolie_core.errors import CatalogError, CatalogIssue

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Document",
    "ParseProblem",
    "StringDatesLoader",
    "collector_paused",
    "line_of",
    "load_text",
    "pydantic_issues",
    "read_document",
    "render_field",
]

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a catalog document may have (a real one needs < 10)."""
MAX_NODES = 1_000_000
"""Most values a document may hold once YAML aliases are expanded (stops "billion laughs")."""


# libyaml's C parser when available (large catalogs parse ~10x faster), else pure Python.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StringDatesLoader(_SafeLoader):  # type: ignore[valid-type,misc]  # chosen at import time
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


StringDatesLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


StringDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Document:
    file: str
    data: Any
    text: str | None
    """YAML text, composed into a node tree only when an error needs a line number."""
    _node: yaml.Node | None = None

    @property
    def node(self) -> yaml.Node | None:
        if self._node is None and self.text is not None:
            self._node = yaml.compose(self.text, Loader=StringDatesLoader)
        return self._node


class ParseProblem(Exception):
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
    for event in yaml.parse(text, Loader=StringDatesLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.CollectionStartEvent):
            if len(counts) >= MAX_DEPTH:
                raise ParseProblem(f"nested deeper than {MAX_DEPTH} levels", line)
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
                    raise ParseProblem(f"alias *{event.anchor} refers to a node that contains it", line)
                size = sizes.get(str(event.anchor), 1)
            elif event.anchor is not None:
                sizes[event.anchor] = 1
            total += size
            if counts:
                counts[-1] += size
        if total > MAX_NODES:
            raise ParseProblem(
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)", line
            )


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ParseProblem(f"invalid JSON: duplicate key {key!r}")
        result[key] = value
    return result


def _json_constant(name: str) -> Any:
    raise ParseProblem(f"invalid JSON: {name} is not a JSON number")


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


def load_text(text: str, *, is_json: bool) -> Any:
    """Parse a document's text; every problem is a :class:`ParseProblem` with its line."""
    if is_json:
        try:
            data = json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant)
        except json.JSONDecodeError as exc:
            raise ParseProblem(f"invalid JSON: {exc.msg}", exc.lineno) from None
        except ParseProblem as exc:
            if exc.line is not None or "not a JSON number" not in exc.message:
                raise
            raise ParseProblem(exc.message, _json_constant_line(text)) from None
        except RecursionError:
            raise ParseProblem(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:  # e.g. an integer too long to convert
            raise ParseProblem(f"invalid JSON: {exc}") from None
        if _too_deep(data):
            raise ParseProblem(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
        return data
    try:
        _check_yaml_shape(text)
        return yaml.load(text, Loader=StringDatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if "nesting" in problem or "depth" in problem:
            # libyaml >= 0.2.5 (PyYAML 6.0.2+ wheels) stops deep documents itself, before our own
            # event walk sees the depth: say the same thing whichever PyYAML is installed.
            problem = f"nested deeper than {MAX_DEPTH} levels"
        raise ParseProblem(f"invalid YAML: {problem}", line) from None
    except ParseProblem as exc:
        raise ParseProblem(f"invalid YAML: {exc.message}", exc.line) from None


def read_document(path: Path) -> Any:
    """Parse one catalog file (YAML or JSON) into plain Python data, dates kept as strings.

    Raises:
        CatalogError: the file cannot be read or parsed (with its line when known).
    """
    text = path.read_text(encoding="utf-8")
    try:
        with collector_paused():
            return load_text(text, is_json=path.suffix == ".json")
    except ParseProblem as exc:
        raise CatalogError([CatalogIssue(str(path), None, "", exc.message, exc.line)]) from None


def line_of(node: yaml.Node | None, path: Sequence[str | int]) -> int | None:
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


def field_path(raw: Any, loc: Sequence[str | int]) -> list[str | int]:
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


def render_field(path: Sequence[str | int]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


def pydantic_issues(
    exc: ValidationError,
    *,
    doc: Document,
    raw: Any,
    base_path: Sequence[str | int],
    dataflow: str | None,
    prefix: str = "",
) -> list[CatalogIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path = field_path(raw, error["loc"])
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
        field = render_field([prefix, *path] if prefix else path)
        issues.append(
            CatalogIssue(doc.file, dataflow, field, message, line_of(doc.node, [*base_path, *path]))
        )
    return issues


@contextmanager
def collector_paused() -> Iterator[None]:
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
