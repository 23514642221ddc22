"""Bad storage input on real servers: each a named error (URI, never the secret), nothing written."""

import pytest

from coolie_core.errors import StorageAccessError, StorageConfigError, StorageUnavailableError
from coolie_core.retry import is_transient
from coolie_core.storage import StorageLocation
from tests.storage.conftest import AzuriteServer, S3Server, S3User, unique_name


def test_missing_bucket_is_named(s3_env: S3Server) -> None:
    bucket = unique_name()
    location = StorageLocation.parse(f"s3://{bucket}/orders")
    for action, call in [
        ("listing", location.list_objects),
        ("listing", location.join("*.parquet").glob),
        ("writing", lambda: location.join("x.json").write_bytes(b"x")),
        ("reading", location.join("x.json").read_bytes),
    ]:
        with pytest.raises(StorageAccessError) as info:
            call()
        assert str(info.value).startswith(f"{action} s3://{bucket}/orders")
        assert "the bucket does not exist (NoSuchBucket, HTTP 404)" in str(info.value)
        assert not is_transient(info.value)
    assert bucket not in [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]


def test_missing_container_is_named(azure_env: AzuriteServer) -> None:
    container = unique_name()
    location = StorageLocation.parse(f"az://{container}/orders")
    with pytest.raises(
        StorageAccessError, match=f"listing az://{container}/orders: the container does not exist"
    ):
        location.list_objects()
    with pytest.raises(StorageAccessError, match="the container does not exist"):
        location.join("x.json").write_bytes(b"x")
    assert container not in [c.name for c in azure_env.service().list_containers()]


def test_wrong_s3_credentials_are_named_and_write_nothing(
    s3_bucket: str, s3_env: S3Server, s3_auth: S3User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    location = StorageLocation.parse(f"s3://{s3_bucket}/lake")
    with pytest.raises(StorageAccessError, match="rejected the credentials") as info:
        location.join("x.json").write_bytes(b"x")
    assert "InvalidAccessKeyId" in str(info.value)
    assert "wrong-secret-value" not in str(info.value)
    assert "AKIANOTAREALKEY" not in str(info.value)
    with pytest.raises(StorageAccessError, match="rejected the credentials"):
        location.list_objects()
    s3_env.set_auth_after(float("inf"))  # look with the server's own view
    assert s3_env.keys(s3_bucket) == []


def test_access_denied_is_named_and_writes_nothing(
    s3_bucket: str, s3_env: S3Server, s3_auth: S3User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials moto knows, of a user without any policy; given the documented way: ${ENV}.
    monkeypatch.setenv("COOLIE_TEST_KEY_ID", s3_auth.key_id)
    monkeypatch.setenv("COOLIE_TEST_SECRET", s3_auth.secret)
    location = StorageLocation.parse(
        f"s3://{s3_bucket}/lake",
        storage_options={
            "aws_access_key_id": "${COOLIE_TEST_KEY_ID}",
            "aws_secret_access_key": "${COOLIE_TEST_SECRET}",
        },
    )
    with pytest.raises(
        StorageAccessError, match=f"writing s3://{s3_bucket}/lake/x.json: access denied"
    ) as info:
        location.join("x.json").write_bytes(b"x")
    assert s3_auth.secret not in str(info.value)
    with pytest.raises(StorageAccessError, match="access denied"):
        location.list_objects()
    s3_env.set_auth_after(float("inf"))
    assert s3_env.keys(s3_bucket) == []


def test_wrong_azure_key_is_named(
    az_container: str, azure_env: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A well-formed key that is not the account's: Azurite checks the SharedKey signature.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    location = StorageLocation.parse(f"az://{az_container}/lake")
    # Azurite answers a bad signature with AuthorizationFailure (Azure itself: AuthenticationFailed,
    # reported as "rejected the credentials"); either way a located, permanent access error.
    with pytest.raises(StorageAccessError) as info:
        location.join("x.json").write_bytes(b"x")
    assert str(info.value) == (
        f"writing az://{az_container}/lake/x.json: access denied (AuthorizationFailure, HTTP 403)"
    )
    assert not is_transient(info.value)
    monkeypatch.undo()
    assert azure_env.blobs(az_container) == []


def test_missing_s3_credentials_are_named(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    location = StorageLocation.parse(f"s3://{s3_bucket}/lake")
    with pytest.raises(StorageAccessError, match=f"s3://{s3_bucket}/lake") as info:
        location.list_objects()
    assert "no credentials found" in str(info.value) or "SecretAccessKey" in str(info.value)


def test_unknown_option_is_a_config_error(s3_bucket: str) -> None:
    location = StorageLocation.parse(f"s3://{s3_bucket}", storage_options={"aws_no_such_option": "1"})
    with pytest.raises(
        StorageConfigError, match=f"s3://{s3_bucket}.*unknown storage option 'aws_no_such_option'"
    ):
        location.list_objects()


@pytest.mark.parametrize(
    "message",
    [
        "Error performing GET http://127.0.0.1:1/b?list-type=2 - error sending request: Connection refused",
        "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
    ],
)
def test_unreachable_or_failing_store_is_transient(message: str) -> None:
    # object_store retries these itself for minutes before giving up, too long for a test: the
    # mapping is checked on obstore's own exception type carrying the text it reports.
    from obstore.exceptions import GenericError

    from coolie_core.storage.failures import translate

    error = translate(GenericError(message), uri="s3://raw/x", scheme="s3", action="listing")
    assert isinstance(error, StorageUnavailableError)
    assert str(error).startswith("listing s3://raw/x: the store is unreachable or failing")
    assert is_transient(error)
