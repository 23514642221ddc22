"""Every load strategy, quarantine, schema drift and fingerprints on S3 (moto) and Azure (Azurite).

The load suite runs the local fault suite's scenarios batch by batch on the object store and
requires, after every batch, exactly the state the same batches leave in a local lake: rows,
watermark and batch number.
"""

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver, RunResult
from coolie_core.storage import StorageLocation, delta_table_exists
from coolie_core.watermarks import read_delta_watermark
from tests.reliability.conftest import canonical_rows
from tests.reliability.conftest import check_log as check_local_log
from tests.reliability.test_fault_injection import (
    FLOW,
    STRATEGIES,
    References,
    State,
    check_invariants,
    flow_document,
)
from tests.storage.test_s3_faults import check_remote_log

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Store:
    """A fresh bucket or container: its URI, and writes/listing through the cloud's own SDK."""

    root: str
    put: Callable[[str, bytes], Any]
    delete: Callable[[str], Any]
    names: Callable[[], list[str]]


@pytest.fixture(params=["s3", "az"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "s3":
        server = request.getfixturevalue("s3_env")
        bucket = server.new_bucket()
        client = server.client()
        return Store(
            f"s3://{bucket}",
            lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
            lambda key: client.delete_object(Bucket=bucket, Key=key),
            lambda: server.keys(bucket),
        )
    azurite = request.getfixturevalue("azure_env")
    container = azurite.new_container()
    blobs = azurite.service().get_container_client(container)
    return Store(
        f"az://{container}",
        lambda key, data: blobs.upload_blob(key, data, overwrite=True),
        lambda key: blobs.delete_blob(key),
        lambda: azurite.blobs(container),
    )


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("references"), canonical_rows, check_local_log)


def next_second() -> None:
    """Object stores date files by the second (see coolie_core.batches): land the next batch
    in a later second than the last listing, as the local lake's files do."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.01)


def sync(store: Store, mirror: Path, under: str) -> None:
    """Make ``<root>/<under>`` hold the files of ``mirror``; files already there are not rewritten."""
    wanted = {p.relative_to(mirror).as_posix(): p for p in mirror.rglob("*") if p.is_file()}
    present = {k[len(under) + 1 :] for k in store.names() if k.startswith(f"{under}/")}
    for name in present - wanted.keys():
        store.delete(f"{under}/{name}")
    for name in sorted(wanted.keys() - present):
        store.put(f"{under}/{name}", wanted[name].read_bytes())


def observe(table: str, strategy: str) -> State:
    if not delta_table_exists(table):
        return State(None, None, 0)
    batches = check_remote_log(table, FLOW)
    stored = read_delta_watermark(table, dataflow=FLOW)
    assert stored.batch == batches
    rows = canonical_rows(pl.read_delta(table))
    check_invariants(strategy, rows)
    return State(rows, stored.value, stored.batch)


def write_catalog(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run(catalog: Path, run_id: str) -> RunResult:
    with Driver(load_catalog(catalog), state_dir=catalog.parent / "state", run_id=run_id) as driver:
        return driver.run()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_load_on_the_object_store_equals_the_local_lake(
    strategy: str, store: Store, references: References, tmp_path: Path
) -> None:
    reference = references.get(strategy, 1)
    document = flow_document(strategy)
    document["connections"] = {
        "raw": {"kind": "files", "path": f"{store.root}/raw"},
        "lake": {"kind": "delta", "path": f"{store.root}/lake"},
    }
    catalog = write_catalog(tmp_path / "work", document)
    mirror = tmp_path / "mirror"
    (mirror / "raw").mkdir(parents=True)
    table = f"{store.root}/lake/{FLOW}"
    for step in range(1, reference.scenario.k + 1):
        reference.scenario.arrive(mirror, step)
        next_second()
        sync(store, mirror / "raw", "raw")
        result = run(catalog, f"step-{step}").result(FLOW)
        assert result.status != "failed", result.error
        state, expected = observe(table, strategy), reference.states[step]
        assert state.same(expected), f"batch {step}: {state.describe()} != {expected.describe()}"
    # Nothing new: the rerun is skipped and the table stays at its version.
    version = StorageLocation.parse(table).join("_delta_log").list_objects()
    assert run(catalog, "idle").result(FLOW).status == "skipped"
    assert StorageLocation.parse(table).join("_delta_log").list_objects() == version


ORDERS_CSV = "id,amount,status\n1,10.5,placed\n2,abc,placed\n3,7,weird\n4,-3,shipped\n5,2,placed\n"


def quality_document(root: str, **destination: Any) -> dict[str, Any]:
    return {
        "connections": {
            "raw": {"kind": "files", "path": f"{root}/raw"},
            "lake": {"kind": "delta", "path": f"{root}/lake"},
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
                "transforms": [{"kind": "cast", "columns": {"id": "int64", "amount": "float64"}}],
                "quarantine": {
                    "max_rejected": 10,
                    "rules": [
                        {"kind": "accepted_values", "column": "status", "values": ["placed", "shipped"]},
                        {"kind": "expression", "name": "positive_amount", "condition": "amount >= 0"},
                    ],
                },
                "destination": {"connection": "lake", "table": "orders", "load": "append", **destination},
                "watermark_columns": ["id"],
            }
        ],
    }


def test_quarantine_tables_live_beside_the_destination(store: Store, tmp_path: Path) -> None:
    store.put("raw/a.csv", ORDERS_CSV.encode())
    catalog = write_catalog(tmp_path, quality_document(store.root))
    result = run(catalog, "q1").result("orders")
    assert result.status == "succeeded", result.error
    assert result.rows_rejected == 3
    assert result.quarantine_table == f"{store.root}/lake/_quarantine/orders"
    loaded = pl.read_delta(f"{store.root}/lake/orders")
    assert sorted(loaded["id"].to_list()) == [1, 5]
    rejected = pl.read_delta(f"{store.root}/lake/_quarantine/orders")
    assert sorted(rejected["rule"].to_list()) == ["accepted_values", "cast", "positive_amount"]
    # The quarantine table is maintained with the destination.
    with Driver(load_catalog(catalog), state_dir=tmp_path / "state") as driver:
        maintained = driver.run_maintenance()
    assert {(m.table, m.role, m.status) for m in maintained} == {
        (f"{store.root}/lake/orders", "destination", "succeeded"),
        (f"{store.root}/lake/_quarantine/orders", "quarantine", "succeeded"),
    }


def test_schema_drift_on_the_object_store(store: Store, tmp_path: Path) -> None:
    store.put("raw/a.csv", b"id,amount,status\n1,1,placed\n")
    fail = write_catalog(tmp_path / "fail", quality_document(store.root))
    assert run(fail, "d1").result("orders").status == "succeeded"
    next_second()
    store.delete("raw/a.csv")  # (CSV files with different headers cannot be scanned together)
    store.put("raw/b.csv", b"id,amount,status,channel\n2,2,placed,web\n")
    before = StorageLocation.parse(f"{store.root}/lake/orders").list_objects()
    refused = run(fail, "d2").result("orders")
    assert refused.status == "failed"
    assert refused.error is not None
    assert "channel" in refused.error
    assert f"{store.root}/lake/orders" in refused.error
    assert StorageLocation.parse(f"{store.root}/lake/orders").list_objects() == before  # nothing written

    evolve = write_catalog(tmp_path / "evolve", quality_document(store.root, schema_drift="evolve"))
    evolved = run(evolve, "d3").result("orders")
    assert evolved.status == "succeeded", evolved.error
    table = pl.read_delta(f"{store.root}/lake/orders").sort("id")
    assert table.select("id", "channel").rows() == [(1, None), (2, "web")]


def test_a_rewritten_source_object_is_read_again(store: Store, tmp_path: Path) -> None:
    """The fingerprint covers each object's size, ETag and modification time: a file rewritten
    with other rows of the same size is a change; an untouched bucket is not."""
    frame = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    store.put("raw/x.parquet", buffer.getvalue())
    document = {
        "connections": {
            "raw": {"kind": "files", "path": f"{store.root}/raw"},
            "lake": {"kind": "delta", "path": f"{store.root}/lake"},
        },
        "dataflows": [
            {
                "name": "copy",
                "source": {"format": "parquet", "connection": "raw", "path": "*.parquet"},
                "destination": {"connection": "lake", "table": "copy", "load": "overwrite"},
            }
        ],
    }
    catalog = write_catalog(tmp_path, document)
    assert run(catalog, "f1").result("copy").status == "succeeded"
    assert run(catalog, "f2").result("copy").reason is not None  # unchanged: skipped
    assert run(catalog, "f2").result("copy").status == "skipped"
    same_size = pl.DataFrame({"id": [3, 4], "v": ["c", "d"]})
    buffer = io.BytesIO()
    same_size.write_parquet(buffer)
    next_second()
    store.put("raw/x.parquet", buffer.getvalue())
    assert run(catalog, "f3").result("copy").status == "succeeded"
    assert pl.read_delta(f"{store.root}/lake/copy").sort("id")["id"].to_list() == [3, 4]
