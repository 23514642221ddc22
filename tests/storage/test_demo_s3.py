"""`make demo-s3`: the demo catalog on a local S3 server, run twice, the second writing nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_s3_runs_the_demo_catalog_on_s3() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COOLIE_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo" / "s3_demo.py"), "--rows", "300"],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"},
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "0 succeeded, 9 skipped, 0 failed" in out, out  # the second run writes nothing
    for table in ("bronze/orders", "silver/customers", "gold/daily_revenue"):
        assert f"s3://coolie-demo/data-s3/lake/{table}" in out, out
