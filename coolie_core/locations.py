"""Where a catalog's connections, sources and destinations live on disk.

Paths in a catalog are relative to the catalog file and may reference environment variables
(``${VAR}`` or ``${VAR:-default}``). A source or destination path must stay inside its
connection's base folder: ``..`` escapes and outside absolute paths are rejected.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path

from coolie_core.models import (
    Catalog,
    Dataflow,
    DeltaConnection,
    DeltaSource,
    FilesConnection,
    FileSource,
)

__all__ = [
    "destination_location",
    "expand_env",
    "resolve_within",
    "source_location",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_GLOB_CHARS = re.compile(r"[*?\[]")


def expand_env(value: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` references.

    Raises:
        KeyError: a referenced variable is unset and has no default (the message names it).

    >>> expand_env("${HOME_X:-/data}/raw", environ={})
    '/data/raw'
    """
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(f"environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


def resolve_within(base: str | Path, relative: str) -> Path:
    """Join ``relative`` onto ``base`` and refuse anything that escapes ``base``.

    Globs are allowed; only the part before the first glob character is checked.

    Raises:
        ValueError: the path escapes ``base``.
    """
    base_path = Path(os.path.normpath(base))
    fixed = _GLOB_CHARS.split(relative, maxsplit=1)[0]
    candidate = Path(os.path.normpath(base_path / fixed)) if fixed else base_path
    if candidate != base_path and base_path not in candidate.parents:
        raise ValueError(f"path {relative!r} escapes its connection folder {str(base_path)!r}")
    if not relative:
        return base_path
    return Path(os.path.normpath(base_path / relative))


def _connection_base(catalog: Catalog, name: str) -> Path:
    connection = catalog.connections[name]
    if not isinstance(connection, FilesConnection | DeltaConnection):
        raise TypeError(f"connection {name} has no folder")
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
