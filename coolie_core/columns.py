"""coolie's own columns, the same on every engine: system columns, quarantine and accounting marks.

The system columns (:data:`LOADED_AT`, :data:`RUN_ID`) reach the destination when a dataflow
asks for them; the internal ones (:data:`INTERNAL_COLUMNS`, :data:`DROPPED`) never do.

>>> SYSTEM_COLUMNS
('_coolie_loaded_at', '_coolie_run_id')
"""

import datetime as dt

import polars as pl

from coolie_core.models import DestinationSpec

__all__ = [
    "DROPPED",
    "INTERNAL_COLUMNS",
    "LOADED_AT",
    "RAW_ROW",
    "REJECT_REASON",
    "REJECT_RULE",
    "RUN_ID",
    "SYSTEM_COLUMNS",
    "add_system_columns",
    "scd2_tracked",
]

LOADED_AT = "_coolie_loaded_at"
RUN_ID = "_coolie_run_id"
SYSTEM_COLUMNS = (LOADED_AT, RUN_ID)

# Internal columns of a dataflow with quarantine: the source row as JSON and why it is rejected
# (null: a good row). They never reach the destination.
RAW_ROW = "__coolie_raw"
REJECT_RULE = "__coolie_reject_rule"
REJECT_REASON = "__coolie_reject_reason"
INTERNAL_COLUMNS = (RAW_ROW, REJECT_RULE, REJECT_REASON)
# Accounting (coolie_core.engines.polars.read): the declared rule that removed a row ("filter",
# "dedup"...), null while the row lives. Rows are marked instead of removed, so a run can count them.
DROPPED = "__coolie_dropped"


def add_system_columns(lf: pl.LazyFrame, *, loaded_at: dt.datetime, run_id: str) -> pl.LazyFrame:
    """Add ``_coolie_loaded_at`` (typed UTC timestamp) and ``_coolie_run_id``.

    Both are constants, so parquet stores them dictionary/RLE-encoded at almost no cost.
    """
    return lf.with_columns(
        pl.lit(loaded_at.astimezone(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias(LOADED_AT),
        pl.lit(run_id, dtype=pl.String).alias(RUN_ID),
    )


def scd2_tracked(columns: list[str], destination: DestinationSpec, effective: str) -> list[str]:
    """The columns whose change makes a new scd2 version (of ``columns``, the data's), on both engines."""
    spec = destination.scd2
    if spec.track:
        return spec.track
    # The effective column (explicit or defaulted) says *when*, never *what* changed.
    skip = {
        *destination.merge_keys,
        *SYSTEM_COLUMNS,
        spec.valid_from,
        spec.valid_to,
        spec.is_current,
        effective,
    }
    return [c for c in columns if c not in skip]
