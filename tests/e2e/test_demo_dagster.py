"""`make demo`'s second half: materialise the demo through Dagster, then again with nothing new."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.e2e


def test_demo_materialises_through_dagster_and_rerun_writes_nothing(tmp_path: Path) -> None:
    """Every demo asset materialises on a persistent instance; the rerun leaves every Delta
    table at the same version and reports every dataflow skipped."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/demo/generate.py"), "--out", str(data), "--rows", "300"],
        check=True,
        capture_output=True,
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COOLIE_DEMO_DATA": str(data),
        "COOLIE_STATE_DIR": str(tmp_path / "state"),
    }
    script = [
        sys.executable,
        str(ROOT / "examples/demo/materialize.py"),
        str(ROOT / "examples/demo/catalog.yaml"),
    ]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    tables = sorted(p.parent for p in (data / "lake").rglob("_delta_log"))
    assert len(tables) == 9
    versions = {t: DeltaTable(str(t)).version() for t in tables}
    assert "gold/daily_revenue" in first.stdout
    second = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert {t: DeltaTable(str(t)).version() for t in tables} == versions
    assert "succeeded" not in second.stdout
    assert "all 6 present" in second.stdout
