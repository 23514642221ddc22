"""Landing zones: a file source with ``incremental: files`` loads every new file once, whole.

A file is identified by its path inside the connection plus its *version*: size and modification
time on disk, size and ETag (else last-modified time) in an object store. A run lists the glob,
compares it with the **ledger** of files loaded so far and loads the others, whatever
timestamps their rows hold — oldest first (modification time, then path), at most
``max_files_per_run`` of them.

The ledger is committed with the batch, in the same commit as the data (Delta commit metadata
``coolie.files``; the batch record of a parquet-folder destination), so a crash leaves the
files either loaded and recorded or neither. It must not grow with every commit, so it is kept
in two parts:

* a **checkpoint**: an immutable parquet file ``<destination>/_coolie/files/<dataflow>-<batch>-<token>.parquet``
  holding every file loaded up to some batch, written *before* the commit that names it (a
  crash leaves at most an unreferenced file);
* the files loaded **since** that checkpoint, inline in each batch's record.

When the inline part passes :data:`CHECKPOINT_EVERY` entries a new checkpoint folds it in. So a
commit carries at most that many entries however long the history, and planning reads one
checkpoint plus the newest record.

Changed files (same path, another version) follow ``on_changed_file``: ``fail`` (the default:
the run fails naming them, nothing is written), ``reload`` (load the file again, whole) or
``ignore`` (leave it, report it, and record its new version with the next batch). Deleted files
are ignored. Empty files (0 bytes, a CSV header alone...) are not loaded until they hold rows.

A file that cannot be read as the source's format fails the batch naming it, unless
``on_bad_file: quarantine``: then, only after the batch's read fails, each of its files is read
alone; those that fail are left out whole (never half loaded), recorded in the quarantine table
as one ``bad_file`` row each (with the batch's rejects, keyed by the batch) and in the ledger as
handled (version prefixed ``bad:``), and the batch is read again without them. A quarantined
file that changes is tried again as a new file.

With quarantine, a batch's rejects commit before its rows; a retry of the batch reads exactly
the files its first attempt picked (:func:`pin_batch`), so no file's bad rows are skipped.
"""

import datetime as dt
import functools
import io
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from coolie_core.errors import DataError, SourceError, WatermarkError
from coolie_core.expressions import sql_expr
from coolie_core.io.source_files import file_read_error, is_empty_file, read_json_file, scan_options
from coolie_core.locations import connection_storage, destination_storage, source_storage
from coolie_core.models import Catalog, Dataflow, FileSource
from coolie_core.storage import ObjectInfo, StorageLocation, delta_table, delta_table_exists
from coolie_core.watermarks import SqliteWatermarkStore, StoredWatermark, read_delta_watermark

if TYPE_CHECKING:
    from coolie_core.quarantine import Rejects

__all__ = [
    "BAD_FILE_RULE",
    "CHECKPOINT_EVERY",
    "FILE_COLUMN",
    "MODIFIED_COLUMN",
    "LandingBatch",
    "LandingFile",
    "is_landing",
    "landing_state",
    "pending_files",
    "pin_batch",
    "plan_landing",
    "read_landing",
    "scan_landing",
]

_T = TypeVar("_T")

CHECKPOINT_EVERY = 256
"""Most file entries a batch record carries inline; past it, a new checkpoint takes them."""
FILE_COLUMN = "_coolie_source_file"
MODIFIED_COLUMN = "_coolie_file_modified_at"
NAMES_SHOWN = 10
"""How many loaded file names the run record and metadata list."""
_FORMAT = 1
BAD_FILE_RULE = "bad_file"
"""The quarantine rule of a file that cannot be read (``on_bad_file: quarantine``)."""
_BAD = "bad:"
"""Prefix of a quarantined file's version in the ledger: handled, not loaded."""


@dataclass(frozen=True, slots=True)
class LandingFile:
    """One file of a landing zone, as listed."""

    key: str
    """Its path inside the connection (the ledger's key)."""
    uri: str
    version: str
    """Size and modification time (object stores: size and ETag): another version is a changed file."""
    modified_ns: int
    """Modification time, ns since the epoch (arrival order)."""


def is_landing(flow: Dataflow) -> bool:
    """Whether ``flow`` reads a landing zone (``source.incremental: files``)."""
    return isinstance(flow.source, FileSource) and flow.source.incremental == "files"


def _version(info: ObjectInfo) -> str:
    if info.modified_ns is not None:
        return f"{info.size}:{info.modified_ns}"
    return f"{info.size}:{info.etag or info.last_modified.isoformat()}"


def _modified_ns(info: ObjectInfo) -> int:
    if info.modified_ns is not None:
        return info.modified_ns
    return int(info.last_modified.timestamp()) * 1_000_000_000 + info.last_modified.microsecond * 1000


# ------------------------------------------------------------------------------ the ledger


@dataclass(frozen=True, slots=True)
class _Record:
    """The ledger as recorded with one batch: a checkpoint and the entries since."""

    checkpoint: str | None
    since: tuple[tuple[str, str], ...]
    total: int

    def text(self) -> str:
        return json.dumps(
            {
                "v": _FORMAT,
                "checkpoint": self.checkpoint,
                "total": self.total,
                "since": [list(e) for e in self.since],
            },
            separators=(",", ":"),
        )


def _parse(text: str, *, dataflow: str, store: str) -> _Record:
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("v") != _FORMAT:
            raise ValueError("unknown ledger format")
        since = tuple((str(k), str(v)) for k, v in raw["since"])
        checkpoint = raw["checkpoint"]
        return _Record(None if checkpoint is None else str(checkpoint), since, int(raw["total"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise WatermarkError(
            f"dataflow {dataflow}: the loaded-file ledger in {store} is corrupt ({exc}); "
            "coolie never falls back to loading every file again"
        ) from None


@functools.lru_cache(maxsize=8)
def _checkpoint_entries(where: StorageLocation) -> dict[str, str]:
    """A checkpoint's entries (immutable once written: cached per location)."""
    frame = pl.read_parquet(io.BytesIO(where.read_bytes()))
    return dict(zip(frame.get_column("key").to_list(), frame.get_column("version").to_list(), strict=True))


def _checkpoint_dir(dest: StorageLocation) -> StorageLocation:
    return dest.join("_coolie/files")


def _loaded(dest: StorageLocation, record: _Record, *, dataflow: str, store: str) -> dict[str, str]:
    """Every loaded file's version, by key."""
    entries: dict[str, str] = {}
    if record.checkpoint is not None:
        where = dest.join(record.checkpoint)
        try:
            entries = dict(_checkpoint_entries(where))
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise WatermarkError(
                f"dataflow {dataflow}: the loaded-file checkpoint {where.uri} named by {store} "
                f"cannot be read ({type(exc).__name__}: {exc}); coolie never falls back to loading "
                "every file again"
            ) from exc
    entries.update(record.since)
    return entries


def _read_ledger(
    dest: StorageLocation, state: StoredWatermark, *, dataflow: str
) -> tuple[_Record, dict[str, str]]:
    store = f"the state of destination {dest.uri}"
    if state.files is None:
        if state.batch > 0:
            raise WatermarkError(
                f"dataflow {dataflow}: {store} records batch {state.batch} but no loaded files (the "
                "dataflow ran before it read with incremental: files); every file would be loaded "
                "again. Load into a new destination, or rename the dataflow deliberately."
            )
        return _Record(None, (), 0), {}
    record = _parse(state.files, dataflow=dataflow, store=store)
    return record, _loaded(dest, record, dataflow=dataflow, store=store)


def _write_checkpoint(dest: StorageLocation, entries: dict[str, str], *, dataflow: str, batch: int) -> str:
    """Write a checkpoint of ``entries``; its path relative to ``dest``."""
    name = f"_coolie/files/{dataflow}-{batch:010d}-{uuid.uuid4().hex[:12]}.parquet"
    frame = pl.DataFrame(
        {"key": list(entries), "version": list(entries.values())},
        schema={"key": pl.String, "version": pl.String},
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    _checkpoint_dir(dest).make_dirs()
    dest.join(name).write_bytes(buffer.getvalue(), if_absent=True)
    return name


def _checkpoint_batch(name: str) -> int | None:
    """The batch number in a checkpoint's name (``<dataflow>-<batch>-<token>.parquet``)."""
    parts = name.rsplit("/", 1)[-1].split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _prune_checkpoints(dest: StorageLocation, *, dataflow: str, before: str) -> None:
    """Delete this dataflow's checkpoints older than the committed one, ``before``.

    Only older ones: a checkpoint newer than the committed one may belong to a batch being
    committed right now. An older one no batch can commit against any more (its commit would
    conflict with the batch that committed ``before``).
    """
    limit = _checkpoint_batch(before)
    if limit is None:
        return
    for info in _checkpoint_dir(dest).join(f"{dataflow}-*.parquet").glob():
        number = _checkpoint_batch(info.uri)
        if number is not None and number < limit:
            StorageLocation.parse(info.uri, storage_options=dict(dest.options)).delete()


# ------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class LandingBatch:
    """What one run of a landing-zone dataflow takes, and how the ledger moves on."""

    dataflow: str
    files: tuple[LandingFile, ...]
    """To load, in arrival order (modification time, then path)."""
    reloaded: int = 0
    """How many of them are changed files loaded again (``on_changed_file: reload``)."""
    ignored: tuple[LandingFile, ...] = ()
    """Changed files left as they are (``on_changed_file: ignore``): recorded with this batch."""
    pending: int = 0
    """Files left for later runs by ``max_files_per_run`` (not yet probed for rows)."""
    empty: int = 0
    """Empty files among the ones whose turn it was: not loaded until they hold rows."""
    matched: int = 0
    """Files the glob matched."""
    bad: tuple[tuple[LandingFile, str], ...] = ()
    """Files that cannot be read (``on_bad_file: quarantine``), with the reader's first error
    line: left out, quarantined and recorded as handled with this batch."""
    _record: _Record = field(default_factory=lambda: _Record(None, (), 0), repr=False)
    _loaded: dict[str, str] = field(default_factory=dict, repr=False)
    _candidates: tuple[LandingFile, ...] = field(default=(), repr=False)
    """Every file waiting, in arrival order (not probed for rows)."""

    def reason(self) -> str:
        """Why a run that loads nothing does so."""
        parts = ["no new files" if self.matched else "no files match the source path"]
        if self.ignored:
            parts.append(f"{len(self.ignored)} changed file(s) ignored (on_changed_file: ignore)")
        if self.empty:
            parts.append(f"{self.empty} empty file(s) not loaded until they hold rows")
        if self.bad:
            parts.append(f"{len(self.bad)} unreadable file(s) quarantined (on_bad_file: quarantine)")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        """The run record's ``files``: loaded (count, first names), reloaded, ignored, pending."""
        return {
            "loaded": len(self.files),
            "names": [f.key for f in self.files[:NAMES_SHOWN]],
            "reloaded": self.reloaded,
            "changed_ignored": len(self.ignored),
            "pending": self.pending,
            "empty": self.empty,
            "rejected": len(self.bad),
            "rejected_names": [f.key for f, _ in self.bad[:NAMES_SHOWN]],
        }

    def bad_rejects(self, *, run_id: str) -> "Rejects | None":
        """The quarantine rows of the unreadable files (one each), None when there are none."""
        from coolie_core.quarantine import Rejects

        if not self.bad:
            return None
        now = dt.datetime.now(dt.UTC)
        rows = pl.DataFrame(
            {
                "run_id": [run_id] * len(self.bad),
                "dataflow": [self.dataflow] * len(self.bad),
                "window": [None] * len(self.bad),
                "rule": [BAD_FILE_RULE] * len(self.bad),
                "reason": [f"cannot read {f.uri}: {error}" for f, error in self.bad],
                "raw_row": [json.dumps({"file": f.uri, "version": f.version}) for f, _ in self.bad],
                "quarantined_at": [now] * len(self.bad),
            },
            schema={
                "run_id": pl.String,
                "dataflow": pl.String,
                "window": pl.String,
                "rule": pl.String,
                "reason": pl.String,
                "raw_row": pl.String,
                "quarantined_at": pl.Datetime("us", "UTC"),
            },
        )
        return Rejects(rows, 0)

    def ledger(self, dest: StorageLocation, *, batch: int) -> str:
        """The ledger to commit with this batch (writes a new checkpoint when one is due)."""
        added = tuple((f.key, f.version) for f in (*self.files, *self.ignored)) + tuple(
            (f.key, _BAD + f.version) for f, _ in self.bad
        )
        since = self._record.since + added
        total = len(self._loaded) + len({k for k, _ in added if k not in self._loaded})
        if len(since) <= CHECKPOINT_EVERY:
            return _Record(self._record.checkpoint, since, total).text()
        entries = {**self._loaded, **dict(added)}
        name = _write_checkpoint(dest, entries, dataflow=self.dataflow, batch=batch)
        if self._record.checkpoint is not None:
            _prune_checkpoints(dest, dataflow=self.dataflow, before=self._record.checkpoint)
        return _Record(name, (), total).text()


def plan_landing(
    catalog: Catalog, flow: Dataflow, *, state: StoredWatermark, dest: StorageLocation
) -> LandingBatch:
    """List the landing zone and pick this run's files (nothing is read or written).

    Raises:
        DataError: a loaded file changed and ``on_changed_file`` is ``fail`` (names the files).
        WatermarkError: the recorded ledger is unreadable.
    """
    source = flow.source
    assert isinstance(source, FileSource)
    record, loaded = _read_ledger(dest, state, dataflow=flow.name)
    location = source_storage(catalog, flow)
    assert location is not None
    base = connection_storage(catalog, source.connection)
    listed = location.glob()
    new: list[tuple[LandingFile, ObjectInfo]] = []
    changed: list[tuple[LandingFile, ObjectInfo, str]] = []
    root = base.uri.rstrip("/") + "/"
    cut = len(root)
    for info in listed:  # a hot loop over every file listed: objects only for the new ones
        uri = info.uri
        key = uri[cut:] if uri.startswith(root) else uri
        ns = info.modified_ns
        version = f"{info.size}:{ns}" if ns is not None else _version(info)  # _version, inlined
        before = loaded.get(key)
        if before == version:
            continue
        if before is not None and before.startswith(_BAD):
            if before == _BAD + version:
                continue  # quarantined, unchanged: handled
            before = None  # a quarantined file that changed: tried again as a new file
        file = LandingFile(key, info.uri, version, _modified_ns(info))
        if before is None:
            new.append((file, info))
        elif not is_empty_file(info, source, location=location):  # emptied: not a new version yet
            changed.append((file, info, before))
    policy = source.on_changed_file
    if changed and policy == "fail":
        shown = ", ".join(f"{f.uri} (was {old}, now {f.version})" for f, _, old in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise DataError(
            f"dataflow {flow.name}: {len(changed)} loaded file(s) changed since they were loaded "
            f"(size:mtime or size:ETag): {shown}{more}; nothing was loaded. Set source.on_changed_file "
            "to reload (load them again whole) or ignore (leave them), or restore the files"
        )
    candidates = new + ([(f, info) for f, info, _ in changed] if policy == "reload" else [])
    candidates.sort(key=lambda pair: (pair[0].modified_ns, pair[0].key))
    limit = source.max_files_per_run or len(candidates)
    take: list[LandingFile] = []
    empty = looked = 0
    # Only the files whose turn it is are probed for rows (a backlog is not read ahead of time).
    for file, info in candidates:
        if len(take) == limit:
            break
        looked += 1
        if is_empty_file(info, source, location=location):
            empty += 1
        else:
            take.append(file)
    taken = {f.key for f in take}
    return LandingBatch(
        dataflow=flow.name,
        files=tuple(take),
        reloaded=sum(1 for f, _, _ in changed if f.key in taken),
        ignored=tuple(f for f, _, _ in changed) if policy == "ignore" else (),
        pending=len(candidates) - looked,
        empty=empty,
        matched=len(listed),
        _record=record,
        _loaded=loaded,
        _candidates=tuple(f for f, _ in candidates),
    )


# ------------------------------------------------------------------------------ reading


def scan_landing(catalog: Catalog, flow: Dataflow, *, files: Sequence[LandingFile]) -> pl.LazyFrame:
    """The rows of exactly ``files``, in their order, with the source filter (and file columns)."""
    source = flow.source
    assert isinstance(source, FileSource)
    location = source_storage(catalog, flow)
    assert location is not None
    uris = [f.uri for f in files]
    options = scan_options(dict(source.options), location=location)
    if source.file_columns and source.format != "json":
        options["include_file_paths"] = FILE_COLUMN
    try:
        if source.format == "parquet":
            lf = pl.scan_parquet(uris, **options)
        elif source.format == "csv":
            lf = pl.scan_csv(uris, **options)
        elif source.format == "jsonl":
            lf = pl.scan_ndjson(uris, **options)
        else:
            frames = []
            for uri in uris:
                frame = read_json_file(uri, source=source, location=location, dataflow=flow.name)
                if source.file_columns:
                    frame = frame.with_columns(pl.lit(uri).alias(FILE_COLUMN))
                frames.append(frame)
            lf = pl.concat(frames, how="diagonal_relaxed").lazy()
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise SourceError(f"dataflow {flow.name}: cannot read source: {exc}") from exc
    if source.file_columns:
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        modified = {f.uri: epoch + dt.timedelta(microseconds=f.modified_ns // 1000) for f in files}
        lf = lf.with_columns(
            pl.col(FILE_COLUMN)
            .replace_strict(modified, return_dtype=pl.Datetime("us", "UTC"))
            .alias(MODIFIED_COLUMN)
        )
    if source.filter:
        lf = lf.filter(sql_expr(source.filter, where=f"{flow.name}.source.filter"))
    return lf


def read_landing(
    catalog: Catalog,
    flow: Dataflow,
    picked: LandingBatch,
    *,
    read: Callable[[tuple[LandingFile, ...]], _T],
) -> tuple[_T | None, LandingBatch]:
    """Read a batch's files with ``read``; with ``on_bad_file: quarantine``, without the ones
    that cannot be read.

    Only when the whole read fails are the files read alone, to find the bad ones; the batch is
    then read again without them. Returns the rows (None when every file is bad) and the batch,
    its unreadable files in ``bad``.

    Raises:
        Exception: the read's error, when the policy is ``fail`` or no file fails on its own.
    """
    source = flow.source
    assert isinstance(source, FileSource)
    try:
        return read(picked.files), picked
    except Exception as exc:
        failed = exc if isinstance(exc, pl.exceptions.PolarsError) else exc.__cause__
        if source.on_bad_file != "quarantine" or not isinstance(failed, pl.exceptions.PolarsError):
            raise
        location = source_storage(catalog, flow)
        assert location is not None
        bad = [
            (f, error)
            for f in picked.files
            if (error := file_read_error(f.uri, source=source, location=location)) is not None
        ]
        if not bad:
            raise
    keys = {f.key for f, _ in bad}
    kept = replace(
        picked, files=tuple(f for f in picked.files if f.key not in keys), bad=picked.bad + tuple(bad)
    )
    return (read(kept.files) if kept.files else None), kept


# ------------------------------------------------------------------------------ plan


def landing_state(
    catalog: Catalog, flow: Dataflow, *, state_dir: Path
) -> tuple[StoredWatermark, StorageLocation]:
    """The last batch's state of a landing-zone dataflow and its destination (as the driver reads them)."""
    from coolie_core.folder_state import FolderStateStore  # imports the storage seam lazily

    dest = destination_storage(catalog, flow)
    if flow.destination.format == "delta":
        return read_delta_watermark(dest, dataflow=flow.name), dest
    if dest.is_local:
        return SqliteWatermarkStore(state_dir / "watermarks.sqlite").read(flow.name), dest
    return FolderStateStore(dest).read(flow.name), dest


def pending_files(catalog: Catalog, flow: Dataflow, *, state_dir: Path) -> int:
    """How many files wait for the next runs of a landing-zone dataflow (all runs, not one;
    empty files beyond the first are counted too: they are not read here).

    Raises:
        CoolieError: the ledger is unreadable, or a loaded file changed under ``on_changed_file: fail``.
    """
    state, dest = landing_state(catalog, flow, state_dir=state_dir)
    # Probe one file for rows, not the whole backlog (the count may include empty files).
    source = flow.source.model_copy(update={"max_files_per_run": 1})
    batch = plan_landing(catalog, flow.model_copy(update={"source": source}), state=state, dest=dest)
    return len(batch.files) + batch.pending


# ------------------------------------------------------------------------------ quarantine


def pin_batch(
    catalog: Catalog, flow: Dataflow, picked: LandingBatch, *, dest: StorageLocation, batch: int
) -> LandingBatch:
    """Keep a quarantined batch to the files its first attempt read.

    A batch's rejects are committed before its rows (application transaction
    ``coolie:<dataflow>:quarantine``) and are not written again when the batch is retried. So
    the files an attempt picks are written down first (``_coolie/files/<dataflow>-batch-<n>.json``);
    a retry that finds the batch's rejects committed reads exactly those files, and files that
    arrived in between wait for the next batch — their bad rows are quarantined then, not lost.
    """
    from coolie_core.quarantine import quarantine_location

    intent = _checkpoint_dir(dest).join(f"{flow.name}-batch-{batch:010d}.json")
    table = quarantine_location(catalog, flow)
    done = (
        delta_table(table).transaction_version(f"coolie:{flow.name}:quarantine")
        if delta_table_exists(table)
        else None
    )
    if done is not None and done >= batch:
        try:
            keys = set(json.loads(intent.read_bytes()))
        except FileNotFoundError:
            return picked  # rejects committed before pinning existed: nothing to hold to
        files = tuple(f for f in picked._candidates if f.key in keys)
        return replace(picked, files=files, pending=len(picked._candidates) - len(files))
    _checkpoint_dir(dest).make_dirs()
    intent.write_bytes(json.dumps([f.key for f in picked.files]).encode())
    _checkpoint_dir(dest).join(f"{flow.name}-batch-{batch - 1:010d}.json").delete()  # committed
    return picked
