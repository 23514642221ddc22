"""Real object-storage servers on loopback: moto's S3 server and Azurite (Azure Blob/ADLS).

Each starts once per pytest session and stops at its end. Tests get a fresh bucket or container
and the cloud's *standard* environment variables (``AWS_*``, ``AZURE_STORAGE_*``), so code under
test needs no storage_options, exactly like a deployment with credentials in the environment.
Object-storage tests of other packages belong in this folder to share these fixtures.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

AWS_KEY_ID = "testing"
AWS_SECRET = "testing"  # moto's dummy credentials
AWS_REGION = "us-east-1"
# Azurite's well-known development account (published by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_CLOUD_ENV_PREFIXES = ("AWS_", "AZURE_", "AZURITE_", "GOOGLE_")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(what: str) -> None:
    """Skip locally; in CI (which installs every server) a missing one is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: see .ci/run)")
    pytest.skip(what)


def _clean_cloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own cloud variables must not leak into (or be used by) a test.
    for name in list(os.environ):
        if name.startswith(_CLOUD_ENV_PREFIXES):
            monkeypatch.delenv(name)


def unique_name() -> str:
    """A fresh bucket or container name (lowercase, DNS-safe)."""
    return f"coolie-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class S3Server:
    """moto's S3-compatible server on loopback."""

    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            region_name=AWS_REGION,
        )

    def new_bucket(self) -> str:
        """Create a bucket; returns its name."""
        name = unique_name()
        self.client().create_bucket(Bucket=name)
        return name

    def set_auth_after(self, requests: float) -> None:
        """Check credentials on every request after the next ``requests`` (inf: never)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=str(requests).encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request) as response:
            response.read()

    def keys(self, bucket: str) -> list[str]:
        """Every key in a bucket, read with boto3 (independent of the code under test)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server for the whole session, in its own process.

    Not moto's ThreadedMotoServer: in this process it needs the GIL to answer, and delta-rs holds
    the GIL through some calls (``DeltaTable.history()``), which then wait on a server that cannot
    run until object_store's request timeout.
    """
    port = _free_port()
    workspace: Path = tmp_path_factory.mktemp("moto")
    process = _start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workspace / "moto.log"
    )
    try:
        _wait_for_port(port, process, workspace / "moto.log")
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        _stop(process)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Only the standard AWS variables, pointing at the local server."""
    _clean_cloud_env(monkeypatch)
    for name, value in {
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": AWS_REGION,
        "AWS_DEFAULT_REGION": AWS_REGION,  # boto3 reads this one, object_store AWS_REGION
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: S3Server) -> str:
    """A fresh, empty bucket (its name), with the AWS variables set."""
    return s3_env.new_bucket()


@dataclass(frozen=True)
class S3User:
    """Credentials of an IAM user moto knows, with no policy: every S3 action is denied."""

    key_id: str
    secret: str


@pytest.fixture
def s3_auth(s3_env: S3Server) -> Iterator[S3User]:
    """Make moto check signatures and IAM policies (it accepts anything by default) for one test."""
    import boto3

    iam = boto3.client("iam", endpoint_url=s3_env.endpoint)
    name = unique_name()
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    s3_env.set_auth_after(0)
    try:
        yield S3User(key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        s3_env.set_auth_after(float("inf"))


@dataclass(frozen=True)
class AzuriteServer:
    """Azurite's Blob service (also serves ``abfss://`` through the Blob API) on loopback."""

    blob_url: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_url}/{AZURITE_ACCOUNT};"
        )

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self) -> str:
        """Create a container; returns its name."""
        name = unique_name()
        self.service().create_container(name)
        return name

    def blobs(self, container: str) -> list[str]:
        """Every blob name in a container, read with the Azure SDK."""
        return sorted(b.name for b in self.service().get_container_client(container).list_blobs())


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """An Azurite Blob server for the whole session (skips locally if not installed)."""
    binary = shutil.which("azurite-blob")
    if binary is None:
        _missing("azurite-blob is not installed (npm install -g azurite)")
    try:
        import azure.storage.blob  # noqa: F401 - creates containers (Azurite needs signed REST calls)
    except ImportError:
        _missing("azure-storage-blob (a dev dependency) is not installed")
    assert binary is not None
    port = _free_port()
    workspace: Path = tmp_path_factory.mktemp("azurite")
    command = [
        binary,
        *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workspace)),
        *("--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"),
    ]
    process = _start(command, workspace / "azurite.log")
    try:
        _wait_for_port(port, process, workspace / "azurite.log")
        yield AzuriteServer(f"http://127.0.0.1:{port}")
    finally:
        _stop(process)


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own session, so stopping it ends exactly its process group."""
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server accepts connections (it needs a moment to start), or it died."""
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
    raise RuntimeError(f"{process.args!r} did not listen on port {port}: {log.read_text()}")


@pytest.fixture
def azure_env(azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> AzuriteServer:
    """Only the standard Azure variables (the emulator's development account)."""
    _clean_cloud_env(monkeypatch)
    for name, value in {
        "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
        "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
        "AZURE_STORAGE_USE_EMULATOR": "true",
        "AZURITE_BLOB_STORAGE_URL": azurite.blob_url,
    }.items():
        monkeypatch.setenv(name, value)
    return azurite


@pytest.fixture
def az_container(azure_env: AzuriteServer) -> str:
    """A fresh, empty container (its name), with the Azure variables set."""
    return azure_env.new_container()
