"""The code location as a user meets it: `dagster dev` serving the demo, asked over GraphQL.

Starts a real `dagster dev` (webserver + daemon) on a free loopback port with job control, waits
for `/server_info`, finds every demo dataflow among the asset nodes, launches a partition
backfill of a monthly gold asset, waits for the daemon to finish it, checks the Delta table, and
stops the server with SIGINT.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.catalog import load_catalog

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "examples" / "demo" / "catalog.yaml"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload: dict[str, Any] = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated demo data with bronze and silver already loaded (the backfill reads silver)."""
    data = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, str(ROOT / "examples/demo/generate.py"), "--out", str(data), "--rows", "300"],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "COOLIE_DEMO_DATA": str(data)}
    for stage in ("bronze", "silver"):
        subprocess.run(
            [sys.executable, "-m", "coolie_core.cli", "run", str(DEMO), "--stage", stage, "--state-dir", str(data / "state")],
            check=True, capture_output=True, env=env, timeout=300,
        )  # fmt: skip
    return data


@pytest.fixture(scope="module")
def dagster_dev(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COOLIE_DEMO_DATA": str(demo_data),
        "COOLIE_STATE_DIR": str(demo_data / "state"),
    }
    log = (home / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (home / "dagster-dev.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster dev did not answer /server_info in 180 s"
                time.sleep(1)
        yield port
    finally:
        # dagster dev stops cleanly on SIGINT to its process group (it runs in its own session).
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
    assert server.returncode is not None


def test_every_demo_dataflow_is_an_asset(dagster_dev: int) -> None:
    """GraphQL lists an asset node for each demo dataflow's destination table."""
    data = graphql(dagster_dev, "{ assetNodes { assetKey { path } groupName } }")
    keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
    tables = {flow.destination.table for flow in load_catalog(DEMO).catalog.dataflows}
    assert tables <= keys
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in data["assetNodes"]}
    assert groups["gold/daily_revenue"] == "gold"


def test_partition_backfill_through_graphql_succeeds(dagster_dev: int, demo_data: Path) -> None:
    """A backfill of three monthly partitions of gold/daily_revenue completes and writes exactly
    those windows, one commit each."""
    launched = graphql(
        dagster_dev,
        """mutation($params: LaunchBackfillParams!) {
             launchPartitionBackfill(backfillParams: $params) {
               __typename
               ... on LaunchBackfillSuccess { backfillId }
               ... on PythonError { message }
               ... on InvalidStepError { invalidStepKey }
               ... on PartitionSetNotFoundError { message }
             }
           }""",
        {
            "params": {
                "assetSelection": [{"path": ["gold", "daily_revenue"]}],
                "partitionNames": ["2024-01-01", "2024-02-01", "2024-03-01"],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        result = graphql(
            dagster_dev,
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]
        status = result.get("status")
        if status in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "COMPLETED_FAILED", "CANCELED"):
            break
        time.sleep(2)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    table = demo_data / "lake" / "gold" / "daily_revenue"
    windows = [c.get("coolie.window") for c in DeltaTable(str(table)).history()]
    assert {"2024-01-01", "2024-02-01", "2024-03-01"} <= set(windows)
    days = pl.read_delta(str(table))["order_date"]
    assert days.min().isoformat() >= "2024-01-01"  # type: ignore[union-attr]
    assert days.max().isoformat() < "2024-04-01"  # type: ignore[union-attr]


@pytest.mark.skipif(
    not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
    reason="Debian chromium + chromium-driver not installed (.ci/run installs them)",
)
def test_asset_graph_page_renders_in_headless_chromium(dagster_dev: int, tmp_path: Path) -> None:
    """Headless Chromium loads the asset graph and a lineage page; both show coolie's stages."""
    from coolie_dagster.ui_check import capture_pages

    texts = capture_pages(f"http://127.0.0.1:{dagster_dev}", tmp_path)
    for stage in ("bronze", "silver", "gold"):
        assert stage in texts["asset-groups.png"]
    assert "daily_revenue" in texts["asset-lineage.png"]
    for name in texts:
        assert (tmp_path / name).stat().st_size > 20_000  # a rendered page, not a blank one
