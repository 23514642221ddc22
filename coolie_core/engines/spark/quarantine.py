"""Quarantine on Spark tasks: the rules of :mod:`coolie_core.quarantine`, checked where the rows are.

The rules mark the rows (rule and reason appended, as on polars); the driver learns only the
number of rejected rows per rule combination (one small aggregation) and checks the threshold.
The rejected rows are then written to the quarantine table by Spark tasks — Parquet files in a
fresh ``spark-<uuid>/`` folder, added by ONE delta-rs commit carrying the quarantine's
application transaction — before the good rows' own commit, exactly as the Polars engine orders
the two commits. The rows a polars reader left out of the batch (new data without a watermark
value) are rejected by polars and written in the same commit.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import polars as pl
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # pyspark's own convention

from coolie_core.columns import DROPPED, RAW_ROW, REJECT_REASON, REJECT_RULE
from coolie_core.engines.spark.files import new_folder, write_files
from coolie_core.engines.spark.transform import _as_text, _rejection, _sql, spark_literal
from coolie_core.engines.spark.write import _check_rows, _io_errors, _schema_for, commit_actions
from coolie_core.models import AcceptedValuesRule, ExpressionRule, NotNullRule, QuarantineSpec
from coolie_core.quarantine import Rejects
from coolie_core.storage import StorageLocation
from coolie_core.storage.spark import local_for_spark

__all__ = ["SparkRejects", "mark_rejects", "spark_rejects"]

_CAST_REJECTED = "__coolie_cast_rejected"
"""Rows a cast already rejected: their values are unknown, so the rules do not judge them."""


def _living(columns: list[str]) -> Column:
    """Rows no declared rule removed (they are counted, never quarantined)."""
    return F.col(DROPPED).isNull() if DROPPED in columns else F.lit(True)


def mark_rejects(sdf: DataFrame, spec: QuarantineSpec, *, dataflow: str) -> DataFrame:
    """Mark the rows breaking a rule of ``spec`` (column names are checked by the caller)."""
    types = {f.name: f.dataType for f in sdf.schema.fields}
    living = _living(list(types))
    sdf = sdf.withColumn(_CAST_REJECTED, F.col(REJECT_RULE).isNotNull())

    def judged(failed: Column) -> Column:  # a null outcome rejects, as on polars
        return F.coalesce(failed, F.lit(True)) & ~F.col(_CAST_REJECTED) & living

    for index, rule in enumerate(spec.rules):
        if isinstance(rule, NotNullRule):
            for column in rule.columns:
                reason = F.lit(f"column {column} is null")
                sdf = sdf.withColumns(_rejection("not_null", reason, judged(F.col(column).isNull())))
        elif isinstance(rule, AcceptedValuesRule):
            allowed = ", ".join(json.dumps(v) if isinstance(v, str) else str(v) for v in rule.values)
            as_text = _as_text(F.col(rule.column), types[rule.column])
            accepted = F.col(rule.column).isNull() | as_text.isin([str(v) for v in rule.values])
            reason = F.concat(F.lit(f"column {rule.column}: "), as_text, F.lit(f" is not one of [{allowed}]"))
            sdf = sdf.withColumns(_rejection("accepted_values", reason, judged(~accepted)))
        elif isinstance(rule, ExpressionRule):
            condition = _sql(rule.condition, where=f"{dataflow}.quarantine.rules[{index}].condition")
            reason = F.lit(f"{rule.condition} is not true")
            sdf = sdf.withColumns(_rejection(rule.name, reason, judged(~condition)))
    return sdf.drop(_CAST_REJECTED)


def rejected(columns: list[str]) -> Column:
    """The rows to quarantine: rejected and not removed by a declared rule."""
    return F.col(REJECT_RULE).isNotNull() & _living(columns)


@dataclass(frozen=True)
class SparkRejects(Rejects):
    """Rejects of which ``frame`` (the quarantine table's columns) stays on Spark; ``rows``
    holds the few rejected by polars (rows the batch's reader left out)."""

    frame: Any
    combos: dict[str, int]
    """Rejected rows on Spark per rule text (``"not_null; cast"``...)."""

    @property
    def count(self) -> int:
        return self.rows.height + sum(self.combos.values())

    def by_rule(self) -> dict[str, int]:
        counts = super().by_rule()
        for rules, n in self.combos.items():
            for rule in rules.split("; "):
                counts[rule] = counts.get(rule, 0) + n
        return dict(sorted(counts.items()))

    def append_to(self, path: StorageLocation, *, properties: Any) -> None:
        """Spark tasks write the rejects; one delta-rs commit (with ``properties``) adds them."""
        from deltalake import DeltaTable

        from coolie_core.io.delta import delta_table_exists

        dataflow = str(properties.custom_metadata.get("coolie.dataflow", "?"))
        where = f"dataflow {dataflow}"
        table_path = local_for_spark(path, dataflow=dataflow, role="quarantine table")
        out = self.frame
        if self.rows.height:
            out = out.unionByName(out.sparkSession.createDataFrame(self.rows.to_arrow()))
        table = DeltaTable(str(table_path)) if delta_table_exists(table_path) else None
        delta_schema = _schema_for(table, self.rows.schema, where=where, path=table_path)
        with _io_errors(where, table_path), new_folder(table_path) as folder:
            adds, written = write_files(out, folder, table_path, delta_schema, where=where)
            _check_rows(written, self.count, folder, where)
            commit_actions(
                table_path, table, adds, schema=delta_schema, properties=properties, dataflow=dataflow,
                mode="append",
            )  # fmt: skip


def spark_rejects(
    sdf: DataFrame, *, rows_read: int, extra: Rejects | None, run_id: str, dataflow: str, window: str | None
) -> SparkRejects:
    """The rejects of the marked ``sdf`` (one aggregation: rows per rule text), plus ``extra``."""
    at = dt.datetime.now(dt.UTC)
    frame = sdf.filter(rejected(sdf.columns)).select(
        F.lit(run_id).alias("run_id"),
        F.lit(dataflow).alias("dataflow"),
        F.lit(window).cast("string").alias("window"),
        F.col(REJECT_RULE).alias("rule"),
        F.col(REJECT_REASON).alias("reason"),
        F.col(RAW_ROW).alias("raw_row"),
        spark_literal(at, None).alias("quarantined_at"),
    )
    combos = {str(r[0]): int(r[1]) for r in frame.groupBy("rule").count().collect()}
    empty = pl.DataFrame(
        schema={
            "run_id": pl.String, "dataflow": pl.String, "window": pl.String, "rule": pl.String,
            "reason": pl.String, "raw_row": pl.String, "quarantined_at": pl.Datetime("us", "UTC"),
        }
    )  # fmt: skip
    polars_rows = empty if extra is None or extra.count == 0 else extra.rows
    return SparkRejects(rows=polars_rows, rows_read=rows_read, frame=frame, combos=combos)
