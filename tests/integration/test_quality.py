"""Quarantine of bad rows and the schema drift policies, against real CSV sources and Delta tables.

Every test reads the destination and the quarantine table back: rows loaded + rows quarantined
must account for every source row (nothing silently dropped).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.catalog import LoadedCatalog, load_catalog
from coolie_core.driver import Driver, RunResult
from coolie_core.errors import CatalogError
from coolie_core.runlog import read_records
from coolie_dagster.assets import DRIFT_CHECK
from coolie_dagster.definitions import build_definitions

ORDERS = "id,amount,status,day\n1,10.5,placed,2024-01-01\n2,abc,placed,2024-01-02\n3,7,weird,2024-01-02\n4,,placed,2024-01-03\n5,-3,shipped,2024-01-04\n"
"""Row 2: bad cast. Row 3: status not accepted. Row 4: null amount. Row 5: negative amount."""


def document(tmp_path: Path, **flow: Any) -> dict[str, Any]:
    destination = {"connection": "lake", "table": "orders", **flow.pop("destination", {})}
    return {
        "connections": {
            "raw": {"kind": "files", "path": str(tmp_path / "raw")},
            "lake": {"kind": "delta", "path": str(tmp_path / "lake")},
        },
        "dataflows": [
            {
                "name": "orders",
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "*.csv",
                    "options": {"infer_schema": False},
                },
                "destination": destination,
                **flow,
            }
        ],
    }


QUARANTINE = {
    "max_rejected": 10,
    "rules": [
        {"kind": "not_null", "columns": ["amount"]},
        {"kind": "accepted_values", "column": "status", "values": ["placed", "shipped"]},
        {"kind": "expression", "name": "positive_amount", "condition": "amount >= 0"},
    ],
}
CASTS = [{"kind": "cast", "columns": {"id": "int64", "amount": "float64", "day": "date"}}]


def write_source(tmp_path: Path, text: str, name: str = "a.csv") -> None:
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "raw" / name).write_text(text, encoding="utf-8")


def run(loaded: LoadedCatalog, tmp_path: Path) -> RunResult:
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        return driver.run()


def lake(tmp_path: Path, table: str = "orders") -> pl.DataFrame:
    frame = pl.read_delta(str(tmp_path / "lake" / table))
    return frame.select(c for c in frame.columns if not c.startswith("_coolie_")).sort("id")


def quarantined(tmp_path: Path) -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / "_quarantine" / "orders"))


# --------------------------------------------------------------------------- quarantine


def test_rows_breaking_rules_or_casts_go_to_the_quarantine_table(tmp_path: Path, write_catalog: Any) -> None:
    write_source(tmp_path, ORDERS)
    loaded = write_catalog(document(tmp_path, transforms=CASTS, quarantine=QUARANTINE))
    result = run(loaded, tmp_path).result("orders")

    assert result.status == "succeeded", result.error
    assert (result.rows_read, result.rows_written, result.rows_rejected) == (5, 1, 4)
    assert result.rejected_by_rule == {"accepted_values": 1, "cast": 1, "not_null": 1, "positive_amount": 2}
    assert lake(tmp_path)["id"].to_list() == [1]
    bad = quarantined(tmp_path).sort("raw_row")
    assert set(bad.columns) == {"run_id", "dataflow", "window", "rule", "reason", "raw_row", "quarantined_at"}
    assert bad["run_id"].unique().to_list() == [result.run_id]
    assert bad["dataflow"].unique().to_list() == ["orders"]
    raw = [json.loads(r) for r in bad["raw_row"]]
    # The raw row is the source row as read, before any cast.
    assert [r["id"] for r in raw] == ["2", "3", "4", "5"]
    assert raw[0]["amount"] == "abc"
    by_id = dict(zip([r["id"] for r in raw], zip(bad["rule"], bad["reason"], strict=True), strict=True))
    assert by_id["2"] == ("cast", "column amount: abc is not a valid float64")
    assert by_id["3"][0] == "accepted_values"
    assert "weird" in by_id["3"][1]
    # A null amount breaks not_null; the expression on it is null, which counts as false too.
    assert by_id["4"] == ("not_null; positive_amount", "column amount is null; amount >= 0 is not true")
    assert by_id["5"] == ("positive_amount", "amount >= 0 is not true")
    record = [r for r in read_records(tmp_path / "state" / "runs") if r["dataflow"] == "orders"][-1]
    assert record["rows_rejected"] == 4
    assert record["quarantine_table"] == str(tmp_path / "lake" / "_quarantine" / "orders")


def test_too_many_rejects_fail_the_dataflow_and_load_nothing(tmp_path: Path, write_catalog: Any) -> None:
    write_source(tmp_path, "id,amount,status,day\n1,1,placed,2024-01-01\n")
    spec = {**QUARANTINE, "max_rejected": "25%"}
    loaded = write_catalog(document(tmp_path, transforms=CASTS, quarantine=spec, watermark_columns=["day"]))
    assert run(loaded, tmp_path).ok
    write_source(tmp_path, ORDERS.replace("2024-01-0", "2024-02-0"), name="b.csv")

    result = run(loaded, tmp_path).result("orders")

    assert result.status == "failed"
    assert result.error is not None
    assert "dataflow orders: 4 of 5 rows rejected (80.0%" in result.error
    assert "more than quarantine.max_rejected 25%" in result.error
    assert result.rows_rejected == 4
    assert lake(tmp_path)["id"].to_list() == [1]  # nothing of the failed batch was loaded
    assert DeltaTable(str(tmp_path / "lake" / "orders")).version() == 0
    assert quarantined(tmp_path).height == 4  # the evidence is kept
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        state = driver.read_state(loaded.catalog.dataflow("orders"))
    assert state.batch == 1  # the watermark did not move: the batch is read again


def test_percentage_threshold_allows_a_share_of_the_rows(tmp_path: Path, write_catalog: Any) -> None:
    write_source(tmp_path, ORDERS)
    loaded = write_catalog(
        document(tmp_path, transforms=CASTS, quarantine={**QUARANTINE, "max_rejected": "80%"})
    )
    assert run(loaded, tmp_path).result("orders").status == "succeeded"
    loaded = write_catalog(
        document(tmp_path, transforms=CASTS, quarantine={**QUARANTINE, "max_rejected": "79%"})
    )
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run(force=True).result("orders")
    assert result.status == "failed"


def test_incremental_batches_quarantine_only_their_new_rows(tmp_path: Path, write_catalog: Any) -> None:
    write_source(tmp_path, ORDERS)
    loaded = write_catalog(
        document(tmp_path, transforms=CASTS, quarantine=QUARANTINE, watermark_columns=["day"])
    )
    assert run(loaded, tmp_path).ok
    write_source(
        tmp_path, "id,amount,status,day\n6,x,placed,2024-01-05\n7,2,placed,2024-01-06\n", name="b.csv"
    )
    result = run(loaded, tmp_path).result("orders")

    assert (result.rows_read, result.rows_written, result.rows_rejected) == (2, 1, 1)
    assert lake(tmp_path)["id"].to_list() == [1, 7]
    assert quarantined(tmp_path).height == 5


def test_a_batch_killed_after_its_quarantine_commit_does_not_quarantine_twice(
    tmp_path: Path, write_catalog: Any
) -> None:
    write_source(tmp_path, ORDERS)
    write_catalog(document(tmp_path, transforms=CASTS, quarantine=QUARANTINE, watermark_columns=["day"]))
    cmd = [sys.executable, "-m", "coolie_core.cli", "run", str(tmp_path / "catalog.yaml")]
    cmd += ["--state-dir", str(tmp_path / "state")]
    killed = subprocess.run(
        cmd, env={**os.environ, "COOLIE_FAULT": "after_quarantine:orders"}, capture_output=True, check=False
    )
    assert killed.returncode == -9
    assert quarantined(tmp_path).height == 4
    assert not (tmp_path / "lake" / "orders").exists()

    subprocess.run(cmd, check=True, capture_output=True)

    assert quarantined(tmp_path).height == 4
    assert lake(tmp_path)["id"].to_list() == [1]


def test_quarantine_catalog_errors_name_the_field(tmp_path: Path, write_catalog: Any) -> None:
    bad = [
        ({**QUARANTINE, "max_rejected": "lots"}, "quarantine.max_rejected"),
        ({**QUARANTINE, "max_rejected": -1}, "quarantine.max_rejected"),
        ({**QUARANTINE, "table": "../outside"}, "quarantine.table"),
        ({"rules": []}, "quarantine.max_rejected"),
    ]
    for spec, field in bad:
        with pytest.raises(CatalogError) as info:
            write_catalog(document(tmp_path, quarantine=spec))
        assert any(i.dataflow == "orders" and (i.field or "").startswith(field) for i in info.value.issues), (
            field,
            info.value,
        )
    aggregate = [{"kind": "aggregate", "by": ["status"], "columns": {"n": "count(*)"}}]
    with pytest.raises(CatalogError, match="not with an aggregate transform"):
        write_catalog(document(tmp_path, transforms=aggregate, quarantine=QUARANTINE))


def test_a_rule_on_an_unknown_column_fails_with_the_available_ones(
    tmp_path: Path, write_catalog: Any
) -> None:
    write_source(tmp_path, ORDERS)
    spec = {"max_rejected": 0, "rules": [{"kind": "not_null", "columns": ["amuont"]}]}
    result = run(write_catalog(document(tmp_path, quarantine=spec)), tmp_path).result("orders")
    assert result.status == "failed"
    assert result.error is not None
    assert "quarantine.rules[0]" in result.error
    assert "'amount'" in result.error
    assert not (tmp_path / "lake" / "orders").exists()


# --------------------------------------------------------------------------- schema drift


def load_then_change(
    tmp_path: Path, write_catalog: Any, new_text: str, **flow: Any
) -> tuple[LoadedCatalog, RunResult]:
    write_source(tmp_path, "id,amount\n1,1.5\n")
    loaded = write_catalog(document(tmp_path, **flow))
    assert run(loaded, tmp_path).ok
    write_source(tmp_path, new_text, name="a.csv")
    return loaded, run(loaded, tmp_path)


@pytest.mark.parametrize("load", ["append", "merge", "scd2"])
def test_new_columns_fail_by_default_and_name_them(tmp_path: Path, write_catalog: Any, load: str) -> None:
    keys = {"merge_keys": ["id"]} if load != "append" else {}
    _, outcome = load_then_change(
        tmp_path, write_catalog, "id,amount,colour\n2,2.5,red\n", destination={"load": load, **keys}
    )
    result = outcome.result("orders")
    assert result.status == "failed"
    assert result.error_type == "SchemaDriftError"
    assert result.error is not None
    assert "new column(s) ['colour'] not in the table" in result.error
    assert result.schema_drift == {"policy": "fail", "new": ["colour"], "missing": [], "retyped": {}}
    assert DeltaTable(str(tmp_path / "lake" / "orders")).version() == 0


@pytest.mark.parametrize("load", ["append", "merge", "scd2", "replace_window"])
def test_evolve_adds_the_new_columns(tmp_path: Path, write_catalog: Any, load: str) -> None:
    flow: dict[str, Any] = {"destination": {"load": load, "schema_drift": "evolve"}}
    if load in ("merge", "scd2"):
        flow["destination"]["merge_keys"] = ["id"]
    if load == "replace_window":
        flow["partitions"] = {"column": "id", "every": "integer", "step": 10, "start": 0, "end": 100}
        flow["transforms"] = [{"kind": "cast", "columns": {"id": "int64"}}]
    _, outcome = load_then_change(tmp_path, write_catalog, "id,amount,colour\n2,2.5,red\n", **flow)
    result = outcome.result("orders")
    assert result.status == "succeeded", result.error
    assert result.schema_drift == {"policy": "evolve", "new": ["colour"], "missing": [], "retyped": {}}
    frame = pl.read_delta(str(tmp_path / "lake" / "orders"))
    assert "colour" in frame.columns
    current = frame.filter(pl.col("id").cast(pl.String) == "2")
    assert current["colour"].to_list()[-1] == "red"
    if load != "replace_window":  # the window [0, 10) held row 1 and was replaced
        assert frame.filter(pl.col("id").cast(pl.String) == "1")["colour"].to_list() == [None]


def test_evolve_leaves_closed_scd2_versions_null_in_the_new_columns(
    tmp_path: Path, write_catalog: Any
) -> None:
    """A version closed by a batch that brings a new column reads it as null, as every older row.

    (delta-rs' merge with ``merge_schema`` copies the source row's new columns into a matched row
    unless the update says otherwise: the closed version must not take the new version's value.)
    """
    flow: dict[str, Any] = {"destination": {"load": "scd2", "merge_keys": ["id"], "schema_drift": "evolve"}}
    _, outcome = load_then_change(tmp_path, write_catalog, "id,amount,colour\n1,9.5,red\n", **flow)
    result = outcome.result("orders")
    assert result.status == "succeeded", result.error
    frame = pl.read_delta(str(tmp_path / "lake" / "orders")).sort("is_current")
    assert frame.select("amount", "colour", "is_current").rows() == [
        ("1.5", None, False),
        ("9.5", "red", True),
    ]


def test_ignore_drops_the_new_columns(tmp_path: Path, write_catalog: Any) -> None:
    _, outcome = load_then_change(
        tmp_path, write_catalog, "id,amount,colour\n2,2.5,red\n", destination={"schema_drift": "ignore"}
    )
    result = outcome.result("orders")
    assert result.status == "succeeded", result.error
    assert result.schema_drift is not None
    assert result.schema_drift["new"] == ["colour"]
    frame = lake(tmp_path)
    assert frame.columns == ["id", "amount"]
    assert frame["id"].to_list() == ["1", "2"]


@pytest.mark.parametrize("policy", ["evolve", "fail", "ignore"])
def test_missing_and_retyped_columns_always_fail(tmp_path: Path, write_catalog: Any, policy: str) -> None:
    flow = {
        "destination": {"schema_drift": policy},
        "transforms": [{"kind": "cast", "columns": {"id": "int64"}}],
    }
    _, outcome = load_then_change(tmp_path, write_catalog, "id,colour\n2,red\n", **flow)
    result = outcome.result("orders")
    assert result.status == "failed"
    assert result.error is not None
    assert "column(s) ['amount'] missing from the data" in result.error

    write_source(tmp_path, "id,amount\nx,2\n", name="a.csv")
    loaded = write_catalog(document(tmp_path, destination={"schema_drift": policy}))
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        retyped = driver.run().result("orders")
    assert retyped.status == "failed"
    assert retyped.error is not None
    assert "retyped column(s) id: Int64 -> String" in retyped.error
    assert retyped.schema_drift is not None
    assert retyped.schema_drift["retyped"] == {"id": ["Int64", "String"]}
    assert DeltaTable(str(tmp_path / "lake" / "orders")).version() == 0


def test_overwrite_reports_drift_and_replaces_the_schema(tmp_path: Path, write_catalog: Any) -> None:
    _, outcome = load_then_change(
        tmp_path, write_catalog, "id,colour\n2,red\n", destination={"load": "overwrite"}
    )
    result = outcome.result("orders")
    assert result.status == "succeeded", result.error
    assert result.schema_drift == {"policy": "fail", "new": ["colour"], "missing": ["amount"], "retyped": {}}
    assert lake(tmp_path).columns == ["id", "colour"]


# --------------------------------------------------------------------------- Dagster


def _materialize(loaded: LoadedCatalog, tmp_path: Path) -> dg.ExecuteInProcessResult:
    defs = build_definitions(loaded.path, state_dir=tmp_path / "state")
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            assets, instance=instance, resources=dict(defs.resources or {}), raise_on_error=False
        )


def test_dagster_reports_quarantine_and_drift(tmp_path: Path, write_catalog: Any) -> None:
    write_source(tmp_path, ORDERS)
    loaded = write_catalog(
        document(tmp_path, transforms=CASTS, quarantine=QUARANTINE, destination={"schema_drift": "evolve"})
    )
    first = _materialize(loaded, tmp_path)
    assert first.success
    [materialization] = first.asset_materializations_for_node("coolie__orders")
    metadata = materialization.metadata
    assert metadata["coolie/rows_rejected"].value == 4
    assert metadata["coolie/rejected_by_rule"].value == {
        "accepted_values": 1,
        "cast": 1,
        "not_null": 1,
        "positive_amount": 2,
    }
    assert metadata["coolie/quarantine_table"].value == str(tmp_path / "lake" / "_quarantine" / "orders")
    [check] = [e for e in first.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK]
    assert check.passed
    assert check.description == "no schema drift"

    write_source(tmp_path, "id,amount,status,day,colour\n9,1,placed,2024-01-09,red\n")
    evolved = _materialize(load_catalog(loaded.path), tmp_path)
    [check] = [e for e in evolved.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK]
    assert check.passed
    assert check.metadata["coolie/new_columns"].value == "colour"

    loaded = write_catalog(document(tmp_path, transforms=CASTS, quarantine=QUARANTINE))
    write_source(tmp_path, ORDERS)  # no colour now: a missing column
    failed = _materialize(loaded, tmp_path)
    assert not failed.success
    [check] = [e for e in failed.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK]
    assert not check.passed
    assert check.metadata["coolie/missing_columns"].value == "colour"
