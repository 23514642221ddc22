"""Where a catalog's connections, sources and destinations live on disk.

Paths in a catalog are relative to the catalog file and may reference environment variables
(``${VAR}`` or ``${VAR:-default}``). A source or destination path must stay inside its
connection's base folder: ``..`` escapes and outside absolute paths are rejected.
"""

import functools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from coolie_core.models import (
    Catalog,
    Dataflow,
    DeltaConnection,
    DeltaSource,
    FilesConnection,
    FileSource,
)

if TYPE_CHECKING:
    from coolie_core.storage import StorageLocation

__all__ = [
    "check_path_text",
    "connection_location",
    "connection_storage",
    "destination_location",
    "destination_storage",
    "expand_env",
    "join_location",
    "resolve_within",
    "source_location",
    "source_storage",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_GLOB_CHARS = re.compile(r"[*?\[]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def expand_env(
    value: str,
    *,
    environ: Mapping[str, str] | None = None,
    quote: Callable[[str], str] | None = None,
) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` references.

    Args:
        value: the text holding references.
        environ: the variables (default: ``os.environ``).
        quote: applied to each substituted value (not to the text around it), e.g. URL quoting.

    Raises:
        KeyError: a referenced variable is unset and has no default (the message names it).

    >>> expand_env("${HOME_X:-/data}/raw", environ={})
    '/data/raw'
    """
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            found = env[name]
        elif default is not None:
            found = default
        else:
            raise KeyError(f"environment variable {name} is not set")
        return found if quote is None else quote(found)

    return _ENV_REF.sub(substitute, value)


def check_path_text(path: str) -> None:
    """Refuse text no file system accepts as a path: NUL characters, unencodable characters.

    Raises:
        ValueError: naming what is wrong.

    >>> check_path_text("a\\x00b")
    Traceback (most recent call last):
    ValueError: path 'a\\x00b' contains a NUL character
    """
    if "\x00" in path:
        raise ValueError(f"path {path!r} contains a NUL character")
    try:
        os.fsencode(path)
    except UnicodeError:
        raise ValueError(f"path {path!r} holds characters the file system cannot encode") from None


def resolve_within(base: str | Path, relative: str) -> Path:
    """Join ``relative`` onto ``base`` and refuse anything that escapes ``base``.

    Globs are allowed, but no ``..`` may follow a glob component (``*/../..`` would climb out
    of whatever directory the glob matched).

    Raises:
        ValueError: the path escapes ``base`` or is not a valid path.

    >>> resolve_within("/data/raw", "orders/*.csv").as_posix()
    '/data/raw/orders/*.csv'
    >>> resolve_within("/data/raw", "*/../../etc/passwd")
    Traceback (most recent call last):
    ValueError: path '*/../../etc/passwd' escapes its connection folder '/data/raw'
    """
    # Pure string work, repeated for every source and destination of every dataflow (the
    # catalog rules, lineage, each run): cached per distinct base and path.
    return _resolve_within(os.path.normpath(base), relative)


# Bounded: a long-running code location reloads catalogs whose paths change.
@functools.lru_cache(maxsize=1 << 16)
def _resolve_within(base: str, relative: str) -> Path:
    check_path_text(relative)
    base_path = Path(base)
    escape = ValueError(f"path {relative!r} escapes its connection folder {str(base_path)!r}")
    parts = Path(relative).parts
    first_glob = next((i for i, part in enumerate(parts) if _GLOB_CHARS.search(part)), len(parts))
    if ".." in parts[first_glob:]:
        raise escape
    full = Path(os.path.normpath(base_path / relative)) if relative else base_path
    if full != base_path and base_path not in full.parents:
        raise escape
    return full


def _connection_base(catalog: Catalog, name: str) -> Path:
    connection = catalog.connections[name]
    if not isinstance(connection, FilesConnection | DeltaConnection):
        raise TypeError(f"connection {name} has no folder")
    if _URI.match(connection.path):
        # Never read "s3://raw/x" as the local folder "s3:/raw/x": callers not yet on the storage
        # seam (source_storage/destination_storage) say so instead.
        from coolie_core.errors import StorageConfigError

        raise StorageConfigError(
            f"connection {name} is in an object store ({connection.path}); this step supports "
            "local folders only"
        )
    return Path(connection.path)


def source_location(catalog: Catalog, flow: Dataflow) -> Path | None:
    """The absolute path a file or Delta source reads (a glob for files), None for SQL/python."""
    source = flow.source
    if isinstance(source, FileSource):
        return resolve_within(_connection_base(catalog, source.connection), source.path)
    if isinstance(source, DeltaSource):
        return resolve_within(_connection_base(catalog, source.connection), source.table)
    return None


def destination_location(catalog: Catalog, flow: Dataflow) -> Path:
    """The absolute folder a dataflow writes (a Delta table or a folder of parquet files)."""
    destination = flow.destination
    return resolve_within(_connection_base(catalog, destination.connection), destination.table)


def connection_storage(catalog: Catalog, name: str) -> "StorageLocation":
    """Where a files or Delta connection lives: its path or URI plus its storage_options.

    Raises:
        TypeError: the connection is SQL or python (no storage).
        StorageConfigError: the URI or options are unusable.
    """
    connection = catalog.connections[name]
    if not isinstance(connection, FilesConnection | DeltaConnection):
        raise TypeError(f"connection {name} has no folder")
    return connection_location(connection)


def connection_location(connection: FilesConnection | DeltaConnection) -> "StorageLocation":
    """Where a files or Delta connection lives (see :func:`connection_storage`).

    Raises:
        StorageConfigError: the URI or options are unusable.
    """
    path, options = connection.path, connection.storage_options
    if _URI.match(path) or os.path.isabs(path):
        # Absolute (as every loaded catalog's are): the same location each time, parsed once.
        return _parse_location(path, tuple(options.items()))
    from coolie_core.storage import StorageLocation  # the storage package imports this module

    return StorageLocation.parse(path, storage_options=options)


@functools.lru_cache(maxsize=1024)
def _parse_location(path: str, options: tuple[tuple[str, str], ...]) -> "StorageLocation":
    from coolie_core.storage import StorageLocation  # the storage package imports this module

    return StorageLocation.parse(path, storage_options=dict(options))


@functools.lru_cache(maxsize=1 << 16)
def _join(location: "StorageLocation", relative: str) -> "StorageLocation":
    return location.join(relative)


def join_location(location: "StorageLocation", relative: str) -> "StorageLocation":
    """``location.join(relative)``, cached per distinct pair (locations are immutable).

    Raises:
        ValueError: ``relative`` escapes ``location`` or is itself a URI.
    """
    return _join(location, relative)


def source_storage(catalog: Catalog, flow: Dataflow) -> "StorageLocation | None":
    """What a file source (a glob) or Delta source reads, local or in an object store.

    None for SQL and python sources.

    Raises:
        ValueError: the source path escapes its connection.
    """
    source = flow.source
    if isinstance(source, FileSource):
        return _join(connection_storage(catalog, source.connection), source.path)
    if isinstance(source, DeltaSource):
        return _join(connection_storage(catalog, source.connection), source.table)
    return None


def destination_storage(catalog: Catalog, flow: Dataflow) -> "StorageLocation":
    """What a dataflow writes (a Delta table or a folder of parquet files), local or remote.

    Raises:
        ValueError: the destination path escapes its connection.
    """
    destination = flow.destination
    return _join(connection_storage(catalog, destination.connection), destination.table)
