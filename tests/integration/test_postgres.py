"""A real PostgreSQL server as a source: URL with the password by env reference, an integer
watermark pushed down as a bound parameter, rows loaded exactly once."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_core.runlog import read_records

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-for-tests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*cmd: str) -> list[str]:
    # PostgreSQL refuses to run as root; tests (and CI) run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL 15 on 127.0.0.1 (password auth); yield its URL template."""
    if not (PG_BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    # Not under pytest's tmp root: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="coolie-pg-"))
    data = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "etl", "--auth=scram-sha-256", f"--pwfile={pwfile}"),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        _as_postgres(str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            if (
                subprocess.run(
                    [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ):
                break
            if server.poll() is not None:
                pytest.fail("PostgreSQL exited during start-up")
            time.sleep(0.1)
        else:
            pytest.fail("PostgreSQL did not start")
        yield f"postgresql+psycopg://etl:${{PG_PASSWORD}}@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _execute(port_url: str, sql: str) -> None:
    import psycopg

    url = port_url.replace("postgresql+psycopg", "postgresql").replace("${PG_PASSWORD}", PASSWORD)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def test_postgres_source_loads_new_rows_once(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows inserted between runs are loaded exactly once; the password comes from the
    environment and appears in no run record."""
    monkeypatch.setenv("PG_PASSWORD", PASSWORD)
    _execute(
        postgres, "DROP TABLE IF EXISTS payments; CREATE TABLE payments (id integer, amount numeric(10,2))"
    )
    _execute(postgres, "INSERT INTO payments VALUES (1, 10.50), (2, 20.00)")
    doc = {
        "connections": {"pg": {"kind": "sql", "url": postgres}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "payments",
                "source": {"format": "sql", "connection": "pg", "table": "payments"},
                "destination": {"connection": "lake", "table": "payments"},
                "watermark_columns": ["id"],
            }
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    loaded = load_catalog(tmp_path / "catalog.yaml")
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        first = driver.run().result("payments")
        _execute(postgres, "INSERT INTO payments VALUES (3, 30.25)")
        second = driver.run().result("payments")
        third = driver.run().result("payments")
    assert (first.status, first.rows_written) == ("succeeded", 2), first.error
    assert (second.status, second.rows_read) == ("succeeded", 1), second.error
    assert third.status == "skipped"
    table = pl.read_delta(str(tmp_path / "lake" / "payments")).sort("id")
    assert table["id"].to_list() == [1, 2, 3]
    assert [str(a) for a in table["amount"]] == ["10.50", "20.00", "30.25"]
    records = read_records(tmp_path / "state" / "runs")
    assert len(records) == 3
    assert PASSWORD not in repr(records)


def test_wrong_password_fails_without_leaking_it(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An authentication failure names the connection, is not retried forever, and never prints
    the password it tried."""
    monkeypatch.setenv("PG_PASSWORD", "wrong-password-123")
    doc = {
        "connections": {"pg": {"kind": "sql", "url": postgres}, "lake": {"kind": "delta", "path": "lake"}},
        "dataflows": [
            {
                "name": "payments",
                "source": {"format": "sql", "connection": "pg", "query": "SELECT 1 AS id"},
                "destination": {"connection": "lake", "table": "payments"},
            }
        ],
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    with Driver(load_catalog(tmp_path / "catalog.yaml"), state_dir=tmp_path / "state") as driver:
        result = driver.run().result("payments")
    assert result.status == "failed"
    assert "connection pg" in (result.error or "")
    assert "wrong-password-123" not in repr(read_records(tmp_path / "state" / "runs"))
