"""Delta tables and polars scans at a storage location, with the location's options.

delta-rs and polars take the same ``storage_options`` as obstore; passing them from one place
keeps every reader and writer pointed at the same store with the same credentials.
"""

import os
from typing import TYPE_CHECKING, Any

from coolie_core.errors import StorageAccessError, StorageError, StorageUnavailableError
from coolie_core.storage.failures import translate
from coolie_core.storage.location import StorageLocation

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = [
    "as_location",
    "delta_table",
    "delta_table_exists",
    "library_options",
    "refresh",
    "store_error",
    "table_options",
]


def as_location(where: "StorageLocation | str | os.PathLike[str]") -> StorageLocation:
    """``where`` as a location: a :class:`StorageLocation` unchanged, a path or URI parsed."""
    if isinstance(where, StorageLocation):
        return where
    return StorageLocation.parse(os.fspath(where))


def library_options(location: StorageLocation) -> dict[str, str] | None:
    """What polars and delta-rs take as ``storage_options=``: None lets them read the environment."""
    return location.storage_options or None


def delta_table(location: StorageLocation, *, version: int | None = None) -> "DeltaTable":
    """The Delta table at ``location`` (at ``version`` when given).

    Raises:
        deltalake.exceptions.TableNotFoundError: no table there.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(location.uri, version=version, storage_options=library_options(location))
    except TableNotFoundError:
        raise
    except Exception as exc:
        known = store_error(exc, location=location, action="opening table")
        if known is None:
            raise
        raise known from None


def refresh(table: "DeltaTable", location: StorageLocation) -> None:
    """Bring ``table`` (loaded earlier from ``location``) up to the newest version: only the
    log's commits after the loaded one are read, not the whole table again."""
    try:
        table.update_incremental()
    except Exception as exc:
        known = store_error(exc, location=location, action="reading the table's log")
        if known is None:
            raise
        raise known from None


def store_error(exc: BaseException, *, location: StorageLocation, action: str) -> StorageError | None:
    """The storage error a library's failure on ``location`` means, when the store said why:
    a missing bucket/container, refused or missing credentials, access denied, an unreachable
    store (transient). None for anything else (the caller keeps the original error).

    delta-rs and polars report object-store failures as ``OSError``/``DeltaError`` whose text
    quotes the store's answer; only its error code and status are kept (no request URL).
    """
    translated = translate(exc, uri=location.uri, scheme=location.scheme, action=action)
    if isinstance(translated, StorageAccessError | StorageUnavailableError):
        return translated
    return None


def delta_table_exists(where: "StorageLocation | str | os.PathLike[str]") -> bool:
    """Whether ``where`` holds a Delta table: a ``_delta_log`` with a commit or checkpoint in it.

    A process killed while creating the table can leave the log with only a temporary commit
    file: that is no table yet, and the next write creates it.
    """
    location = as_location(where)
    if location.is_local:
        log = location.path / "_delta_log"
        return log.is_dir() and any(entry.name[:1].isdigit() for entry in log.iterdir())
    remote_log = location.join("_delta_log")
    start = len(remote_log.uri) + 1
    # Only the log's own files: a commit or checkpoint is named by its version.
    return any(
        "/" not in info.uri[start:] and info.uri[start : start + 1].isdigit()
        for info in remote_log.list_objects()
    )


def table_options(location: StorageLocation) -> dict[str, Any]:
    """Keyword arguments for ``write_deltalake``/``pl.scan_delta``: ``storage_options`` if any."""
    options = library_options(location)
    return {} if options is None else {"storage_options": options}
