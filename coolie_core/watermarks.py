"""Watermarks: the high-water mark of an incremental dataflow, typed and stored with the data.

A watermark maps each watermark column to the greatest value loaded so far. Values keep their
type through a lossless JSON encoding (``{"type": "datetime", "value": "2024-01-01T00:00:00+00:00"}``).

Where it lives:

* Delta destinations: in the custom metadata of the very commit that wrote the rows
  (``coolie.watermark``), together with a delta-rs application transaction
  ``coolie:<dataflow>`` whose version counts the dataflow's batches. Data and watermark are one
  atomic commit: a crash leaves either both or neither.
* Parquet destinations: a small SQLite file (:class:`SqliteWatermarkStore`); the writer tags
  files with the batch number so that files of an uncommitted batch are removed on the next run.

A watermark never moves backwards and is never silently reset: an unreadable value raises
:class:`~coolie_core.errors.WatermarkError` naming the dataflow and the store.
"""

import datetime as dt
import decimal
import json
import os
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from coolie_core.errors import WatermarkError

if TYPE_CHECKING:
    from coolie_core.storage import StorageLocation

__all__ = [
    "ACCOUNTS_KEY",
    "BATCH_KEY",
    "DATAFLOW_KEY",
    "FILES_KEY",
    "LISTED_AT_KEY",
    "RUN_ID_KEY",
    "SOURCE_KEY",
    "WATERMARK_KEY",
    "WINDOW_KEY",
    "SqliteWatermarkStore",
    "StoredWatermark",
    "Watermark",
    "app_id",
    "decode_watermark",
    "encode_watermark",
    "max_watermark",
    "read_delta_watermark",
]

Watermark = dict[str, Any]
"""Column name -> greatest value loaded (datetime, date, int, float, Decimal or str)."""

WATERMARK_KEY = "coolie.watermark"
DATAFLOW_KEY = "coolie.dataflow"
RUN_ID_KEY = "coolie.run_id"
BATCH_KEY = "coolie.batch"
WINDOW_KEY = "coolie.window"
SOURCE_KEY = "coolie.source"
LISTED_AT_KEY = "coolie.listed_at"
"""When the batch listed its source files (ns since the epoch): later files are new data."""
ACCOUNTS_KEY = "coolie.rows"
"""The batch's row accounting (rows read, written, quarantined, filtered, late, ...) as JSON."""
FILES_KEY = "coolie.files"
"""``incremental: files``: the loaded-file ledger after the batch (see :mod:`coolie_core.landing`)."""


def app_id(dataflow: str) -> str:
    """The delta-rs application transaction id of a dataflow's incremental batches."""
    return f"coolie:{dataflow}"


@dataclass(frozen=True, slots=True)
class StoredWatermark:
    """A watermark as found in a store, with the batch number that committed it."""

    value: Watermark | None
    batch: int
    """Number of batches committed so far (0 = never ran)."""
    source: str | None = None
    """Fingerprint of the source as it was read by the last batch (unchanged source: no run)."""
    listed_at: int | None = None
    """When the last batch listed its source files (ns since the epoch)."""
    run_id: str | None = None
    """The run that committed the last batch."""
    accounts: dict[str, int] | None = None
    """The last batch's row accounting, as recorded with it."""
    files: str | None = None
    """``incremental: files``: the loaded-file ledger recorded with the last batch (JSON)."""


def _accounts(text: Any) -> dict[str, int] | None:
    if text is None:
        return None
    try:
        raw = json.loads(str(text))
        return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else None
    except (ValueError, TypeError):
        return None  # bookkeeping only: an unreadable record is no reason to stop a load


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _encode_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return {"type": "datetime_naive", "value": value.isoformat()}
        return {"type": "datetime", "value": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, int):
        return {"type": "int", "value": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, float):
        return {"type": "float", "value": value.hex()}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    raise TypeError(f"unsupported watermark value {value!r} of type {type(value).__name__}")


_DECODERS: dict[str, Any] = {
    "bool": bool,
    "datetime": dt.datetime.fromisoformat,
    "datetime_naive": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "int": int,
    "decimal": decimal.Decimal,
    "float": float.fromhex,
    "string": str,
}


def encode_watermark(watermark: Mapping[str, Any]) -> str:
    """Serialise a watermark losslessly to JSON.

    >>> encode_watermark({"id": 42})
    '{"id": {"type": "int", "value": "42"}}'
    """
    return json.dumps({column: _encode_value(v) for column, v in watermark.items()}, sort_keys=True)


def decode_watermark(text: str, *, dataflow: str, store: str) -> Watermark:
    """Parse what :func:`encode_watermark` wrote.

    Raises:
        WatermarkError: the text is not a valid watermark (names the dataflow and the store).
    """
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        return {column: _DECODERS[item["type"]](item["value"]) for column, item in raw.items()}
    except (ValueError, TypeError, KeyError, decimal.InvalidOperation) as exc:
        raise WatermarkError(
            f"dataflow {dataflow}: the stored watermark in {store} is corrupt ({exc!s}: {text[:120]!r}). "
            "Fix or reset it explicitly (`coolie` never falls back to a silent full reload)."
        ) from exc


def max_watermark(
    frame: pl.DataFrame, columns: list[str], previous: Watermark | None, *, dataflow: str
) -> Watermark | None:
    """The new watermark: per column, the max over the rows read, never below ``previous``.

    Returns ``previous`` when ``frame`` is empty (nothing read, nothing advances).
    """
    if frame.height == 0 or not columns:
        return previous
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise WatermarkError(
            f"dataflow {dataflow}: watermark column(s) {missing} not in the data ({frame.columns})"
        )
    maxima = frame.select(pl.col(columns).max()).row(0, named=True)
    result: Watermark = {}
    for column in columns:
        new = maxima[column]
        old = (previous or {}).get(column)
        if new is None:
            result[column] = old
        elif old is None:
            result[column] = new
        else:
            try:
                result[column] = max(old, new)
            except TypeError as exc:
                raise WatermarkError(
                    f"dataflow {dataflow}: watermark column {column} changed type "
                    f"(stored {type(old).__name__} {old!r}, now {type(new).__name__} {new!r})"
                ) from exc
    return {k: v for k, v in result.items() if v is not None} or None


def _missing_watermark(dataflow: str, store: str, batch: int) -> WatermarkError:
    return WatermarkError(
        f"dataflow {dataflow}: {store} records batch {batch} without a watermark (coolie.watermark), "
        "so the stored watermark is corrupt. Restore or reset it explicitly (`coolie` never falls "
        "back to a silent full reload)."
    )


def read_delta_watermark(
    table_path: "StorageLocation | str | os.PathLike[str]",
    *,
    dataflow: str,
    history_limit: int = 50,
    require_watermark: bool = False,
) -> StoredWatermark:
    """Find a dataflow's watermark in its Delta destination's commit log.

    The application transaction version says how many batches were committed; the newest commit
    carrying that batch holds the watermark. Only the newest commits are read; older ones are
    read only when the newest hold none of this dataflow's batches (e.g. after maintenance).

    ``require_watermark``: the dataflow has watermark columns, so a recorded batch without a
    watermark is corrupt (never "no watermark yet").

    Raises:
        WatermarkError: a batch is recorded but its commit (and so its watermark) cannot be found
            or read, or carries no watermark although ``require_watermark``.
    """
    from deltalake.exceptions import TableNotFoundError

    from coolie_core.io.delta_log import newest_batch_commit
    from coolie_core.storage import as_location, delta_table

    location = as_location(table_path)
    store = f"Delta table {location}"
    # The newest commit alone when it is this dataflow's batch (no table load: issue 17).
    newest = newest_batch_commit(
        location, app=app_id(dataflow), dataflow_key=DATAFLOW_KEY, batch_key=BATCH_KEY, dataflow=dataflow
    )
    try:
        table: Any = newest or delta_table(location)
    except TableNotFoundError:
        return StoredWatermark(None, 0)
    batch = table.transaction_version(app_id(dataflow)) or 0
    if batch == 0:
        return StoredWatermark(None, 0)
    limit = history_limit
    while True:
        history = table.history(limit=limit)
        for commit in history:  # newest first
            if commit.get(DATAFLOW_KEY) == dataflow and str(commit.get(BATCH_KEY)) == str(batch):
                text = commit.get(WATERMARK_KEY)
                if text is None and require_watermark:
                    raise _missing_watermark(dataflow, store, batch)
                value = None if text is None else decode_watermark(str(text), dataflow=dataflow, store=store)
                source = commit.get(SOURCE_KEY)
                run_id = commit.get(RUN_ID_KEY)
                accounts = _accounts(commit.get(ACCOUNTS_KEY))
                if accounts is not None and "rows_written" not in accounts:
                    # A streamed batch knows its rows only once written: the commit's metrics do.
                    added = _int_or_none((commit.get("operationMetrics") or {}).get("num_added_rows"))
                    if added is not None:
                        accounts["rows_written"] = added
                return StoredWatermark(
                    value,
                    batch,
                    source=None if source is None else str(source),
                    listed_at=_int_or_none(commit.get(LISTED_AT_KEY)),
                    run_id=None if run_id is None else str(run_id),
                    accounts=accounts,
                    files=None if commit.get(FILES_KEY) is None else str(commit.get(FILES_KEY)),
                )
        if len(history) < limit:
            raise WatermarkError(
                f"dataflow {dataflow}: {store} records batch {batch} but its commit is no longer in "
                "the log (log retention?). Restore the watermark explicitly before running again."
            )
        limit *= 10


_TABLE = (
    "CREATE TABLE IF NOT EXISTS watermarks (dataflow TEXT PRIMARY KEY, batch INTEGER NOT NULL,"
    " watermark TEXT, source TEXT, updated_at TEXT NOT NULL, listed_at TEXT, run_id TEXT, accounts TEXT,"
    " files TEXT)"
)
_ADDED_COLUMNS = ("listed_at", "run_id", "accounts", "files")
"""Columns added after the first stores were made: an older store gains them."""


def _create_or_upgrade(conn: sqlite3.Connection) -> None:
    """Make the table, or add the columns an older store lacks, as ONE writer: dataflows of a run
    (threads) and of other processes open a new store at the same moment, and two ALTER TABLEs
    of the same column would fail the second."""
    conn.execute("BEGIN IMMEDIATE")  # the others wait here (the connection's timeout)
    try:
        conn.execute(_TABLE)
        present = {row[1] for row in conn.execute("PRAGMA table_info(watermarks)")}
        for column in _ADDED_COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE watermarks ADD COLUMN {column} TEXT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteWatermarkStore:
    """Watermarks of non-Delta destinations in a SQLite file (one row per dataflow)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            try:
                _create_or_upgrade(conn)
            except BaseException:
                conn.close()
                raise
            self._ready = True
        return conn

    def read(self, dataflow: str, *, require_watermark: bool = False) -> StoredWatermark:
        """The stored batch of ``dataflow``; see :func:`read_delta_watermark` for ``require_watermark``."""
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT batch, watermark, source, listed_at, run_id, accounts, files FROM watermarks WHERE dataflow = ?",
                (dataflow,),
            ).fetchone()
        if row is None:
            return StoredWatermark(None, 0)
        if row[1] is None and require_watermark and int(row[0]) > 0:
            raise _missing_watermark(dataflow, f"watermark store {self.path}", int(row[0]))
        value = None if row[1] is None else decode_watermark(row[1], dataflow=dataflow, store=str(self.path))
        return StoredWatermark(
            value, int(row[0]), row[2], _int_or_none(row[3]), row[4], _accounts(row[5]), row[6]
        )

    def commit(
        self,
        dataflow: str,
        *,
        batch: int,
        watermark: Mapping[str, Any] | None,
        source: str | None = None,
        listed_at: int | None = None,
        run_id: str | None = None,
        accounts: Mapping[str, int] | None = None,
        files: str | None = None,
    ) -> None:
        """Record ``batch`` as committed with ``watermark`` (atomic; batches only move forward)."""
        text = None if watermark is None else encode_watermark(watermark)
        now = dt.datetime.now(dt.UTC).isoformat()
        with closing(self._connect()) as conn, conn:
            current = conn.execute("SELECT batch FROM watermarks WHERE dataflow = ?", (dataflow,)).fetchone()
            if current is not None and int(current[0]) >= batch:
                raise WatermarkError(
                    f"dataflow {dataflow}: batch {batch} is not after the stored batch {current[0]} in {self.path}"
                )
            conn.execute(
                "INSERT INTO watermarks (dataflow, batch, watermark, source, updated_at, listed_at, run_id,"
                " accounts, files) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(dataflow) DO UPDATE SET batch = excluded.batch, watermark = excluded.watermark,"
                " source = excluded.source, updated_at = excluded.updated_at, listed_at = excluded.listed_at,"
                " run_id = excluded.run_id, accounts = excluded.accounts, files = excluded.files",
                (
                    dataflow,
                    batch,
                    text,
                    source,
                    now,
                    None if listed_at is None else str(listed_at),
                    run_id,
                    None if accounts is None else json.dumps(dict(accounts), sort_keys=True),
                    files,
                ),
            )
