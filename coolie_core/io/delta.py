"""The delta-rs commit layer both engines write through: one atomic commit per load.

Every commit carries coolie's metadata (dataflow, run id, batch, watermark, window) and, for
incremental batches, the application transaction ``coolie:<dataflow>`` — so the data and the
watermark land together or not at all. The loads themselves are the engines': a collected frame
(:func:`coolie_core.engines.polars.write.write_delta`), a stream of Arrow batches
(:func:`write_delta_batches`, the Polars engine's streamed path), Parquet files Spark tasks wrote
(:mod:`coolie_core.engines.spark.write`).
"""

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from coolie_core.errors import DataError, TransientError, WriteError
from coolie_core.io.delta_log import newest_version
from coolie_core.models import DestinationSpec
from coolie_core.storage import (
    StorageLocation,
    as_location,
    delta_table,
    delta_table_exists,
    refresh,
    table_options,
)
from coolie_core.watermarks import (
    ACCOUNTS_KEY,
    BATCH_KEY,
    DATAFLOW_KEY,
    LISTED_AT_KEY,
    RUN_ID_KEY,
    SOURCE_KEY,
    WATERMARK_KEY,
    WINDOW_KEY,
    Watermark,
    app_id,
    encode_watermark,
)

__all__ = [
    "CommitInfo",
    "WriteResult",
    "batch_snapshot",
    "commit_empty",
    "delta_table_exists",
    "merge_into",
    "note_written",
    "quote",
    "version_after",
    "window_predicate",
    "wrap_delta_error",
    "write_delta_batches",
]


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """What coolie records in a commit besides the data."""

    dataflow: str
    run_id: str
    batch: int | None = None
    """Incremental batch number: also the application transaction version."""
    watermark: Watermark | None = None
    window: str | None = None
    source: str | None = None
    """Fingerprint of the source as read."""
    extra: dict[str, str] = field(default_factory=dict)
    app_transaction: tuple[str, int] | None = None
    """Overrides the default ``(coolie:<dataflow>, batch)`` transaction (replay chunks use their own)."""
    listed_at: int | None = None
    """When the batch listed its source files (ns since the epoch)."""
    accounts: dict[str, int] | None = None
    """The batch's row accounting; the writer sets ``rows_written`` before it commits."""

    def properties(self) -> Any:
        from deltalake import CommitProperties, Transaction

        metadata = {DATAFLOW_KEY: self.dataflow, RUN_ID_KEY: self.run_id, **self.extra}
        transactions = []
        if self.batch is not None:
            metadata[BATCH_KEY] = str(self.batch)
            transactions.append(Transaction(app_id=app_id(self.dataflow), version=self.batch))
        if self.app_transaction is not None:
            transactions.append(Transaction(app_id=self.app_transaction[0], version=self.app_transaction[1]))
        if self.watermark is not None:
            metadata[WATERMARK_KEY] = encode_watermark(self.watermark)
        if self.window is not None:
            metadata[WINDOW_KEY] = self.window
        if self.source is not None:
            metadata[SOURCE_KEY] = self.source
        if self.listed_at is not None:
            metadata[LISTED_AT_KEY] = str(self.listed_at)
        if self.accounts is not None:
            metadata[ACCOUNTS_KEY] = json.dumps(self.accounts, sort_keys=True)
        return CommitProperties(custom_metadata=metadata, app_transactions=transactions or None)


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows_written: int
    version: int | None
    """Delta version of the commit (None when nothing was committed)."""
    metrics: dict[str, Any] = field(default_factory=dict)


def quote(column: str) -> str:
    """Quote a column name for delta-rs SQL predicates."""
    return '"' + column.replace('"', '""') + '"'


def _literal(value: Any, dtype: pl.DataType | None, timezone: str) -> str:
    if isinstance(value, dt.datetime):
        if dtype == pl.Date():
            # A window boundary is local midnight in the partition timezone: compare its local date.
            local = value.astimezone(ZoneInfo(timezone)) if value.tzinfo else value
            return f"'{local.date().isoformat()}'"
        return f"'{value.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"unsupported window bound {value!r}")


def window_predicate(
    column: str, bounds: Sequence[tuple[Any, Any]], dtype: pl.DataType | None, *, timezone: str = "UTC"
) -> str:
    """``(col >= lo AND col < hi) OR ...`` for delta-rs, bounds as typed literals.

    Against a ``Date`` column, datetime bounds become dates in the partition ``timezone``.
    """
    parts = [
        f"({quote(column)} >= {_literal(lo, dtype, timezone)} AND {quote(column)} < {_literal(hi, dtype, timezone)})"
        for lo, hi in bounds
    ]
    return " OR ".join(parts) if parts else "false"


def wrap_delta_error(
    exc: Exception, *, dataflow: str, table: "StorageLocation | os.PathLike[str]"
) -> Exception:
    from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError

    if isinstance(exc, CommitFailedError):
        return TransientError(f"dataflow {dataflow}: commit conflict on {table}: {exc}")
    if isinstance(exc, SchemaMismatchError):
        return WriteError(f"dataflow {dataflow}: the data's schema does not match table {table}: {exc}")
    if isinstance(exc, DeltaError):
        return WriteError(f"dataflow {dataflow}: writing {table} failed: {exc}")
    if isinstance(exc, OSError):
        return TransientError(f"dataflow {dataflow}: I/O error writing {table}: {exc}")
    return exc


def version_after(path: StorageLocation, snapshot: Any) -> int:
    """The version a write just committed: the snapshot written against follows its own commit;
    a new local table's newest log file names it (no second table load, issue 17)."""
    if snapshot is not None:
        committed: int = snapshot.version()
        return committed
    newest = newest_version(path)
    return newest if newest is not None else int(delta_table(path).version())


def batch_snapshot(
    where: "StorageLocation | os.PathLike[str]", info: CommitInfo, *, table: Any = None
) -> Any:
    """The table a batch is written against; a batch another run committed meanwhile is a conflict.

    ``table``: the table as this run loaded it earlier (for its schema), brought up to date here
    by reading only the log's newer commits instead of loading it again (issue 17).
    """
    path = as_location(where)
    if table is None:
        table = delta_table(path)
    else:
        refresh(table, path)
    if info.batch is not None and (table.transaction_version(app_id(info.dataflow)) or 0) >= info.batch:
        raise TransientError(
            f"dataflow {info.dataflow}: batch {info.batch} was committed to {path} by another run meanwhile"
        )
    return table


def merge_into(
    table: Any, source: Any, *, destination: Any, info: CommitInfo, evolve: bool
) -> dict[str, Any]:
    """delta-rs' merge of ``source`` (a frame or an Arrow stream) into ``table`` on the merge keys:
    matched rows updated, new ones inserted, change-feed deletes applied; the merge metrics."""
    predicate = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in destination.merge_keys)
    merger = table.merge(
        source=source,
        predicate=predicate,
        source_alias="s",
        target_alias="t",
        merge_schema=evolve,
        commit_properties=info.properties(),
    )
    if destination.cdc is not None:
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in destination.cdc.delete)
        is_delete = f"CAST(s.{quote(destination.cdc.column)} AS STRING) IN ({values})"
        merger = (
            merger.when_matched_delete(predicate=is_delete)
            .when_matched_update_all(predicate=f"NOT ({is_delete})")
            .when_not_matched_insert_all(predicate=f"NOT ({is_delete})")
        )
    else:
        merger = merger.when_matched_update_all().when_not_matched_insert_all()
    return dict(merger.execute())


def note_written(info: CommitInfo, rows: int) -> None:
    """Record the rows a commit writes in its accounting (read back by a retry of the batch)."""
    if info.accounts is not None:
        info.accounts["rows_written"] = rows


def commit_empty(
    where: "StorageLocation | str | os.PathLike[str]", *, info: CommitInfo, table: Any = None
) -> int:
    """Commit a batch that writes no rows (its watermark, source and accounting); the version.

    A batch whose rows were all filtered, late or quarantined still moves the dataflow on, so
    the next run neither reads nor reports those rows again. ``path`` must hold a table;
    ``table``: that table as the caller loaded it (see :func:`batch_snapshot`).
    """
    from deltalake import write_deltalake

    path = as_location(where)
    note_written(info, 0)
    table = batch_snapshot(path, info, table=table)
    from arro3.core import Table  # delta-rs' Arrow library: no pandas import, unlike pyarrow

    empty = Table.from_batches([], schema=table.schema().to_arrow())
    try:
        write_deltalake(table, empty, mode="append", commit_properties=info.properties())
    except Exception as exc:
        wrapped = wrap_delta_error(exc, dataflow=info.dataflow, table=path)
        if wrapped is exc:
            raise
        raise wrapped from exc
    return version_after(path, table)


def write_delta_batches(
    where: "StorageLocation | str | os.PathLike[str]",
    batches: Any,
    *,
    destination: DestinationSpec,
    info: CommitInfo,
    evolve_schema: bool = False,
    table: Any = None,
) -> int:
    """Append or overwrite from a stream of Arrow record batches in one commit; the Delta version.

    ``batches`` is anything Arrow can stream (a ``pyarrow.RecordBatchReader``): delta-rs writes
    the files as the batches arrive, so the rows never sit in memory whole. Same commit
    metadata, snapshot check and error mapping as
    :func:`coolie_core.engines.polars.write.write_delta`; used for
    ``append``/``overwrite`` only (the other loads need the whole frame). ``table``: the table
    as the caller loaded it (see :func:`batch_snapshot`), None to load it here.
    """
    from deltalake import write_deltalake

    path = as_location(where)
    load = destination.load
    if load not in ("append", "overwrite"):
        raise ValueError(f"write_delta_batches writes append and overwrite loads, not {load}")
    exists = table is not None or delta_table_exists(path)
    snapshot = batch_snapshot(path, info, table=table) if exists else None
    try:
        write_deltalake(
            path.uri if snapshot is None else snapshot,
            batches,
            mode=load,
            partition_by=destination.partition_by or None,
            schema_mode="overwrite" if load == "overwrite" else "merge" if evolve_schema else None,
            commit_properties=info.properties(),
            **(table_options(path) if snapshot is None else {}),
        )
        return version_after(path, snapshot)
    except (DataError, WriteError, TransientError):
        raise
    except Exception as exc:
        wrapped = wrap_delta_error(exc, dataflow=info.dataflow, table=path)
        if wrapped is exc:
            raise
        raise wrapped from exc
