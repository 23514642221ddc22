"""Read a dataflow's source as a polars LazyFrame, with filters pushed down where possible.

Files, Delta tables and python functions are scanned lazily, so the filters applied later (source
filter, watermark, window) reach the scan. SQL sources get watermark and window bounds as bound
parameters in the query, never formatted into its text.
"""

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import polars as pl

from coolie_core.errors import (
    CoolieError,
    DataError,
    PermanentSourceError,
    SourceError,
    StorageError,
    TransientError,
)
from coolie_core.expressions import sql_expr
from coolie_core.io.source_files import (
    empty_source,
    is_empty_file,
    name_failed_file,
    read_files,
)
from coolie_core.locations import expand_env, source_storage
from coolie_core.models import (
    Catalog,
    Dataflow,
    DeltaSource,
    FileSource,
    PythonConnection,
    PythonSource,
    SqlConnection,
    SqlSource,
)
from coolie_core.storage import delta_table, delta_table_exists, library_options

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "SqlBound",
    "empty_source",
    "fingerprint_source",
    "is_empty_file",
    "name_failed_file",
    "read_source",
    "sql_url",
]


@dataclass(frozen=True, slots=True)
class SqlBound:
    """A lower (``>`` or ``>=``) or upper (``<``) bound pushed into a SQL source as a parameter."""

    column: str
    op: str
    value: Any


_MODULE_LOCK = threading.Lock()
"""Dataflows run in threads: one loads a source file while the others wait for the whole module."""


def _load_module(connection: PythonConnection, name: str) -> ModuleType:
    if connection.module is not None:
        return importlib.import_module(connection.module)
    path = Path(str(connection.path)).resolve()
    # Keyed by the file's path: two catalogs may use one connection name for different files.
    module_name = "coolie_source_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    with _MODULE_LOCK:
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SourceError(f"cannot import python source file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]  # never hand out a half-executed module
            raise
        return module


def _read_python(
    source: PythonSource, connection: PythonConnection, *, dataflow: str, context: Mapping[str, Any]
) -> pl.LazyFrame:
    module = _load_module(connection, source.connection)
    function = getattr(module, source.function, None)
    if not callable(function):
        raise SourceError(f"dataflow {dataflow}: {module.__name__} has no function {source.function}")
    signature = inspect.signature(function)
    kwargs = {k: v for k, v in context.items() if k in signature.parameters}
    where = f"dataflow {dataflow}: python source {source.function}"
    try:
        signature.bind(**kwargs)
    except TypeError as exc:  # the function's parameters, not the service behind it: permanent
        raise SourceError(f"{where}: {exc} (it is offered only {sorted(context)})") from None
    try:
        result = function(**kwargs)
    except PermanentSourceError as exc:
        raise PermanentSourceError(f"{where} failed: {exc}") from exc
    except TransientError as exc:  # coolie's own errors keep their meaning
        raise TransientError(f"{where} failed: {exc}") from exc
    except DataError as exc:
        raise DataError(f"{where} failed: {exc}") from exc
    except CoolieError as exc:
        raise SourceError(f"{where} failed: {exc}") from exc
    except Exception as exc:
        # An API answering 503, a dropped connection, a timeout: retried per the dataflow's
        # retry spec. A function that knows retrying cannot help raises PermanentSourceError.
        raise TransientError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, pl.LazyFrame):
        return result
    if isinstance(result, pl.DataFrame):
        return result.lazy()
    pa = sys.modules.get("pyarrow")  # a function returning a pyarrow Table has imported it
    if pa is not None and isinstance(result, pa.Table):
        frame = pl.from_arrow(result)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()
    raise SourceError(
        f"dataflow {dataflow}: {source.function} returned {type(result).__name__}; "
        "return a polars DataFrame/LazyFrame or a pyarrow Table"
    )


_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>(?:\$\{[^}]*\}|[^@/?#$]|\$(?!\{))*)@(?P<rest>.*)$",
    re.S,
)
"""``scheme://user:password@rest``; ``${...}`` references in the user info may hold any character."""


def sql_url(template: str) -> "URL":
    """The SQLAlchemy URL of a ``sql`` connection, its ``${VAR}`` references expanded.

    Values substituted into the user name or password are URL-quoted first, so a password may
    hold any character (``@``, ``/``, ``:``, ``%``...) and reaches the database unchanged. A URL
    that is one reference (``${DATABASE_URL}``) is used as given (quote it yourself).

    Raises:
        KeyError: a referenced variable is unset (the message names the variable).
        ValueError: the result is no SQLAlchemy URL (the message holds no part of it).

    >>> import os
    >>> os.environ["COOLIE_DOC_PW"] = "p@ss/w:rd"
    >>> url = sql_url("postgresql://etl:${COOLIE_DOC_PW}@db/erp")
    >>> url.password, url.host, url.render_as_string()
    ('p@ss/w:rd', 'db', 'postgresql://etl:***@db/erp')
    >>> del os.environ["COOLIE_DOC_PW"]
    """
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    match = _USERINFO.match(template)
    if match is None:
        expanded = expand_env(template)
    else:
        userinfo = expand_env(match["userinfo"], quote=lambda value: urllib.parse.quote(value, safe=""))
        expanded = f"{match['scheme']}{userinfo}@{expand_env(match['rest'])}"
    try:
        return make_url(expanded)
    except (sa_exc.ArgumentError, ValueError):
        # The message of either would quote the expanded URL, secrets included.
        raise ValueError("not a valid SQLAlchemy URL once environment variables are expanded") from None


def _read_sql(
    source: SqlSource, connection: SqlConnection, *, dataflow: str, bounds: list[SqlBound]
) -> pl.LazyFrame:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    where = f"dataflow {dataflow}: connection {source.connection}"
    try:
        url = sql_url(connection.url)
    except KeyError as exc:
        raise SourceError(f"{where}: {exc.args[0]}") from None
    except ValueError as exc:
        raise SourceError(f"{where}: {exc}") from None
    try:
        engine = sa.create_engine(url)
    except ImportError as exc:  # the dialect's database driver is not installed
        raise SourceError(f"{where}: database driver missing: {exc}") from None
    except sa_exc.SQLAlchemyError as exc:  # e.g. an unknown dialect; the URL is not in the message
        raise SourceError(f"{where}: {type(exc).__name__}: {exc}") from None
    base = (
        f"SELECT * FROM {source.table}" if source.table else f"SELECT * FROM ({source.query}) AS coolie_src"
    )
    clauses = [f"({source.filter})"] if source.filter else []
    params: dict[str, Any] = {}
    quote_identifier = engine.dialect.identifier_preparer.quote_identifier
    for index, bound in enumerate(bounds):
        # Values are bound parameters; the column is quoted by the database's own rules.
        key = f"coolie_p{index}"
        clauses.append(f"{quote_identifier(bound.column)} {bound.op} :{key}")
        params[key] = bound.value
    text = base + (" WHERE " + " AND ".join(clauses) if clauses else "")
    try:
        with engine.connect() as conn:
            frame = pl.read_database(
                sa.text(text), conn, execute_options={"parameters": params}, infer_schema_length=None
            )
    except sa_exc.OperationalError as exc:
        # SQLite reports permanent faults (missing table/column, syntax) as OperationalError too.
        text = str(getattr(exc, "orig", exc))
        permanent = (
            "no such table",
            "no such column",
            "syntax error",
            "authentication failed",
            "does not exist",
        )
        if any(p in text for p in permanent):
            raise SourceError(
                f"dataflow {dataflow}: query failed on connection {source.connection}: {text}"
            ) from None
        raise TransientError(
            f"dataflow {dataflow}: database error on connection {source.connection}: {text}"
        ) from None
    except (sa_exc.DisconnectionError, sa_exc.TimeoutError) as exc:
        # Message without the URL: it may hold an expanded secret.
        raise TransientError(
            f"dataflow {dataflow}: database error on connection {source.connection}: {type(getattr(exc, 'orig', exc)).__name__}: {getattr(exc, 'orig', exc)}"
        ) from None
    except sa_exc.SQLAlchemyError as exc:
        raise SourceError(
            f"dataflow {dataflow}: query failed on connection {source.connection}: {type(exc).__name__}: {getattr(exc, 'orig', exc)}"
        ) from None
    finally:
        engine.dispose()
    assert isinstance(frame, pl.DataFrame)
    return frame.lazy()


def read_source(
    catalog: Catalog,
    flow: Dataflow,
    *,
    sql_bounds: list[SqlBound] | None = None,
    context: Mapping[str, Any] | None = None,
) -> pl.LazyFrame:
    """The dataflow's source as a LazyFrame, with the source ``filter`` applied.

    Args:
        catalog: the loaded catalog (connection paths already absolute).
        flow: the dataflow to read.
        sql_bounds: watermark/window bounds a SQL source applies in the database.
        context: keyword arguments offered to a python source (``watermark``, ``window``).

    Raises:
        SourceError: the source cannot be read (no files, unknown function, bad query).
    """
    source = flow.source
    try:
        if isinstance(source, FileSource):
            location = source_storage(catalog, flow)
            assert location is not None
            lf = read_files(source, location, dataflow=flow.name)
        elif isinstance(source, DeltaSource):
            location = source_storage(catalog, flow)
            assert location is not None
            if not delta_table_exists(location):
                raise SourceError(
                    f"dataflow {flow.name}: source Delta table {location} does not exist (has its producer run?)"
                )
            lf = pl.scan_delta(location.uri, storage_options=library_options(location))
        elif isinstance(source, SqlSource):
            connection = catalog.connections[source.connection]
            assert isinstance(connection, SqlConnection)
            lf = _read_sql(source, connection, dataflow=flow.name, bounds=sql_bounds or [])
        else:
            connection = catalog.connections[source.connection]
            assert isinstance(connection, PythonConnection)
            lf = _read_python(source, connection, dataflow=flow.name, context=context or {})
    except (SourceError, TransientError):
        raise
    except StorageError as exc:  # a missing bucket, refused credentials: named by URI
        raise SourceError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise SourceError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    if source.filter and not isinstance(source, SqlSource):
        lf = lf.filter(sql_expr(source.filter, where=f"{flow.name}.source.filter"))
    return lf


def fingerprint_source(catalog: Catalog, flow: Dataflow) -> str | None:
    """A cheap fingerprint of what the source holds now, or None when it cannot be known.

    Files: names, sizes and modification times (object stores: and ETags). Delta: the table
    version. SQL and python sources have none (they always run).
    """
    source = flow.source
    if isinstance(source, FileSource):
        location = source_storage(catalog, flow)
        assert location is not None
        digest = hashlib.sha256()
        for info in location.glob():
            if info.modified_ns is not None:  # local files: as before the storage seam
                digest.update(f"{info.uri}\0{info.size}\0{info.modified_ns}\n".encode())
            else:
                digest.update(f"{info.fingerprint}\n".encode())
        return "files:" + digest.hexdigest()[:32]
    if isinstance(source, DeltaSource):
        from deltalake.exceptions import TableNotFoundError

        from coolie_core.io.delta_log import newest_version

        location = source_storage(catalog, flow)
        assert location is not None
        if (newest := newest_version(location)) is not None:  # a local log: no table load
            return f"delta:{newest}"
        try:
            return f"delta:{delta_table(location).version()}"
        except TableNotFoundError:
            return None
    return None
