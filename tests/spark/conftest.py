"""A standalone Spark cluster on loopback for the whole pytest session, and one SparkSession on it.

The master and one worker are separate JVM processes started with pyspark's own launcher
(``spark-class``), in their own process group (killed at the end); the worker's executor is a
third JVM, so every job really ships its tasks to another process. Tables live under pytest's
tmp_path: a path the driver and the executor both see. Starting cluster + session takes ~15 s.

``COOLIE_TEST_SPARK_MASTER=local[2]`` runs the same tests without the cluster.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coolie_core.engines import spark_engine, use_spark_session
from coolie_core.engines.spark import spark_config

TEST_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.executor.memory": "1g",
    "spark.executor.cores": "2",
    "spark.cores.max": "2",
}
MASTER_OVERRIDE_ENV = "COOLIE_TEST_SPARK_MASTER"


@dataclass(frozen=True)
class SparkCluster:
    """A running standalone cluster: its master URL and the environment its apps need."""

    master: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], *, what: str) -> None:
    """Wait until ``text`` appears in ``log`` (the daemon is up); fail when the process dies."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(
        f"Spark {what} did not start:\n{log.read_text(encoding='utf-8', errors='replace')[-3000:]}"
    )


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """Master + one worker (4 cores, 3 GB: room for two 2-core apps) on 127.0.0.1, from the pyspark wheel."""
    home = _spark_home()
    base = tmp_path_factory.mktemp("spark-cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_DIR": str(base / "work"),
        "SPARK_LOG_DIR": str(base / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_NO_DAEMONIZE": "1",
    }
    port = _free_port()
    master = f"spark://127.0.0.1:{port}"
    launcher = str(home / "bin" / "spark-class")
    commands = {
        "master": [
            launcher, "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(_free_port()),
        ],
        "worker": [
            launcher, "org.apache.spark.deploy.worker.Worker", master,
            "--host", "127.0.0.1", "--port", str(_free_port()), "--webui-port", str(_free_port()),
            "--cores", "4", "--memory", "3g", "--work-dir", str(base / "work"),
        ],
    }  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, ready in (("master", "I have been elected leader"), ("worker", "Successfully registered")):
            log = base / f"{name}.log"
            with log.open("wb") as out:
                # Own process group: the launcher's JVM child dies with it at the end.
                process = subprocess.Popen(
                    commands[name], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            processes.append(process)
            _wait_for(log, ready, process, what=name)
        yield SparkCluster(master=master, env={k: env[k] for k in ("SPARK_LOCAL_IP", "PYSPARK_PYTHON")})
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass


def _master(request: pytest.FixtureRequest) -> str:
    override = os.environ.get(MASTER_OVERRIDE_ENV)
    if override:
        return override
    cluster: SparkCluster = request.getfixturevalue("spark_cluster")
    return cluster.master


@pytest.fixture(scope="session")
def spark_master(request: pytest.FixtureRequest) -> str:
    """The master URL the tests' Spark apps use (the cluster's, unless overridden)."""
    return _master(request)


def _wait_for_executor(session: Any) -> None:
    """Executors register after the session starts: wait for one (driver + 1 in the status)."""
    deadline = time.monotonic() + 120
    while session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("no executor registered with the Spark app within 120 s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def spark(spark_master: str) -> Iterator[Any]:
    """The session every Spark test (and coolie's Spark engine) uses: an app on the cluster."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in {**spark_config(spark_master), **TEST_CONFIG}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if spark_master.startswith("spark://"):
        _wait_for_executor(session)
    use_spark_session(session)
    yield session
    session.stop()


@pytest.fixture
def spark_arrow_max_rows(spark: Any) -> Iterator[Any]:
    """Set the Spark engine's Arrow threshold for one test (0: every load is written by Spark)."""
    engine = spark_engine()
    before = engine.arrow_max_rows

    def set_to(rows: int) -> None:
        engine.arrow_max_rows = rows

    yield set_to
    engine.arrow_max_rows = before
