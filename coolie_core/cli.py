"""The ``coolie`` command line: validate, schema, plan, run.

User errors (bad catalog, bad arguments) print a message without a traceback and exit 2; a run
in which a dataflow failed exits 1.
"""

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from coolie_core.catalog import load_catalog
from coolie_core.errors import CatalogError, CatalogIssue, CoolieError
from coolie_core.models import Catalog
from coolie_core.planning import plan_dataflows
from coolie_core.sharding import ShardSpec

if TYPE_CHECKING:
    from coolie_core.driver import DataflowResult
    from coolie_core.maintenance import MaintenanceResult

__all__ = ["app", "main"]

app = typer.Typer(
    name="coolie",
    help="Metadata-driven ETL into Delta Lake. See the README for the catalog reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

CatalogArg = Annotated[Path, typer.Argument(help="Catalog file (YAML/JSON) or folder of them.")]
StageOpt = Annotated[str | None, typer.Option("--stage", help="Only dataflows of this stage.")]
DataflowOpt = Annotated[
    list[str] | None, typer.Option("--dataflow", "-d", help="Only this dataflow (repeatable).")
]
JobNumOpt = Annotated[
    int | None, typer.Option("--job-num", min=1, help="Number of shards the work is split into.")
]
JobIndexOpt = Annotated[int | None, typer.Option("--job-index", min=0, help="This worker's shard (0-based).")]


def shard_from(job_num: int | None, job_index: int | None) -> ShardSpec | None:
    """Build the shard spec from CLI options; both or neither must be given."""
    if job_num is None and job_index is None:
        return None
    if job_num is None or job_index is None:
        raise typer.BadParameter("--job-num and --job-index go together")
    try:
        return ShardSpec(job_num=job_num, job_index=job_index)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def validate(
    catalog: CatalogArg,
    check_env: Annotated[
        bool,
        typer.Option(
            "--check-env", help="Also report ${VAR} references in connections whose variable is unset."
        ),
    ] = False,
) -> None:
    """Check a catalog; list every problem with its file, dataflow and field."""
    from coolie_core.catalog import check_env as unset_env

    loaded = load_catalog(catalog)
    flows = loaded.catalog.dataflows
    stages = sorted({f.stage for f in flows})
    out.print(
        f"[green]ok[/green] {catalog}: {len(flows)} dataflows in {len(stages)} stages ({', '.join(stages)})"
    )
    if check_env:
        missing, total = unset_env(catalog)
        if missing:
            # Names only: the values (secrets) are never printed.
            count = len(missing)
            lines = [f"environment: {count} of {total} references unset"]
            lines += ["  " + issue.render() for issue in missing]
            sys.stderr.write("\n".join(lines) + "\n")
            raise typer.Exit(2)
        out.print(f"[green]ok[/green] environment: all {total} references set")


@app.command()
def schema() -> None:
    """Print the catalog's JSON Schema (point your editor's YAML plugin at it)."""
    sys.stdout.write(json.dumps(Catalog.model_json_schema(), indent=2) + "\n")


@app.command()
def plan(
    catalog: CatalogArg,
    stage: StageOpt = None,
    dataflow: DataflowOpt = None,
    job_num: JobNumOpt = None,
    job_index: JobIndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    windows: Annotated[
        bool, typer.Option("--windows", help="List the partition windows (chunks) of partitioned dataflows.")
    ] = False,
) -> None:
    """Show the dataflows a run would execute, in dependency order. Reads and writes nothing."""
    from coolie_core.windows import plan_partitions

    shard = shard_from(job_num, job_index)
    loaded = load_catalog(catalog)
    planned = plan_dataflows(loaded, stage=stage, dataflows=dataflow or (), shard=shard)
    rows = [p.describe(loaded) for p in planned]
    if windows:
        problems = []
        for row, item in zip(rows, planned, strict=True):
            spec = item.dataflow.partitions
            try:
                # The keys Dagster lists: completed windows (never past end), or a fixed list.
                row["windows"] = [] if spec is None else [w.key for w in plan_partitions(spec)]
            except (ValueError, OverflowError) as exc:  # e.g. more windows than a plan allows
                problems.append(CatalogIssue(loaded.origins[item.name], item.name, "partitions", str(exc)))
        if problems:
            raise CatalogError(problems)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(
        title=f"plan: {len(rows)} dataflows"
        + (f" (shard {shard.job_index}/{shard.job_num})" if shard else "")
    )
    for column in ("#", "dataflow", "stage", "load", "source", "upstream", "notes"):
        table.add_column(column)
    for row in rows:
        notes = []
        if row["incremental"]:
            notes.append("incremental")
        if row["partitioned"]:
            notes.append("partitioned")
        if windows and row["partitioned"]:
            keys = row["windows"]
            assert isinstance(keys, list)
            notes.append(f"{len(keys)} windows: {keys[0]} .. {keys[-1]}" if keys else "no windows yet")
        if row["cross_shard_upstream"]:
            notes.append(f"waits on other shard: {', '.join(row['cross_shard_upstream'])}")  # type: ignore[arg-type]
        if "pending_files" in row:  # incremental: files
            pending = row["pending_files"]
            notes.append(
                f"{pending} files pending"
                if pending is not None
                else f"pending files: {row['pending_error']}"
            )
        table.add_row(
            str(row["position"]),
            str(row["dataflow"]),
            str(row["stage"]),
            str(row["load"]),
            str(row["source_format"]),
            ", ".join(row["upstream"]),  # type: ignore[arg-type]
            "; ".join(notes),
        )
    out.print(table)
    if windows:
        for row in rows:
            if row["partitioned"]:
                keys = row["windows"]
                assert isinstance(keys, list)
                out.print(_windows_text(str(row["dataflow"]), keys))


WINDOWS_SHOWN = 5
"""``plan --windows`` prints this many first and last windows of a long plan, and the count."""


def _windows_text(name: str, keys: list[str]) -> str:
    """One dataflow's planned window keys: all of them, or the first and last few and a count."""
    if not keys:
        return f"{name}: no windows yet (none has completed)"
    if len(keys) <= 2 * WINDOWS_SHOWN:
        return f"{name}: {len(keys)} windows: {', '.join(keys)}"
    head, tail = keys[:WINDOWS_SHOWN], keys[-WINDOWS_SHOWN:]
    hidden = len(keys) - 2 * WINDOWS_SHOWN
    return f"{name}: {len(keys)} windows: {', '.join(head)}, ... ({hidden} more) ..., {', '.join(tail)}"


@app.command()
def run(
    catalog: CatalogArg,
    stage: StageOpt = None,
    dataflow: DataflowOpt = None,
    job_num: JobNumOpt = None,
    job_index: JobIndexOpt = None,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", min=1, help="Dataflows run in parallel.")
    ] = None,
    stop_on_error: Annotated[
        bool, typer.Option("--stop-on-error", help="Launch nothing new after a failure.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: read and write nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Run even when a source is unchanged since its last batch.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Run records and non-Delta watermarks (default: .coolie beside the catalog)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON lines.")] = False,
) -> None:
    """Run dataflows in dependency order; exit 1 when any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from coolie_core.driver import Driver
    from coolie_core.executor import TaskEvent

    shard = shard_from(job_num, job_index)
    loaded = load_catalog(catalog)
    with Driver(loaded, state_dir=state_dir) as driver:
        planned = driver.plan(stage=stage, dataflows=dataflow or (), shard=shard)
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=as_json or dry_run or not err.is_terminal,
            transient=True,
        )
        with progress:
            bar = progress.add_task("running", total=len(planned))

            def on_event(event: TaskEvent[Any]) -> None:
                if event.kind != "started":
                    progress.advance(bar)

            result = driver.run(
                stage=stage,
                dataflows=dataflow or (),
                shard=shard,
                dry_run=dry_run,
                force=force,
                max_workers=max_workers,
                stop_on_error=stop_on_error,
                on_event=on_event,
            )
    if as_json:
        for item in result.results:
            sys.stdout.write(json.dumps(item.to_record(), default=str) + "\n")
    else:
        table = Table(
            title=f"run {result.run_id}: {result.succeeded} succeeded, {result.skipped} skipped, {result.failed} failed"
        )
        for column in ("dataflow", "status", "rows read", "rows written", "version", "seconds", "note"):
            table.add_column(
                column,
                justify="right" if column in ("rows read", "rows written", "version", "seconds") else "left",
                overflow="fold",  # a path or an error in the note is shown whole
            )
        colours = {"succeeded": "green", "failed": "red", "skipped": "yellow", "planned": "cyan"}
        for item in result.results:
            table.add_row(
                item.dataflow,
                f"[{colours[item.status]}]{item.status}[/]",
                str(item.rows_read),
                str(item.rows_written),
                "" if item.delta_version is None else str(item.delta_version),
                f"{item.duration_s:.2f}",
                "; ".join(n for n in (item.error or item.reason, _quality_note(item)) if n),
            )
        out.print(table)
    if not result.ok:
        raise typer.Exit(1)


def _quality_note(item: "DataflowResult") -> str:
    """Rows not loaded (quarantined, filtered, late, without watermark) and accepted schema drift."""
    notes = []
    if item.files and item.files["loaded"]:  # incremental: files
        shown = ", ".join(item.files["names"][:3]) + (", ..." if item.files["loaded"] > 3 else "")
        notes.append(f"{item.files['loaded']} files loaded ({shown})")
        if item.files["pending"]:
            notes.append(f"{item.files['pending']} files pending")
    if item.files and item.files.get("rejected"):  # on_bad_file: quarantine
        shown = ", ".join(item.files["rejected_names"][:3])
        notes.append(f"{item.files['rejected']} unreadable files quarantined ({shown})")
    if item.rows_rejected:
        notes.append(f"{item.rows_rejected} rows quarantined in {item.quarantine_table}")
    if item.status == "succeeded":  # a skipped run's reason already gives these numbers
        for count, what in (
            (item.rows_filtered, "rows filtered"),
            (item.rows_late, "late rows (at or below the watermark) not loaded"),
            (item.rows_without_watermark, "rows without a watermark value not loaded"),
        ):
            if count:
                notes.append(f"{count} {what}")
    drift = item.schema_drift
    if drift and item.status == "succeeded" and drift["new"]:
        verb = {"evolve": "added", "ignore": "ignored"}.get(str(drift["policy"]), "new")
        notes.append(f"columns {verb}: {', '.join(drift['new'])}")
    return "; ".join(notes)


@app.command()
def replay(
    catalog: CatalogArg,
    dataflow: Annotated[list[str], typer.Option("--dataflow", "-d", help="Dataflow to replay (repeatable).")],
    start: Annotated[
        str | None,
        typer.Option("--start", help="First boundary, e.g. 2024-01-01 (default: partitions.start)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="End boundary, exclusive (default: partitions.end or now).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Chunk size: year, quarter, month, week, day, hour, minute, integer."),
    ] = None,
    save_watermark: Annotated[
        bool, typer.Option("--save-watermark", help="Hand over to incremental mode after the last chunk.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replay chunks already committed by the same replay.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the chunks only.")] = False,
    max_workers: Annotated[int | None, typer.Option("--max-workers", min=1)] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON lines.")] = False,
) -> None:
    """Replay a range in calendar-aligned chunks: one commit per chunk, resumable, idempotent."""
    from coolie_core.driver import Driver
    from coolie_core.quarantine import quarantine_location
    from coolie_core.replay import Every, plan_replay

    valid = ("year", "quarter", "month", "week", "day", "hour", "minute", "integer")
    if every is not None and every not in valid:
        raise typer.BadParameter(f"--every must be one of {', '.join(valid)}")
    cadence = cast("Every | None", every)
    lo = _bound(start, "--start")
    hi = _bound(end, "--end")
    _check_range(lo, hi)
    loaded = load_catalog(catalog)
    planned = plan_dataflows(loaded, dataflows=dataflow)
    # Refuse what cannot be replayed (no partitions, scd2, ...) before any dataflow starts.
    plans = {
        item.name: plan_replay(
            loaded, item.dataflow, start=lo, end=hi, every=cadence, save_watermark=save_watermark
        )
        for item in planned
    }
    if dry_run:
        rows = []
        for item in planned:
            _, windows = plans[item.name]
            rows += [
                {"dataflow": item.name, "window": w.key, "lo": str(w.lo), "hi": str(w.hi)} for w in windows
            ]
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            table = Table(title=f"replay plan: {len(rows)} chunks")
            for column in ("dataflow", "window", "lo", "hi"):
                table.add_column(column)
            for row in rows:
                table.add_row(*(str(row[k]) for k in ("dataflow", "window", "lo", "hi")))
            out.print(table)
        return
    with Driver(loaded, state_dir=state_dir) as driver:
        results = driver.run_replay(
            dataflow,
            start=lo,
            end=hi,
            every=cadence,
            save_watermark=save_watermark,
            force=force,
            max_workers=max_workers,
        )
        run_id = driver.run_id
    if as_json:
        for result in results:
            sys.stdout.write(json.dumps(result.to_record(run_id), default=str) + "\n")
    else:
        table = Table(title=f"replay {run_id}")
        headers = ("dataflow", "status", "chunks committed", "chunks skipped", "rows", "rejected", "note")
        for column in headers:
            table.add_column(column, overflow="fold")  # a path in the note is shown whole
        for result in results:
            rejected = sum(c.rejected for c in result.chunks)
            where = f"quarantined in {quarantine_location(loaded.catalog, loaded.catalog.dataflow(result.dataflow))}"
            table.add_row(
                result.dataflow,
                result.status,
                str(result.committed),
                str(result.skipped),
                str(sum(c.rows for c in result.chunks)),
                str(rejected),
                "; ".join(n for n in (result.error, where if rejected else None) if n),
            )
        out.print(table)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _check_range(lo: "int | dt.date | dt.datetime | None", hi: "int | dt.date | dt.datetime | None") -> None:
    """Refuse ``--start`` at or after ``--end`` (a replay covers ``[start, end)``)."""
    from coolie_core.windows import normalize_bound

    if lo is None or hi is None or isinstance(lo, int) != isinstance(hi, int):
        return  # mixed kinds: the dataflow's partitions say which one is wrong
    if isinstance(lo, int) and isinstance(hi, int):
        inverted = lo >= hi
    else:
        assert not isinstance(lo, int)
        assert not isinstance(hi, int)
        inverted = normalize_bound(lo) >= normalize_bound(hi)
    if inverted:
        raise typer.BadParameter(
            f"--start {lo.isoformat() if not isinstance(lo, int) else lo} is not before --end "
            f"{hi.isoformat() if not isinstance(hi, int) else hi}: a replay covers [start, end)"
        )


def _bound(value: str | None, option: str) -> "int | dt.date | dt.datetime | None":
    """Parse a CLI bound: an integer, an ISO date or an ISO datetime."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        pass
    raise typer.BadParameter(f"{option}: expected an integer, YYYY-MM-DD or an ISO datetime, got {value!r}")


@app.command()
def maintain(
    catalog: CatalogArg,
    dataflow: DataflowOpt = None,
    optimize: Annotated[bool, typer.Option("--optimize/--no-optimize", help="Compact small files.")] = True,
    vacuum: Annotated[
        bool,
        typer.Option("--vacuum/--no-vacuum", help="Delete files no version in the retention period uses."),
    ] = True,
    retention_hours: Annotated[
        int, typer.Option("--retention-hours", min=0, help="Keep files needed by versions this recent.")
    ] = 168,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the files a real run would compact and vacuum; change nothing."),
    ] = False,
    max_workers: Annotated[int | None, typer.Option("--max-workers", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per table.")] = False,
) -> None:
    """Optimize and vacuum the catalog's Delta tables (destinations and quarantine tables), each
    once, in parallel."""
    from coolie_core.driver import Driver

    loaded = load_catalog(catalog)
    with Driver(loaded) as driver:
        results = driver.run_maintenance(
            dataflows=dataflow or (),
            optimize=optimize,
            vacuum=vacuum,
            retention_hours=retention_hours,
            dry_run=dry_run,
            max_workers=max_workers,
        )
    if as_json:
        import dataclasses

        for result in results:
            record = dataclasses.asdict(result) | {"dry_run": dry_run}
            sys.stdout.write(json.dumps(record, default=str) + "\n")
    else:
        _print_maintenance(results, dry_run=dry_run)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _print_maintenance(results: "list[MaintenanceResult]", *, dry_run: bool) -> None:
    title = f"maintenance: {len(results)} tables" + (" (dry run: nothing changed)" if dry_run else "")
    table = Table(title=title)
    verbs = ("to compact", "to vacuum") if dry_run else ("compacted", "vacuumed")
    for column in ("table", "role", "status", f"files {verbs[0]}", f"files {verbs[1]}", "version", "note"):
        table.add_column(column)
    for result in results:
        version = "" if result.version_after is None else f"{result.version_before} -> {result.version_after}"
        table.add_row(
            result.table,
            result.role,
            result.status,
            str(result.files_compacted),
            str(result.files_vacuumed),
            version,
            result.error or result.reason or "",
        )
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``coolie`` console script."""
    try:
        # Without standalone mode, click returns typer.Exit's code instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except CatalogError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except CoolieError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: bad option values, missing arguments
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            sys.stderr.write(f"error: {exc}\n")
        return int(getattr(exc, "exit_code", 2))
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
