"""The streamed merge and replace_window (parquet sources, coolie_core.engines.polars.stream_rewrite) on
object storage: moto S3, sources written with boto3, the table read back by polars (issue 17)."""

import datetime as dt
import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from coolie_core.driver import Driver

pytestmark = pytest.mark.e2e


def _put(server: Any, bucket: str, key: str, rows: list[dict[str, Any]]) -> None:
    buffer = io.BytesIO()
    pl.DataFrame(rows).write_parquet(buffer)
    server.client().put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


@pytest.mark.parametrize("load", ["merge", "replace_window"])
def test_streamed_rewrites_on_s3(s3_env: Any, tmp_path: Path, write_catalog: Any, load: str) -> None:
    bucket = s3_env.new_bucket()
    flow: dict[str, Any] = {
        "name": "sales",
        "source": {"format": "parquet", "connection": "raw", "path": "sales/*.parquet"},
        "destination": {"connection": "lake", "table": "sales", "load": load},
    }
    if load == "merge":
        flow["destination"]["merge_keys"] = ["id"]
    else:
        flow["partitions"] = {"column": "day", "every": "month", "start": "2024-01-01"}
    loaded = write_catalog(
        {
            "connections": {
                "raw": {"kind": "files", "path": f"s3://{bucket}/raw"},
                "lake": {"kind": "delta", "path": f"s3://{bucket}/lake"},
            },
            "dataflows": [flow],
        }
    )
    days = [dt.date(2024, 1, 5), dt.date(2024, 2, 5), dt.date(2024, 3, 5)]
    _put(s3_env, bucket, "raw/sales/1.parquet", [{"id": i, "day": d, "v": "old"} for i, d in enumerate(days)])
    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        assert driver.run().results[0].status == "succeeded"
    s3_env.client().delete_object(Bucket=bucket, Key="raw/sales/1.parquet")
    _put(s3_env, bucket, "raw/sales/2.parquet", [{"id": 1, "day": days[1], "v": "new"}])

    with Driver(loaded, state_dir=tmp_path / "state") as driver:
        result = driver.run().results[0]

    assert (result.status, result.rows_read, result.rows_written, result.delta_version) == (
        "succeeded",
        1,
        1,
        1,
    )
    table = pl.read_delta(f"s3://{bucket}/lake/sales").sort("id")
    assert table.select("id", "v").rows() == [(0, "old"), (1, "new"), (2, "old")]
    history = DeltaTable(f"s3://{bucket}/lake/sales").history(limit=1)[0]
    assert history["operation"] == ("MERGE" if load == "merge" else "WRITE")
