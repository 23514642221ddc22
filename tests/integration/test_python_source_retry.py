"""A python source whose API fails: retried per the dataflow's retry spec (by coolie's driver, or by
Dagster's RetryPolicy in a code location), unless it raises coolie's PermanentSourceError.

The source module is a real file; it counts its calls in a file next to it, fails the first N
calls and then returns rows."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import DataflowResult, Driver
from coolie_dagster.definitions import build_definitions

SOURCE = '''
"""An API that answers 503 a few times, and one that rejects the credentials."""
from pathlib import Path

import polars as pl

from coolie_core import DataError, PermanentSourceError

HERE = Path(__file__).parent


class HTTPError(Exception):
    """What an HTTP client raises for an error status."""


def _calls(name: str) -> int:
    counter = HERE / f"{name}.calls"
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    return calls


def unavailable_twice() -> pl.DataFrame:
    if _calls("unavailable_twice") <= 2:
        raise HTTPError("503 Service Unavailable for url https://api.example.com/orders")
    return pl.DataFrame({"id": [1, 2, 3]})


def unavailable_always() -> pl.DataFrame:
    _calls("unavailable_always")
    raise HTTPError("503 Service Unavailable for url https://api.example.com/orders")


def bad_data() -> pl.DataFrame:
    _calls("bad_data")
    raise DataError("the API returned an order without an id")


def forbidden() -> pl.DataFrame:
    _calls("forbidden")
    try:
        raise HTTPError("403 Forbidden for url https://api.example.com/orders")
    except HTTPError as exc:
        raise PermanentSourceError("the API rejects the token (403 Forbidden)") from exc
'''

FUNCTIONS = ("unavailable_twice", "unavailable_always", "forbidden", "bad_data")


def _catalog(tmp_path: Path) -> Path:
    (tmp_path / "api.py").write_text(SOURCE, encoding="utf-8")
    document = {
        "defaults": {"retry": {"count": 2, "delay": 0}},
        "connections": {
            "api": {"kind": "python", "path": "api.py"},
            "lake": {"kind": "delta", "path": "lake"},
        },
        "dataflows": [
            {
                "name": name,
                "source": {"format": "python", "connection": "api", "function": name},
                "destination": {"connection": "lake", "table": name, "load": "append"},
            }
            for name in FUNCTIONS
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _calls(tmp_path: Path, name: str) -> int:
    return int((tmp_path / f"{name}.calls").read_text())


def _run(tmp_path: Path, name: str) -> DataflowResult:
    sleeps: list[float] = []
    with Driver(
        load_catalog(_catalog(tmp_path)), state_dir=tmp_path / "state", sleep=sleeps.append
    ) as driver:
        (result,) = driver.run(dataflows=[name]).results
    return result


def test_a_failing_api_is_retried_until_it_answers(tmp_path: Path) -> None:
    result = _run(tmp_path, "unavailable_twice")
    assert result.status == "succeeded", result.error
    assert (result.attempts, _calls(tmp_path, "unavailable_twice")) == (3, 3)
    assert "503 Service Unavailable" in result.retries[0]
    assert sorted(pl.read_delta(str(tmp_path / "lake" / "unavailable_twice"))["id"].to_list()) == [1, 2, 3]


def test_retries_run_out_with_a_located_message(tmp_path: Path) -> None:
    result = _run(tmp_path, "unavailable_always")
    assert result.status == "failed"
    assert (result.attempts, _calls(tmp_path, "unavailable_always")) == (3, 3)
    assert result.error == (
        "dataflow unavailable_always: python source unavailable_always failed: "
        "HTTPError: 503 Service Unavailable for url https://api.example.com/orders"
    )
    assert result.transient is True


def test_a_permanent_source_error_fails_at_once(tmp_path: Path) -> None:
    result = _run(tmp_path, "forbidden")
    assert result.status == "failed"
    assert (result.attempts, _calls(tmp_path, "forbidden")) == (1, 1)
    assert result.error == (
        "dataflow forbidden: python source forbidden failed: the API rejects the token (403 Forbidden)"
    )
    assert (result.error_type, result.transient) == ("PermanentSourceError", False)
    assert not (tmp_path / "lake" / "forbidden").exists()


def test_coolies_own_errors_keep_their_meaning(tmp_path: Path) -> None:
    """A DataError raised by the function is permanent, like coolie's own; the message is located."""
    result = _run(tmp_path, "bad_data")
    assert (result.status, result.attempts, result.error_type) == ("failed", 1, "DataError")
    assert (
        result.error
        == "dataflow bad_data: python source bad_data failed: the API returned an order without an id"
    )


def test_a_function_that_cannot_be_called_is_not_retried(tmp_path: Path, write_catalog: Any) -> None:
    """A required parameter coolie does not offer is the function's fault, not the service's."""
    (tmp_path / "api.py").write_text("def rows(token):\n    raise AssertionError('never called')\n")
    loaded = write_catalog(
        {
            "defaults": {"retry": {"count": 2, "delay": 0}},
            "connections": {
                "api": {"kind": "python", "path": str(tmp_path / "api.py")},
                "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
            },
            "dataflows": [
                {
                    "name": "rows",
                    "source": {"format": "python", "connection": "api", "function": "rows"},
                    "destination": {"connection": "lake", "table": "rows", "load": "append"},
                }
            ],
        }
    )
    with Driver(loaded, state_dir=tmp_path / "state", sleep=lambda _: None) as driver:
        (result,) = driver.run().results
    assert (result.status, result.attempts, result.transient) == ("failed", 1, False)
    assert result.error is not None
    assert result.error.startswith("dataflow rows: python source rows: missing a required argument: 'token'")


# ------------------------------------------------------------------ Dagster


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _materialize(tmp_path: Path, name: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    defs = build_definitions(_catalog(tmp_path))
    asset = next(
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name == f"coolie__{name}"
    )
    resources = {"coolie": defs.resources["coolie"]} if defs.resources else {}
    return dg.materialize([asset], instance=instance, resources=resources, raise_on_error=False)


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_dagster_retries_a_failing_api(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """In a code location coolie's own retry loop is off; Dagster's RetryPolicy re-runs the step
    because the failure is marked retryable."""
    result = _materialize(tmp_path, "unavailable_twice", instance)
    assert result.success
    assert _calls(tmp_path, "unavailable_twice") == 3
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 2


def test_dagster_does_not_retry_a_permanent_source_error(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    result = _materialize(tmp_path, "forbidden", instance)
    assert not result.success
    assert _calls(tmp_path, "forbidden") == 1
    assert not _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    (failure,) = _events(result, dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data is not None
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None
    assert user_failure.description == (
        "dataflow forbidden: python source forbidden failed: the API rejects the token (403 Forbidden)"
    )
    assert user_failure.metadata["coolie/transient"].value is False
