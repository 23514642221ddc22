"""StorageLocation without a store: parsing, normalising, joining (escape rules), options."""

import pickle
from pathlib import Path

import pytest

from coolie_core.errors import StorageConfigError
from coolie_core.storage import StorageLocation, is_secret_option


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("s3://raw/orders/", "s3://raw/orders"),
        ("s3://raw//orders/./2024", "s3://raw/orders/2024"),
        ("S3://raw", "s3://raw"),
        ("az://lake/bronze", "az://lake/bronze"),
        (
            "abfss://lake@acct.dfs.core.windows.net/bronze",
            "abfss://lake@acct.dfs.core.windows.net/bronze",
        ),
        ("gs://bucket/p", "gs://bucket/p"),
        ("file:///data/raw/", "/data/raw"),
        ("/data/./raw/../lake", "/data/lake"),
    ],
)
def test_uris_normalise(text: str, uri: str) -> None:
    location = StorageLocation.parse(text)
    assert location.uri == uri
    assert StorageLocation.parse(location.uri) == location


def test_relative_local_paths_resolve_against_the_base_folder(tmp_path: Path) -> None:
    location = StorageLocation.parse("data/raw", base_dir=tmp_path)
    assert location.is_local
    assert location.path == tmp_path / "data" / "raw"
    assert location.uri == str(tmp_path / "data" / "raw")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hdfs://nn/x", "unsupported storage scheme 'hdfs://' in 'hdfs://nn/x'"),
        ("http://host/x", "unsupported storage scheme 'http://'"),
        ("s3a://raw/x", "unsupported storage scheme 's3a://'"),
        ("s3:/raw/orders", "malformed"),
        ("s3:///orders", "expected s3://a bucket or container name/prefix"),
        ("abfss://lake/x", "expected abfss://container@account.dfs.core.windows.net/prefix"),
        ("s3://raw/../other", "'..' is not allowed"),
        ("file://host/x", "must be absolute"),
        ("s3://raw/a\x00b", "NUL"),
    ],
)
def test_unusable_uris_are_config_errors_naming_the_uri(text: str, message: str) -> None:
    with pytest.raises(StorageConfigError, match=r"storage|NUL") as info:
        StorageLocation.parse(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # the catalog reports ValueErrors as located issues


@pytest.mark.parametrize("base", ["s3://raw/in", "az://lake/in", "/data/in"])
def test_join_keeps_inside_the_prefix(base: str) -> None:
    root = StorageLocation.parse(base)
    assert root.join("orders/*.parquet").uri == f"{root.uri}/orders/*.parquet"
    assert root.join("a/../b").uri == f"{root.uri}/b"
    assert root.join("").uri == root.uri
    assert root.join("orders/**/x.csv").has_glob


@pytest.mark.parametrize("base", ["s3://raw/in", "az://lake/in", "/data/in"])
@pytest.mark.parametrize(
    "relative",
    ["../out", "a/../../out", "*/../../etc", "x/*/..", "/etc/passwd", "../../other-bucket/x"],
)
def test_join_refuses_escapes(base: str, relative: str) -> None:
    root = StorageLocation.parse(base)
    with pytest.raises(ValueError, match="escapes its connection") as info:
        root.join(relative)
    assert repr(relative) in str(info.value)


def test_join_cannot_reach_another_bucket() -> None:
    root = StorageLocation.parse("s3://raw")
    with pytest.raises(ValueError, match="escapes"):
        root.join("../secret-bucket/x")
    with pytest.raises(ValueError, match="'s3://secret-bucket/x' is a URI; give a path relative to"):
        root.join("s3://secret-bucket/x")
    # A bucket-root location still keeps its bucket for every join.
    assert root.join("a/b").uri == "s3://raw/a/b"


def test_location_is_an_immutable_hashable_value() -> None:
    one = StorageLocation.parse("s3://raw/orders", storage_options={"aws_region": "eu-west-1"})
    two = StorageLocation.parse("s3://raw/orders/", storage_options={"aws_region": "eu-west-1"})
    assert one == two
    assert len({one, two}) == 1
    assert pickle.loads(pickle.dumps(one)) == one
    with pytest.raises(AttributeError):
        one.key = "x"  # type: ignore[misc]
    assert one.join("x").options == one.options  # joined locations keep the options


def test_secret_options_must_be_env_references() -> None:
    with pytest.raises(StorageConfigError, match="aws_secret_access_key holds a literal secret") as info:
        StorageLocation.parse("s3://raw", storage_options={"aws_secret_access_key": "hunter2hunter2"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(StorageConfigError, match="literal secret"):
        StorageLocation.parse("s3://raw", storage_options={"AZURE_STORAGE_ACCOUNT_KEY": "${X:-inline}"})


def test_secrets_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_S3_SECRET", "hunter2hunter2")
    location = StorageLocation.parse(
        "s3://raw/x",
        storage_options={"aws_secret_access_key": "${MY_S3_SECRET}", "aws_region": "eu-west-1"},
    )
    assert location.storage_options == {"aws_secret_access_key": "hunter2hunter2", "aws_region": "eu-west-1"}
    for shown in (repr(location), str(location), str(location.to_dict()), repr(location.join("y"))):
        assert "hunter2" not in shown
    assert "aws_secret_access_key" in repr(location)


def test_unset_variable_in_options_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COOLIE_UNSET_SECRET", raising=False)
    location = StorageLocation.parse(
        "s3://raw/x", storage_options={"aws_secret_access_key": "${COOLIE_UNSET_SECRET}"}
    )
    with pytest.raises(StorageConfigError, match="s3://raw/x: storage option aws_secret_access_key") as info:
        location.storage_options  # noqa: B018
    assert "COOLIE_UNSET_SECRET is not set" in str(info.value)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("aws_access_key_id", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("aws_session_token", True),
        ("azure_storage_account_key", True),
        ("azure_storage_sas_key", True),
        ("azure_client_secret", True),
        ("google_service_account_key", True),
        ("aws_sse_customer_key_base64", True),
        ("aws_endpoint_url", False),
        ("aws_region", False),
        ("aws_allow_http", False),
        ("aws_sse_kms_key_id", False),
        ("azure_storage_account_name", False),
        ("google_service_account", False),
        ("aws_web_identity_token_file", False),
        ("aws_skip_signature", False),
    ],
)
def test_which_options_are_secrets(key: str, secret: bool) -> None:
    assert is_secret_option(key) is secret


def test_local_path_property_refuses_object_stores() -> None:
    with pytest.raises(StorageConfigError, match="s3://raw/x is in an object store"):
        _ = StorageLocation.parse("s3://raw/x").path


def test_parents_climb_to_the_bucket_root() -> None:
    orders = StorageLocation.parse("s3://raw/landing/orders/*.parquet")
    assert [p.uri for p in orders.parents] == [
        "s3://raw/landing/orders",
        "s3://raw/landing",
        "s3://raw",
    ]
    assert [p.uri for p in StorageLocation.parse("/data/x").parents] == ["/data", "/"]
    assert StorageLocation.parse("gs://bucket").parents == ()
