"""The ``coolie`` CLI as a user runs it: validate, schema, plan (real subprocesses)."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from coolie_core.catalog import read_document

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "examples" / "demo" / "catalog.yaml"
pytestmark = pytest.mark.e2e


def coolie(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def catalog_file(tmp_path: Path, dataflows: list[dict[str, Any]]) -> Path:
    doc = {
        "connections": {"raw": {"kind": "files", "path": "raw"}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": dataflows,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def delta_flow(name: str, src: str | None, **extra: Any) -> dict[str, Any]:
    source = (
        {"format": "delta", "connection": "lake", "table": src}
        if src
        else {"format": "csv", "connection": "raw", "path": "x/*.csv"}
    )
    return {"name": name, "source": source, "destination": {"connection": "lake", "table": name}, **extra}


def test_validate_demo_exits_0() -> None:
    """The demo catalog is valid."""
    result = coolie("validate", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "9 dataflows" in result.stdout


def test_validate_reports_three_mistakes_exit_2_no_traceback(tmp_path: Path) -> None:
    """Three mistakes in three dataflows: all listed (file, dataflow, field), exit 2, no traceback."""
    path = catalog_file(
        tmp_path,
        [
            delta_flow("orders_daily", None)
            | {"destination": {"connection": "lake", "table": "o", "load": "merge"}},
            delta_flow("customers", None, schedule="often"),
            delta_flow("payments", None, watermark_columns="paid_at"),
        ],
    )
    result = coolie("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "3 problems" in result.stderr
    for expected in (
        "orders_daily.destination.merge_keys",
        "customers.schedule",
        "payments.watermark_columns",
    ):
        assert f"{path}:" in result.stderr
        assert expected in result.stderr, result.stderr


def test_schema_validates_the_demo_catalog() -> None:
    """`coolie schema` prints a JSON Schema the demo catalog (as an editor sees it) satisfies."""
    result = coolie("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    document = read_document(DEMO)
    jsonschema.validate(document, schema)
    broken = {**document, "dataflows": [{**document["dataflows"][0], "sourcee": {}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_plan_json_diamond_lists_upstream_first(tmp_path: Path) -> None:
    """In a diamond, every dataflow comes after all its upstreams."""
    path = catalog_file(
        tmp_path,
        [
            delta_flow("report", "left", depends_on=["right"]),
            delta_flow("right", "base"),
            delta_flow("left", "base"),
            delta_flow("base", None),
        ],
    )
    result = coolie("plan", str(path), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    order = [r["dataflow"] for r in rows]
    assert order == ["base", "left", "right", "report"]
    assert all({"dataflow", "stage"} <= r.keys() for r in rows)
    assert rows[3]["upstream"] == ["left", "right"]


@pytest.mark.parametrize(
    ("flows", "names"),
    [
        ([delta_flow("a", "b"), delta_flow("b", "a")], ["a", "b"]),
        (
            [
                delta_flow("a", None),
                delta_flow("b", None) | {"destination": {"connection": "lake", "table": "a"}},
            ],
            ["a", "b"],
        ),
        ([delta_flow("a", None, depends_on=["missing_one"])], ["a", "missing_one"]),
    ],
    ids=["cycle", "two-producers", "missing-upstream"],
)
def test_plan_rejects_bad_graphs_naming_dataflows(
    tmp_path: Path, flows: list[dict[str, Any]], names: list[str]
) -> None:
    """Graph errors fail `plan` with exit 2 and name the dataflows involved."""
    result = coolie("plan", str(catalog_file(tmp_path, flows)), "--json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in result.stderr


def test_plan_shards_cover_every_dataflow_once() -> None:
    """`plan --job-num 3` over the three indexes lists each demo dataflow exactly once."""
    seen: list[str] = []
    for index in range(3):
        result = coolie("plan", str(DEMO), "--json", "--job-num", "3", "--job-index", str(index))
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert all(r["shard"] == index for r in rows)
        seen += [r["dataflow"] for r in rows]
    assert sorted(seen) == sorted(f["name"] for f in read_document(DEMO)["dataflows"])


def test_bad_arguments_exit_2() -> None:
    """A shard index out of range is a usage error."""
    result = coolie("plan", str(DEMO), "--job-num", "2", "--job-index", "2")
    assert result.returncode == 2
    assert "job_index" in result.stderr
    assert "Traceback" not in result.stderr


def test_core_imports_no_dagster() -> None:
    """coolie_core stays a pure engine: importing all of it loads no dagster module."""
    code = (
        "import importlib, pkgutil, sys, coolie_core\n"
        "for m in pkgutil.walk_packages(coolie_core.__path__, 'coolie_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'dagster' or n.startswith('dagster'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_plan_windows_lists_the_chunks_of_partitioned_dataflows() -> None:
    """`plan --windows` shows each partitioned dataflow's windows: the demo's monthly
    daily_revenue has six, 2024-01-01 .. 2024-06-01; unpartitioned ones have none."""
    result = coolie("plan", str(DEMO), "--json", "--windows", "--stage", "gold")
    assert result.returncode == 0, result.stderr
    rows = {r["dataflow"]: r for r in json.loads(result.stdout)}
    assert rows["daily_revenue"]["windows"] == [f"2024-0{m}-01" for m in range(1, 7)]
    assert rows["customer_value"]["windows"] == []


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".yaml", "version: 1\ndataflows: " + "[" * 200_000 + "]" * 200_000),
        (".yaml", "version: 1\ndataflows:\n" + "- " * 20_000 + "x"),
        (".yaml", "version: 1\ndataflows: [" + "{a: " * 5_000 + "1" + "}" * 5_000 + "]"),
        (".json", '{"version": 1, "dataflows": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ],
    ids=["yaml-flow", "yaml-block", "yaml-mappings", "json"],
)
def test_validate_too_deep_document_is_located_whatever_the_parser(
    tmp_path: Path, suffix: str, text: str
) -> None:
    """A document nested too deeply is a located catalog error (exit 2, file:line, says it nests
    too deeply) whichever PyYAML/libyaml is installed: some stop it themselves, some let coolie's
    own depth check do it. Behaviour, not one library's wording."""
    path = tmp_path / f"catalog{suffix}"
    path.write_text(text, encoding="utf-8")
    result = coolie("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout + result.stderr
    line = next(ln for ln in out.splitlines() if str(path) in ln)
    assert f"{path}:" in line
    if suffix == ".yaml":
        assert re.search(rf"{re.escape(str(path))}:[23]:", line), line  # where the nesting runs deep
    assert "nest" in line.lower(), line


def test_validate_locates_on_cron_without_a_schedule(tmp_path: Path) -> None:
    """``on_cron`` needs a schedule to tick on: `coolie validate` names file:line, dataflow and
    field, for the dataflow's own rule (at its ``automation`` line) and for one inherited from a
    stage with no schedule (at the dataflow); a dataflow with its own schedule passes."""
    (tmp_path / "raw").mkdir()
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\n"
        "stages:\n"
        "  silver: {automation: [eager, on_cron]}\n"
        "connections:\n"
        "  raw: {kind: files, path: raw}\n"
        "  lake: {kind: delta, path: lake}\n"
        "dataflows:\n"
        "  - name: own_rule\n"
        "    stage: silver\n"
        "    source: {format: csv, connection: raw, path: a/*.csv}\n"
        "    destination: {connection: lake, table: a}\n"
        "    automation: on_cron\n"  # line 12
        "  - name: from_stage\n"  # line 13
        "    stage: silver\n"
        "    source: {format: csv, connection: raw, path: b/*.csv}\n"
        "    destination: {connection: lake, table: b}\n"
        "  - name: scheduled\n"
        "    stage: silver\n"
        "    schedule: '0 3 * * *'\n"
        "    source: {format: csv, connection: raw, path: c/*.csv}\n"
        "    destination: {connection: lake, table: c}\n",
        encoding="utf-8",
    )
    result = coolie("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:12: own_rule.automation: on_cron needs a schedule" in result.stderr, result.stderr
    assert (
        f"{path}:13: from_stage.automation: on_cron (from stage silver's automation) needs a schedule"
        in result.stderr
    ), result.stderr
    assert "scheduled" not in result.stderr
    assert "2 problems" in result.stderr
