"""Landing zones on object storage (moto S3): files identified by key, size and ETag; the ledger
committed with the Delta batch in the bucket, or with a parquet folder's batch state there.
Objects are written and read back with boto3, independently of the code under test."""

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from coolie_core import landing
from coolie_core.catalog import load_catalog
from coolie_core.driver import DataflowResult, Driver

from .conftest import S3Server

pytestmark = pytest.mark.e2e


def put_csv(server: S3Server, bucket: str, key: str, rows: list[tuple[int, str]]) -> None:
    body = "id,ts\n" + "".join(f"{i},{ts}\n" for i, ts in rows)
    server.client().put_object(Bucket=bucket, Key=key, Body=body.encode())


def run(tmp_path: Path, bucket: str, destination: dict[str, Any], **source: Any) -> DataflowResult:
    document = {
        "connections": {
            "raw": {"kind": "files", "path": f"s3://{bucket}/landing"},
            "lake": {"kind": "delta", "path": f"s3://{bucket}/lake"},
            "out": {"kind": "files", "path": f"s3://{bucket}/out"},
        },
        "dataflows": [
            {
                "name": "landing",
                "source": {
                    "format": "csv",
                    "connection": "raw",
                    "path": "*.csv",
                    "incremental": "files",
                    **source,
                },
                "transforms": [{"kind": "cast", "columns": {"ts": "date"}}],
                "destination": destination,
            }
        ],
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with Driver(load_catalog(path), state_dir=tmp_path / "state") as driver:
        return driver.run(dataflows=["landing"]).result("landing")


def ids(server: S3Server, bucket: str, prefix: str) -> list[int]:
    client = server.client()
    keys = [
        k for k in server.keys(bucket) if k.startswith(prefix) and k.endswith(".parquet") and "/_" not in k
    ]
    frames = [
        pl.read_parquet(io.BytesIO(client.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys
    ]
    return sorted(pl.concat(frames).get_column("id").to_list()) if frames else []


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_new_objects_load_once_and_changed_ones_follow_the_policy(
    tmp_path: Path, s3_env: S3Server, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "CHECKPOINT_EVERY", 2)  # checkpoints in the bucket too
    bucket = s3_env.new_bucket()
    destination = (
        {"connection": "lake", "table": "events", "load": "append"}
        if fmt == "delta"
        else {"connection": "out", "table": "events", "format": "parquet", "load": "append"}
    )
    put_csv(s3_env, bucket, "landing/a.csv", [(1, "2024-05-01"), (2, "2024-05-02")])
    first = run(tmp_path, bucket, destination)
    assert first.status == "succeeded", first.error
    put_csv(s3_env, bucket, "landing/b.csv", [(3, "2019-01-01")])  # older than everything loaded
    put_csv(s3_env, bucket, "landing/c.csv", [(4, "2019-01-02")])
    assert run(tmp_path, bucket, destination).rows_written == 2
    assert run(tmp_path, bucket, destination).reason == "no new files"
    prefix = "lake/events/" if fmt == "delta" else "out/events/"
    assert ids(s3_env, bucket, prefix) == [1, 2, 3, 4]
    assert any("/_coolie/files/" in k for k in s3_env.keys(bucket)), "a checkpoint in the bucket"

    # Rewritten object (new ETag): fails by default, naming it; nothing written.
    put_csv(s3_env, bucket, "landing/a.csv", [(1, "2024-05-01"), (2, "2024-05-02"), (5, "2024-05-03")])
    failed = run(tmp_path, bucket, destination)
    assert failed.status == "failed"
    assert "landing/a.csv" in (failed.error or "")
    assert ids(s3_env, bucket, prefix) == [1, 2, 3, 4]
    reloaded = run(tmp_path, bucket, destination, on_changed_file="reload")
    assert reloaded.status == "succeeded"
    assert reloaded.files is not None
    assert reloaded.files["reloaded"] == 1
    assert ids(s3_env, bucket, prefix) == [1, 1, 2, 2, 3, 4, 5]
