"""coolie deployed as Dagster runs it in production: three services over one Postgres instance.

A throwaway PostgreSQL 15 cluster, `dagster code-server start` serving the coolie location from a
small catalog, `dagster-daemon run` and `dagster-webserver` loading it through the shipped gRPC
workspace (`docs/deploy/workspace.yaml`), all with one DAGSTER_HOME whose `dagster.yaml` is the
repository's (Postgres chosen by the `DAGSTER_PG_*` variables alone) plus the catalog's run limits
from `coolie_dagster.instance_config`. Everything is driven through the webserver's GraphQL API,
and checked in Postgres (psycopg) and in the Delta tables.

Schedule and sensor names are discovered through GraphQL, never hardcoded.
"""

import datetime as dt
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "dagster"
PG_PASSWORD = "pg-pass/for tests"  # a '/' and a space: the URL must be quoted properly
SHARDED_FLOWS = ("accounts", "invoices", "items", "payments")
REPO = "__repository__"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*cmd: str) -> list[str]:
    # PostgreSQL refuses to run as root; tests (and CI) run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _wait(what: str, check: Callable[[], Any], *, timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


# --------------------------------------------------------------------------- the catalog


def _write_catalog(root: Path) -> Path:
    """Three stages: a monthly partitioned one (backfill), a file-fed one (sensor) and a sharded,
    scheduled one over a SQLite database, limited to one run at a time."""
    (root / "sales").mkdir(parents=True)
    for month in (1, 2, 3):
        pl.DataFrame(
            {
                "sale_id": [month * 10 + i for i in range(3)],
                "sale_date": [dt.date(2024, month, d) for d in (1, 15, 28)],
                "amount": [1.5 * month] * 3,
            }
        ).write_csv(root / "sales" / f"2024-{month:02d}.csv")
    (root / "landing").mkdir()
    with sqlite3.connect(root / "erp.sqlite") as db:
        for table in SHARDED_FLOWS:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, label TEXT)")
            db.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(i, f"{table}-{i}") for i in range(1, 4)])
    catalog = {
        "version": 1,
        "stages": {
            "monthly": {"description": "Backfilled by month."},
            "landing": {"description": "Loaded when files land."},
            "sharded": {"schedule": "* * * * *", "shards": 2, "max_concurrent_runs": 1},
        },
        "connections": {
            "files": {"kind": "files", "path": str(root)},
            "erp": {"kind": "sql", "url": f"sqlite:///{root / 'erp.sqlite'}"},
            "lake": {"kind": "delta", "path": str(root / "lake")},
        },
        "dataflows": [
            {
                "name": "sales_monthly",
                "stage": "monthly",
                "source": {"format": "csv", "connection": "files", "path": "sales/*.csv"},
                "transforms": [{"kind": "cast", "columns": {"sale_date": "date"}}],
                "destination": {"connection": "lake", "table": "sales", "load": "replace_window"},
                "partitions": {
                    "column": "sale_date",
                    "every": "month",
                    "start": "2024-01-01",
                    "end": "2024-04-01",
                },
            },
            {
                "name": "events_landed",
                "stage": "landing",
                "source": {"format": "csv", "connection": "files", "path": "landing/*.csv"},
                "destination": {"connection": "lake", "table": "events", "load": "overwrite"},
            },
            *(
                {
                    "name": f"{table}_erp",
                    "stage": "sharded",
                    "source": {"format": "sql", "connection": "erp", "table": table},
                    "destination": {"connection": "lake", "table": f"erp/{table}", "load": "append"},
                    "watermark_columns": ["id"],
                }
                for table in SHARDED_FLOWS
            ),
        ],
    }
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


BROKEN_CATALOG = """\
version: 1
connections:
  lake: {kind: delta, path: lake}
dataflows:
  - name: broken
    source: {format: delta, connection: lake, table: a}
    destination: {connection: lake, table: b, load: apend}
"""


# --------------------------------------------------------------------------- processes


@dataclass
class Deployment:
    """The running services and where their state lives."""

    root: Path
    catalog: Path
    home: Path
    env: dict[str, str]
    pg_url: str
    webserver_port: int
    code_port: int
    logs: Path
    code_server: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.webserver_port}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as error:  # GraphQL errors come back as HTTP 4xx/5xx
            raise AssertionError(f"GraphQL HTTP {error.code}: {error.read()[-6000:]!r}") from None
        assert "errors" not in payload, payload
        data: dict[str, Any] = payload["data"]
        return data

    def start(
        self, name: str, args: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            cwd=self.root,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def start_code_server(self) -> None:
        self.code_server = self.start(
            "code-server",
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.code_port),
             "-m", "coolie_dagster.definitions", "-a", "defs", "--location-name", "coolie"],
        )  # fmt: skip

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(self.logs.glob("*.log")))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started (its own session), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL 15 on 127.0.0.1 with password auth: (host, port)."""
    if not (PG_BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    # Not under pytest's tmp root: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="coolie-deploy-pg-"))
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", PG_USER, "--auth=scram-sha-256", f"--pwfile={pwfile}"),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        _as_postgres(str(PG_BIN / "postgres"), "-D", str(root / "data"), "-h", "127.0.0.1", "-p", str(port), "-k", str(root)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(
            "PostgreSQL to accept connections",
            lambda: (
                server.poll() is None
                and subprocess.run(
                    [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ),
            timeout=60,
            every=0.1,
        )
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "dagster"],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": PG_PASSWORD}, timeout=60,
        )  # fmt: skip
        yield "127.0.0.1", port
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(postgres: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Code server, daemon and webserver over one Postgres-backed DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("deploy")
    catalog = _write_catalog(root / "data")
    home = root / "dagster_home"
    home.mkdir()
    logs = root / "logs"
    logs.mkdir()
    # The generator `make dev` uses: the repository's dagster.yaml plus the catalog's run limits.
    generated = subprocess.run(
        [sys.executable, "-m", "coolie_dagster.instance_config", str(catalog), "--base", str(ROOT / "dagster.yaml")],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    (home / "dagster.yaml").write_text(generated.stdout)
    host, pg_port = postgres
    code_port, broken_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": str(pg_port),
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": PG_PASSWORD,
        "DAGSTER_PG_DB": "dagster",
        "COOLIE_CATALOG": str(catalog),
        "COOLIE_STATE_DIR": str(root / "state"),
        "COOLIE_CODE_SERVER_HOST": "127.0.0.1",
        "COOLIE_CODE_SERVER_PORT": str(code_port),
    }
    broken = root / "broken"
    broken.mkdir()
    (broken / "catalog.yaml").write_text(BROKEN_CATALOG)
    (root / "broken_workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": broken_port, "location_name": "broken"}}
                ]
            }
        )
    )
    deploy = Deployment(
        root=root,
        catalog=catalog,
        home=home,
        env=env,
        pg_url=f"host={host} port={pg_port} user={PG_USER} password='{PG_PASSWORD}' dbname=dagster",
        webserver_port=_free_port(),
        code_port=code_port,
        logs=logs,
    )
    try:
        deploy.start_code_server()
        deploy.start(
            "broken-code-server",
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(broken_port),
             "-m", "coolie_dagster.definitions", "-a", "defs", "--location-name", "broken"],
            env={**env, "COOLIE_CATALOG": str(broken / "catalog.yaml")},
        )  # fmt: skip
        workspaces = [
            "-w",
            str(ROOT / "docs/deploy/workspace.yaml"),
            "-w",
            str(root / "broken_workspace.yaml"),
        ]
        webserver = deploy.start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(deploy.webserver_port),
                *workspaces,
            ],
        )

        def answers() -> bool:
            assert webserver.poll() is None, deploy.log_tail()
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{deploy.webserver_port}/server_info", timeout=5
                ):
                    return True
            except OSError:
                return False

        _wait("the webserver's /server_info", answers, timeout=180)
        for name in ("coolie", "broken"):
            _wait(
                f"the {name} location to load",
                functools.partial(_reachable, deploy, name),
                timeout=180,
                every=1,
            )
        # The daemon starts once the code servers answer: it would otherwise wait for its next
        # workspace refresh to see the locations.
        deploy.start("daemon", [str(BIN / "dagster-daemon"), "run", *workspaces])
        yield deploy
    finally:
        for process in reversed(deploy.processes):
            _stop(process)


# --------------------------------------------------------------------------- GraphQL helpers


def _location(deploy: Deployment, name: str) -> dict[str, Any] | None:
    """The location entry once it has loaded (or failed to); None while it is still loading."""
    data = deploy.graphql(
        """{ workspaceOrError { __typename ... on Workspace { locationEntries {
               name loadStatus
               locationOrLoadError { __typename
                 ... on RepositoryLocation { repositories { name } }
                 ... on PythonError { message stack causes { className message stack } } } } } } }"""
    )["workspaceOrError"]
    for entry in data.get("locationEntries", []):
        if entry["name"] == name and entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]:
            result: dict[str, Any] = entry["locationOrLoadError"]
            return result
    return None


def _reachable(deploy: Deployment, name: str) -> dict[str, Any] | None:
    """The location once its code server answered; asks the webserver to reload it until then."""
    location = _location(deploy, name)
    if location is not None and "Could not reach user code server" not in location.get("message", ""):
        return location
    deploy.graphql(
        """mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }""",
        {"name": name},
    )
    return None


def _repository(deploy: Deployment) -> dict[str, Any]:
    data = deploy.graphql(
        """query($sel: RepositorySelector!) { repositoryOrError(repositorySelector: $sel) {
             __typename ... on Repository {
               schedules { name cronSchedule }
               sensors { name sensorType }
               assetNodes { assetKey { path } } } } }""",
        {"sel": {"repositoryLocationName": "coolie", "repositoryName": REPO}},
    )["repositoryOrError"]
    assert data["__typename"] == "Repository", data
    repository: dict[str, Any] = data
    return repository


def _runs(deploy: Deployment, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    filter_ = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    data = deploy.graphql(
        """query($filter: RunsFilter) { runsOrError(filter: $filter) {
             __typename ... on Runs { results { runId status startTime endTime
               tags { key value } } } } }""",
        {"filter": filter_},
    )["runsOrError"]
    assert data["__typename"] == "Runs", data
    runs: list[dict[str, Any]] = data["results"]
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return runs


def _turn_on(deploy: Deployment, kind: str, name: str) -> None:
    mutation = {
        "schedule": """mutation($sel: ScheduleSelector!) { startSchedule(scheduleSelector: $sel) {
                         __typename ... on PythonError { message } } }""",
        "sensor": """mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
                       __typename ... on PythonError { message } } }""",
    }[kind]
    key = {"schedule": "scheduleName", "sensor": "sensorName"}[kind]
    sel = {"repositoryLocationName": "coolie", "repositoryName": REPO, key: name}
    result = deploy.graphql(mutation, {"sel": sel})
    typename = next(iter(result.values()))["__typename"]
    assert typename in ("ScheduleStateResult", "Sensor"), result


def _stop_schedule(deploy: Deployment, name: str) -> None:
    sel = {"repositoryLocationName": "coolie", "repositoryName": REPO, "scheduleName": name}
    state = deploy.graphql(
        """query($sel: ScheduleSelector!) { scheduleOrError(scheduleSelector: $sel) {
             ... on Schedule { scheduleState { id } } } }""",
        {"sel": sel},
    )["scheduleOrError"]["scheduleState"]
    result = deploy.graphql(
        """mutation($id: String!) { stopRunningSchedule(id: $id) { __typename ... on PythonError { message } } }""",
        {"id": state["id"]},
    )["stopRunningSchedule"]
    assert result["__typename"] == "ScheduleStateResult", result


def _ticks(deploy: Deployment, name: str) -> list[dict[str, Any]]:
    data = deploy.graphql(
        """query($sel: ScheduleSelector!) { scheduleOrError(scheduleSelector: $sel) {
             __typename ... on Schedule { scheduleState { ticks(limit: 10) {
               id status timestamp runIds error { message } } } } } }""",
        {"sel": {"repositoryLocationName": "coolie", "repositoryName": REPO, "scheduleName": name}},
    )["scheduleOrError"]
    if data["__typename"] == "ScheduleNotFoundError":  # the location is reloading (code server restart)
        return []
    assert data["__typename"] == "Schedule", data
    ticks: list[dict[str, Any]] = data["scheduleState"]["ticks"]
    return ticks


IN_FLIGHT = {"STARTING", "STARTED", "CANCELING"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


# --------------------------------------------------------------------------- tests


def test_broken_catalog_shows_a_located_load_error(deployment: Deployment) -> None:
    """The code server serving an invalid catalog reports a location error naming file:line and
    field, readable at the top of the message (not buried in a stack trace)."""
    error = _wait("the broken location's load error", lambda: _location(deployment, "broken"), timeout=120)
    assert error["__typename"] == "PythonError", error
    # Dagster's own wrapper ("Error occurred during the loading of Dagster definitions") is caused
    # by coolie's CatalogError, which the UI shows as the cause: the located problem, and no
    # engine frames to dig through.
    (cause,) = [c for c in error["causes"] if c["className"] == "CatalogError"]
    assert (
        cause["message"].splitlines()[0] == "coolie_core.errors.CatalogError: invalid catalog: 1 problem"
    ), cause
    assert "catalog.yaml:7: broken.destination.load: Input should be" in cause["message"], cause
    assert not [frame for frame in cause["stack"] if "coolie_core" in frame], cause["stack"]
    assert error["causes"][-1] is cause or error["causes"][-1] == cause, error["causes"]
    # The healthy location is unaffected.
    assert _location(deployment, "coolie") == {
        "__typename": "RepositoryLocation",
        "repositories": [{"name": REPO}],
    }


def test_production_day_backfill_sensor_sharded_schedule_and_restart(deployment: Deployment) -> None:
    """Through GraphQL: a monthly backfill completes, the file sensor launches a run for dropped
    files, two schedule ticks launch one run per shard with the stage's run limit (1) holding,
    the second after a code-server restart; runs and materialisations are in Postgres and the
    Delta tables hold every row exactly once."""
    deploy = deployment
    repo = _repository(deploy)
    keys = {"/".join(node["assetKey"]["path"]) for node in repo["assetNodes"]}
    assert {"sales", "events", *(f"erp/{t}" for t in SHARDED_FLOWS)} <= keys
    (schedule,) = [s["name"] for s in repo["schedules"] if s["cronSchedule"] == "* * * * *"]
    (sensor,) = [s["name"] for s in repo["sensors"] if s["sensorType"] == "STANDARD"]

    # The schedule ticks at the next minute boundary: turn it on first, the rest happens meanwhile.
    _turn_on(deploy, "schedule", schedule)

    # --- backfill of three monthly partitions
    launched = deploy.graphql(
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {"params": {"assetSelection": [{"path": ["sales"]}], "partitionNames": ["2024-01-01", "2024-02-01", "2024-03-01"]}},
    )["launchPartitionBackfill"]  # fmt: skip
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    # --- the file sensor: a file dropped before it is turned on is new to its first tick
    pl.DataFrame({"event_id": [1, 2, 3], "kind": ["a", "b", "c"]}).write_csv(
        deploy.catalog.parent / "landing" / "e1.csv"
    )
    _turn_on(deploy, "sensor", sensor)

    # --- watch the sharded stage: never more than one run in flight (its max_concurrent_runs)
    stage = {"coolie/stage": "sharded"}
    most_in_flight = 0

    def tick(after: float) -> dict[str, Any] | None:
        """The first successful tick after ``after`` (watching the stage's runs meanwhile)."""
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, sum(r["status"] in IN_FLIGHT for r in _runs(deploy, stage)))
        ticks = [t for t in _ticks(deploy, schedule) if t["status"] == "SUCCESS" and t["timestamp"] > after]
        return min(ticks, key=lambda t: t["timestamp"]) if ticks else None

    def tick_runs(after: float) -> list[dict[str, Any]]:
        """Wait for a tick, pause the schedule (one tick is enough), wait for the tick's runs."""
        nonlocal most_in_flight
        run_ids = _wait("a schedule tick", lambda: tick(after), timeout=150, every=0.3)["runIds"]
        _stop_schedule(deploy, schedule)

        def finished() -> list[dict[str, Any]] | None:
            nonlocal most_in_flight
            runs = {r["runId"]: r for r in _runs(deploy, stage)}
            most_in_flight = max(most_in_flight, sum(r["status"] in IN_FLIGHT for r in runs.values()))
            done = all(r["status"] in FINISHED for r in runs.values())
            return [runs[i] for i in run_ids] if done else None

        result: list[dict[str, Any]] = _wait("the tick's runs", finished, timeout=240, every=0.3)
        return result

    first = tick_runs(0)
    assert len(first) == 2, first
    assert sorted(r["tags"]["coolie/job_index"] for r in first) == ["0", "1"]
    assert {r["tags"]["coolie/job_num"] for r in first} == {"2"}
    assert {r["status"] for r in first} == {"SUCCESS"}, deploy.log_tail()

    # --- restart the code server (same port) between ticks, with new rows in the source.
    # The schedule is paused and its runs are done, so no run is being launched through the
    # server as it stops (such a launch fails; production reloads instead, see docs/deploy.md).
    with sqlite3.connect(deploy.catalog.parent / "erp.sqlite") as db:
        for table in SHARDED_FLOWS:
            db.execute(f"INSERT INTO {table} VALUES (4, '{table}-4')")
    assert deploy.code_server is not None
    _stop(deploy.code_server)
    deploy.start_code_server()
    _wait("the restarted code server", lambda: _reachable(deploy, "coolie"), timeout=120, every=1)
    restarted = time.time()
    _turn_on(deploy, "schedule", schedule)
    second = tick_runs(restarted)
    assert len(second) == 2, second
    assert sorted(r["tags"]["coolie/job_index"] for r in second) == ["0", "1"]
    assert {r["status"] for r in second} == {"SUCCESS"}, deploy.log_tail()
    assert most_in_flight == 1
    # The same from the recorded times: no two runs of the stage overlapped.
    finished = [r for r in _runs(deploy, stage) if r["status"] in FINISHED]
    spans = sorted((r["startTime"], r["endTime"]) for r in finished)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), spans
    scheduled = {r["runId"] for r in [*first, *second]}

    # --- the backfill and the sensor's run finished meanwhile
    def backfill_status() -> str | None:
        result = deploy.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status } } }""",
            {"id": launched["backfillId"]},
        )["partitionBackfillOrError"]
        status = result.get("status")
        return (
            status
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "COMPLETED_FAILED", "CANCELED")
            else None
        )

    assert _wait("the backfill", backfill_status, timeout=120) in ("COMPLETED", "COMPLETED_SUCCESS")
    sensor_runs = _wait(
        "the sensor's run",
        lambda: [r for r in _runs(deploy, {"coolie/trigger": "file_arrival"}) if r["status"] in FINISHED],
        timeout=120,
    )
    assert [r["status"] for r in sensor_runs] == ["SUCCESS"], deploy.log_tail()

    # --- Postgres holds the runs and the materialisations
    import psycopg

    with psycopg.connect(deploy.pg_url) as conn:
        pg_runs: dict[str, str] = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
        materialised: dict[str, int] = dict(
            conn.execute(
                "SELECT asset_key, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                "GROUP BY asset_key"
            ).fetchall()
        )
        shard_tags: dict[str, str] = dict(
            conn.execute("SELECT run_id, value FROM run_tags WHERE key = 'coolie/job_index'").fetchall()
        )
    ours = scheduled | {r["runId"] for r in sensor_runs}
    assert {pg_runs[run_id] for run_id in ours} == {"SUCCESS"}
    assert "FAILURE" not in pg_runs.values()
    assert sorted(shard_tags[run_id] for run_id in scheduled) == ["0", "0", "1", "1"]
    assert materialised['["sales"]'] == 3
    assert materialised['["events"]'] == 1
    for table in SHARDED_FLOWS:
        assert materialised[f'["erp", "{table}"]'] >= 1

    # --- the Delta tables: every row exactly once
    lake = deploy.catalog.parent / "lake"
    sales = pl.read_delta(str(lake / "sales"))
    assert sorted(sales["sale_id"].to_list()) == [m * 10 + i for m in (1, 2, 3) for i in range(3)]
    assert {c.get("coolie.window") for c in DeltaTable(str(lake / "sales")).history()} >= {
        "2024-01-01", "2024-02-01", "2024-03-01"
    }  # fmt: skip
    assert sorted(pl.read_delta(str(lake / "events"))["event_id"].to_list()) == [1, 2, 3]
    for table in SHARDED_FLOWS:
        assert sorted(pl.read_delta(str(lake / "erp" / table))["id"].to_list()) == [1, 2, 3, 4], table

    # --- coolie's own run records: written by the run workers into $COOLIE_STATE_DIR
    from coolie_core.runlog import read_records

    recorded = {record["run_id"] for record in read_records(deploy.root / "state" / "runs")}
    assert ours <= recorded, (ours - recorded, recorded)

    # --- a catalog change reaches the running location by a reload, without a restart
    catalog = yaml.safe_load(deploy.catalog.read_text())
    extra = {**catalog["dataflows"][1], "name": "events_copy"}
    extra["destination"] = {**extra["destination"], "table": "events_copy"}
    catalog["dataflows"].append(extra)
    deploy.catalog.write_text(yaml.safe_dump(catalog, sort_keys=False))
    reloaded = deploy.graphql(
        """mutation { reloadRepositoryLocation(repositoryLocationName: "coolie") { __typename } }"""
    )["reloadRepositoryLocation"]
    assert reloaded["__typename"] == "WorkspaceLocationEntry", reloaded
    keys = {"/".join(node["assetKey"]["path"]) for node in _repository(deploy)["assetNodes"]}
    assert "events_copy" in keys


def test_postgres_switch_without_credentials_names_the_missing_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DAGSTER_PG_HOST alone selects Postgres; the instance then refuses to load and names the
    variables still missing, instead of falling back to SQLite."""
    import dagster as dg

    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_USERNAME", "dagster")
    monkeypatch.delenv("DAGSTER_PG_PASSWORD", raising=False)
    with pytest.raises(ValueError, match=r"DAGSTER_PG_HOST is set.*DAGSTER_PG_PASSWORD is not set"):
        dg.DagsterInstance.from_config(str(tmp_path))
    assert not (tmp_path / "history").exists()  # nothing written to a SQLite fallback
