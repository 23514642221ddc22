"""What the Spark engine is told about object storage: the Hadoop URI, and a clear refusal."""

from pathlib import Path

import pytest

from coolie_core.errors import StorageConfigError
from coolie_core.storage import StorageLocation
from coolie_core.storage.spark import local_for_spark, spark_uri


def test_spark_uris_use_hadoop_schemes() -> None:
    assert spark_uri(StorageLocation.parse("s3://raw/a/x.parquet")) == "s3a://raw/a/x.parquet"
    abfss = "abfss://c@acct.dfs.core.windows.net/t"
    assert spark_uri(StorageLocation.parse(abfss)) == abfss
    assert spark_uri(StorageLocation.parse("gs://b/t")) == "gs://b/t"
    with pytest.raises(StorageConfigError, match="write the connection as abfss://"):
        spark_uri(StorageLocation.parse("az://container/t"))


def test_the_spark_engine_refuses_object_stores_saying_what_to_do(tmp_path: Path) -> None:
    assert local_for_spark(StorageLocation.parse(str(tmp_path)), dataflow="d", role="source") == tmp_path
    with pytest.raises(StorageConfigError) as info:
        local_for_spark(StorageLocation.parse("s3://lake/orders"), dataflow="orders", role="destination")
    message = str(info.value)
    assert "dataflow orders" in message
    assert "destination s3://lake/orders is in an object store" in message
    assert "engine: polars" in message
    assert "org.apache.hadoop:hadoop-aws" in message
    assert "s3a://lake/orders" in message
