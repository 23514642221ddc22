"""Bad storage input: each a located error, and nothing written.

``coolie validate`` reports what the catalog alone tells (an unknown scheme, a malformed URI, a
literal secret); the run reports what only the store can (missing credentials, a bucket that
does not exist, access denied), naming the dataflow and the URI, with nothing written.
"""

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from coolie_core.catalog import load_catalog
from coolie_core.driver import Driver
from tests.storage.conftest import AWS_REGION, S3Server, S3User

pytestmark = pytest.mark.e2e


def coolie(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")}
    return subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", *args],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        cwd=cwd,
        timeout=300,
        check=False,
    )


def document(raw: str, lake: str, **lake_options: Any) -> dict[str, Any]:
    return {
        "connections": {
            "raw": {"kind": "files", "path": raw},
            "lake": {"kind": "delta", "path": lake, **lake_options},
        },
        "dataflows": [
            {
                "name": "orders",
                "source": {"format": "parquet", "connection": "raw", "path": "orders/*.parquet"},
                "destination": {"connection": "lake", "table": "orders", "load": "append"},
                "watermark_columns": ["id"],
            }
        ],
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def put_orders(server: S3Server, bucket: str) -> None:
    buffer = io.BytesIO()
    pl.DataFrame({"id": [1, 2, 3]}).write_parquet(buffer)
    server.client().put_object(Bucket=bucket, Key="raw/orders/a.parquet", Body=buffer.getvalue())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("ftp://host/raw", "unsupported storage scheme 'ftp://' in 'ftp://host/raw'"),
        ("s3:/raw/x", "malformed"),
        ("s3://Bad_Bucket!/x", "expected s3://a bucket or container name/prefix"),
    ],
)
def test_validate_locates_unusable_uris(tmp_path: Path, path: str, expected: str) -> None:
    catalog = write(tmp_path, document(path, str(tmp_path / "lake")))
    done = coolie("validate", str(catalog), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{catalog}:4: connections.raw.path" in done.stderr, done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "lake").exists()


def test_validate_refuses_a_literal_secret_without_showing_it(tmp_path: Path) -> None:
    options = {"storage_options": {"aws_secret_access_key": "n0t-a-reference-secret"}}
    catalog = write(tmp_path, document("s3://raw/x", "s3://lake/x", **options))
    done = coolie("validate", str(catalog), cwd=tmp_path)
    assert done.returncode == 2
    assert "connections.lake.storage_options" in done.stderr
    assert "aws_secret_access_key holds a literal secret" in done.stderr
    assert "n0t-a-reference-secret" not in done.stdout + done.stderr


def run_fails(catalog: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    done = coolie("run", str(catalog), "--state-dir", str(tmp_path / "state"), cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_bucket_that_does_not_exist_fails_the_run_naming_it(
    s3_bucket: str, s3_env: S3Server, tmp_path: Path
) -> None:
    put_orders(s3_env, s3_bucket)
    catalog = write(tmp_path, document(f"s3://{s3_bucket}/raw", "s3://no-such-bucket-here/lake"))
    assert coolie("validate", str(catalog), cwd=tmp_path).returncode == 0  # only the store knows
    out = run_fails(catalog, tmp_path)
    assert "orders" in out, out
    assert "s3://no-such-bucket-here/lake/orders" in out, out
    assert "bucket does not exist" in out, out
    assert s3_env.keys(s3_bucket) == ["raw/orders/a.parquet"]  # nothing written anywhere

    missing_source = write(tmp_path, document("s3://no-such-bucket-here/raw", f"s3://{s3_bucket}/lake"))
    out = run_fails(missing_source, tmp_path)
    assert "s3://no-such-bucket-here/raw/orders/*.parquet" in out or "s3://no-such-bucket-here/raw" in out, (
        out
    )
    assert "bucket does not exist" in out, out
    assert s3_env.keys(s3_bucket) == ["raw/orders/a.parquet"]


def test_missing_credentials_fail_the_run_saying_what_to_set(
    s3_bucket: str, s3_env: S3Server, tmp_path: Path
) -> None:
    put_orders(s3_env, s3_bucket)
    catalog = write(tmp_path, document(f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/lake"))
    # No key at all, and no instance metadata service to fall back to (an unroutable endpoint
    # answers at once instead of the metadata address timing out).
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_METADATA_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "coolie_core.cli", "run", str(catalog), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k not in ("COOLIE_FAULT", "COOLIE_PAUSE")},
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # The destination's state is read first: its URI is named.
    assert "orders" in out, out
    assert f"s3://{s3_bucket}/lake/orders: no credentials found" in out, out
    assert "AWS_ACCESS_KEY_ID" in out, out
    assert s3_env.keys(s3_bucket) == ["raw/orders/a.parquet"]


def test_access_denied_fails_the_run_naming_the_uri(
    s3_bucket: str, s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_orders(s3_env, s3_bucket)
    catalog = write(tmp_path, document(f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/lake"))
    user: S3User = _deny(s3_env)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", user.key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", user.secret)
        with Driver(load_catalog(catalog), state_dir=tmp_path / "state") as driver:
            result = driver.run().result("orders")
    finally:
        s3_env.set_auth_after(float("inf"))
    assert result.status == "failed"
    assert result.error is not None
    assert f"s3://{s3_bucket}/lake/orders: access denied" in result.error, result.error
    assert not result.transient
    assert user.secret not in result.error
    assert s3_env.keys(s3_bucket) == ["raw/orders/a.parquet"]


def _deny(server: S3Server) -> S3User:
    """An IAM user with no policy, and moto checking every request from now on."""
    import boto3

    from tests.storage.conftest import unique_name

    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name=AWS_REGION)
    name = unique_name()
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    server.set_auth_after(0)
    return S3User(key["AccessKeyId"], key["SecretAccessKey"])
