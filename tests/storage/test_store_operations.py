"""The seam's operations on a local folder, the S3 server and Azurite: one behaviour on all three."""

from pathlib import Path

import pytest

from coolie_core.errors import StorageConflictError, TransientError
from coolie_core.retry import is_transient
from coolie_core.storage import StorageLocation

BACKENDS = ["local", "s3", "az", "abfss"]


@pytest.fixture(params=BACKENDS)
def root(request: pytest.FixtureRequest, tmp_path: Path) -> StorageLocation:
    """An empty location on each backend, reachable with the standard environment only."""
    if request.param == "local":
        return StorageLocation.parse(str(tmp_path / "lake"))
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return StorageLocation.parse(f"s3://{bucket}/lake")
    container = request.getfixturevalue("az_container")
    if request.param == "abfss":
        return StorageLocation.parse(f"abfss://{container}@devstoreaccount1.dfs.core.windows.net/lake")
    return StorageLocation.parse(f"az://{container}/lake")


def test_write_read_exists(root: StorageLocation) -> None:
    state = root.join("_coolie/batches/000001.json")
    assert not root.exists()
    assert not state.exists()
    state.write_bytes(b'{"batch": 1}')
    assert state.read_bytes() == b'{"batch": 1}'
    assert state.exists()
    assert root.exists()  # a prefix holding objects exists
    assert root.join("_coolie").exists()
    assert not root.join("_cool").exists()  # prefixes are whole segments
    state.write_bytes(b'{"batch": 2}')  # plain writes overwrite
    assert state.read_bytes() == b'{"batch": 2}'


def test_put_if_absent_writes_once(root: StorageLocation) -> None:
    claim = root.join("_coolie/batches/000007.json")
    claim.write_bytes(b"first", if_absent=True)
    with pytest.raises(StorageConflictError, match="already exists") as info:
        claim.write_bytes(b"second", if_absent=True)
    assert claim.uri in str(info.value)
    assert claim.read_bytes() == b"first"  # the loser wrote nothing
    assert is_transient(info.value)  # a rerun sees the new state and takes the next number
    assert isinstance(info.value, TransientError)


def test_read_of_a_missing_object_names_it(root: StorageLocation) -> None:
    missing = root.join("nope.json")
    with pytest.raises(FileNotFoundError, match="no such object") as info:
        missing.read_bytes()
    assert missing.uri in str(info.value)
    assert not is_transient(info.value)


def test_glob_lists_matching_files_with_fingerprints(root: StorageLocation) -> None:
    for name in [
        "orders/2024/a.parquet",
        "orders/2024/b.parquet",
        "orders/2025/c.parquet",
        "orders/2025/c.csv",
        "orders/2025/.hidden.parquet",
        "orders_old/d.parquet",
        "orders/top.parquet",
    ]:
        root.join(name).write_bytes(name.encode())

    def names(pattern: str) -> list[str]:
        return [info.uri.removeprefix(root.uri + "/") for info in root.join(pattern).glob()]

    assert names("orders/*/*.parquet") == [
        "orders/2024/a.parquet",
        "orders/2024/b.parquet",
        "orders/2025/c.parquet",
    ]
    assert names("orders/**/*.parquet") == [
        "orders/2024/a.parquet",
        "orders/2024/b.parquet",
        "orders/2025/c.parquet",
        "orders/top.parquet",
    ]
    assert names("orders/202[4]/?.parquet") == ["orders/2024/a.parquet", "orders/2024/b.parquet"]
    assert names("orders/top.parquet") == ["orders/top.parquet"]  # no glob: that one object
    assert names("orders") == []  # a prefix is not a file
    assert names("orders/*.csv") == []

    files = root.join("orders/2024/*.parquet").glob()
    assert [f.size for f in files] == [len(b"orders/2024/a.parquet"), len(b"orders/2024/b.parquet")]
    assert all(f.etag and f.last_modified.tzinfo is not None for f in files)
    before = {f.uri: f.fingerprint for f in files}
    root.join("orders/2024/a.parquet").write_bytes(b"rewritten, longer than before")
    after = {f.uri: f.fingerprint for f in root.join("orders/2024/*.parquet").glob()}
    changed = [uri for uri in before if before[uri] != after[uri]]
    assert changed == [root.join("orders/2024/a.parquet").uri]


def test_list_objects_is_recursive_and_sorted(root: StorageLocation) -> None:
    for name in ["t/_delta_log/0.json", "t/part-1.parquet", "t2/x.parquet"]:
        root.join(name).write_bytes(b"x")
    table = root.join("t")
    assert [i.uri for i in table.list_objects()] == [
        f"{table.uri}/_delta_log/0.json",
        f"{table.uri}/part-1.parquet",
    ]
    assert root.join("missing").list_objects() == []


def test_delete_and_delete_prefix(root: StorageLocation) -> None:
    for name in ["t/_delta_log/0.json", "t/part-1.parquet", "t2/x.parquet", "keep.json"]:
        root.join(name).write_bytes(b"x")
    root.join("keep.json").delete()
    assert not root.join("keep.json").exists()
    root.join("keep.json").delete()  # idempotent
    assert root.join("t").delete_prefix() == 2
    assert not root.join("t").exists()
    assert [i.uri for i in root.list_objects()] == [root.join("t2/x.parquet").uri]  # t2 untouched
    assert root.join("t").delete_prefix() == 0
    if root.is_local:
        assert not root.join("t").path.exists()  # no empty folders left behind
