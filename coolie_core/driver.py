"""The Driver: run a catalog's dataflows (plan, read, transform, write, commit, record).

One dataflow run is: read the stored state (watermark, batch, source fingerprint) -> skip when the
source is unchanged -> read (watermark/window pushed down) -> transform -> write one atomic
commit carrying the new watermark -> append a run record. Dataflows of one run go through the
dependency-aware executor; each is retried on transient errors per its retry spec.

>>> from coolie_core.catalog import load_catalog
>>> with Driver(load_catalog("examples/demo/catalog.yaml")) as driver:  # doctest: +SKIP
...     result = driver.run(stage="bronze")
"""

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import polars as pl

from coolie_core.batches import NewData, new_data, split_marked, tally_counts
from coolie_core.catalog import LoadedCatalog
from coolie_core.columns import add_system_columns
from coolie_core.drift import SchemaDriftError, reconcile_schema, table_schema
from coolie_core.engines import DistributedRows, engine_for
from coolie_core.errors import CoolieError, DataError
from coolie_core.executor import TaskEvent, execute
from coolie_core.faults import fault_point
from coolie_core.folder_state import FolderStateStore
from coolie_core.io.delta import CommitInfo, commit_empty, delta_table_exists
from coolie_core.io.parquet import discard_uncommitted
from coolie_core.io.sources import empty_source, fingerprint_source, name_failed_file
from coolie_core.landing import LandingBatch, is_landing, pin_batch, plan_landing, read_landing
from coolie_core.locations import destination_storage
from coolie_core.maintenance import MaintenanceResult, run_maintenance
from coolie_core.models import Dataflow
from coolie_core.planning import PlannedDataflow, plan_dataflows
from coolie_core.quarantine import (
    Rejects,
    check_threshold,
    quarantine_location,
    split_rejects,
    write_quarantine,
)
from coolie_core.replay import (
    ChunkResult,
    Every,
    ReplayResult,
    check_window_run,
    prepare_window_rows,
    replay_dataflow,
)
from coolie_core.retry import RetryAttempt, call_with_retry, is_transient
from coolie_core.runlog import RunLog
from coolie_core.sharding import ShardSpec
from coolie_core.storage import StorageLocation
from coolie_core.watermarks import (
    FILES_KEY,
    SqliteWatermarkStore,
    StoredWatermark,
    Watermark,
    encode_watermark,
    max_watermark,
    read_delta_watermark,
)
from coolie_core.windows import Bound, Window

__all__ = ["DataflowResult", "Driver", "RunResult"]

Status = Literal["succeeded", "skipped", "failed", "planned"]


@dataclass(frozen=True)
class DataflowResult:
    """What one dataflow did in a run."""

    dataflow: str
    status: Status
    run_id: str
    reason: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    watermark_before: Watermark | None = None
    watermark_after: Watermark | None = None
    delta_version: int | None = None
    window: str | None = None
    started_at: dt.datetime | None = None
    duration_s: float = 0.0
    error: str | None = None
    error_type: str | None = None
    transient: bool = False
    """The failure was transient (I/O, commit conflict...): another attempt may succeed."""
    attempts: int = 1
    retries: tuple[str, ...] = ()
    """One line per retried attempt: the error and the delay before the next."""
    rows_rejected: int = 0
    """Rows sent to the quarantine table."""
    rows_filtered: int = 0
    """Rows removed by a declared rule: filter and dedup transforms, the load's own rules."""
    rows_late: int = 0
    """Rows at or below the stored watermark (beyond lookback) in data new since the last batch."""
    rows_without_watermark: int = 0
    """Rows with no value in any watermark column, not loaded (with quarantine: rejected instead)."""
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    quarantine_table: str | None = None
    schema_drift: dict[str, Any] | None = None
    """How the data's columns differed from the table's (see :mod:`coolie_core.drift`)."""
    files: dict[str, Any] | None = None
    """``incremental: files``: files loaded (count, first names), reloaded, ignored, pending."""

    def to_record(self) -> dict[str, Any]:
        """The JSON-friendly run record."""
        return {
            "run_id": self.run_id,
            "dataflow": self.dataflow,
            "status": self.status,
            "reason": self.reason,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "watermark_before": None
            if self.watermark_before is None
            else encode_watermark(self.watermark_before),
            "watermark_after": None
            if self.watermark_after is None
            else encode_watermark(self.watermark_after),
            "delta_version": self.delta_version,
            "window": self.window,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 4),
            "error": self.error,
            "error_type": self.error_type,
            "transient": self.transient,
            "attempts": self.attempts,
            "retries": list(self.retries),
            "rows_rejected": self.rows_rejected,
            "rows_filtered": self.rows_filtered,
            "rows_late": self.rows_late,
            "rows_without_watermark": self.rows_without_watermark,
            "rejected_by_rule": self.rejected_by_rule,
            "quarantine_table": self.quarantine_table,
            "schema_drift": self.schema_drift,
            "files": self.files,
        }


@dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`Driver.run`: one result per dataflow, in plan order."""

    run_id: str
    results: list[DataflowResult] = field(default_factory=list)

    def _count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> int:
        return self._count("succeeded")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def result(self, dataflow: str) -> DataflowResult:
        return next(r for r in self.results if r.dataflow == dataflow)


class _DataflowFailed(Exception):
    """Carries a failed result through the executor (which then skips the downstream)."""

    def __init__(self, result: DataflowResult) -> None:
        super().__init__(result.error)
        self.result = result


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


class Driver:
    """Runs dataflows of one catalog. Use as a context manager; no global state.

    Args:
        catalog: the loaded catalog.
        state_dir: where the run log and the watermark store of non-Delta destinations live
            (default ``.coolie`` beside the catalog).
        run_id: id stamped on every record and commit (generated when omitted).
        retries: apply each dataflow's retry spec (orchestrators with their own retry policy,
            like Dagster, turn this off so retries are not stacked).
        sleep: injected for tests of retry delays.
    """

    def __init__(
        self,
        catalog: LoadedCatalog,
        *,
        state_dir: str | Path | None = None,
        run_id: str | None = None,
        retries: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.loaded = catalog
        base = catalog.path if catalog.path.is_dir() else catalog.path.parent
        self.state_dir = Path(state_dir) if state_dir is not None else base / ".coolie"
        self.run_id = run_id or new_run_id()
        self.retries = retries
        self._sleep = sleep
        self.runlog = RunLog(self.state_dir / "runs")
        self._reported: set[str] = set()
        """Dataflows this driver has run to a result (their batches are not retries)."""
        self.store = SqliteWatermarkStore(self.state_dir / "watermarks.sqlite")

    def __enter__(self) -> "Driver":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    # ------------------------------------------------------------------ planning

    def plan(
        self, *, stage: str | None = None, dataflows: Sequence[str] = (), shard: ShardSpec | None = None
    ) -> list[PlannedDataflow]:
        """The dataflows :meth:`run` would execute, in order. Reads and writes nothing."""
        return plan_dataflows(self.loaded, stage=stage, dataflows=dataflows, shard=shard)

    # ------------------------------------------------------------------ running

    def run(
        self,
        *,
        stage: str | None = None,
        dataflows: Sequence[str] = (),
        shard: ShardSpec | None = None,
        dry_run: bool = False,
        force: bool = False,
        max_workers: int | None = None,
        stop_on_error: bool = False,
        on_event: Callable[[TaskEvent[Any]], None] | None = None,
    ) -> RunResult:
        """Run the selected dataflows in dependency order, independent ones in parallel.

        A failed dataflow fails only itself and skips its downstream. ``dry_run`` plans only.
        ``force`` runs even when the source is unchanged since the last batch.
        """
        planned = self.plan(stage=stage, dataflows=dataflows, shard=shard)
        if dry_run:
            return RunResult(self.run_id, [DataflowResult(p.name, "planned", self.run_id) for p in planned])
        names = [p.name for p in planned]
        upstream = {p.name: p.upstream for p in planned}

        def task(name: str) -> DataflowResult:
            result = self.run_one(self.loaded.catalog.dataflow(name), force=force)
            if result.status == "failed":
                raise _DataflowFailed(result)
            return result

        outcome = execute(
            names,
            upstream=upstream,
            task=task,
            max_workers=max_workers or self.loaded.catalog.defaults.max_workers,
            stop_on_error=stop_on_error,
            on_event=on_event,
        )
        results = []
        for name in names:
            record = outcome.records[name]
            if record.result is not None:
                results.append(record.result)
            elif isinstance(record.error, _DataflowFailed):
                results.append(record.error.result)
            elif record.error is not None:
                results.append(
                    self._failed(name, record.error, attempts=1, started=None, t0=time.monotonic())
                )
            else:
                skipped = DataflowResult(name, "skipped", self.run_id, reason=record.reason)
                self.runlog.append(skipped.to_record())
                results.append(skipped)
        return RunResult(self.run_id, results)

    def run_replay(
        self,
        dataflows: Sequence[str],
        *,
        start: Bound | None = None,
        end: Bound | None = None,
        every: Every | None = None,
        save_watermark: bool = False,
        force: bool = False,
        max_workers: int | None = None,
        on_chunk: Callable[[str, ChunkResult], None] | None = None,
    ) -> list[ReplayResult]:
        """Replay dataflows over ``[start, end)`` in calendar chunks (see :mod:`coolie_core.replay`).

        Dataflows replay in parallel (each uses a second thread to prefetch its next chunk, so at
        most ``max_workers // 2`` run at once); the chunks of one dataflow commit in order.
        """
        catalog = self.loaded.catalog
        planned = self.plan(dataflows=dataflows)
        flows = {p.name: p.dataflow for p in planned}

        def task(name: str) -> ReplayResult:
            result = replay_dataflow(
                self.loaded, flows[name], run_id=self.run_id, start=start, end=end, every=every,
                save_watermark=save_watermark, force=force,
                on_chunk=None if on_chunk is None else (lambda chunk: on_chunk(name, chunk)),
            )  # fmt: skip
            self.runlog.append(result.to_record(self.run_id))
            return result

        workers = max(1, (max_workers or catalog.defaults.max_workers) // 2)
        outcome = execute(list(flows), upstream={}, task=task, max_workers=workers)
        results = []
        for name in flows:
            record = outcome.records[name]
            if record.result is not None:
                results.append(record.result)
            else:
                error = str(record.error) if isinstance(record.error, CoolieError) else repr(record.error)
                results.append(ReplayResult(name, "failed", "", error=error))
        return results

    def run_maintenance(
        self,
        *,
        dataflows: Sequence[str] = (),
        optimize: bool = True,
        vacuum: bool = True,
        retention_hours: int = 168,
        dry_run: bool = False,
        max_workers: int | None = None,
    ) -> list[MaintenanceResult]:
        """Optimize and vacuum the Delta destinations (see :mod:`coolie_core.maintenance`)."""
        return run_maintenance(
            self.loaded, dataflows=dataflows, optimize=optimize, vacuum=vacuum, retention_hours=retention_hours,
            dry_run=dry_run, max_workers=max_workers or self.loaded.catalog.defaults.max_workers,
        )  # fmt: skip

    def run_one(self, flow: Dataflow, *, window: Window | None = None, force: bool = False) -> DataflowResult:
        """Run one dataflow (optionally one window of it) with retries; never raises for data errors.

        The returned result has status ``failed`` and the error message instead.
        """
        attempts: list[RetryAttempt] = []
        started = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        spec = self.loaded.catalog.retry_for(flow)
        if not self.retries:
            spec = spec.model_copy(update={"count": 0})
        try:
            result = call_with_retry(
                lambda: self._attempt(flow, window=window, force=force),
                spec=spec,
                sleep=self._sleep,
                on_retry=attempts.append,
            )
            result = replace(
                result,
                started_at=started,
                duration_s=time.monotonic() - t0,
                attempts=len(attempts) + 1,
                retries=tuple(_describe(a) for a in attempts),
            )
        except Exception as exc:  # every failure becomes a recorded result
            result = self._failed(
                flow.name,
                name_failed_file(self.loaded.catalog, flow, exc),
                attempts=len(attempts) + 1,
                started=started,
                t0=t0,
                retries=tuple(_describe(a) for a in attempts),
            )
        self._reported.add(flow.name)
        self.runlog.append(result.to_record())
        return result

    def _failed(
        self,
        name: str,
        exc: BaseException,
        *,
        attempts: int,
        started: dt.datetime | None,
        t0: float,
        retries: tuple[str, ...] = (),
    ) -> DataflowResult:
        message = str(exc) if isinstance(exc, CoolieError) else f"{type(exc).__name__}: {exc}"
        return DataflowResult(
            name,
            "failed",
            self.run_id,
            error=message,
            error_type=type(exc).__name__,
            transient=is_transient(exc),
            attempts=attempts,
            started_at=started,
            duration_s=time.monotonic() - t0,
            retries=retries,
            schema_drift=exc.change.to_record() if isinstance(exc, SchemaDriftError) else None,
            **_rejects_of(exc),
        )

    def read_state(self, flow: Dataflow) -> StoredWatermark:
        """The stored batch, watermark and source fingerprint of a dataflow."""
        dest = destination_storage(self.loaded.catalog, flow)
        required = bool(flow.watermark_columns)
        if flow.destination.format == "delta":
            return read_delta_watermark(dest, dataflow=flow.name, require_watermark=required)
        return self._state_store(dest).read(flow.name, require_watermark=required)

    def _state_store(self, dest: StorageLocation) -> SqliteWatermarkStore | FolderStateStore:
        """Where a parquet folder's batches are recorded: beside the catalog for a local folder,
        in the folder itself on an object store (any machine can continue that lake)."""
        return self.store if dest.is_local else FolderStateStore(dest)

    def _attempt(self, flow: Dataflow, *, window: Window | None, force: bool) -> DataflowResult:
        catalog = self.loaded.catalog
        dest = destination_storage(catalog, flow)
        is_delta = flow.destination.format == "delta"
        state = self.read_state(flow)
        if not is_delta:
            discard_uncommitted(dest, committed_batch=state.batch)
        wm_before = state.value if flow.watermark_columns else None
        window_text = None if window is None else window.key
        base = DataflowResult(
            flow.name,
            "skipped",
            self.run_id,
            watermark_before=wm_before,
            watermark_after=wm_before,
            window=window_text,
        )
        if window is None and self._committed_by_this_run(flow, state):
            # A retry (in this process or a re-executed Dagster step) of a batch that did commit.
            return _committed_result(base, state)
        # A landing zone (source.incremental: files) loads the files its ledger lacks, whole.
        landing = (
            plan_landing(catalog, flow, state=state, dest=dest)
            if window is None and is_landing(flow)
            else None
        )
        if landing is not None:
            if flow.quarantine is not None and landing.files:
                landing = pin_batch(catalog, flow, landing, dest=dest, batch=state.batch + 1)
            base = replace(base, files=landing.summary())
            if not landing.files:
                return replace(base, reason=landing.reason())
        fingerprint = fingerprint_source(catalog, flow) if landing is None else None
        if window is None and not force and fingerprint is not None and fingerprint == state.source:
            return replace(base, reason=f"source unchanged since batch {state.batch}")
        if landing is None and (empty := empty_source(catalog, flow)) is not None:
            return replace(base, reason=empty)
        # Files modified from now on are new data for the next batch (see batches.new_data).
        listed_at = time.time_ns()
        new = NewData() if landing is None else NewData(landing=landing.files)
        if window is None and wm_before:
            new = new_data(catalog, flow, listed_after=state.listed_at, source=state.source)

        engine = engine_for(catalog, flow)
        # An engine may move a whole incremental batch itself (polars: streamed to Delta in one
        # commit, never collected whole); else it reads the batch and writes it below.
        streamed = None
        if window is None and landing is None:
            streamed = engine.stream(
                catalog, flow, dest=dest, state=state, run_id=self.run_id, source=fingerprint, new=new,
                listed_at=listed_at,
            )  # fmt: skip
        if streamed is not None:
            counted = replace(base, rows_read=streamed.rows_read, **tally_counts(streamed.tally))
            if merged := streamed.tally.get("merged", 0):  # duplicate merge keys folded: latest wins
                counted = replace(counted, rows_filtered=counted.rows_filtered + merged)
            if streamed.rows_written == 0:  # a batch without rows may still be committed
                return replace(
                    counted, reason=_nothing_loaded(flow, counted), watermark_after=streamed.watermark,
                    delta_version=streamed.version,
                )  # fmt: skip
            drifted = streamed.drift is not None and streamed.drift.drifted
            return replace(
                counted,
                status="succeeded",
                rows_written=streamed.rows_written,
                watermark_after=streamed.watermark,
                delta_version=streamed.version,
                schema_drift=streamed.drift.to_record() if drifted and streamed.drift else None,
            )

        destination = flow.destination
        if window is None:
            # The batch's rows not to load come back marked (coolie_core.batches): counted here.
            if landing is None:
                read = engine.read_batch(catalog, flow, watermark=wm_before, accounting=True, new=new)
            else:  # unreadable files may be left out whole (on_bad_file: quarantine)
                got, landing = read_landing(
                    catalog, flow, landing,
                    read=lambda files: engine.read_batch(catalog, flow, accounting=True, new=NewData(landing=files)),
                )  # fmt: skip
                base = replace(base, files=landing.summary())
                if got is None:
                    return self._bad_files_only(
                        flow, base, landing, state=state, dest=dest, listed_at=listed_at
                    )
                read = got
            # A large Spark append stays on the executors; the shared steps use a schema stand-in.
            distributed = None if isinstance(read, pl.DataFrame) else read
            frame = read if isinstance(read, pl.DataFrame) else read.empty()
            rows_read = frame.height if distributed is None else distributed.height
            maxima = frame if distributed is None else distributed.maxima(flow.watermark_columns)
            frame, tally = split_marked(frame)
            if distributed is not None:
                tally = dict(getattr(distributed, "tally", {}))
        else:
            # A window run replaces exactly that window (replay semantics), whatever the load:
            # running it twice leaves the same table. The watermark is neither read nor moved.
            check_window_run(self.loaded, flow)
            distributed = None
            # An engine may keep a large window on its executors (Spark).
            window_rows = engine.read_window(catalog, flow, window=window)
            if isinstance(window_rows, pl.DataFrame):
                rows_read, maxima = window_rows.height, window_rows
                frame = prepare_window_rows(flow, window_rows)
                tally = {"dedup": rows_read - frame.height} if frame.height < rows_read else {}
            else:  # prepared by the engine; the folded duplicates are in its tally
                distributed, frame = window_rows, window_rows.empty()
                rows_read, maxima = distributed.height, distributed.maxima(flow.watermark_columns)
                tally = dict(getattr(distributed, "tally", {}))
            destination = destination.model_copy(update={"load": "replace_window"})
        fault_point("after_read", flow.name)
        wm_after = max_watermark(maxima, flow.watermark_columns, wm_before, dataflow=flow.name)
        base = replace(base, rows_read=rows_read, **tally_counts(tally))
        if rows_read == 0 and window is None and landing is None:
            return replace(base, reason="no new rows" if flow.watermark_columns else "source is empty")
        batch = state.batch + 1
        if flow.quarantine is not None:
            frame, quarantined = self._quarantine(
                flow, frame, window=window_text, batch=batch, distributed=distributed,
                bad=None if landing is None else landing.bad_rejects(run_id=self.run_id),
            )  # fmt: skip
            base = replace(base, **quarantined)
        accounts = None if window is not None else _accounts_of(base)
        info = CommitInfo(
            dataflow=flow.name,
            run_id=self.run_id,
            batch=batch if window is None else None,
            watermark=wm_after if window is None else None,
            window=window_text,
            source=fingerprint if window is None else None,
            listed_at=listed_at if window is None else None,
            accounts=accounts,
            extra={} if landing is None else {FILES_KEY: landing.ledger(dest, batch=batch)},
        )
        # Rows to load: a distributed batch counts them without holding them.
        loadable = (
            frame.height
            if distributed is None
            else distributed.height - sum(tally.values()) - base.rows_rejected
        )
        # A first batch with nothing to load still creates the table (as any first batch does),
        # unless it has no watermark to record.
        creates = is_delta and not delta_table_exists(dest) and destination.load != "overwrite"
        if window is None and loadable == 0 and not (creates and (wm_after or not flow.watermark_columns)):
            return self._record_empty(flow, base, info=info, dest=dest)

        loaded_at = dt.datetime.now(dt.UTC)
        if flow.system_columns:
            frame = add_system_columns(frame.lazy(), loaded_at=loaded_at, run_id=self.run_id).collect()
        frame, drift = reconcile_schema(
            frame,
            table_schema(dest, format=flow.destination.format),
            policy=flow.destination.schema_drift,
            dataflow=flow.name,
            location=dest,
            format=flow.destination.format,
            ignore_missing=_writer_columns(flow),
            replace=destination.load == "overwrite",
        )
        if drift.drifted:
            base = replace(base, schema_drift=drift.to_record())
        fault_point("before_commit", flow.name)
        # The engine writes (Spark: a distributed batch on its tasks, with ``frame`` as the stand-in
        # of its columns); a parquet folder's batch is recorded in its state store right after.
        written = engine.write(
            frame if distributed is None else distributed,
            flow=flow,
            dest=dest,
            destination=destination,
            info=info,
            like=frame,
            system_columns=(loaded_at, self.run_id) if flow.system_columns else None,
            windows=[] if window is None else [(window.lo, window.hi)],
            evolve=drift.evolve,
        )
        rows_written, version = written.rows_written, written.version
        if not is_delta:
            fault_point("after_files", flow.name)
            if accounts is not None:
                accounts["rows_written"] = rows_written
            self._state_store(dest).commit(
                flow.name, batch=batch, watermark=wm_after, source=fingerprint, listed_at=listed_at,
                run_id=self.run_id, accounts=accounts, files=info.extra.get(FILES_KEY),
            )  # fmt: skip
        fault_point("after_commit", flow.name)
        if rows_written < loadable:
            # The load folded rows by its declared rule: duplicate merge keys (the latest wins),
            # scd2 rows identical to the current version or older than it, change-feed deletes
            # of keys the table does not hold yet.
            base = replace(base, rows_filtered=base.rows_filtered + loadable - rows_written)
        if rows_written == 0 and window is None:
            if version is None:  # an scd2 batch that changes nothing commits nothing
                return replace(base, reason=f"no changes: {loadable} rows match the current versions")
            return replace(
                base, reason=_nothing_loaded(flow, base), watermark_after=wm_after, delta_version=version
            )
        return replace(
            base,
            status="succeeded",
            reason=None,
            rows_written=rows_written,
            watermark_after=wm_after if window is None else wm_before,
            delta_version=version,
        )

    def _committed_by_this_run(self, flow: Dataflow, state: StoredWatermark) -> bool:
        """The last batch was committed by this run, in an attempt that did not report it."""
        return (
            state.batch > 0
            and state.run_id == self.run_id
            and state.accounts is not None
            and flow.name not in self._reported
        )

    def _record_empty(
        self, flow: Dataflow, base: DataflowResult, *, info: CommitInfo, dest: StorageLocation
    ) -> DataflowResult:
        """A batch whose rows were all filtered, late, quarantined or without a watermark value.

        It is committed without rows (watermark, source, accounting), so the next run neither
        reads nor reports those rows again — unless it has no watermark to record or no table
        to record it in (then the next run reads the same rows; its quarantine is not repeated).
        """
        version, recorded = None, False
        recordable = info.watermark is not None or not flow.watermark_columns
        if recordable and flow.destination.load != "overwrite":
            assert info.batch is not None
            if flow.destination.format != "delta":
                recorded = True
                if info.accounts is not None:
                    info.accounts["rows_written"] = 0
                self._state_store(dest).commit(
                    flow.name, batch=info.batch, watermark=info.watermark, source=info.source,
                    listed_at=info.listed_at, run_id=self.run_id, accounts=info.accounts,
                    files=info.extra.get(FILES_KEY),
                )  # fmt: skip
            elif delta_table_exists(dest):
                version, recorded = commit_empty(dest, info=info), True
        return replace(
            base,
            reason=_nothing_loaded(flow, base),
            watermark_after=info.watermark if recorded else base.watermark_before,
            delta_version=version,
        )

    def _quarantine(
        self,
        flow: Dataflow,
        frame: pl.DataFrame,
        *,
        window: str | None,
        batch: int,
        distributed: DistributedRows | None = None,
        bad: Rejects | None = None,
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        """Split off the rejected rows, record them, fail when there are too many (a distributed
        batch is checked and its rejects written where its rows are). ``bad``: a landing batch's
        unreadable files, written with its rejects (they are files, not rows: not counted)."""
        good, rejects = (
            split_rejects(frame, flow, run_id=self.run_id, window=window)
            if distributed is None
            else distributed.split_rejects(flow, run_id=self.run_id, window=window)
        )
        if rejects.count == 0 and bad is None:
            return good, {}
        table = quarantine_location(self.loaded.catalog, flow)
        details = {
            "rows_rejected": rejects.count,
            "rejected_by_rule": rejects.by_rule(),
            "quarantine_table": str(table),
        }
        try:
            check_threshold(flow, rejects, table=table)
        except DataError as exc:
            # A failed batch will be read again: record these rejects without the batch's key.
            write_quarantine(table, rejects, dataflow=flow.name, run_id=self.run_id, batch=None)
            raise _Rejected(str(exc), details) from None  # bad files: found again by the retry
        if bad is not None:
            rejects = Rejects(pl.concat([rejects.rows, bad.rows], how="vertical_relaxed"), rejects.rows_read)
        write_quarantine(
            table, rejects, dataflow=flow.name, run_id=self.run_id, batch=None if window else batch
        )
        fault_point("after_quarantine", flow.name)
        return good, details

    def _bad_files_only(
        self,
        flow: Dataflow,
        base: DataflowResult,
        landing: LandingBatch,
        *,
        state: StoredWatermark,
        dest: StorageLocation,
        listed_at: int,
    ) -> DataflowResult:
        """A landing batch whose every file is unreadable: quarantined and recorded, nothing read.

        A first batch has no table to record its ledger in: then nothing is written, and the
        files are quarantined with the first batch that loads rows.
        """
        names = ", ".join(f.key for f, _ in landing.bad[:3]) + (", ..." if len(landing.bad) > 3 else "")
        count = f"{len(landing.bad)} unreadable file(s) ({names})"
        if flow.destination.format == "delta" and not delta_table_exists(dest):
            return replace(
                base, reason=f"{count} and no other: quarantined with the first batch that loads rows"
            )
        batch = state.batch + 1
        table = quarantine_location(self.loaded.catalog, flow)
        bad = landing.bad_rejects(run_id=self.run_id)
        assert bad is not None
        write_quarantine(table, bad, dataflow=flow.name, run_id=self.run_id, batch=batch)
        fault_point("after_quarantine", flow.name)
        info = CommitInfo(
            dataflow=flow.name, run_id=self.run_id, batch=batch, watermark=None, window=None, source=None,
            listed_at=listed_at, accounts=_accounts_of(base), extra={FILES_KEY: landing.ledger(dest, batch=batch)},
        )  # fmt: skip
        result = self._record_empty(flow, replace(base, quarantine_table=str(table)), info=info, dest=dest)
        return replace(result, reason=f"{count} quarantined, no other file")


ACCOUNTS = ("rows_read", "rows_rejected", "rows_filtered", "rows_late", "rows_without_watermark")


def _accounts_of(result: DataflowResult) -> dict[str, int]:
    """The accounting recorded with a batch (the writer adds ``rows_written``)."""
    return {key: int(getattr(result, key)) for key in ACCOUNTS}


def _committed_result(base: DataflowResult, state: StoredWatermark) -> DataflowResult:
    """The result of a batch this run committed, from what was recorded with it."""
    counts = dict(state.accounts or {})
    written = counts.get("rows_written", 0)
    others = sum(counts.get(k, 0) for k in ACCOUNTS if k not in ("rows_read", "rows_filtered"))
    read = counts.get("rows_read", written + others)
    return replace(
        base,
        status="succeeded" if written else "skipped",
        reason=f"batch {state.batch} was committed by an earlier attempt of this run",
        rows_read=read,
        rows_written=written,
        rows_rejected=counts.get("rows_rejected", 0),
        # What the load folded is not recorded apart: everything read and not otherwise placed.
        rows_filtered=max(0, read - written - others),
        rows_late=counts.get("rows_late", 0),
        rows_without_watermark=counts.get("rows_without_watermark", 0),
        watermark_after=state.value,
    )


def _nothing_loaded(flow: Dataflow, result: DataflowResult) -> str:
    """Why a batch loaded nothing, with the numbers."""
    parts = [
        f"{n} {label}"
        for n, label in (
            (result.rows_filtered, "filtered"),
            (result.rows_rejected, "quarantined"),
            (result.rows_late, "late"),
            (result.rows_without_watermark, "without a watermark value"),
        )
        if n
    ]
    if not parts:
        return "no new rows" if flow.watermark_columns else "source is empty"
    return "nothing to load: " + ", ".join(parts)


def _describe(attempt: RetryAttempt) -> str:
    return str(attempt)


class _Rejected(DataError):
    """Too many rows were rejected; carries the quarantine details into the failed result."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def _rejects_of(exc: BaseException) -> dict[str, Any]:
    return exc.details if isinstance(exc, _Rejected) else {}


def _writer_columns(flow: Dataflow) -> tuple[str, ...]:
    """Table columns the writer adds itself (not expected in the data)."""
    if flow.destination.load != "scd2":
        return ()
    spec = flow.destination.scd2
    return (spec.valid_from, spec.valid_to, spec.is_current)
