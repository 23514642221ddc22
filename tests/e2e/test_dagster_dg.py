"""The ``dg`` CLI on ``examples/dg_project`` and on freshly scaffolded projects (real subprocesses)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).parents[2]
PROJECT = ROOT / "examples" / "dg_project"
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COOLIE_CATALOG", "COOLIE_DEMO_DATA")}
    return {
        **env,
        # dg runs the project's python: the active virtualenv (coolie's), as in CI.
        "VIRTUAL_ENV": str(BIN.parent),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _demo_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/demo/generate.py"), "--out", str(data), "--rows", "200"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return data


def test_example_project_checks_and_lists_every_definition(tmp_path: Path) -> None:
    """`dg check yaml`, `dg check defs` and `dg list defs --json` on the example project: every
    demo dataflow is an asset, with the stage jobs, named schedules, sensors and checks."""
    env = _env(tmp_path, COOLIE_DEMO_DATA=str(tmp_path / "data"))
    for command in (["check", "yaml"], ["check", "defs"]):
        result = _run([str(BIN / "dg"), *command], cwd=PROJECT, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    listed = _run([str(BIN / "dg"), "list", "defs", "--json"], cwd=PROJECT, env=env)
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    keys = {a["asset_key"] for a in defs["assets"]}
    assert {"bronze/customers", "silver/orders", "gold/daily_revenue", "source/raw/customers"} <= keys
    assert {j["name"] for j in defs["jobs"]} >= {"bronze", "silver", "gold", "gold__month"}
    assert {s["name"] for s in defs["schedules"]} == {"bronze_schedule", "silver_schedule", "gold_schedule"}
    assert {s["name"] for s in defs["sensors"]} >= {"coolie_run_failure_alert", "coolie_file_arrival"}
    assert len(defs["asset_checks"]) >= 9  # one drift check per dataflow plus the catalog's checks
    assert all(a["source"].endswith("defs/lake/defs.yaml:3") for a in defs["assets"] if a["is_executable"])


def test_materialisation_launched_through_dagster_cli_writes_the_demo_table(tmp_path: Path) -> None:
    """`dagster asset materialize` on the example project's module loads the component and writes
    the demo's bronze customers Delta table."""
    data = _demo_data(tmp_path)
    env = _env(tmp_path, COOLIE_DEMO_DATA=str(data))
    result = _run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "coolie_lake.definitions", "-d", str(PROJECT),
         "--select", "bronze/customers"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = pl.read_delta(str(data / "lake" / "bronze" / "customers"))
    assert table.height > 0
    assert table["_coolie_run_id"].n_unique() == 1


def _new_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "coolie_lake" / "defs").mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(PROJECT / "coolie_lake" / "__init__.py", project / "coolie_lake" / "__init__.py")
    shutil.copy(PROJECT / "coolie_lake" / "definitions.py", project / "coolie_lake" / "definitions.py")
    (project / "coolie_lake" / "defs" / "__init__.py").write_text("")
    return project


def test_scaffolded_component_checks_and_reports_catalog_errors_with_file_and_line(tmp_path: Path) -> None:
    """`dg scaffold defs coolie_dagster.CoolieComponent lake` writes defs.yaml and a starter catalog
    that `dg check defs` accepts; a broken catalog makes it fail naming the catalog's file:line; an
    unknown attribute makes `dg check yaml` fail naming defs.yaml."""
    project = _new_project(tmp_path)
    env = _env(tmp_path)
    dg_bin = str(BIN / "dg")
    scaffold = _run(
        [dg_bin, "scaffold", "defs", "coolie_dagster.CoolieComponent", "lake"], cwd=project, env=env
    )
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    folder = project / "coolie_lake" / "defs" / "lake"
    assert "type: coolie_dagster.CoolieComponent" in (folder / "defs.yaml").read_text()
    assert (folder / "catalog.yaml").is_file()
    ok = _run([dg_bin, "check", "defs"], cwd=project, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    catalog = folder / "catalog.yaml"
    text = catalog.read_text()
    catalog.write_text(text.replace("load: append", "load: apend"))
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "load: append" in row)
    broken = _run([dg_bin, "check", "defs"], cwd=project, env=env)
    assert broken.returncode != 0
    assert f"{catalog}:{line}: customers_bronze.destination.load" in broken.stdout + broken.stderr

    catalog.write_text(text)
    (folder / "defs.yaml").write_text(
        "type: coolie_dagster.CoolieComponent\nattributes:\n  catalgo: x.yaml\n"
    )
    typo = _run([dg_bin, "check", "yaml"], cwd=project, env=env)
    assert typo.returncode != 0
    assert "defs.yaml:3" in typo.stdout + typo.stderr
    assert "'catalgo' was unexpected" in typo.stdout + typo.stderr


def test_any_dg_project_lists_the_coolie_component(tmp_path: Path) -> None:
    """The `dagster_dg_cli.registry_modules` entry point in coolie's pyproject: `dg list
    components` in a dg project that names no registry module still lists CoolieComponent
    (needs coolie installed with its current metadata: `make setup`)."""
    project = tmp_path / "plain_lake_project"
    (project / "src" / "plain_lake" / "defs").mkdir(parents=True)
    (project / "src" / "plain_lake" / "__init__.py").touch()
    (project / "src" / "plain_lake" / "defs" / "__init__.py").touch()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "plain-lake"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["coolie"]\n\n[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "plain_lake"\n'
    )
    listed = _run([str(BIN / "dg"), "list", "components", "--json"], cwd=project, env=_env(tmp_path))
    assert listed.returncode == 0, listed.stderr
    keys = {item["key"] for item in json.loads(listed.stdout)["items"]}
    assert "coolie_dagster.CoolieComponent" in keys, sorted(keys)
