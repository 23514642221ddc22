"""One storage seam: local folders and object stores (S3, Azure Blob/ADLS, GCS) behind one type.

Every reader, writer and state store takes a :class:`StorageLocation`: its ``uri`` and
``storage_options`` go to polars and delta-rs unchanged; listing (with fingerprints), small
objects and deletes go through obstore, the same Rust ``object_store`` with the same
environment variables (``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_*``).
"""

from coolie_core.storage.location import ObjectInfo, StorageLocation
from coolie_core.storage.options import is_secret_option
from coolie_core.storage.tables import (
    as_location,
    delta_table,
    delta_table_exists,
    library_options,
    refresh,
    store_error,
    table_options,
)
from coolie_core.storage.uris import CLOUD_SCHEMES, is_uri

__all__ = [
    "CLOUD_SCHEMES",
    "ObjectInfo",
    "StorageLocation",
    "as_location",
    "delta_table",
    "delta_table_exists",
    "is_secret_option",
    "is_uri",
    "library_options",
    "refresh",
    "store_error",
    "table_options",
]
