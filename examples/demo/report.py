"""A user-written asset downstream of a coolie table, with no glue code.

coolie names each asset after its destination table: ``silver/orders`` in the ``lake`` connection
is the asset ``["silver", "orders"]`` and the Delta table ``<lake root>/silver/orders``.
``DeltaLakePolarsIOManager`` reads and writes ``<root_uri>/<key[-2]>/<key[-1]>``, so with
``root_uri`` = the lake root it finds coolie's tables by their asset keys alone: a downstream
asset just names ``silver/orders`` as an input. Two-part table paths map one to one; read a
deeper ``a/b/c`` (or a one-part ``orders``, which the IO manager puts under ``public/``) through
``dagster_deltalake.DeltaTableResource(url=...)`` instead.

Include it in the code location next to the coolie assets::

    defs = dg.Definitions.merge(build_definitions(catalog), build_report_definitions(lake_root))

where ``lake_root`` is the ``lake`` connection's folder or URI (``loaded.catalog.connections["lake"].path``).
"""

import os
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from dagster_deltalake_polars import DeltaLakePolarsIOManager

__all__ = ["LAKE_IO_MANAGER", "ORDERS", "build_report_definitions", "report"]

ORDERS = dg.AssetKey(["silver", "orders"])
"""The coolie asset (and table) ``silver/orders``."""
LAKE_IO_MANAGER = "coolie_lake"
"""Resource key of the IO manager rooted at the coolie lake."""


@dg.asset(
    key=["reports", "orders_by_status"],
    # The coolie asset stores nothing through Dagster; this says "read it from the lake".
    ins={"orders": dg.AssetIn(key=ORDERS, input_manager_key=LAKE_IO_MANAGER)},
    io_manager_key=LAKE_IO_MANAGER,
    group_name="reports",
    kinds={"polars", "delta"},
    description="Orders and revenue per status, from coolie's silver/orders.",
)
def report(orders: pl.DataFrame) -> pl.DataFrame:
    """Orders and revenue per order status."""
    return (
        orders.group_by("status")
        .agg(pl.len().alias("orders"), pl.col("amount").sum().alias("revenue"))
        .sort("status")
    )


def build_report_definitions(lake_root: str | Path) -> dg.Definitions:
    """The report asset with an IO manager rooted at the coolie lake (written to ``reports/``).

    ``lake_root`` may be an object-store URI (``s3://``, ``az://``, ``abfss://``, ``gs://``): the
    IO manager then reads the same tables with the cloud's standard environment variables.
    """
    text = str(lake_root)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    # Otherwise empty configs: delta-rs takes region, endpoint and credentials from the environment
    # (AWS_*, AZURE_STORAGE_*, GOOGLE_*), as coolie does.
    options: LocalConfig | S3Config | AzureConfig | GcsConfig
    if scheme == "s3":
        options = S3Config()
    elif scheme in ("az", "abfss"):
        options = AzureConfig(account_name=os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", ""))
    elif scheme == "gs":
        options = GcsConfig()
    else:
        options = LocalConfig()
    root = text if scheme else str(Path(text).resolve())
    return dg.Definitions(
        assets=[report],
        resources={LAKE_IO_MANAGER: DeltaLakePolarsIOManager(root_uri=root, storage_options=options)},
    )
