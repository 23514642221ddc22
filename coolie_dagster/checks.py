"""Asset checks declared in the catalog: row count, not-null, unique and accepted values.

Each dataflow with checks gets one ``multi_asset_check`` (one op, whatever the number of checks)
that scans the destination table lazily with polars. A check fails with severity ERROR when the
catalog marks it ``blocking`` (Dagster then skips the downstream assets of that run) and WARN
otherwise. A table that does not exist yet, or a column it lacks, is a failed check with a message
saying so, never a crashed op.

Freshness checks are not here: they become the asset's ``FreshnessPolicy`` (see
``CoolieTranslator.get_asset_spec``), which Dagster evaluates itself.
"""

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from coolie_core.catalog import LoadedCatalog
from coolie_core.locations import destination_storage
from coolie_core.models import (
    AcceptedValuesCheck,
    Dataflow,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    UniqueCheck,
)
from coolie_core.storage import StorageLocation, delta_table, delta_table_exists, library_options
from coolie_dagster.translator import CoolieTranslator

__all__ = [
    "CheckOutcome",
    "build_asset_checks",
    "check_name",
    "evaluate_check",
    "evaluate_table_checks",
    "table_check_specs",
]

TableCheck = RowCountCheck | NotNullCheck | UniqueCheck | AcceptedValuesCheck
_SAMPLE = 5


@dataclass(frozen=True)
class CheckOutcome:
    """What one check found."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_name(check: TableCheck) -> str:
    """A readable check name: ``row_count``, ``not_null_a_b``, ``unique_id``, ``accepted_values_status``."""
    if isinstance(check, RowCountCheck):
        return "row_count"
    columns = [check.column] if isinstance(check, AcceptedValuesCheck) else check.columns
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{check.kind}_{'_'.join(columns)}")[:100]


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _sample(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.head(_SAMPLE).to_dicts()]


def evaluate_check(check: TableCheck, table: pl.LazyFrame, *, current: str | None = None) -> CheckOutcome:
    """Run one check over a table; ``current`` names the is-current column of an SCD2 table.

    Accepted values compare as text (booleans as ``true``/``false``) so any column type works.
    """
    if isinstance(check, RowCountCheck):
        rows = int(table.select(pl.len()).collect().item())
        return CheckOutcome(
            rows >= check.min,
            f"{rows} row(s); at least {check.min} expected",
            {"row_count": rows, "min": check.min},
        )
    if isinstance(check, NotNullCheck):
        counts = table.select(pl.len().alias("__rows"), *(pl.col(c).null_count() for c in check.columns))
        row = counts.collect().row(0, named=True)
        nulls = {c: int(row[c]) for c in check.columns}
        bad = [c for c, n in nulls.items() if n]
        text = f"nulls in {', '.join(f'{c} ({nulls[c]})' for c in bad)}" if bad else "no nulls"
        return CheckOutcome(
            not bad, text, {"null_counts": nulls, "offending_columns": bad, "row_count": int(row["__rows"])}
        )
    if isinstance(check, UniqueCheck):
        scope = table.filter(pl.col(current)) if current else table
        dupes = scope.group_by(check.columns).agg(pl.len().alias("rows")).filter(pl.col("rows") > 1)
        keys, rows = dupes.select(pl.len(), pl.col("rows").sum()).collect().row(0)
        # Only a few offenders are collected: a table full of duplicates must not fill memory.
        order = ["rows", *check.columns]
        worst = dupes.sort(order, descending=[True] + [False] * len(check.columns)).head(_SAMPLE)
        return CheckOutcome(
            keys == 0,
            f"{keys} duplicated key(s) over ({', '.join(check.columns)})"
            + (" in current rows" if current else ""),
            {
                "duplicate_keys": int(keys),
                "duplicate_rows": int(rows or 0),
                "sample": _sample(worst.collect()),
            },
        )
    as_text = pl.col(check.column).cast(pl.String)
    allowed = [str(v).lower() if isinstance(v, bool) else str(v) for v in check.values]
    offending = (
        table.filter(as_text.is_not_null() & ~as_text.is_in(allowed))
        .group_by(as_text.alias("value"))
        .agg(pl.len().alias("rows"))
    )
    values, rows = offending.select(pl.len(), pl.col("rows").sum()).collect().row(0)
    sample = offending.sort(["rows", "value"], descending=[True, False]).head(_SAMPLE).collect()
    return CheckOutcome(
        values == 0,
        f"{rows or 0} row(s) of {check.column} outside {allowed}",
        {"offending_rows": int(rows or 0), "offending_values": int(values), "sample": _sample(sample)},
    )


def _committed_parquet(folder: StorageLocation, *, flow: Dataflow, state_dir: Path) -> list[str]:
    """Files of committed batches only: a crashed batch's files are not data yet."""
    from coolie_core.folder_state import FolderStateStore
    from coolie_core.watermarks import SqliteWatermarkStore

    if folder.is_local:
        store = state_dir / "watermarks.sqlite"
        committed = SqliteWatermarkStore(store).read(flow.name).batch if store.exists() else 0
    else:  # an object-store folder keeps its batch state inside it
        committed = FolderStateStore(folder).read(flow.name).batch
    files = []
    for info in folder.join("part-*.parquet").glob():
        match = re.match(r"^part-(\d{10})-", info.uri.rpartition("/")[2])
        if match and int(match.group(1)) <= committed:
            files.append(info.uri)
    return files


def _open_table(flow: Dataflow, path: StorageLocation, *, state_dir: Path) -> tuple[pl.LazyFrame | None, str]:
    """The destination as a LazyFrame, or None with the reason it cannot be read."""
    if flow.destination.format == "parquet":
        files = _committed_parquet(path, flow=flow, state_dir=state_dir)
        if not files:
            return None, f"table {path} has no committed data yet: dataflow {flow.name} has not written it"
        return pl.scan_parquet(files, storage_options=library_options(path)), f"{len(files)} parquet file(s)"
    if not delta_table_exists(path):
        return None, f"table {path} does not exist yet: dataflow {flow.name} has not written it"
    table = delta_table(path)
    return pl.scan_delta(table), f"delta version {table.version()}"


def _checks_of(flow: Dataflow) -> list[tuple[str, TableCheck]]:
    named: list[tuple[str, TableCheck]] = []
    used: set[str] = set()
    for check in flow.checks:
        if isinstance(check, FreshnessCheck):
            continue
        name = base = check_name(check)
        n = 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        named.append((name, check))
    return named


def table_check_specs(flow: Dataflow, *, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The specs of a dataflow's table checks (freshness excluded) on its asset ``key``."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=key,
            blocking=check.blocking,
            description=f"coolie {check.kind} check" + (" (blocking)" if check.blocking else ""),
            metadata={"coolie/check": check.model_dump_json(exclude_defaults=True)},
        )
        for name, check in _checks_of(flow)
    ]


def evaluate_table_checks(
    flow: Dataflow, *, key: dg.AssetKey, path: StorageLocation, state_dir: Path, names: set[str]
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the named table checks of a dataflow on its destination at ``path``.

    Blocking checks fail with severity ERROR (Dagster then stops the downstream assets), the
    others with WARN.
    """
    by_name = dict(_checks_of(flow))
    current = flow.destination.scd2.is_current if flow.load == "scd2" else None
    table, source = _open_table(flow, path, state_dir=state_dir)
    for name in sorted(names & by_name.keys()):
        check = by_name[name]
        severity = dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN
        started = dt.datetime.now(dt.UTC)
        if table is None:
            outcome = CheckOutcome(False, source, {"table": str(path)})
        else:
            try:
                outcome = evaluate_check(check, table, current=current)
            except pl.exceptions.PolarsError as exc:  # missing column, bad type...
                detail = str(exc).strip().split("\n", 1)[0]
                outcome = CheckOutcome(False, f"cannot evaluate on {path}: {type(exc).__name__}: {detail}")
        seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=outcome.passed,
            severity=severity,
            description=outcome.description,
            metadata={**outcome.metadata, "table": str(path), "read": source, "seconds": round(seconds, 3)},
        )


def _build_one(
    flow: Dataflow, *, key: dg.AssetKey, path: StorageLocation, state_dir: Path
) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{flow.name}__coolie_checks", specs=table_check_specs(flow, key=key), can_subset=True
    )
    def run_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        names = {k.name for k in context.selected_asset_check_keys}
        yield from evaluate_table_checks(flow, key=key, path=path, state_dir=state_dir, names=names)

    return run_checks


def build_asset_checks(
    loaded: LoadedCatalog,
    *,
    translator: CoolieTranslator | None = None,
    state_dir: str | Path | None = None,
) -> list[dg.AssetChecksDefinition]:
    """One checks definition per enabled dataflow declaring table checks.

    ``state_dir`` is the Driver's state folder (default ``.coolie`` beside the catalog); it is read
    only for parquet destinations, to skip files of uncommitted batches.

    Example:
        >>> from coolie_core.catalog import load_catalog
        >>> checks = build_asset_checks(load_catalog("examples/demo/catalog.yaml"))  # doctest: +SKIP
        >>> sorted(spec.name for c in checks for spec in c.check_specs)[:2]  # doctest: +SKIP
        ['accepted_values_status', 'not_null_customer_id_valid_from']
    """
    translator = translator or CoolieTranslator()
    base = loaded.path if loaded.path.is_dir() else loaded.path.parent
    state = Path(state_dir) if state_dir is not None else base / ".coolie"
    definitions = []
    for flow in loaded.catalog.dataflows:
        checks = _checks_of(flow)
        if flow.enabled and checks:
            path = destination_storage(loaded.catalog, flow)
            key = translator.get_asset_key(flow)
            definitions.append(_build_one(flow, key=key, path=path, state_dir=state))
    return definitions
