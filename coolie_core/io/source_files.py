"""The files of a file source: which hold rows, and which one failed to read.

An empty file — 0 bytes, only blanks, a JSON ``[]``, a CSV header alone — holds no rows: it adds
nothing to a batch instead of failing it (polars refuses a 0-byte CSV, and types a header-only
CSV's columns as text), and a glob of only empty files is a batch with nothing to read. Polars'
errors for a file it cannot parse name no file: :func:`name_failed_file` finds it after the fact.
"""

import functools
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from coolie_core.errors import SourceError, StorageError
from coolie_core.locations import source_storage
from coolie_core.models import Catalog, Dataflow, FileSource
from coolie_core.storage import ObjectInfo, StorageLocation, as_location, library_options

__all__ = [
    "empty_source",
    "file_infos",
    "file_paths",
    "file_read_error",
    "is_empty_file",
    "name_failed_file",
    "read_files",
    "read_json_file",
    "scan_options",
    "source_files",
]


def file_infos(pattern: "StorageLocation | Path", *, dataflow: str) -> list[ObjectInfo]:
    """Every file the glob matches (local or in an object store), sorted, with size and version.

    Raises:
        SourceError: no file matches.
    """
    files = as_location(pattern).glob()
    if not files:
        raise SourceError(f"dataflow {dataflow}: no source files match {pattern}")
    return files


def file_paths(pattern: "StorageLocation | Path", *, dataflow: str) -> list[str]:
    """Every file (path or URI) the glob matches, sorted.

    Raises:
        SourceError: no file matches.
    """
    return [info.uri for info in file_infos(pattern, dataflow=dataflow)]


_PROBE_BYTES = 64 * 1024
"""Only files this small can be empty without being 0 bytes (blank lines, a CSV header)."""


@functools.lru_cache(maxsize=4096)
def _holds_no_rows(file: StorageLocation, size: int, version: str, fmt: str, options: str) -> bool:
    """Whether a file of ``size`` bytes holds no rows (cached per file, size and version)."""
    if size == 0:
        return True
    if fmt == "parquet" or size > _PROBE_BYTES:
        return False  # a parquet file with zero rows reads fine; its footer carries the schema
    text = (file.path.read_bytes() if file.is_local else file.read_bytes()).strip()
    if not text or (fmt == "json" and text == b"[]"):
        return True
    if fmt != "csv":
        return False
    kwargs = json.loads(options)
    if not kwargs.get("has_header", True):
        return False
    # A header and nothing else (skipped and comment lines aside): let polars decide, with the
    # dataflow's own options (quoted newlines, separators, comment prefix...).
    lines = sum(1 for line in text.splitlines() if line.strip())
    allowed = 1 + int(kwargs.get("skip_rows", 0) or 0) + int(kwargs.get("skip_rows_after_header", 0) or 0)
    if lines > allowed and not kwargs.get("comment_prefix"):
        return False
    try:
        scan = pl.scan_csv(file.uri, storage_options=library_options(file), **kwargs)
        return scan.head(1).collect().height == 0
    except pl.exceptions.PolarsError:
        return False  # not empty, just broken: reading it reports the error with the file's name


def is_empty_file(file: ObjectInfo, source: FileSource, *, location: StorageLocation) -> bool:
    """Whether a source file holds no rows: 0 bytes, only blanks, ``[]`` (json) or a CSV header.

    Such a file contributes zero rows to a batch instead of failing it. A parquet file with zero
    rows is read as it is (it has a schema). ``location``: the source glob it was listed from
    (its storage options reach the file).
    """
    options = json.dumps(source.options, sort_keys=True, default=str)
    where = StorageLocation.parse(file.uri, storage_options=dict(location.options))
    version = str(file.modified_ns) if file.modified_ns is not None else f"{file.etag}\0{file.last_modified}"
    return _holds_no_rows(where, file.size, version, source.format, options)


def source_files(source: FileSource, pattern: StorageLocation, *, dataflow: str) -> list[str]:
    """The files of a source glob that hold rows.

    Raises:
        SourceError: no file matches, or every file that matches is empty.
    """
    files = file_infos(pattern, dataflow=dataflow)
    filled = [f.uri for f in files if not is_empty_file(f, source, location=pattern)]
    if not filled:
        raise SourceError(f"dataflow {dataflow}: {_all_empty([f.uri for f in files])}")
    return filled


def _all_empty(files: list[str]) -> str:
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return f"all {len(files)} source file(s) are empty ({shown})"


def empty_source(catalog: Catalog, flow: Dataflow) -> str | None:
    """Why a file source has nothing to read (every file that matches is empty), else None.

    The driver reports such a batch as ``skipped`` with this reason. None too when no file
    matches (reading the source says so) and for other kinds of sources.
    """
    source = flow.source
    if not isinstance(source, FileSource):
        return None
    try:
        location = source_storage(catalog, flow)
        assert location is not None
        files = file_infos(location, dataflow=flow.name)
    except (SourceError, ValueError, StorageError):  # reading the source reports these, located
        return None
    try:
        if any(not is_empty_file(f, source, location=location) for f in files):
            return None
    except (OSError, StorageError):  # a file vanished or is unreadable: reading the source reports it
        return None
    return _all_empty([f.uri for f in files])


def read_files(source: FileSource, pattern: StorageLocation, *, dataflow: str) -> pl.LazyFrame:
    """The rows of the glob's files that hold rows, scanned lazily (plain JSON read whole)."""
    files = source_files(source, pattern, dataflow=dataflow)
    options = dict(source.options)
    if source.format == "parquet":
        return pl.scan_parquet(files, **_scan_options(options, pattern))
    if source.format == "csv":
        return pl.scan_csv(files, **_scan_options(options, pattern))
    if source.format == "jsonl":
        return pl.scan_ndjson(files, **_scan_options(options, pattern))
    # Plain JSON (an array of objects) has no lazy scanner; read each file.
    frames = []
    for file in files:
        try:
            frames.append(pl.read_json(_json_input(file, pattern), **options))
        except pl.exceptions.PolarsError as exc:
            raise SourceError(
                f"dataflow {dataflow}: cannot read source file {file}: {_first_line(exc)}"
            ) from exc
    return pl.concat(frames, how="diagonal_relaxed").lazy()


def read_json_file(
    file: str, *, source: FileSource, location: StorageLocation, dataflow: str
) -> pl.DataFrame:
    """One plain JSON source file (an array of objects), read whole.

    Raises:
        SourceError: it cannot be parsed (names the file).
    """
    try:
        return pl.read_json(_json_input(file, location), **dict(source.options))
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"dataflow {dataflow}: cannot read source file {file}: {_first_line(exc)}") from exc


def scan_options(options: dict[str, Any], *, location: StorageLocation) -> dict[str, Any]:
    """A scanner's keyword arguments: the source's reader options plus the store they were listed in."""
    return dict(_scan_options(options, location))


def _first_line(exc: BaseException) -> str:
    """``Type: message`` without polars' hints (they follow a blank line)."""
    return f"{type(exc).__name__}: " + str(exc).strip().split("\n\n", 1)[0]


_READ_ERRORS = (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError)
"""What polars raises for a file it cannot parse (corrupt parquet, a bad CSV row, broken JSON)."""


def _scan_options(options: dict[str, Any], location: StorageLocation) -> dict[str, Any]:
    """The source's options plus the store and credentials its files were listed with."""
    store = library_options(location)
    return options if store is None else {**options, "storage_options": store}


def _json_input(file: str, location: StorageLocation) -> Any:
    """What ``pl.read_json`` reads (it takes no storage options): a path, or an object's bytes."""
    if location.is_local:
        return file
    return io.BytesIO(StorageLocation.parse(file, storage_options=dict(location.options)).read_bytes())


def _read_whole(path: str, source: FileSource, location: StorageLocation) -> None:
    options = dict(source.options)
    if source.format == "parquet":
        pl.scan_parquet(path, **_scan_options(options, location)).collect()
    elif source.format == "csv":
        pl.scan_csv(path, **_scan_options(options, location)).collect()
    elif source.format == "jsonl":
        pl.scan_ndjson(path, **_scan_options(options, location)).collect()
    else:
        pl.read_json(_json_input(path, location), **options)


def file_read_error(file: str, *, source: FileSource, location: StorageLocation) -> str | None:
    """Why ``file``, read alone and whole as the source's format, cannot be read (the reader's
    first error line); None when it reads. For landing zones' ``on_bad_file: quarantine``."""
    try:
        _read_whole(file, source, location)
    except _READ_ERRORS as failed:
        return _first_line(failed)
    return None


def name_failed_file(catalog: Catalog, flow: Dataflow, exc: BaseException) -> BaseException:
    """The error a failed run reports: ``exc``, or a :class:`SourceError` naming the source file
    that cannot be read when ``exc`` comes from reading a file.

    Polars' errors for a corrupt parquet file or a bad CSV/JSON line name no file. They surface
    when the batch is collected, so the files are then read one by one (only after a failure,
    never on the way of a good run) to find the first that fails on its own.
    """
    cause = exc if isinstance(exc, pl.exceptions.PolarsError) else exc.__cause__
    source = flow.source
    if not isinstance(cause, _READ_ERRORS) or not isinstance(source, FileSource):
        return exc
    try:
        location = source_storage(catalog, flow)
        assert location is not None
        files = file_infos(location, dataflow=flow.name)
    except (SourceError, OSError, ValueError, StorageError):
        return exc
    if source.incremental == "files":  # a landing zone's batch is its newest files: look there first
        files = sorted(files, key=lambda info: info.last_modified, reverse=True)
    for info in files:
        if is_empty_file(info, source, location=location):
            continue
        file = info.uri
        try:
            _read_whole(file, source, location)
        except _READ_ERRORS as failed:
            error = SourceError(
                f"dataflow {flow.name}: cannot read source file {file}: {_first_line(failed)}"
            )
            error.__cause__ = exc
            return error
    return exc
