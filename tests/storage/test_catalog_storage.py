"""Catalog connections on object storage: validation and the seam's catalog entry points."""

from pathlib import Path
from typing import Any

import pytest

from coolie_core.errors import CatalogError, StorageConfigError
from coolie_core.locations import (
    destination_location,
    destination_storage,
    source_location,
    source_storage,
)
from coolie_core.models import Catalog
from coolie_core.storage import StorageLocation
from tests.conftest import WriteCatalog


def document(raw: dict[str, Any], lake: dict[str, Any]) -> dict[str, Any]:
    return {
        "connections": {"raw": {"kind": "files", **raw}, "lake": {"kind": "delta", **lake}},
        "dataflows": [
            {
                "name": "orders",
                "source": {"format": "parquet", "connection": "raw", "path": "orders/*.parquet"},
                "destination": {"connection": "lake", "table": "silver/orders", "load": "append"},
            },
            {
                "name": "orders_gold",
                "source": {"format": "delta", "connection": "lake", "table": "silver/orders"},
                "destination": {"connection": "lake", "table": "gold/orders", "load": "overwrite"},
            },
        ],
    }


def test_unsupported_scheme_is_a_located_catalog_error(write_catalog: WriteCatalog) -> None:
    with pytest.raises(CatalogError) as info:
        write_catalog(document({"path": "hdfs://nn/raw"}, {"path": "lake"}))
    [issue] = info.value.issues
    assert issue.field == "connections.raw.path"
    assert issue.line == 4
    assert "unsupported storage scheme 'hdfs://' in 'hdfs://nn/raw'" in issue.message


def test_literal_secret_in_storage_options_is_refused(write_catalog: WriteCatalog) -> None:
    lake = {"path": "s3://lake/x", "storage_options": {"aws_secret_access_key": "hunter2hunter2"}}
    with pytest.raises(CatalogError) as info:
        write_catalog(document({"path": "raw"}, lake))
    [issue] = info.value.issues
    assert issue.field == "connections.lake.storage_options"
    assert "aws_secret_access_key holds a literal secret" in issue.message
    assert "hunter2" not in str(info.value)


def test_local_catalogs_get_the_same_places_as_before(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    loaded = write_catalog(document({"path": "raw"}, {"path": "lake"}))
    catalog = loaded.catalog
    for flow in catalog.dataflows:
        src = source_storage(catalog, flow)
        assert src is not None
        assert src.is_local
        assert src.path == source_location(catalog, flow)
        assert destination_storage(catalog, flow).path == destination_location(catalog, flow)
    assert source_storage(catalog, catalog.dataflow("orders")) == StorageLocation.parse(
        str(tmp_path / "raw" / "orders" / "*.parquet")
    )


def uri_catalog(**lake: Any) -> Catalog:
    # Validated by the models directly: load_catalog still resolves every path as a folder.
    return Catalog.model_validate(
        document({"path": "s3://raw/landing"}, {"path": "az://lake/tables", **lake})
    )


def test_uri_connections_give_storage_locations_with_their_options() -> None:
    catalog = uri_catalog(storage_options={"azure_storage_account_key": "${LAKE_KEY}"})
    orders, gold = catalog.dataflow("orders"), catalog.dataflow("orders_gold")
    assert source_storage(catalog, orders) == StorageLocation.parse("s3://raw/landing/orders/*.parquet")
    destination = destination_storage(catalog, orders)
    assert destination.uri == "az://lake/tables/silver/orders"
    assert destination.options == (("azure_storage_account_key", "${LAKE_KEY}"),)
    assert source_storage(catalog, gold) == destination  # the gold flow reads what orders writes


def test_uri_escapes_are_refused() -> None:
    catalog = uri_catalog()
    flow = catalog.dataflow("orders")
    escaping = flow.model_copy(
        update={"destination": flow.destination.model_copy(update={"table": "../other-container/t"})}
    )
    with pytest.raises(ValueError, match="escapes its connection location 'az://lake/tables'"):
        destination_storage(catalog, escaping)


def test_path_functions_refuse_uri_connections_instead_of_misreading_them() -> None:
    catalog = uri_catalog()
    flow = catalog.dataflow("orders")
    with pytest.raises(
        StorageConfigError, match=r"connection raw is in an object store \(s3://raw/landing\)"
    ):
        source_location(catalog, flow)
    with pytest.raises(StorageConfigError, match="connection lake is in an object store"):
        destination_location(catalog, flow)


def test_load_catalog_keeps_uris(write_catalog: WriteCatalog) -> None:
    loaded = write_catalog(document({"path": "s3://raw/landing"}, {"path": "az://lake/tables"}))
    flow = loaded.catalog.dataflow("orders")
    assert destination_storage(loaded.catalog, flow).uri == "az://lake/tables/silver/orders"
    # Lineage sees that orders_gold reads what orders writes, through the URIs.
    assert loaded.lineage.upstream["orders_gold"] == frozenset({"orders"})


def test_env_reference_may_hold_a_uri(write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_ROOT", "s3://bucket/root/")
    loaded = write_catalog(document({"path": "${DATA_ROOT}/raw"}, {"path": "${DATA_ROOT}/lake"}))
    catalog = loaded.catalog
    assert catalog.connections["raw"].path == "s3://bucket/root/raw"  # type: ignore[union-attr]
    source = source_storage(catalog, catalog.dataflow("orders"))
    assert source is not None
    assert source.uri == "s3://bucket/root/raw/orders/*.parquet"


def test_env_reference_to_an_unsupported_scheme_is_located(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_ROOT", "hdfs://nn/root")
    with pytest.raises(CatalogError) as info:
        write_catalog(document({"path": "${DATA_ROOT}/raw"}, {"path": "lake"}))
    [issue] = info.value.issues
    assert issue.field == "connections.raw.path"
    assert issue.line == 4
    assert "unsupported storage scheme 'hdfs://'" in issue.message


def test_two_producers_of_one_uri_table_are_refused(write_catalog: WriteCatalog) -> None:
    doc = document({"path": "s3://raw/landing"}, {"path": "s3://lake/tables/"})
    doc["dataflows"][1]["destination"]["table"] = "./silver/orders/"
    doc["dataflows"][1]["source"] = {"format": "parquet", "connection": "raw", "path": "x/*.parquet"}
    with pytest.raises(CatalogError, match="writes s3://lake/tables/silver/orders, which dataflow"):
        write_catalog(doc)


def test_uri_destination_escape_is_a_located_catalog_error(write_catalog: WriteCatalog) -> None:
    doc = document({"path": "s3://raw/landing"}, {"path": "s3://lake/tables"})
    doc["dataflows"][0]["destination"]["table"] = "../../other-bucket/t"
    with pytest.raises(CatalogError) as info:
        write_catalog(doc)
    [issue] = info.value.issues
    assert issue.field == "destination.table"
    assert "escapes its connection location 's3://lake/tables'" in issue.message
