"""Secrets referenced by environment variables never appear in output, logs, run records, Delta
commits or Dagster metadata and event logs — on success and when the connection fails.

Every secret holds one unique marker; each test runs dataflows for real and then scans
everything coolie and Dagster printed, logged or wrote for it. The failing passwords hold URL
delimiters (``@ / : % # ?``): spliced into a URL unquoted they would reroute the connection and
surface in "could not resolve host" messages.
"""

import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from coolie_dagster.definitions import build_definitions

MARKER = "c00lie-s3cret-marker-8d1f27"
PASSWORD = f"pw@{MARKER}/x:y%2F#?z"
"""A password that is also a minefield of URL delimiters."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three SQL dataflows, every secret by environment reference.

    * ``orders`` (succeeds): the whole URL is ``${ORDERS_DB_URL}``, a SQLite URI carrying a token.
    * ``payments`` (fails): PostgreSQL with ``${PG_PASSWORD}`` on a port nobody listens on.
    * ``refunds`` (fails): a SQLite URL with a password, which SQLAlchemy refuses.
    """
    database = tmp_path / "erp.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE orders (id INTEGER, amount REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 9.5), (2, 12.25)])
    monkeypatch.setenv("ORDERS_DB_URL", f"sqlite:///file:{database}?mode=ro&token={MARKER}&uri=true")
    monkeypatch.setenv("PG_PASSWORD", PASSWORD)
    doc = {
        "connections": {
            "orders_db": {"kind": "sql", "url": "${ORDERS_DB_URL}"},
            "pg": {"kind": "sql", "url": f"postgresql+psycopg://etl:${{PG_PASSWORD}}@127.0.0.1:{_closed_port()}/erp"},
            "refunds_db": {"kind": "sql", "url": "sqlite+pysqlite://etl:${PG_PASSWORD}@/refunds.sqlite"},
            "lake": {"kind": "delta", "path": "lake"},
        },
        "dataflows": [
            {
                "name": name,
                "source": {"format": "sql", "connection": connection, "table": table},
                "destination": {"connection": "lake", "table": name},
                "watermark_columns": ["id"],
            }
            for name, connection, table in [
                ("orders", "orders_db", "orders"),
                ("payments", "pg", "payments"),
                ("refunds", "refunds_db", "refunds"),
            ]
        ],
    }  # fmt: skip
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def assert_no_secret(text: str, where: str) -> None:
    assert MARKER not in text, f"the secret leaked into {where}"
    assert PASSWORD not in text, f"the password leaked into {where}"


def assert_no_secret_in_files(folder: Path) -> int:
    """Scan every file under ``folder`` (run records, Delta logs, SQLite stores...)."""
    scanned = 0
    for file in folder.rglob("*"):
        if file.is_file():
            assert MARKER.encode() not in file.read_bytes(), f"the secret leaked into {file}"
            scanned += 1
    return scanned


def test_driver_results_records_logs_and_delta_commits_hold_no_secret(
    catalog: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Driver runs: result errors, run records, every log record (DEBUG and up) and the Delta
    tables, after one success and two connection failures."""
    caplog.set_level(logging.DEBUG)
    with Driver(load_catalog(catalog), state_dir=tmp_path / "state") as driver:
        result = driver.run()
    by_name = {r.dataflow: r for r in result.results}
    assert (by_name["orders"].status, by_name["orders"].rows_written) == ("succeeded", 2), by_name[
        "orders"
    ].error
    assert by_name["payments"].status == by_name["refunds"].status == "failed"
    for name in ("payments", "refunds"):
        error = by_name[name].error or ""
        assert f"connection {'pg' if name == 'payments' else 'refunds_db'}" in error, error
    # The password's '@' did not reroute the connection to a host made of the secret.
    assert "127.0.0.1" in (by_name["payments"].error or ""), by_name["payments"].error
    for item in result.results:
        assert_no_secret(repr(item), f"the result of {item.dataflow}")
        assert_no_secret(repr(item.to_record()), f"the run record of {item.dataflow}")
    assert_no_secret(caplog.text, "the logs")
    assert assert_no_secret_in_files(tmp_path / "state") >= 1
    assert assert_no_secret_in_files(tmp_path / "lake") >= 2


def _coolie(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ.copy(),
    )


@pytest.mark.e2e
def test_cli_output_holds_no_secret(catalog: Path, tmp_path: Path) -> None:
    """``coolie validate``, ``plan --json`` and ``run`` (table and JSON): stdout, stderr and the
    files they wrote."""
    state = tmp_path / "cli-state"
    outputs = {
        "validate": _coolie("validate", str(catalog)),
        "plan": _coolie("plan", str(catalog), "--json"),
        "run": _coolie("run", str(catalog), "--state-dir", str(state)),
        "run --json": _coolie("run", str(catalog), "--state-dir", str(state), "--json", "--force"),
    }
    assert [p.returncode for p in outputs.values()] == [0, 0, 1, 1], {k: p.stderr for k, p in outputs.items()}
    assert "refunds" in outputs["run"].stdout
    for command, process in outputs.items():
        assert_no_secret(process.stdout + process.stderr, f"the output of coolie {command}")
    assert assert_no_secret_in_files(state) >= 1


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance whose storage (runs, event log, compute logs) lives in ``tmp_path``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as test_instance:
        yield test_instance


def _asset(defs: dg.Definitions, flow: str) -> dg.AssetsDefinition:
    return next(
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name == f"coolie__{flow}"
    )


def test_dagster_metadata_and_event_log_hold_no_secret(
    catalog: Path, tmp_path: Path, instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture
) -> None:
    """Asset specs, materialization metadata, failures, the instance's event log and its storage
    on disk, after materialising the succeeding and both failing assets."""
    caplog.set_level(logging.DEBUG)
    defs = build_definitions(catalog, state_dir=tmp_path / "dagster-state")
    specs = list(defs.resolve_all_asset_specs())
    assert {s.key.to_user_string() for s in specs} >= {"orders", "payments", "refunds"}
    assert_no_secret(repr(specs), "the asset specs")
    resources: dict[str, Any] = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    results = {
        name: dg.materialize(
            [_asset(defs, name)], instance=instance, resources=resources, raise_on_error=False
        )
        for name in ("orders", "payments", "refunds")
    }
    assert [r.success for r in results.values()] == [True, False, False]
    (materialization,) = results["orders"].get_asset_materialization_events()
    assert materialization.materialization is not None
    assert materialization.materialization.metadata["dagster/row_count"] == dg.IntMetadataValue(2)
    failures = [e for r in results.values() for e in r.all_events if e.is_step_failure]
    assert len(failures) == 2
    assert any("connection pg" in repr(e.step_failure_data) for e in failures), failures
    for name, result in results.items():
        assert_no_secret(repr(result.all_events), f"the events of {name}")
        logs = instance.all_logs(result.run_id)
        assert logs
        assert_no_secret(repr(logs), f"the event log of {name}")
    assert_no_secret(caplog.text, "the logs")
    assert assert_no_secret_in_files(tmp_path / "dagster_home") >= 1
    assert assert_no_secret_in_files(tmp_path / "dagster-state") >= 1


def test_unset_variable_is_named_and_invalid_expanded_url_is_not_quoted(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable is named (it has no value to leak); a URL that no longer parses once
    expanded is reported without quoting it."""
    monkeypatch.delenv("PG_PASSWORD")
    monkeypatch.setenv("ORDERS_DB_URL", f"not a url {MARKER}")
    with Driver(load_catalog(catalog), state_dir=tmp_path / "state") as driver:
        result = driver.run()
    errors = {r.dataflow: r.error or "" for r in result.results}
    assert "environment variable PG_PASSWORD is not set" in errors["payments"], errors
    assert "not a valid SQLAlchemy URL" in errors["orders"], errors
    assert_no_secret(repr(errors), "the errors")
