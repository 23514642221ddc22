"""A whole lake on object storage, run by real ``coolie`` processes against moto S3 and Azurite.

The catalog's connections are ``s3://`` / ``az://`` URIs and the processes see only the cloud's
standard environment variables (set by the fixtures). Sources are written with boto3 / the Azure
SDK and results read back independently, so the code under test never checks itself.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from coolie_core.storage import StorageLocation
from coolie_core.watermarks import read_delta_watermark

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Store:
    """A fresh bucket or container, written and listed with the cloud's own SDK."""

    scheme: str
    root: str
    put: Callable[[str, bytes], Any]
    names: Callable[[], list[str]]

    def location(self, key: str) -> StorageLocation:
        return StorageLocation.parse(f"{self.root}/{key}")


@pytest.fixture(params=["s3", "az"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "s3":
        server = request.getfixturevalue("s3_env")
        bucket = server.new_bucket()
        client = server.client()
        return Store(
            "s3",
            f"s3://{bucket}",
            lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
            lambda: server.keys(bucket),
        )
    azurite = request.getfixturevalue("azure_env")
    container = azurite.new_container()
    blobs = azurite.service().get_container_client(container)
    return Store(
        "az",
        f"az://{container}",
        lambda key, data: blobs.upload_blob(key, data, overwrite=True),
        lambda: azurite.blobs(container),
    )


def coolie(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter with this process's environment (the cloud variables)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")}
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=cwd,
        timeout=300,
        check=False,
    )


def lake_document(root: str) -> dict[str, Any]:
    """Parquet -> Delta append, CSV -> Delta merge, Delta -> parquet folder, all on ``root``."""
    return {
        "connections": {
            "raw": {"kind": "files", "path": f"{root}/raw"},
            "lake": {"kind": "delta", "path": f"{root}/lake"},
            "export": {"kind": "files", "path": f"{root}/export"},
        },
        "dataflows": [
            {
                "name": "orders",
                "source": {"format": "parquet", "connection": "raw", "path": "orders/*.parquet"},
                "destination": {"connection": "lake", "table": "bronze/orders", "load": "append"},
                "watermark_columns": ["ts"],
            },
            {
                "name": "customers",
                "source": {"format": "csv", "connection": "raw", "path": "customers/**/*.csv"},
                "destination": {
                    "connection": "lake",
                    "table": "silver/customers",
                    "load": "merge",
                    "merge_keys": ["id"],
                },
                "watermark_columns": ["ts"],
            },
            {
                "name": "orders_export",
                "source": {"format": "delta", "connection": "lake", "table": "bronze/orders"},
                "destination": {
                    "connection": "export",
                    "table": "orders",
                    "format": "parquet",
                    "load": "append",
                },
                "watermark_columns": ["ts"],
            },
        ],
    }


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def orders(batch: int) -> pl.DataFrame:
    ids = list(range(batch * 10, batch * 10 + 10))
    return pl.DataFrame(
        {"id": ids, "amount": [float(i) for i in ids], "ts": [batch * 100 + i for i in range(10)]}
    )


def customers_csv(batch: int) -> bytes:
    # Batch 2 updates customers 1-2 and adds 3; the names tell which batch wrote them.
    rows = {1: [(1, "a1"), (2, "b1")], 2: [(2, "b2"), (1, "a2"), (3, "c2")], 3: [(4, "d3")]}[batch]
    lines = ["id,name,ts", *(f"{i},{name},{batch * 100 + n}" for n, (i, name) in enumerate(rows))]
    return ("\n".join(lines) + "\n").encode()


def arrive(store: Store, batch: int) -> None:
    store.put(f"raw/orders/batch-{batch}.parquet", parquet_bytes(orders(batch)))
    store.put(f"raw/customers/day={batch}/part.csv", customers_csv(batch))


def read_table(store: Store, key: str) -> pl.DataFrame:
    where = store.location(key)
    frame = pl.read_delta(where.uri)
    return frame.select(c for c in frame.columns if not c.startswith("_coolie_")).sort("id")


def run_ok(catalog: Path, *extra: str) -> list[dict[str, Any]]:
    done = coolie("run", str(catalog), "--json", *extra, cwd=catalog.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def by_flow(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["dataflow"]: r for r in records if "dataflow" in r}


def test_a_uri_catalog_validates_runs_incrementally_idles_and_is_maintained(
    store: Store, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(lake_document(store.root), sort_keys=False), encoding="utf-8")
    checked = coolie("validate", str(catalog), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    arrive(store, 1)
    first = by_flow(run_ok(catalog))
    assert {name: r["status"] for name, r in first.items()} == dict.fromkeys(
        ["orders", "customers", "orders_export"], "succeeded"
    )
    assert read_table(store, "lake/bronze/orders").equals(orders(1))

    # An idle rerun writes nothing: not one object is added, changed or removed.
    before = {info.uri: info.fingerprint for info in StorageLocation.parse(store.root).list_objects()}
    idle = by_flow(run_ok(catalog))
    assert {r["status"] for r in idle.values()} == {"skipped"}
    after = {info.uri: info.fingerprint for info in StorageLocation.parse(store.root).list_objects()}
    assert after == before

    arrive(store, 2)
    run_ok(catalog)
    both = pl.concat([orders(1), orders(2)])
    assert read_table(store, "lake/bronze/orders").equals(both)
    merged = read_table(store, "lake/silver/customers")
    assert merged.select("id", "name").rows() == [(1, "a2"), (2, "b2"), (3, "c2")]
    state = read_delta_watermark(store.location("lake/bronze/orders"), dataflow="orders")
    assert (state.batch, state.value) == (2, {"ts": 209})

    # Another machine (no local state at all) continues the lake, parquet folder included.
    shutil.rmtree(tmp_path / ".coolie")
    arrive(store, 3)
    third = by_flow(run_ok(catalog))
    assert third["orders_export"]["status"] == "succeeded"
    everything = pl.concat([orders(1), orders(2), orders(3)])
    exported = pl.read_parquet(f"{store.root}/export/orders/*.parquet")
    assert exported.select(everything.columns).sort("id").equals(everything)
    parts = sorted(k for k in store.names() if k.startswith("export/orders/part-"))
    assert [p.split("-")[1] for p in parts] == ["0000000001", "0000000002", "0000000003"]
    assert [k for k in store.names() if k.startswith("export/orders/_coolie/")] == [
        "export/orders/_coolie/batch-0000000003.json"
    ]
    assert read_delta_watermark(store.location("lake/silver/customers"), dataflow="customers").batch == 3

    maintained = coolie("maintain", str(catalog), "--json", "--retention-hours", "0", cwd=tmp_path)
    assert maintained.returncode == 0, maintained.stdout + maintained.stderr
    results = [json.loads(line) for line in maintained.stdout.splitlines()]
    assert {r["table"]: r["status"] for r in results} == {
        f"{store.root}/lake/bronze/orders": "succeeded",
        f"{store.root}/lake/silver/customers": "succeeded",
    }
    compacted = {r["table"]: r["files_compacted"] for r in results}
    assert compacted[f"{store.root}/lake/bronze/orders"] == 3  # one small file per batch
    assert read_table(store, "lake/bronze/orders").equals(everything)
