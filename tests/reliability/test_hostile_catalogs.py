"""Hostile catalogs: whatever a catalog file holds, loading it either succeeds or raises one
``CatalogError`` whose every issue names the file (and the line, dataflow and field where they
apply) — never another exception, a crash of the interpreter, a hang or a memory explosion.

Three kinds of input, each written as one YAML or JSON file and as a folder of files:

* totally random structures (any nesting of scalars, lists and mappings);
* the demo catalog with a few fields mutated: wrong types, huge numbers, NaN, unicode, empty and
  very long strings, deep nesting, path escapes, unknown or deleted keys;
* YAML-only attacks written as text: alias bombs ("billion laughs"), recursive aliases, python
  tags, duplicate keys, deep flow nesting, merge keys, several documents, control characters.

Hypothesis runs derandomized, so CI sees the same examples on every run.
"""

import copy
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolie_core.catalog import MAX_DEPTH, MAX_NODES, load_catalog, read_document
from coolie_core.cli import main
from coolie_core.errors import CatalogError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "catalog.yaml"

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seed() -> dict[str, Any]:
    """The demo catalog plus dataflows using the fields the demo leaves out; it loads as is."""
    doc: dict[str, Any] = read_document(DEMO)
    doc["connections"]["code"]["path"] = str(DEMO.parent / "calendar_source.py")
    doc["dataflows"] += [
        {
            "name": "events_bronze",
            "stage": "bronze",
            "source": {"format": "parquet", "connection": "raw", "path": "events/**/*.parquet"},
            "destination": {"connection": "lake", "table": "bronze/events", "load": "append"},
            "partitions": {"column": "event_id", "every": "integer", "step": 1000, "start": 0, "end": 10_000},
            "watermark_columns": ["event_id"],
            "lookback": {"amount": 50},
            "retry": {"count": 3, "delay": 0.5, "backoff": "fixed"},
            "schedule": "*/5 * * * *",
            "group": "events",
            "tags": {"domain": "events"},
            "timeout": 600,
            "owners": ["team:events", "ann@example.com"],
        },
        {
            "name": "erp_orders",
            "stage": "bronze",
            "source": {"format": "sql", "connection": "erp", "query": "SELECT * FROM orders", "filter": "id > 0"},
            "destination": {"connection": "lake", "table": "bronze/erp_orders", "load": "merge", "merge_keys": ["id"]},
            "watermark_columns": ["updated_at"],
            "lookback": {"hours": 2},
        },
    ]  # fmt: skip
    return doc


SEED = _seed()


# --------------------------------------------------------------------------- what is asserted


def _line_count(file: str) -> int:
    """Lines by any line break YAML knows, plus one: parsers report end of input on the next line."""
    return len(Path(file).read_bytes().decode("utf-8", errors="replace").splitlines()) + 1


def assert_loads_or_located(root: Path, files: list[Path]) -> None:
    """``load_catalog(root)`` succeeds or raises a CatalogError naming a written file per issue.

    Any other exception propagates and fails the test with its traceback.
    """
    try:
        load_catalog(root)
    except CatalogError as exc:
        error = exc
    else:
        return
    assert error.issues, "a CatalogError without issues"
    known = {str(f) for f in files} | {str(root)}
    for issue in error.issues:
        assert issue.file in known, issue
        assert issue.message.strip(), issue
        assert isinstance(issue.field, str), issue
        if issue.line is not None:
            assert 1 <= issue.line <= _line_count(issue.file), issue
        assert issue.render().startswith(issue.file)
    assert str(error).startswith("invalid catalog:")


def _dump(doc: Any, fmt: str, *, unicode: bool) -> str:
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=not unicode)
    return yaml.safe_dump(doc, allow_unicode=unicode, sort_keys=False)


def check_document(doc: Any, *, fmt: str, layout: str, unicode: bool) -> None:
    """Write ``doc`` as one file, or split over a folder of files, and load it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "catalog"
        files: list[Path] = []

        def write(name: str, content: Any, fmt: str) -> None:
            path = root / f"{name}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            # surrogatepass: a lone surrogate makes the file invalid UTF-8, one more hostile case.
            path.write_text(_dump(content, fmt, unicode=unicode), encoding="utf-8", errors="surrogatepass")
            files.append(path)

        if layout == "file":
            write("catalog", doc, fmt)
            assert_loads_or_located(files[0], files)
            return
        if isinstance(doc, dict) and "dataflows" in doc:
            # connections/defaults/stages in one file, the dataflows in another (a subfolder).
            head = {k: v for k, v in doc.items() if k != "dataflows"}
            write("base", head, "yaml")
            write("flows/all", {"dataflows": doc["dataflows"]}, fmt)
        else:
            write("base", {"connections": SEED["connections"]}, "yaml")
            write("other", doc, fmt)
        assert_loads_or_located(root, files)


# --------------------------------------------------------------------------- strategies

HOSTILE_STRINGS = [
    "", " ", "\t", "\n", ".", "..", "../..", "../../../etc/passwd", "/etc/passwd", "/", "//",
    "*/../../x", "**/../../*", "a/..", "a/../..", "C:\\Windows", "\\\\server\\share",
    "${HOME}", "${COOLIE_UNSET_VAR_FOR_TESTS}", "${X:-../../..}", "${", "$}", "${}", "${1BAD}",
    "\x00", "a\x00b", "\x7f", "\u202e", "\ufeff", "\ud800", "é", "💥", "名前", "NaN", "nan",
    "-inf", "1e309", "0x10", "0o7", "1_000", "true", "yes", "on", "null", "~", "2024-13-45",
    "2024-02-30", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "24:00",
    "'; DROP TABLE x; --", '"; DROP TABLE x; --', "%s%n%x", "{{7*7}}", "<script>", "* * * * * *",
    "*/0 * * * *", "a" * 10_000, "a/" * 2_000, "Z" * 129, "x" * 100_000,
]  # fmt: skip

HOSTILE_NUMBERS = [
    0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**100, 10**4200, -(10**4200),
    0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"),
]  # fmt: skip


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from(HOSTILE_NUMBERS),
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(sorted({"version", "defaults", "stages", "connections", "dataflows", "name", "kind",
                            "path", "url", "format", "connection", "table", "source", "destination",
                            "load", "partitions", "transforms", "columns"})),
)  # fmt: skip
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
deep_values = st.builds(_nested, st.integers(1, MAX_DEPTH + 40), scalars)
hostile_values = st.one_of(scalars, structures, deep_values)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


SEED_PATHS = _paths(SEED)


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated_catalogs(draw: st.DrawFn) -> Any:
    """The seed catalog with one to four fields replaced, deleted, wrapped or added."""
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(SEED_PATHS))
        try:
            parent = _parent(doc, path)
            parent[path[-1]]  # an earlier mutation may have removed or replaced it
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "wrap", "add_key"]))
        if action == "replace":
            parent[path[-1]] = draw(hostile_values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "wrap":
            value = parent[path[-1]]
            parent[path[-1]] = draw(st.sampled_from([[value], {"value": value}, [[[value]]]]))
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(hostile_values)
    return doc


def _bomb(width: int, depth: int) -> str:
    """``depth`` levels of anchors, each a list of ``width`` aliases to the level below."""
    items = ", ".join(["lol"] * width)
    lines = [f"l0: &l0 [{items}]"]
    for level in range(1, depth):
        aliases = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines)


FLOW = "{name: f, source: {format: csv, connection: raw, path: 'x/*.csv'}, destination: {connection: lake, table: f}}"
CONNECTIONS = "connections: {raw: {kind: files, path: raw}, lake: {kind: delta, path: lake}}"
PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {canary}']",
    "!!python/object/apply:subprocess.check_call [[touch, '{canary}']]",
    "!!python/object/new:subprocess.Popen [[touch, '{canary}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/tuple [1, 2]",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {canary}']",
]
OTHER_TAGS = [
    "!!binary aGVsbG8=", "!!binary '%%%'", "!!set {a, b}", "!!omap [a: 1, b: 2]", "!!pairs [a: 1]",
    "!!timestamp 2024-01-01", "!!timestamp nope", "!!float abc", "!!int 0xZZ", "!!int ''",
    "!!bool maybe", "!!null x", "!!str [1]", "!!map [1]", "!!seq {a: 1}", "!custom x", "!!merge x",
    "!!value x", "!!yaml x",
]  # fmt: skip


@st.composite
def hostile_yaml(draw: st.DrawFn) -> str:
    """YAML text no YAML serializer would emit, with ``{canary}`` where a tag would run code."""
    kind = draw(
        st.sampled_from(
            ["bomb", "recursive", "python_tag", "other_tag", "duplicate", "deep_flow", "deep_block",
             "merge", "documents", "characters", "big_int", "text"]
        )
    )  # fmt: skip
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        where = draw(st.sampled_from(["top", "tags", "options", "owners", "dataflows"]))
        top = f"l{depth - 1}"
        body = {
            "top": f"{CONNECTIONS}\nextra: *{top}",
            "tags": f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, tags: *{top}}}]",
            "options": f"{CONNECTIONS}\ndataflows: [{{name: f, source: {{format: csv, connection: raw, "
            f"path: x.csv, options: {{o: *{top}}}}}, destination: {{connection: lake, table: f}}}}]",
            "owners": f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, owners: *{top}}}]",
            "dataflows": f"{CONNECTIONS}\ndataflows: *{top}",
        }[where]
        return _bomb(width, depth) + "\n" + body
    if kind == "recursive":
        return draw(
            st.sampled_from(
                ["dataflows: &a [*a]", "connections: &a {raw: *a}", f"{CONNECTIONS}\ndataflows: [&f {{name: f, x: *f}}]",
                 "defaults: &d {retry: *d}", "a: &a {b: &b {c: *a}}\nversion: 1"]
            )
        )  # fmt: skip
    if kind == "python_tag":
        tag = draw(st.sampled_from(PYTHON_TAGS))
        return draw(st.sampled_from([f"dataflows: {tag}", f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, tags: {tag}}}]",
                                     f"version: {tag}", f"{tag}\n"]))  # fmt: skip
    if kind == "other_tag":
        tag = draw(st.sampled_from(OTHER_TAGS))
        return draw(st.sampled_from([f"connections: {tag}", f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, stage: {tag}}}]",
                                     f"connections: {{raw: {{kind: files, path: {tag}}}}}", f"{tag}"]))  # fmt: skip
    if kind == "duplicate":
        return draw(
            st.sampled_from(
                [f"{CONNECTIONS}\n{CONNECTIONS}", f"{CONNECTIONS}\ndataflows: [{{name: a, name: b}}]",
                 "connections: {raw: {kind: files, kind: delta, path: raw}}", "version: 1\nversion: 1",
                 f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, stage: a, stage: b}}]", "{1: a, 1.0: b, true: c}",
                 "? a\n: 1\n? a\n: 2", "a: 1\n'a': 2", "a: {<<: {b: 1}, b: 2}"]
            )
        )  # fmt: skip
    if kind == "deep_flow":
        depth = draw(st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH + 1, 1_000, 100_000]))
        opener = draw(st.sampled_from(["[", "{a: "]))
        closer = "]" if opener == "[" else "}"
        return f"dataflows: {opener * depth}{closer * depth}"
    if kind == "deep_block":
        depth = draw(st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH + 1, 5_000]))
        return "dataflows:\n" + "- " * depth + "x"
    if kind == "merge":
        return draw(
            st.sampled_from(
                ["base: &b {kind: files, path: raw}\nconnections: {raw: {<<: *b, path: r2}}",
                 "connections: {raw: {<<: [1, 2]}}", "connections: {raw: {<<: *nope}}",
                 "connections: {raw: {<<: {<<: {<<: {kind: files}}}, path: x}}"]
            )
        )  # fmt: skip
    if kind == "documents":
        return draw(st.sampled_from([f"{CONNECTIONS}\n---\n{CONNECTIONS}", "---\n...\n---\n", "%YAML 1.1\n---\nversion: 1",
                                     "%YAML 9.9\n---\na: 1", "%TAG ! tag:evil.com,2000:\n---\n!x y", "--- |\n  text"]))  # fmt: skip
    if kind == "characters":
        char = draw(
            st.sampled_from(
                ["\x00", "\x07", "\x1b", "\t", "\r", "\x85", "\u2028", "\ufeff", "\ud800", "\uffff"]
            )
        )
        return f'{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, description: "a{char}b", stage: a{char}b}}]'
    if kind == "big_int":
        digits = draw(st.sampled_from([19, 20, 4_000, 4_301, 50_000]))
        return draw(st.sampled_from([f"version: {'9' * digits}", f"version: 0x{'f' * digits}",
                                     "version: " + ":".join(["59"] * (digits // 2 + 1)),
                                     f"{CONNECTIONS}\ndataflows: [{FLOW[:-1]}, timeout: {'9' * digits}}}]"]))  # fmt: skip
    return draw(st.text(max_size=200))


# --------------------------------------------------------------------------- tests


def test_seed_catalog_loads() -> None:
    """The mutation fuzz starts from a valid catalog, so mutations are judged against a good one."""
    loaded = load_catalog(_write_seed(Path(tempfile.mkdtemp()) / "catalog.yaml"))
    assert len(loaded.catalog.dataflows) == len(SEED["dataflows"])


def _write_seed(path: Path) -> Path:
    path.write_text(yaml.safe_dump(SEED, sort_keys=False), encoding="utf-8")
    return path


@settings(FUZZ, max_examples=250)
@given(
    doc=structures,
    fmt=st.sampled_from(["yaml", "json"]),
    layout=st.sampled_from(["file", "folder"]),
    unicode=st.booleans(),
)
def test_random_structures_fail_with_located_catalog_errors(
    doc: Any, fmt: str, layout: str, unicode: bool
) -> None:
    """Any nesting of scalars, lists and mappings: a CatalogError naming the file, never a crash."""
    check_document(doc, fmt=fmt, layout=layout, unicode=unicode)


@pytest.mark.slow
@settings(FUZZ, max_examples=400)
@given(
    doc=mutated_catalogs(),
    fmt=st.sampled_from(["yaml", "json"]),
    layout=st.sampled_from(["file", "folder"]),
    unicode=st.booleans(),
)
def test_mutated_catalogs_load_or_fail_with_located_catalog_errors(
    doc: Any, fmt: str, layout: str, unicode: bool
) -> None:
    """The demo catalog with hostile field values: loads, or every issue names file and place."""
    check_document(doc, fmt=fmt, layout=layout, unicode=unicode)


@settings(FUZZ, max_examples=200)
@given(text=hostile_yaml(), layout=st.sampled_from(["file", "folder"]))
def test_hostile_yaml_text_fails_with_located_catalog_errors(text: str, layout: str) -> None:
    """Alias bombs, recursive aliases, python tags, duplicate keys, deep nesting, odd characters:
    a located CatalogError (or a valid load), and no tag ever runs code."""
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "PWNED"
        root = Path(tmp) / "catalog"
        root.mkdir()
        path = root / "hostile.yaml"
        path.write_text(text.replace("{canary}", str(canary)), encoding="utf-8", errors="surrogatepass")
        files = [path]
        if layout == "folder":
            _write_seed(root / "seed.yaml")
            files.append(root / "seed.yaml")
        assert_loads_or_located(root if layout == "folder" else path, files)
        assert not canary.exists(), "a YAML tag executed code"


@settings(FUZZ, max_examples=100)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".yml", ".json"]))
def test_random_bytes_fail_with_located_catalog_errors(data: bytes, suffix: str) -> None:
    """Arbitrary bytes (invalid UTF-8 included) in a catalog file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"catalog{suffix}"
        path.write_bytes(data)
        assert_loads_or_located(path, [path])


def _expect_issue(text: str, fragment: str, *, suffix: str = ".yaml") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"catalog{suffix}"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(CatalogError) as info:
            load_catalog(path)
        assert any(fragment in i.message for i in info.value.issues), str(info.value)
        assert all(i.file == str(path) for i in info.value.issues)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_bomb(10, 9) + "\ndataflows: *l8", f"more than {MAX_NODES:,} values"),
        ("dataflows: " + "[" * 200_000 + "]" * 200_000, f"nested deeper than {MAX_DEPTH}"),
        ("dataflows:\n" + "- " * 20_000 + "x", f"nested deeper than {MAX_DEPTH}"),
        ("dataflows: &a [*a]", "refers to a node that contains it"),
        (f"{CONNECTIONS}\nconnections: {{}}", "duplicate key 'connections'"),
        ("dataflows: !!python/object/apply:os.system ['true']", "could not determine a constructor"),
        ("version: " + "9" * 5_000, "integer is too long"),
        ("connections: {raw: {kind: files, path: \"a\\0b\"}}", "NUL character"),
        ("connections: {1: {kind: files, path: raw}}", "invalid name"),
    ],
    ids=["billion-laughs", "deep-flow", "deep-block", "recursive-alias", "duplicate-key", "python-tag",
         "huge-int", "nul-path", "int-name"],
)  # fmt: skip
def test_known_yaml_attacks_are_named(text: str, fragment: str) -> None:
    """Each attack the fuzz covers gets a message that says what was wrong."""
    _expect_issue(text, fragment)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_DEPTH}"),
        ('{"version": 1, "version": 1}', "duplicate key 'version'"),
        ('{"version": NaN}', "NaN is not a JSON number"),
        ('{"version": ' + "9" * 5_000 + "}", "invalid JSON"),
        ('{"connections": {"raw": {"kind": "files", "path": "\\ud800"}}}', "cannot encode"),
    ],
    ids=["deep", "duplicate-key", "nan", "huge-int", "surrogate-path"],
)
def test_known_json_attacks_are_named(text: str, fragment: str) -> None:
    """The same for JSON catalogs."""
    _expect_issue(text, fragment, suffix=".json")


def test_out_of_range_dates_and_durations_are_catalog_errors(tmp_path: Path) -> None:
    """Validators that overflow (dates before year 1, durations past timedelta's range) report the
    dataflow and line instead of raising OverflowError."""
    doc = copy.deepcopy(SEED)
    doc["dataflows"][0]["partitions"] = {
        "column": "d",
        "every": "day",
        "start": "0001-01-01T00:00:00+05:00",
        "end": "0001-01-03T00:00:00+05:00",
    }
    doc["dataflows"][1]["lookback"] = {"weeks": 10**20}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    flagged = {(i.dataflow, "out of range" in i.message) for i in info.value.issues}
    assert {(doc["dataflows"][0]["name"], True), (doc["dataflows"][1]["name"], True)} <= flagged
    assert all(i.line is not None for i in info.value.issues)


def _coolie(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


HOSTILE_FILES: dict[str, Callable[[Path], str]] = {
    "bomb.yaml": lambda _: _bomb(10, 9) + "\ndataflows: *l8",
    "deep.yaml": lambda _: "dataflows: " + "[" * 100_000 + "]" * 100_000,
    "recursive.yaml": lambda _: "dataflows: &a [*a]",
    "tag.yaml": lambda tmp: f"dataflows: !!python/object/apply:os.system ['touch {tmp}/PWNED']",
    "dup.yaml": lambda _: "version: 1\nversion: 1",
    "deep.json": lambda _: "[" * 100_000 + "]" * 100_000,
    "nan.json": lambda _: '{"version": NaN}',
    "int.yaml": lambda _: "version: " + "9" * 5_000,
    "names.yaml": lambda _: "stages: {1: {}, ~: {}, 'Bad Name': {}}",
    "paths.yaml": lambda _: (
        'connections: {a: {kind: files, path: "a\\0b"}, b: {kind: python, path: "\\ud800.py"}}'
    ),
}
ESCAPES = (
    f"{CONNECTIONS}\ndataflows: [{{name: f, source: {{format: csv, connection: raw, "
    "path: '*/../../../etc/passwd'}, destination: {connection: lake, table: 'a/..'}}]"
)


@pytest.mark.e2e
def test_cli_validate_on_hostile_folder_exits_2_without_traceback(tmp_path: Path) -> None:
    """``coolie validate`` on a folder of hostile files (one process for all): exit 2, every file
    named, no traceback, nothing executed."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "broken.yaml").write_bytes(b"version: \xff\xfe\n")
    for name, text in HOSTILE_FILES.items():
        (folder / name).write_text(text(tmp_path), encoding="utf-8")
    result = _coolie("validate", str(folder))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for name in [*HOSTILE_FILES, "broken.yaml"]:
        assert str(folder / name) in result.stderr, name
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.e2e
def test_cli_plan_windows_with_too_many_windows_exits_2(tmp_path: Path) -> None:
    """A partition range of billions of windows loads, but listing its windows is refused cleanly."""
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "f",
                "source": {"format": "csv", "connection": "raw", "path": "x/*.csv"},
                "destination": {"connection": "lake", "table": "f"},
                "partitions": {"column": "t", "every": "minute", "start": "0001-01-01", "end": "9999-01-01"},
            }
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = _coolie("plan", str(path), "--windows")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}: f.partitions: plan would have about" in result.stderr


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_cli_commands_on_hostile_catalog_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Every command loads the catalog the same way: exit 2 and a located message."""
    path = tmp_path / "catalog.yaml"
    path.write_text(ESCAPES)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: f.source.path: path '*/../../../etc/passwd' escapes" in err
    assert f"{path}:2: f.destination.table: must name a table folder" in err
