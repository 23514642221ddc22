"""One batch's bookkeeping, the same on every engine: what is new since the last batch, which rows
were marked not to load (and why), the bounds a SQL source applies, what a streamed batch did.

The rows not to load come back marked in :data:`~coolie_core.columns.DROPPED` with the reason
(see :mod:`coolie_core.engines.polars.read`): :func:`split_marked` separates them and
:func:`tally_counts` turns the reasons into the run record's counts.

>>> tally_counts({"filter": 2, "dedup": 1, "late": 4})
{'rows_filtered': 3, 'rows_late': 4, 'rows_without_watermark': 0}
"""

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from coolie_core.columns import DROPPED
from coolie_core.drift import SchemaChange
from coolie_core.io.sources import SqlBound, is_empty_file
from coolie_core.landing import LandingFile
from coolie_core.locations import source_storage
from coolie_core.models import Catalog, Dataflow, DeltaSource, FileSource, SqlSource
from coolie_core.storage import ObjectInfo, StorageLocation, delta_table
from coolie_core.watermarks import Watermark
from coolie_core.windows import Window

__all__ = ["NewData", "StreamedBatch", "new_data", "split_marked", "sql_bounds", "tally_counts"]


@dataclass(frozen=True, slots=True)
class NewData:
    """The part of a source added since the last batch (see :func:`new_data`)."""

    files: tuple[str, ...] = ()
    """New or changed files of a file source (absolute paths)."""
    delta_files: tuple[str, ...] = ()
    """Data files added to a Delta source since the version the last batch read."""
    delta_partitioned: bool = False
    landing: tuple[LandingFile, ...] = ()
    """``incremental: files``: read exactly these files (see :mod:`coolie_core.landing`)."""

    def __bool__(self) -> bool:
        return bool(self.files or self.delta_files)


def split_marked(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rows to load (marker dropped) and how many were marked, per reason."""
    if DROPPED not in frame.columns:
        return frame, {}
    if frame.get_column(DROPPED).null_count() == frame.height:
        return frame.drop(DROPPED), {}  # nothing marked: no filter, which would copy every column
    tally = {
        str(reason): int(n) for reason, n in frame.get_column(DROPPED).drop_nulls().value_counts().iter_rows()
    }
    return frame.filter(pl.col(DROPPED).is_null()).drop(DROPPED), tally


def tally_counts(tally: dict[str, int]) -> dict[str, Any]:
    """The run record's counts of :func:`split_marked`'s reasons."""
    return {
        "rows_filtered": tally.get("filter", 0) + tally.get("dedup", 0),
        "rows_late": tally.get("late", 0),
        "rows_without_watermark": tally.get("no_watermark", 0),
    }


def new_data(catalog: Catalog, flow: Dataflow, *, listed_after: int | None, source: str | None) -> NewData:
    """What a source holds that the last batch did not read.

    Args:
        listed_after: when the last batch listed a file source (ns since the epoch): files
            modified since are new.
        source: the last batch's source fingerprint (``delta:<version>`` for a Delta source).
    """
    location = source_storage(catalog, flow)
    if isinstance(flow.source, FileSource) and location is not None and listed_after is not None:
        return NewData(
            files=tuple(
                info.uri
                for info in location.glob()
                if _modified_since(info, listed_after)
                and not is_empty_file(info, flow.source, location=location)  # a header at most
            )
        )
    if (
        isinstance(flow.source, DeltaSource)
        and location is not None
        and source
        and source.startswith("delta:")
    ):
        return _delta_added(location, since=int(source.split(":", 1)[1]))
    return NewData()


def _modified_since(info: ObjectInfo, listed_after: int) -> bool:
    """Whether a file was (re)written at or after ``listed_after`` (ns since the epoch)."""
    if info.modified_ns is not None:
        return info.modified_ns >= listed_after
    # Object stores keep whole seconds: a file from the second of the last listing counts as
    # listed then (else every file written just before a listing would be new twice).
    return int(info.last_modified.timestamp()) > listed_after // 1_000_000_000


def _commit_text(commit: StorageLocation) -> str | None:
    if commit.is_local:
        return commit.path.read_text(encoding="utf-8") if commit.path.is_file() else None
    try:
        return commit.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def _delta_added(location: StorageLocation, *, since: int) -> NewData:
    """The data files committed to a Delta table after version ``since`` and still in it.

    Read from the commit files of those versions (a few small JSON files), not from two
    snapshots of the table. When a commit file is gone (log retention), the snapshots decide.
    """
    log = location.join("_delta_log")
    added: dict[str, bool] = {}  # path -> partitioned
    removed: set[str] = set()
    version = since + 1
    while (text := _commit_text(log.join(f"{version:020d}.json"))) is not None:
        for line in text.splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added[action["add"]["path"]] = bool(action["add"].get("partitionValues"))
            elif "remove" in action:
                removed.add(action["remove"]["path"])
        version += 1
    if version == since + 1 and log.join("*.json").glob():
        latest = delta_table(location)
        if latest.version() > since:  # the commits after ``since`` are no longer in the log
            before = set(delta_table(location, version=since).file_uris())
            files = tuple(uri for uri in latest.file_uris() if uri not in before)
            return NewData(delta_files=files, delta_partitioned=bool(latest.metadata().partition_columns))
    paths = [p for p in added if p not in removed]
    files = tuple(p if "://" in p else location.join(urllib.parse.unquote(p)).uri for p in paths)
    return NewData(delta_files=files, delta_partitioned=any(added[p] for p in paths))


def _outputs(transform: Any) -> list[str]:
    columns = getattr(transform, "columns", {})
    if transform.kind == "rename":
        return list(columns.values())
    return list(columns)


def sql_bounds(flow: Dataflow, watermark: Watermark | None, window: Window | None) -> list[SqlBound]:
    """Bounds a SQL source applies in the database.

    Only numeric watermarks and integer windows are pushed down: dates stored as text (SQLite)
    would compare as strings. The same filters run again on the typed data, so pushdown only
    ever narrows what is transferred, never what is loaded.
    """
    if not isinstance(flow.source, SqlSource):
        return []
    produced = {c for t in flow.transforms if t.kind in ("rename", "derive", "cast") for c in _outputs(t)}
    bounds = []
    if watermark and len(watermark) == 1 and flow.lookback is None:
        column, value = next(iter(watermark.items()))
        if column not in produced and isinstance(value, int | float) and not isinstance(value, bool):
            bounds.append(SqlBound(column, ">", value))
    partitions = flow.partitions
    if (
        window is not None
        and partitions is not None
        and partitions.column not in produced
        and isinstance(window.lo, int)
    ):
        bounds += [SqlBound(partitions.column, ">=", window.lo), SqlBound(partitions.column, "<", window.hi)]
    return bounds


@dataclass(frozen=True)
class StreamedBatch:
    """What a streamed batch did (:meth:`coolie_core.engines.base.Engine.stream`).

    ``rows_written == 0``: nothing new, no commit.
    """

    rows_read: int
    rows_written: int
    watermark: Watermark | None
    version: int | None
    drift: SchemaChange | None = None
    tally: dict[str, int] = field(default_factory=dict)
    """Rows read but not loaded, per reason (see :func:`split_marked`)."""
