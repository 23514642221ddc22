"""The whole stack through the seam: polars and delta-rs on S3 and Azurite, given only
``location.uri`` and ``location.storage_options`` (no other configuration)."""

import threading
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from coolie_core.models import RetrySpec
from coolie_core.retry import call_with_retry, is_transient
from coolie_core.storage import StorageLocation
from tests.storage.conftest import AWS_KEY_ID, AWS_SECRET, AZURITE_KEY, AzuriteServer, S3Server


@pytest.fixture(params=["local", "s3", "az"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> StorageLocation:
    if request.param == "local":
        return StorageLocation.parse(str(tmp_path / "lake"))
    if request.param == "s3":
        return StorageLocation.parse(f"s3://{request.getfixturevalue('s3_bucket')}/lake")
    return StorageLocation.parse(f"az://{request.getfixturevalue('az_container')}/lake")


def test_polars_scans_a_glob_the_seam_lists(lake: StorageLocation) -> None:
    raw = lake.join("raw/orders")
    raw.make_dirs()  # polars creates no local folders; object stores have none
    for day in (1, 2, 3):
        frame = pl.DataFrame({"id": [day * 10 + i for i in range(day)], "day": [day] * day})
        frame.write_parquet(raw.join(f"2024-01-0{day}.parquet").uri, storage_options=raw.storage_options)
    raw.join("notes.txt").write_bytes(b"not parquet")

    pattern = raw.join("*.parquet")
    scanned = pl.scan_parquet(pattern.uri, storage_options=pattern.storage_options).collect()
    assert scanned.sort("id")["id"].to_list() == [10, 20, 21, 30, 31, 32]

    # What a reader will do: list once (the fingerprint), then scan exactly those files.
    files = pattern.glob()
    assert [f.uri.rsplit("/", 1)[1] for f in files] == [f"2024-01-0{d}.parquet" for d in (1, 2, 3)]
    listed = pl.scan_parquet([f.uri for f in files], storage_options=pattern.storage_options).collect()
    assert listed.height == 6


def test_delta_tables_read_and_write_through_the_seam(lake: StorageLocation) -> None:
    table = lake.join("silver/orders")
    options = table.storage_options
    write_deltalake(table.uri, pa.table({"id": [1, 2]}), storage_options=options)
    write_deltalake(table.uri, pa.table({"id": [3]}), mode="append", storage_options=options)
    loaded = DeltaTable(table.uri, storage_options=options)
    assert loaded.version() == 1
    assert sorted(pl.read_delta(table.uri, storage_options=options)["id"].to_list()) == [1, 2, 3]
    # The seam sees the same objects delta-rs wrote.
    logs = [i.uri.rsplit("/", 1)[1] for i in table.join("_delta_log/*.json").glob()]
    assert logs == ["00000000000000000000.json", "00000000000000000001.json"]
    assert table.join("*.parquet").glob()


def test_delta_history_and_maintenance_work_through_the_seam(lake: StorageLocation) -> None:
    """What watermarks (history) and `coolie maintain` (optimize, vacuum) call, on each store."""
    table = lake.join("silver/history")
    options = table.storage_options
    for n in range(3):
        write_deltalake(table.uri, pa.table({"id": [n]}), mode="append", storage_options=options)
    loaded = DeltaTable(table.uri, storage_options=options)
    assert [entry["version"] for entry in loaded.history()] == [2, 1, 0]
    loaded.optimize.compact()
    removed = DeltaTable(table.uri, storage_options=options).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    assert len(removed) == 3
    assert len(table.join("*.parquet").glob()) == 1
    assert sorted(pl.read_delta(table.uri, storage_options=options)["id"].to_list()) == [0, 1, 2]


def test_options_alone_reach_s3_for_every_library(
    s3_bucket: str, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No standard variables at all: the catalog's storage_options (secrets by ${ENV}) suffice."""
    for name in list(__import__("os").environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAKE_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("LAKE_SECRET", AWS_SECRET)
    table = StorageLocation.parse(
        f"s3://{s3_bucket}/lake/t",
        storage_options={
            "aws_endpoint_url": s3_env.endpoint,
            "aws_region": "us-east-1",
            "aws_allow_http": "true",
            "aws_access_key_id": "${LAKE_KEY_ID}",
            "aws_secret_access_key": "${LAKE_SECRET}",
        },
    )
    write_deltalake(table.uri, pa.table({"id": [1]}), storage_options=table.storage_options)
    assert pl.read_delta(table.uri, storage_options=table.storage_options)["id"].to_list() == [1]
    assert table.join("_delta_log/*.json").glob()  # obstore, same options
    table.join("_coolie/state.json").write_bytes(b"{}")
    assert "lake/t/_coolie/state.json" in s3_env.keys(s3_bucket)


def test_client_options_keep_the_environment(s3_bucket: str) -> None:
    """A client option (timeout) in the catalog must not drop AWS_ALLOW_HTTP from the environment."""
    table = StorageLocation.parse(f"s3://{s3_bucket}/lake/t", storage_options={"timeout": "120s"})
    write_deltalake(table.uri, pa.table({"id": [1]}), storage_options=table.storage_options)
    assert pl.read_delta(table.uri, storage_options=table.storage_options)["id"].to_list() == [1]
    assert len(table.join("_delta_log/*.json").glob()) == 1


def test_options_alone_reach_azurite(
    az_container: str, azure_env: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(__import__("os").environ):
        if name.startswith(("AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAKE_ACCOUNT_KEY", AZURITE_KEY)
    table = StorageLocation.parse(
        f"az://{az_container}/lake/t",
        storage_options={
            "azure_storage_account_name": "devstoreaccount1",
            "azure_storage_account_key": "${LAKE_ACCOUNT_KEY}",
            "azure_storage_use_emulator": "true",
        },
    )
    # The emulator's URL has no storage option; object_store reads it from this variable.
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azure_env.blob_url)
    write_deltalake(table.uri, pa.table({"id": [1]}), storage_options=table.storage_options)
    assert pl.read_delta(table.uri, storage_options=table.storage_options)["id"].to_list() == [1]
    assert table.join("_delta_log/*.json").glob()
    assert "lake/t/_delta_log/00000000000000000000.json" in azure_env.blobs(az_container)


def test_s3_commit_race_one_conflicts_and_the_retry_wins(s3_bucket: str) -> None:
    """Two writers read version 0; S3's conditional put lets exactly one commit version 1."""
    table = StorageLocation.parse(f"s3://{s3_bucket}/lake/orders")
    write_deltalake(table.uri, pa.table({"id": [0]}), storage_options=table.storage_options)
    first = DeltaTable(table.uri, storage_options=table.storage_options)
    second = DeltaTable(table.uri, storage_options=table.storage_options)
    no_retry = CommitProperties(max_commit_retries=0)
    write_deltalake(first, pa.table({"id": [1]}), mode="overwrite", commit_properties=no_retry)
    with pytest.raises(CommitFailedError) as info:
        write_deltalake(second, pa.table({"id": [2]}), mode="overwrite", commit_properties=no_retry)
    assert is_transient(info.value)
    assert DeltaTable(table.uri, storage_options=table.storage_options).version() == 1
    assert pl.read_delta(table.uri, storage_options=table.storage_options)["id"].to_list() == [1]

    # coolie's retry reruns the writer from scratch (a fresh snapshot) and commits version 2.
    def rerun() -> None:
        fresh = DeltaTable(table.uri, storage_options=table.storage_options)
        write_deltalake(fresh, pa.table({"id": [2]}), mode="overwrite", commit_properties=no_retry)

    call_with_retry(rerun, spec=RetrySpec(count=2, delay=0.0))
    final = DeltaTable(table.uri, storage_options=table.storage_options)
    assert final.version() == 2
    assert pl.read_delta(table.uri, storage_options=table.storage_options)["id"].to_list() == [2]


def test_s3_concurrent_appends_all_land(s3_bucket: str) -> None:
    """Threads appending at once: every commit a distinct version, no row lost (no lock service)."""
    table = StorageLocation.parse(f"s3://{s3_bucket}/lake/events")
    options = table.storage_options
    write_deltalake(table.uri, pa.table({"writer": [-1], "n": [-1]}), storage_options=options)
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for n in range(4):
                write_deltalake(
                    table.uri, pa.table({"writer": [index], "n": [n]}), mode="append", storage_options=options
                )
        except BaseException as exc:  # reported below: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = DeltaTable(table.uri, storage_options=options)
    assert final.version() == 8
    rows = pl.read_delta(table.uri, storage_options=options).filter(pl.col("writer") >= 0)
    assert sorted(zip(rows["writer"], rows["n"], strict=True)) == [(w, n) for w in range(2) for n in range(4)]
