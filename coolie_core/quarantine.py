"""Quarantine: rows that break a declared rule go to a Delta table beside the destination.

A dataflow with ``quarantine`` carries two internal columns through its transforms: the source row
as JSON and the rule(s) it broke (casts mark rows instead of failing). After the read, the rules
are checked, the good rows go on to the destination and the rejected ones are appended to the
quarantine table with the run id, dataflow, rule, reason and raw row. More rejections than
``max_rejected`` fail the dataflow: the rejects are still recorded, nothing else is written.

An incremental batch records its rejects under the application transaction
``coolie:<dataflow>:quarantine`` (version = batch), so re-running a batch that crashed after the
quarantine commit does not quarantine its rows twice.
"""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import polars as pl

from coolie_core.columns import INTERNAL_COLUMNS, RAW_ROW, REJECT_REASON, REJECT_RULE
from coolie_core.errors import DataError
from coolie_core.expressions import sql_expr
from coolie_core.locations import connection_storage
from coolie_core.models import (
    AcceptedValuesRule,
    Catalog,
    Dataflow,
    ExpressionRule,
    NotNullRule,
    QuarantineSpec,
)
from coolie_core.storage import StorageLocation, delta_table, delta_table_exists, table_options

__all__ = [
    "QUARANTINE_COLUMNS",
    "Rejects",
    "add_rejection",
    "check_threshold",
    "quarantine_location",
    "split_rejects",
    "with_quarantine_columns",
    "write_quarantine",
]

_CAST_REJECTED = "__coolie_cast_rejected"
"""Rows a cast already rejected: their values are unknown, so the rules do not judge them."""

QUARANTINE_COLUMNS = ("run_id", "dataflow", "window", "rule", "reason", "raw_row", "quarantined_at")


def add_rejection(rule: pl.Expr | str, reason: pl.Expr, failed: pl.Expr) -> list[pl.Expr]:
    """Mark rows where ``failed`` is true as rejected by ``rule`` (reasons accumulate with ``; ``)."""
    rule_expr = pl.lit(rule) if isinstance(rule, str) else rule

    def extend(column: str, new: pl.Expr) -> pl.Expr:
        old = pl.col(column)
        joined = pl.when(old.is_null()).then(new).otherwise(old + pl.lit("; ") + new)
        return pl.when(failed.fill_null(True)).then(joined).otherwise(old).alias(column)

    return [extend(REJECT_RULE, rule_expr), extend(REJECT_REASON, reason)]


@dataclass(frozen=True)
class Rejects:
    """The rows a run rejected (as written to the quarantine table)."""

    rows: pl.DataFrame
    rows_read: int

    @property
    def count(self) -> int:
        return self.rows.height

    def by_rule(self) -> dict[str, int]:
        """Rejected rows per rule (a row breaking two rules counts for each)."""
        counts: dict[str, int] = {}
        for rules in self.rows.get_column("rule").to_list():
            for rule in rules.split("; "):
                counts[rule] = counts.get(rule, 0) + 1
        return dict(sorted(counts.items()))

    def append_to(self, path: StorageLocation, *, properties: Any) -> None:
        """Append the rows to the quarantine table in one commit with ``properties`` (an engine
        that keeps its rejects distributed, Spark, has its tasks write them instead)."""
        from deltalake import write_deltalake

        write_deltalake(
            path.uri, self.rows.to_arrow(), mode="append", commit_properties=properties, **table_options(path)
        )


def with_quarantine_columns(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add the raw source row (JSON) and empty reject columns, before any transform."""
    return lf.with_columns(
        pl.struct(pl.all()).struct.json_encode().alias(RAW_ROW),
        pl.lit(None, dtype=pl.String).alias(REJECT_RULE),
        pl.lit(None, dtype=pl.String).alias(REJECT_REASON),
    )


def _literal(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _rule_marks(spec: QuarantineSpec, schema: pl.Schema, *, dataflow: str) -> list[list[pl.Expr]]:
    columns = [c for c in schema.names() if c not in (*INTERNAL_COLUMNS, _CAST_REJECTED)]

    def need(names: list[str], index: int) -> None:
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(
                f"dataflow {dataflow}: quarantine.rules[{index}] names column(s) {missing} "
                f"not in the transformed rows; available: {columns}"
            )

    def unless_cast_failed(failed: pl.Expr) -> pl.Expr:
        return failed.fill_null(True) & ~pl.col(_CAST_REJECTED)

    marks = []
    for index, rule in enumerate(spec.rules):
        if isinstance(rule, NotNullRule):
            need(rule.columns, index)
            for column in rule.columns:
                marks.append(
                    add_rejection(
                        "not_null",
                        pl.lit(f"column {column} is null"),
                        unless_cast_failed(pl.col(column).is_null()),
                    )
                )
        elif isinstance(rule, AcceptedValuesRule):
            need([rule.column], index)
            allowed = ", ".join(_literal(v) for v in rule.values)
            as_text = pl.col(rule.column).cast(pl.String)
            accepted = pl.col(rule.column).is_null() | as_text.is_in([str(v) for v in rule.values])
            reason = pl.format(
                "column {}: {} is not one of [{}]", pl.lit(rule.column), as_text, pl.lit(allowed)
            )
            marks.append(add_rejection("accepted_values", reason, unless_cast_failed(~accepted)))
        elif isinstance(rule, ExpressionRule):
            condition = sql_expr(rule.condition, where=f"{dataflow}.quarantine.rules[{index}].condition")
            reason = pl.lit(f"{rule.condition} is not true")
            marks.append(add_rejection(rule.name, reason, unless_cast_failed(~condition)))
    return marks


def split_rejects(
    frame: pl.DataFrame, flow: Dataflow, *, run_id: str, window: str | None = None
) -> tuple[pl.DataFrame, Rejects]:
    """Check the quarantine rules: the good rows (internal columns dropped) and the rejects."""
    assert flow.quarantine is not None
    lf = frame.lazy().with_columns(pl.col(REJECT_RULE).is_not_null().alias(_CAST_REJECTED))
    for marks in _rule_marks(flow.quarantine, frame.schema, dataflow=flow.name):
        lf = lf.with_columns(marks)
    try:
        checked = lf.collect()
    except pl.exceptions.PolarsError as exc:
        detail = str(exc).strip().split("\n\n", 1)[0]
        raise DataError(f"dataflow {flow.name}: quarantine rules: {type(exc).__name__}: {detail}") from exc
    rejected = pl.col(REJECT_RULE).is_not_null()
    good = checked.filter(~rejected).drop(*INTERNAL_COLUMNS, _CAST_REJECTED)
    now = dt.datetime.now(dt.UTC)
    bad = checked.filter(rejected).select(
        pl.lit(run_id).alias("run_id"),
        pl.lit(flow.name).alias("dataflow"),
        pl.lit(window, dtype=pl.String).alias("window"),
        pl.col(REJECT_RULE).alias("rule"),
        pl.col(REJECT_REASON).alias("reason"),
        pl.col(RAW_ROW).alias("raw_row"),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("quarantined_at"),
    )
    return good, Rejects(bad, frame.height)


def quarantine_location(catalog: Catalog, flow: Dataflow) -> StorageLocation:
    """The quarantine table of a dataflow: inside its destination connection's folder or prefix."""
    assert flow.quarantine is not None
    relative = flow.quarantine.table or str(PurePosixPath("_quarantine") / flow.destination.table)
    return connection_storage(catalog, flow.destination.connection).join(relative)


def _app_id(dataflow: str) -> str:
    return f"coolie:{dataflow}:quarantine"


def write_quarantine(
    path: StorageLocation, rejects: Rejects, *, dataflow: str, run_id: str, batch: int | None
) -> bool:
    """Append the rejects in one commit; False when this batch's rejects are already there."""
    from deltalake import CommitProperties, Transaction

    if rejects.count == 0:
        return False
    app = _app_id(dataflow)
    if batch is not None and delta_table_exists(path):
        done = delta_table(path).transaction_version(app)
        if done is not None and done >= batch:
            return False
    properties = CommitProperties(
        custom_metadata={"coolie.dataflow": dataflow, "coolie.run_id": run_id, "coolie.kind": "quarantine"},
        app_transactions=None if batch is None else [Transaction(app_id=app, version=batch)],
    )
    rejects.append_to(path, properties=properties)
    return True


def check_threshold(flow: Dataflow, rejects: Rejects, *, table: StorageLocation) -> None:
    """Fail the dataflow when more rows were rejected than ``max_rejected`` allows."""
    assert flow.quarantine is not None
    limit = flow.quarantine.limit(rejects.rows_read)
    if rejects.count > limit:
        share = 100 * rejects.count / rejects.rows_read if rejects.rows_read else 100.0
        rules = ", ".join(f"{rule}: {n}" for rule, n in rejects.by_rule().items())
        raise DataError(
            f"dataflow {flow.name}: {rejects.count} of {rejects.rows_read} rows rejected ({share:.1f}%; {rules}), "
            f"more than quarantine.max_rejected {flow.quarantine.max_rejected}; nothing was loaded, "
            f"the rejected rows are in {table}"
        )
