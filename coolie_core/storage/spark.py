"""What the Spark engine needs from a storage location.

Spark reaches object stores through Hadoop filesystems (``s3a://`` from ``hadoop-aws``,
``abfss://`` from ``hadoop-azure``, ``gs://`` from the GCS connector), configured on the cluster,
not through coolie's ``storage_options``. coolie's Spark engine reads and writes local folders;
an object-store location is refused with an error that says what to do.
"""

from pathlib import Path

from coolie_core.errors import StorageConfigError
from coolie_core.storage.location import StorageLocation

__all__ = ["local_for_spark", "spark_uri"]

_HADOOP_SCHEME = {"s3": "s3a", "abfss": "abfss", "gs": "gs"}
_HADOOP_PACKAGE = {"s3": "org.apache.hadoop:hadoop-aws", "abfss": "org.apache.hadoop:hadoop-azure"}


def spark_uri(location: StorageLocation) -> str:
    """The URI a Hadoop filesystem reads: ``s3://b/k`` becomes ``s3a://b/k``; local paths stay.

    Raises:
        StorageConfigError: ``az://`` (Spark needs the account: write ``abfss://container@account...``).

    >>> spark_uri(StorageLocation.parse("s3://raw/orders/x.parquet"))
    's3a://raw/orders/x.parquet'
    """
    if location.is_local:
        return location.uri
    scheme = _HADOOP_SCHEME.get(location.scheme)
    if scheme is None:
        raise StorageConfigError(
            f"{location.uri}: Spark cannot read {location.scheme}:// URIs; write the connection as "
            "abfss://container@account.dfs.core.windows.net/prefix"
        )
    return f"{scheme}://{location.uri.split('://', 1)[1]}"


def local_for_spark(location: StorageLocation, *, dataflow: str, role: str) -> Path:
    """The local folder the Spark engine reads or writes.

    Raises:
        StorageConfigError: the location is in an object store (names the dataflow, the URI, the
            Hadoop scheme and package a cluster would need, and the engine that supports it).
    """
    if location.is_local:
        return location.path
    package = _HADOOP_PACKAGE.get(location.scheme, "the Hadoop connector for this store")
    raise StorageConfigError(
        f"dataflow {dataflow}: the Spark engine reads and writes local folders only; its {role} "
        f"{location.uri} is in an object store. Run this dataflow with engine: polars, which "
        f"supports object stores (Spark itself would need {package} on its classpath and the URI "
        f"as {spark_uri(location) if location.scheme != 'az' else 'abfss://...'})"
    )
