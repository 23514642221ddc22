"""Replay a range of a dataflow in calendar-aligned chunks, resumable and idempotent.

Each chunk ``[lo, hi)`` reads exactly the source rows inside it and replaces that window of the
destination in one Delta commit. Chunks of one dataflow commit in calendar order; the next
chunk is read while the current one is written (a prefetch of one).

Resume: every chunk commit carries the application transaction ``coolie:<dataflow>:replay:<id>``
with version = chunk number, where ``<id>`` hashes the range, the cadence and the source's
fingerprint. Running the same replay again skips the chunks already committed (a crashed replay
resumes at the first missing chunk; a finished one writes nothing); a changed source — or
``force`` — makes a new replay id and replays everything.

The production watermark is untouched unless ``save_watermark``: then, after the last chunk, one
more commit sets it to the greatest partition value now in the replayed range, so the next
incremental run (``>``) loads rows at or after the replay's end exactly once. That hand-over needs
the dataflow's only watermark column to be its partition column.

Quarantine (Polars engine): each chunk's rows are checked against the rules; the rejects are
appended to the quarantine table *before* the chunk's rows, under the application transaction
``coolie:<dataflow>:quarantine:replay:<id>`` with version = chunk number, so a replay resumed
after a crash between the two commits neither writes them twice nor loses them.
``max_rejected`` applies per chunk (the rejects stay recorded, the replay stops there).
"""

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from coolie_core.catalog import LoadedCatalog
from coolie_core.columns import add_system_columns
from coolie_core.engines import DistributedRows, engine_for
from coolie_core.engines.polars.transform import cdc_deleted, latest_per_key
from coolie_core.errors import CatalogError, CatalogIssue, CoolieError
from coolie_core.faults import fault_point
from coolie_core.io.delta import CommitInfo
from coolie_core.io.sources import fingerprint_source
from coolie_core.locations import destination_storage
from coolie_core.models import Catalog, Dataflow, PartitionSpec
from coolie_core.quarantine import check_threshold, quarantine_location, split_rejects
from coolie_core.storage import (
    StorageLocation,
    delta_table,
    delta_table_exists,
    library_options,
    table_options,
)
from coolie_core.watermarks import Watermark, max_watermark, read_delta_watermark
from coolie_core.windows import Bound, Window, plan_windows

__all__ = [
    "ChunkResult",
    "ReplayResult",
    "check_window_run",
    "plan_replay",
    "prepare_window_rows",
    "replay_dataflow",
]

Every = Literal["year", "quarter", "month", "week", "day", "hour", "minute", "integer"]


@dataclass(frozen=True, slots=True)
class ChunkResult:
    window: str
    status: Literal["committed", "skipped", "failed"]
    rows: int = 0
    version: int | None = None
    error: str | None = None
    rejected: int = 0
    """Rows of the chunk its quarantine rules rejected (in the quarantine table)."""


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of replaying one dataflow."""

    dataflow: str
    status: Literal["succeeded", "failed"]
    replay_id: str
    chunks: list[ChunkResult] = field(default_factory=list)
    watermark_after: Watermark | None = None
    error: str | None = None

    @property
    def committed(self) -> int:
        return sum(1 for c in self.chunks if c.status == "committed")

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.chunks if c.status == "skipped")

    def to_record(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "dataflow": self.dataflow,
            "kind": "replay",
            "status": self.status,
            "replay_id": self.replay_id,
            "chunks_committed": self.committed,
            "chunks_skipped": self.skipped,
            "rows_written": sum(c.rows for c in self.chunks),
            "rows_rejected": sum(c.rejected for c in self.chunks),
            "windows": [c.window for c in self.chunks if c.status == "committed"],
            "error": self.error,
        }


def _problem(loaded: LoadedCatalog, flow: Dataflow, field_name: str, message: str) -> CatalogError:
    return CatalogError(
        [CatalogIssue(loaded.origins.get(flow.name, str(loaded.path)), flow.name, field_name, message)]
    )


def check_window_run(loaded: LoadedCatalog, flow: Dataflow) -> None:
    """Raise a CatalogError unless ``flow`` can load one window at a time (replay, partitions)."""
    if flow.partitions is None:
        raise _problem(
            loaded, flow, "partitions", "replay needs partitions (column and chunk size) in the catalog"
        )
    if flow.load == "scd2":
        raise _problem(
            loaded, flow, "destination.load", "scd2 history cannot be replayed by window; reload it"
        )
    if flow.destination.format != "delta":
        raise _problem(loaded, flow, "destination.format", "replay needs a Delta destination")


def plan_replay(
    loaded: LoadedCatalog,
    flow: Dataflow,
    *,
    start: Bound | None,
    end: Bound | None,
    every: Every | None = None,
    save_watermark: bool = False,
) -> tuple[PartitionSpec, list[Window]]:
    """Check a replay request and list its chunks (reads and writes nothing).

    Raises:
        CatalogError: the dataflow cannot be replayed as asked (no partitions, scd2, quarantine...).
    """
    check_window_run(loaded, flow)
    assert flow.partitions is not None
    if flow.quarantine is not None and loaded.catalog.engine_for(flow) == "spark":
        # Spark chunks stay on the executors and skip the quarantine split: refused, not loaded.
        raise _problem(
            loaded,
            flow,
            "quarantine",
            "replay applies quarantine rules on the polars engine only; replay with engine: polars "
            "or load these windows as Dagster partition runs (a backfill)",
        )
    if save_watermark and flow.watermark_columns != [flow.partitions.column]:
        raise _problem(
            loaded,
            flow,
            "watermark_columns",
            f"--save-watermark hands over to incremental mode only when the watermark column is the "
            f"partition column ({flow.partitions.column})",
        )
    spec = flow.partitions
    if every is not None and every != spec.every:
        spec = spec.model_copy(update={"every": every, "step": 1})
    try:
        windows = plan_windows(spec, start=start, end=end)
    except ValueError as exc:
        raise _problem(loaded, flow, "partitions", str(exc)) from None
    return spec, windows


def _replay_id(
    flow: Dataflow, spec: PartitionSpec, windows: list[Window], fingerprint: str | None, nonce: str
) -> str:
    first, last = (windows[0].key, windows[-1].key) if windows else ("", "")
    text = json.dumps(
        [flow.name, spec.every, spec.step, spec.timezone, first, last, len(windows), fingerprint, nonce]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_window_rows(flow: Dataflow, frame: pl.DataFrame) -> pl.DataFrame:
    """A merge's window holds the latest row per key, minus keys the change feed deleted."""
    destination = flow.destination
    if flow.load != "merge":
        return frame
    keys = destination.merge_keys
    order = [c for c in flow.watermark_columns if c in frame.columns]
    latest = latest_per_key(frame.lazy(), keys, order)
    if destination.cdc is not None:
        latest = latest.filter(~cdc_deleted(destination.cdc))
    return latest.collect()


def replay_dataflow(
    loaded: LoadedCatalog,
    flow: Dataflow,
    *,
    run_id: str,
    start: Bound | None,
    end: Bound | None,
    every: Every | None = None,
    save_watermark: bool = False,
    force: bool = False,
    on_chunk: Callable[[ChunkResult], None] | None = None,
) -> ReplayResult:
    """Replay ``flow`` over ``[start, end)`` chunk by chunk (see the module docstring)."""
    catalog = loaded.catalog
    spec, windows = plan_replay(
        loaded, flow, start=start, end=end, every=every, save_watermark=save_watermark
    )
    dest = destination_storage(catalog, flow)
    fingerprint = fingerprint_source(catalog, flow)
    replay_id = _replay_id(flow, spec, windows, fingerprint, run_id if force else "")
    app = f"coolie:{flow.name}:replay:{replay_id}"
    done = (delta_table(dest).transaction_version(app) or 0) if delta_table_exists(dest) else 0
    flow_for_read = flow.model_copy(update={"partitions": spec})
    # An engine may keep a large chunk on its executors (Spark): its tasks write it.
    engine = engine_for(catalog, flow)
    read_window = engine.read_window
    destination = flow.destination.model_copy(update={"load": "replace_window"})
    chunks: list[ChunkResult] = []

    def emit(chunk: ChunkResult) -> None:
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)

    todo = [(i, w) for i, w in enumerate(windows, start=1) if i > done]
    for _, window in [(i, w) for i, w in enumerate(windows, start=1) if i <= done]:
        emit(ChunkResult(window.key, "skipped"))
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"prefetch-{flow.name}") as prefetch:
            pending: Future[pl.DataFrame | DistributedRows] | None = None
            for position, (number, window) in enumerate(todo):
                frame = (
                    pending.result()
                    if pending is not None
                    else read_window(catalog, flow_for_read, window=window)
                )
                pending = None
                if position + 1 < len(todo):
                    pending = prefetch.submit(
                        read_window, catalog, flow_for_read, window=todo[position + 1][1]
                    )
                info = CommitInfo(
                    dataflow=flow.name, run_id=run_id, window=window.key, app_transaction=(app, number)
                )
                if not isinstance(frame, pl.DataFrame):  # prepared by the engine, written by its tasks
                    like, system = _like(frame, flow, run_id=run_id)
                    written = engine.write(
                        frame, flow=flow, dest=dest, destination=destination, info=info, like=like,
                        system_columns=system,
                    )  # fmt: skip
                    emit(ChunkResult(window.key, "committed", written.rows_written, written.version))
                    fault_point("after_chunk", flow.name)
                    continue
                rejected = 0
                if flow.quarantine is not None:  # before the chunk's rows (see the module docs)
                    frame, rejected = _quarantine_chunk(
                        catalog, flow, frame, run_id=run_id, window=window.key,
                        app=f"coolie:{flow.name}:quarantine:replay:{replay_id}", number=number,
                    )  # fmt: skip
                data = prepare_window_rows(flow, frame)
                if flow.system_columns:
                    data = add_system_columns(
                        data.lazy(), loaded_at=dt.datetime.now(dt.UTC), run_id=run_id
                    ).collect()
                # The replay's partitions (``every`` may differ from the catalog's) name the window.
                written = engine.write(
                    data, flow=flow_for_read, dest=dest, destination=destination, info=info, like=data,
                    system_columns=None, windows=[(window.lo, window.hi)],
                )  # fmt: skip
                emit(
                    ChunkResult(
                        window.key, "committed", written.rows_written, written.version, rejected=rejected
                    )
                )
                fault_point("after_chunk", flow.name)
    except CoolieError as exc:
        return ReplayResult(flow.name, "failed", replay_id, chunks, error=str(exc))
    except Exception as exc:
        return ReplayResult(flow.name, "failed", replay_id, chunks, error=f"{type(exc).__name__}: {exc}")

    watermark = None
    if save_watermark and windows:
        watermark = _hand_over(flow, dest, run_id=run_id, lo=windows[0].lo, hi=windows[-1].hi)
    return ReplayResult(flow.name, "succeeded", replay_id, chunks, watermark_after=watermark)


def _quarantine_chunk(
    catalog: Catalog,
    flow: Dataflow,
    frame: pl.DataFrame,
    *,
    run_id: str,
    window: str,
    app: str,
    number: int,
) -> tuple[pl.DataFrame, int]:
    """Split a chunk's rejects off and record them once per replay and chunk.

    Raises:
        DataError: more rows rejected than ``max_rejected`` (they are recorded first).
    """
    from deltalake import CommitProperties, Transaction

    good, rejects = split_rejects(frame, flow, run_id=run_id, window=window)
    if rejects.count == 0:
        return good, 0
    table = quarantine_location(catalog, flow)
    done = delta_table(table).transaction_version(app) if delta_table_exists(table) else None
    if done is None or done < number:
        properties = CommitProperties(
            custom_metadata={
                "coolie.dataflow": flow.name,
                "coolie.run_id": run_id,
                "coolie.kind": "quarantine",
                "coolie.window": window,
            },
            app_transactions=[Transaction(app_id=app, version=number)],
        )
        rejects.append_to(table, properties=properties)
        fault_point("after_quarantine", flow.name)
    check_threshold(flow, rejects, table=table)
    return good, rejects.count


def _like(
    rows: DistributedRows, flow: Dataflow, *, run_id: str
) -> tuple[pl.DataFrame, tuple[dt.datetime, str] | None]:
    """A chunk the engine kept (Spark): the stand-in of its columns and its system columns (its
    tasks replace the window, one commit carries the chunk's info)."""
    like, system = rows.empty(), None
    if flow.system_columns:
        system = (dt.datetime.now(dt.UTC), run_id)
        like = add_system_columns(like.lazy(), loaded_at=system[0], run_id=run_id).collect()
    return like, system


def _hand_over(flow: Dataflow, dest: StorageLocation, *, run_id: str, lo: Any, hi: Any) -> Watermark | None:
    """Commit the production watermark = the greatest partition value in the replayed range."""
    from deltalake import write_deltalake

    assert flow.partitions is not None
    column = flow.partitions.column
    if not delta_table_exists(dest):
        return None
    table = pl.scan_delta(dest.uri, storage_options=library_options(dest))
    from coolie_core.engines.polars.filters import window_expr

    schema = table.collect_schema()
    bounds = window_expr(column, lo, hi, schema, where=flow.name, timezone=flow.partitions.timezone)
    inside = table.filter(bounds).select(column)
    frame = inside.collect()
    state = read_delta_watermark(dest, dataflow=flow.name)
    watermark = max_watermark(frame, [column], state.value, dataflow=flow.name)
    if watermark is None or watermark == state.value:
        return watermark
    empty = pl.scan_delta(dest.uri, storage_options=library_options(dest)).head(0).collect()
    info = CommitInfo(dataflow=flow.name, run_id=run_id, batch=state.batch + 1, watermark=watermark)
    write_deltalake(
        dest.uri,
        empty.to_arrow(),
        mode="append",
        commit_properties=info.properties(),
        **table_options(dest),
    )
    return watermark
